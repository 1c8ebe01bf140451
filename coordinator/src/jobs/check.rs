//! Check: recompute the sha256 of every file of a backup (and of the base
//! chain files it relies on) and report every missing, truncated or corrupt
//! file. Never stops at the first problem: the user needs the whole list.
//! The manifest is read a chunk at a time, once per backup of the chain
//! holding bytes, so memory does not grow with the backup.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use mo_br_format::layout::{self, FileKind};
use mo_br_format::manifest::FileEntry;
use mo_br_proto::agent::FileTask;
use mo_br_proto::common::{ProblemKind, Storage as WireStorage, Stored};
use mo_br_proto::coordinator::{job_event, CheckRequest, Finished, Problem, Started};
use mo_br_storage::Storage;

use super::shards::{self, LocalLedger, Op, RunOptions};
use super::{check_name, emit, entries_in_check_order, line, resolve, Events};
use crate::agents::Eligibility;
use crate::{Coordinator, Result};

pub async fn run(c: &Coordinator, req: CheckRequest, events: &Events) -> Result<()> {
    let backup = resolve(
        c,
        &req.id,
        req.storage.as_ref(),
        &req.access_key_id,
        &req.secret_access_key,
    )
    .await?;
    let meta = &backup.meta;
    let storage = backup.storage.as_ref();
    // MatrixOne's metadata files are verified like the data: its own tools
    // trust them.
    let metadata = meta.files.iter().filter(|f| f.kind == FileKind::Meta);
    let files = meta.file_count() + metadata.clone().count() as u64;
    let total_bytes = meta.total_size + metadata.map(|f| f.size).sum::<u64>();
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: meta.id.clone(),
            backup_id: meta.id.clone(),
            total_bytes,
            total_files: files,
            what: "check".into(),
        }),
    )
    .await;
    // Read and verified against its sidecar by `resolve`.
    line(
        events,
        format!("check: {}", check_name(layout::BACKUP_META)),
    )
    .await;

    // Problems the agents' verification cannot see: sidecars that disagree
    // with the manifest (MatrixOne's own tools trust them), entries held by
    // no backup of the chain.
    let extra = AtomicU64::new(0);

    // One pass per backup holding bytes: this one first, then its chain.
    let mut problems = 0u64;
    let holders = std::iter::once((meta.id.clone(), &backup.location))
        .chain(meta.chain.iter().map(|l| (l.id.clone(), &l.location)));
    for (pass, (holder, location)) in holders.enumerate() {
        let own = pass == 0;
        let (extra, holder_ref) = (&extra, &holder);
        let tasks = entries_in_check_order(storage, meta)
            .try_filter_map(move |f: FileEntry| async move {
                let held_by = f.origin.clone().unwrap_or_else(|| meta.id.clone());
                if own {
                    let known = held_by == meta.id || meta.chain.iter().any(|l| l.id == held_by);
                    if !known {
                        extra.fetch_add(1, Ordering::Relaxed);
                        problem(
                            events,
                            &f.path,
                            ProblemKind::Missing,
                            &format!("held by unknown backup {held_by}"),
                        )
                        .await;
                        return Ok(None);
                    }
                    if has_sidecar(&f) && !sidecar_ok(storage, &f, events).await {
                        extra.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if &held_by != holder_ref {
                    return Ok(None);
                }
                if own {
                    line(events, format!("check: {}", check_name(&f.path))).await;
                } else {
                    line(
                        events,
                        format!("check: {} (in base backup {held_by})", f.path),
                    )
                    .await;
                }
                Ok(Some(FileTask {
                    src: f.path.clone(),
                    dst: f.path,
                    size: f.size,
                    sha256: f.sha256,
                    source_id: held_by,
                    compression: None,
                    stored: f.stored.as_ref().map(Stored::from_format),
                }))
            })
            .boxed();
        let outcome = shards::run(
            &c.agents,
            &LocalLedger::default(),
            Op::Verify {
                storage: WireStorage::from_location(location, &backup.creds),
            },
            shards::batch(tasks, Eligibility::Any, c.shard_bytes),
            RunOptions {
                term: c.catalog.leadership().term,
                parallelism: req.parallelism,
                fail_fast: false,
                stop_without_client: true,
                report_problems: true,
                base: (0, 0),
                retry_window_ms: 0,
                max_requests_per_sec: 0,
            },
            events,
        )
        .await?;
        problems += outcome.problems;
    }
    problems += extra.load(Ordering::Relaxed);

    let summary = if problems == 0 {
        format!("backup {} is intact: {files} files verified", meta.id)
    } else {
        format!("backup {} is damaged: {problems} problem(s) found", meta.id)
    };
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems,
            summary,
        }),
    )
    .await;
    Ok(())
}

/// Files with a raw sha256 sidecar beside them.
fn has_sidecar(f: &FileEntry) -> bool {
    f.need_copy
        && matches!(
            f.kind,
            FileKind::Meta | FileKind::Config | FileKind::Hakeeper
        )
}

/// Whether `f`'s sidecar holds its recorded sha256; reports it if not.
async fn sidecar_ok(storage: &dyn Storage, f: &FileEntry, events: &Events) -> bool {
    let sidecar = layout::sidecar(&f.path);
    let trouble = match storage.get_bytes(&sidecar).await {
        Ok(raw) if hex::encode(&raw) == f.sha256 => return true,
        Ok(_) => (
            ProblemKind::Corrupt,
            "does not match the manifest's sha256".to_string(),
        ),
        Err(mo_br_storage::Error::NotFound(_)) => {
            (ProblemKind::Missing, "sidecar is missing".to_string())
        }
        Err(e) => (ProblemKind::Io, e.to_string()),
    };
    problem(events, &sidecar, trouble.0, &trouble.1).await;
    false
}

async fn problem(events: &Events, path: &str, kind: ProblemKind, detail: &str) {
    emit(
        events,
        job_event::Event::Problem(Problem {
            path: path.to_string(),
            kind: kind.into(),
            detail: detail.to_string(),
        }),
    )
    .await;
}
