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

mod edge {
    //! Slow and idle clients, and too many of them: `keygate::http::edge`.

    use std::time::{Duration, Instant};

    use keygate::http::edge::EdgeLimits;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::helpers::{TestApp, spawn_app_with};

    async fn app_with(limits: EdgeLimits) -> TestApp {
        spawn_app_with(|settings| settings.edge = limits).await
    }

    async fn connect(app: &TestApp) -> TcpStream {
        TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
    }

    /// Everything the server sends until it closes the connection, and when
    /// it closed it; `None` if it was still open after `limit`.
    async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
        let start = Instant::now();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            match tokio::time::timeout(left, stream.read(&mut buffer)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => {
                    return Some((String::from_utf8_lossy(&received).into_owned(), start.elapsed()));
                }
                Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            }
        }
    }

    const GET_LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nhost: keygate\r\n\r\n";

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let limits = EdgeLimits { header_read_timeout: Duration::from_secs(1), ..EdgeLimits::default() };
        let app = app_with(limits).await;
        let mut slow = connect(&app).await;
        slow.write_all(b"GET /livez HTTP/1.1\r\nhost: keygate\r\nx-slow: ").await.expect("half a head");
        let (_, after) = until_closed(&mut slow, Duration::from_secs(5)).await.expect("still open after 5 s");
        assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the timeout");
    }

    /// Fourteenth review: a client that sent its requests and stopped
    /// reading the answers kept its connection for good (past the request
    /// and header timeouts), without a key. A write that makes no progress
    /// for the request timeout now closes it.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_disconnected() {
        let limits = EdgeLimits {
            request_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(30),
            ..EdgeLimits::default()
        };
        let app = app_with(limits).await;
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(1024).expect("a small receive buffer");
        let address = app.base.trim_start_matches("http://").parse().expect("address");
        let mut reader = socket.connect(address).await.expect("connect");
        let many = b"GET /openapi.json HTTP/1.1\r\nhost: keygate\r\n\r\n".repeat(40);
        reader.write_all(&many).await.expect("forty requests");
        // The answers fill both sides' buffers; nothing reads them.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let closed = until_closed(&mut reader, Duration::from_secs(10)).await;
        let (received, _) = closed.expect("the connection is still open: the server waits on the reader");
        assert!(received.matches("HTTP/1.1 200").count() < 40, "it did not finish writing everything");
    }

    #[tokio::test]
    async fn the_metrics_listener_closes_slow_clients_too() {
        let listener = keygate::MetricsListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let app = spawn_app_with(|settings| {
            settings.edge =
                EdgeLimits { header_read_timeout: Duration::from_secs(1), ..EdgeLimits::default() };
            settings.metrics_listener = Some(listener);
        })
        .await;
        let mut slow = TcpStream::connect(address).await.expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\nhost: keygate\r\nx-slow: ").await.expect("half a head");
        let (_, after) = until_closed(&mut slow, Duration::from_secs(5)).await.expect("still open after 5 s");
        assert!(after >= Duration::from_millis(900), "closed after {after:?}, before the timeout");
        let scraped = app.client.get(format!("http://{address}/metrics")).send().await.expect("scrape");
        assert_eq!(scraped.status(), 200, "it still serves the scrapes that arrive whole");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_same_time() {
        let limits = EdgeLimits { header_read_timeout: Duration::from_secs(1), ..EdgeLimits::default() };
        let app = app_with(limits).await;
        let mut idle = connect(&app).await;
        idle.write_all(GET_LIVEZ).await.expect("request");
        let (received, _) =
            until_closed(&mut idle, Duration::from_secs(5)).await.expect("still open after 5 s");
        assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    }

    #[tokio::test]
    async fn beyond_the_connection_cap_a_client_waits_until_one_closes() {
        let limits = EdgeLimits { max_connections: 2, ..EdgeLimits::default() };
        let app = app_with(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = connect(&app).await;
            stream.write_all(GET_LIVEZ).await.expect("request");
            let mut buffer = [0u8; 512];
            let n = stream.read(&mut buffer).await.expect("answer");
            assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
            held.push(stream);
        }
        let mut third = connect(&app).await;
        third.write_all(GET_LIVEZ).await.expect("request");
        let mut buffer = [0u8; 512];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buffer)).await;
        assert!(early.is_err(), "a third connection was served beyond the cap of two");
        drop(held.pop());
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buffer))
            .await
            .expect("served once a connection closed")
            .expect("answer");
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
    }

    /// The head of the first response on a fresh connection after sending `request`.
    async fn first_head(app: &TestApp, request: &str) -> String {
        let mut stream = connect(app).await;
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("answered within 5 s")
            .expect("answer");
        let answer = String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase();
        answer.split("\r\n\r\n").next().expect("a head").to_owned()
    }

    #[tokio::test]
    async fn a_body_refused_unread_closes_its_connection_and_says_so() {
        let app = app_with(EdgeLimits::default()).await;
        // No key: refused before the body is read.
        let unread = "POST /apikey HTTP/1.1\r\nhost: keygate\r\ncontent-type: application/json\r\n\
                      content-length: 2\r\n\r\n{}";
        let head = first_head(&app, unread).await;
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        // Read to its end, or no body at all: the connection stays open.
        let read = format!(
            "POST /apikey HTTP/1.1\r\nhost: keygate\r\nauthorization: {}\r\n\
             content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}",
            app.owner.key
        );
        let head = first_head(&app, &read).await;
        assert!(head.starts_with("http/1.1 400"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        let head = first_head(&app, "GET /apikey HTTP/1.1\r\nhost: keygate\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 401") && !head.contains("connection: close"), "{head}");
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_is_answered_408_in_the_contract_shape() {
        let limits = EdgeLimits { request_timeout: Duration::from_secs(1), ..EdgeLimits::default() };
        let app = app_with(limits).await;
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /apikey HTTP/1.1\r\nhost: keygate\r\nauthorization: {}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"mode\":",
            app.owner.key
        );
        stream.write_all(head.as_bytes()).await.expect("half a request");
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("answered within 5 s")
            .expect("answer");
        let answer = String::from_utf8_lossy(&buffer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"status\":\"KO\""), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        assert_eq!(app.key_count().await, 1, "a timed-out create made a key");
    }
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = app.client.get(format!("{}{path}", app.base)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().expect("text").starts_with(kind), "{path}");
        let policy = headers["content-security-policy"].to_str().expect("text");
        assert!(
            policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    let page = app
        .client
        .get(format!("{}/console", app.base))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(!page.contains("http://") && !page.contains("https://"), "nothing from elsewhere");
    assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");
    let root = app.call(Method::GET, "/", None, None).await.ok();
    assert_eq!(root["console"], "/console");
}
