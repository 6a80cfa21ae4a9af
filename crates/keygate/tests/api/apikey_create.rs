//! `POST /apikey`: from a JSON body or query parameters, every error row of
//! the contract, and the rule that nobody hands out more than they have.

use chrono::{Duration, Utc};
use keygate_core::{ApiKeySecret, Role};
use keygate_store::OrgChanges;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_created_key_is_returned_once_in_full_and_works() {
    let app = spawn_app().await;
    let key = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": app.owner.org_id, "mode": "read", "name": "CI/CD Read Key" }),
        )
        .await;
    let secret = key["key"].as_str().expect("key");
    assert!(ApiKeySecret::parse(secret).is_ok(), "not a well-formed key: {secret}");
    assert_eq!(key["mode"], "read");
    assert_eq!(key["name"], "CI/CD Read Key");
    assert_eq!(key["user_id"], app.owner.user_id.as_str());
    assert_eq!(key["org_id"], app.owner.org_id.as_str());
    assert_eq!(key["limited_to_orgs"], json!([app.owner.org_id]));
    assert_eq!(key["limited_to_apps"], json!([]));
    assert_eq!(key["expires_at"], Value::Null);
    for field in ["created_at", "updated_at"] {
        let at = key[field].as_str().expect("timestamp");
        assert!(at.ends_with('Z'), "{field} not UTC: {at}");
        chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    }
    // Read mode authenticates but cannot manage keys.
    let reply = app.get("/apikey", secret).await;
    assert_eq!(reply.error(403, "insufficient_permissions"), "Insufficient permissions to manage API keys");
    // Elsewhere the secret is masked.
    let listed = app.get("/apikey", &app.owner.key).await.ok();
    let text = listed.to_string();
    assert!(!text.contains(secret) && !text.contains(&app.owner.key));
    let shown = app.get(&format!("/apikey/{}", key["id"]), &app.owner.key).await.ok();
    let preview = shown["apikey"]["key"].as_str().expect("preview");
    assert_eq!(preview, format!("ak_{}…{}", &secret[3..7], &secret[48..]));
}

#[tokio::test]
async fn the_default_name_is_new_api_key() {
    let app = spawn_app().await;
    let key = app.owner_key("upload").await;
    assert_eq!(key["name"], "New API Key");
}

#[tokio::test]
async fn keys_can_be_created_from_query_parameters() {
    let app = spawn_app().await;
    let path = format!(
        "/apikey/?org_id={}&mode=upload&name=Deploy%20Bot&limited_to_apps=com.example.a,com.example.b",
        app.owner.org_id
    );
    let reply = app.call(reqwest::Method::POST, &path, Some(&app.owner.key), None).await;
    let key = reply.ok()["apikey"].clone();
    assert_eq!(key["mode"], "upload");
    assert_eq!(key["name"], "Deploy Bot");
    assert_eq!(key["limited_to_apps"], json!(["com.example.a", "com.example.b"]));
}

#[tokio::test]
async fn the_body_wins_over_the_query() {
    let app = spawn_app().await;
    let path = format!("/apikey?org_id={}&mode=all", app.owner.org_id);
    let key = app.post(&path, &app.owner.key, json!({ "mode": "read" })).await.ok();
    assert_eq!(key["apikey"]["mode"], "read");
}

#[tokio::test]
async fn every_mode_can_be_created() {
    let app = spawn_app().await;
    for mode in ["read", "write", "upload", "all"] {
        assert_eq!(app.owner_key(mode).await["mode"], mode);
    }
}

#[tokio::test]
async fn an_invalid_or_missing_mode_is_400() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for body in [
        json!({ "org_id": org, "mode": "superuser" }),
        json!({ "org_id": org, "mode": "READ" }),
        json!({ "org_id": org, "mode": 3 }),
        json!({ "org_id": org, "mode": null }),
        json!({ "org_id": org }),
    ] {
        let missing = body.get("mode").is_none_or(serde_json::Value::is_null);
        let reply = app.post("/apikey", &app.owner.key, body).await;
        let text = reply.error(400, "invalid_mode");
        // The contract's text, and for a missing mode what to fix.
        let expected = "Invalid mode specified. Must be one of: read, write, upload, all";
        if missing {
            assert_eq!(text, format!("{expected}; mode is required"));
        } else {
            assert_eq!(text, expected);
        }
    }
    assert_eq!(app.key_count().await, 1, "a refused request created a key");
}

#[tokio::test]
async fn a_missing_org_id_is_400() {
    let app = spawn_app().await;
    for body in [json!({ "mode": "read" }), json!({ "mode": "read", "org_id": "" }), json!({})] {
        let reply = app.post("/apikey", &app.owner.key, body).await;
        assert_eq!(reply.error(400, "org_id_required"), "org_id is required");
    }
}

