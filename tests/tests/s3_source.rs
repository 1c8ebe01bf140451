//! SHARED on S3 as a backup source, as production MatrixOne clusters run it:
//! the TN config's `[[fileservice]] name = "SHARED"` is a MinIO/S3 bucket
//! and key-prefix (here on a real s3s-fs server). Backups to a filesystem
//! stream the objects through the agent; backups to a bucket of the same
//! server go by server-side copy, with no object byte through the agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{
    backup, restore_by_id_args, s3_target_args, strings, Sample, Scene, MIB,
};
use mo_br_tests::group::{scrape_sum, Group, GroupOptions};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::tlsproxy::TlsProxy;
use mo_br_tests::trees::{compare, files_under};

const SHARED_BUCKET: &str = "mo-shared";
const KEY_PREFIX: &str = "cluster1/shared";

/// A node whose SHARED store lives in `server`'s bucket [`SHARED_BUCKET`]
/// under [`KEY_PREFIX`]. Returns the node and the directory s3s-fs keeps the
/// objects in.
fn node_on_s3(scene: &Scene, server: &S3Server, seed: u64) -> (Sample, PathBuf) {
    let node = scene.sample("node", seed, 2 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys over ~150 bytes.
    node.drop_long_paths(120);
    let shared = node.move_shared_to_s3(server, SHARED_BUCKET, KEY_PREFIX);
    (node, shared)
}

/// `--source_access_key_id .. --source_secret_access_key ..`.
fn source_keys(server: &S3Server) -> Vec<String> {
    strings(&[
        "--source_access_key_id",
        server.access_key(),
        "--source_secret_access_key",
        server.secret_key(),
    ])
}

/// What a backup takes of the SHARED bucket: every object but unfinished
/// writes (`.tmp.*`, which the sample leaves like a running node would).
fn shared_objects(shared: &Path) -> BTreeMap<String, PathBuf> {
    files_under(shared)
        .into_iter()
        .filter(|(rel, _)| !rel.rsplit('/').next().unwrap().starts_with(".tmp."))
        .collect()
}

/// A SHARED store as restored into `mo-data/shared2` must hold exactly the
/// bucket's objects, byte for byte.
#[track_caller]
fn assert_shared_restored(shared: &Path, restored: &Path) {
    let expected = shared_objects(shared);
    assert!(expected.len() > 10, "the SHARED bucket looks empty");
    if let Err(diff) = compare(&expected, &files_under(&restored.join("mo-data/shared2"))) {
        panic!("restored SHARED differs from the bucket:\n{diff}");
    }
    for config in ["launch.toml", "tn.toml", "cn.toml", "log.toml"] {
        assert!(
            restored.join("etc/launch").join(config).is_file(),
            "{config} was not restored"
        );
    }
}

/// Flips a byte of the largest object of a backup's `tae/`; returns its name.
fn corrupt_an_object(tae: &Path) -> String {
    let (name, path) = files_under(tae)
        .into_iter()
        .filter(|(rel, _)| !rel.contains('/') && !rel.starts_with("tae_"))
        .max_by_key(|(_, p)| std::fs::metadata(p).unwrap().len())
        .expect("an object in the backup");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    name
}

#[test]
fn shared_on_s3_backs_up_to_a_filesystem_and_restores() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-source-fs");
    let (node, shared) = node_on_s3(&scene, &server, 81);
    let mobr = &scene.mobr;

    let b1 = scene.path("backups/b1");
    let mut args = node.fs_backup_args(&b1);
    args.extend(source_keys(&server));
    let id = backup(mobr, &args);
    let r1 = scene.path("restores/r1");
    mobr.run(&restore_by_id_args(&id, &r1))
        .assert_ok("restore of a backup of SHARED on S3");
    assert_shared_restored(&shared, &r1);

    // An incremental copies only what is new in the bucket.
    let new_object = "0199aaaa-bbbb-7ccc-8ddd-eeeeffff0001_00001";
    std::fs::write(shared.join(new_object), vec![7u8; 4321]).unwrap();
    let b2 = scene.path("backups/b2");
    let mut args = node.fs_backup_args(&b2);
    args.extend(source_keys(&server));
    args.extend(strings(&["--backup_type", "incremental", "--base_id", &id]));
    let inc = backup(mobr, &args);
    let copied: Vec<String> = files_under(&b2.join("tae"))
        .into_keys()
        .filter(|rel| !rel.contains('/') && !rel.starts_with("tae_"))
        .collect();
    assert_eq!(
        copied,
        [new_object],
        "the incremental copied more than the new object"
    );
    let r2 = scene.path("restores/r2");
    mobr.run(&restore_by_id_args(&inc, &r2))
        .assert_ok("restore of the incremental");
    assert_shared_restored(&shared, &r2);

    // Restored with a TN config that keeps SHARED in another bucket: the
    // objects go to that bucket and key-prefix, the rest to the directory.
    server.new_bucket("restored").unwrap();
    let tn = scene.path("restored-tn.toml");
    std::fs::write(
        &tn,
        format!(
            "[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n\n[fileservice.s3]\nendpoint = \"{}\"\nbucket = \"restored\"\nkey-prefix = \"c2/shared/\"\nkey-id = \"{}\"\nkey-secret = \"{}\"\n",
            server.endpoint(),
            server.access_key(),
            server.secret_key()
        ),
    )
    .unwrap();
    let r3 = scene.path("restores/r3");
    let mut restore = restore_by_id_args(&inc, &r3);
    restore.extend(strings(&["--dn_config_path", tn.to_str().unwrap()]));
    mobr.run(&restore)
        .assert_ok("restore into a SHARED store on S3");
    let restored_bucket = server.root().join("restored/c2/shared");
    if let Err(diff) = compare(&shared_objects(&shared), &files_under(&restored_bucket)) {
        panic!("the restored SHARED bucket differs from the source:\n{diff}");
    }
    assert!(
        !r3.join("mo-data/shared2").exists(),
        "SHARED was also restored into the directory"
    );
    assert!(
        r3.join("etc/launch/tn.toml").is_file(),
        "configs were not restored"
    );
    // Restoring there again is refused: the key-prefix is not empty.
    let r4 = scene.path("restores/r4");
    let mut again = restore_by_id_args(&inc, &r4);
    again.extend(strings(&["--dn_config_path", tn.to_str().unwrap()]));
    let out = mobr.run(&again);
    assert!(
        !out.success(),
        "a restore over a non-empty SHARED bucket passed\n{out}"
    );
    assert!(
        out.stderr.contains("not empty"),
        "the refusal does not say why\n{out}"
    );

    // Check finds a corrupted object.
    let bad = corrupt_an_object(&b1.join("tae"));
    let out = mobr.run(&strings(&["check", &id]));
    assert!(!out.success(), "check passed a corrupted backup\n{out}");
    assert!(
        out.stdout.contains(&bad) || out.stderr.contains(&bad),
        "check did not name {bad}\n{out}"
    );
}

