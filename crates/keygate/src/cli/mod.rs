//! The command line: `serve`, `bootstrap`, `user add`.
//!
//! `bootstrap` and `user add` print exactly one JSON object on stdout; every
//! error goes to stderr with a non-zero exit. Logs go to stderr and never
//! hold a secret. The HTTP client commands are [`client`]; enrolling users
//! (`bootstrap`, `user add`) is [`admin`].

pub mod admin;
mod backup;
mod blob_dir;
pub mod client;
mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use keygate_core::Role;
use keygate_store::Access;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "keygate", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KEYGATE_COMMIT"), ")"), about = "A self-hostable API key service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeArgs>),
    /// serve's configuration: `config check` prints what it would run with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Bring the database's schema up to this release (every command does, on opening it);
    /// with --dry-run, list what would change and change nothing.
    Migrate(MigrateArgs),
    /// Copy a SQLite database and its bundles while it is served (on PostgreSQL, names pg_dump).
    Backup(BackupArgs),
    /// Put a backup in place of a SQLite database no server holds, after checking it; what it
    /// replaces is moved aside.
    Restore(RestoreArgs),
    /// Create a user, an organization they own, and a first unscoped `all` key.
    Bootstrap(BootstrapArgs),
    /// Manage users (on the database directly, as the operator).
    #[command(subcommand)]
    User(UserCommand),
    /// The instance's own log, newest first, one JSON object per line:
    /// accounts created and organizations deleted (with who deleted them,
    /// from where, and what they held), which outlive every organization's log.
    Audit(AuditArgs),
    /// API keys on a keygate server (KEYGATE_URL; your key from KEYGATE_KEY or a prompt).
    Key {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::KeyCommand,
    },
    /// Organizations on a keygate server.
    Org {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::OrgCommand,
    },
    /// An organization's members on a keygate server.
    Member {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::MemberCommand,
    },
    /// Invitations on a keygate server.
    Invite {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(subcommand)]
        command: client::InviteCommand,
    },
    /// Whether a keygate server is alive (GET /livez); exits 0 if so (a container's health check).
    Health {
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Ask a keygate server whether a key may do something (POST /verify).
    Verify {
        #[command(flatten)]
        client: client::ClientArgs,
        #[command(flatten)]
        verify: client::VerifyArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print what `serve` would run with, given the same flags, environment and --config file, and
    /// where each value comes from (secrets hidden); fails on what `serve` would refuse.
    Check(Box<ServeArgs>),
}

#[derive(Debug, Args)]
struct DatabaseArg {
    /// sqlite://PATH or postgres://USER@HOST/DATABASE. `serve` and `bootstrap` create a missing SQLite file; other commands refuse to.
    #[arg(long = "database", env = "KEYGATE_DATABASE_URL", default_value = "sqlite://keygate.db")]
    url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML file of these flags without their dashes (`listen = "0.0.0.0:8080"`); a flag or its
    /// environment variable wins over the file.
    #[arg(long, env = "KEYGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on: HOST:PORT (0.0.0.0:8080 for every interface), or a port alone for 127.0.0.1.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArg,
    /// On an empty database, bootstrap this user and print the bootstrap JSON once.
    #[arg(long, env = "KEYGATE_BOOTSTRAP_EMAIL")]
    bootstrap_email: Option<String>,
    /// A directory for uploaded bundles [default: on PostgreSQL, the database itself, which every replica shares; on SQLite, `FILE-blobs` beside the database file `FILE` (`keygate-blobs` beside `keygate.db`)].
    #[arg(long, env = "KEYGATE_BLOB_DIR")]
    blob_dir: Option<PathBuf>,
    /// The most bytes the bundles of one organization may take in all [default: no limit].
    #[arg(long, env = "KEYGATE_MAX_ORG_STORAGE", value_name = "BYTES")]
    max_org_storage: Option<u64>,
    /// The largest bundle accepted, in bytes.
    #[arg(long, env = "KEYGATE_MAX_BUNDLE_SIZE", default_value_t = crate::state::DEFAULT_MAX_BUNDLE_SIZE)]
    max_bundle_size: u64,
    /// Enables POST /verify for services presenting this token (repeat the flag, or separate with commas).
    #[arg(
        long = "verifier-token",
        env = "KEYGATE_VERIFIER_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_verifier_token
    )]
    verifier_tokens: Vec<crate::state::VerifierToken>,
    /// Cache verified keys, kept coherent through LISTEN/NOTIFY (PostgreSQL) or
    /// an epoch counter polled every 100 ms (SQLite); `--key-cache false` reads every key from the database.
    #[arg(long = "key-cache", env = "KEYGATE_KEY_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    key_cache: bool,
    /// Behind a trusted proxy or load balancer: the header that carries the client's address
    /// (its last entry is used), such as x-forwarded-for. Without it, the peer's address.
    #[arg(long, env = "KEYGATE_CLIENT_IP_HEADER")]
    client_ip_header: Option<axum::http::HeaderName>,
    /// A proxy allowed to name the client in --client-ip-header (by default x-forwarded-for),
    /// as an address or CIDR; repeatable. With none, every peer is when that header is set.
    #[arg(long = "trusted-proxy", env = "KEYGATE_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR", value_parser = parse_cidr)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The reverse proxy that asks GET /auth, which names the only headers read for the original
    /// request: nginx (X-Original-*), caddy or traefik (X-Forwarded-*), envoy (its own method and path).
    /// Without it /auth is disabled.
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_PROXY", value_name = "PROXY", value_parser = parse_proxy)]
    forward_auth_proxy: Option<crate::admission::forward_auth::Proxy>,
    /// A TOML file of rules saying what `/auth` requires of each forwarded request (needs
    /// --forward-auth-proxy) [default: GET, HEAD and OPTIONS need read, other methods write].
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_RULES", value_name = "FILE")]
    forward_auth_rules: Option<PathBuf>,
    /// The status `/auth` answers a throttled address with: 403 (which nginx passes on) or
    /// 429 (for proxies that pass any status).
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_THROTTLED_STATUS", default_value_t = 403, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(403..=429))]
    forward_auth_throttled_status: u16,
    /// Log each request (one line on stderr, written off the request path). Also off when
    /// KEYGATE_LOG filters out `keygate::access` at info (e.g. `KEYGATE_LOG=info,keygate::access=off`).
    #[arg(long, env = "KEYGATE_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    access_log: bool,
    /// How log lines on stderr are written: text, or json (one object per line) for log shippers.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    log_format: crate::telemetry::LogFormat,
    /// Serve GET /metrics (Prometheus) on this address instead of on --listen.
    #[arg(long, env = "KEYGATE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// A PEM certificate chain: serve HTTPS on --listen (with --tls-key); reread on SIGHUP.
    #[arg(long, env = "KEYGATE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert; reread on SIGHUP.
    #[arg(long, env = "KEYGATE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Lets a scrape of GET /metrics on --listen come from anywhere when it presents this token as
    /// a bearer token; without it, only loopback clients may scrape there.
    #[arg(long, env = "KEYGATE_METRICS_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = parse_metrics_token)]
    metrics_token: Option<crate::state::VerifierToken>,
    /// Seconds a client has to send a request's head; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "KEYGATE_HEADER_READ_TIMEOUT", default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout: u64,
    /// Seconds a whole request may take, body included, before it is answered 408.
    #[arg(long, env = "KEYGATE_REQUEST_TIMEOUT", default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    request_timeout: u64,
    /// Connections served at once; beyond, new ones wait to be accepted.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Failed authentications from one address within 5 minutes before it is answered 429
    /// until they age out; 0 turns the throttle off.
    #[arg(long, env = "KEYGATE_FAILED_AUTH_LIMIT", default_value_t = 20, value_name = "N")]
    failed_auth_limit: u64,
    /// The organization created with --bootstrap-email.
    #[arg(long, env = "KEYGATE_BOOTSTRAP_ORG_NAME", default_value = "Default Organization")]
    bootstrap_org_name: String,
}

