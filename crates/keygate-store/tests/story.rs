//! One behaviour story, run on whichever backend `KEYGATE_TEST_DATABASE`
//! names (SQLite by default): every backend must tell it the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use chrono::{Duration, Utc};
use keygate_core::rules::Refusal;
use keygate_core::{ApiKeySecret, AppId, Email, KeyName, Mode, OrgName, Role};
use keygate_store::{
    Actor, ApiKeyRecord, AuditAction, AuthChange, DailyUse, Enroll, Enrollee, Enrollment, Entity, KeyChanges,
    KeyMaterial, KeyUse, NewApiKey, NewBundle, OrgChanges, Store, StoreError,
};
use keygate_testkit::TestDatabase;
use sqlx::Connection;
use tokio::sync::broadcast::error::TryRecvError;
use uuid::Uuid;

/// The operator at the command line: bound by no membership rule.
const OP: &Actor = &Actor::OPERATOR;

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
    assert!(matches!(error, StoreError::NotFound(Entity::Organization)), "{error:?}");
    store.close().await;
}

#[tokio::test]
async fn the_last_super_admin_stays() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let downgrade = Enroll::Member { org_id: owner.org_id, role: Role::Admin };
    let error = enroll(store.as_ref(), "owner@example.com", downgrade.clone()).await.expect_err("last");
    assert!(matches!(error, StoreError::Refused(Refusal::LastSuperAdmin)), "{error:?}");
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
    let key = store.insert_key(new.clone(), OP).await.expect("insert");
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

    let orphan =
        store.insert_key(key_for(owner.user_id, Some(Uuid::new_v4())), OP).await.expect_err("no org");
    assert!(matches!(orphan, StoreError::NotFound(_)), "{orphan:?}");
}

#[tokio::test]
async fn updates_are_partial_and_never_resurrect_a_deleted_key() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let key = store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert");

    let renamed = KeyChanges { name: Some(KeyName::parse("renamed").expect("name")), ..Default::default() };
    let after = store.update_key(key.id, renamed, OP).await.expect("update").expect("exists");
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
    let after = store.update_key(key.id, changes, OP).await.expect("update").expect("exists");
    assert_eq!((after.mode, after.limited_to_apps.len(), after.expires_at), (Mode::Upload, 0, None));
    assert_eq!(after.name, "renamed");

    assert!(store.delete_key(key.id, OP).await.expect("delete"));
    assert!(!store.delete_key(key.id, OP).await.expect("delete again"));
    let late = KeyChanges { mode: Some(Mode::All), ..Default::default() };
    assert_eq!(store.update_key(key.id, late, OP).await.expect("update"), None);
    assert_eq!(store.key_by_id(key.id).await.expect("by id"), None);

    let next = store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert");
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
    let org = store.update_organization(owner.org_id, changes, OP).await.expect("update").expect("exists");
    assert!(org.require_apikey_expiration);
    assert_eq!(org.max_apikey_expiration_days, Some(30));
    let lift = OrgChanges { max_apikey_expiration_days: Some(None), ..Default::default() };
    let org = store.update_organization(owner.org_id, lift, OP).await.expect("update").expect("exists");
    assert_eq!(org.max_apikey_expiration_days, None);
    assert!(org.require_apikey_expiration, "untouched");
    assert_eq!(
        store.update_organization(Uuid::new_v4(), OrgChanges::default(), OP).await.expect("update"),
        None
    );
}

#[tokio::test]
async fn concurrent_writes_keep_ids_and_keys_unique() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let owner = enroll(store.as_ref(), "owner@example.com", new_org("Acme")).await.expect("enroll");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.spawn(async move { store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await });
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
    let key = store.insert_key(first, OP).await.expect("insert");

    let second = material();
    let second_digest = second.digest;
    let grace = keygate_store::now() + Duration::hours(1);
    let rotated = store
        .rotate_key(key.id, &key.digest, second, Some(grace), OP)
        .await
        .expect("rotate")
        .expect("exists");
    assert_eq!(
        store.rotate_key(key.id, &key.digest, material(), None, OP).await.expect("rotate"),
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
    let last = store
        .rotate_key(key.id, &rotated.digest, third, Some(ended), OP)
        .await
        .expect("rotate")
        .expect("exists");
    assert_eq!(store.key_by_digest(&second_digest).await.expect("lookup"), None);
    assert_eq!(store.key_by_digest(&first_digest).await.expect("lookup"), None);
    assert_eq!(
        store.delete_key_by_digest(&second_digest, OP).await.expect("delete"),
        None,
        "a dead secret deletes nothing"
    );
    assert_eq!(
        store.delete_key_by_digest(&third_digest, OP).await.expect("delete").map(|k| k.id),
        Some(key.id)
    );
    assert_eq!(store.rotate_key(key.id, &last.digest, material(), None, OP).await.expect("rotate"), None);
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
    assert!(store.delete_key(owner.key.id, OP).await.expect("delete"));
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
    let key = store.insert_key(new, OP).await.expect("insert");
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

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("email")
}

