//! The real nginx and Caddy, run with the configurations keygate ships in
//! `deploy/forward-auth/` — those exact files, with only the three
//! addresses they name (keygate, the API, their own) replaced by the
//! test's — each in a directory of its own, stopped with everything it
//! started when dropped.
//!
//! A missing proxy is reported and its test skipped, unless
//! `KEYGATE_REQUIRE_PROXIES` is set (as `.ci/run` does, after installing
//! both): then a missing proxy fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `deploy/forward-auth/nginx.conf`, as shipped.
pub const NGINX_CONF: &str = include_str!("../../../deploy/forward-auth/nginx.conf");
/// `deploy/forward-auth/Caddyfile`, as shipped.
pub const CADDYFILE: &str = include_str!("../../../deploy/forward-auth/Caddyfile");

/// The addresses the shipped configurations name, replaced by the test's.
pub const KEYGATE_IN_CONFIG: &str = "127.0.0.1:8080";
pub const UPSTREAM_IN_CONFIG: &str = "127.0.0.1:9000";
pub const LISTEN_IN_CONFIG: &str = "127.0.0.1:8000";

/// Which proxy, as `--forward-auth-proxy` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

impl Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        }
    }

    /// The proxy's binary, or `None` (after saying so) when it is not
    /// installed and not required.
    pub fn binary(self) -> Option<PathBuf> {
        let candidates: &[&str] = match self {
            Kind::Nginx => &["/usr/sbin/nginx", "/usr/bin/nginx"],
            Kind::Caddy => &["/usr/bin/caddy", "/usr/local/bin/caddy"],
        };
        let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
        if found.is_none() {
            let name = self.name();
            assert!(
                std::env::var_os("KEYGATE_REQUIRE_PROXIES").is_none(),
                "{name} is not installed (apt-get install {name}), and KEYGATE_REQUIRE_PROXIES is set"
            );
            eprintln!("skipping: {name} is not installed (apt-get install {name})");
        }
        found
    }
}

/// A running proxy, stopped (with its workers) when dropped.
pub struct ReverseProxy {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ReverseProxy {
    /// Starts the shipped configuration of `kind` in front of `upstream`,
    /// asking keygate at `keygate` (`host:port`); `None` when the proxy is
    /// not installed (and not required).
    pub fn start(kind: Kind, keygate: &str, upstream: &str) -> Option<Self> {
        let binary = kind.binary()?;
        for _ in 0..4 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("proxy directory");
            let config = shipped(kind)
                .replace(KEYGATE_IN_CONFIG, keygate)
                .replace(UPSTREAM_IN_CONFIG, upstream)
                .replace(LISTEN_IN_CONFIG, &format!("127.0.0.1:{port}"));
            let command = match kind {
                Kind::Nginx => nginx(&binary, dir.path(), &config),
                Kind::Caddy => caddy(&binary, dir.path(), &config),
            };
            if let Some(proxy) = Self::spawn(command, port, dir) {
                return Some(proxy);
            }
        }
        panic!("{} found no free port in four tries", kind.name());
    }

    /// Caddy's own file server on `root`, as an upstream that resolves
    /// paths the way Go does; `None` when Caddy is not installed (and not
    /// required).
    pub fn file_server(root: &Path) -> Option<Self> {
        let binary = Kind::Caddy.binary()?;
        for _ in 0..4 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("proxy directory");
            let config = format!(
                "{{\n\tadmin off\n}}\n\nhttp://:{port} {{\n\tbind 127.0.0.1\n\troot * {}\n\tfile_server\n}}\n",
                root.display()
            );
            if let Some(server) = Self::spawn(caddy(&binary, dir.path(), &config), port, dir) {
                return Some(server);
            }
        }
        panic!("caddy found no free port in four tries");
    }

    /// Starts `command` and waits until it accepts connections on `port`;
    /// `None` when it could not bind the port (taken meanwhile).
    fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir) -> Option<Self> {
        use std::os::unix::process::CommandExt;
        let child = command
            // A process group of its own: stopping it stops every worker.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("start the proxy");
        let mut proxy = Self { child, base: format!("http://127.0.0.1:{port}"), port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(_)) = proxy.child.try_wait() {
                if proxy.logs().to_lowercase().contains("address already in use") {
                    return None;
                }
                panic!("the proxy exited: {}", proxy.logs());
            }
            assert!(Instant::now() < deadline, "the proxy did not listen: {}", proxy.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    /// What the proxy logged.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}\n{}", read("stderr"), read("error.log"))
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        // The whole group, gracefully first: nginx's master takes its
        // workers with it on TERM; SIGKILL alone would orphan them.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill").args([name, "--", &group]).stderr(Stdio::null()).status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shipped(kind: Kind) -> &'static str {
    match kind {
        Kind::Nginx => NGINX_CONF,
        Kind::Caddy => CADDYFILE,
    }
}

/// nginx in the foreground, with its pid file, error log and temporary
/// files in `dir`: the shipped file names none of them, leaving each to
/// its packaged default.
fn nginx(binary: &Path, dir: &Path, config: &str) -> Command {
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).expect("write nginx.conf");
    std::fs::create_dir_all(dir.join("logs")).expect("logs directory");
    let prefix = dir.display();
    let mut command = Command::new(binary);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .args(["-g", &format!("daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log info;")]);
    command
}

/// Caddy, with its data and configuration directories in `dir`.
fn caddy(binary: &Path, dir: &Path, config: &str) -> Command {
    let path = dir.join("Caddyfile");
    std::fs::write(&path, config).expect("write Caddyfile");
    let mut command = Command::new(binary);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir);
    command
}

/// A port free now, below Linux's ephemeral range (32768 and up), where
/// the many port-0 listeners and outgoing connections of a test run land:
/// the proxy binds it a moment later, and a race is still possible, so
/// [`ReverseProxy::start`] tries again on another.
fn free_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
