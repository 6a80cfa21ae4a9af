//! `/bundle`: uploads with a semver version, checksummed, kept whole or not
//! at all; listing, download and deletion.

use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{MAX_BUNDLE_SIZE, spawn_app};

#[tokio::test]
async fn a_bundle_is_uploaded_listed_downloaded_and_deleted() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let uploaded = app.upload(&app.owner.key, "com.acme.app", "1.2.3-beta.1", bytes.clone()).await.ok();
    let bundle = &uploaded["bundle"];
    assert_eq!(bundle["app_id"], "com.acme.app");
    assert_eq!(bundle["version"], "1.2.3-beta.1");
    assert_eq!(bundle["size"], 100_000);
    assert_eq!(bundle["checksum"], hex::encode(Sha256::digest(&bytes)));

    let listed = app.get("/bundle?app_id=com.acme.app", &app.owner.key).await.ok();
    assert_eq!(listed["data"], json!([bundle]));

    let response = app
        .client
        .get(format!("{}/bundle/download?app_id=com.acme.app&version=1.2.3-beta.1", app.base))
        .header("authorization", &app.owner.key)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    // Bytes to save, never a page a browser renders or sniffs.
    let header = |name: &str| response.headers()[name].to_str().expect("ASCII").to_owned();
    assert_eq!(
        (header("x-content-type-options"), header("content-disposition")),
        ("nosniff".into(), "attachment".into())
    );
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), bytes);

    let path = "/bundle?app_id=com.acme.app&version=1.2.3-beta.1";
    assert_eq!(
        app.call(Method::DELETE, path, Some(&app.owner.key), None).await.ok(),
        json!({ "success": true })
    );
    app.call(Method::DELETE, path, Some(&app.owner.key), None).await.error(404, "bundle_not_found");
    assert_eq!(app.blob_files().await, 0, "the bytes went with the bundle");
}

#[tokio::test]
async fn a_version_is_uploaded_once() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    app.upload(&app.owner.key, "com.acme.app", "1.0.0", b"first".to_vec()).await.ok();
    app.upload(&app.owner.key, "com.acme.app", "1.0.0", b"second".to_vec()).await.error(409, "bundle_exists");
    assert_eq!(app.blob_files().await, 1);
}

/// Thirteenth review: a declared length past the limit held the connection
/// until the request timed out (408, 60 s later); it is refused at once,
/// before a byte of the body is read.
#[tokio::test]
async fn a_declared_length_past_the_limit_is_refused_before_the_body() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /bundle?app_id=com.acme.app&version=1.0.0 HTTP/1.1\r\nHost: {address}\r\n\
         authorization: {}\r\ncontent-length: {}\r\n",
        app.owner.key,
        MAX_BUNDLE_SIZE + 1
    );
    let started = std::time::Instant::now();
    let answer = keygate_testkit::raw_http::send(&address, head.as_bytes(), b"").await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("payload_too_large"), "{answer:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered at once");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    let key = &app.owner.key;
    for version in ["1.0", "v1.0.0", "latest", "1.0.0.0"] {
        app.upload(key, "com.acme.app", version, b"x".to_vec()).await.error(400, "invalid_version");
    }
    app.upload(key, "com.acme.app", "", b"x".to_vec()).await.error(400, "version_required");
    app.upload(key, "com.acme.app", "1.0.0", Vec::new()).await.error(400, "empty_bundle");
    let too_big = vec![1u8; MAX_BUNDLE_SIZE as usize + 1];
    app.upload(key, "com.acme.app", "1.0.0", too_big).await.error(413, "payload_too_large");
    app.upload(key, "com.unknown.app", "1.0.0", b"x".to_vec()).await.error(404, "app_not_found");
    app.upload(key, "bad id", "1.0.0", b"x".to_vec()).await.error(400, "invalid_app_id");
    let listed = app.get("/bundle?app_id=com.acme.app", key).await.ok();
    assert_eq!(listed["data"], json!([]));
    assert_eq!(app.blob_files().await, 0, "no half-written or temporary file remains");
    let exactly = vec![2u8; MAX_BUNDLE_SIZE as usize];
    app.upload(key, "com.acme.app", "1.0.0", exactly).await.ok();
}

