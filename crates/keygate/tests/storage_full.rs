//! A disk that fills up under a running server: no file of the `keygate
//! serve` process may grow past a limit (the shell's `ulimit -f`, with
//! SIGXFSZ ignored, so a write past it fails as on a full disk). Every write
//! path keeps going until the database refuses. The promise checked:
//!
//! - a write answers 200 only once it is stored, and every refusal is a
//!   503 or 507 in the contract's shape, never a 500;
//! - after a restart with room again, exactly the acknowledged writes are
//!   there: nothing acknowledged is lost, nothing refused half-made.

use std::path::Path;
use std::time::Duration;

use keygate_testkit::{ServerProcess, TestDatabase};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{BIN, bootstrapped, call};

mod support;

/// Room left for the server's files beyond what the bootstrapped database
/// already takes: a few transactions' worth of WAL.
const HEADROOM_KIB: u64 = 160;
/// Writes attempted in all; the disk fills after a handful.
const ATTEMPTS: usize = 60;

fn size_kib(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len().div_ceil(1024))
}

/// A refusal must say the storage failed, in the contract's shape.
fn assert_refused(what: &str, status: u16, body: &Value) {
    assert!(matches!(status, 503 | 507), "{what}: {status} {body}");
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        matches!(code, "database_unavailable" | "insufficient_storage" | "storage_unavailable"),
        "{what}: {status} {body}"
    );
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
}

#[derive(Default)]
struct Acknowledged {
    /// Key id → name as last acknowledged.
    keys: std::collections::BTreeMap<i64, String>,
    deleted: Vec<i64>,
    apps: Vec<String>,
    refused_apps: Vec<String>,
    bundles: Vec<String>,
    refused_bundles: Vec<String>,
    refusals: usize,
}

