//! `mo_br backup --host ...` naming no node's files (no `--data_dir`):
//! agents registered for that MatrixOne (`mo-br-agent --matrixone h:p`)
//! take it as an online backup; without one, MatrixOne's own `BACKUP`
//! statement writes it and mo-br verifies what it wrote and indexes it.
//! `mo-sim` (the MatrixOne test double) stands in for MatrixOne, its live
//! node flushing, merging, checkpointing and collecting garbage meanwhile.
//! Either way the backup is listed, checked, restored, deleted and built on
//! by incrementals alike; `list --json` says which way it was taken.
//! MatrixOne's own BACKUP cannot compress: `--compression zstd` is refused.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{
    backup_id, restore_by_id_args, s3_target_args, strings, tae_list_rows, Sample, Scene, MIB,
};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::mosim::MoSim;
use mo_br_tests::procs::{bin, run_with_timeout, MoBr, Output};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::files_under;

/// mo-sim's live node on `node`'s data dir, churning several times a second;
/// run from the node's root with its `etc/launch/launch.toml`, as
/// mo-service is, so that BACKUP copies the launch configs.
fn start_sim(node: &Sample, ledger: &Path) -> MoSim {
    MoSim::start_in(
        Some(node.root()),
        &[
            "--launch_config",
            "./etc/launch/launch.toml",
            "--data_dir",
            node.data_dir().to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--flush_ms",
            "150",
            "--ckp_ms",
            "500",
            "--gc_ms",
            "1000",
            "--merge_every",
            "1",
            "--global_every",
            "3",
        ],
    )
    .expect("start mo-sim")
}

fn login_args(sim: &MoSim) -> Vec<String> {
    strings(&[
        "--host",
        &sim.host,
        "--port",
        &sim.port_str(),
        "--user",
        "root",
        "--password",
        "111",
    ])
}

/// `backup --backup_dir filesystem --path <to> --host ...`: no node's files.
fn host_backup_args(sim: &MoSim, to: &Path) -> Vec<String> {
    let mut args = strings(&["backup", "--backup_dir", "filesystem", "--path"]);
    args.push(to.display().to_string());
    args.extend(login_args(sim));
    args
}

fn incremental(mut args: Vec<String>, base: &str) -> Vec<String> {
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        base,
    ]));
    args
}

/// `mo-sim verify`: the restored dir holds what the checkpoint chain at
/// `cut` needs, byte for byte as the node wrote it, and HAKeeper
/// watermarks of at least `hk_min`.
fn verify(ledger: &Path, restored: &Path, cut: &str, hk_min: u64) -> Output {
    let mut cmd = Command::new(bin("mo-sim"));
    cmd.arg("verify")
        .arg("--data_dir")
        .arg(restored.join("mo-data"))
        .args(["--cut", cut])
        .args(["--hk_data_min", &hk_min.to_string()])
        .arg("--ledger")
        .arg(ledger);
    run_with_timeout(cmd, Duration::from_secs(60))
}

