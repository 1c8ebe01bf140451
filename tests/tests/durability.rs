//! Durability of backups to a filesystem, whose files are made durable in
//! batches (one `syncfs` per batch instead of two fsyncs per file): the
//! storage's durability trace (`MO_BR_DURABILITY_TRACE`) shows every file
//! of a complete backup covered by a sync that returned before its
//! `backup_meta` began to be written; and `mo_br` killed (-9) at moments of
//! that phase never leaves a backup listed complete that `check` does not
//! find whole.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_storage::DURABILITY_TRACE_ENV;
use mo_br_tests::fixtures::{backup, Scene, MIB};
use mo_br_tests::procs::MoBr;
use mo_br_tests::trees::files_under;

/// The events of one trace, in order.
fn events(trace: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (kind, rest) = l.split_once(' ')?;
            Some((kind.to_string(), rest.to_string()))
        })
        .collect()
}

/// Asserts that every file under `root` (but `backup_meta`, the commit
/// point, and its sidecar) was made durable before `backup_meta` began to
/// be written: fsynced on its own (`durable`), or last linked before a
/// sync of a filesystem root above it started whose end came before the
/// commit. Returns how many files were covered by a batch sync.
fn assert_synced_before_commit(trace: &Path, root: &Path) -> usize {
    let ev = events(trace);
    let meta = root.join("backup_meta").display().to_string();
    let commit = ev
        .iter()
        .position(|(k, p)| k == "begin" && *p == meta)
        .unwrap_or_else(|| panic!("no `begin {meta}` in the trace:\n{ev:?}"));
    // Where each sync (by token) started and ended, and its root.
    let mut syncs: HashMap<&str, (usize, Option<usize>, &str)> = HashMap::new();
    for (i, (k, rest)) in ev.iter().enumerate() {
        let Some((token, at)) = rest.split_once(' ') else {
            continue;
        };
        match k.as_str() {
            "syncing" => {
                syncs.insert(token, (i, None, at));
            }
            "synced" => {
                if let Some(s) = syncs.get_mut(token) {
                    s.1 = Some(i);
                }
            }
            _ => {}
        }
    }
    let mut batched = 0;
    for file in files_under(root).into_values() {
        let path = file.display().to_string();
        if path == meta || path == format!("{meta}.sha256") {
            continue;
        }
        let last = ev[..commit]
            .iter()
            .rposition(|(k, p)| (k == "linked" || k == "durable") && *p == path)
            .unwrap_or_else(|| panic!("{path} was not written before the commit point"));
        if ev[last].0 == "durable" {
            continue;
        }
        let covered = syncs.values().any(|&(start, end, at)| {
            start > last && end.is_some_and(|e| e < commit) && file.starts_with(at)
        });
        assert!(
            covered,
            "{path} (linked at event {last}) was not covered by a sync that ended before \
             backup_meta was written (event {commit}):\n{ev:#?}"
        );
        batched += 1;
    }
    batched
}

/// A small random number source for kill points (the seed is printed).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Starts `mo_br <args>` with a trace, kills it (-9) once `when` holds for
/// the trace's events, and reports whether it was still running then.
fn kill_when(
    mobr: &MoBr,
    args: &[String],
    trace: &Path,
    mut when: impl FnMut(&[(String, String)]) -> bool,
) -> bool {
    let traced = mobr
        .clone()
        .with_env(DURABILITY_TRACE_ENV, &trace.display().to_string());
    let mut child = traced
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mo_br");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait for mo_br").is_some() {
            return false;
        }
        if when(&events(trace)) {
            child.kill().expect("kill -9 mo_br");
            child.wait().expect("reap mo_br");
            return true;
        }
        assert!(Instant::now() < deadline, "the kill point never came");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn backups_are_durable_before_they_are_complete() {
    let scene = Scene::new("durability");
    let sample = scene.sample("node", 31, 6 * MIB, Backend::DiskV2);
    let mobr = &scene.mobr;

    // A complete backup: each of its files was synced before the commit.
    let first = scene.path("backups/first");
    let trace = scene.path("trace-first");
    let traced = mobr
        .clone()
        .with_env(DURABILITY_TRACE_ENV, &trace.display().to_string());
    let id = backup(&traced, &sample.fs_backup_args(&first));
    let batched = assert_synced_before_commit(&trace, &first);
    let linked = events(&trace).iter().filter(|(k, _)| k == "linked").count();
    assert!(
        batched >= 10 && linked >= batched,
        "only {batched} files were written in batches ({linked} linked)"
    );
    let mut complete = vec![id];

    // Killed at moments of the batched phase and of the commit: never
    // listed complete unless `check` finds it whole.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill points from seed {seed}");
    let mut rng = Rng(seed);
    type KillPoint = Box<dyn FnMut(&[(String, String)]) -> bool>;
    let mut points: Vec<(String, KillPoint)> = Vec::new();
    for _ in 0..3 {
        let k = 1 + rng.below(linked - 1);
        points.push((
            format!("after {k} of {linked} files linked"),
            Box::new(move |ev| ev.iter().filter(|(kind, _)| kind == "linked").count() >= k),
        ));
    }
    points.push((
        "as the first sync starts".into(),
        Box::new(|ev| ev.iter().any(|(kind, _)| kind == "syncing")),
    ));
    points.push((
        "as backup_meta begins to be written".into(),
        Box::new(|ev| {
            ev.iter()
                .any(|(kind, p)| kind == "begin" && p.ends_with("/backup_meta"))
        }),
    ));
    for (i, (what, when)) in points.into_iter().enumerate() {
        let to = scene.path(&format!("backups/killed{i}"));
        let trace = scene.path(&format!("trace-killed{i}"));
        let killed = kill_when(mobr, &sample.fs_backup_args(&to), &trace, when);
        eprintln!("killed {what}: {killed}");
        for b in mobr.list_json() {
            let id = b["id"].as_str().expect("an id").to_string();
            if b["state"].as_str() != Some("complete") || complete.contains(&id) {
                continue;
            }
            // Complete: it must be whole, and every file synced first.
            mobr.run(&["check", &id]).assert_ok(&format!(
                "check of {id}, listed complete after a kill {what}"
            ));
            assert_synced_before_commit(&trace, &to);
            complete.push(id);
        }
    }

    // A backup run again after the kills completes and is whole.
    let again = scene.path("backups/again");
    let trace = scene.path("trace-again");
    let traced = mobr
        .clone()
        .with_env(DURABILITY_TRACE_ENV, &trace.display().to_string());
    let id = backup(&traced, &sample.fs_backup_args(&again));
    assert_synced_before_commit(&trace, &again);
    mobr.run(&["check", &id]).assert_ok("check of the rerun");
}
