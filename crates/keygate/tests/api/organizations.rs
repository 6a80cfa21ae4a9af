//! `/organization`: listing with the caller's role, creation by unscoped
//! keys only, validated settings, and deletion of everything inside.

use keygate_core::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn organizations_are_listed_with_the_callers_role() {
    let app = spawn_app().await;
    let member = app.member("dev@example.com", Role::Write).await;
    let rival = app.tenant("rival@example.com").await;
    let listed = app.get("/organization", &app.owner.key).await.ok();
    let orgs = listed["data"].as_array().expect("data");
    assert_eq!(orgs.len(), 1);
    let org = &orgs[0];
    assert_eq!(org["id"], app.owner.org_id.as_str());
    assert_eq!(org["name"], "Acme");
    assert_eq!(org["role"], "super_admin");
    assert_eq!(org["require_apikey_expiration"], false);
    assert_eq!(org["max_apikey_expiration_days"], Value::Null);
    assert!(org["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let theirs = app.get("/organization", &member.key).await.ok();
    assert_eq!(theirs["data"][0]["role"], "write");
    let rivals = app.get("/organization", &rival.key).await.ok();
    assert_eq!(rivals["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(rivals["data"][0]["id"], rival.org_id.as_str());
}

#[tokio::test]
async fn a_scoped_key_sees_only_its_organization() {
    let app = spawn_app().await;
    let created = app.post("/organization", &app.owner.key, json!({ "name": "Second" })).await.ok();
    assert_eq!(created["organization"]["role"], "super_admin");
    let unscoped = app.get("/organization", &app.owner.key).await.ok();
    assert_eq!(unscoped["data"].as_array().map(Vec::len), Some(2));
    let scoped = app.owner_key("read").await;
    let listed = app.get("/organization", scoped["key"].as_str().expect("key")).await.ok();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["data"][0]["id"], app.owner.org_id.as_str());
}

#[tokio::test]
async fn only_an_unscoped_all_key_creates_organizations() {
    let app = spawn_app().await;
    let scoped = app.owner_key("all").await;
    let reply =
        app.post("/organization", scoped["key"].as_str().expect("key"), json!({ "name": "Nope" })).await;
    reply.error(403, "insufficient_permissions");
    for body in [json!({}), json!({ "name": "" }), json!({ "name": 3 }), json!({ "name": "x", "extra": 1 })] {
        let reply = app.post("/organization", &app.owner.key, body).await;
        assert_eq!(reply.status, 400, "{reply:?}");
    }
    let orgs = app.get("/organization", &app.owner.key).await.ok();
    assert_eq!(orgs["data"].as_array().map(Vec::len), Some(1), "nothing was created");
}

#[tokio::test]
async fn admins_change_settings_within_bounds() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let body = json!({ "org_id": org, "name": "Acme Inc", "require_apikey_expiration": true, "max_apikey_expiration_days": 90 });
    let updated = app.put("/organization", &app.owner.key, body).await.ok()["organization"].clone();
    assert_eq!(updated["name"], "Acme Inc");
    assert_eq!(updated["require_apikey_expiration"], true);
    assert_eq!(updated["max_apikey_expiration_days"], 90);
    for days in [json!(0), json!(366), json!(-1), json!(1.5), json!("30")] {
        let reply = app
            .put(
                "/organization",
                &app.owner.key,
                json!({ "org_id": org, "max_apikey_expiration_days": days }),
            )
            .await;
        assert_eq!(reply.status, 400, "{days}: {reply:?}");
    }
    // A whole number with a zero fraction is a whole number, as the
    // document's `integer` says.
    let body = json!({ "org_id": org, "max_apikey_expiration_days": 30.0 });
    let whole = app.put("/organization", &app.owner.key, body).await.ok();
    assert_eq!(whole["organization"]["max_apikey_expiration_days"], 30);
    let lifted = app
        .put("/organization", &app.owner.key, json!({ "org_id": org, "max_apikey_expiration_days": null }))
        .await
        .ok();
    assert_eq!(lifted["organization"]["max_apikey_expiration_days"], Value::Null);
    assert_eq!(lifted["organization"]["require_apikey_expiration"], true);

    let writer = app.member("dev@example.com", Role::Write).await;
    app.put("/organization", &writer.key, json!({ "org_id": org, "name": "Mine" }))
        .await
        .error(403, "insufficient_permissions");
    let rival = app.tenant("rival@example.com").await;
    app.put("/organization", &rival.key, json!({ "org_id": org, "name": "Mine" }))
        .await
        .error(404, "org_not_found");
    app.put("/organization", &app.owner.key, json!({ "name": "No id" })).await.error(400, "org_id_required");
    let unknown = Uuid::new_v4().to_string();
    app.put("/organization", &app.owner.key, json!({ "org_id": unknown })).await.error(404, "org_not_found");
    let current = app.get("/organization", &app.owner.key).await.ok();
    assert_eq!(current["data"][0]["name"], "Acme Inc", "refused changes changed nothing");
}

#[tokio::test]
async fn deleting_an_organization_removes_everything_inside() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let member = app.member("dev@example.com", Role::Upload).await;
    app.app("com.acme.one").await;
    app.upload(&app.owner.key, "com.acme.one", "1.0.0", vec![7; 1000]).await.ok();
    let scoped = app.owner_key("all").await;
    let members_key = app.create_key(&member.key, json!({ "org_id": org, "mode": "upload" })).await;
    assert_eq!(app.blob_files().await, 1);

    let path = format!("/organization?org_id={org}");
    app.call(Method::DELETE, &path, Some(&member.key), None).await.error(403, "insufficient_permissions");
    assert_eq!(
        app.call(Method::DELETE, &path, Some(&app.owner.key), None).await.ok(),
        json!({ "success": true })
    );

    for key in [&scoped, &members_key] {
        app.get("/apikey", key["key"].as_str().expect("key")).await.error(401, "invalid_api_key");
    }
    app.get("/app/com.acme.one", &app.owner.key).await.error(404, "app_not_found");
    assert_eq!(app.blob_files().await, 0, "the bundle's bytes are gone");
    let orgs = app.get("/organization", &member.key).await.ok();
    assert_eq!(orgs["data"], json!([]), "the membership is gone");
    app.call(Method::DELETE, &path, Some(&app.owner.key), None).await.error(404, "org_not_found");
    // The name is free again for a new app elsewhere.
    let other = app.post("/organization", &app.owner.key, json!({ "name": "Again" })).await.ok();
    let body = json!({ "app_id": "com.acme.one", "name": "One", "org_id": other["organization"]["id"] });
    app.post("/app", &app.owner.key, body).await.ok();
}

#[tokio::test]
async fn organization_and_member_requests_need_an_org_id() {
    let app = spawn_app().await;
    app.call(Method::DELETE, "/organization", Some(&app.owner.key), None).await.error(400, "org_id_required");
    app.get("/organization/members", &app.owner.key).await.error(400, "org_id_required");
    app.get("/organization/members?org_id=nonsense", &app.owner.key).await.error(404, "org_not_found");
    app.call(Method::DELETE, "/organization?org_id=nonsense", Some(&app.owner.key), None)
        .await
        .error(404, "org_not_found");
    app.get("/organization", "ak_typo").await.error(401, "invalid_api_key");
    let orgs = app.get("/organization", &app.owner.key).await.ok();
    assert_eq!(orgs["data"].as_array().map(Vec::len), Some(1), "nothing was deleted");
}
