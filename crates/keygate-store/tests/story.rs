//! One behaviour story, run on whichever backend `KEYGATE_TEST_DATABASE`
//! names (SQLite by default): every backend must tell it the same way.

use std::sync::Arc;

use chrono::{Duration, Utc};
use keygate_core::{ApiKeySecret, AppId, Email, KeyName, Mode, OrgName, Role};
use keygate_store::{
    DailyUse, Enroll, Enrollee, Enrollment, KeyChanges, KeyMaterial, KeyUse, NewApiKey, OrgChanges, Store,
    StoreError,
};
use keygate_testkit::TestDatabase;
use uuid::Uuid;

fn material() -> KeyMaterial {
    let secret = ApiKeySecret::generate().expect("rng");
    KeyMaterial { digest: secret.digest(), preview: secret.preview() }
}

async fn enroll(store: &dyn Store, email: &str, enroll: Enroll) -> Result<Enrollment, StoreError> {
    store
        .enroll(Enrollee {
            email: Email::parse(email).expect("email"),
            enroll,
            key: material(),
            key_name: KeyName::parse("CLI Key").expect("name"),
        })
        .await
}

fn new_org(name: &str) -> Enroll {
    Enroll::NewOrganization { name: OrgName::parse(name).expect("name") }
}

fn key_for(user_id: Uuid, org_id: Option<Uuid>) -> NewApiKey {
    NewApiKey {
        material: material(),
        mode: Mode::Read,
        name: KeyName::parse("story").expect("name"),
        user_id,
        org_id,
        limited_to_apps: vec![AppId::parse("com.example.a").expect("app")],
        expires_at: Some(keygate_store::truncate(Utc::now() + Duration::days(1))),
        created_by_key_id: Some(1),
    }
}

fn uses(key_id: i64, at: chrono::DateTime<Utc>, requests: i64) -> KeyUse {
    let days =
        if requests > 0 { vec![DailyUse { date: at.date_naive(), requests, denied: 1 }] } else { vec![] };
    KeyUse { key_id, last_used_at: Some(at), days }
}

async fn open(database: &TestDatabase) -> Arc<dyn Store> {
    keygate_store::connect(database.url()).await.expect("connect")
}

#[tokio::test]
async fn enrollment_creates_users_organizations_and_memberships() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    assert!(!store.has_users().await.expect("has_users"));

    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    assert!(store.has_users().await.expect("has_users"));
    assert_eq!(store.role(owner.org_id, owner.user_id).await.expect("role"), Some(Role::SuperAdmin));
    assert_eq!(owner.key.mode, Mode::All);
    assert_eq!(owner.key.org_id, None, "CLI keys are unscoped");
    let org = store.organization(owner.org_id).await.expect("org").expect("exists");
    assert_eq!(org.name, "Acme");
    assert!(!org.require_apikey_expiration);

    let again = enroll(store.as_ref(), "owner@example.com", new_org("Second")).await.expect("enroll");
    assert_eq!(again.user_id, owner.user_id);
    assert_ne!(again.org_id, owner.org_id);

    let member = Enroll::Member { org_id: owner.org_id, role: Role::Write };
    let dev = enroll(store.as_ref(), "dev@example.com", member).await.expect("member");
    assert_eq!(store.role(owner.org_id, dev.user_id).await.expect("role"), Some(Role::Write));
    assert_eq!(store.role(again.org_id, dev.user_id).await.expect("role"), None);

    let missing = Enroll::Member { org_id: Uuid::new_v4(), role: Role::Read };
    let error = enroll(store.as_ref(), "x@example.com", missing).await.expect_err("no such org");
    assert!(matches!(error, StoreError::NotFound("organization")), "{error:?}");
    store.close().await;
}

#[tokio::test]
async fn the_last_super_admin_stays() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let downgrade = Enroll::Member { org_id: owner.org_id, role: Role::Admin };
    let error = enroll(store.as_ref(), "owner@example.com", downgrade.clone()).await.expect_err("last");
    assert!(matches!(error, StoreError::LastSuperAdmin), "{error:?}");
    assert_eq!(store.role(owner.org_id, owner.user_id).await.expect("role"), Some(Role::SuperAdmin));

    let promote = Enroll::Member { org_id: owner.org_id, role: Role::SuperAdmin };
    enroll(store.as_ref(), "second@example.com", promote).await.expect("promote");
    enroll(store.as_ref(), "owner@example.com", downgrade).await.expect("now allowed");
    assert_eq!(store.role(owner.org_id, owner.user_id).await.expect("role"), Some(Role::Admin));
}

