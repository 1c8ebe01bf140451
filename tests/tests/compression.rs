//! `--compression zstd`: backups to a filesystem and to S3 (s3s-fs) store
//! compressible files as zstd frames under their own names and the rest
//! raw; list, check and restore read them back byte for byte; incrementals
//! mix compressed and raw bases; a damaged frame is named by check.

use std::collections::BTreeMap;
use std::path::Path;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{
    backup, pseudo_random, restore_by_id_args, s3_target_args, sha256, strings, Sample, Scene, MIB,
};
use mo_br_tests::procs::Output;
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::assert_restored;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Object names as MatrixOne writes them.
const TEXT: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b_00000";
const NOISE: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c_00000";

/// Column-like bytes that compress well (sorted keys, few distinct words).
fn compressible(len: usize) -> Vec<u8> {
    let words = ["AIR", "MAIL", "RAIL", "SHIP", "TRUCK", "FOB", "REG AIR"];
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(&(1_000_000 + i).to_le_bytes());
        v.extend_from_slice(words[(i % 7) as usize].as_bytes());
        v.extend_from_slice(&((i * 37) % 50).to_le_bytes()[..2]);
        i += 1;
    }
    v.truncate(len);
    v
}

/// Adds one compressible and one random object of `size` to SHARED.
fn add_objects(sample: &Sample, size: usize) {
    std::fs::write(sample.shared_dir().join(TEXT), compressible(size)).unwrap();
    std::fs::write(sample.shared_dir().join(NOISE), pseudo_random(size, 5)).unwrap();
}

/// Every manifest entry of a backup stored under `root`, by path.
fn entries(root: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for chunk in std::fs::read_dir(root.join("manifest")).unwrap() {
        let text = std::fs::read_to_string(chunk.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.insert(v["path"].as_str().unwrap().to_string(), v);
        }
    }
    out
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(strings(more));
    args
}

/// The compressible object is a zstd frame recorded with its original size
/// and sha256 and its stored ones; the random one is raw, with no record.
#[track_caller]
fn assert_stored_as_expected(root: &Path, sample: &Sample) {
    let original = std::fs::read(sample.shared_dir().join(TEXT)).unwrap();
    let stored = std::fs::read(root.join("tae").join(TEXT)).unwrap();
    assert_eq!(stored[..4], ZSTD_MAGIC, "tae/{TEXT} is not a zstd frame");
    assert!(
        stored.len() * 4 < original.len(),
        "tae/{TEXT}: {} bytes stored for {}",
        stored.len(),
        original.len()
    );
    let all = entries(root);
    let e = &all[&format!("tae/{TEXT}")];
    assert_eq!(e["size"], original.len() as u64, "{e}");
    assert_eq!(e["sha256"], hex::encode(sha256(&original)), "{e}");
    assert_eq!(e["stored"]["codec"], "zstd", "{e}");
    assert_eq!(e["stored"]["size"], stored.len() as u64, "{e}");
    assert_eq!(e["stored"]["sha256"], hex::encode(sha256(&stored)), "{e}");

    let noise = std::fs::read(sample.shared_dir().join(NOISE)).unwrap();
    assert_eq!(
        std::fs::read(root.join("tae").join(NOISE)).unwrap(),
        noise,
        "random bytes must be stored raw"
    );
    let e = &all[&format!("tae/{NOISE}")];
    assert!(
        e.get("stored").is_none(),
        "a raw file has a stored record: {e}"
    );
    // Configs are never compressed: MatrixOne's tools read them.
    for (path, e) in &all {
        if e["kind"] == "config" {
            assert!(e.get("stored").is_none(), "{path} was compressed");
        }
    }
}

#[track_caller]
fn assert_reports_corrupt(out: &Output, path: &str) {
    out.assert_failed("check of a damaged compressed backup");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(path) && l.to_ascii_lowercase().contains("corrupt")),
        "no line reports {path} as corrupt\n{out}"
    );
}

