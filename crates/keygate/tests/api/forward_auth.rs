//! `/auth` behind a real nginx (`auth_request`) and a real Caddy
//! (`forward_auth`), each started here on loopback with the configuration
//! the README shows (`deploy/forward-auth/`), in front of an upstream that
//! echoes what it received; and the request shapes of Traefik and Envoy,
//! sent as those proxies send them.
//!
//! Without nginx or Caddy installed these tests say so and stop, unless
//! `KEYGATE_REQUIRE_PROXIES` is set (as `.ci/run` does, after installing
//! both): then a missing proxy fails them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const NGINX_CONF: &str = include_str!("../../../../deploy/forward-auth/nginx.conf");
const CADDYFILE: &str = include_str!("../../../../deploy/forward-auth/Caddyfile");

/// The addresses the shipped configurations name, replaced by the test's.
const KEYGATE_IN_CONFIG: &str = "127.0.0.1:8080";
const UPSTREAM_IN_CONFIG: &str = "127.0.0.1:9000";
const LISTEN_IN_CONFIG: &str = "127.0.0.1:8000";

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

/// The binary of a proxy, or `None` (after saying so) when it is not
/// installed and not required.
fn proxy_binary(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("KEYGATE_REQUIRE_PROXIES").is_none(),
            "{name} is not installed (apt-get install {name}), and KEYGATE_REQUIRE_PROXIES is set"
        );
        eprintln!("skipping: {name} is not installed (apt-get install {name})");
    }
    found
}

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

/// A port free now, below Linux's ephemeral range (32768 and up), where
/// the many port-0 listeners and outgoing connections of a test run land:
/// the proxy binds it a moment later, and a race is still possible, so
/// [`start_retrying`] tries again on another.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts a proxy configured by `configure` for a free port, on another
/// port if that one was taken meanwhile.
fn start_retrying(configure: impl Fn(u16) -> (Command, tempfile::TempDir, PathBuf)) -> Proxy {
    for _ in 0..4 {
        let port = free_port();
        let (command, dir, log) = configure(port);
        if let Some(proxy) = Proxy::start(command, port, dir, log) {
            return proxy;
        }
    }
    panic!("the proxy found no free port in four tries");
}