#[tokio::test]
async fn an_unknown_or_foreign_organization_is_404() {
    let app = spawn_app().await;
    let other = app.tenant("rival@example.com").await;
    for org in ["00000000-0000-4000-8000-000000000000", "org_123", other.org_id.as_str()] {
        let reply = app.post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
        assert_eq!(reply.error(404, "org_not_found"), "Organization not found");
    }
    assert_eq!(app.key_count().await, 1);
    let rivals_org = other.org_id.parse().expect("uuid");
    assert!(
        app.store.keys_of_org(rivals_org).await.expect("keys").is_empty(),
        "a key landed in the rival's org"
    );
}

#[tokio::test]
async fn only_mode_all_manages_keys() {
    let app = spawn_app().await;
    for mode in ["read", "write", "upload"] {
        let key = app.owner_key(mode).await;
        let reply = app
            .post(
                "/apikey",
                key["key"].as_str().expect("key"),
                json!({ "org_id": app.owner.org_id, "mode": "read" }),
            )
            .await;
        reply.error(403, "insufficient_permissions");
    }
}

#[tokio::test]
async fn any_member_may_create_keys_and_the_role_still_caps_them() {
    let app = spawn_app().await;
    let reader = app.member("reader@example.com", Role::Read).await;
    let key = app.create_key(&reader.key, json!({ "org_id": reader.org_id, "mode": "all" })).await;
    assert_eq!(key["user_id"], reader.user_id.as_str());
    // Its mode is `all`, but a reader cannot administer: listing the org's keys is refused.
    let path = format!("/apikey?org_id={}", reader.org_id);
    app.get(&path, key["key"].as_str().expect("key")).await.error(403, "insufficient_permissions");
}

#[tokio::test]
async fn a_scoped_key_cannot_create_keys_for_another_organization() {
    let app = spawn_app().await;
    let scoped = app.owner_key("all").await;
    let scoped = scoped["key"].as_str().expect("key");
    // The owner belongs to a second organization too.
    let second = keygate::admin::bootstrap_as(app.store.as_ref(), "owner@example.com", "Second", true)
        .await
        .expect("bootstrap");
    let reply = app.post("/apikey", scoped, json!({ "org_id": second.org_id, "mode": "read" })).await;
    // Outside the key's scope, the organization does not exist for it.
    reply.error(404, "org_not_found");
    // The unscoped key may.
    app.create_key(&app.owner.key, json!({ "org_id": second.org_id, "mode": "read" })).await;
}

#[tokio::test]
async fn a_key_limited_to_apps_or_with_limits_creates_no_keys() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let app_limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.example.a", "com.example.b"] }),
        )
        .await;
    let with_credits = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "all", "credits": { "remaining": 5 } }))
        .await;
    let rate_limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "ratelimit": { "limit": 100, "duration_ms": 60000 } }),
        )
        .await;
    for restrained in [&app_limited, &with_credits, &rate_limited] {
        let restrained = restrained["key"].as_str().expect("key");
        // Not even a narrower key: its children would be free of its limits.
        for apps in [json!([]), json!(["com.example.b"]), json!(["com.example.c"])] {
            let body = json!({ "org_id": org, "mode": "read", "limited_to_apps": apps });
            let text =
                app.post("/apikey", restrained, body).await.error(403, "insufficient_permissions").to_owned();
            assert!(text.contains("creates no keys"), "{text}");
        }
    }
    assert_eq!(app.key_count().await, 4, "nothing was created");
}

#[tokio::test]
async fn an_expiring_key_only_creates_keys_that_expire_no_later() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let soon = Utc::now() + Duration::hours(1);
    let caller = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "all", "expires_at": soon.to_rfc3339() }))
        .await;
    let caller = caller["key"].as_str().expect("key");
    for body in [
        json!({ "org_id": org, "mode": "read" }),
        json!({ "org_id": org, "mode": "read", "expires_at": (soon + Duration::minutes(1)).to_rfc3339() }),
    ] {
        app.post("/apikey", caller, body).await.error(403, "insufficient_permissions");
    }
    let earlier = (soon - Duration::minutes(1)).to_rfc3339();
    app.create_key(caller, json!({ "org_id": org, "mode": "read", "expires_at": earlier })).await;
}

