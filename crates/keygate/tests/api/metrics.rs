//! `GET /metrics`: Prometheus text with the expected series, sane values,
//! and never a secret; on a listener of its own with `metrics_listener`.
//!
//! The recorder is process-wide and tests run concurrently, so counters
//! are compared before and after, and only ever as lower bounds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

const TOKEN: &str = "metrics-verifier-token-for-tests";

/// One sample: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line:?}"));
            let value = value.parse::<f64>().unwrap_or_else(|_| panic!("a value: {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("labels: {line:?}"));
                    let labels = labels
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) =
                                pair.split_once("=\"").unwrap_or_else(|| panic!("label: {line:?}"));
                            (key.to_owned(), value.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Sample { name: name.to_owned(), labels, value }
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(app: &TestApp, base: &str) -> (String, Vec<Sample>) {
    let response = app.client.get(format!("{base}/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn metrics_count_requests_verdicts_and_cache_lookups_and_never_show_a_secret() {
    let app = spawn_app_with(|s| {
        s.verifier_tokens = vec![keygate::VerifierToken::new(TOKEN).expect("token")];
        s.key_cache = true;
    })
    .await;
    let base = app.base.clone();
    let (_, before) = scrape(&app, &base).await;

    let created = app.owner_key("read").await;
    let key = created["key"].as_str().expect("key").to_owned();
    let shown = app.get(&format!("/apikey/{}", created["id"]), &app.owner.key).await.ok();
    let preview = shown["apikey"]["key"].as_str().expect("preview").to_owned();
    assert_ne!(preview, key);
    let member = app.member("member@example.com", keygate_core::Role::Read).await;
    let bearer = format!("Bearer {TOKEN}");
    for _ in 0..2 {
        let verdict =
            app.call(Method::POST, "/verify", Some(&bearer), Some(json!({ "key": key }))).await.ok();
        assert_eq!(verdict["code"], "VALID");
    }
    let unknown = keygate_core::ApiKeySecret::generate().expect("rng").expose().to_owned();
    let verdict =
        app.call(Method::POST, "/verify", Some(&bearer), Some(json!({ "key": unknown }))).await.ok();
    assert_eq!(verdict["code"], "NOT_FOUND");
    app.call(Method::POST, "/verify", Some("Bearer wrong-token"), Some(json!({ "key": key })))
        .await
        .error(401, "invalid_verifier_token");
    app.get("/apikey", "ak_not-a-real-key").await.error(401, "invalid_api_key");
    assert_eq!(app.get(&format!("/apikey/{key}"), &app.owner.key).await.status, 200);
    app.get("/no/such/route", &app.owner.key).await.error(404, "not_found");

    // The cache's subscription is confirmed shortly after start.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, after) = loop {
        let (text, after) = scrape(&app, &base).await;
        if value(&after, "keygate_key_cache_trusted", &[]) == 1.0 || Instant::now() > deadline {
            break (text, after);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let grew =
        |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);

    let requests = "keygate_http_requests_total";
    assert!(grew(requests, &[("method", "POST"), ("route", "/apikey"), ("status", "200")]) >= 1.0, "{text}");
    assert!(grew(requests, &[("method", "POST"), ("route", "/verify"), ("status", "200")]) >= 3.0, "{text}");
    assert!(grew(requests, &[("method", "POST"), ("route", "/verify"), ("status", "401")]) >= 1.0, "{text}");
    assert!(grew(requests, &[("method", "GET"), ("route", "/apikey"), ("status", "401")]) >= 1.0, "{text}");
    assert!(grew(requests, &[("method", "GET"), ("route", "/apikey/{id_or_key}"), ("status", "200")]) >= 1.0);
    assert!(grew(requests, &[("method", "GET"), ("route", "unmatched"), ("status", "404")]) >= 1.0, "{text}");

    let durations = "keygate_http_request_duration_seconds";
    let verify = [("method", "POST"), ("route", "/verify")];
    assert!(grew(&format!("{durations}_count"), &verify) >= 4.0, "{text}");
    let sum = value(&after, &format!("{durations}_sum"), &verify);
    assert!(sum > 0.0 && sum < 3600.0, "latency sum {sum}");
    let infinite = value(&after, &format!("{durations}_bucket"), &[("route", "/verify"), ("le", "+Inf")]);
    assert_eq!(infinite, value(&after, &format!("{durations}_count"), &[("route", "/verify")]), "{text}");

    let verifications = "keygate_verifications_total";
    assert!(grew(verifications, &[("code", "VALID")]) >= 2.0, "{text}");
    assert!(grew(verifications, &[("code", "NOT_FOUND")]) >= 1.0, "{text}");
    assert!(grew(verifications, &[("code", "invalid_verifier_token")]) >= 1.0, "{text}");

    let lookups = "keygate_key_cache_lookups_total";
    let looked_up = ["hit", "miss", "unknown"].iter().map(|r| grew(lookups, &[("result", r)])).sum::<f64>();
    assert!(looked_up >= 4.0, "every verify and authenticated request looks the cache up: {text}");
    assert_eq!(value(&after, "keygate_key_cache_trusted", &[]), 1.0, "{text}");
    assert!(text.contains("# TYPE keygate_key_cache_invalidations_total counter"), "{text}");
    // Every backend reports its pools: PostgreSQL `main` and `listen`, SQLite `read`.
    let pools = app.store.pool_use();
    assert!(!pools.is_empty(), "no pool reported");
    for pool in pools.iter().map(|p| p.pool) {
        assert!(value(&after, "keygate_db_pool_max_connections", &[("pool", pool)]) >= 1.0, "{text}");
        let idle = format!("keygate_db_pool_connections{{pool=\"{pool}\",state=\"idle\"}}");
        assert!(text.contains(&idle), "{text}");
    }

    let mut secrets = vec![key.clone(), key[3..20].to_owned(), unknown.clone(), app.owner.key.clone()];
    secrets.extend([
        member.key.clone(),
        TOKEN.to_owned(),
        "owner@example.com".into(),
        "member@example.com".into(),
    ]);
    secrets.push(preview);
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret:?} is in /metrics");
    }
    for sample in &after {
        for value in sample.labels.values() {
            assert!(!value.contains("ak_"), "a key in a label: {value}");
        }
    }
}

#[tokio::test]
async fn with_a_metrics_listener_metrics_are_served_there_only() {
    let listener = keygate::MetricsListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let app = spawn_app_with(|s| s.metrics_listener = Some(listener)).await;
    app.call(Method::GET, "/livez", None, None).await.ok();

    let (text, _) = scrape(&app, &format!("http://{address}")).await;
    assert!(text.contains("keygate_http_requests_total"), "{text}");

    app.call(Method::GET, "/metrics", None, None).await.error(404, "not_found");
    let document = app.call(Method::GET, "/openapi.json", None, None).await.ok();
    assert!(document["paths"].get("/metrics").is_none(), "the main listener's document lists /metrics");
    let elsewhere = app.client.get(format!("http://{address}/livez")).send().await.expect("request");
    assert_eq!(elsewhere.status(), 404);
}

/// On the main listener, a scrape from a client that is not on this
/// machine is refused unless it presents `--metrics-token`; through a
/// trusted proxy, the client the proxy names is the one judged.
#[tokio::test]
async fn the_main_listener_serves_metrics_to_loopback_clients_and_token_holders_only() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        s.metrics_token = keygate::VerifierToken::new("scrape-token-for-tests");
    })
    .await;
    let scrape = |from: &'static str, token: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/metrics", app.base)).header("x-forwarded-for", from);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("scrape") }
    };
    let local = scrape("127.0.0.1", None).await;
    assert_eq!(local.status(), 200, "a loopback client");
    let text = local.text().await.expect("body");
    let samples = parse(&text);
    assert_eq!(value(&samples, "keygate_build_info", &[("version", keygate::VERSION)]), 1.0, "{text}");
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 0.0, "{text}");
    assert!(value(&samples, "process_open_fds", &[]) > 0.0, "{text}");

    let remote = scrape("203.0.113.5", None).await;
    assert_eq!(remote.status(), 403);
    let body: serde_json::Value = remote.json().await.expect("json");
    assert_eq!(body["code"], "metrics_forbidden");
    assert!(!body.to_string().contains("process_"), "nothing of the metrics");
    assert_eq!(scrape("203.0.113.5", Some("wrong")).await.status(), 403, "a wrong token");
    assert_eq!(scrape("203.0.113.5", Some("scrape-token-for-tests")).await.status(), 200, "the token");
    // Fourteenth review: wrong tokens were guessed without limit; they count
    // as failed authentications of their address.
    for guess in 0..20 {
        let token: &'static str = Box::leak(format!("guess-{guess}").into_boxed_str());
        scrape("203.0.113.9", Some(token)).await;
    }
    assert_eq!(scrape("203.0.113.9", Some("scrape-token-for-tests")).await.status(), 429, "throttled");
    assert_eq!(scrape("203.0.113.5", Some("scrape-token-for-tests")).await.status(), 200, "others are not");
}
