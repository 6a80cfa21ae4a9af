//! No path from a lesser key or role to a greater one: each attack the
//! review found, replayed over HTTP, and the rank rule tried on every
//! operation that reaches another member, from an equal and a lower rank.

use keygate_core::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Account, Reply, TestApp, spawn_app};

async fn invite(app: &TestApp, caller: &str, email: &str, role: &str) -> Reply {
    let body = json!({ "org_id": app.owner.org_id, "email": email, "role": role });
    app.post("/organization/invites", caller, body).await
}

async fn redeem(app: &TestApp, code: &Value, key: Option<&str>) -> Reply {
    app.call(Method::POST, "/invites/redeem", key, Some(json!({ "code": code }))).await
}

async fn role_of(app: &TestApp, email: &str) -> Option<String> {
    let members =
        app.get(&format!("/organization/members?org_id={}", app.owner.org_id), &app.owner.key).await;
    members.ok()["data"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["email"] == email)
        .map(|m| m["role"].as_str().expect("role").to_owned())
}

/// Finding: an admin invited the owner's email, redeemed the code and got
/// an `all` key owned by the owner, with the owner's power. Also: an
/// invitation to someone with an account elsewhere enrolled them without
/// their consent.
#[tokio::test]
async fn an_invitation_never_becomes_the_owners_key_nor_enrolls_a_stranger() {
    let app = spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    for role in ["read", "write"] {
        invite(&app, &admin.key, "owner@example.com", role).await.error(409, "already_member");
    }
    // Someone who already has an account, in another tenant.
    let stranger = app.tenant("stranger@example.com").await;
    let code = invite(&app, &admin.key, "stranger@example.com", "read").await.ok()["invite"]["code"].clone();
    redeem(&app, &code, None).await.error(401, "invitation_needs_key");
    redeem(&app, &code, Some(&admin.key)).await.error(403, "not_the_invitee");
    assert_eq!(role_of(&app, "stranger@example.com").await, None, "not enrolled");
    // The code still works for its invitee, who joins and gets no key.
    let joined = redeem(&app, &code, Some(&stranger.key)).await.ok();
    assert_eq!((joined["user_id"].as_str(), joined.get("key")), (Some(stranger.user_id.as_str()), None));
    // And the owner still owns: the admin cannot delete the organization.
    let delete = format!("/organization?org_id={}", app.owner.org_id);
    app.delete(&delete, &admin.key).await.error(403, "insufficient_permissions");
}

/// Finding: a pending invitation outlived its inviter: an admin invited an
/// alternate address, was removed, redeemed it, and was an admin again.
#[tokio::test]
async fn an_invitation_dies_with_its_inviters_right() {
    let app = spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let code = invite(&app, &admin.key, "alt@example.com", "write").await.ok()["invite"]["code"].clone();
    let remove = format!("/organization/members?org_id={}&user_id={}", app.owner.org_id, admin.user_id);
    app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.ok();
    redeem(&app, &code, None).await.error(404, "invite_not_found");
    assert_eq!(role_of(&app, "alt@example.com").await, None);
    // Demoted below the role it offers: void as well.
    let second = app.member("second@example.com", Role::Admin).await;
    let code = invite(&app, &second.key, "alt2@example.com", "write").await.ok()["invite"]["code"].clone();
    let demote = json!({ "org_id": app.owner.org_id, "email": "second@example.com", "role": "write" });
    app.post("/organization/members", &app.owner.key, demote).await.ok();
    redeem(&app, &code, None).await.error(404, "invite_not_found");
    // Roles offered stay strictly below the inviter's.
    invite(&app, &app.owner.key, "peer@example.com", "super_admin")
        .await
        .error(403, "insufficient_permissions");
}

