//! Racing the check: one request changes what another's decision depends
//! on, many times over, and the audit log — written in each change's own
//! transaction, so in the order the changes committed — shows that no
//! change committed after the fact that forbids it.

use std::time::Duration;

use futures_util::future::join_all;
use keygate_core::Role;
use keygate_store::AuditEvent;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// Rounds per race: each round opens the window anew.
fn rounds() -> usize {
    if keygate_testkit::postgres_base().is_some() { 4 } else { 8 }
}

/// Requests racing in each round.
const RACERS: usize = 50;

fn org(app: &TestApp) -> Uuid {
    Uuid::parse_str(&app.owner.org_id).expect("uuid")
}

/// The organization's audit log, oldest first.
async fn audit(app: &TestApp) -> Vec<AuditEvent> {
    let mut events = app.store.audit_events(org(app), None, 100_000).await.expect("audit");
    events.reverse();
    events
}

/// Where the last event of `action` on `target` stands in `events`.
fn last(events: &[AuditEvent], action: &str, target: &str) -> usize {
    events
        .iter()
        .rposition(|e| e.action == action && e.target_id == target)
        .unwrap_or_else(|| panic!("no {action} of {target} in the audit log"))
}

/// A pause of a few milliseconds, different each round, so that the
/// change lands at a different point of the racers' run.
fn stagger(round: usize) -> Duration {
    Duration::from_millis((round as u64 * 7) % 23)
}

/// Racer `n` starts a little after racer `n - 1`: together they span the
/// moments the change may land at.
async fn spread(n: usize) {
    tokio::time::sleep(Duration::from_micros(n as u64 * 300)).await;
}

#[tokio::test]
async fn an_expiry_policy_tightened_during_fifty_expiry_changes_binds_each_committed_after_it() {
    let app = &spawn_app().await;
    let org_id = app.owner.org_id.clone();
    let far = (chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339();
    let (mut refused, mut allowed) = (0, 0);
    for round in 0..rounds() {
        let lax = json!({ "org_id": org_id, "max_apikey_expiration_days": null });
        app.put("/organization", &app.owner.key, lax).await.ok();
        let mut keys = Vec::new();
        for _ in 0..RACERS {
            keys.push(app.owner_key("read").await["id"].as_i64().expect("id"));
        }
        let edits = join_all(keys.iter().enumerate().map(|(n, id)| {
            let body = json!({ "expires_at": far });
            async move {
                spread(n).await;
                app.put(&format!("/apikey/{id}"), &app.owner.key, body).await
            }
        }));
        let tighten = async {
            tokio::time::sleep(stagger(round)).await;
            let strict = json!({ "org_id": org_id, "max_apikey_expiration_days": 30 });
            app.put("/organization", &app.owner.key, strict).await.ok();
        };
        let (replies, ()) = tokio::join!(edits, tighten);
        let events = audit(app).await;
        let policy = last(&events, "organization.update", &org_id);
        for (id, reply) in keys.iter().zip(&replies) {
            match reply.status {
                200 => {
                    allowed += 1;
                    let edit = last(&events, "apikey.update", &id.to_string());
                    assert!(edit < policy, "round {round}: key {id} got 300 days after the 30-day policy");
                }
                _ => {
                    refused += 1;
                    reply.error(400, "expiration_exceeds_max");
                    assert!(
                        events
                            .iter()
                            .all(|e| !(e.action == "apikey.update" && e.target_id == id.to_string()))
                    );
                }
            }
        }
    }
    eprintln!(
        "expiry policy race: {} rounds, {allowed} edits before the policy, {refused} refused after",
        rounds()
    );
}

#[tokio::test]
async fn an_admin_demoted_while_editing_a_members_keys_commits_no_edit_after_the_demotion() {
    let app = &spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let member = &app.member("member@example.com", Role::Read).await;
    let member_key = |n: usize| {
        let body = json!({ "org_id": app.owner.org_id, "mode": "read", "name": format!("k{n}") });
        async move { app.create_key(&member.key, body).await["id"].as_i64().expect("id") }
    };
    let (mut before, mut after) = (0, 0);
    for round in 0..rounds() {
        let promote = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "admin" });
        app.post("/organization/members", &app.owner.key, promote).await.ok();
        let mut keys = Vec::new();
        for n in 0..RACERS {
            keys.push(member_key(n).await);
        }
        let edits = join_all(keys.iter().enumerate().map(|(n, id)| {
            let body = json!({ "name": format!("renamed {round}") });
            let admin = admin.key.clone();
            async move {
                spread(n).await;
                app.put(&format!("/apikey/{id}"), &admin, body).await
            }
        }));
        let demote = async {
            tokio::time::sleep(stagger(round)).await;
            let body = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "read" });
            app.post("/organization/members", &app.owner.key, body).await.ok();
        };
        let (replies, ()) = tokio::join!(edits, demote);
        let events = audit(app).await;
        let demotion = last(&events, "member.set", &admin.user_id);
        for (id, reply) in keys.iter().zip(&replies) {
            if reply.status == 200 {
                before += 1;
                assert!(
                    last(&events, "apikey.update", &id.to_string()) < demotion,
                    "round {round}: key {id}"
                );
            } else {
                after += 1;
                // Demoted to read, the admin no longer sees another member's keys.
                reply.error(404, "api_key_not_found");
            }
        }
    }
    eprintln!(
        "demotion race: {} rounds, {before} edits before the demotion, {after} refused after",
        rounds()
    );
}

