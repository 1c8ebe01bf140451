//! A coordinator cluster as real processes on loopback: 3 raft replicas,
//! agents that register and heartbeat, kill -9 of the leader, of an agent,
//! of a majority; restarts from disk.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, Sample, Scene, MIB};
use mo_br_tests::group::{scrape_sum, Group, GroupOptions};
use mo_br_tests::procs::{MoBr, Output};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::{assert_restored, files_under, finished_files, temp_files};

/// Sum of the bytes of the files a backup copied (not the metadata written
/// at commit), read from its manifest.
fn copied_bytes(backup_meta: &Path) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_meta).expect("backup_meta")).unwrap();
    // The data files' entries are in manifest chunks, each recording the
    // bytes it copied.
    let chunks: u64 = meta["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["copied_bytes"].as_u64().unwrap())
        .sum();
    let inline: u64 = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["need_copy"] == true && f["kind"] != "meta")
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    chunks + inline
}

/// Polls the leader's catalog until the running job of a backup has at
/// least `shards` shards done.
fn wait_for_progress(g: &Group, shards: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(l) = g.wait_leader(Duration::from_secs(5)) {
            if let Some(r) = g.inspect(l) {
                let cat: serde_json::Value = serde_json::from_str(&r.catalog_json).unwrap();
                let done = cat["backup_jobs"]
                    .as_object()
                    .into_iter()
                    .flat_map(|jobs| jobs.values())
                    .flat_map(|j| j["shards"].as_array().cloned().unwrap_or_default())
                    .filter(|s| !s["result"].is_null())
                    .count();
                if done >= shards {
                    return;
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("the backup made no progress\n{}", g.logs());
}

/// Backups still running in replica `i`'s catalog.
fn running_jobs(g: &Group, i: usize) -> usize {
    let view = g.inspect(i).expect("the replica answers");
    let cat: serde_json::Value = serde_json::from_str(&view.catalog_json).unwrap();
    cat["backup_jobs"].as_object().map_or(0, |j| j.len())
}

fn complete_backups(catalog: &serde_json::Value) -> Vec<String> {
    catalog["backups"]
        .as_object()
        .unwrap()
        .values()
        .filter(|b| b["state"]["state"] == "complete")
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every live replica holds the same catalog, and `id` is complete in it.
fn assert_replicas_agree(g: &Group, id: &str) {
    let catalogs = g.converged_catalogs(Duration::from_secs(20));
    assert!(catalogs.len() >= 2, "fewer than two replicas answer");
    let (_, first) = &catalogs[0];
    for (i, c) in &catalogs[1..] {
        assert_eq!(
            c,
            first,
            "replica {} differs from replica {}",
            i + 1,
            catalogs[0].0 + 1
        );
    }
    assert!(
        complete_backups(first).contains(&id.to_string()),
        "backup {id} is not complete in the catalog: {first}"
    );
    assert!(
        first["backup_jobs"].as_object().unwrap().is_empty(),
        "a job is left: {first}"
    );
}

/// The agents all serve the same data dir here (one host), registered as
/// node-1, node-2, node-3: a backup names the node whose files it takes.
fn on_node_1() -> Vec<String> {
    vec!["--node".into(), "node-1".into()]
}

fn backup_args(node: &Sample, to: &Path) -> Vec<String> {
    let mut args = node.fs_backup_args(to);
    args.extend(on_node_1());
    args
}

/// A group of 3 replicas and `agents` agents reading at most `rate` bytes/s
/// each (throttled so a backup is still running when something is killed).
fn throttled_group(node: &Sample, agents: usize, rate: u64) -> Group {
    let mut g = Group::start(3, GroupOptions::default()).unwrap();
    for _ in 0..agents {
        g.start_agent(node.data_dir(), rate).unwrap();
    }
    g
}

/// Runs `mo_br` on another thread; join it for its output.
fn in_background(mobr: &MoBr, args: Vec<String>) -> thread::JoinHandle<Output> {
    let mobr = mobr.clone();
    thread::spawn(move || mobr.run(&args))
}

/// Restores backup `id` into `<scene>/restored` and compares it with the node.
fn assert_restores(mobr: &MoBr, scene: &Scene, node: &Sample, id: &str) {
    mobr.run(&restore_by_id_args(id, &scene.path("restored")))
        .assert_ok("restore");
    assert_restored(node.root(), &scene.path("restored"));
}

fn sample(scene: &Scene, size: u64) -> Sample {
    scene.sample("node", 11, size, Backend::DiskV2)
}

#[test]
fn backup_spreads_over_three_agents_and_restores_from_s3() {
    let scene = Scene::new("cluster-s3");
    let node = sample(&scene, 12 * MIB);
    // s3s-fs cannot store keys longer than ~150 bytes (see fixtures).
    node.drop_long_paths(150);
    let s3 = S3Server::start().expect("start s3s-fs");
    let mut g = Group::start(3, GroupOptions::default()).expect("start the replicas");
    for _ in 0..3 {
        g.start_agent(node.data_dir(), 0).unwrap();
    }
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let mut args: Vec<String> = [
        "backup",
        "--backup_dir",
        "s3",
        "--endpoint",
        &s3.endpoint(),
        "--bucket",
        s3.bucket(),
        "--filepath",
        "/cluster1",
        "--access_key_id",
        s3.access_key(),
        "--secret_access_key",
        s3.secret_key(),
        "--is_minio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(node.source_args());
    args.extend(on_node_1());
    let out = mobr.run(&args);
    let id = backup_id(&out);

    // Every agent took a part, and together they copied every byte once.
    let per_agent: Vec<f64> = g
        .agents
        .iter()
        .map(|a| scrape_sum(&a.metrics, "mo_br_agent_bytes_total", "op=\"copy\""))
        .collect();
    assert!(
        per_agent.iter().all(|b| *b > 0.0),
        "idle agent: {per_agent:?}\n{}",
        g.logs()
    );
    let copied = copied_bytes(&s3.root().join(s3.bucket()).join("cluster1/backup_meta"));
    assert_eq!(
        per_agent.iter().sum::<f64>() as u64,
        copied,
        "bytes by agent: {per_agent:?}"
    );
    assert_replicas_agree(&g, &id);

    let mut restore = restore_by_id_args(&id, &scene.path("restored"));
    restore.extend(
        [
            "--backup_access_key_id",
            s3.access_key(),
            "--backup_secret_access_key",
            s3.secret_key(),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    mobr.run(&restore).assert_ok("restore");
    assert_restored(node.root(), &scene.path("restored"));
}

#[test]
fn leader_killed_mid_backup_the_new_leader_finishes_it() {
    let scene = Scene::new("cluster-leader");
    let node = sample(&scene, 24 * MIB);
    let mut g = throttled_group(&node, 2, 4_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let runner = in_background(&mobr, backup_args(&node, &scene.path("b1")));
    wait_for_progress(&g, 2);
    let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
    g.kill_replica(leader);
    // The backup is still unfinished in the new leader's replicated state:
    // it is the new leader that finishes it.
    let new_leader = g
        .wait_leader(Duration::from_secs(10))
        .expect("a new leader");
    assert_ne!(new_leader, leader);
    assert_eq!(running_jobs(&g, new_leader), 1, "{}", g.logs());

    let out = runner.join().unwrap();
    let id = backup_id(&out);
    assert!(scene.path("b1/backup_meta").is_file());
    assert_replicas_agree(&g, &id);
    assert_restores(&mobr, &scene, &node, &id);

    // The dead replica comes back and catches up with the same catalog.
    g.start_replica(leader).unwrap();
    assert_eq!(g.converged_catalogs(Duration::from_secs(20)).len(), 3);
    assert_replicas_agree(&g, &id);
}

/// Restores on record in replica `i`'s catalog.
fn restores_on_record(g: &Group, i: usize) -> usize {
    let view = g.inspect(i).expect("the replica answers");
    let cat: serde_json::Value = serde_json::from_str(&view.catalog_json).unwrap();
    cat["restores"].as_object().map_or(0, |r| r.len())
}

/// Shards of the restore on record in replica `i`'s catalog that are
/// written and verified, and the files they hold.
fn restore_done(g: &Group, i: usize) -> Option<(usize, u64)> {
    let view = g.inspect(i)?;
    let cat: serde_json::Value = serde_json::from_str(&view.catalog_json).unwrap();
    let r = cat["restores"].as_object()?.values().next()?.clone();
    Some((
        r["done"].as_array().map_or(0, Vec::len),
        r["done_files"].as_u64().unwrap_or(0),
    ))
}

/// Inode and modification time of every finished file under `dir`.
fn identities(dir: &Path) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    finished_files(dir)
        .into_iter()
        .filter_map(|rel| {
            let m = std::fs::metadata(dir.join(&rel)).ok()?;
            Some((rel, (m.ino(), m.modified().ok()?)))
        })
        .collect()
}

/// A restore carries on under the new leader from the shards already
/// written and verified: the CLI follows it there and succeeds, and the
/// files of those shards are not written again.
#[test]
fn leader_killed_mid_restore_the_new_leader_carries_it_on() {
    let scene = Scene::new("cluster-restore");
    let node = sample(&scene, 12 * MIB);
    let mut g = throttled_group(&node, 2, 2_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let id = backup_id(&mobr.run(&backup_args(&node, &scene.path("b1"))));
    let r = scene.path("restored");
    let runner = in_background(&mobr, restore_by_id_args(&id, &r));
    // Killed once two shards are on record as done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (leader, done_files) = loop {
        assert!(
            Instant::now() < deadline,
            "the restore recorded no shard\n{}",
            g.logs()
        );
        let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
        if let Some((shards, files)) = restore_done(&g, leader) {
            if shards >= 2 {
                break (leader, files);
            }
        }
        thread::sleep(Duration::from_millis(20));
    };
    let before = identities(&r);
    g.kill_replica(leader);
    let out = runner.join().unwrap();
    out.assert_ok("restore whose leader died");
    // Followed on the new leader, by the restore's id.
    assert!(
        out.stdout.contains("restore ") && !out.stdout.contains("restore complete:"),
        "{out}"
    );
    assert_restored(node.root(), &r);
    assert!(temp_files(&r).is_empty(), "{:?}", temp_files(&r));
    // Files of the shards done before the kill keep their inode and mtime
    // (a file written again is a new inode: temp file, then rename).
    let after = identities(&r);
    let kept = before
        .iter()
        .filter(|(rel, id)| after.get(*rel) == Some(*id))
        .count() as u64;
    assert!(
        done_files > 0 && kept >= done_files,
        "{kept} of the {done_files} files done before the kill were kept\n{}",
        g.logs()
    );
    assert!(
        before.len() < after.len(),
        "the restore had finished before the kill"
    );
    let new_leader = g.wait_leader(Duration::from_secs(10)).expect("a leader");
    assert_eq!(restores_on_record(&g, new_leader), 0, "{}", g.logs());
    assert!(
        g.logs().contains("carrying restore"),
        "the new leader did not carry it on\n{}",
        g.logs()
    );
}

#[test]
fn agent_killed_mid_backup_its_shards_go_elsewhere() {
    let scene = Scene::new("cluster-agent");
    let node = sample(&scene, 24 * MIB);
    let mut g = throttled_group(&node, 3, 3_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let runner = in_background(&mobr, backup_args(&node, &scene.path("b1")));
    wait_for_progress(&g, 2);
    // Not node-1's agent: node-local files need an agent of their node.
    g.kill_agent(2);
    let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
    assert_eq!(
        running_jobs(&g, leader),
        1,
        "the backup ended before the kill"
    );
    let out = runner.join().unwrap();
    let id = backup_id(&out);
    // The killed agent's unfinished writes are not left in the backup.
    let temps = temp_files(&scene.path("b1"));
    assert!(temps.is_empty(), "left in the backup: {temps:?}");
    assert_replicas_agree(&g, &id);
    assert_restores(&mobr, &scene, &node, &id);
}

#[test]
fn restarted_follower_catches_up_from_log_and_snapshot() {
    let scene = Scene::new("cluster-catchup");
    let node = sample(&scene, 3 * MIB);
    let opts = GroupOptions {
        snapshot_every: 10,
        ..Default::default()
    };
    let mut g = Group::start(3, opts).unwrap();
    g.start_agent(node.data_dir(), 0).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
    let follower = (leader + 1) % 3;

    // Down for one backup: a few entries, caught up from the log.
    g.kill_replica(follower);
    let first = backup_id(&mobr.run(&backup_args(&node, &scene.path("b1"))));
    g.start_replica(follower).unwrap();
    assert_eq!(g.converged_catalogs(Duration::from_secs(20)).len(), 3);
    assert_replicas_agree(&g, &first);

    // Down for several: the leader's log is compacted past it meanwhile, so
    // it catches up from a snapshot.
    g.kill_replica(follower);
    let mut last = first;
    for i in 2..5 {
        last = backup_id(&mobr.run(&backup_args(&node, &scene.path(&format!("b{i}")))));
    }
    let leader_view = g
        .inspect(g.wait_leader(Duration::from_secs(5)).unwrap())
        .unwrap();
    assert!(
        leader_view.snapshot_index > 0,
        "the leader never compacted its log"
    );
    g.start_replica(follower).unwrap();
    assert_eq!(g.converged_catalogs(Duration::from_secs(20)).len(), 3);
    assert_replicas_agree(&g, &last);
    let view = g.inspect(follower).unwrap();
    assert!(
        view.snapshot_index > 0,
        "the follower did not restore a snapshot"
    );
}

#[test]
fn without_quorum_commands_fail_clearly_and_a_job_resumes_when_it_returns() {
    let scene = Scene::new("cluster-quorum");
    let node = sample(&scene, 16 * MIB);
    let mut g = throttled_group(&node, 2, 4_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());

    // A backup loses its quorum half-way and carries on once it is back.
    let runner = in_background(&mobr, backup_args(&node, &scene.path("b1")));
    wait_for_progress(&g, 1);
    let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &i in &others {
        g.kill_replica(i);
    }
    thread::sleep(Duration::from_secs(3));
    for &i in &others {
        g.start_replica(i).unwrap();
    }
    let id = backup_id(&runner.join().unwrap());
    assert_replicas_agree(&g, &id);

    // With 2 of 3 down, commands say so within seconds and commit nothing.
    let leader = g.wait_leader(Duration::from_secs(5)).unwrap();
    let down: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for &i in &down {
        g.kill_replica(i);
    }
    let t0 = Instant::now();
    let out = mobr.run(&["list"]);
    out.assert_failed("list without quorum");
    assert!(out.stderr.contains("no quorum"), "{out}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    let out = mobr.run(&backup_args(&node, &scene.path("b2")));
    out.assert_failed("backup without quorum");
    assert!(out.stderr.contains("no quorum"), "{out}");
    assert!(!scene.path("b2/backup_meta").exists());

    g.start_replica(down[0]).unwrap();
    let ids = mobr.complete_ids();
    assert_eq!(ids, vec![id], "a backup was committed without quorum");
}

#[test]
fn every_replica_restarted_mid_backup_the_job_resumes() {
    let scene = Scene::new("cluster-restart-all");
    let node = sample(&scene, 16 * MIB);
    let mut g = throttled_group(&node, 2, 3_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let runner = in_background(&mobr, backup_args(&node, &scene.path("b1")));
    wait_for_progress(&g, 2);
    for i in 0..3 {
        g.kill_replica(i);
    }
    thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        g.start_replica(i).unwrap();
    }
    // mo_br follows the backup to whichever replica leads after the restart.
    let id = backup_id(&runner.join().unwrap());
    assert_replicas_agree(&g, &id);
    assert_restores(&mobr, &scene, &node, &id);
}

/// An object that was listed but is gone when its shard copies it (here
/// deleted by hand; in MatrixOne, GC not held): the backup fails naming it
/// and leaves no backup behind, never skips it and reports success.
#[test]
fn an_object_gone_before_its_copy_fails_the_backup_naming_it() {
    let scene = Scene::new("cluster-gone-object");
    let node = sample(&scene, 8 * MIB);
    let g = throttled_group(&node, 1, 1_000_000);
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let runner = in_background(&mobr, backup_args(&node, &scene.path("b1")));
    // Copying has begun, so the listing and the plan are done; the last
    // object by name is in the last SHARED shard, which the one throttled
    // agent has not reached yet.
    wait_for_progress(&g, 1);
    let last = files_under(node.shared_dir())
        .into_keys()
        .filter(|rel| !rel.contains('/') && !rel.starts_with('.'))
        .max()
        .expect("an object");
    std::fs::remove_file(node.shared_dir().join(&last)).unwrap();

    let out = runner.join().unwrap();
    assert!(!out.success(), "the backup passed without {last}\n{out}");
    assert!(
        out.stderr.contains(&last),
        "the failure does not name {last}\n{out}"
    );
    assert!(!scene.path("b1/backup_meta").exists());
    assert!(
        files_under(&scene.path("b1")).is_empty(),
        "the failed backup left files behind"
    );
}