#[test]
fn without_keys_the_source_is_refused_with_a_clear_error() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-source-no-keys");
    let (node, _) = node_on_s3(&scene, &server, 82);
    let b = scene.path("backups/b");
    let out = scene.mobr.run(&node.fs_backup_args(&b));
    assert!(!out.success(), "a backup without source keys passed\n{out}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains(SHARED_BUCKET),
        "the error does not name the SHARED bucket\n{out}"
    );
    assert!(
        !b.join("backup_meta").exists(),
        "a failed backup left a backup_meta"
    );
}

#[test]
fn shared_on_s3_to_a_bucket_of_the_same_server_goes_server_side() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-source-server-side");
    let (node, shared) = node_on_s3(&scene, &server, 83);
    let cluster = Cluster::start_with_metrics(Some(node.data_dir()))
        .expect("start a coordinator and an agent");
    let agent_metrics = cluster.agent_metrics_addr().unwrap().to_string();
    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    server.new_bucket("backups").unwrap();

    let mut args = strings(&["backup"]);
    args.extend(s3_target_args(&server, "backups", "/b1"));
    args.extend(node.source_args());
    args.extend(source_keys(&server));
    let out = mobr.run(&args);
    assert!(out.success(), "backup failed\n{out}\n{}", cluster.logs());
    let id = mo_br_tests::fixtures::backup_id(&out);

    // The objects went server-side: the agent streamed only the node's own
    // files (configs, logservice-data), and the server copied SHARED.
    let shared_bytes: u64 = shared_objects(&shared)
        .values()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let node_bytes: u64 = files_under(&node.root().join("etc/launch"))
        .values()
        .chain(files_under(&node.data_dir().join("logservice-data")).values())
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let streamed = scrape_sum(&agent_metrics, "mo_br_agent_bytes_total", "op=\"copy\"");
    let server_copied = scrape_sum(&agent_metrics, "mo_br_agent_server_copied_bytes_total", "");
    assert_eq!(
        streamed as u64, node_bytes,
        "the agent streamed more than the node's own files"
    );
    assert_eq!(
        server_copied as u64, shared_bytes,
        "SHARED was not copied server-side"
    );
    let stored = server.root().join("backups/b1/tae");
    let stored_objects = files_under(&stored)
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("tae_"))
        .collect::<BTreeMap<_, _>>();
    if let Err(diff) = compare(&shared_objects(&shared), &stored_objects) {
        panic!("the server-side copies differ from SHARED:\n{diff}");
    }

    let keys = strings(&[
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        server.secret_key(),
    ]);
    let mut check = strings(&["check", &id]);
    check.extend(keys.clone());
    mobr.run(&check)
        .assert_ok("check of the server-side copied backup");
    let r = scene.path("restores/r1");
    let mut restore = restore_by_id_args(&id, &r);
    restore.extend(keys.clone());
    mobr.run(&restore)
        .assert_ok("restore of the server-side copied backup");
    assert_shared_restored(&shared, &r);

    let bad = corrupt_an_object(&stored);
    let out = mobr.run(&check);
    assert!(!out.success(), "check passed a corrupted backup\n{out}");
    assert!(
        out.stdout.contains(&bad) || out.stderr.contains(&bad),
        "check did not name {bad}\n{out}"
    );
}