#[tokio::test]
async fn an_admin_demoted_while_inviting_and_blocking_issues_nothing_after_the_demotion() {
    let app = &spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let mut members = Vec::new();
    for n in 0..RACERS / 2 {
        members.push(app.member(&format!("m{n}@example.com"), Role::Read).await);
    }
    let (mut before, mut after) = (0, 0);
    for round in 0..rounds() {
        let promote = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "admin" });
        app.post("/organization/members", &app.owner.key, promote).await.ok();
        // Every block of the last round lifted: each round blocks anew.
        for member in &members {
            let body = json!({ "org_id": app.owner.org_id, "key_id": member.key_id });
            let _ =
                app.call(Method::DELETE, "/organization/keys/block", Some(&app.owner.key), Some(body)).await;
        }
        let invites = join_all((0..RACERS / 2).map(|n| {
            let body = json!({ "org_id": app.owner.org_id, "email": format!("new{round}-{n}@example.com"), "role": "read" });
            let admin = admin.key.clone();
            async move {
                spread(2 * n).await;
                app.post("/organization/invites", &admin, body).await
            }
        }));
        let blocks = join_all(members.iter().enumerate().map(|(n, member)| {
            let body = json!({ "org_id": app.owner.org_id, "key_id": member.key_id });
            let admin = admin.key.clone();
            async move {
                spread(2 * n + 1).await;
                app.post("/organization/keys/block", &admin, body).await
            }
        }));
        let demote = async {
            tokio::time::sleep(stagger(round)).await;
            let body = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "read" });
            app.post("/organization/members", &app.owner.key, body).await.ok();
        };
        let (invited, blocked, ()) = tokio::join!(invites, blocks, demote);
        let events = audit(app).await;
        let demotion = last(&events, "member.set", &admin.user_id);
        let by_admin_after = events[demotion..]
            .iter()
            .filter(|e| e.actor_key_id == Some(admin.key_id))
            .map(|e| e.action.clone())
            .collect::<Vec<_>>();
        assert!(by_admin_after.is_empty(), "round {round}: after the demotion: {by_admin_after:?}");
        for reply in invited.iter().chain(&blocked) {
            match reply.status {
                200 => before += 1,
                _ => {
                    after += 1;
                    reply.error(403, "insufficient_permissions");
                }
            }
        }
    }
    eprintln!("demotion race (invite, block): {} rounds, {before} before, {after} refused after", rounds());
}

