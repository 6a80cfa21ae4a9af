//! `GET`, `PUT` and `DELETE` on `/apikey`: who sees which key, and what
//! each may change.

use chrono::{Duration, Utc};
use keygate_core::Role;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn id(key: &Value) -> i64 {
    key["id"].as_i64().expect("id")
}

fn secret(key: &Value) -> &str {
    key["key"].as_str().expect("key")
}

#[tokio::test]
async fn the_list_holds_the_callers_own_keys_only() {
    let app = spawn_app().await;
    let mine = app.owner_key("read").await;
    let member = app.member("dev@example.com", Role::Write).await;
    let theirs = app.create_key(&member.key, json!({ "org_id": member.org_id, "mode": "read" })).await;
    let rival = app.tenant("rival@example.com").await;

    let listed = app.listed_ids("/apikey", &app.owner.key).await;
    assert_eq!(listed, vec![app.owner.key_id, id(&mine)]);
    let listed = app.listed_ids("/apikey", &member.key).await;
    assert_eq!(listed, vec![member.key_id, id(&theirs)]);
    assert_eq!(app.listed_ids("/apikey", &rival.key).await, vec![rival.key_id]);
}

#[tokio::test]
async fn a_scoped_key_lists_only_keys_inside_its_scope() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let scoped = app.owner_key("all").await;
    let limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.example.a"] }),
        )
        .await;
    let listed = app.listed_ids("/apikey", secret(&scoped)).await;
    assert_eq!(listed, vec![id(&scoped), id(&limited)], "the unscoped bootstrap key is outside the scope");
    let listed = app.listed_ids("/apikey", secret(&limited)).await;
    assert_eq!(listed, vec![id(&limited)]);
}

#[tokio::test]
async fn an_admin_lists_every_key_of_the_organization() {
    let app = spawn_app().await;
    let member = app.member("dev@example.com", Role::Write).await;
    let theirs = app.create_key(&member.key, json!({ "org_id": member.org_id, "mode": "read" })).await;
    let mine = app.owner_key("upload").await;
    let path = format!("/apikey?org_id={}", app.owner.org_id);
    let listed = app.listed_ids(&path, &app.owner.key).await;
    assert_eq!(listed, vec![id(&theirs), id(&mine)], "org-scoped keys only, every member's");

    app.get(&path, &member.key).await.error(403, "insufficient_permissions");
    let rival = app.tenant("rival@example.com").await;
    app.get(&path, &rival.key).await.error(404, "org_not_found");
    app.get("/apikey?org_id=nonsense", &app.owner.key).await.error(404, "org_not_found");
}

#[tokio::test]
async fn a_role_change_applies_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let path = format!("/apikey?org_id={}", app.owner.org_id);
    app.get(&path, &admin.key).await.ok();
    app.member("admin@example.com", Role::Read).await;
    app.get(&path, &admin.key).await.error(403, "insufficient_permissions");
}

#[tokio::test]
async fn one_key_is_read_by_id_or_by_full_key() {
    let app = spawn_app().await;
    let key = app.owner_key("write").await;
    for path in [format!("/apikey/{}", id(&key)), format!("/apikey/{}/", secret(&key))] {
        let shown = app.get(&path, &app.owner.key).await.ok();
        assert_eq!(shown["apikey"]["id"], key["id"]);
        assert_eq!(shown["apikey"]["mode"], "write");
        assert!(!shown.to_string().contains(secret(&key)));
    }
}

