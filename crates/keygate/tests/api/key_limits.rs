//! What a key may spend: rate limits, credits with refills, and disabled
//! keys, on every endpoint, `/verify` and `/auth`, over real HTTP (on
//! PostgreSQL too, with `KEYGATE_TEST_DATABASE`).

use std::time::Duration;

use futures_util::future::join_all;
use keygate::admission::quota::Clock;
use keygate_core::Role;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app_with};

const TOKEN: &str = "verifier-token-for-limits";

async fn app_with(clock: &Clock) -> TestApp {
    let clock = clock.clone();
    spawn_app_with(move |s| {
        s.verifier_tokens = vec![keygate::VerifierToken::new(TOKEN).expect("token")];
        s.clock = clock;
        // Refusals here are on purpose; none may throttle the test's address.
        s.failed_auth_limit = 0;
        s.forward_auth = Some(keygate::admission::forward_auth::ForwardAuth::new(
            keygate::admission::forward_auth::Proxy::Caddy,
            keygate::admission::forward_auth::Rules::default(),
        ));
    })
    .await
}

async fn verify(app: &TestApp, body: Value) -> Value {
    let header = format!("Bearer {TOKEN}");
    app.call(reqwest::Method::POST, "/verify", Some(&header), Some(body)).await.ok()
}

/// A key of the owner's with `limits` merged into its creation.
async fn limited_key(app: &TestApp, mode: &str, limits: Value) -> (String, i64) {
    let mut body = json!({ "org_id": app.owner.org_id, "mode": mode });
    body.as_object_mut().expect("object").extend(limits.as_object().expect("limits").clone());
    let created = app.create_key(&app.owner.key, body).await;
    (created["key"].as_str().expect("key").to_owned(), created["id"].as_i64().expect("id"))
}

async fn key_object(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/apikey/{id}"), &app.owner.key).await.ok()["apikey"].clone()
}

