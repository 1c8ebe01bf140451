//! A physical backup: inventory the node, plan (incrementals take unchanged
//! objects from their base chain), copy in shards on agents, then write
//! MatrixOne's metadata files and, last, `backup_meta`: the commit point.
//! A failed or cancelled backup removes what it wrote and is recorded as
//! failed with its reason; it never looks complete.

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{
    BackupMeta, BackupType, ChainLink, Consistency, FileEntry, FORMAT_VERSION,
};
use mo_br_format::mo::{self, Hlc};
use mo_br_proto::agent::{FileDone, FileKind as WireKind, FileTask, InventoryRequest};
use mo_br_proto::common::{storage, FsStorage, Source, Storage as WireStorage};
use mo_br_proto::coordinator::{job_event, BackupRequest, Finished, Started};
use mo_br_storage::{Credentials, Location, Storage};

use super::shards::{self, Op, Shard};
use super::{emit, info, now_rfc3339, read_manifest, remove_incomplete, sweep, Events};
use crate::agents::Eligibility;
use crate::catalog::{
    Applied, BackupJob, BackupRecord, BackupState, Command, DoneFile, ShardState,
};
use crate::matrixone::{self, MoConn, MoLogin};
use crate::{online, Coordinator, Error, Result};

pub async fn run(c: &Coordinator, req: BackupRequest, events: &Events) -> Result<()> {
    let at_time = now_rfc3339();
    let target_wire = req
        .target
        .clone()
        .ok_or_else(|| Error::InvalidArgument("--backup_dir is required".into()))?;
    let (location, creds) = target_wire.to_location().map_err(Error::InvalidArgument)?;
    let source = req
        .source
        .clone()
        .filter(|s| !s.data_dir.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument("--data_dir is required: the node's mo-data directory".into())
        })?;
    let backup_type = match req.backup_type.as_str() {
        "" | "full" => BackupType::Full,
        "incremental" => BackupType::Incremental,
        other => {
            return Err(Error::InvalidArgument(format!(
                "--backup_type {other:?}: expected full or incremental"
            )))
        }
    };

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
                    rec.id,
                    rec.state.as_str()
                )));
            }
            Some(rec)
        }
    };

    let target = mo_br_storage::open(&location, &creds).await?;
    target.probe().await?;
    if let Some(first) = target.list("").next().await {
        let first = first?;
        return Err(Error::FailedPrecondition(format!(
            "backup target {} is not empty (it holds {}); back up into an empty directory or prefix",
            target.describe(),
            first.name
        )));
    }

    let base_meta = match &base {
        None => None,
        Some(rec) => {
            let base_creds = if req.base_access_key_id.is_empty() {
                creds.clone()
            } else {
                Credentials {
                    access_key_id: req.base_access_key_id.clone(),
                    secret_access_key: req.base_secret_access_key.clone(),
                }
            };
            let storage = mo_br_storage::open(&rec.location, &base_creds).await?;
            let meta = read_manifest(storage.as_ref())
                .await
                .map_err(|e| Error::FailedPrecondition(format!("base backup {}: {e}", rec.id)))?;
            Some(meta)
        }
    };

    let id = uuid::Uuid::now_v7().to_string();
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
        base_id: base.as_ref().map(|b| b.id.clone()),
        state: BackupState::Running,
        at_time,
        complete_time: None,
        duration_secs: 0.0,
        size: 0,
        files: 0,
        backup_ts: String::new(),
        data_dir: source.data_dir.clone(),
    };
    // Claimed before the plan is visible, so the leader loop does not adopt
    // the job this call is about to drive itself.
    let _claim = c.claim(&id);
    let Some(login) = login else {
        let planned = plan(
            c,
            &req,
            &source,
            &record,
            base.as_ref(),
            base_meta.as_ref(),
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
                fail(c, &id, None, None, e).await
            } else {
                e
            });
        }
        return drive(c, &id, &creds, None, true, events).await;
    };

    // Online: the backup is on record before MatrixOne's GC is touched, so
    // that whatever happens next, some leader releases it.
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
            base_meta.as_ref(),
            Some(&mut conn),
        )
        .await
    }
    .await;
    if let Err(e) = planned {
        return Err(fail(c, &id, Some(&login), None, e).await);
    }
    drive(c, &id, &creds, Some(login), true, events).await
}

