//! The forwarded requests keygate reads and refuses, by proxy and rule.

use super::*;
use keygate_core::authz::Action;

const RULES: &str = r#"
    [[rule]]
    path = "/health"
    action = "public"

    [[rule]]
    methods = ["post", "PUT"]
    path = "/apps/{app_id}/bundles/**"
    action = "upload"

    [[rule]]
    path = "/apps/{app_id}/**"
    action = "read"
    methods = ["GET"]

    [[rule]]
    path = "/orgs/{org_id}/members/*"
    action = "admin"

    [[rule]]
    path = "/admin/**"
    action = "own"

    [[rule]]
    path = "/Reports/**"
    action = "admin"
    case_insensitive = true

    [[rule]]
    path = "/v1/**"
    action = "write"
    app_id_header = "x-app"
    org_id_header = "x-org"
"#;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, value.parse().expect("value"));
    }
    map
}

fn caddy() -> ForwardAuth {
    ForwardAuth::new(Proxy::Caddy, Rules::parse(RULES).expect("rules"))
}

/// What `/auth` judges for a Caddy-forwarded `method target`.
fn judge(method: &str, target: &str) -> Result<Vec<Judged>, BadForward> {
    judge_with(method, target, &[])
}

fn judge_with(method: &str, target: &str, extra: &[(&'static str, &str)]) -> Result<Vec<Judged>, BadForward> {
    let mut map = headers(&[("x-forwarded-method", method), ("x-forwarded-uri", target)]);
    for (name, value) in extra {
        map.append(*name, value.parse().expect("value"));
    }
    caddy().judge(&Method::GET, &"/auth".parse().expect("uri"), &map)
}

/// What `method target` needs by the rule it matches: a POST judged as
/// for an upstream that never reads a method from a body.
fn need(method: &str, target: &str) -> Need {
    let rules = format!("body_may_override_method = false\n{RULES}");
    let caddy = ForwardAuth::new(Proxy::Caddy, Rules::parse(&rules).expect("rules"));
    let forwarded = headers(&[("x-forwarded-method", method), ("x-forwarded-uri", target)]);
    let judged = caddy
        .judge(&Method::GET, &"/auth".parse().expect("uri"), &forwarded)
        .unwrap_or_else(|e| panic!("{method} {target}: {e:?}"));
    assert_eq!(judged.len(), 1);
    judged[0].need
}

fn refused(method: &str, target: &str) -> &'static str {
    match judge(method, target) {
        Err(bad) => bad.code,
        Ok(judged) => panic!("{method} {target} was judged {judged:?}"),
    }
}

#[test]
fn the_first_matching_rule_decides_and_captures() {
    assert_eq!(need("GET", "/health"), Need::Public);
    assert_eq!(need("GET", "/health?x=1"), Need::Public);
    assert_eq!(need("POST", "/apps/com.a.b/bundles/1.0.0"), Need::Key(Action::Upload));
    let upload = &judge("POST", "/apps/com.a.b/bundles/1.0.0").expect("judged")[0];
    assert_eq!(upload.app_id.as_deref(), Some("com.a.b"));
    assert_eq!(need("POST", "/apps/com.a.b/bundles"), Need::Key(Action::Upload), "** may be empty");
    let read = &judge("GET", "/apps/com.a.b/bundles/1.0.0").expect("judged")[0];
    assert_eq!((read.need, read.app_id.as_deref()), (Need::Key(Action::Read), Some("com.a.b")));
    let org = &judge("DELETE", "/orgs/0190/members/42").expect("judged")[0];
    assert_eq!((org.need, org.org_id.as_deref()), (Need::Key(Action::Administer), Some("0190")));
    assert_eq!(need("DELETE", "/orgs/0190/members/42/x"), Need::Key(Action::Write), "no rule");
    assert_eq!(need("GET", "/health/"), Need::Public, "a trailing slash is dropped");
    assert_eq!(need("GET", "/"), Need::Key(Action::Read));
    // Seventh review: `//public/admin/x` is `/admin/x` to a WHATWG URL parser.
    for path in ["//health/", "//health/admin", "/health//x", "///x", "/apps//x"] {
        assert_eq!(judge("GET", path).expect_err("refused").code, "ambiguous_path", "{path}");
    }
    assert_eq!(need("GET", "/caf%C3%A9"), Need::Key(Action::Read), "decoded once");
    // Eighth review: `%70ublic` is `public` to keygate, not to a WHATWG URL's pathname.
    // Ninth review: nor is `a%3Ab` the `a:b` a rule names, nor `%c3%a9` the `%C3%A9` it decodes alike.
    for path in [
        "/%68ealth",
        "/%70ublic/x",
        "/health/%2D",
        "/a%5Fb",
        "/%7E",
        "/docs/a%3Ab",
        "/a%2Bb",
        "/a%20b",
        "/caf%c3%a9",
    ] {
        assert_eq!(judge("GET", path).expect_err("refused").code, "ambiguous_path", "{path}");
    }
}

#[test]
fn without_a_rule_the_method_decides() {
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(need(method, "/anything"), Need::Key(Action::Read));
    }
    for method in ["POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND"] {
        assert_eq!(need(method, "/anything"), Need::Key(Action::Write));
    }
}

