//! No request the proxy and keygate read differently: through the real
//! nginx and Caddy, run with the exact files keygate ships, in front of two
//! upstreams that read requests as real ones do — a Python WSGI server
//! (`wsgi_echo.py`: decodes the path once, folds `X_Keygate_Mode` into
//! `X-Keygate-Mode`; it also reports the path as the most lenient
//! application would route it) and Caddy's own file server (Go's path
//! cleaning) serving `admin/secret.txt`.
//!
//! keygate runs as the shipped files' headers say (`--forward-auth-proxy`
//! naming the proxy, `--trusted-proxy 127.0.0.1/32`), with `/public/**`
//! public, `/admin/**` needing `own`, and every other GET needing `read`.
//! An attacker holds no key, or a `read` key of a `read` member; whatever
//! it sends, the protected file never reaches it, and the upstream never
//! receives a request that keygate did not judge as it reads it.

use std::process::{Child, Command, Stdio};

use keygate::admission::forward_auth::{ForwardAuth, Proxy, Rules};
use keygate_core::Role;
use keygate_testkit::raw_http::{self, RawResponse};
use keygate_testkit::reverse_proxy::{Kind, ReverseProxy};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

const RULES: &str = r#"
[[rule]]
path = "/public/**"
action = "public"

[[rule]]
path = "/admin/**"
action = "own"
"#;

const SECRET: &str = "TOP-SECRET-ADMIN-FILE";

/// The Python upstream, stopped when dropped.
struct WsgiEcho {
    child: Child,
    address: String,
}

impl WsgiEcho {
    fn start() -> Self {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/adversarial/wsgi_echo.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the WSGI upstream");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("the port");
        let port: u16 = line.trim().parse().expect("a port number");
        Self { child, address: format!("127.0.0.1:{port}") }
    }
}

impl Drop for WsgiEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// keygate as the shipped file for `profile` expects it, with a `read`
/// member's `read` key and the owner's key.
struct Keygate {
    app: TestApp,
    /// A `read` member's key of mode `read`.
    reader: String,
    /// The owner's key of mode `all`, tied to the organization (the rules
    /// name none: an unscoped key may only read there).
    owner: String,
}

async fn keygate(profile: Proxy) -> Keygate {
    keygate_with(profile, RULES).await
}

