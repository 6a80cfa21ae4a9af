//! Invitations: single use under concurrency, never past their expiry,
//! never once withdrawn.

use chrono::{Duration, Utc};
use keygate_store::{NewInvite, Redeemer};

use super::*;

fn invitation(org_id: Uuid, email_address: &str, role: Role, digest: u8, days: i64) -> NewInvite {
    NewInvite {
        org_id,
        email: email(email_address),
        role,
        digest: [digest; 32],
        expires_at: keygate_store::truncate(Utc::now() + Duration::days(days)),
    }
}

/// A redemption without a key: a new account's.
fn newcomer() -> Redeemer {
    Redeemer { presented: None, first_key: material(), ip: None }
}

#[tokio::test]
async fn an_invitation_is_redeemed_once_however_many_try_at_once() {
    let (_db, store, owner) = acme().await;
    let invite = store
        .create_invite(invitation(owner.org_id, "new@example.com", Role::Upload, 1, 7), &with_key(&owner))
        .await
        .expect("invite");
    assert_eq!(store.pending_invites(owner.org_id, Utc::now()).await.expect("pending"), [invite]);
    let store_ = store.clone();
    let results = at_once(8, move || {
        let store = store_.clone();
        async move { store.redeem_invite(&[1; 32], Utc::now(), newcomer()).await.expect("redeem") }
    })
    .await;
    let redeemed: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(redeemed.len(), 1, "single use");
    let redeemed = &redeemed[0];
    let key = redeemed.key.as_ref().expect("a new account's first key");
    assert_eq!((redeemed.org_id, redeemed.role, key.mode), (owner.org_id, Role::Upload, Mode::All));
    assert_eq!((key.org_id, key.user_id), (Some(owner.org_id), redeemed.user_id));
    assert_eq!(store.role(owner.org_id, redeemed.user_id).await.expect("role"), Some(Role::Upload));
    assert!(store.pending_invites(owner.org_id, Utc::now()).await.expect("pending").is_empty());
}

#[tokio::test]
async fn expired_and_withdrawn_invitations_redeem_nothing() {
    let (_db, store, owner) = acme().await;
    store
        .create_invite(invitation(owner.org_id, "late@example.com", Role::Read, 2, -1), &with_key(&owner))
        .await
        .expect("invite");
    let expired = store.redeem_invite(&[2; 32], Utc::now(), newcomer()).await;
    assert_refused(expired.map(|r| r.map(|r| r.user_id)), Refusal::InvitationVoid);
    let withdrawn = store
        .create_invite(invitation(owner.org_id, "gone@example.com", Role::Read, 3, 7), &with_key(&owner))
        .await
        .expect("invite");
    let by_owner = &with_key(&owner);
    assert!(store.revoke_invite(owner.org_id, withdrawn.id, by_owner).await.expect("revoke"));
    assert!(!store.revoke_invite(owner.org_id, withdrawn.id, by_owner).await.expect("revoke"));
    assert_eq!(
        store.redeem_invite(&[3; 32], Utc::now(), newcomer()).await.expect("redeem").map(|r| r.user_id),
        None
    );
    assert_eq!(store.members(owner.org_id).await.expect("members").len(), 1, "nobody joined");
    let nowhere = invitation(Uuid::now_v7(), "x@example.com", Role::Read, 4, 7);
    assert_not_found(store.create_invite(nowhere, by_owner).await, Entity::Organization);
}