/// Finding: an admin blocked the owner's key, and the owner then got 404 in
/// their own organization.
#[tokio::test]
async fn an_admin_never_blocks_a_key_of_a_peer_or_a_superior() {
    let app = spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let peer = app.member("peer@example.com", Role::Admin).await;
    for target in [&app.owner, &peer] {
        let body = json!({ "org_id": app.owner.org_id, "key_id": target.key_id });
        app.post("/organization/keys/block", &admin.key, body).await.error(403, "insufficient_permissions");
    }
    app.get(&format!("/organization/members?org_id={}", app.owner.org_id), &app.owner.key).await.ok();
    // A block the owner places on an admin is theirs to lift, not the admin's.
    let body = json!({ "org_id": app.owner.org_id, "key_id": peer.key_id });
    app.post("/organization/keys/block", &app.owner.key, body).await.ok();
    let unblock = format!("/organization/keys/block?org_id={}&key_id={}", app.owner.org_id, peer.key_id);
    app.delete(&unblock, &admin.key).await.error(403, "insufficient_permissions");
    app.delete(&unblock, &app.owner.key).await.ok();
}

/// Finding: a key with 2 credits and 2 requests an hour created an `all`
/// key with no limits, which answered 200 while its parent answered 429.
#[tokio::test]
async fn a_limited_key_mints_nothing_and_lifts_no_limit() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let limits = json!({
        "org_id": org, "mode": "all",
        "credits": { "remaining": 2 }, "ratelimit": { "limit": 2, "duration_ms": 3_600_000 }
    });
    let limited = app.create_key(&app.owner.key, limits).await;
    let limited_key = limited["key"].as_str().expect("key");
    let keys_before = app.key_count().await;
    app.post("/apikey", limited_key, json!({ "org_id": org, "mode": "all" }))
        .await
        .error(403, "insufficient_permissions");
    assert_eq!(app.key_count().await, keys_before, "nothing minted");
    // Nor frees itself, or a sibling that could then free it.
    let own = format!("/apikey/{}", limited["id"]);
    for lift in [json!({ "credits": null }), json!({ "ratelimits": [] })] {
        app.put(&own, limited_key, lift).await.error(403, "insufficient_permissions");
    }
    let sibling = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "read", "credits": { "remaining": 1 } }))
        .await;
    let sibling_path = format!("/apikey/{}", sibling["id"]);
    app.put(&sibling_path, limited_key, json!({ "credits": null }))
        .await
        .error(403, "insufficient_permissions");
    // An app-limited key mints nothing either.
    let scoped = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.acme.a"] }),
        )
        .await;
    let body = json!({ "org_id": org, "mode": "read", "limited_to_apps": ["com.acme.a"] });
    app.post("/apikey", scoped["key"].as_str().expect("key"), body)
        .await
        .error(403, "insufficient_permissions");
}

/// No key pushes back its own expiry or widens itself, even when its owner
/// could do so with another key.
#[tokio::test]
async fn no_key_loosens_itself() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let soon = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let key = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "expires_at": soon, "limited_to_apps": ["com.acme.a"] }),
        )
        .await;
    let (path, secret) = (format!("/apikey/{}", key["id"]), key["key"].as_str().expect("key").to_owned());
    for widen in
        [json!({ "expires_at": later }), json!({ "expires_at": null }), json!({ "limited_to_apps": [] })]
    {
        app.put(&path, &secret, widen).await.error(403, "insufficient_permissions");
    }
    app.put(&path, &app.owner.key, json!({ "expires_at": later })).await.ok();
}

/// A leaked key is revoked with every key it created, transitively.
#[tokio::test]
async fn a_leaked_key_takes_its_descendants_with_it() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let parent = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "all" })).await;
    let parent_key = parent["key"].as_str().expect("key");
    let child = app.create_key(parent_key, json!({ "org_id": org, "mode": "all" })).await;
    let grandchild =
        app.create_key(child["key"].as_str().expect("key"), json!({ "org_id": org, "mode": "read" })).await;
    let sibling = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
    let reply = app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": parent_key }))).await;
    assert_eq!(reply.ok(), json!({ "success": true }));
    for gone in [&parent, &child, &grandchild] {
        app.get("/organization", gone["key"].as_str().expect("key")).await.error(401, "invalid_api_key");
    }
    app.get("/organization", sibling["key"].as_str().expect("key")).await.ok();
    app.get("/organization", &app.owner.key).await.ok();
}