fn app_id(raw: &str) -> AppId {
    AppId::parse(raw).expect("app id")
}

fn member(user_id: Uuid) -> Actor {
    Actor { user_id: Some(user_id), key_id: None, ip: None }
}

fn renamed(name: &str) -> KeyChanges {
    KeyChanges { name: Some(KeyName::parse(name).expect("name")), ..Default::default() }
}

fn bundle(app: &AppId, version: &str) -> NewBundle {
    NewBundle {
        app_id: app.clone(),
        version: version.to_owned(),
        checksum: "00".repeat(32),
        size: 3,
        blob_key: format!("blobs/{}/{version}", app.as_str()),
    }
}

/// An audit event as the story compares it: action, target type, target
/// id, acting user, acting key, ip.
type Logged = (String, String, String, Option<Uuid>, Option<i64>, Option<String>);

fn logged(action: AuditAction, target: impl ToString, actor: &Actor) -> Logged {
    (
        action.as_str().to_owned(),
        action.target_type().to_owned(),
        target.to_string(),
        actor.user_id,
        actor.key_id,
        actor.ip.map(|ip| ip.to_string()),
    )
}

/// The organization's audit log, oldest first.
async fn log_of(store: &dyn Store, org_id: Uuid) -> Vec<Logged> {
    let events = store.audit_events(org_id, None, 1000).await.expect("audit log");
    events
        .into_iter()
        .rev()
        .map(|e| (e.action, e.target_type, e.target_id, e.actor_user_id, e.actor_key_id, e.ip))
        .collect()
}

