//! A backup MatrixOne takes itself: `backup --host ...` naming no node's
//! files when no agent serves that MatrixOne (the embedded default, or a
//! cluster whose agents were not started with `--matrixone`). MatrixOne's
//! own `BACKUP` statement writes straight into the backup's location, in
//! MatrixOne's layout (facts §2), which is the layout of every mo-br backup.
//!
//! Nothing MatrixOne wrote is trusted before it is checked: every metadata
//! file against its raw sha256 sidecar, every `tae_list` entry MatrixOne
//! copied (`needCopy=true`) against the bytes stored (size, and sha256
//! where `tae_list` records one), every entry it did not copy against the
//! base chain that must hold it. Only then are the manifest chunks and
//! `backup_meta` written, from `tae_list`, `tae_sum`, `mo_meta` and the
//! sidecars, in the very format of agent backups, so list, check, restore,
//! delete and incrementals treat the backup like any other. The backup is
//! on record as running from before the statement, complete only once
//! `backup_meta` is stored; on any failure what is in the location goes and
//! the backup is recorded as failed.
//!
//! MatrixOne writes `tae_list` in no order (its copy workers append as they
//! finish). The manifest must be sorted by name (incrementals merge it with
//! the base chain's), so the rows go through an external merge sort that
//! spills to disk: no process holds one record per file of the backup.

use bytes::Bytes;
use futures::StreamExt;
use mo_br_extsort::{codec, ExternalSort, Record, Sorted};
use mo_br_format::chunk::{self, ChunkRef};
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{BackupMeta, ChainLink, Consistency, FileEntry};
use mo_br_format::mo::{self, Hlc};
use mo_br_proto::coordinator::{job_event, BackupRequest, Finished, Progress, Started};
use mo_br_storage::{Credentials, Location, Storage};
use sha2::{Digest, Sha256};

use super::backup::{fail, prepare, record_complete, write_manifest, Base, BaseObjects, Prepared};
use super::{emit, info, now_rfc3339, write_chunk, Events};
use crate::catalog::{BackupMethod, BackupRecord, BackupState, Command};
use crate::matrixone::{BackupInto, BackupStatement, MoConn, MoLogin, S3Option};
use crate::{online, Coordinator, Error, Result};

/// Entries per manifest chunk, as in agent backups.
const CHUNK_ENTRIES: usize = 4096;
/// `tae_list` rows held in memory before a sorted run spills to disk.
const SORT_RUN: usize = 100_000;
/// Rows handed to the sorter, or taken from it, per blocking call.
const BATCH: usize = 1024;
/// Stored files verified at once, at most (each streams a few MiB at a time).
const MAX_VERIFY: usize = 32;

/// Why what MatrixOne wrote is not taken as a backup.
#[derive(Debug, thiserror::Error)]
pub enum Unverified {
    #[error("{file} is missing")]
    Missing { file: String },
    #[error("{file} does not match its sidecar {file}.sha256")]
    Sidecar { file: String },
    /// Before DISK-V2, and still for a legacy DISK cluster, MatrixOne writes
    /// a filesystem backup in its CRC-framed format (a CRC32C per 2044-byte
    /// block): a `.sha256` sidecar is then 36 bytes. Sizes and sha256 in
    /// `tae_list` are of the unframed content, so the stored bytes cannot be
    /// checked against them as they are, and restores copy bytes verbatim.
    #[error(
        "{file}.sha256 holds {len} bytes, not a raw 32-byte sha256: MatrixOne wrote a CRC-framed \
         (legacy DISK) backup, which mo-br does not take from MatrixOne's BACKUP; back this \
         cluster up through agents (--data_dir) or to S3"
    )]
    Framed { file: String, len: usize },
    #[error("{file}: {detail}")]
    Malformed { file: String, detail: String },
    #[error("{file}: {stored} bytes stored, tae_list says {listed}")]
    Size {
        file: String,
        listed: u64,
        stored: u64,
    },
    #[error("{file}: the bytes stored do not match the sha256 tae_list records")]
    Corrupt { file: String },
    #[error("{file}: tae_list says MatrixOne did not copy it (needCopy=false), but {why}")]
    NotInChain { file: String, why: String },
}

fn malformed(file: &str, detail: impl Into<String>) -> Unverified {
    Unverified::Malformed {
        file: file.to_string(),
        detail: detail.into(),
    }
}

/// Where MatrixOne writes into `location` (under `sub`, if not empty).
/// The location must be reachable by MatrixOne's TN as it is by mo-br:
/// the same path on a filesystem (same host or a shared mount), or the same
/// bucket and keys on S3.
pub(crate) fn into_location(
    location: &Location,
    creds: &Credentials,
    sub: &str,
) -> Result<BackupInto> {
    Ok(match location {
        Location::Filesystem { path } => {
            let dir = if sub.is_empty() {
                path.clone()
            } else {
                path.join(sub)
            };
            BackupInto::Filesystem(dir.to_string_lossy().into_owned())
        }
        Location::S3(s3) => {
            let filepath = match (s3.prefix.is_empty(), sub.is_empty()) {
                (true, _) => sub.to_string(),
                (false, true) => s3.prefix.clone(),
                (false, false) => format!("{}/{sub}", s3.prefix),
            };
            BackupInto::S3(S3Option::new(s3, creds, filepath)?)
        }
    })
}