#[derive(Debug, Args)]
struct BootstrapArgs {
    /// The first user's email; they become the organization's super_admin.
    #[arg(long)]
    email: String,
    /// The name of the organization created for them.
    #[arg(long)]
    org_name: String,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// List the pending schema steps; apply none.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// The new file to write the snapshot to; the bundles go to FILE-blobs beside it.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Where the database's bundles are, when not in the default directory beside it.
    #[arg(long, env = "KEYGATE_BLOB_DIR")]
    blob_dir: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// A file `keygate backup` wrote; its bundles are taken from FILE-blobs beside it.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Where the restored database's bundles go, when not in the default directory beside it.
    #[arg(long, env = "KEYGATE_BLOB_DIR")]
    blob_dir: Option<PathBuf>,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// How many events to print.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
    /// Only events older than this one (an `id` printed before): the next page.
    #[arg(long)]
    before: Option<i64>,
    #[command(flatten)]
    database: DatabaseArg,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user to an organization, or change their role; with --issue-key, also issue them an unscoped `all` key.
    Add(UserAddArgs),
}

#[derive(Debug, Args)]
struct UserAddArgs {
    /// The user's email; a new user is created if no user has it.
    #[arg(long)]
    email: String,
    /// The organization's id.
    #[arg(long = "org")]
    org_id: Uuid,
    /// read, upload, write, admin or super_admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Also issue them an unscoped `all` key, printed once; without it only the membership changes.
    #[arg(long)]
    issue_key: bool,
    #[command(flatten)]
    database: DatabaseArg,
}

