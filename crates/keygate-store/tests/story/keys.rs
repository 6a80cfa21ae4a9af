//! Keys: stored exactly, found by digest and id, changed partially, rotated
//! with a grace period, and read with their owner's current role.

use chrono::Duration;
use keygate_core::rules::{PolicyViolation, Refusal};
use keygate_core::{KeyName, Mode, Role};
use keygate_store::{Actor, Entity, KeyChanges, OrgChanges, StoreError};
use uuid::Uuid;

use super::{
    OP, acme, as_member, assert_not_found, assert_refused, at_once, enroll, key_for, material, open,
};

#[tokio::test]
async fn keys_round_trip_exactly_and_are_found_by_digest_and_id() {
    let (_database, store, owner) = acme().await;
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

    let orphan = store.insert_key(key_for(owner.user_id, Some(Uuid::new_v4())), OP).await;
    assert!(matches!(orphan, Err(keygate_store::StoreError::NotFound(_))), "{orphan:?}");
}

#[tokio::test]
async fn updates_are_partial_and_never_resurrect_a_deleted_key() {
    let (_database, store, owner) = acme().await;
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
async fn a_scoped_key_needs_its_user_to_be_a_member() {
    let (_database, store, owner) = acme().await;
    let outsider =
        enroll(store.as_ref(), "out@example.com", super::new_org("Elsewhere")).await.expect("enroll");
    let refused = store.insert_key(key_for(outsider.user_id, Some(owner.org_id)), OP).await;
    assert_not_found(refused, Entity::Membership);
    let member = enroll(store.as_ref(), "in@example.com", as_member(owner.org_id, Role::Read)).await;
    let member = member.expect("enroll").user_id;
    store.insert_key(key_for(member, Some(owner.org_id)), OP).await.expect("a member's key");
}

#[tokio::test]
async fn a_scoped_key_meets_its_organizations_expiry_policy_as_it_stands_at_the_write() {
    let (_database, store, owner) = acme().await;
    let refused = store.insert_key(key_for(owner.user_id, Some(Uuid::now_v7())), OP).await;
    assert_not_found(refused, Entity::Organization);
    let tighten = OrgChanges { max_apikey_expiration_days: Some(Some(7)), ..OrgChanges::default() };
    store.update_organization(owner.org_id, tighten, OP).await.expect("update").expect("found");
    let before = store.keys_of_org(owner.org_id).await.expect("keys").len();

    let mut forever = key_for(owner.user_id, Some(owner.org_id));
    forever.expires_at = None;
    let refused = store.insert_key(forever, OP).await;
    assert_refused(refused, Refusal::ExpiryPolicy(PolicyViolation::ExceedsMaxDays(7)));
    let mut late = key_for(owner.user_id, Some(owner.org_id));
    late.expires_at = Some(keygate_store::truncate(chrono::Utc::now() + Duration::days(8)));
    let refused = store.insert_key(late, OP).await;
    assert_refused(refused, Refusal::ExpiryPolicy(PolicyViolation::ExceedsMaxDays(7)));
    assert_eq!(store.keys_of_org(owner.org_id).await.expect("keys").len(), before, "nothing stored");

    // Within the policy (key_for's keys expire in a day).
    store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("a day is fine");
    let require = OrgChanges { require_apikey_expiration: Some(true), ..OrgChanges::default() };
    store.update_organization(owner.org_id, require, OP).await.expect("update").expect("found");
    let mut forever = key_for(owner.user_id, Some(owner.org_id));
    forever.expires_at = None;
    let refused = store.insert_key(forever, OP).await;
    assert!(matches!(refused, Err(StoreError::Refused(Refusal::ExpiryPolicy(_)))), "{refused:?}");
    assert_eq!(store.keys_of_org(owner.org_id).await.expect("keys").len(), before + 1);
    // An unscoped key answers to no organization's policy.
    let mut unscoped = key_for(owner.user_id, None);
    unscoped.expires_at = None;
    store.insert_key(unscoped, OP).await.expect("an unscoped key");
}

#[tokio::test]
async fn concurrent_writes_keep_ids_and_keys_unique() {
    let (_database, store, owner) = acme().await;
    let inserted = at_once(40, || {
        let store = store.clone();
        async move { store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await }
    })
    .await;
    let mut ids: Vec<i64> = inserted.into_iter().map(|key| key.expect("insert").id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(store.keys_of_org(owner.org_id).await.expect("keys").len(), 40);
}

/// Writes that fail at the same moment as others (on SQLite, in the same
/// group commit) fail alone: every other write is made and acknowledged.
#[tokio::test]
async fn concurrent_writes_that_fail_leave_the_others_untouched() {
    let (_database, store, owner) = acme().await;
    let existing = store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert");
    let doomed: Vec<i64> = {
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(
                store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert").id,
            );
        }
        ids
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        let doomed = doomed.clone();
        let mut new = key_for(owner.user_id, Some(owner.org_id));
        tasks.spawn(async move {
            let outcome = match i % 5 {
                0 => format!("{:?}", store.insert_key(new, OP).await.map(|_| "created")),
                1 => {
                    new.material.digest = existing.digest;
                    format!("{:?}", store.insert_key(new, OP).await.map(|_| "created"))
                }
                2 => {
                    new.org_id = Some(Uuid::new_v4());
                    format!("{:?}", store.insert_key(new, OP).await.map(|_| "created"))
                }
                3 => format!("{:?}", store.delete_key(existing.id + 10_000 + i, OP).await),
                _ => format!("{:?}", store.delete_key(doomed[(i / 5) as usize], OP).await),
            };
            (i % 5, outcome)
        });
    }
    let mut outcomes = tasks.join_all().await;
    outcomes.sort();
    let expected = |kind| match kind {
        0 => "Ok(\"created\")",
        1 => "Err(Conflict(ApiKey))",
        2 => "Err(NotFound(Organization))",
        3 => "Ok(false)",
        _ => "Ok(true)",
    };
    for (kind, outcome) in &outcomes {
        assert_eq!(outcome, expected(*kind), "write kind {kind}");
    }
    let keys = store.keys_of_org(owner.org_id).await.expect("keys");
    assert_eq!(keys.len(), 1 + 10, "the existing key and the ten created");
    assert!(keys.iter().all(|key| !doomed.contains(&key.id)), "a deleted key is still there");
}

#[tokio::test]
async fn data_survives_reopening_and_migrations_rerun_cleanly() {
    let (database, store, owner) = acme().await;
    store.close().await;
    let store = open(&database).await;
    assert_eq!(store.key_by_id(owner.key.id).await.expect("by id"), Some(owner.key));
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn a_rotated_key_answers_to_its_old_secret_only_during_the_grace_period() {
    let (_database, store, owner) = acme().await;
    let key = store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert");
    let first_digest = key.digest;

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
        store.revoke_key(&second_digest, OP).await.expect("delete"),
        [],
        "a dead secret deletes nothing"
    );
    let revoked: Vec<i64> =
        store.revoke_key(&third_digest, OP).await.expect("delete").iter().map(|k| k.id).collect();
    assert_eq!(revoked, [key.id]);
    assert_eq!(store.rotate_key(key.id, &last.digest, material(), None, OP).await.expect("rotate"), None);
}

#[tokio::test]
async fn a_key_comes_with_its_owners_current_role() {
    let (_database, store, owner) = acme().await;
    let key = store.insert_key(key_for(owner.user_id, Some(owner.org_id)), OP).await.expect("insert");
    let (found, role) = store.key_and_owner_role(&key.digest).await.expect("lookup").expect("found");
    assert_eq!((found.id, role), (key.id, Some(Role::SuperAdmin)));
    let second_owner = as_member(owner.org_id, Role::SuperAdmin);
    let second_owner_key =
        enroll(store.as_ref(), "second@example.com", second_owner).await.expect("second owner").key.id;
    let downgrade = as_member(owner.org_id, Role::Upload);
    enroll(store.as_ref(), "owner@example.com", downgrade).await.expect("downgrade");
    let (_, role) = store.key_and_owner_role(&key.digest).await.expect("lookup").expect("found");
    assert_eq!(role, Some(Role::Upload), "the role as it is now");
    // An unscoped key: its owner's role in any organization where it may act.
    let unscoped = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    let (_, role) = store.key_and_owner_role(&unscoped.digest).await.expect("lookup").expect("found");
    assert_eq!(role, Some(Role::Upload), "a member where the key is not blocked");
    let second = store.key_by_id(second_owner_key).await.expect("by id").expect("exists");
    let by_second =
        &Actor { user_id: Some(second.user_id), key_id: Some(second.id), ip: None, presented: None };
    store.block_key(owner.org_id, unscoped.id, by_second).await.expect("block");
    let (_, role) = store.key_and_owner_role(&unscoped.digest).await.expect("lookup").expect("found");
    assert_eq!(role, None, "blocked in the one organization its owner is a member of");
    assert!(store.key_and_owner_role(&material().digest).await.expect("lookup").is_none());
}
