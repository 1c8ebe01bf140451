//! The coordinator's credentials file (`--credentials_file`), with real
//! processes: a replica whose environment holds no key runs a schedule into
//! S3 with the keys of the file's [[s3]] entry (the agent has none either:
//! they travel with its shards), and a `--host` schedule against mo-sim
//! with the password of its [[matrixone]] entry; neither secret lands in
//! the raft files, the catalog or a log. A schedule for a MatrixOne the file
//! has no entry for is refused at create; a bad file kept out on SIGHUP,
//! a good one taken in; a group-readable file refused at start; a restore
//! from S3 carried on after a restart with the file's keys alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{strings, Scene, MIB};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::mosim::MoSim;
use mo_br_tests::procs::{bin, run_with_timeout, MoBr};
use mo_br_tests::s3server::S3Server;

const PASSWORD: &str = "Sched-Pw-7q2x";

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

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

fn complete_of(mobr: &MoBr, schedule: &str) -> Vec<serde_json::Value> {
    mobr.list_json()
        .into_iter()
        .filter(|b| b["schedule"] == schedule && b["state"] == "complete")
        .collect()
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

/// Files under `dir` holding `secret`.
fn holding(dir: &Path, secret: &str) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap_or_default();
            bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
        })
        .collect()
}

fn sighup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP {pid}");
}

fn host_schedule_args(name: &str, sim: &MoSim, user: &str, to: &Path) -> Vec<String> {
    let mut args = strings(&[
        "schedule",
        "create",
        "--name",
        name,
        "--cron",
        "*/2 * * * * *",
    ]);
    args.extend(strings(&["--backup_dir", "filesystem", "--path"]));
    args.push(to.display().to_string());
    args.extend(strings(&[
        "--host",
        &sim.host,
        "--port",
        &sim.port_str(),
        "--user",
        user,
    ]));
    args
}

