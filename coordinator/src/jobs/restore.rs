//! Restore: read the manifest, map every file to its place under the
//! restore root (refusing anything that would land outside it), refuse a
//! non-empty target, then copy in shards, each file checked against its
//! recorded sha256 as it streams. A failed restore removes what it wrote;
//! so does the coordinator that finds one whose driver died (the restore is
//! on record in the catalog while it writes).

use std::collections::HashMap;
use std::path::PathBuf;

use futures::StreamExt;
use mo_br_format::layout::{self, FileKind};
use mo_br_proto::agent::FileTask;
use mo_br_proto::common::Storage as WireStorage;
use mo_br_proto::coordinator::{job_event, Finished, RestoreRequest, Started};
use mo_br_storage::{Credentials, Location, Storage};

use super::shards::{self, LocalLedger, Op};
use super::{emit, line, remove_incomplete, resolve, sweep, Events};
use crate::agents::Eligibility;
use crate::catalog::{Command, RestoreRecord};
use crate::{Coordinator, Error, Result};

pub async fn run(c: &Coordinator, req: RestoreRequest, events: &Events) -> Result<()> {
    let backup = resolve(
        c,
        &req.id,
        req.backup.as_ref(),
        &req.backup_access_key_id,
        &req.backup_secret_access_key,
    )
    .await?;
    let meta = &backup.meta;
    let target_wire = req
        .target
        .clone()
        .ok_or_else(|| Error::InvalidArgument("--restore_dir is required".into()))?;
    let (target_location, target_creds) =
        target_wire.to_location().map_err(Error::InvalidArgument)?;

    // The SHARED root to restore into: the TN config's, when given; it must
    // be of the backend the backup was taken from (the formats differ).
    let mut shared_dir = meta.shared_dir.clone();
    if !req.dn_config_path.is_empty() {
        let (backend, dir) = shared_from_dn_config(&req.dn_config_path)?;
        if backend != meta.shared_backend {
            return Err(Error::FailedPrecondition(format!(
                "backup {} holds a {} SHARED store but {} configures {}; restore into the same backend",
                meta.id, meta.shared_backend, req.dn_config_path, backend
            )));
        }
        shared_dir = dir;
    }

    // Plan every file before touching the target.
    let mut sources: HashMap<String, WireStorage> = HashMap::new();
    sources.insert(
        meta.id.clone(),
        WireStorage::from_location(&backup.location, &backup.creds),
    );
    for link in &meta.chain {
        sources.insert(
            link.id.clone(),
            WireStorage::from_location(&link.location, &backup.creds),
        );
    }
    let mut tasks = Vec::new();
    for f in meta.files.iter().filter(|f| f.kind != FileKind::Meta) {
        let dst = layout::restore_rel(f.kind, &f.name, &shared_dir)
            .ok_or_else(|| Error::Failed(format!("{} has no restore place", f.path)))?;
        mo_br_format::check_relative(&dst)?;
        let holder = f.origin.clone().unwrap_or_else(|| meta.id.clone());
        if !sources.contains_key(&holder) {
            return Err(Error::FailedPrecondition(format!(
                "{} is held by backup {holder}, which is not in this backup's chain",
                f.path
            )));
        }
        if req.checksum && f.sha256.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "--checksum: no sha256 is recorded for {}",
                f.path
            )));
        }
        tasks.push(FileTask {
            src: f.path.clone(),
            dst,
            size: f.size,
            sha256: f.sha256.clone(),
            source_id: holder,
        });
    }

    let target = mo_br_storage::open(&target_location, &target_creds).await?;
    target.probe().await?;
    refuse_non_empty(target.as_ref(), &target_location, &tasks).await?;

    // On record before anything is written, so a coordinator that outlives
    // this job's driver removes what it wrote.
    let written: Vec<String> = tasks.iter().map(|t| t.dst.clone()).collect();
    let places = owned_places(&written);
    let record = RestoreRecord {
        id: uuid::Uuid::now_v7().to_string(),
        backup_id: meta.id.clone(),
        target: target_location.clone(),
        term: c.catalog.leadership().term,
        written: written.clone(),
        places: places.clone(),
    };
    let (restore_id, term) = (record.id.clone(), record.term);
    c.catalog
        .propose(Command::RestoreStarted(Box::new(record)))
        .await?;
    let _driving = c.claim(&restore_id);

    emit(
        events,
        job_event::Event::Started(Started {
            job_id: meta.id.clone(),
            backup_id: meta.id.clone(),
            total_bytes: tasks.iter().map(|t| t.size).sum(),
            total_files: tasks.len() as u64,
            what: "restore".into(),
        }),
    )
    .await;
    let shards = shards::split(
        tasks.into_iter().enumerate().collect(),
        Eligibility::Any,
        0,
        c.shard_bytes,
    );
    let ledger = LocalLedger::default();
    let copy = shards::run(
        &c.agents,
        &ledger,
        Op::Restore {
            sources,
            target: target_wire,
            checksum: req.checksum,
        },
        shards,
        req.parallelism,
        true,
        true,
        (0, 0),
        events,
    );
    // A deposed leader stops: the new one removes what was written.
    let outcome = tokio::select! {
        o = copy => o,
        () = deposed(c, term) => Err(Error::Failed(
            "this coordinator stopped leading; the new leader removes what was restored".into(),
        )),
    };
    let failure = match &outcome {
        Err(e) => Some(e.to_string()),
        Ok(o) => o.problems.first().map(|(_, p)| p.detail.clone()),
    };
    if let Some(reason) = failure {
        sweep(target.as_ref(), &written, &places).await;
        let _ = end(c, &restore_id).await;
        return Err(Error::Failed(format!(
            "restore of backup {} failed, nothing was left in {}: {reason}",
            meta.id,
            target.describe()
        )));
    }
    remove_incomplete(target.as_ref(), &places).await;
    // Off record, or whoever leads next would remove it: only then complete.
    if let Err(e) = end(c, &restore_id).await {
        sweep(target.as_ref(), &written, &places).await;
        return Err(Error::Failed(format!(
            "restore of backup {} could not be recorded as finished, so it was removed from {}: {e}",
            meta.id,
            target.describe()
        )));
    }
    line(
        events,
        format!("restored backup {} into {}", meta.id, target.describe()),
    )
    .await;
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary: format!(
                "restore complete: {} files, {} bytes",
                written.len(),
                meta.total_size
            ),
        }),
    )
    .await;
    Ok(())
}

