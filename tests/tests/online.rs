//! Online physical backups of a running node: `mo-sim` (the MatrixOne test
//! double) serves SQL and runs a live node that flushes, merges,
//! checkpoints and collects garbage every second while mo-br copies.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, strings, Sample, Scene, MIB};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::procs::{bin, run_with_timeout, start_daemon, Daemon, MoBr};

/// A running `mo-sim` on a sample's data dir.
struct Sim {
    _daemon: Daemon,
    port: String,
    ledger: std::path::PathBuf,
}

fn start_sim(scene: &Scene, node: &Sample) -> Sim {
    start_sim_with(scene, node, &[])
}

fn start_sim_with(scene: &Scene, node: &Sample, extra: &[&str]) -> Sim {
    let ledger = scene.path("mo-sim-ledger.jsonl");
    let mut cmd = Command::new(bin("mo-sim"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data_dir")
        .arg(node.data_dir())
        .arg("--ledger")
        .arg(&ledger)
        // Churn: flushes, merges and checkpoints several times a second,
        // GC every second.
        .args(["--flush_ms", "150", "--ckp_ms", "500", "--gc_ms", "1000"])
        .args(["--merge_every", "1", "--global_every", "3"])
        .args(extra);
    let (daemon, addr) =
        start_daemon(cmd, "mo-sim listening on", scene.path("mo-sim.log")).expect("start mo-sim");
    let port = addr.rsplit(':').next().unwrap().to_string();
    Sim {
        _daemon: daemon,
        port,
        ledger,
    }
}

fn online_args(node: &Sample, sim: &Sim, to: &Path) -> Vec<String> {
    let mut args = node.fs_backup_args(to);
    args.extend(strings(&[
        "--host",
        "127.0.0.1",
        "--port",
        &sim.port,
        "--user",
        "root",
        "--password",
        "111",
    ]));
    args
}

/// `select * from mo_sim.node` through the MySQL protocol.
fn node_view(sim: &Sim) -> Vec<(String, String)> {
    let port: u16 = sim.port.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use mysql_async::prelude::Queryable;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some("root"))
            .pass(Some("111"));
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("connect to mo-sim");
        let row: mysql_async::Row = conn
            .query_first("select * from mo_sim.node")
            .await
            .expect("query mo_sim.node")
            .expect("a row");
        let columns: Vec<String> = row
            .columns_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let values: Vec<String> = (0..columns.len())
            .map(|i| {
                row.get::<Option<String>, _>(i)
                    .flatten()
                    .unwrap_or_default()
            })
            .collect();
        columns.into_iter().zip(values).collect()
    })
}

fn field(view: &[(String, String)], name: &str) -> String {
    view.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("mo_sim.node has no {name}: {view:?}"))
}

/// GC runs and no backup checker is left.
fn assert_gc_released(sim: &Sim) {
    let view = node_view(sim);
    assert_eq!(field(&view, "gc_stopped"), "false", "{view:?}");
    assert_eq!(field(&view, "checker"), "", "{view:?}");
}

/// `mo-sim verify`: the restored dir holds what the checkpoint chain at
/// the cut needs, and HAKeeper watermarks of at least `hk_min`.
fn verify(sim: &Sim, restored: &Path, cut: &str, hk_min: u64) -> mo_br_tests::procs::Output {
    let mut cmd = Command::new(bin("mo-sim"));
    cmd.arg("verify")
        .arg("--data_dir")
        .arg(restored.join("mo-data"))
        .args(["--cut", cut])
        .args(["--hk_data_min", &hk_min.to_string()])
        .arg("--ledger")
        .arg(&sim.ledger);
    run_with_timeout(cmd, Duration::from_secs(60))
}

fn next_id(sim: &Sim) -> u64 {
    field(&node_view(sim), "next_id").parse().unwrap()
}