#[tokio::test]
async fn every_write_records_exactly_its_audit_event() {
    use AuditAction::*;
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let store = store.as_ref();
    let owner = enroll(store, "owner@example.com", new_org("Acme")).await.expect("enroll");
    let (a, me) = (owner.org_id, owner.user_id);
    let mut in_a = vec![logged(OrganizationCreate, a, OP), logged(ApiKeyCreate, owner.key.id, OP)];
    assert_eq!(log_of(store, a).await, in_a);

    // The owner's new unscoped key is logged in every organization of theirs.
    let second = enroll(store, "owner@example.com", new_org("Second")).await.expect("enroll");
    let b = second.org_id;
    in_a.push(logged(ApiKeyCreate, second.key.id, OP));
    let mut in_b = vec![logged(OrganizationCreate, b, OP), logged(ApiKeyCreate, second.key.id, OP)];

    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let actor = &Actor { user_id: Some(me), key_id: Some(owner.key.id), ip: Some(ip) };
    let third = OrgName::parse("Third").expect("name");
    let c = store.create_organization(&third, me, actor).await.expect("create").id;
    let mut in_c = vec![logged(OrganizationCreate, c, actor)];

    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    store.update_organization(a, policy, actor).await.expect("update").expect("exists");
    in_a.push(logged(OrganizationUpdate, a, actor));
    let dev = store.set_member(a, &email("dev@example.com"), Role::Write, actor).await.expect("set");
    in_a.push(logged(MemberSet, dev.user_id, actor));

    let key = store.insert_key(key_for(me, Some(a)), actor).await.expect("insert");
    in_a.push(logged(ApiKeyCreate, key.id, actor));
    store.update_key(key.id, renamed("renamed"), actor).await.expect("update").expect("exists");
    in_a.push(logged(ApiKeyUpdate, key.id, actor));
    store.rotate_key(key.id, &key.digest, material(), None, actor).await.expect("rotate").expect("exists");
    in_a.push(logged(ApiKeyRotate, key.id, actor));
    store.update_key(owner.key.id, renamed("CLI"), actor).await.expect("update").expect("exists");
    for log in [&mut in_a, &mut in_b, &mut in_c] {
        log.push(logged(ApiKeyUpdate, owner.key.id, actor));
    }

    let app = app_id("com.example.a");
    store.create_app(a, &app, "App", actor).await.expect("create app");
    in_a.push(logged(AppCreate, app.as_str(), actor));
    store.rename_app(&app, "Renamed", actor).await.expect("rename").expect("exists");
    in_a.push(logged(AppUpdate, app.as_str(), actor));
    store.insert_bundle(bundle(&app, "1.0.0"), actor).await.expect("upload");
    in_a.push(logged(BundleUpload, "com.example.a@1.0.0", actor));
    store.delete_bundle(&app, "1.0.0", actor).await.expect("delete").expect("exists");
    in_a.push(logged(BundleDelete, "com.example.a@1.0.0", actor));
    store.delete_app(&app, actor).await.expect("delete").expect("exists");
    in_a.push(logged(AppDelete, app.as_str(), actor));

    let devs_key = store.insert_key(key_for(dev.user_id, Some(a)), actor).await.expect("insert");
    in_a.push(logged(ApiKeyCreate, devs_key.id, actor));
    assert!(store.remove_member(a, dev.user_id, actor).await.expect("remove"));
    in_a.push(logged(MemberRemove, dev.user_id, actor));
    assert!(store.delete_key(key.id, actor).await.expect("delete"));
    in_a.push(logged(ApiKeyDelete, key.id, actor));

    // A leak reported by whoever held the key: no user, no key, an address.
    let leaked = store.insert_key(key_for(me, Some(b)), actor).await.expect("insert");
    in_b.push(logged(ApiKeyCreate, leaked.id, actor));
    let reporter = &Actor { ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), ..Actor::default() };
    store.delete_key_by_digest(&leaked.digest, reporter).await.expect("revoke").expect("found");
    in_b.push(logged(ApiKeyRevoke, leaked.id, reporter));

    let newbie = Enroll::Member { org_id: a, role: Role::Read };
    let newbie = enroll(store, "new@example.com", newbie).await.expect("enroll");
    in_a.push(logged(MemberSet, newbie.user_id, OP));
    in_a.push(logged(ApiKeyCreate, newbie.key.id, OP));

    // Writes that find nothing to change log nothing.
    assert_eq!(store.update_key(key.id, renamed("gone"), actor).await.expect("update"), None);
    assert!(!store.delete_key(key.id, actor).await.expect("delete"));
    assert_eq!(
        store.rotate_key(owner.key.id, &material().digest, material(), None, actor).await.expect("rotate"),
        None
    );
    assert_eq!(store.delete_key_by_digest(&material().digest, actor).await.expect("revoke"), None);
    assert!(!store.remove_member(a, dev.user_id, actor).await.expect("remove"));
    assert_eq!(store.rename_app(&app, "x", actor).await.expect("rename"), None);
    assert_eq!(store.delete_app(&app, actor).await.expect("delete"), None);
    assert_eq!(store.delete_bundle(&app, "1.0.0", actor).await.expect("delete"), None);
    assert_eq!(
        store.update_organization(Uuid::new_v4(), OrgChanges::default(), actor).await.expect("update"),
        None
    );

    assert_eq!(log_of(store, a).await, in_a);
    assert_eq!(log_of(store, b).await, in_b);
    assert_eq!(log_of(store, c).await, in_c);

    // Newest first, a page at a time.
    let newest = store.audit_events(a, None, 1000).await.expect("log");
    let page = store.audit_events(a, Some(newest[1].id), 2).await.expect("page");
    assert_eq!(page, newest[2..4]);

    // Deleting an organization logs nothing; its own log goes with it.
    assert!(store.delete_organization(c).await.expect("delete").is_some());
    assert!(log_of(store, c).await.is_empty());
    assert_eq!(log_of(store, a).await, in_a);
    assert_eq!(log_of(store, b).await, in_b);
}

/// Makes every INSERT into `audit_events` fail, behind the store's back.
async fn break_the_audit_log(database: &TestDatabase) {
    if database.is_postgres() {
        let mut conn = sqlx::PgConnection::connect(database.url()).await.expect("connect");
        sqlx::query(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit disabled'; END $$",
        )
        .execute(&mut conn)
        .await
        .expect("function");
        sqlx::query(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        )
        .execute(&mut conn)
        .await
        .expect("trigger");
        conn.close().await.expect("close");
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database.url()).await.expect("connect");
        sqlx::query(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit disabled'); END",
        )
        .execute(&mut conn)
        .await
        .expect("trigger");
        conn.close().await.expect("close");
    }
}