#[tokio::test]
async fn expires_at_must_be_a_future_rfc3339_time() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for at in [
        json!("tomorrow"),
        json!("2030-13-01T00:00:00Z"),
        json!((Utc::now() - Duration::hours(1)).to_rfc3339()),
    ] {
        let reply = app
            .post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read", "expires_at": at }))
            .await;
        reply.error(400, "invalid_expires_at");
    }
    let reply =
        app.post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read", "expires_at": 5 })).await;
    let text = reply.error(400, "invalid_body");
    assert!(text.contains("expires_at"), "does not name the field: {text}");
    let key = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "read", "expires_at": "2099-01-01T10:00:00+02:00" }),
        )
        .await;
    assert_eq!(key["expires_at"], "2099-01-01T08:00:00Z");
}

#[tokio::test]
async fn names_are_checked_and_unicode_is_welcome() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for name in [json!(""), json!("   "), json!("x".repeat(201)), json!("line\nbreak")] {
        let reply =
            app.post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read", "name": name })).await;
        reply.error(400, "invalid_name");
    }
    let key = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "read", "name": "déploiement 🚀 生产" }))
        .await;
    assert_eq!(key["name"], "déploiement 🚀 生产");
    assert_eq!(app.key_count().await, 2);
}

#[tokio::test]
async fn app_ids_must_be_reverse_domain_names() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for apps in [json!(["not an app"]), json!(["app"]), json!([""]), json!("com.example.a"), json!([1])] {
        let reply = app
            .post(
                "/apikey",
                &app.owner.key,
                json!({ "org_id": org, "mode": "read", "limited_to_apps": apps }),
            )
            .await;
        assert_eq!(reply.status, 400, "{apps}: {reply:?}");
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("com.example.app{i}")).collect();
    let reply = app
        .post(
            "/apikey",
            &app.owner.key,
            json!({ "org_id": org, "mode": "read", "limited_to_apps": too_many }),
        )
        .await;
    reply.error(400, "invalid_limited_to_apps");
    assert_eq!(app.key_count().await, 1);
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_400_and_say_which_field() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for (body, field) in [
        (json!({ "org_id": 42, "mode": "read" }), "org_id"),
        (json!({ "org_id": org, "mode": "read", "name": ["a"] }), "name"),
        (json!({ "org_id": org, "mode": "read", "expire_at": "2030-01-01T00:00:00Z" }), "expire_at"),
    ] {
        let reply = app.post("/apikey", &app.owner.key, body).await;
        let text = reply.error(400, "invalid_body");
        assert!(text.contains(field), "{text:?} does not name {field}");
    }
    for raw in ["{not json", "[1, 2]", "\"read\"", "{\"org_id\": \"x\""] {
        let reply = app.raw(reqwest::Method::POST, "/apikey", &app.owner.key, raw).await;
        reply.error(400, "invalid_body");
    }
    assert_eq!(app.key_count().await, 1);
}

#[tokio::test]
async fn organization_policy_binds_scoped_keys() {
    let app = spawn_app().await;
    let org = Uuid::parse_str(&app.owner.org_id).expect("uuid");
    let changes = OrgChanges { require_apikey_expiration: Some(true), ..Default::default() };
    app.store.update_organization(org, changes, &keygate_store::Actor::OPERATOR).await.expect("update");
    let reply = app.post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
    reply.error(400, "expiration_required");

    let changes = OrgChanges { max_apikey_expiration_days: Some(Some(30)), ..Default::default() };
    app.store.update_organization(org, changes, &keygate_store::Actor::OPERATOR).await.expect("update");
    let late = (Utc::now() + Duration::days(31)).to_rfc3339();
    let reply = app
        .post("/apikey", &app.owner.key, json!({ "org_id": org, "mode": "read", "expires_at": late }))
        .await;
    reply.error(400, "expiration_exceeds_max");
    let fine = (Utc::now() + Duration::days(29)).to_rfc3339();
    app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "read", "expires_at": fine })).await;
}

/// Thirteenth review: `limited_to_orgs` naming another organization was
/// ignored, and the key made for `org_id`. Anything but `[org_id]` is
/// refused now, and nothing is created.
#[tokio::test]
async fn limited_to_orgs_is_org_id_or_refused() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let other = app.tenant("other@example.com").await.org_id;
    let same = json!({ "org_id": org, "mode": "read", "limited_to_orgs": [org] });
    app.post("/apikey", &app.owner.key, same).await.ok();
    for orgs in
        [json!([other]), json!([]), json!([org, other]), json!("x"), json!([org.to_uppercase() + "x"])]
    {
        let body = json!({ "org_id": org, "mode": "read", "limited_to_orgs": orgs });
        let reply = app.post("/apikey", &app.owner.key, body).await;
        assert!(reply.error(400, "invalid_body").contains("limited_to_orgs"), "{orgs}");
    }
    assert_eq!(app.listed_ids("/apikey", &app.owner.key).await.len(), 2, "the bootstrap key and one more");
}
