//! Backups of a SQLite database while it is served, and the checks a
//! snapshot passes before it is restored.
//!
//! Policy: a backup is SQLite's own consistent copy (`VACUUM INTO`, one read
//! transaction: every write committed before it began, none after), taken
//! beside a running server without stopping its writes. A snapshot is
//! restored only when no server holds the database it replaces (the serve
//! lock is held for the whole restore), and only when it passes SQLite's
//! integrity check and is a keygate database whose schema this binary knows.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::MIGRATOR;
use super::file::{ServeLock, refuse_hard_links};
use crate::sql::{Db, sql};
use crate::{MigrationPlan, Result, StoreError};

/// Writes a consistent copy of the database at `url` to `to` (a path that
/// must not exist yet), while it may be served.
pub async fn backup(url: &str, to: &Path) -> Result<()> {
    if to.try_exists().unwrap_or(true) {
        return Err(StoreError::Config(format!("{} exists: back up to a new file", to.display())));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
    let path = options.get_filename().to_owned();
    if !path.try_exists().unwrap_or(true) {
        return Err(StoreError::Config(format!("there is no database at {}", path.display())));
    }
    refuse_hard_links(&path)?;
    let mut connection = options
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| StoreError::Config(format!("cannot open {}: {e}", path.display())))?;
    let target = to.to_str().ok_or_else(|| StoreError::Config("the backup path is not UTF-8".into()))?;
    // The owner's alone from the start: SQLite writes into an empty file
    // that exists, keeping its mode.
    create_owner_only(to)?;
    let copied =
        sql("VACUUM INTO $1").bind(target.to_owned()).execute(&mut Db::Sqlite(&mut connection)).await;
    let _ = connection.close().await;
    copied.map_err(|e| StoreError::Config(format!("cannot write the backup to {}: {e}", to.display())))?;
    Ok(())
}

/// What restoring `snapshot` would bring: checked to be a sound keygate
/// database whose schema this binary knows.
pub async fn check_snapshot(snapshot: &Path) -> Result<MigrationPlan> {
    let bad = |why: String| StoreError::Config(format!("{} cannot be restored: {why}", snapshot.display()));
    let options = SqliteConnectOptions::new().filename(snapshot).read_only(true).immutable(true);
    let mut connection = options.connect().await.map_err(|e| bad(format!("not a SQLite database ({e})")))?;
    let checked = async {
        let mut db = Db::Sqlite(&mut connection);
        let integrity: Option<String> = sql("PRAGMA integrity_check").scalar(&mut db).await?;
        if integrity.as_deref() != Some("ok") {
            return Err(bad(format!("SQLite's integrity check says {}", integrity.unwrap_or_default())));
        }
        let plan = crate::migrations::plan(&mut db, &MIGRATOR).await?;
        if plan.current.is_none() {
            return Err(bad("it holds no keygate schema".to_owned()));
        }
        plan.refuse_newer()?;
        Ok(plan)
    };
    let plan = checked.await.map_err(|e| match e {
        StoreError::Database(e) | StoreError::Unavailable(e) => bad(format!("not a SQLite database ({e})")),
        e => e,
    });
    let _ = connection.close().await;
    plan
}

/// Holds the database file at `path` as `serve` would, so that none starts
/// while it is replaced; an error names the server holding it.
pub fn hold(path: &Path) -> Result<ServeLock> {
    ServeLock::acquire(path)
}

/// An empty file only its owner may read, at a path that must be new (a
/// symbolic link is not followed).
fn create_owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", path.display())))
}

/// The file a `sqlite://` URL names.
pub fn database_path(url: &str) -> Result<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
    Ok(options.get_filename().to_owned())
}