/// Every trick an upstream could resolve to another path than keygate
/// judged is refused, never guessed.
#[test]
fn ambiguous_paths_are_refused() {
    for target in [
        "/admin%2fsecret",
        "/admin%2Fsecret",
        "/x/%2e%2e/admin",
        "/x/%2E/admin",
        "/x/../admin",
        "/x/./admin",
        "/public/..;/admin",
        "/admin;jsessionid=1/secret",
        "/admin%3bx/secret",
        "/admin%5csecret",
        "/admin%252fsecret",
        "/auth/admin/%252e%252e/health",
        "/admin%25/secret",
        "/admin%00/secret",
        "/admin%0a/secret",
        "/admin%ff/secret",
        "/admin%3f/secret",
        "/admin%23/secret",
        "/ad%c2%admin/secret",
        "/ad%e2%80%8bmin/secret",
        "/%c0%ae%c0%ae/admin",
        "/admin./secret",
        "/admin%20/secret",
        "/%20admin/secret",
        "/%EF%BD%81dmin/secret",
        "/admin%e2%80%a4/secret",
        "/ad%min",
        "/admin%2",
        "/ADMIN/secret",
        "/Admin/secret",
    ] {
        let code = refused("GET", target);
        assert_eq!(code, "ambiguous_path", "{target}");
    }
    for target in ["admin", "*", "http://evil/admin", "/admin#x", "/adm in"] {
        let code = match judge("GET", target) {
            Err(bad) => bad.code,
            Ok(judged) => panic!("{target} was judged {judged:?}"),
        };
        assert_eq!(code, "bad_forwarded_target", "{target}");
    }
    assert_eq!(refused("GET", "/admin\\secret"), "ambiguous_path");
}

#[test]
fn well_formed_paths_pass_whatever_their_script() {
    for target in [
        "/apps/com.a.b/x",
        "/caf%C3%A9/menu",
        "/%E6%97%A5%E6%9C%AC/x",
        "/v2/items?q=a%2Fb&x=..",
        "/.well-known/x",
        "/a-b_c~d/1.0.0",
    ] {
        judge("GET", target).unwrap_or_else(|e| panic!("{target}: {e:?}"));
    }
}

#[test]
fn a_path_whose_case_decides_the_rule_is_refused_unless_the_rule_ignores_case() {
    assert_eq!(refused("GET", "/ADMIN/x"), "ambiguous_path");
    assert_eq!(need("GET", "/admin/x"), Need::Key(Action::Own));
    assert_eq!(need("GET", "/REPORTS/x"), Need::Key(Action::Administer), "the rule says so");
    assert_eq!(need("GET", "/reports/x"), Need::Key(Action::Administer));
    assert_eq!(need("GET", "/Users/X"), Need::Key(Action::Read), "no rule either way");
    // An app id the upstream receives in another form than keygate judges.
    assert_eq!(refused("GET", "/apps/COM.A.B/x"), "ambiguous_path");
    // Tenth review: a rule written in upper case was skipped by the path in
    // lower case, which a case-insensitive upstream serves as the rule's.
    let cased = ForwardAuth::new(Proxy::Nginx, Rules::parse(CASED).expect("rules"));
    let judge_cased = |target: &str| {
        let map = headers(&[("x-original-method", "GET"), ("x-original-uri", target)]);
        cased.judge(&Method::GET, &"/auth".parse().expect("uri"), &map)
    };
    for target in ["/admin/users", "/ADMIN/users", "/aDmin/x"] {
        assert_eq!(judge_cased(target).expect_err("refused").code, "ambiguous_path", "{target}");
    }
    assert_eq!(judge_cased("/Admin/users").expect("judged")[0].need, Need::Key(Action::Administer));
    assert_eq!(judge_cased("/users").expect("judged")[0].need, Need::Key(Action::Read), "no rule either way");
}

