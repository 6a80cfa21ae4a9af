//! Shared by the multi-process PostgreSQL tests: a client call, polling,
//! and a write load that records which writes were acknowledged.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keygate_testkit::{TestDatabase, postgres_base};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_keygate");

pub async fn database() -> TestDatabase {
    let base = postgres_base().expect("set KEYGATE_TEST_DATABASE=postgres://… to run this test");
    TestDatabase::postgres(&base).await
}

/// The store of `db`, bootstrapped with `owner@example.com` owning `Acme`,
/// and the owner's enrollment (its key printed as the CLI would).
pub async fn bootstrapped(
    db: &TestDatabase,
) -> (Arc<dyn keygate_store::Store>, keygate::admin::EnrollmentOutput) {
    let store = keygate_store::connect(db.url()).await.expect("connect");
    let owner =
        keygate::admin::bootstrap(store.as_ref(), "owner@example.com", "Acme").await.expect("bootstrap");
    (store, owner)
}

pub async fn call(
    client: &Client,
    base: &str,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, format!("{base}{path}")).header("authorization", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(error) => panic!("request failed: {error}"),
    }
}

/// Waits until `/health` answers `want`.
pub async fn until_health(client: &Client, base: &str, want: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status().as_u16() == want
        {
            let body: Value = response.json().await.expect("health JSON");
            assert_eq!(body["status"], if want == 200 { "ok" } else { "KO" }, "{body}");
            return;
        }
        assert!(start.elapsed() < limit, "/health did not answer {want} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writers creating keys until stopped. Only a 200 counts as acknowledged;
/// a 503 must come promptly and in the contract's shape.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    writers: tokio::task::JoinSet<(Vec<i64>, usize)>,
}

pub struct LoadOutcome {
    pub acknowledged: Vec<i64>,
    pub unavailable: usize,
}

impl WriteLoad {
    pub fn start(client: &Client, base: &str, admin: &str, org: Uuid, writers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..writers {
            let (client, base, admin, stop) =
                (client.clone(), base.to_owned(), admin.to_owned(), stop.clone());
            set.spawn(async move {
                let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let body = json!({ "org_id": org, "mode": "read" });
                    let (status, body) =
                        call(&client, &base, Method::POST, "/apikey", &admin, Some(body)).await;
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "a request hung for {:?}",
                        started.elapsed()
                    );
                    match status {
                        200 => acknowledged.push(body["apikey"]["id"].as_i64().expect("id")),
                        503 => {
                            assert_eq!(
                                (body["status"].as_str(), body["code"].as_str()),
                                (Some("KO"), Some("database_unavailable"))
                            );
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                (acknowledged, unavailable)
            });
        }
        Self { stop, writers: set }
    }

    pub async fn finish(mut self) -> LoadOutcome {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcome = LoadOutcome { acknowledged: Vec::new(), unavailable: 0 };
        while let Some(done) = self.writers.join_next().await {
            let (ids, failures) = done.expect("writer");
            outcome.acknowledged.extend(ids);
            outcome.unavailable += failures;
        }
        outcome
    }
}
