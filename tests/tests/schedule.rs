//! Backup schedules run by the coordinator, with real processes: a
//! coordinator daemon fires an every-2-seconds schedule into a directory,
//! pause/resume/drop, a bad cron expression; a 3-replica group runs a
//! one-slot schedule while its leader is killed and takes exactly one
//! backup; runs into S3 use the coordinator's own keys and store none.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{strings, Scene, MIB};
use mo_br_tests::group::{scrape_sum, Group, GroupOptions};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::s3server::S3Server;

fn schedules(mobr: &MoBr) -> Vec<serde_json::Value> {
    let out = mobr.run(&["schedule", "list", "--json"]);
    out.assert_ok("schedule list --json");
    out.stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Backups `list --json` shows for schedule `name`.
fn scheduled(mobr: &MoBr, name: &str) -> Vec<serde_json::Value> {
    mobr.list_json()
        .into_iter()
        .filter(|b| b["schedule"] == name)
        .collect()
}

/// Polls `cond` until it holds; panics with `what` and `logs` past `limit`.
fn wait_until(
    limit: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}\n{}", logs());
        thread::sleep(Duration::from_millis(100));
    }
}

/// The slot a scheduled backup ran for, from its path (`<name>-<slot>`).
fn slot_of(backup: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    let path = backup["path"].as_str().unwrap();
    let stamp = path.rsplit('-').next().unwrap();
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .and_utc()
}

fn create_args(name: &str, cron: &str, target: &Path, data_dir: &Path) -> Vec<String> {
    let mut args = strings(&["schedule", "create", "--name", name, "--cron", cron]);
    args.extend(strings(&["--backup_dir", "filesystem", "--path"]));
    args.push(target.display().to_string());
    args.push("--data_dir".into());
    args.push(data_dir.display().to_string());
    args
}

