//! The PostgreSQL backend: several stateless replicas on one database.
//!
//! One pool with bounded waits: acquiring a connection gives up after
//! [`ACQUIRE_TIMEOUT`] and a statement after [`STATEMENT_TIMEOUT`], so an
//! unreachable database turns into a prompt 503 rather than a hang; broken
//! connections are tested and replaced before use, so keygate recovers on
//! its own when the database comes back. Migrations take PostgreSQL's
//! advisory lock, so replicas may start together.
//!
//! Replicas may write at once: each write is one transaction that takes
//! the row locks [`crate::backend::RowLock`] names before it decides, and
//! tells every replica's cache what it changed with a `NOTIFY` sent when,
//! and only if, it commits (a replica applies its own at once, and skips
//! its notice).

mod blobs;
mod failures;
mod usage;
mod windows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::change::ChangeFeed;
use crate::outage::Outage;
use crate::{AuthCache, AuthChange, PoolUse, Result, Store, StoreError, redact_credentials};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The schema steps the database at `url` has not had yet, read without
/// changing it.
pub(crate) async fn migration_plan(url: &str) -> Result<crate::MigrationPlan> {
    use sqlx::Connection;
    let mut connection =
        sqlx::PgConnection::connect(url).await.map_err(|e| config("cannot connect to PostgreSQL", &e))?;
    let plan = crate::migrations::plan(&mut crate::sql::Db::Postgres(&mut connection), &MIGRATOR).await;
    let _ = connection.close().await;
    plan
}

/// How long a request waits for a free connection before the store reports
/// itself unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one statement may run before PostgreSQL cancels it.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: u32 = 16;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The channel on which every write announces its [`AuthChange`]s.
pub(crate) const AUTH_CHANNEL: &str = "keygate_auth";
/// How often a replica checks that its subscription still delivers.
const HEARTBEAT: Duration = Duration::from_millis(150);
/// A subscription that delivered nothing for this long is replaced.
const SILENCE: Duration = Duration::from_secs(2);

pub struct PostgresStore {
    pool: PgPool,
    /// Connections apart from the pool, one for each `LISTEN`.
    listen_pool: PgPool,
    /// This process among the replicas: its heartbeats and the failed
    /// authentications it records carry it.
    replica: Uuid,
    changes: ChangeFeed,
    watchers: crate::watchers::Watchers,
    blobs: Arc<blobs::PgBlobs>,
    windows: Arc<windows::PgRateWindows>,
    failures: failures::FailureQueue,
}

impl PostgresStore {
    /// Connects and runs the migrations (under sqlx's advisory lock).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| config("invalid PostgreSQL URL", &e))?
            .application_name("keygate")
            .options([("statement_timeout", format!("{}ms", STATEMENT_TIMEOUT.as_millis()))]);
        let listen_pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .connect_lazy_with(options.clone());
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await
            .map_err(|e| match e {
                // The pool only says it waited; one direct attempt says why
                // (connection refused, unknown host, authentication failed).
                sqlx::Error::PoolTimedOut => StoreError::Config(String::new()),
                e => config("cannot connect to PostgreSQL", &e),
            });
        let pool = match pool {
            Ok(pool) => pool,
            Err(StoreError::Config(message)) if message.is_empty() => {
                use sqlx::ConnectOptions;
                let cause = match options.connect().await {
                    Ok(_) => "no connection within the pool's timeout".to_owned(),
                    Err(error) => error.to_string(),
                };
                return Err(config("cannot connect to PostgreSQL", &cause));
            }
            Err(error) => return Err(error),
        };
        crate::migrations::plan(&mut crate::sql::Db::PostgresPool(&pool), &MIGRATOR).await?.refuse_newer()?;
        MIGRATOR.run(&pool).await.map_err(|e| config("migrations failed", &e))?;
        let replica = Uuid::new_v4();
        let (failures, failure_writer) = failures::share(pool.clone(), replica);
        let watchers = crate::watchers::Watchers::default();
        watchers.keep(&failure_writer);
        Ok(Self {
            blobs: Arc::new(blobs::PgBlobs { pool: pool.clone() }),
            windows: Arc::new(windows::PgRateWindows { pool: pool.clone() }),
            pool,
            listen_pool,
            replica,
            changes: ChangeFeed::default(),
            watchers,
            failures,
        })
    }
}