#[test]
fn online_backups_under_churn_restore_consistently() {
    let scene = Scene::new("online");
    let node = scene.sample("node", 21, 4 * MIB, Backend::DiskV2);
    let sim = start_sim(&scene, &node);
    let mobr = &scene.mobr;
    let mut backups = Vec::new();
    for i in 0..20 {
        // HAKeeper has handed out IDs up to here before the backup starts.
        let ids_before = next_id(&sim);
        let out = mobr.run(&online_args(&node, &sim, &scene.path(&format!("b{i}"))));
        let id = backup_id(&out);
        assert_gc_released(&sim);
        assert!(
            !scene.path(&format!("b{i}/.mo-hakeeper-{id}")).exists(),
            "MatrixOne's scratch backup was left behind"
        );
        backups.push((id, ids_before));
    }
    let listed = mobr.list_json();
    for (i, (id, ids_before)) in backups.iter().enumerate() {
        let b = listed
            .iter()
            .find(|b| b["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed"));
        assert_eq!(b["kind"], "online", "{b}");
        let cut = b["backup_ts"].as_str().unwrap().to_string();
        assert!(
            !scene.path(&format!("b{i}/logservice-data")).exists(),
            "an online backup copied logservice-data"
        );
        let restored = scene.path(&format!("r{i}"));
        mobr.run(&restore_by_id_args(id, &restored))
            .assert_ok("restore");
        let out = verify(&sim, &restored, &cut, *ids_before);
        out.assert_ok(&format!("mo-sim verify of backup {i} at {cut}"));
    }
    // MatrixOne (the double) starts on the last restored dir, takes up the
    // HAKeeper watermark, and the dir still verifies.
    let (last, ids_before) = backups.last().unwrap();
    let restored = scene.path(&format!("r{}", backups.len() - 1));
    let cut = listed.iter().find(|b| b["id"] == last.as_str()).unwrap()["backup_ts"]
        .as_str()
        .unwrap()
        .to_string();
    let ledger = scene.path("restored-ledger.jsonl");
    let mut cmd = Command::new(bin("mo-sim"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--flush_ms",
        "0",
        "--ckp_ms",
        "0",
    ])
    .arg("--data_dir")
    .arg(restored.join("mo-data"))
    .arg("--ledger")
    .arg(&ledger);
    let (daemon, addr) = start_daemon(
        cmd,
        "mo-sim listening on",
        scene.path("mo-sim-restored.log"),
    )
    .expect("mo-sim starts on the restored dir");
    let restored_sim = Sim {
        _daemon: daemon,
        port: addr.rsplit(':').next().unwrap().to_string(),
        ledger: sim.ledger.clone(),
    };
    assert!(next_id(&restored_sim) >= *ids_before, "IDs would be reused");
    drop(restored_sim);
    verify(&sim, &restored, &cut, *ids_before)
        .assert_ok("verify after a start on the restored dir");
    // The node kept collecting garbage between backups.
    let view = node_view(&sim);
    assert!(
        field(&view, "deleted").parse::<u64>().unwrap() > 0,
        "GC never deleted: {view:?}"
    );
}

/// A coordinator renewing the checker every few milliseconds: a renewal
/// still on its way when the backup releases GC would put the checker back
/// after the release removed it (and MatrixOne would keep it 20 minutes).
/// The renewals end, the last one answered, before the release.
#[test]
fn no_renewal_lands_after_the_release() {
    let scene = Scene::new("online-renewal");
    let node = scene.sample("node", 25, 2 * MIB, Backend::DiskV2);
    let sim = start_sim(&scene, &node);
    let opts = GroupOptions {
        extra_args: strings(&["--gc_renew_ms", "5"]),
        ..Default::default()
    };
    let mut g = Group::start(1, opts).unwrap();
    g.start_agent(node.data_dir(), 1_500_000).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    for i in 0..3 {
        let mut args = online_args(&node, &sim, &scene.path(&format!("b{i}")));
        args.extend(strings(&["--node", "node-1"]));
        mobr.run(&args).assert_ok("online backup");
        assert_gc_released(&sim);
    }
}