/// Inventories the node and records the plan of backup `record` (already
/// recorded as started for an online backup, whose GC `online` holds).
#[allow(clippy::too_many_arguments)]
async fn plan(
    c: &Coordinator,
    req: &BackupRequest,
    source: &Source,
    record: &BackupRecord,
    base: Option<&BackupRecord>,
    base_meta: Option<&BackupMeta>,
    mut online: Option<&mut MoConn>,
) -> Result<()> {
    let backup_type = record.backup_type;
    let location = record.location.clone();
    // Inventory on an agent that serves the node.
    let agent = c.agents.node_agent(&source.data_dir, &source.node).await?;
    let mut inv = agent
        .client
        .clone()
        .inventory(InventoryRequest {
            source: Some(source.clone()),
        })
        .await
        .map_err(|s| Error::Agent {
            agent: agent.name.clone(),
            detail: s.message().to_string(),
        })?
        .into_inner();
    let (mut shared_backend, mut shared_dir, mut node_files) =
        (String::new(), String::new(), vec![]);
    while let Some(batch) = inv.next().await {
        let batch = batch.map_err(|s| Error::Agent {
            agent: agent.name.clone(),
            detail: s.message().to_string(),
        })?;
        if !batch.shared_backend.is_empty() {
            shared_backend = batch.shared_backend;
            shared_dir = batch.shared_dir;
        }
        node_files.extend(batch.files);
    }
    if let Some(base) = base_meta {
        if base.shared_backend != shared_backend {
            return Err(Error::FailedPrecondition(format!(
                "base backup {} is of a {} SHARED store, this node's is {}",
                base.id, base.shared_backend, shared_backend
            )));
        }
    }

    // Plan. The cut: the newest checkpoint's end (for an online backup, of
    // the checkpoint just forced); later ckp/ and gc/ files could reference
    // objects this backup does not hold.
    let backup_ts = node_files
        .iter()
        .filter(|f| f.kind == WireKind::Checkpoint as i32 && f.name.starts_with("ckp/meta_"))
        .filter_map(|f| mo::name_end_ts(&f.name))
        .max()
        .unwrap_or_else(|| Hlc {
            physical: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            logical: 0,
        })
        .to_string();
    if online.is_some() {
        let cut: Option<Hlc> = backup_ts.parse().ok();
        node_files.retain(|f| match WireKind::try_from(f.kind) {
            // Not safely copyable file by file while the node runs.
            Ok(WireKind::Logservice) => false,
            Ok(WireKind::Checkpoint | WireKind::Gc) => match (mo::name_end_ts(&f.name), cut) {
                (Some(end), Some(cut)) => end <= cut,
                _ => true,
            },
            _ => true,
        });
    }
    let base_objects: HashMap<&str, &FileEntry> = base_meta
        .into_iter()
        .flat_map(|m| m.files.iter())
        .filter(|f| f.kind == FileKind::Object)
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut entries = Vec::with_capacity(node_files.len());
    let mut sources = Vec::with_capacity(node_files.len());
    for f in &node_files {
        let kind = match WireKind::try_from(f.kind) {
            Ok(WireKind::Object) => FileKind::Object,
            Ok(WireKind::Checkpoint) => FileKind::Checkpoint,
            Ok(WireKind::Gc) => FileKind::Gc,
            Ok(WireKind::Config) => FileKind::Config,
            Ok(WireKind::Logservice) => FileKind::Logservice,
            _ => {
                return Err(Error::Agent {
                    agent: agent.name.clone(),
                    detail: format!("inventory names {} with an unknown kind", f.name),
                })
            }
        };
        // MatrixOne objects are immutable and never renamed: one of the
        // same name and size in the chain is the same object.
        if let Some(prev) = base_objects
            .get(f.name.as_str())
            .filter(|p| p.size == f.size)
        {
            let base = base_meta.expect("base objects come from a base");
            entries.push(FileEntry {
                need_copy: false,
                origin: Some(prev.origin.clone().unwrap_or_else(|| base.id.clone())),
                ..(*prev).clone()
            });
            sources.push(String::new());
            continue;
        }
        let path = match kind {
            FileKind::Config => layout::config_name(&f.name, &uuid::Uuid::now_v7()),
            FileKind::Logservice => layout::logservice_name(&f.name),
            _ => layout::shared_name(&f.name),
        };
        entries.push(FileEntry {
            kind,
            name: f.name.clone(),
            path,
            size: f.size,
            sha256: String::new(),
            need_copy: true,
            origin: None,
            role: (!f.role.is_empty()).then(|| f.role.clone()),
        });
        sources.push(f.source_path.clone());
    }
    let mut chain = Vec::new();
    if let Some(base) = base_meta {
        chain.push(ChainLink {
            id: base.id.clone(),
            location: base.location.clone(),
        });
        chain.extend(base.chain.iter().cloned());
    }
    let meta = BackupMeta {
        format: FORMAT_VERSION,
        id: record.id.clone(),
        backup_type,
        consistency: record.consistency,
        base_id: base.map(|b| b.id.clone()),
        chain,
        location: location.clone(),
        backup_ts: backup_ts.clone(),
        started_at: record.at_time.clone(),
        completed_at: String::new(),
        source_data_dir: source.data_dir.clone(),
        source_launch_config: source.launch_config.clone(),
        shared_backend,
        shared_dir,
        stored_size: 0,
        total_size: 0,
        files: entries,
    };
    let job = BackupJob {
        id: record.id.clone(),
        shards: plan_shards(&meta, c.shard_bytes),
        meta,
        sources,
        parallelism: req.parallelism,
        node: agent.node.clone(),
        committing: None,
    };

    if let Some(conn) = online.as_mut() {
        online::protect(c, &record.id, conn, &backup_ts).await?;
    } else {
        c.catalog
            .propose(Command::BackupStarted(Box::new(record.clone())))
            .await?;
    }
    if let Applied::Rejected(why) = c
        .catalog
        .propose(Command::JobPlanned(Box::new(job)))
        .await?
    {
        return Err(Error::Failed(why));
    }
    Ok(())
}

