//! The command-line client against a real server: every command, its
//! `--json` output parsed, its tables, and exit codes scripts can rely on.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use keygate_testkit::ServerProcess;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keygate");
const VERIFIER: &str = "client-test-verifier-token";

struct Setup {
    _dir: tempfile::TempDir,
    server: ServerProcess,
    key: String,
    org: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let out = Command::new(BIN)
        .args(["bootstrap", "--email", "owner@example.com", "--org-name", "Acme", "--database", &database])
        .env_remove("KEYGATE_DATABASE_URL")
        .output()
        .expect("bootstrap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let owner: Value = serde_json::from_slice(&out.stdout).expect("bootstrap JSON");
    let server = ServerProcess::start(Path::new(BIN), &database, dir.path(), &["--verifier-token", VERIFIER]);
    Setup {
        key: owner["key"].as_str().expect("key").to_owned(),
        org: owner["org_id"].as_str().expect("org").to_owned(),
        server,
        _dir: dir,
    }
}

impl Setup {
    /// `keygate ARGS` as a client of the server, with `key` in KEYGATE_KEY
    /// (none: nothing in the environment and `stdin` as the terminal).
    fn run(&self, key: Option<&str>, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("KEYGATE_URL", &self.server.base)
            .env_remove("KEYGATE_KEY")
            .env("KEYGATE_VERIFIER_TOKEN", VERIFIER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(key) = key {
            command.env("KEYGATE_KEY", key);
        }
        let mut child = command.spawn().expect("run keygate");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    /// `--json` output of a command that must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(Some(&self.key), &all, "");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
        serde_json::from_str(&stdout).expect("JSON")
    }
}

#[test]
fn keys_are_created_listed_updated_rotated_and_deleted() {
    let s = setup();
    let created = s.json(&["key", "create", "--org", &s.org, "--mode", "read", "--name", "ci"]);
    let secret = created["apikey"]["key"].as_str().expect("full key").to_owned();
    let id = created["apikey"]["id"].as_i64().expect("id").to_string();
    assert!(secret.starts_with("ak_"));

    let listed = s.json(&["key", "list"]);
    let ids: Vec<i64> =
        listed["data"].as_array().expect("data").iter().filter_map(|k| k["id"].as_i64()).collect();
    assert!(ids.contains(&created["apikey"]["id"].as_i64().expect("id")), "{listed}");
    assert!(!listed.to_string().contains(&secret), "a list never shows a secret");
    let by_org = s.json(&["key", "list", "--org", &s.org]);
    assert_eq!(by_org["data"].as_array().map(Vec::len), Some(1), "only the key scoped to the org: {by_org}");

    let updated = s.json(&["key", "update", &id, "--name", "deploy", "--mode", "write"]);
    assert_eq!(
        (updated["apikey"]["name"].as_str(), updated["apikey"]["mode"].as_str()),
        (Some("deploy"), Some("write"))
    );
    let disabled = s.json(&["key", "update", &id, "--enabled", "false"]);
    assert_eq!(disabled["apikey"]["enabled"], false);

    // A table for people: a header, then one row per key.
    let table = s.run(Some(&s.key), &["key", "list"], "");
    let text = String::from_utf8(table.stdout).expect("utf-8");
    assert!(text.lines().next().is_some_and(|h| h.starts_with("ID") && h.contains("MODE")), "{text}");
    assert!(text.contains("deploy"), "{text}");

    // Rotating another key of the owner's own (rotation is the owner's).
    let own = s.json(&["key", "create", "--org", &s.org, "--mode", "all"]);
    let own_id = own["apikey"]["id"].as_i64().expect("id").to_string();
    let rotated = s.json(&["key", "rotate", &own_id, "--grace", "0"]);
    let fresh = rotated["apikey"]["key"].as_str().expect("new key");
    assert_ne!(fresh, own["apikey"]["key"].as_str().expect("old key"));

    let deleted = s.json(&["key", "delete", &id]);
    assert_eq!(deleted["success"], true);
    // Deleting it again: the server's refusal, exit code 1, on stderr.
    let again = s.run(Some(&s.key), &["key", "delete", &id], "");
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("API key not found") && said.contains("api_key_not_found"), "{said}");
}

#[test]
fn the_key_comes_from_the_environment_or_stdin_never_a_flag() {
    let s = setup();
    // Piped in, as a script or a password manager would.
    let piped = s.run(None, &["org", "list", "--json"], &format!("{}\n", s.key));
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    let orgs: Value = serde_json::from_slice(&piped.stdout).expect("JSON");
    assert_eq!(orgs["data"][0]["role"], "super_admin");
    // None at all: a usage error that says what to set.
    let none = s.run(None, &["org", "list"], "");
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("KEYGATE_KEY"));
    // A wrong one: refused, exit 1, with a hint.
    let wrong = s.run(Some("ak_wrong"), &["org", "list"], "");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("check KEYGATE_KEY"));
    // There is no flag that takes a key.
    let flag = s.run(None, &["org", "list", "--key", &s.key], "");
    assert_eq!(flag.status.code(), Some(2));
    // No server: exit 3, saying where it looked.
    let mut offline = Command::new(BIN);
    offline
        .args(["org", "list", "--url", "http://127.0.0.1:1"])
        .env("KEYGATE_KEY", &s.key)
        .env_remove("KEYGATE_URL");
    let out = offline.output().expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach http://127.0.0.1:1"));
}

