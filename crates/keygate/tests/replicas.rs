//! Several `keygate serve` replicas on one PostgreSQL database: they agree at
//! once, and a lost database turns into prompt 503s, then recovery, with no
//! acknowledged write lost.
//!
//! Run with `KEYGATE_TEST_DATABASE=postgres://postgres@127.0.0.1:5432/postgres
//! cargo test --workspace -- --include-ignored --skip a_postgres_restart`.

use std::path::Path;
use std::time::{Duration, Instant};

use keygate_core::Role;
use keygate_testkit::proxy::CuttableProxy;
use keygate_testkit::{ServerProcess, TestDatabase, postgres_base, with_database};
use reqwest::{Client, Method};
use serde_json::json;
use support::{BIN, WriteLoad, bootstrapped, call, database, until_health};
use uuid::Uuid;

mod support;

/// The contract's bound: a change acknowledged by one replica binds every
/// other replica within it, whatever each has cached.
const BOUND: Duration = Duration::from_secs(1);

/// These tests make many refused requests from one address on purpose:
/// with the throttle shared by the replicas, they would add up to a block.
const UNTHROTTLED: &[&str] = &["--failed-auth-limit", "0"];

/// Asks `base` with `key` until it answers `want`, and returns how long
/// that took; fails if it takes longer than [`BOUND`]. Meanwhile a cache
/// not yet told may still let the key through to the handler (a 200, or a
/// 404 for what was deleted with it), but never to a server error.
async fn refused_within_bound(client: &Client, base: &str, path: &str, key: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = call(client, base, Method::GET, path, key, None).await;
        if status == want {
            return started.elapsed();
        }
        assert!(status < 500, "{path}: expected {want}: {status} {body}");
        assert!(started.elapsed() < BOUND, "{path}: {status} {body} after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Uses `key` on `base` until it is served from the replica's cache.
async fn warm(client: &Client, base: &str, path: &str, key: &str) {
    for _ in 0..3 {
        let (status, body) = call(client, base, Method::GET, path, key, None).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn every_change_on_one_replica_binds_the_other_within_a_second() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), UNTHROTTLED);
    let b = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), UNTHROTTLED);
    let client = Client::new();
    let org: Uuid = owner.org_id;

    // A key revoked on A.
    for round in 0..10 {
        let body = json!({ "org_id": org, "mode": "all", "name": format!("round {round}") });
        let (status, created) = call(&client, &a.base, Method::POST, "/apikey", &admin, Some(body)).await;
        assert_eq!(status, 200, "{created}");
        let key = created["apikey"]["key"].as_str().expect("key").to_owned();
        let id = created["apikey"]["id"].as_i64().expect("id");
        // Created on A, it authenticates on B at once: unknown digests are
        // never trusted from a cache that a creation could make stale.
        let (status, _) = call(&client, &b.base, Method::GET, "/apikey", &key, None).await;
        assert_eq!(status, 200, "a key created on A is refused by B");
        warm(&client, &b.base, "/apikey", &key).await;
        let path = format!("/apikey/{id}");
        assert_eq!(call(&client, &a.base, Method::DELETE, &path, &admin, None).await.0, 200);
        assert_eq!(call(&client, &a.base, Method::GET, "/apikey", &key, None).await.0, 401, "A itself");
        refused_within_bound(&client, &b.base, "/apikey", &key, 401).await;
    }

    // A key's mode lowered on B binds it on A.
    let body = json!({ "org_id": org, "mode": "all" });
    let (_, created) = call(&client, &b.base, Method::POST, "/apikey", &admin, Some(body)).await;
    let key = created["apikey"]["key"].as_str().expect("key").to_owned();
    let path = format!("/apikey/{}", created["apikey"]["id"]);
    warm(&client, &a.base, "/apikey", &key).await;
    let (status, _) =
        call(&client, &b.base, Method::PUT, &path, &admin, Some(json!({ "mode": "read" }))).await;
    assert_eq!(status, 200);
    refused_within_bound(&client, &a.base, "/apikey", &key, 403).await;

    // A role lowered by another process on the shared database (the CLI's
    // path), then the member removed through A.
    let member =
        keygate::admin::add_user(store.as_ref(), "admin@example.com", org, Role::Admin).await.expect("add");
    let member_key = member.key.expose().to_owned();
    let org_keys = format!("/apikey?org_id={org}");
    for replica in [&a.base, &b.base] {
        warm(&client, replica, &org_keys, &member_key).await;
    }
    keygate::admin::add_user(store.as_ref(), "admin@example.com", org, Role::Read).await.expect("downgrade");
    for replica in [&a.base, &b.base] {
        refused_within_bound(&client, replica, &org_keys, &member_key, 403).await;
    }
    // Removed through A: the member's key scoped to the org goes with the
    // membership, and their unscoped key no longer reaches the org.
    let body = json!({ "org_id": org, "mode": "read" });
    let (status, scoped) = call(&client, &a.base, Method::POST, "/apikey", &member_key, Some(body)).await;
    assert_eq!(status, 200, "{scoped}");
    let scoped = scoped["apikey"]["key"].as_str().expect("key").to_owned();
    warm(&client, &b.base, "/organization", &scoped).await;
    let remove = format!("/organization/members?org_id={org}&user_id={}", member.user_id);
    assert_eq!(call(&client, &a.base, Method::DELETE, &remove, &admin, None).await.0, 200);
    refused_within_bound(&client, &b.base, "/organization", &scoped, 401).await;
    refused_within_bound(&client, &b.base, &org_keys, &member_key, 404).await;

    // An app deleted on A: a key limited to it no longer reaches it on B.
    let body = json!({ "org_id": org, "app_id": "com.acme.one", "name": "One" });
    let (status, body) = call(&client, &a.base, Method::POST, "/app", &admin, Some(body)).await;
    assert_eq!(status, 200, "{body}");
    let body = json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.acme.one"] });
    let (_, limited) = call(&client, &a.base, Method::POST, "/apikey", &admin, Some(body)).await;
    let limited = limited["apikey"]["key"].as_str().expect("key").to_owned();
    warm(&client, &b.base, "/app/com.acme.one", &limited).await;
    assert_eq!(call(&client, &a.base, Method::DELETE, "/app/com.acme.one", &admin, None).await.0, 200);
    refused_within_bound(&client, &b.base, "/app/com.acme.one", &limited, 404).await;

    // An organization deleted on A: its keys stop on B.
    let body = json!({ "name": "Short-lived" });
    let (status, created) = call(&client, &a.base, Method::POST, "/organization", &admin, Some(body)).await;
    assert_eq!(status, 200, "{created}");
    let doomed = created["organization"]["id"].as_str().expect("org id").to_owned();
    let body = json!({ "org_id": doomed, "mode": "all" });
    let (status, scoped) = call(&client, &a.base, Method::POST, "/apikey", &admin, Some(body)).await;
    assert_eq!(status, 200, "{scoped}");
    let scoped = scoped["apikey"]["key"].as_str().expect("key").to_owned();
    warm(&client, &b.base, "/apikey", &scoped).await;
    let path = format!("/organization?org_id={doomed}");
    assert_eq!(call(&client, &a.base, Method::DELETE, &path, &admin, None).await.0, 200);
    refused_within_bound(&client, &b.base, "/apikey", &scoped, 401).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_replica_that_lost_its_database_never_serves_what_changed_meanwhile() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let (a, b, proxy) = direct_and_cuttable(&db, UNTHROTTLED).await;
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let org = owner.org_id;

    let mut keys = Vec::new();
    for mode in ["all", "all"] {
        let body = json!({ "org_id": org, "mode": mode });
        let (status, created) = call(&client, &a.base, Method::POST, "/apikey", &admin, Some(body)).await;
        assert_eq!(status, 200, "{created}");
        let key = created["apikey"]["key"].as_str().expect("key").to_owned();
        warm(&client, &b.base, "/apikey", &key).await;
        keys.push((created["apikey"]["id"].as_i64().expect("id"), key));
    }
    let [(revoked_id, revoked), (narrowed_id, narrowed)] = <[_; 2]>::try_from(keys).expect("two keys");

    proxy.cut();
    let path = format!("/apikey/{revoked_id}");
    assert_eq!(call(&client, &a.base, Method::DELETE, &path, &admin, None).await.0, 200);
    let acknowledged = Instant::now();
    let path = format!("/apikey/{narrowed_id}");
    let (status, _) =
        call(&client, &a.base, Method::PUT, &path, &admin, Some(json!({ "mode": "read" }))).await;
    assert_eq!(status, 200);
    // Cut off, B cannot hear of the changes: once its lease runs out it
    // stops trusting its cache and, without a database, answers 503.
    while acknowledged.elapsed() < BOUND + Duration::from_millis(500) {
        for key in [&revoked, &narrowed] {
            let (status, body) = call(&client, &b.base, Method::GET, "/apikey", key, None).await;
            if acknowledged.elapsed() > BOUND {
                assert_eq!(status, 503, "B answered without its database after the bound: {body}");
            } else {
                assert!(matches!(status, 200 | 503), "{status}: {body}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back online, B must not trust what it cached before the cut.
    proxy.restore();
    until_health(&client, &b.base, 200, Duration::from_secs(15)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = call(&client, &b.base, Method::GET, "/apikey", &revoked, None).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 503, "B served a key revoked while it was cut off: {body}");
        assert!(Instant::now() < deadline, "B did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call(&client, &b.base, Method::GET, "/apikey", &narrowed, None).await;
    assert_eq!(status, 403, "B honoured a mode lowered while it was cut off: {body}");
    assert_eq!(call(&client, &b.base, Method::GET, "/apikey", &admin, None).await.0, 200);
    store.close().await;
}

/// Replica A on the database directly and replica B through a proxy that
/// can cut it off, both started with `flags`.
async fn direct_and_cuttable(
    db: &TestDatabase,
    flags: &[&str],
) -> (ServerProcess, ServerProcess, CuttableProxy) {
    let proxy = CuttableProxy::start(upstream()).await;
    let name = db.url().rsplit('/').next().expect("name").to_owned();
    let through_proxy =
        with_database(&format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port), &name);
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), flags);
    let b = ServerProcess::start(Path::new(BIN), &through_proxy, db.dir(), flags);
    (a, b, proxy)
}

/// PostgreSQL's `host:port`, for a proxy in front of it.
fn upstream() -> String {
    let base = postgres_base().expect("postgres");
    let opts: sqlx::postgres::PgConnectOptions = base.parse().expect("url");
    format!("{}:{}", opts.get_host(), opts.get_port())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn concurrent_writes_across_replicas_stay_consistent() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let replicas = [
        ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]),
        ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]),
    ];
    let client = Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let (client, base, admin) = (client.clone(), replicas[i % 2].base.clone(), admin.clone());
        let org = owner.org_id;
        tasks.spawn(async move {
            let body = json!({ "org_id": org, "mode": "read" });
            call(&client, &base, Method::POST, "/apikey", &admin, Some(body)).await
        });
    }
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.expect("task");
        assert_eq!(status, 200, "{body}");
        ids.push(body["apikey"]["id"].as_i64().expect("id"));
        secrets.push(body["apikey"]["key"].as_str().expect("key").to_owned());
    }
    ids.sort_unstable();
    ids.dedup();
    secrets.sort();
    secrets.dedup();
    assert_eq!((ids.len(), secrets.len()), (60, 60));

    // Updates racing deletes on the other replica never resurrect a key.
    let mut races = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let (client, admin) = (client.clone(), admin.clone());
        let (one, other) = (replicas[i % 2].base.clone(), replicas[(i + 1) % 2].base.clone());
        races.spawn(async move {
            let path = format!("/apikey/{id}");
            let update = call(&client, &one, Method::PUT, &path, &admin, Some(json!({ "name": "raced" })));
            let delete = call(&client, &other, Method::DELETE, &path, &admin, None);
            let ((updated, _), (deleted, _)) = tokio::join!(update, delete);
            assert!(matches!(updated, 200 | 404), "update answered {updated}");
            assert_eq!(deleted, 200);
        });
    }
    while let Some(done) = races.join_next().await {
        done.expect("race");
    }
    assert!(store.keys_of_org(owner.org_id).await.expect("keys").is_empty(), "a deleted key came back");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn losing_the_database_gives_prompt_503s_then_recovery_without_loss() {
    let db = database().await;
    let proxy = CuttableProxy::start(upstream()).await;
    let name = db.url().rsplit('/').next().expect("name").to_owned();
    // A password in the URL (trust authentication ignores it) must never be logged.
    let through_proxy = with_database(
        &format!("postgres://postgres:hunter2-secret@127.0.0.1:{}/postgres", proxy.port),
        &name,
    );

    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let server = ServerProcess::start(Path::new(BIN), &through_proxy, db.dir(), &[]);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    let load = WriteLoad::start(&client, &server.base, &admin, owner.org_id, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    until_health(&client, &server.base, 503, Duration::from_secs(10)).await;
    let (status, body) = call(&client, &server.base, Method::GET, "/apikey", &admin, None).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("database_unavailable")), "{body}");
    // A mistyped key is refused from its checksum alone, without the database.
    let mut typo = admin.clone().into_bytes();
    typo[10] = if typo[10] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).expect("ascii");
    let (status, body) = call(&client, &server.base, Method::GET, "/apikey", &typo, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_api_key")), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.restore();
    until_health(&client, &server.base, 200, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.finish().await;
    assert!(outcome.unavailable > 0, "the outage was never seen by a writer");
    let stored: std::collections::HashSet<i64> =
        store.keys_of_org(owner.org_id).await.expect("keys").iter().map(|k| k.id).collect();
    let lost: Vec<_> = outcome.acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(!server.log_text().contains("hunter2"), "the database password was logged");
    assert!(
        outcome.acknowledged.len() > 4,
        "too few writes to mean anything: {}",
        outcome.acknowledged.len()
    );
    store.close().await;
}

/// `GET /apikey` from `client` (an address given by `x-forwarded-for`).
async fn as_client(client: &Client, base: &str, address: &str, key: &str) -> u16 {
    let response = client
        .get(format!("{base}/apikey"))
        .header("authorization", key)
        .header("x-forwarded-for", address)
        .send()
        .await
        .expect("request");
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn failed_authentications_count_across_replicas_and_a_late_replica_knows_them() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let flags = ["--failed-auth-limit", "6", "--client-ip-header", "x-forwarded-for"];
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &flags);
    let b = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &flags);
    let client = Client::new();
    let wrong = keygate_core::ApiKeySecret::generate().expect("rng");
    let (attacker, bystander) = ("198.51.100.7", "198.51.100.8");

    // Three failures on each replica: neither alone reaches six.
    for base in [&a.base, &b.base] {
        for _ in 0..3 {
            assert_eq!(as_client(&client, base, attacker, wrong.expose()).await, 401);
        }
    }
    // Each replica hears of the other's within moments, and blocks.
    for base in [&a.base, &b.base] {
        let started = Instant::now();
        loop {
            let status = as_client(&client, base, attacker, &admin).await;
            if status == 429 {
                break;
            }
            assert_eq!(status, 200, "before the block, the good key works");
            assert!(
                started.elapsed() < BOUND,
                "{base} did not count the other replica's failures: {}\n{}",
                a.log_text(),
                b.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(as_client(&client, base, bystander, &admin).await, 200, "another address is untouched");
    }
    // A replica started afterwards reads the window's failures at start.
    let c = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &flags);
    let started = Instant::now();
    while as_client(&client, &c.base, attacker, &admin).await != 429 {
        assert!(started.elapsed() < BOUND, "a late replica did not learn of earlier failures");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = client
        .get(format!("{}/apikey", c.base))
        .header("authorization", &admin)
        .header("x-forwarded-for", attacker)
        .send()
        .await
        .expect("request");
    let wait: u64 = response.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
    store.close().await;
}

/// A flood of bad keys from many addresses is shared with the other
/// replicas over one connection at a time, many failures to a statement:
/// a request with a good key never waits for the pool behind it, and every
/// failure still reaches the database.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_flood_of_bad_keys_is_shared_over_one_connection() {
    const FLOOD: usize = 3_000;
    const CALLERS: usize = 64;
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let flags = ["--failed-auth-limit", "5", "--client-ip-header", "x-forwarded-for"];
    let server = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &flags);
    let observer = sqlx::PgPool::connect(db.url()).await.expect("observer");
    let client = Client::new();

    let flood: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (client, base) = (client.clone(), server.base.clone());
            tokio::spawn(async move {
                let wrong = keygate_core::ApiKeySecret::generate().expect("rng");
                for i in (caller..FLOOD).step_by(CALLERS) {
                    let address = format!("198.18.{}.{}", i / 250, i % 250 + 1);
                    assert_eq!(as_client(&client, &base, &address, wrong.expose()).await, 401);
                }
            })
        })
        .collect();
    let (mut writers_at_once, mut good_calls) = (0, 0);
    while !flood.iter().all(tokio::task::JoinHandle::is_finished) {
        let writers: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' AND query LIKE '%INTO auth_failures%' \
               AND pid <> pg_backend_pid()",
        )
        .fetch_one(&observer)
        .await
        .expect("pg_stat_activity");
        writers_at_once = writers_at_once.max(writers);
        assert_eq!(as_client(&client, &server.base, "192.0.2.1", &admin).await, 200, "a good key waited");
        good_calls += 1;
    }
    for caller in flood {
        caller.await.expect("flood");
    }
    assert!(writers_at_once <= 1, "{writers_at_once} connections wrote failures at once");
    assert!(good_calls > 10, "the flood ended before it was observed ({good_calls} good calls)");

    let started = Instant::now();
    loop {
        let shared: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_failures")
            .fetch_one(&observer)
            .await
            .expect("count");
        if shared == FLOOD as i64 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{shared} of {FLOOD} failures shared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    observer.close().await;
    store.close().await;
}

