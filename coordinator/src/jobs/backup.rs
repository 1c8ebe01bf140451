//! A physical backup: inventory the node, plan (incrementals take unchanged
//! objects from their base chain), copy in shards on agents, then write
//! MatrixOne's metadata files and, last, `backup_meta`: the commit point.
//! A failed or cancelled backup removes what it wrote and is recorded as
//! failed with its reason; it never looks complete.
//!
//! Nothing here holds the files of a backup at once. The inventory streams
//! sorted by name; planning merges it with the base chain's manifest (sorted
//! the same way) a chunk at a time and writes the plan as chunks into the
//! backup location; the catalog records each chunk's reference. Each shard
//! is one plan chunk: the agent's results go into a manifest chunk, and
//! `tae_list` is written from those chunks as a stream.

use std::collections::VecDeque;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mo_br_format::chunk::{self, ChunkRef, PlanEntry};
use mo_br_format::compression::Compression;
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{
    BackupMeta, BackupType, ChainLink, Consistency, FileEntry, FORMAT_VERSION,
};
use mo_br_format::mo::{self, Hlc};
use mo_br_proto::agent::{FileDone, FileKind as WireKind, FileTask, InventoryRequest};
use mo_br_proto::common::{
    storage, Compression as WireCompression, FsStorage, Source, Storage as WireStorage,
};
use mo_br_proto::coordinator::{
    job_event, BackupRequest, BackupType as WireBackupType, Finished, Started,
};
use mo_br_storage::{Credentials, Location, Storage};
use tokio::sync::mpsc;

use super::shards::{self, CopyOp, Op, RunOptions, Shard};
use super::{
    chunk_bytes_kept, emit, info, line, now_rfc3339, read_chunk_kept, read_chunks, read_manifest,
    remove_all, wire_enum, write_chunk_kept, Events,
};
use crate::agents::Eligibility;
use crate::catalog::{
    Applied, BackupJob, BackupMethod, BackupRecord, BackupState, Command, ShardState,
};
use crate::matrixone::{BackupStatement, MoConn, MoLogin};
use crate::{online, Coordinator, Error, Result};

/// A shard closes at this many files to copy, or at the coordinator's
/// shard bytes, or at [`CHUNK_ENTRIES`] entries in all (most of an
/// incremental's entries are taken from its base and cost nothing to run).
const SHARD_FILES: u64 = shards::SHARD_FILES as u64;
const CHUNK_ENTRIES: usize = 4096;
/// A run of this many entries taken from the base chain, met by a file to
/// copy, is cut as a shard of its own (done when planned): the shard that
/// copies then holds little beyond its copies (an incremental's new objects
/// are mostly the newest names, so together), and neither its plan nor its
/// results rewrite thousands of entries taken from the base.
const REUSED_RUN: usize = 1024;
/// Plan chunks encoded and stored at once while the merge goes on: the
/// merge outruns one writer (a chunk of 4,096 entries is ~3 ms to encode
/// and ~1 MB to send).
const CUTS_AT_ONCE: usize = 3;
/// Base entries read ahead of the merge while the agent walks the node, at
/// most (a few MB).
const AHEAD_ENTRIES: usize = 16_384;
/// Shards' plans read ahead of the agents taking them.
const PLANS_AHEAD: usize = 8;
/// Manifest chunks decoded and rendered into `tae_list` at once (each a
/// few MB while it is).
const RENDERS_AT_ONCE: usize = 2;
/// Deletes of unreferenced chunks sent at once before a commit.
const DELETES_AT_ONCE: usize = 16;

/// What `req` asks for with `--compression`; `None`: store files raw.
pub(super) fn requested_compression(req: &BackupRequest) -> Result<Option<Compression>> {
    match &req.compression {
        None => Ok(None),
        Some(c) => c
            .to_format()
            .map_err(|e| Error::InvalidArgument(format!("--compression: {e}"))),
    }
}

pub async fn run(c: &Coordinator, req: BackupRequest, events: &Events) -> Result<()> {
    run_as(c, req, Origin::default(), events).await
}

/// Who asked for a backup: by hand (a fresh id, no schedule), or a
/// schedule's run, whose id was decided when its slot was fired.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub id: Option<String>,
    pub schedule: Option<String>,
}

pub async fn run_as(
    c: &Coordinator,
    mut req: BackupRequest,
    origin: Origin,
    events: &Events,
) -> Result<()> {
    let compression = requested_compression(&req)?;
    // `--host` without a node's files: agents registered for that MatrixOne
    // name the node; without one, MatrixOne's own BACKUP takes it.
    let no_files = req
        .source
        .as_ref()
        .is_none_or(|s| s.data_dir.is_empty() && s.launch_config.is_empty());
    let wire_login = req.login.clone().filter(|l| !l.host.is_empty());
    if req.dry_run && wire_login.is_some() {
        // Its cut needs MatrixOne's GC held and a checkpoint forced.
        return Err(Error::InvalidArgument(
            "--dry_run is for backups of a stopped node's files (without --host) for now".into(),
        ));
    }
    if let (true, Some(wire_login)) = (no_files, wire_login) {
        let login = MoLogin::from_wire(&wire_login)?;
        let node = req
            .source
            .as_ref()
            .map(|s| s.node.clone())
            .unwrap_or_default();
        match source_for_matrixone(c, &login, &node).await? {
            Some(source) => req.source = Some(source),
            None => {
                if let Some(asked) = compression {
                    return Err(Error::InvalidArgument(format!(
                        "--compression {asked}: no agent serves this MatrixOne's files, so its own BACKUP statement would take the backup, and it stores files as they are (it takes a 'compression' option and ignores it); start agents with --matrixone, or back up with --compression none"
                    )));
                }
                return super::mo_backup::run(c, req, login, origin, events).await;
            }
        }
    }
    let at_time = now_rfc3339();
    let source = req
        .source
        .clone()
        .filter(|s| !s.data_dir.is_empty() || !s.launch_config.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument(
                "--data_dir is required: the node's mo-data directory (with a SHARED store on S3, --launch_config is enough for an online backup)".into(),
            )
        })?;
    let Prepared {
        location,
        creds,
        target,
        backup_type,
        base,
    } = prepare(c, &req).await?;

    if req.dry_run {
        require_empty(target.as_ref()).await?;
        return dry_run(c, &req, &source, base.as_ref(), events).await;
    }
    let source_creds = Credentials {
        access_key_id: req.source_access_key_id.clone(),
        secret_access_key: req.source_secret_access_key.clone(),
        ..Default::default()
    };
    let id = origin
        .id
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let login = req
        .login
        .as_ref()
        .filter(|l| !l.host.is_empty())
        .map(MoLogin::from_wire)
        .transpose()?;
    let record = BackupRecord {
        id: id.clone(),
        location,
        backup_type,
        consistency: if login.is_some() {
            Consistency::Online
        } else {
            Consistency::Cold
        },
        base_id: base.as_ref().map(|b| b.meta.id.clone()),
        state: BackupState::Running,
        at_time,
        complete_time: None,
        duration_secs: 0.0,
        size: 0,
        files: 0,
        backup_ts: String::new(),
        data_dir: source.data_dir.clone(),
        method: BackupMethod::Agents,
        schedule: origin.schedule,
        replica_of: None,
    };
    // Claimed before the plan is visible, so the supervisor does not adopt
    // the job this call is about to drive itself.
    let _claim = c.claim(&id);
    let Some(login) = login else {
        let planned = plan(
            c,
            &req,
            &source,
            &record,
            base.as_ref(),
            target.as_ref(),
            None,
        )
        .await;
        if let Err(e) = planned {
            // Bad input fails before anything is recorded; a failure after
            // the backup went on record must not leave it "running".
            let want = id.clone();
            let started = c
                .catalog
                .read(move |cat| cat.backups.contains_key(&want))
                .await
                .unwrap_or(false);
            return Err(if started {
                fail(c, &id, None, Some(target.as_ref()), e).await
            } else {
                e
            });
        }
        return drive(c, &id, &creds, &source_creds, None, true, events).await;
    };

    // Online: HAKeeper's watermarks come from MatrixOne's BACKUP into the
    // target at the end; a target it cannot be given (temporary S3 keys)
    // is refused now, not after every shard is copied.
    super::mo_backup::into_location(&record.location, &creds, "")?;
    require_empty(target.as_ref()).await?;
    // The backup is on record before MatrixOne's GC is touched, so that
    // whatever happens next, some leader releases it.
    let mut conn = online::connect(&login).await?;
    c.catalog
        .propose(Command::BackupStarted(Box::new(record.clone())))
        .await?;
    let planned = async {
        online::hold(c, &id, &login, &mut conn).await?;
        online::checkpoint(&mut conn).await?;
        plan(
            c,
            &req,
            &source,
            &record,
            base.as_ref(),
            target.as_ref(),
            Some(&mut conn),
        )
        .await
    }
    .await;
    if let Err(e) = planned {
        return Err(fail(c, &id, Some(&login), Some(target.as_ref()), e).await);
    }
    drive(c, &id, &creds, &source_creds, Some(login), true, events).await
}

