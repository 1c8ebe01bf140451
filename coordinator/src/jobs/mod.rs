//! Jobs: each backup, restore, check, list or delete runs as its own task
//! that owns its state and reports to the CLI through a bounded channel of
//! [`JobEvent`]s. [`shards`] is the part they share: splitting files into
//! shards and running them on agents.

pub mod backup;
pub mod check;
pub mod copy;
pub mod delete;
pub mod dry_run;
pub mod expire;
pub mod list;
pub mod mo_backup;
pub mod pitr;
mod read_ahead;
pub mod rebuild;
mod recent_chunks;
pub mod restore;
pub mod schedule;
pub mod shards;
pub mod snapshot;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mo_br_format::chunk::{self, ChunkItem, ChunkRef};
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{BackupMeta, FileEntry};
use mo_br_proto::coordinator::{
    job_event, BackupInfo, BackupMethod as WireMethod, BackupState as WireState,
    BackupType as WireType, Consistency as WireConsistency, JobEvent,
};
use mo_br_storage::{Location, Storage};
use tokio::sync::mpsc;

use crate::catalog::BackupRecord;
use crate::{Error, Result};

pub type Events = mpsc::Sender<Result<JobEvent, tonic::Status>>;

/// Sends an event; a client that went away is noticed by the job through
/// [`Events::is_closed`], so a failed send is not an error here.
pub async fn emit(tx: &Events, event: job_event::Event) {
    let _ = tx.send(Ok(JobEvent { event: Some(event) })).await;
}

pub async fn line(tx: &Events, text: impl Into<String>) {
    emit(tx, job_event::Event::Line(text.into())).await;
}

/// A request's enum field as its enum; a number this build does not know
/// is refused, naming the field (`"BackupRequest.backup_type"`).
/// How a job opens its S3 storages: with its retry window (ms, 0: the
/// process default).
pub fn open_options(retry_window_ms: u64) -> mo_br_storage::OpenOptions {
    mo_br_storage::OpenOptions {
        retry_window: (retry_window_ms > 0)
            .then(|| std::time::Duration::from_millis(retry_window_ms)),
        // What the coordinator writes (manifest, backup_meta) is the commit
        // point: durable before the write returns.
        pacer: None,
        durability: mo_br_storage::Durability::EachWrite,
    }
}

pub fn wire_enum<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E> {
    E::try_from(value).map_err(|_| Error::UnknownValue { field, value })
}

/// `filesystem` / `s3` and the path as `list` prints them.
pub fn describe(location: &Location) -> (String, String) {
    match location {
        Location::Filesystem { path } => ("filesystem".into(), path.display().to_string()),
        Location::S3(s3) => {
            let path = if s3.prefix.is_empty() {
                s3.bucket.clone()
            } else {
                format!("{}/{}", s3.bucket, s3.prefix)
            };
            ("s3".into(), path)
        }
    }
}

pub fn info(rec: &BackupRecord) -> BackupInfo {
    let (backup_dir, path) = describe(&rec.location);
    BackupInfo {
        id: rec.id.clone(),
        size: rec.size,
        backup_dir,
        path,
        at_time: rec.at_time.clone(),
        duration_secs: rec.duration_secs,
        complete_time: rec.complete_time.clone().unwrap_or_default(),
        backup_type: WireType::from(rec.backup_type).into(),
        base_id: rec.base_id.clone().unwrap_or_default(),
        kind: WireConsistency::from(rec.consistency).into(),
        state: WireState::from(&rec.state).into(),
        backup_ts: rec.backup_ts.clone(),
        files: rec.files,
        method: WireMethod::from(rec.method).into(),
        schedule: rec.schedule.clone().unwrap_or_default(),
        replica_of: rec.replica_of.clone().unwrap_or_default(),
    }
}

