//! A `keygate serve` process on a free loopback port, killed when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve` on `database`, logging to a file in `dir`, and
    /// waits until it listens.
    pub fn start(binary: &Path, database: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(binary, database, dir, extra, &[])
    }

    /// Like [`ServerProcess::start`], with environment variables set last
    /// (so `("KEYGATE_LOG", "info")` replaces the default `debug`).
    pub fn start_with_env(
        binary: &Path,
        database: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let binary = binary.canonicalize().expect("keygate binary");
        Self::spawn(Command::new(binary), database, dir, extra, env)
    }

    /// Like [`ServerProcess::start_with_env`], on a disk that is full for
    /// this process: no file it writes (database, WAL, blobs, its log) can
    /// grow beyond `max_file_kib` KiB. The limit is the shell's `ulimit
    /// -f`; SIGXFSZ is ignored, so a write past it fails with `EFBIG` as
    /// one on a full disk fails with `ENOSPC`.
    pub fn start_with_file_size_limit(
        binary: &Path,
        database: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        max_file_kib: u64,
    ) -> Self {
        let binary = binary.canonicalize().expect("keygate binary");
        let mut shell = Command::new("bash");
        shell
            .arg("-c")
            .arg(format!("trap '' XFSZ; ulimit -f {max_file_kib}; exec \"$0\" \"$@\""))
            .arg(binary);
        Self::spawn(shell, database, dir, extra, env)
    }

    fn spawn(mut command: Command, database: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("server-{}.log", uuid::Uuid::new_v4().simple()));
        // Port 0: the kernel picks a free port, which the server then logs;
        // nothing can take it between choosing and binding.
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(extra)
            .current_dir(dir)
            .env("KEYGATE_LOG", "debug")
            .env_remove("KEYGATE_DATABASE_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn keygate serve");
        let mut server = Self { child, base: String::new(), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(address) = listening_address(&server.log_text()) {
                server.base = format!("http://{address}");
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status}: {}", server.log_text());
            }
            assert!(Instant::now() < deadline, "server did not listen: {}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log holds `text` (such as "shutting down").
    pub fn wait_for_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log_text().contains(text) {
            assert!(Instant::now() < deadline, "no `{text}` in the log: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's process id, for reading `/proc/<pid>/…`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the server's stderr goes; it outlives the process.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name, such as `-TERM`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success(), "kill {name} failed");
    }

    /// Waits for the process to exit and returns its status and stdout.
    pub fn wait(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut stdout = String::new();
                if let Some(mut pipe) = self.child.stdout.take() {
                    pipe.read_to_string(&mut stdout).expect("stdout");
                }
                return (status, stdout);
            }
            assert!(Instant::now() < deadline, "server did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The address in the server's `listening address=…` log line, or its
/// `"address":"…"` in the JSON log.
fn listening_address(log: &str) -> Option<&str> {
    let line = log.lines().find(|l| l.contains("listening"))?;
    if let Some(start) = line.find("\"address\":\"") {
        let rest = &line[start + "\"address\":\"".len()..];
        return rest.split('"').next();
    }
    let start = line.find("address=")? + "address=".len();
    line[start..].split_whitespace().next()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
