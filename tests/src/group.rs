//! A coordinator cluster as real processes: raft replicas on loopback
//! ports, each with its own data dir, and agents that register with them.
//! Replicas and agents are killed with SIGKILL (kill -9) and restarted on
//! the same address and data dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mo_br_proto::coordinator::coordinator_client::CoordinatorClient;
use mo_br_proto::coordinator::{InspectReply, InspectRequest};

use crate::procs::{bin, free_local_addr, start_daemon, Daemon};

#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub shard_bytes: u64,
    pub snapshot_every: u64,
    pub agent_lease_ms: u64,
    /// More flags for every replica.
    pub extra_args: Vec<String>,
    /// Environment of every replica.
    pub env: Vec<(String, String)>,
    /// Environment of every agent.
    pub agent_env: Vec<(String, String)>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            shard_bytes: 1 << 20,
            snapshot_every: 1000,
            agent_lease_ms: 1500,
            extra_args: vec![],
            env: vec![],
            agent_env: vec![],
        }
    }
}

pub struct Agent {
    daemon: Option<Daemon>,
    pub metrics: String,
    /// Its gRPC address.
    pub addr: String,
}

pub struct Group {
    pub addrs: Vec<String>,
    replicas: Vec<Option<Daemon>>,
    pub agents: Vec<Agent>,
    opts: GroupOptions,
    dir: tempfile::TempDir,
}

impl Group {
    /// Starts `n` replicas and waits for a leader.
    pub fn start(n: usize, opts: GroupOptions) -> anyhow::Result<Group> {
        let dir = tempfile::Builder::new().prefix("mo-br-group-").tempdir()?;
        let addrs = (0..n)
            .map(|_| free_local_addr())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut g = Group {
            addrs,
            replicas: (0..n).map(|_| None).collect(),
            agents: vec![],
            opts,
            dir,
        };
        for i in 0..n {
            g.start_replica(i)?;
        }
        g.wait_leader(Duration::from_secs(20))
            .ok_or_else(|| anyhow::anyhow!("no leader elected\n{}", g.logs()))?;
        Ok(g)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn peers(&self) -> String {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `--coordinator` list for `mo_br` and agents.
    pub fn list(&self) -> String {
        self.addrs.join(",")
    }

    fn replica_log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("coordinator-{}.log", i + 1))
    }