/// Shards of a plan: SHARED files by bytes over any agent that reaches
/// SHARED; node-local files (configs, logservice-data) for agents of the node.
fn plan_shards(meta: &BackupMeta, shard_bytes: u64) -> Vec<ShardState> {
    let mut shared = Vec::new();
    let mut local = Vec::new();
    for (i, f) in meta.files.iter().enumerate() {
        if !f.need_copy {
            continue;
        }
        let task = (
            i,
            FileTask {
                size: f.size,
                ..Default::default()
            },
        );
        if f.kind.is_shared() {
            shared.push(task);
        } else {
            local.push(task);
        }
    }
    let mut out = Vec::new();
    for (files, node_local) in [(shared, false), (local, true)] {
        for s in shards::split(files, Eligibility::Any, out.len(), shard_bytes) {
            out.push(ShardState {
                bytes: s.files.iter().map(|f| f.size).sum(),
                files: s.indexes,
                node_local,
                assignment: None,
                done: false,
            });
        }
    }
    out
}

/// Assignments and results of a backup go through the catalog, so that they
/// survive the leader and stale reports are refused by every replica alike.
struct JobLedger<'a> {
    c: &'a Coordinator,
    job: &'a str,
}

#[async_trait::async_trait]
impl shards::Ledger for JobLedger<'_> {
    async fn assign(&self, shard: usize, agent: &str) -> Result<u64> {
        match self
            .c
            .catalog
            .propose(Command::ShardAssigned {
                job: self.job.to_string(),
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
        let files = done
            .iter()
            .map(|(i, d)| DoneFile {
                index: *i,
                size: d.size,
                sha256: d.sha256.clone(),
            })
            .collect();
        let applied = self
            .c
            .catalog
            .propose(Command::ShardDone {
                job: self.job.to_string(),
                shard,
                epoch,
                files,
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
            "backup {id} holds MatrixOne's GC and no password is known here to renew it; re-attach with the password or set MO_BR_MO_PASSWORD"
        )));
    }
    // The leader driving an online backup renews its checker.
    let _renewal = login
        .clone()
        .filter(|_| online)
        .map(|l| online::renew(l, job.meta.backup_ts.clone(), c.gc_renew));
    let target = mo_br_storage::open(&job.meta.location, creds).await?;
    let result = copy_and_commit(
        c,
        &job,
        creds,
        login.as_ref().filter(|_| online),
        target.as_ref(),
        watched,
        events,
    )
    .await;
    let meta = match result {
        Ok(meta) => meta,
        Err(e @ (Error::NotLeader(_) | Error::NoQuorum | Error::Shutdown)) => {
            // Leadership moved: the new leader carries the job on (and
            // renews the hold); nothing is removed or released.
            return Err(e);
        }
        Err(e) => {
            let login = login.as_ref().filter(|_| online);
            return Err(fail(c, id, login, Some((target.as_ref(), &job)), e).await);
        }
    };
    if let Some(login) = login.as_ref().filter(|_| online) {
        // The manifest is durable: GC may run again. A failed release is
        // retried by the leader loop; the backup is complete either way.
        if let Err(e) = online::release(c, id, login).await {
            tracing::warn!("backup {id}: releasing GC: {e}");
        }
    }

    let duration_secs = chrono::DateTime::parse_from_rfc3339(&meta.completed_at)
        .ok()
        .zip(chrono::DateTime::parse_from_rfc3339(&meta.started_at).ok())
        .map(|(end, start)| (end - start).num_nanoseconds().unwrap_or(0) as f64 / 1e9)
        .unwrap_or(0.0);
    c.catalog
        .propose(Command::BackupCompleted {
            id: id.to_string(),
            complete_time: meta.completed_at.clone(),
            duration_secs,
            size: meta.stored_size,
            files: meta.files.len() as u64,
            backup_ts: meta.backup_ts.clone(),
        })
        .await?;
    let want = id.to_string();
    let rec = c
        .catalog
        .read(move |cat| cat.backups.get(&want).cloned())
        .await?
        .ok_or(Error::Shutdown)?;
    let copied = meta
        .files
        .iter()
        .filter(|f| f.need_copy && f.kind != FileKind::Meta)
        .count();
    let files = meta
        .files
        .iter()
        .filter(|f| f.kind != FileKind::Meta)
        .count();
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

#[allow(clippy::too_many_arguments)]
async fn copy_and_commit(
    c: &Coordinator,
    job: &BackupJob,
    creds: &Credentials,
    login: Option<&MoLogin>,
    target: &dyn Storage,
    watched: bool,
    events: &Events,
) -> Result<BackupMeta> {
    target.probe().await?;
    let total_bytes: u64 = job.shards.iter().map(|s| s.bytes).sum();
    let total_files: u64 = job.shards.iter().map(|s| s.files.len() as u64).sum();
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: job.id.clone(),
            backup_id: job.id.clone(),
            total_bytes,
            total_files,
            what: "backup".into(),
        }),
    )
    .await;

    let pending: Vec<Shard> = job
        .pending()
        .map(|(sid, s)| Shard {
            id: sid,
            indexes: s.files.clone(),
            files: s
                .files
                .iter()
                .map(|&i| {
                    let f = &job.meta.files[i];
                    FileTask {
                        src: job.sources[i].clone(),
                        dst: f.path.clone(),
                        size: f.size,
                        sha256: String::new(),
                        source_id: String::new(),
                    }
                })
                .collect(),
            eligibility: if s.node_local {
                Eligibility::Node {
                    node: job.node.clone(),
                }
            } else {
                Eligibility::Shared
            },
        })
        .collect();
    // Node files are read from the agent's own filesystem, by absolute path.
    let node_root = WireStorage {
        kind: Some(storage::Kind::Fs(FsStorage { path: "/".into() })),
    };
    let ledger = JobLedger { c, job: &job.id };
    let outcome = shards::run(
        &c.agents,
        &ledger,
        Op::Copy {
            source: node_root,
            target: WireStorage::from_location(&job.meta.location, creds),
        },
        pending,
        job.parallelism,
        true,
        watched,
        (job.bytes_done(), job.files_done()),
        events,
    )
    .await?;
    if let Some((i, p)) = outcome.problems.first() {
        return Err(Error::Failed(format!(
            "copying {}: {}",
            job.meta.files[*i].path, p.detail
        )));
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
    let mut meta = job.meta.clone();
    if let Some(f) = meta
        .files
        .iter()
        .find(|f| f.need_copy && f.sha256.is_empty())
    {
        return Err(Error::Failed(format!("{} was never copied", f.path)));
    }

    // Every file is in place; what agents lost mid-backup were writing is not
    // part of it. The target is the backup's own (it had to be empty).
    remove_incomplete(target, &[String::new()]).await;

    // MatrixOne's metadata files, each with its raw sha256 sidecar.
    for entry in meta
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Config && f.need_copy)
    {
        let raw = hex::decode(&entry.sha256).map_err(|e| Error::Failed(e.to_string()))?;
        target
            .put_bytes(&layout::sidecar(&entry.path), Bytes::from(raw))
            .await?;
    }
    meta.total_size = meta.files.iter().map(|f| f.size).sum();
    let backup_time_utc = chrono::DateTime::parse_from_rfc3339(&completed_at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let docs = [
        (layout::MO_META, mo::mo_meta(&meta)),
        (layout::TAE_LIST, mo::tae_list(&meta, &meta.backup_ts)),
        (layout::TAE_SUM, mo::tae_sum(&meta, &backup_time_utc)),
    ];
    let mut extra = Vec::new();
    for (name, text) in docs {
        let written = target.put_bytes(name, Bytes::from(text)).await?;
        target
            .put_bytes(
                &layout::sidecar(name),
                Bytes::copy_from_slice(&written.sha256),
            )
            .await?;
        extra.push(FileEntry {
            kind: FileKind::Meta,
            name: name.to_string(),
            path: name.to_string(),
            size: written.size,
            sha256: hex::encode(written.sha256),
            need_copy: true,
            origin: None,
            role: None,
        });
    }
    meta.files.extend(extra);
    meta.stored_size = meta
        .files
        .iter()
        .filter(|f| f.need_copy)
        .map(|f| f.size)
        .sum();
    meta.completed_at = completed_at;

    // The commit point: the sidecar first, so a present backup_meta always
    // has one to be checked against. Deterministic from replicated state: a
    // new leader redoing this writes the very same bytes.
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
    Ok(meta)
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
    let into = match &job.meta.location {
        Location::Filesystem { path } => format!(
            "FILESYSTEM {}",
            matrixone::quote(&path.join(&scratch).to_string_lossy())
        ),
        Location::S3(s3) => {
            let filepath = if s3.prefix.is_empty() {
                scratch.clone()
            } else {
                format!("{}/{scratch}", s3.prefix)
            };
            let mut opts = vec![
                ("endpoint", s3.endpoint.clone()),
                ("bucket", s3.bucket.clone()),
                ("filepath", filepath),
                ("region", s3.region.clone()),
                ("access_key_id", creds.access_key_id.clone()),
                ("secret_access_key", creds.secret_access_key.clone()),
            ];
            if s3.is_minio {
                opts.push(("is_minio", "true".into()));
            }
            if !s3.role_arn.is_empty() {
                opts.push(("role_arn", s3.role_arn.clone()));
            }
            let opts: Vec<String> = opts
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("'{k}'={}", matrixone::quote(&v)))
                .collect();
            format!("S3OPTION {{{}}}", opts.join(","))
        }
    };
    let sql = format!(
        "BACKUP {} {into} PARALLELISM '1' TIMESTAMP {}",
        matrixone::quote(&job.id),
        matrixone::quote(&job.meta.backup_ts)
    );
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
    let (job, hold) = c
        .catalog
        .read(move |cat| {
            (
                cat.jobs.get(&want).cloned(),
                cat.gc_holds.get(&want).cloned(),
            )
        })
        .await
        .unwrap_or_default();
    let login = hold.and_then(|h| online::login_for(c, &h));
    let reason = Error::Failed("the coordinator stopped before the backup finished".into());
    let target = match &job {
        // Keys, if any, from the environment.
        Some(job) => mo_br_storage::open(&job.meta.location, &Credentials::default())
            .await
            .ok(),
        None => None,
    };
    let written = target.as_deref().zip(job.as_ref());
    let e = fail(c, id, login.as_ref(), written, reason).await;
    tracing::warn!("{e}");
}

