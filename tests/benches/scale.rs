//! Scale benchmarks: many tiny objects, many agents, millions of files.
//! Four sections, each printed as a table (and appended to
//! `target/bench-scale/report-<unix time>.md`, to paste into a note):
//!
//! 1. `embedded`: `mo_br` with its in-process coordinator and agent backs up
//!    N tiny objects to a filesystem target, then checks the backup: time,
//!    files/s, peak RSS and CPU of the `mo_br` process, catalog and manifest
//!    bytes. N from `OBJECTS` (default `100000,1000000`).
//! 2. `cluster`: 3 raft replicas and 2 agents (real processes) back up
//!    `CLUSTER_OBJECTS` (default 1000000) objects: time, peak RSS of every
//!    daemon, raft growth of every replica.
//! 3. `agents`: 3 replicas and `AGENTS` (default 50) agent processes, all
//!    serving the same data dir of `MANY_OBJECTS` (default 200000) objects,
//!    each registered as its own node; the backup names node-1. Leader peak
//!    RSS and CPU, and how the shards spread over the agents (from each
//!    agent's Prometheus metrics): min/median/max, agents that did nothing.
//! 4. `synthetic`: a real `mo-br-coordinator` (single mode) against a fake
//!    agent in this process whose inventory streams N synthetic sorted names
//!    and whose CopyShard answers every file done at once: no data I/O, so
//!    this is the coordinator's own cost per object (planning, shard
//!    bookkeeping, manifest chunks, tae_list). N from `SYNTH_OBJECTS`
//!    (default `100000,1000000,10000000`).
//!
//! Run with `cargo build --release --bins && cargo bench -p mo-br-tests
//! --bench scale`. `SECTIONS=embedded,cluster,agents,synthetic` picks
//! sections. Generated trees of N objects are kept between runs under
//! `SCALE_SAMPLES` (default `target/bench-scale/samples`; 1M objects take
//! about 4 GiB of disk and 1M inodes); backups are deleted after each
//! measurement. `AGENT_PARALLELISM` (default 4) sets the files in flight
//! per shard of the many-agents run.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use mo_br_proto::agent::agent_server::{Agent, AgentServer};
use mo_br_proto::agent::{
    shard_event, AgentInfo, CopyShardRequest, FileDone, FileKind, InfoRequest, InventoryBatch,
    InventoryFile, InventoryRequest, RestoreShardRequest, ShardEvent, VerifyShardRequest,
};
use mo_br_sample::{Backend, Options};
use mo_br_tests::fixtures::{Scene, MIB};
use mo_br_tests::group::{scrape_sum, Group, GroupOptions};
use mo_br_tests::procs::{bin, dir_bytes, peak_rss, start_daemon, MoBr, Output};
use tonic::{Request, Response, Status};

/// How long one timed `mo_br` run may take.
const TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// The agent lease of the cluster runs: the coordinator's default.
const LEASE_MS: u64 = 3000;

fn main() {
    let sections =
        std::env::var("SECTIONS").unwrap_or_else(|_| "embedded,cluster,agents,synthetic".into());
    let want = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let mut rep = Report::open();
    rep.line(format!(
        "# mo-br scale bench\n\n{} cores, {} GiB RAM; SECTIONS={sections}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        meminfo_kib("MemTotal") / (1024 * 1024)
    ));
    if want("embedded") {
        embedded(&mut rep, &env_list("OBJECTS", &[100_000, 1_000_000]));
    }
    if want("cluster") {
        cluster(&mut rep, env_u64("CLUSTER_OBJECTS", 1_000_000));
    }
    if want("agents") {
        many_agents(
            &mut rep,
            env_u64("AGENTS", 50) as usize,
            env_u64("MANY_OBJECTS", 200_000),
            env_u64("AGENT_PARALLELISM", 4) as usize,
        );
    }
    if want("synthetic") {
        synthetic(
            &mut rep,
            &env_list("SYNTH_OBJECTS", &[100_000, 1_000_000, 10_000_000]),
        );
    }
    rep.line(format!("\n(report written to {})", rep.path.display()));
}