/// Bundles live in PostgreSQL: each replica runs in a directory of its own,
/// with nothing shared but the database, and serves what the other stored.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_bundle_uploaded_through_one_replica_downloads_through_another() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let a = ServerProcess::start(Path::new(BIN), db.url(), dir_a.path(), UNTHROTTLED);
    let b = ServerProcess::start(Path::new(BIN), db.url(), dir_b.path(), UNTHROTTLED);
    let client = Client::new();
    let app = json!({ "org_id": owner.org_id, "app_id": "com.acme.shared", "name": "Shared" });
    assert_eq!(call(&client, &a.base, Method::POST, "/app", &admin, Some(app)).await.0, 200);

    // Several chunks and a partial one.
    let bytes: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
    let query = "app_id=com.acme.shared&version=1.0.0";
    let uploaded = client
        .post(format!("{}/bundle?{query}", a.base))
        .header("authorization", &admin)
        .body(bytes.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 200, "{}", uploaded.text().await.unwrap_or_default());
    let download = |base: &str| {
        client.get(format!("{base}/bundle/download?{query}")).header("authorization", &admin).send()
    };
    let downloaded = download(&b.base).await.expect("download");
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.bytes().await.expect("bytes").to_vec(), bytes, "B serves what A stored");

    let deleted = call(&client, &b.base, Method::DELETE, &format!("/bundle?{query}"), &admin, None).await;
    assert_eq!(deleted.0, 200, "{}", deleted.1);
    assert_eq!(download(&a.base).await.expect("download").status(), 404);
    let blobs = store.shared_blobs().expect("PostgreSQL keeps bundles");
    assert_eq!(blobs.count().await.expect("count"), 0, "the bytes went with the bundle");
    for dir in [&dir_a, &dir_b] {
        assert!(!dir.path().join("keygate-blobs").exists(), "a replica kept bundles on its own disk");
    }
    store.close().await;
}

