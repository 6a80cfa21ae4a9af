//! What surrounds the handlers: unknown routes, wrong methods, oversized
//! bodies, trailing slashes, ids that are not ids, `/health` and `/livez`, caching.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_needs_no_key() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(reply.ok(), json!({ "status": "ok" }));
}

#[tokio::test]
async fn livez_needs_no_key_and_no_database() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/livez", None, None).await;
    assert_eq!(reply.ok(), json!({ "status": "ok" }));
    app.call(Method::GET, "/livez/", None, None).await.ok();
    app.call(Method::POST, "/livez", None, None).await.error(405, "method_not_allowed");
    // With the database gone, the process is still alive, and only
    // `/health` says that it cannot serve.
    app.store.close().await;
    app.call(Method::GET, "/health", None, None).await.error(503, "database_unavailable");
    assert_eq!(app.call(Method::GET, "/livez", None, None).await.ok(), json!({ "status": "ok" }));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    app.call(Method::GET, "/nothing/here", None, None).await.error(404, "not_found");
    app.call(Method::PATCH, "/apikey", Some(&app.owner.key), None).await.error(405, "method_not_allowed");
    app.call(Method::POST, "/health", None, None).await.error(405, "method_not_allowed");
}

#[tokio::test]
async fn trailing_slashes_are_optional() {
    let app = spawn_app().await;
    app.get("/apikey/", &app.owner.key).await.ok();
    app.get("/apikey", &app.owner.key).await.ok();
    app.get(&format!("/apikey/{}/", app.owner.key_id), &app.owner.key).await.ok();
    app.call(Method::GET, "/health/", None, None).await.ok();
}

#[tokio::test]
async fn ids_that_are_not_ids_name_no_key() {
    let app = spawn_app().await;
    for path in ["/apikey/abc", "/apikey/-1", "/apikey/1.5", "/apikey/%F0%9F%94%91", "/apikey/%20ak_x"] {
        app.get(path, &app.owner.key).await.error(404, "api_key_not_found");
        app.delete(path, &app.owner.key).await.error(404, "api_key_not_found");
    }
}

#[tokio::test]
async fn error_bodies_never_echo_a_key() {
    let app = spawn_app().await;
    let body = json!({ "org_id": app.owner.org_id, "mode": "read", "limited_to_apps": app.owner.key });
    let reply = app.post("/apikey", &app.owner.key, body).await;
    let text = reply.error(400, "invalid_body");
    assert!(!text.contains(&app.owner.key[3..]), "the key came back: {text}");
    assert!(text.contains("limited_to_apps"), "the field is still named: {text}");
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413_and_change_nothing() {
    let app = spawn_app().await;
    let name = "x".repeat(1024 * 1024 + 1);
    let body = json!({ "org_id": app.owner.org_id, "mode": "read", "name": name }).to_string();
    let reply = app.raw(Method::POST, "/apikey", &app.owner.key, body).await;
    reply.error(413, "payload_too_large");
    assert_eq!(app.key_count().await, 1);
}

#[tokio::test]
async fn unknown_query_parameters_are_400() {
    let app = spawn_app().await;
    app.get("/apikey?orgid=x", &app.owner.key).await.error(400, "invalid_query");
}

/// A response carrying a new or rotated key must never be kept by a cache;
/// every response says so, errors included.
#[tokio::test]
async fn no_response_may_be_cached() {
    let app = spawn_app().await;
    let owner = app.owner.key.clone();
    let send = |method: Method, path: &str, body: Option<Value>| {
        let mut request =
            app.client.request(method, format!("{}{path}", app.base)).header("authorization", &owner);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    let created = send(Method::POST, "/apikey", Some(json!({ "org_id": app.owner.org_id, "mode": "read" })))
        .await
        .expect("create");
    assert_eq!(created.status(), 200);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let id = created.json::<Value>().await.expect("created")["apikey"]["id"].as_i64().expect("id");
    let rotated = send(Method::POST, &format!("/apikey/{id}/rotate"), Some(json!({}))).await.expect("rotate");
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    for (method, path) in [(Method::GET, "/apikey"), (Method::GET, "/no/such/route"), (Method::GET, "/livez")]
    {
        let response = send(method, path, None).await.expect("send");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
}
