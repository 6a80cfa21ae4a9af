//! The four header forms, and 401 for a missing, malformed, unknown,
//! deleted or expired key.

use chrono::{Duration, Utc};
use keygate_core::{ApiKeySecret, KeyName, Mode};
use keygate_store::{KeyMaterial, NewApiKey};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_header_form_authenticates() {
    let app = spawn_app().await;
    let key = &app.owner.key;
    for (name, value) in [
        ("authorization", key.clone()),
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("bearer {key}")),
        ("x-api-key", key.clone()),
        ("capgkey", key.clone()),
    ] {
        let response =
            app.client.get(format!("{}/apikey", app.base)).header(name, value).send().await.expect("sent");
        assert_eq!(response.status(), 200, "header {name}");
    }
}

/// Thirteenth review: two credentials were accepted (the first used),
/// where a service behind keygate might read the other; `/auth` refused
/// the same request. Whichever two headers, and whichever keys: refused.
#[tokio::test]
async fn two_credentials_are_refused_whichever_they_are() {
    let app = spawn_app().await;
    let key = &app.owner.key;
    for pair in [
        [("authorization", key.as_str()), ("x-api-key", key.as_str())],
        [("authorization", key.as_str()), ("authorization", key.as_str())],
        [("x-api-key", key.as_str()), ("capgkey", "ak_other")],
    ] {
        let mut request = app.client.get(format!("{}/apikey", app.base));
        for (name, value) in pair {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("sent");
        assert_eq!(response.status(), 401, "{pair:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], "ambiguous_credentials", "{pair:?}");
    }
}

#[tokio::test]
async fn a_missing_key_is_401_on_every_route() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/apikey"),
        (Method::POST, "/apikey"),
        (Method::GET, "/apikey/1"),
        (Method::PUT, "/apikey/1"),
        (Method::DELETE, "/apikey/1"),
    ] {
        let reply = app.call(method, path, None, None).await;
        assert_eq!(reply.error(401, "missing_api_key"), "Missing API key");
    }
    let reply = app.call(Method::GET, "/apikey", Some("Bearer "), None).await;
    reply.error(401, "missing_api_key");
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_invalid() {
    let app = spawn_app().await;
    let good = &app.owner.key;
    let mut typo = good.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let unknown = ApiKeySecret::generate().expect("rng");
    for candidate in [
        "ak_not-a-real-key".to_owned(),
        String::from_utf8(typo).expect("ascii"),
        good[..good.len() - 1].to_owned(),
        format!("{good}x"),
        unknown.expose().to_owned(),
        "🔑".repeat(13),
    ] {
        let reply = app.get("/apikey", &candidate).await;
        assert_eq!(reply.error(401, "invalid_api_key"), "Invalid API key");
    }
}

#[tokio::test]
async fn a_header_that_is_not_text_is_an_invalid_key() {
    let app = spawn_app().await;
    let value = reqwest::header::HeaderValue::from_bytes(b"ak_\xff\xfe").expect("opaque header");
    let response =
        app.client.get(format!("{}/apikey", app.base)).header("x-api-key", value).send().await.expect("sent");
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "invalid_api_key");
}

#[tokio::test]
async fn a_deleted_key_stops_working_at_once() {
    let app = spawn_app().await;
    let key = app.owner_key("all").await;
    let secret = key["key"].as_str().expect("key");
    app.get("/apikey", secret).await.ok();
    app.delete(&format!("/apikey/{}", key["id"]), &app.owner.key).await.ok();
    app.get("/apikey", secret).await.error(401, "invalid_api_key");
}

#[tokio::test]
async fn an_expired_key_is_refused_with_its_own_code() {
    let app = spawn_app().await;
    let secret = ApiKeySecret::generate().expect("rng");
    // The API refuses past expiries, so the fixture is written directly.
    app.store
        .insert_key(
            NewApiKey {
                material: KeyMaterial { digest: secret.digest(), preview: secret.preview() },
                mode: Mode::All,
                name: KeyName::parse("old").expect("name"),
                user_id: Uuid::parse_str(&app.owner.user_id).expect("uuid"),
                org_id: Some(Uuid::parse_str(&app.owner.org_id).expect("uuid")),
                limited_to_apps: vec![],
                expires_at: Some(Utc::now() - Duration::seconds(1)),
                created_by_key_id: None,
                limits: Default::default(),
            },
            &keygate_store::Actor::OPERATOR,
        )
        .await
        .expect("insert");
    let reply = app.get("/apikey", secret.expose()).await;
    assert_eq!(reply.error(401, "api_key_expired"), "API key expired");
}

#[tokio::test]
async fn a_key_that_expires_later_works_until_then() {
    let app = spawn_app().await;
    let at = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let key = app
        .create_key(&app.owner.key, json!({ "org_id": app.owner.org_id, "mode": "all", "expires_at": at }))
        .await;
    app.get("/apikey", key["key"].as_str().expect("key")).await.ok();
}

#[tokio::test]
async fn last_used_at_is_recorded() {
    let app = spawn_app().await;
    let key = app.owner_key("read").await;
    assert_eq!(key["last_used_at"], serde_json::Value::Null);
    app.get("/apikey", key["key"].as_str().expect("key")).await.error(403, "insufficient_permissions");
    let path = format!("/apikey/{}", key["id"]);
    let mut seen = serde_json::Value::Null;
    for _ in 0..40 {
        seen = app.get(&path, &app.owner.key).await.ok()["apikey"]["last_used_at"].clone();
        if !seen.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let at = seen.as_str().expect("last_used_at recorded within the flush interval");
    let at = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    assert!(Utc::now().signed_duration_since(at) < Duration::seconds(30));
}