// ---------------------------------------------------------------------------
// 1. embedded mo_br

fn embedded(rep: &mut Report, ns: &[u64]) {
    let scene = Scene::new("bench-scale-embedded");
    let cwd = scene.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let meta = cwd.join("mo_br.meta");
    let mobr = MoBr::embedded(&cwd).with_timeout(Duration::from_secs(600));
    let mut backups = Vec::new();
    let mut checks = Vec::new();
    for &n in ns {
        if !room_for_trees(rep, n, 1) {
            continue;
        }
        let tree = sample_tree(n, rep);
        let target = scene.path(&format!("b-{n}"));
        let before = path_bytes(&meta);
        let mut args = tree.backup_args(&target);
        args.extend(["--meta_path".into(), meta.display().to_string()]);
        sync();
        let run = run_measured(&cwd, &args);
        if !run.out.success() {
            eprintln!("{}", run.out);
            backups.push(format!("| {n} | backup failed: {} |", last_line(&run.out)));
            let _ = std::fs::remove_dir_all(&target);
            continue;
        }
        // Before anything else opens the log: opening compacts a long one.
        let catalog = path_bytes(&meta).saturating_sub(before);
        let id = run.out.first_uuid().expect("a backup ID");
        let secs = run.out.elapsed.as_secs_f64();
        let files = files_of(&mobr, &id);
        backups.push(format!(
            "| {n} | {files} | {secs:.1} s | {:.0} | {} | {} | +{} | {} | {} | {} |",
            files as f64 / secs,
            mib(run.peak_rss),
            run.cpu(),
            human(catalog),
            human(file_len(&target.join("backup_meta"))),
            human(dir_bytes(&target.join("manifest"))),
            human(file_len(&target.join("tae/tae_list"))),
        ));
        sync();
        let args: Vec<String> = vec![
            "check".into(),
            id.clone(),
            "--meta_path".into(),
            meta.display().to_string(),
        ];
        let run = run_measured(&cwd, &args);
        let secs = run.out.elapsed.as_secs_f64();
        if run.out.success() {
            checks.push(format!(
                "| {n} | {files} | {secs:.1} s | {:.0} | {} | {} |",
                files as f64 / secs,
                mib(run.peak_rss),
                run.cpu()
            ));
        } else {
            eprintln!("{}", run.out);
            checks.push(format!("| {n} | check failed: {} |", last_line(&run.out)));
        }
        // The catalog keeps its record; the data goes (disk).
        let _ = std::fs::remove_dir_all(&target);
        sync();
    }
    rep.line("\n## 1. embedded `mo_br`, filesystem target, tiny objects (16 B)\n");
    rep.line("backup:\n");
    rep.line("| objects | files | time | files/s | peak RSS | CPU | catalog | backup_meta | manifest chunks | tae_list |");
    rep.line("|---|---|---|---|---|---|---|---|---|---|");
    for r in backups {
        rep.line(r);
    }
    rep.line("\n`mo_br check` of the same backup:\n");
    rep.line("| objects | files | time | files/s | peak RSS | CPU |");
    rep.line("|---|---|---|---|---|---|");
    for r in checks {
        rep.line(r);
    }
}

// ---------------------------------------------------------------------------
// 2. 3 replicas + 2 agents

