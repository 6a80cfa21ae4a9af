//! keygate's request paths against a no-I/O floor measured in the same run.
//!
//! For each configuration asked for (backend × number of keys), this program
//! creates a fresh database, bootstraps it with `keygate bootstrap`, seeds
//! the keys straight into `api_keys` with sqlx (the keys it will present are
//! real ones from `ApiKeySecret::generate`; the rest are random digests of a
//! second tenant), starts the release binary with a verifier token, and then,
//! in `--rounds` interleaved rounds (this machine's speed drifts: compare
//! medians and same-round ratios, not raw rates across runs), drives each
//! workload with N concurrent keep-alive HTTP/1.1 connections for
//! `--seconds`:
//!
//! - floor (a): a bare axum handler returning `{"status":"ok"}`, served by
//!   this program in a process of its own (`--serve-floor`, like keygate a
//!   process apart from the load generator): no I/O, no middleware;
//! - floor (a′), with `verify`: the same bare axum, sent exactly `/verify`'s
//!   requests, parsing the body with serde and answering a verdict-sized
//!   JSON body: what the HTTP stack and serde alone cost for those bytes;
//! - floor (b): keygate's `GET /livez` (no I/O; keygate's layers and log);
//! - `GET /health` (= `/readyz`: one trivial query, and a probe file written and removed);
//! - `POST /verify` over `--present` distinct read keys, cycled;
//! - the same over as many keys with a rate limit and credits (`limited`);
//! - forward auth: `GET /auth` as Traefik or Caddy ask, with the same keys;
//! - authenticated read: `GET /app/:app_id` with those same read keys;
//! - create: `POST /apikey` with the owner's `all` key (a durable write);
//! - delete: `DELETE /apikey/:id` of the keys the create phase made.
//!
//! It prints requests/s, p50 and p99 (medians over the rounds), each rate's
//! ratio to the bare-axum floor and to `/livez` of the same round, the CPU
//! time the server spent per request (every thread of the keygate process,
//! or the floor's runtime threads, from `/proc/…/task/*/schedstat`: unlike
//! a rate, it barely moves when other work on the machine steals cycles),
//! the
//! server's resident memory at listening and its peak (VmHWM), and the time
//! from spawning the process to its `listening` log line; then Markdown
//! tables for the README. The load generator (hyper, one task per
//! connection) runs in this process and shares the machine's cores with the
//! server. Traffic goes to 127.0.0.1 only (and to the PostgreSQL server
//! named by --postgres); every phase ends after `--seconds`.
//!
//! ```text
//! cargo build --release -p keygate -p keygate-bench
//! ./target/release/verification --backend sqlite,postgres --keys 1000,1000000 \
//!     [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--clients 16] [--write-clients 64] \
//!     [--seconds 3] [--rounds 3] [--present 1000] [--keygate target/release/keygate] \
//!     [--server-log info,sqlx=warn] [--workloads verify,limited,auth,read,health,create,delete]
//! ```
//!
//! Defaults: `--backend sqlite --keys 1000`.

mod load;
mod seed;

use load::*;
use seed::*;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use keygate_bench::{arg, arg_list, bootstrap_as, percentiles};
use keygate_core::ApiKeySecret;
use keygate_testkit::{ServerProcess, TestDatabase};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, QueryBuilder};
use uuid::Uuid;

/// The server's log level unless `--server-log` says otherwise: keygate's
/// own default, so that the access log costs what it costs in production
/// (`ServerProcess` alone would log at debug).
const SERVER_LOG: &str = "info,sqlx=warn";
/// Keys per multi-row INSERT of the presented keys (8 parameters each).
const INSERT_BATCH: usize = 1_000;
/// Filler keys per INSERT … SELECT statement.
const FILLER_BATCH: u64 = 200_000;
/// The argument that makes this program the floor's process.
const SERVE_FLOOR: &str = "--serve-floor";
/// How long each workload runs once, unmeasured, before the first round.
const WARM_UP: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

struct Options {
    backends: Vec<Backend>,
    keys: Vec<u64>,
    postgres: String,
    clients: usize,
    write_clients: usize,
    seconds: Duration,
    rounds: usize,
    present: usize,
    binary: PathBuf,
    server_log: String,
    /// The workloads run; both floors always are.
    workloads: Vec<Kind>,
}