#[test]
fn compressed_filesystem_backups_and_incrementals_round_trip() {
    let scene = Scene::new("compress-fs");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 31, 2 * MIB, Backend::DiskV2);
    add_objects(&sample, 3 * MIB as usize);

    // A backup as every backup was before compression: no record of it.
    let plain_dir = scene.path("backups/plain");
    let plain = backup(mobr, &sample.fs_backup_args(&plain_dir));
    assert!(
        entries(&plain_dir)
            .values()
            .all(|e| e.get("stored").is_none()),
        "an uncompressed backup records stored forms"
    );

    let b1 = scene.path("backups/b1");
    let full = backup(
        mobr,
        &with(sample.fs_backup_args(&b1), &["--compression", "zstd:5"]),
    );
    assert_stored_as_expected(&b1, &sample);
    mobr.run(&["list", &full])
        .assert_ok("list ID of a compressed backup");
    mobr.run(&["check", &full])
        .assert_ok("check of a compressed backup");
    let r1 = scene.path("restores/r1");
    mobr.run(&restore_by_id_args(&full, &r1))
        .assert_ok("restore of a compressed backup");
    assert_restored(sample.root(), &r1);

    // Incrementals: a compressed one on the compressed base, a compressed
    // one on the plain base, a plain one on the compressed base.
    sample.grow(1, 4);
    let incrementals = [
        ("backups/i1", &full, Some("zstd")),
        ("backups/i2", &plain, Some("zstd")),
        ("backups/i3", &full, None),
    ];
    for (n, (dir, base, compression)) in incrementals.into_iter().enumerate() {
        let mut args = with(
            sample.fs_backup_args(&scene.path(dir)),
            &["--backup_type", "incremental", "--base_id", base],
        );
        if let Some(c) = compression {
            args = with(args, &["--compression", c]);
        }
        let id = backup(mobr, &args);
        mobr.run(&["list", &id])
            .assert_ok("list ID of an incremental");
        mobr.run(&["check", &id])
            .assert_ok("check of an incremental");
        let r = scene.path(&format!("restores/i{n}"));
        let mut restore = restore_by_id_args(&id, &r);
        restore.push("--checksum".into());
        mobr.run(&restore)
            .assert_ok("restore --checksum of an incremental");
        assert_restored(sample.root(), &r);
    }

    // A flipped byte in the middle of the frame is named by check.
    let stored = b1.join("tae").join(TEXT);
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&stored, bytes).unwrap();
    let out = mobr.run(&["check", &full]);
    assert_reports_corrupt(&out, &format!("tae/{TEXT}"));
    let out = mobr.run(&restore_by_id_args(&full, &scene.path("restores/bad")));
    out.assert_failed("restore of a damaged compressed backup");
}

#[test]
fn compressed_s3_backup_round_trips() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("compress-s3");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 32, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    // Past the first 8 MiB part: held whole and sent as one PUT.
    add_objects(&sample, 12 * MIB as usize);

    let mut args = strings(&["backup"]);
    args.extend(s3_target_args(&server, server.bucket(), "/c1"));
    args.extend(sample.source_args());
    let id = backup(mobr, &with(args, &["--compression", "zstd"]));
    let root = server.root().join(server.bucket()).join("c1");
    assert_stored_as_expected(&root, &sample);

    let keys = strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ]);
    mobr.run(&[
        "list",
        &id,
        "--access_key_id",
        server.access_key(),
        "--secret_access_key",
        server.secret_key(),
    ])
    .assert_ok("list ID of a compressed S3 backup (stored sizes)");
    let mut check = strings(&["check", &id]);
    check.extend(keys.clone());
    mobr.run(&check)
        .assert_ok("check of a compressed S3 backup");
    let r = scene.path("restores/r");
    let mut restore = restore_by_id_args(&id, &r);
    restore.extend(keys);
    mobr.run(&restore)
        .assert_ok("restore of a compressed S3 backup");
    assert_restored(sample.root(), &r);
}

#[test]
fn bad_compression_values_are_one_line_usage_errors() {
    let scene = Scene::new("compress-bad");
    let mobr = &scene.mobr;
    let sample = scene.sample("node", 33, MIB / 2, Backend::DiskV2);
    let b = scene.path("backups/b");
    for value in ["gzip", "zstd:0", "zstd:22", "zstd:x"] {
        let out = mobr.run(&with(sample.fs_backup_args(&b), &["--compression", value]));
        out.assert_failed(value);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{value}\n{out}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{value}: one line expected\n{out}");
        assert!(lines[0].contains("--compression"), "{out}");
        assert!(!b.exists(), "{value}: something was written");
    }
    let id = backup(
        mobr,
        &with(sample.fs_backup_args(&b), &["--compression", "none"]),
    );
    let out = mobr.run(&with(
        restore_by_id_args(&id, &scene.path("r")),
        &["--restore_compression", "zstd"],
    ));
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("--restore_compression"), "{out}");
}