fn cluster(rep: &mut Report, n: u64) {
    if !room_for_trees(rep, n, 1) {
        return;
    }
    let tree = sample_tree(n, rep);
    let scene = Scene::new("bench-scale-cluster");
    let mut g = Group::start(
        3,
        GroupOptions {
            shard_bytes: 64 * MIB,
            agent_lease_ms: LEASE_MS,
            ..GroupOptions::default()
        },
    )
    .expect("replicas");
    for _ in 0..2 {
        g.start_agent(&tree.data_dir(), 0).expect("agent");
    }
    wait_agents(&g, 2);
    let raft_before: Vec<u64> = (0..3).map(|i| dir_bytes(&g.raft_dir(i))).collect();
    let leader = g.wait_leader(Duration::from_secs(10)).expect("a leader");
    let leader_cpu = cpu_secs(g.replica_pid(leader).unwrap());
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list()).with_timeout(TIMEOUT);
    let target = scene.path("b");
    let mut args = tree.backup_args(&target);
    args.extend(["--node".into(), "node-1".into()]);
    sync();
    let out = mobr.run(&args);
    rep.line(format!(
        "\n## 2. cluster: 3 replicas + 2 agents (real processes), {n} tiny objects, filesystem target\n"
    ));
    if !out.success() {
        eprintln!("{out}\n{}", g.logs());
        rep.line(format!("backup failed: {}", last_line(&out)));
        return;
    }
    let secs = out.elapsed.as_secs_f64();
    let id = out.first_uuid().expect("a backup ID");
    let files = files_of(&mobr, &id);
    let rss = |pid: Option<u32>| pid.and_then(peak_rss).map_or("-".into(), mib);
    let replicas: Vec<String> = (0..3).map(|i| rss(g.replica_pid(i))).collect();
    let raft: Vec<String> = (0..3)
        .map(|i| {
            let grew = dir_bytes(&g.raft_dir(i)).saturating_sub(raft_before[i]);
            format!("+{}", human(grew))
        })
        .collect();
    let agents: Vec<String> = (0..2).map(|i| rss(g.agent_pid(i))).collect();
    let work: Vec<String> = g
        .agents
        .iter()
        .map(|a| {
            let (files, _, shards) = agent_work(&a.metrics);
            format!("{files} ({shards})")
        })
        .collect();
    let leader_cpu = cpu_secs(g.replica_pid(leader).unwrap()) - leader_cpu;
    rep.line("| objects | files | time | files/s | coordinator peak RSS (1/2/3) | leader CPU | raft dir (1/2/3) | agent peak RSS (1/2) | files (shards) per agent | backup_meta |");
    rep.line("|---|---|---|---|---|---|---|---|---|---|");
    rep.line(format!(
        "| {n} | {files} | {secs:.1} s | {:.0} | {} | {leader_cpu:.1} s (replica {}) | {} | {} | {} | {} |",
        files as f64 / secs,
        replicas.join(" / "),
        leader + 1,
        raft.join(" / "),
        agents.join(" / "),
        work.join(" / "),
        human(file_len(&target.join("backup_meta")))
    ));
    drop(g);
    let _ = std::fs::remove_dir_all(&target);
    sync();
}

// ---------------------------------------------------------------------------
// 3. many agents

