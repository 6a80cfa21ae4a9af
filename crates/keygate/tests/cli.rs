//! The `keygate` binary itself: its commands' output, start-up on an empty
//! database, graceful shutdown, durability across `kill -9`, and secrets
//! kept out of logs and out of the database file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use keygate_testkit::ServerProcess;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keygate");

struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn database(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("keygate.db")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--database", &self.database()])
            .current_dir(self.dir.path())
            .env_remove("KEYGATE_DATABASE_URL")
            .output()
            .expect("run keygate")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "keygate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(stdout.lines().count(), 1, "stdout is one JSON object: {stdout:?}");
        serde_json::from_str(&stdout).expect("JSON on stdout")
    }

    fn bootstrap(&self, email: &str, org: &str) -> Value {
        self.json(&["bootstrap", "--email", email, "--org-name", org])
    }

    /// Every byte the database holds: the file and its WAL.
    fn stored_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.db_path().into_os_string();
            path.push(suffix);
            if let Ok(bytes) = std::fs::read(&path) {
                all.extend(bytes);
            }
        }
        all
    }
}

/// `keygate serve` on this work directory's database.
struct Server(ServerProcess);

impl Server {
    fn start(work: &Workdir, extra: &[&str]) -> Self {
        Self(ServerProcess::start(Path::new(BIN), &work.database(), work.dir.path(), extra))
    }

    fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
        http(method, &format!("{}{}", self.0.base, path), key, body)
    }
}

impl std::ops::Deref for Server {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.0
    }
}

