//! The SQLite backend: one file, zero set-up.
//!
//! WAL with `synchronous = FULL`, so an acknowledged write survives a crash
//! or a power cut; foreign keys on; a busy timeout instead of instant
//! `SQLITE_BUSY`. Writes go through a single connection, so transactions
//! never contend for the write lock inside one process; reads use a small
//! read-only pool and run alongside.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::sql::impl_store;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const READERS: u32 = 4;

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
        if options.get_filename().as_os_str() == ":memory:" {
            return Err(StoreError::Config(
                "keygate keeps its keys in a file; use sqlite://PATH, not an in-memory database".into(),
            ));
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        MIGRATOR.run(&writer).await.map_err(|e| StoreError::Config(format!("migrations failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(Self { reader, writer })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn close_pools(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

impl_store!(SqliteStore, sqlx::Sqlite);
