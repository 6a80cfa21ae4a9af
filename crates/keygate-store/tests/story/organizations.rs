//! Users, organizations and memberships: enrollment, the membership rules
//! the store enforces against the roles as they stand, and what deleting
//! an organization or app leaves for the blob store.

use keygate_core::rules::Refusal;
use keygate_core::{Mode, Role};
use keygate_store::Entity;
use uuid::Uuid;

use super::{
    OP, TestDatabase, acme, app_id, as_member, assert_not_found, assert_refused, at_once, bundle, email,
    enroll, key_for, member, new_org, open,
};

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

    let dev = enroll(store.as_ref(), "dev@example.com", as_member(owner.org_id, Role::Write)).await;
    let dev = dev.expect("member");
    assert_eq!(store.role(owner.org_id, dev.user_id).await.expect("role"), Some(Role::Write));
    assert_eq!(store.role(again.org_id, dev.user_id).await.expect("role"), None);

    let missing = enroll(store.as_ref(), "x@example.com", as_member(Uuid::new_v4(), Role::Read)).await;
    assert_not_found(missing, Entity::Organization);
    store.close().await;
}

#[tokio::test]
async fn the_last_super_admin_stays() {
    let (_database, store, owner) = acme().await;
    let downgrade = as_member(owner.org_id, Role::Admin);
    let last = enroll(store.as_ref(), "owner@example.com", downgrade.clone()).await;
    assert_refused(last, Refusal::LastSuperAdmin);
    assert_eq!(store.role(owner.org_id, owner.user_id).await.expect("role"), Some(Role::SuperAdmin));

    let promote = as_member(owner.org_id, Role::SuperAdmin);
    enroll(store.as_ref(), "second@example.com", promote).await.expect("promote");
    enroll(store.as_ref(), "owner@example.com", downgrade).await.expect("now allowed");
    assert_eq!(store.role(owner.org_id, owner.user_id).await.expect("role"), Some(Role::Admin));
}

#[tokio::test]
async fn one_new_email_enrolled_at_once_is_one_user() {
    let (_database, store, owner) = acme().await;
    let mut users = at_once(10, || {
        let store = store.clone();
        async move {
            let member = as_member(owner.org_id, Role::Read);
            enroll(store.as_ref(), "new@example.com", member).await.map(|e| e.user_id)
        }
    })
    .await
    .into_iter()
    .map(|user| user.expect("enroll"))
    .collect::<Vec<_>>();
    users.dedup();
    assert_eq!(users.len(), 1, "one email, one user");
}

#[tokio::test]
async fn the_membership_rules_hold_inside_the_store() {
    let (_database, store, owner) = acme().await;
    let store = store.as_ref();
    let a = owner.org_id;
    let writer =
        enroll(store, "writer@example.com", as_member(a, Role::Write)).await.expect("writer").user_id;
    let admin = enroll(store, "admin@example.com", as_member(a, Role::Admin)).await.expect("admin").user_id;
    let outsider = enroll(store, "out@example.com", new_org("Elsewhere")).await.expect("outsider").user_id;
    let role = |user| store.role(a, user);

    // A member who does not administer the organization changes nobody,
    // and is told so before being told that there is no such member.
    let by_writer = &member(writer);
    assert_refused(
        store.set_member(a, &email("x@example.com"), Role::Read, by_writer).await,
        Refusal::NotAnAdministrator,
    );
    assert_refused(store.remove_member(a, admin, by_writer).await, Refusal::NotAnAdministrator);
    assert_refused(store.remove_member(a, Uuid::new_v4(), by_writer).await, Refusal::NotAnAdministrator);

    // An admin stays within their own role, granting, and reaches only
    // members below it; a newcomer (even one with an account elsewhere)
    // joins by invitation, never by an admin's say.
    let by_admin = &member(admin);
    for newcomer in ["x@example.com", "out@example.com"] {
        let added = store.set_member(a, &email(newcomer), Role::Read, by_admin).await;
        assert_refused(added, Refusal::NotAMember);
    }
    let above = store.set_member(a, &email("writer@example.com"), Role::SuperAdmin, by_admin).await;
    assert_refused(above, Refusal::RoleAboveOwn);
    assert_refused(
        store.set_member(a, &email("owner@example.com"), Role::Read, by_admin).await,
        Refusal::Outranked,
    );
    assert_refused(store.remove_member(a, owner.user_id, by_admin).await, Refusal::Outranked);
    assert_eq!(role(owner.user_id).await.expect("role"), Some(Role::SuperAdmin));
    assert_eq!(store.members(a).await.expect("members").len(), 3, "x was never added");
    let x = enroll(store, "x@example.com", as_member(a, Role::Read)).await.expect("x").user_id;
    let promoted = store.set_member(a, &email("x@example.com"), Role::Admin, by_admin).await.expect("admin");
    assert_eq!(role(promoted.user_id).await.expect("role"), Some(Role::Admin));
    assert_refused(store.remove_member(a, x, by_admin).await, Refusal::Outranked);
    assert!(!store.remove_member(a, Uuid::new_v4(), by_admin).await.expect("not a member"));

    // A non-member, or a missing organization, sees nothing.
    for actor in [member(outsider), member(Uuid::new_v4())] {
        let hidden = store.set_member(a, &email("y@example.com"), Role::Read, &actor).await;
        assert_not_found(hidden, Entity::Organization);
        assert_not_found(store.remove_member(a, writer, &actor).await, Entity::Organization);
    }
    let missing = store.set_member(Uuid::new_v4(), &email("y@example.com"), Role::Read, OP).await;
    assert_not_found(missing, Entity::Organization);
    let missing = store.remove_member(Uuid::new_v4(), writer, &member(owner.user_id)).await;
    assert_not_found(missing, Entity::Organization);
    assert_eq!(role(writer).await.expect("role"), Some(Role::Write));

    // The operator is bound by the last super_admin alone.
    let last = store.set_member(a, &email("owner@example.com"), Role::Read, OP).await;
    assert_refused(last, Refusal::LastSuperAdmin);
    assert_refused(store.remove_member(a, owner.user_id, OP).await, Refusal::LastSuperAdmin);
    let promoted =
        store.set_member(a, &email("writer@example.com"), Role::SuperAdmin, OP).await.expect("grant");
    assert_eq!(promoted.role, Role::SuperAdmin);
    store.set_member(a, &email("owner@example.com"), Role::Read, OP).await.expect("no longer the last");
    assert_eq!(role(owner.user_id).await.expect("role"), Some(Role::Read));

    // A super_admin demotes themselves only while another remains; removal
    // takes the member's keys scoped to the organization, not the others.
    let scoped = store.insert_key(key_for(writer, Some(a)), OP).await.expect("insert");
    let last = store.set_member(a, &email("writer@example.com"), Role::Admin, by_writer).await;
    assert_refused(last, Refusal::LastSuperAdmin);
    assert!(store.remove_member(a, admin, by_writer).await.expect("remove"));
    assert!(store.remove_member(a, x, by_writer).await.expect("remove"));
    let unscoped = store.keys_of_user(writer).await.expect("keys");
    enroll(store, "admin@example.com", as_member(a, Role::SuperAdmin)).await.expect("grant");
    let peer = store.remove_member(a, writer, by_admin).await;
    assert_refused(peer, Refusal::Outranked);
    assert!(
        store.remove_member(a, writer, by_writer).await.expect("a super_admin leaves while another stays")
    );
    assert_eq!(role(writer).await.expect("role"), None);
    let left: Vec<i64> = store.keys_of_user(writer).await.expect("keys").iter().map(|k| k.id).collect();
    let expected: Vec<i64> = unscoped.iter().filter(|k| k.id != scoped.id).map(|k| k.id).collect();
    assert_eq!(left, expected);
    assert!(!expected.is_empty(), "the unscoped CLI key stays");
}