/// One request over a fresh connection, blocking: these tests need no async runtime.
fn http(method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(key) = key {
        request.push_str(&format!("authorization: {key}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let (head, payload) = response.split_once("\r\n\r\n").expect("http response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

#[test]
fn bootstrap_prints_one_json_object_and_can_onboard_more_tenants() {
    let work = Workdir::new();
    let first = work.bootstrap("Owner@Example.com", "Acme");
    for field in ["user_id", "org_id"] {
        uuid::Uuid::parse_str(first[field].as_str().expect(field)).expect("a UUID");
    }
    assert_eq!(first["key_id"], 1);
    assert!(keygate_core::ApiKeySecret::parse(first["key"].as_str().expect("key")).is_ok());

    // Fourteenth review: anyone who invited an address could have made its
    // account, so the operator says so before it is used again.
    let unconfirmed = work.run(&["bootstrap", "--email", "owner@example.com", "--org-name", "Second"]);
    let stderr = String::from_utf8_lossy(&unconfirmed.stderr);
    assert!(!unconfirmed.status.success() && stderr.contains("--existing-account"), "{stderr}");
    let second = work.json(&[
        "bootstrap",
        "--email",
        "owner@example.com",
        "--org-name",
        "Second",
        "--existing-account",
    ]);
    assert_eq!(second["user_id"], first["user_id"], "same email, same user");
    assert_ne!(second["org_id"], first["org_id"]);
    let third = work.bootstrap("other@example.com", "Third");
    assert_ne!(third["user_id"], first["user_id"]);
}

#[test]
fn audit_prints_the_instances_own_log_one_json_object_per_line_newest_first() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let org = owner["org_id"].as_str().expect("org");
    let member = work.json(&["user", "add", "--email", "dev@example.com", "--org", org, "--role", "write"]);
    let out = work.run(&["audit"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let created: Vec<&Value> = events.iter().map(|e| &e["target_id"]).collect();
    assert_eq!(created, [&member["user_id"], &owner["user_id"]], "newest first: {events:?}");
    assert!(events.iter().all(|e| e["action"] == "user.create" && e["actor_user_id"].is_null()));
    // Paged: older than the newest.
    let older = work.run(&["audit", "--before", &events[0]["id"].to_string(), "--limit", "5"]);
    assert_eq!(String::from_utf8(older.stdout).expect("utf-8").lines().count(), 1);
    // The email is never on record: the user's id is.
    let all = serde_json::to_string(&events).expect("json");
    assert!(!all.contains("example.com"), "{all}");
}

#[test]
fn user_add_enrolls_a_member_and_issues_a_key_only_when_asked() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let org = owner["org_id"].as_str().expect("org");
    let member = work.json(&["user", "add", "--email", "dev@example.com", "--org", org, "--role", "write"]);
    assert_eq!(member, json!({ "user_id": member["user_id"], "org_id": org, "role": "write" }), "no key");
    assert_ne!(member["user_id"], owner["user_id"]);
    let keyed = work.json(&[
        "user",
        "add",
        "--email",
        "dev@example.com",
        "--org",
        org,
        "--role",
        "write",
        "--issue-key",
    ]);
    assert_eq!(keyed["user_id"], member["user_id"]);
    assert!(keyed["key"].as_str().is_some_and(|k| k.starts_with("ak_")), "{keyed}");
    // Changing a role mints nothing.
    let again = work.json(&["user", "add", "--email", "dev@example.com", "--org", org, "--role", "admin"]);
    assert_eq!(
        (again["user_id"].clone(), again["role"].clone()),
        (member["user_id"].clone(), json!("admin"))
    );
    assert!(again.get("key").is_none(), "{again}");
}

#[test]
fn cli_errors_go_to_stderr_with_a_failing_status() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let org = owner["org_id"].as_str().expect("org");
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (args, says) in [
        (
            vec!["user", "add", "--email", "a@example.com", "--org", unknown, "--role", "read"],
            "does not exist",
        ),
        (vec!["user", "add", "--email", "a@example.com", "--org", org, "--role", "owner"], "super_admin"),
        (vec!["user", "add", "--email", "a@example.com", "--org", "acme", "--role", "read"], "--org"),
        (vec!["user", "add", "--email", "not-an-email", "--org", org, "--role", "read"], "email"),
        (vec!["bootstrap", "--email", "a@example.com", "--org-name", "  "], "org-name"),
        // The last super_admin cannot be downgraded.
        (vec!["user", "add", "--email", "owner@example.com", "--org", org, "--role", "read"], "super_admin"),
    ] {
        let out = work.run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: stderr {stderr:?} does not mention {says}");
    }
}

#[test]
fn an_unknown_database_scheme_is_refused() {
    let work = Workdir::new();
    let out = Command::new(BIN)
        .args([
            "bootstrap",
            "--email",
            "a@example.com",
            "--org-name",
            "A",
            "--database",
            "mysql://root:hunter2@db/x",
        ])
        .current_dir(work.dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database scheme `mysql:`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "credentials leaked: {stderr}");
    // Fourteenth review: PostgreSQL echoed `u:PW@h/db` as a database name.
    let out = Command::new(BIN)
        .args(["audit", "--database", "postgres:u:UNPARSEPW@127.0.0.1/db"])
        .current_dir(work.dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("begins with postgres://"), "{stderr}");
    assert!(!stderr.contains("UNPARSEPW"), "credentials leaked: {stderr}");
}

#[test]
fn an_unreachable_postgresql_says_why() {
    let work = Workdir::new();
    // Nothing listens on port 1.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "postgres://keygate:secret@127.0.0.1:1/keygate",
        ])
        .current_dir(work.dir.path())
        .env_remove("KEYGATE_DATABASE_URL")
        .output()
        .expect("run keygate");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cannot connect to PostgreSQL") && said.contains("refused"), "{said}");
    assert!(!said.contains("secret"), "the password never shows: {said}");
}

#[test]
fn serve_on_an_empty_database_explains_how_to_bootstrap_and_creates_nothing() {
    let work = Workdir::new();
    let server = Server::start(&work, &[]);
    assert_eq!(server.call("GET", "/health", None, None), (200, json!({ "status": "ok" })));
    let log = server.log_text();
    assert!(log.contains("keygate bootstrap --email"), "no hint in {log}");
    server.signal("-TERM");
    let (status, stdout) = server.0.wait(Duration::from_secs(10));
    assert!(status.success());
    assert!(stdout.is_empty(), "nothing is printed: {stdout:?}");
    // Nobody was created silently: the first bootstrap gets key 1.
    assert_eq!(work.bootstrap("owner@example.com", "Acme")["key_id"], 1);
}

#[test]
fn serve_bootstraps_once_with_an_email() {
    let work = Workdir::new();
    let server = Server::start(&work, &["--bootstrap-email", "owner@example.com"]);
    let (_, listed) = server.call("GET", "/health", None, None);
    assert_eq!(listed["status"], "ok");
    server.signal("-INT");
    let (status, stdout) = server.0.wait(Duration::from_secs(10));
    assert!(status.success());
    let printed: Value = serde_json::from_str(stdout.trim()).expect("bootstrap JSON on stdout");
    let key = printed["key"].as_str().expect("key");

    let server = Server::start(&work, &["--bootstrap-email", "owner@example.com"]);
    let (status_code, body) = server.call("GET", "/apikey", Some(key), None);
    assert_eq!(status_code, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    let log = server.log_text();
    assert!(log.contains("--bootstrap-email is ignored"), "no word of the ignored email: {log}");
    server.signal("-TERM");
    let (_, stdout) = server.0.wait(Duration::from_secs(10));
    assert!(stdout.is_empty(), "bootstrapped twice: {stdout:?}");
}

#[test]
fn start_up_says_what_serves_where_and_a_port_alone_is_an_address() {
    let work = Workdir::new();
    work.bootstrap("owner@example.com", "Acme");
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let log_path = work.dir.path().join("port-alone.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &port.to_string(), "--database", &work.database()])
        .current_dir(work.dir.path())
        .env("KEYGATE_LOG", "info")
        .env_remove("KEYGATE_DATABASE_URL")
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains(" listening") {
            break log;
        }
        assert!(Instant::now() < deadline, "did not listen: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (status, root) = http("GET", &format!("http://127.0.0.1:{port}/"), None, None);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert_eq!(
        (root["service"].clone(), root["openapi"].clone()),
        (json!("keygate"), json!("/openapi.json"))
    );
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    for expected in [
        format!("listening address=127.0.0.1:{port}"),
        "database=sqlite://".to_owned(),
        "bundles=directory ".to_owned(),
        format!("console=http://127.0.0.1:{port}/console"),
        format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(log.contains(&expected), "no `{expected}` in {log}");
    }

    let refused = work.run(&["serve", "--listen", "localhost-ish"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("expected HOST:PORT such as 127.0.0.1:8080"), "{said}");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key");
    let server = Server::start(&work, &[]);
    let mut created = Vec::new();
    for i in 0..20 {
        let body = json!({ "org_id": owner["org_id"], "mode": "read", "name": format!("key {i}") });
        let (status, reply) = server.call("POST", "/apikey", Some(admin), Some(body));
        assert_eq!(status, 200, "{reply}");
        created.push(reply["apikey"]["key"].as_str().expect("key").to_owned());
    }
    let (status, _) = server.call("DELETE", &format!("/apikey/{}", created[0]), Some(admin), None);
    assert_eq!(status, 200);
    drop(server); // SIGKILL, no chance to clean up

    let server = Server::start(&work, &[]);
    let (_, listed) = server.call("GET", "/apikey", Some(admin), None);
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(20), "bootstrap key + 19 survivors");
    for key in &created[1..] {
        let (status, _) = server.call("GET", "/apikey", Some(key), None);
        assert_eq!(status, 403, "a read key authenticates, and may not manage keys");
    }
    let (status, _) = server.call("GET", "/apikey", Some(&created[0]), None);
    assert_eq!(status, 401, "the deletion survived too");
}

/// A bootstrapped server with the app `com.acme.app`: the server, the
/// owner's key, the server's address and a connection to it.
fn with_an_app(work: &Workdir) -> (Server, String, String, std::net::TcpStream) {
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key").to_owned();
    let server = Server::start(work, &[]);
    let body = json!({ "app_id": "com.acme.app", "name": "App", "org_id": owner["org_id"] });
    assert_eq!(server.call("POST", "/app", Some(&admin), Some(body)).0, 200);
    let address = server.0.base.trim_start_matches("http://").to_owned();
    let stream = std::net::TcpStream::connect(&address).expect("connect");
    (server, admin, address, stream)
}

/// The head of an upload of `length` bytes as bundle 1.0.0 of `com.acme.app`.
fn upload_head(address: &str, admin: &str, length: usize) -> String {
    format!(
        "POST /bundle?app_id=com.acme.app&version=1.0.0 HTTP/1.1\r\nhost: {address}\r\n\
         authorization: {admin}\r\nconnection: close\r\ncontent-length: {length}\r\n\r\n"
    )
}

#[test]
fn files_a_crash_left_in_the_blob_directory_are_removed_at_start() {
    use std::io::Write;
    let work = Workdir::new();
    let (server, admin, address, mut stream) = with_an_app(&work);
    let admin = admin.as_str();
    let upload = upload_head(&address, admin, 5);
    stream.write_all(upload.as_bytes()).expect("upload");
    stream.write_all(b"hello").expect("upload");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    server.signal("-KILL");
    drop(server);

    // What a crash between the steps of an upload leaves, and a file of the operator's.
    let blobs = work.dir.path().join("keygate-blobs");
    let kept: Vec<_> =
        std::fs::read_dir(&blobs).expect("blobs").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(kept.len(), 1, "one blob: {kept:?}");
    let orphans = [".upload-0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"];
    for name in orphans {
        std::fs::write(blobs.join(name), b"left behind").expect("write");
    }
    std::fs::write(blobs.join("README.txt"), b"not keygate's").expect("write");

    let server = Server::start(&work, &[]);
    for name in orphans {
        assert!(!blobs.join(name).exists(), "{name} was left");
    }
    assert!(blobs.join("README.txt").exists(), "a file keygate does not name stays");
    assert!(blobs.join(&kept[0]).exists(), "the bundle's blob stays");
    let (status, _) =
        server.call("GET", "/bundle/download?app_id=com.acme.app&version=1.0.0", Some(admin), None);
    assert_eq!(status, 200);
    assert!(server.log_text().contains("removed blob files that no bundle refers to"));
}

#[test]
fn sigterm_finishes_cleanly_and_keeps_last_use() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key");
    let server = Server::start(&work, &[]);
    assert_eq!(server.call("GET", "/apikey", Some(admin), None).0, 200);
    server.signal("-TERM");
    let (status, _) = server.0.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");

    let server = Server::start(&work, &[]);
    let (_, listed) = server.call("GET", "/apikey", Some(admin), None);
    assert!(listed["data"][0]["last_used_at"].is_string(), "use written at shutdown: {listed}");
}

#[test]
fn an_in_flight_request_finishes_after_sigterm() {
    use std::io::Write;
    let work = Workdir::new();
    let (server, admin, address, mut stream) = with_an_app(&work);
    let admin = admin.as_str();

    // Half an upload, then SIGTERM, then the rest: the upload must complete.
    let head = upload_head(&address, admin, 2000);
    // Counted before anything is sent: the server logs the request as soon
    // as it has read the head.
    let started = |log: &str| log.matches("started processing request").count();
    let before = started(&server.log_text());
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(&[7u8; 1000]).expect("send half");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while started(&server.log_text()) == before {
        assert!(std::time::Instant::now() < deadline, "the upload never started: {}", server.log_text());
        std::thread::sleep(Duration::from_millis(10));
    }
    server.signal("-TERM");
    server.wait_for_log("shutting down", Duration::from_secs(10));
    stream.write_all(&[7u8; 1000]).expect("send the rest");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "the in-flight upload failed: {response}");
    let (status, _) = server.0.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");

    let server = Server::start(&work, &[]);
    let (_, listed) = server.call("GET", "/bundle?app_id=com.acme.app", Some(admin), None);
    assert_eq!(listed["data"][0]["size"], 2000, "{listed}");
}

#[test]
fn secrets_never_reach_the_log_or_the_database() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key").to_owned();
    let server = Server::start(&work, &[]);
    let mut secrets = vec![admin.clone()];
    for mode in ["read", "all"] {
        let body = json!({ "org_id": owner["org_id"], "mode": mode });
        let (_, reply) = server.call("POST", "/apikey", Some(&admin), Some(body));
        secrets.push(reply["apikey"]["key"].as_str().expect("key").to_owned());
    }
    let (status, _) = server.call("GET", &format!("/apikey/{}", secrets[1]), Some(&admin), None);
    assert_eq!(status, 200);
    let (status, _) = server.call("DELETE", &format!("/apikey/{}/", secrets[2]), Some(&admin), None);
    assert_eq!(status, 200);
    let (status, _) = server.call("GET", "/apikey", Some(&secrets[2]), None);
    assert_eq!(status, 401);
    let encoded = format!("/apikey/%61k_{}", &secrets[1][3..]);
    let (status, _) = server.call("GET", &encoded, Some(&admin), None);
    assert_eq!(status, 200, "a percent-encoded key is still the key, and must still be masked in the log");
    // A live key pasted where a value goes (stored as that value when it is
    // a valid one, which is the user's choice) never reaches the log.
    let pasted = {
        let body = json!({ "org_id": owner["org_id"], "mode": "read" });
        let (_, reply) = server.call("POST", "/apikey", Some(&admin), Some(body));
        reply["apikey"]["key"].as_str().expect("key").to_owned()
    };
    let org = owner["org_id"].as_str().expect("org");
    for (path, body) in [
        ("/app", json!({ "org_id": org, "app_id": pasted, "name": "x" })),
        ("/app", json!({ "org_id": org, "app_id": format!("com.{pasted}"), "name": pasted })),
        ("/app", json!({ "org_id": org, "app_id": "com.acme.x", "name": pasted, "extra": pasted })),
        ("/apikey", json!({ "org_id": org, "mode": "read", "name": pasted })),
        ("/apikey", json!({ "org_id": org, "mode": pasted })),
        ("/apikey", json!({ "org_id": pasted, "mode": "read" })),
        ("/organization", json!({ "name": pasted })),
        ("/organization/members", json!({ "org_id": org, "email": pasted, "role": "read" })),
        ("/organization/members", json!({ "org_id": org, "email": "a@example.com", "role": pasted })),
        ("/verify", json!({ "key": pasted })),
    ] {
        let (status, reply) = server.call("POST", path, Some(&admin), Some(body));
        assert!(status < 500, "{path}: {status} {reply}");
        if status >= 400 {
            assert!(!reply.to_string().contains(&pasted[3..20]), "{path}: an error echoes the key: {reply}");
        }
    }
    let (status, _) = server.call("GET", &format!("/app/com.{pasted}?org_id={pasted}"), Some(&admin), None);
    assert!(status < 500);
    secrets.push(pasted);
    server.signal("-TERM");
    let log_path = server.log_path().to_owned();
    server.0.wait(Duration::from_secs(10));
    // Read once the process is gone, so that shutdown's lines are checked too.
    let log = std::fs::read_to_string(log_path).expect("server log");

    assert!(log.contains("ak_[redacted]"), "the access log shows requests: {log}");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        assert!(!log.contains(&secret[3..20]), "part of a secret is in the log: {log}");
    }
    secrets.pop();
    let stored = work.stored_bytes();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        assert!(!log.contains(&secret[3..20]), "part of a secret is in the log");
        let needle = secret.as_bytes();
        assert!(!stored.windows(needle.len()).any(|w| w == needle), "a secret is in the database");
    }
    assert!(Path::new(&work.db_path()).exists());
}

