//! Check: recompute the sha256 of every file of a backup (and of the base
//! chain files it relies on) and report every missing, truncated or corrupt
//! file. Never stops at the first problem: the user needs the whole list.

use std::collections::HashMap;

use mo_br_format::layout::{self, FileKind};
use mo_br_proto::agent::{FileTask, ProblemKind};
use mo_br_proto::common::Storage as WireStorage;
use mo_br_proto::coordinator::{job_event, CheckRequest, Finished, Problem, Started};

use super::shards::{self, LocalLedger, Op};
use super::{emit, line, resolve, Events};
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
    let mut problems = 0u64;
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: meta.id.clone(),
            backup_id: meta.id.clone(),
            total_bytes: meta.files.iter().map(|f| f.size).sum(),
            total_files: meta.files.len() as u64,
            what: "check".into(),
        }),
    )
    .await;
    line(events, format!("check: /{}", layout::BACKUP_META)).await;

    // Sidecars of MatrixOne's metadata files and configs must agree with
    // the manifest: MatrixOne's own tools trust them.
    for f in meta.files.iter().filter(|f| {
        f.need_copy
            && matches!(
                f.kind,
                FileKind::Meta | FileKind::Config | FileKind::Hakeeper
            )
    }) {
        let sidecar = layout::sidecar(&f.path);
        match backup.storage.get_bytes(&sidecar).await {
            Ok(raw) if hex::encode(&raw) == f.sha256 => {}
            Ok(_) => {
                problems += 1;
                problem(
                    events,
                    &sidecar,
                    "corrupt",
                    "does not match the manifest's sha256",
                )
                .await;
            }
            Err(mo_br_storage::Error::NotFound(_)) => {
                problems += 1;
                problem(events, &sidecar, "missing", "sidecar is missing").await;
            }
            Err(e) => {
                problems += 1;
                problem(events, &sidecar, "io", &e.to_string()).await;
            }
        }
    }

    // Group files by the backup holding their bytes.
    let mut by_holder: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, f) in meta.files.iter().enumerate() {
        let holder = f.origin.clone().unwrap_or_else(|| meta.id.clone());
        by_holder.entry(holder).or_default().push(i);
    }
    let mut holders: Vec<_> = by_holder.into_iter().collect();
    holders.sort_by_key(|(h, _)| (h != &meta.id, h.clone()));
    for (holder, indexes) in holders {
        let Some(location) = (if holder == meta.id {
            Some(&backup.location)
        } else {
            meta.chain
                .iter()
                .find(|l| l.id == holder)
                .map(|l| &l.location)
        }) else {
            for i in indexes {
                problems += 1;
                let f = &meta.files[i];
                problem(
                    events,
                    &f.path,
                    "missing",
                    &format!("held by unknown backup {holder}"),
                )
                .await;
            }
            continue;
        };
        let tasks: Vec<FileTask> = indexes
            .iter()
            .map(|&i| {
                let f = &meta.files[i];
                FileTask {
                    src: f.path.clone(),
                    dst: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                    source_id: holder.clone(),
                }
            })
            .collect();
        for t in &tasks {
            if holder == meta.id {
                line(events, format!("check: {}", t.src)).await;
            } else {
                line(
                    events,
                    format!("check: {} (in base backup {holder})", t.src),
                )
                .await;
            }
        }
        let shards = shards::split(
            tasks.into_iter().enumerate().collect(),
            Eligibility::Any,
            0,
            c.shard_bytes,
        );
        let outcome = shards::run(
            &c.agents,
            &LocalLedger::default(),
            Op::Verify {
                storage: WireStorage::from_location(location, &backup.creds),
            },
            shards,
            req.parallelism,
            false,
            true,
            (0, 0),
            events,
        )
        .await?;
        for (i, p) in outcome.problems {
            problems += 1;
            let kind = match ProblemKind::try_from(p.kind) {
                Ok(ProblemKind::Missing) => "missing",
                Ok(ProblemKind::Truncated) => "truncated",
                Ok(ProblemKind::Corrupt) => "corrupt",
                Ok(ProblemKind::SizeMismatch) => "size mismatch",
                Ok(ProblemKind::UnsafePath) => "unsafe path",
                _ => "io",
            };
            problem(events, &meta.files[indexes[i]].path, kind, &p.detail).await;
        }
    }

    let summary = if problems == 0 {
        format!(
            "backup {} is intact: {} files verified",
            meta.id,
            meta.files.len()
        )
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

async fn problem(events: &Events, path: &str, kind: &str, detail: &str) {
    emit(
        events,
        job_event::Event::Problem(Problem {
            path: path.to_string(),
            kind: kind.to_string(),
            detail: detail.to_string(),
        }),
    )
    .await;
}