/// What the story's writes could touch, as read back.
#[derive(Debug, PartialEq)]
struct Snapshot {
    keys: Vec<ApiKeyRecord>,
    members: Vec<keygate_store::Member>,
    memberships: usize,
    apps: Vec<keygate_store::App>,
    org: Option<keygate_store::Organization>,
    log: Vec<Logged>,
}

async fn snapshot(store: &dyn Store, org_id: Uuid, user_id: Uuid) -> Snapshot {
    Snapshot {
        keys: store.keys_of_user(user_id).await.expect("keys"),
        members: store.members(org_id).await.expect("members"),
        memberships: store.memberships(user_id).await.expect("memberships").len(),
        apps: store.apps_of_org(org_id).await.expect("apps"),
        org: store.organization(org_id).await.expect("org"),
        log: log_of(store, org_id).await,
    }
}

#[tokio::test]
async fn a_change_that_cannot_be_audited_does_not_happen() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let store = store.as_ref();
    let owner = enroll(store, "owner@example.com", new_org("Acme")).await.expect("enroll");
    let (a, me) = (owner.org_id, owner.user_id);
    let dev =
        enroll(store, "dev@example.com", Enroll::Member { org_id: a, role: Role::Write }).await.expect("dev");
    let key = store.insert_key(key_for(me, Some(a)), OP).await.expect("insert");
    let before = snapshot(store, a, me).await;
    let devs_keys = store.keys_of_user(dev.user_id).await.expect("keys");

    break_the_audit_log(&database).await;
    let mut changes = store.auth_changes();
    let actor = &member(me);
    let unavailable = |result: Result<(), StoreError>, what: &str| {
        assert!(matches!(result, Err(StoreError::AuditUnavailable(_))), "{what}: {result:?}");
    };
    let app = app_id("com.example.a");
    unavailable(store.create_app(a, &app, "App", actor).await.map(drop), "create_app");
    unavailable(store.insert_key(key_for(me, Some(a)), actor).await.map(drop), "insert_key");
    unavailable(store.update_key(key.id, renamed("renamed"), actor).await.map(drop), "update_key");
    unavailable(
        store.set_member(a, &email("new@example.com"), Role::Read, actor).await.map(drop),
        "set_member",
    );
    unavailable(
        store.set_member(a, &email("dev@example.com"), Role::Admin, actor).await.map(drop),
        "set_member",
    );
    let grace = Some(keygate_store::now() + Duration::hours(1));
    unavailable(
        store.rotate_key(key.id, &key.digest, material(), grace, actor).await.map(drop),
        "rotate_key",
    );
    unavailable(store.delete_key(key.id, actor).await.map(drop), "delete_key");
    unavailable(store.delete_key_by_digest(&key.digest, actor).await.map(drop), "delete_key_by_digest");
    unavailable(store.remove_member(a, dev.user_id, actor).await.map(drop), "remove_member");
    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    unavailable(store.update_organization(a, policy, actor).await.map(drop), "update_organization");
    let member = Enroll::Member { org_id: a, role: Role::Read };
    unavailable(enroll(store, "late@example.com", member).await.map(drop), "enroll");
    unavailable(enroll(store, "owner@example.com", new_org("Other")).await.map(drop), "enroll");

    assert_eq!(snapshot(store, a, me).await, before, "nothing changed");
    assert_eq!(store.keys_of_user(dev.user_id).await.expect("keys"), devs_keys);
    assert_eq!(store.app(&app).await.expect("app"), None);
    assert_eq!(store.key_by_digest(&key.digest).await.expect("lookup"), Some(key));
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty), "a rolled-back change announces nothing");
}