fn many_agents(rep: &mut Report, agents: usize, n: u64, parallelism: usize) {
    if !room_for_trees(rep, n, 1) {
        return;
    }
    let tree = sample_tree(n, rep);
    let scene = Scene::new("bench-scale-agents");
    let mut g = Group::start(
        3,
        GroupOptions {
            shard_bytes: 64 * MIB,
            agent_lease_ms: LEASE_MS,
            ..GroupOptions::default()
        },
    )
    .expect("replicas");
    let avail_before = meminfo_kib("MemAvailable");
    let t0 = Instant::now();
    for _ in 0..agents {
        g.start_agent_with(&tree.data_dir(), 0, parallelism)
            .expect("agent");
    }
    wait_agents(&g, agents);
    let started = t0.elapsed().as_secs_f64();
    let agent_rss: u64 = (0..agents)
        .filter_map(|i| g.agent_pid(i).and_then(vm_rss))
        .sum();
    let leader = g.wait_leader(Duration::from_secs(10)).expect("a leader");
    let leader_pid = g.replica_pid(leader).unwrap();
    let leader_cpu = cpu_secs(leader_pid);
    let leader_idle = vm_rss(leader_pid).map_or("-".into(), mib);
    let agents_cpu: f64 = (0..agents)
        .filter_map(|i| g.agent_pid(i))
        .map(cpu_secs)
        .sum();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list()).with_timeout(TIMEOUT);
    let target = scene.path("b");
    let mut args = tree.backup_args(&target);
    args.extend([
        "--node".into(),
        "node-1".into(),
        "--parallelism".into(),
        parallelism.to_string(),
    ]);
    sync();
    let out = mobr.run(&args);
    rep.line(format!(
        "\n## 3. many agents: 3 replicas + {agents} agents (each its own node, all serving the same data dir), {n} tiny objects\n"
    ));
    rep.line(format!(
        "{agents} agents started and registered in {started:.1} s, {} resident in all (MemAvailable before {} MiB, now {} MiB); {} files in flight per shard\n",
        mib(agent_rss),
        avail_before / 1024,
        meminfo_kib("MemAvailable") / 1024,
        parallelism,
    ));
    if !out.success() {
        eprintln!("{out}\n{}", g.logs());
        rep.line(format!("backup failed: {}", last_line(&out)));
        return;
    }
    let secs = out.elapsed.as_secs_f64();
    let id = out.first_uuid().expect("a backup ID");
    let files = files_of(&mobr, &id);
    let leader_rss = peak_rss(leader_pid).map_or("-".into(), mib);
    let leader_cpu = cpu_secs(leader_pid) - leader_cpu;
    let agents_cpu = (0..agents)
        .filter_map(|i| g.agent_pid(i))
        .map(cpu_secs)
        .sum::<f64>()
        - agents_cpu;
    let per_agent: Vec<(u64, u64, u64)> = g.agents.iter().map(|a| agent_work(&a.metrics)).collect();
    let idle = per_agent.iter().filter(|a| a.0 == 0).count();
    let stat = |v: Vec<u64>| {
        let mut v = v;
        v.sort_unstable();
        format!("{} / {} / {}", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let mut shards: Vec<u64> = per_agent.iter().map(|a| a.2).collect();
    shards.sort_unstable();
    rep.line("| agents | files | time | files/s | leader RSS before / peak | leader CPU | agents CPU (sum) | files per agent (min/median/max) | shards per agent (min/median/max) | bytes per agent (min/median/max) | idle agents |");
    rep.line("|---|---|---|---|---|---|---|---|---|---|---|");
    rep.line(format!(
        "| {agents} | {files} | {secs:.1} s | {:.0} | {leader_idle} / {leader_rss} | {leader_cpu:.1} s | {agents_cpu:.1} s | {} | {} | {} | {idle} |",
        files as f64 / secs,
        stat(per_agent.iter().map(|a| a.0).collect()),
        stat(shards.clone()),
        stat(per_agent.iter().map(|a| a.1).collect()),
    ));
    rep.line(format!(
        "\nshards per agent, sorted: {}",
        shards
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    ));
    drop(g);
    let _ = std::fs::remove_dir_all(&target);
    sync();
}

// ---------------------------------------------------------------------------
// 4. the coordinator alone, against a synthetic listing

fn synthetic(rep: &mut Report, ns: &[u64]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rows = Vec::new();
    for &n in ns {
        // Plan and manifest chunks and tae_list: about 350 bytes a file.
        if !room_for(rep, &format!("{n} synthetic objects"), n * 400) {
            continue;
        }
        let scene = Scene::new("bench-scale-synthetic");
        let stats = Arc::new(FakeStats::default());
        let fake = FakeAgent {
            objects: n,
            stats: stats.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fake_addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let incoming = futures::stream::unfold(listener, |l| async move {
                let conn = l.accept().await.map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    s
                });
                Some((conn, l))
            });
            tonic::transport::Server::builder()
                .add_service(
                    AgentServer::new(fake)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
        });

        let meta = scene.path("coordinator.meta");
        let mut cmd = Command::new(bin("mo-br-coordinator"));
        cmd.args(["--listen", "127.0.0.1:0", "--agents", &fake_addr])
            .args(["--log_level", "warn"])
            .arg("--meta_path")
            .arg(&meta);
        let (coordinator, addr) = start_daemon(
            cmd,
            "mo-br-coordinator listening on",
            scene.path("coordinator.log"),
        )
        .expect("coordinator");
        let pid = coordinator.pid();
        let catalog_before = path_bytes(&meta);
        let own_cpu = cpu_secs(std::process::id());
        let mobr = MoBr::remote(&scene.path("cwd"), &addr).with_timeout(TIMEOUT);
        let target = scene.path("b");
        let args: Vec<String> = vec![
            "backup".into(),
            "--backup_dir".into(),
            "filesystem".into(),
            "--path".into(),
            target.display().to_string(),
            "--data_dir".into(),
            "/synthetic/mo-data".into(),
        ];
        sync();
        let t0 = Instant::now();
        let out = mobr.run(&args);
        let total = t0.elapsed().as_secs_f64();
        if !out.success() {
            let log = std::fs::read_to_string(scene.path("coordinator.log")).unwrap_or_default();
            eprintln!("{out}\n--- coordinator log ---\n{log}");
            rows.push(format!("| {n} | backup failed: {} |", last_line(&out)));
        } else {
            let id = out.first_uuid().expect("a backup ID");
            let files = files_of(&mobr, &id);
            let at = |m: &Mutex<Option<Instant>>| {
                m.lock()
                    .unwrap()
                    .map_or(f64::NAN, |t| t.duration_since(t0).as_secs_f64())
            };
            let fake_cpu = cpu_secs(std::process::id()) - own_cpu;
            let listed = at(&stats.inventory_end);
            let first = at(&stats.first_copy);
            let last = at(&stats.last_copy);
            rows.push(format!(
                "| {n} | {files} | {total:.1} s | {:.0} | {:.1} | {listed:.1} s | {first:.1} s | {:.1} s | {:.1} s | {} | {} | {:.1} s | {fake_cpu:.1} s | +{} | {} | {} |",
                files as f64 / total,
                total * 1e6 / files as f64,
                last - first,
                total - last,
                stats.shards.load(Ordering::Relaxed),
                peak_rss(pid).map_or("-".into(), mib),
                cpu_secs(pid),
                human(path_bytes(&meta).saturating_sub(catalog_before)),
                human(dir_bytes(&target)),
                human(file_len(&target.join("tae/tae_list"))),
            ));
        }
        drop(coordinator);
        let _ = stop.send(());
        let _ = rt.block_on(server);
        drop(scene);
        sync();
    }
    rep.line("\n## 4. coordinator per-object cost: a real `mo-br-coordinator` (single mode) against a fake agent (synthetic sorted listing, every copy answered done at once; no data I/O)\n");
    rep.line("listed: the inventory stream ended; first shard: planning done (the first CopyShard arrived); shards: first to last CopyShard; commit: last CopyShard to `mo_br` returning (tae_list, backup_meta). Times from `mo_br backup` starting.\n");
    rep.line("| objects | files | total | files/s | µs/file | listed | first shard | shards | commit | shards run | coordinator peak RSS | coordinator CPU | fake agent CPU | catalog | backup dir | of which tae_list |");
    rep.line("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        rep.line(r);
    }
}

