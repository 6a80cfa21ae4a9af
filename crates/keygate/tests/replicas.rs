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
use keygate_testkit::{ServerProcess, postgres_base, with_database};
use reqwest::{Client, Method};
use serde_json::json;
use support::{BIN, WriteLoad, bootstrapped, call, database, until_health};
use uuid::Uuid;

mod support;

/// The contract's bound; keygate caches nothing that grants access, so
/// every replica refuses on the very next request, well inside it.
const BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn replicas_agree_on_keys_and_memberships_within_a_second() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    let a = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let b = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let client = Client::new();

    for round in 0..10 {
        let body = json!({ "org_id": owner.org_id, "mode": "all", "name": format!("round {round}") });
        let (status, created) = call(&client, &a.base, Method::POST, "/apikey", &admin, Some(body)).await;
        assert_eq!(status, 200, "{created}");
        let key = created["apikey"]["key"].as_str().expect("key").to_owned();
        let id = created["apikey"]["id"].as_i64().expect("id");
        // Created on A, it authenticates on B at once.
        let (status, _) = call(&client, &b.base, Method::GET, "/apikey", &key, None).await;
        assert_eq!(status, 200, "a key created on A is refused by B");

        let (status, _) =
            call(&client, &a.base, Method::DELETE, &format!("/apikey/{id}"), &admin, None).await;
        assert_eq!(status, 200);
        // Within the bound: the very first request after the acknowledgement.
        let started = Instant::now();
        let (status, _) = call(&client, &b.base, Method::GET, "/apikey", &key, None).await;
        assert_eq!(status, 401, "B still accepts a key A deleted");
        assert!(started.elapsed() < BOUND, "one request took {:?}", started.elapsed());
    }

    // A change of mode made on B binds the key on A.
    let body = json!({ "org_id": owner.org_id, "mode": "all" });
    let (_, created) = call(&client, &b.base, Method::POST, "/apikey", &admin, Some(body)).await;
    let key = created["apikey"]["key"].as_str().expect("key").to_owned();
    let path = format!("/apikey/{}", created["apikey"]["id"]);
    call(&client, &a.base, Method::GET, "/apikey", &key, None).await;
    let (status, _) =
        call(&client, &b.base, Method::PUT, &path, &admin, Some(json!({ "mode": "read" }))).await;
    assert_eq!(status, 200);
    let (status, _) = call(&client, &a.base, Method::GET, "/apikey", &key, None).await;
    assert_eq!(status, 403, "A still honours the mode B changed");

    // A member downgraded through the shared database is narrowed on every replica.
    let org: Uuid = owner.org_id;
    let member =
        keygate::admin::add_user(store.as_ref(), "admin@example.com", org, Role::Admin).await.expect("add");
    let member_key = member.key.expose().to_owned();
    let org_keys = format!("/apikey?org_id={org}");
    for replica in [&a.base, &b.base] {
        assert_eq!(call(&client, replica, Method::GET, &org_keys, &member_key, None).await.0, 200);
    }
    keygate::admin::add_user(store.as_ref(), "admin@example.com", org, Role::Read).await.expect("downgrade");
    for replica in [&a.base, &b.base] {
        let (status, _) = call(&client, replica, Method::GET, &org_keys, &member_key, None).await;
        assert_eq!(status, 403, "a replica still honours the old role");
    }
    store.close().await;
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
    let base = postgres_base().expect("postgres");
    let upstream = {
        let opts: sqlx::postgres::PgConnectOptions = base.parse().expect("url");
        format!("{}:{}", opts.get_host(), opts.get_port())
    };
    let proxy = CuttableProxy::start(upstream).await;
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