#[test]
fn the_access_log_names_route_and_status_masks_keys_and_can_be_turned_off() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key").to_owned();
    let start = |extra: &[&str], log: &str| {
        Server(ServerProcess::start_with_env(
            Path::new(BIN),
            &work.database(),
            work.dir.path(),
            extra,
            &[("KEYGATE_LOG", log)],
        ))
    };
    // The default level: the access log is on.
    let server = start(&[], "info,sqlx=warn");
    let (status, _) = server.call("GET", &format!("/apikey/{admin}"), Some(&admin), None);
    assert_eq!(status, 200);
    // A query never reaches the log (only the path is copied).
    server.call("GET", "/apikey?secret_query=abc", Some(&admin), None);
    let (status, _) = server.call("GET", "/livez", None, None);
    assert_eq!(status, 200);
    server.wait_for_log("path=/livez", Duration::from_secs(5));
    let log = server.log_text();
    assert!(log.contains("path=/apikey route=/apikey "), "{log}");
    assert!(!log.contains("secret_query"), "a query is in the log: {log}");
    let line = log
        .lines()
        .find(|l| l.contains("INFO keygate::access: served") && l.contains("route=/apikey/{id_or_key}"))
        .unwrap_or_else(|| panic!("no access log line for the key's path: {log}"));
    for field in ["method=GET", "path=/apikey/ak_[redacted]", "status=200", " ms=", "client=127.0.0.1"] {
        assert!(line.contains(field), "{field} is not in {line:?}");
    }
    assert!(!log.contains(&admin) && !log.contains(&admin[3..20]), "a key is in the log: {log}");
    assert!(!log.contains("started processing request"), "debug lines at the default level: {log}");
    drop(server);

    for (extra, level) in [(&["--access-log=false"][..], "info"), (&[][..], "info,keygate::access=off")] {
        let server = start(extra, level);
        let (status, _) = server.call("GET", "/livez", None, None);
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(300));
        let log = server.log_text();
        assert!(!log.contains("keygate::access"), "{extra:?} {level}: the access log is still on: {log}");
        assert!(log.contains("listening"), "{log}");
    }
}

