//! keygate ↔ PostgreSQL over TLS: `sslmode=require` (or `verify-full` with
//! `sslrootcert=`) in the URL is honoured, and the connection is encrypted.
//!
//! Runs with `KEYGATE_TEST_DATABASE=postgres://…` and `--include-ignored`,
//! against a server with `ssl = on`.

use keygate_store::Access;
use keygate_testkit::{TestDatabase, postgres_base};
use sqlx::Connection;

/// Fourteenth review: the binary's driver had no TLS at all, so every
/// replica spoke to its database in plain text and `sslmode=require` failed.
#[tokio::test]
#[ignore = "needs PostgreSQL with ssl = on: KEYGATE_TEST_DATABASE=postgres://…"]
async fn sslmode_require_encrypts_the_connection() {
    let base = postgres_base().expect("KEYGATE_TEST_DATABASE=postgres://…");
    let db = TestDatabase::postgres(&base).await;
    let url = format!("{}?sslmode=require", db.url());
    let store = keygate_store::connect_for(&url, Access::Create).await.expect("a TLS connection");
    store.close().await;
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .expect("pg_stat_ssl");
    assert!(encrypted, "the connection is not encrypted");
    connection.close().await.expect("close");
}