/// Reads and validates a backup's manifest: `backup_meta` must exist and
/// match its sidecar. Without it the location holds no (complete) backup.
pub async fn read_manifest(storage: &dyn Storage) -> Result<BackupMeta> {
    // Both at once: one round trip instead of two before any job on a
    // backup can start.
    let sidecar_name = layout::sidecar(layout::BACKUP_META);
    let (data, sidecar) = tokio::join!(
        storage.get_bytes(layout::BACKUP_META),
        storage.get_bytes(&sidecar_name)
    );
    let data = match data {
        Ok(d) => d,
        Err(mo_br_storage::Error::NotFound(_)) => {
            return Err(Error::FailedPrecondition(format!(
                "{}: no backup here (backup_meta is missing, so any files are an unfinished or deleted backup)",
                storage.describe()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let sidecar = sidecar.map_err(|e| {
        Error::FailedPrecondition(format!(
            "{}: cannot read backup_meta.sha256: {e}",
            storage.describe()
        ))
    })?;
    if sidecar.as_ref() != mo_br_format::mo::sha256(&data) {
        return Err(Error::FailedPrecondition(format!(
            "{}: backup_meta does not match backup_meta.sha256: the manifest is damaged",
            storage.describe()
        )));
    }
    Ok(BackupMeta::from_bytes(&data)?)
}

/// Stores a chunk of entries under `name`; returns its reference.
pub async fn write_chunk<T: ChunkItem>(
    storage: &dyn Storage,
    name: &str,
    items: &[T],
) -> Result<ChunkRef> {
    let (bytes, r) = chunk::encode(name, items);
    storage.put_bytes(name, bytes).await?;
    Ok(r)
}

/// [`write_chunk`] for a chunk this process reads back soon (a backup's
/// plan and manifest chunks): kept in memory too, for [`read_chunk_kept`].
/// Encoded on a blocking thread: thousands of entries take milliseconds of
/// CPU that the task writing them (a plan's merge, a shard's results) would
/// otherwise spend instead of going on.
pub async fn write_chunk_kept<T: ChunkItem + Send + 'static>(
    storage: &dyn Storage,
    name: &str,
    items: Vec<T>,
) -> Result<ChunkRef> {
    let owned = name.to_string();
    let (bytes, r) = tokio::task::spawn_blocking(move || chunk::encode(&owned, &items))
        .await
        .map_err(|e| Error::Failed(format!("encoding {name}: {e}")))?;
    storage.put_bytes(name, bytes.clone()).await?;
    recent_chunks::remember(&r.sha256, &bytes);
    Ok(r)
}

/// The chunks `refs` names, in order, read ahead as
/// [`read_ahead::in_order`] allows.
pub fn read_chunks<'a, T: ChunkItem + Send + 'a>(
    storage: &'a dyn Storage,
    refs: impl IntoIterator<Item = &'a ChunkRef, IntoIter: Send + 'a>,
) -> BoxStream<'a, Result<Vec<T>>> {
    read_ahead::in_order(
        refs.into_iter()
            .map(move |r| (r.size, read_chunk::<T>(storage, r))),
    )
}

/// Reads a chunk, verified against its reference.
pub async fn read_chunk<T: ChunkItem>(storage: &dyn Storage, r: &ChunkRef) -> Result<Vec<T>> {
    mo_br_format::check_relative(&r.name)?;
    let data = storage.get_bytes(&r.name).await?;
    Ok(chunk::decode(r, &data)?)
}

/// [`read_chunk`] of a chunk written with [`write_chunk_kept`], from memory
/// while it is still kept there. Never for a read that checks what storage
/// holds (`check`, a restore's verification).
pub async fn read_chunk_kept<T: ChunkItem>(storage: &dyn Storage, r: &ChunkRef) -> Result<Vec<T>> {
    Ok(chunk::decode(r, &chunk_bytes_kept(storage, r).await?)?)
}

/// The bytes of a chunk written with [`write_chunk_kept`], from memory
/// while kept, else from storage; not verified yet ([`chunk::decode`]
/// checks them against `r`).
pub async fn chunk_bytes_kept(storage: &dyn Storage, r: &ChunkRef) -> Result<bytes::Bytes> {
    match recent_chunks::recall(&r.sha256) {
        Some(data) => Ok(data),
        None => {
            mo_br_format::check_relative(&r.name)?;
            Ok(storage.get_bytes(&r.name).await?)
        }
    }
}

/// Every data file's entry of a backup, in manifest order (SHARED files
/// sorted by name, then node-local ones), read a chunk at a time.
pub fn entries<'a>(
    storage: &'a dyn Storage,
    meta: &'a BackupMeta,
) -> BoxStream<'a, Result<FileEntry>> {
    let chunked = read_chunks::<FileEntry>(storage, &meta.chunks)
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten();
    // Collected (a few entries at most) so the stream's type holds no
    // closure over borrowed entries, which the compiler cannot prove Send.
    let inline: Vec<Result<FileEntry>> = meta
        .files
        .iter()
        .filter(|f| f.kind != FileKind::Meta)
        .cloned()
        .map(Ok)
        .collect();
    chunked.chain(futures::stream::iter(inline)).boxed()
}

/// Every file entry of a backup in the order MatrixOne's mo_br checks
/// them, which scripts reading `check:` lines expect: `mo_meta`, `hk_data`,
/// `tae_list`, `tae_sum`, then the configs, then the data. The chunks are
/// read twice (configs are node-local, so they come last in the manifest)
/// rather than held: memory stays flat however big the backup.
pub fn entries_in_check_order<'a>(
    storage: &'a dyn Storage,
    meta: &'a BackupMeta,
) -> BoxStream<'a, Result<FileEntry>> {
    let is_metadata = |f: &FileEntry| matches!(f.kind, FileKind::Meta | FileKind::Hakeeper);
    let mut first: Vec<FileEntry> = meta
        .files
        .iter()
        .filter(|f| is_metadata(f))
        .cloned()
        .collect();
    first.sort_by_key(|f| check_rank(&f.path));
    // Format 1 keeps every entry inline.
    let inline: Vec<FileEntry> = meta
        .files
        .iter()
        .filter(|f| !is_metadata(f))
        .cloned()
        .collect();
    let pass = move |configs: bool| {
        let inline: Vec<Result<FileEntry>> = inline
            .iter()
            .filter(|f| (f.kind == FileKind::Config) == configs)
            .cloned()
            .map(Ok)
            .collect();
        read_chunks::<FileEntry>(storage, &meta.chunks)
            .map_ok(move |v| {
                futures::stream::iter(
                    v.into_iter()
                        .filter(move |f| (f.kind == FileKind::Config) == configs)
                        .map(Ok),
                )
            })
            .try_flatten()
            .chain(futures::stream::iter(inline))
    };
    futures::stream::iter(first.into_iter().map(Ok))
        .chain(pass(true))
        .chain(pass(false))
        .boxed()
}

