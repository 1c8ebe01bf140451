//! Online backups of a SHARED store on S3 while the node writes to it and
//! collects garbage in it: `mo-sim` (the MatrixOne test double) keeps its
//! live node's SHARED in a bucket of a real s3s-fs server, through the S3
//! API, and the TN config says so in MatrixOne's shape. mo-br gets the node
//! from `--launch_config` alone: no `--data_dir`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{
    backup_id, restore_by_id_args, stored_objects, strings, Sample, Scene,
};
use mo_br_tests::mosim::MoSim;
use mo_br_tests::procs::{bin, run_with_timeout};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::files_under;

const SHARED_BUCKET: &str = "mo-shared";
const KEY_PREFIX: &str = "cluster1/shared";
const BACKUPS: usize = 5;

/// A sample node whose SHARED moved into `server`'s bucket, its TN config
/// pointing there. Returns the node and the bucket's SHARED directory.
fn node_on_s3(scene: &Scene, server: &S3Server) -> (Sample, PathBuf) {
    let node = scene.sample("node", 91, 2 * 1024 * 1024, Backend::DiskV2);
    let shared = node.move_shared_to_s3(server, SHARED_BUCKET, KEY_PREFIX);
    (node, shared)
}

/// mo-sim's live node on the same bucket and prefix, churning: flushes,
/// merges and checkpoints several times a second, GC every second.
fn start_sim(node: &Sample, server: &S3Server, ledger: &Path) -> MoSim {
    let endpoint = server.endpoint();
    let data_dir = node.data_dir().to_str().unwrap();
    let ledger = ledger.to_str().unwrap();
    MoSim::start_with(&[
        "--data_dir",
        data_dir,
        "--ledger",
        ledger,
        "--s3_endpoint",
        &endpoint,
        "--s3_bucket",
        SHARED_BUCKET,
        "--s3_key_prefix",
        KEY_PREFIX,
        "--s3_access_key_id",
        server.access_key(),
        "--s3_secret_access_key",
        server.secret_key(),
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
    ])
    .expect("start mo-sim on the bucket")
}

/// `backup` online to a filesystem, the node named by its launch config only.
fn online_args(node: &Sample, sim: &MoSim, server: &S3Server, to: &Path) -> Vec<String> {
    let mut args = strings(&["backup", "--backup_dir", "filesystem", "--path"]);
    args.push(to.display().to_string());
    args.push("--launch_config".into());
    args.push(node.launch_config().display().to_string());
    args.extend(strings(&[
        "--host",
        "127.0.0.1",
        "--port",
        &sim.port_str(),
        "--user",
        "root",
        "--password",
        "111",
        "--source_access_key_id",
        server.access_key(),
        "--source_secret_access_key",
        server.secret_key(),
    ]));
    args
}

/// GC runs and no backup checker is left.
#[track_caller]
fn assert_gc_released(sim: &MoSim) {
    let view = sim.node_view();
    assert_eq!(view["gc_stopped"], "false", "{view:?}");
    assert_eq!(view["checker"], "", "{view:?}");
}