#[tokio::test]
async fn an_admin_demoted_while_changing_the_organization_changes_nothing_after_the_demotion() {
    let app = &spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let (mut before, mut after) = (0, 0);
    for round in 0..rounds() {
        let promote = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "admin" });
        app.post("/organization/members", &app.owner.key, promote).await.ok();
        let updates = join_all((0..RACERS).map(|n| {
            let body = json!({ "org_id": app.owner.org_id, "max_apikey_expiration_days": 1 + n });
            let admin = admin.key.clone();
            async move {
                spread(n).await;
                app.put("/organization", &admin, body).await
            }
        }));
        let demote = async {
            tokio::time::sleep(stagger(round)).await;
            let body = json!({ "org_id": app.owner.org_id, "email": "admin@example.com", "role": "write" });
            app.post("/organization/members", &app.owner.key, body).await.ok();
        };
        let (replies, ()) = tokio::join!(updates, demote);
        let events = audit(app).await;
        let demotion = last(&events, "member.set", &admin.user_id);
        let by_admin_after =
            events[demotion..].iter().filter(|e| e.actor_key_id == Some(admin.key_id)).count();
        assert_eq!(by_admin_after, 0, "round {round}: the demoted admin changed the organization");
        for reply in &replies {
            match reply.status {
                200 => before += 1,
                _ => {
                    after += 1;
                    reply.error(403, "insufficient_permissions");
                }
            }
        }
    }
    eprintln!("demotion race (organization): {} rounds, {before} before, {after} refused after", rounds());
}

#[tokio::test]
async fn a_member_removed_while_their_invitations_are_redeemed_lets_none_in_after_the_removal() {
    // Void invitations count as failed authentications: off, for the race's sake.
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let (mut joined, mut void) = (0, 0);
    for round in 0..rounds() {
        let email = format!("admin{round}@example.com");
        let admin = app.member(&email, Role::Admin).await;
        let mut codes = Vec::new();
        for n in 0..RACERS / 2 {
            let body = json!({ "org_id": app.owner.org_id, "email": format!("r{round}-{n}@example.com"), "role": "read" });
            codes.push(
                app.post("/organization/invites", &admin.key, body).await.ok()["invite"]["code"].clone(),
            );
        }
        let redeems = join_all(codes.iter().enumerate().map(|(n, code)| async move {
            spread(2 * n).await;
            app.call(Method::POST, "/invites/redeem", None, Some(json!({ "code": code }))).await
        }));
        let remove = async {
            tokio::time::sleep(stagger(round)).await;
            let path = format!("/organization/members?org_id={}&user_id={}", app.owner.org_id, admin.user_id);
            app.call(Method::DELETE, &path, Some(&app.owner.key), None).await.ok();
        };
        let (replies, ()) = tokio::join!(redeems, remove);
        let events = audit(app).await;
        let removal = last(&events, "member.remove", &admin.user_id);
        let redeemed_after = events[removal..].iter().filter(|e| e.action == "invite.redeem").count();
        assert_eq!(redeemed_after, 0, "round {round}: an invitation of a removed admin let someone in");
        for reply in &replies {
            match reply.status {
                200 => joined += 1,
                _ => {
                    void += 1;
                    reply.error(404, "invite_not_found");
                }
            }
        }
    }
    eprintln!("removal race: {} rounds, {joined} joined before the removal, {void} void after", rounds());
}

/// The keys a key minted (`apikey.create` events by it), in the audit log's
/// order, with their positions.
fn minted_by(events: &[AuditEvent], key_id: i64) -> Vec<(usize, String)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == "apikey.create" && e.actor_key_id == Some(key_id))
        .map(|(at, e)| (at, e.target_id.clone()))
        .collect()
}

