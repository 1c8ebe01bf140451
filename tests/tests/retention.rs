//! `catalog rebuild` (the catalog recovered from the backups alone, on a
//! filesystem and in a real S3 server) and `expire` (chain-aware retention,
//! its dry run, and finishing a delete interrupted midway).

use std::collections::BTreeMap;
use std::path::Path;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, restore_by_id_args, s3_target_args, strings, Scene, MIB};
use mo_br_tests::procs::{MoBr, Output};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::assert_restored;

/// `list --json` by backup ID.
fn listed(mobr: &MoBr) -> BTreeMap<String, serde_json::Value> {
    mobr.list_json()
        .into_iter()
        .map(|b| (b["id"].as_str().unwrap_or_default().to_string(), b))
        .collect()
}

fn incremental_of(mut args: Vec<String>, base: &str) -> Vec<String> {
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        base,
    ]));
    args
}

#[track_caller]
fn assert_line(out: &Output, words: &[&str]) {
    assert!(
        out.stdout
            .lines()
            .any(|l| words.iter().all(|w| l.contains(w))),
        "no line with all of {words:?}\n{out}"
    );
}

#[test]
fn rebuild_from_a_filesystem_root() {
    let scene = Scene::new("rebuild-fs");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 41, 2 * MIB, Backend::DiskV2);
    let root = scene.path("backups");
    let full = backup(mobr, &sample.fs_backup_args(&root.join("full")));
    // Nested deeper than the others: the scan finds it all the same.
    let other = backup(mobr, &sample.fs_backup_args(&root.join("more/other")));
    let bad = backup(mobr, &sample.fs_backup_args(&root.join("bad")));
    sample.grow(1, 3);
    let incr = backup(
        mobr,
        &incremental_of(sample.fs_backup_args(&root.join("incr")), &full),
    );
    let mut before = listed(mobr);
    before.remove(&bad);
    assert_eq!(before.len(), 3, "{before:?}");

    // One backup_meta damaged: it no longer matches its sidecar.
    let meta = root.join("bad/backup_meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&meta, bytes).unwrap();
    // The catalog is lost.
    let catalog = mobr.meta_path.clone().unwrap();
    std::fs::remove_file(&catalog).unwrap();

    let mut rebuild = strings(&["catalog", "rebuild", "--backup_dir", "filesystem"]);
    rebuild.extend(strings(&["--backup_path", &root.display().to_string()]));
    let mut dry = rebuild.clone();
    dry.push("--dry_run".into());
    let out = mobr.run(&dry);
    out.assert_ok("catalog rebuild --dry_run");
    for id in [&full, &other, &incr] {
        assert_line(&out, &["would add", id]);
    }
    assert!(!catalog.exists(), "a dry run created the catalog\n{out}");

    let out = mobr.run(&rebuild);
    out.assert_ok("catalog rebuild");
    for id in [&full, &other] {
        assert_line(&out, &["added", id, "full"]);
    }
    assert_line(&out, &["added", &incr, &format!("incremental of {full}")]);
    assert_line(
        &out,
        &["skipped", "bad", "does not match backup_meta.sha256"],
    );
    assert_line(&out, &["3 backup(s) added", "1 skipped"]);
    assert_eq!(
        listed(mobr),
        before,
        "list after the rebuild differs from list before the catalog was lost"
    );
    mobr.run(&["check", &incr])
        .assert_ok("check of the rebuilt incremental");
    let r = scene.path("restores/r");
    mobr.run(&restore_by_id_args(&incr, &r))
        .assert_ok("restore of the rebuilt incremental");
    assert_restored(sample.root(), &r);

    // Again: a merge, nothing added twice.
    let out = mobr.run(&rebuild);
    out.assert_ok("catalog rebuild again");
    assert_line(&out, &["0 backup(s) added", "3 already in the catalog"]);
    assert_eq!(listed(mobr), before);

    // Without its base an incremental cannot be restored: skipped, saying so.
    std::fs::remove_file(root.join("full/backup_meta")).unwrap();
    std::fs::remove_file(&catalog).unwrap();
    let out = mobr.run(&rebuild);
    out.assert_ok("catalog rebuild without the base");
    assert_line(
        &out,
        &["skipped", &incr, &format!("its base {full} was not found")],
    );
    assert_line(&out, &["added", &other]);
    assert_eq!(mobr.complete_ids(), vec![other.clone()]);
}

