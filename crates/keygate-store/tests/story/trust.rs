//! What no principal may gain, decided by each write over what it reads in
//! its own transaction: invitations that cannot become someone else's key
//! or outlive their inviter's right, blocks only from above, and a leaked
//! key revoked with every key it created.

use chrono::Utc;
use keygate_store::{NewInvite, PresentedKey, Redeemer};

use super::*;

fn invitation(org_id: Uuid, address: &str, role: Role, digest: u8) -> NewInvite {
    NewInvite {
        org_id,
        email: email(address),
        role,
        digest: [digest; 32],
        expires_at: keygate_store::truncate(Utc::now() + Duration::days(7)),
    }
}

fn redeemer(presented: Option<PresentedKey>) -> Redeemer {
    Redeemer { presented, first_key: material(), ip: None }
}

/// A key presented with a redemption, as authentication found it.
fn presented(key: &keygate_store::ApiKeyRecord, mode: Mode) -> Option<PresentedKey> {
    Some(PresentedKey { user_id: key.user_id, key_id: key.id, mode, free: true, digest: key.digest })
}

#[tokio::test]
async fn an_invitation_never_becomes_someone_elses_key() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    let admin = enroll(store.as_ref(), "admin@example.com", as_member(a, Role::Admin)).await.expect("admin");
    let by_admin = &with_key(&admin);

    // The owner is a member: nobody invites them, whatever the role.
    for role in [Role::Read, Role::Write] {
        let owners = store.create_invite(invitation(a, "owner@example.com", role, 1), by_admin).await;
        assert_refused(owners, Refusal::AlreadyMember);
    }
    // Never a role at or above the inviter's.
    let peer = store.create_invite(invitation(a, "peer@example.com", Role::Admin, 2), by_admin).await;
    assert_refused(peer, Refusal::InviteAtOrAboveOwn);

    // Someone with an account elsewhere: the code alone enrolls nobody.
    let other = enroll(store.as_ref(), "other@example.com", new_org("Other")).await.expect("other tenant");
    store.create_invite(invitation(a, "other@example.com", Role::Read, 3), by_admin).await.expect("invite");
    let anonymous = store.redeem_invite(&[3; 32], Utc::now(), redeemer(None)).await;
    assert_refused(anonymous, Refusal::InvitationNeedsOwnKey);
    let admins_key =
        store.redeem_invite(&[3; 32], Utc::now(), redeemer(presented(&admin.key, Mode::All))).await;
    assert_refused(admins_key, Refusal::NotTheInvitee);
    let read_key =
        store.redeem_invite(&[3; 32], Utc::now(), redeemer(presented(&other.key, Mode::Read))).await;
    assert_refused(read_key, Refusal::InvitationNeedsOwnKey);
    // Judged as the key stands when the redemption commits (fifth review):
    // rotated since authentication, or deleted, it speaks for nobody.
    let mut rotated_meanwhile = presented(&other.key, Mode::All);
    if let Some(key) = rotated_meanwhile.as_mut() {
        key.digest = material().digest;
    }
    let stale = store.redeem_invite(&[3; 32], Utc::now(), redeemer(rotated_meanwhile)).await;
    assert_refused(stale, Refusal::InvitationNeedsOwnKey);
    let mut gone = presented(&other.key, Mode::All);
    if let Some(key) = gone.as_mut() {
        key.key_id += 10_000;
    }
    assert_refused(
        store.redeem_invite(&[3; 32], Utc::now(), redeemer(gone)).await,
        Refusal::InvitationNeedsOwnKey,
    );
    assert_eq!(store.role(a, other.user_id).await.expect("role"), None, "refusals change nothing");
    assert_eq!(store.pending_invites(a, Utc::now()).await.expect("pending").len(), 1, "still pending");

    // Their own key of mode `all`: they join, and no key is made.
    let keys_before = store.keys_of_user(other.user_id).await.expect("keys").len();
    let joined = store
        .redeem_invite(&[3; 32], Utc::now(), redeemer(presented(&other.key, Mode::All)))
        .await
        .expect("redeem")
        .expect("found");
    assert_eq!((joined.user_id, joined.role, joined.key.is_none()), (other.user_id, Role::Read, true));
    assert_eq!(store.role(a, other.user_id).await.expect("role"), Some(Role::Read));
    assert_eq!(store.keys_of_user(other.user_id).await.expect("keys").len(), keys_before);

    // A new address: the holder of the code gets the account, nobody else's.
    store.create_invite(invitation(a, "new@example.com", Role::Write, 4), by_admin).await.expect("invite");
    let with_a_key =
        store.redeem_invite(&[4; 32], Utc::now(), redeemer(presented(&admin.key, Mode::All))).await;
    assert_refused(with_a_key, Refusal::NotTheInvitee);
    let new =
        store.redeem_invite(&[4; 32], Utc::now(), redeemer(None)).await.expect("redeem").expect("found");
    let key = new.key.expect("a first key");
    assert_ne!(new.user_id, admin.user_id);
    assert_eq!((key.user_id, key.mode, key.org_id), (new.user_id, Mode::All, Some(a)));
}