/// A backup's plan without the backup: the node's inventory compared with
/// the base chain as [`plan`] does, counted, and nothing recorded or
/// written.
async fn dry_run(
    c: &Coordinator,
    req: &BackupRequest,
    source: &Source,
    base: Option<&Base>,
    events: &Events,
) -> Result<()> {
    let agent = c.agents.node_agent(&source.data_dir, &source.node).await?;
    let agent_err = |detail: String| Error::Agent {
        agent: agent.name.clone(),
        detail,
    };
    let mut inv = agent
        .client
        .clone()
        .inventory(inventory_request(c, req, source, false))
        .await
        .map_err(|s| agent_err(s.message().to_string()))?
        .into_inner();
    let mut base_objects = base.map(BaseObjects::new);
    let (mut copy, mut copy_bytes, mut reused, mut reused_bytes, mut configs) =
        (0u64, 0, 0u64, 0, 0);
    while let Some(batch) = inv
        .next()
        .await
        .transpose()
        .map_err(|s| agent_err(s.message().to_string()))?
    {
        for f in batch.files {
            let kind = WireKind::try_from(f.kind);
            let from_base = match (&mut base_objects, kind) {
                (Some(objects), Ok(WireKind::Object)) => objects
                    .find(&f.name)
                    .await?
                    .filter(|prev| prev.size == f.size),
                _ => None,
            };
            if from_base.is_some() {
                reused += 1;
                reused_bytes += f.size;
            } else {
                copy += 1;
                copy_bytes += f.size;
                configs += u64::from(kind == Ok(WireKind::Config));
            }
        }
    }
    // One PUT per copied file and per config's sidecar; a plan and a
    // manifest chunk per shard; mo_meta, tae_list, tae_sum and
    // backup_meta with their sidecars.
    let shards = copy
        .div_ceil(SHARD_FILES)
        .max(copy_bytes.div_ceil(c.shard_bytes.max(1)))
        .max(1);
    let requests = copy + configs + 2 * shards + 8;
    let rate = super::dry_run::throughput(c).await?;
    for l in [
        format!("files: {}", copy + reused),
        format!("files to copy: {copy}"),
        format!("bytes to copy: {copy_bytes}"),
        format!("files from the base chain: {reused} ({reused_bytes} bytes)"),
        format!("write requests: about {requests}"),
        super::dry_run::estimate(copy_bytes, rate),
    ] {
        line(events, l).await;
    }
    super::dry_run::finish(
        events,
        "dry run: nothing was recorded or written".to_string(),
    )
    .await
}

/// The backup an incremental builds on: its verified manifest header and
/// where its chunks are read.
pub(super) struct Base {
    pub(super) meta: BackupMeta,
    pub(super) storage: Box<dyn Storage>,
}

/// What every backup checks before anything is recorded: the target (open,
/// reachable, empty), the type and, for an incremental, its base.
pub(super) struct Prepared {
    pub(super) location: Location,
    pub(super) creds: Credentials,
    pub(super) target: Box<dyn Storage>,
    pub(super) backup_type: BackupType,
    pub(super) base: Option<Base>,
}

fn inventory_request(
    c: &Coordinator,
    req: &BackupRequest,
    source: &Source,
    online: bool,
) -> InventoryRequest {
    InventoryRequest {
        source: Some(source.clone()),
        online,
        source_access_key_id: req.source_access_key_id.clone(),
        source_secret_access_key: req.source_secret_access_key.clone(),
        term: c.catalog.leadership().term,
    }
}

/// Refuses a target that holds anything: a backup goes into an empty
/// directory or prefix. [`prepare`] leaves this to its callers, so that it
/// can run beside the first wait of the plan.
pub(super) async fn require_empty(target: &dyn Storage) -> Result<()> {
    if let Some(first) = target.first_under("").await? {
        return Err(Error::FailedPrecondition(format!(
            "backup target {} is not empty (it holds {first}); back up into an empty directory or prefix",
            target.describe(),
        )));
    }
    Ok(())
}

pub(super) async fn prepare(c: &Coordinator, req: &BackupRequest) -> Result<Prepared> {
    let target_wire = req
        .target
        .clone()
        .ok_or_else(|| Error::InvalidArgument("--backup_dir is required".into()))?;
    let (location, creds) = target_wire.to_location().map_err(Error::InvalidArgument)?;
    let backup_type: BackupType =
        wire_enum::<WireBackupType>("BackupRequest.backup_type", req.backup_type)?.into();

    let base = match backup_type {
        BackupType::Full => None,
        BackupType::Incremental => {
            if req.base_id.is_empty() {
                return Err(Error::InvalidArgument(
                    "--backup_type incremental needs --base_id".into(),
                ));
            }
            let base_id = req.base_id.clone();
            let rec = c
                .catalog
                .read(move |cat| cat.backups.get(&base_id).cloned())
                .await?
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "base backup {} not found in the catalog",
                        req.base_id
                    ))
                })?;
            if rec.state != BackupState::Complete {
                return Err(Error::FailedPrecondition(format!(
                    "base backup {} is {}, not complete",
                    rec.id, rec.state
                )));
            }
            Some(rec)
        }
    };

    let target =
        mo_br_storage::open_with(&location, &creds, &super::open_options(req.retry_window_ms))
            .await?;
    target.probe().await?;

    let base = match base {
        None => None,
        Some(rec) => {
            let base_creds = if req.base_access_key_id.is_empty() {
                creds.clone()
            } else {
                Credentials {
                    access_key_id: req.base_access_key_id.clone(),
                    secret_access_key: req.base_secret_access_key.clone(),
                    ..Default::default()
                }
            };
            let storage = mo_br_storage::open(&rec.location, &base_creds).await?;
            let meta = read_manifest(storage.as_ref())
                .await
                .map_err(|e| Error::FailedPrecondition(format!("base backup {}: {e}", rec.id)))?;
            Some(Base { meta, storage })
        }
    };
    Ok(Prepared {
        location,
        creds,
        target,
        backup_type,
        base,
    })
}

/// The node of the MatrixOne at `login` that agents registered for it
/// serve (`mo-br-agent --matrixone host:port`), of `node` if given; `None`
/// when no agent names that MatrixOne, or none of those is alive within the
/// absence limit (the backup then goes through MatrixOne's own statement,
/// and `list --json` says so).
async fn source_for_matrixone(
    c: &Coordinator,
    login: &MoLogin,
    node: &str,
) -> Result<Option<Source>> {
    let (host, port) = (login.host.clone(), login.port);
    let registered: Vec<String> = c
        .catalog
        .read(move |cat| {
            cat.agents
                .values()
                .filter(|a| crate::agents::names_matrixone(&a.matrixone, &host, port))
                // An agent that serves no files of its node cannot back it up.
                .filter(|a| !a.data_dir.is_empty() || !a.launch_config.is_empty())
                .map(|a| a.id.clone())
                .collect()
        })
        .await?;
    if registered.is_empty() {
        return Ok(None);
    }
    match c.agents.live_one_of(&registered, node).await {
        Some(a) => Ok(Some(Source {
            data_dir: a.data_dir,
            launch_config: a.launch_config,
            node: a.node,
        })),
        None => {
            tracing::warn!(
                "agents {} are registered for MatrixOne {}:{} but none{} is alive: backing up with MatrixOne's BACKUP statement",
                registered.join(", "),
                login.host,
                login.port,
                if node.is_empty() { String::new() } else { format!(" of node {node}") }
            );
            Ok(None)
        }
    }
}