#[tokio::test]
async fn keys_round_trip_exactly_and_are_found_by_digest_and_id() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let new = key_for(owner.user_id, Some(owner.org_id));
    let digest = new.material.digest;
    let key = store.insert_key(new.clone()).await.expect("insert");
    assert_eq!(key.mode, Mode::Read);
    assert_eq!(key.preview, new.material.preview);
    assert_eq!(key.limited_to_apps, new.limited_to_apps);
    assert_eq!(key.expires_at, new.expires_at);
    assert_eq!(key.created_by_key_id, Some(1));
    assert_eq!(key.created_at, key.updated_at);
    assert_eq!(store.key_by_digest(&digest).await.expect("by digest"), Some(key.clone()));
    assert_eq!(store.key_by_id(key.id).await.expect("by id"), Some(key.clone()));
    assert_eq!(store.key_by_id(key.id + 1000).await.expect("by id"), None);
    assert_eq!(store.key_by_digest(&material().digest).await.expect("by digest"), None);

    let of_user: Vec<i64> =
        store.keys_of_user(owner.user_id).await.expect("keys").iter().map(|k| k.id).collect();
    assert_eq!(of_user, vec![owner.key.id, key.id]);
    let of_org: Vec<i64> =
        store.keys_of_org(owner.org_id).await.expect("keys").iter().map(|k| k.id).collect();
    assert_eq!(of_org, vec![key.id], "the unscoped key belongs to no organization");

    let orphan = store.insert_key(key_for(owner.user_id, Some(Uuid::new_v4()))).await.expect_err("no org");
    assert!(matches!(orphan, StoreError::NotFound(_)), "{orphan:?}");
}

#[tokio::test]
async fn updates_are_partial_and_never_resurrect_a_deleted_key() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let key = store.insert_key(key_for(owner.user_id, Some(owner.org_id))).await.expect("insert");

    let renamed = KeyChanges { name: Some(KeyName::parse("renamed").expect("name")), ..Default::default() };
    let after = store.update_key(key.id, renamed).await.expect("update").expect("exists");
    assert_eq!(after.name, "renamed");
    assert_eq!(
        (after.mode, &after.limited_to_apps, after.expires_at),
        (key.mode, &key.limited_to_apps, key.expires_at)
    );
    assert!(after.updated_at >= key.updated_at);

    let changes = KeyChanges {
        mode: Some(Mode::Upload),
        limited_to_apps: Some(vec![]),
        expires_at: Some(None),
        ..Default::default()
    };
    let after = store.update_key(key.id, changes).await.expect("update").expect("exists");
    assert_eq!((after.mode, after.limited_to_apps.len(), after.expires_at), (Mode::Upload, 0, None));
    assert_eq!(after.name, "renamed");

    assert!(store.delete_key(key.id).await.expect("delete"));
    assert!(!store.delete_key(key.id).await.expect("delete again"));
    let late = KeyChanges { mode: Some(Mode::All), ..Default::default() };
    assert_eq!(store.update_key(key.id, late).await.expect("update"), None);
    assert_eq!(store.key_by_id(key.id).await.expect("by id"), None);

    let next = store.insert_key(key_for(owner.user_id, Some(owner.org_id))).await.expect("insert");
    assert!(next.id > key.id, "ids are never reused");
}

#[tokio::test]
async fn usage_and_organization_policy_are_recorded() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let at = keygate_store::now();
    store.record_usage(&[uses(owner.key.id, at, 0)]).await.expect("record");
    let key = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    assert_eq!(key.last_used_at, Some(at));

    let changes = OrgChanges {
        require_apikey_expiration: Some(true),
        max_apikey_expiration_days: Some(Some(30)),
        ..Default::default()
    };
    let org = store.update_organization(owner.org_id, changes).await.expect("update").expect("exists");
    assert!(org.require_apikey_expiration);
    assert_eq!(org.max_apikey_expiration_days, Some(30));
    let lift = OrgChanges { max_apikey_expiration_days: Some(None), ..Default::default() };
    let org = store.update_organization(owner.org_id, lift).await.expect("update").expect("exists");
    assert_eq!(org.max_apikey_expiration_days, None);
    assert!(org.require_apikey_expiration, "untouched");
    assert_eq!(store.update_organization(Uuid::new_v4(), OrgChanges::default()).await.expect("update"), None);
}

#[tokio::test]
async fn concurrent_writes_keep_ids_and_keys_unique() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.spawn(async move { store.insert_key(key_for(owner.user_id, Some(owner.org_id))).await });
    }
    let mut ids = Vec::new();
    while let Some(done) = tasks.join_next().await {
        ids.push(done.expect("task").expect("insert").id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(store.keys_of_org(owner.org_id).await.expect("keys").len(), 40);
}

#[tokio::test]
async fn data_survives_reopening_and_migrations_rerun_cleanly() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    store.close().await;
    let store = open(&database).await;
    assert_eq!(store.key_by_id(owner.key.id).await.expect("by id"), Some(owner.key));
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn one_new_email_enrolled_at_once_is_one_user() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            let member = Enroll::Member { org_id: owner.org_id, role: Role::Read };
            enroll(store.as_ref(), "new@example.com", member).await.map(|e| e.user_id)
        });
    }
    let mut users = Vec::new();
    while let Some(done) = tasks.join_next().await {
        users.push(done.expect("task").expect("enroll"));
    }
    users.dedup();
    assert_eq!(users.len(), 1, "one email, one user");
}

