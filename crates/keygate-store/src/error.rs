//! What can go wrong in storage, once for every backend.

use std::fmt;

use keygate_core::rules::Refusal;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The kinds of rows a write may find missing or already there; the HTTP
/// layer maps each to its contract code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Organization,
    /// The user's membership of the organization in question.
    Membership,
    User,
    App,
    Bundle,
    ApiKey,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Organization => "organization",
            Entity::Membership => "membership",
            Entity::User => "user",
            Entity::App => "app",
            Entity::Bundle => "bundle",
            Entity::ApiKey => "api key",
        })
    }
}

/// A storage failure. Its `Display` never holds a secret or a bound value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is too busy: retry later (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The change's audit event could not be written, so the change was
    /// rolled back: nothing happened (503).
    #[error("the audit log cannot be written; the change was not made: {0}")]
    AuditUnavailable(#[source] sqlx::Error),
    #[error("{0} not found")]
    NotFound(Entity),
    #[error("{0} already exists")]
    Conflict(Entity),
    /// A rule of [`keygate_core::rules`], checked inside the transaction
    /// against the rows as they stand, refused the change.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// A row that the code cannot read back: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Config(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &error {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) => {
                StoreError::Unavailable(error)
            }
            E::Database(db) if is_transient(db.code().as_deref()) => StoreError::Unavailable(error),
            _ => StoreError::Database(error),
        }
    }
}

impl StoreError {
    /// Whether PostgreSQL aborted the transaction to break a deadlock.
    pub(crate) fn is_deadlock(&self) -> bool {
        match self {
            StoreError::Unavailable(sqlx::Error::Database(e))
            | StoreError::Database(sqlx::Error::Database(e)) => e.code().as_deref() == Some("40P01"),
            _ => false,
        }
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> Self {
        StoreError::Refused(refusal)
    }
}

/// SQLite's BUSY, LOCKED, FULL and IOERR, PostgreSQL's connection, resource
/// and shutdown classes, and a cancelled statement.
fn is_transient(code: Option<&str>) -> bool {
    // SQLite: 5 BUSY, 6 LOCKED, 13 FULL, 10 IOERR (and its extended codes,
    // which end in 10 modulo 256), 517/261/262 BUSY and LOCKED variants.
    // PostgreSQL: 53xxx insufficient resources (disk full), 57014
    // statement_timeout, 40001/40P01 serialization failure or deadlock.
    let sqlite_io = code.and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| c & 0xff == 10);
    sqlite_io
        || matches!(code, Some("5" | "6" | "13" | "517" | "261" | "262" | "57014" | "40001" | "40P01"))
        || code.is_some_and(|c| c.starts_with("08") || c.starts_with("53") || c.starts_with("57P"))
}

/// Maps constraint violations of a write to what they mean: a reference to
/// a `missing` row, or a `duplicate` of an existing one.
pub(crate) fn write_error(error: sqlx::Error, missing: Entity, duplicate: Entity) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(missing);
        }
        if db.is_unique_violation() {
            return StoreError::Conflict(duplicate);
        }
    }
    error.into()
}

/// An error of the statement that writes an audit event: the transaction
/// it belongs to will be rolled back. A database that is gone or busy stays
/// [`StoreError::Unavailable`]; anything else refusing the event makes the
/// change [`StoreError::AuditUnavailable`].
pub(crate) fn audit_error(error: sqlx::Error) -> StoreError {
    match StoreError::from(error) {
        StoreError::Database(e) => StoreError::AuditUnavailable(e),
        other => other,
    }
}