#[tokio::test]
async fn other_peoples_keys_are_404_never_403() {
    let app = spawn_app().await;
    let member = app.member("dev@example.com", Role::Admin).await;
    let rival = app.tenant("rival@example.com").await;
    let owners = app.owner_key("read").await;
    let rivals = app.create_key(&rival.key, json!({ "org_id": rival.org_id, "mode": "read" })).await;
    let unscoped_owner = format!("/apikey/{}", app.owner.key_id);

    for (caller, path) in [
        (&rival.key, format!("/apikey/{}", id(&owners))),
        (&rival.key, format!("/apikey/{}", secret(&owners))),
        (&app.owner.key, format!("/apikey/{}", id(&rivals))),
        // An admin sees org-scoped keys, not another member's unscoped key.
        (&member.key, unscoped_owner.clone()),
    ] {
        app.get(&path, caller).await.error(404, "api_key_not_found");
        app.put(&path, caller, json!({ "name": "stolen" })).await.error(404, "api_key_not_found");
        app.delete(&path, caller).await.error(404, "api_key_not_found");
    }
    // Nothing was changed: the keys still work under their old names.
    app.get(&format!("/apikey/{}", id(&owners)), &app.owner.key).await.ok();
    app.get("/apikey", &rival.key).await.ok();
    let unknown = format!("/apikey/{}", i64::MAX);
    app.get(&unknown, &app.owner.key).await.error(404, "api_key_not_found");
    app.get("/apikey/99999999999999999999999", &app.owner.key).await.error(404, "api_key_not_found");
    app.get("/apikey/ak_typo", &app.owner.key).await.error(404, "api_key_not_found");
}

#[tokio::test]
async fn an_admin_reads_changes_and_revokes_members_keys() {
    let app = spawn_app().await;
    let member = app.member("dev@example.com", Role::Write).await;
    let theirs = app.create_key(&member.key, json!({ "org_id": member.org_id, "mode": "upload" })).await;
    let path = format!("/apikey/{}", id(&theirs));
    app.get(&path, &app.owner.key).await.ok();
    let changed = app.put(&path, &app.owner.key, json!({ "mode": "read" })).await.ok();
    assert_eq!(changed["apikey"]["mode"], "read");
    assert_eq!(app.delete(&path, &app.owner.key).await.ok(), json!({ "success": true }));
    app.get("/apikey", secret(&theirs)).await.error(401, "invalid_api_key");
    // The member cannot touch the owner's keys.
    let owners = app.owner_key("read").await;
    let path = format!("/apikey/{}", id(&owners));
    app.delete(&path, &member.key).await.error(404, "api_key_not_found");
}

#[tokio::test]
async fn update_changes_name_mode_apps_and_expiry() {
    let app = spawn_app().await;
    let key = app.owner_key("read").await;
    let path = format!("/apikey/{}", id(&key));
    let at = (Utc::now() + Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body =
        json!({ "name": "renamed", "mode": "write", "limited_to_apps": ["com.example.a"], "expires_at": at });
    let updated = app.put(&path, &app.owner.key, body).await.ok()["apikey"].clone();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["mode"], "write");
    assert_eq!(updated["limited_to_apps"], json!(["com.example.a"]));
    assert_eq!(updated["expires_at"], at.as_str());
    // As times, not as text: `…:05Z` sorts after `…:05.1Z`.
    let time = |value: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339")
    };
    assert!(time(&updated["updated_at"]) >= time(&key["updated_at"]), "{updated} {key}");
    assert!(updated["key"].as_str().expect("preview").contains('…'));

    let read_back = app.get(&path, &app.owner.key).await.ok()["apikey"].clone();
    assert_eq!(read_back, updated);
    // The key itself behaves as a write key now, and still authenticates.
    app.get("/apikey", secret(&key)).await.error(403, "insufficient_permissions");

    let cleared =
        app.put(&path, &app.owner.key, json!({ "expires_at": null, "limited_to_apps": [] })).await.ok();
    assert_eq!(cleared["apikey"]["expires_at"], Value::Null);
    assert_eq!(cleared["apikey"]["limited_to_apps"], json!([]));
    assert_eq!(cleared["apikey"]["name"], "renamed", "untouched fields keep their value");
}

