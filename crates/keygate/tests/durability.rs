//! Group commit keeps its promise under load: 64 clients create keys and
//! delete some of them on a real `keygate serve` over a SQLite file, the
//! process is killed with SIGKILL while requests are in flight, and after a
//! restart on the same file every acknowledged key still authenticates and
//! every acknowledged delete still holds.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{BIN, bootstrapped};

mod support;

const CLIENTS: usize = 64;
/// How long the load runs before the kill.
const LOAD: Duration = Duration::from_millis(1500);
/// Every how many acknowledged creates a client deletes the key it made.
const DELETE_EVERY: usize = 4;

/// What one client saw acknowledged, and the deletes it sent but never saw
/// answered (the kill came first): those keys may be either way.
#[derive(Default)]
struct Seen {
    created: Vec<(i64, String)>,
    deleted: Vec<String>,
    delete_unanswered: Vec<String>,
}

/// One request; `None` if the server did not answer (it was killed).
async fn send(
    client: &Client,
    base: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = client.request(method, format!("{base}{path}")).header("authorization", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

async fn client_load(
    client: Client,
    base: String,
    admin: String,
    org: Value,
    killed: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    loop {
        let body = json!({ "org_id": org, "mode": "read" });
        let Some((status, created)) = send(&client, &base, Method::POST, "/apikey", &admin, Some(body)).await
        else {
            assert!(killed.load(Ordering::SeqCst), "a create got no answer before the kill");
            return seen;
        };
        assert_eq!(status, 200, "create: {created}");
        let id = created["apikey"]["id"].as_i64().expect("id");
        let key = created["apikey"]["key"].as_str().expect("key").to_owned();
        seen.created.push((id, key.clone()));
        if seen.created.len() % DELETE_EVERY == 0 {
            let path = format!("/apikey/{id}");
            match send(&client, &base, Method::DELETE, &path, &admin, None).await {
                Some((200, _)) => seen.deleted.push(key),
                Some((status, body)) => panic!("delete answered {status}: {body}"),
                None => {
                    assert!(killed.load(Ordering::SeqCst), "a delete got no answer before the kill");
                    seen.delete_unanswered.push(key);
                    return seen;
                }
            }
        }
    }
}

/// `GET /apikey` with each key, `concurrency` at a time, from `address`:
/// the statuses.
async fn authenticate(base: &str, keys: &[String], address: Ipv4Addr) -> Vec<u16> {
    let client = Client::builder().local_address(IpAddr::V4(address)).build().expect("client");
    let mut statuses = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(16) {
        let calls = chunk.iter().map(|key| {
            let (client, url, key) = (client.clone(), format!("{base}/apikey"), key.clone());
            async move {
                let response = client.get(url).header("authorization", key).send().await.expect("answered");
                response.status().as_u16()
            }
        });
        let mut handles = Vec::new();
        for call in calls {
            handles.push(tokio::spawn(call));
        }
        for handle in handles {
            statuses.push(handle.await.expect("task"));
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_under_concurrent_load() {
    let db = TestDatabase::sqlite();
    let (store, owner) = bootstrapped(&db).await;
    store.close().await;
    drop(store);
    let admin = owner.key.expose().to_owned();
    let org = json!(owner.org_id);
    let quiet = [("KEYGATE_LOG", "info,sqlx=warn")];
    let server = ServerProcess::start_with_env(Path::new(BIN), db.url(), db.dir(), &[], &quiet);

    let client = Client::builder().pool_max_idle_per_host(CLIENTS).build().expect("client");
    let killed = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let load =
            client_load(client.clone(), server.base.clone(), admin.clone(), org.clone(), killed.clone());
        clients.spawn(load);
    }
    tokio::time::sleep(LOAD).await;
    // No graceful anything: the kernel stops the process where it stands,
    // with requests in flight and a batch possibly half-written.
    killed.store(true, Ordering::SeqCst);
    server.signal("-KILL");
    let started = Instant::now();
    let mut seen = Seen::default();
    while let Some(done) = clients.join_next().await {
        let client = done.expect("client");
        seen.created.extend(client.created);
        seen.deleted.extend(client.deleted);
        seen.delete_unanswered.extend(client.delete_unanswered);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "clients hung after the kill");
    drop(server);
    assert!(seen.created.len() >= CLIENTS, "too little load to mean anything: {}", seen.created.len());
    assert!(!seen.deleted.is_empty(), "no delete was acknowledged");

    let server = ServerProcess::start_with_env(Path::new(BIN), db.url(), db.dir(), &[], &quiet);
    let unsure: std::collections::HashSet<&String> = seen.delete_unanswered.iter().collect();
    let deleted: std::collections::HashSet<&String> = seen.deleted.iter().collect();
    let kept: Vec<String> = seen
        .created
        .iter()
        .map(|(_, key)| key)
        .filter(|key| !deleted.contains(key) && !unsure.contains(key))
        .cloned()
        .collect();
    // A read key authenticates, and may not list keys: 403, not 401.
    let statuses = authenticate(&server.base, &kept, Ipv4Addr::LOCALHOST).await;
    let lost = statuses.iter().filter(|&&status| status != 403).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged keys were lost: {statuses:?}", kept.len());

    // 401 for each; failed authentications count against the client's
    // address, so each address presents fewer than the limit's threshold.
    for (n, chunk) in seen.deleted.chunks(10).enumerate() {
        let [_, _, a, b] = u32::try_from(n + 256).expect("small").to_be_bytes();
        let statuses = authenticate(&server.base, chunk, Ipv4Addr::new(127, 0, a, b)).await;
        assert!(statuses.iter().all(|&status| status == 401), "a deleted key came back: {statuses:?}");
    }

    // And the ids tell the same story to the owner.
    let (status, listed) =
        send(&client, &server.base, Method::GET, "/apikey", &admin, None).await.expect("list");
    assert_eq!(status, 200, "{listed}");
    let listed: std::collections::HashSet<i64> =
        listed["data"].as_array().expect("data").iter().map(|key| key["id"].as_i64().expect("id")).collect();
    let deleted_ids = seen.created.iter().filter(|(_, key)| deleted.contains(key)).map(|(id, _)| id);
    for id in deleted_ids {
        assert!(!listed.contains(id), "deleted key {id} is listed");
    }
    eprintln!(
        "{} keys created and acknowledged, {} deleted, {} deletes unanswered at the kill",
        seen.created.len(),
        seen.deleted.len(),
        seen.delete_unanswered.len()
    );
}