/// When the fake agent saw what (for the phases of a synthetic run).
#[derive(Default)]
struct FakeStats {
    inventory_end: Mutex<Option<Instant>>,
    first_copy: Mutex<Option<Instant>>,
    last_copy: Mutex<Option<Instant>>,
    shards: AtomicU64,
}

/// An agent without a disk: `objects` synthetic SHARED objects of 16 bytes,
/// listed in the order the real one uses (sorted by name); every copy
/// succeeds at once with one fixed sha256.
#[derive(Clone)]
struct FakeAgent {
    objects: u64,
    stats: Arc<FakeStats>,
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Files per inventory message, as the real agent sends.
const INVENTORY_BATCH: u64 = 2000;
const FAKE_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn object_name(i: u64) -> String {
    format!("{i:032x}_00000")
}

#[tonic::async_trait]
impl Agent for FakeAgent {
    type InventoryStream = EventStream<InventoryBatch>;
    type CopyShardStream = EventStream<ShardEvent>;
    type RestoreShardStream = EventStream<ShardEvent>;
    type VerifyShardStream = EventStream<ShardEvent>;

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<AgentInfo>, Status> {
        Ok(Response::new(AgentInfo {
            id: "fake".into(),
            version: "0".into(),
            capacity: 16,
        }))
    }