#[tokio::test]
async fn an_update_may_send_back_the_object_it_read() {
    let app = spawn_app().await;
    let key = app.owner_key("read").await;
    let path = format!("/apikey/{}", id(&key));
    let mut object = app.get(&path, &app.owner.key).await.ok()["apikey"].clone();
    object["name"] = json!("round trip");
    let updated = app.put(&path, &app.owner.key, object).await.ok();
    assert_eq!(updated["apikey"]["name"], "round trip");
    assert_eq!(updated["apikey"]["org_id"], app.owner.org_id.as_str());
}

#[tokio::test]
async fn bad_updates_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let key = app.owner_key("read").await;
    let path = format!("/apikey/{}", id(&key));
    app.put(&path, &app.owner.key, json!({ "mode": "superuser" })).await.error(400, "invalid_mode");
    app.put(&path, &app.owner.key, json!({ "mode": 1 })).await.error(400, "invalid_mode");
    app.put(&path, &app.owner.key, json!({ "name": "" })).await.error(400, "invalid_name");
    app.put(&path, &app.owner.key, json!({ "name": 7 })).await.error(400, "invalid_body");
    app.put(&path, &app.owner.key, json!({ "expires_at": "soon" })).await.error(400, "invalid_expires_at");
    app.put(&path, &app.owner.key, json!({ "limited_to_apps": ["nope"] }))
        .await
        .error(400, "invalid_limited_to_apps");
    app.put(&path, &app.owner.key, json!({ "colour": "red" })).await.error(400, "invalid_body");
    let reply = app.raw(reqwest::Method::PUT, &path, &app.owner.key, "{\"name\":").await;
    reply.error(400, "invalid_body");
    let after = app.get(&path, &app.owner.key).await.ok()["apikey"].clone();
    assert_eq!(
        after,
        key.as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("key".into(), after["key"].clone());
                Value::Object(o)
            })
            .expect("object")
    );
}

#[tokio::test]
async fn updates_never_widen_a_key_beyond_the_caller() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let limited = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "all", "limited_to_apps": ["com.example.a"] }),
        )
        .await;
    // Made by an unrestrained key: an app-limited one creates none.
    let child = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "read", "limited_to_apps": ["com.example.a"] }),
        )
        .await;
    let path = format!("/apikey/{}", id(&child));
    let caller = secret(&limited);
    app.put(&path, caller, json!({ "limited_to_apps": [] })).await.error(403, "insufficient_permissions");
    app.put(&path, caller, json!({ "limited_to_apps": ["com.example.b"] }))
        .await
        .error(403, "insufficient_permissions");
    // An app-limited key manages itself alone, even inside its apps.
    app.put(&path, caller, json!({ "mode": "all" })).await.error(403, "insufficient_permissions");
    let own_path = format!("/apikey/{}", id(&limited));
    app.put(&own_path, caller, json!({ "name": "narrowed", "mode": "read" })).await.ok();

    let soon = Utc::now() + Duration::hours(1);
    let expiring = app
        .create_key(&app.owner.key, json!({ "org_id": org, "mode": "all", "expires_at": soon.to_rfc3339() }))
        .await;
    let own = app
        .create_key(
            secret(&expiring),
            json!({ "org_id": org, "mode": "read", "expires_at": soon.to_rfc3339() }),
        )
        .await;
    let path = format!("/apikey/{}", id(&own));
    app.put(&path, secret(&expiring), json!({ "expires_at": null }))
        .await
        .error(403, "insufficient_permissions");
}

#[tokio::test]
async fn only_mode_all_reads_changes_or_deletes_keys() {
    let app = spawn_app().await;
    let target = app.owner_key("read").await;
    let path = format!("/apikey/{}", id(&target));
    for mode in ["read", "write", "upload"] {
        let caller = app.owner_key(mode).await;
        let caller = secret(&caller);
        app.get(&path, caller).await.error(403, "insufficient_permissions");
        app.put(&path, caller, json!({ "name": "x" })).await.error(403, "insufficient_permissions");
        app.delete(&path, caller).await.error(403, "insufficient_permissions");
    }
    app.get(&path, &app.owner.key).await.ok();
}