#[tokio::test]
async fn a_key_revoked_while_it_mints_leaves_no_child_alive() {
    // Refused keys count as failed authentications: off, for the race's sake.
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let org_id = app.owner.org_id.clone();
    let (mut minted, mut refused) = (0, 0);
    for round in 0..rounds() {
        let parent = app.owner_key("all").await;
        let secret = parent["key"].as_str().expect("key").to_owned();
        let mints = join_all((0..RACERS).map(|n| {
            let body = json!({ "org_id": org_id, "mode": "read" });
            let secret = secret.clone();
            async move {
                spread(n).await;
                app.post("/apikey", &secret, body).await
            }
        }));
        let revoke = async {
            tokio::time::sleep(stagger(round)).await;
            app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": secret }))).await.ok();
        };
        let (replies, ()) = tokio::join!(mints, revoke);
        for reply in &replies {
            match reply.status {
                200 => {
                    minted += 1;
                    let id = reply.body["apikey"]["id"].as_i64().expect("id");
                    assert!(
                        app.store.key_by_id(id).await.expect("read").is_none(),
                        "round {round}: key {id} outlived its revoked parent"
                    );
                }
                _ => refused += 1,
            }
        }
    }
    eprintln!(
        "revocation race: {} rounds, {minted} minted (all revoked with the parent), {refused} refused",
        rounds()
    );
}

#[tokio::test]
async fn a_key_blocked_or_narrowed_while_it_mints_mints_nothing_after() {
    // Refused keys count as failed authentications: off, for the race's sake.
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let org_id = app.owner.org_id.clone();
    let (mut before, mut after) = (0, 0);
    for round in 0..rounds() {
        // A fresh member each round, with an unscoped key the owner will block,
        // and a scoped one the owner will narrow to read.
        let member = app.member(&format!("m{round}@example.com"), Role::Admin).await;
        let scoped = app.create_key(&member.key, json!({ "org_id": org_id, "mode": "all" })).await;
        let scoped_secret = scoped["key"].as_str().expect("key").to_owned();
        let mints = join_all((0..RACERS).map(|n| {
            let body = json!({ "org_id": org_id, "mode": "read" });
            let secret = if n % 2 == 0 { member.key.clone() } else { scoped_secret.clone() };
            async move {
                spread(n).await;
                app.post("/apikey", &secret, body).await
            }
        }));
        let restrain = async {
            tokio::time::sleep(stagger(round)).await;
            let block = json!({ "org_id": org_id, "key_id": member.key_id });
            app.post("/organization/keys/block", &app.owner.key, block).await.ok();
            app.put(&format!("/apikey/{}", scoped["id"]), &app.owner.key, json!({ "mode": "read" }))
                .await
                .ok();
        };
        let (replies, ()) = tokio::join!(mints, restrain);
        let events = audit(app).await;
        let blocked_at = last(&events, "apikey.block", &member.key_id.to_string());
        let narrowed_at = last(&events, "apikey.update", &scoped["id"].to_string());
        let late_blocked =
            minted_by(&events, member.key_id).into_iter().filter(|(at, _)| *at > blocked_at).count();
        let scoped_id = scoped["id"].as_i64().expect("id");
        let late_narrowed =
            minted_by(&events, scoped_id).into_iter().filter(|(at, _)| *at > narrowed_at).count();
        assert_eq!(
            (late_blocked, late_narrowed),
            (0, 0),
            "round {round}: minted after the block, after the narrowing"
        );
        for reply in &replies {
            if reply.status == 200 { before += 1 } else { after += 1 }
        }
    }
    eprintln!("block and narrowing race: {} rounds, {before} minted before, {after} refused after", rounds());
}