#[tokio::test]
async fn changes_to_authentication_are_announced_after_commit() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let store = store.as_ref();
    let owner = enroll(store, "owner@example.com", new_org("Acme")).await.expect("enroll");
    let (a, me) = (owner.org_id, owner.user_id);
    let actor = &member(me);
    let mut changes = store.auth_changes();

    // Writes that alter no authentication announce nothing.
    let key = store.insert_key(key_for(me, Some(a)), actor).await.expect("insert");
    let app = app_id("com.example.a");
    store.create_app(a, &app, "App", actor).await.expect("create app");
    store.rename_app(&app, "Renamed", actor).await.expect("rename").expect("exists");
    store.insert_bundle(bundle(&app, "1.0.0"), actor).await.expect("upload");
    store.delete_bundle(&app, "1.0.0", actor).await.expect("delete").expect("exists");
    let other = OrgName::parse("Other").expect("name");
    let other = store.create_organization(&other, me, actor).await.expect("create").id;
    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    store.update_organization(a, policy, actor).await.expect("update").expect("exists");
    enroll(store, "owner@example.com", new_org("Third")).await.expect("enroll");
    store.record_usage(&[uses(key.id, keygate_store::now(), 1)]).await.expect("usage");
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));

    // Each write that does, once, after its commit.
    let mut expect = |change: AuthChange| assert_eq!(changes.try_recv(), Ok(change));
    store.update_key(key.id, renamed("renamed"), actor).await.expect("update").expect("exists");
    expect(AuthChange::Key { id: key.id });
    let rotated = store
        .rotate_key(key.id, &key.digest, material(), None, actor)
        .await
        .expect("rotate")
        .expect("exists");
    expect(AuthChange::Key { id: key.id });
    store.delete_key_by_digest(&rotated.digest, actor).await.expect("revoke").expect("found");
    expect(AuthChange::Key { id: key.id });
    let second = store.insert_key(key_for(me, Some(a)), actor).await.expect("insert");
    assert!(store.delete_key(second.id, actor).await.expect("delete"));
    expect(AuthChange::Key { id: second.id });
    let dev = store.set_member(a, &email("dev@example.com"), Role::Write, actor).await.expect("set");
    expect(AuthChange::Member { org_id: a, user_id: dev.user_id });
    assert!(store.remove_member(a, dev.user_id, actor).await.expect("remove"));
    expect(AuthChange::Member { org_id: a, user_id: dev.user_id });
    let newbie = enroll(store, "new@example.com", Enroll::Member { org_id: a, role: Role::Read }).await;
    expect(AuthChange::Member { org_id: a, user_id: newbie.expect("enroll").user_id });
    store.delete_app(&app, actor).await.expect("delete").expect("exists");
    expect(AuthChange::App { app_id: app.clone() });
    store.delete_organization(other).await.expect("delete").expect("exists");
    expect(AuthChange::Organization { org_id: other });

    // Refused, or nothing to change: nothing announced.
    let outsider = store.set_member(a, &email("x@example.com"), Role::Read, &member(Uuid::new_v4())).await;
    assert!(matches!(outsider, Err(StoreError::NotFound(Entity::Organization))), "{outsider:?}");
    let last = store.set_member(a, &email("owner@example.com"), Role::Read, OP).await;
    assert!(matches!(last, Err(StoreError::Refused(Refusal::LastSuperAdmin))), "{last:?}");
    let missing = Enroll::Member { org_id: Uuid::new_v4(), role: Role::Read };
    enroll(store, "y@example.com", missing).await.expect_err("no such organization");
    assert_eq!(store.update_key(key.id, renamed("gone"), actor).await.expect("update"), None);
    assert_eq!(
        store.rotate_key(owner.key.id, &material().digest, material(), None, actor).await.expect("rotate"),
        None
    );
    assert!(!store.delete_key(key.id, actor).await.expect("delete"));
    assert!(!store.remove_member(a, Uuid::new_v4(), actor).await.expect("remove"));
    assert_eq!(store.delete_app(&app, actor).await.expect("delete"), None);
    assert_eq!(store.delete_organization(other).await.expect("delete"), None);
    assert_eq!(changes.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn the_membership_rules_hold_inside_the_store() {
    let database = TestDatabase::new().await;
    let store = open(&database).await;
    let store = store.as_ref();
    let owner = enroll(store, "owner@example.com", new_org("Acme")).await.expect("enroll");
    let a = owner.org_id;
    let as_member = |role| Enroll::Member { org_id: a, role };
    let writer = enroll(store, "writer@example.com", as_member(Role::Write)).await.expect("writer").user_id;
    let admin = enroll(store, "admin@example.com", as_member(Role::Admin)).await.expect("admin").user_id;
    let outsider = enroll(store, "out@example.com", new_org("Elsewhere")).await.expect("outsider").user_id;
    let role = |user| store.role(a, user);

    // A member who does not administer the organization changes nobody.
    let refused = store.set_member(a, &email("x@example.com"), Role::Read, &member(writer)).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::NotAnAdministrator))), "{refused:?}");
    let refused = store.remove_member(a, admin, &member(writer)).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::NotAnAdministrator))), "{refused:?}");
    let refused = store.remove_member(a, Uuid::new_v4(), &member(writer)).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(Refusal::NotAnAdministrator))),
        "before 'not a member'"
    );

    // An admin stays within their own role, granting and touching.
    let refused = store.set_member(a, &email("x@example.com"), Role::SuperAdmin, &member(admin)).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::RoleAboveOwn))), "{refused:?}");
    let refused = store.set_member(a, &email("owner@example.com"), Role::Read, &member(admin)).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::RoleAboveOwn))), "{refused:?}");
    let refused = store.remove_member(a, owner.user_id, &member(admin)).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::RoleAboveOwn))), "{refused:?}");
    assert_eq!(role(owner.user_id).await.expect("role"), Some(Role::SuperAdmin));
    assert_eq!(store.members(a).await.expect("members").len(), 3, "x was never added");
    let x = store.set_member(a, &email("x@example.com"), Role::Admin, &member(admin)).await.expect("admin");
    assert_eq!(role(x.user_id).await.expect("role"), Some(Role::Admin));
    assert!(!store.remove_member(a, Uuid::new_v4(), &member(admin)).await.expect("not a member"));

    // A non-member, or a missing organization, sees nothing.
    for actor in [member(outsider), member(Uuid::new_v4())] {
        let hidden = store.set_member(a, &email("y@example.com"), Role::Read, &actor).await;
        assert!(matches!(hidden, Err(StoreError::NotFound(Entity::Organization))), "{hidden:?}");
        let hidden = store.remove_member(a, writer, &actor).await;
        assert!(matches!(hidden, Err(StoreError::NotFound(Entity::Organization))), "{hidden:?}");
    }
    let missing = store.set_member(Uuid::new_v4(), &email("y@example.com"), Role::Read, OP).await;
    assert!(matches!(missing, Err(StoreError::NotFound(Entity::Organization))), "{missing:?}");
    let missing = store.remove_member(Uuid::new_v4(), writer, &member(owner.user_id)).await;
    assert!(matches!(missing, Err(StoreError::NotFound(Entity::Organization))), "{missing:?}");
    assert_eq!(role(writer).await.expect("role"), Some(Role::Write));

    // The operator is bound by the last super_admin alone.
    let last = store.set_member(a, &email("owner@example.com"), Role::Read, OP).await;
    assert!(matches!(last, Err(StoreError::Refused(Refusal::LastSuperAdmin))), "{last:?}");
    let last = store.remove_member(a, owner.user_id, OP).await;
    assert!(matches!(last, Err(StoreError::Refused(Refusal::LastSuperAdmin))), "{last:?}");
    let promoted =
        store.set_member(a, &email("writer@example.com"), Role::SuperAdmin, OP).await.expect("grant");
    assert_eq!(promoted.role, Role::SuperAdmin);
    store.set_member(a, &email("owner@example.com"), Role::Read, OP).await.expect("no longer the last");
    assert_eq!(role(owner.user_id).await.expect("role"), Some(Role::Read));

    // A super_admin demotes themselves only while another remains; removal
    // takes the member's keys scoped to the organization, not the others.
    let scoped = store.insert_key(key_for(writer, Some(a)), OP).await.expect("insert");
    let last = store.set_member(a, &email("writer@example.com"), Role::Admin, &member(writer)).await;
    assert!(matches!(last, Err(StoreError::Refused(Refusal::LastSuperAdmin))), "{last:?}");
    assert!(store.remove_member(a, admin, &member(writer)).await.expect("remove"));
    assert!(store.remove_member(a, x.user_id, &member(writer)).await.expect("remove"));
    let unscoped = store.keys_of_user(writer).await.expect("keys");
    store.set_member(a, &email("admin@example.com"), Role::SuperAdmin, OP).await.expect("grant");
    assert!(store.remove_member(a, writer, &member(admin)).await.expect("one super_admin removes another"));
    assert_eq!(role(writer).await.expect("role"), None);
    let left: Vec<i64> = store.keys_of_user(writer).await.expect("keys").iter().map(|k| k.id).collect();
    let expected: Vec<i64> = unscoped.iter().filter(|k| k.id != scoped.id).map(|k| k.id).collect();
    assert_eq!(left, expected);
    assert!(!expected.is_empty(), "the unscoped CLI key stays");
}
