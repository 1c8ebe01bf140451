//! Copy: a backup to another location (another filesystem, bucket or
//! region) as a self-contained **replica**: every file the backup needs,
//! its chain's included, copied as stored (a zstd object stays zstd) and
//! verified against the manifest's sha256 of the stored bytes as it is
//! written. The replica's manifest names no chain (every entry is its own),
//! so a restore, a check or a `catalog rebuild` of the destination alone
//! works. Its `backup_meta` is written last, after every file is durably
//! stored; only then does it go on record, with `replica_of`.
//!
//! Nothing is on record while it copies, so nothing ever cleans it away: a
//! copy interrupted anywhere is resumed by the same command run again. The
//! agents keep every file already at the destination that reads back with
//! the recorded size and sha256 (re-verified, not rewritten), so only what
//! is missing or damaged moves again. The files run in shards on the agents
//! like a restore's, the manifest read a chunk at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{BackupMeta, BackupType, FileEntry};
use mo_br_proto::agent::{FileDone, FileTask};
use mo_br_proto::common::Storage as WireStorage;
use mo_br_proto::coordinator::{job_event, CopyRequest, Finished, Started};
use mo_br_storage::{Location, Storage};

use super::shards::{self, Ledger, Op, RunOptions};
use super::{emit, entries, info, line, read_chunk, read_manifest, resolve, write_chunk, Events};
use crate::agents::Eligibility;
use crate::catalog::{Applied, Command};
use crate::{Coordinator, Error, Result};

/// Written first at a destination a copy is filling, holding the id of the
/// backup being copied: a run again finds its own unfinished copy by it,
/// and any other non-empty place is refused. Removed once `backup_meta` is.
pub const COPY_MARKER: &str = "copy_of";

