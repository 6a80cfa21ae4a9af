//! The cache of verified keys (on by default) on the replica that makes a
//! change: every change that alters authentication is refused on the very
//! next request after the write's response, with the cache warmed first;
//! and the same without the cache.

use keygate_core::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

async fn spawn_app() -> TestApp {
    spawn_app_with(|settings| settings.key_cache = true).await
}

#[tokio::test]
async fn a_deleted_or_narrowed_key_is_refused_on_the_very_next_request() {
    deleted_or_narrowed_keys_are_refused(spawn_app().await).await;
}

#[tokio::test]
async fn without_the_cache_a_deleted_or_narrowed_key_is_refused_too() {
    deleted_or_narrowed_keys_are_refused(spawn_app_with(|settings| settings.key_cache = false).await).await;
}

async fn deleted_or_narrowed_keys_are_refused(app: TestApp) {
    for _ in 0..3 {
        let key = app.owner_key("all").await;
        let (id, secret) = (key["id"].as_i64().expect("id"), key["key"].as_str().expect("key").to_owned());
        app.get("/apikey", &secret).await.ok();
        app.get("/apikey", &secret).await.ok();
        app.delete(&format!("/apikey/{id}"), &app.owner.key).await.ok();
        app.get("/apikey", &secret).await.error(401, "invalid_api_key");
    }
    let key = app.owner_key("all").await;
    let (id, secret) = (key["id"].as_i64().expect("id"), key["key"].as_str().expect("key").to_owned());
    app.get("/apikey", &secret).await.ok();
    app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "mode": "read" })).await.ok();
    app.get("/apikey", &secret).await.error(403, "insufficient_permissions");
}

#[tokio::test]
async fn a_lowered_role_and_a_removed_member_bind_on_the_very_next_request() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let member = app.member("admin@example.com", Role::Admin).await;
    let scoped = app.create_key(&member.key, json!({ "org_id": org, "mode": "all" })).await;
    let scoped = scoped["key"].as_str().expect("key").to_owned();
    let org_keys = format!("/apikey?org_id={org}");
    app.get(&org_keys, &scoped).await.ok();
    app.get(&org_keys, &scoped).await.ok();
    let body = json!({ "org_id": org, "email": "admin@example.com", "role": "read" });
    app.post("/organization/members", &app.owner.key, body).await.ok();
    app.get(&org_keys, &scoped).await.error(403, "insufficient_permissions");

    let remove = format!("/organization/members?org_id={org}&user_id={}", member.user_id);
    app.call(Method::DELETE, &remove, Some(&app.owner.key), None).await.ok();
    app.get(&org_keys, &scoped).await.error(401, "invalid_api_key");
}

#[tokio::test]
async fn a_deleted_organization_or_app_binds_on_the_very_next_request() {
    let app = spawn_app().await;
    app.app("com.acme.one").await;
    let limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": app.owner.org_id, "mode": "all", "limited_to_apps": ["com.acme.one"] }),
        )
        .await;
    let limited = limited["key"].as_str().expect("key").to_owned();
    app.get("/app/com.acme.one", &limited).await.ok();
    app.delete("/app/com.acme.one", &app.owner.key).await.ok();
    app.get("/app/com.acme.one", &limited).await.error(404, "app_not_found");

    let tenant = app.tenant("rival@example.com").await;
    let scoped = app.create_key(&tenant.key, json!({ "org_id": tenant.org_id, "mode": "all" })).await;
    let scoped = scoped["key"].as_str().expect("key").to_owned();
    app.get("/apikey", &scoped).await.ok();
    let path = format!("/organization?org_id={}", tenant.org_id);
    app.call(Method::DELETE, &path, Some(&tenant.key), None).await.ok();
    app.get("/apikey", &scoped).await.error(401, "invalid_api_key");
}