const VERIFIER: &str = "verifier-token-of-the-replicas";
/// Replicas with `/verify` on, unthrottled.
const VERIFYING: &[&str] = &["--failed-auth-limit", "0", "--verifier-token", VERIFIER];

/// `count` verifications of `key` on `base`, `concurrency` at a time: the
/// verdict codes (or `HTTP <status>` for an error).
async fn verify_many(
    client: &Client,
    base: &str,
    key: &str,
    count: usize,
    concurrency: usize,
) -> Vec<String> {
    let bearer = format!("Bearer {VERIFIER}");
    let workers = (0..concurrency).map(|worker| {
        let per_worker = count / concurrency + usize::from(worker < count % concurrency);
        let (client, base, key, bearer) = (client.clone(), base.to_owned(), key.to_owned(), bearer.clone());
        tokio::spawn(async move {
            let mut codes = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let body = json!({ "key": key });
                let (status, verdict) =
                    call(&client, &base, Method::POST, "/verify", &bearer, Some(body)).await;
                codes.push(match status {
                    200 => verdict["code"].as_str().unwrap_or("?").to_owned(),
                    other => format!("HTTP {other}"),
                });
            }
            codes
        })
    });
    let mut codes = Vec::new();
    for worker in futures_util::future::join_all(workers).await {
        codes.extend(worker.expect("worker"));
    }
    codes
}

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