#[tokio::test]
async fn of_many_rotations_at_once_one_wins_and_its_secret_works() {
    let app = &spawn_app().await;
    for round in 0..rounds() {
        let key = app.owner_key("read").await;
        let path = format!("/apikey/{}/rotate", key["id"]);
        let rotations = join_all((0..RACERS / 2).map(|n| {
            let path = path.clone();
            async move {
                spread(n / 5).await;
                app.post(&path, &app.owner.key, json!({})).await
            }
        }));
        let replies = rotations.await;
        let won: Vec<&str> = replies
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body["apikey"]["key"].as_str().expect("secret"))
            .collect();
        assert!(!won.is_empty(), "round {round}: none won");
        for reply in replies.iter().filter(|r| r.status != 200) {
            reply.error(409, "rotation_conflict");
        }
        // Each rotation that answered 200 committed in turn; the last one's secret works.
        let org = format!("/organization?org_id={}", app.owner.org_id);
        let working = join_all(won.iter().map(|secret| app.get(&org, secret))).await;
        assert_eq!(working.iter().filter(|r| r.status == 200).count(), 1, "round {round}: {} won", won.len());
    }
}

#[tokio::test]
async fn a_key_revoked_while_its_descendants_mint_leaves_none_of_theirs_alive() {
    // Refused keys count as failed authentications: off, for the race's sake.
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let org_id = app.owner.org_id.clone();
    let mut minted = 0;
    for round in 0..rounds() {
        let parent = app.owner_key("all").await;
        let parent_secret = parent["key"].as_str().expect("key").to_owned();
        let child = app.create_key(&parent_secret, json!({ "org_id": org_id, "mode": "all" })).await;
        let child_secret = child["key"].as_str().expect("key").to_owned();
        let mints = join_all((0..RACERS / 2).map(|n| {
            let body = json!({ "org_id": org_id, "mode": "read" });
            let secret = child_secret.clone();
            async move {
                spread(n).await;
                app.post("/apikey", &secret, body).await
            }
        }));
        let revoke = async {
            tokio::time::sleep(stagger(round)).await;
            app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": parent_secret }))).await.ok();
        };
        let (replies, ()) = tokio::join!(mints, revoke);
        for reply in replies.iter().filter(|r| r.status == 200) {
            minted += 1;
            let id = reply.body["apikey"]["id"].as_i64().expect("id");
            assert!(
                app.store.key_by_id(id).await.expect("read").is_none(),
                "round {round}: grandchild {id} outlived the revoked key"
            );
        }
    }
    eprintln!("lineage revocation race: {} rounds, {minted} grandchildren minted, all revoked", rounds());
}

#[tokio::test]
async fn a_key_deleted_or_rotated_while_it_acts_changes_nothing_after() {
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let org_id = app.owner.org_id.clone();
    app.member("member@example.com", Role::Read).await;
    for round in 0..rounds() {
        // The owner's key that races: deleted in even rounds, rotated without grace in odd ones.
        let racer = app.create_key(&app.owner.key, json!({ "org_id": org_id, "mode": "all" })).await;
        let (id, secret) =
            (racer["id"].as_i64().expect("id"), racer["key"].as_str().expect("key").to_owned());
        let acts = join_all((0..RACERS).map(|n| {
            let secret = secret.clone();
            let org_id = org_id.clone();
            async move {
                spread(n).await;
                if n % 2 == 0 {
                    app.post("/apikey", &secret, json!({ "org_id": org_id, "mode": "read" })).await
                } else {
                    let role = if n % 4 == 1 { "write" } else { "read" };
                    let body = json!({ "org_id": org_id, "email": "member@example.com", "role": role });
                    app.post("/organization/members", &secret, body).await
                }
            }
        }));
        let stop = async {
            tokio::time::sleep(stagger(round)).await;
            if round % 2 == 0 {
                app.delete(&format!("/apikey/{id}"), &app.owner.key).await.ok();
            } else {
                app.post(&format!("/apikey/{id}/rotate"), &secret, json!({ "grace_period_seconds": 0 }))
                    .await;
            }
        };
        let (_replies, ()) = tokio::join!(acts, stop);
        let events = audit(app).await;
        let Some(stopped) = events.iter().rposition(|e| {
            matches!(e.action.as_str(), "apikey.delete" | "apikey.rotate") && e.target_id == id.to_string()
        }) else {
            continue; // the rotation lost to nothing: every act came first (rare)
        };
        let after: Vec<&str> = events[stopped + 1..]
            .iter()
            .filter(|e| e.actor_key_id == Some(id))
            .map(|e| e.action.as_str())
            .collect();
        assert!(after.is_empty(), "round {round}: the key acted after it was stopped: {after:?}");
    }
}