    async fn inventory(
        &self,
        _: Request<InventoryRequest>,
    ) -> Result<Response<Self::InventoryStream>, Status> {
        let n = self.objects;
        let stats = self.stats.clone();
        let batches = futures::stream::unfold((0u64, true), move |(next, first)| {
            let stats = stats.clone();
            async move {
                if next >= n && !first {
                    *stats.inventory_end.lock().unwrap() = Some(Instant::now());
                    return None;
                }
                let end = (next + INVENTORY_BATCH).min(n);
                let files = (next..end)
                    .map(|i| {
                        let name = object_name(i);
                        InventoryFile {
                            kind: FileKind::Object as i32,
                            source_path: format!("synthetic/mo-data/shared2/{name}"),
                            name,
                            size: 16,
                            role: String::new(),
                        }
                    })
                    .collect();
                let mut batch = InventoryBatch {
                    files,
                    ..Default::default()
                };
                if first {
                    batch.shared_backend = "DISK-V2".into();
                    batch.shared_dir = "mo-data/shared2".into();
                    batch.backup_ts = "1700000000000000000-1".into();
                }
                Some((Ok(batch), (end, false)))
            }
        });
        Ok(Response::new(Box::pin(batches)))
    }

    async fn copy_shard(
        &self,
        request: Request<CopyShardRequest>,
    ) -> Result<Response<Self::CopyShardStream>, Status> {
        let now = Instant::now();
        self.stats.first_copy.lock().unwrap().get_or_insert(now);
        *self.stats.last_copy.lock().unwrap() = Some(now);
        self.stats.shards.fetch_add(1, Ordering::Relaxed);
        let req = request.into_inner();
        let epoch = req.epoch;
        let bytes: u64 = req.files.iter().map(|f| f.size).sum();
        let mut events = vec![Ok(ShardEvent {
            event: Some(shard_event::Event::Bytes(bytes)),
        })];
        events.extend(req.files.iter().enumerate().map(|(i, f)| {
            Ok(ShardEvent {
                event: Some(shard_event::Event::Done(FileDone {
                    index: i as u32,
                    size: f.size,
                    sha256: FAKE_SHA256.into(),
                    epoch,
                    stored: None,
                    kept: false,
                })),
            })
        }));
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }

    async fn restore_shard(
        &self,
        _: Request<RestoreShardRequest>,
    ) -> Result<Response<Self::RestoreShardStream>, Status> {
        Err(Status::unimplemented("the fake agent only backs up"))
    }

    async fn verify_shard(
        &self,
        _: Request<VerifyShardRequest>,
    ) -> Result<Response<Self::VerifyShardStream>, Status> {
        Err(Status::unimplemented("the fake agent only backs up"))
    }
}

// ---------------------------------------------------------------------------
// Sample trees, cached between runs

/// A generated node directory of a 2 MiB sample grown by N 16-byte objects.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn data_dir(&self) -> PathBuf {
        self.root.join("mo-data")
    }

    fn backup_args(&self, to: &Path) -> Vec<String> {
        vec![
            "backup".into(),
            "--backup_dir".into(),
            "filesystem".into(),
            "--path".into(),
            to.display().to_string(),
            "--data_dir".into(),
            self.data_dir().display().to_string(),
            "--launch_config".into(),
            self.root
                .join("etc/launch/launch.toml")
                .display()
                .to_string(),
        ]
    }
}