impl Options {
    fn parse() -> Self {
        let backends: Vec<Backend> = arg_list("--backend")
            .iter()
            .map(|b| match b.as_str() {
                "sqlite" => Backend::Sqlite,
                "postgres" | "postgresql" => Backend::Postgres,
                other => panic!("--backend {other}: sqlite or postgres"),
            })
            .collect();
        let keys: Vec<u64> = arg_list("--keys")
            .iter()
            .map(|k| k.replace('_', "").parse().unwrap_or_else(|_| panic!("--keys {k}: a number")))
            .map(|k: u64| k.clamp(1, 10_000_000))
            .collect();
        let number = |name: &str, default: f64| -> f64 {
            arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} {v}: a number")))
        };
        Self {
            backends: if backends.is_empty() { vec![Backend::Sqlite] } else { backends },
            keys: if keys.is_empty() { vec![1_000] } else { keys },
            postgres: arg("--postgres")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            clients: number("--clients", 16.0).clamp(1.0, 512.0) as usize,
            write_clients: number("--write-clients", 64.0).clamp(1.0, 512.0) as usize,
            seconds: Duration::from_secs_f64(number("--seconds", 3.0).clamp(0.5, 30.0)),
            rounds: number("--rounds", 3.0).clamp(1.0, 10.0) as usize,
            present: number("--present", 1_000.0).clamp(1.0, 100_000.0) as usize,
            binary: PathBuf::from(arg("--keygate").unwrap_or_else(|| "target/release/keygate".into())),
            server_log: arg("--server-log").unwrap_or_else(|| SERVER_LOG.into()),
            workloads: workloads(&arg_list("--workloads")),
        }
    }
}

// ---------------------------------------------------------------------------
// The floor: a bare axum handler, in a process of its own.

/// The floor's process: this program again, with `--serve-floor`. Like
/// keygate, it is a process apart from the load generator, so both pay the
/// same cross-process wake-ups. (Measured once against the earlier floor on
/// a thread of this process: the same within this machine's noise.)
pub(crate) struct Floor {
    pub(crate) address: SocketAddr,
    pub(crate) pid: u32,
    child: std::process::Child,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_floor() -> Floor {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("this program"))
        .arg(SERVE_FLOOR)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the floor");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("floor stdout");
    std::io::BufReader::new(stdout).read_line(&mut line).expect("floor address");
    let address = line.trim().parse().unwrap_or_else(|_| panic!("floor said {line:?}"));
    Floor { address, pid: child.id(), child }
}

/// `--serve-floor`: serves `GET /` → `{"status":"ok"}`, and `POST /verify`
/// → a verdict-sized body for a `{"key", "action"}` body, on a loopback
/// port, with tokio's default multi-threaded runtime (as keygate has), and
/// prints the address.
async fn serve_floor() {
    #[derive(serde::Deserialize)]
    struct Asked {
        key: String,
        action: Option<String>,
    }
    #[derive(serde::Serialize)]
    struct Answered {
        valid: bool,
        code: &'static str,
        key: Described,
    }
    #[derive(serde::Serialize)]
    struct Described {
        id: i64,
        user_id: Uuid,
        org_id: Uuid,
        mode: String,
        limited_to_apps: Vec<String>,
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind floor");
    println!("{}", listener.local_addr().expect("floor address"));
    let (user_id, org_id) = (Uuid::new_v4(), Uuid::new_v4());
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { axum::Json(json!({ "status": "ok" })) }))
        .route(
            "/verify",
            axum::routing::post(move |axum::Json(asked): axum::Json<Asked>| async move {
                axum::Json(Answered {
                    valid: !asked.key.is_empty(),
                    code: "VALID",
                    key: Described {
                        id: 1_000_042,
                        user_id,
                        org_id,
                        mode: asked.action.unwrap_or_default(),
                        limited_to_apps: Vec::new(),
                    },
                })
            }),
        );
    axum::serve(listener, app).await.expect("floor server");
}

// ---------------------------------------------------------------------------
// The server process.