#[tokio::test]
async fn uploading_needs_u_and_reading_needs_r() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    app.upload(&app.owner.key, "com.acme.app", "1.0.0", b"x".to_vec()).await.ok();
    let write = app.owner_key("write").await;
    let write = write["key"].as_str().expect("key");
    app.upload(write, "com.acme.app", "1.0.1", b"x".to_vec()).await.error(403, "insufficient_permissions");
    app.get("/bundle?app_id=com.acme.app", write).await.ok();
    let read = app.owner_key("read").await;
    let read = read["key"].as_str().expect("key");
    let delete = "/bundle?app_id=com.acme.app&version=1.0.0";
    app.call(Method::DELETE, delete, Some(read), None).await.error(403, "insufficient_permissions");
    app.call(Method::DELETE, delete, Some(write), None).await.ok();
    let rival = app.tenant("rival@example.com").await;
    app.get("/bundle?app_id=com.acme.app", &rival.key).await.error(404, "app_not_found");
    assert_eq!(app.blob_files().await, 0);
}

#[tokio::test]
async fn deleting_an_app_deletes_its_bundles() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    for version in ["1.0.0", "1.1.0"] {
        app.upload(&app.owner.key, "com.acme.app", version, b"bytes".to_vec()).await.ok();
    }
    assert_eq!(app.blob_files().await, 2);
    app.delete("/app/com.acme.app", &app.owner.key).await.ok();
    assert_eq!(app.blob_files().await, 0);
    app.app("com.acme.app").await;
    let listed = app.get("/bundle?app_id=com.acme.app", &app.owner.key).await.ok();
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test]
async fn listing_downloading_and_deleting_check_their_input_and_the_caller() {
    let app = spawn_app().await;
    app.app("com.acme.app").await;
    app.upload(&app.owner.key, "com.acme.app", "1.0.0", b"bytes".to_vec()).await.ok();
    let key = &app.owner.key;
    app.get("/bundle", key).await.error(400, "app_id_required");
    app.get("/bundle?app_id=not-an-app", key).await.error(400, "invalid_app_id");
    for (query, code) in
        [("app_id=com.acme.app", "version_required"), ("app_id=com.acme.app&version=one", "invalid_version")]
    {
        app.get(&format!("/bundle/download?{query}"), key).await.error(400, code);
        app.call(Method::DELETE, &format!("/bundle?{query}"), Some(key), None).await.error(400, code);
    }
    app.get("/bundle/download?app_id=com.acme.app&version=2.0.0", key).await.error(404, "bundle_not_found");
    let rival = app.tenant("rival@example.com").await;
    let download = "/bundle/download?app_id=com.acme.app&version=1.0.0";
    app.get(download, &rival.key).await.error(404, "app_not_found");
    app.call(Method::DELETE, "/bundle?app_id=com.acme.app&version=1.0.0", Some(&rival.key), None)
        .await
        .error(404, "app_not_found");
    app.get(download, "ak_typo").await.error(401, "invalid_api_key");
    let listed = app.get("/bundle?app_id=com.acme.app", key).await.ok();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "nothing was deleted");
}

#[tokio::test]
async fn an_organization_stays_within_its_storage_quota() {
    let app = crate::helpers::spawn_app_with(|s| s.max_org_storage = Some(100)).await;
    app.app("com.acme.app").await;
    app.app("com.acme.other").await;
    let key = &app.owner.key;
    app.upload(key, "com.acme.app", "1.0.0", vec![1; 60]).await.ok();
    // 60 + 60 is over 100, across the organization's apps: refused whole.
    let refused = app.upload(key, "com.acme.other", "1.0.0", vec![2; 60]).await;
    let text = refused.error(413, "storage_quota_exceeded");
    assert!(text.contains("100 bytes"), "{text}");
    app.upload(key, "com.acme.app", "1.0.1", vec![3; 40]).await.ok();
    app.upload(key, "com.acme.app", "1.0.2", vec![4; 1]).await.error(413, "storage_quota_exceeded");
    assert_eq!(app.blob_files().await, 2, "nothing of the refused uploads stays");
    let listed = app.get("/bundle?app_id=com.acme.other", key).await.ok();
    assert_eq!(listed["data"], json!([]));
    // Deleting frees room.
    app.call(Method::DELETE, "/bundle?app_id=com.acme.app&version=1.0.0", Some(key), None).await.ok();
    app.upload(key, "com.acme.other", "1.0.0", vec![2; 60]).await.ok();
    // Another organization has a quota of its own.
    let rival = app.tenant("rival@example.com").await;
    let body = json!({ "app_id": "com.rival.app", "name": "Rival", "org_id": rival.org_id });
    app.post("/app", &rival.key, body).await.ok();
    app.upload(&rival.key, "com.rival.app", "1.0.0", vec![5; 100]).await.ok();
}
