//! The SQLite backend: one file, zero set-up.
//!
//! WAL with `synchronous = FULL`, so an acknowledged write survives a crash
//! or a power cut; foreign keys on; a busy timeout instead of instant
//! `SQLITE_BUSY`. Every write is a job for the one task that owns the
//! single writer connection, which group-commits them: the jobs waiting
//! share one `BEGIN IMMEDIATE` transaction and one fsync, each in its own
//! savepoint, and each is answered once that commit is durable
//! ([`writer`]). So writes never contend for the write lock inside one
//! process and take it up front against other processes; reads use a small
//! read-only pool and run alongside. `:memory:` is refused: keys are kept
//! in a file.

mod file;
pub mod snapshot;
mod usage;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::backend::{Backend, BoxFuture, Written};
use crate::change::ChangeFeed;
use crate::outage::Outage;
use crate::sql::Db;
use crate::{Access, AuthCache, Result, Store, StoreError};
use file::{DatabaseFile, ServeLock};
use writer::Writer;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const READERS: u32 = 4;

/// How often the watcher reads the `auth_epoch` counter.
const POLL: Duration = Duration::from_millis(100);

pub struct SqliteStore {
    reader: SqlitePool,
    writer: Writer,
    /// How the watcher opens its own read connection.
    watch_options: SqliteConnectOptions,
    changes: ChangeFeed,
    watchers: crate::watchers::Watchers,
    /// The file opened, checked before each batch of writes and by `ping`.
    file: DatabaseFile,
    /// Held by `serve` until the store is dropped.
    _lock: Option<ServeLock>,
}

