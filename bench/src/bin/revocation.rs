//! Revocation propagation between two replicas on one PostgreSQL database.
//!
//! For each of N keys: create it on replica A, use it once on replica B,
//! delete it on A, then ask B with it until B answers 401. Propagation is
//! the time from A's acknowledgement of the delete to B's first 401. The
//! baseline, measured in the same run, is one authenticated request to B.
//!
//!     cargo build --release -p keygate
//!     cargo run --release -p keygate-bench --bin revocation -- \
//!         --postgres postgres://postgres@127.0.0.1:5432/postgres [--rounds 200]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use keygate_bench::{arg, bootstrap, ms, percentiles};
use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::{Client, Method};
use serde_json::{Value, json};

async fn call(client: &Client, url: String, method: Method, key: &str, body: Option<Value>) -> (u16, Value) {
    call_as(client, url, method, key, body, None).await
}

async fn call_as(
    client: &Client,
    url: String,
    method: Method,
    key: &str,
    body: Option<Value>,
    client_address: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(method, url).header("authorization", key);
    if let Some(address) = client_address {
        request = request.header("x-forwarded-for", address);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() {
    let postgres = arg("--postgres").unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(200);
    let binary = PathBuf::from(arg("--keygate").unwrap_or_else(|| "target/release/keygate".into()));
    assert!(binary.exists(), "build it first: cargo build --release -p keygate");

    let db = TestDatabase::postgres(&postgres).await;
    let owner = bootstrap(&binary, db.url());
    let admin = owner["key"].as_str().expect("key").to_owned();
    // Every round ends in refused requests to B, which its failed-login limit
    // would count against one address; each round speaks for its own client
    // instead (documentation addresses, carried in a header, never dialled).
    let proxied = ["--client-ip-header", "x-forwarded-for"];
    let a = ServerProcess::start(&binary, db.url(), db.dir(), &proxied);
    let b = ServerProcess::start(&binary, db.url(), db.dir(), &proxied);
    let client = Client::new();

    let mut baseline = Vec::with_capacity(rounds);
    let mut propagation = Vec::with_capacity(rounds);
    let mut polls = 0usize;
    for round in 0..rounds {
        let address = format!("2001:db8:{round:x}::1");
        let body = json!({ "org_id": owner["org_id"], "mode": "read" });
        let (status, created) =
            call(&client, format!("{}/apikey", a.base), Method::POST, &admin, Some(body)).await;
        assert_eq!(status, 200, "{created}");
        let key = created["apikey"]["key"].as_str().expect("key").to_owned();
        let id = created["apikey"]["id"].as_i64().expect("id");

        let started = Instant::now();
        let (status, _) =
            call_as(&client, format!("{}/apikey", b.base), Method::GET, &key, None, Some(&address)).await;
        baseline.push(started.elapsed());
        assert_eq!(status, 403, "a read key authenticates on B");

        let (status, _) =
            call(&client, format!("{}/apikey/{id}", a.base), Method::DELETE, &admin, None).await;
        assert_eq!(status, 200);
        let acknowledged = Instant::now();
        loop {
            polls += 1;
            let (status, _) =
                call_as(&client, format!("{}/apikey", b.base), Method::GET, &key, None, Some(&address)).await;
            if status == 401 {
                propagation.push(acknowledged.elapsed());
                break;
            }
            assert!(acknowledged.elapsed() < Duration::from_secs(5), "B never refused the key");
        }
    }
    let (b50, b99, bmax) = percentiles(&mut baseline);
    let (p50, p99, pmax) = percentiles(&mut propagation);
    println!("revocation propagation, {rounds} revocations, 2 replicas, PostgreSQL");
    println!("| measure | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!("| baseline: one authenticated request to B | {} | {} | {} |", ms(b50), ms(b99), ms(bmax));
    println!(
        "| propagation: A's delete acknowledged → B's first 401 | {} | {} | {} |",
        ms(p50),
        ms(p99),
        ms(pmax)
    );
    println!(
        "| ratio propagation / baseline | {:.2} | {:.2} | {:.2} |",
        p50.as_secs_f64() / b50.as_secs_f64(),
        p99.as_secs_f64() / b99.as_secs_f64(),
        pmax.as_secs_f64() / bmax.as_secs_f64()
    );
    println!("requests to B until refused: {:.2} on average", polls as f64 / rounds as f64);
}