/// Inventories the node and records the plan of backup `record` (already
/// recorded as started for an online backup, whose GC `online` holds; a
/// cold one goes on record once the agent answers). The plan's chunks are
/// written into `target` as the listing streams in.
async fn plan(
    c: &Coordinator,
    req: &BackupRequest,
    source: &Source,
    record: &BackupRecord,
    base: Option<&Base>,
    target: &dyn Storage,
    mut online: Option<&mut MoConn>,
) -> Result<()> {
    let agent = c.agents.node_agent(&source.data_dir, &source.node).await?;
    let agent_err = |detail: String| Error::Agent {
        agent: agent.name.clone(),
        detail,
    };
    let inventory = async {
        let mut inv = agent
            .client
            .clone()
            .inventory(inventory_request(c, req, source, online.is_some()))
            .await
            .map_err(|s| agent_err(s.message().to_string()))?
            .into_inner();
        let first = inv
            .next()
            .await
            .transpose()
            .map_err(|s| agent_err(s.message().to_string()))?
            .ok_or_else(|| agent_err("the inventory ended before it began".into()))?;
        Ok::<_, Error>((inv, first))
    };
    // While the agent walks the node (its first answer comes once its
    // listing is sorted): the target's emptiness (an online backup checked
    // it before going on record) and the base's first chunks, each a round
    // trip or more. Nothing is written before all three are in.
    let mut base_objects = base.map(BaseObjects::new);
    let empty = async {
        match online {
            Some(_) => Ok(()),
            None => require_empty(target).await,
        }
    };
    let ready = async { futures::try_join!(inventory, empty) };
    let ((mut inv, first), ()) = match base_objects.as_mut() {
        Some(objects) => objects.reading_while(ready).await?,
        None => ready.await?,
    };
    let shared_backend = first.shared_backend.clone();
    let shared_dir = first.shared_dir.clone();
    let shared_source = match &first.shared_store {
        Some(wire) => Some(wire.to_location().map_err(agent_err)?.0),
        None => None,
    };
    if online.is_none() && shared_source.is_none() && source.data_dir.is_empty() {
        return Err(Error::InvalidArgument(
            "--data_dir is required: SHARED is on the node's disk".into(),
        ));
    }
    if let Some(base) = base {
        if base.meta.shared_backend != shared_backend {
            return Err(Error::FailedPrecondition(format!(
                "base backup {} is of a {} SHARED store, this node's is {}",
                base.meta.id, base.meta.shared_backend, shared_backend
            )));
        }
    }
    // The cut: the newest checkpoint's end (for an online backup, of the
    // checkpoint just forced); later ckp/ and gc/ files could reference
    // objects this backup does not hold.
    let backup_ts = if first.backup_ts.is_empty() {
        Hlc {
            physical: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            logical: 0,
        }
        .to_string()
    } else {
        first.backup_ts.clone()
    };
    let cut: Option<Hlc> = backup_ts.parse().ok();
    if online.is_none() {
        c.catalog
            .propose(Command::BackupStarted(Box::new(record.clone())))
            .await?;
    }

    let (mut writer, stored) = plan_writer(target, c.shard_bytes);
    let online_now = online.is_some();
    let merge = async move {
        let mut order = OrderCheck::default();
        let mut batch = Some(first);
        while let Some(b) = batch.take() {
            for f in b.files {
                let kind = match WireKind::try_from(f.kind) {
                    Ok(WireKind::Object) => FileKind::Object,
                    Ok(WireKind::Checkpoint) => FileKind::Checkpoint,
                    Ok(WireKind::Gc) => FileKind::Gc,
                    Ok(WireKind::Config) => FileKind::Config,
                    Ok(WireKind::Logservice) => FileKind::Logservice,
                    _ => {
                        return Err(agent_err(format!(
                            "inventory names {} with an unknown kind",
                            f.name
                        )))
                    }
                };
                order.check(kind, &f.name).map_err(agent_err)?;
                if online_now && !online_takes(kind, &f.name, cut) {
                    continue;
                }
                // MatrixOne objects are immutable and never renamed: one of
                // the same name and size in the chain is the same object.
                let from_base = match (&mut base_objects, kind) {
                    (Some(objects), FileKind::Object) => objects
                        .find(&f.name)
                        .await?
                        .filter(|prev| prev.size == f.size),
                    _ => None,
                };
                let planned = match from_base {
                    Some(prev) => PlanEntry {
                        entry: FileEntry {
                            need_copy: false,
                            origin: Some(prev.origin.clone().unwrap_or_else(|| {
                                base.map(|b| b.meta.id.clone()).unwrap_or_default()
                            })),
                            ..prev
                        },
                        source: String::new(),
                    },
                    None => PlanEntry {
                        entry: FileEntry {
                            kind,
                            path: match kind {
                                FileKind::Config => {
                                    layout::config_name(&f.name, &uuid::Uuid::now_v7())
                                }
                                FileKind::Logservice => layout::logservice_name(&f.name),
                                _ => layout::shared_name(&f.name),
                            },
                            name: f.name,
                            size: f.size,
                            sha256: String::new(),
                            need_copy: true,
                            origin: None,
                            role: (!f.role.is_empty()).then_some(f.role),
                            stored: None,
                        },
                        source: f.source_path,
                    },
                };
                writer.push(planned, !kind.is_shared()).await?;
            }
            batch = inv
                .next()
                .await
                .transpose()
                .map_err(|s| agent_err(s.message().to_string()))?;
        }
        writer.finish().await
    };
    let ((), shards) = futures::try_join!(merge, stored)?;

    let mut chain = Vec::new();
    if let Some(base) = base {
        chain.push(ChainLink {
            id: base.meta.id.clone(),
            location: base.meta.location.clone(),
        });
        chain.extend(base.meta.chain.iter().cloned());
    }
    let meta = BackupMeta {
        format: FORMAT_VERSION,
        id: record.id.clone(),
        backup_type: record.backup_type,
        consistency: record.consistency,
        base_id: base.map(|b| b.meta.id.clone()),
        chain,
        location: record.location.clone(),
        backup_ts: backup_ts.clone(),
        started_at: record.at_time.clone(),
        completed_at: String::new(),
        source_data_dir: source.data_dir.clone(),
        source_launch_config: source.launch_config.clone(),
        shared_backend,
        shared_dir,
        stored_size: 0,
        total_size: 0,
        files: vec![],
        chunks: vec![],
        replica_of: None,
        compression: requested_compression(req)?,
        schedule: record.schedule.clone(),
    };
    let job = BackupJob {
        id: record.id.clone(),
        meta,
        shards,
        source_keys: shared_source.is_some() && !req.source_access_key_id.is_empty(),
        shared_source,
        parallelism: req.parallelism,
        retry_window_ms: req.retry_window_ms,
        max_requests_per_sec: req.max_requests_per_sec,
        node: agent.node.clone(),
        committing: None,
    };
    if let Some(conn) = online.as_mut() {
        online::protect(c, &record.id, conn, &backup_ts).await?;
    }
    if let Applied::Rejected(why) = c
        .catalog
        .propose(Command::BackupPlanned(Box::new(job)))
        .await?
    {
        return Err(Error::Failed(why));
    }
    Ok(())
}

/// What an online backup takes: not logservice-data (not safely copyable
/// file by file while the node runs), and no ckp/ or gc/ file that ends
/// after the cut (it could reference objects the backup does not hold).
/// The agent leaves these out already; this holds whatever agent answered.
fn online_takes(kind: FileKind, name: &str, cut: Option<Hlc>) -> bool {
    match kind {
        FileKind::Logservice => false,
        FileKind::Checkpoint | FileKind::Gc => match (mo::name_end_ts(name), cut) {
            (Some(end), Some(cut)) => end <= cut,
            _ => true,
        },
        _ => true,
    }
}