#[tokio::test]
async fn last_use_never_goes_backwards() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let later = keygate_store::now();
    let earlier = later - Duration::seconds(10);
    store.record_usage(&[uses(owner.key.id, later, 0)]).await.expect("record");
    store.record_usage(&[uses(owner.key.id, earlier, 0)]).await.expect("record");
    let key = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    assert_eq!(key.last_used_at, Some(later));
}

#[tokio::test]
async fn a_rotated_key_answers_to_its_old_secret_only_during_the_grace_period() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let first = key_for(owner.user_id, Some(owner.org_id));
    let first_digest = first.material.digest;
    let key = store.insert_key(first).await.expect("insert");

    let second = material();
    let second_digest = second.digest;
    let grace = keygate_store::now() + Duration::hours(1);
    let rotated =
        store.rotate_key(key.id, &key.digest, second, Some(grace)).await.expect("rotate").expect("exists");
    assert_eq!(
        store.rotate_key(key.id, &key.digest, material(), None).await.expect("rotate"),
        None,
        "a second rotation from the same view loses"
    );
    assert_eq!((rotated.id, rotated.mode, rotated.org_id), (key.id, key.mode, key.org_id));
    for digest in [&first_digest, &second_digest] {
        assert_eq!(store.key_by_digest(digest).await.expect("lookup").map(|k| k.id), Some(key.id));
    }

    // A grace period that has ended: only the newest secret works.
    let third = material();
    let third_digest = third.digest;
    let ended = keygate_store::now() - Duration::seconds(1);
    let last =
        store.rotate_key(key.id, &rotated.digest, third, Some(ended)).await.expect("rotate").expect("exists");
    assert_eq!(store.key_by_digest(&second_digest).await.expect("lookup"), None);
    assert_eq!(store.key_by_digest(&first_digest).await.expect("lookup"), None);
    assert_eq!(
        store.delete_key_by_digest(&second_digest).await.expect("delete"),
        None,
        "a dead secret deletes nothing"
    );
    assert_eq!(store.delete_key_by_digest(&third_digest).await.expect("delete").map(|k| k.id), Some(key.id));
    assert_eq!(store.rotate_key(key.id, &last.digest, material(), None).await.expect("rotate"), None);
}

#[tokio::test]
async fn daily_usage_adds_up_and_skips_deleted_keys() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let now = keygate_store::now();
    let yesterday = now - Duration::days(1);
    store
        .record_usage(&[uses(owner.key.id, yesterday, 2), uses(owner.key.id, now, 3)])
        .await
        .expect("record");
    store.record_usage(&[uses(owner.key.id, now, 4)]).await.expect("record");
    let days = store.key_usage(owner.key.id, yesterday.date_naive()).await.expect("usage");
    assert_eq!(
        days,
        vec![
            DailyUse { date: yesterday.date_naive(), requests: 2, denied: 1 },
            DailyUse { date: now.date_naive(), requests: 7, denied: 2 },
        ]
    );
    assert_eq!(store.key_usage(owner.key.id, now.date_naive()).await.expect("usage").len(), 1);
    assert!(store.delete_key(owner.key.id).await.expect("delete"));
    store.record_usage(&[uses(owner.key.id, now, 1)]).await.expect("a deleted key is skipped, not an error");
    assert!(store.key_usage(owner.key.id, yesterday.date_naive()).await.expect("usage").is_empty());
}

#[tokio::test]
async fn a_key_comes_with_its_owners_current_role() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let new = key_for(owner.user_id, Some(owner.org_id));
    let digest = new.material.digest;
    let key = store.insert_key(new).await.expect("insert");
    let (found, role) = store.key_and_owner_role(&digest).await.expect("lookup").expect("found");
    assert_eq!((found.id, role), (key.id, Some(Role::SuperAdmin)));
    let member = Enroll::Member { org_id: owner.org_id, role: Role::SuperAdmin };
    enroll(store.as_ref(), "second@example.com", member).await.expect("second owner");
    let downgrade = Enroll::Member { org_id: owner.org_id, role: Role::Upload };
    enroll(store.as_ref(), "owner@example.com", downgrade).await.expect("downgrade");
    let (_, role) = store.key_and_owner_role(&digest).await.expect("lookup").expect("found");
    assert_eq!(role, Some(Role::Upload), "the role as it is now");
    let unscoped = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    let (_, role) = store.key_and_owner_role(&unscoped.digest).await.expect("lookup").expect("found");
    assert_eq!(role, None, "an unscoped key has no organization of its own");
    assert!(store.key_and_owner_role(&material().digest).await.expect("lookup").is_none());
}