/// A key of the owner's, created through `base` with `limits`.
async fn limited_key(
    client: &Client,
    base: &str,
    admin: &str,
    org: Uuid,
    limits: serde_json::Value,
) -> (i64, String) {
    let mut body = json!({ "org_id": org, "mode": "read" });
    body.as_object_mut().expect("object").extend(limits.as_object().expect("limits").clone());
    let (status, created) = call(client, base, Method::POST, "/apikey", admin, Some(body)).await;
    assert_eq!(status, 200, "{created}");
    (
        created["apikey"]["id"].as_i64().expect("id"),
        created["apikey"]["key"].as_str().expect("key").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn two_replicas_spend_exactly_a_keys_credits_and_its_rate_limit() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), VERIFYING);
    let b = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), VERIFYING);
    let client = Client::new();

    // 1,000 credits, 2,000 verifications through both replicas at once.
    let (id, key) =
        limited_key(&client, &a.base, &admin, owner.org_id, json!({ "credits": { "remaining": 1000 } }))
            .await;
    let (on_a, on_b) = tokio::join!(
        verify_many(&client, &a.base, &key, 1000, 16),
        verify_many(&client, &b.base, &key, 1000, 16)
    );
    let all: Vec<String> = on_a.iter().chain(&on_b).cloned().collect();
    assert_eq!(count(&all, "VALID"), 1000, "exactly the balance: A {on_a:?}");
    assert_eq!(count(&all, "USAGE_EXCEEDED"), 1000);
    assert!(count(&on_a, "VALID") > 0 && count(&on_b, "VALID") > 0, "both replicas spent");
    let (_, object) = call(&client, &b.base, Method::GET, &format!("/apikey/{id}"), &admin, None).await;
    assert_eq!(object["apikey"]["credits"]["remaining"], 0, "{object}");

    // A rate limit of 300 in a 30-day window (the test cannot cross one),
    // saturated evenly through both: exactly 300 admitted.
    let limit = json!({ "ratelimit": { "limit": 300, "duration_ms": 2_592_000_000_u64 } });
    let (_, key) = limited_key(&client, &a.base, &admin, owner.org_id, limit).await;
    let (on_a, on_b) = tokio::join!(
        verify_many(&client, &a.base, &key, 400, 16),
        verify_many(&client, &b.base, &key, 400, 16)
    );
    let all: Vec<String> = on_a.iter().chain(&on_b).cloned().collect();
    assert_eq!(count(&all, "VALID"), 300, "never above the limit, nor below it when spread evenly");
    assert_eq!(count(&all, "RATE_LIMITED"), 500);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_key_disabled_on_one_replica_is_refused_by_the_other_within_a_second() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), VERIFYING);
    let b = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), VERIFYING);
    let client = Client::new();
    let (id, key) = limited_key(&client, &a.base, &admin, owner.org_id, json!({})).await;
    let path = format!("/apikey/{id}");
    warm(&client, &b.base, "/app", &key).await;

    let disable = Some(json!({ "enabled": false }));
    assert_eq!(call(&client, &a.base, Method::PUT, &path, &admin, disable).await.0, 200);
    assert_eq!(call(&client, &a.base, Method::GET, "/app", &key, None).await.0, 401, "A itself, at once");
    refused_within_bound(&client, &b.base, "/app", &key, 401).await;
    let (_, body) = call(&client, &b.base, Method::GET, "/app", &key, None).await;
    assert_eq!(body["code"], "api_key_disabled");

    let enable = Some(json!({ "enabled": true }));
    assert_eq!(call(&client, &b.base, Method::PUT, &path, &admin, enable).await.0, 200);
    assert_eq!(call(&client, &b.base, Method::GET, "/app", &key, None).await.0, 200, "B itself, at once");
    refused_within_bound(&client, &a.base, "/app", &key, 200).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_replica_cut_off_from_its_database_spends_only_what_it_had_leased() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let (a, b, proxy) = direct_and_cuttable(&db, VERIFYING).await;
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let (_, key) =
        limited_key(&client, &a.base, &admin, owner.org_id, json!({ "credits": { "remaining": 160 } })).await;
    // B leases a block (a sixteenth of the balance: 10) and spends one of it.
    assert_eq!(verify_many(&client, &b.base, &key, 1, 1).await, ["VALID"]);

    proxy.cut();
    let on_b = verify_many(&client, &b.base, &key, 40, 4).await;
    let spent_on_b = count(&on_b, "VALID");
    assert!(spent_on_b <= 9, "B spent {spent_on_b} credits it had not leased: {on_b:?}");
    assert!(on_b.iter().all(|c| c == "VALID" || c == "HTTP 503"), "{on_b:?}");
    // Meanwhile A spends the rest, never more.
    let on_a = verify_many(&client, &a.base, &key, 200, 4).await;
    assert_eq!(1 + spent_on_b + count(&on_a, "VALID"), 160 - (9 - spent_on_b), "{on_a:?}");
    proxy.restore();
    store.close().await;
}
