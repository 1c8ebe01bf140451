//! `mo_br copy ID --to_*`: a full + incremental chain (the full compressed)
//! copied filesystem -> S3 (s3s-fs) and S3 -> filesystem as self-contained
//! replicas; list shows them; restore and check of a replica work from the
//! destination alone, also after the original is deleted and after the
//! catalog is lost and rebuilt from the destination; a damaged source
//! object fails the copy by name and leaves nothing that looks complete; an
//! interrupted copy run again keeps what had landed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, restore_by_id_args, s3_target_args, strings, Scene, MIB};
use mo_br_tests::procs::{bin, Cluster, MoBr, Output};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::{assert_restored, files_under, finished_files, temp_files};

/// An object MatrixOne could have written, of bytes that compress well.
const TEXT: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b_00000";

fn compressible(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(&(1_000_000 + i).to_le_bytes());
        v.extend_from_slice(b"TRUCK AIR MAIL");
        i += 1;
    }
    v.truncate(len);
    v
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(strings(more));
    args
}

fn to_fs(id: &str, to: &Path) -> Vec<String> {
    strings(&[
        "copy",
        id,
        "--to_dir",
        "filesystem",
        "--to_path",
        &to.display().to_string(),
    ])
}

fn to_s3(id: &str, server: &S3Server, filepath: &str) -> Vec<String> {
    strings(&[
        "copy",
        id,
        "--to_dir",
        "s3",
        "--to_endpoint",
        &server.endpoint(),
        "--to_access_key_id",
        server.access_key(),
        "--to_secret_access_key",
        server.secret_key(),
        "--to_bucket",
        server.bucket(),
        "--to_filepath",
        filepath,
        "--to_is_minio",
    ])
}

fn keys(server: &S3Server) -> Vec<String> {
    strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ])
}

/// The replica's ID a successful copy printed ("... replica <id>, ...").
#[track_caller]
fn replica_id(out: &Output) -> String {
    out.assert_ok("copy");
    let at = out
        .stdout
        .find("replica ")
        .unwrap_or_else(|| panic!("copy named no replica\n{out}"));
    mo_br_tests::procs::find_uuid(&out.stdout[at..])
        .unwrap_or_else(|| panic!("copy printed no replica ID\n{out}"))
}

/// `list --json`'s record of `id`.
#[track_caller]
fn record(mobr: &MoBr, id: &str) -> serde_json::Value {
    mobr.list_json()
        .into_iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// Every SHARED object of `original` (a backup directory; with
/// `checkpoints`, also its `ckp/` and `gc/` files) is in the replica at
/// `replica` under the same name with the same bytes: copied as stored.
/// Returns how many were compared.
#[track_caller]
fn same_stored_bytes(original: &Path, replica: &Path, checkpoints: bool) -> usize {
    let theirs = files_under(replica);
    let mut compared = 0;
    for (rel, path) in files_under(original) {
        let Some(name) = rel.strip_prefix("tae/") else {
            continue;
        };
        if name.starts_with("tae_")
            || name.ends_with(".sha256")
            || (name.contains('/') && !checkpoints)
        {
            continue;
        }
        let copy = theirs
            .get(&rel)
            .unwrap_or_else(|| panic!("{rel} is missing from the replica"));
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(copy).unwrap(),
            "{rel} differs in the replica"
        );
        compared += 1;
    }
    compared
}

/// The SHARED objects and checkpoints whose write finished under `dir`.
fn objects(dir: &Path) -> Vec<String> {
    finished_files(dir)
        .into_iter()
        .filter(|f| f.starts_with("tae/") && !f.starts_with("tae/tae_"))
        .collect()
}

/// How many files a copy said it kept ("kept N files ...").
#[track_caller]
fn kept(out: &Output) -> usize {
    out.stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("kept ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the copy kept nothing\n{out}"))
}