/// A GET with its headers.
async fn get_with_headers(app: &TestApp, path: &str, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = app
        .client
        .get(format!("{}{path}", app.base))
        .header("authorization", key)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Tenth review: a request costing more than the balance left made every
/// cheaper one of the key refused for a second, credits left or not.
#[tokio::test]
async fn a_request_too_costly_leaves_cheaper_ones_their_credits() {
    let app = app_with(&Clock::default()).await;
    let (key, _) = limited_key(&app, "all", json!({ "credits": { "remaining": 10 } })).await;
    let costly = verify(&app, json!({ "key": key, "cost": 11 })).await;
    assert_eq!(costly["code"], "USAGE_EXCEEDED", "{costly}");
    for left in (0..10).rev() {
        let cheap = verify(&app, json!({ "key": key, "cost": 1 })).await;
        assert_eq!(cheap["code"], "VALID", "{left} left: {cheap}");
        let again = verify(&app, json!({ "key": key, "cost": 11 })).await;
        assert_eq!(again["code"], "USAGE_EXCEEDED", "{again}");
    }
    let spent = verify(&app, json!({ "key": key, "cost": 1 })).await;
    assert_eq!(spent["code"], "USAGE_EXCEEDED", "every credit spent: {spent}");
}

#[tokio::test]
async fn credits_are_never_overspent_under_concurrency() {
    let app = app_with(&Clock::default()).await;
    let (key, id) = limited_key(&app, "read", json!({ "credits": { "remaining": 60 } })).await;
    assert_eq!(key_object(&app, id).await["credits"], json!({ "remaining": 60, "refill": null }));

    let verdicts = join_all((0..120).map(|_| verify(&app, json!({ "key": key })))).await;
    let valid = verdicts.iter().filter(|v| v["code"] == "VALID").count();
    let exceeded = verdicts.iter().filter(|v| v["code"] == "USAGE_EXCEEDED").count();
    assert_eq!((valid, exceeded), (60, 60), "exactly the balance is admitted");
    let last = verdicts.iter().find(|v| v["code"] == "USAGE_EXCEEDED").expect("a refusal");
    assert_eq!(last["valid"], false);
    assert_eq!(last["credits"]["remaining"], 0);
    assert_eq!(key_object(&app, id).await["credits"]["remaining"], 0);
    // Through the API as well: 429 usage_exceeded, in the contract's shape.
    app.get("/app", &key).await.error(429, "usage_exceeded");
}

#[tokio::test]
async fn a_cost_spends_that_many_and_a_refused_request_spends_none() {
    let app = app_with(&Clock::default()).await;
    app.app("com.acme.app").await;
    let (key, id) = limited_key(&app, "read", json!({ "credits": { "remaining": 10 } })).await;

    let spent = verify(&app, json!({ "key": key, "cost": 4 })).await;
    assert_eq!((spent["code"].clone(), spent["credits"]["remaining"].clone()), (json!("VALID"), json!(6)));
    let free = verify(&app, json!({ "key": key, "cost": 0 })).await;
    assert_eq!((free["code"].clone(), free["credits"]["remaining"].clone()), (json!("VALID"), json!(6)));
    // Refused by authorization: FORBIDDEN spends nothing, nor does a 403 or 404.
    let forbidden = verify(&app, json!({ "key": key, "action": "write" })).await;
    assert_eq!(forbidden["code"], "FORBIDDEN");
    app.post("/app", &key, json!({ "app_id": "com.acme.other", "name": "x", "org_id": app.owner.org_id }))
        .await
        .error(403, "insufficient_permissions");
    app.get("/app/com.acme.missing", &key).await.error(404, "app_not_found");
    assert_eq!(key_object(&app, id).await["credits"]["remaining"], 6);
    // A cost larger than what is left is refused whole, spending nothing.
    let too_much = verify(&app, json!({ "key": key, "cost": 7 })).await;
    assert_eq!(
        (too_much["code"].clone(), too_much["credits"]["remaining"].clone()),
        (json!("USAGE_EXCEEDED"), json!(6))
    );
    assert_eq!(app.get("/app", &key).await.status, 200);
    assert_eq!(key_object(&app, id).await["credits"]["remaining"], 5);

    let bad = app
        .call(
            reqwest::Method::POST,
            "/verify",
            Some(&format!("Bearer {TOKEN}")),
            Some(json!({ "key": key, "cost": -1 })),
        )
        .await;
    bad.error(400, "invalid_cost");
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_the_ietf_headers_and_resets_with_its_window() {
    let clock = Clock::default();
    let app = app_with(&clock).await;
    let (key, id) =
        limited_key(&app, "read", json!({ "ratelimit": { "limit": 3, "duration_ms": 60_000 } })).await;
    let listed = key_object(&app, id).await;
    assert_eq!(listed["ratelimit"], json!({ "name": "default", "limit": 3, "duration_ms": 60_000 }));
    assert_eq!(listed["ratelimits"], json!([{ "name": "default", "limit": 3, "duration_ms": 60_000 }]));

    // Start at the beginning of a window, so that the test does not cross one.
    let now_ms = clock.now().timestamp_millis() as u64;
    clock.advance(Duration::from_millis(60_000 - now_ms % 60_000 + 10));
    for left in (0..3).rev() {
        let (status, headers, body) = get_with_headers(&app, "/app", &key).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["ratelimit-policy"], "\"default\";q=3;w=60");
        let state = headers["ratelimit"].to_str().expect("text");
        assert!(state.starts_with(&format!("\"default\";r={left};t=")), "{state}");
    }
    let (status, headers, body) = get_with_headers(&app, "/app", &key).await;
    assert_eq!(
        (status, body["code"].clone(), body["status"].clone()),
        (429, json!("rate_limited"), json!("KO"))
    );
    let retry: u64 = headers["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(headers["ratelimit-policy"], "\"default\";q=3;w=60");
    assert!(headers["ratelimit"].to_str().expect("text").starts_with("\"default\";r=0;t="));
    let verdict = verify(&app, json!({ "key": key })).await;
    assert_eq!((verdict["valid"].clone(), verdict["code"].clone()), (json!(false), json!("RATE_LIMITED")));
    assert_eq!(verdict["ratelimit"]["limit"], 3);
    assert_eq!(verdict["ratelimit"]["remaining"], 0);
    assert!(verdict["ratelimit"]["reset"].as_i64().expect("reset") > clock.now().timestamp_millis());

    clock.advance(Duration::from_secs(60));
    let verdict = verify(&app, json!({ "key": key })).await;
    assert_eq!(
        (verdict["code"].clone(), verdict["ratelimit"]["remaining"].clone()),
        (json!("VALID"), json!(2))
    );
}

#[tokio::test]
async fn every_named_limit_must_allow_the_request() {
    let clock = Clock::default();
    let app = app_with(&clock).await;
    let limits = json!({ "ratelimits": [
        { "name": "burst", "limit": 2, "duration_ms": 1_000 },
        { "name": "hourly", "limit": 3, "duration_ms": 3_600_000 },
    ] });
    let (key, _) = limited_key(&app, "read", limits).await;
    let now_ms = clock.now().timestamp_millis() as u64;
    clock.advance(Duration::from_millis(3_600_000 - now_ms % 3_600_000 + 10));
    let codes = |v: Vec<Value>| {
        v.iter().map(|v| v["code"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
    };
    let first = join_all((0..3).map(|_| verify(&app, json!({ "key": key })))).await;
    let mut seen = codes(first);
    seen.sort();
    assert_eq!(seen, ["RATE_LIMITED", "VALID", "VALID"], "the burst limit binds");
    clock.advance(Duration::from_secs(1));
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "VALID");
    clock.advance(Duration::from_secs(1));
    let refused = verify(&app, json!({ "key": key })).await;
    assert_eq!(refused["code"], "RATE_LIMITED", "the hourly limit binds");
    assert_eq!(refused["ratelimit"]["limit"], 3);
}

#[tokio::test]
async fn credits_refill_once_at_each_interval_boundary() {
    let clock = Clock::default();
    let app = app_with(&clock).await;
    let credits = json!({ "credits": { "remaining": 2, "refill": { "amount": 5, "interval": "daily" } } });
    let (key, id) = limited_key(&app, "read", credits).await;
    assert_eq!(
        key_object(&app, id).await["credits"],
        json!({ "remaining": 2, "refill": { "amount": 5, "interval": "daily", "day": 1 } })
    );
    assert_eq!(verify(&app, json!({ "key": key, "cost": 2 })).await["code"], "VALID");
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "USAGE_EXCEEDED");

    // Past the next UTC midnight: the balance is the refill's amount, once.
    let now = clock.now();
    let midnight = (now.date_naive() + chrono::Days::new(1)).and_hms_opt(0, 0, 1).expect("time").and_utc();
    clock.advance((midnight - now).to_std().expect("ahead"));
    let verdict = verify(&app, json!({ "key": key })).await;
    assert_eq!(
        (verdict["code"].clone(), verdict["credits"]["remaining"].clone()),
        (json!("VALID"), json!(4))
    );
    for _ in 0..4 {
        assert_eq!(verify(&app, json!({ "key": key })).await["code"], "VALID");
    }
    assert_eq!(
        verify(&app, json!({ "key": key })).await["code"],
        "USAGE_EXCEEDED",
        "no second refill that day"
    );
}

#[tokio::test]
async fn a_disabled_key_is_refused_everywhere_until_enabled_and_its_owner_cannot_lift_it() {
    let app = app_with(&Clock::default()).await;
    let member = app.member("customer@example.com", Role::Write).await;
    let created = app.create_key(&member.key, json!({ "org_id": app.owner.org_id, "mode": "all" })).await;
    let (key, id) = (created["key"].as_str().expect("key").to_owned(), created["id"].as_i64().expect("id"));
    assert_eq!(created["enabled"], true);

    let disabled = app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "enabled": false })).await.ok();
    assert_eq!(disabled["apikey"]["enabled"], false);
    app.get("/app", &key).await.error(401, "api_key_disabled");
    let verdict = verify(&app, json!({ "key": key })).await;
    assert_eq!((verdict["valid"].clone(), verdict["code"].clone()), (json!(false), json!("DISABLED")));
    assert_eq!(verdict["key"]["id"], id);
    let auth = app
        .client
        .get(format!("{}/auth", app.base))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/builds")
        .header("authorization", key.as_str())
        .send()
        .await
        .expect("sent");
    assert_eq!(
        (auth.status().as_u16(), auth.headers()["x-keygate-reason"].to_str().ok()),
        (401, Some("api_key_disabled"))
    );
    // The customer's other `all` key may manage their keys, but not lift an
    // administrator's decision.
    let lift = app.put(&format!("/apikey/{id}"), &member.key, json!({ "enabled": true })).await;
    lift.error(403, "insufficient_permissions");
    app.put(&format!("/apikey/{id}"), &member.key, json!({ "credits": { "remaining": 5 } }))
        .await
        .error(403, "insufficient_permissions");

    app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "enabled": true })).await.ok();
    assert_eq!(app.get("/app", &key).await.status, 200);
    assert_eq!(verify(&app, json!({ "key": key })).await["code"], "VALID");
}