#[tokio::test]
async fn an_invitation_is_void_once_its_inviter_could_no_longer_issue_it() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    let admin = enroll(store.as_ref(), "admin@example.com", as_member(a, Role::Admin)).await.expect("admin");
    let by_admin = &with_key(&admin);
    store.create_invite(invitation(a, "alt@example.com", Role::Write, 1), by_admin).await.expect("invite");
    store.create_invite(invitation(a, "alt2@example.com", Role::Write, 2), by_admin).await.expect("invite");
    // Demoted below the invitation's role, then removed.
    store
        .set_member(a, &email("admin@example.com"), Role::Write, &member(owner.user_id))
        .await
        .expect("demote");
    assert_refused(store.redeem_invite(&[1; 32], Utc::now(), redeemer(None)).await, Refusal::InvitationVoid);
    assert!(store.remove_member(a, admin.user_id, &member(owner.user_id)).await.expect("remove"));
    assert_refused(store.redeem_invite(&[2; 32], Utc::now(), redeemer(None)).await, Refusal::InvitationVoid);
    assert_eq!(store.members(a).await.expect("members").len(), 1, "nobody joined");

    // Withdrawn by its issuer or from above its role, not by a peer.
    let second =
        enroll(store.as_ref(), "second@example.com", as_member(a, Role::Admin)).await.expect("admin");
    let by_owner = &with_key(&owner);
    let offered =
        store.create_invite(invitation(a, "x@example.com", Role::Admin, 3), by_owner).await.expect("invite");
    assert_refused(store.revoke_invite(a, offered.id, &member(second.user_id)).await, Refusal::Outranked);
    assert!(store.revoke_invite(a, offered.id, by_owner).await.expect("withdraw"));
    let peers = store
        .create_invite(invitation(a, "y@example.com", Role::Read, 4), &with_key(&second))
        .await
        .expect("invite");
    let third = enroll(store.as_ref(), "third@example.com", as_member(a, Role::Admin)).await.expect("admin");
    assert_refused(store.revoke_invite(a, peers.id, &member(third.user_id)).await, Refusal::Outranked);
    assert!(store.revoke_invite(a, peers.id, by_owner).await.expect("from above its issuer"));
}