/// `--log-format json`: every line on stderr is one JSON object, the
/// access log's too, with no key in any of them.
#[test]
fn the_json_log_is_one_object_per_line_access_log_included() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let admin = owner["key"].as_str().expect("key").to_owned();
    let server = Server::start(&work, &["--log-format", "json"]);
    let (status, _) = server.call("GET", &format!("/apikey/{admin}"), Some(&admin), None);
    assert_eq!(status, 200);
    server.wait_for_log("\"route\":\"/apikey/{id_or_key}\"", Duration::from_secs(5));
    let log = server.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
        })
        .collect();
    let started = lines.iter().find(|l| l["message"] == "database ready").expect("the start line");
    assert_eq!(started["version"], env!("CARGO_PKG_VERSION"));
    assert!(started["commit"].as_str().is_some_and(|c| !c.is_empty()), "{started}");
    let served = lines
        .iter()
        .find(|l| l["target"] == "keygate::access" && l["route"] == "/apikey/{id_or_key}")
        .expect("the access line");
    assert_eq!(
        (served["status"].as_u64(), served["path"].as_str()),
        (Some(200), Some("/apikey/ak_[redacted]"))
    );
    assert!(!log.contains(&admin[3..20]), "a key is in the log: {log}");
}

/// `--config FILE`: its values are what `serve` runs with, an environment
/// variable wins over the file and a flag over both; `config check` says
/// which is which, tokens hidden; a key that is no flag stops `serve`.
#[test]
fn a_configuration_file_sets_serve_below_the_environment_and_flags() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let config = work.dir.path().join("keygate.toml");
    std::fs::write(
        &config,
        "verifier-token = [\"file-token\"]\nfailed-auth-limit = 7\nmax-connections = 50\nrequest-timeout = 30\n",
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let check = Command::new(BIN)
        .args(["config", "check", "--config", &config, "--request-timeout", "20"])
        .env("KEYGATE_MAX_CONNECTIONS", "60")
        .env_remove("KEYGATE_FAILED_AUTH_LIMIT")
        .output()
        .expect("config check");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let printed = String::from_utf8(check.stdout).expect("utf-8");
    for line in [
        "verifier-token = [\"[hidden]\"]  # file",
        "failed-auth-limit = \"7\"  # file",
        "max-connections = \"60\"  # environment, KEYGATE_MAX_CONNECTIONS",
        "request-timeout = \"20\"  # flag",
        "header-read-timeout = \"10\"  # default",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} is not in:\n{printed}");
    }
    assert!(!printed.contains("file-token"), "a token is printed: {printed}");

    let server = Server::start(&work, &["--config", &config]);
    let key = owner["key"].as_str().expect("key");
    let (status, verdict) = http(
        "POST",
        &format!("{}/verify", server.base),
        Some("Bearer file-token"),
        Some(serde_json::json!({ "key": key })),
    );
    assert_eq!(
        (status, verdict["code"].as_str()),
        (200, Some("VALID")),
        "the file's verifier token: {verdict}"
    );
    drop(server);

    std::fs::write(work.dir.path().join("bad.toml"), "verifier-tokens = [\"x\"]\n").expect("bad config");
    let out = work.run(&["serve", "--config", "bad.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml: unknown key `verifier-tokens`"), "{stderr}");
}