/// A proxy process, stopped when dropped.
struct Proxy {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// Starts `command` and waits until it accepts connections on `port`;
    /// `None` when it could not bind the port (taken meanwhile).
    fn start(mut command: Command, port: u16, dir: tempfile::TempDir, log: PathBuf) -> Option<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("start the proxy");
        let mut proxy = Self { child, base: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = proxy.child.try_wait()
                && proxy.logs().to_lowercase().contains("address already in use")
            {
                return None;
            }
            assert!(Instant::now() < deadline, "the proxy did not listen: {}", proxy.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    fn logs(&self) -> String {
        let stderr = std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default();
        format!("{stderr}\n{}", std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn with_addresses(template: &str, keygate: &str, upstream: SocketAddr, port: u16) -> String {
    template
        .replace(KEYGATE_IN_CONFIG, keygate)
        .replace(UPSTREAM_IN_CONFIG, &upstream.to_string())
        .replace(LISTEN_IN_CONFIG, &format!("127.0.0.1:{port}"))
}

fn start_nginx(binary: &Path, keygate: &str, upstream: SocketAddr) -> Proxy {
    start_retrying(|port| nginx_at(binary, keygate, upstream, port))
}

fn nginx_at(
    binary: &Path,
    keygate: &str,
    upstream: SocketAddr,
    port: u16,
) -> (Command, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let prefix = dir.path().display();
    let conf = format!(
        "worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
         events {{ worker_connections 256; }}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {prefix}/body;\nproxy_temp_path {prefix}/proxy;\n\
         fastcgi_temp_path {prefix}/fastcgi;\nuwsgi_temp_path {prefix}/uwsgi;\nscgi_temp_path {prefix}/scgi;\n{}\n}}\n",
        with_addresses(NGINX_CONF, keygate, upstream, port)
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let mut command = Command::new(binary);
    command.arg("-p").arg(dir.path()).arg("-c").arg(&path).args(["-g", "daemon off;"]);
    let log = dir.path().join("error.log");
    (command, dir, log)
}

fn start_caddy(binary: &Path, keygate: &str, upstream: SocketAddr) -> Proxy {
    start_retrying(|port| caddy_at(binary, keygate, upstream, port))
}

fn caddy_at(
    binary: &Path,
    keygate: &str,
    upstream: SocketAddr,
    port: u16,
) -> (Command, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n{}",
        with_addresses(CADDYFILE, keygate, upstream, port)
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).expect("write Caddyfile");
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    let log = dir.path().join("stderr");
    (command, dir, log)
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

async fn setup() -> Setup {
    let app = spawn_app_with(|settings| {
        settings.forward_auth = keygate::forward_auth::Rules::parse(RULES).expect("rules");
    })
    .await;
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
async fn a_proxy_lets_through_exactly_what_keys_allow(setup: &Setup, proxy: &Proxy) {
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
    assert!(headers.get("authorization").is_some(), "the key itself still reaches the API");

    let (status, _) = through(base, Method::POST, "/apps/com.acme.app/builds", Some(&setup.read)).await;
    assert_eq!(status, 403, "a read key may not POST");
    let (status, seen) = through(base, Method::POST, "/apps/com.acme.app/builds", Some(&setup.write)).await;
    assert_eq!((status, &seen["method"]), (200, &json!("POST")), "a write key may POST: {seen}");
    assert_eq!(seen["headers"]["x-keygate-mode"], "write");

    let (status, _) = through(base, Method::POST, "/apps/com.acme.app/x", Some(&setup.scoped)).await;
    assert_eq!(status, 200, "a key limited to an app works on its paths");
    let (status, _) = through(base, Method::POST, "/apps/com.acme.other/x", Some(&setup.scoped)).await;
    assert_eq!(status, 403, "and on no other app's");
    let (status, _) =
        through(base, Method::GET, "/apps/com.acme.app/../com.acme.other/x", Some(&setup.scoped)).await;
    assert_eq!(status, 403, "not even through dot segments");

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
    let Some(binary) = proxy_binary("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]) else { return };
    let setup = setup().await;
    let upstream = echo_upstream().await;
    let keygate = setup.app.base.trim_start_matches("http://").to_owned();
    let proxy = start_nginx(&binary, &keygate, upstream);
    a_proxy_lets_through_exactly_what_keys_allow(&setup, &proxy).await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_api() {
    let Some(binary) = proxy_binary("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]) else { return };
    let setup = setup().await;
    let upstream = echo_upstream().await;
    let keygate = setup.app.base.trim_start_matches("http://").to_owned();
    let proxy = start_caddy(&binary, &keygate, upstream);
    a_proxy_lets_through_exactly_what_keys_allow(&setup, &proxy).await;
}

/// What Traefik's ForwardAuth sends (a GET to `/auth` with
/// `X-Forwarded-Method` and `X-Forwarded-Uri`), and what Envoy's HTTP
/// `ext_authz` sends (the original method, the original path after the
/// configured prefix `/auth`, the body dropped).
#[tokio::test]
async fn traefik_and_envoy_request_shapes() {
    let setup = setup().await;
    let client = reqwest::Client::new();
    let traefik = |method: &str, uri: &str, key: &str| {
        client
            .get(format!("{}/auth", setup.app.base))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-for", "203.0.113.9")
            .header("authorization", key)
            .send()
    };
    let allowed = traefik("GET", "/apps/com.acme.app/x?y=1", &setup.read).await.expect("traefik");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-keygate-mode"], "read");
    assert_eq!(allowed.headers()["cache-control"], "no-store");
    let denied = traefik("DELETE", "/apps/com.acme.app/x", &setup.read).await.expect("traefik");
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.headers()["x-keygate-reason"], "insufficient_permissions");
    let body: Value = denied.json().await.expect("json");
    assert_eq!(
        (body["status"].as_str(), body["code"].as_str()),
        (Some("KO"), Some("insufficient_permissions"))
    );

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
}

/// The README shows the configurations the tests above run, verbatim.
#[test]
fn the_readme_shows_the_tested_configurations() {
    let readme = include_str!("../../../../README.md");
    for (name, config) in [("nginx.conf", NGINX_CONF), ("Caddyfile", CADDYFILE)] {
        assert!(readme.contains(config.trim()), "README.md lacks deploy/forward-auth/{name} as it is");
    }
}

/// A throttled address: 403 by default (nginx passes only 401 and 403), 429
/// where asked for, never a 5xx.
#[tokio::test]
async fn a_throttled_address_gets_403_or_the_status_asked_for() {
    for (throttled, want) in [(None, 403u16), (Some(axum::http::StatusCode::TOO_MANY_REQUESTS), 429)] {
        let app = spawn_app_with(|settings| {
            settings.failed_auth_limit = 2;
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
/// (403: it names nothing a key may act on), a key header that is not text
/// (401).
#[tokio::test]
async fn bad_forwarded_requests_are_refused_in_the_contracts_shape() {
    let setup = setup().await;
    let client = reqwest::Client::new();
    let query = Method::from_bytes(b"QUERY").expect("method");
    let reply = setup.app.call(query, "/auth/apps/com.acme.app/x", Some(&setup.read), None).await;
    reply.error(405, "method_not_allowed");

    let reply = setup.app.call(Method::GET, "/auth/apps/not%20an%20app/x", Some(&setup.read), None).await;
    reply.error(403, "insufficient_permissions");

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
}