fn parse_proxy(raw: &str) -> Result<crate::admission::forward_auth::Proxy, String> {
    crate::admission::forward_auth::Proxy::parse(raw.trim())
        .ok_or_else(|| "one of nginx, caddy, traefik, envoy: the proxy in front of /auth".to_owned())
}

fn parse_verifier_token(raw: &str) -> Result<crate::state::VerifierToken, String> {
    crate::state::VerifierToken::new(raw).ok_or_else(|| "a verifier token must not be empty".to_owned())
}

fn parse_metrics_token(raw: &str) -> Result<crate::state::VerifierToken, String> {
    crate::state::VerifierToken::new(raw).ok_or_else(|| "a metrics token must not be empty".to_owned())
}

/// `HOST:PORT`, or a port alone (on 127.0.0.1).
fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let raw = raw.trim();
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    raw.to_socket_addrs().ok().and_then(|mut addresses| addresses.next()).ok_or_else(|| {
        format!("expected HOST:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080, or a port alone; got `{raw}`")
    })
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| "must be one of read, upload, write, admin, super_admin".to_owned())
}

/// Runs the command line and returns the process's exit code.
pub fn run() -> ExitCode {
    let (cli, matches) = parse();
    match &cli.command {
        Command::Serve(args) => init_logging(false, args.log_format),
        _ => init_logging(true, crate::telemetry::LogFormat::Text),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the async runtime: {error}")),
    };
    let (args, request) = match cli.command {
        Command::Key { client, command } => (client, client::Request::Key(command)),
        Command::Org { client, command } => (client, client::Request::Org(command)),
        Command::Member { client, command } => (client, client::Request::Member(command)),
        Command::Invite { client, command } => (client, client::Request::Invite(command)),
        Command::Verify { client, verify } => (client, client::Request::Verify(verify)),
        Command::Health { client } => (client, client::Request::Health),
        Command::Config(ConfigCommand::Check(args)) => {
            let described = config::serve_matches(&matches)
                .map(|serve| config::describe(&Cli::command(), serve))
                .unwrap_or_default();
            print!("{described}");
            return match check(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(message),
            };
        }
        command => {
            return match runtime.block_on(execute(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => fail(message),
            };
        }
    };
    runtime.block_on(client::run(args, request))
}

/// The command line, with `--config FILE`'s values as defaults when one
/// is named ([`config`]); exits with usage's status (2) on an error.
fn parse() -> (Cli, clap::ArgMatches) {
    let parsed = config::matches(Cli::command(), std::env::args_os().collect())
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    parsed.unwrap_or_else(|error| error.exit())
}

fn fail(message: String) -> ExitCode {
    eprintln!("keygate: error: {message}");
    ExitCode::FAILURE
}

fn init_logging(quiet: bool, format: crate::telemetry::LogFormat) {
    let default = if quiet { "warn" } else { "info,sqlx=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(crate::telemetry::log_writer::stderr);
    match format {
        crate::telemetry::LogFormat::Text => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        crate::telemetry::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

async fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Bootstrap(args) => {
            let store = open(&args.database.url, Access::Create).await?;
            let result = admin::bootstrap(store.as_ref(), &args.email, &args.org_name).await;
            store.close().await;
            print_json(&result.map_err(|e| e.to_string())?)
        }
        // Client commands run in `client::run` (see `run`).
        Command::Key { .. }
        | Command::Org { .. }
        | Command::Member { .. }
        | Command::Invite { .. }
        | Command::Verify { .. }
        | Command::Health { .. } => Err("a client command reached the operator's runner".to_owned()),
        Command::Config(_) => Err("`config` reached the operator's runner".to_owned()),
        Command::Migrate(args) => migrate(&args).await,
        Command::Backup(args) => {
            print_json(&backup::backup(&args.database.url, &args.to, args.blob_dir.as_deref()).await?)
        }
        Command::Restore(args) => {
            print_json(&backup::restore(&args.from, &args.database.url, args.blob_dir.as_deref()).await?)
        }
        Command::Audit(args) => {
            let store = open(&args.database.url, Access::Existing).await?;
            let events = store.instance_events(args.before, args.limit).await;
            store.close().await;
            for record in events.map_err(|e| e.to_string())? {
                let event = &record.event;
                let detail =
                    record.detail.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok());
                print_json(&serde_json::json!({
                    "id": event.id,
                    "at": event.at,
                    "action": event.action,
                    "actor_user_id": event.actor_user_id,
                    "actor_key_id": event.actor_key_id,
                    "target_type": event.target_type,
                    "target_id": event.target_id,
                    "ip": event.ip,
                    "detail": detail,
                }))?;
            }
            Ok(())
        }
        Command::User(UserCommand::Add(args)) => {
            let store = open(&args.database.url, Access::Existing).await?;
            if args.issue_key {
                let result = admin::add_user(store.as_ref(), &args.email, args.org_id, args.role).await;
                store.close().await;
                print_json(&result.map_err(|e| e.to_string())?)
            } else {
                let result = admin::set_role(store.as_ref(), &args.email, args.org_id, args.role).await;
                store.close().await;
                print_json(&result.map_err(|e| e.to_string())?)
            }
        }
    }
}

async fn open(url: &str, access: Access) -> Result<std::sync::Arc<dyn keygate_store::Store>, String> {
    keygate_store::connect_for(url, access)
        .await
        .map_err(|e| format!("{} ({})", e, keygate_store::describe_url(url)))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let database = keygate_store::describe_url(&args.database.url);
    let store = open(&args.database.url, Access::Serve).await?;
    tracing::info!(version = crate::telemetry::VERSION, commit = crate::telemetry::COMMIT, %database, "database ready");
    let has_users = store.has_users().await.map_err(|e| e.to_string())?;
    if has_users && args.bootstrap_email.is_some() {
        tracing::warn!(
            "the database already has users: --bootstrap-email is ignored (it only bootstraps an empty database)"
        );
    }
    if !has_users {
        match &args.bootstrap_email {
            Some(email) => {
                let output = admin::bootstrap(store.as_ref(), email, &args.bootstrap_org_name)
                    .await
                    .map_err(|e| format!("bootstrap failed: {e}"))?;
                print_json(&output)?;
                tracing::info!(user_id = %output.user_id, org_id = %output.org_id, "bootstrapped");
            }
            None => eprintln!(
                "keygate: the database has no users yet. Create the first user, an organization \
                 and a key with:\n\n    keygate bootstrap --email you@example.com --org-name \"My Org\" \
                 --database {}\n\nor start the server with --bootstrap-email you@example.com.",
                database
            ),
        }
    }
    // Bundles live in the database when it can share them between
    // replicas (PostgreSQL), unless a directory is asked for.
    let blobs = match (&args.blob_dir, store.shared_blobs()) {
        (None, Some(shared)) => crate::state::blobs::BlobStore::in_database(shared),
        (dir, _) => {
            let dir = match dir {
                Some(dir) => dir.clone(),
                None => blob_dir::default_in_use(&args.database.url)?,
            };
            crate::state::blobs::BlobStore::open(&dir)
                .map_err(|e| format!("cannot use {} for bundles: {e}", dir.display()))?
        }
    };
    tracing::info!(bundles = %blobs.describe(), "bundle storage ready");
    remove_orphan_blobs(store.as_ref(), &blobs, &args.database.url).await;
    let metrics_listener = match args.metrics_listen {
        Some(address) => Some(
            crate::state::MetricsListener::bind(address)
                .map_err(|e| format!("cannot listen on {address} for metrics: {e}"))?,
        ),
        None => None,
    };
    let (forward_auth, forward_auth_throttled) = forward_auth(&args)?;
    let settings = crate::state::Settings {
        blobs,
        max_bundle_size: args.max_bundle_size,
        client_ip_header: args.client_ip_header.clone(),
        verifier_tokens: args.verifier_tokens.clone(),
        key_cache: args.key_cache,
        access_log: args.access_log && tracing::enabled!(target: "keygate::access", tracing::Level::INFO),
        metrics_listener: metrics_listener.clone(),
        metrics_token: args.metrics_token.clone(),
        log_format: args.log_format,
        tls: tls(&args)?,
        edge: crate::http::edge::EdgeLimits {
            header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout),
            request_timeout: std::time::Duration::from_secs(args.request_timeout),
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        },
        failed_auth_limit: usize::try_from(args.failed_auth_limit).unwrap_or(usize::MAX),
        trusted_proxies: args.trusted_proxies.clone(),
        forward_auth,
        forward_auth_throttled,
        max_org_storage: args.max_org_storage,
        clock: crate::admission::quota::Clock::default(),
        body_budget: crate::http::extract::BodyBudget::DEFAULT_BYTES,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    if let Some(address) = metrics_listener.as_ref().and_then(crate::state::MetricsListener::local_addr) {
        tracing::info!(%address, "metrics on their own listener");
    }
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    tracing::info!(%address, api = %format!("{scheme}://{address}/"), openapi = %format!("{scheme}://{address}/openapi.json"), console = %format!("{scheme}://{address}/console"), "listening");
    crate::server::serve(listener, store, settings, crate::server::shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// `keygate migrate`: the schema steps pending, applied unless `--dry-run`.
async fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let url = &args.database.url;
    let describe = |e: keygate_store::StoreError| format!("{e} ({})", keygate_store::describe_url(url));
    let plan = keygate_store::migration_plan(url).await.map_err(describe)?;
    plan.refuse_newer().map_err(describe)?;
    let verb = if args.dry_run { "would apply" } else { "applied" };
    if !args.dry_run && !plan.pending.is_empty() {
        open(url, Access::Existing).await?.close().await;
    }
    for step in &plan.pending {
        println!("{verb} {} {}", step.version, step.description);
    }
    let at = plan.current.map_or_else(|| "no schema yet".to_owned(), |step| format!("step {step}"));
    match (plan.pending.is_empty(), args.dry_run) {
        (true, _) => println!("up to date: step {} of this release", plan.latest),
        (false, true) => println!("the database is at {at}; this release is at step {}", plan.latest),
        (false, false) => println!("migrated from {at} to step {}", plan.latest),
    }
    Ok(())
}

/// `/auth`'s proxy and rules, and how it answers a throttled address.
fn forward_auth(
    args: &ServeArgs,
) -> Result<(Option<crate::admission::forward_auth::ForwardAuth>, axum::http::StatusCode), String> {
    let rules = match &args.forward_auth_rules {
        Some(path) => Some(crate::admission::forward_auth::Rules::load(path)?),
        None => None,
    };
    let forward_auth = match (args.forward_auth_proxy, rules) {
        (Some(proxy), rules) => {
            Some(crate::admission::forward_auth::ForwardAuth::new(proxy, rules.unwrap_or_default()))
        }
        (None, None) => None,
        (None, Some(_)) => {
            return Err("--forward-auth-rules needs --forward-auth-proxy nginx|caddy|traefik|envoy: \
                        the proxy in front of /auth, whose headers alone are read"
                .to_owned());
        }
    };
    let throttled = match args.forward_auth_throttled_status {
        403 => axum::http::StatusCode::FORBIDDEN,
        429 => axum::http::StatusCode::TOO_MANY_REQUESTS,
        other => return Err(format!("--forward-auth-throttled-status {other}: 403 or 429")),
    };
    Ok((forward_auth, throttled))
}

/// What `serve` would refuse before it opens anything: the database URL's
/// scheme, the forward-authentication settings and the TLS files.
fn check(args: &ServeArgs) -> Result<(), String> {
    keygate_store::check_url(&args.database.url)?;
    forward_auth(args)?;
    tls(args)?;
    Ok(())
}

/// The listener's TLS certificate and key, if given.
fn tls(args: &ServeArgs) -> Result<Option<std::sync::Arc<crate::http::tls::Tls>>, String> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(std::sync::Arc::new(crate::http::tls::Tls::load(cert, key)?))),
        _ => Ok(None),
    }
}