#[tokio::test]
async fn an_invitation_is_a_credential_its_issuing_key_made() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    // Issued with a key that expires tomorrow: the first key expires no later.
    let tomorrow = keygate_store::truncate(Utc::now() + Duration::days(1));
    let issuing = NewApiKey {
        mode: Mode::All,
        limited_to_apps: vec![],
        expires_at: Some(tomorrow),
        ..key_for(owner.user_id, Some(a))
    };
    let issuing = store.insert_key(issuing, OP).await.expect("issuing key");
    let by_issuing =
        &Actor { user_id: Some(owner.user_id), key_id: Some(issuing.id), ip: None, presented: None };
    store.create_invite(invitation(a, "new@example.com", Role::Read, 1), by_issuing).await.expect("invite");
    let new =
        store.redeem_invite(&[1; 32], Utc::now(), redeemer(None)).await.expect("redeem").expect("found");
    let first = new.key.expect("first key");
    assert_eq!((first.created_by_key_id, first.expires_at), (Some(issuing.id), Some(tomorrow)));
    // Revoking the issuing key takes the first key with it, and voids its
    // pending invitations.
    store.create_invite(invitation(a, "later@example.com", Role::Read, 2), by_issuing).await.expect("invite");
    let revoked: Vec<i64> =
        store.revoke_key(&issuing.digest, OP).await.expect("revoke").iter().map(|k| k.id).collect();
    assert!(revoked.contains(&first.id), "{revoked:?}");
    assert_refused(store.redeem_invite(&[2; 32], Utc::now(), redeemer(None)).await, Refusal::InvitationVoid);
    // Issued with a key that has since been given limits: void too.
    let plain = store
        .insert_key(
            NewApiKey {
                mode: Mode::All,
                limited_to_apps: vec![],
                expires_at: None,
                ..key_for(owner.user_id, Some(a))
            },
            OP,
        )
        .await
        .expect("key");
    let by_plain = &Actor { user_id: Some(owner.user_id), key_id: Some(plain.id), ip: None, presented: None };
    store.create_invite(invitation(a, "third@example.com", Role::Read, 3), by_plain).await.expect("invite");
    let limits = KeyChanges {
        credits: Some(Some(keygate_core::limits::Credits { remaining: 1, refill: None })),
        ..Default::default()
    };
    store.update_key(plain.id, limits, OP).await.expect("limits").expect("exists");
    assert_refused(store.redeem_invite(&[3; 32], Utc::now(), redeemer(None)).await, Refusal::InvitationVoid);
}

#[tokio::test]
async fn blocks_reach_only_keys_of_members_below_the_actor() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    let admin = enroll(store.as_ref(), "admin@example.com", as_member(a, Role::Admin)).await.expect("admin");
    let peer = enroll(store.as_ref(), "peer@example.com", as_member(a, Role::Admin)).await.expect("peer");
    let writer =
        enroll(store.as_ref(), "writer@example.com", as_member(a, Role::Write)).await.expect("writer");
    let by_admin =
        &Actor { user_id: Some(admin.user_id), key_id: Some(admin.key.id), ip: None, presented: None };
    let by_owner =
        &Actor { user_id: Some(owner.user_id), key_id: Some(owner.key.id), ip: None, presented: None };
    assert_refused(store.block_key(a, owner.key.id, by_admin).await, Refusal::Outranked);
    assert_refused(store.block_key(a, peer.key.id, by_admin).await, Refusal::Outranked);
    assert_refused(store.block_key(a, admin.key.id, by_admin).await, Refusal::OwnKeyBlock);
    store.block_key(a, writer.key.id, by_admin).await.expect("block from above");
    assert_eq!(store.role_of_key(a, writer.user_id, writer.key.id).await.expect("role"), None);
    // A block the owner placed is lifted only from above its key's owner.
    store.block_key(a, peer.key.id, by_owner).await.expect("the owner blocks an admin");
    assert_refused(store.unblock_key(a, peer.key.id, by_admin).await, Refusal::Outranked);
    assert!(store.unblock_key(a, peer.key.id, by_owner).await.expect("unblock"));
    let by_writer =
        &Actor { user_id: Some(writer.user_id), key_id: Some(writer.key.id), ip: None, presented: None };
    assert_not_found(store.block_key(a, peer.key.id, by_writer).await, Entity::Organization);
}