#[tokio::test]
async fn delete_by_id_or_full_key_then_404() {
    let app = spawn_app().await;
    let by_id = app.owner_key("write").await;
    let by_key = app.owner_key("read").await;
    for path in [format!("/apikey/{}/", id(&by_id)), format!("/apikey/{}", secret(&by_key))] {
        assert_eq!(app.delete(&path, &app.owner.key).await.ok(), json!({ "success": true }));
        app.delete(&path, &app.owner.key).await.error(404, "api_key_not_found");
    }
    app.get("/apikey", secret(&by_id)).await.error(401, "invalid_api_key");
    app.get("/apikey", secret(&by_key)).await.error(401, "invalid_api_key");
    assert_eq!(app.listed_ids("/apikey", &app.owner.key).await, vec![app.owner.key_id]);
}

#[tokio::test]
async fn a_key_can_delete_itself() {
    let app = spawn_app().await;
    let key = app.owner_key("all").await;
    let path = format!("/apikey/{}", id(&key));
    app.delete(&path, secret(&key)).await.ok();
    app.get("/apikey", secret(&key)).await.error(401, "invalid_api_key");
}

#[tokio::test]
async fn an_admin_changes_and_deletes_only_keys_of_members_below_them() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let admin = app.member("admin@example.com", Role::Admin).await;
    let owners = app
        .create_key(
            &app.owner.key,
            json!({ "org_id": org, "mode": "read", "limited_to_apps": ["com.acme.a"] }),
        )
        .await;
    let peer = app.member("peer@example.com", Role::Admin).await;
    let peers = app.create_key(&peer.key, json!({ "org_id": org, "mode": "read" })).await;
    let widen = json!({ "mode": "all", "limited_to_apps": [] });
    // Visible to an admin, but neither the owner's key nor a peer's changes or goes.
    for key in [&owners, &peers] {
        let path = format!("/apikey/{}", id(key));
        app.get(&path, &admin.key).await.ok();
        let text =
            app.put(&path, &admin.key, widen.clone()).await.error(403, "insufficient_permissions").to_owned();
        assert!(text.contains("equal to or above yours"), "{text}");
        app.put(&path, &admin.key, json!({ "name": "renamed" })).await.error(403, "insufficient_permissions");
        app.delete(&path, &admin.key).await.error(403, "insufficient_permissions");
    }
    let after = app.get(&format!("/apikey/{}", id(&owners)), &app.owner.key).await.ok();
    assert_eq!(
        (after["apikey"]["mode"].as_str(), after["apikey"]["name"].as_str()),
        (Some("read"), Some("New API Key"))
    );
    // A writer's key: changed and deleted from above.
    let writer = app.member("writer@example.com", Role::Write).await;
    let writers = app.create_key(&writer.key, json!({ "org_id": org, "mode": "read" })).await;
    let path = format!("/apikey/{}", id(&writers));
    app.put(&path, &admin.key, json!({ "name": "renamed" })).await.ok();
    app.delete(&path, &admin.key).await.ok();
    // The owner reaches everyone's.
    app.delete(&format!("/apikey/{}", id(&peers)), &app.owner.key).await.ok();
}

