//! Full and incremental backups, checked and restored byte for byte: to a
//! filesystem (DISK-V2 and legacy DISK nodes) and to S3 (s3s-fs).

use std::collections::BTreeSet;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{
    backup, restore_by_id_args, s3_target_args, stored_objects, strings, tae_list_rows, Sample,
    Scene, MIB,
};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::{assert_restored, files_under};

/// Rows of `tae/tae_list` whose needCopy column is `false`.
fn reused_rows(rows: &[Vec<String>]) -> Vec<&Vec<String>> {
    rows.iter()
        .filter(|r| r.get(3).map(String::as_str) == Some("false"))
        .collect()
}

#[test]
fn roundtrip_fs() {
    let scene = Scene::new("roundtrip-fs");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 11, 3 * MIB, Backend::DiskV2);

    // Full backup, checked, restored.
    let b1 = scene.path("backups/b1");
    let full = backup(mobr, &sample.fs_backup_args(&b1));
    assert!(
        b1.join("backup_meta").is_file(),
        "no backup_meta in {}",
        b1.display()
    );
    mobr.run(&["check", &full])
        .assert_ok("check of the full backup");
    let r1 = scene.path("restores/r1");
    mobr.run(&restore_by_id_args(&full, &r1))
        .assert_ok("restore of the full backup");
    assert_restored(sample.root(), &r1);

    // The node runs on; an incremental takes only the new objects.
    let full_objects = stored_objects(&b1);
    assert!(
        full_objects.len() >= 5,
        "the full backup stored only {} objects",
        full_objects.len()
    );
    let added: BTreeSet<String> = sample.grow(1, 6).into_iter().collect();
    let b2 = scene.path("backups/b2");
    let mut args = sample.fs_backup_args(&b2);
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        &full,
    ]));
    let incr = backup(mobr, &args);
    assert_ne!(incr, full, "the incremental got the full backup's ID");
    let incr_objects = stored_objects(&b2);
    assert!(
        incr_objects.len() < full_objects.len(),
        "the incremental stored {} objects, the full {}",
        incr_objects.len(),
        full_objects.len()
    );
    assert_eq!(
        incr_objects, added,
        "the incremental must store exactly the objects added since the full backup"
    );
    let rows = tae_list_rows(&b2);
    let reused = reused_rows(&rows);
    assert_eq!(
        reused.len(),
        full_objects.len(),
        "every object of the base must be listed with needCopy=false in the incremental's tae_list:\n{rows:?}"
    );
    for r in &reused {
        assert!(
            full_objects.contains(&r[0]),
            "tae_list reuses {} which the base does not hold",
            r[0]
        );
    }
    assert!(
        reused_rows(&tae_list_rows(&b1)).is_empty(),
        "a full backup's tae_list has needCopy=false rows"
    );

    mobr.run(&["check", &incr])
        .assert_ok("check of the incremental backup");
    let r2 = scene.path("restores/r2");
    mobr.run(&restore_by_id_args(&incr, &r2))
        .assert_ok("restore of the incremental backup");
    assert_restored(sample.root(), &r2);
}

#[test]
fn roundtrip_fs_legacy_disk() {
    let scene = Scene::new("roundtrip-disk");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 12, 2 * MIB, Backend::Disk);
    assert!(sample.data_dir().join("shared").is_dir());

    let b = scene.path("backups/b");
    let id = backup(mobr, &sample.fs_backup_args(&b));
    mobr.run(&["check", &id])
        .assert_ok("check of a DISK backup");
    let r = scene.path("restores/r");
    mobr.run(&restore_by_id_args(&id, &r))
        .assert_ok("restore of a DISK backup");
    assert!(
        r.join("mo-data/shared").is_dir(),
        "a DISK backup must restore into mo-data/shared"
    );
    assert_restored(sample.root(), &r);
}

/// `backup --backup_dir s3 ...` flags for `server`, at `filepath`.
fn s3_backup_args(sample: &Sample, server: &S3Server, filepath: &str) -> Vec<String> {
    let mut args = strings(&["backup"]);
    args.extend(s3_target_args(server, server.bucket(), filepath));
    args.extend(sample.source_args());
    args
}

/// `--backup_access_key_id .. --backup_secret_access_key ..`.
fn backup_keys(server: &S3Server) -> Vec<String> {
    strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ])
}