/// Holds an inventory to its order (SHARED files sorted by name, then
/// node-local ones): the merge with the base chain depends on it, and an
/// agent that broke it would make an incremental copy what it need not, or
/// worse, miss the base's copy of an object.
#[derive(Default)]
struct OrderCheck {
    last_shared: Option<String>,
    local: bool,
}

impl OrderCheck {
    fn check(&mut self, kind: FileKind, name: &str) -> std::result::Result<(), String> {
        if !kind.is_shared() {
            self.local = true;
            return Ok(());
        }
        let sorted = !self.local && self.last_shared.as_deref().is_none_or(|last| last < name);
        if !sorted {
            return Err(format!(
                "the inventory is out of order at {name}: upgrade the agent (SHARED files must come first, sorted by name)"
            ));
        }
        self.last_shared = Some(name.to_string());
        Ok(())
    }
}

/// The base chain's objects, read from the base manifest's chunks one at a
/// time in name order, for a merge with the (sorted) inventory.
pub(super) struct BaseObjects<'a> {
    base: &'a Base,
    chunks: BoxStream<'a, Result<Vec<FileEntry>>>,
    buffered: VecDeque<FileEntry>,
    last: Option<String>,
}

impl<'a> BaseObjects<'a> {
    pub(super) fn new(base: &'a Base) -> Self {
        // A format 1 manifest lists its files inline, in no order; such
        // manifests were held whole already.
        let mut inline: Vec<FileEntry> = base
            .meta
            .files
            .iter()
            .filter(|f| f.kind == FileKind::Object)
            .cloned()
            .collect();
        inline.sort_by(|a, b| a.name.cmp(&b.name));
        BaseObjects {
            base,
            chunks: read_chunks(base.storage.as_ref(), &base.meta.chunks),
            buffered: inline.into(),
            last: None,
        }
    }

    /// Runs `work` to its end while the base's first chunks are read (up
    /// to [`AHEAD_ENTRIES`] entries held): their round trips pass while
    /// `work` waits on something else. A base that cannot be read fails it.
    pub(super) async fn reading_while<T>(
        &mut self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let ahead = async {
            while self.buffered.len() < AHEAD_ENTRIES && self.pull().await? {}
            Ok::<_, Error>(())
        };
        futures::pin_mut!(work);
        tokio::select! {
            done = &mut work => return done,
            read = ahead => read?,
        }
        work.await
    }

    /// The base's object named `name`, if it has one. Names asked for must
    /// grow: what lies before `name` is passed over for good.
    pub(super) async fn find(&mut self, name: &str) -> Result<Option<FileEntry>> {
        loop {
            while let Some(front) = self.buffered.front() {
                match front.name.as_str().cmp(name) {
                    std::cmp::Ordering::Less => {
                        self.buffered.pop_front();
                    }
                    std::cmp::Ordering::Equal => return Ok(self.buffered.pop_front()),
                    std::cmp::Ordering::Greater => return Ok(None),
                }
            }
            if !self.pull().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the next chunk's objects into `buffered`; false at the end.
    async fn pull(&mut self) -> Result<bool> {
        let Some(entries) = self.chunks.next().await else {
            return Ok(false);
        };
        let entries = entries.map_err(|e| {
            Error::FailedPrecondition(format!("base backup {}: {e}", self.base.meta.id))
        })?;
        for e in entries.into_iter().filter(|e| e.kind == FileKind::Object) {
            if self.last.as_deref().is_some_and(|l| l >= e.name.as_str()) {
                return Err(Error::FailedPrecondition(format!(
                    "base backup {}: its manifest is not sorted by name at {}",
                    self.base.meta.id, e.name
                )));
            }
            self.last = Some(e.name.clone());
            self.buffered.push_back(e);
        }
        Ok(true)
    }
}

/// Cuts the planned entries into shards, each stored as a chunk by the
/// future [`plan_writer`] hands back with it. A shard holds SHARED files or
/// node-local ones, never both (different agents may take them). A shard
/// with nothing to copy is done when planned: its entries are its results.
struct PlanWriter {
    max_bytes: u64,
    entries: Vec<PlanEntry>,
    node_local: bool,
    copy_files: u64,
    copy_bytes: u64,
    cuts: mpsc::Sender<Cut>,
}

/// A shard's entries on their way to be stored.
struct Cut {
    entries: Vec<PlanEntry>,
    node_local: bool,
    copies: bool,
}

/// A [`PlanWriter`] and the future that stores what it cuts, to be run
/// together: up to [`CUTS_AT_ONCE`] cuts are encoded (on blocking threads)
/// and stored while the merge builds the next, one more waits, and the
/// merge waits beyond that, so memory stays at a few cuts.
fn plan_writer(
    target: &dyn Storage,
    max_bytes: u64,
) -> (
    PlanWriter,
    impl std::future::Future<Output = Result<Vec<ShardState>>> + '_,
) {
    let (cuts, cut) = mpsc::channel::<Cut>(1);
    let writer = PlanWriter {
        max_bytes,
        entries: Vec::new(),
        node_local: false,
        copy_files: 0,
        copy_bytes: 0,
        cuts,
    };
    let stored = tokio_stream::wrappers::ReceiverStream::new(cut)
        .enumerate()
        .map(move |(id, cut)| async move {
            let Cut {
                entries,
                node_local,
                copies,
            } = cut;
            Ok::<_, Error>(if copies {
                ShardState {
                    plan: write_chunk_kept(target, &chunk::plan_name(id), entries).await?,
                    node_local,
                    assignment: None,
                    result: None,
                }
            } else {
                let files: Vec<FileEntry> = entries.into_iter().map(|p| p.entry).collect();
                let r = write_chunk_kept(target, &chunk::manifest_name(id, 0), files).await?;
                ShardState {
                    plan: r.clone(),
                    node_local,
                    assignment: None,
                    result: Some(r),
                }
            })
        })
        .buffered(CUTS_AT_ONCE)
        .try_collect();
    (writer, stored)
}

impl PlanWriter {
    async fn push(&mut self, planned: PlanEntry, node_local: bool) -> Result<()> {
        let f = &planned.entry;
        let full = !self.entries.is_empty()
            && (node_local != self.node_local
                || self.entries.len() >= CHUNK_ENTRIES
                || (f.need_copy && self.copy_files == 0 && self.entries.len() >= REUSED_RUN)
                || (f.need_copy
                    && self.copy_files > 0
                    && (self.copy_files >= SHARD_FILES
                        || self.copy_bytes + f.size > self.max_bytes)));
        if full {
            self.flush().await?;
        }
        self.node_local = node_local;
        if f.need_copy {
            self.copy_files += 1;
            self.copy_bytes += f.size;
        }
        self.entries.push(planned);
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let cut = Cut {
            entries: std::mem::take(&mut self.entries),
            node_local: self.node_local,
            copies: self.copy_files > 0,
        };
        self.copy_files = 0;
        self.copy_bytes = 0;
        // Closed only when the storing future ended, with its error, which
        // is what the plan fails with.
        self.cuts
            .send(cut)
            .await
            .map_err(|_| Error::Failed("the plan's chunks are no longer stored".into()))
    }

    /// Cuts the last shard; the storing future ends once it is stored.
    async fn finish(mut self) -> Result<()> {
        if !self.entries.is_empty() {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Assignments and results of a backup go through the catalog, so that they
/// survive the leader and stale reports are refused by every replica alike.
/// A shard's results become a manifest chunk named for the assignment's
/// epoch, stored before the catalog hears of it.
struct JobLedger<'a> {
    c: &'a Coordinator,
    job: &'a BackupJob,
    target: &'a dyn Storage,
}

#[async_trait::async_trait]
impl shards::Ledger for JobLedger<'_> {
    async fn assign(&self, shard: usize, agent: &str) -> Result<u64> {
        match self
            .c
            .catalog
            .propose(Command::ShardAssigned {
                job: self.job.id.clone(),
                shard,
                agent: agent.to_string(),
            })
            .await?
        {
            Applied::Epoch(e) => Ok(e),
            other => Err(Error::Failed(format!(
                "shard {shard} not assigned: {other:?}"
            ))),
        }
    }

    async fn finish(&self, shard: usize, epoch: u64, done: &[(usize, FileDone)]) -> Result<bool> {
        let state = self
            .job
            .shards
            .get(shard)
            .ok_or_else(|| Error::Failed(format!("no shard {shard}")))?;
        let planned: Vec<PlanEntry> = read_chunk_kept(self.target, &state.plan).await?;
        let mut files: Vec<FileEntry> = planned.into_iter().map(|p| p.entry).collect();
        for (i, d) in done {
            let Some(f) = files.get_mut(*i) else {
                return Err(Error::Failed(format!(
                    "shard {shard}: a result names file {i} of {}",
                    files.len()
                )));
            };
            f.size = d.size;
            f.sha256 = d.sha256.clone();
            f.stored = match &d.stored {
                Some(s) => s
                    .to_format()
                    .map_err(|e| Error::Failed(format!("{}: {e}", f.path)))?,
                None => None,
            };
        }
        if let Some(f) = files.iter().find(|f| f.need_copy && f.sha256.is_empty()) {
            return Err(Error::Failed(format!("{} was never copied", f.path)));
        }
        let chunk =
            write_chunk_kept(self.target, &chunk::manifest_name(shard, epoch), files).await?;
        let applied = self
            .c
            .catalog
            .propose(Command::ShardReported {
                job: self.job.id.clone(),
                shard,
                epoch,
                chunk,
            })
            .await?;
        match applied {
            Applied::Ok => Ok(true),
            Applied::Rejected(why) => {
                tracing::warn!("{why}");
                Ok(false)
            }
            Applied::Epoch(_) => Ok(false),
        }
    }
}

/// Carries a planned backup to its end: copies the shards not done yet,
/// writes MatrixOne's metadata files, then the manifest, then commits it to
/// the catalog. Run by the job that planned the backup and by a new leader
/// adopting it. On failure everything written is removed and the backup is
/// recorded as failed.
pub async fn drive(
    c: &Coordinator,
    id: &str,
    creds: &Credentials,
    source_creds: &Credentials,
    login: Option<MoLogin>,
    watched: bool,
    events: &Events,
) -> Result<()> {
    let want = id.to_string();
    let job = c
        .catalog
        .read(move |cat| cat.jobs.get(&want).cloned())
        .await?
        .ok_or_else(|| Error::Failed(format!("backup {id} has no running job")))?;
    let online = job.meta.consistency == Consistency::Online;
    if online && login.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "backup {id} holds MatrixOne's GC and no password is known here to renew it; re-attach with the password, or give the coordinator a [[matrixone]] entry in its --credentials_file (or MO_BR_MO_PASSWORD)"
        )));
    }
    // The leader driving an online backup renews its checker.
    let renewal = login
        .clone()
        .filter(|_| online)
        .map(|l| online::renew(l, job.meta.backup_ts.clone(), c.gc_renew));
    // The coordinator's own writes (plan and manifest chunks) ride out an
    // outage for as long as the agents' copies do.
    let target = mo_br_storage::open_with(
        &job.meta.location,
        creds,
        &super::open_options(job.retry_window_ms),
    )
    .await?;
    let result = copy_and_commit(
        c,
        &job,
        creds,
        source_creds,
        login.as_ref().filter(|_| online),
        target.as_ref(),
        watched,
        events,
    )
    .await;
    // Whatever comes next (a release, or a new leader's renewals), this
    // leader's renewals are over, the last one answered.
    if let Some(renewal) = renewal {
        renewal.stop().await;
    }
    let meta = match result {
        Ok(meta) => meta,
        Err(e @ (Error::NotLeader(_) | Error::NoQuorum | Error::Shutdown)) => {
            // Leadership moved: the new leader carries the job on (and
            // renews the hold); nothing is removed or released.
            return Err(e);
        }
        Err(e) => {
            let login = login.as_ref().filter(|_| online);
            return Err(fail(c, id, login, Some(target.as_ref()), e).await);
        }
    };
    if let Some(login) = login.as_ref().filter(|_| online) {
        // The manifest is durable: GC may run again. A failed release is
        // retried by the supervisor's duties; the backup is complete either way.
        if let Err(e) = online::release(c, id, login).await {
            tracing::warn!("backup {id}: releasing GC: {e}");
        }
    }

    let rec = record_complete(c, &meta).await?;
    let files = meta.file_count();
    let copied = meta.chunks.iter().map(|r| r.copied_files).sum::<u64>()
        + meta
            .files
            .iter()
            .filter(|f| f.need_copy && f.kind != FileKind::Meta)
            .count() as u64;
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: Some(info(&rec)),
            problems: 0,
            summary: format!(
                "backup {} complete: {} files copied, {} taken from the base chain, {} bytes stored",
                rec.id,
                copied,
                files - copied,
                meta.stored_size
            ),
        }),
    )
    .await;
    Ok(())
}