#[tokio::test]
async fn anyone_can_revoke_a_leaked_key_and_learn_nothing() {
    let app = spawn_app().await;
    let leaked = app.owner_key("all").await;
    let leaked = secret(&leaked).to_owned();
    let unknown = keygate_core::ApiKeySecret::generate().expect("rng");
    for key in [leaked.as_str(), unknown.expose(), "ak_typo", leaked.as_str()] {
        let reply =
            app.call(reqwest::Method::POST, "/apikey/revoke", None, Some(json!({ "key": key }))).await;
        assert_eq!(reply.ok(), json!({ "success": true }), "same answer for {key:.8}");
    }
    app.get("/apikey", &leaked).await.error(401, "invalid_api_key");
    app.get("/apikey", &app.owner.key).await.ok();
    // Whatever the body, the same answer, and nothing changes.
    let owner = app.owner.key.clone();
    for body in [json!({ "secret": owner }), json!({}), json!({ "keys": [owner] }), json!({ "key": 5 })] {
        let reply = app.call(reqwest::Method::POST, "/apikey/revoke", None, Some(body)).await;
        assert_eq!(reply.ok(), json!({ "success": true }));
    }
    let reply = app.raw(reqwest::Method::POST, "/apikey/revoke", "", "{not json").await;
    assert_eq!(reply.ok(), json!({ "success": true }));
    app.get("/apikey", &app.owner.key).await.ok();
    // Tenth review: a key reported as it leaked, `Bearer` and all, was
    // answered as revoked and kept working.
    let bearer = secret(&app.owner_key("all").await).to_owned();
    let reply = app.call(
        reqwest::Method::POST,
        "/apikey/revoke",
        None,
        Some(json!({ "key": format!("Bearer {bearer}") })),
    );
    assert_eq!(reply.await.ok(), json!({ "success": true }));
    app.get("/apikey", &bearer).await.error(401, "invalid_api_key");
    // Eleventh review: sent in the query, as every POST takes its fields,
    // it was answered as revoked and kept working.
    let queried = secret(&app.owner_key("all").await).to_owned();
    let path = format!("/apikey/revoke?key={queried}");
    assert_eq!(app.call(reqwest::Method::POST, &path, None, None).await.ok(), json!({ "success": true }));
    app.get("/apikey", &queried).await.error(401, "invalid_api_key");
}

#[tokio::test]
async fn rotation_gives_a_new_secret_and_kills_the_old_one_at_once_by_default() {
    let app = spawn_app().await;
    let key = app
        .create_key(&app.owner.key, json!({ "org_id": app.owner.org_id, "mode": "all", "name": "CI" }))
        .await;
    let old = secret(&key).to_owned();
    let path = format!("/apikey/{}/rotate", id(&key));
    let rotated = app.call(reqwest::Method::POST, &path, Some(&old), None).await.ok()["apikey"].clone();
    let new = secret(&rotated).to_owned();
    assert_ne!(new, old);
    assert!(keygate_core::ApiKeySecret::parse(&new).is_ok());
    assert_eq!(
        (rotated["id"].clone(), rotated["name"].clone(), rotated["mode"].clone()),
        (key["id"].clone(), json!("CI"), json!("all"))
    );
    app.get("/apikey", &old).await.error(401, "invalid_api_key");
    app.get("/apikey", &new).await.ok();
    let listed = app.get(&format!("/apikey/{}", id(&key)), &new).await.ok();
    assert_eq!(listed["apikey"]["key"], format!("ak_{}…{}", &new[3..7], &new[48..]));
}

#[tokio::test]
async fn during_the_grace_period_either_secret_works_and_either_one_revokes() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    for revoke_with_old in [true, false] {
        let key = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
        let old = secret(&key).to_owned();
        let path = format!("/apikey/{}/rotate", id(&key));
        let rotated = app.post(&path, &app.owner.key, json!({ "grace_period_seconds": 3600 })).await.ok();
        let new = secret(&rotated["apikey"]).to_owned();
        for s in [&old, &new] {
            app.get("/apikey", s).await.error(403, "insufficient_permissions");
        }
        let reported = if revoke_with_old { &old } else { &new };
        app.call(reqwest::Method::POST, "/apikey/revoke", None, Some(json!({ "key": reported }))).await.ok();
        for s in [&old, &new] {
            app.get("/apikey", s).await.error(401, "invalid_api_key");
        }
    }
    // Deleting by the old secret removes the key too.
    let key = app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "read" })).await;
    let old = secret(&key).to_owned();
    let path = format!("/apikey/{}/rotate", id(&key));
    let rotated = app.post(&path, &app.owner.key, json!({ "grace_period_seconds": 60 })).await.ok();
    app.delete(&format!("/apikey/{old}"), &app.owner.key).await.ok();
    app.get("/apikey", secret(&rotated["apikey"])).await.error(401, "invalid_api_key");
}

