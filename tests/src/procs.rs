//! The workspace binaries as real processes: `mo_br` runs with a timeout in
//! a per-test working directory, and a [`Cluster`] is a coordinator and an
//! agent on loopback ports.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one `mo_br` run may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Subcommands that take `--meta_path`.
const META_PATH_COMMANDS: [&str; 8] = [
    "backup", "catalog", "check", "copy", "delete", "expire", "list", "restore",
];

/// Path of a workspace binary, next to the test executable's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first: cargo build --workspace --bins",
        path.display()
    );
    path
}

/// A finished (or killed) process.
pub struct Output {
    pub command: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// Panics, printing everything, unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self, what: &str) -> &Output {
        assert!(self.success(), "{what}: expected success\n{self}");
        self
    }

    /// Panics, printing everything, unless the command ran to its end and failed.
    #[track_caller]
    pub fn assert_failed(&self, what: &str) -> &Output {
        assert!(!self.timed_out, "{what}: timed out\n{self}");
        assert!(!self.success(), "{what}: expected a failure\n{self}");
        self
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The first UUID-looking token of stdout (a backup ID).
    pub fn first_uuid(&self) -> Option<String> {
        find_uuid(&self.stdout)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        match (self.timed_out, self.status) {
            (true, _) => writeln!(f, "status: killed after {:?} (timeout)", self.elapsed)?,
            (false, Some(s)) => writeln!(f, "status: {s} after {:?}", self.elapsed)?,
            (false, None) => writeln!(f, "status: unknown")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The first `8-4-4-4-12` hex token in `text`.
pub fn find_uuid(text: &str) -> Option<String> {
    all_uuids(text).into_iter().next()
}

/// Every `8-4-4-4-12` hex token in `text`, in order.
pub fn all_uuids(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|tok| {
            let parts: Vec<&str> = tok.split('-').collect();
            parts.len() == 5
                && parts
                    .iter()
                    .zip([8, 4, 4, 4, 12])
                    .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(str::to_string)
        .collect()
}

/// Runs a command to its end or until `timeout`, then kills it.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let out_reader = drain(child.stdout.take().expect("piped stdout"));
    let err_reader = drain(child.stderr.take().expect("piped stderr"));
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break Some(status),
            None if start.elapsed() > timeout => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let elapsed = start.elapsed();
    Output {
        command,
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed,
        timed_out,
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `mo_br` in a working directory of its own, so `./mo_br.toml` and
/// `./mo_br.meta` are per test, with no AWS_* or MO_BR_COORDINATOR from the
/// environment.
#[derive(Debug, Clone)]
pub struct MoBr {
    pub cwd: PathBuf,
    /// Passed as `--meta_path` to the commands that take it (embedded runs).
    pub meta_path: Option<PathBuf>,
    /// Passed as `--coordinator` (remote runs).
    pub coordinator: Option<String>,
    pub timeout: Duration,
    /// Set in `mo_br`'s environment, after the AWS_*/MO_BR_* it inherited
    /// are removed.
    pub env: Vec<(String, String)>,
}

impl MoBr {
    /// Coordinator and agent inside `mo_br`; the catalog at `cwd/mo_br.meta`.
    pub fn embedded(cwd: &Path) -> MoBr {
        MoBr {
            cwd: cwd.to_path_buf(),
            meta_path: Some(cwd.join("mo_br.meta")),
            coordinator: None,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }

    /// `mo_br --coordinator addr`: the catalog is the coordinator's.
    pub fn remote(cwd: &Path, coordinator: &str) -> MoBr {
        MoBr {
            cwd: cwd.to_path_buf(),
            meta_path: None,
            coordinator: Some(coordinator.to_string()),
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> MoBr {
        self.timeout = timeout;
        self
    }

    pub fn with_env(mut self, key: &str, value: &str) -> MoBr {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs `mo_br <args>`; `args[0]` is the subcommand.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        run_with_timeout(self.command(args), self.timeout)
    }

    /// The command [`MoBr::run`] runs, for a test that starts it itself
    /// (e.g. to kill it).
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        std::fs::create_dir_all(&self.cwd).expect("create the mo_br working directory");
        let mut cmd = Command::new(bin("mo_br"));
        cmd.current_dir(&self.cwd);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("AWS_") || k.starts_with("MO_BR_") {
                cmd.env_remove(&key);
            }
        }
        if let Some(addr) = &self.coordinator {
            cmd.arg("--coordinator").arg(addr);
        }
        cmd.args(args);
        let sub = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned());
        if let (Some(meta), Some(sub)) = (&self.meta_path, sub) {
            if META_PATH_COMMANDS.contains(&sub.as_str()) {
                cmd.arg("--meta_path").arg(meta);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `mo_br list --json`, parsed: one JSON object per backup.
    pub fn list_json(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["list", "--json"]);
        out.assert_ok("list --json");
        out.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("list --json printed {l:?}: {e}\n{out}"))
            })
            .collect()
    }

    /// The catalog's backups in `state` (complete, failed, running), as
    /// `list --json` prints them.
    pub fn backups_in_state(&self, state: &str) -> Vec<serde_json::Value> {
        self.list_json()
            .into_iter()
            .filter(|b| b["state"].as_str() == Some(state))
            .collect()
    }

    /// IDs of the catalog's complete backups.
    pub fn complete_ids(&self) -> Vec<String> {
        self.backups_in_state("complete")
            .iter()
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect()
    }
}

/// A process killed when dropped, its stderr kept in a log file.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The peak resident set size of a live process, in bytes (`VmHWM` of
/// /proc/PID/status).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of every file under `dir`, recursively (0 if it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, waits for a stdout line `"<prefix> ADDR"` and returns ADDR.
pub fn start_daemon(
    mut cmd: Command,
    prefix: &str,
    log: PathBuf,
) -> anyhow::Result<(Daemon, String)> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut daemon = Daemon { child, log };
    let (tx, rx) = mpsc::channel();
    // Keeps reading stdout for the daemon's whole life, so a later print
    // never meets a closed pipe.
    let wanted = prefix.to_string();
    std::thread::spawn(move || read_address(stdout, &wanted, tx));
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => Ok((daemon, addr)),
        Err(_) => {
            let status = daemon.child.try_wait()?;
            let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
            anyhow::bail!(
                "{cmd:?} never printed \"{prefix} ADDR\" (status {status:?}); stderr:\n{log}"
            )
        }
    }
}

fn read_address(stdout: ChildStdout, prefix: &str, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let mut sent = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if !sent {
                    if let Some(rest) = line.trim().strip_prefix(prefix) {
                        // "ADDR" or "ADDR (TLS)".
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(addr.to_string());
                        sent = true;
                    }
                }
            }
        }
    }
}

