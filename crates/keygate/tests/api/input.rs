//! Odd input that looks harmless and is not: a leap second, text that hides
//! or reorders itself, app ids that differ only by case or by spaces. Each
//! is refused with a 400 that says what to fix, or read as the one value
//! it means, and a refusal changes nothing.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_leap_second_is_refused() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let before = app.get("/apikey", &app.owner.key).await.ok()["data"].as_array().expect("data").len();
    let body = json!({ "org_id": org, "mode": "read", "expires_at": "2099-06-15T12:34:60.500Z" });
    let text = app.post("/apikey", &app.owner.key, body).await.error(400, "invalid_expires_at").to_owned();
    assert!(text.contains("00 to 59"), "{text}");
    let after = app.get("/apikey", &app.owner.key).await.ok()["data"].as_array().expect("data").len();
    assert_eq!(before, after, "nothing created");
    // The second before it is fine, and comes back as it was sent.
    let body = json!({ "org_id": org, "mode": "read", "expires_at": "2099-06-15T12:34:59.500Z" });
    let created = app.post("/apikey", &app.owner.key, body).await.ok();
    assert_eq!(created["apikey"]["expires_at"], "2099-06-15T12:34:59.500Z");
}

#[tokio::test]
async fn names_and_emails_that_hide_or_reorder_text_are_refused() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for name in ["\u{200b}", "\u{202e}gpj.exe", "Key\u{2066}", "\u{feff}", "\u{200d}\u{200d}"] {
        let body = json!({ "org_id": org, "mode": "read", "name": name });
        app.post("/apikey", &app.owner.key, body).await.error(400, "invalid_name");
        app.post("/organization", &app.owner.key, json!({ "name": name })).await.error(400, "invalid_name");
        let body = json!({ "org_id": org, "app_id": "com.acme.hidden", "name": name });
        app.post("/app", &app.owner.key, body).await.error(400, "invalid_name");
    }
    for email in ["dev\u{200b}@example.com", "dev@exa\u{202e}mple.com"] {
        let body = json!({ "org_id": org, "email": email, "role": "read" });
        app.post("/organization/members", &app.owner.key, body).await.error(400, "invalid_email");
    }
    let listed = app.get(&format!("/app?org_id={org}"), &app.owner.key).await.ok();
    assert_eq!(listed["data"], json!([]), "nothing created");
    // A joiner inside visible text is part of it (emoji sequences, scripts).
    let body = json!({ "org_id": org, "mode": "read", "name": "team 👩\u{200d}💻" });
    let created = app.post("/apikey", &app.owner.key, body).await.ok();
    assert_eq!(created["apikey"]["name"], "team 👩\u{200d}💻");
}

#[tokio::test]
async fn app_ids_are_one_whatever_their_case_and_surrounding_spaces() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let body = json!({ "org_id": org, "app_id": " COM.Acme.One ", "name": "One" });
    let created = app.post("/app", &app.owner.key, body).await.ok();
    assert_eq!(created["app"]["app_id"], "com.acme.one");
    let again = json!({ "org_id": org, "app_id": "com.acme.one", "name": "Again" });
    app.post("/app", &app.owner.key, again).await.error(409, "app_exists");
    let shouting = json!({ "org_id": org, "app_id": "COM.ACME.ONE", "name": "Again" });
    app.post("/app", &app.owner.key, shouting).await.error(409, "app_exists");
    assert_eq!(app.get("/app/COM.ACME.ONE", &app.owner.key).await.ok()["app"]["name"], "One");
    assert_eq!(app.get("/app/com.acme.one%20", &app.owner.key).await.ok()["app"]["app_id"], "com.acme.one");
    // Keys limited to an app name it the same way.
    let body = json!({ "org_id": org, "mode": "read", "limited_to_apps": ["Com.Acme.One"] });
    let key = app.post("/apikey", &app.owner.key, body).await.ok();
    assert_eq!(key["apikey"]["limited_to_apps"], json!(["com.acme.one"]));
}