async fn keygate_with(profile: Proxy, rules: &str) -> Keygate {
    let rules = Rules::parse(rules).expect("rules");
    let app = spawn_app_with(|settings| {
        settings.forward_auth = Some(ForwardAuth::new(profile, rules));
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        // The attacks below fail on purpose; none may throttle the next.
        settings.failed_auth_limit = 0;
    })
    .await;
    let member = app.member("reader@example.com", Role::Read).await;
    let reader =
        app.create_key(&member.key, serde_json::json!({ "org_id": app.owner.org_id, "mode": "read" })).await;
    let owner = app
        .create_key(&app.owner.key, serde_json::json!({ "org_id": app.owner.org_id, "mode": "all" }))
        .await;
    let key = |created: &serde_json::Value| created["key"].as_str().expect("key").to_owned();
    Keygate { reader: key(&reader), owner: key(&owner), app }
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// A request through the proxy, written byte for byte: `target` as the
/// request line's, then `headers` (each `Name: value`), and the key if any.
async fn through(
    proxy: &ReverseProxy,
    method: &str,
    target: &[u8],
    key: Option<&str>,
    headers: &[&str],
) -> RawResponse {
    let mut head = Vec::new();
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target);
    head.extend_from_slice(format!(" HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", proxy.port).as_bytes());
    if let Some(key) = key {
        head.extend_from_slice(format!("Authorization: Bearer {key}\r\n").as_bytes());
    }
    for header in headers {
        head.extend_from_slice(header.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    raw_http::send(&format!("127.0.0.1:{}", proxy.port), &head, b"").await
}

/// Requests aimed at `/admin/secret.txt` (or at something keygate would
/// judge as another path than the upstream serves): each a target, and
/// headers a client adds.
fn attacks() -> Vec<(&'static [u8], &'static [&'static str])> {
    const NONE: &[&str] = &[];
    vec![
        (b"/admin/secret.txt", NONE),
        (b"/public/../admin/secret.txt", NONE),
        // Seventh review: a leading `//` starts a host name to a WHATWG URL parser.
        (b"//public/admin/secret.txt", NONE),
        (b"//x/admin/secret.txt", NONE),
        (b"/public//admin/secret.txt", NONE),
        (b"/public/./../admin/secret.txt", NONE),
        (b"/public/%2e%2e/admin/secret.txt", NONE),
        (b"/public/%2E%2E/admin/secret.txt", NONE),
        (b"/public/.%2e/admin/secret.txt", NONE),
        (b"/public/%2e./admin/secret.txt", NONE),
        (b"/public/%252e%252e/admin/secret.txt", NONE),
        (b"/public/%25252e%25252e/admin/secret.txt", NONE),
        (b"/public/..;/admin/secret.txt", NONE),
        (b"/public;/../admin/secret.txt", NONE),
        (b"/public/..%3b/admin/secret.txt", NONE),
        (b"/public%2f..%2fadmin/secret.txt", NONE),
        (b"/public%2F..%2Fadmin%2Fsecret.txt", NONE),
        (b"/public/..%2fadmin/secret.txt", NONE),
        (b"/public/%2e%2e%2fadmin/secret.txt", NONE),
        (b"/public/..%252fadmin/secret.txt", NONE),
        (b"/public%5c..%5cadmin%5csecret.txt", NONE),
        (b"/public/..%5cadmin/secret.txt", NONE),
        (b"/public\\..\\admin\\secret.txt", NONE),
        (b"/public/%c0%ae%c0%ae/admin/secret.txt", NONE),
        (b"/public/%e0%80%ae%e0%80%ae/admin/secret.txt", NONE),
        (b"/public/%u002e%u002e/admin/secret.txt", NONE),
        (b"/public/\xef\xbc\x8e\xef\xbc\x8e/admin/secret.txt", NONE),
        (b"/public/%ef%bc%8e%ef%bc%8e/admin/secret.txt", NONE),
        (b"/ADMIN/secret.txt", NONE),
        (b"/Admin/secret.txt", NONE),
        (b"/aDmIn/secret.txt", NONE),
        (b"/admin./secret.txt", NONE),
        (b"/admin../secret.txt", NONE),
        (b"/admin%20/secret.txt", NONE),
        (b"/admin%09/secret.txt", NONE),
        (b"/%20admin/secret.txt", NONE),
        (b"/%61dmin/secret.txt", NONE),
        (b"/adm%69n/secret.txt", NONE),
        (b"/%ef%bd%81dmin/secret.txt", NONE),
        (b"/\xef\xbd\x81dmin/secret.txt", NONE),
        (b"/admin%2fsecret.txt", NONE),
        (b"/admin%00/secret.txt", NONE),
        (b"/admin/secret.txt%00.html", NONE),
        (b"/admin/secret.txt?x=\xff", NONE),
        (b"/adm\xffin/secret.txt", NONE),
        (b"//admin/secret.txt", NONE),
        (b"///admin//secret.txt", NONE),
        (b"/./admin/secret.txt", NONE),
        (b"/admin/./secret.txt", NONE),
        (b"/public/x/../../admin/secret.txt", NONE),
        (b"http://127.0.0.1/admin/secret.txt", NONE),
        (b"/public/x#/../../admin/secret.txt", NONE),
        (b"/public/x", &["X-Original-URL: /admin/secret.txt"]),
        (b"/public/x", &["X-Rewrite-URL: /admin/secret.txt"]),
        (b"/admin/secret.txt", &["X-Original-URI: /public/x", "X-Original-Method: GET"]),
        (b"/admin/secret.txt", &["X-Forwarded-Uri: /public/x", "X-Forwarded-Method: GET"]),
        (b"/admin/secret.txt", &["X_Original_URI: /public/x"]),
        (b"/admin/secret.txt", &["X_Forwarded_Uri: /public/x"]),
        (b"/admin/secret.txt", &["X-Original-URI: /public/x", "X-Original-URI: /public/y"]),
        (b"/public/x", &["X-HTTP-Method-Override: GET"]),
    ]
}

/// Whether the attacker got what `/admin/**` protects, from either upstream.
fn breached(response: &RawResponse) -> bool {
    if response.status != 200 {
        return false;
    }
    if response.body.contains(SECRET) {
        return true;
    }
    let seen: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    seen["resolved"].as_str().is_some_and(|path| path.starts_with("/admin"))
}

/// Every attack, through both shipped proxies, to both upstreams, with no
/// key and with a `read` key: the protected file never comes back, and the
/// owner's key (a control) does get it.
#[tokio::test]
async fn no_trick_reaches_a_path_keygate_did_not_approve() {
    let root = tempfile::tempdir().expect("root");
    std::fs::create_dir_all(root.path().join("admin")).expect("admin");
    std::fs::create_dir_all(root.path().join("public")).expect("public");
    std::fs::write(root.path().join("admin/secret.txt"), SECRET).expect("secret");
    std::fs::write(root.path().join("public/x"), "public").expect("public file");
    let Some(files) = ReverseProxy::file_server(root.path()) else { return };
    let echo = WsgiEcho::start();
    let mut tried = 0;
    let mut breaches = Vec::new();
    for (kind, profile) in [(Kind::Nginx, Proxy::Nginx), (Kind::Caddy, Proxy::Caddy)] {
        let keygate = keygate(profile).await;
        for upstream in [format!("127.0.0.1:{}", files.port), echo.address.clone()] {
            let Some(proxy) = ReverseProxy::start(kind, &address(&keygate.app), &upstream) else { return };
            let control = through(&proxy, "GET", b"/admin/secret.txt", Some(&keygate.owner), &[]).await;
            assert!(breached(&control), "{}: the owner reaches the file: {control:?}", kind.name());
            for (target, headers) in attacks() {
                for key in [None, Some(keygate.reader.as_str())] {
                    for method in ["GET", "HEAD"] {
                        tried += 1;
                        let response = through(&proxy, method, target, key, headers).await;
                        if breached(&response) {
                            breaches.push(format!(
                                "{} → {upstream}: {method} {} {headers:?} with {}: {response:?}",
                                kind.name(),
                                String::from_utf8_lossy(target),
                                if key.is_some() { "a read key" } else { "no key" },
                            ));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{tried} attacks through nginx and Caddy to two upstreams, {} breaches", breaches.len());
    assert!(breaches.is_empty(), "{} breaches:\n{}", breaches.len(), breaches.join("\n"));
}

/// What the upstream echoed, through `proxy`.
async fn echoed(
    proxy: &ReverseProxy,
    method: &str,
    target: &[u8],
    key: Option<&str>,
    headers: &[&str],
) -> (u16, Value) {
    let response = through(proxy, method, target, key, headers).await;
    let seen = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    (response.status, seen)
}

/// Findings: through Caddy, a client's `X-Original-URI: /health` let a
/// request without a key through, and `X-Original-Method: GET` let a read
/// key POST; through nginx, a raw non-ASCII byte in the target made keygate
/// fall back to a client's `X-Forwarded-Uri`. Each proxy's family is the
/// only one read, and nothing falls back.
#[tokio::test]
async fn a_client_never_writes_the_original_request() {
    let echo = WsgiEcho::start();
    for (kind, profile, foreign) in [
        (Kind::Caddy, Proxy::Caddy, ["X-Original-URI: /public/x", "X-Original-Method: GET"]),
        (Kind::Nginx, Proxy::Nginx, ["X-Forwarded-Uri: /public/x", "X-Forwarded-Method: GET"]),
    ] {
        let keygate = keygate(profile).await;
        let Some(proxy) = ReverseProxy::start(kind, &address(&keygate.app), &echo.address) else { return };
        let name = kind.name();
        let (status, seen) = echoed(&proxy, "DELETE", b"/admin/secret", None, &[foreign[0]]).await;
        assert_eq!(status, 401, "{name}: no key, whatever it claims: {seen}");
        let (status, seen) = echoed(&proxy, "POST", b"/x", Some(&keygate.reader), &foreign).await;
        assert_eq!(status, 403, "{name}: a read key may not POST, whatever it claims: {seen}");
        let (status, _) = echoed(&proxy, "DELETE", b"/admin/secret?x=\xff", None, &[foreign[0]]).await;
        assert!(matches!(status, 400 | 401 | 403), "{name}: a raw byte never falls back: {status}");
        let (status, _) = echoed(&proxy, "DELETE", b"/x?x=\xff", Some(&keygate.reader), &[foreign[0]]).await;
        assert!(matches!(status, 400 | 403), "{name}: nor lets a read key DELETE: {status}");
        // A method override needs what both methods need.
        let (status, _) =
            echoed(&proxy, "GET", b"/x", Some(&keygate.reader), &["X-HTTP-Method-Override: DELETE"]).await;
        assert_eq!(status, 403, "{name}: an override to DELETE needs write");
        let (status, _) = echoed(&proxy, "GET", b"/x?_method=DELETE", Some(&keygate.reader), &[]).await;
        assert_eq!(status, 403, "{name}: so does _method");
        // Eighth review: a raw-path router reads `%70ublic` as no public path at all.
        for target in [&b"/%70ublic/x"[..], b"/%70ublic/admin/secret.txt"] {
            let (status, seen) = echoed(&proxy, "GET", target, None, &[]).await;
            assert!(matches!(status, 400 | 401 | 403), "{name}: an encoded letter passed as public: {seen}");
        }
        // Sixth review: older parsers split a query at `;` too.
        let (status, _) = echoed(&proxy, "GET", b"/x?a=1;_method=DELETE", Some(&keygate.reader), &[]).await;
        assert_eq!(status, 403, "{name}: so does _method after a `;`");
        let (status, seen) = echoed(&proxy, "GET", b"/x", Some(&keygate.reader), &[]).await;
        assert_eq!((status, seen["method"].as_str()), (200, Some("GET")), "{name}: a plain read passes");
    }
}

/// Eleventh and twelfth reviews: frameworks take a POST's method from a
/// `_method` in its body — a form's, a JSON body's, one sent with no
/// `Content-Type` or a list of them — which keygate never sees. A POST to
/// a public inbox could be a DELETE there: it needs what a DELETE needs,
/// unless the rules file says the upstream never reads a method from a body.
#[tokio::test]
async fn a_post_body_never_turns_a_public_post_into_another_method() {
    const INBOX: &str = "[[rule]]\nmethods = [\"POST\"]\npath = \"/inbox/**\"\naction = \"public\"\n";
    let echo = WsgiEcho::start();
    let bodies: [(&[&str], &[u8]); 5] = [
        (&["Content-Type: application/x-www-form-urlencoded"], b"_method=DELETE"),
        (&["Content-Type: application/json"], br#"{"_method":"DELETE"}"#),
        (&[], b"_method=DELETE"),
        (&["Content-Type: application/x-www-form-urlencoded, text/plain"], b"_method=DELETE"),
        (&["Content-Type: multipart/mixed; boundary=x"], b"--x--"),
    ];
    for (kind, profile) in [(Kind::Nginx, Proxy::Nginx), (Kind::Caddy, Proxy::Caddy)] {
        let name = kind.name();
        let strict = keygate_with(profile, INBOX).await;
        let Some(proxy) = ReverseProxy::start(kind, &address(&strict.app), &echo.address) else { return };
        for (headers, body) in bodies {
            let response = posted(&proxy, b"/inbox/x", headers, body).await;
            assert_eq!(response.status, 401, "{name}: {headers:?} needs a key that may DELETE: {response:?}");
        }
        let plain = format!("body_may_override_method = false\n{INBOX}");
        let trusting = keygate_with(profile, &plain).await;
        let Some(proxy) = ReverseProxy::start(kind, &address(&trusting.app), &echo.address) else { return };
        let response = posted(&proxy, b"/inbox/x", &["Content-Type: application/json"], b"{}").await;
        let seen: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        assert_eq!((response.status, seen["method"].as_str()), (200, Some("POST")), "{name}: {response:?}");
    }
}

/// A POST with no key through `proxy`: `headers`, then `body`.
async fn posted(proxy: &ReverseProxy, target: &[u8], headers: &[&str], body: &[u8]) -> RawResponse {
    let mut head =
        format!("POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", String::from_utf8_lossy(target), proxy.port);
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    raw_http::send(&format!("127.0.0.1:{}", proxy.port), head.as_bytes(), body).await
}

/// Finding: through Caddy, `X_Keygate_Mode: all` (which WSGI folds into
/// X-Keygate-Mode) and `Connection: X-Keygate-Mode` (which made Go drop
/// keygate's own header after the strip) reached the upstream. The API
/// sees keygate's identity and nothing else, under any spelling.
#[tokio::test]
async fn the_api_sees_only_keygates_identity_headers() {
    let echo = WsgiEcho::start();
    let forged = [
        "X-Keygate-Mode: all",
        "X_Keygate_Mode: all",
        "x_keygate_mode: all",
        "X-KEYGATE-USER-ID: forged",
        "X_Keygate_User_Id: forged",
        "X-Keygate-Org-Id: forged",
        "X_KEYGATE_KEY_ID: 1",
        "Connection: X-Keygate-Mode, X-Keygate-User-Id, X-Keygate-Key-Id",
    ];
    for (kind, profile) in [(Kind::Nginx, Proxy::Nginx), (Kind::Caddy, Proxy::Caddy)] {
        let keygate = keygate(profile).await;
        let Some(proxy) = ReverseProxy::start(kind, &address(&keygate.app), &echo.address) else { return };
        let name = kind.name();
        let (status, seen) = echoed(&proxy, "GET", b"/x", Some(&keygate.reader), &forged).await;
        assert_eq!(status, 200, "{name}: {seen}");
        let headers = &seen["headers"];
        assert_eq!(headers["HTTP_X_KEYGATE_MODE"], "read", "{name}: keygate's mode alone: {seen}");
        assert_ne!(headers["HTTP_X_KEYGATE_USER_ID"], Value::Null, "{name}: {seen}");
        for header in ["HTTP_X_KEYGATE_USER_ID", "HTTP_X_KEYGATE_KEY_ID", "HTTP_X_KEYGATE_ORG_ID"] {
            let value = headers[header].as_str().unwrap_or_default();
            assert!(!value.contains("forged") && !value.contains(','), "{name}: {header} = {value:?}");
        }
        // Sixth review: the caller's key, in any of the headers keygate
        // reads, stays at the proxy.
        for (header, cgi) in [
            ("Authorization", "HTTP_AUTHORIZATION"),
            ("X-Api-Key", "HTTP_X_API_KEY"),
            ("Capgkey", "HTTP_CAPGKEY"),
        ] {
            let sent = format!("{header}: {}", keygate.reader);
            let (status, seen) = echoed(&proxy, "GET", b"/x", None, &[sent.as_str()]).await;
            assert_eq!(status, 200, "{name}: {header} is a key: {seen}");
            assert_eq!(seen["headers"][cgi], Value::Null, "{name}: the API saw {header}: {seen}");
        }
        // Tenth review: a WSGI middleware strips `X-Script-Name` from the
        // path, so `/public/secret` was `/secret` to it, with no key.
        // Refused by keygate (nginx lets it see the client's headers), or
        // cleared by the proxy (Caddy): never seen by the API.
        let (status, seen) = echoed(&proxy, "GET", b"/public/admin", None, &["X-Script-Name: /public"]).await;
        match status {
            200 => assert_eq!(
                seen["headers"]["HTTP_X_SCRIPT_NAME"],
                Value::Null,
                "{name}: the API saw it: {seen}"
            ),
            status => assert!(matches!(status, 400 | 403), "{name}: {status} {seen}"),
        }
        // On a public path: no identity at all, however forged.
        let (status, seen) = echoed(&proxy, "GET", b"/public/x", None, &forged).await;
        assert_eq!(status, 200, "{name}: {seen}");
        for header in [
            "HTTP_X_KEYGATE_MODE",
            "HTTP_X_KEYGATE_USER_ID",
            "HTTP_X_KEYGATE_KEY_ID",
            "HTTP_X_KEYGATE_ORG_ID",
        ] {
            let value = seen["headers"][header].as_str().unwrap_or_default();
            assert!(value.is_empty(), "{name}: {header} = {value:?} on a public path");
        }
    }
}

/// From a newcomer's first hour: behind the shipped proxy, one stranger's
/// failed keys lock out that stranger alone, not every client (all of whom
/// reach keygate from the proxy's address).
#[tokio::test]
async fn one_client_behind_the_proxy_cannot_lock_out_the_others() {
    let echo = WsgiEcho::start();
    for (kind, profile) in [(Kind::Nginx, Proxy::Nginx), (Kind::Caddy, Proxy::Caddy)] {
        let rules = Rules::parse(RULES).expect("rules");
        let app = spawn_app_with(|settings| {
            settings.forward_auth = Some(ForwardAuth::new(profile, rules));
            settings.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        })
        .await;
        let Some(proxy) = ReverseProxy::start(kind, &address(&app), &echo.address) else { return };
        let from = |source: &str| {
            reqwest::Client::builder()
                .local_address(source.parse::<std::net::IpAddr>().ok())
                .build()
                .expect("client")
        };
        let (stranger, customer) = (from("127.0.0.2"), from("127.0.0.3"));
        let url = format!("http://127.0.0.1:{}/x", proxy.port);
        let mut last = 0;
        for _ in 0..25 {
            let response = stranger.get(&url).header("authorization", "ak_wrong").send().await.expect("sent");
            last = response.status().as_u16();
        }
        assert_eq!(last, 403, "{}: the stranger is throttled", kind.name());
        let response =
            customer.get(&url).header("authorization", app.owner.key.as_str()).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{}: another client is not", kind.name());
    }
}

/// The second review: through the shipped Caddyfile, mixed spellings that
/// Go does not fold but WSGI does (`X_Keygate-Mode`, `X_HTTP_Method_Override`,
/// `X_Original-URL`, `X_Org_Id`) reached the upstream, and a second
/// `Authorization` reached it beside the one keygate judged. Whatever the
/// spelling, the upstream never acts on a header keygate did not judge.
#[tokio::test]
async fn no_spelling_of_a_guarded_header_reaches_the_api() {
    const RULES_WITH_HEADERS: &str = r#"
[[rule]]
path = "/public/**"
action = "public"

[[rule]]
path = "/v1/**"
action = "upload"
org_id_header = "x-org-id"
app_id_header = "x-app-id"
"#;
    let echo = WsgiEcho::start();
    for (kind, profile) in [(Kind::Nginx, Proxy::Nginx), (Kind::Caddy, Proxy::Caddy)] {
        let rules = Rules::parse(RULES_WITH_HEADERS).expect("rules");
        let app = spawn_app_with(|settings| {
            settings.forward_auth = Some(ForwardAuth::new(profile, rules));
            settings.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
            settings.failed_auth_limit = 0;
        })
        .await;
        let other_org = app.tenant("other@example.com").await.org_id;
        let org = app.owner.org_id.clone();
        let upload =
            app.create_key(&app.owner.key, serde_json::json!({ "org_id": org, "mode": "upload" })).await;
        let upload = upload["key"].as_str().expect("key").to_owned();
        let read = app.owner_key("read").await["key"].as_str().expect("key").to_owned();
        let Some(proxy) = ReverseProxy::start(kind, &address(&app), &echo.address) else { return };
        let name = kind.name();

        // Thirteenth review: and with dots, which PHP folds like underscores.
        for forged in [
            "X_Keygate-Mode: all",
            "X-Keygate_User_Id: forged",
            "X_KEYGATE-ORG-ID: forged",
            "X-Keygate_Key-Id: 1",
            "X.Keygate.Mode: all",
            "X.Keygate.User-Id: forged",
            "X-Keygate.Org.Id: forged",
        ] {
            for (target, key) in [(&b"/public/x"[..], None), (&b"/v1/x"[..], Some(upload.as_str()))] {
                let (status, seen) =
                    echoed(&proxy, "GET", target, key, &[forged, &format!("X-Org-Id: {org}")]).await;
                let headers = &seen["headers"];
                for header in [
                    "HTTP_X_KEYGATE_MODE",
                    "HTTP_X_KEYGATE_USER_ID",
                    "HTTP_X_KEYGATE_ORG_ID",
                    "HTTP_X_KEYGATE_KEY_ID",
                ] {
                    let value = headers[header].as_str().unwrap_or_default();
                    assert!(
                        status != 200 || !(value.contains(',') || value.contains("forged") || value == "all"),
                        "{name}: {forged}: {header} = {value:?}"
                    );
                }
            }
        }
        for spelling in [
            "X_HTTP_Method_Override",
            "X-HTTP-Method_Override",
            "X_Method_Override",
            "X_HTTP_Method",
            "X.HTTP.Method.Override",
        ] {
            let (status, seen) =
                echoed(&proxy, "GET", b"/x", Some(&read), &[&format!("{spelling}: DELETE")]).await;
            let overridden = seen["overrides"].as_array().is_some_and(|o| !o.is_empty());
            assert!(
                !(status == 200 && overridden),
                "{name}: {spelling} reached the API with a read key: {seen}"
            );
        }
        for spelling in [
            "X_Original-URL",
            "X-Original_URL",
            "X_Rewrite_URL",
            "X-Rewrite_URL",
            "X_Original-URI",
            "X.Rewrite.Url",
            "X.Original.URL",
        ] {
            let (status, seen) =
                echoed(&proxy, "GET", b"/public/x", None, &[&format!("{spelling}: /admin/secret")]).await;
            let reached =
                seen["headers"].as_object().is_some_and(|h| h.values().any(|v| v == "/admin/secret"));
            assert!(!(status == 200 && reached), "{name}: {spelling} reached the API: {seen}");
        }
        for spelling in ["X_Org_Id", "X-Org_Id", "x_org_id", "X.Org.Id"] {
            let headers = [format!("X-Org-Id: {org}"), format!("{spelling}: {other_org}")];
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let (status, seen) = echoed(&proxy, "POST", b"/v1/things", Some(&upload), &headers).await;
            let crossed = seen["headers"]["HTTP_X_ORG_ID"].as_str().is_some_and(|v| v.contains(&other_org));
            assert!(!(status == 200 && crossed), "{name}: {spelling} named another tenant: {seen}");
            let alone = format!("{spelling}: {other_org}");
            let (status, seen) =
                echoed(&proxy, "POST", b"/v1/things", Some(&upload), &[alone.as_str()]).await;
            let crossed = seen["headers"]["HTTP_X_ORG_ID"].as_str().is_some_and(|v| v.contains(&other_org));
            assert!(!(status == 200 && crossed), "{name}: {spelling} alone named another tenant: {seen}");
        }
        let second = format!("Authorization: Bearer {upload}");
        let (status, seen) = echoed(&proxy, "GET", b"/x", Some(&read), &[second.as_str()]).await;
        assert!(status != 200, "{name}: two credentials, the upstream may read the other: {seen}");
    }
}
