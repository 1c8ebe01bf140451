//! `check` on a damaged backup, and `list` / `delete` over a small catalog.

use std::path::Path;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, restore_by_id_args, stored_objects, strings, Scene, MIB};
use mo_br_tests::procs::Output;
use mo_br_tests::trees::files_under;

/// The stdout line reporting `path`, which must also name `kind`.
#[track_caller]
fn assert_reports(out: &Output, kind: &str, path: &str) {
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(path) && l.to_ascii_lowercase().contains(kind)),
        "no line reports {path} as {kind}\n{out}"
    );
}

/// Problem lines (`kind: path (detail)`) of a check, sorted.
fn problem_lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| {
            ["missing:", "truncated:", "corrupt:", "size mismatch:"]
                .iter()
                .any(|k| l.trim_start().to_ascii_lowercase().starts_with(k))
        })
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn check_finds_damage() {
    let scene = Scene::new("check-damage");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 21, 2 * MIB, Backend::DiskV2);
    let b = scene.path("backups/b");
    let id = backup(mobr, &sample.fs_backup_args(&b));
    mobr.run(&["check", &id])
        .assert_ok("check before any damage");

    // Three objects of some size: one flipped, one truncated, one deleted.
    let objects: Vec<String> = stored_objects(&b)
        .into_iter()
        .filter(|n| std::fs::metadata(b.join("tae").join(n)).unwrap().len() >= 64)
        .collect();
    assert!(
        objects.len() >= 3,
        "too few objects in the backup: {objects:?}"
    );
    let (flipped, truncated, deleted) = (&objects[0], &objects[1], &objects[2]);
    let path = |n: &str| b.join("tae").join(n);
    let mut bytes = std::fs::read(path(flipped)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path(flipped), bytes).unwrap();
    let len = std::fs::metadata(path(truncated)).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path(truncated))
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::remove_file(path(deleted)).unwrap();

    let by_id = mobr.run(&["check", &id]);
    by_id.assert_failed("check of a damaged backup by ID");
    assert_reports(&by_id, "corrupt", &format!("tae/{flipped}"));
    assert_reports(&by_id, "truncated", &format!("tae/{truncated}"));
    assert_reports(&by_id, "missing", &format!("tae/{deleted}"));
    assert_eq!(
        problem_lines(&by_id).len(),
        3,
        "exactly three problems expected\n{by_id}"
    );

    let mut by_path = strings(&["check", "--backup_dir", "filesystem", "--backup_path"]);
    by_path.push(b.display().to_string());
    let by_path = mobr.run(&by_path);
    by_path.assert_failed("check of a damaged backup by path");
    assert_eq!(
        problem_lines(&by_path),
        problem_lines(&by_id),
        "check by path and by ID must report the same problems\nby ID:\n{by_id}\nby path:\n{by_path}"
    );

    let r = scene.path("restores/r");
    let mut restore = restore_by_id_args(&id, &r);
    restore.push("--checksum".into());
    let out = mobr.run(&restore);
    out.assert_failed("restore --checksum of a damaged backup");
    let left = files_under(&r.join("mo-data"));
    assert!(
        left.is_empty(),
        "a failed restore left files in {}: {:?}\n{out}",
        r.display(),
        left.keys().take(10).collect::<Vec<_>>()
    );
}

/// Whether `dir` still holds a backup's manifest.
fn has_manifest(dir: &Path) -> bool {
    dir.join("backup_meta").exists()
}

#[test]
fn list_and_delete() {
    let scene = Scene::new("list-delete");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 31, 2 * MIB, Backend::DiskV2);
    let (b1, b2, b3) = (
        scene.path("backups/b1"),
        scene.path("backups/b2"),
        scene.path("backups/b3"),
    );
    let first = backup(mobr, &sample.fs_backup_args(&b1));
    let second = backup(mobr, &sample.fs_backup_args(&b2));
    sample.grow(1, 3);
    let mut args = sample.fs_backup_args(&b3);
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        &second,
    ]));
    let incr = backup(mobr, &args);

    let list = mobr.run(&["list"]);
    list.assert_ok("list");
    for id in [&first, &second, &incr] {
        assert!(
            list.stdout.contains(id.as_str()),
            "list does not show {id}\n{list}"
        );
    }
    let mut ids = mobr.complete_ids();
    ids.sort();
    let mut want = vec![first.clone(), second.clone(), incr.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "list --json must show the three complete backups"
    );

    let one = mobr.run(&["list", &first]);
    one.assert_ok("list ID");
    assert!(
        one.stdout.contains(first.as_str()),
        "list ID does not show it\n{one}"
    );
    assert!(
        one.stdout
            .lines()
            .any(|l| l.contains("check:") && l.contains("tae/")),
        "list ID prints no check lines\n{one}"
    );
    // In MatrixOne's order and spelling: the manifest, then mo_meta.
    let checks: Vec<&str> = one
        .stdout
        .lines()
        .filter(|l| l.starts_with("check: "))
        .take(2)
        .collect();
    assert_eq!(checks, ["check: /backup_meta", "check: /mo_meta"], "{one}");

    // Catalog entry only.
    mobr.run(&["delete", &first, "--not_delete_data"])
        .assert_ok("delete --not_delete_data");
    let list = mobr.run(&["list"]);
    list.assert_ok("list after deleting the first backup");
    assert!(
        !list.stdout.contains(first.as_str()),
        "the deleted backup is still listed\n{list}"
    );
    assert!(
        has_manifest(&b1) && !stored_objects(&b1).is_empty(),
        "--not_delete_data removed the data of {}",
        b1.display()
    );

    // The base of an incremental goes only with --force, and takes it along.
    let refused = mobr.run(&["delete", &second]);
    refused.assert_failed("delete of an incremental's base without --force");
    assert!(
        refused.stderr.contains(incr.as_str()),
        "the refusal must name the incremental {incr}\n{refused}"
    );
    assert!(
        has_manifest(&b2) && has_manifest(&b3),
        "a refused delete removed data"
    );
    let mut ids = mobr.complete_ids();
    ids.sort();
    let mut want = vec![second.clone(), incr.clone()];
    want.sort();
    assert_eq!(ids, want, "a refused delete changed the catalog");

    mobr.run(&["delete", &second, "--force"])
        .assert_ok("delete --force");
    let list = mobr.run(&["list"]);
    list.assert_ok("list after delete --force");
    for id in [&second, &incr] {
        assert!(
            !list.stdout.contains(id.as_str()),
            "{id} is still listed\n{list}"
        );
    }
    assert!(
        mobr.complete_ids().is_empty(),
        "the catalog still has backups"
    );
    assert!(
        !has_manifest(&b2),
        "{} still holds backup_meta",
        b2.display()
    );
    assert!(
        !has_manifest(&b3),
        "{} still holds backup_meta",
        b3.display()
    );

    mobr.run(&["list", "--not_check_data", &second])
        .assert_failed("list of a deleted ID");
}
