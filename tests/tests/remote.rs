//! A coordinator and an agent as separate processes, talking gRPC on
//! loopback, do what the embedded `mo_br` does.

use std::path::Path;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, Scene, MIB};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::trees::{assert_left_nothing, assert_restored, assert_same_tree, finished_files};

#[test]
fn remote_equals_embedded() {
    let scene = Scene::new("remote");
    let sample = scene.sample("node", 41, 3 * MIB, Backend::DiskV2);
    let cluster =
        Cluster::start(Some(sample.data_dir())).expect("start a coordinator and an agent");
    let remote = MoBr::remote(&scene.path("cwd-remote"), cluster.coordinator_addr());
    let logs = || cluster.logs();

    let b = scene.path("backups/remote");
    let out = remote.run(&sample.fs_backup_args(&b));
    assert!(out.success(), "remote backup failed\n{out}\n{}", logs());
    let id = backup_id(&out);

    let check = remote.run(&["check", &id]);
    assert!(check.success(), "remote check failed\n{check}\n{}", logs());

    let list = remote.run(&["list"]);
    assert!(list.success(), "remote list failed\n{list}\n{}", logs());
    assert!(
        list.stdout.contains(id.as_str()),
        "remote list misses {id}\n{list}"
    );
    assert!(
        cluster.meta_path().exists(),
        "the coordinator's catalog {} was never written",
        cluster.meta_path().display()
    );
    assert!(
        !scene.path("cwd-remote/mo_br.meta").exists(),
        "a remote mo_br wrote a local catalog"
    );

    let r = scene.path("restores/remote");
    let restore = remote.run(&restore_by_id_args(&id, &r));
    assert!(
        restore.success(),
        "remote restore failed\n{restore}\n{}",
        logs()
    );
    assert_restored(sample.root(), &r);

    // The same through the embedded coordinator gives the same tree.
    let embedded = &scene.mobr;
    let id = backup_id(&embedded.run(&sample.fs_backup_args(&scene.path("backups/embedded"))));
    let r_embedded = scene.path("restores/embedded");
    embedded
        .run(&restore_by_id_args(&id, &r_embedded))
        .assert_ok("embedded restore");
    assert_same_tree(&r, &r_embedded);
}

/// A throttled agent and a single coordinator (without raft) on its
/// catalog, as separate processes; the coordinator can be killed and started
/// again on the same address and catalog.
struct Throttled {
    _agent: mo_br_tests::procs::Daemon,
    agent_addr: String,
    addr: String,
}

impl Throttled {
    fn start(scene: &Scene, bytes_per_sec: u64, data_dir: &Path) -> Throttled {
        use mo_br_tests::procs::{bin, free_local_addr, start_daemon};
        let mut agent = std::process::Command::new(bin("mo-br-agent"));
        agent.args(["--listen", "127.0.0.1:0", "--max_bytes_per_sec"]);
        agent.arg(bytes_per_sec.to_string());
        agent.arg("--data_dir").arg(data_dir);
        let (agent, agent_addr) =
            start_daemon(agent, "mo-br-agent listening on", scene.path("agent.log")).unwrap();
        Throttled {
            _agent: agent,
            agent_addr,
            addr: free_local_addr().unwrap(),
        }
    }

    fn coordinator(&self, scene: &Scene) -> mo_br_tests::procs::Daemon {
        use mo_br_tests::procs::{bin, start_daemon};
        let mut cmd = std::process::Command::new(bin("mo-br-coordinator"));
        cmd.args(["--listen", &self.addr, "--agents", &self.agent_addr])
            .arg("--meta_path")
            .arg(scene.path("coordinator.meta"));
        start_daemon(
            cmd,
            "mo-br-coordinator listening on",
            scene.path("coordinator.log"),
        )
        .unwrap()
        .0
    }
}

/// Waits until `dir` holds at least `n` finished files (not temp files).
fn wait_for_files(dir: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while finished_files(dir).len() < n {
        assert!(Instant::now() < deadline, "nothing was written to {dir:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A single coordinator killed mid-backup and started again on its catalog:
/// the backup is recorded as failed and what it had written is removed.
#[test]
fn coordinator_restarted_mid_backup_abandons_it_cleanly() {
    let scene = Scene::new("remote-abandon");
    let sample = scene.sample("node", 42, 16 * MIB, Backend::DiskV2);
    let daemons = Throttled::start(&scene, 2_000_000, sample.data_dir());
    let first = daemons.coordinator(&scene);
    let remote = MoBr::remote(&scene.path("cwd"), &daemons.addr);
    let b = scene.path("b1");
    let runner = {
        let remote = remote.clone();
        let args = sample.fs_backup_args(&b);
        std::thread::spawn(move || remote.run(&args))
    };
    // Some objects are written: kill -9 the coordinator.
    wait_for_files(&b.join("tae"), 3);
    drop(first);
    // Started again on the same catalog; mo_br, following its backup, learns
    // there that it failed.
    let _second = daemons.coordinator(&scene);
    let out = runner.join().unwrap();
    out.assert_failed("backup whose coordinator died");
    assert!(
        out.stderr.contains("stopped before the backup finished"),
        "{out}"
    );
    let listed = remote.list_json();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "failed", "{listed:?}");
    // The agent may still finish a file it had started: give it time, then
    // nothing of the backup may be left.
    std::thread::sleep(Duration::from_secs(3));
    assert_left_nothing(&b);
}

/// A single coordinator killed mid-restore and started again on its catalog
/// carries the restore on from its done shards; the CLI, which lost its
/// coordinator, follows it there and returns success.
#[test]
fn coordinator_restarted_mid_restore_carries_it_on() {
    let scene = Scene::new("remote-restore-abandon");
    let sample = scene.sample("node", 43, 16 * MIB, Backend::DiskV2);
    let b = scene.path("b1");
    // Backed up by the embedded mo_br, restored from its location remotely.
    backup_id(&scene.mobr.run(&sample.fs_backup_args(&b)));
    let daemons = Throttled::start(&scene, 2_000_000, sample.data_dir());
    let first = daemons.coordinator(&scene);
    let remote = MoBr::remote(&scene.path("cwd"), &daemons.addr);
    let r = scene.path("restored");
    let args: Vec<String> = [
        "restore",
        "--backup_dir",
        "filesystem",
        "--backup_path",
        b.to_str().unwrap(),
        "--restore_dir",
        "filesystem",
        "--restore_path",
        r.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let runner = {
        let (remote, args) = (remote.clone(), args.clone());
        std::thread::spawn(move || remote.run(&args))
    };
    wait_for_files(&r, 3);
    drop(first);
    let _second = daemons.coordinator(&scene);
    let out = runner.join().unwrap();
    out.assert_ok("restore whose coordinator was restarted");
    // Followed on the restarted coordinator, by the restore's id.
    assert!(
        out.stdout.contains("restore ") && !out.stdout.contains("restore complete:"),
        "{out}"
    );
    assert_restored(sample.root(), &r);
    let log = std::fs::read_to_string(scene.path("coordinator.log")).unwrap_or_default();
    assert!(log.contains("carrying restore"), "{log}");
}
