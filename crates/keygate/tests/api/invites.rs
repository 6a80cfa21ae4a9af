//! Invitations: an admin brings a teammate in over the API; a newcomer
//! redeems the code with no key at all and gets a first key (mode `all`,
//! bounded by the role); an existing account joins only with its own key.

use keygate_core::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app};

async fn redeem(app: &TestApp, code: &str) -> Reply {
    app.call(Method::POST, "/invites/redeem", None, Some(json!({ "code": code }))).await
}

async fn invite(app: &TestApp, caller: &str, email: &str, role: &str) -> Reply {
    let body = json!({ "org_id": app.owner.org_id, "email": email, "role": role });
    app.post("/organization/invites", caller, body).await
}

#[tokio::test]
async fn a_teammate_redeems_an_invitation_once_and_gets_a_key_bounded_by_the_role() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let created = invite(&app, &app.owner.key, "teammate@example.com", "write").await.ok()["invite"].clone();
    let code = created["code"].as_str().expect("code").to_owned();
    assert!(code.starts_with("kgi_"), "{code}");
    assert_eq!(
        (created["email"].clone(), created["role"].clone()),
        (json!("teammate@example.com"), json!("write"))
    );
    assert_eq!(created["org_id"], org.as_str());
    assert!(created["expires_at"].is_string());

    let listed = app.get(&format!("/organization/invites?org_id={org}"), &app.owner.key).await.ok();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&code), "a code is shown once: {listed}");

    let redeemed = redeem(&app, &code).await.ok();
    assert_eq!(redeemed["org_id"], org.as_str());
    assert_eq!(redeemed["role"], "write");
    let key = redeemed["key"].as_str().expect("key").to_owned();
    let key_id = redeemed["key_id"].as_i64().expect("key id");
    // A write member's first key is of mode `all`, so that they manage their
    // own keys; their role caps it: it may write, not administer nor own.
    let own = app.create_key(&key, json!({ "org_id": org, "mode": "read", "name": "ci" })).await;
    assert_eq!(own["user_id"], redeemed["user_id"]);
    let new_app = json!({ "app_id": "com.acme.teammate", "name": "Theirs", "org_id": org });
    app.post("/app", &key, new_app).await.ok();
    let members = app.get(&format!("/organization/members?org_id={org}"), &key).await.ok();
    let teammate = members["data"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["email"] == "teammate@example.com")
        .cloned();
    assert_eq!(teammate.expect("a member")["role"], "write");
    let someone = json!({ "org_id": org, "email": "x@example.com", "role": "read" });
    app.post("/organization/members", &key, someone).await.error(403, "insufficient_permissions");
    // Its owner's admin sees it among the organization's keys.
    let ids = app.listed_ids(&format!("/apikey?org_id={org}"), &app.owner.key).await;
    assert!(ids.contains(&key_id), "{ids:?}");

    // Single use.
    redeem(&app, &code).await.error(404, "invite_not_found");
    let listed = app.get(&format!("/organization/invites?org_id={org}"), &app.owner.key).await.ok();
    assert_eq!(listed["data"], json!([]), "redeemed, no longer pending");

    let audit = app.get(&format!("/organization/audit?org_id={org}"), &app.owner.key).await.ok();
    let actions: Vec<&str> =
        audit["data"].as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    for action in ["invite.create", "invite.redeem", "apikey.create"] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }
}

#[tokio::test]
async fn nobody_invites_above_their_own_role_and_only_admins_invite() {
    let app = spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let writer = app.member("writer@example.com", Role::Write).await;
    invite(&app, &admin.key, "boss@example.com", "super_admin").await.error(403, "insufficient_permissions");
    let text = invite(&app, &admin.key, "peer@example.com", "admin")
        .await
        .error(403, "insufficient_permissions")
        .to_owned();
    assert!(text.contains("below your own"), "{text}");
    invite(&app, &admin.key, "dev@example.com", "write").await.ok();
    invite(&app, &app.owner.key, "second-admin@example.com", "admin").await.ok();
    invite(&app, &app.owner.key, "co-owner@example.com", "super_admin")
        .await
        .error(403, "insufficient_permissions");
    invite(&app, &writer.key, "friend@example.com", "read").await.error(403, "insufficient_permissions");
    let rival = app.tenant("rival@example.com").await;
    invite(&app, &rival.key, "spy@example.com", "read").await.error(404, "org_not_found");
}

#[tokio::test]
async fn withdrawn_unknown_and_malformed_codes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let created = invite(&app, &app.owner.key, "late@example.com", "read").await.ok()["invite"].clone();
    let (code, id) =
        (created["code"].as_str().expect("code").to_owned(), created["id"].as_i64().expect("id"));
    app.delete(&format!("/organization/invites?org_id={org}&id={id}"), &app.owner.key).await.ok();
    app.delete(&format!("/organization/invites?org_id={org}&id={id}"), &app.owner.key)
        .await
        .error(404, "invite_not_found");
    redeem(&app, &code).await.error(404, "invite_not_found");
    redeem(&app, "kgi_0000").await.error(404, "invite_not_found");
    app.call(Method::POST, "/invites/redeem", None, Some(json!({}))).await.error(400, "code_required");
    app.call(Method::POST, "/invites/redeem", None, Some(json!({ "code": 7 })))
        .await
        .error(400, "invalid_body");
    let bad: [(Value, &str); 3] = [
        (json!({ "org_id": org, "email": "not an email", "role": "read" }), "invalid_email"),
        (json!({ "org_id": org, "email": "a@example.com", "role": "owner" }), "invalid_role"),
        (
            json!({ "org_id": org, "email": "a@example.com", "role": "read", "expires_in_days": 31 }),
            "invalid_expires_in_days",
        ),
    ];
    for (body, code) in bad {
        app.post("/organization/invites", &app.owner.key, body).await.error(400, code);
    }
    let members = app.get(&format!("/organization/members?org_id={org}"), &app.owner.key).await.ok();
    assert_eq!(members["data"].as_array().map(Vec::len), Some(1), "nobody joined: {members}");
}

#[tokio::test]
async fn a_first_key_meets_the_organizations_expiry_policy_and_a_member_keeps_their_role() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let policy =
        json!({ "org_id": org, "require_apikey_expiration": true, "max_apikey_expiration_days": 30 });
    app.put("/organization", &app.owner.key, policy).await.ok();
    let code = invite(&app, &app.owner.key, "new@example.com", "admin").await.ok()["invite"]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let redeemed = redeem(&app, &code).await.ok();
    let key =
        app.get(&format!("/apikey/{}", redeemed["key_id"]), &app.owner.key).await.ok()["apikey"].clone();
    assert_eq!(key["mode"], "all", "an admin's first key");
    let expires: chrono::DateTime<chrono::Utc> =
        key["expires_at"].as_str().expect("expires").parse().expect("time");
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.0..=30.0).contains(&days), "{days} days");

    // A member is never invited: their role changes as a member's.
    app.member("writer@example.com", Role::Write).await;
    for role in ["read", "write"] {
        invite(&app, &app.owner.key, "writer@example.com", role).await.error(409, "already_member");
    }
}
