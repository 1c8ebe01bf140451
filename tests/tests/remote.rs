//! A coordinator and an agent as separate processes, talking gRPC on
//! loopback, do what the embedded `mo_br` does.

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, Scene, MIB};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::trees::{assert_restored, assert_same_tree};

#[test]
fn remote_equals_embedded() {
    let scene = Scene::new("remote");
    let sample = scene.sample("node", 41, 3 * MIB, Backend::DiskV2);
    let cluster = Cluster::start().expect("start a coordinator and an agent");
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

/// A single coordinator killed mid-backup and started again on its catalog:
/// the backup is recorded as failed and what it had written is removed.
#[test]
fn coordinator_restarted_mid_backup_abandons_it_cleanly() {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use mo_br_tests::procs::{bin, free_local_addr, start_daemon};

    let scene = Scene::new("remote-abandon");
    let sample = scene.sample("node", 42, 16 * MIB, Backend::DiskV2);
    let mut agent = Command::new(bin("mo-br-agent"));
    agent.args(["--listen", "127.0.0.1:0", "--max_bytes_per_sec", "2000000"]);
    let (_agent, agent_addr) =
        start_daemon(agent, "mo-br-agent listening on", scene.path("agent.log")).unwrap();
    let addr = free_local_addr().unwrap();
    let coordinator = || {
        let mut cmd = Command::new(bin("mo-br-coordinator"));
        cmd.args(["--listen", &addr, "--agents", &agent_addr])
            .arg("--meta_path")
            .arg(scene.path("coordinator.meta"));
        start_daemon(
            cmd,
            "mo-br-coordinator listening on",
            scene.path("coordinator.log"),
        )
        .unwrap()
        .0
    };
    let first = coordinator();
    let remote = MoBr::remote(&scene.path("cwd"), &addr);
    let b = scene.path("b1");
    let runner = {
        let remote = remote.clone();
        let args = sample.fs_backup_args(&b);
        std::thread::spawn(move || remote.run(&args))
    };
    // Some objects are written: kill -9 the coordinator.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mo_br_tests::trees::files_under(&b.join("tae")).len() < 3 {
        assert!(Instant::now() < deadline, "the backup wrote nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first);
    // Started again on the same catalog; mo_br, following its backup, learns
    // there that it failed.
    let _second = coordinator();
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
    let left = mo_br_tests::trees::files_under(&b);
    assert!(
        left.is_empty(),
        "left behind: {:?}",
        left.keys().collect::<Vec<_>>()
    );
}
