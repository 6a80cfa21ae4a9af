//! `keygate backup` while a server takes writes, and `keygate restore`: the
//! real binary, a real SQLite file, keys created over HTTP the whole time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keygate_testkit::ServerProcess;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keygate");
const TOKEN: &str = "backup-test-verifier-token";

/// A key the load created: its secret and id, when its request was sent
/// and when its answer came.
struct Created {
    id: i64,
    key: String,
    sent: Instant,
    answered: Instant,
}

fn keygate(dir: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(BIN).args(args).current_dir(dir).output().expect("run keygate");
    assert!(out.status.success(), "keygate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

async fn verdict(client: &reqwest::Client, base: &str, key: &str) -> String {
    let response = client
        .post(format!("{base}/verify"))
        .bearer_auth(TOKEN)
        .json(&json!({ "key": key }))
        .send()
        .await
        .expect("verify");
    let body: Value = response.json().await.expect("json");
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// Every key acknowledged before the backup began is in the restored
/// database, with its audit event; no key whose request was sent after
/// the backup ended is; the bundles came along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_what_was_acknowledged_before_it_and_nothing_after() {
    let dir = tempfile::tempdir().expect("dir");
    let owner = keygate(dir.path(), &["bootstrap", "--email", "owner@example.com", "--org-name", "Acme"]);
    let (admin, org) = (owner["key"].as_str().expect("key").to_owned(), owner["org_id"].clone());
    let server =
        ServerProcess::start(Path::new(BIN), "sqlite://keygate.db", dir.path(), &["--access-log=false"]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let app = json!({ "app_id": "com.acme.app", "name": "App", "org_id": org });
    let made = client.post(format!("{base}/app")).header("authorization", &admin).json(&app).send().await;
    assert_eq!(made.expect("app").status(), 200);
    let uploaded = client
        .post(format!("{base}/bundle?app_id=com.acme.app&version=1.0.0"))
        .header("authorization", &admin)
        .body(vec![7u8; 4096])
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (client, base, admin, stop) = (client.clone(), base.clone(), admin.clone(), stop.clone());
        async move {
            let mut created = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let body =
                    json!({ "org_id": org, "mode": "read", "name": format!("load {}", created.len()) });
                let response = client
                    .post(format!("{base}/apikey"))
                    .header("authorization", &admin)
                    .json(&body)
                    .send()
                    .await;
                let answered = Instant::now();
                let body: Value = response.expect("create").json().await.expect("json");
                let key = &body["apikey"];
                let (Some(id), Some(secret)) = (key["id"].as_i64(), key["key"].as_str()) else {
                    panic!("not created: {}", body["error"])
                };
                created.push(Created { id, key: secret.to_owned(), sent, answered });
            }
            created
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let began = Instant::now();
    let backup = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || keygate(&dir, &["backup", "--to", "snap.db", "--database", "sqlite://keygate.db"])
    })
    .await
    .expect("backup");
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let created = load.await.expect("load");
    assert_eq!(backup["bundle_files"], 1, "{backup}");
    // Fourteenth review: the copies were readable by every local user.
    let mode = |path: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join(path)).expect(path).permissions().mode() & 0o777
    };
    assert_eq!(mode("snap.db"), 0o600, "the backup is the owner's alone");
    assert_eq!(mode("snap.db-blobs"), 0o700);
    for file in std::fs::read_dir(dir.path().join("snap.db-blobs")).expect("bundles") {
        let name = file.expect("entry").file_name();
        assert_eq!(mode(&format!("snap.db-blobs/{}", name.to_string_lossy())), 0o600);
    }

    let before: Vec<&Created> = created.iter().filter(|c| c.answered < began).collect();
    let after: Vec<&Created> = created.iter().filter(|c| c.sent > ended).collect();
    assert!(before.len() >= 10 && !after.is_empty(), "{} before, {} after", before.len(), after.len());
    eprintln!("{} keys created, {} before the backup, {} after it", created.len(), before.len(), after.len());
    drop(server);

    let restored =
        keygate(dir.path(), &["restore", "--from", "snap.db", "--database", "sqlite://fresh/keygate.db"]);
    assert_eq!((restored["bundle_files"].as_u64(), restored["pending_steps"].as_u64()), (Some(1), Some(0)));
    assert_eq!(mode("fresh/keygate.db"), 0o600);
    assert_eq!(mode("fresh/keygate-blobs"), 0o700, "the restored bundle directory is the owner's alone");
    let fresh = dir.path().join("fresh");
    let server = ServerProcess::start(
        Path::new(BIN),
        "sqlite://keygate.db",
        &fresh,
        &["--access-log=false", "--verifier-token", TOKEN],
    );
    for key in &before {
        assert_eq!(
            verdict(&client, &server.base, &key.key).await,
            "VALID",
            "key {} was acknowledged",
            key.id
        );
    }
    for key in &after {
        assert_eq!(verdict(&client, &server.base, &key.key).await, "NOT_FOUND", "key {} came after", key.id);
    }
    let bundle = client
        .get(format!("{}/bundle/download?app_id=com.acme.app&version=1.0.0", server.base))
        .header("authorization", &admin)
        .send()
        .await
        .expect("download");
    assert_eq!(bundle.status(), 200, "the bundle came along");
    assert_eq!(bundle.bytes().await.expect("bytes").as_ref(), &[7u8; 4096][..]);

    // Every acknowledged creation has its audit event; none after the backup does.
    let mut audited = std::collections::BTreeSet::new();
    let mut page = format!(
        "{}/organization/audit?org_id={}&limit=200",
        server.base,
        owner["org_id"].as_str().expect("org")
    );
    loop {
        let events: Value = client
            .get(&page)
            .header("authorization", &admin)
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("json");
        let events = events["data"].as_array().expect("data").clone();
        audited.extend(
            events
                .iter()
                .filter(|e| e["action"] == "apikey.create")
                .filter_map(|e| e["target_id"].as_str().and_then(|id| id.parse::<i64>().ok())),
        );
        let Some(oldest) = events.last().and_then(|e| e["id"].as_i64()) else { break };
        page = format!(
            "{}/organization/audit?org_id={}&limit=200&before={oldest}",
            server.base,
            owner["org_id"].as_str().expect("org")
        );
    }
    for key in &before {
        assert!(audited.contains(&key.id), "key {}'s creation is not in the restored audit log", key.id);
    }
    for key in &after {
        assert!(!audited.contains(&key.id), "key {} came after the backup", key.id);
    }
}