#[test]
fn shared_on_s3_to_another_s3_server_streams_and_restores() {
    let server = S3Server::start().expect("start s3s-fs");
    let other = S3Server::start().expect("start a second s3s-fs");
    let scene = Scene::new("s3-source-other-server");
    let (node, shared) = node_on_s3(&scene, &server, 84);
    let mobr = &scene.mobr;

    let mut args = strings(&["backup"]);
    args.extend(s3_target_args(&other, other.bucket(), "/b1"));
    args.extend(node.source_args());
    args.extend(source_keys(&server));
    let id = backup(mobr, &args);
    let stored: BTreeMap<String, PathBuf> =
        files_under(&other.root().join(other.bucket()).join("b1/tae"))
            .into_iter()
            .filter(|(rel, _)| !rel.starts_with("tae_"))
            .collect();
    if let Err(diff) = compare(&shared_objects(&shared), &stored) {
        panic!("the streamed copies differ from SHARED:\n{diff}");
    }
    let r = scene.path("restores/r1");
    let mut restore = restore_by_id_args(&id, &r);
    restore.extend(strings(&[
        "--backup_access_key_id",
        other.access_key(),
        "--backup_secret_access_key",
        other.secret_key(),
    ]));
    mobr.run(&restore)
        .assert_ok("restore of the streamed backup");
    assert_shared_restored(&shared, &r);
}

