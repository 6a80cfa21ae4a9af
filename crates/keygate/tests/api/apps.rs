//! `/app`: reverse-domain ids, unique; app-limited keys see only their apps;
//! another tenant's app does not exist for you.

use keygate_core::Role;
use serde_json::json;

use crate::helpers::spawn_app;

fn ids(list: &serde_json::Value) -> Vec<&str> {
    list["data"].as_array().expect("data").iter().map(|a| a["app_id"].as_str().expect("app_id")).collect()
}

#[tokio::test]
async fn apps_are_created_read_renamed_and_deleted() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let created = app
        .post("/app", &app.owner.key, json!({ "app_id": "com.acme.one", "name": "One", "org_id": org }))
        .await
        .ok();
    assert_eq!(created["app"]["app_id"], "com.acme.one");
    assert_eq!(created["app"]["org_id"], org.as_str());
    assert_eq!(app.get("/app/com.acme.one", &app.owner.key).await.ok()["app"]["name"], "One");
    let renamed = app.put("/app/com.acme.one/", &app.owner.key, json!({ "name": "Uno" })).await.ok();
    assert_eq!(renamed["app"]["name"], "Uno");
    app.app("com.acme.two").await;
    assert_eq!(ids(&app.get("/app", &app.owner.key).await.ok()), vec!["com.acme.one", "com.acme.two"]);
    assert_eq!(
        ids(&app.get(&format!("/app?org_id={org}"), &app.owner.key).await.ok()),
        vec!["com.acme.one", "com.acme.two"]
    );
    assert_eq!(app.delete("/app/com.acme.one", &app.owner.key).await.ok(), json!({ "success": true }));
    app.get("/app/com.acme.one", &app.owner.key).await.error(404, "app_not_found");
    app.delete("/app/com.acme.one", &app.owner.key).await.error(404, "app_not_found");
}

#[tokio::test]
async fn app_ids_are_unique_across_tenants() {
    let app = spawn_app().await;
    app.app("com.acme.one").await;
    let rival = app.tenant("rival@example.com").await;
    let body = json!({ "app_id": "com.acme.one", "name": "Mine", "org_id": rival.org_id });
    app.post("/app", &rival.key, body).await.error(409, "app_exists");
}

#[tokio::test]
async fn bad_app_requests_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for (body, code) in [
        (json!({ "app_id": "not-reverse-domain", "name": "x", "org_id": org }), "invalid_app_id"),
        (json!({ "app_id": "com..acme", "name": "x", "org_id": org }), "invalid_app_id"),
        (json!({ "name": "x", "org_id": org }), "app_id_required"),
        (json!({ "app_id": "com.acme.x", "org_id": org }), "name_required"),
        (json!({ "app_id": "com.acme.x", "name": "", "org_id": org }), "invalid_name"),
        (json!({ "app_id": "com.acme.x", "name": "x" }), "org_id_required"),
        (json!({ "app_id": ["com.acme.x"], "name": "x", "org_id": org }), "invalid_body"),
    ] {
        app.post("/app", &app.owner.key, body).await.error(400, code);
    }
    let unknown =
        json!({ "app_id": "com.acme.x", "name": "x", "org_id": "00000000-0000-4000-8000-000000000000" });
    app.post("/app", &app.owner.key, unknown).await.error(404, "org_not_found");
    app.get("/app/nope", &app.owner.key).await.error(400, "invalid_app_id");
    app.app("com.acme.one").await;
    app.put("/app/com.acme.one", &app.owner.key, json!({ "name": 1 })).await.error(400, "invalid_body");
    app.put("/app/com.acme.one", &app.owner.key, json!({})).await.error(400, "name_required");
    assert_eq!(ids(&app.get("/app", &app.owner.key).await.ok()), vec!["com.acme.one"]);
}

#[tokio::test]
async fn app_limited_keys_see_and_touch_only_their_apps() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    app.app("com.acme.one").await;
    app.app("com.acme.two").await;
    let limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.acme.one"] }),
        )
        .await;
    let limited = limited["key"].as_str().expect("key");
    assert_eq!(ids(&app.get("/app", limited).await.ok()), vec!["com.acme.one"]);
    assert_eq!(ids(&app.get(&format!("/app?org_id={org}"), limited).await.ok()), vec!["com.acme.one"]);
    app.get("/app/com.acme.one", limited).await.ok();
    app.get("/app/com.acme.two", limited).await.error(404, "app_not_found");
    app.put("/app/com.acme.two", limited, json!({ "name": "x" })).await.error(404, "app_not_found");
    app.delete("/app/com.acme.two", limited).await.error(404, "app_not_found");
    app.upload(limited, "com.acme.two", "1.0.0", b"x".to_vec()).await.error(404, "app_not_found");
    let body = json!({ "app_id": "com.acme.three", "name": "x", "org_id": org });
    app.post("/app", limited, body).await.error(404, "org_not_found");
    app.get("/app/com.acme.two", &app.owner.key).await.ok();
}

#[tokio::test]
async fn another_tenants_apps_do_not_exist_for_you() {
    let app = spawn_app().await;
    app.app("com.acme.one").await;
    let rival = app.tenant("rival@example.com").await;
    assert!(ids(&app.get("/app", &rival.key).await.ok()).is_empty());
    app.get("/app/com.acme.one", &rival.key).await.error(404, "app_not_found");
    app.put("/app/com.acme.one", &rival.key, json!({ "name": "x" })).await.error(404, "app_not_found");
    app.delete("/app/com.acme.one", &rival.key).await.error(404, "app_not_found");
    app.get(&format!("/app?org_id={}", app.owner.org_id), &rival.key).await.error(404, "org_not_found");
    let body = json!({ "app_id": "com.rival.x", "name": "x", "org_id": app.owner.org_id });
    app.post("/app", &rival.key, body).await.error(404, "org_not_found");
}

#[tokio::test]
async fn readers_read_and_writers_write_apps() {
    let app = spawn_app().await;
    app.app("com.acme.one").await;
    let reader = app.member("reader@example.com", Role::Read).await;
    app.get("/app/com.acme.one", &reader.key).await.ok();
    app.put("/app/com.acme.one", &reader.key, json!({ "name": "x" }))
        .await
        .error(403, "insufficient_permissions");
    let body = json!({ "app_id": "com.acme.two", "name": "x", "org_id": app.owner.org_id });
    app.post("/app", &reader.key, body.clone()).await.error(403, "insufficient_permissions");
    let writer = app.member("writer@example.com", Role::Write).await;
    app.post("/app", &writer.key, body).await.ok();
}