/// How long a copy waits for another copy into the same place to stop:
/// its shards are cancelled asynchronously (see `CANCEL_GRACE`).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(c: &Coordinator, req: CopyRequest, events: &Events) -> Result<()> {
    let begun = Instant::now();
    let id = req.id.trim().to_string();
    if id.is_empty() {
        return Err(Error::InvalidArgument("copy needs a backup ID".into()));
    }
    let source = resolve(c, &id, None, &req.access_key_id, &req.secret_access_key).await?;
    let meta = &source.meta;
    let wire = req.target.clone().ok_or_else(|| {
        Error::InvalidArgument("copy needs --to_dir s3|filesystem with the destination".into())
    })?;
    let (to, to_creds) = wire.to_location().map_err(Error::InvalidArgument)?;
    let holders = std::iter::once((meta.id.clone(), source.location.clone()))
        .chain(
            meta.chain
                .iter()
                .map(|l| (l.id.clone(), l.location.clone())),
        )
        .collect::<Vec<_>>();
    for (holder, at) in &holders {
        if overlaps(&to, at) {
            return Err(Error::InvalidArgument(format!(
                "the destination {to} overlaps backup {holder} at {at}: copy to a place of its own"
            )));
        }
    }

    // One pass over the manifest for the totals (and the dry run): what
    // the destination will hold, as stored.
    let (total_files, total_bytes) = totals(source.storage.as_ref(), meta).await?;
    if req.dry_run {
        emit(
            events,
            job_event::Event::Finished(Finished {
                backup: None,
                problems: 0,
                summary: format!(
                    "dry run: copying backup {id} to {to} would copy {total_files} files, {total_bytes} bytes (as stored), plus its manifest"
                ),
            }),
        )
        .await;
        return Ok(());
    }

    // One copy into a place at a time: two would both commit, each with a
    // replica ID of its own, over each other. One whose client just went
    // away (run again at once after a Ctrl-C) is given a moment to stop.
    let claim = format!("copy to {to}");
    let stop_by = Instant::now() + CLAIM_WAIT;
    let _driving = loop {
        if let Some(guard) = c.supervisor.try_claim(&claim) {
            break guard;
        }
        if Instant::now() > stop_by {
            return Err(Error::FailedPrecondition(format!(
                "a copy to {to} is running already"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let target = mo_br_storage::open_with(&to, &to_creds, &super::open_options(0)).await?;
    target.probe().await?;
    match destination(target.as_ref(), &id).await? {
        Destination::Replica(done) => return record(c, *done, to, begun, events, true).await,
        Destination::Fresh => {
            target
                .put_bytes(COPY_MARKER, Bytes::from(id.clone()))
                .await?;
        }
        Destination::Resuming => {
            line(
                events,
                format!(
                    "resuming the copy of {id} at {to}: files already there are verified and kept"
                ),
            )
            .await;
        }
    }

    emit(
        events,
        job_event::Event::Started(Started {
            job_id: id.clone(),
            backup_id: id.clone(),
            total_bytes,
            total_files,
            what: "copy".into(),
        }),
    )
    .await;

    let sources = holders
        .iter()
        .map(|(holder, at)| {
            (
                holder.clone(),
                WireStorage::from_location(at, &source.creds),
            )
        })
        .collect();
    let tasks = copy_tasks(source.storage.as_ref(), meta)
        .map(|r| r.and_then(|f| task(meta, f)))
        .boxed();
    let ledger = KeptLedger::default();
    let outcome = shards::run(
        &c.agents,
        &ledger,
        Op::Restore {
            sources,
            target: wire,
            checksum: true,
            keep_verified: true,
        },
        shards::batch(tasks, Eligibility::Any, c.shard_bytes),
        RunOptions {
            term: c.catalog.leadership().term,
            parallelism: req.parallelism,
            fail_fast: true,
            // Nothing is on record while it copies: a copy whose client
            // went away stops, and the same command run again resumes it.
            stop_without_client: true,
            report_problems: true,
            base: (0, 0),
            retry_window_ms: 0,
            max_requests_per_sec: 0,
        },
        events,
    )
    .await?;
    if let Some((task, problem)) = outcome.first_problem {
        return Err(Error::Failed(format!(
            "copy of backup {id} failed at {}: {}; {to} holds a partial copy without backup_meta (not a backup): run the same copy again to resume once the source is sound",
            task.src, problem.detail
        )));
    }
    let kept = ledger.kept.load(Ordering::Relaxed);
    if kept > 0 {
        line(
            events,
            format!(
                "kept {kept} files ({} bytes) already at the destination, verified",
                ledger.kept_bytes.load(Ordering::Relaxed)
            ),
        )
        .await;
    }

    // Every file is durably stored: writers killed in an earlier run left
    // at most temp files, which go now; then the manifest, last.
    super::remove_incomplete(target.as_ref(), &[String::new()]).await;
    let replica = manifest(source.storage.as_ref(), target.as_ref(), meta, &to).await?;
    super::backup::write_manifest(target.as_ref(), &replica).await?;
    target.delete(COPY_MARKER).await?;
    record(c, replica, to, begun, events, false).await
}

/// What the destination holds.
enum Destination {
    /// Nothing.
    Fresh,
    /// An unfinished copy of the same backup.
    Resuming,
    /// A finished copy of the same backup.
    Replica(Box<BackupMeta>),
}

async fn destination(target: &dyn Storage, id: &str) -> Result<Destination> {
    match read_manifest(target).await {
        Ok(there) if there.replica_of.as_deref() == Some(id) => {
            return Ok(Destination::Replica(Box::new(there)))
        }
        Ok(there) => {
            return Err(Error::FailedPrecondition(format!(
                "{} holds backup {} already: copy to an empty place",
                target.describe(),
                there.id
            )))
        }
        Err(_) => {}
    }
    match target.get_bytes(COPY_MARKER).await {
        Ok(marker) if marker.as_ref() == id.as_bytes() => return Ok(Destination::Resuming),
        Ok(marker) => {
            return Err(Error::FailedPrecondition(format!(
            "{} holds an unfinished copy of backup {}: finish that copy, or copy to another place",
            target.describe(),
            String::from_utf8_lossy(&marker)
        )))
        }
        Err(mo_br_storage::Error::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(found) = target.first_under("").await? {
        return Err(Error::FailedPrecondition(format!(
            "{} is not empty (it holds {found}): copy to an empty place",
            target.describe(),
        )));
    }
    Ok(Destination::Fresh)
}

/// Puts the replica on record (unless it is already) and reports it.
async fn record(
    c: &Coordinator,
    replica: BackupMeta,
    to: Location,
    begun: Instant,
    events: &Events,
    earlier: bool,
) -> Result<()> {
    let mut rec = super::rebuild::record(&replica, to);
    let (source_id, replica_id) = (
        replica.replica_of.clone().unwrap_or_default(),
        rec.id.clone(),
    );
    if !earlier {
        rec.duration_secs = begun.elapsed().as_secs_f64();
    }
    let known = match c
        .catalog
        .propose(Command::BackupReplicated(Box::new(rec.clone())))
        .await?
    {
        Applied::Rejected(_) => {
            let want = replica_id.clone();
            c.catalog
                .read(move |cat| cat.backups.get(&want).cloned())
                .await?
                .unwrap_or(rec)
        }
        _ => rec,
    };
    let summary = if earlier {
        format!(
            "backup {source_id} was copied to {} already: replica {replica_id}",
            known.location
        )
    } else {
        format!(
            "copied backup {source_id} to {}: replica {replica_id}, {} files, {} bytes",
            known.location, known.files, known.size
        )
    };
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: Some(info(&known)),
            problems: 0,
            summary,
        }),
    )
    .await;
    Ok(())
}

/// Every file a replica holds: the data files (the chain's included) in
/// manifest order, then the metadata files `backup_meta` lists inline.
fn copy_tasks<'a>(
    storage: &'a dyn Storage,
    meta: &'a BackupMeta,
) -> futures::stream::BoxStream<'a, Result<FileEntry>> {
    let metadata: Vec<Result<FileEntry>> = meta
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Meta)
        .cloned()
        .map(Ok)
        .collect();
    entries(storage, meta)
        .chain(futures::stream::iter(metadata))
        .boxed()
}

