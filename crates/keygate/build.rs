//! Names the commit the binary is built from (`keygate --version`,
//! `keygate_build_info`): `KEYGATE_COMMIT` when set (a build outside a git
//! checkout, such as a container's), else git's description of it against
//! the release tags (`v0.2.0` at a release, `v0.2.0-3-g1a2b3c4d5e6f` after
//! one, the short hash before any), else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=KEYGATE_COMMIT");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
    };
    // Rebuilt when the checked-out commit moves.
    for path in ["HEAD", "refs/heads", "refs/tags", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("KEYGATE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["describe", "--tags", "--match", "v[0-9]*", "--abbrev=12", "--always"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KEYGATE_COMMIT={commit}");
}
