//! One behaviour story, run on whichever backend `KEYGATE_TEST_DATABASE`
//! names (SQLite by default): every backend must tell it the same way. By
//! area: keys, organizations and memberships, the audit log with the
//! announced changes of authentication, and usage.

mod audit;
mod credits;
mod invites;
mod keys;
mod organizations;
mod trust;
mod usage;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use chrono::{Duration, Utc};
use keygate_core::rules::Refusal;
use keygate_core::{ApiKeySecret, AppId, Email, KeyName, Mode, OrgName, Role};
use keygate_store::{
    Actor, DailyUse, Enroll, Enrollee, Enrollment, Entity, KeyChanges, KeyMaterial, KeyUse, NewApiKey,
    NewBundle, Store, StoreError,
};
use keygate_testkit::TestDatabase;
use uuid::Uuid;

/// A cache attached to the store that keeps what it is told: the changes
/// each write announces to caches before it returns.
#[derive(Default)]
struct Announced(std::sync::Mutex<Vec<keygate_store::AuthChange>>);

impl keygate_store::AuthCache for Announced {
    fn changed(&self, change: &keygate_store::AuthChange) {
        self.0.lock().expect("lock").push(change.clone());
    }
    fn flush(&self) {}
    fn confirmed(&self, _: std::time::Instant) {}
    fn distrust(&self) {}
}

impl Announced {
    fn attach(store: &dyn Store) -> Arc<Self> {
        let announced = Arc::new(Self::default());
        store.attach_cache(announced.clone());
        announced
    }

    /// What was announced since the last call.
    fn take(&self) -> Vec<keygate_store::AuthChange> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

/// The operator at the command line: bound by no membership rule.
const OP: &Actor = &Actor::OPERATOR;

fn material() -> KeyMaterial {
    let secret = ApiKeySecret::generate().expect("rng");
    KeyMaterial { digest: secret.digest(), preview: secret.preview() }
}

/// Enrolls `email` as the operator, who vouches for an existing account.
async fn enroll(store: &dyn Store, email: &str, enroll: Enroll) -> Result<Enrollment, StoreError> {
    enroll_as(store, email, enroll, true).await
}

async fn enroll_as(
    store: &dyn Store,
    email: &str,
    enroll: Enroll,
    existing_account: bool,
) -> Result<Enrollment, StoreError> {
    store
        .enroll(Enrollee {
            email: Email::parse(email).expect("email"),
            enroll,
            key: material(),
            key_name: KeyName::parse("CLI Key").expect("name"),
            existing_account,
        })
        .await
}

fn new_org(name: &str) -> Enroll {
    Enroll::NewOrganization { name: OrgName::parse(name).expect("name") }
}

fn as_member(org_id: Uuid, role: Role) -> Enroll {
    Enroll::Member { org_id, role }
}

fn key_for(user_id: Uuid, org_id: Option<Uuid>) -> NewApiKey {
    NewApiKey {
        material: material(),
        mode: Mode::Read,
        name: KeyName::parse("story").expect("name"),
        user_id,
        org_id,
        limited_to_apps: vec![app_id("com.example.a")],
        expires_at: Some(keygate_store::truncate(Utc::now() + Duration::days(1))),
        created_by_key_id: Some(1),
        limits: Default::default(),
    }
}

fn uses(key_id: i64, at: chrono::DateTime<Utc>, requests: i64) -> KeyUse {
    let days = if requests > 0 {
        vec![DailyUse { requests, denied: 1, ..DailyUse::zero(at.date_naive()) }]
    } else {
        vec![]
    };
    KeyUse { key_id, last_used_at: Some(at), days }
}

async fn open(database: &TestDatabase) -> Arc<dyn Store> {
    keygate_store::connect(database.url()).await.expect("connect")
}

/// A new store where the operator has enrolled owner@example.com as the
/// `super_admin` of a new organization, Acme.
async fn acme() -> (TestDatabase, Arc<dyn Store>, Enrollment) {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    (database, store, owner)
}

/// Runs `n` copies of `task` at once; their results, as they end.
async fn at_once<T, F>(n: usize, task: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(task());
    }
    tasks.join_all().await
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("email")
}