/// The size and sha256 of a file's bytes as stored.
fn as_stored(f: &FileEntry) -> (u64, &str) {
    match &f.stored {
        Some(s) => (s.size, s.sha256.as_str()),
        None => (f.size, f.sha256.as_str()),
    }
}

/// An entry as a copy task: the stored bytes moved as they are, from the
/// backup holding them to the same name at the destination, checked
/// against the stored sha256 as they stream.
fn task(meta: &BackupMeta, f: FileEntry) -> Result<FileTask> {
    f.validate()?;
    let holder = f.origin.clone().unwrap_or_else(|| meta.id.clone());
    if holder != meta.id && !meta.chain.iter().any(|l| l.id == holder) {
        return Err(Error::FailedPrecondition(format!(
            "{} is held by backup {holder}, which is not in this backup's chain",
            f.path
        )));
    }
    let (size, sha256) = as_stored(&f);
    if sha256.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "no sha256 is recorded for {}: its copy could not be verified",
            f.path
        )));
    }
    Ok(FileTask {
        src: f.path.clone(),
        dst: f.path.clone(),
        size,
        sha256: sha256.to_string(),
        source_id: holder,
        compression: None,
        // Moved as stored: nothing is decoded on the way.
        stored: None,
    })
}

async fn totals(storage: &dyn Storage, meta: &BackupMeta) -> Result<(u64, u64)> {
    copy_tasks(storage, meta)
        .try_fold((0u64, 0u64), |(n, bytes), f| async move {
            Ok((n + 1, bytes + as_stored(&f).0))
        })
        .await
}

/// Files with a raw sha256 sidecar beside them (see `check`).
fn has_sidecar(f: &FileEntry) -> bool {
    matches!(
        f.kind,
        FileKind::Meta | FileKind::Config | FileKind::Hakeeper
    )
}

/// A replica's entry: its bytes are its own now.
fn own(mut f: FileEntry) -> FileEntry {
    f.need_copy = true;
    f.origin = None;
    f
}

/// Writes the replica's manifest chunks and sidecars and returns its
/// `backup_meta` (not yet written): the backup's, with every entry its own,
/// no chain, a fresh id and `replica_of`. A chunk at a time.
async fn manifest(
    source: &dyn Storage,
    target: &dyn Storage,
    meta: &BackupMeta,
    to: &Location,
) -> Result<BackupMeta> {
    let mut chunks = Vec::with_capacity(meta.chunks.len());
    let mut stored_size = 0u64;
    for r in &meta.chunks {
        let items: Vec<FileEntry> = read_chunk(source, r).await?;
        let items: Vec<FileEntry> = items.into_iter().map(own).collect();
        sidecars(target, &items).await?;
        let written = write_chunk(target, &r.name, &items).await?;
        stored_size += written.stored_bytes();
        chunks.push(written);
    }
    let files: Vec<FileEntry> = meta.files.iter().cloned().map(own).collect();
    sidecars(target, &files).await?;
    stored_size += files.iter().map(|f| as_stored(f).0).sum::<u64>();
    Ok(BackupMeta {
        id: uuid::Uuid::now_v7().to_string(),
        backup_type: BackupType::Full,
        base_id: None,
        chain: Vec::new(),
        location: to.clone(),
        stored_size,
        files,
        chunks,
        replica_of: Some(meta.id.clone()),
        schedule: None,
        ..meta.clone()
    })
}

async fn sidecars(target: &dyn Storage, files: &[FileEntry]) -> Result<()> {
    for f in files.iter().filter(|f| has_sidecar(f)) {
        let raw = hex::decode(&f.sha256)
            .map_err(|e| Error::Failed(format!("{}: recorded sha256: {e}", f.path)))?;
        target
            .put_bytes(&layout::sidecar(&f.path), Bytes::from(raw))
            .await?;
    }
    Ok(())
}