#[test]
fn failed_online_backup_releases_gc() {
    let scene = Scene::new("online-fail");
    let node = scene.sample("node", 22, 2 * MIB, Backend::DiskV2);
    let sim = start_sim(&scene, &node);
    // The node's data dir is wrong: the backup fails after GC was stopped.
    let mut args = online_args(&node, &sim, &scene.path("b1"));
    let at = args.iter().position(|a| a == "--data_dir").unwrap();
    args[at + 1] = scene.path("no-such-node/mo-data").display().to_string();
    let t0 = Instant::now();
    let out = scene.mobr.run(&args);
    out.assert_failed("online backup of a missing data dir");
    assert!(out.stderr.contains("no-such-node"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_gc_released(&sim);
    let failed = scene.mobr.backups_in_state("failed");
    assert_eq!(failed.len(), 1, "the failure is on record: {failed:?}");
    assert!(!scene.path("b1/backup_meta").exists());
}

#[test]
fn online_backup_refuses_a_tenant_user_and_a_wrong_password() {
    let scene = Scene::new("online-login");
    let node = scene.sample("node", 23, MIB, Backend::DiskV2);
    let sim = start_sim(&scene, &node);
    let mut args = online_args(&node, &sim, &scene.path("b1"));
    let pw = args.iter().position(|a| a == "--password").unwrap();
    args[pw + 1] = "wrong".into();
    let out = scene.mobr.run(&args);
    out.assert_failed("wrong password");
    assert!(out.stderr.starts_with("mo_br: MatrixOne: "), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert_gc_released(&sim);
    assert!(!scene.path("b1").join("backup_meta").exists());

    let mut args = online_args(&node, &sim, &scene.path("b3"));
    let user = args.iter().position(|a| a == "--user").unwrap();
    args[user + 1] = "acc1#admin".into();
    let out = scene.mobr.run(&args);
    out.assert_failed("tenant user");
    assert!(out.stderr.contains("needs a sys user"), "{out}");
    assert!(
        scene.mobr.list_json().is_empty(),
        "a bad login left a catalog entry"
    );

    let unreachable = strings(&["--port", "1"]);
    let mut args = online_args(&node, &sim, &scene.path("b2"));
    let port = args.iter().position(|a| a == "--port").unwrap();
    args[port + 1] = unreachable[1].clone();
    let t0 = Instant::now();
    let out = scene.mobr.run(&args);
    out.assert_failed("unreachable MatrixOne");
    assert!(out.stderr.contains("cannot reach MatrixOne"), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn leader_killed_mid_online_backup_renewal_goes_on_and_gc_is_released() {
    let scene = Scene::new("online-leader");
    let node = scene.sample("node", 24, 16 * MIB, Backend::DiskV2);
    // The checker lapses 3 s after its last renewal: only a renewal that
    // goes on under the new leader keeps it.
    let sim = start_sim_with(&scene, &node, &["--checker_ttl_ms", "3000"]);
    let opts = GroupOptions {
        extra_args: strings(&["--gc_renew_ms", "300"]),
        // A new leader adopts the backup as soon as it is elected, with the
        // password from its environment (the CLI would bring it a moment later).
        env: vec![("MO_BR_MO_PASSWORD".into(), "111".into())],
        ..Default::default()
    };
    let mut g = Group::start(3, opts).unwrap();
    for _ in 0..2 {
        g.start_agent(node.data_dir(), 1_500_000).unwrap();
    }
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let mut args = online_args(&node, &sim, &scene.path("b1"));
    args.extend(strings(&["--node", "node-1"]));
    let runner = {
        let mobr = mobr.clone();
        std::thread::spawn(move || mobr.run(&args))
    };
    // Wait until GC is held, then kill the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(&node_view(&sim), "gc_stopped") != "true" {
        assert!(Instant::now() < deadline, "GC was never held");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ... and copying has begun.
    let leader = g
        .wait_copying(deadline.saturating_duration_since(Instant::now()))
        .expect("the backup never started copying");
    g.kill_replica(leader);
    // Well past the checker's lifetime (3 s) after the kill, GC is still
    // held and the checker still there: renewed by the new leader.
    let killed = Instant::now();
    let mut held_past_ttl = false;
    while killed.elapsed() < Duration::from_secs(8) && !runner.is_finished() {
        let view = node_view(&sim);
        if field(&view, "gc_stopped") == "true" {
            assert_ne!(field(&view, "checker"), "", "the checker lapsed: {view:?}");
            held_past_ttl |= killed.elapsed() > Duration::from_millis(3500);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = runner.join().unwrap();
    let id = backup_id(&out);
    assert!(
        held_past_ttl,
        "the backup ended before the checker's lifetime ran out: nothing shown"
    );
    assert_gc_released(&sim);
    let restored = scene.path("restored");
    mobr.run(&restore_by_id_args(&id, &restored))
        .assert_ok("restore");
    let cut = mobr
        .list_json()
        .into_iter()
        .find(|b| b["id"] == id.as_str())
        .unwrap()["backup_ts"]
        .as_str()
        .unwrap()
        .to_string();
    verify(&sim, &restored, &cut, 1).assert_ok("verify the restored online backup");
}

#[test]
fn cancelled_online_backup_releases_gc() {
    let scene = Scene::new("online-cancel");
    let node = scene.sample("node", 25, 16 * MIB, Backend::DiskV2);
    let sim = start_sim(&scene, &node);
    let mut g = Group::start(1, GroupOptions::default()).unwrap();
    g.start_agent(node.data_dir(), 2_000_000).unwrap();
    let mut args = online_args(&node, &sim, &scene.path("b1"));
    args.extend(strings(&["--node", "node-1"]));
    // The client goes away (kill -9) while the backup copies.
    let mut client = Command::new(bin("mo_br"))
        .arg("--coordinator")
        .arg(g.list())
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while field(&node_view(&sim), "gc_stopped") != "true" {
        assert!(Instant::now() < deadline, "GC was never held");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    client.kill().unwrap();
    client.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = node_view(&sim);
        if field(&view, "gc_stopped") == "false" && field(&view, "checker").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GC still held: {view:?}\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let listed = mobr.list_json();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "failed", "{listed:?}");
    assert!(!scene.path("b1/backup_meta").exists());
}