/// One rank rule, on every operation that reaches another member: from an
/// equal rank, and from below, refused; from above, allowed.
#[tokio::test]
async fn every_operation_on_another_member_needs_a_strictly_higher_role() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let admin = app.member("admin@example.com", Role::Admin).await;
    let peer = app.member("peer@example.com", Role::Admin).await;
    let writer = app.member("writer@example.com", Role::Write).await;
    // The operations, each against `target` by `actor`, each expected to succeed from above.
    async fn attempts(
        app: &TestApp,
        org: &str,
        actor: &Account,
        target: &Account,
    ) -> Vec<(&'static str, u16)> {
        let scoped = app.create_key(&target.key, json!({ "org_id": org, "mode": "read" })).await;
        let key_path = format!("/apikey/{}", scoped["id"]);
        let mut outcomes = vec![
            ("rename key", app.put(&key_path, &actor.key, json!({ "name": "x" })).await.status),
            ("disable key", app.put(&key_path, &actor.key, json!({ "enabled": false })).await.status),
            ("delete key", app.delete(&key_path, &actor.key).await.status),
        ];
        let block = json!({ "org_id": org, "key_id": target.key_id });
        outcomes.push(("block key", app.post("/organization/keys/block", &actor.key, block).await.status));
        let email =
            app.get(&format!("/organization/members?org_id={org}"), &app.owner.key).await.ok()["data"]
                .as_array()
                .expect("members")
                .iter()
                .find(|m| m["user_id"] == target.user_id.as_str())
                .map(|m| m["email"].clone())
                .expect("a member");
        let demote = json!({ "org_id": org, "email": email, "role": "read" });
        outcomes.push(("change role", app.post("/organization/members", &actor.key, demote).await.status));
        let remove = format!("/organization/members?org_id={org}&user_id={}", target.user_id);
        outcomes
            .push(("remove member", app.call(Method::DELETE, &remove, Some(&actor.key), None).await.status));
        outcomes
    }
    for (actor, target, why) in [(&admin, &peer, "an equal rank"), (&writer, &admin, "a lower rank")] {
        for (operation, status) in attempts(&app, &org, actor, target).await {
            assert!(matches!(status, 403 | 404), "{operation} from {why}: {status}");
        }
    }
    assert_eq!(role_of(&app, "peer@example.com").await.as_deref(), Some("admin"), "nothing changed");
    for (operation, status) in attempts(&app, &org, &admin, &writer).await {
        assert_eq!(status, 200, "{operation} from above");
    }
    assert_eq!(role_of(&app, "writer@example.com").await, None, "removed from above");

    // Invitations: a role at or above one's own is never offered, and one
    // offering a role at or above the actor's is not theirs to withdraw.
    for (actor, role) in [(&admin, "admin"), (&admin, "super_admin"), (&peer, "admin")] {
        invite(&app, &actor.key, "x@example.com", role).await.error(403, "insufficient_permissions");
    }
    let offered = invite(&app, &app.owner.key, "second-admin@example.com", "admin").await.ok();
    let withdraw = format!("/organization/invites?org_id={org}&id={}", offered["invite"]["id"]);
    app.delete(&withdraw, &admin.key).await.error(403, "insufficient_permissions");
    // A peer's invitation is the peer's: only its issuer or a superior withdraws it.
    let peers = invite(&app, &peer.key, "dev@example.com", "write").await.ok();
    let withdraw_peers = format!("/organization/invites?org_id={org}&id={}", peers["invite"]["id"]);
    app.delete(&withdraw_peers, &admin.key).await.error(403, "insufficient_permissions");
    app.delete(&withdraw_peers, &app.owner.key).await.ok();
    app.delete(&withdraw, &app.owner.key).await.ok();
}