impl SqliteStore {
    /// Opens the database file named by `url` for `access` (creating it
    /// only if that allows) and runs its migrations.
    pub async fn connect(url: &str, access: Access) -> Result<Self> {
        if not_a_file(url) {
            return Err(StoreError::Config(
                "keygate keeps its keys in a file; use sqlite://PATH, not an in-memory database".into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
        let path = options.get_filename().to_owned();
        let exists = path.try_exists().unwrap_or(true);
        if !exists && access == Access::Existing {
            return Err(StoreError::Config(format!(
                "there is no database at {}: point --database at the server's file, or create one \
                 with `keygate bootstrap`",
                path.display()
            )));
        }
        match access {
            // A server that silently started over would hide every key it lost.
            Access::Serve if !exists => {
                tracing::warn!(path = %path.display(), "there is no database at this path: creating a new, empty one");
            }
            _ if !exists => tracing::info!(path = %path.display(), "creating a new database"),
            _ => {}
        }
        if !exists && access != Access::Existing {
            create_owner_only(&path)?;
        }
        file::refuse_hard_links(&path)?;
        let lock = match access {
            Access::Serve => Some(ServeLock::acquire(&path)?),
            Access::Create | Access::Existing => None,
        };
        let options = options
            .create_if_missing(access != Access::Existing)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let mut writer = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| StoreError::Config(crate::redact_credentials(&e.to_string())))?;
        crate::migrations::plan(&mut Db::Sqlite(&mut writer), &MIGRATOR).await?.refuse_newer()?;
        MIGRATOR.run(&mut writer).await.map_err(|e| StoreError::Config(format!("migrations failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone().read_only(true))
            .await
            .map_err(|e| StoreError::Config(crate::redact_credentials(&e.to_string())))?;
        let changes = ChangeFeed::default();
        let file = DatabaseFile::at(&path)?;
        Ok(Self {
            reader,
            writer: Writer::start(writer, changes.clone(), Some(file.clone())),
            watch_options: options.read_only(true),
            changes,
            watchers: Default::default(),
            file,
            _lock: lock,
        })
    }

    /// Runs `work` in the writer's next batch, under the database's write
    /// lock and in its own savepoint; returns its value once the batch is
    /// durable and its changes announced.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static,
    {
        self.writer.write(work).await
    }
}

#[async_trait]
impl Backend for SqliteStore {
    fn reads(&self) -> Db<'_> {
        Db::SqlitePool(&self.reader)
    }

    async fn transact<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Db<'c>) -> BoxFuture<'c, Result<Written<T>>> + Send + 'static,
    {
        self.writer.write(move |conn| work(Db::Sqlite(conn))).await
    }

    async fn write_usage(&self, keys: Vec<crate::usage::KeyTotal>) -> Result<()> {
        usage::write(self, keys).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.file.check().map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.watchers.stop();
        self.writer.close().await;
        self.reader.close().await;
    }

    fn attach_cache(&self, cache: Arc<dyn AuthCache>) {
        self.changes.attach(cache.clone());
        let watcher = tokio::spawn(watch(self.watch_options.clone(), cache));
        self.watchers.keep(&watcher);
    }

    /// The read pool; the writer is one connection, always open.
    fn pool_use(&self) -> Vec<crate::PoolUse> {
        vec![crate::PoolUse {
            pool: "read",
            size: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: self.reader.options().get_max_connections(),
        }]
    }
}

/// Keeps `cache` coherent with other processes writing the file (`keygate
/// user add` while `serve` runs): reads the `auth_epoch` counter, which
/// every change to what authentication returns moves in its transaction,
/// on its own connection every [`POLL`], and flushes the cache whenever it
/// moved (this process's own changes included, already invalidated
/// precisely; usage and audit writes leave it alone). Each read confirms
/// the cache; until the first, and after an error, the cache is not
/// trusted; a watcher that cannot read waits longer each time
/// ([`Outage`]).
async fn watch(options: SqliteConnectOptions, cache: Arc<dyn AuthCache>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage = Outage::new(
        "cannot watch the database for changes; not trusting the cache",
        POLL,
        Duration::from_secs(10),
    );
    loop {
        cache.distrust();
        let mut conn: SqliteConnection = match sqlx::Connection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(error) => {
                tokio::time::sleep(outage.failed(&error)).await;
                continue;
            }
        };
        let mut seen: Option<i64> = None;
        loop {
            let checked = std::time::Instant::now();
            let epoch = sqlx::query_scalar::<_, i64>("SELECT value FROM auth_epoch WHERE id = 1");
            let version = match epoch.fetch_one(&mut conn).await {
                Ok(version) => version,
                Err(error) => {
                    tokio::time::sleep(outage.failed(&error)).await;
                    break;
                }
            };
            outage.recovered();
            if seen != Some(version) {
                cache.flush();
                seen = Some(version);
            }
            cache.confirmed(checked);
            tick.tick().await;
        }
    }
}

/// Whether `url` names an in-memory (or nameless, temporary) database
/// rather than a file, read the way sqlx parses it: `sqlite::memory:`,
/// `sqlite://:memory:`, `sqlite://` or `mode=memory`.
fn not_a_file(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let memory_mode = params
        .split('&')
        .any(|param| param.split_once('=').is_some_and(|(k, v)| k == "mode" && v == "memory"));
    database == ":memory:" || database.is_empty() || memory_mode
}

/// Creates the empty database file `path` readable by its owner alone:
/// SQLite gives its WAL and shared-memory files the database file's
/// permissions, so nobody else on the machine reads keys' digests, emails
/// or the audit log.
/// The schema steps the database file at `url` has not had yet, read
/// without changing it (the file must exist).
pub(crate) async fn migration_plan(url: &str) -> Result<crate::MigrationPlan> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("invalid SQLite URL: {e}")))?;
    let path = options.get_filename().to_owned();
    if !path.try_exists().unwrap_or(true) {
        return Err(StoreError::Config(format!("there is no database at {}", path.display())));
    }
    file::refuse_hard_links(&path)?;
    let mut connection = SqliteConnection::connect_with(&options.read_only(true))
        .await
        .map_err(|e| StoreError::Config(crate::redact_credentials(&e.to_string())))?;
    let plan = crate::migrations::plan(&mut Db::Sqlite(&mut connection), &MIGRATOR).await;
    let _ = connection.close().await;
    plan
}

