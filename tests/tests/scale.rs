//! Scale: a backup of 200,000 tiny objects by a 3-replica coordinator
//! cluster and 2 agents (real processes) keeps every daemon's memory and
//! every replica's raft log within constants. Before manifests were chunked
//! the same backup put one record per file into memory and into one raft
//! entry (about 2.9 KB of memory and 0.45 KB of raft log per object).

use std::time::Duration;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, Scene, MIB};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::procs::{dir_bytes, peak_rss, MoBr};

const OBJECTS: usize = 200_000;
/// Peak RSS allowed to each daemon. Per-file state would need hundreds of
/// MiB for this backup (see above); what is measured is in the note of the
/// change that added this test.
const RSS_BOUND: u64 = 128 * MIB;
/// Raft log and state added to each replica by the backup.
const RAFT_BOUND: u64 = 2 * MIB;
/// backup_meta holds a reference per manifest chunk, not an entry per file.
const MANIFEST_BOUND: u64 = 256 * 1024;

#[test]
fn a_backup_of_200k_objects_keeps_memory_and_raft_log_flat() {
    let scene = Scene::new("scale");
    let node = scene.sample("node", 71, 2 * MIB, Backend::DiskV2);
    node.grow_sized(1, OBJECTS, Some(16));

    let mut g = Group::start(
        3,
        GroupOptions {
            // Shards are cut by file count here, as with real small objects.
            shard_bytes: 64 * MIB,
            ..GroupOptions::default()
        },
    )
    .unwrap();
    for _ in 0..2 {
        g.start_agent(node.data_dir(), 0).unwrap();
    }
    let raft_before: Vec<u64> = (0..3).map(|i| dir_bytes(&g.raft_dir(i))).collect();

    let mobr = MoBr::remote(&scene.path("cwd"), &g.list()).with_timeout(Duration::from_secs(900));
    let b = scene.path("backups/b1");
    let mut args = node.fs_backup_args(&b);
    args.extend(["--node".to_string(), "node-1".to_string()]);
    let out = mobr.run(&args);
    assert!(out.success(), "backup failed\n{out}\n{}", g.logs());
    let id = backup_id(&out);

    let listed = mobr.list_json();
    let rec = listed
        .iter()
        .find(|b| b["id"].as_str() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("backup {id} not listed: {listed:?}"));
    let files = rec["files"].as_u64().expect("a file count");
    assert!(
        files > OBJECTS as u64,
        "the backup lists {files} files, fewer than the {OBJECTS} objects"
    );

    let mut report = Vec::new();
    for (i, before) in raft_before.iter().enumerate() {
        let pid = g.replica_pid(i).expect("every replica runs");
        let rss = peak_rss(pid).expect("a peak RSS in /proc");
        let raft = dir_bytes(&g.raft_dir(i)).saturating_sub(*before);
        report.push(format!(
            "coordinator {}: peak RSS {} MiB, raft +{} KiB",
            i + 1,
            rss / MIB,
            raft / 1024
        ));
        assert!(
            rss <= RSS_BOUND,
            "coordinator {} peaked at {rss} bytes",
            i + 1
        );
        assert!(
            raft <= RAFT_BOUND,
            "coordinator {} raft dir grew by {raft} bytes",
            i + 1
        );
    }
    for i in 0..2 {
        let pid = g.agent_pid(i).expect("every agent runs");
        let rss = peak_rss(pid).expect("a peak RSS in /proc");
        report.push(format!("agent {}: peak RSS {} MiB", i + 1, rss / MIB));
        assert!(rss <= RSS_BOUND, "agent {} peaked at {rss} bytes", i + 1);
    }
    let manifest = std::fs::metadata(b.join("backup_meta")).unwrap().len();
    report.push(format!("backup_meta {manifest} bytes"));
    assert!(
        manifest <= MANIFEST_BOUND,
        "backup_meta is {manifest} bytes"
    );
    eprintln!("{}", report.join("\n"));
}