/// Runs the backup of `req` through MatrixOne's `BACKUP` statement (see the
/// module docs).
pub async fn run(
    c: &Coordinator,
    req: BackupRequest,
    login: MoLogin,
    origin: super::backup::Origin,
    events: &Events,
) -> Result<()> {
    let at_time = now_rfc3339();
    let prepared = prepare(c, &req).await?;
    super::backup::require_empty(prepared.target.as_ref()).await?;
    if let Some(base) = &prepared.base {
        check_base(&base.meta)?;
    }
    let into = into_location(&prepared.location, &prepared.creds, "")?;
    // A bad login (or a tenant user: only sys may run BACKUP) changes nothing.
    let mut conn = online::connect(&login).await?;

    let id = origin
        .id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let record = BackupRecord {
        id: id.clone(),
        location: prepared.location.clone(),
        backup_type: prepared.backup_type,
        // From a running cluster, at the cut of MatrixOne's own checkpoint.
        consistency: Consistency::Online,
        base_id: prepared.base.as_ref().map(|b| b.meta.id.clone()),
        state: BackupState::Running,
        at_time,
        complete_time: None,
        duration_secs: 0.0,
        size: 0,
        files: 0,
        backup_ts: String::new(),
        data_dir: String::new(),
        method: BackupMethod::Matrixone,
        schedule: origin.schedule,
        replica_of: None,
    };
    // Claimed before it is on record: a leader never takes a backup it
    // drives itself for one whose driver is gone.
    let _claim = c.claim(&id);
    c.catalog
        .propose(Command::BackupStarted(Box::new(record.clone())))
        .await?;
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: id.clone(),
            backup_id: id.clone(),
            total_bytes: 0,
            total_files: 0,
            what: "backup".into(),
        }),
    )
    .await;
    let taken = take(&req, &prepared, &record, &into, &mut conn, events).await;
    conn.close().await;
    let meta = match taken {
        Ok(meta) => meta,
        // Whatever went wrong (leadership lost included: no other leader
        // carries a MatrixOne statement on), nothing of it may stay.
        Err(e) => return Err(fail(c, &id, None, Some(prepared.target.as_ref()), e).await),
    };
    let rec = record_complete(c, &meta).await?;
    let copied: u64 = meta.chunks.iter().map(|r| r.copied_files).sum();
    // Files the manifest's chunks name but this backup did not copy; hk_data
    // and the other files beside the chunks were all written by it.
    let from_base: u64 = meta
        .chunks
        .iter()
        .map(|r| r.files.saturating_sub(r.copied_files))
        .sum();
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: Some(info(&rec)),
            problems: 0,
            summary: format!(
                "backup {} complete: MatrixOne copied {} files, {} taken from the base chain, {} bytes stored; verified",
                rec.id,
                copied,
                from_base,
                meta.stored_size
            ),
        }),
    )
    .await;
    Ok(())
}

/// An incremental MatrixOne takes copies only objects created after its
/// base's cut and lists the others as held by the base: the base must have
/// a cut, and hold objects as MatrixOne writes them (raw bytes).
fn check_base(base: &BackupMeta) -> Result<()> {
    if base.backup_ts.parse::<Hlc>().is_err() {
        return Err(Error::FailedPrecondition(format!(
            "base backup {} has no cut timestamp ({:?}) to give MatrixOne's BACKUP",
            base.id, base.backup_ts
        )));
    }
    if !matches!(base.shared_backend.as_str(), "DISK-V2" | "S3" | "MINIO") {
        return Err(Error::FailedPrecondition(format!(
            "base backup {} holds a {} (CRC-framed) SHARED store; MatrixOne's BACKUP writes raw objects: take this incremental through agents (--data_dir)",
            base.id, base.shared_backend
        )));
    }
    Ok(())
}

/// Has MatrixOne write the backup, then verifies and indexes it and writes
/// `backup_meta`.
async fn take(
    req: &BackupRequest,
    p: &Prepared,
    record: &BackupRecord,
    into: &BackupInto,
    conn: &mut MoConn,
    events: &Events,
) -> Result<BackupMeta> {
    let base_ts = p.base.as_ref().map(|b| b.meta.backup_ts.as_str());
    let sql = BackupStatement {
        label: &record.id,
        into,
        parallelism: req.parallelism,
        backup_type: base_ts.map(|_| "incremental"),
        timestamp: base_ts,
    }
    .sql();
    tokio::select! {
        done = conn.exec(&sql) => done?,
        // Dropping the statement closes the session; MatrixOne cancels
        // the backup with it.
        () = events.closed() => {
            return Err(Error::Failed(
                "the client went away while MatrixOne wrote the backup".into(),
            ))
        }
    }
    let meta = index(Index {
        target: p.target.as_ref(),
        record,
        base: p.base.as_ref(),
        verify_at_once: (req.parallelism as usize).clamp(1, MAX_VERIFY),
        sort_run: SORT_RUN,
        events,
    })
    .await?;
    write_manifest(p.target.as_ref(), &meta).await?;
    Ok(meta)
}

struct Index<'a> {
    target: &'a dyn Storage,
    record: &'a BackupRecord,
    base: Option<&'a Base>,
    verify_at_once: usize,
    /// Rows sorted in memory before a run spills ([`SORT_RUN`]).
    sort_run: usize,
    events: &'a Events,
}

/// A small file MatrixOne wrote, checked against its sidecar.
struct Verified {
    bytes: Bytes,
    sha256: String,
}

/// Reads `name` and its raw sha256 sidecar; they must agree.
async fn read_verified(target: &dyn Storage, name: &str) -> Result<Verified> {
    let bytes = get_or_missing(target, name).await?;
    let sidecar = get_or_missing(target, &layout::sidecar(name)).await?;
    let sha256 = mo::sha256(&bytes);
    check_sidecar(name, &sidecar, &sha256)?;
    Ok(Verified {
        bytes,
        sha256: hex::encode(sha256),
    })
}

/// The length of a 32-byte sidecar in MatrixOne's CRC-framed format: one
/// block, a 4-byte CRC32C before the content.
const FRAMED_SIDECAR: usize = 4 + 32;

