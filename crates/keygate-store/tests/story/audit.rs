//! The audit log, written with every change or not at all, and the changes
//! of authentication, announced after their commits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::Duration;
use keygate_core::rules::Refusal;
use keygate_core::{OrgName, Role};
use keygate_store::{Actor, ApiKeyRecord, AuditAction, AuthChange, Entity, OrgChanges, Store, StoreError};
use keygate_testkit::TestDatabase;
use sqlx::Connection;
use uuid::Uuid;

use super::{
    OP, acme, app_id, as_member, assert_not_found, assert_refused, bundle, email, enroll, key_for, material,
    member, new_org, renamed, uses,
};

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
    let (_database, store, owner) = acme().await;
    let store = store.as_ref();
    let (a, me) = (owner.org_id, owner.user_id);
    let mut in_a = vec![logged(OrganizationCreate, a, OP), logged(ApiKeyCreate, owner.key.id, OP)];
    assert_eq!(log_of(store, a).await, in_a);

    // The owner's new unscoped key is logged in every organization of theirs.
    let second = enroll(store, "owner@example.com", new_org("Second")).await.expect("enroll");
    let b = second.org_id;
    in_a.push(logged(ApiKeyCreate, second.key.id, OP));
    let mut in_b = vec![logged(OrganizationCreate, b, OP), logged(ApiKeyCreate, second.key.id, OP)];

    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let actor = &Actor { user_id: Some(me), key_id: Some(owner.key.id), ip: Some(ip), presented: None };
    let third = OrgName::parse("Third").expect("name");
    let c = store.create_organization(&third, me, actor).await.expect("create").id;
    let mut in_c = vec![logged(OrganizationCreate, c, actor)];

    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    store.update_organization(a, policy, actor).await.expect("update").expect("exists");
    in_a.push(logged(OrganizationUpdate, a, actor));
    // Only the operator adds a member directly; an actor changes members' roles.
    let dev = enroll(store, "dev@example.com", as_member(a, Role::Read)).await.expect("enroll");
    in_a.push(logged(MemberSet, dev.user_id, OP));
    in_a.push(logged(ApiKeyCreate, dev.key.id, OP));
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
    assert_eq!(
        store.revoke_key(&leaked.digest, reporter).await.expect("revoke"),
        std::slice::from_ref(&leaked)
    );
    in_b.push(logged(ApiKeyRevoke, leaked.id, reporter));

    let newbie = enroll(store, "new@example.com", as_member(a, Role::Read)).await.expect("enroll");
    in_a.push(logged(MemberSet, newbie.user_id, OP));
    in_a.push(logged(ApiKeyCreate, newbie.key.id, OP));

    // Writes that find nothing to change log nothing.
    assert_eq!(store.update_key(key.id, renamed("gone"), actor).await.expect("update"), None);
    assert!(!store.delete_key(key.id, actor).await.expect("delete"));
    assert_eq!(
        store.rotate_key(owner.key.id, &material().digest, material(), None, actor).await.expect("rotate"),
        None
    );
    assert_eq!(store.revoke_key(&material().digest, actor).await.expect("revoke"), []);
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

    // Deleting an organization takes its own log with it; the instance's
    // log keeps who deleted it and what it held.
    assert!(store.delete_organization(c, actor).await.expect("delete").is_some());
    assert!(log_of(store, c).await.is_empty());
    let deleted = store.instance_events(None, 10).await.expect("instance log");
    let record = deleted.iter().find(|e| e.event.action == "organization.delete").expect("recorded");
    assert_eq!(
        (record.event.target_id.clone(), record.event.actor_user_id, record.event.actor_key_id),
        (c.to_string(), actor.user_id, actor.key_id)
    );
    let detail: serde_json::Value =
        serde_json::from_str(record.detail.as_deref().expect("detail")).expect("json");
    assert_eq!(detail["members"], 1, "{detail}");
    assert!(detail["name"].is_string(), "{detail}");
    // Every account created is on record too.
    let users = deleted.iter().filter(|e| e.event.action == "user.create").count();
    assert!(users >= 1, "{deleted:?}");
    assert_eq!(log_of(store, a).await, in_a);
    assert_eq!(log_of(store, b).await, in_b);
}