#[tokio::test]
async fn a_full_disk_refuses_writes_and_loses_nothing_acknowledged() {
    let db = TestDatabase::sqlite();
    let (store, owner) = bootstrapped(&db).await;
    store.close().await;
    drop(store);
    let files = ["keygate.db", "keygate.db-wal"].map(|f| size_kib(&db.dir().join(f)));
    let limit = files.into_iter().max().unwrap_or(0) + HEADROOM_KIB;
    let env = [("KEYGATE_LOG", "info")];
    let server = ServerProcess::start_with_file_size_limit(
        Path::new(BIN),
        db.url(),
        db.dir(),
        &["--access-log", "false"],
        &env,
        limit,
    );
    let (client, base, admin) = (Client::new(), server.base.clone(), owner.key.expose().to_owned());
    let org = owner.org_id.to_string();
    let mut seen = Acknowledged::default();

    for n in 0..ATTEMPTS {
        let name = format!("key {n}");
        let body = json!({ "name": name, "mode": "read", "org_id": org });
        let (status, created) = call(&client, &base, Method::POST, "/apikey", &admin, Some(body)).await;
        if status == 200 {
            seen.keys.insert(created["apikey"]["id"].as_i64().expect("id"), name);
        } else {
            assert_refused("create a key", status, &created);
            seen.refusals += 1;
        }

        let app_id = format!("com.full.app{n}");
        let body = json!({ "app_id": app_id, "name": format!("App {n}"), "org_id": org });
        let (status, app) = call(&client, &base, Method::POST, "/app", &admin, Some(body)).await;
        if status == 200 {
            seen.apps.push(app_id.clone());
        } else {
            assert_refused("create an app", status, &app);
            seen.refusals += 1;
            seen.refused_apps.push(app_id.clone());
        }

        // A rename and a delete of keys acknowledged earlier.
        if let Some((&id, _)) = seen.keys.iter().next() {
            let renamed = format!("renamed {n}");
            let path = format!("/apikey/{id}");
            let body = json!({ "name": renamed });
            let (status, answer) = call(&client, &base, Method::PUT, &path, &admin, Some(body)).await;
            if status == 200 {
                seen.keys.insert(id, renamed);
            } else {
                assert_refused("rename a key", status, &answer);
                seen.refusals += 1;
            }
        }
        if n % 3 == 2
            && let Some((&id, _)) = seen.keys.iter().next_back()
        {
            let (status, answer) =
                call(&client, &base, Method::DELETE, &format!("/apikey/{id}"), &admin, None).await;
            if status == 200 {
                seen.keys.remove(&id);
                seen.deleted.push(id);
            } else {
                assert_refused("delete a key", status, &answer);
                seen.refusals += 1;
            }
        }

        // A bundle larger than any file may grow, for an app that exists.
        if let Some(app_id) = seen.apps.first().cloned() {
            let version = format!("1.0.{n}");
            let bytes = vec![0x5a_u8; usize::try_from(limit * 1024 + 4096).expect("size")];
            let url = format!("{base}/bundle?app_id={app_id}&version={version}");
            let response = client
                .post(url)
                .header("authorization", &admin)
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .expect("upload");
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if status == 200 {
                seen.bundles.push(version);
            } else {
                assert_refused("upload a bundle", status, &answer);
                seen.refusals += 1;
                seen.refused_bundles.push(version);
            }
        }
    }
    eprintln!(
        "acknowledged: keys {} deleted {} apps {} refused apps {} bundles {} refused bundles {} refusals {}",
        seen.keys.len(),
        seen.deleted.len(),
        seen.apps.len(),
        seen.refused_apps.len(),
        seen.bundles.len(),
        seen.refused_bundles.len(),
        seen.refusals
    );
    assert!(seen.refusals > 0, "the disk never filled: raise ATTEMPTS or lower HEADROOM_KIB");
    assert!(!seen.apps.is_empty(), "nothing was acknowledged before the disk filled");
    drop(server);

    // Room again: exactly what was acknowledged is there.
    let server = ServerProcess::start_with_env(Path::new(BIN), db.url(), db.dir(), &[], &env);
    let base = server.base.clone();
    let (status, keys) = call(&client, &base, Method::GET, "/apikey", &admin, None).await;
    assert_eq!(status, 200, "{keys}");
    let stored: std::collections::BTreeMap<i64, String> = keys["data"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["id"].as_i64() != Some(owner.key_id))
        .map(|k| (k["id"].as_i64().expect("id"), k["name"].as_str().expect("name").to_owned()))
        .collect();
    assert_eq!(stored, seen.keys, "stored keys and names differ from the acknowledged ones");

    let (status, apps) = call(&client, &base, Method::GET, "/app", &admin, None).await;
    assert_eq!(status, 200, "{apps}");
    let stored: Vec<String> = apps["data"]
        .as_array()
        .expect("apps")
        .iter()
        .map(|a| a["app_id"].as_str().expect("app id").to_owned())
        .collect();
    for app in &seen.apps {
        assert!(stored.contains(app), "acknowledged app {app} lost");
    }
    for app in &seen.refused_apps {
        assert!(!stored.contains(app), "refused app {app} exists");
    }

    if let Some(app_id) = seen.apps.first() {
        let path = format!("/bundle?app_id={app_id}");
        let (status, bundles) = call(&client, &base, Method::GET, &path, &admin, None).await;
        assert_eq!(status, 200, "{bundles}");
        let stored: Vec<&str> = bundles["data"]
            .as_array()
            .expect("bundles")
            .iter()
            .filter_map(|b| b["version"].as_str())
            .collect();
        for version in &seen.bundles {
            assert!(stored.contains(&version.as_str()), "acknowledged bundle {version} lost");
            let url = format!("{base}/bundle/download?app_id={app_id}&version={version}");
            let response = client.get(url).header("authorization", &admin).send().await.expect("download");
            assert_eq!(response.status().as_u16(), 200);
            let bytes = response.bytes().await.expect("bundle bytes");
            assert_eq!(bytes.len() as u64, limit * 1024 + 4096, "bundle {version} was stored truncated");
        }
        for version in &seen.refused_bundles {
            assert!(!stored.contains(&version.as_str()), "refused bundle {version} exists");
        }
    }
    // The server that had no room said why, and never panicked.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = std::fs::read_dir(db.dir())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("server-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(!log.contains("panicked"), "{log}");
}