fn app_id(raw: &str) -> AppId {
    AppId::parse(raw).expect("app id")
}

fn member(user_id: Uuid) -> Actor {
    Actor { user_id: Some(user_id), key_id: None, ip: None, presented: None }
}

/// An enrolled member acting with the key the operator issued them.
fn with_key(enrollment: &Enrollment) -> Actor {
    Actor { user_id: Some(enrollment.user_id), key_id: Some(enrollment.key.id), ip: None, presented: None }
}

fn renamed(name: &str) -> KeyChanges {
    KeyChanges { name: Some(KeyName::parse(name).expect("name")), ..Default::default() }
}

fn bundle(app: &AppId, version: &str) -> NewBundle {
    NewBundle {
        max_org_storage: None,
        app_id: app.clone(),
        version: version.to_owned(),
        checksum: "00".repeat(32),
        size: 3,
        blob_key: format!("blobs/{}/{version}", app.as_str()),
    }
}

/// Asserts that a rule of the store refused the write.
#[track_caller]
fn assert_refused<T: Debug>(result: Result<T, StoreError>, rule: Refusal) {
    assert!(matches!(result, Err(StoreError::Refused(refusal)) if refusal == rule), "{rule:?}: {result:?}");
}

/// Asserts that the write found no such `entity`.
#[track_caller]
fn assert_not_found<T: Debug>(result: Result<T, StoreError>, entity: Entity) {
    assert!(matches!(result, Err(StoreError::NotFound(found)) if found == entity), "{entity:?}: {result:?}");
}

/// Bundle bytes in the database: PostgreSQL keeps them (chunked, read back
/// in order), a blob whose bundle row was never written is an orphan once
/// past the grace period, and one a bundle names never is. SQLite leaves
/// bundles to a directory.
#[tokio::test]
async fn blobs_kept_by_the_database_are_whole_and_orphans_go() {
    let (database, store, owner) = acme().await;
    let Some(blobs) = store.shared_blobs() else {
        assert!(!database.is_postgres(), "PostgreSQL keeps bundles for every replica");
        return;
    };
    let app = app_id("com.example.blobs");
    store.create_app(owner.org_id, &app, "App", OP).await.expect("create app");
    let listed = bundle(&app, "1.0.0");
    for (seq, bytes) in [b"abc".as_slice(), b"de".as_slice()].into_iter().enumerate() {
        blobs.write_chunk(&listed.blob_key, seq as i32, bytes).await.expect("write");
    }
    store.insert_bundle(listed.clone(), OP).await.expect("bundle");
    blobs.write_chunk("left-behind", 0, b"xyz").await.expect("write");
    assert_eq!(blobs.count().await.expect("count"), 2);

    assert_eq!(
        blobs.delete_orphans(std::time::Duration::from_secs(3600)).await.expect("clean"),
        0,
        "too new"
    );
    assert_eq!(blobs.delete_orphans(std::time::Duration::ZERO).await.expect("clean"), 1);
    assert_eq!(blobs.read_chunk("left-behind", 0).await.expect("read"), None);
    assert_eq!(
        blobs.read_chunk(&listed.blob_key, 0).await.expect("read").as_deref(),
        Some(b"abc".as_slice())
    );
    assert_eq!(blobs.read_chunk(&listed.blob_key, 1).await.expect("read").as_deref(), Some(b"de".as_slice()));
    assert_eq!(blobs.read_chunk(&listed.blob_key, 2).await.expect("read"), None);

    blobs.delete(std::slice::from_ref(&listed.blob_key)).await.expect("delete");
    assert_eq!(blobs.count().await.expect("count"), 0);
}