/// Waits until GC has deleted more than `since` files from the bucket.
fn wait_for_gc(sim: &MoSim, since: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let deleted = sim.node_number("deleted");
        if deleted > since {
            return deleted;
        }
        assert!(
            Instant::now() < deadline,
            "GC deleted nothing more than {since} in 15 s: {:?}\n{}",
            sim.node_view(),
            sim.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Objects (not ckp/, gc/ or unfinished writes) in the bucket's SHARED.
fn bucket_objects(shared: &Path) -> BTreeSet<String> {
    files_under(shared)
        .into_keys()
        .filter(|rel| !rel.contains('/') && !rel.starts_with(".tmp."))
        .collect()
}

#[test]
fn online_backup_with_wrong_source_keys_fails_and_releases_gc() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("online-s3-keys");
    let (node, _) = node_on_s3(&scene, &server);
    let sim = start_sim(&node, &server, &scene.path("mo-sim-ledger.jsonl"));
    let to = scene.path("b1");
    let mut args = online_args(&node, &sim, &server, &to);
    let secret = args
        .iter()
        .position(|a| a == "--source_secret_access_key")
        .unwrap();
    args[secret + 1] = "wrong".into();
    let t0 = Instant::now();
    let out = scene.mobr.run(&args);
    out.assert_failed("online backup with a wrong source secret");
    assert!(
        out.stderr.contains(SHARED_BUCKET),
        "the error does not name the SHARED bucket\n{out}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{out}");
    assert_gc_released(&sim);
    let failed = scene.mobr.backups_in_state("failed");
    assert_eq!(failed.len(), 1, "the failure is on record: {failed:?}");
    assert!(!to.join("backup_meta").exists());
}

#[test]
fn online_backups_of_shared_on_s3_under_churn_restore_consistently() {
    let t0 = Instant::now();
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("online-s3");
    let (node, shared) = node_on_s3(&scene, &server);
    let ledger = scene.path("mo-sim-ledger.jsonl");
    let sim = start_sim(&node, &server, &ledger);
    assert!(
        !node.data_dir().join("shared2").exists(),
        "mo-sim put SHARED on the node's disk"
    );
    let mobr = &scene.mobr;

    let mut deleted = wait_for_gc(&sim, 0);
    let mut backups = Vec::new();
    for i in 0..BACKUPS {
        // HAKeeper has handed out IDs up to here before the backup starts.
        let ids_before = sim.node_number("next_id");
        let to = scene.path(&format!("b{i}"));
        let out = mobr.run(&online_args(&node, &sim, &server, &to));
        let id = backup_id(&out);
        assert_gc_released(&sim);
        assert!(
            !to.join(format!(".mo-hakeeper-{id}")).exists(),
            "MatrixOne's scratch backup was left behind"
        );
        backups.push((id, ids_before, to));
        // The next backup copies a bucket that GC has changed.
        deleted = wait_for_gc(&sim, deleted);
    }

    // Objects the first backup holds that GC has since removed from the
    // bucket: its restore cannot lean on what is still there.
    let first_objects = stored_objects(&backups[0].2);
    let in_bucket = bucket_objects(&shared);
    let gone = first_objects.difference(&in_bucket).count();
    assert!(
        gone > 0,
        "GC removed none of the first backup's {} objects from the bucket",
        first_objects.len()
    );

    let listed = mobr.list_json();
    for (i, (id, ids_before, to)) in backups.iter().enumerate() {
        let b = listed
            .iter()
            .find(|b| b["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed"));
        assert_eq!(b["kind"], "online", "{b}");
        let cut = b["backup_ts"].as_str().unwrap().to_string();
        assert!(
            !to.join("logservice-data").exists(),
            "an online backup copied logservice-data"
        );
        let restored = scene.path(&format!("r{i}"));
        mobr.run(&restore_by_id_args(id, &restored))
            .assert_ok("restore");
        assert!(
            restored.join("mo-data/shared2/ckp").is_dir(),
            "SHARED from S3 was not restored into mo-data/shared2"
        );
        let tn = std::fs::read_to_string(restored.join("etc/launch/tn.toml")).unwrap();
        assert!(tn.contains("backend = \"MINIO\""), "{tn}");
        let mut cmd = Command::new(bin("mo-sim"));
        cmd.arg("verify")
            .arg("--data_dir")
            .arg(restored.join("mo-data"))
            .args(["--cut", &cut])
            .args(["--hk_data_min", &ids_before.to_string()])
            .arg("--ledger")
            .arg(&ledger);
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        out.assert_ok(&format!("mo-sim verify of backup {i} at {cut}"));
        // "... N objects present (M checked by sha256) ...": objects the
        // node put into the bucket came back byte for byte.
        let by_sha: u64 = out
            .stdout
            .split(" checked by sha256")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected verify summary\n{out}"));
        assert!(by_sha > 0, "no object of the live node was checked\n{out}");
    }
    assert_gc_released(&sim);
    eprintln!(
        "{BACKUPS} online backups of SHARED on S3, restored and verified in {:?}; GC deleted {deleted} files from the bucket",
        t0.elapsed()
    );
}