/// Makes every INSERT into `audit_events` fail, behind the store's back.
async fn break_the_audit_log(database: &TestDatabase) {
    if database.is_postgres() {
        let mut conn = sqlx::PgConnection::connect(database.url()).await.expect("connect");
        let refuse = "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
                      $$ BEGIN RAISE EXCEPTION 'audit disabled'; END $$; \
                      CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
                      FOR EACH ROW EXECUTE FUNCTION refuse_audit();";
        sqlx::raw_sql(refuse).execute(&mut conn).await.expect("trigger");
        conn.close().await.expect("close");
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database.url()).await.expect("connect");
        let refuse = "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
                      BEGIN SELECT RAISE(ABORT, 'audit disabled'); END";
        sqlx::raw_sql(refuse).execute(&mut conn).await.expect("trigger");
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
    let (database, store, owner) = acme().await;
    let store = store.as_ref();
    let (a, me) = (owner.org_id, owner.user_id);
    let dev = enroll(store, "dev@example.com", as_member(a, Role::Write)).await.expect("dev");
    let key = store.insert_key(key_for(me, Some(a)), OP).await.expect("insert");
    let before = snapshot(store, a, me).await;
    let devs_keys = store.keys_of_user(dev.user_id).await.expect("keys");

    break_the_audit_log(&database).await;
    let changes = super::Announced::attach(store);
    let actor = &member(me);
    let unavailable = |result: Result<(), StoreError>, what: &str| {
        assert!(matches!(result, Err(StoreError::AuditUnavailable(_))), "{what}: {result:?}");
    };
    let app = app_id("com.example.a");
    unavailable(store.create_app(a, &app, "App", actor).await.map(drop), "create_app");
    unavailable(store.insert_key(key_for(me, Some(a)), actor).await.map(drop), "insert_key");
    unavailable(store.update_key(key.id, renamed("renamed"), actor).await.map(drop), "update_key");
    let newcomer = store.set_member(a, &email("new@example.com"), Role::Read, OP).await;
    unavailable(newcomer.map(drop), "set_member");
    let promotion = store.set_member(a, &email("dev@example.com"), Role::Admin, actor).await;
    unavailable(promotion.map(drop), "set_member");
    let grace = Some(keygate_store::now() + Duration::hours(1));
    let rotation = store.rotate_key(key.id, &key.digest, material(), grace, actor).await;
    unavailable(rotation.map(drop), "rotate_key");
    unavailable(store.delete_key(key.id, actor).await.map(drop), "delete_key");
    unavailable(store.revoke_key(&key.digest, actor).await.map(drop), "revoke_key");
    unavailable(store.remove_member(a, dev.user_id, actor).await.map(drop), "remove_member");
    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    unavailable(store.update_organization(a, policy, actor).await.map(drop), "update_organization");
    unavailable(enroll(store, "late@example.com", as_member(a, Role::Read)).await.map(drop), "enroll");
    unavailable(enroll(store, "owner@example.com", new_org("Other")).await.map(drop), "enroll");

    assert_eq!(snapshot(store, a, me).await, before, "nothing changed");
    assert_eq!(store.keys_of_user(dev.user_id).await.expect("keys"), devs_keys);
    assert_eq!(store.app(&app).await.expect("app"), None);
    assert_eq!(store.key_by_digest(&key.digest).await.expect("lookup"), Some(key));
    assert_eq!(changes.take(), [], "a rolled-back change announces nothing");
}