/// `migrate --dry-run` lists what would change and changes nothing; a
/// database a newer keygate migrated is refused by every command, with
/// both versions named.
#[test]
fn migrate_lists_pending_steps_and_a_newer_database_is_refused() {
    let work = Workdir::new();
    work.bootstrap("owner@example.com", "Acme");
    let out = work.run(&["migrate", "--dry-run"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.starts_with("up to date: step "), "{printed}");

    let url = work.database();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let run = |statement: &'static str| {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::SqliteConnection::connect(&url).await.expect("open");
            sqlx::query(statement).execute(&mut connection).await.expect(statement);
            connection.close().await.expect("close");
        })
    };
    // The newest step's record gone: it is pending again (the dry run only
    // lists it; nothing is applied).
    run(
        "CREATE TABLE kept AS SELECT * FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    );
    run("DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM kept)");
    let stored = || {
        ["", "-wal"]
            .map(|suffix| std::fs::read(format!("{}{suffix}", work.db_path().display())).unwrap_or_default())
    };
    let before = stored();
    let out = work.run(&["migrate", "--dry-run"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(printed.lines().filter(|l| l.starts_with("would apply ")).count(), 1, "{printed}");
    assert!(printed.contains("this release is at step"), "{printed}");
    assert!(stored() == before, "a dry run changed the database or its write-ahead log");
    run("INSERT INTO _sqlx_migrations SELECT * FROM kept");

    run("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)");
    for args in [&["migrate", "--dry-run"][..], &["migrate"], &["audit"]] {
        let out = work.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran on a newer database");
        assert!(
            stderr.contains("migrated by a newer keygate") && stderr.contains("9999"),
            "{args:?}: {stderr}"
        );
    }
    let serve = work.run(&["serve", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success() && stderr.contains("migrated by a newer keygate"), "{stderr}");
}

/// `keygate health`: 0 while the server answers, 3 when nothing does.
#[test]
fn health_says_whether_the_server_answers() {
    let work = Workdir::new();
    work.bootstrap("owner@example.com", "Acme");
    let server = Server::start(&work, &[]);
    let health = |base: &str| Command::new(BIN).args(["health", "--url", base]).output().expect("health");
    let alive = health(&server.base);
    assert!(alive.status.success(), "{}", String::from_utf8_lossy(&alive.stderr));
    let base = server.base.clone();
    drop(server);
    assert_eq!(health(&base).status.code(), Some(3), "nothing answers there any more");
}

#[test]
fn the_version_names_the_commit() {
    let out = Command::new(BIN).arg("--version").output().expect("run");
    let version = String::from_utf8(out.stdout).expect("utf-8");
    let expected = format!("keygate {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected) && version.trim_end().ends_with(')'), "{version}");
}

#[test]
fn metrics_listen_moves_metrics_to_their_own_listener() {
    let work = Workdir::new();
    work.bootstrap("owner@example.com", "Acme");
    let server = Server::start(&work, &["--metrics-listen", "127.0.0.1:0"]);
    server.wait_for_log("metrics on their own listener", Duration::from_secs(5));
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains("metrics on their own listener")).expect("the line");
    let address =
        line.split("address=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("address");
    let url = format!("http://{address}/metrics");
    let rest = url.strip_prefix("http://").expect("url");
    let (host, _) = rest.split_once('/').expect("path");
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    write!(stream, "GET /metrics HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    let (status, _) = server.call("GET", "/metrics", None, None);
    assert_eq!(status, 404, "/metrics is still on the main listener");
}

#[test]
fn with_the_key_cache_on_a_role_lowered_by_another_process_binds_within_a_second() {
    let work = Workdir::new();
    let owner = work.bootstrap("owner@example.com", "Acme");
    let org = owner["org_id"].as_str().expect("org").to_owned();
    let admin = work.json(&[
        "user",
        "add",
        "--email",
        "dev@example.com",
        "--org",
        &org,
        "--role",
        "admin",
        "--issue-key",
    ]);
    let server = Server::start(&work, &[]);
    // A key scoped to the organization: its owner's role there is read with
    // the key, and so cached with it.
    let body = json!({ "org_id": org, "mode": "all" });
    let (status, created) = server.call("POST", "/apikey", admin["key"].as_str(), Some(body));
    assert_eq!(status, 200, "{created}");
    let key = created["apikey"]["key"].as_str().expect("key").to_owned();
    let audit = format!("/organization/audit?org_id={org}");
    // Warm the cache: the admin's key reads the audit log (it needs A).
    for _ in 0..3 {
        let (status, body) = server.call("GET", &audit, Some(&key), None);
        assert_eq!(status, 200, "{body}");
    }
    // Another process lowers the role in the same file.
    work.json(&["user", "add", "--email", "dev@example.com", "--org", &org, "--role", "read"]);
    let lowered = Instant::now();
    loop {
        let (status, body) = server.call("GET", &audit, Some(&key), None);
        if status == 403 {
            assert_eq!(body["code"], "insufficient_permissions");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(lowered.elapsed() < Duration::from_secs(1), "the lowered role did not bind within a second");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = server.call("GET", &format!("/organization/members?org_id={org}"), Some(&key), None);
    assert_eq!(status, 200, "the key itself still works: only its role changed");
}