fn sample_cache() -> PathBuf {
    std::env::var_os("SCALE_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench-scale/samples"))
}

/// Where the tree of `n` objects is, and the marker of a finished one
/// (outside mo-data: backups never see it).
fn tree_paths(n: u64) -> (PathBuf, PathBuf) {
    let root = sample_cache().join(format!("objects-{n}"));
    let complete = root.join(".complete");
    (root, complete)
}

/// Disk a tiny object takes, in a tree or a backup: a block and an entry.
const TINY_ON_DISK: u64 = 4300;

/// Whether `copies` copies of `n` tiny objects (plus the tree if it is not
/// cached yet) fit on the disk with 2 GiB to spare; the report says why not.
fn room_for_trees(rep: &mut Report, n: u64, copies: u64) -> bool {
    let cached = tree_paths(n).1.is_file();
    let need = n * TINY_ON_DISK * (copies + u64::from(!cached));
    room_for(rep, &format!("{n} objects"), need)
}

fn room_for(rep: &mut Report, what: &str, need: u64) -> bool {
    let Some(free) = free_bytes(&std::env::temp_dir()).min(free_bytes(&target_dir())) else {
        return true;
    };
    let ok = free >= need + (2 << 30);
    if !ok {
        rep.line(format!(
            "\n(skipped {what}: needs about {} of disk, {} free; the disk is shared, try later or with smaller sizes)",
            human(need),
            human(free)
        ));
    }
    ok
}

/// Free bytes of the filesystem holding `p` (`df -Pk`).
fn free_bytes(p: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(p).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn sample_tree(n: u64, rep: &mut Report) -> Tree {
    let (root, complete) = tree_paths(n);
    if complete.is_file() {
        return Tree { root };
    }
    let cache = sample_cache();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&cache).expect("create the sample cache");
    let t0 = Instant::now();
    let opts = Options {
        seed: 71,
        total_bytes: 2 * MIB,
        backend: Backend::DiskV2,
    };
    mo_br_sample::generate(&root, &opts).expect("generate a sample");
    mo_br_sample::grow(&root, &opts, 1, n as usize, Some(16)).expect("grow the sample");
    std::fs::write(&complete, n.to_string()).unwrap();
    sync();
    rep.line(format!(
        "\n(generated {n} objects into {} in {:.0} s; kept for later runs)",
        root.display(),
        t0.elapsed().as_secs_f64()
    ));
    Tree { root }
}

/// `target/` of this build (the bench runs from `target/release/deps`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench's path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<bench>")
        .to_path_buf()
}

// ---------------------------------------------------------------------------
// Measuring processes

struct Measured {
    out: Output,
    /// Peak resident set size, bytes.
    peak_rss: u64,
    /// User + system CPU.
    cpu_secs: f64,
    /// User and system CPU apart, when `/usr/bin/time` measured them.
    user_sys: Option<(f64, f64)>,
}

impl Measured {
    fn cpu(&self) -> String {
        match self.user_sys {
            Some((u, s)) => format!("{:.1} s ({u:.1} user + {s:.1} sys)", u + s),
            None => format!("{:.1} s", self.cpu_secs),
        }
    }
}