/// A restore refuses what it should not replace or bring: a database a
/// server holds, and a file that is not a sound keygate database.
#[test]
fn a_restore_refuses_a_served_database_and_a_bad_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    keygate(dir.path(), &["bootstrap", "--email", "owner@example.com", "--org-name", "Acme"]);
    keygate(dir.path(), &["backup", "--to", "snap.db", "--database", "sqlite://keygate.db"]);
    let refused = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).current_dir(dir.path()).output().expect("run");
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let server = ServerProcess::start(Path::new(BIN), "sqlite://keygate.db", dir.path(), &[]);
    let served = refused(&["restore", "--from", "snap.db", "--database", "sqlite://keygate.db"]);
    assert!(served.contains("already served by process"), "{served}");
    drop(server);
    std::fs::write(dir.path().join("garbage.db"), b"not a database at all, not even close").expect("write");
    let garbage = refused(&["restore", "--from", "garbage.db", "--database", "sqlite://other.db"]);
    assert!(garbage.contains("cannot be restored: not a SQLite database"), "{garbage}");
    let empty = dir.path().join("empty.db");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=rwc", empty.display());
        let mut connection = sqlx::SqliteConnection::connect(&url).await.expect("create");
        sqlx::query("CREATE TABLE notes (text TEXT)").execute(&mut connection).await.expect("table");
        connection.close().await.expect("close");
    });
    let not_keygate = refused(&["restore", "--from", "empty.db", "--database", "sqlite://other.db"]);
    assert!(not_keygate.contains("holds no keygate schema"), "{not_keygate}");
    assert!(!dir.path().join("other.db").exists(), "nothing was restored");
    let postgres =
        refused(&["backup", "--to", "x.dump", "--database", "postgres://keygate:pw@db.example/keygate"]);
    assert!(postgres.contains("pg_dump --format=custom") && !postgres.contains("pw@"), "{postgres}");
}