#[tokio::test]
async fn deleting_an_app_or_an_organization_hands_back_its_blob_keys() {
    let (_database, store, owner) = acme().await;
    let (a, actor) = (owner.org_id, &member(owner.user_id));
    for app in ["com.example.a", "com.example.b"] {
        store.create_app(a, &app_id(app), "App", actor).await.expect("create app");
        for version in ["1.0.0", "1.1.0"] {
            store.insert_bundle(bundle(&app_id(app), version), actor).await.expect("upload");
        }
    }
    let mut blobs = store.delete_app(&app_id("com.example.b"), actor).await.expect("delete").expect("exists");
    blobs.sort();
    assert_eq!(blobs, ["blobs/com.example.b/1.0.0", "blobs/com.example.b/1.1.0"]);
    let mut blobs = store.delete_organization(a, OP).await.expect("delete").expect("exists");
    blobs.sort();
    assert_eq!(blobs, ["blobs/com.example.a/1.0.0", "blobs/com.example.a/1.1.0"]);
    assert_eq!(store.app(&app_id("com.example.a")).await.expect("app"), None);
    assert!(store.bundles(&app_id("com.example.a")).await.expect("bundles").is_empty());
}

#[tokio::test]
async fn an_organizations_bundles_stay_within_its_quota_under_concurrent_uploads() {
    let (_database, store, owner) = acme().await;
    let (a, actor) = (owner.org_id, &member(owner.user_id));
    for app in ["com.example.a", "com.example.b"] {
        store.create_app(a, &app_id(app), "App", actor).await.expect("create app");
    }
    // Each bundle takes 3 bytes; the quota holds four of them.
    let uploads = (0..10).map(|i| {
        let app = if i % 2 == 0 { "com.example.a" } else { "com.example.b" };
        let bundle = keygate_store::NewBundle {
            max_org_storage: Some(12),
            ..bundle(&app_id(app), &format!("1.0.{i}"))
        };
        let store = store.clone();
        let actor = *actor;
        tokio::spawn(async move { store.insert_bundle(bundle, &actor).await })
    });
    let mut stored = 0;
    for upload in uploads.collect::<Vec<_>>() {
        match upload.await.expect("task") {
            Ok(_) => stored += 1,
            refused => assert_refused(refused, Refusal::StorageQuota(12)),
        }
    }
    assert_eq!(stored, 4, "exactly as many as fit");
    assert_eq!(store.org_storage(a).await.expect("storage"), 12);
    let listed = store.bundles(&app_id("com.example.a")).await.expect("a").len()
        + store.bundles(&app_id("com.example.b")).await.expect("b").len();
    assert_eq!(listed, 4, "nothing of a refused upload stays");
}