#[test]
fn a_schedule_fires_pauses_resumes_and_drops() {
    let scene = Scene::new("schedule");
    let sample = scene.sample("node", 7, MIB, Backend::DiskV2);
    let cluster = Cluster::start_with_metrics(Some(sample.data_dir())).expect("start daemons");
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let logs = || cluster.logs();
    let target = scene.path("backups");

    // A bad expression: one line, exit 2, nothing created.
    let bad = mobr.run(&create_args(
        "bad",
        "61 * * * * *",
        &target,
        sample.data_dir(),
    ));
    assert_eq!(bad.status.and_then(|s| s.code()), Some(2), "{bad}");
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{bad}");
    assert!(bad.stderr.contains("cron expression"), "{bad}");

    let mut every2 = create_args("every2", "*/2 * * * * *", &target, sample.data_dir());
    every2.extend(strings(&["--keep_last", "1"]));
    mobr.run(&every2).assert_ok("schedule create");
    let dup = mobr.run(&create_args(
        "every2",
        "*/2 * * * * *",
        &target,
        sample.data_dir(),
    ));
    assert_eq!(dup.status.and_then(|s| s.code()), Some(1), "{dup}");

    wait_until(
        Duration::from_secs(20),
        "no scheduled backup completed",
        logs,
        || {
            scheduled(&mobr, "every2")
                .iter()
                .any(|b| b["state"] == "complete")
        },
    );
    let list = mobr.run(&["list"]);
    assert!(list.stdout.contains("every2-"), "{list}");
    let first = scheduled(&mobr, "every2")
        .into_iter()
        .find(|b| b["state"] == "complete")
        .unwrap();

    // Retention after each success (--keep_last 1): the next success
    // removes the first, record and files.
    wait_until(
        Duration::from_secs(20),
        "the first backup was never expired",
        logs,
        || {
            let now = scheduled(&mobr, "every2");
            !now.iter().any(|b| b["id"] == first["id"])
                && now.iter().any(|b| b["state"] == "complete")
        },
    );
    let first_dir = Path::new(first["path"].as_str().unwrap());
    assert!(
        !first_dir.join("backup_meta").exists(),
        "{} still holds a backup",
        first_dir.display()
    );
    let table = mobr.run(&["schedule", "list"]);
    table.assert_ok("schedule list");
    assert!(table.stdout.contains("NEXT RUN"), "{table}");
    assert!(table.stdout.contains("*/2 * * * * *"), "{table}");
    let metrics = cluster.coordinator_metrics_addr().unwrap();
    wait_until(
        Duration::from_secs(5),
        "no last-success gauge for the schedule",
        logs,
        || {
            scrape_sum(
                metrics,
                "mo_br_backup_last_success_timestamp_seconds",
                "schedule=\"every2\"",
            ) > 0.0
        },
    );

    // Paused: no slot from the pause to the resume runs, not even late.
    mobr.run(&["schedule", "pause", "every2"])
        .assert_ok("pause");
    let paused_at = chrono::Utc::now();
    let s = &schedules(&mobr)[0];
    assert_eq!(
        (s["paused"].as_bool(), s["next_run"].as_str()),
        (Some(true), Some(""))
    );
    wait_until(
        Duration::from_secs(20),
        "the run going at the pause never ended",
        logs,
        || schedules(&mobr)[0]["running_backup_id"] == "",
    );
    // Two slots pass while paused.
    wait_until(Duration::from_secs(10), "clock", logs, || {
        chrono::Utc::now() > paused_at + chrono::Duration::seconds(4)
    });
    mobr.run(&["schedule", "resume", "every2"])
        .assert_ok("resume");
    let resumed_at = chrono::Utc::now();
    wait_until(
        Duration::from_secs(20),
        "no backup after resume",
        logs,
        || {
            scheduled(&mobr, "every2")
                .iter()
                .any(|b| slot_of(b) >= resumed_at - chrono::Duration::seconds(1))
        },
    );
    for b in scheduled(&mobr, "every2") {
        let slot = slot_of(&b);
        assert!(
            slot <= paused_at || slot >= resumed_at - chrono::Duration::seconds(1),
            "slot {slot} ran while paused ({paused_at} .. {resumed_at})"
        );
    }

    mobr.run(&["schedule", "drop", "every2"]).assert_ok("drop");
    assert!(schedules(&mobr).is_empty());
    let gone = mobr.run(&["schedule", "pause", "every2"]);
    assert_eq!(gone.status.and_then(|s| s.code()), Some(1), "{gone}");
    assert!(gone.stderr.contains("no schedule every2"), "{gone}");
    // Its backups stay, complete or ended.
    assert!(!scheduled(&mobr, "every2").is_empty());
}

#[test]
fn a_slot_runs_once_across_a_leader_kill() {
    let scene = Scene::new("schedule-failover");
    // Big enough, and the agent slow enough, that the leader dies mid-run.
    let sample = scene.sample("node", 8, 4 * MIB, Backend::DiskV2);
    let mut g = Group::start(3, GroupOptions::default()).expect("start 3 replicas");
    g.start_agent(sample.data_dir(), 2 * MIB).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());

    // One slot, a few seconds ahead (the year field makes it the only
    // one); another a second later, which falls in the election that
    // follows the kill below (or just before it).
    let one_slot = |at: chrono::DateTime<chrono::Utc>| at.format("%S %M %H %d %m * %Y").to_string();
    let slot = chrono::Utc::now() + chrono::Duration::seconds(4);
    let late_slot = slot + chrono::Duration::seconds(1);
    let mut args = create_args(
        "once",
        &one_slot(slot),
        &scene.path("backups"),
        sample.data_dir(),
    );
    args.extend(strings(&["--keep_last", "2"]));
    mobr.run(&args).assert_ok("schedule create");
    let late = create_args(
        "late",
        &one_slot(late_slot),
        &scene.path("backups"),
        sample.data_dir(),
    );
    mobr.run(&late).assert_ok("schedule create late");

    // The run starts: kill the leader that fired it.
    wait_until(
        Duration::from_secs(20),
        "the slot never fired",
        || g.logs(),
        || {
            schedules(&mobr)
                .iter()
                .any(|s| s["name"] == "once" && s["running_backup_id"] != "")
        },
    );
    let leader = g.wait_leader(Duration::from_secs(5)).expect("a leader");
    g.kill_replica(leader);

    // The new leader carries the run on; it ends once, complete.
    wait_until(
        Duration::from_secs(60),
        "the run never completed",
        || g.logs(),
        || {
            scheduled(&mobr, "once")
                .iter()
                .any(|b| b["state"] == "complete")
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the schedule never saw its run end",
        || g.logs(),
        || {
            schedules(&mobr)
                .iter()
                .any(|s| s["name"] == "once" && s["last_result"] == "ok")
        },
    );
    let runs = scheduled(&mobr, "once");
    assert_eq!(runs.len(), 1, "one slot, one backup: {runs:?}");
    let once = schedules(&mobr)
        .into_iter()
        .find(|s| s["name"] == "once")
        .unwrap();
    assert_eq!(once["retention"], "keep_last 2");

    // The slot due around the failover runs once too, for its own slot.
    wait_until(
        Duration::from_secs(60),
        "the late slot never ran",
        || g.logs(),
        || {
            scheduled(&mobr, "late")
                .iter()
                .any(|b| b["state"] == "complete")
        },
    );
    let runs = scheduled(&mobr, "late");
    assert_eq!(runs.len(), 1, "one slot, one backup: {runs:?}");
    assert_eq!(slot_of(&runs[0]).timestamp(), late_slot.timestamp());
    for (_, catalog) in g.converged_catalogs(Duration::from_secs(10)) {
        assert_eq!(catalog["schedules"]["once"]["last_run"]["ok"], true);
    }
}