/// The second review: a leaked key's grandchild outlived its revocation once
/// the child in between was deleted; a limited key rotated an unlimited
/// sibling and got its secret; limited and short-lived keys minted
/// permanent unlimited keys through invitations they then redeemed.
#[tokio::test]
async fn no_key_escapes_its_lineage_or_its_restraints() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let key = |v: &Value| v["key"].as_str().expect("key").to_owned();
    // A → B → C, then B deleted: revoking A still takes C.
    let a = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "all" })).await;
    let b = app.create_key(&key(&a), json!({ "org_id": org, "mode": "all" })).await;
    let c = app.create_key(&key(&b), json!({ "org_id": org, "mode": "all" })).await;
    app.delete(&format!("/apikey/{}", b["id"]), &key(&a)).await.ok();
    app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": key(&a) }))).await.ok();
    app.get("/organization", &key(&c)).await.error(401, "invalid_api_key");

    // A limited key manages itself alone: no rotating or widening a sibling.
    let limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "ratelimit": { "limit": 2, "duration_ms": 3_600_000 } }),
        )
        .await;
    let sibling = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
    let sibling_path = format!("/apikey/{}", sibling["id"]);
    app.post(&format!("{sibling_path}/rotate"), &key(&limited), json!({}))
        .await
        .error(403, "insufficient_permissions");
    app.put(&sibling_path, &key(&limited), json!({ "mode": "all" }))
        .await
        .error(403, "insufficient_permissions");
    app.get("/organization", &key(&sibling)).await.ok();

    // Nor does it invite: an invitation is a credential it would make.
    let mine = |role: &str| json!({ "org_id": org, "email": "mine@example.com", "role": role });
    app.post("/organization/invites", &key(&limited), mine("admin"))
        .await
        .error(403, "insufficient_permissions");

    // A key expiring in a minute invites: the first key expires with it,
    // and goes with it when it is revoked.
    let soon = chrono::Utc::now() + chrono::Duration::seconds(60);
    let short = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "all", "expires_at": soon.to_rfc3339() }))
        .await;
    let code =
        app.post("/organization/invites", &key(&short), mine("admin")).await.ok()["invite"]["code"].clone();
    let first = redeem(&app, &code, None).await.ok();
    let first_key = first["key"].as_str().expect("first key").to_owned();
    let seen = app.get(&format!("/apikey/{}", first["key_id"]), &app.owner.key).await.ok();
    let expires: chrono::DateTime<chrono::Utc> =
        seen["apikey"]["expires_at"].as_str().expect("expires").parse().expect("time");
    assert!(expires <= soon, "the first key outlives the key that invited: {expires} > {soon}");
    let pending = json!({ "org_id": org, "email": "later@example.com", "role": "read" });
    let later = app.post("/organization/invites", &key(&short), pending).await.ok()["invite"]["code"].clone();
    app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": key(&short) }))).await.ok();
    app.get("/organization", &first_key).await.error(401, "invalid_api_key");
    redeem(&app, &later, None).await.error(404, "invite_not_found");
}

/// The second review: an admin set the rate limit every key of the
/// organization shares to one a month, locking the owner's scoped keys out.
/// Those limits bind owners too: only a super_admin sets them.
#[tokio::test]
async fn an_admin_never_sets_the_limits_the_owners_keys_share() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let month = json!({ "org_id": org, "ratelimit": { "limit": 1, "duration_ms": 2_592_000_000_u64 } });
    app.put("/organization", &admin.key, month.clone()).await.error(403, "insufficient_permissions");
    app.put("/organization", &admin.key, json!({ "org_id": org, "name": "Renamed" })).await.ok();
    app.put("/organization", &app.owner.key, month).await.ok();
    let scoped = app.owner_key("read").await;
    let scoped = scoped["key"].as_str().expect("key");
    app.get("/organization", scoped).await.ok();
    let text = app.get("/organization", scoped).await.error(429, "rate_limited").to_owned();
    assert!(text.contains("organization's keys share"), "{text}");
}