#[test]
fn scheduled_runs_take_keys_and_passwords_from_the_credentials_file() {
    let scene = Scene::new("creds-file");
    let cold = scene.sample("cold", 9, MIB, Backend::DiskV2);
    // s3s-fs cannot store keys longer than ~150 bytes; each run's prefix
    // takes ~27.
    cold.drop_long_paths(120);
    let live = scene.sample("live", 11, MIB, Backend::DiskV2);
    // Run from the node's root with its launch config, as mo-service is.
    let sim = MoSim::start_in(
        Some(live.root()),
        &[
            "--launch_config",
            "./etc/launch/launch.toml",
            "--data_dir",
            live.data_dir().to_str().unwrap(),
        ],
    )
    .expect("start mo-sim");
    // The file's password is the only one that logs in as dump.
    sim.sys(&[&format!("ALTER USER dump IDENTIFIED BY '{PASSWORD}'")]);
    let s3 = S3Server::start().expect("s3 server");

    let creds = scene.path("credentials.toml");
    let entries = format!(
        "[[s3]]\nendpoint = \"{}\"\nbucket = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\n\
         [[matrixone]]\nhost = \"{}\"\nport = {}\nuser = \"dump\"\npassword = \"{PASSWORD}\"\n",
        s3.endpoint(),
        s3.bucket(),
        s3.access_key(),
        s3.secret_key(),
        sim.host,
        sim.port,
    );
    write_private(&creds, &entries);
    // No AWS_* anywhere: start_daemon clears them for replicas and agents.
    let opts = GroupOptions {
        extra_args: vec!["--credentials_file".into(), creds.display().to_string()],
        ..Default::default()
    };
    let mut g = Group::start(1, opts).expect("start a replica");
    g.start_agent(cold.data_dir(), 0).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());

    // A MatrixOne login the file has no password for: refused in one line.
    let nowhere = scene.path("nowhere");
    let out = mobr.run(&host_schedule_args("nopw", &sim, "root", &nowhere));
    out.assert_failed("schedule create --host for a user without an entry");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(
        out.stderr.contains("root@") && out.stderr.contains("--credentials_file"),
        "{out}"
    );

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
    ]));
    args.push("--data_dir".into());
    args.push(cold.data_dir().display().to_string());
    mobr.run(&args).assert_ok("schedule create tos3");
    let online = scene.path("online");
    mobr.run(&host_schedule_args("online", &sim, "dump", &online))
        .assert_ok("schedule create online");

    wait_until(
        Duration::from_secs(40),
        "no scheduled backup to S3 and of mo-sim completed",
        || format!("{}\n{}", g.logs(), sim.log()),
        || !complete_of(&mobr, "tos3").is_empty() && !complete_of(&mobr, "online").is_empty(),
    );
    mobr.run(&["schedule", "pause", "tos3"]).assert_ok("pause");
    mobr.run(&["schedule", "pause", "online"])
        .assert_ok("pause");
    // Nothing of either schedule still running (a slot may have fired
    // just before the pause).
    wait_until(
        Duration::from_secs(30),
        "a scheduled run did not end",
        || g.logs(),
        || {
            let out = mobr.run(&["schedule", "list", "--json"]);
            out.success()
                && out
                    .stdout
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .all(|s| s["running_backup_id"] == "")
        },
    );
    let taken = complete_of(&mobr, "online");
    assert_eq!(taken[0]["method"], "matrixone", "{taken:?}");
    let s3_taken = complete_of(&mobr, "tos3");
    let id = s3_taken[0]["id"].as_str().unwrap();
    // The backup is in the bucket, whole: check reads it with the CLI's
    // own keys.
    let mut check = strings(&["check", id]);
    check.extend(strings(&[
        "--backup_access_key_id",
        s3.access_key(),
        "--backup_secret_access_key",
        s3.secret_key(),
    ]));
    mobr.run(&check)
        .assert_ok("check of the scheduled S3 backup");

    // The backups say which schedule took them: a catalog rebuilt from
    // their location alone gives that back.
    let mut rebuild = strings(&[
        "catalog",
        "rebuild",
        "--backup_dir",
        "filesystem",
        "--backup_path",
    ]);
    rebuild.push(online.display().to_string());
    scene.mobr.run(&rebuild).assert_ok("catalog rebuild");
    let rebuilt = scene.mobr.list_json();
    assert!(
        !rebuilt.is_empty() && rebuilt.iter().all(|b| b["schedule"] == "online"),
        "{rebuilt:?}"
    );

    // Neither secret in the raft files, the catalog or any log.
    let (_, catalog) = g.converged_catalogs(Duration::from_secs(10)).remove(0);
    let catalog = catalog.to_string();
    assert!(
        catalog.contains("\"online\"") && catalog.contains("\"dump\""),
        "{catalog}"
    );
    for secret in [s3.secret_key(), PASSWORD] {
        assert!(!catalog.contains(secret), "the catalog holds a secret");
        let found = holding(g.dir(), secret);
        assert!(found.is_empty(), "{found:?} hold a secret");
    }

    // A bad file on SIGHUP: one line in the log, the old entries stay (a
    // schedule for dump is still accepted).
    let pid = g.replica_pid(0).unwrap();
    let log = g.dir().join("coordinator-1.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    write_private(&creds, "[[matrixone]]\nhost = \"h\"\npasword = \"typo\"\n");
    sighup(pid);
    wait_until(
        Duration::from_secs(10),
        "no failed reload logged",
        || g.logs(),
        || log_text().contains("reload failed: credentials file"),
    );
    assert!(log_text().contains("unknown field"), "{}", g.logs());
    mobr.run(&host_schedule_args("online2", &sim, "dump", &online))
        .assert_ok("a schedule after a bad reload");

    // A good file: taken in (root now has an entry).
    write_private(
        &creds,
        &format!("{entries}\n[[matrixone]]\nhost = \"{}\"\nport = {}\nuser = \"root\"\npassword = \"111\"\n", sim.host, sim.port),
    );
    sighup(pid);
    wait_until(
        Duration::from_secs(10),
        "no reload logged",
        || g.logs(),
        || log_text().contains("reloaded credentials file"),
    );
    mobr.run(&host_schedule_args("nopw", &sim, "root", &nowhere))
        .assert_ok("a schedule after a good reload");
}