#[test]
fn roundtrip_s3() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("roundtrip-s3");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 13, 2 * MIB, Backend::DiskV2);
    // Keys of up to "b2/" + 150 bytes: see `drop_long_paths`.
    sample.drop_long_paths(150);
    assert!(
        !files_under(&sample.data_dir().join("logservice-data")).is_empty(),
        "no log service file is left to back up"
    );
    // Past 64 MiB: a multipart upload (the 2 MiB objects go as one PUT).
    let big = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b_00001";
    sample.add_object(big, 64 * MIB as usize + 12_345, 99);

    let full = backup(mobr, &s3_backup_args(&sample, &server, "/b1"));
    let b1 = server.root().join(server.bucket()).join("b1");
    assert!(
        b1.join("backup_meta").is_file(),
        "no backup_meta at {}",
        b1.display()
    );
    let big_stored = b1.join("tae").join(big);
    assert_eq!(
        std::fs::metadata(&big_stored).map(|m| m.len()).ok(),
        Some(64 * MIB + 12_345),
        "the 64 MiB object at {}",
        big_stored.display()
    );

    let mut check = strings(&["check", &full]);
    check.extend(backup_keys(&server));
    mobr.run(&check)
        .assert_ok("check of the S3 backup with keys");

    let r1 = scene.path("restores/r1");
    let mut restore = restore_by_id_args(&full, &r1);
    restore.extend(backup_keys(&server));
    mobr.run(&restore)
        .assert_ok("restore of the S3 full backup");
    assert_restored(sample.root(), &r1);

    // Incremental into another prefix of the same bucket.
    let full_objects = stored_objects(&b1);
    let added: BTreeSet<String> = sample.grow(1, 5).into_iter().collect();
    let mut args = s3_backup_args(&sample, &server, "/b2");
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        &full,
    ]));
    let incr = backup(mobr, &args);
    let b2 = server.root().join(server.bucket()).join("b2");
    assert_eq!(
        stored_objects(&b2),
        added,
        "the S3 incremental must store exactly the new objects"
    );
    assert_eq!(
        reused_rows(&tae_list_rows(&b2)).len(),
        full_objects.len(),
        "the S3 incremental's tae_list must reuse every base object"
    );

    let mut check = strings(&["check", &incr]);
    check.extend(backup_keys(&server));
    mobr.run(&check)
        .assert_ok("check of the S3 incremental with keys");

    let r2 = scene.path("restores/r2");
    let mut restore = restore_by_id_args(&incr, &r2);
    restore.extend(backup_keys(&server));
    restore.push("--checksum".into());
    mobr.run(&restore)
        .assert_ok("restore of the S3 incremental with --checksum");
    assert_restored(sample.root(), &r2);
}

#[test]
fn restore_to_s3_is_byte_identical_and_refuses_a_non_empty_prefix() {
    let scene = Scene::new("restore-to-s3");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 14, 2 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys longer than ~150 bytes (see fixtures).
    sample.drop_long_paths(140);
    let id = backup(mobr, &sample.fs_backup_args(&scene.path("b")));
    let server = S3Server::start().expect("start s3s-fs");
    let restore = strings(&[
        "restore",
        &id,
        "--restore_dir",
        "s3",
        "--restore_endpoint",
        &server.endpoint(),
        "--restore_access_key_id",
        server.access_key(),
        "--restore_secret_access_key",
        server.secret_key(),
        "--restore_bucket",
        server.bucket(),
        "--restore_filepath",
        "/r",
        "--restore_is_minio",
    ]);
    mobr.run(&restore).assert_ok("restore to s3");
    // s3s-fs keeps each object as a file under <root>/<bucket>/<key>: the
    // restored tree is there, laid out as on a filesystem.
    let in_bucket = server.root().join(server.bucket()).join("r");
    assert_restored(sample.root(), &in_bucket);
    // A second restore into the same prefix is refused: it is not empty.
    let out = mobr.run(&restore);
    out.assert_failed("restore into a non-empty prefix");
    assert!(out.stderr.contains("not empty"), "{out}");
}

#[test]
fn restore_follows_dn_config_and_refuses_another_backend() {
    let scene = Scene::new("dn-config");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 15, MIB, Backend::DiskV2);
    let id = backup(mobr, &sample.fs_backup_args(&scene.path("b")));
    let tn = sample.root().join("etc/launch/tn.toml");
    let text = std::fs::read_to_string(&tn).unwrap();

    // SHARED moved to another directory of the same backend.
    let moved = scene.path("tn-moved.toml");
    std::fs::write(&moved, text.replace("mo-data/shared2", "mo-data/objects")).unwrap();
    let mut args = restore_by_id_args(&id, &scene.path("r1"));
    args.extend(["--dn_config_path".to_string(), moved.display().to_string()]);
    mobr.run(&args).assert_ok("restore with --dn_config_path");
    let restored = files_under(&scene.path("r1/mo-data/objects"));
    let source = files_under(sample.shared_dir());
    assert!(!restored.is_empty());
    assert_eq!(
        restored.keys().collect::<BTreeSet<_>>(),
        source
            .keys()
            .filter(|k| !k.contains(".tmp."))
            .collect::<BTreeSet<_>>(),
    );
    assert!(!scene.path("r1/mo-data/shared2").exists());

    // A TN config of the legacy DISK backend: the bytes are not
    // interchangeable, so the restore is refused and writes nothing.
    let legacy = scene.path("tn-legacy.toml");
    std::fs::write(&legacy, text.replace("DISK-V2", "DISK")).unwrap();
    let mut args = restore_by_id_args(&id, &scene.path("r2"));
    args.extend(["--dn_config_path".to_string(), legacy.display().to_string()]);
    let out = mobr.run(&args);
    out.assert_failed("restore into another backend");
    assert!(out.stderr.contains("same backend"), "{out}");
    assert!(!scene.path("r2/mo-data").exists());
}
