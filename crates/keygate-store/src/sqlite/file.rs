//! The database file itself: which file the server has open, and that only
//! one server has it.
//!
//! A file removed or replaced under a running server (`rm keygate.db*`, a
//! restore copied over it) must not go on taking writes into an unlinked
//! inode that the next start will not find: the server remembers the
//! identity (device and inode) of the file it opened, and every batch of
//! writes and every readiness check first makes sure the path still names
//! that file; if not, writes answer 503 until the server is restarted.
//!
//! One file serves one `keygate serve`: `serve` holds an exclusive lock on
//! `<file>-serve.lock` (which also names its process) and on the database
//! file itself (whatever name, link or hard link, it is opened by) for as
//! long as it runs, and a second `serve` on the same file stops with an error naming
//! the first. The lock is the operating system's, released when the
//! process ends however it ends. Other commands (`keygate user add`) take
//! no lock: they are meant to run beside the server.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// The file a store opened, to tell whether its path still names it.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseFile {
    path: PathBuf,
    /// Device and inode at open.
    identity: (u64, u64),
}

impl DatabaseFile {
    /// The file at `path` now (it must exist).
    pub(crate) fn at(path: &Path) -> Result<Self> {
        let metadata = std::fs::metadata(path)
            .map_err(|e| StoreError::Config(format!("cannot read {}: {e}", path.display())))?;
        Ok(Self { path: path.to_owned(), identity: (metadata.dev(), metadata.ino()) })
    }

    /// `Ok` while the path still names the file that was opened.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        let gone = |what: &str| {
            std::io::Error::other(format!(
                "the database file {} was {what} while the server ran; writes are refused until \
                 keygate is restarted on the right file",
                self.path.display()
            ))
        };
        match std::fs::metadata(&self.path) {
            Ok(now) if (now.dev(), now.ino()) == self.identity => Ok(()),
            Ok(_) => Err(gone("replaced")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(gone("removed")),
            Err(error) => Err(error),
        }
    }
}

/// Refuses a database file with more than one name (hard links): SQLite
/// names its write-ahead log after the name it was opened by, so a
/// command run through another name would keep a second log of the same
/// file, and checkpointing either would overwrite the other's writes.
pub(crate) fn refuse_hard_links(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.nlink() > 1 => Err(StoreError::Config(format!(
            "{} has {} names (hard links): SQLite keeps its write-ahead log by name, so a second name \
             would corrupt it; remove every other link to the file (`find / -samefile {}`)",
            path.display(),
            metadata.nlink(),
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// `serve`'s hold on a database file; released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    /// The database file itself, locked too: a hard link to a served
    /// database names another lock file, but the same file. `None` while
    /// there is no file yet (a restore into a new path).
    _database: Option<File>,
}

impl ServeLock {
    /// Takes the lock beside `database`, and one on the file itself if it
    /// exists, or says which process holds them.
    pub(crate) fn acquire(database: &Path) -> Result<Self> {
        // Named after the file itself, not the path given: a symbolic link
        // to a database served already finds its lock.
        let resolved = std::fs::canonicalize(database)
            .or_else(|_| {
                let parent =
                    database.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Ok::<_, std::io::Error>(
                    std::fs::canonicalize(parent)?.join(database.file_name().unwrap_or_default()),
                )
            })
            .unwrap_or_else(|_| database.to_path_buf());
        let mut name = resolved.as_os_str().to_owned();
        name.push("-serve.lock");
        let path = PathBuf::from(name);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(
                |e| StoreError::Config(format!("cannot open the lock file {}: {e}", path.display())),
            )?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("process {pid}"),
                };
                return Err(StoreError::Config(format!(
                    "{} is already served by {holder} (it holds {}); one SQLite file serves one \
                     `keygate serve` — stop the other one, or use PostgreSQL to run several replicas",
                    database.display(),
                    path.display()
                )));
            }
            Err(TryLockError::Error(error)) => {
                return Err(StoreError::Config(format!("cannot lock {}: {error}", path.display())));
            }
        }
        // Whoever finds it locked reads who holds it.
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot write this process's id into the lock file");
        }
        // SQLite's own locks are POSIX record locks, which this whole-file
        // lock (flock) neither takes nor waits for.
        let same_file = match File::open(database) {
            Ok(same_file) => same_file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { _file: file, _database: None });
            }
            Err(error) => {
                return Err(StoreError::Config(format!("cannot open {}: {error}", database.display())));
            }
        };
        match same_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Config(format!(
                    "{} is already served by another process, under another name (a hard link to \
                     it); one SQLite file serves one `keygate serve`",
                    database.display()
                )));
            }
            Err(TryLockError::Error(error)) => {
                return Err(StoreError::Config(format!("cannot lock {}: {error}", database.display())));
            }
        }
        Ok(Self { _file: file, _database: Some(same_file) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = dir.path().join("keygate.db");
        std::fs::write(&database, b"").expect("the database file");
        let first = ServeLock::acquire(&database).expect("the first lock");
        let error = ServeLock::acquire(&database).expect_err("a second lock").to_string();
        assert!(error.contains(&format!("process {}", std::process::id())), "{error}");
        assert!(error.contains("keygate.db"), "{error}");
        drop(first);
        ServeLock::acquire(&database).expect("free again once the first is gone");
        // Eleventh review: through a symbolic link, a second server started.
        let _held = ServeLock::acquire(&database).expect("the lock");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&database, &link).expect("link");
        let error = ServeLock::acquire(&link).expect_err("the lock through a link").to_string();
        assert!(error.contains(&format!("process {}", std::process::id())), "{error}");
        // Twelfth review: through a hard link, it did.
        let hard = dir.path().join("hard.db");
        std::fs::hard_link(&database, &hard).expect("hard link");
        let error = ServeLock::acquire(&hard).expect_err("the lock through a hard link").to_string();
        assert!(error.contains("hard link"), "{error}");
    }

    #[test]
    fn a_removed_or_replaced_file_is_noticed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("keygate.db");
        std::fs::write(&path, b"one").expect("write");
        let file = DatabaseFile::at(&path).expect("identity");
        file.check().expect("the same file");
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"two").expect("write");
        std::fs::rename(&other, &path).expect("replace");
        assert!(file.check().expect_err("replaced").to_string().contains("replaced"));
        std::fs::remove_file(&path).expect("remove");
        assert!(file.check().expect_err("removed").to_string().contains("removed"));
    }
}
