//! No unauthenticated work before authentication. Finding: 1,000
//! connections each half-sending a 1 MiB body to `/verify` (read before the
//! verifier token was checked) took a server from 40 MB to 2 GB, which it
//! kept after they closed. Now credentials are checked before a body is
//! read, the endpoints that need no key read 4 KiB at most, and every body
//! reserves its length from a budget of bytes in flight (64 MiB) or is
//! refused at once: the same attack, on a real `keygate serve`, leaves it
//! under 256 MiB, back near its idle size once the connections close.

use std::path::Path;
use std::time::Duration;

use keygate_testkit::{ServerProcess, TestDatabase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_keygate");
const TOKEN: &str = "verifier-token-for-the-exhaustion-test";
const MIB: usize = 1024 * 1024;

/// A value of `/proc/<pid>/status` (VmRSS, VmHWM), in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a size in kB");
    kib / 1024.0
}

/// Opens a connection and sends a request head declaring a body of
/// `declared` bytes, then `sent` bytes of it, and keeps the connection open.
async fn half_sent(address: &str, head: &str, declared: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let head = format!("{head}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&vec![b' '; sent]).await.expect("part of a body");
    stream
}

/// The status line's code of what a connection answered, if it answered
/// within `within`.
async fn status_of(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(within, stream.read(&mut buffer)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buffer[..read]);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A new database with its owner, closed again for a server to open.
async fn bootstrapped() -> (TestDatabase, keygate::admin::EnrollmentOutput) {
    let database = TestDatabase::new().await;
    let store = keygate_store::connect(database.url()).await.expect("open");
    let owner =
        keygate::admin::bootstrap(store.as_ref(), "owner@example.com", "Acme").await.expect("bootstrap");
    store.close().await;
    (database, owner)
}

#[tokio::test]
async fn a_thousand_slow_bodies_without_a_credential_hold_no_memory() {
    let (database, owner) = bootstrapped().await;
    let extra = ["--verifier-token", TOKEN, "--failed-auth-limit", "0", "--access-log", "false"];
    let server = ServerProcess::start_with_env(
        Path::new(BIN),
        database.url(),
        database.dir(),
        &extra,
        &[("KEYGATE_LOG", "warn,keygate::cli=info")],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let pid = server.pid();
    let idle = memory_mib(pid, "VmRSS");

    // 1,000 connections: /verify with a wrong token, and the two endpoints
    // that need no key, each declaring 1 MiB and sending 256 KiB of it.
    let host = format!("Host: {address}\r\n");
    let heads = [
        format!("POST /verify HTTP/1.1\r\n{host}Authorization: Bearer wrong\r\n"),
        format!("POST /verify HTTP/1.1\r\n{host}"),
        format!("POST /invites/redeem HTTP/1.1\r\n{host}"),
        format!("POST /apikey/revoke HTTP/1.1\r\n{host}"),
    ];
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000 {
        held.push(half_sent(&address, &heads[i % heads.len()], MIB, MIB / 4).await);
    }
    // Each is answered at once, without waiting for its body.
    let mut answered = std::collections::BTreeMap::new();
    for stream in held.iter_mut().take(40) {
        *answered.entry(status_of(stream, Duration::from_secs(5)).await).or_insert(0) += 1;
    }
    let wanted = [Some(401), Some(413)];
    assert!(answered.keys().all(|status| wanted.contains(status)), "answers: {answered:?}");
    let peak = memory_mib(pid, "VmHWM");
    drop(held);

    // An authenticated client is held to the budget: 100 bodies of 1 MiB
    // declared, trickling, are not all buffered; those past the budget are
    // refused at once with 503 server_busy.
    let head = format!("POST /apikey HTTP/1.1\r\n{host}Authorization: {}\r\n", owner.key.expose());
    let mut authenticated = Vec::new();
    for _ in 0..100 {
        authenticated.push(half_sent(&address, &head, MIB, 1024).await);
    }
    let statuses = futures_util::future::join_all(
        authenticated.iter_mut().map(|stream| status_of(stream, Duration::from_millis(500))),
    )
    .await;
    let busy = statuses.iter().filter(|status| **status == Some(503)).count();
    assert!(busy >= 30, "{busy} of 100 refused: the budget holds 64 MiB");
    let peak = peak.max(memory_mib(pid, "VmHWM"));
    drop(authenticated);

    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = memory_mib(pid, "VmRSS");
    eprintln!(
        "RSS: idle {idle:.1} MiB, peak {peak:.1} MiB, after {after:.1} MiB; {busy} of 100 authenticated bodies refused"
    );
    assert!(peak < 256.0, "peak {peak:.1} MiB");
    assert!(after < idle + 64.0, "after {after:.1} MiB, idle {idle:.1} MiB");
    // And it still serves.
    let reply = reqwest::get(format!("{}/livez", server.base)).await.expect("livez");
    assert_eq!(reply.status(), 200);
}

/// Eleventh review: one key's 66 slow bodies of 1 MiB held the whole 64 MiB
/// budget, and every other tenant's bodies (leak reports included) were
/// refused. One client address now holds an eighth of it at most.
#[tokio::test]
async fn one_clients_slow_bodies_leave_the_budget_to_others() {
    let (database, owner) = bootstrapped().await;
    let extra = ["--failed-auth-limit", "0", "--access-log", "false", "--trusted-proxy", "127.0.0.1/32"];
    let server = ServerProcess::start(Path::new(BIN), database.url(), database.dir(), &extra);
    let address = server.base.trim_start_matches("http://").to_owned();
    let head = |client: &str| {
        format!(
            "POST /apikey HTTP/1.1\r\nHost: {address}\r\nX-Forwarded-For: {client}\r\nAuthorization: {}\r\n",
            owner.key.expose()
        )
    };
    let mut held = Vec::new();
    for _ in 0..66 {
        held.push(half_sent(&address, &head("198.51.100.1"), MIB, 1024).await);
    }
    let statuses = futures_util::future::join_all(
        held.iter_mut().map(|stream| status_of(stream, Duration::from_millis(500))),
    )
    .await;
    let busy = statuses.iter().filter(|status| **status == Some(503)).count();
    assert!(busy >= 66 - 8, "{busy} of 66 refused: one client holds 8 MiB at most");
    // Another client's body, and a leak report, go through meanwhile.
    let mut other = half_sent(&address, &head("198.51.100.2"), 2, 0).await;
    other.write_all(b"{}").await.expect("the rest of the body");
    assert_eq!(
        status_of(&mut other, Duration::from_secs(5)).await,
        Some(400),
        "judged, not refused for room"
    );
    let revoke =
        format!("POST /apikey/revoke HTTP/1.1\r\nHost: {address}\r\nX-Forwarded-For: 198.51.100.3\r\n");
    let mut report = half_sent(&address, &revoke, 2, 0).await;
    report.write_all(b"{}").await.expect("the rest of the body");
    assert_eq!(status_of(&mut report, Duration::from_secs(5)).await, Some(200));
    drop(held);
}

/// Finding of the second review: a body trickled one byte per packet to an
/// endpoint that needs no key pinned a whole read buffer per byte (each
/// frame a slice of it), 17–30 MB per connection within the 4 KiB limit.
/// Bodies are now copied out frame by frame.
#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_pins_no_buffers() {
    let database = TestDatabase::new().await;
    let store = keygate_store::connect(database.url()).await.expect("open");
    keygate::admin::bootstrap(store.as_ref(), "owner@example.com", "Acme").await.expect("bootstrap");
    store.close().await;
    drop(store);
    let extra = ["--failed-auth-limit", "0", "--access-log", "false"];
    let server = ServerProcess::start_with_env(
        Path::new(BIN),
        database.url(),
        database.dir(),
        &extra,
        &[("KEYGATE_LOG", "warn,keygate::cli=info")],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let idle = memory_mib(server.pid(), "VmRSS");
    let mut drips = tokio::task::JoinSet::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/invites/redeem" } else { "/apikey/revoke" };
        let head = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\n");
        let address = address.clone();
        drips.spawn(async move {
            let mut stream = half_sent(&address, &head, 4096, 0).await;
            stream.set_nodelay(true).expect("nodelay");
            for _ in 0..600 {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stream
        });
    }
    let held = drips.join_all().await;
    let peak = memory_mib(server.pid(), "VmHWM");
    drop(held);
    eprintln!("trickled bodies: RSS idle {idle:.1} MiB, peak {peak:.1} MiB");
    assert!(peak < idle + 64.0, "peak {peak:.1} MiB, idle {idle:.1} MiB");
}

/// Finding: a client that reset its connection mid-request dropped the
/// handler between writing bytes and removing or listing them: readiness
/// probe files piled up in the bundle directory, and uploads cut off after
/// their bytes were stored left blobs no bundle lists, outside the storage
/// quota, until a restart. Blob work now runs to its end whatever the client
/// does.
#[tokio::test]
async fn clients_that_vanish_mid_request_leave_no_bytes_behind() {
    let quota = 1_000_000;
    let app = crate::helpers::spawn_app_with(|s| s.max_org_storage = Some(quota)).await;
    app.app("com.acme.vanish").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let before = app.blob_files().await;
    let vanish = |request: Vec<u8>| {
        let address = address.clone();
        async move {
            let mut stream = TcpStream::connect(&address).await.expect("connect");
            stream.write_all(&request).await.expect("request");
            // A reset, not a close: the server learns of it at once.
            stream.set_zero_linger().expect("linger");
            drop(stream);
        }
    };
    for _ in 0..50 {
        let probes = (0..10).map(|_| vanish(b"GET /health HTTP/1.1\r\nhost: keygate\r\n\r\n".to_vec()));
        futures_util::future::join_all(probes).await;
    }
    let body = vec![b'x'; 150_000];
    for round in 0..8 {
        let uploads = (0..5).map(|n| {
            let head = format!(
                "POST /bundle?app_id=com.acme.vanish&version=1.{round}.{n} HTTP/1.1\r\nhost: keygate\r\n\
                 authorization: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                app.owner.key,
                body.len()
            );
            let mut request = head.into_bytes();
            request.extend_from_slice(&body);
            vanish(request)
        });
        futures_util::future::join_all(uploads).await;
    }
    // Whatever was still at work has ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bundles = app.get("/bundle?app_id=com.acme.vanish", &app.owner.key).await.ok();
    let bundles = bundles["data"].as_array().expect("data").clone();
    let stored: u64 = bundles.iter().map(|b| b["size"].as_u64().expect("size")).sum();
    assert!(stored <= quota, "{stored} bytes listed over a quota of {quota}");
    let files = app.blob_files().await;
    assert_eq!(files, before + bundles.len() as u64, "{files} blobs kept for {} bundles", bundles.len());
}
