//! Wrong input fails fast, with one clear line on stderr, and writes
//! nothing: no backup files, no restored files, no complete backup in the
//! catalog.

use std::path::Path;
use std::time::Duration;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, restore_by_id_args, sha256, strings, Sample, Scene, MIB};
use mo_br_tests::procs::{MoBr, Output};
use mo_br_tests::s3server::{free_port, S3Server};
use mo_br_tests::trees::{files_under, has_no_files};

const UNKNOWN_ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

/// Failed, and stderr is one line that contains every word of `all` and at
/// least one of `any` (case-insensitive).
#[track_caller]
fn assert_one_line_error(out: &Output, what: &str, all: &[&str], any: &[&str]) {
    out.assert_failed(what);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{what}: stderr must be one line\n{out}");
    let line = lines[0].to_ascii_lowercase();
    for w in all {
        assert!(
            line.contains(&w.to_ascii_lowercase()),
            "{what}: the error does not mention {w:?}\n{out}"
        );
    }
    assert!(
        any.is_empty() || any.iter().any(|w| line.contains(&w.to_ascii_lowercase())),
        "{what}: the error mentions none of {any:?}\n{out}"
    );
}

#[track_caller]
fn assert_no_complete_backup(mobr: &MoBr, what: &str) {
    let ids = mobr.complete_ids();
    assert!(
        ids.is_empty(),
        "{what}: the catalog has complete backups {ids:?}"
    );
}

#[track_caller]
fn assert_nothing_written(dir: &Path, what: &str) {
    let files = files_under(dir);
    assert!(
        files.is_empty(),
        "{what}: files were written under {}: {:?}",
        dir.display(),
        files.keys().take(10).collect::<Vec<_>>()
    );
}

#[test]
fn unknown_backup_id() {
    let scene = Scene::new("unknown-id");
    let mobr = &scene.mobr;
    let r = scene.path("restores/r");

    let out = mobr.run(&restore_by_id_args(UNKNOWN_ID, &r));
    assert_one_line_error(
        &out,
        "restore of an unknown ID",
        &[UNKNOWN_ID],
        &["not found"],
    );
    assert_nothing_written(&r, "restore of an unknown ID");

    let out = mobr.run(&["check", UNKNOWN_ID]);
    assert_one_line_error(
        &out,
        "check of an unknown ID",
        &[UNKNOWN_ID],
        &["not found"],
    );

    let out = mobr.run(&["delete", UNKNOWN_ID]);
    assert_one_line_error(
        &out,
        "delete of an unknown ID",
        &[UNKNOWN_ID],
        &["not found"],
    );
    assert_no_complete_backup(mobr, "after unknown IDs");
}

/// `backup --backup_dir s3` flags with the given connection values.
fn s3_backup(
    sample: &Sample,
    endpoint: &str,
    key: &str,
    secret: &str,
    bucket: &str,
    filepath: &str,
) -> Vec<String> {
    let mut args = strings(&[
        "backup",
        "--backup_dir",
        "s3",
        "--endpoint",
        endpoint,
        "--access_key_id",
        key,
        "--secret_access_key",
        secret,
        "--bucket",
        bucket,
        "--filepath",
        filepath,
        "--is_minio",
    ]);
    args.extend(sample.source_args());
    args
}

#[test]
fn unreachable_s3_endpoint() {
    let scene = Scene::new("s3-unreachable");
    let mobr = scene.mobr.clone().with_timeout(Duration::from_secs(60));
    let sample = scene.sample("node", 51, 2 * MIB, Backend::DiskV2);
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = mobr.run(&s3_backup(&sample, &closed, "k", "s", "bucket", "/b"));
    assert_one_line_error(
        &out,
        "backup to a closed port",
        &[],
        &["reach", "connect", "refused", "127.0.0.1"],
    );
    assert!(
        out.elapsed < Duration::from_secs(15),
        "backup to a closed port took {:?} (limit 15 s)\n{out}",
        out.elapsed
    );
    assert_no_complete_backup(&mobr, "backup to a closed port");
}

#[test]
fn wrong_s3_secret_key() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-secret");
    let sample = scene.sample("node", 52, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    let args = s3_backup(
        &sample,
        &server.endpoint(),
        server.access_key(),
        "not-the-secret",
        server.bucket(),
        "/b",
    );
    let out = scene.mobr.run(&args);
    assert_one_line_error(
        &out,
        "backup with a wrong secret key",
        &[],
        &["credential", "signature", "denied", "secret"],
    );
    assert_nothing_written(&server.root().join(server.bucket()), "wrong secret key");
    assert_no_complete_backup(&scene.mobr, "wrong secret key");
}