#[async_trait]
impl crate::backend::Backend for PostgresStore {
    fn reads(&self) -> crate::sql::Db<'_> {
        crate::sql::Db::PostgresPool(&self.pool)
    }

    async fn transact<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                crate::sql::Db<'c>,
            ) -> crate::backend::BoxFuture<'c, Result<crate::backend::Written<T>>>
            + Send
            + 'static,
    {
        let mut tx = self.pool.begin().await?;
        let (value, changes) = work(crate::sql::Db::Postgres(&mut tx)).await?;
        // Other replicas hear of the changes when, and only if, they commit.
        for change in &changes {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(AUTH_CHANNEL)
                .bind(format!("{}{}", change_prefix(self.replica), change.to_payload()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.changes.published(&changes);
        Ok(value)
    }

    async fn write_usage(&self, keys: Vec<crate::usage::KeyTotal>) -> Result<()> {
        usage::write(self, keys).await
    }
}

fn config(what: &str, error: &dyn std::fmt::Display) -> StoreError {
    StoreError::Config(format!("{what}: {}", redact_credentials(&error.to_string())))
}

#[async_trait]
impl Store for PostgresStore {
    fn shared_blobs(&self) -> Option<Arc<dyn crate::blob::SharedBlobs>> {
        Some(self.blobs.clone())
    }

    fn rate_windows(&self) -> Option<Arc<dyn crate::RateWindows>> {
        Some(self.windows.clone())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.watchers.stop();
        self.listen_pool.close().await;
        self.pool.close().await;
    }

    fn attach_cache(&self, cache: Arc<dyn AuthCache>) {
        self.changes.attach(cache.clone());
        let replica = self.replica;
        let base = Instant::now();
        let listener = tokio::spawn(listen(self.listen_pool.clone(), cache, replica, base));
        let heartbeat = tokio::spawn(heartbeat(self.pool.clone(), replica, base));
        self.watchers.keep(&listener);
        self.watchers.keep(&heartbeat);
    }

    fn share_auth_failure(&self, client: std::net::IpAddr) {
        self.failures.push(client);
    }

    fn attach_failure_feed(&self, feed: Arc<dyn crate::FailureFeed>, window: Duration) {
        let listener = tokio::spawn(failures::listen(
            self.listen_pool.clone(),
            self.pool.clone(),
            feed,
            self.replica,
            window,
        ));
        self.watchers.keep(&listener);
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        [("main", &self.pool), ("listen", &self.listen_pool)]
            .into_iter()
            .map(|(name, pool)| PoolUse {
                pool: name,
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            })
            .collect()
    }
}

/// Keeps `cache` coherent with every replica's writes: `LISTEN`s on its own
/// connection; once subscribed, flushes the cache, then trusts it for as
/// long as this replica's own heartbeats come back through the channel
/// (each proves that every change committed before it was delivered). A
/// lost or silent subscription distrusts the cache until the next one.
/// What a replica's change notices begin with, before the change itself.
fn change_prefix(replica: Uuid) -> String {
    format!("change:{replica}:")
}

async fn listen(pool: PgPool, cache: Arc<dyn AuthCache>, replica: Uuid, base: Instant) {
    let own_ping = format!("ping:{replica}:");
    let own_change = change_prefix(replica);
    let mut outage =
        Outage::new("cannot listen for key changes; not trusting the cache", HEARTBEAT, SILENCE * 4);
    loop {
        cache.distrust();
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.eager_reconnect(false);
            listener.listen(AUTH_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match tokio::time::timeout(SILENCE, subscribed).await {
            Ok(Ok(listener)) => listener,
            Ok(Err(error)) => {
                tokio::time::sleep(outage.failed(&error)).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(outage.failed(&"no answer in time")).await;
                continue;
            }
        };
        outage.recovered();
        let subscribed_at = Instant::now();
        cache.flush();
        cache.confirmed(subscribed_at);
        tracing::info!("listening for key changes");
        // Dropped, not reused, after a timeout: a cancelled receive may
        // have lost part of a message.
        while let Ok(Ok(Some(notification))) = tokio::time::timeout(SILENCE, listener.try_recv()).await {
            let payload = notification.payload();
            if let Some(sent) = payload.strip_prefix(&own_ping) {
                if let Ok(nanos) = sent.parse::<u64>() {
                    cache.confirmed(base + Duration::from_nanos(nanos));
                }
            } else if payload.starts_with("ping:") || payload.starts_with(&own_change) {
                // Another replica's heartbeat, or our own change: applied
                // to the cache when it committed.
            } else if let Some(change) = payload
                .strip_prefix("change:")
                .and_then(|notice| AuthChange::from_payload(notice.split_once(':')?.1))
            {
                cache.changed(&change);
            } else {
                cache.flush();
            }
        }
        tracing::warn!("lost the subscription to key changes; not trusting the cache until it is back");
    }
}

/// Sends this replica's heartbeat through the channel every [`HEARTBEAT`].
async fn heartbeat(pool: PgPool, replica: Uuid, base: Instant) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sent = base.elapsed().as_nanos();
        let _ = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(AUTH_CHANNEL)
            .bind(format!("ping:{replica}:{sent}"))
            .execute(&pool)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;

    use keygate_core::{ApiKeySecret, AppId, Email, KeyName, Mode, OrgName, Role};
    use keygate_testkit::TestDatabase;
    use sqlx::Connection;
    use sqlx::error::BoxDynError;
    use sqlx::migrate::{Migration, MigrationSource, Migrator};
    use uuid::Uuid;

    use super::{MIGRATOR, PostgresStore};
    use crate::{
        Actor, Enroll, Enrollee, Enrollment, KeyChanges, KeyMaterial, KeyStore, NewApiKey, OrgStore, Store,
        StoreError,
    };

    /// The migrations of the previous release, 0001–0005, exactly as shipped.
    #[derive(Debug)]
    struct PreviousRelease;

    impl MigrationSource<'static> for PreviousRelease {
        fn resolve(
            self,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
            Box::pin(async { Ok(MIGRATOR.iter().filter(|m| m.version <= 5).cloned().collect()) })
        }
    }

    fn postgres_only(test: &str) -> bool {
        let run = keygate_testkit::postgres_base().is_some();
        if !run {
            eprintln!("note: {test} needs PostgreSQL (set {}); skipped", keygate_testkit::ENV);
        }
        run
    }

    fn enrollee(email: &str, enroll: Enroll) -> Enrollee {
        Enrollee {
            email: Email::parse(email).expect("email"),
            enroll,
            key: material(),
            key_name: KeyName::parse("CLI Key").expect("name"),
            existing_account: true,
        }
    }

    /// A new database with one organization, whose `super_admin` is
    /// a@example.com; `None` when `test` cannot run without PostgreSQL.
    async fn one_organization(test: &str) -> Option<(TestDatabase, Arc<PostgresStore>, Enrollment)> {
        if !postgres_only(test) {
            return None;
        }
        let database = TestDatabase::new().await;
        let store = Arc::new(PostgresStore::connect(database.url()).await.expect("connect"));
        let new_org = Enroll::NewOrganization { name: OrgName::parse("Acme").expect("name") };
        let owner = store.enroll(enrollee("a@example.com", new_org)).await.expect("enroll");
        Some((database, store, owner))
    }

    fn app(name: &str) -> AppId {
        AppId::parse(name).expect("app id")
    }

    fn material() -> KeyMaterial {
        let secret = ApiKeySecret::generate().expect("rng");
        KeyMaterial { digest: secret.digest(), preview: secret.preview() }
    }

    #[tokio::test]
    async fn upgrading_from_the_previous_release_moves_app_lists_into_arrays() {
        if !postgres_only("the upgrade test") {
            return;
        }
        let database = TestDatabase::new().await;
        let previous = Migrator::new(PreviousRelease).await.expect("previous migrations");
        assert_eq!(previous.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        let mut conn = sqlx::PgConnection::connect(database.url()).await.expect("connect");
        previous.run(&mut conn).await.expect("previous release's schema");

        let (user, org) = (Uuid::now_v7(), Uuid::now_v7());
        let at = crate::now();
        sqlx::query("INSERT INTO users (id, email, created_at) VALUES ($1, 'old@example.com', $2)")
            .bind(user)
            .bind(at)
            .execute(&mut conn)
            .await
            .expect("user");
        sqlx::query(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, 'Old', $2, $2)",
        )
        .bind(org)
        .bind(at)
        .execute(&mut conn)
        .await
        .expect("org");
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, 'super_admin', $3)",
        )
        .bind(org)
        .bind(user)
        .bind(at)
        .execute(&mut conn)
        .await
        .expect("membership");
        let old_keys = [(material(), r#"["com.example.a","com.example.b"]"#), (material(), "[]")];
        let mut ids = Vec::new();
        for (key, apps) in &old_keys {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO api_keys (digest, preview, mode, name, user_id, org_id, limited_to_apps, \
                 created_at, updated_at) VALUES ($1, $2, 'read', 'old', $3, $4, $5, $6, $6) RETURNING id",
            )
            .bind(&key.digest.as_bytes()[..])
            .bind(&key.preview)
            .bind(user)
            .bind(org)
            .bind(*apps)
            .bind(at)
            .fetch_one(&mut conn)
            .await
            .expect("old key");
            ids.push(id);
        }
        conn.close().await.expect("close");

        let store = PostgresStore::connect(database.url()).await.expect("upgrade");
        let column: String = sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = 'api_keys' AND column_name = 'limited_to_apps'",
        )
        .fetch_one(&store.pool)
        .await
        .expect("column");
        assert_eq!(column, "ARRAY");

        let limited = store.key_by_id(ids[0]).await.expect("read").expect("kept");
        assert_eq!(limited.limited_to_apps, [app("com.example.a"), app("com.example.b")]);
        assert_eq!((limited.digest, limited.created_at), (old_keys[0].0.digest, at));
        let open = store.key_by_digest(&old_keys[1].0.digest).await.expect("read").expect("kept");
        assert_eq!((open.id, open.limited_to_apps.len()), (ids[1], 0));

        let new = NewApiKey {
            material: material(),
            mode: Mode::Write,
            name: KeyName::parse("new").expect("name"),
            user_id: user,
            org_id: Some(org),
            limited_to_apps: vec![app("com.example.b"), app("com.example.a")],
            expires_at: None,
            created_by_key_id: Some(ids[0]),
            limits: Default::default(),
        };
        // The operator: what is tested is how lists are stored, not who may.
        let actor = Actor { ip: "192.0.2.7".parse().ok(), ..Actor::OPERATOR };
        let created = store.insert_key(new.clone(), &actor).await.expect("insert");
        assert_eq!(created.limited_to_apps, new.limited_to_apps, "in the order given");
        assert_eq!(store.key_by_digest(&new.material.digest).await.expect("read"), Some(created.clone()));
        let changes = KeyChanges { limited_to_apps: Some(vec![app("com.example.c")]), ..Default::default() };
        let changed = store.update_key(created.id, changes, &actor).await.expect("update").expect("exists");
        assert_eq!(changed.limited_to_apps, [app("com.example.c")]);
        let cleared = KeyChanges { limited_to_apps: Some(vec![]), ..Default::default() };
        let cleared = store.update_key(created.id, cleared, &actor).await.expect("update").expect("exists");
        assert!(cleared.limited_to_apps.is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn removing_a_member_while_their_key_changes_never_deadlocks() {
        let Some((_database, store, owner)) = one_organization("the member removal test").await else {
            return;
        };
        let admin = Actor { user_id: Some(owner.user_id), ..Actor::OPERATOR };
        for round in 0..20 {
            // A new member each round: a removed one's account would need
            // the operator to vouch for it (`existing_account`).
            let email = Email::parse(&format!("b{round}@example.com")).expect("email");
            let member =
                store.set_member(owner.org_id, &email, Role::Write, &Actor::OPERATOR).await.expect("add");
            let key = NewApiKey {
                material: material(),
                mode: Mode::Read,
                name: KeyName::parse("doomed").expect("name"),
                user_id: member.user_id,
                org_id: Some(owner.org_id),
                limited_to_apps: vec![],
                expires_at: None,
                created_by_key_id: None,
                limits: Default::default(),
            };
            let digest = key.material.digest;
            let own = Actor { user_id: Some(member.user_id), ..Actor::OPERATOR };
            let key = store.insert_key(key, &own).await.expect("key");
            let rotating = {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.rotate_key(key.id, &digest, material(), None, &own).await })
            };
            let removed = store.remove_member(owner.org_id, member.user_id, &admin).await;
            let rotated = rotating.await.expect("join");
            assert!(matches!(removed, Ok(true)), "round {round}: {removed:?}");
            assert!(rotated.is_ok(), "round {round}: {rotated:?}");
            assert_eq!(store.key_by_id(key.id).await.expect("read"), None, "round {round}");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn two_super_admins_stepping_down_at_once_leave_one() {
        let Some((_database, store, first)) = one_organization("the concurrent demotion test").await else {
            return;
        };
        let org_id = first.org_id;
        let second = Enroll::Member { org_id, role: Role::SuperAdmin };
        let second = store.enroll(enrollee("b@example.com", second)).await.expect("enroll");

        for round in 0..10 {
            let mut tasks = tokio::task::JoinSet::new();
            for me in [first.user_id, second.user_id] {
                let store = Arc::clone(&store);
                tasks.spawn(async move {
                    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
                        .bind(me)
                        .fetch_one(&store.pool)
                        .await
                        .expect("email");
                    let actor = Actor { user_id: Some(me), ..Actor::OPERATOR };
                    let email = Email::parse(&email).expect("email");
                    store.set_member(org_id, &email, Role::Admin, &actor).await
                });
            }
            let results = tasks.join_all().await;
            let done = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(done, 1, "round {round}: {results:?}");
            assert!(results.iter().any(|r| matches!(r, Err(StoreError::Refused(_)))), "{results:?}");
            let members = store.members(org_id).await.expect("members");
            assert_eq!(members.iter().filter(|m| m.role == Role::SuperAdmin).count(), 1);
            // Promote both again for the next round.
            for user in [first.user_id, second.user_id] {
                let email = members.iter().find(|m| m.user_id == user).expect("member").email.clone();
                let email = Email::parse(&email).expect("email");
                store.set_member(org_id, &email, Role::SuperAdmin, &Actor::OPERATOR).await.expect("promote");
            }
        }
        store.close().await;
    }
}
