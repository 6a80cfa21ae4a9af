//! Where a database's bundles are kept by default: beside a SQLite file,
//! named after it, so that two databases in one directory never share a
//! directory (each `serve` removes what its own database does not list).

use std::path::{Path, PathBuf};

/// `FILE-blobs` beside a SQLite database file `FILE` (`keygate-blobs`
/// beside `keygate.db`), so that two databases in one directory never share
/// one (each `serve` removes what its own database does not list);
/// `keygate-blobs` in the working directory otherwise.
pub(super) fn default(url: &str) -> PathBuf {
    let sqlite_path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
    match sqlite_path.map(|p| Path::new(p.split('?').next().unwrap_or(p))) {
        Some(path) => {
            // The whole file name, so that `q.db` and `q.sqlite` never share
            // one; `keygate-blobs` for `keygate.db`, as always.
            let name = path.file_name().and_then(|name| name.to_str()).filter(|name| !name.is_empty());
            let dir = match name {
                None | Some("keygate.db") => "keygate-blobs".to_owned(),
                Some(name) => format!("{name}-blobs"),
            };
            path.parent().unwrap_or(Path::new("")).join(dir)
        }
        None => PathBuf::from("keygate-blobs"),
    }
}

/// [`default`], unless it does not exist while `keygate-blobs`
/// beside it does with no `keygate.db` of its own: every SQLite database
/// kept its bundles there before, and which one they belong to is the
/// operator's to say.
pub(super) fn default_in_use(url: &str) -> Result<PathBuf, String> {
    let dir = default(url);
    let former = dir.with_file_name("keygate-blobs");
    let keygate_db_beside = || {
        let beside = std::fs::read_dir(
            former.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
        )
        .into_iter()
        .flatten()
        .flatten();
        // A SQLite database called `keygate`, by the header every one
        // begins with: not its `-wal`, nor a `keygate.log`.
        let a_database = |path: &Path| {
            use std::io::Read;
            let mut header = [0u8; 16];
            path.file_stem() == Some("keygate".as_ref())
                && std::fs::File::open(path).and_then(|mut file| file.read_exact(&mut header)).is_ok()
                && &header == b"SQLite format 3\0"
        };
        beside.map(|entry| entry.path()).any(|path| a_database(&path))
    };
    if dir != former && !dir.exists() && former.exists() && !keygate_db_beside() {
        return Err(format!(
            "this database keeps its bundles in {dir}, which does not exist, while {former} beside it does \
             (where every SQLite database kept them before): if they are this database's, rename it to {dir} \
             or pass --blob-dir {former}; if another database's, create {dir}",
            dir = dir.display(),
            former = former.display()
        ));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_live_beside_a_sqlite_file() {
        assert_eq!(default("sqlite://data/keygate.db"), PathBuf::from("data/keygate-blobs"));
        assert_eq!(default("sqlite://keygate.db?mode=rwc"), PathBuf::from("keygate-blobs"));
        assert_eq!(default("sqlite:///var/lib/keygate/k.db"), PathBuf::from("/var/lib/keygate/k.db-blobs"));
        // Twelfth review: `q.db` and `q.sqlite` shared one, and removed each other's bundles.
        assert_eq!(default("sqlite://data/q.sqlite"), PathBuf::from("data/q.sqlite-blobs"));
        assert_eq!(default("sqlite://data/q.db"), PathBuf::from("data/q.db-blobs"));
        assert_eq!(default("postgres://db/keygate"), PathBuf::from("keygate-blobs"));
    }
}
