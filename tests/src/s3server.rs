//! A real S3-compatible server (`s3s-fs`) on a loopback port, one per test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mo_br_storage::{Credentials, S3Location};

const BUCKET: &str = "mo-br-test";
const ACCESS_KEY: &str = "mobrtestkey";
const SECRET_KEY: &str = "mobrtestsecret";

pub struct S3Server {
    /// `None` while stopped (see [`S3Server::stop`]).
    child: Option<Child>,
    port: u16,
    // Declared after `child` so the server is killed before its files go.
    root: tempfile::TempDir,
}

/// `MO_BR_S3S_FS`, then `PATH`, then `~/.cargo/bin`.
fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MO_BR_S3S_FS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("s3s-fs");
            if cand.is_file() {
                return cand;
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cand = Path::new(&home).join(".cargo/bin/s3s-fs");
        if cand.is_file() {
            return cand;
        }
    }
    panic!(
        "s3s-fs not found (looked at $MO_BR_S3S_FS, $PATH and ~/.cargo/bin): \
         run scripts/install-deps.sh"
    );
}

/// A port that was free a moment ago. Another process could take it before
/// the server binds, which `start` reports as a failed start.
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

impl S3Server {
    pub fn start() -> anyhow::Result<S3Server> {
        // The port is free when picked but not reserved: another server may
        // take it first, and then ours exits. Try another one then.
        let mut last = None;
        for _ in 0..5 {
            match S3Server::start_once() {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_once() -> anyhow::Result<S3Server> {
        let root = tempfile::Builder::new()
            .prefix("mo-br-s3s-")
            .tempdir()
            .context("create the s3s-fs root")?;
        std::fs::create_dir(root.path().join(BUCKET)).context("create the test bucket")?;
        let port = free_port()?;
        let child = spawn(root.path(), port)?;
        Ok(S3Server {
            child: Some(child),
            port,
            root,
        })
    }

    /// Kills the server (SIGKILL), as a crash would; its objects stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and root, after [`Self::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        // The port was ours a moment ago; a client retrying its connects
        // does not take it, so a few tries are enough.
        let mut last = None;
        for _ in 0..5 {
            match spawn(self.root.path(), self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// Starts s3s-fs on `port` serving `root` and waits until it listens there.
fn spawn(root: &Path, port: u16) -> anyhow::Result<Child> {
    let bin = find_binary();
    let mut child = Command::new(&bin)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .arg("--access-key")
        .arg(ACCESS_KEY)
        .arg("--secret-key")
        .arg(SECRET_KEY)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;

    // Listening on the port is not enough: a server another test
    // started on the same port answers too, with another root. Ours
    // must hold the listening socket.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && holds_listener(child.id(), port)
        {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("s3s-fs exited before listening on {addr}: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("s3s-fs did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

impl S3Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// The directory the server serves; `root()/bucket()/key` is an object.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Creates another (empty) bucket.
    pub fn new_bucket(&self, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.root.path().join(name))
            .with_context(|| format!("create bucket {name}"))
    }

    pub fn location(&self, prefix: &str) -> S3Location {
        self.location_in(BUCKET, prefix)
    }

    /// A location in another bucket of this server (see [`Self::new_bucket`]).
    pub fn location_in(&self, bucket: &str, prefix: &str) -> S3Location {
        S3Location {
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    /// What s3s-fs keeps of unfinished multipart uploads: hidden files
    /// named `.upload*` in its root (a record and the parts).
    pub fn pending_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(".upload"))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            ..Default::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether process `pid` holds the socket listening on loopback `port`
/// (from /proc/net/tcp and the process's file descriptors).
fn holds_listener(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let listens_here = f.len() > 9
                && f[3] == "0A"
                && f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port);
            if listens_here {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
            .unwrap_or(false)
    })
}
