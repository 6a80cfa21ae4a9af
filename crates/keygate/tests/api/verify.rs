//! `POST /verify`: the one authorization decision, offered to other
//! services holding a verifier token.

use keygate::admin;
use keygate_core::{ApiKeySecret, Role};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const TOKEN: &str = "verifier-token-for-tests";

async fn app_with_verifier() -> TestApp {
    spawn_app_with(|s| s.verifier_tokens = vec![keygate::VerifierToken::new(TOKEN).expect("token")]).await
}

async fn verify(app: &TestApp, token: Option<&str>, body: Value) -> crate::helpers::Reply {
    let header = token.map(|t| format!("Bearer {t}"));
    app.call(reqwest::Method::POST, "/verify", header.as_deref(), Some(body)).await
}

#[tokio::test]
async fn verify_answers_the_same_decision_as_every_endpoint() {
    let app = app_with_verifier().await;
    let org = app.owner.org_id.clone();
    app.app("com.acme.app").await;
    let writer = app.member("writer@example.com", Role::Write).await;
    let upload = app.create_key(&writer.key, json!({ "org_id": org, "mode": "upload" })).await;
    let key = upload["key"].as_str().expect("key");

    let ok = verify(&app, Some(TOKEN), json!({ "key": key, "action": "upload", "app_id": "com.acme.app" }))
        .await
        .ok();
    assert_eq!((ok["valid"].clone(), ok["code"].clone()), (json!(true), json!("VALID")));
    assert_eq!(ok["key"]["id"], upload["id"]);
    assert_eq!(ok["key"]["mode"], "upload");
    assert_eq!(ok["key"]["org_id"], org.as_str());
    assert!(!ok.to_string().contains(key), "the verdict never echoes the secret");

    for (action, code) in
        [("read", "VALID"), ("write", "VALID"), ("admin", "FORBIDDEN"), ("own", "FORBIDDEN")]
    {
        let verdict = verify(&app, Some(TOKEN), json!({ "key": key, "action": action })).await.ok();
        assert_eq!(verdict["code"], code, "{action}");
        assert_eq!(verdict["valid"], code == "VALID");
    }
    let rival = app.tenant("rival@example.com").await;
    let elsewhere = verify(&app, Some(TOKEN), json!({ "key": key, "org_id": rival.org_id })).await.ok();
    assert_eq!(elsewhere["code"], "FORBIDDEN");
    let no_app = verify(&app, Some(TOKEN), json!({ "key": key, "app_id": "com.nowhere.app" })).await.ok();
    assert_eq!(no_app["code"], "FORBIDDEN");

    // A downgrade shows at once.
    app.member("writer@example.com", Role::Read).await;
    let narrowed = verify(&app, Some(TOKEN), json!({ "key": key, "action": "write" })).await.ok();
    assert_eq!(narrowed["code"], "FORBIDDEN");

    // Tenth review: a read member's unscoped `all` key (what `user add
    // --issue-key` gives) was VALID for `own` when nothing was named.
    let unscoped = writer.key.as_str();
    for (action, code) in [
        ("read", "VALID"),
        ("write", "FORBIDDEN"),
        ("upload", "FORBIDDEN"),
        ("admin", "FORBIDDEN"),
        ("own", "FORBIDDEN"),
    ] {
        let verdict = verify(&app, Some(TOKEN), json!({ "key": unscoped, "action": action })).await.ok();
        assert_eq!(verdict["code"], code, "unscoped, {action}");
    }
    let named =
        verify(&app, Some(TOKEN), json!({ "key": unscoped, "action": "write", "org_id": org })).await.ok();
    assert_eq!(named["code"], "FORBIDDEN", "a read member, where the organization is named");
}