/// How long the backup of `meta` took, from its manifest's times.
pub(super) fn duration_secs(meta: &BackupMeta) -> f64 {
    chrono::DateTime::parse_from_rfc3339(&meta.completed_at)
        .ok()
        .zip(chrono::DateTime::parse_from_rfc3339(&meta.started_at).ok())
        .map(|(end, start)| (end - start).num_nanoseconds().unwrap_or(0) as f64 / 1e9)
        .unwrap_or(0.0)
}

/// Records the backup of `meta` (committed: its `backup_meta` is stored) as
/// complete in the catalog; returns its record.
pub(super) async fn record_complete(c: &Coordinator, meta: &BackupMeta) -> Result<BackupRecord> {
    let duration_secs = duration_secs(meta);
    c.catalog
        .propose(Command::BackupCompleted {
            id: meta.id.clone(),
            complete_time: meta.completed_at.clone(),
            duration_secs,
            size: meta.stored_size,
            files: meta.file_count(),
            backup_ts: meta.backup_ts.clone(),
        })
        .await?;
    let want = meta.id.clone();
    c.catalog
        .read(move |cat| cat.backups.get(&want).cloned())
        .await?
        .ok_or(Error::Shutdown)
}

/// The shards of `job` not done yet, their files read from their plan
/// chunks only as agents have room for them.
fn pending_shards<'a>(job: &'a BackupJob, target: &'a dyn Storage) -> shards::ShardStream<'a> {
    // Collected first: a stream over a filtering iterator holds a closure
    // over borrowed shards, which the compiler cannot prove Send.
    let pending: Vec<(usize, &ShardState)> = job.pending().collect();
    futures::stream::iter(pending)
        .map(move |(id, state)| async move {
            let planned: Vec<PlanEntry> = read_chunk_kept(target, &state.plan).await?;
            let mut shard = Shard {
                id,
                indexes: Vec::new(),
                files: Vec::new(),
                eligibility: if state.node_local {
                    Eligibility::Node {
                        node: job.node.clone(),
                    }
                } else {
                    Eligibility::Shared
                },
            };
            for (i, p) in planned.into_iter().enumerate() {
                if !p.entry.need_copy {
                    continue;
                }
                let compression = job
                    .meta
                    .compression
                    .filter(|_| Compression::applies_to(p.entry.kind))
                    .map(|c| WireCompression::from_format(&c));
                shard.indexes.push(i);
                shard.files.push(FileTask {
                    src: p.source,
                    dst: p.entry.path,
                    size: p.entry.size,
                    sha256: String::new(),
                    source_id: String::new(),
                    compression,
                    stored: None,
                });
            }
            Ok(shard)
        })
        // Each read waits a round trip: the next shards' are under way
        // while agents take the first. By count: each is held decoded,
        // a thousand tasks or so, until an agent has room for it.
        .buffered(PLANS_AHEAD)
        .boxed()
}