#[test]
fn a_credentials_file_others_may_read_is_refused_at_start() {
    let scene = Scene::new("creds-mode");
    let creds = scene.path("credentials.toml");
    write_private(
        &creds,
        "[[s3]]\nendpoint = \"http://h:1\"\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\n",
    );
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = Command::new(bin("mo-br-coordinator"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--agents",
        "127.0.0.1:1",
        "--meta_path",
    ])
    .arg(scene.path("mo_br.meta"))
    .arg("--credentials_file")
    .arg(&creds)
    // The line an operator sees, without the backtrace tests ask for.
    .env("RUST_BACKTRACE", "0")
    .env("RUST_LIB_BACKTRACE", "0");
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    out.assert_failed("a coordinator with a mode 644 credentials file");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("mode 644") && lines[0].contains("chmod 600"),
        "{out}"
    );
    assert!(!out.stdout.contains("listening"), "{out}");
}

/// A single coordinator killed mid-restore from S3 and started again on
/// its catalog, with no AWS_* in its environment: the keys of its
/// credentials file let it carry the restore on (without them what it
/// wrote would be removed), and the restore completes.
#[test]
fn a_restore_from_s3_is_carried_on_with_the_files_keys_after_a_restart() {
    use mo_br_tests::procs::{free_local_addr, start_daemon};
    use mo_br_tests::trees::{assert_restored, finished_files};

    let scene = Scene::new("creds-resume");
    let sample = scene.sample("node", 47, 8 * MIB, Backend::DiskV2);
    sample.drop_long_paths(120);
    let s3 = S3Server::start().expect("s3 server");
    let keys = strings(&[
        "--access_key_id",
        s3.access_key(),
        "--secret_access_key",
        s3.secret_key(),
    ]);
    // Backed up by the embedded mo_br with the CLI's keys.
    let mut backup = strings(&["backup", "--backup_dir", "s3", "--endpoint", &s3.endpoint()]);
    backup.extend(strings(&[
        "--bucket",
        s3.bucket(),
        "--filepath",
        "b1",
        "--is_minio",
    ]));
    backup.extend(keys);
    backup.extend(sample.source_args());
    scene.mobr.run(&backup).assert_ok("backup to S3");

    let creds = scene.path("credentials.toml");
    write_private(
        &creds,
        &format!(
            "[[s3]]\nendpoint = \"{}\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            s3.endpoint(),
            s3.access_key(),
            s3.secret_key()
        ),
    );
    // A slow agent, so that the restart comes mid-restore.
    let mut agent = Command::new(bin("mo-br-agent"));
    agent.args(["--listen", "127.0.0.1:0", "--max_bytes_per_sec", "2000000"]);
    agent.arg("--data_dir").arg(sample.data_dir());
    let (_agent, agent_addr) =
        start_daemon(agent, "mo-br-agent listening on", scene.path("agent.log")).unwrap();
    let addr = free_local_addr().unwrap();
    let coordinator = || {
        let mut cmd = Command::new(bin("mo-br-coordinator"));
        cmd.args(["--listen", &addr, "--agents", &agent_addr])
            .arg("--meta_path")
            .arg(scene.path("coordinator.meta"))
            .arg("--credentials_file")
            .arg(&creds);
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
    let r = scene.path("restored");
    let mut restore = strings(&[
        "restore",
        "--backup_dir",
        "s3",
        "--backup_endpoint",
        &s3.endpoint(),
    ]);
    restore.extend(strings(&[
        "--backup_bucket",
        s3.bucket(),
        "--backup_filepath",
        "b1",
        "--backup_is_minio",
        "--backup_access_key_id",
        s3.access_key(),
        "--backup_secret_access_key",
        s3.secret_key(),
        "--restore_dir",
        "filesystem",
        "--restore_path",
    ]));
    restore.push(r.display().to_string());
    let runner = {
        let remote = remote.clone();
        std::thread::spawn(move || remote.run(&restore))
    };
    let log = || std::fs::read_to_string(scene.path("coordinator.log")).unwrap_or_default();
    wait_until(Duration::from_secs(30), "nothing restored", log, || {
        finished_files(&r).len() >= 3
    });
    drop(first);
    let _second = coordinator();
    let out = runner.join().unwrap();
    out.assert_ok("restore whose coordinator was restarted");
    assert_restored(sample.root(), &r);
    assert!(log().contains("carrying restore"), "{}", log());
    assert!(!log().contains(s3.secret_key()), "{}", log());
}