/// The CLI's source keys are the only ones that read this SHARED (none in
/// the TN config or the daemons' environment) and no replica keeps them: a
/// new leader must wait for the CLI to re-attach with them (it adopts the
/// backup only then, so the backup cannot end without that), then finish it.
#[test]
fn leader_killed_mid_backup_of_an_s3_shared_goes_on_with_the_source_keys() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-source-leader");
    let (node, shared) = node_on_s3(&scene, &server, 85);
    let mut g = Group::start(3, GroupOptions::default()).unwrap();
    // Slow enough that the backup is still copying when the leader dies.
    g.start_agent(node.data_dir(), 400_000).unwrap();
    let mobr = MoBr::remote(&scene.path("cwd"), &g.list());

    let b1 = scene.path("backups/b1");
    let mut args = node.fs_backup_args(&b1);
    args.extend(source_keys(&server));
    let runner = {
        let mobr = mobr.clone();
        std::thread::spawn(move || mobr.run(&args))
    };
    let leader = g
        .wait_copying(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the backup never started copying\n{}", g.logs()));
    g.kill_replica(leader);
    let out = runner.join().unwrap();
    assert!(
        out.success(),
        "the backup did not survive the leader's death\n{out}\n{}",
        g.logs()
    );
    let id = mo_br_tests::fixtures::backup_id(&out);
    let r1 = scene.path("restores/r1");
    mobr.run(&restore_by_id_args(&id, &r1))
        .assert_ok("restore of the backup finished by the new leader");
    assert_shared_restored(&shared, &r1);
}

/// SHARED on a store whose certificate a private CA signed, named in the
/// TN config's `cert-files` as MatrixOne reads it: mo-br trusts that CA for
/// this store (and still verifies the certificate: without the file the
/// store is refused).
#[test]
fn shared_behind_a_private_ca_is_read_with_the_configs_cert_files() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("s3-source-ca");
    let (node, shared) = node_on_s3(&scene, &server, 87);
    let pki = scene.path("pki");
    mo_br_security::certs::init(&pki, &["localhost".to_string()]).expect("make a CA");
    let cert = mo_br_security::CertFiles::in_dir(&pki, mo_br_security::Role::Replica);
    let proxy = TlsProxy::start(
        format!("127.0.0.1:{}", server.port()).parse().unwrap(),
        &cert.cert,
        &cert.key,
    )
    .expect("start the TLS front");
    let tn = node.root().join("etc/launch/tn.toml");
    let text = std::fs::read_to_string(&tn).unwrap();
    let https = text.replace(
        &format!("endpoint = \"{}\"", server.endpoint()),
        &format!("endpoint = \"https://localhost:{}\"", proxy.port()),
    );
    assert_ne!(text, https, "the TN config names no endpoint to change");
    let ca = mo_br_security::tls::ca_file(&pki);
    std::fs::write(&tn, &https).unwrap();

    // Not trusted yet: refused, naming the store, on one line.
    let mut args = node.fs_backup_args(&scene.path("backups/refused"));
    args.extend(source_keys(&server));
    let out = scene.mobr.run(&args);
    assert!(!out.success(), "a store with an unknown CA was read\n{out}");
    let err = out.stderr.trim();
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "the refusal does not say why\n{out}"
    );

    let with_ca = https.replace(
        "[fileservice.s3]\n",
        &format!("[fileservice.s3]\ncert-files = [\"{}\"]\n", ca.display()),
    );
    std::fs::write(&tn, with_ca).unwrap();
    let mut args = node.fs_backup_args(&scene.path("backups/b1"));
    args.extend(source_keys(&server));
    let id = backup(&scene.mobr, &args);
    let r1 = scene.path("restores/r1");
    scene
        .mobr
        .run(&restore_by_id_args(&id, &r1))
        .assert_ok("restore of a backup read through the private CA");
    assert_shared_restored(&shared, &r1);
}