#[tokio::test]
async fn only_the_keys_own_user_rotates_it_within_bounds() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let member = app.member("dev@example.com", Role::Write).await;
    let theirs = app.create_key(&member.key, json!({ "org_id": org, "mode": "read" })).await;
    let path = format!("/apikey/{}/rotate", id(&theirs));
    app.post(&path, &app.owner.key, json!({})).await.error(403, "insufficient_permissions");
    let rival = app.tenant("rival@example.com").await;
    app.post(&path, &rival.key, json!({})).await.error(404, "api_key_not_found");
    for grace in [json!(-1), json!(604_801)] {
        app.post(&path, &member.key, json!({ "grace_period_seconds": grace }))
            .await
            .error(400, "invalid_grace_period");
    }
    app.post(&path, &member.key, json!({ "grace_period_seconds": "1h" })).await.error(400, "invalid_body");
    app.get("/apikey", secret(&theirs)).await.error(403, "insufficient_permissions");
    let read = app.owner_key("read").await;
    let own = format!("/apikey/{}/rotate", id(&read));
    app.post(&own, secret(&read), json!({})).await.error(403, "insufficient_permissions");
    app.post(&path, &member.key, json!({ "grace_period_seconds": 604_800 })).await.ok();
}

#[tokio::test]
async fn usage_counts_requests_and_denials_per_day() {
    let app = spawn_app().await;
    let key = app.owner_key("read").await;
    for _ in 0..3 {
        app.get("/apikey", secret(&key)).await.error(403, "insufficient_permissions");
    }
    app.get("/organization", secret(&key)).await.ok();
    let path = format!("/apikey/{}/usage?days=7", id(&key));
    let mut usage = Value::Null;
    for _ in 0..50 {
        usage = app.get(&path, &app.owner.key).await.ok();
        if usage["data"][6]["requests"] == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let days = usage["data"].as_array().expect("data");
    assert_eq!(days.len(), 7, "one entry per day: {usage}");
    let today = chrono::Utc::now().date_naive().to_string();
    let counts = json!({ "date": today, "requests": 4, "denied": 3, "credits": 0, "rate_limited": 0,
        "usage_exceeded": 0, "disabled": 0 });
    assert_eq!(days[6], counts, "{usage}");
    assert!(days[..6].iter().all(|d| d["requests"] == 0 && d["denied"] == 0));
    assert!(days.windows(2).all(|w| w[0]["date"].as_str() < w[1]["date"].as_str()), "oldest first");
    assert!(usage["last_used_at"].is_string());

    let default = app.get(&format!("/apikey/{}/usage", id(&key)), &app.owner.key).await.ok();
    assert_eq!(default["data"].as_array().map(Vec::len), Some(30));
    for days in ["0", "91", "week"] {
        let path = format!("/apikey/{}/usage?days={days}", id(&key));
        app.get(&path, &app.owner.key).await.error(400, "invalid_days");
    }
    let rival = app.tenant("rival@example.com").await;
    app.get(&path, &rival.key).await.error(404, "api_key_not_found");
    app.get(&path, secret(&key)).await.error(403, "insufficient_permissions");
}

#[tokio::test]
async fn a_key_cannot_rotate_a_sibling_into_a_longer_lived_credential() {
    let app = spawn_app().await;
    let org = &app.owner.org_id;
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let short =
        app.create_key(&app.owner.key, json!({ "org_id": org, "mode": "all", "expires_at": soon })).await;
    let forever = app.owner_key("all").await;
    let path = format!("/apikey/{}/rotate", id(&forever));
    app.post(&path, secret(&short), json!({})).await.error(403, "insufficient_permissions");
    app.get("/apikey", secret(&forever)).await.ok();
    let own = format!("/apikey/{}/rotate", id(&short));
    app.post(&own, secret(&short), json!({})).await.ok();
}
