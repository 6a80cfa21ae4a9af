//! A soak: minutes of mixed traffic against keygate, counting what went
//! wrong and checking at the end that every acknowledged write is stored.
//!
//! ```text
//! cargo build --release -p keygate -p keygate-bench
//! ./target/release/soak --backend sqlite [--minutes 10] [--workers 8]
//! ./target/release/soak --backend postgres --postgres postgres://postgres@127.0.0.1:5432/postgres \
//!     [--minutes 10] [--restart-postgres true]
//! ```
//!
//! SQLite: one `keygate serve`. PostgreSQL: two replicas on one database,
//! each worker's requests alternating between them, and (unless
//! `--restart-postgres false`) PostgreSQL restarted with `pg_ctlcluster`
//! half-way through. The workers mix `POST /verify`, reads of a key,
//! creates, rotations, deletes and bundle uploads. Every 30 s it prints
//! each server's resident memory; at the end, per operation, how many
//! answers were 2xx, 4xx, 503 and other 5xx, and then it compares what was
//! acknowledged with what the server lists: every key created and not
//! deleted must be there, every key deleted must be gone, every bundle
//! uploaded must be listed. It exits non-zero if any of that fails or any
//! answer was a 5xx other than 503.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keygate_bench::{arg, bootstrap};
use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const VERIFIER: &str = "soak-verifier-token";
const OPERATIONS: [&str; 6] = ["verify", "read", "create", "rotate", "delete", "upload"];

#[derive(Default)]
struct Tally {
    /// Per operation: 2xx, 4xx, 503, other 5xx, transport errors.
    answers: Mutex<BTreeMap<&'static str, [u64; 5]>>,
    created: Mutex<HashSet<i64>>,
    deleted: Mutex<HashSet<i64>>,
    /// Keys that are live for the workers to use: (id, secret).
    live: Mutex<Vec<(i64, String)>>,
    uploaded: Mutex<HashSet<String>>,
    versions: AtomicUsize,
}

impl Tally {
    fn count(&self, operation: &'static str, status: Option<StatusCode>) {
        let slot = match status.map(|s| s.as_u16()) {
            Some(200..=299) => 0,
            Some(400..=499) => 1,
            Some(503) => 2,
            Some(_) => 3,
            None => 4,
        };
        self.answers.lock().expect("tally").entry(operation).or_default()[slot] += 1;
    }
}

struct Soak {
    client: Client,
    servers: Vec<String>,
    admin: String,
    org: String,
    tally: Tally,
    stop: AtomicBool,
}

