//! An organization's admins see every key that can act in it — its scoped
//! keys and its members' unscoped keys, masked — and can stop any of them
//! from acting in it.

use keygate_core::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn admins_see_every_key_acting_in_their_organization_and_block_a_members_unscoped_key() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let member = app.member("dev@example.com", Role::Write).await;
    let scoped = app.create_key(&member.key, json!({ "org_id": org, "mode": "read" })).await;
    // The member belongs to another organization too.
    let other = app.tenant("other@example.com").await;
    let other_org: uuid::Uuid = other.org_id.parse().expect("uuid");
    keygate::admin::add_user_as(app.store.as_ref(), "dev@example.com", other_org, Role::Read, true)
        .await
        .expect("member elsewhere");

    let listed = app.get(&format!("/organization/keys?org_id={org}"), &app.owner.key).await.ok();
    let ids: Vec<i64> =
        listed["data"].as_array().expect("data").iter().filter_map(|k| k["id"].as_i64()).collect();
    for id in [app.owner.key_id, member.key_id, scoped["id"].as_i64().expect("id")] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(!listed.to_string().contains(&member.key), "masked: {listed}");
    assert!(listed["data"].as_array().expect("data").iter().all(|k| k["blocked"] == false));

    let block = json!({ "org_id": org, "key_id": member.key_id });
    app.post("/organization/keys/block", &app.owner.key, block.clone()).await.ok();
    app.post("/organization/keys/block", &app.owner.key, block).await.ok();
    let listed = app.get(&format!("/organization/keys?org_id={org}"), &app.owner.key).await.ok();
    let blocked = listed["data"].as_array().expect("data").iter().find(|k| k["id"] == member.key_id).cloned();
    assert_eq!(blocked.expect("listed")["blocked"], true);

    // Blocked here, at once: the organization is invisible to that key…
    app.get(&format!("/organization/members?org_id={org}"), &member.key).await.error(404, "org_not_found");
    app.get(&format!("/app?org_id={org}"), &member.key).await.error(404, "org_not_found");
    let orgs = app.get("/organization", &member.key).await.ok();
    let seen: Vec<&str> =
        orgs["data"].as_array().expect("data").iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(seen, [other.org_id.as_str()], "only the other organization");
    // …which it still reaches elsewhere; and the member's scoped key is untouched.
    app.get(&format!("/organization/members?org_id={}", other.org_id), &member.key).await.ok();
    let key = scoped["key"].as_str().expect("secret");
    app.get(&format!("/organization/members?org_id={org}"), key).await.ok();

    app.delete(&format!("/organization/keys/block?org_id={org}&key_id={}", member.key_id), &app.owner.key)
        .await
        .ok();
    app.get(&format!("/organization/members?org_id={org}"), &member.key).await.ok();
    app.delete(&format!("/organization/keys/block?org_id={org}&key_id={}", member.key_id), &app.owner.key)
        .await
        .error(404, "api_key_not_found");

    let audit = app.get(&format!("/organization/audit?org_id={org}"), &app.owner.key).await.ok();
    let actions: Vec<&str> =
        audit["data"].as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"apikey.block") && actions.contains(&"apikey.unblock"), "{actions:?}");
}

#[tokio::test]
async fn only_admins_block_and_only_members_unscoped_keys() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    let member = app.member("dev@example.com", Role::Write).await;
    let scoped = app.create_key(&member.key, json!({ "org_id": org, "mode": "read" })).await;
    let outsider = app.tenant("outsider@example.com").await;
    let block = |key_id: i64| json!({ "org_id": org, "key_id": key_id });

    app.post("/organization/keys/block", &member.key, block(app.owner.key_id))
        .await
        .error(403, "insufficient_permissions");
    app.get(&format!("/organization/keys?org_id={org}"), &member.key)
        .await
        .error(403, "insufficient_permissions");
    let scoped_id = scoped["id"].as_i64().expect("id");
    app.post("/organization/keys/block", &app.owner.key, block(scoped_id)).await.error(400, "key_is_scoped");
    app.post("/organization/keys/block", &app.owner.key, block(outsider.key_id))
        .await
        .error(404, "api_key_not_found");
    app.post("/organization/keys/block", &app.owner.key, block(app.owner.key_id))
        .await
        .error(400, "cannot_block_own_key");
    app.call(Method::POST, "/organization/keys/block", Some(&app.owner.key), Some(json!({ "org_id": org })))
        .await
        .error(400, "key_id_required");
}