/// Takes a restore off record. One left on record (no quorum) is removed by
/// the next leader, so a restore is reported complete only once this got
/// through.
async fn end(c: &Coordinator, id: &str) -> Result<()> {
    let ended = c
        .catalog
        .propose(Command::RestoreEnded { id: id.to_string() })
        .await;
    if let Err(e) = &ended {
        tracing::warn!("restore {id}: taking it off record: {e}");
    }
    ended.map(|_| ())
}

/// Resolves once this replica no longer leads in `term` (never without raft).
async fn deposed(c: &Coordinator, term: u64) {
    loop {
        let l = c.catalog.leadership();
        if !l.is_leader || l.term != term {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Ends a restore whose driver is gone (this coordinator before a restart, a
/// deposed leader): removes what it wrote and takes it off record.
pub(crate) async fn abandon(c: &Coordinator, rec: &RestoreRecord) {
    match mo_br_storage::open(&rec.target, &Credentials::default()).await {
        Ok(target) => {
            sweep(target.as_ref(), &rec.written, &rec.places).await;
            tracing::warn!(
                "restore {} of backup {} into {} was interrupted; what it wrote was removed",
                rec.id,
                rec.backup_id,
                target.describe()
            );
        }
        Err(e) => tracing::warn!(
            "restore {} of backup {} was interrupted; its target could not be opened to remove what it wrote: {e}",
            rec.id,
            rec.backup_id
        ),
    }
    let _ = end(c, &rec.id).await;
}

/// Where a restore may remove temp files of unfinished writes: `mo-data/`,
/// which it owns whole (it had to be empty), and the directories of the
/// files restored elsewhere (configs, a SHARED dir a TN config moved), where
/// only the restore writes temp files of this naming. Nested places are
/// covered by their parent; the root itself is never swept whole.
fn owned_places(written: &[String]) -> Vec<String> {
    let mut dirs: Vec<&str> = written
        .iter()
        .filter_map(|dst| {
            if dst.starts_with("mo-data/") {
                Some("mo-data/")
            } else {
                dst.rfind('/').map(|i| &dst[..=i])
            }
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    let mut places: Vec<String> = Vec::new();
    for dir in dirs {
        if !places.iter().any(|p| dir.starts_with(p.as_str())) {
            places.push(dir.to_string());
        }
    }
    places
}

/// A restore never overwrites: the target's `mo-data` must be empty and no
/// file the restore would write may exist (on a filesystem the restore root
/// is MatrixOne's directory, which holds other things too).
async fn refuse_non_empty(
    target: &dyn Storage,
    location: &Location,
    tasks: &[FileTask],
) -> Result<()> {
    let occupied = match location {
        Location::Filesystem { .. } => {
            let mut found = target
                .list("mo-data/")
                .next()
                .await
                .transpose()?
                .map(|e| e.name);
            if found.is_none() {
                for t in tasks.iter().filter(|t| !t.dst.starts_with("mo-data/")) {
                    if target.head(&t.dst).await?.is_some() {
                        found = Some(t.dst.clone());
                        break;
                    }
                }
            }
            found
        }
        Location::S3(_) => target.list("").next().await.transpose()?.map(|e| e.name),
    };
    match occupied {
        Some(name) => Err(Error::FailedPrecondition(format!(
            "restore target {} is not empty (it holds {name}); restore into an empty place",
            target.describe()
        ))),
        None => Ok(()),
    }
}

/// The SHARED backend and directory (relative to the MatrixOne directory)
/// that a TN config names.
fn shared_from_dn_config(path: &str) -> Result<(String, String)> {
    let text = std::fs::read_to_string(PathBuf::from(path))
        .map_err(|e| Error::InvalidArgument(format!("--dn_config_path {path}: {e}")))?;
    let fs = mo_br_format::mo::tn_shared(&text)
        .map_err(|e| Error::InvalidArgument(format!("--dn_config_path {path}: {e}")))?
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--dn_config_path {path}: no [[fileservice]] named SHARED"
            ))
        })?;
    let dir = fs
        .data_dir
        .trim_start_matches("./")
        .trim_end_matches('/')
        .to_string();
    mo_br_format::check_relative(&dir).map_err(|_| {
        Error::InvalidArgument(format!(
            "--dn_config_path {path}: SHARED data-dir {:?} must be relative to the MatrixOne directory",
            fs.data_dir
        ))
    })?;
    Ok((fs.backend, dir))
}

#[cfg(test)]
mod tests {
    use super::owned_places;

    #[test]
    fn owned_places_cover_each_restored_file_once() {
        let written: Vec<String> = [
            "mo-data/shared2/a",
            "mo-data/local2/hk_data",
            "etc/launch/tn.toml",
            "etc/launch/cn.toml",
            "data/shared/x/1",
            "data/shared/2",
            "top-level-file",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            owned_places(&written),
            ["data/shared/", "etc/launch/", "mo-data/"]
        );
    }
}
