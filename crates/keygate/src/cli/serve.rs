//! `keygate serve`: its flags, and starting the server they describe —
//! the database, the first user on an empty one, bundles, `/auth`, TLS and
//! the listeners.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use keygate_store::Access;

use super::database::{DatabaseArg, open};
use super::output::print_json;
use super::{admin, blob_dir};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// A TOML file of these flags without their dashes (`listen = "0.0.0.0:8080"`); a flag or its
    /// environment variable wins over the file.
    #[arg(long, env = "KEYGATE_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Address to listen on: HOST:PORT (0.0.0.0:8080 for every interface), or a port alone for 127.0.0.1.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub(super) listen: SocketAddr,
    #[command(flatten)]
    pub(super) database: DatabaseArg,
    /// On an empty database, bootstrap this user and print the bootstrap JSON once.
    #[arg(long, env = "KEYGATE_BOOTSTRAP_EMAIL")]
    pub(super) bootstrap_email: Option<String>,
    /// A directory for uploaded bundles [default: on PostgreSQL, the database itself, which every replica shares; on SQLite, `FILE-blobs` beside the database file `FILE` (`keygate-blobs` beside `keygate.db`)].
    #[arg(long, env = "KEYGATE_BLOB_DIR")]
    pub(super) blob_dir: Option<PathBuf>,
    /// The most bytes the bundles of one organization may take in all [default: no limit].
    #[arg(long, env = "KEYGATE_MAX_ORG_STORAGE", value_name = "BYTES")]
    pub(super) max_org_storage: Option<u64>,
    /// The largest bundle accepted, in bytes.
    #[arg(long, env = "KEYGATE_MAX_BUNDLE_SIZE", default_value_t = crate::state::DEFAULT_MAX_BUNDLE_SIZE)]
    pub(super) max_bundle_size: u64,
    /// Enables POST /verify for services presenting this token (repeat the flag, or separate with commas).
    #[arg(
        long = "verifier-token",
        env = "KEYGATE_VERIFIER_TOKEN",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_verifier_token
    )]
    pub(super) verifier_tokens: Vec<crate::state::VerifierToken>,
    /// Cache verified keys, kept coherent through LISTEN/NOTIFY (PostgreSQL) or
    /// an epoch counter polled every 100 ms (SQLite); `--key-cache false` reads every key from the database.
    #[arg(long = "key-cache", env = "KEYGATE_KEY_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub(super) key_cache: bool,
    /// Behind a trusted proxy or load balancer: the header that carries the client's address
    /// (its last entry is used), such as x-forwarded-for. Without it, the peer's address.
    #[arg(long, env = "KEYGATE_CLIENT_IP_HEADER")]
    pub(super) client_ip_header: Option<axum::http::HeaderName>,
    /// A proxy allowed to name the client in --client-ip-header (by default x-forwarded-for),
    /// as an address or CIDR; repeatable. With none, every peer is when that header is set.
    #[arg(long = "trusted-proxy", env = "KEYGATE_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR", value_parser = parse_cidr)]
    pub(super) trusted_proxies: Vec<ipnet::IpNet>,
    /// The reverse proxy that asks GET /auth, which names the only headers read for the original
    /// request: nginx (X-Original-*), caddy or traefik (X-Forwarded-*), envoy (its own method and path).
    /// Without it /auth is disabled.
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_PROXY", value_name = "PROXY", value_parser = parse_proxy)]
    pub(super) forward_auth_proxy: Option<crate::admission::forward_auth::Proxy>,
    /// A TOML file of rules saying what `/auth` requires of each forwarded request (needs
    /// --forward-auth-proxy) [default: GET, HEAD and OPTIONS need read, other methods write].
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_RULES", value_name = "FILE")]
    pub(super) forward_auth_rules: Option<PathBuf>,
    /// The status `/auth` answers a throttled address with: 403 (which nginx passes on) or
    /// 429 (for proxies that pass any status).
    #[arg(long, env = "KEYGATE_FORWARD_AUTH_THROTTLED_STATUS", default_value_t = 403, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(403..=429))]
    pub(super) forward_auth_throttled_status: u16,
    /// Log each request (one line on stderr, written off the request path). Also off when
    /// KEYGATE_LOG filters out `keygate::access` at info (e.g. `KEYGATE_LOG=info,keygate::access=off`).
    #[arg(long, env = "KEYGATE_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub(super) access_log: bool,
    /// How log lines on stderr are written: text, or json (one object per line) for log shippers.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub(super) log_format: crate::telemetry::LogFormat,
    /// Serve GET /metrics (Prometheus) on this address instead of on --listen.
    #[arg(long, env = "KEYGATE_METRICS_LISTEN", value_name = "ADDR")]
    pub(super) metrics_listen: Option<SocketAddr>,
    /// A PEM certificate chain: serve HTTPS on --listen (with --tls-key); reread on SIGHUP.
    #[arg(long, env = "KEYGATE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert; reread on SIGHUP.
    #[arg(long, env = "KEYGATE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Lets a scrape of GET /metrics on --listen come from anywhere when it presents this token as
    /// a bearer token; without it, only loopback clients may scrape there.
    #[arg(long, env = "KEYGATE_METRICS_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = parse_metrics_token)]
    pub(super) metrics_token: Option<crate::state::VerifierToken>,
    /// Seconds a client has to send a request's head; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "KEYGATE_HEADER_READ_TIMEOUT", default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(super) header_read_timeout: u64,
    /// Seconds a whole request may take, body included, before it is answered 408.
    #[arg(long, env = "KEYGATE_REQUEST_TIMEOUT", default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(super) request_timeout: u64,
    /// Connections served at once; beyond, new ones wait to be accepted.
    #[arg(long, env = "KEYGATE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(super) max_connections: u64,
    /// Failed authentications from one address within 5 minutes before it is answered 429
    /// until they age out; 0 turns the throttle off.
    #[arg(long, env = "KEYGATE_FAILED_AUTH_LIMIT", default_value_t = 20, value_name = "N")]
    pub(super) failed_auth_limit: u64,
    /// The organization created with --bootstrap-email.
    #[arg(long, env = "KEYGATE_BOOTSTRAP_ORG_NAME", default_value = "Default Organization")]
    pub(super) bootstrap_org_name: String,
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

pub(super) async fn serve(args: ServeArgs) -> Result<(), String> {
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
pub(super) fn check(args: &ServeArgs) -> Result<(), String> {
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