/// Runs `mo_br <args>` in `cwd` under `/usr/bin/time` (its peak RSS from
/// wait4, exact) if present, else polling VmHWM of /proc every 50 ms.
fn run_measured(cwd: &Path, args: &[String]) -> Measured {
    let time = Path::new("/usr/bin/time");
    let usage = cwd.join(".usage");
    let _ = std::fs::remove_file(&usage);
    let mut cmd = if time.is_file() {
        let mut c = Command::new(time);
        c.args(["-f", "%M %U %S", "-o"])
            .arg(&usage)
            .arg(bin("mo_br"));
        c
    } else {
        Command::new(bin("mo_br"))
    };
    cmd.current_dir(cwd).args(args);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("AWS_") || k.starts_with("MO_BR_") {
            cmd.env_remove(&key);
        }
    }
    let (out, polled_rss, polled_cpu) = run_polled(cmd, TIMEOUT);
    let timed = std::fs::read_to_string(&usage).ok().and_then(|s| {
        // GNU time puts "Command exited with non-zero status N" first.
        let v: Vec<f64> = s
            .lines()
            .last()?
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 3).then(|| ((v[0] as u64) * 1024, v[1], v[2]))
    });
    match timed {
        Some((peak_rss, user, sys)) => Measured {
            out,
            peak_rss,
            cpu_secs: user + sys,
            user_sys: Some((user, sys)),
        },
        None => Measured {
            out,
            peak_rss: polled_rss,
            cpu_secs: polled_cpu,
            user_sys: None,
        },
    }
}

/// `procs::run_with_timeout`, polling the child's VmHWM and CPU every 50 ms.
fn run_polled(mut cmd: Command, timeout: Duration) -> (Output, u64, f64) {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let pid = child.id();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_reader = drain(Box::new(child.stdout.take().unwrap()));
    let err_reader = drain(Box::new(child.stderr.take().unwrap()));
    let (mut rss, mut cpu) = (0u64, 0f64);
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break Some(s);
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        rss = rss.max(peak_rss(pid).unwrap_or(0));
        cpu = cpu.max(cpu_secs(pid));
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        command,
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed: start.elapsed(),
        timed_out,
    };
    (out, rss, cpu)
}

/// User + system CPU of a live process (/proc/PID/stat, 100 ticks a second).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which may hold spaces: state is field 3.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// Resident set size now (VmRSS), bytes.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn meminfo_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Waits until the leader's catalog knows `n` agents, then a little more
/// for their first heartbeats.
fn wait_agents(g: &Group, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let known = g
            .wait_leader(Duration::from_secs(10))
            .and_then(|l| g.inspect(l))
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.catalog_json).ok())
            .and_then(|c| c["agents"].as_object().map(|a| a.len()))
            .unwrap_or(0);
        if known >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {known} of {n} agents registered\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS / 3));
}

/// Files, bytes and shards an agent copied, from its Prometheus metrics.
fn agent_work(metrics: &str) -> (u64, u64, u64) {
    let copy = "op=\"copy\"";
    (
        scrape_sum(metrics, "mo_br_agent_files_total", copy) as u64,
        scrape_sum(metrics, "mo_br_agent_bytes_total", copy) as u64,
        scrape_sum(metrics, "mo_br_agent_shard_duration_seconds_count", copy) as u64,
    )
}

fn files_of(mobr: &MoBr, id: &str) -> u64 {
    mobr.list_json()
        .iter()
        .find(|b| b["id"].as_str() == Some(id))
        .and_then(|b| b["files"].as_u64())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Small things

/// Bytes of a file, or of everything under a directory.
fn path_bytes(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => dir_bytes(p),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB as f64)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn last_line(out: &Output) -> String {
    out.stderr
        .lines()
        .chain(out.stdout.lines())
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .replace('|', "/")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[u64]) -> Vec<u64> {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|n| n.trim().replace('_', "").parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// Prints each line and appends it to the report file.
struct Report {
    file: std::fs::File,
    path: PathBuf,
}

impl Report {
    fn open() -> Report {
        let dir = target_dir().join("bench-scale");
        std::fs::create_dir_all(&dir).expect("create target/bench-scale");
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("report-{secs}.md"));
        let file = std::fs::File::create(&path).expect("create the report file");
        Report { file, path }
    }

    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.file, "{}", s.as_ref());
        let _ = self.file.flush();
    }
}