fn create_owner_only(path: &std::path::Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Config(format!("cannot create {}: {error}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sqlx::Connection;

    use super::*;
    use keygate_core::{Mode, Role};
    use uuid::Uuid;

    use crate::KeyStore;

    /// A user (id 1), an organization (id 2) where they are an admin, and
    /// their key 7, as the previous release wrote them: UUIDs as 16-byte
    /// blobs, times as RFC 3339 text, apps as a JSON array.
    const PREVIOUS_RELEASE_ROWS: &str = "
        INSERT INTO users (id, email, created_at)
        VALUES (x'00000000000000000000000000000001', 'old@example.com', '2024-05-01T10:00:00.123+00:00');
        INSERT INTO organizations (id, name, created_at, updated_at)
        VALUES (x'00000000000000000000000000000002', 'Old', '2024-05-01T10:00:00.123+00:00',
                '2024-05-01T10:00:00.123+00:00');
        INSERT INTO memberships (org_id, user_id, role, created_at)
        VALUES (x'00000000000000000000000000000002', x'00000000000000000000000000000001', 'admin',
                '2024-05-01T10:00:00.123+00:00');
        INSERT INTO api_keys
            (id, digest, preview, mode, name, user_id, org_id, limited_to_apps, created_at, updated_at)
        VALUES (7, x'0909090909090909090909090909090909090909090909090909090909090909', 'kg_…abcd', 'write',
                'old key', x'00000000000000000000000000000001', x'00000000000000000000000000000002',
                '[\"com.example.a\"]', '2024-05-01T10:00:00.123+00:00', '2024-05-01T10:00:00.123+00:00');
    ";

    /// Copies the migrations up to `last` into `dir`: the schema as an
    /// earlier release left it.
    fn migrations_up_to(last: i64, dir: &Path) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(source).expect("migrations") {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let version: i64 = name.split('_').next().expect("version").parse().expect("number");
            if version <= last {
                std::fs::copy(&path, dir.join(&name)).expect("copy");
            }
        }
    }

    #[tokio::test]
    async fn a_database_of_the_previous_release_opens_and_reads_back_intact() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let old = dir.path().join("migrations");
        std::fs::create_dir(&old).expect("mkdir");
        migrations_up_to(5, &old);
        let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
        {
            let options = SqliteConnectOptions::from_str(&url).expect("url").create_if_missing(true);
            let mut conn = SqliteConnection::connect_with(&options).await.expect("connect");
            let migrator = sqlx::migrate::Migrator::new(old.as_path()).await.expect("migrator");
            assert_eq!(migrator.iter().count(), 5);
            migrator.run(&mut conn).await.expect("old migrations");
            sqlx::raw_sql(PREVIOUS_RELEASE_ROWS).execute(&mut conn).await.expect("old rows");
            conn.close().await.expect("close");
        }

        let store = SqliteStore::connect(&url, Access::Create).await.expect("the new release opens it");
        let key = store.key_by_id(7).await.expect("read").expect("the key is there");
        assert_eq!(key.digest.as_bytes(), &[9u8; 32]);
        assert_eq!((key.mode, key.name.as_str(), key.preview.as_str()), (Mode::Write, "old key", "kg_…abcd"));
        assert_eq!((key.user_id, key.org_id), (Uuid::from_u128(1), Some(Uuid::from_u128(2))));
        let apps: Vec<&str> = key.limited_to_apps.iter().map(|a| a.as_str()).collect();
        assert_eq!(apps, ["com.example.a"]);
        assert_eq!(key.created_at.to_rfc3339(), "2024-05-01T10:00:00.123+00:00");
        let (_, role) = store.key_and_owner_role(&key.digest).await.expect("read").expect("found");
        assert_eq!(role, Some(Role::Admin));
        store.close().await;
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://", "sqlite://keygate.db?mode=memory"] {
            let refused = SqliteStore::connect(url, Access::Create).await.err().expect("refused");
            assert!(matches!(refused, StoreError::Config(_)), "{url}: {refused:?}");
        }
        assert!(!not_a_file("sqlite://keygate.db?mode=rwc"));
        assert!(!not_a_file("sqlite:///var/lib/keygate/keygate.db"));
    }
}