/// A coordinator and one agent, separate processes on loopback ports.
pub struct Cluster {
    // Dropped first: the coordinator, then the agent, then the directory.
    coordinator: Daemon,
    agent: Daemon,
    coordinator_addr: String,
    agent_addr: String,
    /// `--metrics_listen` of each daemon, when started with metrics.
    coordinator_metrics: Option<String>,
    agent_metrics: Option<String>,
    dir: tempfile::TempDir,
}

/// A loopback `host:port` nothing listens on right now (the port is freed
/// again for the daemon to take; good enough on a test machine).
pub fn free_local_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

impl Cluster {
    /// The agent serves the node of `data_dir` (an agent reads nothing of
    /// its host but its node's files); `None` for one that only restores,
    /// checks, or serves SQL-only work.
    pub fn start(data_dir: Option<&Path>) -> anyhow::Result<Cluster> {
        Cluster::start_inner(false, data_dir)
    }

    /// Like [`Cluster::start`], with both daemons serving Prometheus metrics
    /// (`--metrics_listen` on free loopback ports): see
    /// [`Cluster::agent_metrics_addr`] and [`Cluster::coordinator_metrics_addr`].
    pub fn start_with_metrics(data_dir: Option<&Path>) -> anyhow::Result<Cluster> {
        Cluster::start_inner(true, data_dir)
    }

