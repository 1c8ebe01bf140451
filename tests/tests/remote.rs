//! A coordinator and an agent as separate processes, talking gRPC on
//! loopback, do what the embedded `mo_br` does.

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, restore_by_id_args, Scene, MIB};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::trees::{assert_restored, assert_same_tree};

#[test]
fn remote_equals_embedded() {
    let scene = Scene::new("remote");
    let sample = scene.sample("node", 41, 3 * MIB, Backend::DiskV2);
    let cluster = Cluster::start().expect("start a coordinator and an agent");
    let remote = MoBr::remote(&scene.path("cwd-remote"), cluster.coordinator_addr());
    let logs = || cluster.logs();

    let b = scene.path("backups/remote");
    let out = remote.run(&sample.fs_backup_args(&b));
    assert!(out.success(), "remote backup failed\n{out}\n{}", logs());
    let id = backup_id(&out);

    let check = remote.run(&["check", &id]);
    assert!(check.success(), "remote check failed\n{check}\n{}", logs());

    let list = remote.run(&["list"]);
    assert!(list.success(), "remote list failed\n{list}\n{}", logs());
    assert!(
        list.stdout.contains(id.as_str()),
        "remote list misses {id}\n{list}"
    );
    assert!(
        cluster.meta_path().exists(),
        "the coordinator's catalog {} was never written",
        cluster.meta_path().display()
    );
    assert!(
        !scene.path("cwd-remote/mo_br.meta").exists(),
        "a remote mo_br wrote a local catalog"
    );

    let r = scene.path("restores/remote");
    let restore = remote.run(&restore_by_id_args(&id, &r));
    assert!(
        restore.success(),
        "remote restore failed\n{restore}\n{}",
        logs()
    );
    assert_restored(sample.root(), &r);

    // The same through the embedded coordinator gives the same tree.
    let embedded = &scene.mobr;
    let id = backup_id(&embedded.run(&sample.fs_backup_args(&scene.path("backups/embedded"))));
    let r_embedded = scene.path("restores/embedded");
    embedded
        .run(&restore_by_id_args(&id, &r_embedded))
        .assert_ok("embedded restore");
    assert_same_tree(&r, &r_embedded);
}
