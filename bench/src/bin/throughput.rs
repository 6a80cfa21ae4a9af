//! Authenticated request throughput of one keygate, against a baseline
//! measured in the same run.
//!
//! Starts the release binary on a fresh database, then, in `--rounds`
//! interleaved rounds (this machine's speed drifts; the median ratio is what
//! to compare), runs `--clients` concurrent keep-alive clients for
//! `--seconds` on each workload:
//! - baseline: `GET /health` (no key; one trivial database query);
//! - authenticated read: `GET /app/:app_id` with a `read` key (key lookup,
//!   role lookup, app lookup, the authorization decision).
//!
//! ```text
//! cargo build --release -p keygate
//! cargo run --release -p keygate-bench --bin throughput -- \
//!     [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--clients 32] [--seconds 5] [--rounds 3]
//! ```
//!
//! Without --postgres it runs on SQLite.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_bench::{arg, bootstrap, ms, percentiles};
use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::Client;
use serde_json::{Value, json};

struct Outcome {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn hammer(client: &Client, url: &str, key: Option<&str>, clients: usize, seconds: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let key: Option<Arc<str>> = key.map(Arc::from);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, key) = (client.clone(), url.to_owned(), key.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = client.get(&url);
                if let Some(key) = &key {
                    request = request.header("authorization", key.as_ref());
                }
                let response = request.send().await.expect("request");
                assert_eq!(response.status(), 200, "{url}");
                let _ = response.bytes().await;
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("client"));
    }
    Outcome { requests: latencies.len(), elapsed: started.elapsed(), latencies }
}

fn row(name: &str, outcome: &mut Outcome) -> f64 {
    let rate = outcome.requests as f64 / outcome.elapsed.as_secs_f64();
    let (p50, p99, max) = percentiles(&mut outcome.latencies);
    println!("| {name} | {rate:.0} | {} | {} | {} |", ms(p50), ms(p99), ms(max));
    rate
}

#[tokio::main]
async fn main() {
    let clients: usize = arg("--clients").and_then(|c| c.parse().ok()).unwrap_or(32);
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(5).min(60);
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(3).clamp(1, 10);
    let binary = PathBuf::from(arg("--keygate").unwrap_or_else(|| "target/release/keygate".into()));
    assert!(binary.exists(), "build it first: cargo build --release -p keygate");
    let db = match arg("--postgres") {
        Some(url) => TestDatabase::postgres(&url).await,
        None => TestDatabase::sqlite(),
    };
    let owner = bootstrap(&binary, db.url());
    let admin = owner["key"].as_str().expect("key").to_owned();
    let server = ServerProcess::start(&binary, db.url(), db.dir(), &[]);
    let client = Client::builder().pool_max_idle_per_host(clients).build().expect("client");

    let body = json!({ "app_id": "com.bench.app", "name": "Bench", "org_id": owner["org_id"] });
    let created =
        client.post(format!("{}/app", server.base)).header("authorization", &admin).json(&body).send();
    assert_eq!(created.await.expect("create app").status(), 200);
    let body = json!({ "org_id": owner["org_id"], "mode": "read" });
    let response = client.post(format!("{}/apikey", server.base)).header("authorization", &admin).json(&body);
    let key: Value = response.send().await.expect("create key").json().await.expect("json");
    let read_key = key["apikey"]["key"].as_str().expect("key").to_owned();

    let backend = if db.is_postgres() { "PostgreSQL" } else { "SQLite" };
    println!(
        "throughput on {backend}, {clients} clients, {seconds} s per workload, {rounds} interleaved rounds, loopback"
    );
    println!("| round | workload | requests/s | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    let url = format!("{}/app/com.bench.app", server.base);
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let mut baseline = hammer(&client, &format!("{}/health", server.base), None, clients, seconds).await;
        let base_rate = row(&format!("{round} | baseline: GET /health (no key)"), &mut baseline);
        let mut read = hammer(&client, &url, Some(&read_key), clients, seconds).await;
        let read_rate = row(&format!("{round} | GET /app/:app_id with a read key"), &mut read);
        ratios.push(read_rate / base_rate);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio authenticated / baseline throughput: {:.2}", ratios[ratios.len() / 2]);
}
