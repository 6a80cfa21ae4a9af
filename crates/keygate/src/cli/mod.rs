//! The command line: the commands and their flags, and what runs each.
//!
//! The operator's commands (`bootstrap`, `user add`, `audit`, `migrate`,
//! `backup`, `restore`) print JSON on stdout; every error goes to stderr
//! with a non-zero exit. Logs go to stderr and never hold a secret. The
//! parts: [`serve`] (the server's flags and start), [`config`] (`--config
//! FILE`, `config check`), [`admin`] (enrolling users), [`backup`] (backup
//! and restore), [`client`] (the HTTP client commands), and the small
//! [`database`], [`output`] and [`blob_dir`] they share.

pub mod admin;
mod backup;
mod blob_dir;
pub mod client;
mod config;
mod database;
mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use keygate_core::Role;
use keygate_store::Access;
use uuid::Uuid;

use database::{DatabaseArg, open};
use output::print_json;
use serve::ServeArgs;

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
struct BootstrapArgs {
    /// The first user's email; they become the organization's super_admin.
    #[arg(long)]
    email: String,
    /// The name of the organization created for them.
    #[arg(long)]
    org_name: String,
    /// The email already has an account and you know it is this person's (an invitation anyone
    /// sent to the address could have made it): use it.
    #[arg(long)]
    existing_account: bool,
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
    /// The email already has an account and you know it is this person's: add it (with --issue-key;
    /// without it, an existing account joins by an invitation it accepts with its own key).
    #[arg(long, requires = "issue_key")]
    existing_account: bool,
    #[command(flatten)]
    database: DatabaseArg,
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
            return match serve::check(&args) {
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
        Command::Serve(args) => serve::serve(*args).await,
        Command::Bootstrap(args) => {
            let store = open(&args.database.url, Access::Create).await?;
            let result =
                admin::bootstrap_as(store.as_ref(), &args.email, &args.org_name, args.existing_account).await;
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
                let result = admin::add_user_as(
                    store.as_ref(),
                    &args.email,
                    args.org_id,
                    args.role,
                    args.existing_account,
                )
                .await;
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
        // Fourteenth review: a TOML error quoted the line, token and all.
        let duplicate = error("verifier-token = [\"ok\"]\nverifier-token = [\"vt-dup-secret-999\"]\n");
        assert!(duplicate.contains("line 2") && !duplicate.contains("vt-dup-secret-999"), "{duplicate}");
        let unterminated = error("database = \"postgres://u:PWLEAK6@h/db\n");
        assert!(!unterminated.contains("PWLEAK6"), "{unterminated}");
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
