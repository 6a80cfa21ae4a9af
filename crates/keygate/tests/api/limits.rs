//! Failed authentications per client address: 429 only after 20 within five
//! minutes, with `Retry-After`, and never for another address.

use std::net::{IpAddr, Ipv4Addr};

use keygate_core::ApiKeySecret;
use reqwest::header::RETRY_AFTER;

use crate::helpers::{spawn_app, spawn_app_with};

const THRESHOLD: usize = 20;

fn client_from(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::from(address))).build().expect("client")
}

async fn status(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(format!("{base}/apikey")).header("authorization", key);
    if let Some(address) = forwarded {
        request = request.header("x-forwarded-for", format!("198.51.100.1, {address}"));
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn an_address_is_blocked_after_twenty_failures_and_only_that_address() {
    let app = spawn_app().await;
    let attacker = client_from([127, 0, 0, 2]);
    let wrong = ApiKeySecret::generate().expect("rng");
    for i in 0..THRESHOLD {
        // Unknown keys and checksum failures both count.
        let key = if i % 2 == 0 { wrong.expose().to_owned() } else { "ak_typo".to_owned() };
        let response = status(&attacker, &app.base, &key, None).await;
        assert_eq!(response.status(), 401, "failure {i} was not a plain 401");
    }
    let blocked = status(&attacker, &app.base, &app.owner.key, None).await;
    assert_eq!(blocked.status(), 429, "the twenty-first request, even with a good key");
    let wait: u64 = blocked.headers()[RETRY_AFTER].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
    let body: serde_json::Value = blocked.json().await.expect("json");
    assert_eq!((body["status"].as_str(), body["code"].as_str()), (Some("KO"), Some("rate_limited")));

    let bystander = client_from([127, 0, 0, 3]);
    assert_eq!(status(&bystander, &app.base, &app.owner.key, None).await.status(), 200);
    // Missing keys are not failed authentications.
    let other = client_from([127, 0, 0, 4]);
    for _ in 0..THRESHOLD + 5 {
        let response = other.get(format!("{}/apikey", app.base)).send().await.expect("sent");
        assert_eq!(response.status(), 401);
    }
    assert_eq!(status(&other, &app.base, &app.owner.key, None).await.status(), 200);
}

#[tokio::test]
async fn nineteen_failures_do_not_block() {
    let app = spawn_app().await;
    let client = client_from([127, 0, 0, 5]);
    for _ in 0..THRESHOLD - 1 {
        assert_eq!(status(&client, &app.base, "ak_typo", None).await.status(), 401);
    }
    assert_eq!(status(&client, &app.base, &app.owner.key, None).await.status(), 200);
}

#[tokio::test]
async fn behind_a_proxy_the_forwarded_address_counts() {
    let app = spawn_app_with(|s| s.client_ip_header = Some("x-forwarded-for".parse().expect("header"))).await;
    let proxy = reqwest::Client::new();
    for _ in 0..THRESHOLD {
        assert_eq!(status(&proxy, &app.base, "ak_typo", Some("203.0.113.5")).await.status(), 401);
    }
    assert_eq!(status(&proxy, &app.base, &app.owner.key, Some("203.0.113.5")).await.status(), 429);
    assert_eq!(status(&proxy, &app.base, &app.owner.key, Some("203.0.113.6")).await.status(), 200);
}

#[tokio::test]
async fn the_limit_is_set_by_the_server_and_zero_turns_the_throttle_off() {
    let wrong = ApiKeySecret::generate().expect("rng");
    let strict = spawn_app_with(|s| s.failed_auth_limit = 3).await;
    let client = client_from([127, 0, 0, 5]);
    for _ in 0..3 {
        assert_eq!(status(&client, &strict.base, wrong.expose(), None).await.status(), 401);
    }
    let blocked = status(&client, &strict.base, &strict.owner.key, None).await;
    assert_eq!(blocked.status(), 429, "blocked after the third failure");

    let off = spawn_app_with(|s| s.failed_auth_limit = 0).await;
    for i in 0..THRESHOLD * 3 {
        assert_eq!(status(&client, &off.base, wrong.expose(), None).await.status(), 401, "failure {i}");
    }
    assert_eq!(status(&client, &off.base, &off.owner.key, None).await.status(), 200, "never throttled");
}
