//! A physical backup: inventory the node, plan (incrementals take unchanged
//! objects from their base chain), copy in shards on agents, then write
//! MatrixOne's metadata files and, last, `backup_meta`: the commit point.
//! A failed or cancelled backup removes what it wrote and is recorded as
//! failed with its reason; it never looks complete.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::{
    BackupMeta, BackupType, ChainLink, Consistency, FileEntry, FORMAT_VERSION,
};
use mo_br_format::mo::{self, Hlc};
use mo_br_proto::agent::{FileKind as WireKind, FileTask, InventoryRequest};
use mo_br_proto::common::{storage, FsStorage, Storage as WireStorage};
use mo_br_proto::coordinator::{job_event, BackupRequest, Finished, Started};
use mo_br_storage::{Credentials, Storage};

use super::shards::{self, Op};
use super::{emit, info, now_rfc3339, read_manifest, sweep, Events};
use crate::catalog::{BackupRecord, BackupState, Command};
use crate::{Coordinator, Error, Result};

pub async fn run(c: &Coordinator, req: BackupRequest, events: &Events) -> Result<()> {
    let clock = Instant::now();
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

    // Inventory on the node's agent.
    let agent = c
        .agents
        .node_agent()
        .ok_or_else(|| Error::FailedPrecondition("no agent is available".into()))?;
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
    if let Some(base) = &base_meta {
        if base.shared_backend != shared_backend {
            return Err(Error::FailedPrecondition(format!(
                "base backup {} is of a {} SHARED store, this node's is {}",
                base.id, base.shared_backend, shared_backend
            )));
        }
    }

    // Plan.
    let id = uuid::Uuid::now_v7().to_string();
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
    let base_objects: HashMap<&str, &FileEntry> = base_meta
        .iter()
        .flat_map(|m| m.files.iter())
        .filter(|f| f.kind == FileKind::Object)
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut entries = Vec::with_capacity(node_files.len());
    let mut tasks = Vec::new();
    let mut task_entry = Vec::new();
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
            let base = base_meta.as_ref().expect("base objects come from a base");
            entries.push(FileEntry {
                need_copy: false,
                origin: Some(prev.origin.clone().unwrap_or_else(|| base.id.clone())),
                ..(*prev).clone()
            });
            continue;
        }
        let path = match kind {
            FileKind::Config => layout::config_name(&f.name, &uuid::Uuid::now_v7()),
            FileKind::Logservice => layout::logservice_name(&f.name),
            _ => layout::shared_name(&f.name),
        };
        task_entry.push(entries.len());
        tasks.push(FileTask {
            src: f.source_path.clone(),
            dst: path.clone(),
            size: f.size,
            sha256: String::new(),
            source_id: String::new(),
        });
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
    }
    let mut chain = Vec::new();
    if let Some(base) = &base_meta {
        chain.push(ChainLink {
            id: base.id.clone(),
            location: base.location.clone(),
        });
        chain.extend(base.chain.iter().cloned());
    }

    let record = BackupRecord {
        id: id.clone(),
        location: location.clone(),
        backup_type,
        consistency: Consistency::Cold,
        base_id: base.as_ref().map(|b| b.id.clone()),
        state: BackupState::Running,
        at_time: at_time.clone(),
        complete_time: None,
        duration_secs: 0.0,
        size: 0,
        files: 0,
        backup_ts: backup_ts.clone(),
        data_dir: source.data_dir.clone(),
    };
    c.catalog
        .propose(Command::BackupStarted(Box::new(record)))
        .await?;
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: id.clone(),
            backup_id: id.clone(),
            total_bytes: tasks.iter().map(|t| t.size).sum(),
            total_files: tasks.len() as u64,
            what: "backup".into(),
        }),
    )
    .await;

    let written: Vec<String> = tasks.iter().map(|t| t.dst.clone()).collect();
    let result = copy_and_commit(
        c,
        &req,
        &target_wire,
        target.as_ref(),
        tasks,
        &task_entry,
        BackupMeta {
            format: FORMAT_VERSION,
            id: id.clone(),
            backup_type,
            consistency: Consistency::Cold,
            base_id: base.as_ref().map(|b| b.id.clone()),
            chain,
            location: location.clone(),
            backup_ts: backup_ts.clone(),
            started_at: at_time.clone(),
            completed_at: String::new(),
            source_data_dir: source.data_dir.clone(),
            source_launch_config: source.launch_config.clone(),
            shared_backend,
            shared_dir,
            stored_size: 0,
            total_size: 0,
            files: entries,
        },
        events,
    )
    .await;
    let meta = match result {
        Ok(meta) => meta,
        Err(e) => {
            // Remove what was written so nothing half-done is left behind;
            // without backup_meta it would not count as a backup anyway.
            cleanup(target.as_ref(), &written).await;
            let reason = e.to_string();
            let _ = c
                .catalog
                .propose(Command::BackupFailed {
                    id: id.clone(),
                    reason: reason.clone(),
                })
                .await;
            return Err(Error::Failed(format!("backup {id} failed: {reason}")));
        }
    };

    let duration_secs = clock.elapsed().as_secs_f64();
    c.catalog
        .propose(Command::BackupCompleted {
            id: id.clone(),
            complete_time: meta.completed_at.clone(),
            duration_secs,
            size: meta.stored_size,
            files: meta.files.len() as u64,
            backup_ts: meta.backup_ts.clone(),
        })
        .await?;
    let rec = c
        .catalog
        .read(move |cat| cat.backups.get(&id).cloned())
        .await?
        .ok_or(Error::Shutdown)?;
    let copied = meta.files.iter().filter(|f| f.need_copy).count();
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: Some(info(&rec)),
            problems: 0,
            summary: format!(
                "backup {} complete: {} files copied, {} taken from the base chain, {} bytes stored",
                rec.id,
                copied,
                meta.files.len() - copied,
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
    req: &BackupRequest,
    target_wire: &WireStorage,
    target: &dyn Storage,
    tasks: Vec<FileTask>,
    task_entry: &[usize],
    mut meta: BackupMeta,
    events: &Events,
) -> Result<BackupMeta> {
    // Node files are read from the agent's own filesystem, by absolute path.
    let node_root = WireStorage {
        kind: Some(storage::Kind::Fs(FsStorage { path: "/".into() })),
    };
    let outcome = shards::run(
        &c.agents,
        Op::Copy {
            source: node_root,
            target: target_wire.clone(),
        },
        tasks,
        req.parallelism,
        true,
        events,
    )
    .await?;
    if let Some((i, p)) = outcome.problems.first() {
        let entry = &meta.files[task_entry[*i]];
        return Err(Error::Failed(format!(
            "copying {}: {}",
            entry.path, p.detail
        )));
    }
    for (i, done) in outcome.done.into_iter().enumerate() {
        let done = done.ok_or_else(|| Error::Failed("a file was never copied".into()))?;
        let entry = &mut meta.files[task_entry[i]];
        entry.sha256 = done.sha256;
        entry.size = done.size;
    }

    // MatrixOne's metadata files, each with its raw sha256 sidecar.
    let mut extra = Vec::new();
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
    let completed_at = now_rfc3339();
    let backup_time_utc = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let docs = [
        (layout::MO_META, mo::mo_meta(&meta)),
        (layout::TAE_LIST, mo::tae_list(&meta, &meta.backup_ts)),
        (layout::TAE_SUM, mo::tae_sum(&meta, &backup_time_utc)),
    ];
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
    // has one to be checked against.
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

async fn cleanup(target: &dyn Storage, written: &[String]) {
    let meta_names = [
        layout::BACKUP_META,
        layout::MO_META,
        layout::TAE_LIST,
        layout::TAE_SUM,
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
    sweep(target, &names).await;
}