#[test]
fn scheduled_runs_to_s3_use_the_coordinators_own_keys_and_store_none() {
    let scene = Scene::new("schedule-s3");
    let sample = scene.sample("node", 9, MIB, Backend::DiskV2);
    // s3s-fs cannot store keys longer than ~150 bytes; each run's prefix
    // (`s/tos3-<slot>/`) takes 27.
    sample.drop_long_paths(120);
    let s3 = S3Server::start().expect("s3 server");
    let keys = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), s3.access_key().to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            s3.secret_key().to_string(),
        ),
    ];
    let opts = GroupOptions {
        env: keys.clone(),
        agent_env: keys,
        ..Default::default()
    };
    let mut g = Group::start(1, opts).expect("start a replica");
    g.start_agent(sample.data_dir(), 0).unwrap();
    // The CLI has no key at all (MoBr clears AWS_*).
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());
    let mut args = strings(&[
        "schedule",
        "create",
        "--name",
        "tos3",
        "--cron",
        "*/2 * * * * *",
    ]);
    args.extend(strings(&[
        "--backup_dir",
        "s3",
        "--endpoint",
        &s3.endpoint(),
        "--bucket",
        s3.bucket(),
        "--filepath",
        "s",
        "--is_minio",
        "--backup_type",
        "incremental",
    ]));
    args.push("--data_dir".into());
    args.push(sample.data_dir().display().to_string());
    mobr.run(&args).assert_ok("schedule create");

    // Two runs: the second an incremental on the first.
    wait_until(
        Duration::from_secs(25),
        "no two scheduled backups to S3",
        || g.logs(),
        || {
            scheduled(&mobr, "tos3")
                .iter()
                .filter(|b| b["state"] == "complete")
                .count()
                >= 2
        },
    );
    mobr.run(&["schedule", "pause", "tos3"]).assert_ok("pause");
    let done: Vec<_> = scheduled(&mobr, "tos3")
        .into_iter()
        .filter(|b| b["state"] == "complete")
        .collect();
    assert_eq!(done[0]["backup_type"], "full", "{done:?}");
    assert_eq!(done[1]["backup_type"], "incremental", "{done:?}");
    assert_eq!(done[1]["base_id"], done[0]["id"], "{done:?}");

    // No key in the catalog, nor anywhere in the replica's files.
    let (_, catalog) = g.converged_catalogs(Duration::from_secs(10)).remove(0);
    assert!(catalog.to_string().contains("\"tos3\""));
    for entry in walk(&g.raft_dir(0)) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let secret = s3.secret_key().as_bytes();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{} holds the secret key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
