//! The coordinator and an agent in one process over the in-process gRPC
//! transport: a full backup, a check and a restore of a generated node.

use futures::StreamExt;
use mo_br_proto::common::{storage, FsStorage, Source, Storage};
use mo_br_proto::coordinator::coordinator_client::CoordinatorClient;
use mo_br_proto::coordinator::{
    job_event, BackupRequest, BackupType, CheckRequest, JobEvent, RestoreRequest,
};

fn fs(path: &std::path::Path) -> Storage {
    Storage {
        kind: Some(storage::Kind::Fs(FsStorage {
            path: path.display().to_string(),
        })),
    }
}

async fn drain(stream: tonic::Streaming<JobEvent>) -> Result<Vec<job_event::Event>, tonic::Status> {
    let mut out = vec![];
    let mut stream = stream;
    while let Some(ev) = stream.next().await {
        out.push(ev?.event.expect("event set"));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_check_restore_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let sample = mo_br_sample::generate(
        &dir.path().join("mo"),
        &mo_br_sample::Options {
            seed: 7,
            total_bytes: 3 << 20,
            backend: mo_br_sample::Backend::DiskV2,
        },
    )
    .unwrap();
    let agent = mo_br_agent::spawn_in_process(mo_br_agent::AgentService::new("a", 8));
    let (channel, notices) =
        mo_br_coordinator::spawn_in_process(&dir.path().join("mo_br.meta"), vec![agent])
            .await
            .unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    let mut client = CoordinatorClient::new(channel);

    let events = drain(
        client
            .backup(BackupRequest {
                target: Some(fs(&dir.path().join("b1"))),
                source: Some(Source {
                    data_dir: sample.data_dir.display().to_string(),
                    launch_config: sample.launch_config.display().to_string(),
                    node: String::new(),
                }),
                // No backup_type: UNSPECIFIED asks for a full backup.
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap();
    let Some(job_event::Event::Finished(done)) = events.last() else {
        panic!("no finish: {events:?}");
    };
    let id = done.backup.as_ref().unwrap().id.clone();
    assert_eq!(
        done.backup.as_ref().unwrap().backup_type(),
        BackupType::Full
    );
    assert!(dir.path().join("b1/backup_meta").is_file());
    assert!(dir.path().join("b1/tae/tae_list").is_file());

    let events = drain(
        client
            .check(CheckRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap();
    let Some(job_event::Event::Finished(done)) = events.last() else {
        panic!("no finish: {events:?}");
    };
    assert_eq!(done.problems, 0, "{events:?}");

    let restore_root = dir.path().join("restored");
    drain(
        client
            .restore(RestoreRequest {
                id: id.clone(),
                target: Some(fs(&restore_root)),
                checksum: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap();
    let restored_tn = std::fs::read(restore_root.join("etc/launch/tn.toml")).unwrap();
    assert_eq!(
        restored_tn,
        std::fs::read(sample.root.join("etc/launch/tn.toml")).unwrap()
    );
    let src = sample.data_dir.join("shared2");
    let mut compared = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_file() && !name.starts_with(".tmp.") {
            let restored = std::fs::read(restore_root.join("mo-data/shared2").join(&name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(restored, std::fs::read(entry.path()).unwrap(), "{name}");
            compared += 1;
        } else if name.starts_with(".tmp.") {
            assert!(!restore_root.join("mo-data/shared2").join(&name).exists());
        }
    }
    assert!(compared > 10, "only {compared} objects compared");

    // A second restore into the same place is refused.
    let err = drain(
        client
            .restore(RestoreRequest {
                id,
                target: Some(fs(&restore_root)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("not empty"), "{}", err.message());
}
