//! Credit leases: never more than the balance, a refill once per period
//! however many lease at once, and nothing handed back into a balance set
//! anew since.

use chrono::{Duration, Utc};
use keygate_core::limits::{Credits, Interval, Refill};
use keygate_store::{KeyChanges, KeyLimits};

use super::*;

#[tokio::test]
async fn concurrent_leases_never_exceed_the_balance_and_a_refill_happens_once() {
    let (_db, store, owner) = acme().await;
    let refill = Refill::new(100, Interval::Daily, None).expect("refill");
    let limits =
        KeyLimits { credits: Some(Credits::new(40, Some(refill)).expect("credits")), ..Default::default() };
    let key = store
        .insert_key(NewApiKey { limits, ..key_for(owner.user_id, Some(owner.org_id)) }, OP)
        .await
        .expect("key");
    let stored = key.credits.expect("credits");
    assert_eq!((stored.balance.remaining, stored.refill), (40, Some(refill)));

    // The day the key was created: 32 leases of 3 at once share 40.
    let today = Utc::now();
    let store_ = store.clone();
    let granted: u64 = at_once(32, move || {
        let store = store_.clone();
        async move { store.lease_credits(key.id, 3, today).await.expect("lease").expect("limited").granted }
    })
    .await
    .into_iter()
    .sum();
    // All or nothing: the last credit is left, as no lease of 3 fits it.
    assert_eq!(granted, 39, "granted {granted} of 40");

    // The next day, leases at once refill it once: 100, never 200.
    let tomorrow = today + Duration::days(1);
    let store_ = store.clone();
    let granted: u64 = at_once(64, move || {
        let store = store_.clone();
        async move { store.lease_credits(key.id, 2, tomorrow).await.expect("lease").expect("limited").granted }
    })
    .await
    .into_iter()
    .sum();
    assert_eq!(granted, 100, "one refill, spent exactly");
}

#[tokio::test]
async fn unused_credits_go_back_unless_the_balance_was_set_anew() {
    let (_db, store, owner) = acme().await;
    let limits =
        KeyLimits { credits: Some(Credits::new(1_000, None).expect("credits")), ..Default::default() };
    let key = store
        .insert_key(NewApiKey { limits, ..key_for(owner.user_id, Some(owner.org_id)) }, OP)
        .await
        .expect("key");
    let now = Utc::now();
    let lease = store.lease_credits(key.id, 1, now).await.expect("lease").expect("limited");
    assert_eq!((lease.granted, lease.balance.remaining), (63, 937));
    store.return_credits(key.id, 62, lease.balance).await.expect("return");
    let balance =
        store.key_by_id(key.id).await.expect("read").expect("key").credits.expect("credits").balance;
    assert_eq!(balance.remaining, 999);

    let lease = store.lease_credits(key.id, 1, now).await.expect("lease").expect("limited");
    let set =
        KeyChanges { credits: Some(Some(Credits::new(5, None).expect("credits"))), ..Default::default() };
    store.update_key(key.id, set, OP).await.expect("update");
    store.return_credits(key.id, lease.granted - 1, lease.balance).await.expect("return");
    let balance =
        store.key_by_id(key.id).await.expect("read").expect("key").credits.expect("credits").balance;
    assert_eq!(balance.remaining, 5, "a lease of the old balance does not top up the new one");

    let unlimited = KeyChanges { credits: Some(None), ..Default::default() };
    store.update_key(key.id, unlimited, OP).await.expect("update");
    assert_eq!(store.lease_credits(key.id, 1, now).await.expect("lease"), None, "unlimited");
}