fn check_sidecar(name: &str, sidecar: &[u8], sha256: &[u8; 32]) -> Result<(), Unverified> {
    if sidecar.len() == FRAMED_SIDECAR {
        return Err(Unverified::Framed {
            file: name.to_string(),
            len: sidecar.len(),
        });
    }
    if sidecar.len() != sha256.len() {
        return Err(malformed(
            &layout::sidecar(name),
            format!("{} bytes, not a raw 32-byte sha256", sidecar.len()),
        ));
    }
    if sidecar != sha256 {
        return Err(Unverified::Sidecar {
            file: name.to_string(),
        });
    }
    Ok(())
}

async fn get_or_missing(target: &dyn Storage, name: &str) -> Result<Bytes> {
    match target.get_bytes(name).await {
        Ok(b) => Ok(b),
        Err(mo_br_storage::Error::NotFound(_)) => Err(Unverified::Missing {
            file: name.to_string(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The entry of a metadata file of the backup.
fn meta_entry(kind: FileKind, name: &str, path: &str, v: &Verified) -> FileEntry {
    FileEntry {
        kind,
        name: name.to_string(),
        path: path.to_string(),
        size: v.bytes.len() as u64,
        sha256: v.sha256.clone(),
        need_copy: true,
        origin: None,
        role: None,
        stored: None,
    }
}

async fn index(ix: Index<'_>) -> Result<BackupMeta> {
    let target = ix.target;
    // The small files first, each against its sidecar.
    let mo_meta = read_verified(target, layout::MO_META).await?;
    let configs = configs_of(target, &mo_meta.bytes).await?;
    let hk = read_verified(target, layout::HK_DATA).await?;
    let tae_sum = read_verified(target, layout::TAE_SUM).await?;
    let backup_ts = cut_of(&tae_sum.bytes)?;
    let list = sort_tae_list(target, ix.sort_run).await?;
    emit(
        ix.events,
        job_event::Event::Started(Started {
            job_id: ix.record.id.clone(),
            backup_id: ix.record.id.clone(),
            total_bytes: list.copy_bytes,
            total_files: list.copy_files,
            what: "verify".into(),
        }),
    )
    .await;

    let mut chunks = ChunkWriter::new(target);
    let mut base_objects = ix.base.map(BaseObjects::new);
    let mut rows = Unique::new(list.sorted);
    let mut done = Progress { bytes: 0, files: 0 };
    loop {
        let batch = rows.next_batch().await?;
        if batch.is_empty() {
            break;
        }
        if ix.events.is_closed() {
            return Err(Error::Failed(
                "the client went away while the backup was verified".into(),
            ));
        }
        // Entries from the base chain are looked up in name order (the
        // merge reads the base's chunks once); stored ones are verified
        // concurrently, their order kept.
        let mut planned = Vec::with_capacity(batch.len());
        for row in batch {
            let kind = kind_of(&row.path);
            if row.need_copy {
                planned.push(Planned::Verify(row, kind));
                continue;
            }
            let file = layout::shared_name(&row.path);
            if kind != FileKind::Object {
                return Err(Unverified::NotInChain {
                    file,
                    why: "only objects can be held by a base backup".into(),
                }
                .into());
            }
            let (Some(base), Some(objects)) = (ix.base, base_objects.as_mut()) else {
                return Err(Unverified::NotInChain {
                    file,
                    why: "this is a full backup, with no base chain".into(),
                }
                .into());
            };
            let prev = objects
                .find(&row.path)
                .await?
                .ok_or_else(|| Unverified::NotInChain {
                    file: file.clone(),
                    why: format!("base backup {} and its chain do not hold it", base.meta.id),
                })?;
            if prev.size != row.size {
                return Err(Unverified::NotInChain {
                    file,
                    why: format!(
                        "the base chain holds {} bytes of it, tae_list says {}",
                        prev.size, row.size
                    ),
                }
                .into());
            }
            planned.push(Planned::Ready(FileEntry {
                need_copy: false,
                origin: Some(prev.origin.clone().unwrap_or_else(|| base.meta.id.clone())),
                ..prev
            }));
        }
        let mut entries = futures::stream::iter(planned)
            .map(|p| async move {
                match p {
                    Planned::Ready(e) => Ok(e),
                    Planned::Verify(row, kind) => verify_stored(target, row, kind).await,
                }
            })
            .buffered(ix.verify_at_once);
        while let Some(entry) = entries.next().await {
            let entry = entry?;
            if entry.need_copy {
                done.bytes += entry.size;
                done.files += 1;
            }
            chunks.push(entry).await?;
        }
        emit(ix.events, job_event::Event::Progress(done)).await;
    }
    // Node-local files after SHARED ones, in chunks of their own.
    chunks.flush().await?;
    for entry in configs {
        chunks.push(entry).await?;
    }
    let results = chunks.finish().await?;

    let base = ix.base;
    let mut chain = Vec::new();
    if let Some(base) = base {
        chain.push(ChainLink {
            id: base.meta.id.clone(),
            location: base.meta.location.clone(),
        });
        chain.extend(base.meta.chain.iter().cloned());
    }
    let hk_entry = meta_entry(FileKind::Hakeeper, "hk_data", layout::HK_DATA, &hk);
    let tae_list = FileEntry {
        kind: FileKind::Meta,
        name: layout::TAE_LIST.into(),
        path: layout::TAE_LIST.into(),
        size: list.size,
        sha256: list.sha256,
        need_copy: true,
        origin: None,
        role: None,
        stored: None,
    };
    let files = vec![
        hk_entry.clone(),
        meta_entry(FileKind::Meta, layout::MO_META, layout::MO_META, &mo_meta),
        tae_list,
        meta_entry(FileKind::Meta, layout::TAE_SUM, layout::TAE_SUM, &tae_sum),
    ];
    let stored_size = results.iter().map(|r| r.copied_bytes).sum::<u64>()
        + files
            .iter()
            .filter(|f| f.need_copy)
            .map(|f| f.size)
            .sum::<u64>();
    Ok(BackupMeta {
        format: mo_br_format::manifest::FORMAT_VERSION,
        id: ix.record.id.clone(),
        backup_type: ix.record.backup_type,
        consistency: ix.record.consistency,
        base_id: base.map(|b| b.meta.id.clone()),
        chain,
        location: ix.record.location.clone(),
        backup_ts,
        started_at: ix.record.at_time.clone(),
        completed_at: now_rfc3339(),
        source_data_dir: String::new(),
        source_launch_config: String::new(),
        // MatrixOne writes raw objects to S3 and, since DISK-V2, to a
        // filesystem (a framed backup is refused above): restored like a
        // DISK-V2 SHARED, or into any raw SHARED a TN config names.
        shared_backend: "DISK-V2".into(),
        shared_dir: "mo-data/shared2".into(),
        stored_size,
        total_size: results.iter().map(|r| r.bytes).sum::<u64>() + hk_entry.size,
        files,
        chunks: results,
        // MatrixOne's BACKUP stores files as they are.
        replica_of: None,
        compression: None,
        schedule: ix.record.schedule.clone(),
    })
}

enum Planned {
    Ready(FileEntry),
    Verify(TaeRow, FileKind),
}

/// The kind of a path of `tae_list` (relative to SHARED's root).
fn kind_of(path: &str) -> FileKind {
    if path.starts_with("ckp/") {
        FileKind::Checkpoint
    } else if path.starts_with("gc/") {
        FileKind::Gc
    } else {
        FileKind::Object
    }
}

/// Streams the stored copy of `row` and checks its size and, when
/// `tae_list` records one, its sha256 (MatrixOne records none for the
/// checkpoint files it rewrites at the cut). The entry carries the sha256
/// of the bytes stored, which restores and checks verify from then on.
async fn verify_stored(target: &dyn Storage, row: TaeRow, kind: FileKind) -> Result<FileEntry> {
    let path = layout::shared_name(&row.path);
    let mut stream = match target.get(&path).await {
        Ok(s) => s,
        Err(mo_br_storage::Error::NotFound(_)) => {
            return Err(Unverified::Missing { file: path }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let mut hasher = Sha256::new();
    let mut stored = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        stored += chunk.len() as u64;
        hasher.update(&chunk);
    }
    if stored != row.size {
        return Err(Unverified::Size {
            file: path,
            listed: row.size,
            stored,
        }
        .into());
    }
    let sha256 = hex::encode(hasher.finalize());
    if !row.sha256.is_empty() && row.sha256 != sha256 {
        return Err(Unverified::Corrupt { file: path }.into());
    }
    Ok(FileEntry {
        kind,
        name: row.path,
        path,
        size: stored,
        sha256,
        need_copy: true,
        origin: None,
        role: None,
        stored: None,
    })
}

/// The launch configs `mo_meta` names (`launchconfig,<role>,<file>_<uuid>`),
/// each checked against its sidecar.
async fn configs_of(target: &dyn Storage, mo_meta: &[u8]) -> Result<Vec<FileEntry>> {
    let text =
        std::str::from_utf8(mo_meta).map_err(|_| malformed(layout::MO_META, "not UTF-8 text"))?;
    let mut version = None;
    let mut configs = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields = csv_fields(line).ok_or_else(|| malformed(layout::MO_META, line))?;
        match fields.first().map(String::as_str) {
            Some("version") => version = fields.get(1).cloned(),
            Some("launchconfig") => {
                let (Some(role), Some(stored)) = (fields.get(1), fields.get(2)) else {
                    return Err(malformed(layout::MO_META, line).into());
                };
                let path = format!("config/{stored}");
                if stored.contains('/') || mo_br_format::check_relative(&path).is_err() {
                    return Err(malformed(
                        layout::MO_META,
                        format!("unsafe config name {stored:?}"),
                    )
                    .into());
                }
                let v = read_verified(target, &path).await?;
                configs.push(FileEntry {
                    role: Some(role.clone()),
                    ..meta_entry(FileKind::Config, config_file_name(stored), &path, &v)
                });
            }
            _ => {}
        }
    }
    match version {
        None => return Err(malformed(layout::MO_META, "no version row").into()),
        Some(v) if v != mo::MO_META_VERSION => tracing::warn!(
            "MatrixOne wrote backup layout version {v}; mo-br knows {}",
            mo::MO_META_VERSION
        ),
        Some(_) => {}
    }
    Ok(configs)
}

/// `tn.toml` of `tn.toml_<uuidv7>`: MatrixOne appends a UUID (which holds
/// no `_`) to a config's name.
fn config_file_name(stored: &str) -> &str {
    match stored.rsplit_once('_') {
        Some((name, id)) if !name.is_empty() && uuid::Uuid::parse_str(id).is_ok() => name,
        _ => stored,
    }
}

/// The cut of `tae_sum` (`backupTime,totalSize,backupTS,type`).
fn cut_of(tae_sum: &[u8]) -> Result<String, Unverified> {
    let text =
        std::str::from_utf8(tae_sum).map_err(|_| malformed(layout::TAE_SUM, "not UTF-8 text"))?;
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| malformed(layout::TAE_SUM, "empty"))?;
    let fields = csv_fields(line).ok_or_else(|| malformed(layout::TAE_SUM, line))?;
    let ts = fields
        .get(2)
        .map(|t| t.trim())
        .filter(|t| t.parse::<Hlc>().is_ok())
        .ok_or_else(|| malformed(layout::TAE_SUM, format!("no backup timestamp in {line:?}")))?;
    Ok(ts.to_string())
}

/// Fields of one CSV line as Go's `encoding/csv` writes them: a field with
/// a comma or a quote is quoted, quotes doubled. `None` if unbalanced.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(',') => {}
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Some(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

/// One row of `tae_list`: `path,size,sha256_hex,needCopy,create_ts`.
/// Sorted by path (the derived order compares it first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TaeRow {
    path: String,
    size: u64,
    need_copy: bool,
    /// Lower-case hex; empty where MatrixOne records none.
    sha256: String,
}

impl Record for TaeRow {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_bytes(out, self.path.as_bytes());
        codec::put_u64(out, self.size);
        out.push(u8::from(self.need_copy));
        codec::put_bytes(out, self.sha256.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        let path = String::from_utf8(codec::take_bytes(&mut input)?.to_vec()).ok()?;
        let size = codec::take_u64(&mut input)?;
        let (&flag, rest) = input.split_first()?;
        input = rest;
        let sha256 = String::from_utf8(codec::take_bytes(&mut input)?.to_vec()).ok()?;
        input.is_empty().then_some(TaeRow {
            path,
            size,
            need_copy: flag == 1,
            sha256,
        })
    }
}

/// Parses line `n` (1-based) of `tae_list`; `None` for a blank line.
fn parse_row(line: &[u8], n: u64) -> Result<Option<TaeRow>, Unverified> {
    let bad = |detail: String| malformed(layout::TAE_LIST, format!("line {n}: {detail}"));
    let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let fields = csv_fields(text).ok_or_else(|| bad(format!("not CSV: {text:?}")))?;
    let [path, size, sha256, need_copy, _create_ts] = fields.as_slice() else {
        return Err(bad(format!("{} fields, not 5: {text:?}", fields.len())));
    };
    // A name that could leave SHARED's root is never taken, whoever wrote it.
    if mo_br_format::check_relative(path).is_err() {
        return Err(bad(format!("unsafe path {path:?}")));
    }
    let size = size
        .parse::<u64>()
        .map_err(|_| bad(format!("size {size:?}")))?;
    let sha256 = sha256.to_ascii_lowercase();
    if !sha256.is_empty() && (sha256.len() != 64 || hex::decode(&sha256).is_err()) {
        return Err(bad(format!("sha256 {sha256:?}")));
    }
    let need_copy = match need_copy.to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        other => return Err(bad(format!("needCopy {other:?}"))),
    };
    Ok(Some(TaeRow {
        path: path.clone(),
        size,
        need_copy,
        sha256,
    }))
}

/// `tae_list`, checked against its sidecar and sorted by path.
struct SortedList {
    sorted: Sorted<TaeRow>,
    size: u64,
    sha256: String,
    /// What MatrixOne copied (`needCopy=true` rows), for progress.
    copy_files: u64,
    copy_bytes: u64,
}

/// Streams `tae_list` into an external sort, hashing it on the way; its
/// rows are handed on only once the whole list matched its sidecar.
async fn sort_tae_list(target: &dyn Storage, sort_run: usize) -> Result<SortedList> {
    let name = layout::TAE_LIST;
    let sidecar = get_or_missing(target, &layout::sidecar(name)).await?;
    let mut stream = match target.get(name).await {
        Ok(s) => s,
        Err(mo_br_storage::Error::NotFound(_)) => {
            return Err(Unverified::Missing { file: name.into() }.into())
        }
        Err(e) => return Err(e.into()),
    };
    let mut sorter = Sorter::new(sort_run);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let (mut copy_files, mut copy_bytes) = (0u64, 0u64);
    let mut line_no = 0u64;
    // The part of a line that ends in a later chunk.
    let mut carry: Vec<u8> = Vec::new();
    let mut take_line = |line: &[u8], sorter: &mut Sorter| -> Result<(), Unverified> {
        line_no += 1;
        if let Some(row) = parse_row(line, line_no)? {
            if row.need_copy {
                copy_files += 1;
                copy_bytes += row.size;
            }
            sorter.rows.push(row);
        }
        Ok(())
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        let mut start = 0;
        while let Some(at) = chunk[start..].iter().position(|b| *b == b'\n') {
            let end = start + at;
            if carry.is_empty() {
                take_line(&chunk[start..end], &mut sorter)?;
            } else {
                carry.extend_from_slice(&chunk[start..end]);
                let line = std::mem::take(&mut carry);
                take_line(&line, &mut sorter)?;
            }
            start = end + 1;
        }
        carry.extend_from_slice(&chunk[start..]);
        sorter.spill_if_full().await?;
    }
    if !carry.is_empty() {
        let line = std::mem::take(&mut carry);
        take_line(&line, &mut sorter)?;
    }
    let sha256: [u8; 32] = hasher.finalize().into();
    check_sidecar(name, &sidecar, &sha256)?;
    Ok(SortedList {
        sorted: sorter.finish().await?,
        size,
        sha256: hex::encode(sha256),
        copy_files,
        copy_bytes,
    })
}

/// An [`ExternalSort`] fed from async code: its pushes may write run files,
/// so they go to a blocking thread a batch at a time.
struct Sorter {
    sort: Option<ExternalSort<TaeRow>>,
    rows: Vec<TaeRow>,
}

impl Sorter {
    fn new(run: usize) -> Self {
        Sorter {
            sort: Some(ExternalSort::new(run)),
            rows: Vec::new(),
        }
    }

    async fn spill_if_full(&mut self) -> Result<()> {
        if self.rows.len() >= BATCH {
            self.hand_over().await?;
        }
        Ok(())
    }

    async fn hand_over(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        let mut sort = self.sort.take().ok_or_else(sort_lost)?;
        let sort = tokio::task::spawn_blocking(move || {
            for row in rows {
                sort.push(row)?;
            }
            Ok::<_, mo_br_extsort::Error>(sort)
        })
        .await
        .map_err(|e| Error::Failed(format!("sorting tae_list: {e}")))?
        .map_err(sort_failed)?;
        self.sort = Some(sort);
        Ok(())
    }

    async fn finish(mut self) -> Result<Sorted<TaeRow>> {
        self.hand_over().await?;
        let sort = self.sort.take().ok_or_else(sort_lost)?;
        tokio::task::spawn_blocking(move || sort.finish())
            .await
            .map_err(|e| Error::Failed(format!("sorting tae_list: {e}")))?
            .map_err(sort_failed)
    }
}

fn sort_lost() -> Error {
    Error::Failed("sorting tae_list: the sorter was lost to an earlier failure".into())
}

fn sort_failed(e: mo_br_extsort::Error) -> Error {
    Error::Failed(format!("sorting tae_list: {e}"))
}

/// Sorted rows, one per path: MatrixOne may list a path twice (an object
/// its GC metadata names is copied again); the two must agree, and the
/// path counts as copied if either says so.
struct Unique {
    sorted: Option<Sorted<TaeRow>>,
    held: Option<TaeRow>,
}

impl Unique {
    fn new(sorted: Sorted<TaeRow>) -> Self {
        Unique {
            sorted: Some(sorted),
            held: None,
        }
    }

    /// Up to about [`BATCH`] rows; empty at the end.
    async fn next_batch(&mut self) -> Result<Vec<TaeRow>> {
        let Some(mut sorted) = self.sorted.take() else {
            return Ok(self.held.take().into_iter().collect());
        };
        let (sorted, raw) = tokio::task::spawn_blocking(move || {
            let mut raw = Vec::with_capacity(BATCH);
            for row in sorted.by_ref().take(BATCH) {
                raw.push(row?);
            }
            Ok::<_, mo_br_extsort::Error>((sorted, raw))
        })
        .await
        .map_err(|e| Error::Failed(format!("sorting tae_list: {e}")))?
        .map_err(sort_failed)?;
        let exhausted = raw.len() < BATCH;
        let mut out = Vec::with_capacity(raw.len());
        for row in raw {
            match self.held.as_mut() {
                Some(held) if held.path == row.path => merge_row(held, row)?,
                _ => out.extend(self.held.replace(row)),
            }
        }
        if exhausted {
            out.extend(self.held.take());
        } else {
            self.sorted = Some(sorted);
        }
        Ok(out)
    }
}

fn merge_row(held: &mut TaeRow, row: TaeRow) -> Result<(), Unverified> {
    let file = layout::shared_name(&row.path);
    if held.size != row.size {
        return Err(malformed(
            layout::TAE_LIST,
            format!(
                "{file} is listed twice, {} and {} bytes",
                held.size, row.size
            ),
        ));
    }
    if !held.sha256.is_empty() && !row.sha256.is_empty() && held.sha256 != row.sha256 {
        return Err(malformed(
            layout::TAE_LIST,
            format!("{file} is listed twice with different sha256"),
        ));
    }
    if held.sha256.is_empty() {
        held.sha256 = row.sha256;
    }
    held.need_copy |= row.need_copy;
    Ok(())
}

/// Manifest chunks of [`CHUNK_ENTRIES`] entries, named as the chunks of
/// shards that needed no copy (epoch 0): no agent ever writes them.
struct ChunkWriter<'a> {
    target: &'a dyn Storage,
    entries: Vec<FileEntry>,
    refs: Vec<ChunkRef>,
}

impl<'a> ChunkWriter<'a> {
    fn new(target: &'a dyn Storage) -> Self {
        ChunkWriter {
            target,
            entries: Vec::new(),
            refs: Vec::new(),
        }
    }

    async fn push(&mut self, entry: FileEntry) -> Result<()> {
        self.entries.push(entry);
        if self.entries.len() >= CHUNK_ENTRIES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let name = chunk::manifest_name(self.refs.len(), 0);
        let r = write_chunk(self.target, &name, &self.entries).await?;
        self.entries.clear();
        self.refs.push(r);
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<ChunkRef>> {
        self.flush().await?;
        Ok(self.refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_as_go_writes_it() {
        assert_eq!(
            csv_fields("a,1,,true,5-0").unwrap(),
            ["a", "1", "", "true", "5-0"]
        );
        assert_eq!(
            csv_fields("\"a,b\",\"say \"\"hi\"\"\",x").unwrap(),
            ["a,b", "say \"hi\"", "x"]
        );
        assert_eq!(
            csv_fields("version,0823,").unwrap(),
            ["version", "0823", ""]
        );
        assert_eq!(csv_fields("x\r").unwrap(), ["x"]);
        assert!(csv_fields("\"open").is_none());
        assert!(csv_fields("\"a\"b").is_none());
    }

    #[test]
    fn rows_of_tae_list() {
        let sha = "ab".repeat(32);
        let row = parse_row(format!("obj_00001,10,{sha},true,1-0").as_bytes(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            row,
            TaeRow {
                path: "obj_00001".into(),
                size: 10,
                need_copy: true,
                sha256: sha.clone()
            }
        );
        let not_copied = parse_row(b"obj_2,7,,false,1-0", 2).unwrap().unwrap();
        assert!(!not_copied.need_copy && not_copied.sha256.is_empty());
        assert_eq!(parse_row(b"  ", 3).unwrap(), None);
        for bad in [
            "../../etc/passwd,1,,true,1-0",
            "/abs,1,,true,1-0",
            "a,-1,,true,1-0",
            "a,1,xyz,true,1-0",
            "a,1,,maybe,1-0",
            "a,1,,true",
        ] {
            let e = parse_row(bad.as_bytes(), 9).unwrap_err();
            assert!(e.to_string().contains("line 9"), "{bad}: {e}");
        }
        // Spilled and read back the same.
        let mut bytes = Vec::new();
        row.encode(&mut bytes);
        assert_eq!(TaeRow::decode(&bytes), Some(row));
        assert_eq!(TaeRow::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn names_and_cut() {
        assert_eq!(
            config_file_name("tn.toml_0191a2b3-0000-7000-8000-00000000000f"),
            "tn.toml"
        );
        assert_eq!(config_file_name("my_conf"), "my_conf");
        assert_eq!(
            cut_of(b"2026-01-01 00:00:00,123,1732000000000000000-1,full\n").unwrap(),
            "1732000000000000000-1"
        );
        assert!(cut_of(b"2026-01-01 00:00:00,123,,full\n").is_err());
        assert_eq!(kind_of("ckp/meta_0-0_1-0.ckp"), FileKind::Checkpoint);
        assert_eq!(kind_of("gc/gc_1-0_2-0.ckp"), FileKind::Gc);
        assert_eq!(kind_of("0191a2b3_00001"), FileKind::Object);
    }

    /// A place holding what MatrixOne's BACKUP writes, and a record for it.
    struct Written {
        _dir: tempfile::TempDir,
        storage: Box<dyn Storage>,
        record: BackupRecord,
    }

    async fn place(id: &str) -> Written {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::Filesystem {
            path: dir.path().to_path_buf(),
        };
        let storage = mo_br_storage::open(&location, &Credentials::default())
            .await
            .unwrap();
        let record = BackupRecord {
            id: id.into(),
            location,
            backup_type: mo_br_format::manifest::BackupType::Full,
            consistency: Consistency::Online,
            base_id: None,
            state: BackupState::Running,
            at_time: "2026-01-01T00:00:00Z".into(),
            complete_time: None,
            duration_secs: 0.0,
            size: 0,
            files: 0,
            backup_ts: String::new(),
            data_dir: String::new(),
            method: BackupMethod::Matrixone,
            schedule: None,
            replica_of: None,
        };
        Written {
            _dir: dir,
            storage,
            record,
        }
    }

    async fn put(w: &Written, name: &str, data: &[u8], sidecar: bool) {
        w.storage
            .put_bytes(name, Bytes::copy_from_slice(data))
            .await
            .unwrap();
        if sidecar {
            w.storage
                .put_bytes(
                    &layout::sidecar(name),
                    Bytes::copy_from_slice(&mo::sha256(data)),
                )
                .await
                .unwrap();
        }
    }

    /// MatrixOne's metadata files, with `rows` as tae_list.
    async fn metadata(w: &Written, rows: &str, cut: &str) {
        put(
            w,
            layout::MO_META,
            b"version,0823,\nbuildinfo,GoVersion: x,\nlaunchconfig,dn,tn.toml_0191a2b3-0000-7000-8000-00000000000f\n",
            true,
        )
        .await;
        put(
            w,
            "config/tn.toml_0191a2b3-0000-7000-8000-00000000000f",
            b"[[fileservice]]\n",
            true,
        )
        .await;
        put(w, layout::HK_DATA, b"\x08\x80\x89\x7a", true).await;
        put(
            w,
            layout::TAE_SUM,
            format!("2026-01-01 00:00:00,10,{cut},full\n").as_bytes(),
            true,
        )
        .await;
        put(w, layout::TAE_LIST, rows.as_bytes(), true).await;
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(mo::sha256(data))
    }

    /// Runs `index` with tiny sort runs, so the rows spill and merge.
    async fn run_index(w: &Written, base: Option<&Base>) -> Result<BackupMeta> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let out = index(Index {
            target: w.storage.as_ref(),
            record: &w.record,
            base,
            verify_at_once: 4,
            sort_run: 7,
            events: &tx,
        })
        .await;
        drop(tx);
        drain.await.unwrap();
        out
    }

    async fn all_entries(storage: &dyn Storage, meta: &BackupMeta) -> Vec<FileEntry> {
        let mut out = Vec::new();
        for r in &meta.chunks {
            out.extend(
                super::super::read_chunk::<FileEntry>(storage, r)
                    .await
                    .unwrap(),
            );
        }
        out
    }

    #[tokio::test]
    async fn unordered_and_repeated_rows_become_sorted_chunks() {
        let w = place("full").await;
        // MatrixOne lists in the order its copy workers finish, and lists an
        // object its GC metadata names a second time. 600 names twice and
        // one once: a repeated pair straddles the 1024-row batches.
        let mut rows = Vec::new();
        for i in (0..600).rev() {
            let name = format!("0190-{i:04}_00001");
            let data = format!("object {i}");
            put(&w, &format!("tae/{name}"), data.as_bytes(), false).await;
            rows.push(format!(
                "{name},{},{},true,1-0",
                data.len(),
                sha(data.as_bytes())
            ));
            // The second listing without a checksum, as for GC copies.
            rows.insert(rows.len() / 2, format!("{name},{},,true,1-0", data.len()));
        }
        put(&w, "tae/0000-first_00001", b"first", false).await;
        rows.push(format!("0000-first_00001,5,{},true,1-0", sha(b"first")));
        // A checkpoint file MatrixOne rewrote at the cut: no checksum.
        put(&w, "tae/ckp/meta_0-0_5-0.ckp", b"ckp", false).await;
        rows.insert(7, "ckp/meta_0-0_5-0.ckp,3,,true,5-0".into());
        metadata(&w, &(rows.join("\n") + "\n"), "5-0").await;

        let meta = run_index(&w, None).await.unwrap();
        assert_eq!(meta.backup_ts, "5-0");
        assert_eq!(meta.shared_backend, "DISK-V2");
        let entries = all_entries(w.storage.as_ref(), &meta).await;
        assert_eq!(
            entries.len(),
            600 + 1 + 1 + 1,
            "every path once, and the config"
        );
        let shared: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind.is_shared())
            .map(|e| e.name.as_str())
            .collect();
        let mut sorted = shared.clone();
        sorted.sort();
        assert_eq!(shared, sorted, "SHARED entries sorted by name");
        assert_eq!(shared[0], "0000-first_00001");
        let ckp = entries
            .iter()
            .find(|e| e.kind == FileKind::Checkpoint)
            .unwrap();
        assert_eq!(ckp.sha256, sha(b"ckp"), "the stored bytes' sha256");
        let config = entries.last().unwrap();
        assert_eq!(
            (config.kind, config.name.as_str(), config.role.as_deref()),
            (FileKind::Config, "tn.toml", Some("dn"))
        );
        assert!(entries.iter().all(|e| e.need_copy));
        let kinds: Vec<FileKind> = meta.files.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FileKind::Hakeeper,
                FileKind::Meta,
                FileKind::Meta,
                FileKind::Meta
            ]
        );
        assert_eq!(meta.file_count(), 603 + 1, "data files and hk_data");
        // What restores and checks read back.
        assert_eq!(BackupMeta::from_bytes(&meta.to_bytes()).unwrap(), meta);
    }

    #[tokio::test]
    async fn an_incremental_takes_what_matrixone_did_not_copy_from_the_base() {
        let base_place = place("base").await;
        let mut rows = String::new();
        for name in ["a_00001", "b_00001"] {
            put(&base_place, &format!("tae/{name}"), name.as_bytes(), false).await;
            rows.push_str(&format!("{name},7,{},true,1-0\n", sha(name.as_bytes())));
        }
        metadata(&base_place, &rows, "5-0").await;
        let base_meta = run_index(&base_place, None).await.unwrap();
        let base = Base {
            meta: base_meta,
            storage: mo_br_storage::open(&base_place.record.location, &Credentials::default())
                .await
                .unwrap(),
        };

        let w = place("inc").await;
        put(&w, "tae/c_00001", b"c_00001", false).await;
        let rows = format!(
            "c_00001,7,{},true,9-0\nb_00001,7,,false,1-0\n",
            sha(b"c_00001")
        );
        metadata(&w, &rows, "9-0").await;
        let meta = run_index(&w, Some(&base)).await.unwrap();
        let entries = all_entries(w.storage.as_ref(), &meta).await;
        let b = entries.iter().find(|e| e.name == "b_00001").unwrap();
        assert!(!b.need_copy);
        assert_eq!(b.origin.as_deref(), Some("base"));
        assert_eq!(b.sha256, sha(b"b_00001"), "the base's sha256, kept");
        assert_eq!(meta.chain.len(), 1);
        assert_eq!(meta.base_id.as_deref(), Some("base"));

        // Not in the chain, or of another size: refused.
        for rows in ["z_00001,7,,false,1-0\n", "a_00001,8,,false,1-0\n"] {
            let w = place("inc2").await;
            metadata(&w, rows, "9-0").await;
            let e = run_index(&w, Some(&base)).await.unwrap_err();
            assert!(
                matches!(e, Error::Unverified(Unverified::NotInChain { .. })),
                "{e}"
            );
        }
        // Without a base nothing can be left uncopied.
        let w = place("full2").await;
        metadata(&w, "a_00001,7,,false,1-0\n", "9-0").await;
        let e = run_index(&w, None).await.unwrap_err();
        assert!(
            matches!(e, Error::Unverified(Unverified::NotInChain { .. })),
            "{e}"
        );
    }

    #[tokio::test]
    async fn what_does_not_match_is_refused() {
        let good = sha(b"object");
        let cases: [(&str, &str, &[u8]); 4] = [
            ("corrupt", "x_00001,6,{good},true,1-0\n", b"objecT"),
            ("short", "x_00001,7,{good},true,1-0\n", b"object"),
            ("missing", "x_00001,6,{good},true,1-0\n", b""),
            ("ok", "x_00001,6,{good},true,1-0\n", b"object"),
        ];
        for (what, rows, stored) in cases {
            let w = place(what).await;
            if !stored.is_empty() {
                put(&w, "tae/x_00001", stored, false).await;
            }
            metadata(&w, &rows.replace("{good}", &good), "5-0").await;
            let got = run_index(&w, None).await;
            match what {
                "corrupt" => assert!(
                    matches!(got, Err(Error::Unverified(Unverified::Corrupt { .. }))),
                    "{got:?}"
                ),
                "short" => assert!(
                    matches!(got, Err(Error::Unverified(Unverified::Size { .. }))),
                    "{got:?}"
                ),
                "missing" => assert!(
                    matches!(got, Err(Error::Unverified(Unverified::Missing { .. }))),
                    "{got:?}"
                ),
                _ => assert!(got.is_ok(), "{got:?}"),
            }
        }
        // A tae_list that is not what its sidecar says.
        let w = place("list").await;
        metadata(&w, "", "5-0").await;
        put(&w, layout::TAE_LIST, b"x_00001,6,,true,1-0\n", false).await;
        let e = run_index(&w, None).await.unwrap_err();
        assert!(
            matches!(e, Error::Unverified(Unverified::Sidecar { .. })),
            "{e}"
        );
        // A framed (legacy DISK) sidecar.
        let w = place("framed").await;
        metadata(&w, "", "5-0").await;
        let mut framed = vec![1, 2, 3, 4];
        framed.extend_from_slice(&mo::sha256(b"\x08\x80\x89\x7a"));
        put(&w, &layout::sidecar(layout::HK_DATA), &framed, false).await;
        let e = run_index(&w, None).await.unwrap_err();
        assert!(
            matches!(e, Error::Unverified(Unverified::Framed { len: 36, .. })),
            "{e}"
        );
        assert!(e.to_string().contains("agents"), "{e}");
    }

    #[test]
    fn a_framed_sidecar_is_told_apart() {
        let sum = mo::sha256(b"x");
        assert!(check_sidecar("f", &sum, &sum).is_ok());
        let mut framed = vec![0u8; 4];
        framed.extend_from_slice(&sum);
        assert!(matches!(
            check_sidecar("f", &framed, &sum),
            Err(Unverified::Framed { len: 36, .. })
        ));
        assert!(matches!(
            check_sidecar("f", &mo::sha256(b"y"), &sum),
            Err(Unverified::Sidecar { .. })
        ));
        assert!(matches!(
            check_sidecar("f", &[], &sum),
            Err(Unverified::Malformed { .. })
        ));
    }
}
