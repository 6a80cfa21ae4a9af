//! A real PostgreSQL restart under write load: prompt 503s while it is down,
//! recovery without restarting keygate, no acknowledged write lost.
//!
//! It restarts the server everyone shares, so it runs alone, after the rest:
//! `KEYGATE_TEST_DATABASE=postgres://… cargo test -p keygate --test postgres_restart -- --ignored`
//! (`.ci/run` does this). Needs `pg_ctlcluster`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keygate_testkit::ServerProcess;
use reqwest::Client;
use support::{BIN, WriteLoad, bootstrapped, database, until_health};

mod support;

fn pg_ctlcluster(action: &str) {
    // The newest installed version, as .ci/run picks it.
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL cluster")
        .to_string();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action, "-m", "fast"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the shared PostgreSQL server: run alone, see the module docs"]
async fn a_postgres_restart_loses_no_acknowledged_write() {
    let db = database().await;
    let (store, owner) = bootstrapped(&db).await;
    let admin = owner.key.expose().to_owned();
    store.close().await;
    let server = ServerProcess::start(Path::new(BIN), db.url(), db.dir(), &[]);
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("client");

    let load = WriteLoad::start(&client, &server.base, &admin, owner.org_id, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg_ctlcluster("stop");
    until_health(&client, &server.base, 503, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg_ctlcluster("start");
    until_health(&client, &server.base, 200, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.finish().await;

    assert!(outcome.unavailable > 0, "no writer saw the outage");
    let store = keygate_store::connect(db.url()).await.expect("reconnect");
    let stored: std::collections::HashSet<i64> =
        store.keys_of_org(owner.org_id).await.expect("keys").iter().map(|k| k.id).collect();
    let lost: Vec<_> = outcome.acknowledged.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(outcome.acknowledged.len() > 4, "too few writes: {}", outcome.acknowledged.len());
    store.close().await;
}
