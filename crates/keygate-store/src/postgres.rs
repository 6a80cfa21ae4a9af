//! The PostgreSQL backend: several stateless replicas on one database.
//!
//! One pool with bounded waits: acquiring a connection gives up after
//! [`ACQUIRE_TIMEOUT`] and a statement after [`STATEMENT_TIMEOUT`], so an
//! unreachable database turns into a prompt 503 rather than a hang; broken
//! connections are tested and replaced before use, so keygate recovers on
//! its own when the database comes back. Migrations take PostgreSQL's
//! advisory lock, so replicas may start together.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::sql::impl_store;
use crate::{Result, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 16;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {}", redacted(&e))))?
            .application_name("keygate")
            .options([("statement_timeout", format!("{}ms", STATEMENT_TIMEOUT.as_millis()))]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Config(format!("cannot connect to PostgreSQL: {}", redacted(&e))))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Config(format!("migrations failed: {e}")))?;
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}

/// sqlx's connection errors do not echo the URL, but be sure no password does.
fn redacted(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    match text.find("://") {
        Some(start) => match text[start..].find('@') {
            Some(at) => format!("{}://…{}", &text[..start], &text[start + at..]),
            None => text,
        },
        None => text,
    }
}

impl_store!(PostgresStore, sqlx::Postgres);