/// The model found it: a key blocked in an organization still read, and
/// rotated, its owner's keys scoped there, getting their new secret. A
/// blocked key acts there as a non-member: those keys are out of its view.
/// And a change that changes nothing is decided like any other.
#[tokio::test]
async fn a_blocked_key_reaches_nothing_in_the_organization_that_blocked_it() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let scoped = app.create_key(&admin.key, json!({ "org_id": org, "mode": "all" })).await;
    let path = format!("/apikey/{}", scoped["id"]);
    app.get(&path, &admin.key).await.ok();
    let block = json!({ "org_id": org, "key_id": admin.key_id });
    app.post("/organization/keys/block", &app.owner.key, block).await.ok();
    app.get(&path, &admin.key).await.error(404, "api_key_not_found");
    app.get(&format!("{path}/usage"), &admin.key).await.error(404, "api_key_not_found");
    app.post(&format!("{path}/rotate"), &admin.key, json!({})).await.error(404, "api_key_not_found");
    app.put(&path, &admin.key, json!({ "name": "x" })).await.error(404, "api_key_not_found");
    assert!(!app.listed_ids("/apikey", &admin.key).await.contains(&scoped["id"].as_i64().expect("id")));
    // The scoped key itself still works as its owner's role allows.
    app.get("/organization", scoped["key"].as_str().expect("key")).await.ok();

    // A no-op change from below is refused like a change.
    let owners = app.owner_key("read").await;
    let peer = app.member("peer@example.com", Role::Admin).await;
    for noop in [json!({}), json!({ "enabled": true })] {
        app.put(&format!("/apikey/{}", owners["id"]), &peer.key, noop)
            .await
            .error(403, "insufficient_permissions");
    }
}

/// Finding (third review): a secret rotated away, inside its grace period,
/// minted keys that never expire, issued an invitation, and rotated the
/// key again, leaving its holder the only working secret.
#[tokio::test]
async fn a_secret_in_its_grace_period_acts_and_manages_nothing() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let key = app.owner_key("all").await;
    let old = key["key"].as_str().expect("key").to_owned();
    let path = format!("/apikey/{}", key["id"]);
    let rotated =
        app.post(&format!("{path}/rotate"), &old, json!({ "grace_period_seconds": 600 })).await.ok();
    let new = rotated["apikey"]["key"].as_str().expect("new secret").to_owned();
    // It still acts...
    app.get(&format!("/organization?org_id={org}"), &old).await.ok();
    // ...but mints, invites, rotates, changes and administers nothing.
    let keys_before = app.key_count().await;
    app.post("/apikey", &old, json!({ "org_id": org, "mode": "read" }))
        .await
        .error(403, "insufficient_permissions");
    assert_eq!(app.key_count().await, keys_before);
    invite(&app, &old, "friend@example.com", "read").await.error(403, "insufficient_permissions");
    app.post(&format!("{path}/rotate"), &old, json!({})).await.error(403, "insufficient_permissions");
    app.put(&path, &old, json!({ "name": "mine now" })).await.error(403, "insufficient_permissions");
    let policy = json!({ "org_id": org, "max_apikey_expiration_days": 365 });
    app.put("/organization", &old, policy).await.error(403, "insufficient_permissions");
    // The owner's new secret still works.
    app.get(&path, &new).await.ok();
}

/// Finding (third review): a key with credits or a rate limit, or limited
/// to apps, kept its owner's whole administering power: it removed
/// members, changed the policy and deleted the organization.
#[tokio::test]
async fn a_restrained_key_administers_nothing() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let member = app.member("member@example.com", Role::Read).await;
    let theirs = app.create_key(&member.key, json!({ "org_id": org, "mode": "read" })).await;
    let restrained = [
        json!({ "org_id": org, "mode": "all", "credits": { "remaining": 1000 } }),
        json!({ "org_id": org, "mode": "all", "ratelimit": { "limit": 1000, "duration_ms": 60_000 } }),
        json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.acme.a"] }),
    ];
    for body in restrained {
        let key = app.create_key(&app.owner.key, body).await;
        let key = key["key"].as_str().expect("key");
        let remove = format!("/organization/members?org_id={org}&user_id={}", member.user_id);
        app.call(Method::DELETE, &remove, Some(key), None).await.error(403, "insufficient_permissions");
        let promote = json!({ "org_id": org, "email": "member@example.com", "role": "admin" });
        app.post("/organization/members", key, promote).await.error(403, "insufficient_permissions");
        let policy = json!({ "org_id": org, "max_apikey_expiration_days": 1 });
        app.put("/organization", key, policy).await.error(403, "insufficient_permissions");
        app.delete(&format!("/organization?org_id={org}"), key).await.error(403, "insufficient_permissions");
        app.delete(&format!("/apikey/{}", theirs["id"]), key).await.error(404, "api_key_not_found");
    }
    assert_eq!(role_of(&app, "member@example.com").await.as_deref(), Some("read"));
    app.get(&format!("/organization?org_id={org}"), &app.owner.key).await.ok();
}

