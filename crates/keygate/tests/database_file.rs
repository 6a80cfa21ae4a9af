//! The SQLite file under a running server: removed, replaced, served twice,
//! or named wrongly on the command line; and readiness when bundles cannot
//! be written.
//!
//! The promises checked, each over HTTP against a real `keygate serve`:
//! - a file removed or replaced under the server turns every write and
//!   `/readyz` (and `/health`) into a 503 in the contract's shape, while
//!   `/livez` stays 200; a restart that has to create a new file says so;
//! - a second `serve` on the same file stops at once, naming the first;
//! - `keygate user add` on a path with no database fails without creating one;
//! - a blob directory that cannot be written makes `/readyz` answer 503.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{BIN, bootstrapped, call};

mod support;

async fn get(client: &Client, base: &str, path: &str) -> (u16, Value) {
    let response = client.get(format!("{base}{path}")).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A bootstrapped SQLite database, closed again, and its owner's key and org.
async fn prepared() -> (TestDatabase, String, String) {
    let db = TestDatabase::sqlite();
    let (store, owner) = bootstrapped(&db).await;
    store.close().await;
    (db, owner.key.expose().to_owned(), owner.org_id.to_string())
}

fn files_of(database: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Every write and readiness refuse with 503, liveness does not.
async fn assert_writes_refused(client: &Client, base: &str, admin: &str, org: &str) {
    let (status, body) =
        call(client, base, Method::POST, "/apikey", admin, Some(json!({ "org_id": org, "mode": "read" })))
            .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_unavailable", "{body}");
    assert!(!body["error"].as_str().unwrap_or_default().is_empty(), "{body}");
    let (status, body) = call(
        client,
        base,
        Method::POST,
        "/app",
        admin,
        Some(json!({ "org_id": org, "app_id": "com.after.rm", "name": "After" })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    for path in ["/readyz", "/health"] {
        let (status, body) = get(client, base, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["status"], "KO", "{path}: {body}");
        assert_eq!(body["code"], "database_unavailable", "{path}: {body}");
    }
    assert_eq!(get(client, base, "/livez").await.0, 200);
}

#[tokio::test]
async fn a_database_file_removed_under_the_server_refuses_writes_and_a_restart_says_it_starts_empty() {
    let (db, admin, org) = prepared().await;
    let server = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let client = Client::new();
    let (status, body) = get(&client, &server.base, "/readyz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    let (status, body) = call(
        &client,
        &server.base,
        Method::POST,
        "/apikey",
        &admin,
        Some(json!({ "org_id": org, "mode": "read" })),
    )
    .await;
    assert_eq!(status, 200, "a write before: {body}");

    let database = db.dir().join("keygate.db");
    for file in files_of(&database) {
        let _ = std::fs::remove_file(file);
    }
    assert_writes_refused(&client, &server.base, &admin, &org).await;
    assert!(!database.exists(), "nothing recreated the file");
    drop(server);

    let restarted = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let log = restarted.log_text();
    assert!(log.contains("WARN") && log.contains("creating a new, empty one"), "{log}");
    assert!(log.contains("no users yet"), "{log}");
}

#[tokio::test]
async fn a_database_file_replaced_under_the_server_refuses_writes() {
    let (db, admin, org) = prepared().await;
    let server = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let client = Client::new();
    let database = db.dir().join("keygate.db");
    // A copy put in place of the file, as a restore would.
    let copy = db.dir().join("copy.db");
    std::fs::copy(&database, &copy).expect("copy");
    std::fs::rename(&copy, &database).expect("replace");
    assert_writes_refused(&client, &server.base, &admin, &org).await;
}

#[tokio::test]
async fn a_second_server_on_the_same_file_stops_naming_the_first() {
    let (db, _, _) = prepared().await;
    let first = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let started = Instant::now();
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", db.url()])
        .current_dir(db.dir())
        .env_remove("KEYGATE_DATABASE_URL")
        .output()
        .expect("run a second serve");
    assert!(!second.status.success(), "the second server must not start");
    assert!(started.elapsed() < Duration::from_secs(10), "it stopped at once");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("already served by process {}", first.pid())), "{stderr}");
    assert!(stderr.contains("keygate.db"), "{stderr}");
    let client = Client::new();
    assert_eq!(get(&client, &first.base, "/readyz").await.0, 200, "the first one goes on");
    drop(first);
    // Once the first is gone, the file can be served again.
    let again = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    assert_eq!(get(&client, &again.base, "/readyz").await.0, 200);
}

/// Thirteenth review: `bootstrap` through a hard link of a served database
/// kept a second write-ahead log of the same file, whose checkpoint
/// overwrote the server's writes. A file with more than one name is
/// refused by every command, and by `serve`.
#[tokio::test]
async fn a_database_file_with_a_second_name_is_refused_by_every_command() {
    let (db, _admin, org) = prepared().await;
    let served = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let original = db.dir().join("keygate.db");
    std::fs::hard_link(&original, db.dir().join("alias.db")).expect("hard link");
    let run = |args: &[&str], name: &str| {
        Command::new(BIN)
            .args(args)
            .args(["--database", &format!("sqlite://{}", db.dir().join(name).display())])
            .current_dir(db.dir())
            .env_remove("KEYGATE_DATABASE_URL")
            .output()
            .expect("run keygate")
    };
    for (args, name) in [
        (&["bootstrap", "--email", "ghost@example.com", "--org-name", "Ghost"][..], "alias.db"),
        (&["user", "add", "--email", "dev@example.com", "--role", "read", "--org", &org], "alias.db"),
        (&["audit"], "keygate.db"),
        (&["migrate", "--dry-run"], "alias.db"),
        (&["backup", "--to", "copy.db"], "alias.db"),
    ] {
        let output = run(args, name);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} through {name} ran");
        assert!(stderr.contains("2 names (hard links)"), "{args:?}: {stderr}");
    }
    assert!(!db.dir().join("alias.db-wal").exists(), "no second write-ahead log");
    drop(served);
    let refused = run(&["serve", "--listen", "127.0.0.1:0"], "keygate.db");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("hard links"), "serve too");
}