#[test]
fn rebuild_from_a_bucket() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("rebuild-s3");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 42, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    let s3_backup = |filepath: &str| {
        let mut args = strings(&["backup"]);
        args.extend(s3_target_args(&server, server.bucket(), filepath));
        args.extend(sample.source_args());
        args
    };
    let full = backup(mobr, &s3_backup("/all/b1"));
    sample.grow(1, 3);
    let incr = backup(mobr, &incremental_of(s3_backup("/all/b2"), &full));
    let before = listed(mobr);
    std::fs::remove_file(mobr.meta_path.as_ref().unwrap()).unwrap();

    let mut rebuild = strings(&["catalog", "rebuild", "--backup_dir", "s3"]);
    rebuild.extend(strings(&[
        "--backup_endpoint",
        &server.endpoint(),
        "--backup_bucket",
        server.bucket(),
        "--backup_filepath",
        "all",
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
        "--backup_is_minio",
    ]));
    let out = mobr.run(&rebuild);
    out.assert_ok("catalog rebuild of a bucket");
    assert_line(&out, &["2 backup(s) added", "0 skipped"]);
    assert_eq!(listed(mobr), before);

    let r = scene.path("restores/r");
    let mut restore = restore_by_id_args(&incr, &r);
    restore.extend(strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ]));
    mobr.run(&restore)
        .assert_ok("restore of the rebuilt S3 incremental");
    assert_restored(sample.root(), &r);
}

/// Sets the start time of backups in the catalog's command log (snapshot
/// or entries alike): the honest way to give real backups the ages a
/// retention test needs, since a backup's start time is the clock's when
/// it ran. `list` shows what the catalog says.
fn age(catalog: &Path, times: &BTreeMap<String, &str>) {
    fn walk(v: &mut serde_json::Value, times: &BTreeMap<String, &str>) {
        match v {
            serde_json::Value::Object(map) => {
                let id = map.get("id").and_then(|i| i.as_str()).map(str::to_string);
                if let (Some(id), true) = (id, map.contains_key("at_time")) {
                    if let Some(t) = times.get(&id) {
                        map.insert("at_time".into(), (*t).into());
                    }
                }
                map.values_mut().for_each(|v| walk(v, times));
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, times)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(catalog).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        walk(&mut v, times);
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    std::fs::write(catalog, out).unwrap();
}

/// Marks backup `id` deleting in the catalog log, as `BackupDeleting` does.
fn mark_deleting(catalog: &Path, id: &str) {
    let text = std::fs::read_to_string(catalog).unwrap();
    let last = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["index"].as_u64())
        .max()
        .unwrap_or(0);
    let entry =
        serde_json::json!({"index": last + 1, "command": {"cmd": "backup_deleting", "id": id}});
    std::fs::write(catalog, format!("{text}{entry}\n")).unwrap();
}

#[test]
fn expire_keeps_by_rule_and_chain() {
    let scene = Scene::new("expire");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 43, 2 * MIB, Backend::DiskV2);
    let dir = |n: &str| scene.path(&format!("backups/{n}"));
    let a = backup(mobr, &sample.fs_backup_args(&dir("a")));
    sample.grow(1, 2);
    let b = backup(mobr, &incremental_of(sample.fs_backup_args(&dir("b")), &a));
    let c = backup(mobr, &sample.fs_backup_args(&dir("c")));
    let d = backup(mobr, &sample.fs_backup_args(&dir("d")));
    sample.grow(2, 2);
    let e = backup(mobr, &incremental_of(sample.fs_backup_args(&dir("e")), &d));
    let catalog = mobr.meta_path.clone().unwrap();
    let times: BTreeMap<String, &str> = [
        (&a, "2026-01-01T10:00:00Z"),
        (&b, "2026-01-31T10:00:00Z"),
        (&c, "2026-02-10T10:00:00Z"),
        (&d, "2026-02-11T10:00:00Z"),
        (&e, "2026-02-12T10:00:00Z"),
    ]
    .into_iter()
    .map(|(id, t)| (id.clone(), t))
    .collect();
    age(&catalog, &times);
    let before = listed(mobr);
    assert_eq!(before[&b]["at_time"], "2026-01-31T10:00:00Z");

    // Dry run: monthly keeps b (January) and so its base a; c goes.
    let catalog_bytes = std::fs::read_to_string(&catalog).unwrap();
    let out = mobr.run(&[
        "expire",
        "--keep_last",
        "1",
        "--keep_monthly",
        "2",
        "--dry_run",
    ]);
    out.assert_ok("expire --dry_run");
    assert_line(&out, &["keep", &e, "keep_last 1", "keep_monthly (2026-02)"]);
    assert_line(
        &out,
        &["keep", &d, &format!("base of kept incremental {e}")],
    );
    assert_line(&out, &["keep", &b, "keep_monthly (2026-01)"]);
    assert_line(
        &out,
        &["keep", &a, &format!("base of kept incremental {b}")],
    );
    assert_line(&out, &["would remove", &c, "kept by no rule"]);
    assert_line(&out, &["would remove 1 backup(s)", "nothing changed"]);
    // What would go is c's own objects, read from its manifest.
    assert_line(&out, &["would delete", &c]);
    assert_eq!(
        number(&out, "bytes"),
        manifest(&dir("c"))["stored_size"].as_u64().unwrap(),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&catalog).unwrap(),
        catalog_bytes,
        "a dry run changed the catalog"
    );
    for n in ["a", "b", "c", "d", "e"] {
        assert!(
            dir(n).join("backup_meta").is_file(),
            "a dry run removed {n}"
        );
    }

    // c's delete was interrupted after its backup_meta was set aside and
    // removed (the state a crash there leaves): expire finishes it.
    let c_dir = dir("c");
    std::fs::rename(
        c_dir.join("backup_meta"),
        c_dir.join("backup_meta.deleting"),
    )
    .unwrap();
    std::fs::remove_file(c_dir.join("backup_meta.sha256")).unwrap();
    mark_deleting(&catalog, &c);
    assert_eq!(listed(mobr)[&c]["state"], "deleting");
    mobr.run(&restore_by_id_args(&c, &scene.path("restores/c")))
        .assert_failed("restore of a backup being deleted");

    // Only the newest: its base d stays for it; a, b and c go, b before a.
    let out = mobr.run(&["expire", "--keep_last", "1"]);
    out.assert_ok("expire --keep_last 1");
    assert_line(
        &out,
        &["keep", &d, &format!("base of kept incremental {e}")],
    );
    assert_line(&out, &["remove", &c, "interrupted"]);
    let deleted: Vec<usize> = [&b, &a]
        .iter()
        .map(|id| {
            out.stdout
                .lines()
                .position(|l| l == format!("deleted backup {id}"))
                .unwrap_or_else(|| panic!("{id} was not deleted\n{out}"))
        })
        .collect();
    assert!(
        deleted[0] < deleted[1],
        "the base went before its incremental\n{out}"
    );
    let mut kept: Vec<String> = listed(mobr).into_keys().collect();
    kept.sort();
    let mut want = vec![d.clone(), e.clone()];
    want.sort();
    assert_eq!(kept, want);
    for n in ["a", "b", "c"] {
        assert!(!dir(n).exists(), "{n} was not removed from disk");
    }
    let r = scene.path("restores/e");
    mobr.run(&restore_by_id_args(&e, &r))
        .assert_ok("restore of the kept incremental");
    assert_restored(sample.root(), &r);

    // Nothing is left to remove, and no rule is refused at once.
    let out = mobr.run(&["expire", "--keep_last", "1"]);
    out.assert_ok("expire again");
    assert_line(&out, &["0 backup(s) removed", "2 kept"]);
    let out = mobr.run(&["expire"]);
    out.assert_failed("expire without a rule");
    assert!(out.stderr.contains("at least one keep rule"), "{out}");
}