/// Where a metadata file comes in [`entries_in_check_order`].
fn check_rank(path: &str) -> usize {
    [
        layout::MO_META,
        layout::HK_DATA,
        layout::TAE_LIST,
        layout::TAE_SUM,
    ]
    .iter()
    .position(|p| *p == path)
    .unwrap_or(4)
}

/// A file as a `check:` line names it: files at the backup's root with a
/// leading '/' (`/backup_meta`, `/mo_meta`), as MatrixOne's mo_br prints
/// them, the others as they are (`tae/tae_list`).
pub fn check_name(path: &str) -> String {
    if path.contains('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// Removes everything under `prefix` ("" for all) of a place a job owns
/// whole, `backup_meta` first so that an interrupted removal never leaves
/// something that looks like a complete backup. Streams the listing: never
/// holds more than a page of names.
pub async fn remove_all(target: &dyn Storage, prefix: &str) -> Result<u64> {
    if prefix.is_empty() {
        for name in [
            layout::BACKUP_META.to_string(),
            layout::sidecar(layout::BACKUP_META),
        ] {
            target.delete(&name).await?;
        }
    }
    let mut removed = 0u64;
    let mut previous_first: Option<String> = None;
    loop {
        // Deleting while listing is not safe on every backend: take a page,
        // delete it, list again.
        let page: Vec<String> = target
            .list(prefix)
            .take(REMOVE_PAGE)
            .map_ok(|e| e.name)
            .try_collect()
            .await?;
        if page.is_empty() {
            break;
        }
        // A name listed again after its removal succeeded: the backend does
        // not remove it, and listing again would never end.
        if previous_first.as_deref() == Some(page[0].as_str()) {
            return Err(Error::Failed(format!(
                "{} still lists {} after removing it",
                target.describe(),
                page[0]
            )));
        }
        previous_first = Some(page[0].clone());
        let n = page.len() as u64;
        futures::stream::iter(page)
            .map(|name: String| async move { target.delete(&name).await })
            .buffer_unordered(REMOVE_PARALLELISM)
            .try_collect::<Vec<()>>()
            .await?;
        removed += n;
    }
    target.remove_incomplete(prefix).await?;
    Ok(removed)
}

/// Names listed and removed per round of [`remove_all`], and removals in
/// flight (each is one request's latency on S3).
const REMOVE_PAGE: usize = 1000;
const REMOVE_PARALLELISM: usize = 32;

/// How long an agent may still be finishing a write after its shard was
/// cancelled: the cancellation reaches it asynchronously.
pub(crate) const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

/// Removes what a failed job wrote: the named objects and the temp files of
/// unfinished writes under `places` (prefixes the job owns). Runs twice, the
/// second time after [`CANCEL_GRACE`], so a write that was already renaming
/// into place when its shard was cancelled is removed too.
pub async fn sweep(target: &dyn Storage, names: &[String], places: &[String]) {
    for pass in 0..2 {
        if pass > 0 {
            tokio::time::sleep(CANCEL_GRACE).await;
        }
        for name in names {
            if let Err(e) = target.delete(name).await {
                tracing::warn!("cleanup of {name}: {e}");
            }
        }
        remove_incomplete(target, places).await;
    }
}

/// Removes the temp files that writers killed mid-write (an agent lost
/// during the job) left under `places`, prefixes the job owns. Never fails
/// the job: such files are never listed and never taken for data.
pub async fn remove_incomplete(target: &dyn Storage, places: &[String]) {
    for place in places {
        match target.remove_incomplete(place).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "removed {n} unfinished writes under {place:?} of {}",
                target.describe()
            ),
            Err(e) => tracing::warn!(
                "removing unfinished writes under {place:?} of {}: {e}",
                target.describe()
            ),
        }
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A backup found either by catalog ID or at a given storage.
pub struct Resolved {
    pub meta: BackupMeta,
    pub location: Location,
    pub creds: mo_br_storage::Credentials,
    pub storage: Box<dyn Storage>,
}

/// Finds a backup by `id` in the catalog, or else at `storage`. S3 keys
/// come with the request since the catalog never stores them.
pub async fn resolve(
    c: &crate::Coordinator,
    id: &str,
    storage: Option<&mo_br_proto::common::Storage>,
    access_key_id: &str,
    secret_access_key: &str,
) -> Result<Resolved> {
    let (location, mut creds) = if !id.is_empty() {
        let want = id.to_string();
        let rec = c
            .catalog
            .read_linearizable(move |cat| cat.backups.get(&want).cloned())
            .await?
            .ok_or_else(|| Error::UnknownBackup(id.to_string()))?;
        if rec.state == crate::catalog::BackupState::Deleting {
            return Err(Error::FailedPrecondition(format!(
                "backup {id} is being deleted (run delete {id} again to finish)"
            )));
        }
        (rec.location, mo_br_storage::Credentials::default())
    } else {
        let wire = storage.ok_or_else(|| {
            Error::InvalidArgument(
                "give a backup ID, or the backup's location (--backup_dir with --backup_path or the --backup_* s3 flags)".into(),
            )
        })?;
        wire.to_location().map_err(Error::InvalidArgument)?
    };
    if !access_key_id.is_empty() {
        creds = mo_br_storage::Credentials {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            ..Default::default()
        };
    }
    let storage = mo_br_storage::open(&location, &creds).await?;
    storage.probe().await?;
    let meta = read_manifest(storage.as_ref()).await?;
    if !id.is_empty() && meta.id != id {
        return Err(Error::FailedPrecondition(format!(
            "{} holds backup {}, not {id}",
            storage.describe(),
            meta.id
        )));
    }
    Ok(Resolved {
        meta,
        location,
        creds,
        storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mo_br_proto::names::Named;

    #[test]
    fn a_record_as_persisted_is_listed_in_the_same_words() {
        // As catalogs of earlier releases hold it.
        let persisted = serde_json::json!({
            "id": "b2", "location": {"type": "filesystem", "path": "/b/b2"},
            "backup_type": "incremental", "consistency": "online", "base_id": "b1",
            "state": {"state": "failed", "reason": "agent lost"},
            "at_time": "2026-01-01T00:00:00Z", "complete_time": null,
            "duration_secs": 0.0, "size": 0, "files": 0, "backup_ts": "", "data_dir": "/d"
        });
        let rec: BackupRecord = serde_json::from_value(persisted.clone()).unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), persisted);
        let b = info(&rec);
        assert_eq!(
            (b.backup_type(), b.kind(), b.state()),
            (
                WireType::Incremental,
                WireConsistency::Online,
                WireState::Failed
            )
        );
        assert_eq!(
            [
                WireType::word(b.backup_type),
                WireConsistency::word(b.kind),
                WireState::word(b.state),
                WireMethod::word(b.method)
            ],
            ["incremental", "online", "failed", "agents"]
        );

        // One MatrixOne took says so, and reads back the same.
        let mut by_mo = persisted;
        by_mo["method"] = "matrixone".into();
        let rec: BackupRecord = serde_json::from_value(by_mo.clone()).unwrap();
        assert_eq!(rec.method, crate::catalog::BackupMethod::Matrixone);
        assert_eq!(serde_json::to_value(&rec).unwrap(), by_mo);
        assert_eq!(WireMethod::word(info(&rec).method), "matrixone");
    }

    /// The order and spelling of MatrixOne's mo_br `check:` lines.
    #[test]
    fn metadata_in_mo_br_order_root_files_with_a_slash() {
        let mut names = [
            layout::TAE_SUM,
            "mo_meta.extra",
            layout::HK_DATA,
            layout::TAE_LIST,
            layout::MO_META,
        ];
        names.sort_by_key(|n| check_rank(n));
        let shown: Vec<String> = names.iter().map(|n| check_name(n)).collect();
        assert_eq!(
            shown,
            [
                "/mo_meta",
                "hakeeper/hk_data",
                "tae/tae_list",
                "tae/tae_sum",
                "/mo_meta.extra"
            ]
        );
        assert_eq!(check_name(layout::BACKUP_META), "/backup_meta");
    }
}