const CASED: &str = r#"
    [[rule]]
    path = "/Admin/**"
    action = "admin"

    [[rule]]
    methods = ["GET"]
    path = "/reports/**"
    action = "admin"

    [[rule]]
    path = "/orgs/{org_id}/**"
    org_id_header = "x-org"
    action = "write"
"#;

/// Tenth review: HEAD ran GET's handler upstream but was judged by the
/// default; and a path and a header naming two organizations let the
/// upstream read the one keygate did not judge.
#[test]
fn head_is_judged_as_get_and_an_organization_is_named_once() {
    let cased = ForwardAuth::new(Proxy::Nginx, Rules::parse(CASED).expect("rules"));
    let judge = |method: &str, target: &str, extra: &[(&'static str, &str)]| {
        let mut map = headers(&[("x-original-method", method), ("x-original-uri", target)]);
        for (name, value) in extra {
            map.append(*name, value.parse().expect("value"));
        }
        cased.judge(&Method::GET, &"/auth".parse().expect("uri"), &map)
    };
    for method in ["GET", "HEAD"] {
        assert_eq!(
            judge(method, "/reports/q1", &[]).expect(method)[0].need,
            Need::Key(Action::Administer),
            "{method}"
        );
    }
    let org = "01234567-89ab-7def-8123-456789abcdef";
    let other = "01234567-89ab-7def-8123-456789abcdee";
    let path = format!("/orgs/{org}/things");
    assert_eq!(judge("POST", &path, &[("x-org", org)]).expect("alike")[0].org_id.as_deref(), Some(org));
    assert_eq!(judge("POST", &path, &[]).expect("the path alone")[0].org_id.as_deref(), Some(org));
    let twice = judge("POST", &path, &[("x-org", other)]).expect_err("refused");
    assert_eq!(twice.code, "ambiguous_path");
}

#[test]
fn methods_are_upper_case_and_overrides_add_what_they_need() {
    assert_eq!(refused("get", "/health"), "ambiguous_method");
    assert_eq!(refused("Delete", "/x"), "ambiguous_method");
    assert_eq!(refused("GE T", "/x"), "ambiguous_method");
    let both = judge_with("GET", "/admin/x", &[("x-http-method-override", "delete")]).expect("judged");
    assert_eq!(both.len(), 2);
    let read_and_write = judge_with("GET", "/x", &[("x-method-override", "PUT")]).expect("judged");
    let needs: Vec<Need> = read_and_write.iter().map(|j| j.need).collect();
    assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)]);
    let query = judge_with("GET", "/apps/com.a.b/x?a=1&_method=delete", &[]).expect("judged");
    let needs: Vec<Need> = query.iter().map(|j| j.need).collect();
    assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)], "GET is read, DELETE write");
    let bad = judge_with("GET", "/x", &[("x-http-method", "DEL ETE")]).expect_err("refused");
    assert_eq!(bad.code, "ambiguous_method");
    // Fourth review: a dotless i is an `I` to Java and .NET, an `ı` to keygate.
    for path in ["/adm%C4%B1n/x", "/%C5%BFecret", "/ADM%C4%B0N/x", "/%E2%84%AAey"] {
        assert_eq!(judge_with("GET", path, &[]).expect_err("refused").code, "ambiguous_path", "{path}");
    }
    assert!(judge_with("GET", "/caf%C3%A9", &[]).is_ok(), "other letters are letters");
    // Fourth review: spellings PHP reads as `_method`.
    for spelling in [
        ".method",
        "%2Emethod",
        "[method",
        "%5Bmethod",
        "_METHOD",
        "+_method",
        "%20_method",
        "_method%00x",
        "a=1;_method",
    ] {
        let target = format!("/x?{spelling}=DELETE");
        let judged = judge_with("GET", &target, &[]).expect("judged");
        let needs: Vec<Need> = judged.iter().map(|j| j.need).collect();
        assert_eq!(needs, [Need::Key(Action::Read), Need::Key(Action::Write)], "{spelling}");
    }
}