#[tokio::test]
async fn a_member_demoted_while_uploading_and_creating_apps_writes_nothing_after_the_demotion() {
    let app = &spawn_app().await;
    let org_id = app.owner.org_id.clone();
    app.app("com.acme.race").await;
    let member = app.member("uploader@example.com", Role::Write).await;
    let (mut written, mut refused) = (0, 0);
    for round in 0..rounds() {
        app.member("uploader@example.com", Role::Write).await;
        let writes = join_all((0..RACERS).map(|n| {
            let (key, org_id) = (member.key.clone(), org_id.clone());
            async move {
                spread(n).await;
                if n % 2 == 0 {
                    let version = format!("{round}.{n}.0");
                    app.upload(&key, "com.acme.race", &version, vec![b'x'; 16]).await
                } else {
                    let body =
                        json!({ "app_id": format!("com.acme.r{round}n{n}"), "name": "r", "org_id": org_id });
                    app.post("/app", &key, body).await
                }
            }
        }));
        let demote = async {
            tokio::time::sleep(stagger(round)).await;
            let body = json!({ "org_id": org_id, "email": "uploader@example.com", "role": "read" });
            app.post("/organization/members", &app.owner.key, body).await.ok();
        };
        let (replies, ()) = tokio::join!(writes, demote);
        let events = audit(app).await;
        let demoted = events.iter().rposition(|e| e.action == "member.set").expect("the demotion is audited");
        let after: Vec<&str> = events[demoted + 1..]
            .iter()
            .filter(|e| e.actor_key_id == Some(member.key_id))
            .map(|e| e.action.as_str())
            .collect();
        assert!(after.is_empty(), "round {round}: the demoted member wrote after the demotion: {after:?}");
        for reply in replies.iter().filter(|r| r.status >= 300) {
            reply.error(403, "insufficient_permissions");
        }
        written += replies.iter().filter(|r| r.status == 200).count();
        refused += replies.iter().filter(|r| r.status == 403).count();
    }
    eprintln!(
        "demotion race (apps, bundles): {} rounds, {written} written before, {refused} refused after",
        rounds()
    );
}

#[tokio::test]
async fn credits_lowered_while_their_key_is_charged_bind_every_request_sent_after() {
    let app = &spawn_app_with(|settings| settings.failed_auth_limit = 0).await;
    let (mut sent, mut admitted_after) = (0, 0);
    for round in 0..rounds() {
        let created = app
            .create_key(
                &app.owner.key,
                json!({ "org_id": app.owner.org_id, "mode": "read", "credits": { "remaining": 100_000 } }),
            )
            .await;
        let (id, key) =
            (created["id"].as_i64().expect("id"), created["key"].as_str().expect("key").to_owned());
        let lowered = std::sync::OnceLock::<std::time::Instant>::new();
        let lowered = &lowered;
        let charges = join_all((0..RACERS).map(|n| {
            let key = key.clone();
            async move {
                spread(n).await;
                // Until three of its requests were sent after the change.
                let mut sent_after = Vec::new();
                while sent_after.len() < 3 {
                    let sent = std::time::Instant::now();
                    let status = app.get("/app", &key).await.status;
                    if lowered.get().is_some_and(|at| sent > *at) {
                        sent_after.push(status);
                    }
                }
                sent_after
            }
        }));
        let lower = async {
            tokio::time::sleep(stagger(round)).await;
            app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "credits": { "remaining": 5 } }))
                .await
                .ok();
            lowered.set(std::time::Instant::now()).expect("set once");
        };
        let (sent_after, ()) = tokio::join!(charges, lower);
        let statuses: Vec<u16> = sent_after.into_iter().flatten().collect();
        let admitted = statuses.iter().filter(|s| **s == 200).count();
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "round {round}: unexpected statuses {statuses:?}"
        );
        assert!(admitted <= 5, "round {round}: {admitted} requests sent after credits were set to 5 got in");
        let left =
            app.get(&format!("/apikey/{id}"), &app.owner.key).await.ok()["apikey"]["credits"]["remaining"]
                .as_i64()
                .expect("remaining");
        assert!((0..=5).contains(&left), "round {round}: {left} credits left of 5");
        // What is reported left is what can still be spent, to the credit.
        let mut spent = 0;
        for _ in 0..left + 2 {
            spent += usize::from(app.get("/app", &key).await.status == 200);
        }
        assert_eq!(spent, left as usize, "round {round}: {left} credits reported, {spent} spendable");
        sent += statuses.len();
        admitted_after += admitted;
    }
    eprintln!(
        "credits race: {} rounds, {sent} requests sent after credits were set to 5, {admitted_after} admitted",
        rounds()
    );
}