#[test]
fn a_chain_is_copied_to_s3_and_back_and_stands_alone() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("copy-chain");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 41, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    std::fs::write(
        sample.shared_dir().join(TEXT),
        compressible(2 * MIB as usize),
    )
    .unwrap();

    let b1 = scene.path("backups/b1");
    let full = backup(
        mobr,
        &with(sample.fs_backup_args(&b1), &["--compression", "zstd"]),
    );
    sample.grow(1, 4);
    sample.drop_long_paths(150);
    let i1 = scene.path("backups/i1");
    let inc = backup(
        mobr,
        &with(
            sample.fs_backup_args(&i1),
            &["--backup_type", "incremental", "--base_id", &full],
        ),
    );

    // A dry run writes nothing.
    let dry = scene.path("dr/dry");
    let out = mobr.run(&with(to_fs(&inc, &dry), &["--dry_run"]));
    out.assert_ok("copy --dry_run");
    assert!(out.stdout.contains("would copy"), "{out}");
    assert!(!dry.exists(), "a dry run wrote {}", dry.display());

    // Filesystem -> S3: the incremental, which needs its base's objects.
    let s3_replica = replica_id(&mobr.run(&to_s3(&inc, &server, "/dr/i1")));
    let s3_root = server.root().join(server.bucket()).join("dr/i1");
    // The base's objects (the compressed one as a zstd frame) and the
    // incremental's own, byte for byte as stored.
    assert!(same_stored_bytes(&b1, &s3_root, false) > 3);
    assert!(same_stored_bytes(&i1, &s3_root, true) > 0);
    assert_eq!(
        std::fs::read(s3_root.join("tae").join(TEXT)).unwrap()[..4],
        [0x28, 0xb5, 0x2f, 0xfd],
        "the compressed object was not copied as stored"
    );
    assert!(!s3_root.join("copy_of").exists(), "the copy marker stayed");

    let rec = record(mobr, &s3_replica);
    assert_eq!(rec["replica_of"], inc.as_str(), "{rec}");
    assert_eq!(rec["state"], "complete", "{rec}");
    assert_eq!(rec["backup_dir"], "s3", "{rec}");
    let verbose = mobr.run(&["list", "--verbose"]);
    verbose.assert_ok("list --verbose");
    assert!(
        verbose.stdout.contains("replica of"),
        "list --verbose does not show the replica\n{verbose}"
    );

    let mut check = strings(&["check", &s3_replica]);
    check.extend(keys(&server));
    mobr.run(&check).assert_ok("check of the S3 replica");

    // S3 -> filesystem: a replica of the replica.
    let dr2 = scene.path("dr/i1");
    let fs_replica = replica_id(&mobr.run(&with(
        to_fs(&s3_replica, &dr2),
        &[
            "--backup_access_key_id",
            server.access_key(),
            "--backup_secret_access_key",
            server.secret_key(),
        ],
    )));
    assert_eq!(record(mobr, &fs_replica)["replica_of"], s3_replica.as_str());

    // The original chain goes; the replicas stand alone.
    mobr.run(&["delete", &inc])
        .assert_ok("delete the original incremental");
    mobr.run(&["delete", &full])
        .assert_ok("delete the original full");
    assert!(!b1.join("backup_meta").exists() && !i1.join("backup_meta").exists());
    mobr.run(&["check", &fs_replica])
        .assert_ok("check of the filesystem replica");
    let r = scene.path("restores/from-fs-replica");
    mobr.run(&restore_by_id_args(&fs_replica, &r))
        .assert_ok("restore of the filesystem replica");
    assert_restored(sample.root(), &r);
    let r = scene.path("restores/from-s3-replica");
    mobr.run(&with(
        restore_by_id_args(&s3_replica, &r),
        &[
            "--backup_access_key_id",
            server.access_key(),
            "--backup_secret_access_key",
            server.secret_key(),
        ],
    ))
    .assert_ok("restore of the S3 replica");
    assert_restored(sample.root(), &r);

    // The catalog is lost: the destination alone gives the replica back.
    std::fs::remove_file(mobr.meta_path.as_ref().unwrap()).unwrap();
    mobr.run(&[
        "catalog",
        "rebuild",
        "--backup_dir",
        "filesystem",
        "--backup_path",
        &scene.path("dr").display().to_string(),
    ])
    .assert_ok("catalog rebuild of the destination");
    assert_eq!(record(mobr, &fs_replica)["replica_of"], s3_replica.as_str());
    let r = scene.path("restores/after-rebuild");
    mobr.run(&restore_by_id_args(&fs_replica, &r))
        .assert_ok("restore of the rebuilt replica");
    assert_restored(sample.root(), &r);
    // And the bucket alone gives the S3 replica back.
    let mut rebuild = strings(&[
        "catalog",
        "rebuild",
        "--backup_dir",
        "s3",
        "--backup_endpoint",
        &server.endpoint(),
        "--backup_bucket",
        server.bucket(),
        "--backup_filepath",
        "/dr",
        "--backup_is_minio",
    ]);
    rebuild.extend(keys(&server));
    mobr.run(&rebuild)
        .assert_ok("catalog rebuild of the S3 destination");
    assert_eq!(record(mobr, &s3_replica)["replica_of"], inc.as_str());
    // Copying it there again finds it done.
    let mut again = to_fs(&s3_replica, &dr2);
    again.extend(keys(&server));
    let again = mobr.run(&again);
    again.assert_ok("copy to where it was copied already");
    assert!(again.stdout.contains("already"), "{again}");

    // A replica is deleted like any backup, the other one left whole.
    mobr.run(&["delete", &fs_replica])
        .assert_ok("delete of a replica");
    assert!(!dr2.join("backup_meta").exists());
    assert!(mobr
        .list_json()
        .iter()
        .all(|b| b["id"] != fs_replica.as_str()));
    mobr.run(&check)
        .assert_ok("check of the S3 replica after the other went");
}