impl Soak {
    async fn call(
        &self,
        n: usize,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        let base = &self.servers[n % self.servers.len()];
        let mut request = self.client.request(method, format!("{base}{path}")).header("authorization", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    fn pick(&self, n: usize) -> Option<(i64, String)> {
        let live = self.tally.live.lock().expect("live");
        (!live.is_empty()).then(|| live[n % live.len()].clone())
    }

    async fn step(&self, worker: usize, n: usize) {
        let operation = OPERATIONS[(n * 7 + worker) % 10 % OPERATIONS.len()];
        let outcome = match operation {
            "verify" => {
                let Some((_, secret)) = self.pick(n) else { return };
                let base = &self.servers[n % self.servers.len()];
                let response = self
                    .client
                    .post(format!("{base}/verify"))
                    .header("authorization", format!("Bearer {VERIFIER}"))
                    .json(&json!({ "key": secret }))
                    .send()
                    .await
                    .ok();
                response.map(|r| (r.status(), Value::Null))
            }
            "read" => {
                let Some((id, _)) = self.pick(n) else { return };
                self.call(n, Method::GET, &format!("/apikey/{id}"), &self.admin, None).await
            }
            "create" => {
                let body =
                    json!({ "org_id": self.org, "mode": "read", "name": format!("soak {worker}-{n}") });
                let outcome = self.call(n, Method::POST, "/apikey", &self.admin, Some(body)).await;
                if let Some((StatusCode::OK, created)) = &outcome {
                    let id = created["apikey"]["id"].as_i64().expect("id");
                    let secret = created["apikey"]["key"].as_str().expect("key").to_owned();
                    self.tally.created.lock().expect("created").insert(id);
                    self.tally.live.lock().expect("live").push((id, secret));
                }
                outcome
            }
            "rotate" => {
                let Some((id, _)) = self.pick(n) else { return };
                let outcome =
                    self.call(n, Method::POST, &format!("/apikey/{id}/rotate"), &self.admin, None).await;
                if let Some((StatusCode::OK, rotated)) = &outcome {
                    let secret = rotated["apikey"]["key"].as_str().expect("key").to_owned();
                    let mut live = self.tally.live.lock().expect("live");
                    if let Some(entry) = live.iter_mut().find(|(live_id, _)| *live_id == id) {
                        entry.1 = secret;
                    }
                }
                outcome
            }
            "delete" => {
                // Delete only every other time, so that keys accumulate.
                if n.is_multiple_of(2) {
                    return;
                }
                let taken = {
                    let mut live = self.tally.live.lock().expect("live");
                    let len = live.len();
                    (len > 50).then(|| live.swap_remove(n % len))
                };
                let Some((id, _)) = taken else { return };
                let outcome = self.call(n, Method::DELETE, &format!("/apikey/{id}"), &self.admin, None).await;
                match &outcome {
                    Some((StatusCode::OK, _)) => {
                        self.tally.deleted.lock().expect("deleted").insert(id);
                    }
                    // Not acknowledged: it may or may not be gone; use it no more.
                    _ => {
                        self.tally.created.lock().expect("created").remove(&id);
                    }
                }
                outcome
            }
            _ => {
                let version = format!("1.0.{}", self.tally.versions.fetch_add(1, Ordering::Relaxed));
                let base = &self.servers[n % self.servers.len()];
                let response = self
                    .client
                    .post(format!("{base}/bundle?app_id=com.soak.app&version={version}"))
                    .header("authorization", &self.admin)
                    .body(vec![(n % 251) as u8; 1024])
                    .send()
                    .await
                    .ok();
                if response.as_ref().is_some_and(|r| r.status() == StatusCode::OK) {
                    self.tally.uploaded.lock().expect("uploaded").insert(version);
                }
                response.map(|r| (r.status(), Value::Null))
            }
        };
        self.tally.count(operation, outcome.map(|(status, _)| status));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pg_ctlcluster(action: &str) -> bool {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
                .max()
        })
        .map(|v| v.to_string());
    let Some(version) = version else { return false };
    std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action, "-m", "fast"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::main]
async fn main() {
    let backend = arg("--backend").unwrap_or_else(|| "sqlite".into());
    let minutes: f64 = arg("--minutes").map_or(10.0, |m| m.parse().expect("--minutes"));
    let workers: usize = arg("--workers").map_or(8, |w| w.parse().expect("--workers"));
    let restart = arg("--restart-postgres").is_none_or(|v| v == "true");
    let binary = PathBuf::from(arg("--keygate").unwrap_or_else(|| "target/release/keygate".into()));
    assert!(binary.exists(), "{}: build it first (cargo build --release -p keygate)", binary.display());
    let database = match backend.as_str() {
        "sqlite" => TestDatabase::sqlite(),
        "postgres" => {
            let base = arg("--postgres").expect("--postgres postgres://… for the PostgreSQL backend");
            TestDatabase::postgres(&base).await
        }
        other => panic!("--backend sqlite or postgres, not {other}"),
    };
    let owner = bootstrap(&binary, database.url());
    let flags = ["--verifier-token", VERIFIER, "--failed-auth-limit", "0", "--access-log", "false"];
    let replicas = if backend == "postgres" { 2 } else { 1 };
    let servers: Vec<ServerProcess> = (0..replicas)
        .map(|_| {
            ServerProcess::start_with_env(
                &binary,
                database.url(),
                database.dir(),
                &flags,
                &[("KEYGATE_LOG", "info,sqlx=warn")],
            )
        })
        .collect();
    let soak = Arc::new(Soak {
        client: Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
        servers: servers.iter().map(|s| s.base.clone()).collect(),
        admin: owner["key"].as_str().expect("key").to_owned(),
        org: owner["org_id"].as_str().expect("org").to_owned(),
        tally: Tally::default(),
        stop: AtomicBool::new(false),
    });
    let app = json!({ "org_id": soak.org, "app_id": "com.soak.app", "name": "Soak" });
    let (status, body) =
        soak.call(0, Method::POST, "/app", &soak.admin, Some(app)).await.expect("create app");
    assert_eq!(status, StatusCode::OK, "{body}");

    let duration = Duration::from_secs_f64(minutes * 60.0);
    println!(
        "soak: {backend}, {replicas} server(s), {workers} workers, {minutes} min{}",
        if backend == "postgres" && restart { ", PostgreSQL restarted half-way" } else { "" }
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let soak = soak.clone();
            tokio::spawn(async move {
                let mut n = worker;
                while !soak.stop.load(Ordering::Relaxed) {
                    soak.step(worker, n).await;
                    n += 1;
                }
            })
        })
        .collect();
    let pids: Vec<u32> = servers.iter().map(ServerProcess::pid).collect();
    let mut restarted = false;
    let mut rss_samples: Vec<Vec<u64>> = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(30).min(duration.saturating_sub(started.elapsed()))).await;
        let rss: Vec<u64> = pids.iter().map(|&pid| rss_kib(pid)).collect();
        let total: u64 =
            soak.tally.answers.lock().expect("tally").values().map(|a| a.iter().sum::<u64>()).sum();
        println!(
            "  {:>5.0} s  requests {total:>9}  RSS {}",
            started.elapsed().as_secs_f64(),
            rss.iter().map(|k| format!("{:.1} MiB", *k as f64 / 1024.0)).collect::<Vec<_>>().join(" / ")
        );
        rss_samples.push(rss);
        if backend == "postgres" && restart && !restarted && started.elapsed() >= duration / 2 {
            let at = Instant::now();
            let ok = pg_ctlcluster("restart");
            println!(
                "  PostgreSQL restarted ({}) in {:.1} s",
                if ok { "ok" } else { "FAILED" },
                at.elapsed().as_secs_f64()
            );
            restarted = true;
        }
    }
    soak.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();

    println!("\n| operation | 2xx | 4xx | 503 | other 5xx | no answer |\n|---|---|---|---|---|---|");
    let answers = soak.tally.answers.lock().expect("tally").clone();
    let mut other_5xx = 0;
    for (operation, [ok, client, unavailable, server, none]) in &answers {
        println!("| {operation} | {ok} | {client} | {unavailable} | {server} | {none} |");
        other_5xx += server;
    }
    let total: u64 = answers.values().map(|a| a.iter().sum::<u64>()).sum();
    println!("\n{total} requests in {elapsed:.0} s ({:.0}/s)", total as f64 / elapsed);

    // What was acknowledged against what is stored.
    let (status, listed) = soak
        .call(0, Method::GET, &format!("/apikey?org_id={}", soak.org), &soak.admin, None)
        .await
        .expect("list");
    assert_eq!(status, StatusCode::OK, "{listed}");
    let stored: HashSet<i64> =
        listed["data"].as_array().expect("data").iter().filter_map(|k| k["id"].as_i64()).collect();
    let created = soak.tally.created.lock().expect("created").clone();
    let deleted = soak.tally.deleted.lock().expect("deleted").clone();
    let lost: Vec<_> = created.iter().filter(|id| !deleted.contains(id) && !stored.contains(id)).collect();
    let resurrected: Vec<_> = deleted.iter().filter(|id| stored.contains(id)).collect();
    let (status, bundles) =
        soak.call(0, Method::GET, "/bundle?app_id=com.soak.app", &soak.admin, None).await.expect("bundles");
    assert_eq!(status, StatusCode::OK, "{bundles}");
    let listed_versions: HashSet<String> = bundles["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|b| b["version"].as_str().map(String::from))
        .collect();
    let uploaded = soak.tally.uploaded.lock().expect("uploaded").clone();
    let missing_bundles = uploaded.iter().filter(|v| !listed_versions.contains(*v)).count();
    println!(
        "acknowledged: {} keys created, {} deleted, {} bundles uploaded; lost keys {}, deleted keys still there {}, bundles missing {}",
        created.len(),
        deleted.len(),
        uploaded.len(),
        lost.len(),
        resurrected.len(),
        missing_bundles
    );
    let first = rss_samples.first().cloned().unwrap_or_default();
    let last = rss_samples.last().cloned().unwrap_or_default();
    let peak: Vec<u64> =
        (0..pids.len()).map(|i| rss_samples.iter().map(|s| s[i]).max().unwrap_or(0)).collect();
    let mib =
        |v: &[u64]| v.iter().map(|k| format!("{:.1}", *k as f64 / 1024.0)).collect::<Vec<_>>().join(" / ");
    println!("RSS (MiB): first sample {}, last {}, peak {}", mib(&first), mib(&last), mib(&peak));
    drop(servers);
    let failed = other_5xx > 0 || !lost.is_empty() || !resurrected.is_empty() || missing_bundles > 0;
    if failed {
        eprintln!("soak FAILED");
        std::process::exit(1);
    }
}