/// Ends a backup that cannot finish: removes what it wrote, releases the GC
/// it holds, records it as failed with its reason. Returns the error to report.
async fn fail(
    c: &Coordinator,
    id: &str,
    login: Option<&MoLogin>,
    written: Option<(&dyn Storage, &BackupJob)>,
    e: Error,
) -> Error {
    if let Some((target, job)) = written {
        // Without backup_meta it would not count as a backup anyway, but
        // nothing half-done is left behind.
        let names: Vec<String> = job
            .meta
            .files
            .iter()
            .filter(|f| f.need_copy)
            .map(|f| f.path.clone())
            .collect();
        cleanup(target, &names).await;
        // MatrixOne's scratch backup, if the failure came while fetching
        // HAKeeper's watermarks.
        let scratch = format!(".mo-hakeeper-{}/", job.id);
        let mut leftovers = Vec::new();
        let mut listing = target.list(&scratch);
        while let Some(Ok(entry)) = listing.next().await {
            leftovers.push(entry.name);
        }
        drop(listing);
        sweep(target, &leftovers, &[]).await;
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

async fn cleanup(target: &dyn Storage, written: &[String]) {
    let meta_names = [
        layout::BACKUP_META,
        layout::MO_META,
        layout::TAE_LIST,
        layout::TAE_SUM,
        layout::HK_DATA,
    ];
    // backup_meta first: were the sweep interrupted, what is left is
    // plainly not a backup.
    let names: Vec<String> = meta_names
        .iter()
        .map(|n| n.to_string())
        .chain(written.iter().cloned())
        .flat_map(|n| {
            let sidecar = layout::sidecar(&n);
            [n, sidecar]
        })
        .collect();
    // The target is the backup's own (it had to be empty).
    sweep(target, &names, &[String::new()]).await;
}
