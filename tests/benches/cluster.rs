//! Cluster benchmarks on loopback, printed as tables:
//! - backup throughput with 1, 2 and 3 agents on the same data;
//! - time from kill -9 of the leader to a new leader serving `mo_br list`,
//!   over 10 trials;
//! - what a follower restart costs: time to catch up after missing N
//!   catalog entries, from the log and from a snapshot.
//!
//! Run with `cargo build --release --bins && cargo bench -p mo-br-tests
//! --bench cluster` (the daemons are the release binaries next to the
//! bench). SIZE_MIB sets the data size (default 512).

use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, Scene, MIB};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::procs::MoBr;

fn main() {
    let only_throughput = std::env::var_os("ONLY_THROUGHPUT").is_some();
    let size_mib: u64 = std::env::var("SIZE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    throughput(size_mib);
    if !only_throughput {
        leader_failover(10);
        follower_restart();
    }
}

fn throughput(size_mib: u64) {
    let scene = Scene::new("bench-agents");
    let node = scene.sample("node", 5, size_mib * MIB, Backend::DiskV2);
    let bytes = node.generated.bytes;
    println!("\nbackup of {size_mib} MiB ({bytes} bytes), 3 replicas, filesystem target\n");
    println!("| agents | time | throughput |");
    println!("|---|---|---|");
    // AGENTS=3,2,1 runs the counts in another order (to tell ordering
    // effects such as a warm page cache from the agent count).
    let counts: Vec<usize> = std::env::var("AGENTS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3]);
    for agents in counts {
        let opts = GroupOptions {
            shard_bytes: 16 * MIB,
            ..Default::default()
        };
        let mut g = Group::start(3, opts).expect("replicas");
        for _ in 0..agents {
            g.start_agent(node.data_dir(), 0).expect("agent");
        }
        // Let every agent register before timing.
        std::thread::sleep(Duration::from_millis(1500));
        let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
        let target = scene.path(&format!("b-{agents}"));
        // Start each run with no dirty pages of the previous one still being
        // written back: on one disk that, not the agents, would be measured.
        let _ = std::process::Command::new("sync").status();
        let t0 = Instant::now();
        let mut args = node.fs_backup_args(&target);
        args.extend(["--node".to_string(), "node-1".to_string()]);
        backup_id(&mobr.run(&args));
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "| {agents} | {secs:.2} s | {:.1} MB/s |",
            bytes as f64 / secs / 1e6
        );
        let _ = std::fs::remove_dir_all(&target);
        let _ = std::process::Command::new("sync").status();
    }
}

fn leader_failover(trials: usize) {
    let scene = Scene::new("bench-failover");
    let mut g = Group::start(3, GroupOptions::default()).expect("replicas");
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let mut times = Vec::new();
    for _ in 0..trials {
        let leader = g.wait_leader(Duration::from_secs(10)).expect("a leader");
        let t0 = Instant::now();
        g.kill_replica(leader);
        // Serving: a linearizable catalog read through the CLI succeeds.
        loop {
            if mobr.run(&["list"]).success() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no new leader\n{}",
                g.logs()
            );
        }
        times.push(t0.elapsed().as_secs_f64());
        g.start_replica(leader).expect("restart");
        g.converged_catalogs(Duration::from_secs(20));
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("\nleader kill -9 -> new leader serving `mo_br list`, {trials} trials\n");
    println!("| min | median | max |");
    println!("|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.2} s |",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

fn follower_restart() {
    println!("\nfollower restart: catch-up after missing catalog entries\n");
    println!("| lag (entries) | via | restart -> caught up |");
    println!("|---|---|---|");
    for (snapshot_every, via) in [(100_000, "log"), (20, "snapshot")] {
        let scene = Scene::new("bench-catchup");
        let node = scene.sample("node", 9, MIB, Backend::DiskV2);
        let opts = GroupOptions {
            snapshot_every,
            ..Default::default()
        };
        let mut g = Group::start(3, opts).expect("replicas");
        g.start_agent(node.data_dir(), 0).expect("agent");
        let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
        let leader = g.wait_leader(Duration::from_secs(10)).unwrap();
        let follower = (leader + 1) % 3;
        let before = g.inspect(leader).unwrap().applied_index;
        g.kill_replica(follower);
        for i in 0..20 {
            let mut args = node.fs_backup_args(&scene.path(&format!("b{i}")));
            args.extend(["--node".to_string(), "node-1".to_string()]);
            backup_id(&mobr.run(&args));
        }
        let leader = g.wait_leader(Duration::from_secs(10)).unwrap();
        let lag = g.inspect(leader).unwrap().applied_index - before;
        let t0 = Instant::now();
        g.start_replica(follower).expect("restart");
        g.converged_catalogs(Duration::from_secs(60));
        println!("| {lag} | {via} | {:.2} s |", t0.elapsed().as_secs_f64());
    }
}
