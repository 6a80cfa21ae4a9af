//! Every key mode × member role × action, over real HTTP, compared with the
//! contract's tables — written here once more, independently of the code.

use std::collections::HashMap;

use keygate_core::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

/// The contract's tables: what each key mode and each member role permits.
const MODE_PERMITS: [(&str, &str); 4] = [("read", "R"), ("write", "RW"), ("upload", "RWU"), ("all", "RWUAO")];
const ROLE_PERMITS: [(&str, &str); 5] =
    [("read", "R"), ("upload", "RU"), ("write", "RUW"), ("admin", "RUWA"), ("super_admin", "RUWAO")];

fn expected(mode: &str, role: &str, action: char) -> u16 {
    let table = |t: &[(&str, &str)], k: &str| {
        t.iter().find(|(n, _)| *n == k).map(|(_, a)| a.to_string()).expect("row")
    };
    if table(&MODE_PERMITS, mode).contains(action) && table(&ROLE_PERMITS, role).contains(action) {
        200
    } else {
        403
    }
}

#[tokio::test]
async fn modes_roles_and_actions_follow_the_contract_tables() {
    let app = spawn_app().await;
    let org = app.owner.org_id.clone();
    app.app("com.acme.app").await;
    let mut keys: HashMap<(&str, &str), String> = HashMap::new();
    for (role_name, _) in ROLE_PERMITS {
        let role = Role::parse(role_name).expect("role");
        let member = app.member(&format!("{role_name}@example.com"), role).await;
        for (mode, _) in MODE_PERMITS {
            let key = app.create_key(&member.key, json!({ "org_id": org, "mode": mode })).await;
            keys.insert((mode, role_name), key["key"].as_str().expect("key").to_owned());
        }
    }

    let mut version = 0;
    let mut mismatches = Vec::new();
    for ((mode, role), key) in &keys {
        for action in ['R', 'W', 'U', 'A'] {
            let reply = match action {
                'R' => app.get("/app/com.acme.app", key).await,
                'W' => {
                    app.put("/app/com.acme.app", key, json!({ "name": format!("renamed by {mode}/{role}") }))
                        .await
                }
                'U' => {
                    version += 1;
                    app.upload(key, "com.acme.app", &format!("1.0.{version}"), b"bundle".to_vec()).await
                }
                _ => app.put("/organization", key, json!({ "org_id": org, "name": "Acme" })).await,
            };
            let want = expected(mode, role, action);
            if reply.status != want {
                mismatches
                    .push(format!("{mode} key, {role} role, {action}: got {} want {want}", reply.status));
            } else if want == 403 {
                reply.error(403, "insufficient_permissions");
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));

    // O: only an `all` key of a super_admin deletes the organization.
    let own = format!("/organization?org_id={org}");
    for ((mode, role), key) in &keys {
        if (*mode, *role) != ("all", "super_admin") {
            let reply = app.call(Method::DELETE, &own, Some(key), None).await;
            assert_eq!(reply.status, expected(mode, role, 'O'), "{mode}/{role} deleting the organization");
            reply.error(403, "insufficient_permissions");
        }
    }
    let owner_key = &keys[&("all", "super_admin")];
    assert_eq!(app.call(Method::DELETE, &own, Some(owner_key), None).await.ok(), json!({ "success": true }));
}