/// A chain stored on S3 (the full compressed, the incremental not) copied
/// to a filesystem: the replica restores and checks with no key at all.
#[test]
fn a_chain_on_s3_is_copied_to_a_filesystem() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("copy-s3-chain");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 46, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    std::fs::write(sample.shared_dir().join(TEXT), compressible(MIB as usize)).unwrap();
    let to_bucket = |filepath: &str| {
        let mut args = strings(&["backup"]);
        args.extend(s3_target_args(&server, server.bucket(), filepath));
        args.extend(sample.source_args());
        args
    };
    let full = backup(mobr, &with(to_bucket("/c/b1"), &["--compression", "zstd"]));
    sample.grow(1, 3);
    sample.drop_long_paths(150);
    let inc = backup(
        mobr,
        &with(
            to_bucket("/c/i1"),
            &["--backup_type", "incremental", "--base_id", &full],
        ),
    );

    let to = scene.path("dr/i1");
    let replica = replica_id(&mobr.run(&with(
        to_fs(&inc, &to),
        &[
            "--backup_access_key_id",
            server.access_key(),
            "--backup_secret_access_key",
            server.secret_key(),
        ],
    )));
    let bucket = server.root().join(server.bucket());
    assert!(same_stored_bytes(&bucket.join("c/b1"), &to, false) > 3);
    assert!(same_stored_bytes(&bucket.join("c/i1"), &to, true) > 0);
    let manifest = std::fs::read_to_string(to.join("backup_meta")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["replica_of"], inc.as_str());
    assert_eq!(manifest["backup_type"], "full");
    assert!(manifest
        .get("chain")
        .is_none_or(|c| c.as_array().unwrap().is_empty()));

    mobr.run(&["check", &replica])
        .assert_ok("check of the replica");
    let r = scene.path("restores/r");
    mobr.run(&restore_by_id_args(&replica, &r))
        .assert_ok("restore of the replica");
    assert_restored(sample.root(), &r);
}

#[test]
fn a_damaged_source_fails_the_copy_by_name_and_nothing_looks_complete() {
    let scene = Scene::new("copy-damaged");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 42, 2 * MIB, Backend::DiskV2);
    let b1 = scene.path("backups/b1");
    let id = backup(mobr, &sample.fs_backup_args(&b1));
    let victim = std::fs::read_dir(b1.join("tae"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().unwrap().is_file() && e.metadata().unwrap().len() > 1000)
        .expect("an object to damage");
    let mut bytes = std::fs::read(victim.path()).unwrap();
    bytes[500] ^= 0x01;
    std::fs::write(victim.path(), bytes).unwrap();
    let name = victim.file_name().to_string_lossy().into_owned();

    let to = scene.path("dr/b1");
    let out = mobr.run(&to_fs(&id, &to));
    out.assert_failed("copy of a damaged backup");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains(&name),
        "the copy does not name {name}\n{out}"
    );
    assert!(
        !to.join("backup_meta").exists(),
        "a failed copy looks complete"
    );
    assert!(
        mobr.list_json().iter().all(|b| b["replica_of"].is_null()),
        "a failed copy is on record"
    );
}