/// How old a blob no bundle refers to must be before `serve` removes it,
/// when other replicas may be uploading into the same directory.
const SHARED_ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the blob files a crash left behind (see
/// [`crate::state::blobs::BlobStore::remove_orphans`]). On SQLite this server is the only
/// one (it holds the file's lock), so nothing is mid-upload; replicas on
/// PostgreSQL may be, so only files older than an hour go.
async fn remove_orphan_blobs(
    store: &dyn keygate_store::Store,
    blobs: &crate::state::blobs::BlobStore,
    url: &str,
) {
    let grace = if url.starts_with("sqlite:") { std::time::Duration::ZERO } else { SHARED_ORPHAN_GRACE };
    let referenced = match store.blob_keys().await {
        Ok(keys) => keys.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list the bundles; leaving the blob directory as it is");
            return;
        }
    };
    match blobs.remove_orphans(&referenced, grace).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed blob files that no bundle refers to"),
        Err(error) => tracing::warn!(%error, "cannot clean the blob directory"),
    }
}

/// An address (`10.0.0.5`) or a network (`10.0.0.0/8`).
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither an IP address nor a CIDR such as 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `serve` is in the reference table, with its variable,
    /// and the table names no flag `serve` does not take.
    #[test]
    fn the_configuration_reference_lists_every_serve_flag_and_its_variable() {
        use clap::CommandFactory;
        let page = include_str!("../../../../docs/configuration.md");
        let section = page.split("## `keygate serve`").nth(1).expect("the serve section");
        let section = section.split("\n## ").next().unwrap_or_default();
        let documented: std::collections::BTreeSet<(String, String)> = section
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let flag = cells[0].trim_start_matches("| `--").split([' ', '`']).next().unwrap_or_default();
                let env = cells[1].split('`').nth(1).unwrap_or_default();
                (flag.to_owned(), env.to_owned())
            })
            .collect();
        let command = Cli::command();
        let serve = command.find_subcommand("serve").expect("serve");
        let flags: std::collections::BTreeSet<(String, String)> = serve
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
                (long != "help").then(|| (long.to_owned(), env))
            })
            .collect();
        assert_eq!(documented, flags, "docs/configuration.md's serve table against `serve`'s flags");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