/// Twelfth review: removed from every organization, or blocked in each,
/// a member's unscoped key still read wherever nothing was named.
#[tokio::test]
async fn an_unscoped_key_reads_only_while_its_owner_is_a_member_where_it_may_act() {
    let app = app_with_verifier().await;
    let org = app.owner.org_id.clone();
    let reader = app.member("reader@example.com", Role::Read).await;
    let reads = || async {
        verify(&app, Some(TOKEN), json!({ "key": reader.key, "action": "read" })).await.ok()["code"].clone()
    };
    assert_eq!(reads().await, "VALID", "a member: cached from here on");

    let block = json!({ "org_id": org, "key_id": reader.key_id });
    app.post("/organization/keys/block", &app.owner.key, block).await.ok();
    assert_eq!(reads().await, "FORBIDDEN", "blocked in the one organization it is a member of");
    let unblock = format!("/organization/keys/block?org_id={org}&key_id={}", reader.key_id);
    app.delete(&unblock, &app.owner.key).await.ok();
    assert_eq!(reads().await, "VALID", "unblocked");

    // A member of a second organization, blocked in neither: still reads
    // when removed from the first.
    let other = app.tenant("other-owner@example.com").await;
    let other_org = Uuid::parse_str(&other.org_id).expect("uuid");
    admin::add_user_as(app.store.as_ref(), "reader@example.com", other_org, Role::Read, true)
        .await
        .expect("add");
    let remove = format!("/organization/members?org_id={org}&user_id={}", reader.user_id);
    app.delete(&remove, &app.owner.key).await.ok();
    assert_eq!(reads().await, "VALID", "still a member of the other organization");
    app.delete(&format!("/organization?org_id={}", other.org_id), &other.key).await.ok();
    assert_eq!(reads().await, "FORBIDDEN", "its last organization deleted: a member nowhere");

    // Any account may create an organization, and is then a member of one:
    // a path that names no organization is an account's, not a tenant's
    // (SECURITY.md). The new membership counts at once, cache and all.
    let created = app.post("/organization", &reader.key, json!({ "name": "Reader's own" })).await.ok();
    assert_eq!(created["organization"]["role"], "super_admin", "{created}");
    assert_eq!(reads().await, "VALID", "a member again, of their own organization");
}

#[tokio::test]
async fn unknown_malformed_and_expired_keys_are_reported_as_such() {
    let app = app_with_verifier().await;
    let unknown = ApiKeySecret::generate().expect("rng");
    for key in [unknown.expose(), "ak_typo", "not a key"] {
        let verdict = verify(&app, Some(TOKEN), json!({ "key": key })).await.ok();
        assert_eq!(verdict, json!({ "valid": false, "code": "NOT_FOUND" }));
    }
    let revoked = app.owner_key("read").await;
    app.delete(&format!("/apikey/{}", revoked["id"]), &app.owner.key).await.ok();
    let verdict = verify(&app, Some(TOKEN), json!({ "key": revoked["key"] })).await.ok();
    assert_eq!(verdict["code"], "NOT_FOUND");

    let secret = ApiKeySecret::generate().expect("rng");
    app.store
        .insert_key(
            keygate_store::NewApiKey {
                material: keygate_store::KeyMaterial { digest: secret.digest(), preview: secret.preview() },
                mode: keygate_core::Mode::Read,
                name: keygate_core::KeyName::parse("old").expect("name"),
                user_id: app.owner.user_id.parse().expect("uuid"),
                org_id: Some(app.owner.org_id.parse().expect("uuid")),
                limited_to_apps: vec![],
                expires_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
                created_by_key_id: None,
                limits: Default::default(),
            },
            &keygate_store::Actor::OPERATOR,
        )
        .await
        .expect("insert");
    let verdict = verify(&app, Some(TOKEN), json!({ "key": secret.expose() })).await.ok();
    assert_eq!((verdict["valid"].clone(), verdict["code"].clone()), (json!(false), json!("EXPIRED")));
    assert!(verdict["key"]["id"].is_i64());
}

#[tokio::test]
async fn only_holders_of_a_verifier_token_may_ask() {
    let app = app_with_verifier().await;
    let body = json!({ "key": app.owner.key });
    verify(&app, None, body.clone()).await.error(401, "invalid_verifier_token");
    verify(&app, Some("wrong-token"), body.clone()).await.error(401, "invalid_verifier_token");
    verify(&app, Some(&app.owner.key), body.clone()).await.error(401, "invalid_verifier_token");
    verify(&app, Some(TOKEN), json!({ "key": app.owner.key, "action": "delete" }))
        .await
        .error(400, "invalid_action");
    verify(&app, Some(TOKEN), json!({ "action": "read" })).await.error(400, "key_required");
    verify(&app, Some(TOKEN), json!({ "key": 5 })).await.error(400, "invalid_body");

    let lower = app
        .call(
            reqwest::Method::POST,
            "/verify",
            Some(&format!("bearer {TOKEN}")),
            Some(json!({ "key": "ak_x" })),
        )
        .await;
    assert_eq!(lower.ok()["code"], "NOT_FOUND", "the scheme is case-insensitive");

    let disabled = spawn_app().await;
    verify(&disabled, Some(TOKEN), body).await.error(404, "verify_disabled");
}

#[tokio::test]
async fn guessing_verifier_tokens_gets_an_address_blocked() {
    let app = app_with_verifier().await;
    let body = json!({ "key": app.owner.key });
    for i in 0..20 {
        let reply = verify(&app, Some(&format!("guess-{i}")), body.clone()).await;
        reply.error(401, "invalid_verifier_token");
    }
    verify(&app, Some(TOKEN), body).await.error(429, "rate_limited");
}
