//! Which schema steps a database has, against those this binary carries:
//! what `keygate migrate --dry-run` lists, and why a binary refuses a
//! database that a newer keygate migrated.
//!
//! Policy: a database with a step this binary does not know was made by a
//! newer release; running on it could misread or undo what that release
//! wrote, so every command refuses it, naming both versions, before any
//! migration runs.

use sqlx::migrate::Migrator;

use crate::sql::{Db, sql};
use crate::{Result, StoreError};

/// A schema step: its version and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub description: String,
}

/// A database's schema steps against this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// The newest step the database has; `None` for an empty one.
    pub current: Option<i64>,
    /// This binary's steps the database has not had yet, oldest first.
    pub pending: Vec<Migration>,
    /// Steps the database had that this binary does not know.
    pub unknown: Vec<i64>,
    /// This binary's newest step.
    pub latest: i64,
}

impl MigrationPlan {
    fn new(migrator: &Migrator, applied: &[i64]) -> Self {
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        Self {
            current: applied.iter().copied().max(),
            pending: migrator
                .iter()
                .filter(|m| !applied.contains(&m.version))
                .map(|m| Migration { version: m.version, description: m.description.to_string() })
                .collect(),
            unknown: applied.iter().copied().filter(|v| !known.contains(v)).collect(),
            latest: known.iter().copied().max().unwrap_or_default(),
        }
    }

    /// `Err` for a database a newer keygate migrated.
    pub fn refuse_newer(&self) -> Result<()> {
        match self.unknown.as_slice() {
            [] => Ok(()),
            unknown => Err(StoreError::Config(format!(
                "this database was migrated by a newer keygate: it has schema step {} that this \
                 binary ({}) does not know, which knows up to step {}. Run the newer release, or \
                 restore a backup taken before the upgrade",
                unknown.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                env!("CARGO_PKG_VERSION"),
                self.latest,
            ))),
        }
    }
}

/// The plan of the database `db` reaches for `migrator`'s steps, read
/// without changing anything.
pub(crate) async fn plan(db: &mut Db<'_>, migrator: &Migrator) -> Result<MigrationPlan> {
    let table = if db.is_postgres() {
        "SELECT to_regclass('_sqlx_migrations') IS NOT NULL"
    } else {
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')"
    };
    let exists: Option<bool> = sql(table).scalar(db).await?;
    let applied: Vec<(i64,)> = if exists.unwrap_or(false) {
        sql("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(db).await?
    } else {
        Vec::new()
    };
    let applied: Vec<i64> = applied.into_iter().map(|(v,)| v).collect();
    Ok(MigrationPlan::new(migrator, &applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_pending_known_or_unknown() {
        let migrator = &crate::sqlite::MIGRATOR;
        let all: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let fresh = MigrationPlan::new(migrator, &[]);
        assert_eq!((fresh.current, fresh.pending.len(), fresh.unknown.len()), (None, all.len(), 0));
        fresh.refuse_newer().expect("an empty database");
        let behind = MigrationPlan::new(migrator, &all[..2]);
        assert_eq!(behind.pending.first().map(|m| m.version), Some(all[2]));
        let newer = MigrationPlan::new(migrator, &[all.as_slice(), &[9_999]].concat());
        assert!(newer.pending.is_empty());
        let error = newer.refuse_newer().expect_err("refused").to_string();
        assert!(error.contains("newer keygate") && error.contains("9999"), "{error}");
        assert!(error.contains(&format!("up to step {}", all[all.len() - 1])), "{error}");
    }
}