/// `--config FILE` and `config check` ([`config`]), on the whole command line.
#[cfg(test)]
mod config_tests {
    use std::ffi::OsString;

    use clap::ArgMatches;

    use super::Cli;
    use super::config::serve_matches;
    use clap::CommandFactory;

    fn parse_from(args: Vec<OsString>) -> Result<((), ArgMatches), clap::Error> {
        super::config::matches(Cli::command(), args).map(|m| ((), m))
    }

    fn describe(matches: &ArgMatches) -> String {
        super::config::describe(&Cli::command(), matches)
    }

    fn args(line: &[&str]) -> Vec<OsString> {
        std::iter::once("keygate").chain(line.iter().copied()).map(OsString::from).collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keygate.toml");
        std::fs::write(&path, text).expect("write");
        let path = path.to_string_lossy().into_owned();
        (dir, path)
    }

    fn error(text: &str) -> String {
        let (_dir, path) = file(text);
        parse_from(args(&["serve", "--config", &path])).map(|_| ()).expect_err("refused").to_string()
    }

    #[test]
    fn a_file_gives_defaults_that_flags_and_the_environment_override() {
        let (_dir, path) = file(
            "listen = \"127.0.0.1:9999\"\nmax-bundle-size = 1024\nkey-cache = false\n\
             trusted-proxy = [\"10.0.0.0/8\", \"192.0.2.1\"]\nverifier-token = [\"t1\"]\n",
        );
        let (_, matches) = parse_from(args(&["config", "check", "--config", &path])).expect("parsed");
        let check = serve_matches(&matches).expect("check");
        assert_eq!(
            check.get_one::<std::net::SocketAddr>("listen"),
            Some(&"127.0.0.1:9999".parse().expect("addr"))
        );
        assert_eq!(check.get_one::<u64>("max_bundle_size"), Some(&1024));
        assert_eq!(check.get_one::<bool>("key_cache"), Some(&false));
        assert_eq!(check.get_many::<ipnet::IpNet>("trusted_proxies").expect("proxies").count(), 2);
        let described = describe(check);
        assert!(described.contains("listen = \"127.0.0.1:9999\"  # file"), "{described}");
        assert!(described.contains("verifier-token = [\"[hidden]\"]  # file"), "{described}");
        assert!(!described.contains("t1"), "{described}");
        assert!(described.contains("request-timeout = \"60\"  # default"), "{described}");
        assert!(described.contains("# bootstrap-email is not set"), "{described}");

        let (_, matches) =
            parse_from(args(&["config", "check", "--config", &path, "--listen", "8081"])).expect("parsed");
        let described = describe(serve_matches(&matches).expect("check"));
        assert!(described.contains("listen = \"8081\"  # flag"), "the flag wins: {described}");
    }