#[test]
fn an_interrupted_copy_run_again_keeps_what_landed() {
    let scene = Scene::new("copy-resume");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 43, 24 * MIB, Backend::DiskV2);
    let b1 = scene.path("backups/b1");
    let id = backup(mobr, &sample.fs_backup_args(&b1));
    let to = scene.path("dr/b1");

    // The embedded mo_br killed once some files have landed.
    let mut child = Command::new(bin("mo_br"))
        .current_dir(&mobr.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .args(to_fs(&id, &to))
        .args(["--parallelism", "1", "--meta_path"])
        .arg(mobr.meta_path.as_ref().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mo_br copy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects(&to).len() < 3 {
        assert!(Instant::now() < deadline, "no files landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !to.join("backup_meta").exists(),
        "a killed copy looks complete"
    );
    assert!(mobr.list_json().iter().all(|b| b["replica_of"].is_null()));

    let landed: Vec<(String, u64, i64)> = objects(&to)
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(to.join(&f)).unwrap();
            (f, m.ino(), m.mtime_nsec())
        })
        .collect();
    let total = objects(&b1).len();
    assert!(landed.len() < total, "everything had landed already");

    let out = mobr.run(&to_fs(&id, &to));
    let replica = replica_id(&out);
    let kept = kept(&out);
    assert!(
        kept >= landed.len(),
        "kept {kept} of {} landed\n{out}",
        landed.len()
    );
    for (f, ino, mtime) in &landed {
        let m = std::fs::metadata(to.join(f)).unwrap();
        assert_eq!(
            (m.ino(), m.mtime_nsec()),
            (*ino, *mtime),
            "{f} was written again"
        );
    }
    assert!(temp_files(&to).is_empty(), "{:?}", temp_files(&to));
    assert_eq!(objects(&to).len(), total);
    mobr.run(&["check", &replica])
        .assert_ok("check of the resumed replica");
    let r: PathBuf = scene.path("restores/r");
    mobr.run(&restore_by_id_args(&replica, &r))
        .assert_ok("restore of the resumed replica");
    assert_restored(sample.root(), &r);
}

/// Through a coordinator daemon and an agent daemon (throttled, so the copy
/// can be caught midway): a copy whose CLI is killed stops, and run again
/// keeps what landed.
#[test]
fn a_copy_through_the_daemons_resumes_after_its_cli_is_killed() {
    let scene = Scene::new("copy-remote");
    let sample = scene.sample("node", 45, 4 * MIB, Backend::DiskV2);
    let cluster = Cluster::start_with_agent_args(
        Some(sample.data_dir()),
        &["--max_bytes_per_sec", "4000000", "--parallelism", "2"],
    )
    .expect("start a coordinator and an agent");
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let b1 = scene.path("backups/b1");
    let id = backup(&mobr, &sample.fs_backup_args(&b1));
    let to = scene.path("dr/b1");

    std::fs::create_dir_all(&mobr.cwd).unwrap();
    let mut child = Command::new(bin("mo_br"))
        .current_dir(&mobr.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .args(["--coordinator", cluster.coordinator_addr()])
        .args(to_fs(&id, &to))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mo_br copy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects(&to).len() < 2 {
        assert!(Instant::now() < deadline, "no files landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !to.join("backup_meta").exists(),
        "a cut copy looks complete"
    );

    let out = mobr.run(&to_fs(&id, &to));
    let replica = replica_id(&out);
    assert!(kept(&out) >= 2, "{out}");
    assert_eq!(objects(&to).len(), objects(&b1).len());
    assert_eq!(record(&mobr, &replica)["replica_of"], id.as_str());
    mobr.run(&["check", &replica])
        .assert_ok("check of the replica through the daemons");
}

#[test]
fn bad_copies_are_refused_in_one_line() {
    let scene = Scene::new("copy-bad");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 44, MIB / 2, Backend::DiskV2);
    let b1 = scene.path("backups/b1");
    let id = backup(mobr, &sample.fs_backup_args(&b1));

    let out = mobr.run(&["copy", &id]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("--to_dir"), "{out}");

    let out = mobr.run(&["copy", &id, "--to_dir", "s3"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(out.stderr.contains("--to_bucket"), "{out}");

    // Into the original, or into a place holding something else.
    let out = mobr.run(&to_fs(&id, &b1.join("dr")));
    out.assert_failed("copy into the original");
    assert!(out.stderr.contains("overlaps"), "{out}");
    let busy = scene.path("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), b"x").unwrap();
    let out = mobr.run(&to_fs(&id, &busy));
    out.assert_failed("copy into a non-empty place");
    assert!(out.stderr.contains("not empty"), "{out}");
}
