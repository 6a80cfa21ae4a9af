//! No secret reaches the log. Finding: an invitation code, the verifier
//! token or a key typed `ak_…` in a path was logged in full, and `/auth`
//! logged the protected API's paths. The access log now masks by shape, and
//! logs `/auth` by its route; a real `keygate serve`'s whole log is checked.

use std::path::Path;

use keygate_testkit::{ServerProcess, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_keygate");
const TOKEN: &str = "Vt7qWx2mPz9LkR4sJd8nHc3b";

#[tokio::test]
async fn no_secret_in_a_path_reaches_the_log() {
    let database = TestDatabase::new().await;
    let store = keygate_store::connect(database.url()).await.expect("open");
    let owner =
        keygate::admin::bootstrap(store.as_ref(), "owner@example.com", "Acme").await.expect("bootstrap");
    store.close().await;
    let key = owner.key.expose().to_owned();
    let extra = ["--verifier-token", TOKEN, "--forward-auth-proxy", "envoy"];
    let server = ServerProcess::start_with_env(
        Path::new(BIN),
        database.url(),
        database.dir(),
        &extra,
        &[("KEYGATE_LOG", "info")],
    );
    let client = reqwest::Client::new();
    let code = format!("kgi_{}", "7f3a9c".repeat(10));
    let upper = key.replacen("ak_", "AK_", 1);
    let encoded = key.replacen("ak_", "%61k_", 1);
    let secrets = [key.as_str(), upper.as_str(), code.as_str(), TOKEN];
    let paths = [
        format!("/apikey/{key}"),
        format!("/apikey/{upper}/rotate"),
        format!("/apikey/{encoded}"),
        format!("/invites/{code}"),
        format!("/verify/{TOKEN}"),
        "/auth/customers/jane.doe@example.com/invoices".to_owned(),
    ];
    for path in &paths {
        let response =
            client.get(format!("{}{path}", server.base)).header("authorization", &key).send().await;
        let body = response.expect("sent").text().await.expect("body");
        for secret in secrets {
            assert!(!body.contains(secret), "{path}: the answer echoes a secret: {body}");
        }
    }
    let metrics = client.get(format!("{}/metrics", server.base)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    // Lines are written off the request path, within 50 ms.
    server.wait_for_log("route=/auth/{*rest}", std::time::Duration::from_secs(5));
    let log = server.log_text();
    for secret in secrets {
        assert!(!log.contains(secret), "the log holds a secret {secret:.8}…: {log}");
        assert!(!metrics.contains(secret), "the metrics hold a secret {secret:.8}…");
    }
    assert!(!log.contains("jane.doe"), "an /auth request logs its route, not the protected path: {log}");
    assert!(log.contains("route=/auth/{*rest}"), "{log}");
    assert!(log.contains("path=/apikey/ak_[redacted]"), "{log}");
    assert!(log.contains("kgi_[redacted]") && log.contains("path=/verify/[redacted]"), "{log}");
}

/// Finding (third review): a code sent as a JSON field name came back in
/// the error text, unmasked.
#[tokio::test]
async fn an_error_answer_never_repeats_a_secret_sent_in_the_wrong_place() {
    let app = crate::helpers::spawn_app().await;
    let key = app.owner.key.clone();
    let code = "kgi_Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNm";
    let bodies = [
        serde_json::json!({ "code": code, code: 1 }),
        serde_json::json!({ "org_id": app.owner.org_id, "mode": key }),
        serde_json::json!({ "org_id": app.owner.org_id, key.as_str(): true }),
        // Fourth review: in the path of an error, and in a value quoted back.
        serde_json::json!({ code: { "x": 1 } }),
        serde_json::json!({ "org_id": app.owner.org_id, "mode": "read", "limited_to_apps": [code] }),
        serde_json::json!({ "org_id": app.owner.org_id, "mode": "read", "limited_to_apps": [&code[4..]] }),
    ];
    for body in bodies {
        let reply = app.post("/apikey", &app.owner.key, body).await;
        let text = reply.body.to_string();
        assert_eq!(reply.status, 400, "{text}");
        assert!(!text.contains(&code[4..]) && !text.contains(&key), "{text}");
    }
}