/// A new organization of the owner's, over HTTP (the client has no command for it).
fn create_organization(s: &Setup, name: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let created: Value = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/organization", s.server.base))
            .header("authorization", &s.key)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("create organization");
        response.json().await.expect("JSON")
    });
    created["organization"]["id"].as_str().expect("id").to_owned()
}

#[test]
fn members_and_invitations_from_the_command_line() {
    let s = setup();
    let invite = s.json(&[
        "invite",
        "create",
        "--org",
        &s.org,
        "--email",
        "new@example.com",
        "--role",
        "read",
        "--days",
        "3",
    ]);
    let code = invite["invite"]["code"].as_str().expect("code").to_owned();
    let id = invite["invite"]["id"].as_i64().expect("id");
    let pending = s.json(&["invite", "list", "--org", &s.org]);
    assert_eq!(pending["data"][0]["id"], id);
    // Redeemed with no key, the code piped in: the teammate's first key.
    let redeemed = s.run(None, &["invite", "redeem", "--json"], &format!("{code}\n"));
    assert!(redeemed.status.success(), "{}", String::from_utf8_lossy(&redeemed.stderr));
    let redeemed: Value = serde_json::from_slice(&redeemed.stdout).expect("JSON");
    let their_key = redeemed["key"].as_str().expect("key").to_owned();
    let theirs = s.run(Some(&their_key), &["org", "list", "--json"], "");
    let orgs: Value = serde_json::from_slice(&theirs.stdout).expect("JSON");
    assert_eq!(orgs["data"][0]["role"], "read");

    // An existing account accepts with its own key, and gets no new one:
    // here, into a second organization of the owner's.
    let second = create_organization(&s, "Second");
    let again =
        s.json(&["invite", "create", "--org", &second, "--email", "new@example.com", "--role", "upload"]);
    let code = again["invite"]["code"].as_str().expect("code").to_owned();
    let without = s.run(None, &["invite", "redeem"], &format!("{code}\n"));
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("invitation_needs_key"));
    let joined = s.run(Some(&their_key), &["invite", "redeem", "--json"], &format!("{code}\n"));
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
    let joined: Value = serde_json::from_slice(&joined.stdout).expect("JSON");
    assert_eq!((joined["role"].as_str(), joined.get("key")), (Some("upload"), None));

    // A member's role changes; a newcomer is not added that way.
    let set = s.json(&["member", "set", "--org", &s.org, "--email", "new@example.com", "--role", "write"]);
    assert_eq!(set["member"]["role"], "write");
    let stranger = s.run(
        Some(&s.key),
        &["member", "set", "--org", &s.org, "--email", "x@example.com", "--role", "read"],
        "",
    );
    assert_eq!(stranger.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("invitation"));
    let user = set["member"]["user_id"].as_str().expect("user").to_owned();
    let members = s.json(&["member", "list", "--org", &s.org]);
    assert_eq!(members["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(s.json(&["member", "remove", "--org", &s.org, "--user", &user])["success"], true);

    let another =
        s.json(&["invite", "create", "--org", &s.org, "--email", "late@example.com", "--role", "read"]);
    let another_id = another["invite"]["id"].as_i64().expect("id").to_string();
    assert_eq!(s.json(&["invite", "revoke", "--org", &s.org, &another_id])["success"], true);
}

#[test]
fn verify_exits_zero_only_for_a_valid_key() {
    let s = setup();
    let created = s.json(&["key", "create", "--org", &s.org, "--mode", "read"]);
    let key = created["apikey"]["key"].as_str().expect("key").to_owned();
    let valid = s.run(None, &["verify", "--json"], &format!("{key}\n"));
    assert!(valid.status.success(), "{}", String::from_utf8_lossy(&valid.stderr));
    let verdict: Value = serde_json::from_slice(&valid.stdout).expect("JSON");
    assert_eq!(verdict["code"], "VALID");
    let write = s.run(None, &["verify", "--action", "write"], &format!("{key}\n"));
    assert_eq!(write.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&write.stdout).contains("FORBIDDEN"));
    let unknown = s.run(None, &["verify"], "ak_nothing\n");
    assert_eq!(unknown.status.code(), Some(1));
}

/// Finding: behind a server that answered 307, `keygate invite redeem`
/// sent the invitation code again to wherever the redirect pointed. The
/// client follows no redirect: the code goes to `KEYGATE_URL` or nowhere.
#[test]
fn the_client_follows_no_redirect() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    let elsewhere = TcpListener::bind("127.0.0.1:0").expect("bind");
    let redirector = TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = format!("http://{}/invites/redeem", elsewhere.local_addr().expect("address"));
    let url = format!("http://{}", redirector.local_addr().expect("address"));
    let redirect = std::thread::spawn(move || {
        let (mut stream, _) = redirector.accept().expect("accept");
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let answer =
            format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n");
        stream.write_all(answer.as_bytes()).expect("answer");
    });
    elsewhere.set_nonblocking(true).expect("nonblocking");
    let output = Command::new(BIN)
        .args(["invite", "redeem"])
        .env("KEYGATE_URL", &url)
        .env_remove("KEYGATE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(b"kgi_not-a-real-code\n")?;
            child.wait_with_output()
        })
        .expect("run keygate");
    redirect.join().expect("the redirector");
    assert!(!output.status.success(), "a redirect is not success");
    assert!(elsewhere.accept().is_err(), "the code was sent on to the redirect's target");
}