/// The number a dry run printed as `<label>: <n>`.
#[track_caller]
fn number(out: &Output, label: &str) -> u64 {
    let prefix = format!("{label}: ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}: N` line\n{out}"))
}

/// `backup_meta` of a filesystem backup, as JSON.
fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("backup_meta")).unwrap()).unwrap()
}

#[test]
fn dry_runs_change_nothing_and_count_what_the_real_run_does() {
    let scene = Scene::new("dry-runs");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 44, 2 * MIB, Backend::DiskV2);
    let catalog = mobr.meta_path.clone().unwrap();
    let dir = |n: &str| scene.path(&format!("backups/{n}"));
    let with_dry = |mut args: Vec<String>| {
        args.push("--dry_run".into());
        args
    };

    // A full backup: nothing written, not even a catalog.
    let out = mobr.run(&with_dry(sample.fs_backup_args(&dir("full"))));
    out.assert_ok("backup --dry_run");
    assert!(!dir("full").exists(), "a dry run wrote the backup\n{out}");
    assert!(!catalog.exists(), "a dry run created the catalog\n{out}");
    assert_line(&out, &["no time estimate"]);
    let (files, copy, bytes) = (
        number(&out, "files"),
        number(&out, "files to copy"),
        number(&out, "bytes to copy"),
    );
    let full = backup(mobr, &sample.fs_backup_args(&dir("full")));
    let rec = &listed(mobr)[&full];
    assert_eq!(Some(files), rec["files"].as_u64(), "{out}");
    assert_eq!(copy, files, "a full backup copies every file");
    // What the real run stored, less the metadata files it generates.
    let meta = manifest(&dir("full"));
    let generated: u64 = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert_eq!(bytes, meta["stored_size"].as_u64().unwrap() - generated);

    // An incremental: only the new objects, the rest from the base; the
    // estimate now comes from the full backup's measured throughput.
    sample.grow(1, 3);
    let incr_args = incremental_of(sample.fs_backup_args(&dir("incr")), &full);
    let out = mobr.run(&with_dry(incr_args.clone()));
    out.assert_ok("incremental backup --dry_run");
    assert_line(&out, &["estimated", "MB/s", "the last 1 backup(s)"]);
    let (copy, reused) = (
        number(&out, "files to copy"),
        number(&out, "files from the base chain"),
    );
    let before = std::fs::read_to_string(&catalog).unwrap();
    assert!(!dir("incr").exists());
    let real = mobr.run(&incr_args);
    let incr = mo_br_tests::fixtures::backup_id(&real);
    assert!(
        real.stdout.contains(&format!(
            "{copy} files copied, {reused} taken from the base chain"
        )),
        "the dry run said {copy} to copy and {reused} from the base\n{real}"
    );
    assert_ne!(std::fs::read_to_string(&catalog).unwrap(), before);

    // Restore: the files and bytes the real restore writes.
    let r = scene.path("restores/r");
    let before = std::fs::read_to_string(&catalog).unwrap();
    let out = mobr.run(&with_dry(restore_by_id_args(&incr, &r)));
    out.assert_ok("restore --dry_run");
    assert!(!r.exists(), "a dry run wrote the restore\n{out}");
    assert_eq!(std::fs::read_to_string(&catalog).unwrap(), before);
    let (files, bytes) = (number(&out, "files"), number(&out, "bytes"));
    mobr.run(&restore_by_id_args(&incr, &r))
        .assert_ok("restore");
    let written = mo_br_tests::trees::files_under(&r);
    let written_bytes: u64 = written
        .values()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!((files, bytes), (written.len() as u64, written_bytes));

    // Delete: the base with its incremental (--force): the objects each holds.
    let before = std::fs::read_to_string(&catalog).unwrap();
    let out = mobr.run(&["delete", &full, "--force", "--dry_run"]);
    out.assert_ok("delete --dry_run");
    assert_line(&out, &["would delete", &incr]);
    assert_line(&out, &["would delete", &full]);
    assert_eq!(std::fs::read_to_string(&catalog).unwrap(), before);
    assert!(dir("full").join("backup_meta").is_file() && dir("incr").join("backup_meta").is_file());
    let stored = |n: &str| {
        let files = mo_br_tests::trees::files_under(&dir(n));
        let bytes: u64 = files
            .values()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        (files.len() as u64, bytes)
    };
    let ((full_files, _), (incr_files, _)) = (stored("full"), stored("incr"));
    let bytes = number(&out, "bytes");
    let want_bytes = manifest(&dir("full"))["stored_size"].as_u64().unwrap()
        + manifest(&dir("incr"))["stored_size"].as_u64().unwrap();
    assert_eq!(bytes, want_bytes);
    let files = number(&out, "files");
    assert!(
        files < full_files + incr_files,
        "data files counted ({files}) must be fewer than all files stored"
    );
    mobr.run(&["delete", &full, "--force"])
        .assert_ok("delete --force");
    assert!(!dir("full").exists() && !dir("incr").exists());
}