#[allow(clippy::too_many_arguments)]
async fn copy_and_commit(
    c: &Coordinator,
    job: &BackupJob,
    creds: &Credentials,
    source_creds: &Credentials,
    login: Option<&MoLogin>,
    target: &dyn Storage,
    watched: bool,
    events: &Events,
) -> Result<BackupMeta> {
    target.probe().await?;
    let totals = job.totals();
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: job.id.clone(),
            backup_id: job.id.clone(),
            total_bytes: totals.bytes,
            total_files: totals.files,
            what: "backup".into(),
        }),
    )
    .await;

    // Node files are read from the agent's own filesystem, by absolute path.
    let node_root = WireStorage {
        kind: Some(storage::Kind::Fs(FsStorage { path: "/".into() })),
    };
    let ledger = JobLedger { c, job, target };
    let outcome = shards::run(
        &c.agents,
        &ledger,
        Op::Copy(Box::new(CopyOp {
            shared_source: match &job.shared_source {
                Some(location) => WireStorage::from_location(location, source_creds),
                None => node_root.clone(),
            },
            node_source: node_root,
            target: WireStorage::from_location(&job.meta.location, creds),
            launch_config: job.meta.source_launch_config.clone(),
        })),
        pending_shards(job, target),
        RunOptions {
            term: c.catalog.leadership().term,
            parallelism: job.parallelism,
            fail_fast: true,
            stop_without_client: watched,
            report_problems: false,
            base: (totals.bytes_done, totals.files_done),
            retry_window_ms: job.retry_window_ms,
            max_requests_per_sec: job.max_requests_per_sec,
        },
        events,
    )
    .await?;
    if let Some((task, p)) = outcome.first_problem {
        return Err(Error::Failed(format!("copying {}: {}", task.dst, p.detail)));
    }

    if let Some(login) = login {
        if !job.meta.files.iter().any(|f| f.kind == FileKind::Hakeeper) {
            fetch_hakeeper(c, job, target, creds, login).await?;
        }
    }

    // Every shard is done: fix the completion time in the replicated state
    // first, so that whoever writes the manifest writes the same bytes.
    let want = job.id.clone();
    c.catalog
        .propose(Command::JobCommitting {
            job: job.id.clone(),
            completed_at: now_rfc3339(),
        })
        .await?;
    let job = c
        .catalog
        .read(move |cat| cat.jobs.get(&want).cloned())
        .await?
        .ok_or_else(|| Error::Failed("the job vanished from the catalog".into()))?;
    let Some(completed_at) = job.committing.clone() else {
        return Err(Error::Failed("the job has unfinished shards".into()));
    };
    let results: Vec<ChunkRef> = job
        .shards
        .iter()
        .map(|s| s.result.clone())
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Failed("the job has unfinished shards".into()))?;

    // Every file is in place; what agents lost mid-backup were writing, the
    // plan, and results the catalog did not accept are not part of it.
    // Unfinished writes go first: the writes below would look like some.
    super::remove_incomplete(target, &[String::new()]).await;
    let unreferenced = remove_unreferenced(target, &results);

    let mut meta = job.meta.clone();
    // MatrixOne's metadata files, each with its raw sha256 sidecar. Configs
    // are node-local: only those shards are read for them.
    let mut configs = Vec::new();
    {
        let node_local = job
            .shards
            .iter()
            .zip(&results)
            .filter(|(s, _)| s.node_local)
            .map(|(_, r)| r);
        let mut node_local = super::read_ahead::in_order(
            node_local.map(|r| (r.size, read_chunk_kept::<FileEntry>(target, r))),
        );
        while let Some(files) = node_local.next().await {
            configs.extend(
                files?
                    .into_iter()
                    .filter(|f| f.kind == FileKind::Config && f.need_copy),
            );
        }
    }
    let inline_size: u64 = meta.files.iter().map(|f| f.size).sum();
    meta.total_size = results.iter().map(|r| r.bytes).sum::<u64>() + inline_size;
    let backup_time_utc = chrono::DateTime::parse_from_rfc3339(&completed_at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();

    // Nothing below is part of the backup until `backup_meta` is written
    // last: the writes before it go at once, each a round trip.
    let config_sidecars = futures::future::try_join_all(configs.iter().map(|entry| async move {
        let raw = hex::decode(&entry.sha256).map_err(|e| Error::Failed(e.to_string()))?;
        target
            .put_bytes(&layout::sidecar(&entry.path), Bytes::from(raw))
            .await?;
        Ok::<_, Error>(())
    }));
    let tae_list = async {
        let rows = tae_list_stream(&meta, results.clone(), creds).await?;
        Ok::<_, Error>(target.put(layout::TAE_LIST, rows, None).await?)
    };
    let mo_meta = async {
        Ok::<_, Error>(
            target
                .put_bytes(layout::MO_META, Bytes::from(mo::mo_meta(&configs)))
                .await?,
        )
    };
    let tae_sum = async {
        let sum = mo::tae_sum(&meta, &backup_time_utc);
        Ok::<_, Error>(target.put_bytes(layout::TAE_SUM, Bytes::from(sum)).await?)
    };
    let ((), _, mo_meta, tae_list, tae_sum) =
        futures::try_join!(unreferenced, config_sidecars, mo_meta, tae_list, tae_sum)?;
    let written = [
        (layout::MO_META, mo_meta),
        (layout::TAE_LIST, tae_list),
        (layout::TAE_SUM, tae_sum),
    ];
    futures::future::try_join_all(written.iter().map(|(name, w)| async move {
        let sidecar = layout::sidecar(name);
        target
            .put_bytes(&sidecar, Bytes::copy_from_slice(&w.sha256))
            .await
    }))
    .await?;
    let extra = written.iter().map(|(name, w)| FileEntry {
        kind: FileKind::Meta,
        name: name.to_string(),
        path: name.to_string(),
        size: w.size,
        sha256: hex::encode(w.sha256),
        need_copy: true,
        origin: None,
        role: None,
        stored: None,
    });
    meta.files.extend(extra);
    meta.stored_size = results.iter().map(|r| r.stored_bytes()).sum::<u64>()
        + meta
            .files
            .iter()
            .filter(|f| f.need_copy)
            .map(|f| f.size)
            .sum::<u64>();
    meta.chunks = results;
    meta.completed_at = completed_at;

    // Deterministic from replicated state: a new leader redoing this writes
    // the very same bytes.
    write_manifest(target, &meta).await?;
    Ok(meta)
}

/// The commit point: `backup_meta.sha256` first, so a present
/// `backup_meta` always has a sidecar to be checked against, then
/// `backup_meta`.
pub(super) async fn write_manifest(target: &dyn Storage, meta: &BackupMeta) -> Result<()> {
    let bytes = meta.to_bytes();
    target
        .put_bytes(
            &layout::sidecar(layout::BACKUP_META),
            Bytes::copy_from_slice(&mo::sha256(&bytes)),
        )
        .await?;
    target
        .put_bytes(layout::BACKUP_META, Bytes::from(bytes))
        .await?;
    Ok(())
}

/// `tae/tae_list` as a stream, rendered a manifest chunk at a time: from
/// memory for the chunks this process wrote and still keeps, else from the
/// backup's own location (opened anew: the stream outlives this call's
/// borrows). Chunks are decoded and rendered on blocking threads,
/// [`RENDERS_AT_ONCE`] at a time: tens of thousands of entries are tens of
/// ms of CPU, which the commit's other writes would otherwise wait behind.
async fn tae_list_stream(
    meta: &BackupMeta,
    results: Vec<ChunkRef>,
    creds: &Credentials,
) -> Result<mo_br_storage::ByteStream> {
    let storage: std::sync::Arc<dyn Storage> =
        std::sync::Arc::from(mo_br_storage::open(&meta.location, creds).await?);
    let create_ts = meta.backup_ts.clone();
    let rendering = std::sync::Arc::new(tokio::sync::Semaphore::new(RENDERS_AT_ONCE));
    Ok(super::read_ahead::in_order(results.into_iter().map(
        move |r| {
            let storage = storage.clone();
            let create_ts = create_ts.clone();
            let rendering = rendering.clone();
            (r.size, async move {
                let failed = |name: &str, e: String| mo_br_storage::Error::Io {
                    path: name.to_string(),
                    source: std::io::Error::other(e),
                };
                let data = chunk_bytes_kept(storage.as_ref(), &r)
                    .await
                    .map_err(|e| failed(&r.name, e.to_string()))?;
                let _turn = rendering
                    .acquire()
                    .await
                    .map_err(|e| failed(&r.name, e.to_string()))?;
                tokio::task::spawn_blocking(move || {
                    let files: Vec<FileEntry> =
                        chunk::decode(&r, &data).map_err(|e| failed(&r.name, e.to_string()))?;
                    let mut rows = String::new();
                    mo::tae_list_rows(&files, &create_ts, &mut rows);
                    Ok(Bytes::from(rows))
                })
                .await
                .map_err(|e| failed("tae_list", e.to_string()))?
            })
        },
    )))
}