#[test]
fn user_add_on_a_path_with_no_database_creates_nothing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("typo.db");
    let output = Command::new(BIN)
        .args(["user", "add", "--email", "dev@example.com", "--role", "read"])
        .args(["--org", "0192f3a0-0000-7000-8000-000000000000"])
        .args(["--database", &format!("sqlite://{}", missing.display())])
        .current_dir(dir.path())
        .env_remove("KEYGATE_DATABASE_URL")
        .output()
        .expect("run user add");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no database at") && stderr.contains("typo.db"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
}

#[tokio::test]
async fn readiness_fails_while_bundles_cannot_be_written() {
    let (db, admin, org) = prepared().await;
    let blobs = db.dir().join("blobs");
    let server = ServerProcess::start(
        Path::new(BIN),
        db.url(),
        db.dir(),
        &["--blob-dir", blobs.to_str().expect("utf-8")],
    );
    let client = Client::new();
    assert_eq!(get(&client, &server.base, "/readyz").await.0, 200);
    let app = json!({ "org_id": org, "app_id": "com.acme.blobs", "name": "Blobs" });
    assert_eq!(call(&client, &server.base, Method::POST, "/app", &admin, Some(app)).await.0, 200);
    let download = format!("{}/bundle/download?app_id=com.acme.blobs&version=1.0.0", server.base);
    let uploaded = client
        .post(format!("{}/bundle?app_id=com.acme.blobs&version=1.0.0", server.base))
        .header("authorization", &admin)
        .body("bundle bytes")
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 200);
    std::fs::remove_dir_all(&blobs).expect("remove the blob directory");
    // A listed bundle whose bytes are gone with the directory: the storage
    // is at fault, not the server's code.
    let response = client.get(&download).header("authorization", &admin).send().await.expect("download");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "storage_unavailable", "{body}");
    for path in ["/readyz", "/health"] {
        let (status, body) = get(&client, &server.base, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["code"], "storage_unavailable", "{path}: {body}");
    }
    assert_eq!(get(&client, &server.base, "/livez").await.0, 200);
    std::fs::create_dir(&blobs).expect("put it back");
    assert_eq!(get(&client, &server.base, "/readyz").await.0, 200, "ready again");
}