/// A lost coordinator: a fresh one (its own catalog empty) is given the
/// backups back over gRPC, and lists and restores them.
#[test]
fn rebuild_into_a_new_coordinator() {
    let scene = Scene::new("rebuild-remote");
    let sample = scene.sample("node", 45, 2 * MIB, Backend::DiskV2);
    let root = scene.path("backups");
    let full = backup(&scene.mobr, &sample.fs_backup_args(&root.join("full")));
    sample.grow(1, 2);
    let incr = backup(
        &scene.mobr,
        &incremental_of(sample.fs_backup_args(&root.join("incr")), &full),
    );
    let before = listed(&scene.mobr);

    let cluster = mo_br_tests::procs::Cluster::start(None).expect("start a coordinator");
    let remote = MoBr::remote(&scene.path("remote"), cluster.coordinator_addr());
    assert!(listed(&remote).is_empty());
    let mut rebuild = strings(&["catalog", "rebuild", "--backup_dir", "filesystem"]);
    rebuild.extend(strings(&["--backup_path", &root.display().to_string()]));
    let out = remote.run(&rebuild);
    out.assert_ok("catalog rebuild --coordinator");
    assert_line(&out, &["2 backup(s) added"]);
    assert_eq!(listed(&remote), before);
    let r = scene.path("restores/r");
    remote
        .run(&restore_by_id_args(&incr, &r))
        .assert_ok("restore through the new coordinator");
    assert_restored(sample.root(), &r);
}
