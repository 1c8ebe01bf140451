//! S3 outages and S3 under load, with real processes: a coordinator and an
//! agent, `mo_br --coordinator`, s3s-fs killed and restarted on its port,
//! or behind a proxy that answers `503 SlowDown` above a request rate.

use std::path::Path;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::faultproxy::FaultProxy;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, s3_target_args, Scene, MIB};
use mo_br_tests::group::scrape_sum;
use mo_br_tests::procs::{Cluster, MoBr, Output};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::{assert_restored, files_under};

/// Files under `dir`, recursively (s3s-fs keeps one file per object).
fn count_files(dir: &Path) -> usize {
    files_under(dir).len()
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `mo_br <args>` on its own thread.
fn spawn_run(mobr: &MoBr, args: Vec<String>) -> std::thread::JoinHandle<Output> {
    let mobr = mobr.clone();
    std::thread::spawn(move || mobr.run(&args))
}

/// Bytes the agent reported moved for `op` (copy, restore).
fn copied(metrics: &str, op: &str) -> f64 {
    scrape_sum(metrics, "mo_br_agent_bytes_total", &format!("op=\"{op}\""))
}

fn failed_attempts(metrics: &str) -> f64 {
    scrape_sum(metrics, "mo_br_s3_retries_total", "")
}

/// The S3 server is killed once the backup has stored some objects and
/// restarted once the agent has seen its requests fail: the backup goes on
/// and completes. Then the same during a restore reading from S3. Both
/// trees come back byte for byte.
#[test]
fn backup_and_restore_ride_out_an_s3_restart() {
    let scene = Scene::new("outage");
    let sample = scene.sample("node", 71, 12 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys much longer (see `drop_long_paths`).
    sample.drop_long_paths(140);
    let mut s3 = S3Server::start().expect("start s3s-fs");
    // A bandwidth limit keeps the copy going long enough to be cut.
    let cluster = Cluster::start_with_agent_args(
        Some(sample.data_dir()),
        &["--max_bytes_per_sec", "3000000", "--parallelism", "4"],
    )
    .expect("start a coordinator and an agent");
    let metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let bucket_dir = s3.root().join(s3.bucket());

    let mut args = vec!["backup".to_string()];
    args.extend(s3_target_args(&s3, s3.bucket(), "outage"));
    args.extend(sample.source_args());
    args.extend(["--retry_window".into(), "60s".into()]);
    let backup = spawn_run(&mobr, args);

    wait_for("the backup to copy 2 MiB", Duration::from_secs(60), || {
        copied(&metrics, "copy") >= 2.0 * MIB as f64 || backup.is_finished()
    });
    assert!(
        !backup.is_finished(),
        "the backup ended before the outage\n{}",
        backup.join().expect("the backup thread")
    );
    let stored_before = count_files(&bucket_dir);
    let failed_before = failed_attempts(&metrics);
    s3.stop();
    wait_for(
        "the agent to see S3 requests fail",
        Duration::from_secs(30),
        || failed_attempts(&metrics) > failed_before,
    );
    s3.restart().expect("restart s3s-fs on its port");
    let out = backup.join().expect("the backup thread");
    assert!(out.success(), "backup failed\n{out}\n{}", cluster.logs());
    let id = backup_id(&out);
    eprintln!(
        "backup through an S3 restart: {} failed attempts retried",
        failed_attempts(&metrics)
    );
    assert!(
        count_files(&bucket_dir) > stored_before,
        "nothing was stored after the restart"
    );

    // A restore reading the backup from S3, cut the same way.
    let to = scene.path("restored");
    let mut args = restore_by_id_args(&id, &to);
    args.extend([
        "--backup_access_key_id".into(),
        s3.access_key().into(),
        "--backup_secret_access_key".into(),
        s3.secret_key().into(),
        "--retry_window".into(),
        "60s".into(),
        // Few reads at a time, so most GETs are sent after the cut: with a
        // restore's default of 128, every object of this small tree is
        // requested at once and waits in socket buffers when S3 goes.
        "--parallelism".into(),
        "4".into(),
    ]);
    let restore = spawn_run(&mobr, args);
    wait_for("the restore to copy 2 MiB", Duration::from_secs(60), || {
        copied(&metrics, "restore") >= 2.0 * MIB as f64 || restore.is_finished()
    });
    assert!(
        !restore.is_finished(),
        "the restore ended before the outage\n{}",
        restore.join().expect("the restore thread")
    );
    let failed_before = failed_attempts(&metrics);
    s3.stop();
    wait_for(
        "the agent to see S3 reads fail",
        Duration::from_secs(30),
        || failed_attempts(&metrics) > failed_before,
    );
    s3.restart().expect("restart s3s-fs on its port");
    let out = restore.join().expect("the restore thread");
    assert!(out.success(), "restore failed\n{out}\n{}", cluster.logs());
    assert_restored(sample.root(), &to);
}

/// A server that stays down past the job's retry window fails the backup
/// with the reason on one line, well before the default window would end;
/// the catalog records it as failed.
#[test]
fn backup_fails_cleanly_when_s3_stays_down() {
    let scene = Scene::new("outage-down");
    let sample = scene.sample("node", 72, 6 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys much longer (see `drop_long_paths`).
    sample.drop_long_paths(140);
    let mut s3 = S3Server::start().expect("start s3s-fs");
    let cluster = Cluster::start_with_agent_args(
        Some(sample.data_dir()),
        &["--max_bytes_per_sec", "2000000", "--parallelism", "2"],
    )
    .expect("start a coordinator and an agent");
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();

    let mut args = vec!["backup".to_string()];
    args.extend(s3_target_args(&s3, s3.bucket(), "down"));
    args.extend(sample.source_args());
    args.extend(["--retry_window".into(), "2s".into()]);
    let backup = spawn_run(&mobr, args);
    // Cut while the agent copies (its files ride out the window, then go
    // once more; a cut while the coordinator plans is quicker to fail).
    wait_for(
        "the backup to copy 512 KiB",
        Duration::from_secs(60),
        || copied(&metrics, "copy") >= 512.0 * 1024.0 || backup.is_finished(),
    );
    assert!(
        !backup.is_finished(),
        "the backup ended before the outage\n{}",
        backup.join().expect("the backup thread")
    );
    let stopped = Instant::now();
    s3.stop();
    let out = backup.join().expect("the backup thread");
    out.assert_failed("backup with S3 down");
    // Two runs of the shard's window, the coordinator's own retries and
    // its clean-up: seconds, not the 2 minute default.
    assert!(
        stopped.elapsed() < Duration::from_secs(45),
        "the backup took {:?} to fail\n{out}",
        stopped.elapsed()
    );
    // The reason names the endpoint that could not be reached, on one line.
    let endpoint = format!("S3 endpoint {}", s3.endpoint());
    let why: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(&endpoint))
        .collect();
    eprintln!(
        "S3 down for good: failed after {:?}: {}",
        stopped.elapsed(),
        why.first().unwrap_or(&"")
    );
    assert_eq!(
        why.len(),
        1,
        "one line must say which endpoint failed:\n{out}\n{}",
        cluster.logs()
    );
    assert!(
        mobr.complete_ids().is_empty(),
        "a backup is listed complete"
    );
}

/// The restore side: a backup on S3 restored while the server goes down
/// for good fails within seconds of its retry window, the reason on one
/// line naming the endpoint; a restore run again once the server is back
/// completes byte for byte.
#[test]
fn restore_fails_cleanly_when_s3_stays_down() {
    let scene = Scene::new("outage-restore-down");
    let sample = scene.sample("node", 73, 6 * MIB, Backend::DiskV2);
    sample.drop_long_paths(140);
    let mut s3 = S3Server::start().expect("start s3s-fs");
    let cluster = Cluster::start_with_agent_args(
        Some(sample.data_dir()),
        &["--max_bytes_per_sec", "2000000", "--parallelism", "2"],
    )
    .expect("start a coordinator and an agent");
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();
    let mut args = vec!["backup".to_string()];
    args.extend(s3_target_args(&s3, s3.bucket(), "restore-down"));
    args.extend(sample.source_args());
    let id = backup_id(&mobr.run(&args));

    let to = scene.path("restored");
    let mut args = restore_by_id_args(&id, &to);
    args.extend([
        "--backup_access_key_id".into(),
        s3.access_key().into(),
        "--backup_secret_access_key".into(),
        s3.secret_key().into(),
    ]);
    let mut cut = args.clone();
    cut.extend(["--retry_window".into(), "2s".into()]);
    let restore = spawn_run(&mobr, cut);
    wait_for(
        "the restore to copy 512 KiB",
        Duration::from_secs(60),
        || copied(&metrics, "restore") >= 512.0 * 1024.0 || restore.is_finished(),
    );
    assert!(
        !restore.is_finished(),
        "the restore ended before the outage\n{}",
        restore.join().expect("the restore thread")
    );
    let stopped = Instant::now();
    s3.stop();
    let out = restore.join().expect("the restore thread");
    out.assert_failed("restore with S3 down");
    assert!(
        stopped.elapsed() < Duration::from_secs(45),
        "the restore took {:?} to fail\n{out}",
        stopped.elapsed()
    );
    let endpoint = format!("S3 endpoint {}", s3.endpoint());
    let why: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(&endpoint))
        .collect();
    eprintln!(
        "S3 down for good: the restore failed after {:?}: {}",
        stopped.elapsed(),
        why.first().unwrap_or(&"")
    );
    assert_eq!(
        why.len(),
        1,
        "one line must say which endpoint failed:\n{out}\n{}",
        cluster.logs()
    );

    // Back up: the same restore, into a fresh place, completes.
    s3.restart().expect("restart s3s-fs on its port");
    let again = scene.path("restored-again");
    let mut args = restore_by_id_args(&id, &again);
    args.extend([
        "--backup_access_key_id".into(),
        s3.access_key().into(),
        "--backup_secret_access_key".into(),
        s3.secret_key().into(),
    ]);
    mobr.run(&args).assert_ok("restore once S3 is back");
    assert_restored(sample.root(), &again);
}

/// Behind an S3 that takes 25 requests a second and answers SlowDown above,
/// a backup of many small objects completes; the agent halved its request
/// rate on SlowDown (its allowed-rate gauge appears) and most requests got
/// through. Then a job limit of 30 requests a second is kept by an
/// incremental backup of 90 new objects.
#[test]
fn slowdown_lowers_the_rate_and_request_limits_hold() {
    let scene = Scene::new("slowdown");
    let sample = scene.sample("node", 73, 2 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys much longer (see `drop_long_paths`).
    sample.drop_long_paths(140);
    sample.grow_sized(1, 150, Some(2048));
    let s3 = S3Server::start().expect("start s3s-fs");
    let upstream = ([127, 0, 0, 1], s3.port()).into();
    let proxy = FaultProxy::start(upstream, 25).expect("start the SlowDown proxy");
    let cluster = Cluster::start_with_agent_args(Some(sample.data_dir()), &["--parallelism", "16"])
        .expect("start a coordinator and an agent");
    let metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let target = |filepath: &str| {
        let mut args = s3_target_args(&s3, s3.bucket(), filepath);
        let at = args
            .iter()
            .position(|a| a == "--endpoint")
            .expect("--endpoint")
            + 1;
        args[at] = proxy.endpoint();
        args
    };

    let mut args = vec!["backup".to_string()];
    args.extend(target("slow"));
    args.extend(sample.source_args());
    let out = mobr.run(&args);
    assert!(out.success(), "backup failed\n{out}\n{}", cluster.logs());
    let base = backup_id(&out);
    let agent_slowdowns = scrape_sum(&metrics, "mo_br_s3_slowdowns_total", "");
    let agent_requests = scrape_sum(&metrics, "mo_br_s3_requests_total", "");
    let (requests, refused) = (proxy.requests(), proxy.slowdowns());
    eprintln!(
        "SlowDown at 25/s: proxy saw {requests} requests, refused {refused}; \
         agent sent {agent_requests}, counted {agent_slowdowns} SlowDowns"
    );
    assert!(
        refused > 0,
        "the proxy never said SlowDown ({requests} requests)"
    );
    assert!(agent_slowdowns > 0.0, "the agent counted no SlowDown");
    assert!(
        scrape_sum(
            &metrics,
            "mo_br_s3_allowed_requests_per_second",
            "endpoint="
        ) >= 0.0
            && scrape_text(&metrics).contains("mo_br_s3_allowed_requests_per_second{"),
        "the agent never lowered its request rate"
    );
    assert!(
        scrape_sum(&metrics, "mo_br_s3_retries_total", r#"reason="slowdown""#) > 0.0,
        "SlowDowns were not counted as retries"
    );
    // Without backing off, 16 files in flight against 25 a second would be
    // refused most of the time; the rate follows the server instead.
    assert!(
        (refused as f64) < 0.5 * requests as f64,
        "{refused} of {requests} requests refused (agent sent {agent_requests})"
    );

    // A job limit of 30 requests a second, on 90 new objects: the agent's
    // own count over the backup stays under it, with a generous margin.
    sample.grow_sized(2, 90, Some(2048));
    let before = scrape_sum(&metrics, "mo_br_s3_requests_total", "");
    let mut args = vec!["backup".to_string()];
    args.extend(target("limited"));
    args.extend(sample.source_args());
    args.extend(["--backup_type".into(), "incremental".into()]);
    args.extend(["--base_id".into(), base]);
    args.extend(["--max_requests_per_sec".into(), "30".into()]);
    let started = Instant::now();
    let out = mobr.run(&args);
    let took = started.elapsed().as_secs_f64();
    assert!(
        out.success(),
        "limited backup failed\n{out}\n{}",
        cluster.logs()
    );
    let sent = scrape_sum(&metrics, "mo_br_s3_requests_total", "") - before;
    eprintln!("limit 30/s: {sent} agent requests in {took:.1} s");
    assert!(sent >= 90.0, "only {sent} requests for 90 new objects");
    assert!(
        sent / took <= 30.0 * 1.5,
        "{sent} requests in {took:.1} s: above 30 a second"
    );
}

fn scrape_text(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