/// A field of `/proc/<pid>/status` in KiB, such as `VmRSS` or `VmHWM`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// The time of the server's `listening` log line (tracing's RFC 3339 timestamp).
fn listening_at(log: &str) -> Option<DateTime<Utc>> {
    let line = log.lines().find(|l| l.contains(" listening"))?;
    let stamp = line.split_whitespace().next()?;
    DateTime::parse_from_rfc3339(stamp).ok().map(|t| t.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------
// One configuration.

struct Configuration {
    backend: Backend,
    keys: u64,
    seeded_keys: i64,
    seeding: Duration,
    listening_after: Duration,
    rss_at_listening_kib: u64,
    peak_rss_kib: u64,
    /// Per workload (in `Kind::ALL` order), per round.
    samples: Vec<Vec<Sample>>,
    created: usize,
    deleted: usize,
}

impl Configuration {
    fn index(kind: Kind) -> usize {
        Kind::ALL.iter().position(|k| *k == kind).expect("kind")
    }

    fn rounds(&self, kind: Kind) -> &[Sample] {
        &self.samples[Self::index(kind)]
    }

    fn median(&self, kind: Kind, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.rounds(kind).iter().map(f).collect())
    }

    /// The median over the rounds of `kind`'s rate over `base`'s in the same round.
    fn ratio(&self, kind: Kind, base: Kind) -> f64 {
        median(self.rounds(kind).iter().zip(self.rounds(base)).map(|(k, b)| k.rate / b.rate).collect())
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

async fn run_configuration(options: &Options, floor: &Floor, backend: Backend, keys: u64) -> Configuration {
    let db = match backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => TestDatabase::postgres(&options.postgres).await,
    };
    let owner_json = bootstrap_as(&options.binary, db.url(), "bench@example.com", "Bench");
    let other_json = bootstrap_as(&options.binary, db.url(), "filler@example.com", "Filler tenant");
    let (owner, other) = (Tenant::of(&owner_json), Tenant::of(&other_json));
    // The two bootstrap keys count towards `keys`.
    let present = options.present.min(keys.saturating_sub(2).max(1) as usize);
    let filler = keys.saturating_sub(2 + present as u64);
    let presented: Vec<ApiKeySecret> =
        (0..present).map(|_| ApiKeySecret::generate().expect("random key")).collect();
    let limited: Vec<ApiKeySecret> = if options.workloads.contains(&Kind::VerifyLimited) {
        (0..present).map(|_| ApiKeySecret::generate().expect("random key")).collect()
    } else {
        Vec::new()
    };

    eprintln!("{} with {keys} keys: seeding {present} presented + {filler} filler keys…", backend.name());
    let started = Instant::now();
    let seeded_keys = seed(&db, &owner, &other, &presented, &limited, filler).await;
    let seeding = started.elapsed();
    eprintln!("  seeded {seeded_keys} keys in {:.1} s", seeding.as_secs_f64());

    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let spawned_at = SystemTime::now();
    let spawned = Instant::now();
    let server = ServerProcess::start_with_env(
        &options.binary,
        db.url(),
        db.dir(),
        &["--verifier-token", &token],
        // `/auth` is asked as Caddy and Traefik ask (an environment variable:
        // a release without the flag ignores it, so releases compare).
        &[("KEYGATE_LOG", &options.server_log), ("KEYGATE_FORWARD_AUTH_PROXY", "caddy")],
    );
    let polled = spawned.elapsed();
    let listening_after = listening_at(&server.log_text())
        .and_then(|at| (at - DateTime::<Utc>::from(spawned_at)).to_std().ok())
        .unwrap_or(polled);
    let rss_at_listening_kib = proc_status_kib(server.pid(), "VmRSS").unwrap_or(0);
    eprintln!(
        "  listening after {:.0} ms, RSS {:.1} MiB",
        listening_after.as_secs_f64() * 1000.0,
        rss_at_listening_kib as f64 / 1024.0
    );
    let server_address: SocketAddr =
        server.base.trim_start_matches("http://").parse().expect("server address");

    // The app the read keys read.
    let admin = owner_json["key"].as_str().expect("owner key").to_owned();
    let setup = reqwest::Client::new();
    let body = json!({ "app_id": "com.bench.app", "name": "Bench", "org_id": owner.org_id });
    let created =
        setup.post(format!("{}/app", server.base)).header("authorization", &admin).json(&body).send();
    assert_eq!(created.await.expect("create app").status(), 200, "create the app");

    let fixture = Arc::new(Fixture {
        floor: floor.address,
        floor_pid: floor.pid,
        server: server_address,
        server_pid: server.pid(),
        verifier: HeaderValue::from_str(&format!("Bearer {token}")).expect("token header"),
        keys: presented.iter().map(|k| HeaderValue::from_str(k.expose()).expect("key header")).collect(),
        verify_bodies: presented
            .iter()
            .map(|k| Bytes::from(json!({ "key": k.expose(), "action": "read" }).to_string()))
            .collect(),
        limited_bodies: limited
            .iter()
            .map(|k| Bytes::from(json!({ "key": k.expose(), "action": "read" }).to_string()))
            .collect(),
        admin: HeaderValue::from_str(&admin).expect("admin header"),
        create_body: Bytes::from(
            json!({ "org_id": owner.org_id, "mode": "read", "name": "bench created key" }).to_string(),
        ),
        app_path: "/app/com.bench.app".into(),
        deletable: Mutex::new(VecDeque::new()),
    });
    let clients = |kind: Kind| if kind.is_write() { options.write_clients } else { options.clients };

    for &kind in &options.workloads {
        drive(&fixture, kind, clients(kind), WARM_UP).await;
    }
    let mut samples: Vec<Vec<Sample>> = Kind::ALL.iter().map(|_| Vec::new()).collect();
    let (mut created, mut deleted) = (0, 0);
    for round in 1..=options.rounds {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            if !options.workloads.contains(&kind) {
                continue;
            }
            let sample = drive(&fixture, kind, clients(kind), options.seconds).await;
            eprintln!(
                "  round {round} | {:<36} | {:>3} conns | {:>8.0} req/s | p50 {} | p99 {} | {:.1} µs CPU/req",
                kind.label(),
                clients(kind),
                sample.rate,
                ms(sample.p50),
                ms(sample.p99),
                micros(sample.cpu_per_request)
            );
            match kind {
                Kind::Create => created += sample.requests,
                Kind::Delete => deleted += sample.requests,
                _ => {}
            }
            samples[i].push(sample);
        }
    }
    let peak_rss_kib = proc_status_kib(server.pid(), "VmHWM").unwrap_or(0);
    drop(server);
    Configuration {
        backend,
        keys,
        seeded_keys,
        seeding,
        listening_after,
        rss_at_listening_kib,
        peak_rss_kib,
        samples,
        created,
        deleted,
    }
}

/// The workloads named (`health`, `verify`, `read`, `create`, `delete`),
/// with both floors; all of them when none is named.
fn workloads(names: &[String]) -> Vec<Kind> {
    if names.is_empty() {
        return Kind::ALL.to_vec();
    }
    let named: Vec<Kind> = names
        .iter()
        .map(|name| match name.as_str() {
            "health" => Kind::Health,
            "verify" => Kind::Verify,
            "limited" => Kind::VerifyLimited,
            "auth" => Kind::Auth,
            "read" => Kind::Read,
            "create" => Kind::Create,
            "delete" => Kind::Delete,
            other => panic!("--workloads {other}: health, verify, limited, auth, read, create or delete"),
        })
        .collect();
    let verify = named.contains(&Kind::Verify);
    Kind::ALL
        .into_iter()
        .filter(|k| {
            matches!(k, Kind::Floor | Kind::Livez) || (*k == Kind::FloorVerify && verify) || named.contains(k)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Output.

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms_f(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1000.0)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn keys_label(keys: u64) -> String {
    match keys {
        k if k >= 1_000_000 && k % 1_000_000 == 0 => format!("{}M", k / 1_000_000),
        k if k >= 1_000 && k % 1_000 == 0 => format!("{}k", k / 1_000),
        k => k.to_string(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_report(options: &Options, configurations: &[Configuration]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "keygate verification benchmark: {cores} cores, loopback; the load generator (hyper, one task per \
         connection, in this process) and the bare-axum floor (a process of its own) share the cores with the server."
    );
    println!(
        "{} connections for reads, {} for writes; {} interleaved rounds of {:.1} s per workload; \
         medians over the rounds; ratios are per-round rate ratios (median).",
        options.clients,
        options.write_clients,
        options.rounds,
        options.seconds.as_secs_f64()
    );
    println!();
    println!(
        "| backend | keys | workload | conns | req/s | p50 | p99 | × bare axum | × /livez | × bare axum, same bytes | server CPU per request | × bare axum's CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in configurations {
        for kind in Kind::ALL.into_iter().filter(|k| !c.rounds(*k).is_empty()) {
            let conns = if kind.is_write() { options.write_clients } else { options.clients };
            let versus_livez =
                if kind.is_floor() { "".to_owned() } else { format!("{:.2}", c.ratio(kind, Kind::Livez)) };
            let verifies = matches!(kind, Kind::Verify | Kind::VerifyLimited);
            let versus_same_bytes = if verifies && !c.rounds(Kind::FloorVerify).is_empty() {
                format!("{:.2}", c.ratio(kind, Kind::FloorVerify))
            } else {
                "".to_owned()
            };
            let cpu = c.median(kind, |s| s.cpu_per_request.as_secs_f64());
            let cpu_versus_floor = cpu / c.median(Kind::Floor, |s| s.cpu_per_request.as_secs_f64());
            println!(
                "| {} | {} | {} | {conns} | {} | {} | {} | {:.2} | {versus_livez} | {versus_same_bytes} | {:.1} µs | {cpu_versus_floor:.2} |",
                c.backend.name(),
                keys_label(c.keys),
                kind.label(),
                thousands(c.median(kind, |s| s.rate)),
                ms_f(c.median(kind, |s| s.p50.as_secs_f64())),
                ms_f(c.median(kind, |s| s.p99.as_secs_f64())),
                c.ratio(kind, Kind::Floor),
                cpu * 1e6,
            );
        }
    }
    println!();
    println!(
        "| backend | keys | seeding | listening after | RSS at listening | peak RSS (VmHWM) | created / deleted |"
    );
    println!("|---|---|---|---|---|---|---|");
    for c in configurations {
        println!(
            "| {} | {} ({} rows) | {:.1} s | {:.0} ms | {} | {} | {} / {} |",
            c.backend.name(),
            keys_label(c.keys),
            thousands(c.seeded_keys as f64),
            c.seeding.as_secs_f64(),
            c.listening_after.as_secs_f64() * 1000.0,
            mib(c.rss_at_listening_kib),
            mib(c.peak_rss_kib),
            thousands(c.created as f64),
            thousands(c.deleted as f64),
        );
    }
    // Limits against none: the same keys' verification, same rounds.
    let limited: Vec<&Configuration> = configurations
        .iter()
        .filter(|c| !c.rounds(Kind::VerifyLimited).is_empty() && !c.rounds(Kind::Verify).is_empty())
        .collect();
    if !limited.is_empty() {
        println!();
        println!(
            "| backend | keys | `/verify` with a rate limit and credits ÷ without | server CPU per request, with / without |"
        );
        println!("|---|---|---|---|");
        for c in limited {
            let cpu = |kind| c.median(kind, |s| s.cpu_per_request.as_secs_f64()) * 1e6;
            println!(
                "| {} | {} | {:.2} | {:.1} µs / {:.1} µs |",
                c.backend.name(),
                keys_label(c.keys),
                c.ratio(Kind::VerifyLimited, Kind::Verify),
                cpu(Kind::VerifyLimited),
                cpu(Kind::Verify)
            );
        }
    }
    // Many keys against few, per backend: raw, and normalised by each run's
    // floor (the runs are minutes apart and the machine drifts).
    let mut compared = false;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let of = |c: &&Configuration| c.backend == backend;
        let (Some(few), Some(many)) = (
            configurations.iter().filter(of).min_by_key(|c| c.keys),
            configurations.iter().filter(of).max_by_key(|c| c.keys),
        ) else {
            continue;
        };
        if few.keys == many.keys {
            continue;
        }
        if !compared {
            println!();
            println!(
                "| backend | workload | req/s, most / fewest keys | same, each normalised by its bare-axum floor |"
            );
            println!("|---|---|---|---|");
            compared = true;
        }
        for kind in [Kind::Verify, Kind::Auth, Kind::Read, Kind::Create, Kind::Delete] {
            if few.rounds(kind).is_empty() || many.rounds(kind).is_empty() {
                continue;
            }
            let raw = many.median(kind, |s| s.rate) / few.median(kind, |s| s.rate);
            let normalised = many.ratio(kind, Kind::Floor) / few.ratio(kind, Kind::Floor);
            println!(
                "| {} | {} | {raw:.2} ({} / {}) | {normalised:.2} |",
                backend.name(),
                kind.label(),
                keys_label(many.keys),
                keys_label(few.keys)
            );
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == SERVE_FLOOR) {
        return serve_floor().await;
    }
    let options = Options::parse();
    assert!(
        options.binary.exists(),
        "{}: build it first: cargo build --release -p keygate (or pass --keygate PATH)",
        options.binary.display()
    );
    let floor = start_floor();
    let started = Instant::now();
    let mut configurations = Vec::new();
    for &backend in &options.backends {
        for &keys in &options.keys {
            configurations.push(run_configuration(&options, &floor, backend, keys).await);
        }
    }
    print_report(&options, &configurations);
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_read_well() {
        assert_eq!(super::thousands(1234567.4), "1,234,567");
        assert_eq!(super::thousands(999.0), "999");
        assert_eq!(super::keys_label(1_000_000), "1M");
        assert_eq!(super::keys_label(1_000), "1k");
        assert_eq!(super::keys_label(1_500), "1500");
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn the_listening_line_is_dated() {
        let log = "2025-01-02T03:04:05.123456Z  INFO keygate::cli: listening address=127.0.0.1:1\n";
        let at = super::listening_at(log).expect("time");
        assert_eq!(at.timestamp_subsec_micros(), 123456);
    }
}
