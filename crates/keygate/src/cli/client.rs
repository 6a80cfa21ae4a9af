//! The command-line client: `keygate key|org|member|invite|verify …`, talking
//! to a keygate server over HTTP, for people and for scripts.
//!
//! - The server is `--url` or `KEYGATE_URL` (default `http://127.0.0.1:8080`).
//! - The key is `KEYGATE_KEY`, else read from the terminal without echo (or
//!   the first line of stdin when it is not a terminal): never a flag, which
//!   would land in the shell's history and the process list.
//! - Output is a table by default, and the server's JSON, one line, with
//!   `--json`.
//! - Exit codes: 0 success; 1 the server refused (a 4xx, or a verdict that
//!   is not `VALID`); 2 bad usage (clap's); 3 the server could not be
//!   reached or failed (5xx). Errors go to stderr and say what to fix.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Where the server is and how to answer.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The keygate server.
    #[arg(long, env = "KEYGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Print the server's JSON (one line) instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Your keys, or with --org every key scoped to that organization (needs admin).
    List {
        #[arg(long)]
        org: Option<String>,
    },
    /// Create a key; its secret is shown this once.
    Create {
        #[arg(long)]
        org: String,
        /// read, write, upload or all.
        #[arg(long)]
        mode: String,
        #[arg(long)]
        name: Option<String>,
        /// Limit the key to this app (repeatable).
        #[arg(long = "app")]
        apps: Vec<String>,
        /// RFC 3339, such as 2030-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Change a key's name, mode, expiry or whether it is enabled.
    Update {
        /// The key's id.
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        mode: Option<String>,
        /// RFC 3339, or `never` to remove the expiry.
        #[arg(long)]
        expires_at: Option<String>,
        /// true or false (needs admin in the key's organization).
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Give a key a new secret, shown this once; the old one works for --grace seconds.
    Rotate {
        id: i64,
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Delete a key: it stops working at once.
    Delete { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// The organizations your key sees, with your role.
    List,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// An organization's members.
    List {
        #[arg(long)]
        org: String,
    },
    /// Change a member's role (needs admin; a newcomer is invited instead).
    Set {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// read, upload, write, admin or super_admin.
        #[arg(long)]
        role: String,
    },
    /// Remove a member and their keys scoped to the organization (needs admin).
    Remove {
        #[arg(long)]
        org: String,
        /// The member's user id.
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Invite a teammate; the code is shown this once (needs admin).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        /// Days until it expires, 1–30.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Pending invitations (needs admin).
    List {
        #[arg(long)]
        org: String,
    },
    /// Withdraw an invitation (needs admin).
    Revoke {
        #[arg(long)]
        org: String,
        id: i64,
    },
    /// Redeem an invitation's code (read from KEYGATE_INVITE_CODE or the
    /// terminal, like a key). For a new account no key is needed, and it
    /// prints your first key, once; an existing account accepts with one of
    /// its own keys of mode `all`, from KEYGATE_KEY.
    Redeem,
}

/// `POST /verify`: the key to check is read like your own (from
/// KEYGATE_VERIFY_KEY or the terminal), the verifier token from
/// KEYGATE_VERIFIER_TOKEN.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// read, write, upload, admin or own.
    #[arg(long, default_value = "read")]
    action: String,
    #[arg(long)]
    org: Option<String>,
    #[arg(long)]
    app: Option<String>,
    /// Credits the verification spends.
    #[arg(long)]
    cost: Option<u64>,
}

/// One client command.
#[derive(Debug)]
pub enum Request {
    Key(KeyCommand),
    Org(OrgCommand),
    Member(MemberCommand),
    Invite(InviteCommand),
    Verify(VerifyArgs),
    Health,
}

/// What went wrong, with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }
}

/// Runs a client command and returns the process's exit code.
pub async fn run(args: ClientArgs, request: Request) -> ExitCode {
    match execute(&args, request).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("keygate: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn execute(args: &ClientArgs, request: Request) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match request {
        Request::Key(command) => key(&client, command).await,
        Request::Org(OrgCommand::List) => {
            let body = client.call(Method::GET, "/organization", None).await?;
            client.table(&body, &body["data"], &["id", "name", "role"])
        }
        Request::Member(command) => member(&client, command).await,
        Request::Invite(command) => invite(&client, command).await,
        Request::Health => {
            let body = client.send(Method::GET, "/livez", None, None).await?;
            client.one(&body, &body, &["status"])
        }
        Request::Verify(verify) => {
            let token = std::env::var("KEYGATE_VERIFIER_TOKEN").map_err(|_| {
                Failure::usage("set KEYGATE_VERIFIER_TOKEN to a verifier token given to `keygate serve`")
            })?;
            let key = secret("KEYGATE_VERIFY_KEY", "Key to verify: ")?;
            let mut body = json!({ "key": key, "action": verify.action });
            for (field, value) in [("org_id", verify.org), ("app_id", verify.app)] {
                if let Some(value) = value {
                    body[field] = json!(value);
                }
            }
            if let Some(cost) = verify.cost {
                body["cost"] = json!(cost);
            }
            let verdict =
                client.send(Method::POST, "/verify", Some(&format!("Bearer {token}")), Some(body)).await?;
            client.one(&verdict, &verdict, &["valid", "code"])?;
            if verdict["code"] == "VALID" {
                Ok(())
            } else {
                Err(Failure { code: 1, message: format!("the key is not valid: {}", verdict["code"]) })
            }
        }
    }
}

async fn key(client: &Client, command: KeyCommand) -> Result<(), Failure> {
    const COLUMNS: [&str; 8] =
        ["id", "name", "key", "mode", "org_id", "enabled", "expires_at", "last_used_at"];
    match command {
        KeyCommand::List { org } => {
            let path = match org {
                Some(org) => format!("/apikey?org_id={}", encode(&org)),
                None => "/apikey".to_owned(),
            };
            let body = client.call(Method::GET, &path, None).await?;
            client.table(&body, &body["data"], &COLUMNS)
        }
        KeyCommand::Create { org, mode, name, apps, expires_at } => {
            let mut body = json!({ "org_id": org, "mode": mode });
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if !apps.is_empty() {
                body["limited_to_apps"] = json!(apps);
            }
            if let Some(at) = expires_at {
                body["expires_at"] = json!(at);
            }
            let created = client.call(Method::POST, "/apikey", Some(body)).await?;
            client.one(&created, &created["apikey"], &COLUMNS)?;
            client.note("The full key is shown this once: keep it now.");
            Ok(())
        }
        KeyCommand::Update { id, name, mode, expires_at, enabled } => {
            let mut body = json!({});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(mode) = mode {
                body["mode"] = json!(mode);
            }
            match expires_at.as_deref() {
                Some("never") => body["expires_at"] = Value::Null,
                Some(at) => body["expires_at"] = json!(at),
                None => {}
            }
            if let Some(enabled) = enabled {
                body["enabled"] = json!(enabled);
            }
            let updated = client.call(Method::PUT, &format!("/apikey/{id}"), Some(body)).await?;
            client.one(&updated, &updated["apikey"], &COLUMNS)
        }
        KeyCommand::Rotate { id, grace } => {
            let body = json!({ "grace_period_seconds": grace });
            let rotated = client.call(Method::POST, &format!("/apikey/{id}/rotate"), Some(body)).await?;
            client.one(&rotated, &rotated["apikey"], &COLUMNS)?;
            client.note("The new key is shown this once: keep it now.");
            Ok(())
        }
        KeyCommand::Delete { id } => {
            let done = client.call(Method::DELETE, &format!("/apikey/{id}"), None).await?;
            client.done(&done, &format!("key {id} deleted"))
        }
    }
}

async fn member(client: &Client, command: MemberCommand) -> Result<(), Failure> {
    match command {
        MemberCommand::List { org } => {
            let body = client
                .call(Method::GET, &format!("/organization/members?org_id={}", encode(&org)), None)
                .await?;
            client.table(&body, &body["data"], &["user_id", "email", "role"])
        }
        MemberCommand::Set { org, email, role } => {
            let body = json!({ "org_id": org, "email": email, "role": role });
            let set = client.call(Method::POST, "/organization/members", Some(body)).await?;
            client.one(&set, &set["member"], &["user_id", "email", "role"])
        }
        MemberCommand::Remove { org, user } => {
            let path = format!("/organization/members?org_id={}&user_id={}", encode(&org), encode(&user));
            let done = client.call(Method::DELETE, &path, None).await?;
            client.done(&done, &format!("member {user} removed"))
        }
    }
}

async fn invite(client: &Client, command: InviteCommand) -> Result<(), Failure> {
    const COLUMNS: [&str; 5] = ["id", "email", "role", "expires_at", "code"];
    match command {
        InviteCommand::Create { org, email, role, days } => {
            let mut body = json!({ "org_id": org, "email": email, "role": role });
            if let Some(days) = days {
                body["expires_in_days"] = json!(days);
            }
            let created = client.call(Method::POST, "/organization/invites", Some(body)).await?;
            client.one(&created, &created["invite"], &COLUMNS)?;
            client.note("The code is shown this once: send it to your teammate.");
            Ok(())
        }
        InviteCommand::List { org } => {
            let body = client
                .call(Method::GET, &format!("/organization/invites?org_id={}", encode(&org)), None)
                .await?;
            client.table(&body, &body["data"], &COLUMNS[..4])
        }
        InviteCommand::Revoke { org, id } => {
            let path = format!("/organization/invites?org_id={}&id={id}", encode(&org));
            let done = client.call(Method::DELETE, &path, None).await?;
            client.done(&done, &format!("invitation {id} withdrawn"))
        }
        InviteCommand::Redeem => {
            let code = secret("KEYGATE_INVITE_CODE", "Invitation code: ")?;
            let body = json!({ "code": code });
            // Only from the environment: a new account has no key to type.
            let key = std::env::var("KEYGATE_KEY").ok().filter(|key| !key.trim().is_empty());
            let redeemed = client.send(Method::POST, "/invites/redeem", key.as_deref(), Some(body)).await?;
            if redeemed["key"].is_string() {
                client.one(&redeemed, &redeemed, &["user_id", "org_id", "role", "key_id", "key"])?;
                client.note("Your key is shown this once: keep it now, e.g. as KEYGATE_KEY.");
            } else {
                client.one(&redeemed, &redeemed, &["user_id", "org_id", "role"])?;
                client.note("You joined the organization with your existing account; no key was made.");
            }
            Ok(())
        }
    }
}

/// A secret from the environment, else the terminal (without echo), else
/// the first line of stdin.
fn secret(variable: &str, prompt: &str) -> Result<String, Failure> {
    if let Ok(value) = std::env::var(variable)
        && !value.trim().is_empty()
    {
        return Ok(value.trim().to_owned());
    }
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::usage(format!("cannot read {variable}: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| Failure::usage(e.to_string()))?;
        line
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(Failure::usage(format!("no {variable}: set it, or type it when asked")));
    }
    Ok(value)
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

struct Client {
    http: reqwest::Client,
    base: String,
    json: bool,
}

impl Client {
    fn new(args: &ClientArgs) -> Result<Self, Failure> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(Failure::usage(format!("--url {base}: give http://HOST:PORT or https://HOST")));
        }
        // No redirects: one would carry a body (an invitation code, a
        // key's settings) to wherever it points.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, base, json: args.json })
    }

    /// A request with your key.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let key = secret("KEYGATE_KEY", "API key: ")?;
        self.send(method, path, Some(&key), body).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| Failure {
            code: 3,
            message: format!(
                "cannot reach {}: {e}; is `keygate serve` running there? (--url or KEYGATE_URL)",
                self.base
            ),
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let text = body["error"].as_str().unwrap_or("no error text");
        let code = body["code"].as_str().unwrap_or("unknown");
        let hint = match status {
            StatusCode::UNAUTHORIZED => "; check KEYGATE_KEY",
            StatusCode::FORBIDDEN => "; the key's mode or your role does not allow this",
            _ => "",
        };
        Err(Failure {
            code: if status.is_server_error() { 3 } else { 1 },
            message: format!("{text} ({code}, HTTP {}){hint}", status.as_u16()),
        })
    }

    /// Rows of `list`, or the whole body with `--json`.
    fn table(&self, body: &Value, list: &Value, columns: &[&str]) -> Result<(), Failure> {
        if self.json {
            return print_line(&body.to_string());
        }
        let rows: Vec<Vec<String>> = list
            .as_array()
            .map(|rows| rows.iter().map(|row| columns.iter().map(|c| cell(&row[*c])).collect()).collect())
            .unwrap_or_default();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = vec![line(&columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>())];
        out.extend(rows.iter().map(|r| line(r)));
        if rows.is_empty() {
            out.push("(none)".to_owned());
        }
        print_line(&out.join("\n"))
    }

    /// One object, field by field, or the whole body with `--json`.
    fn one(&self, body: &Value, object: &Value, fields: &[&str]) -> Result<(), Failure> {
        if self.json {
            return print_line(&body.to_string());
        }
        let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
        let lines: Vec<String> =
            fields.iter().map(|f| format!("{f:<width$}  {}", cell(&object[*f]))).collect();
        print_line(&lines.join("\n"))
    }

    fn done(&self, body: &Value, said: &str) -> Result<(), Failure> {
        if self.json { print_line(&body.to_string()) } else { print_line(said) }
    }

    /// A note for a person, never in `--json` output.
    fn note(&self, text: &str) {
        if !self.json {
            eprintln!("{text}");
        }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn print_line(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| Failure { code: 3, message: format!("cannot write the output: {e}") })
}
