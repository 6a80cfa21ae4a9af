//! `GET /openapi.json` describes every route the router has, and every
//! route it describes is served.

use std::collections::BTreeSet;

use reqwest::Method;

use crate::helpers::spawn_app;

/// Every (method, path) keygate serves, listed by hand: a new route must be
/// added here, and to the document, for this test to pass.
const ROUTES: [(&str, &str); 54] = [
    ("get", "/"),
    ("get", "/health"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
    ("get", "/apikey"),
    ("post", "/apikey"),
    ("post", "/apikey/revoke"),
    ("get", "/apikey/{id_or_key}/usage"),
    ("post", "/verify"),
    ("post", "/apikey/{id_or_key}/rotate"),
    ("get", "/apikey/{id_or_key}"),
    ("put", "/apikey/{id_or_key}"),
    ("delete", "/apikey/{id_or_key}"),
    ("get", "/organization"),
    ("post", "/organization"),
    ("put", "/organization"),
    ("delete", "/organization"),
    ("get", "/organization/members"),
    ("post", "/organization/members"),
    ("delete", "/organization/members"),
    ("get", "/organization/audit"),
    ("post", "/organization/invites"),
    ("get", "/organization/invites"),
    ("delete", "/organization/invites"),
    ("post", "/invites/redeem"),
    ("get", "/organization/keys"),
    ("post", "/organization/keys/block"),
    ("delete", "/organization/keys/block"),
    ("get", "/app"),
    ("post", "/app"),
    ("get", "/app/{app_id}"),
    ("put", "/app/{app_id}"),
    ("delete", "/app/{app_id}"),
    ("get", "/bundle"),
    ("post", "/bundle"),
    ("delete", "/bundle"),
    ("get", "/auth"),
    ("head", "/auth"),
    ("post", "/auth"),
    ("put", "/auth"),
    ("patch", "/auth"),
    ("delete", "/auth"),
    ("options", "/auth"),
    ("trace", "/auth"),
    ("get", "/auth/{rest}"),
    ("head", "/auth/{rest}"),
    ("post", "/auth/{rest}"),
    ("put", "/auth/{rest}"),
    ("patch", "/auth/{rest}"),
    ("delete", "/auth/{rest}"),
    ("options", "/auth/{rest}"),
    ("trace", "/auth/{rest}"),
];

#[tokio::test]
async fn the_document_lists_every_route_and_every_listed_route_is_served() {
    let app = spawn_app().await;
    let reply = app.call(Method::GET, "/openapi.json", None, None).await;
    let document = reply.ok();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "not OpenAPI 3");
    let paths = document["paths"].as_object().expect("paths");

    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            documented.insert((method.clone(), path.clone()));
            assert!(operation["responses"]["200"].is_object(), "{method} {path} documents no 200");
            let public = matches!(
                path.as_str(),
                "/" | "/health"
                    | "/readyz"
                    | "/livez"
                    | "/openapi.json"
                    | "/metrics"
                    | "/apikey/revoke"
                    | "/invites/redeem"
            );
            // An operation's own requirements, else the document's: each
            // alternative must name a scheme for a credential to be needed.
            let effective = operation.get("security").unwrap_or(&document["security"]);
            let alternatives = effective.as_array().map(Vec::as_slice).unwrap_or_default();
            let needs_credential = !alternatives.is_empty()
                && alternatives.iter().all(|a| a.as_object().is_some_and(|schemes| !schemes.is_empty()));
            assert_eq!(needs_credential, !public, "{method} {path}: security {effective}");
        }
    }
    let mut expected: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    expected.insert(("get".into(), "/bundle/download".into()));
    assert_eq!(documented, expected);

    // Each documented operation reaches a handler: never the router's 404 or 405.
    for (method, path) in &documented {
        if path == "/metrics" {
            // Prometheus text, not JSON.
            let response = app.client.get(format!("{}/metrics", app.base)).send().await.expect("scrape");
            assert_eq!(response.status(), 200);
            let described = &paths["/metrics"]["get"]["responses"]["200"]["content"];
            assert!(described["text/plain"].is_object(), "/metrics is described as text/plain: {described}");
            continue;
        }
        let concrete = path.replace("{id_or_key}", "1").replace("{app_id}", "com.example.app");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let reply = app.call(method.clone(), &concrete, None, None).await;
        assert!(
            !matches!(reply.body["code"].as_str(), Some("not_found" | "method_not_allowed")),
            "{method} {concrete} is documented but not routed: {reply:?}"
        );
    }
    let schemas = document["components"]["schemas"].as_object().expect("schemas");
    for schema in ["ErrorBody", "ApiKeyView", "OrganizationView", "AppView", "BundleView"] {
        assert!(schemas.contains_key(schema), "{schema} is not described");
    }
}

/// What the server requires, the document requires: required inputs are
/// required and never `null`, bounded inputs carry their bounds, and the
/// bundle body is binary.
#[tokio::test]
async fn the_document_requires_what_the_server_requires() {
    let app = spawn_app().await;
    let document = app.call(Method::GET, "/openapi.json", None, None).await.ok();
    let schemas = &document["components"]["schemas"];
    for (schema, required) in [
        ("CreateApp", &["app_id", "name", "org_id"][..]),
        ("RenameApp", &["name"]),
        ("CreateOrganization", &["name"]),
        ("UpdateOrganization", &["org_id"]),
        ("SetMember", &["email", "org_id", "role"]),
        ("CreateFields", &["mode", "org_id"]),
    ] {
        let listed: BTreeSet<&str> =
            schemas[schema]["required"].as_array().expect(schema).iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(listed, required.iter().copied().collect(), "{schema}");
        for field in required {
            let property = &schemas[schema]["properties"][field];
            assert_eq!(property["type"], "string", "{schema}.{field} is a non-null string: {property}");
        }
    }
    assert_eq!(schemas["SetMember"]["properties"]["role"]["enum"].as_array().map(Vec::len), Some(5));
    assert!(schemas["CreateApp"]["properties"]["app_id"]["pattern"].is_string());
    assert_eq!(schemas["CreateApp"]["properties"]["name"]["maxLength"], 200);

    let parameters = |method: &str, path: &str| document["paths"][path][method]["parameters"].clone();
    let required = |method: &str, path: &str, name: &str| {
        let all = parameters(method, path);
        let found = all.as_array().and_then(|a| a.iter().find(|p| p["name"] == name)).cloned();
        found.unwrap_or_else(|| panic!("{method} {path} has no {name}"))["required"] == true
    };
    for (method, path) in
        [("get", "/bundle"), ("post", "/bundle"), ("delete", "/bundle"), ("get", "/bundle/download")]
    {
        assert!(required(method, path, "app_id") && required(method, path, "version"), "{method} {path}");
    }
    for path in ["/organization/members", "/organization/audit"] {
        assert!(required("get", path, "org_id"), "{path}");
    }
    assert!(required("delete", "/organization", "org_id"));
    assert!(required("delete", "/organization/members", "user_id"));
    assert!(!required("get", "/app", "org_id"), "listing apps needs no organization");

    let upload = &document["paths"]["/bundle"]["post"]["requestBody"]["content"]["application/octet-stream"];
    assert_eq!(upload["schema"]["format"], "binary", "{upload}");
    let revoke = &document["paths"]["/apikey/revoke"]["post"];
    assert!(revoke["responses"]["413"].is_object(), "revoke documents 413");
    assert!(document["paths"]["/verify"]["post"]["responses"]["503"].is_object(), "verify documents 503");
}
