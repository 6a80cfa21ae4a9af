//! Shared pieces of the benchmark programs.

use std::time::Duration;

/// p50, p99 and max of a sample, in that order.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Reads `--name value` from the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// Every value of `--name`, which may be repeated and may hold several
/// values separated by commas: `--keys 1000,1000000` or `--keys 1000 --keys 1000000`.
pub fn arg_list(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|pair| pair[0] == name)
        .flat_map(|pair| {
            pair[1].split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `keygate bootstrap` on `database` and returns its JSON:
/// `{"user_id", "org_id", "key_id", "key"}`.
pub fn bootstrap(binary: &std::path::Path, database: &str) -> serde_json::Value {
    bootstrap_as(binary, database, "bench@example.com", "Bench")
}

/// [`bootstrap`] for another tenant: a user `email` owning a new organization `org_name`.
pub fn bootstrap_as(
    binary: &std::path::Path,
    database: &str,
    email: &str,
    org_name: &str,
) -> serde_json::Value {
    let out = std::process::Command::new(binary)
        .args(["bootstrap", "--email", email, "--org-name", org_name, "--database", database])
        .output()
        .expect("run keygate bootstrap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bootstrap JSON")
}
