//! `/organization/members`: who belongs, with which role. Nobody grants,
//! changes or removes a role above their own; a `super_admin` always stays.

use keygate_core::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn members_are_listed_changed_and_removed_and_newcomers_invited() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let path = format!("/organization/members?org_id={org}");
    let listed = app.get(&path, &app.owner.key).await.ok();
    assert_eq!(
        listed["data"],
        json!([{ "user_id": app.owner.user_id, "email": "owner@example.com", "role": "super_admin" }])
    );

    // Nobody is added without their consent: a newcomer is invited.
    let newcomer = json!({ "org_id": org, "email": "new@example.com", "role": "write" });
    let text = app
        .post("/organization/members", &app.owner.key, newcomer)
        .await
        .error(404, "member_not_found")
        .to_owned();
    assert!(text.contains("invitation"), "{text}");
    let member = app.member("new@example.com", Role::Read).await;
    let user_id = member.user_id.clone();
    let added = app
        .post(
            "/organization/members",
            &app.owner.key,
            json!({ "org_id": org, "email": "New@Example.com", "role": "write" }),
        )
        .await
        .ok();
    assert_eq!(added["member"]["user_id"], user_id.as_str());
    assert_eq!(added["member"]["email"], "new@example.com");
    assert_eq!(added["member"]["role"], "write");
    let changed = app
        .post(
            "/organization/members",
            &app.owner.key,
            json!({ "org_id": org, "email": "new@example.com", "role": "read" }),
        )
        .await
        .ok();
    assert_eq!(changed["member"]["user_id"], user_id.as_str());
    assert_eq!(app.get(&path, &app.owner.key).await.ok()["data"].as_array().map(Vec::len), Some(2));

    let remove = format!("/organization/members?org_id={org}&user_id={user_id}");
    assert_eq!(
        app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.ok(),
        json!({ "success": true })
    );
    app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.error(404, "member_not_found");
    assert_eq!(app.get(&path, &app.owner.key).await.ok()["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn readers_see_members_and_only_admins_change_them() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let reader = app.member("reader@example.com", Role::Read).await;
    let path = format!("/organization/members?org_id={org}");
    app.get(&path, &reader.key).await.ok();
    let body = json!({ "org_id": org, "email": "x@example.com", "role": "read" });
    app.post("/organization/members", &reader.key, body).await.error(403, "insufficient_permissions");
    let rival = app.tenant("rival@example.com").await;
    app.get(&path, &rival.key).await.error(404, "org_not_found");
    let remove = format!("/organization/members?org_id={org}&user_id={}", reader.user_id);
    app.call(Method::DELETE, &remove, Some(&rival.key), None).await.error(404, "org_not_found");
}

#[tokio::test]
async fn nobody_grants_a_role_above_their_own_nor_touches_a_peer_or_a_superior() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let writer = app.member("writer@example.com", Role::Write).await;
    let body = json!({ "org_id": org, "email": "writer@example.com", "role": "super_admin" });
    app.post("/organization/members", &admin.key, body).await.error(403, "insufficient_permissions");
    let body = json!({ "org_id": org, "email": "owner@example.com", "role": "read" });
    app.post("/organization/members", &admin.key, body).await.error(403, "insufficient_permissions");
    let remove_owner = format!("/organization/members?org_id={org}&user_id={}", app.owner.user_id);
    app.call(Method::DELETE, &remove_owner, Some(&admin.key), None)
        .await
        .error(403, "insufficient_permissions");
    // Up to their own role, for a member below them: then a peer, out of reach.
    let body = json!({ "org_id": org, "email": "writer@example.com", "role": "admin" });
    app.post("/organization/members", &admin.key, body).await.ok();
    let body = json!({ "org_id": org, "email": "writer@example.com", "role": "read" });
    app.post("/organization/members", &admin.key, body).await.error(403, "insufficient_permissions");
    let remove_peer = format!("/organization/members?org_id={org}&user_id={}", writer.user_id);
    app.call(Method::DELETE, &remove_peer, Some(&admin.key), None)
        .await
        .error(403, "insufficient_permissions");
    let members = app.get(&format!("/organization/members?org_id={org}"), &app.owner.key).await.ok();
    let owner =
        members["data"].as_array().expect("data").iter().find(|m| m["email"] == "owner@example.com").cloned();
    assert_eq!(owner.expect("owner")["role"], "super_admin");
}

#[tokio::test]
async fn the_last_super_admin_can_be_neither_removed_nor_downgraded() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let body = json!({ "org_id": org, "email": "owner@example.com", "role": "admin" });
    app.post("/organization/members", &app.owner.key, body.clone()).await.error(409, "last_super_admin");
    let remove = format!("/organization/members?org_id={org}&user_id={}", app.owner.user_id);
    app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.error(409, "last_super_admin");
    app.member("second@example.com", Role::Read).await;
    let second = json!({ "org_id": org, "email": "second@example.com", "role": "super_admin" });
    app.post("/organization/members", &app.owner.key, second).await.ok();
    app.post("/organization/members", &app.owner.key, body).await.ok();
}

#[tokio::test]
async fn removal_and_downgrade_narrow_a_members_keys_at_once() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    app.app("com.acme.app").await;
    let member = app.member("dev@example.com", Role::Write).await;
    let key = app.create_key(&member.key, json!({ "org_id": org, "mode": "upload" })).await;
    let key = key["key"].as_str().expect("key").to_owned();
    app.put("/app/com.acme.app", &key, json!({ "name": "by dev" })).await.ok();

    let body = json!({ "org_id": org, "email": "dev@example.com", "role": "read" });
    app.post("/organization/members", &app.owner.key, body).await.ok();
    app.put("/app/com.acme.app", &key, json!({ "name": "again" }))
        .await
        .error(403, "insufficient_permissions");
    app.get("/app/com.acme.app", &key).await.ok();

    let remove = format!("/organization/members?org_id={org}&user_id={}", member.user_id);
    app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.ok();
    app.get("/app/com.acme.app", &key).await.error(401, "invalid_api_key");
    // The unscoped CLI key survives, and sees nothing of the organization.
    app.get("/app/com.acme.app", &member.key).await.error(404, "app_not_found");
}

#[tokio::test]
async fn bad_member_requests_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for (body, code) in [
        (json!({ "org_id": org, "email": "x@example.com", "role": "owner" }), "invalid_role"),
        (json!({ "org_id": org, "email": "x@example.com" }), "invalid_role"),
        (json!({ "org_id": org, "email": "not an email", "role": "read" }), "invalid_email"),
        (json!({ "org_id": org, "role": "read" }), "email_required"),
        (json!({ "email": "x@example.com", "role": "read" }), "org_id_required"),
        (json!({ "org_id": org, "email": 5, "role": "read" }), "invalid_body"),
    ] {
        app.post("/organization/members", &app.owner.key, body).await.error(400, code);
    }
    app.call(Method::DELETE, &format!("/organization/members?org_id={org}"), Some(&app.owner.key), None)
        .await
        .error(400, "user_id_required");
    let members = app.get(&format!("/organization/members?org_id={org}"), &app.owner.key).await.ok();
    assert_eq!(members["data"].as_array().map(Vec::len), Some(1));
}
