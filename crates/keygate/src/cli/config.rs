//! `serve`'s settings from a file (`--config FILE`, env `KEYGATE_CONFIG`),
//! and `keygate config check`, which prints what `serve` would run with.
//!
//! Policy: the file is a TOML table whose keys are `serve`'s flags without
//! their dashes (`listen = "0.0.0.0:8080"`, `verifier-token = ["…"]`). A
//! flag on the command line wins over its environment variable, which wins
//! over the file, which wins over the built-in default: the file's values
//! become the flags' defaults. A key that is no flag of `serve`, a list
//! for a flag that takes one value, or a value the flag refuses is an
//! error naming the file and the key; nothing is guessed. What `config
//! check` prints hides every secret (tokens, a database URL's credentials).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// `args` matched by `command` (the whole command line), with `--config
/// FILE`'s values as the defaults of `serve`'s flags when one is named.
pub(super) fn matches(command: Command, args: Vec<OsString>) -> Result<ArgMatches, clap::Error> {
    let matches = command.clone().try_get_matches_from(&args)?;
    match config_path(&matches) {
        Some(path) => {
            let file = ConfigFile::load(&command, &path).map_err(|message| usage_error(&command, message))?;
            file.apply(command).try_get_matches_from(&args)
        }
        None => Ok(matches),
    }
}

fn usage_error(command: &Command, message: String) -> clap::Error {
    command.clone().error(clap::error::ErrorKind::InvalidValue, message)
}

/// The matches of `serve`'s flags on a command line: `serve`'s, or
/// `config check`'s.
pub(super) fn serve_matches(matches: &ArgMatches) -> Option<&ArgMatches> {
    match matches.subcommand()? {
        ("serve", serve) => Some(serve),
        ("config", config) => match config.subcommand()? {
            ("check", check) => Some(check),
            _ => None,
        },
        _ => None,
    }
}

fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    serve_matches(matches)?.get_one::<PathBuf>("config").cloned()
}

/// A configuration file, read and checked against `serve`'s flags.
struct ConfigFile {
    /// Each flag's id with the values the file gives it.
    values: Vec<(clap::Id, Vec<String>)>,
}

impl ConfigFile {
    fn load(command: &Command, path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
        // Where the file is wrong, not the line itself: it may hold a token.
        let table: toml::Table = toml::from_str(&text).map_err(|e: toml::de::Error| {
            let at = e.span().map_or(0, |span| span.start);
            let line = text.get(..at).unwrap_or(&text).matches('\n').count() + 1;
            format!("{}: line {line}: {}", path.display(), e.message().trim_end())
        })?;
        let serve = command.find_subcommand("serve").ok_or("no serve command")?;
        let mut values = Vec::new();
        for (key, value) in &table {
            let arg = serve
                .get_arguments()
                .find(|arg| arg.get_long() == Some(key) && !ignored(key))
                .ok_or_else(|| {
                    format!(
                        "{}: unknown key `{key}`: the keys are serve's flags without their dashes ({})",
                        path.display(),
                        serve_keys(serve).join(", ")
                    )
                })?;
            let many = matches!(arg.get_action(), ArgAction::Append);
            let given = scalars(key, value, many).map_err(|e| format!("{}: {e}", path.display()))?;
            // Checked here as the flag is (clap takes a default on trust):
            // the flag alone, given the file's values, and no variable.
            let alone = Command::new("keygate").no_binary_name(true).arg(arg.clone().env(None));
            let flags = given.iter().map(|one| format!("--{key}={one}"));
            alone.try_get_matches_from(flags).map_err(|error| {
                let why = error.to_string();
                let why = why.lines().next().unwrap_or_default().trim_start_matches("error: ");
                format!("{}: `{key}`: {why}", path.display())
            })?;
            values.push((arg.get_id().clone(), given));
        }
        Ok(Self { values })
    }

    /// `command` with the file's values as the defaults of `serve`'s flags
    /// and of `config check`'s.
    fn apply(self, command: Command) -> Command {
        let defaults = |mut command: Command| {
            for (id, values) in &self.values {
                command = command.mut_arg(id, |arg| arg.default_values(values.clone()));
            }
            command
        };
        command
            .mut_subcommand("serve", defaults)
            .mut_subcommand("config", |config| config.mut_subcommand("check", defaults))
    }
}

/// Flags a file cannot set: the file itself, and help.
fn ignored(key: &str) -> bool {
    matches!(key, "config" | "help")
}

fn serve_keys(serve: &Command) -> Vec<&str> {
    serve.get_arguments().filter_map(|arg| arg.get_long()).filter(|key| !ignored(key)).collect()
}

/// A file value as the flag's values: one scalar, or a list where the
/// flag may be repeated.
fn scalars(key: &str, value: &toml::Value, many: bool) -> Result<Vec<String>, String> {
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        toml::Value::Datetime(at) => Ok(at.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            Err(format!("`{key}` takes a value, not a list or table"))
        }
    };
    match value {
        toml::Value::Array(items) if many => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => Err(format!("`{key}` takes one value, not a list")),
        one => Ok(vec![scalar(one)?]),
    }
}

/// What `serve` (the `serve` subcommand of `command`) would run with, given
/// its flags' `matches`: one `key = value` line per flag, each with where
/// it came from; secrets hidden.
pub(super) fn describe(command: &Command, matches: &ArgMatches) -> String {
    let Some(serve) = command.find_subcommand("serve") else { return String::new() };
    let from_file: BTreeSet<String> = match matches.get_one::<PathBuf>("config") {
        Some(path) => std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .map(|table| table.keys().cloned().collect())
            .unwrap_or_default(),
        None => BTreeSet::new(),
    };
    let mut text = String::from("# what `keygate serve` would run with; secrets hidden\n");
    for arg in serve.get_arguments() {
        let Some(key) = arg.get_long().filter(|key| *key != "help") else { continue };
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => {
                format!("environment, {}", arg.get_env().map(|e| e.to_string_lossy()).unwrap_or_default())
            }
            Some(ValueSource::DefaultValue) if from_file.contains(key) => "file".to_owned(),
            Some(_) => "default".to_owned(),
            None => {
                text.push_str(&format!("# {key} is not set\n"));
                continue;
            }
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| raw.map(|value| shown(key, arg, &value.to_string_lossy())).collect())
            .unwrap_or_default();
        let value = match values.as_slice() {
            [one] if !matches!(arg.get_action(), ArgAction::Append) => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        text.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    text
}

/// A value as `config check` prints it: a TOML string, secrets hidden.
fn shown(key: &str, arg: &clap::Arg, value: &str) -> String {
    let value = if arg.is_hide_env_values_set() {
        "[hidden]".to_owned()
    } else if key == "database" {
        keygate_store::describe_url(value)
    } else {
        value.to_owned()
    };
    // A JSON string is a TOML basic string.
    serde_json::Value::String(value).to_string()
}
