//! Upgrades: databases an earlier release made (`tests/fixtures/upgrade/`,
//! made once by `make.sh` with keygate built at the commit in `COMMIT`) are
//! migrated in place by this keygate, and every key in them still does what
//! it did, and no more.
//!
//! The PostgreSQL test runs with `KEYGATE_TEST_DATABASE=postgres://…` and
//! `--include-ignored`.

use std::path::Path;

use keygate_testkit::{ServerProcess, TestDatabase, postgres_base};
use serde_json::{Value, json};
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_keygate");
const TOKEN: &str = "upgrade-test-verifier-token";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upgrade");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Starts this keygate on `url` (which migrates it), then asks `/verify`
/// about every key of the fixture: what it may do is VALID, what it may
/// not is FORBIDDEN.
async fn every_key_still_does_what_it_did(url: &str, dir: &Path, keys: &str) {
    let server = ServerProcess::start(Path::new(BIN), url, dir, &["--verifier-token", TOKEN]);
    let keys: Value = serde_json::from_str(keys).expect("keys.json");
    let client = reqwest::Client::new();
    let mut checked = 0;
    for key in keys["keys"].as_array().expect("keys") {
        let answers = [("may", "VALID"), ("may_not", "FORBIDDEN")];
        for (list, expected) in answers {
            for action in key[list].as_array().expect("actions") {
                let mut request = json!({ "key": key["key"], "action": action, "org_id": keys["org_id"] });
                if let Some(app) = key["app_id"].as_str() {
                    request["app_id"] = json!(app);
                }
                let response = client
                    .post(format!("{}/verify", server.base))
                    .bearer_auth(TOKEN)
                    .json(&request)
                    .send()
                    .await
                    .expect("verify");
                let verdict: Value = response.json().await.expect("json");
                assert_eq!(verdict["code"], expected, "{} {action}: {verdict}", key["name"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 7, "only {checked} checks");
    drop(server);
    let out = std::process::Command::new(BIN)
        .args(["migrate", "--dry-run", "--database", url])
        .current_dir(dir)
        .output()
        .expect("migrate");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.starts_with("up to date"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_of_an_earlier_release_is_migrated_and_its_keys_still_verify() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/keygate.db", dir.path().display());
    let mut connection = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc")).await.expect("create");
    sqlx::raw_sql(&fixture("sqlite.sql")).execute(&mut connection).await.expect("load the earlier database");
    connection.close().await.expect("close");
    let before = std::process::Command::new(BIN)
        .args(["migrate", "--dry-run", "--database", &url])
        .output()
        .expect("migrate");
    let pending = String::from_utf8_lossy(&before.stdout);
    assert!(pending.contains("would apply "), "the earlier release's schema has steps to take: {pending}");
    every_key_still_does_what_it_did(&url, dir.path(), &fixture("keys.sqlite.json")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: KEYGATE_TEST_DATABASE=postgres://…"]
async fn a_postgres_database_of_an_earlier_release_is_migrated_and_its_keys_still_verify() {
    let base = postgres_base().expect("KEYGATE_TEST_DATABASE=postgres://…");
    let db = TestDatabase::postgres(&base).await;
    let mut connection = sqlx::PgConnection::connect(db.url()).await.expect("connect");
    sqlx::raw_sql(&fixture("postgres.sql"))
        .execute(&mut connection)
        .await
        .expect("load the earlier database");
    connection.close().await.expect("close");
    every_key_still_does_what_it_did(db.url(), db.dir(), &fixture("keys.postgres.json")).await;
}
