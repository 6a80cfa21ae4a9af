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

/// Runs `keygate bootstrap` on `database` and returns its JSON:
/// `{"user_id", "org_id", "key_id", "key"}`.
pub fn bootstrap(binary: &std::path::Path, database: &str) -> serde_json::Value {
    let out = std::process::Command::new(binary)
        .args(["bootstrap", "--email", "bench@example.com", "--org-name", "Bench", "--database", database])
        .output()
        .expect("run keygate bootstrap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bootstrap JSON")
}