/// Whether writing under `a` could touch what is under `b` or the reverse.
fn overlaps(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Filesystem { path: a }, Location::Filesystem { path: b }) => {
            a.starts_with(b) || b.starts_with(a)
        }
        (Location::S3(a), Location::S3(b)) => {
            let under =
                |x: &str, y: &str| y.is_empty() || x == y || x.starts_with(&format!("{y}/"));
            a.endpoint == b.endpoint
                && a.bucket == b.bucket
                && (under(&a.prefix, &b.prefix) || under(&b.prefix, &a.prefix))
        }
        _ => false,
    }
}

/// Epochs from a counter, like a restore's; counts the files the agents
/// found already in place.
#[derive(Default)]
struct KeptLedger {
    epochs: AtomicU64,
    kept: AtomicU64,
    kept_bytes: AtomicU64,
}

#[async_trait::async_trait]
impl Ledger for KeptLedger {
    async fn assign(&self, _: usize, _: &str) -> Result<u64> {
        Ok(self.epochs.fetch_add(1, Ordering::Relaxed) + 1)
    }
    async fn finish(&self, _: usize, _: u64, done: &[(usize, FileDone)]) -> Result<bool> {
        for (_, d) in done.iter().filter(|(_, d)| d.kept) {
            self.kept.fetch_add(1, Ordering::Relaxed);
            self.kept_bytes.fetch_add(d.size, Ordering::Relaxed);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mo_br_storage::S3Location;
    use std::path::PathBuf;

    fn fs(p: &str) -> Location {
        Location::Filesystem {
            path: PathBuf::from(p),
        }
    }

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3(S3Location {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_destination_inside_or_around_a_source_is_refused() {
        assert!(overlaps(&fs("/b/b1"), &fs("/b/b1")));
        assert!(overlaps(&fs("/b/b1/dr"), &fs("/b/b1")));
        assert!(overlaps(&fs("/b"), &fs("/b/b1")));
        assert!(!overlaps(&fs("/b/b10"), &fs("/b/b1")));
        assert!(overlaps(&s3("k", "a/b"), &s3("k", "a")));
        assert!(overlaps(&s3("k", ""), &s3("k", "a")));
        assert!(!overlaps(&s3("k", "ab"), &s3("k", "a")));
        assert!(!overlaps(&s3("other", "a"), &s3("k", "a")));
        assert!(!overlaps(&fs("/a"), &s3("k", "a")));
    }

    #[test]
    fn a_task_moves_the_stored_bytes_and_refuses_unsafe_paths() {
        let meta: BackupMeta = serde_json::from_value(serde_json::json!({
            "format": 2, "id": "b2", "backup_type": "incremental", "consistency": "cold",
            "base_id": "b1",
            "chain": [{"id": "b1", "location": {"type": "filesystem", "path": "/b/b1"}}],
            "location": {"type": "filesystem", "path": "/b/b2"},
            "backup_ts": "1-0", "started_at": "", "completed_at": "",
            "source_data_dir": "/d", "shared_backend": "DISK-V2",
            "shared_dir": "mo-data/shared2", "stored_size": 0, "total_size": 0, "files": []
        }))
        .unwrap();
        let entry = |path: &str, origin: Option<&str>| FileEntry {
            kind: FileKind::Object,
            name: path.trim_start_matches("tae/").into(),
            path: path.into(),
            size: 100,
            sha256: "aa".repeat(32),
            need_copy: origin.is_none(),
            origin: origin.map(str::to_string),
            role: None,
            stored: Some(mo_br_format::compression::Stored {
                codec: mo_br_format::compression::Codec::Zstd,
                size: 40,
                sha256: "bb".repeat(32),
            }),
        };
        let t = task(&meta, entry("tae/o1", Some("b1"))).unwrap();
        assert_eq!((t.size, t.sha256.as_str()), (40, "bb".repeat(32).as_str()));
        assert_eq!((t.src.as_str(), t.dst.as_str()), ("tae/o1", "tae/o1"));
        assert_eq!(t.source_id, "b1");
        assert!(t.stored.is_none(), "copied as stored, not decoded");
        assert!(task(&meta, entry("tae/o2", Some("b0"))).is_err());
        assert!(task(&meta, entry("../etc/passwd", None)).is_err());
        let own = own(entry("tae/o1", Some("b1")));
        assert!(own.need_copy && own.origin.is_none());
    }
}
