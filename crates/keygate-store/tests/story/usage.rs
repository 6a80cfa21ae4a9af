//! Usage: a key's last use and its requests per day, written in batches;
//! and an organization's key policy.

use chrono::Duration;
use keygate_store::{DailyUse, OrgChanges};
use uuid::Uuid;

use super::{OP, acme, at_once, enroll, new_org, uses};

#[tokio::test]
async fn usage_and_organization_policy_are_recorded() {
    let (_database, store, owner) = acme().await;
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
async fn last_use_never_goes_backwards() {
    let (_database, store, owner) = acme().await;
    let later = keygate_store::now();
    let earlier = later - Duration::seconds(10);
    store.record_usage(&[uses(owner.key.id, later, 0)]).await.expect("record");
    store.record_usage(&[uses(owner.key.id, earlier, 0)]).await.expect("record");
    let key = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    assert_eq!(key.last_used_at, Some(later));
}

#[tokio::test]
async fn daily_usage_adds_up_and_skips_deleted_keys() {
    let (_database, store, owner) = acme().await;
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
            DailyUse { requests: 2, denied: 1, ..DailyUse::zero(yesterday.date_naive()) },
            DailyUse { requests: 7, denied: 2, ..DailyUse::zero(now.date_naive()) },
        ]
    );
    assert_eq!(store.key_usage(owner.key.id, now.date_naive()).await.expect("usage").len(), 1);
    assert!(store.delete_key(owner.key.id, OP).await.expect("delete"));
    store.record_usage(&[uses(owner.key.id, now, 1)]).await.expect("a deleted key is skipped, not an error");
    assert!(store.key_usage(owner.key.id, yesterday.date_naive()).await.expect("usage").is_empty());
}

#[tokio::test]
async fn batches_written_at_once_add_up() {
    let (_database, store, owner) = acme().await;
    let second = enroll(store.as_ref(), "owner@example.com", new_org("Second")).await.expect("enroll");
    let (first, second) = (owner.key.id, second.key.id);
    let now = keygate_store::now();
    let written = at_once(10, || {
        let store = store.clone();
        async move { store.record_usage(&[uses(second, now, 1), uses(first, now, 2)]).await }
    })
    .await;
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    for (key, requests) in [(first, 20), (second, 10)] {
        let days = store.key_usage(key, now.date_naive()).await.expect("usage");
        assert_eq!(days, [DailyUse { requests, denied: 10, ..DailyUse::zero(now.date_naive()) }]);
    }
}

/// A flush carries every key in use: thousands in one batch, some deleted
/// meanwhile, and the live ones sorted after them.
#[tokio::test]
async fn a_batch_of_thousands_of_keys_skips_the_missing_and_records_the_rest() {
    let (_database, store, owner) = acme().await;
    let second = enroll(store.as_ref(), "owner@example.com", new_org("Second")).await.expect("enroll");
    let now = keygate_store::now();
    let mut batch: Vec<_> = (1..=2_500).map(|missing| uses(-missing, now, 1)).collect();
    batch.push(uses(owner.key.id, now, 2));
    batch.push(uses(second.key.id, now - Duration::days(1), 3));
    store.record_usage(&batch).await.expect("missing keys are skipped, not an error");
    let owner_key = store.key_by_id(owner.key.id).await.expect("by id").expect("exists");
    assert_eq!(owner_key.last_used_at, Some(now));
    assert_eq!(
        store.key_usage(owner.key.id, now.date_naive()).await.expect("usage"),
        [DailyUse { requests: 2, denied: 1, ..DailyUse::zero(now.date_naive()) }]
    );
    let yesterday = (now - Duration::days(1)).date_naive();
    assert_eq!(
        store.key_usage(second.key.id, yesterday).await.expect("usage"),
        [DailyUse { requests: 3, denied: 1, ..DailyUse::zero(yesterday) }]
    );
    assert!(store.key_usage(-1, yesterday).await.expect("usage").is_empty());
}