#[tokio::test]
async fn changes_to_authentication_are_announced_after_commit() {
    let (_database, store, owner) = acme().await;
    let store = store.as_ref();
    let (a, me) = (owner.org_id, owner.user_id);
    let actor = &member(me);
    let changes = super::Announced::attach(store);

    // Writes that alter no authentication announce nothing.
    let key = store.insert_key(key_for(me, Some(a)), actor).await.expect("insert");
    let app = app_id("com.example.a");
    store.create_app(a, &app, "App", actor).await.expect("create app");
    store.rename_app(&app, "Renamed", actor).await.expect("rename").expect("exists");
    store.insert_bundle(bundle(&app, "1.0.0"), actor).await.expect("upload");
    store.delete_bundle(&app, "1.0.0", actor).await.expect("delete").expect("exists");
    let policy = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    store.update_organization(a, policy, actor).await.expect("update").expect("exists");
    store.record_usage(&[uses(key.id, keygate_store::now(), 1)]).await.expect("usage");
    assert_eq!(changes.take(), []);

    // Each write that does, once, after its commit.
    let expect = |change: AuthChange| assert_eq!(changes.take(), [change]);
    // A new organization makes its creator a member somewhere: their
    // unscoped keys' standing changes.
    let other = OrgName::parse("Other").expect("name");
    let other = store.create_organization(&other, me, actor).await.expect("create").id;
    expect(AuthChange::Member { org_id: other, user_id: me });
    let third = enroll(store, "owner@example.com", new_org("Third")).await.expect("enroll").org_id;
    expect(AuthChange::Member { org_id: third, user_id: me });
    store.update_key(key.id, renamed("renamed"), actor).await.expect("update").expect("exists");
    expect(AuthChange::Key { id: key.id });
    let rotated = store
        .rotate_key(key.id, &key.digest, material(), None, actor)
        .await
        .expect("rotate")
        .expect("exists");
    expect(AuthChange::Key { id: key.id });
    assert_eq!(store.revoke_key(&rotated.digest, actor).await.expect("revoke").len(), 1);
    expect(AuthChange::Key { id: key.id });
    let second = store.insert_key(key_for(me, Some(a)), actor).await.expect("insert");
    assert!(store.delete_key(second.id, actor).await.expect("delete"));
    expect(AuthChange::Key { id: second.id });
    let dev = store.set_member(a, &email("dev@example.com"), Role::Write, OP).await.expect("set");
    expect(AuthChange::Member { org_id: a, user_id: dev.user_id });
    assert!(store.remove_member(a, dev.user_id, actor).await.expect("remove"));
    expect(AuthChange::Member { org_id: a, user_id: dev.user_id });
    let newbie = enroll(store, "new@example.com", as_member(a, Role::Read)).await;
    expect(AuthChange::Member { org_id: a, user_id: newbie.expect("enroll").user_id });
    store.delete_app(&app, actor).await.expect("delete").expect("exists");
    expect(AuthChange::App { app_id: app.clone() });
    store.delete_organization(other, OP).await.expect("delete").expect("exists");
    expect(AuthChange::Organization { org_id: other });

    // Refused, or nothing to change: nothing announced.
    let outsider = store.set_member(a, &email("x@example.com"), Role::Read, &member(Uuid::new_v4())).await;
    assert_not_found(outsider, Entity::Organization);
    let last = store.set_member(a, &email("owner@example.com"), Role::Read, OP).await;
    assert_refused(last, Refusal::LastSuperAdmin);
    enroll(store, "y@example.com", as_member(Uuid::new_v4(), Role::Read))
        .await
        .expect_err("no such organization");
    assert_eq!(store.update_key(key.id, renamed("gone"), actor).await.expect("update"), None);
    assert_eq!(
        store.rotate_key(owner.key.id, &material().digest, material(), None, actor).await.expect("rotate"),
        None
    );
    assert!(!store.delete_key(key.id, actor).await.expect("delete"));
    assert!(!store.remove_member(a, Uuid::new_v4(), actor).await.expect("remove"));
    assert_eq!(store.delete_app(&app, actor).await.expect("delete"), None);
    assert_eq!(store.delete_organization(other, OP).await.expect("delete"), None);
    assert_eq!(changes.take(), []);
}
