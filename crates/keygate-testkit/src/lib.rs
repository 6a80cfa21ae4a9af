//! A fresh database for each test, on the backend the run asks for.
//!
//! `KEYGATE_TEST_DATABASE` unset (or `sqlite`): a SQLite file in a temporary
//! directory. Set to a PostgreSQL URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`: a new database named
//! `keygate_test_<uuid>` on that server, dropped when the test ends, so runs
//! and tests never see each other's data.

use std::path::Path;

pub mod process;
pub mod proxy;
pub mod raw_http;
pub mod reverse_proxy;

pub use process::ServerProcess;

use sqlx::Connection;

pub const ENV: &str = "KEYGATE_TEST_DATABASE";

/// The PostgreSQL server the run was pointed at, if any.
pub fn postgres_base() -> Option<String> {
    std::env::var(ENV).ok().filter(|url| url.starts_with("postgres"))
}

pub struct TestDatabase {
    url: String,
    dir: tempfile::TempDir,
    /// (server URL, database name) to drop at the end.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A new, empty database on the backend `KEYGATE_TEST_DATABASE` names.
    pub async fn new() -> Self {
        match postgres_base() {
            Some(base) => Self::postgres(&base).await,
            None => Self::sqlite(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
        Self { url, dir, postgres: None }
    }

    pub async fn postgres(base: &str) -> Self {
        let name = format!("keygate_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(base)
            .await
            .unwrap_or_else(|e| panic!("{ENV}: cannot connect to PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        Self { url: with_database(base, &name), dir, postgres: Some((base.to_owned(), name)) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A scratch directory that lives as long as the database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((base, name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside a runtime; a thread of its own can block freely.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base).await.map_err(std::io::Error::other)?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("note: could not drop test database {}", self.url);
        }
    }
}

/// `base` with its database name replaced by `name`.
pub fn with_database(base: &str, name: &str) -> String {
    let (url, query) = base.split_once('?').map_or((base, None), |(u, q)| (u, Some(q)));
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let root = match url[authority_start..].find('/') {
        Some(slash) => &url[..authority_start + slash],
        None => url,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_replaced() {
        let f = super::with_database;
        assert_eq!(
            f("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(f("postgres://u@h", "t"), "postgres://u@h/t");
        assert_eq!(f("postgres://u@h/db?sslmode=disable", "t"), "postgres://u@h/t?sslmode=disable");
    }
}