#[track_caller]
fn listed(mobr: &MoBr, id: &str) -> serde_json::Value {
    let all = mobr.list_json();
    all.into_iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// The configs MatrixOne's BACKUP named in `mo_meta`
/// (`launchconfig,<role>,<file>_<uuid>`): file name -> stored name.
fn stored_configs(backup: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(backup.join("mo_meta"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("launchconfig,"))
        .map(|rest| {
            let stored = rest.split_once(',').expect("role,file").1.to_string();
            let name = stored.rsplit_once('_').expect("file_uuid").0.to_string();
            (name, stored)
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Rows of a backup's tae_list MatrixOne did not copy (`needCopy=false`).
fn not_copied(backup: &Path) -> Vec<String> {
    tae_list_rows(backup)
        .into_iter()
        .filter(|r| r[3] == "false")
        .map(|r| r[0].clone())
        .collect()
}

/// Restores `id` and has mo-sim verify it at its cut.
#[track_caller]
fn restore_and_verify(scene: &Scene, mobr: &MoBr, ledger: &Path, id: &str, hk_min: u64) {
    let cut = listed(mobr, id)["backup_ts"].as_str().unwrap().to_string();
    let restored = scene.path(&format!("restored-{id}"));
    mobr.run(&restore_by_id_args(id, &restored))
        .assert_ok("restore");
    verify(ledger, &restored, &cut, hk_min).assert_ok(&format!("mo-sim verify of {id} at {cut}"));
}

#[test]
fn host_only_backups_are_taken_by_matrixone_verified_and_restorable() {
    let scene = Scene::new("host-mo");
    let node = scene.sample("node", 31, 4 * MIB, Backend::DiskV2);
    let ledger = scene.path("mo-sim-ledger.jsonl");
    let sim = start_sim(&node, &ledger);
    let mobr = &scene.mobr;

    // MatrixOne's BACKUP stores files as they are: compression is refused
    // in one line before anything is written.
    let b0 = scene.path("b0");
    let mut args = host_backup_args(&sim, &b0);
    args.extend(strings(&["--compression", "zstd"]));
    let out = mobr.run(&args);
    out.assert_failed("backup --host --compression zstd without agents");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(
        out.stderr.contains("--compression zstd:3") && out.stderr.contains("BACKUP"),
        "{out}"
    );
    assert!(files_under(&b0).is_empty(), "{out}");
    assert!(mobr.list_json().is_empty(), "{:?}", mobr.list_json());

    // HAKeeper has handed out IDs up to here before each backup starts.
    let ids_full = sim.node_number("next_id");
    let b1 = scene.path("b1");
    let out = mobr.run(&host_backup_args(&sim, &b1));
    // A full backup takes nothing from a base chain.
    assert!(
        out.stdout.contains(", 0 taken from the base chain"),
        "{out}"
    );
    let full = backup_id(&out);
    for f in ["backup_meta", "mo_meta", "hakeeper/hk_data", "tae/tae_list"] {
        assert!(b1.join(f).is_file(), "{f} missing in {}", b1.display());
    }
    // MatrixOne's BACKUP copies the launch configs into config/ (with
    // sidecars) and names them in mo_meta; mo-br checks and indexes them.
    let configs = stored_configs(&b1);
    assert_eq!(
        configs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["cn.toml", "launch.toml", "log.toml", "tn.toml"],
        "{}",
        b1.display()
    );
    for (name, stored) in &configs {
        let sidecar = std::fs::read(b1.join("config").join(format!("{stored}.sha256"))).unwrap();
        let body = std::fs::read(b1.join("config").join(stored)).unwrap();
        assert_eq!(
            body,
            std::fs::read(node.root().join("etc/launch").join(name)).unwrap(),
            "{name} copied byte for byte"
        );
        assert_eq!(hex::encode(&sidecar), sha256_hex(&body), "{name}'s sidecar");
    }
    assert!(
        not_copied(&b1).is_empty(),
        "a full backup relies on nothing"
    );

    // The node flushes new objects meanwhile.
    std::thread::sleep(Duration::from_millis(800));
    let ids_inc = sim.node_number("next_id");
    let b2 = scene.path("b2");
    let inc = backup_id(&mobr.run(&incremental(host_backup_args(&sim, &b2), &full)));
    let reused = not_copied(&b2);
    assert!(
        !reused.is_empty(),
        "MatrixOne's incremental took nothing from the base"
    );
    for name in &reused {
        assert!(
            !b2.join("tae").join(name).exists(),
            "{name} is listed as not copied yet stored again"
        );
    }

    for (id, ty) in [(&full, "full"), (&inc, "incremental")] {
        let b = listed(mobr, id);
        assert_eq!(b["method"], "matrixone", "{b}");
        assert_eq!(b["kind"], "online", "{b}");
        assert_eq!(b["state"], "complete", "{b}");
        assert_eq!(b["backup_type"], ty, "{b}");
        assert!(!b["backup_ts"].as_str().unwrap().is_empty(), "{b}");
        let out = mobr.run(&["check", id.as_str()]);
        out.assert_ok(&format!("check of {id}"));
        assert!(out.stdout.contains("intact"), "{out}");
        // The configs' check lines come after tae/tae_sum, before the data.
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("check: "))
            .collect();
        let sum = lines
            .iter()
            .position(|l| *l == "check: tae/tae_sum")
            .expect("tae_sum line");
        let cfg: Vec<&str> = lines[sum + 1..]
            .iter()
            .take_while(|l| l.starts_with("check: config/"))
            .copied()
            .collect();
        let dir = if id == &full { &b1 } else { &b2 };
        let want: BTreeSet<String> = stored_configs(dir)
            .values()
            .map(|s| format!("check: config/{s}"))
            .collect();
        assert_eq!(
            cfg.iter().map(|l| l.to_string()).collect::<BTreeSet<_>>(),
            want,
            "{out}"
        );
    }
    assert_eq!(listed(mobr, &inc)["base_id"], full.as_str());

    restore_and_verify(&scene, mobr, &ledger, &full, ids_full);
    restore_and_verify(&scene, mobr, &ledger, &inc, ids_inc);
    // The configs come back under etc/launch, as the node had them.
    for id in [&full, &inc] {
        let restored = scene.path(&format!("restored-{id}"));
        for name in ["launch.toml", "tn.toml", "cn.toml", "log.toml"] {
            let back = restored.join("etc/launch").join(name);
            assert_eq!(
                std::fs::read(&back).unwrap_or_else(|e| panic!("{}: {e}", back.display())),
                std::fs::read(node.root().join("etc/launch").join(name)).unwrap(),
                "{name} restored from {id}"
            );
        }
    }

    // Delete takes every file MatrixOne wrote too.
    mobr.run(&["delete", &inc])
        .assert_ok("delete the incremental");
    mobr.run(&["delete", &full])
        .assert_ok("delete the full backup");
    assert!(mobr.list_json().is_empty(), "{:?}", mobr.list_json());
    for b in [&b1, &b2] {
        let left = files_under(b);
        assert!(
            left.is_empty(),
            "left in {}: {:?}",
            b.display(),
            left.keys()
        );
    }
}

/// Flips the first byte of every object that appears under `dir/tae` until
/// told to stop; returns the names flipped. MatrixOne (the double) hashes
/// the bytes it copies, so a flip after its write is a corruption of what
/// it wrote, which mo-br's verification must catch.
fn corrupt_objects_as_written(dir: &Path, stop: Arc<AtomicBool>) -> BTreeSet<String> {
    let tae = dir.join("tae");
    let mut flipped = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(entries) = std::fs::read_dir(&tae) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let is_object = e.file_type().map(|t| t.is_file()).unwrap_or(false)
                    && !name.starts_with("tae_")
                    && !name.ends_with(".sha256")
                    && !name.starts_with(".tmp");
                if !is_object || flipped.contains(&name) {
                    continue;
                }
                let Ok(mut f) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(e.path())
                else {
                    continue;
                };
                let mut first = [0u8; 1];
                if f.read_exact(&mut first).is_err() {
                    continue; // not written yet
                }
                first[0] ^= 0xff;
                if f.seek(SeekFrom::Start(0)).is_ok() && f.write_all(&first).is_ok() {
                    flipped.insert(name);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    flipped
}

#[test]
fn a_corrupted_object_fails_the_backup_and_leaves_nothing() {
    let scene = Scene::new("host-mo-corrupt");
    let node = scene.sample("node", 32, 2 * MIB, Backend::DiskV2);
    let sim = start_sim(&node, &scene.path("mo-sim-ledger.jsonl"));
    let to = scene.path("b1");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (to, stop) = (to.clone(), stop.clone());
        std::thread::spawn(move || corrupt_objects_as_written(&to, stop))
    };
    let t0 = Instant::now();
    let out = scene.mobr.run(&host_backup_args(&sim, &to));
    stop.store(true, Ordering::Relaxed);
    let flipped = watcher.join().unwrap();
    assert!(!flipped.is_empty(), "no object was corrupted\n{out}");
    out.assert_failed("a backup whose objects were corrupted");
    assert!(
        out.stderr
            .contains("the bytes stored do not match the sha256 tae_list records"),
        "{out}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60), "{out}");
    let failed = scene.mobr.backups_in_state("failed");
    assert_eq!(failed.len(), 1, "the failure is on record: {failed:?}");
    assert_eq!(failed[0]["method"], "matrixone", "{failed:?}");
    let left = files_under(&to);
    assert!(left.is_empty(), "left behind: {:?}", left.keys());
}

/// Waits until replica 0 of `g` counts `n` live agents.
fn wait_live_agents(g: &Group, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if g.inspect(0).is_some_and(|r| r.live_agents == n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} live agents\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn host_only_backups_go_through_agents_registered_for_that_matrixone() {
    let scene = Scene::new("host-agents");
    let node = scene.sample("node", 33, 4 * MIB, Backend::DiskV2);
    let ledger = scene.path("mo-sim-ledger.jsonl");
    let sim = start_sim(&node, &ledger);
    let mut g = Group::start(1, GroupOptions::default()).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());

    // No agent yet: MatrixOne takes the full backup.
    let full = backup_id(&mobr.run(&host_backup_args(&sim, &scene.path("b1"))));
    assert_eq!(listed(&mobr, &full)["method"], "matrixone");

    // An agent of that MatrixOne's node: the incremental on MatrixOne's
    // backup goes through it, as an online backup of mo-br's own.
    let me = format!("{}:{}", sim.host, sim.port);
    g.start_agent_args(node.data_dir(), 0, 4, &strings(&["--matrixone", &me]))
        .unwrap();
    wait_live_agents(&g, 1);
    std::thread::sleep(Duration::from_millis(500));
    let ids_by_agents = sim.node_number("next_id");
    let b2 = scene.path("b2");
    let by_agents = backup_id(&mobr.run(&incremental(host_backup_args(&sim, &b2), &full)));
    let b = listed(&mobr, &by_agents);
    assert_eq!(
        (&b["method"], &b["kind"], &b["base_id"]),
        (
            &serde_json::json!("agents"),
            &serde_json::json!("online"),
            &serde_json::json!(full)
        ),
        "{b}"
    );
    assert!(
        !not_copied(&b2).is_empty(),
        "the agents' incremental took nothing from MatrixOne's backup"
    );
    assert!(
        !b2.join(format!(".mo-hakeeper-{by_agents}")).exists(),
        "MatrixOne's scratch backup was left behind"
    );

    // The agent is gone: the next one falls back to MatrixOne's statement,
    // an incremental on the agents' backup.
    g.kill_agent(0);
    wait_live_agents(&g, 0);
    std::thread::sleep(Duration::from_millis(500));
    let ids_last = sim.node_number("next_id");
    let b3 = scene.path("b3");
    let last = backup_id(&mobr.run(&incremental(host_backup_args(&sim, &b3), &by_agents)));
    let b = listed(&mobr, &last);
    assert_eq!(b["method"], "matrixone", "{b}");
    assert_eq!(b["base_id"], by_agents.as_str(), "{b}");
    assert!(!not_copied(&b3).is_empty());

    // Checks and restores run on agents: one not registered for any
    // MatrixOne will do.
    g.start_agent(node.data_dir(), 0).unwrap();
    wait_live_agents(&g, 1);
    for id in [&full, &by_agents, &last] {
        mobr.run(&["check", id.as_str()])
            .assert_ok(&format!("check of {id}"));
    }
    restore_and_verify(&scene, &mobr, &ledger, &by_agents, ids_by_agents);
    restore_and_verify(&scene, &mobr, &ledger, &last, ids_last);
}

/// `--backup_access_key_id .. --backup_secret_access_key ..`.
fn backup_keys(server: &S3Server) -> Vec<String> {
    strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ])
}

#[test]

fn host_only_backups_to_s3_are_taken_by_matrixone() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("host-mo-s3");
    let node = scene.sample("node", 34, 2 * MIB, Backend::DiskV2);
    let ledger = scene.path("mo-sim-ledger.jsonl");
    let sim = start_sim(&node, &ledger);
    let mobr = &scene.mobr;
    let to_s3 = |filepath: &str| {
        let mut args = strings(&["backup"]);
        args.extend(s3_target_args(&server, server.bucket(), filepath));
        args.extend(login_args(&sim));
        args
    };

    let ids_full = sim.node_number("next_id");
    let full = backup_id(&mobr.run(&to_s3("/host/b1")));
    let b1 = server.root().join(server.bucket()).join("host/b1");
    for f in ["backup_meta", "mo_meta", "hakeeper/hk_data", "tae/tae_list"] {
        assert!(b1.join(f).is_file(), "{f} missing in {}", b1.display());
    }
    std::thread::sleep(Duration::from_millis(800));
    let ids_inc = sim.node_number("next_id");
    let inc = backup_id(&mobr.run(&incremental(to_s3("/host/b2"), &full)));
    let b2 = server.root().join(server.bucket()).join("host/b2");
    assert!(!not_copied(&b2).is_empty());

    for (id, hk_min) in [(&full, ids_full), (&inc, ids_inc)] {
        assert_eq!(listed(mobr, id)["method"], "matrixone");
        let mut check = strings(&["check", id]);
        check.extend(backup_keys(&server));
        mobr.run(&check).assert_ok(&format!("check of {id}"));
        let cut = listed(mobr, id)["backup_ts"].as_str().unwrap().to_string();
        let restored = scene.path(&format!("restored-{id}"));
        let mut restore = restore_by_id_args(id, &restored);
        restore.extend(backup_keys(&server));
        mobr.run(&restore).assert_ok("restore from S3");
        verify(&ledger, &restored, &cut, hk_min).assert_ok(&format!("verify of {id}"));
    }
}