#[tokio::test]
async fn a_leaked_key_is_revoked_with_every_key_it_created() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    let child_of =
        |parent: Option<i64>| NewApiKey { created_by_key_id: parent, ..key_for(owner.user_id, Some(a)) };
    let root = store.insert_key(child_of(Some(owner.key.id)), OP).await.expect("root");
    let child = store.insert_key(child_of(Some(root.id)), OP).await.expect("child");
    let grandchild = store.insert_key(child_of(Some(child.id)), OP).await.expect("grandchild");
    let sibling = store.insert_key(child_of(Some(owner.key.id)), OP).await.expect("sibling");
    // A key in between, deleted: its descendants stay the leaked key's.
    let middle = store.insert_key(child_of(Some(root.id)), OP).await.expect("middle");
    let below_middle = store.insert_key(child_of(Some(middle.id)), OP).await.expect("below the middle");
    assert!(store.delete_key(middle.id, OP).await.expect("delete"));
    let reporter = &Actor { ip: Some("192.0.2.1".parse().expect("ip")), ..Actor::default() };
    let mut revoked: Vec<i64> =
        store.revoke_key(&root.digest, reporter).await.expect("revoke").iter().map(|k| k.id).collect();
    revoked.sort_unstable();
    assert_eq!(revoked, [root.id, child.id, grandchild.id, below_middle.id]);
    for gone in [root.id, child.id, grandchild.id, below_middle.id] {
        assert_eq!(store.key_by_id(gone).await.expect("read"), None);
    }
    assert!(store.key_by_id(sibling.id).await.expect("read").is_some(), "not its descendant");
    assert!(store.key_by_id(owner.key.id).await.expect("read").is_some(), "nor its parent");
    let log = store.audit_events(a, None, 50).await.expect("log");
    let revocations = log.iter().filter(|e| e.action == "apikey.revoke").count();
    assert_eq!(revocations, 4, "each revocation audited");
}

/// Fourteenth review: an admin invited an address to their own
/// organization and redeemed it themselves; the operator's later `user add`
/// of the real person silently reused that account. An existing account
/// now joins another organization only by an invitation it accepts with its
/// own key, or when the operator vouches for it.
#[tokio::test]
async fn the_operator_never_adopts_an_existing_account_unawares() {
    let (_db, store, owner) = acme().await;
    let a = owner.org_id;
    let mallory = enroll(store.as_ref(), "mallory@m.test", new_org("Mallory")).await.expect("mallory");
    let by_mallory =
        &Actor { user_id: Some(mallory.user_id), key_id: Some(mallory.key.id), ip: None, presented: None };
    store
        .create_invite(invitation(mallory.org_id, "ceo@victim.test", Role::Read, 7), by_mallory)
        .await
        .expect("invite");
    store.redeem_invite(&[7; 32], Utc::now(), redeemer(None)).await.expect("redeemed by its sender");

    let squatted = |enroll: Enroll| enroll_as(store.as_ref(), "ceo@victim.test", enroll, false);
    assert_refused(squatted(as_member(a, Role::Admin)).await, Refusal::ExistingAccount);
    assert_refused(squatted(new_org("Victim Corp")).await, Refusal::ExistingAccount);
    let set = store.set_member(a, &email("ceo@victim.test"), Role::Admin, &Actor::OPERATOR).await;
    assert_refused(set, Refusal::ExistingAccount);
    assert!(store.members(a).await.expect("members").iter().all(|m| m.email != "ceo@victim.test"));

    // A new address, a member's change of role, and an account the operator
    // vouches for are enrolled as before.
    enroll_as(store.as_ref(), "new@victim.test", as_member(a, Role::Read), false)
        .await
        .expect("a new account");
    enroll_as(store.as_ref(), "new@victim.test", as_member(a, Role::Write), false)
        .await
        .expect("a change of role");
    enroll_as(store.as_ref(), "ceo@victim.test", as_member(a, Role::Admin), true).await.expect("vouched for");
}