#[tokio::test]
async fn forward_auth_spends_only_on_allowed_requests() {
    let app = app_with(&Clock::default()).await;
    let (key, id) = limited_key(&app, "read", json!({ "credits": { "remaining": 2 } })).await;
    let ask = |method: &'static str| {
        let (app, key) = (&app, key.clone());
        async move {
            let response = app
                .client
                .get(format!("{}/auth", app.base))
                .header("x-forwarded-method", method)
                .header("x-forwarded-uri", "/builds")
                .header("authorization", key)
                .send()
                .await
                .expect("sent");
            let reason =
                response.headers().get("x-keygate-reason").map(|v| v.to_str().unwrap_or("").to_owned());
            (response.status().as_u16(), reason)
        }
    };
    assert_eq!(ask("POST").await, (403, Some("insufficient_permissions".into())), "a read key may not write");
    assert_eq!(ask("GET").await.0, 200);
    assert_eq!(ask("GET").await.0, 200);
    assert_eq!(ask("GET").await, (403, Some("usage_exceeded".into())));
    assert_eq!(key_object(&app, id).await["credits"]["remaining"], 0);
}

#[tokio::test]
async fn usage_shows_credits_and_refusals_per_day() {
    let clock = Clock::default();
    let app = app_with(&clock).await;
    let limits =
        json!({ "credits": { "remaining": 3 }, "ratelimit": { "limit": 1_000, "duration_ms": 3_600_000 } });
    let (key, id) = limited_key(&app, "read", limits).await;
    for _ in 0..5 {
        verify(&app, json!({ "key": key })).await;
    }
    app.put(&format!("/apikey/{id}"), &app.owner.key, json!({ "enabled": false })).await.ok();
    verify(&app, json!({ "key": key })).await;
    // Usage is written within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let usage = app.get(&format!("/apikey/{id}/usage?days=1"), &app.owner.key).await.ok();
        let today = &usage["data"][0];
        if today["disabled"] == 1 {
            assert_eq!(today["credits"], 3);
            assert_eq!(today["usage_exceeded"], 2);
            assert_eq!(today["rate_limited"], 0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never showed: {usage}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("keygate_limit_refusals_total{code=\"USAGE_EXCEEDED\"}"), "{metrics}");
}

#[tokio::test]
async fn limits_out_of_bounds_are_refused_naming_the_field() {
    let app = app_with(&Clock::default()).await;
    let org = app.owner.org_id.clone();
    let create = |limits: Value| {
        let mut body = json!({ "org_id": org, "mode": "read" });
        body.as_object_mut().expect("object").extend(limits.as_object().expect("limits").clone());
        app.post("/apikey", &app.owner.key, body)
    };
    let cases: [(Value, &str); 10] = [
        (json!({ "ratelimit": { "limit": 0, "duration_ms": 1000 } }), "invalid_ratelimit"),
        (json!({ "ratelimit": { "limit": 5, "duration_ms": 999 } }), "invalid_ratelimit"),
        (json!({ "ratelimit": { "limit": 5 } }), "invalid_ratelimit"),
        (json!({ "ratelimit": { "limit": 5, "duration_ms": 1000 }, "ratelimits": [] }), "invalid_ratelimit"),
        (
            json!({ "ratelimits": [{ "name": "a", "limit": 1, "duration_ms": 1000 }, { "name": "a", "limit": 2, "duration_ms": 1000 }] }),
            "invalid_ratelimits",
        ),
        (
            json!({ "ratelimits": [{ "name": "Not Ok", "limit": 1, "duration_ms": 1000 }] }),
            "invalid_ratelimits",
        ),
        (json!({ "credits": { "remaining": -1 } }), "invalid_credits"),
        (json!({ "credits": { "refill": null } }), "invalid_credits"),
        (
            json!({ "credits": { "remaining": 1, "refill": { "amount": 5, "interval": "weekly" } } }),
            "invalid_credits",
        ),
        (
            json!({ "credits": { "remaining": 1, "refill": { "amount": 5, "interval": "monthly", "day": 32 } } }),
            "invalid_credits",
        ),
    ];
    let before = app.key_count().await;
    for (limits, code) in cases {
        let reply: Reply = create(limits.clone()).await;
        let text = reply.error(400, code);
        assert!(text.contains("ratelimit") || text.contains("credits"), "{limits}: {text}");
    }
    assert_eq!(app.key_count().await, before, "nothing was created");
}

#[tokio::test]
async fn an_organizations_limit_binds_all_its_keys_together() {
    let clock = Clock::default();
    let app = app_with(&clock).await;
    let org = app.owner.org_id.clone();
    let shared = json!({ "org_id": org, "ratelimit": { "limit": 3, "duration_ms": 3_600_000 } });
    let updated = app.put("/organization", &app.owner.key, shared).await.ok();
    assert_eq!(
        updated["organization"]["ratelimit"],
        json!({ "name": "default", "limit": 3, "duration_ms": 3_600_000 })
    );
    let now_ms = clock.now().timestamp_millis() as u64;
    clock.advance(Duration::from_millis(3_600_000 - now_ms % 3_600_000 + 10));

    // More keys do not buy more requests.
    let (first, _) = limited_key(&app, "read", json!({})).await;
    let (second, _) = limited_key(&app, "read", json!({})).await;
    assert_eq!(app.get("/app", &first).await.status, 200);
    assert_eq!(app.get("/app", &second).await.status, 200);
    assert_eq!(verify(&app, json!({ "key": first })).await["code"], "VALID");
    let refused = verify(&app, json!({ "key": second })).await;
    assert_eq!(
        (refused["code"].clone(), refused["ratelimit"]["limit"].clone()),
        (json!("RATE_LIMITED"), json!(3))
    );
    app.get("/app", &first).await.error(429, "rate_limited");
    // The owner's unscoped key is not the organization's.
    assert_eq!(app.get("/app", &app.owner.key).await.status, 200);

    // Lifted, it binds no more, at once.
    app.put("/organization", &app.owner.key, json!({ "org_id": org, "ratelimit": null })).await.ok();
    assert_eq!(app.get("/app", &second).await.status, 200);
}