#[test]
fn only_the_configured_proxys_headers_are_read() {
    let auth: Uri = "/auth".parse().expect("uri");
    let nginx = ForwardAuth::new(Proxy::Nginx, Rules::default());
    let caddy = ForwardAuth::new(Proxy::Caddy, Rules::default());
    let ours = headers(&[("x-original-method", "POST"), ("x-original-uri", "/x")]);
    assert_eq!(nginx.judge(&Method::GET, &auth, &ours).expect("judged")[0].need, Need::Key(Action::Write));
    // Another family's headers: a client's copy, passed on by the proxy.
    let code = |forward: &ForwardAuth, pairs: &[(&'static str, &str)]| {
        forward.judge(&Method::GET, &auth, &headers(pairs)).expect_err("refused").code
    };
    assert_eq!(
        code(
            &caddy,
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-original-uri", "/health")]
        ),
        "conflicting_header"
    );
    assert_eq!(
        code(
            &nginx,
            &[("x-original-method", "GET"), ("x-original-uri", "/x"), ("x-forwarded-method", "GET")]
        ),
        "conflicting_header"
    );
    assert_eq!(
        code(
            &caddy,
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-original-url", "/admin")]
        ),
        "conflicting_header"
    );
    // Missing, repeated, unreadable: never a fallback.
    assert_eq!(code(&caddy, &[("x-forwarded-method", "GET")]), "forwarded_header_missing");
    assert_eq!(code(&caddy, &[("x-forwarded-uri", "/x")]), "forwarded_header_missing");
    assert_eq!(code(&nginx, &[]), "forwarded_header_missing");
    assert_eq!(
        code(
            &caddy,
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/x"), ("x-forwarded-uri", "/health")]
        ),
        "forwarded_header_repeated"
    );
    let mut raw = headers(&[("x-original-method", "DELETE")]);
    raw.insert("x-original-uri", axum::http::HeaderValue::from_bytes(b"/admin?x=\xff").expect("bytes"));
    assert_eq!(
        nginx.judge(&Method::GET, &auth, &raw).expect_err("refused").code,
        "forwarded_header_unreadable"
    );
}

#[test]
fn envoy_sends_its_own_method_and_the_target_after_auth() {
    let envoy = ForwardAuth::new(Proxy::Envoy, Rules::parse(RULES).expect("rules"));
    let judge =
        |method: Method, uri: &str| envoy.judge(&method, &uri.parse().expect("uri"), &HeaderMap::new());
    assert_eq!(judge(Method::GET, "/auth/health").expect("judged")[0].need, Need::Public);
    assert_eq!(judge(Method::GET, "/auth").expect("judged")[0].need, Need::Key(Action::Read), "the root");
    let upload = judge(Method::PUT, "/auth/apps/com.a.b/bundles/x?y=1").expect("judged");
    assert_eq!(upload[0].need, Need::Key(Action::Upload));
    assert_eq!(
        judge(Method::GET, "/auth/admin/%252e%252e/health").expect_err("refused").code,
        "ambiguous_path"
    );
    assert_eq!(judge(Method::GET, "/authx/health").expect_err("refused").code, "bad_forwarded_target");
    let headers = headers(&[("x-original-uri", "/health")]);
    let refused = envoy.judge(&Method::GET, &"/auth/admin".parse().expect("uri"), &headers);
    assert_eq!(refused.expect_err("refused").code, "conflicting_header");
}

/// A header an upstream folds into one keygate guards (any case, any
/// character but a letter or digit for `-`) is refused, or, for a method
/// override, counted as one.
#[test]
fn every_spelling_of_a_guarded_header_is_screened() {
    let conflicting = [
        ("X_Keygate_Mode", "all"),
        ("x-keygate-user-id", "forged"),
        ("X_keygate-Org-Id", "forged"),
        ("x_original_url", "/admin"),
        ("X-Original_URL", "/admin"),
        ("x_rewrite_url", "/admin"),
        ("X-Script-Name", "/public"),
        ("x_script_name", "/public"),
        ("x_forwarded_uri", "/health"),
        ("X-Original-URI", "/health"),
        ("x_api_key", "ak_x"),
        ("X_Org", "other"),
        // Thirteenth review: PHP reads `X.Keygate.Mode` as `HTTP_X_KEYGATE_MODE`.
        ("X.Keygate.User-Id", "forged"),
        ("X.Keygate.Mode", "all"),
        ("x~keygate~mode", "all"),
        ("X.Rewrite.Url", "/admin"),
        ("X.Api.Key", "ak_x"),
        ("X.Org", "other"),
    ];
    for (name, value) in conflicting {
        let refused = judge_with("POST", "/v1/things", &[(name, value)]).expect_err(name);
        assert_eq!(refused.code, "conflicting_header", "{name}");
    }
    for name in [
        "X_HTTP_Method_Override",
        "x-http-method_override",
        "X_Method_Override",
        "x_http_method",
        "X.HTTP.Method.Override",
    ] {
        let judged = judge_with("GET", "/x", &[(name, "DELETE")]).expect(name);
        assert_eq!(judged.len(), 2, "{name}: an override, whatever its spelling");
    }
    let twice = judge_with("GET", "/x", &[("authorization", "ak_a"), ("x-api-key", "ak_b")]);
    assert_eq!(twice.expect_err("refused").code, "ambiguous_credentials");
    let repeated = judge_with("GET", "/x", &[("authorization", "ak_a"), ("authorization", "ak_b")]);
    assert_eq!(repeated.expect_err("refused").code, "ambiguous_credentials");
    judge_with("GET", "/x", &[("x-api-key", "ak_a"), ("x-request-id", "1")]).expect("one credential");
}

/// Eleventh and twelfth reviews: a `_method=DELETE` in the body keygate
/// never sees made a POST a DELETE to Rails, Laravel and Symfony — in a
/// form, and in JSON, a body without a `Content-Type`, a `Content-Type`
/// list or `multipart/mixed` too; and to a rule's own method (`PURGE`).
#[test]
fn a_post_needs_what_every_method_it_could_become_needs() {
    let methods = |judged: &[Judged]| judged.len();
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("Multipart/Form-Data; boundary=x"),
        Some("multipart/mixed; boundary=x"),
        Some("application/x-www-form-urlencoded, text/plain"),
        Some("application/json"),
        Some("text/plain"),
    ] {
        let extra: Vec<(&'static str, &str)> =
            content_type.map(|c| ("content-type", c)).into_iter().collect();
        let judged = judge_with("POST", "/admin/x", &extra).expect("judged");
        // POST, then GET, HEAD, OPTIONS, PUT, PATCH, DELETE and any other.
        assert_eq!(methods(&judged), 8, "{content_type:?}");
    }
    // An upload key may POST a bundle, but the body could make it a PATCH,
    // which no rule here lets an upload key do.
    let bundle = judge("POST", "/apps/com.a.b/bundles/1.0.0").expect("judged");
    assert!(bundle.iter().any(|j| j.need == Need::Key(Action::Write)), "{bundle:?}");
    let get =
        judge_with("GET", "/x", &[("content-type", "application/x-www-form-urlencoded")]).expect("judged");
    assert_eq!(get.len(), 1, "only a POST is turned by its body");

    let purge = ForwardAuth::new(
        Proxy::Caddy,
        Rules::parse("[[rule]]\nmethods = [\"PURGE\"]\npath = \"/cache/**\"\naction = \"own\"")
            .expect("rules"),
    );
    let forwarded = headers(&[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/cache/x")]);
    let judged = purge.judge(&Method::GET, &"/auth".parse().expect("uri"), &forwarded).expect("judged");
    assert!(judged.iter().any(|j| j.need == Need::Key(Action::Own)), "a POST could be a PURGE: {judged:?}");

    let trusted = ForwardAuth::new(
        Proxy::Caddy,
        Rules::parse("body_may_override_method = false\n[[rule]]\nmethods = [\"PURGE\"]\npath = \"/cache/**\"\naction = \"own\"")
            .expect("rules"),
    );
    let judged = trusted.judge(&Method::GET, &"/auth".parse().expect("uri"), &forwarded).expect("judged");
    assert_eq!(judged, vec![Judged { need: Need::Key(Action::Write), org_id: None, app_id: None }]);
}

/// Thirteenth review: a body's `_method` may name a method no rule names
/// (Express takes PURGE, MOVE or GET; Symfony any upper-case word), which a
/// catch-all rule or the default then judges.
#[test]
fn a_post_needs_what_a_method_no_rule_names_needs() {
    let judge_post = |rules: &str, target: &str| {
        let auth = ForwardAuth::new(Proxy::Caddy, Rules::parse(rules).expect("rules"));
        let forwarded = headers(&[("x-forwarded-method", "POST"), ("x-forwarded-uri", target)]);
        auth.judge(&Method::GET, &"/auth".parse().expect("uri"), &forwarded).expect("judged")
    };
    let catch_all = r#"
        [[rule]]
        path = "/api/{org_id}/**"
        methods = ["GET", "HEAD"]
        action = "read"
        [[rule]]
        path = "/api/{org_id}/**"
        methods = ["POST", "PUT", "PATCH", "DELETE"]
        action = "write"
        [[rule]]
        path = "/api/{org_id}/**"
        action = "admin"
    "#;
    let judged = judge_post(catch_all, "/api/0190/cache/all");
    assert!(judged.iter().any(|j| j.need == Need::Key(Action::Administer)), "a PURGE there: {judged:?}");
    let drop_box = r#"
        [[rule]]
        path = "/inbox/**"
        methods = ["POST", "PUT", "PATCH", "DELETE"]
        action = "public"
    "#;
    let judged = judge_post(drop_box, "/inbox/all");
    assert!(judged.iter().any(|j| j.need == Need::Key(Action::Read)), "a GET there: {judged:?}");
}

#[test]
fn ids_are_judged_as_the_upstream_receives_them() {
    let org = "01234567-89ab-7def-8123-456789abcdef";
    assert!(judge("DELETE", &format!("/orgs/{org}/members/1")).is_ok());
    for other in [org.to_uppercase(), org.replace('-', ""), format!("{{{org}}}")] {
        assert_eq!(refused("DELETE", &format!("/orgs/{other}/members/1")), "ambiguous_path", "{other}");
    }
    // Eighth review: left out, the headers named no organization, and an
    // unscoped key was judged by its mode alone.
    let missing = judge_with("POST", "/v1/things", &[]).expect_err("refused");
    assert_eq!(missing.code, "forwarded_header_missing");
    assert!(judge_with("POST", "/v1/things", &[("x-org", "0190")]).is_ok(), "the organization alone");
    let padded = judge_with("POST", "/v1/x", &[("x-app", " com.a.b")]);
    assert_eq!(padded.expect_err("refused").code, "ambiguous_path");
}

#[test]
fn headers_name_the_organization_and_app_when_the_path_does_not() {
    let judged =
        &judge_with("POST", "/v1/things", &[("x-app", "com.a.b"), ("x-org", "0190")]).expect("judged")[0];
    assert_eq!((judged.app_id.as_deref(), judged.org_id.as_deref()), (Some("com.a.b"), Some("0190")));
    let twice = judge_with("POST", "/v1/things", &[("x-app", "com.a.b"), ("x-app", "com.c.d")]);
    assert_eq!(twice.expect_err("refused").code, "forwarded_header_repeated");
}

#[test]
fn a_bad_rules_file_says_what_to_fix() {
    let error = |text: &str| Rules::parse(text).expect_err("refused");
    assert!(error("[[rule]]\npath = \"/a\"\naction = \"delete\"").contains("action `delete`"));
    assert!(error("[[rule]]\npath = \"a\"\naction = \"read\"").contains("must start with /"));
    assert!(error("[[rule]]\npath = \"/**/a\"\naction = \"read\"").contains("may only end"));
    assert!(error("[[rule]]\npath = \"/{user}\"\naction = \"read\"").contains("segment `{user}`"));
    assert!(error("[[rule]]\npath = \"/a\"\naction = \"read\"\nmethods = [\"GE T\"]").contains("GE T"));
    assert!(error("[[rule]]\npath = \"/a\"\naction = \"read\"\nverb = \"GET\"").contains("verb"));
    assert!(error("[[rule]]\npath = \"/a%2fb\"\naction = \"read\"").contains("segment `a%2fb`"));
    assert!(error("[[rule]]\npath = \"/a/../b\"\naction = \"read\"").contains("dot segment"));
}

#[test]
fn proxies_are_named_by_their_own_names() {
    for proxy in Proxy::ALL {
        assert_eq!(Proxy::parse(proxy.as_str()), Some(proxy));
    }
    assert_eq!(Proxy::parse("apache"), None);
}