#[test]
fn missing_s3_bucket() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-bucket");
    let sample = scene.sample("node", 53, 2 * MIB, Backend::DiskV2);
    sample.drop_long_paths(150);
    let args = s3_backup(
        &sample,
        &server.endpoint(),
        server.access_key(),
        server.secret_key(),
        "no-such-bucket",
        "/b",
    );
    let out = scene.mobr.run(&args);
    assert_one_line_error(&out, "backup to a missing bucket", &["no-such-bucket"], &[]);
    assert!(
        !server.root().join("no-such-bucket").exists(),
        "the missing bucket was created"
    );
    assert_nothing_written(server.root(), "missing bucket");
    assert_no_complete_backup(&scene.mobr, "missing bucket");
}

#[test]
fn non_empty_restore_target() {
    let scene = Scene::new("restore-non-empty");
    let sample = scene.sample("node", 54, 2 * MIB, Backend::DiskV2);
    let id = backup(
        &scene.mobr,
        &sample.fs_backup_args(&scene.path("backups/b")),
    );
    let r = scene.path("restores/r");
    std::fs::create_dir_all(r.join("mo-data")).unwrap();
    std::fs::write(r.join("mo-data/x"), b"already here").unwrap();

    let out = scene.mobr.run(&restore_by_id_args(&id, &r));
    assert_one_line_error(&out, "restore into a non-empty target", &["not empty"], &[]);
    let left: Vec<String> = files_under(&r).into_keys().collect();
    assert_eq!(
        left,
        ["mo-data/x"],
        "the refused restore wrote into {}",
        r.display()
    );
    assert_eq!(std::fs::read(r.join("mo-data/x")).unwrap(), b"already here");
}

/// Rewrites the manifest at `b` so its first object is named `name`: the
/// manifest chunk holding it, the chunk's size and sha256 in `backup_meta`,
/// and a matching `backup_meta.sha256`, as a forger would.
fn forge_object_name(b: &Path, name: &str) {
    let hex = |raw: &[u8]| raw.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let text = std::fs::read(b.join("backup_meta")).unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let chunks = meta["chunks"].as_array_mut().expect("a chunks array");
    let forged = chunks.iter_mut().find_map(|chunk| {
        let path = b.join(chunk["name"].as_str().unwrap());
        let mut entries: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let entry = entries.iter_mut().find(|f| f["kind"] == "object")?;
        entry["name"] = serde_json::Value::String(name.to_string());
        let mut bytes = Vec::new();
        for e in &entries {
            bytes.extend(serde_json::to_vec(e).unwrap());
            bytes.push(b'\n');
        }
        std::fs::write(&path, &bytes).unwrap();
        chunk["size"] = bytes.len().into();
        chunk["sha256"] = hex(&sha256(&bytes)).into();
        Some(())
    });
    forged.expect("an object entry");
    let bytes = serde_json::to_vec_pretty(&meta).unwrap();
    std::fs::write(b.join("backup_meta"), &bytes).unwrap();
    std::fs::write(b.join("backup_meta.sha256"), sha256(&bytes)).unwrap();
}

/// Every path named "evil" under `dir` (recursively).
fn evil_under(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_keys()
        .filter(|rel| rel.rsplit('/').next() == Some("evil"))
        .collect()
}

#[test]
fn manifest_escaping_restore_root() {
    let scene = Scene::new("restore-escape");
    let sample = scene.sample("node", 55, 2 * MIB, Backend::DiskV2);
    for (i, name) in ["../../evil", "../../../../evil"].iter().enumerate() {
        let b = scene.path(&format!("backups/b{i}"));
        backup(&scene.mobr, &sample.fs_backup_args(&b));
        forge_object_name(&b, name);

        let r = scene.path(&format!("restores/deep/er/r{i}"));
        let mut args = strings(&["restore", "--backup_dir", "filesystem", "--backup_path"]);
        args.push(b.display().to_string());
        args.extend(strings(&["--restore_dir", "filesystem", "--restore_path"]));
        args.push(r.display().to_string());
        let out = scene.mobr.run(&args);
        assert_one_line_error(
            &out,
            &format!("restore of a manifest naming {name}"),
            &[],
            &["unsafe", "invalid", "relative", "outside", ".."],
        );
        assert!(
            has_no_files(&r),
            "the refused restore wrote into {}",
            r.display()
        );
        let evil = evil_under(scene.dir.path());
        assert!(evil.is_empty(), "a restore wrote {evil:?}");
        // The temp dir's parent is shared with others: look only for our file.
        assert!(!scene.dir.path().parent().unwrap().join("evil").exists());
    }
}

#[test]
fn incremental_with_unknown_base() {
    let scene = Scene::new("unknown-base");
    let sample = scene.sample("node", 56, 2 * MIB, Backend::DiskV2);
    let b = scene.path("backups/b");
    let mut args = sample.fs_backup_args(&b);
    args.extend(strings(&[
        "--backup_type",
        "incremental",
        "--base_id",
        UNKNOWN_ID,
    ]));
    let out = scene.mobr.run(&args);
    assert_one_line_error(
        &out,
        "incremental on an unknown base",
        &[UNKNOWN_ID],
        &["not found"],
    );
    assert_nothing_written(&b, "incremental on an unknown base");
    assert_no_complete_backup(&scene.mobr, "incremental on an unknown base");
}
