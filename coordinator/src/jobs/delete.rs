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
use crate::catalog::{Applied, BackupRecord, BackupState, Command};
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
    let creds = mo_br_storage::Credentials {
        access_key_id: req.access_key_id.clone(),
        secret_access_key: req.secret_access_key.clone(),
        ..Default::default()
    };
    if req.dry_run {
        return dry_run(c, &order, &creds, !req.not_delete_data, events).await;
    }
    for id in &order {
        let want = id.clone();
        let Some(rec) = c
            .catalog
            .read(move |cat| cat.backups.get(&want).cloned())
            .await?
        else {
            continue;
        };
        remove(c, &rec, &creds, !req.not_delete_data, events).await?;
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

/// Removes one backup, safe against a crash at any point: its record is
/// marked deleting first (it is then neither restorable nor a base), its
/// manifest is kept aside as `backup_meta.deleting` while `backup_meta`
/// goes first (so the location never again looks like a complete backup,
/// and `catalog rebuild` skips it), the objects follow, the set-aside
/// manifest last, then the record. A run again (delete, or expire, which
/// finishes every deleting record) reads the set-aside manifest and
/// finishes. Only this backup's own objects go: its dependents read
/// theirs from its location, so callers remove those first or keep it.
pub(super) async fn remove(
    c: &Coordinator,
    rec: &BackupRecord,
    creds: &mo_br_storage::Credentials,
    delete_data: bool,
    events: &Events,
) -> Result<()> {
    let id = &rec.id;
    if rec.state == BackupState::Running {
        return Err(Error::FailedPrecondition(format!(
            "backup {id} is still running"
        )));
    }
    if let Applied::Rejected(why) = c
        .catalog
        .propose(Command::BackupDeleting { id: id.clone() })
        .await?
    {
        return Err(Error::FailedPrecondition(why));
    }
    if delete_data {
        let storage = mo_br_storage::open(&rec.location, creds).await?;
        storage.probe().await?;
        match read_manifest(storage.as_ref()).await {
            Ok(meta) => {
                storage.put_bytes(TOMBSTONE, meta.to_bytes().into()).await?;
                delete_files(storage.as_ref(), &meta).await?;
            }
            Err(e) => match storage.get_bytes(TOMBSTONE).await {
                // An interrupted delete: finish it.
                Ok(data) => {
                    let meta = BackupMeta::from_bytes(&data)?;
                    delete_files(storage.as_ref(), &meta).await?;
                }
                // Failed backups cleaned up after themselves; a backup
                // whose data is already gone only leaves the record.
                Err(_) if !matches!(rec.state, BackupState::Complete) => {
                    tracing::info!("backup {id}: no data to delete: {e}");
                }
                Err(_) => {
                    line(events, format!("backup {id}: no data deleted: {e}")).await;
                }
            },
        }
        if let mo_br_storage::Location::Filesystem { path } = &rec.location {
            // Only succeeds when empty: anything not ours stays.
            let _ = std::fs::remove_dir(path);
        }
    }
    c.catalog
        .propose(Command::BackupDeleted { id: id.clone() })
        .await?;
    line(events, format!("deleted backup {id}")).await;
    Ok(())
}

/// What a delete would remove, from each backup's manifest (its own
/// objects only: those its chain holds are not its to delete).
async fn dry_run(
    c: &Coordinator,
    order: &[String],
    creds: &mo_br_storage::Credentials,
    delete_data: bool,
    events: &Events,
) -> Result<()> {
    if delete_data {
        would_remove(c, order, creds, events).await?;
    } else {
        for id in order {
            line(events, format!("would delete {id} from the catalog only")).await;
        }
    }
    super::dry_run::finish(events, "dry run: nothing was deleted".into()).await
}

/// Prints what removing `ids` deletes: each backup's own files and bytes
/// (read from its manifest), then `files:`, `bytes:` and `requests:`
/// totals. Reads only.
pub(super) async fn would_remove(
    c: &Coordinator,
    ids: &[String],
    creds: &mo_br_storage::Credentials,
    events: &Events,
) -> Result<()> {
    let (mut files, mut bytes, mut requests) = (0u64, 0u64, 0u64);
    for id in ids {
        let want = id.clone();
        let Some(rec) = c
            .catalog
            .read(move |cat| cat.backups.get(&want).cloned())
            .await?
        else {
            continue;
        };
        let storage = mo_br_storage::open(&rec.location, creds).await?;
        storage.probe().await?;
        let meta = match read_manifest(storage.as_ref()).await {
            Ok(meta) => meta,
            // An interrupted delete: what it set aside says what is left.
            Err(e) => match storage.get_bytes(TOMBSTONE).await {
                Ok(data) => BackupMeta::from_bytes(&data)?,
                Err(_) => {
                    line(events, format!("would delete {id}: no data to delete: {e}")).await;
                    continue;
                }
            },
        };
        let inline = meta.files.iter().filter(|f| f.need_copy).count() as u64;
        let own = meta.chunks.iter().map(|r| r.copied_files).sum::<u64>() + inline;
        files += own;
        bytes += meta.stored_size;
        // A DELETE per file and per metadata file's sidecar, per chunk,
        // backup_meta and its sidecar; the set-aside manifest's PUT and
        // DELETE.
        requests += own + inline + meta.chunks.len() as u64 + 4;
        line(
            events,
            format!(
                "would delete {id}: {own} files, {} bytes at {}",
                meta.stored_size, rec.location
            ),
        )
        .await;
    }
    for l in [
        format!("files: {files}"),
        format!("bytes: {bytes}"),
        format!("requests: about {requests}"),
        "no time estimate: deletes are not measured".to_string(),
    ] {
        line(events, l).await;
    }
    Ok(())
}

/// The manifest of a backup being deleted, set aside so that a delete
/// interrupted after `backup_meta` went can still find every object.
pub const TOMBSTONE: &str = "backup_meta.deleting";

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
    storage.delete(TOMBSTONE).await?;
    Ok(())
}