    /// [`Cluster::start_with_metrics`] with the coordinator's log flags
    /// (e.g. `--log_level info --log_format json`) instead of
    /// `--log_level warn`.
    pub fn start_with_metrics_and_logs(
        data_dir: Option<&Path>,
        coordinator_log: &[&str],
    ) -> anyhow::Result<Cluster> {
        Cluster::start_with(true, data_dir, coordinator_log, &[])
    }

    /// Like [`Cluster::start_with_metrics`], with more agent flags.
    pub fn start_with_agent_args(
        data_dir: Option<&Path>,
        agent_args: &[&str],
    ) -> anyhow::Result<Cluster> {
        Cluster::start_with(true, data_dir, &["--log_level", "warn"], agent_args)
    }

    fn start_inner(metrics: bool, data_dir: Option<&Path>) -> anyhow::Result<Cluster> {
        Cluster::start_with(metrics, data_dir, &["--log_level", "warn"], &[])
    }

    fn start_with(
        metrics: bool,
        data_dir: Option<&Path>,
        coordinator_log: &[&str],
        agent_args: &[&str],
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("mo-br-cluster-")
            .tempdir()?;
        let mut agent_cmd = Command::new(bin("mo-br-agent"));
        agent_cmd.args(["--listen", "127.0.0.1:0", "--log_level", "warn"]);
        agent_cmd.args(agent_args);
        if let Some(d) = data_dir {
            agent_cmd.arg("--data_dir").arg(d);
        }
        let agent_metrics = metrics.then(free_local_addr).transpose()?;
        if let Some(m) = &agent_metrics {
            agent_cmd.args(["--metrics_listen", m]);
        }
        let (agent, agent_addr) = start_daemon(
            agent_cmd,
            "mo-br-agent listening on",
            dir.path().join("agent.log"),
        )?;
        let mut coord_cmd = Command::new(bin("mo-br-coordinator"));
        coord_cmd
            .args(["--listen", "127.0.0.1:0", "--agents", &agent_addr])
            .args(coordinator_log)
            .arg("--meta_path")
            .arg(dir.path().join("coordinator.meta"));
        let coordinator_metrics = metrics.then(free_local_addr).transpose()?;
        if let Some(m) = &coordinator_metrics {
            coord_cmd.args(["--metrics_listen", m]);
        }
        let (coordinator, coordinator_addr) = start_daemon(
            coord_cmd,
            "mo-br-coordinator listening on",
            dir.path().join("coordinator.log"),
        )?;
        Ok(Cluster {
            coordinator,
            agent,
            coordinator_addr,
            agent_addr,
            coordinator_metrics,
            agent_metrics,
            dir,
        })
    }

    pub fn coordinator_addr(&self) -> &str {
        &self.coordinator_addr
    }

    pub fn agent_addr(&self) -> &str {
        &self.agent_addr
    }

    /// The agent's metrics address, when started with metrics.
    pub fn agent_metrics_addr(&self) -> Option<&str> {
        self.agent_metrics.as_deref()
    }

    /// The coordinator's metrics address, when started with metrics.
    pub fn coordinator_metrics_addr(&self) -> Option<&str> {
        self.coordinator_metrics.as_deref()
    }

    /// The coordinator's catalog file.
    pub fn meta_path(&self) -> PathBuf {
        self.dir.path().join("coordinator.meta")
    }

    /// The coordinator's stderr.
    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(&self.coordinator.log).unwrap_or_default()
    }

    /// Both daemons' stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- coordinator log ---\n{}\n--- agent log ---\n{}",
            read(&self.coordinator.log),
            read(&self.agent.log)
        )
    }
}