/// Removes the plan chunks and the manifest chunks of assignments the
/// catalog did not accept (a lost agent's or a deposed leader's), so a
/// committed backup holds its results only.
async fn remove_unreferenced(target: &dyn Storage, results: &[ChunkRef]) -> Result<()> {
    let keep: std::collections::HashSet<&str> = results.iter().map(|r| r.name.as_str()).collect();
    // Both listings at once: each is a round trip at least. Each of the two
    // directories is flat: a delimited listing of it is all there is.
    let unreferenced = |dir: &'static str| {
        target
            .list_dir(dir)
            .map_ok(|entry| entry.name)
            .try_filter(|name| futures::future::ready(!keep.contains(name.as_str())))
            .try_collect::<Vec<String>>()
    };
    let (plans, manifests) = futures::try_join!(
        unreferenced(chunk::PLAN_DIR),
        unreferenced(chunk::MANIFEST_DIR)
    )?;
    futures::stream::iter(plans.into_iter().chain(manifests))
        .map(|name: String| async move { target.delete(&name).await })
        .buffer_unordered(DELETES_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
/// Gets HAKeeper's ID watermarks (`hakeeper/hk_data`) through MatrixOne's
/// own BACKUP statement, incremental at the cut (TIMESTAMP), so MatrixOne
/// copies only the few objects newer than the cut, into a scratch place of
/// the target; keeps hk_data and removes the rest. Watermarks only grow, so
/// ones taken after the cut are safe: a restored cluster may skip IDs, never
/// reuse one. The size and sha256 go into the replicated job, so a new
/// leader does not fetch them again and writes the same manifest.
async fn fetch_hakeeper(
    c: &Coordinator,
    job: &BackupJob,
    target: &dyn Storage,
    creds: &Credentials,
    login: &MoLogin,
) -> Result<()> {
    let scratch = format!(".mo-hakeeper-{}", job.id);
    let into = super::mo_backup::into_location(&job.meta.location, creds, &scratch)?;
    let sql = BackupStatement {
        label: &job.id,
        into: &into,
        parallelism: 1,
        backup_type: None,
        timestamp: Some(&job.meta.backup_ts),
    }
    .sql();
    let mut conn = login.connect().await?;
    conn.exec(&sql).await?;
    let hk_name = format!("{scratch}/{}", layout::HK_DATA);
    let hk = target.get_bytes(&hk_name).await?;
    let sidecar = target.get_bytes(&layout::sidecar(&hk_name)).await?;
    if sidecar.as_ref() != mo::sha256(&hk) {
        return Err(Error::Failed(
            "hakeeper/hk_data written by MatrixOne does not match its sidecar".into(),
        ));
    }
    let written = target.put_bytes(layout::HK_DATA, hk).await?;
    target
        .put_bytes(
            &layout::sidecar(layout::HK_DATA),
            Bytes::copy_from_slice(&written.sha256),
        )
        .await?;
    let mut leftovers = Vec::new();
    let mut listing = target.list(&format!("{scratch}/"));
    while let Some(entry) = listing.next().await {
        leftovers.push(entry?.name);
    }
    drop(listing);
    for name in leftovers {
        target.delete(&name).await?;
    }
    c.catalog
        .propose(Command::JobHakeeper {
            job: job.id.clone(),
            size: written.size,
            sha256: hex::encode(written.sha256),
        })
        .await?;
    Ok(())
}

/// Ends a backup a previous process left running (its client and
/// credentials are gone with it): removes what it wrote, releases GC it held
/// when a password is at hand, records it as failed.
pub(crate) async fn abandon(c: &Coordinator, id: &str) {
    let want = id.to_string();
    let (rec, hold) = c
        .catalog
        .read(move |cat| {
            (
                cat.backups.get(&want).cloned(),
                cat.gc_holds.get(&want).cloned(),
            )
        })
        .await
        .unwrap_or_default();
    let login = hold.and_then(|h| online::login_for(c, &h));
    let reason = Error::Failed("the coordinator stopped before the backup finished".into());
    let target = match &rec {
        // Keys, if any, from the credentials file or the environment.
        Some(rec) => mo_br_storage::open(&rec.location, &c.credentials.s3_or_env(&rec.location))
            .await
            .ok(),
        None => None,
    };
    let e = fail(c, id, login.as_ref(), target.as_deref(), reason).await;
    tracing::warn!("{e}");
}

/// Ends a backup that cannot finish: removes what it wrote, releases the GC
/// it holds, records it as failed with its reason. Returns the error to report.
pub(super) async fn fail(
    c: &Coordinator,
    id: &str,
    login: Option<&MoLogin>,
    target: Option<&dyn Storage>,
    e: Error,
) -> Error {
    if let Some(target) = target {
        // The target is the backup's own (it had to be empty): everything
        // in it is this backup's, MatrixOne's scratch backup of HAKeeper's
        // watermarks included. Twice, the second time once agents had
        // time to notice their cancelled shards.
        for pass in 0..2 {
            if pass > 0 {
                tokio::time::sleep(super::CANCEL_GRACE).await;
            }
            if let Err(re) = remove_all(target, "").await {
                tracing::warn!("backup {id}: removing what it wrote: {re}");
            }
        }
    }
    if let Some(login) = login {
        if let Err(re) = online::release(c, id, login).await {
            tracing::warn!("backup {id}: releasing GC after failure: {re}");
        }
    }
    let reason = e.to_string();
    let _ = c
        .catalog
        .propose(Command::BackupFailed {
            id: id.to_string(),
            reason: reason.clone(),
        })
        .await;
    Error::Failed(format!("backup {id} failed: {reason}"))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use futures::Stream;
    use mo_br_format::manifest::{BackupType, Consistency, FORMAT_VERSION};
    use mo_br_storage::{Entry, Written};
    use tokio::sync::watch;

    use super::super::read_chunk;
    use super::*;

    /// A filesystem storage that counts the objects read whole.
    #[derive(Debug)]
    struct CountingReads {
        inner: Box<dyn Storage>,
        reads: watch::Sender<usize>,
    }

    #[async_trait::async_trait]
    impl Storage for CountingReads {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        async fn put(
            &self,
            name: &str,
            body: mo_br_storage::ByteStream,
            expect: Option<[u8; 32]>,
        ) -> mo_br_storage::Result<Written> {
            self.inner.put(name, body, expect).await
        }
        async fn put_bytes(&self, name: &str, data: Bytes) -> mo_br_storage::Result<Written> {
            self.inner.put_bytes(name, data).await
        }
        async fn get(&self, name: &str) -> mo_br_storage::Result<mo_br_storage::ByteStream> {
            self.inner.get(name).await
        }
        async fn get_bytes(&self, name: &str) -> mo_br_storage::Result<Bytes> {
            let data = self.inner.get_bytes(name).await?;
            self.reads.send_modify(|n| *n += 1);
            Ok(data)
        }
        async fn head(&self, name: &str) -> mo_br_storage::Result<Option<u64>> {
            self.inner.head(name).await
        }
        async fn delete(&self, name: &str) -> mo_br_storage::Result<()> {
            self.inner.delete(name).await
        }
        fn list(
            &self,
            prefix: &str,
        ) -> Pin<Box<dyn Stream<Item = mo_br_storage::Result<Entry>> + Send + '_>> {
            self.inner.list(prefix)
        }
        async fn probe(&self) -> mo_br_storage::Result<()> {
            self.inner.probe().await
        }
        async fn sync(&self) -> mo_br_storage::Result<()> {
            self.inner.sync().await
        }
    }

    const CHUNKS: usize = 12;
    /// Only against a hang: everything here takes milliseconds.
    const GUARD: std::time::Duration = std::time::Duration::from_secs(120);
    const PER_CHUNK: usize = 2048;

    fn name(i: usize) -> String {
        format!("{i:08x}-object")
    }

    /// A base of `CHUNKS` manifest chunks of `PER_CHUNK` objects each, more
    /// than [`AHEAD_ENTRIES`] in all.
    async fn base(dir: &std::path::Path) -> (Base, watch::Receiver<usize>) {
        let (reads, seen) = watch::channel(0);
        let storage = CountingReads {
            inner: storage(dir).await,
            reads,
        };
        let mut chunks = Vec::new();
        for c in 0..CHUNKS {
            let files: Vec<FileEntry> = (c * PER_CHUNK..(c + 1) * PER_CHUNK)
                .map(|i| FileEntry {
                    kind: FileKind::Object,
                    name: name(i),
                    path: layout::shared_name(&name(i)),
                    size: i as u64,
                    sha256: format!("{i:064x}"),
                    need_copy: true,
                    origin: None,
                    role: None,
                    stored: None,
                })
                .collect();
            let r = super::super::write_chunk(&storage, &chunk::manifest_name(c, 0), &files)
                .await
                .unwrap();
            chunks.push(r);
        }
        let meta = BackupMeta {
            format: FORMAT_VERSION,
            id: "base".into(),
            backup_type: BackupType::Full,
            consistency: Consistency::Cold,
            base_id: None,
            chain: vec![],
            location: Location::Filesystem {
                path: dir.to_path_buf(),
            },
            backup_ts: "1-0".into(),
            started_at: String::new(),
            completed_at: String::new(),
            source_data_dir: String::new(),
            source_launch_config: String::new(),
            shared_backend: "DISK-V2".into(),
            shared_dir: "mo-data/shared2".into(),
            stored_size: 0,
            total_size: 0,
            files: vec![],
            chunks,
            replica_of: None,
            schedule: None,
            compression: None,
        };
        let base = Base {
            meta,
            storage: Box::new(storage),
        };
        (base, seen)
    }

    /// The base's chunks are read while the work waits (here the work can
    /// only end once they are: it waits for the reads that reach the bound
    /// of entries held); no more than that bound is held; the merge then
    /// finds every object, those read ahead and those after.
    #[tokio::test]
    async fn the_base_is_read_while_the_work_waits() {
        let dir = tempfile::tempdir().unwrap();
        let (base, mut seen) = base(dir.path()).await;
        let mut objects = BaseObjects::new(&base);
        let reach_bound = AHEAD_ENTRIES / PER_CHUNK;
        let work = async {
            seen.wait_for(|n| *n >= reach_bound).await.unwrap();
            Ok(7)
        };
        // The guard turns a read-ahead that stopped reading (the work would
        // then wait forever) into a failure rather than a hung test run.
        let done = tokio::time::timeout(GUARD, objects.reading_while(work)).await;
        assert_eq!(done.expect("the base was not read meanwhile").unwrap(), 7);
        assert!(
            objects.buffered.len() <= AHEAD_ENTRIES,
            "{} entries held",
            objects.buffered.len()
        );
        for i in [0, AHEAD_ENTRIES - 1, AHEAD_ENTRIES, CHUNKS * PER_CHUNK - 1] {
            let found = objects.find(&name(i)).await.unwrap().unwrap();
            assert_eq!(found.size, i as u64);
        }
        assert!(objects.find("~").await.unwrap().is_none());
    }

    /// A base that cannot be read fails the work it was read beside, even
    /// work that would never end.
    #[tokio::test]
    async fn an_unreadable_base_fails_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let (base, _seen) = base(dir.path()).await;
        std::fs::write(dir.path().join(chunk::manifest_name(3, 0)), "damaged").unwrap();
        let mut objects = BaseObjects::new(&base);
        let err = tokio::time::timeout(
            GUARD,
            objects.reading_while(std::future::pending::<Result<()>>()),
        )
        .await
        .expect("the damaged base did not fail the work")
        .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("base backup base"), "{err}");
    }

    /// Object `i` of a plan: copied, or taken from the base.
    fn planned(i: usize, copy: bool) -> PlanEntry {
        PlanEntry {
            entry: FileEntry {
                kind: FileKind::Object,
                name: name(i),
                path: layout::shared_name(&name(i)),
                size: 10,
                sha256: if copy {
                    String::new()
                } else {
                    format!("{i:064x}")
                },
                need_copy: copy,
                origin: (!copy).then(|| "base".to_string()),
                role: None,
                stored: None,
            },
            source: if copy {
                format!("data/{}", name(i))
            } else {
                String::new()
            },
        }
    }

    async fn storage(path: &std::path::Path) -> Box<dyn Storage> {
        mo_br_storage::open(
            &Location::Filesystem {
                path: path.to_path_buf(),
            },
            &Credentials::default(),
        )
        .await
        .unwrap()
    }

    /// The shards a plan of `entries` (all SHARED) is cut into, as stored.
    async fn cut(target: &dyn Storage, entries: Vec<PlanEntry>) -> Result<Vec<ShardState>> {
        let (mut writer, stored) = plan_writer(target, u64::MAX);
        let merge = async move {
            for p in entries {
                writer.push(p, false).await?;
            }
            writer.finish().await
        };
        let ((), shards) = futures::try_join!(merge, stored)?;
        Ok(shards)
    }

    /// (entries, files to copy, done when planned) of each shard, read back.
    async fn shape(target: &dyn Storage, shards: &[ShardState]) -> Vec<(usize, u64, bool)> {
        let mut out = Vec::new();
        for s in shards {
            let entries: Vec<PlanEntry> = read_chunk(target, &s.plan).await.unwrap();
            out.push((entries.len(), s.plan.copied_files, s.result.is_some()));
        }
        out
    }

    /// A long run taken from the base, met by files to copy, is a shard of
    /// its own, done when planned; a short one stays with the copies.
    #[tokio::test]
    async fn a_long_reused_run_is_cut_before_the_copies() {
        let long = REUSED_RUN + 500;
        let short = REUSED_RUN - 1;
        for (run, want) in [
            (long, vec![(long, 0, true), (105, 5, false)]),
            (short, vec![(short + 105, 5, false)]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let target = storage(dir.path()).await;
            let entries: Vec<PlanEntry> = (0..run + 105)
                .map(|i| planned(i, (run..run + 5).contains(&i)))
                .collect();
            let shards = cut(target.as_ref(), entries).await.unwrap();
            assert_eq!(
                shape(target.as_ref(), &shards).await,
                want,
                "a run of {run}"
            );
        }
    }

    /// Cuts stored several at once still become shards in plan order, each
    /// holding its own run of names.
    #[tokio::test]
    async fn shards_keep_the_plan_order() {
        let dir = tempfile::tempdir().unwrap();
        let target = storage(dir.path()).await;
        let cuts = CUTS_AT_ONCE * 3 + 1;
        let entries: Vec<PlanEntry> = (0..cuts * CHUNK_ENTRIES)
            .map(|i| planned(i, false))
            .collect();
        let shards = cut(target.as_ref(), entries).await.unwrap();
        assert_eq!(shards.len(), cuts);
        for (i, s) in shards.iter().enumerate() {
            assert_eq!(s.plan.name, chunk::manifest_name(i, 0));
            let files: Vec<FileEntry> = read_chunk(target.as_ref(), &s.plan).await.unwrap();
            assert_eq!(files.len(), CHUNK_ENTRIES);
            assert_eq!(files[0].name, name(i * CHUNK_ENTRIES));
        }
    }

    /// A chunk that cannot be stored fails the plan (and does not leave the
    /// merge waiting for a writer that is gone).
    #[tokio::test]
    async fn a_chunk_not_stored_fails_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, "not a directory").unwrap();
        let target = storage(&blocked.join("target")).await;
        let entries: Vec<PlanEntry> = (0..CHUNK_ENTRIES * (CUTS_AT_ONCE + 3))
            .map(|i| planned(i, i % 7 == 0))
            .collect();
        let planned = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            cut(target.as_ref(), entries),
        )
        .await
        .expect("the plan hung");
        let err = planned.unwrap_err();
        assert!(matches!(err, Error::Storage(_)), "{err}");
    }
}