/// Finding (third review): an admin lifted, with another of their keys,
/// the credits and the disable a super_admin had set on their key.
#[tokio::test]
async fn limits_set_from_above_are_not_lifted_by_the_keys_owner() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let key = app.create_key(&admin.key, json!({ "org_id": org, "mode": "write" })).await;
    let path = format!("/apikey/{}", key["id"]);
    let restrain = json!({ "enabled": false, "credits": { "remaining": 1 } });
    app.put(&path, &app.owner.key, restrain).await.ok();
    for lift in [json!({ "enabled": true }), json!({ "credits": null })] {
        app.put(&path, &admin.key, lift).await.error(403, "insufficient_permissions");
    }
    let after = app.get(&path, &app.owner.key).await.ok();
    assert_eq!(after["apikey"]["enabled"], false, "{after}");
    // The owning role keeps the limits of its own keys in hand.
    let own = app.owner_key("read").await;
    let own_path = format!("/apikey/{}", own["id"]);
    app.put(&own_path, &app.owner.key, json!({ "credits": { "remaining": 5 } })).await.ok();
    app.put(&own_path, &app.owner.key, json!({ "credits": null })).await.ok();
}

/// Finding (fourth review): a key with credits deleted its owner's other
/// keys, the unrestrained key that made it included.
#[tokio::test]
async fn a_restrained_key_deletes_no_other_key() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let parent = app.owner_key("all").await;
    let parent_secret = parent["key"].as_str().expect("key");
    let limited = app
        .create_key(parent_secret, json!({ "org_id": org, "mode": "all", "credits": { "remaining": 50 } }))
        .await;
    let limited_secret = limited["key"].as_str().expect("key");
    let sibling = app.owner_key("read").await;
    for target in [&parent, &sibling] {
        app.delete(&format!("/apikey/{}", target["id"]), limited_secret)
            .await
            .error(403, "insufficient_permissions");
    }
    app.get(&format!("/apikey/{}", parent["id"]), &app.owner.key).await.ok();
    // Itself, it may delete.
    app.delete(&format!("/apikey/{}", limited["id"]), limited_secret).await.ok();
}

/// Finding (fourth review): a key with credits accepted an invitation for
/// its owner; a secret in its grace period did too, and created an
/// organization.
#[tokio::test]
async fn only_a_free_key_speaks_for_its_owner() {
    let app = spawn_app().await;
    let stranger = app.tenant("stranger@example.com").await;
    let theirs = &stranger.org_id;
    let limited = app
        .create_key(&stranger.key, json!({ "org_id": theirs, "mode": "all", "credits": { "remaining": 9 } }))
        .await;
    let unscoped = stranger.key.clone();
    let rotated = app
        .post(
            &format!("/apikey/{}/rotate", stranger.key_id),
            &unscoped,
            json!({ "grace_period_seconds": 600 }),
        )
        .await
        .ok();
    let current = rotated["apikey"]["key"].as_str().expect("new secret").to_owned();
    let code =
        invite(&app, &app.owner.key, "stranger@example.com", "read").await.ok()["invite"]["code"].clone();
    for key in [limited["key"].as_str().expect("key"), &unscoped] {
        redeem(&app, &code, Some(key)).await.error(401, "invitation_needs_key");
    }
    app.post("/organization", &unscoped, json!({ "name": "From a retiring secret" }))
        .await
        .error(403, "insufficient_permissions");
    assert_eq!(role_of(&app, "stranger@example.com").await, None);
    // The account's own free key still accepts it.
    redeem(&app, &code, Some(&current)).await.ok();
    assert_eq!(role_of(&app, "stranger@example.com").await.as_deref(), Some("read"));
}
