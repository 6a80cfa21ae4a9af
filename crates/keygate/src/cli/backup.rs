//! `keygate backup` and `keygate restore`: a SQLite database and its
//! bundles, copied while `serve` runs and put back while it does not.
//!
//! Policy: the database is copied first (one consistent snapshot, see
//! [`keygate_store::sqlite::snapshot`]) and its bundle files after it, so
//! every bundle the snapshot lists has a complete file (a file appears only
//! once its upload is complete, and is listed after that); files the
//! snapshot does not list are removed when a restored `serve` starts. A
//! restore replaces nothing a server holds, checks the snapshot first, and
//! moves what it replaces aside rather than deleting it. What they write is
//! its owner's alone (files 0600, directories 0700), as the server's own
//! database and bundles are. PostgreSQL has its own tools, which these
//! commands name.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keygate_store::sqlite::snapshot;
use serde_json::json;

use super::blob_dir;

/// Backs up the database at `url` to the new file `to`, and its bundles
/// (from `blobs`, or the default directory) to the directory beside `to`.
pub(super) async fn backup(url: &str, to: &Path, blobs: Option<&Path>) -> Result<serde_json::Value, String> {
    if is_postgres(url) {
        return Err(format!(
            "on PostgreSQL, back up with pg_dump, consistent while keygate serves, bundles included:\n\n    \
             pg_dump --format=custom --file=keygate.dump '{}'\n\n(add your password through PGPASSWORD \
             or ~/.pgpass, not the URL)",
            keygate_store::describe_url(url)
        ));
    }
    let source = match blobs {
        Some(dir) => dir.to_owned(),
        None => blob_dir::default_in_use(url)?,
    };
    if to.exists() {
        return Err(format!("{} exists: back up to a new file", to.display()));
    }
    let target = beside(to);
    if target.exists() {
        return Err(format!("{} exists: back up to a file whose bundle directory is new", target.display()));
    }
    snapshot::backup(url, to).await.map_err(|e| e.to_string())?;
    let files = copy_files(&source, &target)?;
    Ok(json!({ "backup": to, "bundles": target, "bundle_files": files }))
}

/// Restores the snapshot `from` (and the bundles beside it) into the
/// database at `url`, which no server may hold.
pub(super) async fn restore(
    from: &Path,
    url: &str,
    blobs: Option<&Path>,
) -> Result<serde_json::Value, String> {
    if is_postgres(url) {
        return Err(format!(
            "on PostgreSQL, restore a pg_dump backup with pg_restore, every replica stopped:\n\n    \
             pg_restore --clean --if-exists --dbname='{}' keygate.dump",
            keygate_store::describe_url(url)
        ));
    }
    let database = snapshot::database_path(url).map_err(|e| e.to_string())?;
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let _held = snapshot::hold(&database).map_err(|e| e.to_string())?;
    let plan = snapshot::check_snapshot(from).await.map_err(|e| e.to_string())?;
    let bundles = match blobs {
        Some(dir) => dir.to_owned(),
        None => blob_dir::default(url),
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", database.display()));
        moved.extend(move_aside(&path, &stamp)?);
    }
    moved.extend(move_aside(&bundles, &stamp)?);
    let partial = PathBuf::from(format!("{}.restoring", database.display()));
    let copy = || -> std::io::Result<()> {
        std::fs::copy(from, &partial)?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &database)
    };
    copy().map_err(|e| format!("cannot write {}: {e}", database.display()))?;
    let files = copy_files(&beside(from), &bundles)?;
    Ok(json!({
        "restored": database,
        "schema_step": plan.current,
        "pending_steps": plan.pending.len(),
        "bundles": bundles,
        "bundle_files": files,
        "moved_aside": moved,
    }))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// The bundle directory that goes with a database file.
fn beside(database: &Path) -> PathBuf {
    blob_dir::default(&format!("sqlite://{}", database.display()))
}

/// Renames `path`, if it exists, to `PATH.before-restore-STAMP`.
fn move_aside(path: &Path, stamp: &impl std::fmt::Display) -> Result<Option<PathBuf>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let aside = PathBuf::from(format!("{}.before-restore-{stamp}", path.display()));
    std::fs::rename(path, &aside).map_err(|e| format!("cannot move {} aside: {e}", path.display()))?;
    Ok(Some(aside))
}

/// Copies the bundle files of `from` (not uploads in progress, whose names
/// start with a dot) into `to`; how many. A missing `from` has none.
fn copy_files(from: &Path, to: &Path) -> Result<u64, String> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(format!("cannot read {}: {error}", from.display())),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let copy = to.join(&name);
        std::fs::copy(entry.path(), &copy)
            .and_then(|_| std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("cannot copy {}: {e}", entry.path().display()))?;
        copied += 1;
    }
    Ok(copied)
}
