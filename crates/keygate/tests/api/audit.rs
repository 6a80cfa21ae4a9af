//! `GET /organization/audit`: every change in an organization, newest
//! first, with who made it and from where.

use keygate_core::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn actions(log: &Value) -> Vec<&str> {
    log["data"].as_array().expect("data").iter().map(|e| e["action"].as_str().expect("action")).collect()
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_newest_first() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let owner = &app.owner.key;
    let key = app.create_key(owner, json!({ "org_id": org, "mode": "read" })).await;
    let key_path = format!("/apikey/{}", key["id"]);
    app.put(&key_path, owner, json!({ "name": "renamed" })).await.ok();
    app.post(&format!("{key_path}/rotate"), owner, json!({})).await.ok();
    app.delete(&key_path, owner).await.ok();
    let invite = json!({ "org_id": org, "email": "dev@example.com", "role": "read" });
    let invite = app.post("/organization/invites", owner, invite).await.ok();
    let code = invite["invite"]["code"].clone();
    let joined = app.call(Method::POST, "/invites/redeem", None, Some(json!({ "code": code }))).await.ok();
    let promotion = json!({ "org_id": org, "email": "dev@example.com", "role": "write" });
    app.post("/organization/members", owner, promotion).await.ok();
    let member_id = joined["user_id"].as_str().expect("user id").to_owned();
    app.call(
        Method::DELETE,
        &format!("/organization/members?org_id={org}&user_id={member_id}"),
        Some(owner),
        None,
    )
    .await
    .ok();
    app.app("com.acme.app").await;
    app.put("/app/com.acme.app", owner, json!({ "name": "Renamed" })).await.ok();
    app.upload(owner, "com.acme.app", "1.0.0", b"bytes".to_vec()).await.ok();
    app.call(Method::DELETE, "/bundle?app_id=com.acme.app&version=1.0.0", Some(owner), None).await.ok();
    app.delete("/app/com.acme.app", owner).await.ok();
    app.put("/organization", owner, json!({ "org_id": org, "name": "Acme Inc" })).await.ok();
    let leaked = app.owner_key("read").await;
    app.call(Method::POST, "/apikey/revoke", None, Some(json!({ "key": leaked["key"] }))).await.ok();

    let log = app.get(&format!("/organization/audit?org_id={org}"), owner).await.ok();
    assert_eq!(
        actions(&log),
        vec![
            "apikey.revoke",
            "apikey.create",
            "organization.update",
            "app.delete",
            "bundle.delete",
            "bundle.upload",
            "app.update",
            "app.create",
            "member.remove",
            "member.set",
            "apikey.create",
            "invite.redeem",
            "invite.create",
            "apikey.delete",
            "apikey.rotate",
            "apikey.update",
            "apikey.create",
            // `keygate bootstrap`, by the operator: no user, key or address.
            "apikey.create",
            "organization.create",
        ]
    );
    let events = log["data"].as_array().expect("data");
    let bootstrap = &events[events.len() - 2..];
    for event in bootstrap {
        let actor = (&event["actor_user_id"], &event["actor_key_id"], &event["ip"]);
        assert_eq!(actor, (&Value::Null, &Value::Null, &Value::Null), "the operator: {event}");
    }
    assert_eq!(bootstrap[0]["target_id"], app.owner.key_id.to_string());
    assert_eq!(bootstrap[1]["target_id"], app.owner.org_id.as_str());
    let created = &events[events.len() - 3];
    assert_eq!(created["actor_user_id"], app.owner.user_id.as_str());
    assert_eq!(created["actor_key_id"], app.owner.key_id);
    assert_eq!(created["target_type"], "apikey");
    assert_eq!(created["target_id"], key["id"].to_string());
    assert_eq!(created["ip"], "127.0.0.1");
    assert!(created["at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let revoked = &events[0];
    assert_eq!(
        (revoked["actor_user_id"].clone(), revoked["actor_key_id"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(events[4]["target_id"], "com.acme.app@1.0.0");
    assert!(!log.to_string().contains(leaked["key"].as_str().expect("key")), "no secret in the log");

    // Pages, by the last id seen.
    let first = app.get(&format!("/organization/audit?org_id={org}&limit=5"), owner).await.ok();
    let last_id = first["data"][4]["id"].as_i64().expect("id");
    let next =
        app.get(&format!("/organization/audit?org_id={org}&limit=5&before={last_id}"), owner).await.ok();
    assert_eq!(actions(&next), actions(&log)[5..10].to_vec());
}

#[tokio::test]
async fn only_admins_read_the_audit_log() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let path = format!("/organization/audit?org_id={org}");
    let writer = app.member("writer@example.com", Role::Write).await;
    app.get(&path, &writer.key).await.error(403, "insufficient_permissions");
    let admin = app.member("admin@example.com", Role::Admin).await;
    app.get(&path, &admin.key).await.ok();
    let rival = app.tenant("rival@example.com").await;
    app.get(&path, &rival.key).await.error(404, "org_not_found");
    app.get("/organization/audit", &app.owner.key).await.error(400, "org_id_required");
    for bad in ["limit=0", "limit=201", "limit=x", "before=-3"] {
        app.get(&format!("{path}&{bad}"), &app.owner.key).await.error(400, "invalid_query");
    }
}

#[tokio::test]
async fn changes_to_unscoped_keys_are_recorded_in_the_owners_organizations() {
    let app = spawn_app().await;
    let member = app.member("dev@example.com", Role::Write).await;
    let path = format!("/apikey/{}/rotate", member.key_id);
    let rotated = app.post(&path, &member.key, json!({})).await.ok();
    assert!(rotated["apikey"]["key"].is_string());
    let log = app.get(&format!("/organization/audit?org_id={}", app.owner.org_id), &app.owner.key).await.ok();
    let event = &log["data"][0];
    assert_eq!(event["action"], "apikey.rotate");
    assert_eq!(event["target_id"], member.key_id.to_string());
    assert_eq!(event["actor_user_id"], member.user_id.as_str());
}

#[tokio::test]
async fn a_change_that_cannot_be_audited_does_not_happen() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let owner = &app.owner.key;
    let key = app.owner_key("read").await;
    app.member("dev@example.com", Role::Read).await;
    let keys_before = app.key_count().await;
    app.break_audit_log().await;

    let body = json!({ "app_id": "com.acme.app", "name": "An app", "org_id": org });
    let text = app.post("/app", owner, body).await.error(503, "audit_unavailable").to_owned();
    assert!(text.contains("not made"), "{text}");
    app.get("/app/com.acme.app", owner).await.error(404, "app_not_found");

    app.post("/apikey", owner, json!({ "org_id": org, "mode": "read" }))
        .await
        .error(503, "audit_unavailable");
    let key_path = format!("/apikey/{}", key["id"]);
    app.put(&key_path, owner, json!({ "name": "renamed" })).await.error(503, "audit_unavailable");
    app.post(&format!("{key_path}/rotate"), owner, json!({})).await.error(503, "audit_unavailable");
    app.delete(&key_path, owner).await.error(503, "audit_unavailable");
    assert_eq!(app.key_count().await, keys_before, "no key created or deleted");
    let unchanged = app.get(&key_path, owner).await.ok();
    assert_eq!(unchanged["apikey"]["name"], key["name"]);
    assert_eq!(unchanged["apikey"]["updated_at"], key["updated_at"]);
    // The old secret still works: the rotation did not happen.
    app.get("/apikey", key["key"].as_str().expect("key")).await.error(403, "insufficient_permissions");

    let member = json!({ "org_id": org, "email": "dev@example.com", "role": "write" });
    app.post("/organization/members", owner, member).await.error(503, "audit_unavailable");
    app.put("/organization", owner, json!({ "org_id": org, "name": "Renamed" }))
        .await
        .error(503, "audit_unavailable");
    let invite = json!({ "org_id": org, "email": "new@example.com", "role": "read" });
    app.post("/organization/invites", owner, invite).await.error(503, "audit_unavailable");
    let members = app.get(&format!("/organization/members?org_id={org}"), owner).await.ok();
    assert_eq!(members["data"][1]["role"], "read", "the role did not change");
    let invites = app.get(&format!("/organization/invites?org_id={org}"), owner).await.ok();
    assert_eq!(invites["data"], json!([]));
    let orgs = app.get("/organization", owner).await.ok();
    assert_eq!(orgs["data"][0]["name"], "Acme");
}
