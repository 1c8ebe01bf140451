//! The embedded default's restores resume (issue 11, item 5): its
//! coordinator lives for one command, so a killed `mo_br restore` is carried
//! on by running the same command again. Other commands meanwhile leave what
//! it wrote alone and say so; the re-run reads back what was written before
//! and keeps only what matches, so a file changed or removed in between is
//! written again rather than trusted.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, restore_by_id_args, Scene, MIB};
use mo_br_tests::procs::{bin, MoBr};
use mo_br_tests::trees::{assert_restored, finished_files};

/// The embedded `mo_br restore` of `id` into `to`, one file at a time so
/// that it can be caught midway, killed once `landed` files are there.
fn restore_killed_midway(mobr: &MoBr, id: &str, to: &Path, landed: usize) {
    let mut child: Child = Command::new(bin("mo_br"))
        .current_dir(&mobr.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .args(restore_by_id_args(id, to))
        .args(["--parallelism", "1", "--meta_path"])
        .arg(mobr.meta_path.as_ref().expect("embedded scene"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mo_br restore");
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished_files(to).len() < landed {
        assert!(Instant::now() < deadline, "no files landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_embedded_restore_is_carried_on_by_the_same_command() {
    let scene = Scene::new("restore-resume");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 47, 24 * MIB, Backend::DiskV2);
    let id = backup(mobr, &sample.fs_backup_args(&scene.path("backups/b1")));
    let to = scene.path("restores/r");

    restore_killed_midway(mobr, &id, &to, 40);
    let landed = finished_files(&to);

    // Another command in between (one that opens the embedded coordinator)
    // neither resumes nor removes it: it says how to finish it.
    let out = mobr.run(&sample.fs_backup_args(&scene.path("backups/b2")));
    out.assert_ok("a backup after a killed restore");
    assert!(
        out.stderr
            .contains("was interrupted: run the same mo_br restore again"),
        "no word of the interrupted restore\n{out}"
    );
    assert_eq!(
        finished_files(&to),
        landed,
        "the backup touched the restore"
    );

    // Some of what landed is damaged or gone meanwhile: the re-run must not
    // trust it. The rest must be kept as it is (same inode, same mtime).
    let (changed, removed) = (&landed[0], &landed[1]);
    std::fs::write(to.join(changed), b"not what was restored").unwrap();
    std::fs::remove_file(to.join(removed)).unwrap();
    let untouched: Vec<(String, u64, i64)> = landed[2..]
        .iter()
        .map(|f| {
            let m = std::fs::metadata(to.join(f)).unwrap();
            (f.clone(), m.ino(), m.mtime_nsec())
        })
        .collect();

    let out = mobr.run(&restore_by_id_args(&id, &to));
    out.assert_ok("the same restore run again");
    assert!(
        out.stdout.contains("carried on") || out.stderr.contains("carried on"),
        "the re-run started afresh\n{out}"
    );
    assert_restored(sample.root(), &to);
    let mut kept = 0;
    for (f, ino, mtime) in &untouched {
        let m = std::fs::metadata(to.join(f)).unwrap();
        kept += usize::from((m.ino(), m.mtime_nsec()) == (*ino, *mtime));
    }
    // Files recorded in no done shard may be rewritten; those in done shards
    // (most of them, one file per request) read back right and stay.
    assert!(
        kept * 2 >= untouched.len(),
        "only {kept} of {} files written before were kept\n{out}",
        untouched.len()
    );

    // Finished: nothing is left on record to warn about.
    let out = mobr.run(&sample.fs_backup_args(&scene.path("backups/b3")));
    out.assert_ok("a backup after the resumed restore");
    assert!(!out.stderr.contains("was interrupted"), "{out}");
}

#[test]
fn a_restore_of_another_backup_into_the_target_removes_the_interrupted_one_first() {
    let scene = Scene::new("restore-replace");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 48, 16 * MIB, Backend::DiskV2);
    let first = backup(mobr, &sample.fs_backup_args(&scene.path("backups/b1")));
    sample.grow(1, 20);
    let second = backup(mobr, &sample.fs_backup_args(&scene.path("backups/b2")));
    let to = scene.path("restores/r");

    restore_killed_midway(mobr, &first, &to, 20);
    let out = mobr.run(&restore_by_id_args(&second, &to));
    out.assert_ok("a restore of another backup into the same target");
    assert!(!out.stdout.contains("carried on"), "{out}");
    // Only the second backup's tree: nothing of the first restore is left
    // that the second does not have.
    assert_restored(sample.root(), &to);
}