/// Finding: under the usual umask, a new database and its bundle
/// directory were readable by every user of the machine (emails, key
/// digests, the audit log, bundles). Now they are the owner's alone.
#[tokio::test]
async fn a_new_database_and_its_bundles_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let server =
        ServerProcess::start(Path::new(BIN), &url, dir.path(), &["--bootstrap-email", "o@example.com"]);
    let client = Client::new();
    assert_eq!(get(&client, &server.base, "/readyz").await.0, 200);
    let mode = |name: &str| {
        let metadata = std::fs::metadata(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        metadata.permissions().mode() & 0o777
    };
    for file in ["keygate.db", "keygate.db-wal", "keygate.db-shm"] {
        assert_eq!(mode(file) & 0o077, 0, "{file} is {:o}", mode(file));
    }
    assert_eq!(mode("keygate-blobs") & 0o077, 0, "keygate-blobs is {:o}", mode("keygate-blobs"));
}

/// Tenth review: two databases in one directory shared the default
/// `keygate-blobs/`, and the second `serve` removed, as it started, every
/// bundle of the first. Each now keeps its own, named after its file; a
/// `keygate-blobs/` left from before is the operator's to assign.
#[tokio::test]
async fn two_databases_in_one_directory_keep_their_bundles_apart() {
    let (db, admin, org) = prepared().await;
    let first = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let client = Client::new();
    let app = json!({ "org_id": org, "app_id": "com.acme.apart", "name": "Apart" });
    assert_eq!(call(&client, &first.base, Method::POST, "/app", &admin, Some(app)).await.0, 200);
    let query = "app_id=com.acme.apart&version=1.0.0";
    let uploaded = client
        .post(format!("{}/bundle?{query}", first.base))
        .header("authorization", &admin)
        .body("the first database's bundle")
        .send()
        .await
        .expect("upload");
    assert_eq!(uploaded.status(), 200);

    // Named relative to the working directory: the `keygate.db` beside it
    // was looked for in a directory named "" and not found.
    let second = ServerProcess::start(
        Path::new(BIN),
        "sqlite://other.db",
        db.dir(),
        &["--bootstrap-email", "p@example.com"],
    );
    assert_eq!(get(&client, &second.base, "/readyz").await.0, 200);
    assert!(db.dir().join("other.db-blobs").is_dir(), "its own directory");
    let download = client
        .get(format!("{}/bundle/download?{query}", first.base))
        .header("authorization", &admin)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200, "the first database's bundle is still there");
    assert_eq!(download.text().await.expect("bytes"), "the first database's bundle");
    drop(second);
    drop(first);

    // Beside a former shared directory that no `keygate.db` owns: refused,
    // saying what to do.
    std::fs::rename(db.dir().join("keygate.db"), db.dir().join("renamed.db")).expect("rename");
    // Eleventh review: any `keygate.*` beside it passed for its database.
    std::fs::write(db.dir().join("keygate.log"), "a log, not a database").expect("a stray file");
    let third = format!("sqlite://{}", db.dir().join("third.db").display());
    let refused = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &third,
            "--bootstrap-email",
            "q@example.com",
        ])
        .current_dir(db.dir())
        .env_remove("KEYGATE_DATABASE_URL")
        .env_remove("KEYGATE_BLOB_DIR")
        .output()
        .expect("run serve");
    assert!(!refused.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("third.db-blobs") && stderr.contains("--blob-dir"), "{stderr}");
}