    /// (Re)starts replica `i` on its address and data dir.
    pub fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin("mo-br-coordinator"));
        cmd.args(["--id", &(i + 1).to_string(), "--listen", &self.addrs[i]])
            .args(["--peers", &self.peers()])
            .arg("--data_dir")
            .arg(self.raft_dir(i))
            .args(["--shard_bytes", &self.opts.shard_bytes.to_string()])
            .args(["--snapshot_every", &self.opts.snapshot_every.to_string()])
            .args(["--agent_lease_ms", &self.opts.agent_lease_ms.to_string()])
            .args(["--log_level", "info"])
            .args(&self.opts.extra_args)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        // Appends: a restarted replica's log follows its earlier life.
        let log = self.replica_log(i);
        let (daemon, _) = start_daemon(cmd, "mo-br-coordinator listening on", log)?;
        self.replicas[i] = Some(daemon);
        Ok(())
    }

    /// kill -9 of replica `i`.
    pub fn kill_replica(&mut self, i: usize) {
        self.replicas[i] = None;
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.replicas[i].is_some()
    }

    /// Starts an agent serving `data_dir`, reading at most `rate` bytes/s
    /// (0: unlimited); returns its index.
    pub fn start_agent(&mut self, data_dir: &Path, rate: u64) -> anyhow::Result<usize> {
        self.start_agent_with(data_dir, rate, 4)
    }

    /// [`Self::start_agent`] with `--parallelism` (files in flight per
    /// shard when a request does not say, and the capacity it registers).
    pub fn start_agent_with(
        &mut self,
        data_dir: &Path,
        rate: u64,
        parallelism: usize,
    ) -> anyhow::Result<usize> {
        self.start_agent_args(data_dir, rate, parallelism, &[])
    }

    /// [`Self::start_agent_with`] and `extra` flags (`--matrixone h:p`).
    pub fn start_agent_args(
        &mut self,
        data_dir: &Path,
        rate: u64,
        parallelism: usize,
        extra: &[String],
    ) -> anyhow::Result<usize> {
        let n = self.agents.len();
        let metrics = free_local_addr()?;
        let mut cmd = Command::new(bin("mo-br-agent"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--id",
            &format!("agent-{}", n + 1),
        ])
        .args(["--node", &format!("node-{}", n + 1)])
        .args(["--coordinators", &self.list()])
        .arg("--data_dir")
        .arg(data_dir)
        .args(["--max_bytes_per_sec", &rate.to_string()])
        .args(["--parallelism", &parallelism.to_string()])
        .args(["--metrics_listen", &metrics])
        .args(["--log_level", "warn"])
        .args(extra)
        .envs(self.opts.agent_env.iter().map(|(k, v)| (k, v)));
        let log = self.dir.path().join(format!("agent-{}.log", n + 1));
        let (daemon, addr) = start_daemon(cmd, "mo-br-agent listening on", log)?;
        self.agents.push(Agent {
            daemon: Some(daemon),
            metrics,
            addr,
        });
        Ok(n)
    }

    /// Process id of replica `i`, if it runs.
    pub fn replica_pid(&self, i: usize) -> Option<u32> {
        self.replicas[i].as_ref().map(Daemon::pid)
    }

    /// Process id of agent `i`, if it runs.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.agents[i].daemon.as_ref().map(Daemon::pid)
    }

    /// Replica `i`'s raft directory (log, hard state, snapshots).
    pub fn raft_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("raft-{}", i + 1))
    }

    /// kill -9 of agent `i`.
    pub fn kill_agent(&mut self, i: usize) {
        self.agents[i].daemon = None;
    }

    /// Replica `i`'s own view (raft state and applied catalog), if it answers.
    pub fn inspect(&self, i: usize) -> Option<InspectReply> {
        if !self.is_up(i) {
            return None;
        }
        let addr = format!("http://{}", self.addrs[i]);
        runtime().block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(addr)
                .ok()?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(3))
                .connect()
                .await
                .ok()?;
            CoordinatorClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .inspect(InspectRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        })
    }

    /// The index of the replica that leads, once one does.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for i in 0..self.addrs.len() {
                if self.inspect(i).is_some_and(|r| r.role == "leader") {
                    return Some(i);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The leader, once a backup is copying: one of its shards is assigned
    /// in the replicated state, so its plan is committed and the CLI has been
    /// told its id (a leader killed while planning takes the plan with it).
    pub fn wait_copying(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let leader = self.wait_leader(left)?;
            let copying = self.inspect(leader).is_some_and(|r| {
                let cat: serde_json::Value =
                    serde_json::from_str(&r.catalog_json).unwrap_or_default();
                cat["backup_jobs"].as_object().is_some_and(|jobs| {
                    jobs.values().any(|j| {
                        j["shards"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|s| !s["assignment"].is_null()))
                    })
                })
            });
            if copying {
                return Some(leader);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until every live replica has applied the same index, then
    /// returns their catalogs (replica index, catalog JSON).
    pub fn converged_catalogs(&self, timeout: Duration) -> Vec<(usize, serde_json::Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<(usize, InspectReply)> = (0..self.addrs.len())
                .filter_map(|i| self.inspect(i).map(|r| (i, r)))
                .collect();
            let applied: Vec<u64> = views.iter().map(|(_, r)| r.applied_index).collect();
            let converged = applied.windows(2).all(|w| w[0] == w[1]);
            if converged || Instant::now() >= deadline {
                assert!(
                    converged,
                    "replicas did not converge: applied {applied:?}\n{}",
                    self.logs()
                );
                return views
                    .into_iter()
                    .map(|(i, r)| {
                        let v = serde_json::from_str(&r.catalog_json).expect("catalog JSON");
                        (i, v)
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every replica's and agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} ---\n", f.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Scrapes a Prometheus endpoint and sums the samples of `metric` whose
/// labels contain `label` (e.g. `op="copy"`).
pub fn scrape_sum(addr: &str, metric: &str, label: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