#[tokio::test]
async fn an_app_deleted_while_keys_are_scoped_to_it_leaves_every_key_reaching_nothing() {
    let app = &spawn_app().await;
    let org_id = app.owner.org_id.clone();
    let other = app.tenant("other@example.com").await;
    app.app("com.acme.kept").await;
    let mut checked = 0;
    for round in 0..rounds() {
        let doomed = format!("com.acme.doomed{round}");
        app.app(&doomed).await;
        app.upload(&app.owner.key, &doomed, "1.0.0", vec![b'x'; 16]).await.ok();
        let existing: Vec<i64> = {
            let mut ids = Vec::new();
            for _ in 0..RACERS / 2 {
                ids.push(app.owner_key("all").await["id"].as_i64().expect("id"));
            }
            ids
        };
        let scoped = join_all((0..RACERS).map(|n| {
            let (org_id, doomed) = (org_id.clone(), doomed.clone());
            let existing = &existing;
            async move {
                spread(n).await;
                let reply = if n % 2 == 0 {
                    let body = json!({ "org_id": org_id, "mode": "all", "limited_to_apps": [doomed] });
                    app.post("/apikey", &app.owner.key, body).await
                } else {
                    let id = existing[n / 2];
                    app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "limited_to_apps": [doomed] }))
                        .await
                };
                reply.ok()["apikey"]["id"].as_i64().expect("id")
            }
        }));
        let delete = async {
            tokio::time::sleep(stagger(round)).await;
            app.delete(&format!("/app/{doomed}"), &app.owner.key).await.ok();
            // The same id, now another tenant's.
            let body = json!({ "app_id": doomed, "name": "theirs", "org_id": other.org_id });
            app.post("/app", &other.key, body).await.ok();
        };
        let (ids, ()) = tokio::join!(scoped, delete);
        // The secrets of edited keys are not returned: rotate each to act with it.
        for id in ids {
            let secret = app
                .post(&format!("/apikey/{id}/rotate"), &app.owner.key, json!({ "grace_period_seconds": 0 }))
                .await
                .ok()["apikey"]["key"]
                .as_str()
                .expect("secret")
                .to_owned();
            let key = app.get(&format!("/apikey/{id}"), &app.owner.key).await.ok()["apikey"].clone();
            assert_eq!(key["limited_to_apps"], json!([doomed]), "round {round}: key {id} changed scope");
            app.get(&format!("/app/{doomed}"), &secret).await.error(404, "app_not_found");
            app.get("/app/com.acme.kept", &secret).await.error(404, "app_not_found");
            let listed = app.get("/app", &secret).await.ok();
            assert_eq!(listed["data"], json!([]), "round {round}: key {id} lists apps: {listed}");
            checked += 1;
        }
    }
    eprintln!(
        "app deletion race: {} rounds, {checked} keys scoped to the deleted app, none reaching anything",
        rounds()
    );
}