    #[test]
    fn what_the_file_gets_wrong_is_named() {
        let unknown = error("listen = \"8080\"\nlisten-address = \"8080\"\n");
        assert!(unknown.contains("unknown key `listen-address`") && unknown.contains("listen,"), "{unknown}");
        assert!(error("config = \"other.toml\"\n").contains("unknown key `config`"));
        assert!(error("listen = [\"1\", \"2\"]\n").contains("`listen` takes one value, not a list"));
        assert!(
            error("log-format = \"xml\"\n").contains("`log-format`"),
            "{}",
            error("log-format = \"xml\"\n")
        );
        assert!(error("max-connections = 0\n").contains("`max-connections`"));
        assert!(error("listen = \n").contains("keygate.toml"), "a TOML error names the file");
        let missing = parse_from(args(&["serve", "--config", "/nonexistent/keygate.toml"]))
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            missing.contains("cannot read the configuration file /nonexistent/keygate.toml"),
            "{missing}"
        );
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let (_dir, path) = file("database = \"postgres://keygate:s3cret@db.example/keygate\"\n");
        let (_, matches) = parse_from(args(&["config", "check", "--config", &path])).expect("parsed");
        let described = describe(serve_matches(&matches).expect("check"));
        assert!(!described.contains("s3cret"), "{described}");
        assert!(described.contains("database = "), "{described}");
    }
}
