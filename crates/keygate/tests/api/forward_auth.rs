//! `/auth` behind a real nginx (`auth_request`) and a real Caddy
//! (`forward_auth`), each started here on loopback with the configuration
//! keygate ships and the README shows (`deploy/forward-auth/`, run by
//! [`keygate_testkit::reverse_proxy`]), in front of an upstream that echoes
//! what it received; and the request shapes of Traefik and Envoy, sent as
//! those proxies send them. The attacks on these files are in
//! `tests/adversarial/`.

use std::net::SocketAddr;

use keygate::admission::forward_auth::{ForwardAuth, Proxy, Rules};
use keygate_testkit::raw_http;
use keygate_testkit::reverse_proxy::{self, Kind, ReverseProxy};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const RULES: &str = r#"
[[rule]]
path = "/health"
action = "public"

[[rule]]
path = "/apps/{app_id}/**"
methods = ["GET", "HEAD"]
action = "read"

[[rule]]
path = "/apps/{app_id}/**"
action = "write"
"#;

/// Echoes the method, path and headers it received, as JSON.
async fn echo_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or("<bytes>"))))
            .collect();
        axum::Json(
            json!({ "method": request.method().as_str(), "path": request.uri().path(), "headers": headers }),
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    address
}

/// keygate as the shipped configuration's header says it is started
/// (`--forward-auth-proxy <proxy> --trusted-proxy 127.0.0.1/32`), with `rules`.
async fn keygate_behind(proxy: Proxy, rules: &str) -> TestApp {
    let rules = Rules::parse(rules).expect("rules");
    spawn_app_with(|settings| {
        settings.forward_auth = Some(ForwardAuth::new(proxy, rules));
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await
}

/// keygate with the rules above, two apps, and keys of each kind.
struct Setup {
    app: TestApp,
    read: String,
    write: String,
    /// A write key limited to `com.acme.app`.
    scoped: String,
    read_id: i64,
}

async fn setup(proxy: Proxy) -> Setup {
    let app = keygate_behind(proxy, RULES).await;
    app.app("com.acme.app").await;
    app.app("com.acme.other").await;
    let read = app.owner_key("read").await;
    let write = app.owner_key("write").await;
    let body = json!({ "org_id": app.owner.org_id, "mode": "write", "limited_to_apps": ["com.acme.app"] });
    let scoped = app.create_key(&app.owner.key, body).await;
    let key = |k: &Value| k["key"].as_str().expect("key").to_owned();
    Setup {
        read: key(&read),
        write: key(&write),
        scoped: key(&scoped),
        read_id: read["id"].as_i64().expect("id"),
        app,
    }
}

/// A request through the proxy; the status and, when it reached the
/// upstream, what the upstream received.
async fn through(base: &str, method: Method, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        // A client trying to pass itself off as someone else.
        .header("x-keygate-user-id", "forged")
        .header("x-keygate-org-id", "forged");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.expect("through the proxy");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Every case of the issue, through one proxy.
async fn a_proxy_lets_through_exactly_what_keys_allow(setup: &Setup, proxy: &ReverseProxy) {
    let base = &proxy.base;
    let owner_user = setup.app.owner.user_id.clone();
    let org = setup.app.owner.org_id.clone();

    let (status, seen) = through(base, Method::GET, "/apps/com.acme.app/builds", Some(&setup.read)).await;
    assert_eq!(status, 200, "a read key may GET: {seen} {}", proxy.logs());
    let headers = &seen["headers"];
    assert_eq!(seen["path"], "/apps/com.acme.app/builds");
    assert_eq!(headers["x-keygate-key-id"], setup.read_id.to_string());
    assert_eq!(
        headers["x-keygate-user-id"], owner_user,
        "the upstream gets keygate's answer, not the client's"
    );
    assert_eq!(headers["x-keygate-org-id"], org);
    assert_eq!(headers["x-keygate-mode"], "read");
    assert_eq!(headers.get("authorization"), None, "the key itself stays at the proxy");

    let (status, _) = through(base, Method::POST, "/apps/com.acme.app/builds", Some(&setup.read)).await;
    assert_eq!(status, 403, "a read key may not POST");
    let (status, seen) = through(base, Method::POST, "/apps/com.acme.app/builds", Some(&setup.write)).await;
    assert_eq!((status, &seen["method"]), (200, &json!("POST")), "a write key may POST: {seen}");
    assert_eq!(seen["headers"]["x-keygate-mode"], "write");

    let (status, _) = through(base, Method::POST, "/apps/com.acme.app/x", Some(&setup.scoped)).await;
    assert_eq!(status, 200, "a key limited to an app works on its paths");
    let (status, _) = through(base, Method::POST, "/apps/com.acme.other/x", Some(&setup.scoped)).await;
    assert_eq!(status, 403, "and on no other app's");
    // Dot segments, encoded or not, sent as they are: refused.
    for path in ["/apps/com.acme.app/%2e%2e/com.acme.other/x", "/apps/com.acme.app/../com.acme.other/x"] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\n",
            proxy.port, setup.scoped
        );
        let dots = raw_http::send(&format!("127.0.0.1:{}", proxy.port), head.as_bytes(), b"").await;
        assert!(matches!(dots.status, 400 | 403), "{path}: {dots:?}");
        assert_eq!(dots.header("x-keygate-reason"), Some("ambiguous_path"), "{path}: {dots:?}");
    }

    let (status, seen) = through(base, Method::GET, "/health", None).await;
    assert_eq!(status, 200, "a public path needs no key: {seen}");
    assert!(
        seen["headers"].get("x-keygate-user-id").is_none_or(|v| v == ""),
        "a forged identity never reaches the API: {seen}"
    );
    assert_eq!(through(base, Method::GET, "/apps/com.acme.app/x", None).await.0, 401, "no key");
    assert_eq!(
        through(base, Method::GET, "/apps/com.acme.app/x", Some("ak_nonsense")).await.0,
        401,
        "bad key"
    );

    // Revoked through the API a moment ago: refused at once.
    let doomed = setup.app.owner_key("read").await;
    let doomed_key = doomed["key"].as_str().expect("key");
    assert_eq!(through(base, Method::GET, "/apps/com.acme.app/x", Some(doomed_key)).await.0, 200);
    let path = format!("/apikey/{}", doomed["id"]);
    setup.app.delete(&path, &setup.app.owner.key).await.ok();
    assert_eq!(through(base, Method::GET, "/apps/com.acme.app/x", Some(doomed_key)).await.0, 401, "revoked");
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_api() {
    a_shipped_proxy_in_front_of_an_api(Kind::Nginx, Proxy::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_api() {
    a_shipped_proxy_in_front_of_an_api(Kind::Caddy, Proxy::Caddy).await;
}

async fn a_shipped_proxy_in_front_of_an_api(kind: Kind, profile: Proxy) {
    let setup = setup(profile).await;
    let upstream = echo_upstream().await;
    let keygate = setup.app.base.trim_start_matches("http://").to_owned();
    let Some(proxy) = ReverseProxy::start(kind, &keygate, &upstream.to_string()) else { return };
    a_proxy_lets_through_exactly_what_keys_allow(&setup, &proxy).await;
    // A refusal keeps keygate's JSON and reason, whatever the proxy.
    let response =
        reqwest::Client::new().get(format!("{}/apps/com.acme.app/x", proxy.base)).send().await.expect("sent");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-keygate-reason"], "missing_api_key");
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"keygate\"");
    let body: Value = response.json().await.expect("keygate's JSON");
    assert_eq!(
        body,
        json!({ "error": "Missing API key", "status": "KO", "code": "missing_api_key" }),
        "{}",
        proxy.logs()
    );
}

/// What Traefik's ForwardAuth sends (a GET to `/auth` with
/// `X-Forwarded-Method` and `X-Forwarded-Uri`), and what Envoy's HTTP
/// `ext_authz` sends (the original method, the original path after the
/// configured prefix `/auth`, the body dropped).
#[tokio::test]
async fn traefik_and_envoy_request_shapes() {
    let traefik_setup = setup(Proxy::Traefik).await;
    let client = reqwest::Client::new();
    let traefik = |method: &str, uri: &str, key: &str| {
        client
            .get(format!("{}/auth", traefik_setup.app.base))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-for", "203.0.113.9")
            .header("authorization", key)
            .send()
    };
    let allowed = traefik("GET", "/apps/com.acme.app/x?y=1", &traefik_setup.read).await.expect("traefik");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-keygate-mode"], "read");
    assert_eq!(allowed.headers()["cache-control"], "no-store");
    let denied = traefik("DELETE", "/apps/com.acme.app/x", &traefik_setup.read).await.expect("traefik");
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["x-keygate-reason"], "insufficient_permissions");
    let body: Value = denied.json().await.expect("json");
    assert_eq!(
        (body["status"].as_str(), body["code"].as_str()),
        (Some("KO"), Some("insufficient_permissions"))
    );

    let setup = setup(Proxy::Envoy).await;
    let envoy = |method: Method, path: &str, key: Option<&str>| {
        let mut request = client.request(method, format!("{}/auth{path}", setup.app.base));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    let allowed = envoy(Method::PUT, "/apps/com.acme.app/settings", Some(&setup.write)).await.expect("envoy");
    assert_eq!(allowed.status(), 200, "exactly 200");
    assert_eq!(allowed.headers()["x-keygate-org-id"], setup.app.owner.org_id.as_str());
    let missing = envoy(Method::PUT, "/apps/com.acme.app/settings", None).await.expect("envoy");
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer realm=\"keygate\"");
    assert_eq!(missing.headers()["x-keygate-reason"], "missing_api_key");
    let unknown_app = envoy(Method::GET, "/apps/com.nobody.app/x", Some(&setup.read)).await.expect("envoy");
    assert_eq!(unknown_app.status(), 403, "an app keygate does not know names nothing a key may act on");
    // Thirteenth review: the router trimmed `/x//` to `/x` before Envoy's
    // path was judged; the upstream reads it with its empty segment.
    for path in ["/apps/com.acme.app/settings//", "/apps/com.acme.app//settings/"] {
        let trailing = envoy(Method::GET, path, Some(&setup.read)).await.expect("envoy");
        assert_eq!(trailing.status(), 400, "{path}");
        assert_eq!(trailing.headers()["x-keygate-reason"], "ambiguous_path", "{path}");
    }
    let one = envoy(Method::GET, "/apps/com.acme.app/settings/", Some(&setup.read)).await.expect("envoy");
    assert_eq!(one.status(), 200, "one trailing slash is dropped, as documented");
}

/// The forward-authentication page shows the configurations the tests
/// above run, verbatim.
#[test]
fn the_documentation_shows_the_tested_configurations() {
    let page = include_str!("../../../../docs/forward-auth.md");
    for (name, config) in [("nginx.conf", reverse_proxy::NGINX_CONF), ("Caddyfile", reverse_proxy::CADDYFILE)]
    {
        assert!(
            page.contains(config.trim()),
            "docs/forward-auth.md lacks deploy/forward-auth/{name} as it is"
        );
    }
    // Every rules file it shows is one `serve` reads.
    let blocks: Vec<&str> =
        page.split("```toml\n").skip(1).map(|b| b.split("```").next().unwrap_or(b)).collect();
    assert!(blocks.len() >= 2, "the page shows rules files");
    for block in blocks {
        Rules::parse(block).unwrap_or_else(|e| {
            panic!("docs/forward-auth.md shows a rules file serve refuses: {e}\n{block}")
        });
    }
}

/// A throttled address: 403 by default (nginx passes only 401 and 403), 429
/// where asked for, never a 5xx.
#[tokio::test]
async fn a_throttled_address_gets_403_or_the_status_asked_for() {
    for (throttled, want) in [(None, 403u16), (Some(axum::http::StatusCode::TOO_MANY_REQUESTS), 429)] {
        let app = spawn_app_with(|settings| {
            settings.failed_auth_limit = 2;
            settings.forward_auth = Some(ForwardAuth::new(Proxy::Envoy, Rules::default()));
            if let Some(status) = throttled {
                settings.forward_auth_throttled = status;
            }
        })
        .await;
        let mut last = 0;
        for _ in 0..4 {
            let reply = app.call(Method::GET, "/auth/x", Some("ak_wrong"), None).await;
            last = reply.status;
        }
        assert_eq!(last, want);
        let reply = app.call(Method::GET, "/auth/x", Some("ak_wrong"), None).await;
        reply.error(want, "rate_limited");
    }
}

/// Only a trusted proxy names the client: from one, each forwarded address
/// is throttled on its own; from any other peer, the header is ignored and
/// the peer itself is throttled.
#[tokio::test]
async fn only_trusted_proxies_name_the_client() {
    for (trusted, other_client_blocked) in [("127.0.0.1/32", false), ("10.0.0.0/8", true)] {
        let app = spawn_app_with(|settings| {
            settings.failed_auth_limit = 2;
            settings.trusted_proxies = vec![trusted.parse().expect("cidr")];
            settings.forward_auth = Some(ForwardAuth::new(Proxy::Envoy, Rules::default()));
        })
        .await;
        let ask = |client: &'static str, key: &'static str| {
            reqwest::Client::new()
                .get(format!("{}/auth/x", app.base))
                .header("x-forwarded-for", client)
                .header("authorization", key)
                .send()
        };
        for _ in 0..3 {
            ask("203.0.113.1", "ak_wrong").await.expect("ask");
        }
        let blocked = ask("203.0.113.1", "ak_wrong").await.expect("ask");
        assert_eq!(blocked.headers()["x-keygate-reason"], "rate_limited", "{trusted}");
        let other = ask("203.0.113.2", "ak_wrong").await.expect("ask");
        let reason = other.headers()["x-keygate-reason"].to_str().expect("reason").to_owned();
        assert_eq!(reason == "rate_limited", other_client_blocked, "{trusted}: {reason}");
    }
}

/// Bad input to `/auth` itself is refused in the contract's shape: a method
/// the document does not name (405), an app id in the path that is not one
/// (403: it names nothing a key may act on), an ambiguous path (400), a key
/// header that is not text (401); and without --forward-auth-proxy, `/auth`
/// is disabled (404).
#[tokio::test]
async fn bad_forwarded_requests_are_refused_in_the_contracts_shape() {
    let setup = setup(Proxy::Envoy).await;
    let client = reqwest::Client::new();
    let query = Method::from_bytes(b"QUERY").expect("method");
    let reply = setup.app.call(query, "/auth/apps/com.acme.app/x", Some(&setup.read), None).await;
    reply.error(405, "method_not_allowed");

    let reply = setup.app.call(Method::GET, "/auth/apps/not-an-app/x", Some(&setup.read), None).await;
    reply.error(403, "insufficient_permissions");
    let address = setup.app.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "GET /auth/apps/com.acme.app/%2e%2e/x HTTP/1.1\r\nHost: {address}\r\nX-Api-Key: {}\r\n",
        setup.read
    );
    let dots = raw_http::send(&address, head.as_bytes(), b"").await;
    assert_eq!((dots.status, dots.header("x-keygate-reason")), (400, Some("ambiguous_path")), "{dots:?}");

    let response = client
        .get(format!("{}/auth/apps/com.acme.app/x", setup.app.base))
        .header("authorization", reqwest::header::HeaderValue::from_bytes(b"\xffak_x").expect("bytes"))
        .send()
        .await
        .expect("auth");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-keygate-reason"], "invalid_api_key");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "KO");

    let disabled = crate::helpers::spawn_app().await;
    let reply = disabled.call(Method::GET, "/auth/x", Some(&setup.read), None).await;
    reply.error(404, "forward_auth_disabled");
}
