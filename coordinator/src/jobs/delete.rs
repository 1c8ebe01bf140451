//! Delete: a backup that incrementals still need is refused unless forced,
//! and then its dependents go first. Data goes before the catalog entry, and
//! `backup_meta` goes before any other file, so an interrupted delete never
//! leaves something that still looks like a complete backup.

use futures::TryStreamExt;
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{BackupMeta, FileEntry};
use mo_br_proto::coordinator::{job_event, DeleteRequest, Finished};
use mo_br_storage::Storage;

use super::{emit, entries, line, read_manifest, Events};
use crate::catalog::{BackupState, Command};
use crate::{Coordinator, Error, Result};

pub async fn run(c: &Coordinator, req: DeleteRequest, events: &Events) -> Result<()> {
    let want = req.id.clone();
    let (record, dependents) = c
        .catalog
        .read_linearizable(move |cat| (cat.backups.get(&want).cloned(), cat.dependents(&want)))
        .await?;
    let record = record.ok_or_else(|| Error::UnknownBackup(req.id.clone()))?;
    if !dependents.is_empty() && !req.force {
        return Err(Error::FailedPrecondition(format!(
            "backup {} is the base of incremental backup(s) {}; delete those first, or pass --force to delete them too",
            record.id,
            dependents.join(", ")
        )));
    }
    // Deepest dependents first, the backup itself last.
    let mut order: Vec<String> = dependents.into_iter().rev().collect();
    order.push(record.id.clone());
    for id in &order {
        let want = id.clone();
        let Some(rec) = c
            .catalog
            .read(move |cat| cat.backups.get(&want).cloned())
            .await?
        else {
            continue;
        };
        if rec.state == BackupState::Running {
            return Err(Error::FailedPrecondition(format!(
                "backup {id} is still running"
            )));
        }
        if !req.not_delete_data {
            let creds = mo_br_storage::Credentials {
                access_key_id: req.access_key_id.clone(),
                secret_access_key: req.secret_access_key.clone(),
                ..Default::default()
            };
            let storage = mo_br_storage::open(&rec.location, &creds).await?;
            storage.probe().await?;
            match read_manifest(storage.as_ref()).await {
                Ok(meta) => delete_files(storage.as_ref(), &meta).await?,
                // Failed backups cleaned up after themselves; a backup whose
                // data is already gone only leaves the catalog entry.
                Err(e) if rec.state != BackupState::Complete => {
                    tracing::info!("backup {id}: no data to delete: {e}");
                }
                Err(e) => {
                    line(events, format!("backup {id}: no data deleted: {e}")).await;
                }
            }
        }
        if let (false, mo_br_storage::Location::Filesystem { path }) =
            (req.not_delete_data, &rec.location)
        {
            // Only succeeds when empty: anything not ours stays.
            let _ = std::fs::remove_dir(path);
        }
        c.catalog
            .propose(Command::BackupDeleted { id: id.clone() })
            .await?;
        line(events, format!("deleted backup {id}")).await;
    }
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary: format!("{} backup(s) deleted", order.len()),
        }),
    )
    .await;
    Ok(())
}

/// Deletes in flight at once (each is one request's latency on S3).
const DELETE_PARALLELISM: usize = 32;

/// Deletes a backup's files: `backup_meta` first, so an interrupted delete
/// never leaves something that looks complete; then the data files, read
/// from the manifest chunks a chunk at a time; then the chunks and the
/// metadata files. Only the files this backup holds: the chain's stay.
async fn delete_files(storage: &dyn Storage, meta: &BackupMeta) -> Result<()> {
    storage.delete(layout::BACKUP_META).await?;
    storage
        .delete(&layout::sidecar(layout::BACKUP_META))
        .await?;
    entries(storage, meta)
        .try_filter_map(|f: FileEntry| futures::future::ready(Ok(f.need_copy.then_some(f))))
        .map_ok(|f: FileEntry| async move {
            storage.delete(&f.path).await?;
            if matches!(f.kind, FileKind::Config | FileKind::Hakeeper) {
                storage.delete(&layout::sidecar(&f.path)).await?;
            }
            Ok::<_, Error>(())
        })
        .try_buffer_unordered(DELETE_PARALLELISM)
        .try_collect::<()>()
        .await?;
    for r in &meta.chunks {
        storage.delete(&r.name).await?;
    }
    for f in meta.files.iter().filter(|f| f.need_copy) {
        storage.delete(&f.path).await?;
        storage.delete(&layout::sidecar(&f.path)).await?;
    }
    Ok(())
}
