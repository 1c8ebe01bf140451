//! List: the catalog's backups; with an ID, also check that every file of
//! the backup still exists with its recorded size (no checksum: that is
//! what `check` is for).

use mo_br_proto::common::ProblemKind;
use mo_br_proto::coordinator::{job_event, Backups, Finished, ListRequest, Problem};

use futures::{StreamExt, TryStreamExt};
use mo_br_format::layout;
use mo_br_format::manifest::FileEntry;

use super::{check_name, emit, entries_in_check_order, info, line, resolve, Events};

/// Existence checks in flight at once.
const HEAD_PARALLELISM: usize = 32;
use crate::{Coordinator, Error, Result};

pub async fn run(c: &Coordinator, req: ListRequest, events: &Events) -> Result<()> {
    let want = req.id.clone();
    let records = c
        .catalog
        .read_linearizable(move |cat| {
            let mut v: Vec<_> = cat
                .backups
                .values()
                .filter(|r| want.is_empty() || r.id == want)
                .cloned()
                .collect();
            v.sort_by(|a, b| a.at_time.cmp(&b.at_time));
            v
        })
        .await?;
    if !req.id.is_empty() && records.is_empty() {
        return Err(Error::UnknownBackup(req.id));
    }
    emit(
        events,
        job_event::Event::Backups(Backups {
            backups: records.iter().map(info).collect(),
        }),
    )
    .await;

    let mut problems = 0u64;
    if !req.id.is_empty() && !req.not_check_data {
        let backup = resolve(c, &req.id, None, &req.access_key_id, &req.secret_access_key).await?;
        // HEADs in parallel (each is one request's latency on S3), reported
        // in MatrixOne's order, the manifest read a chunk at a time.
        let storage: &dyn mo_br_storage::Storage = backup.storage.as_ref();
        // Read and verified against its sidecar by `resolve`.
        line(
            events,
            format!("check: {}", check_name(layout::BACKUP_META)),
        )
        .await;
        let mut heads = entries_in_check_order(storage, &backup.meta)
            .try_filter_map(|f: FileEntry| futures::future::ready(Ok(f.need_copy.then_some(f))))
            .map_ok(|f: FileEntry| async move {
                let found = storage.head(&f.path).await;
                // A compressed file takes its stored size.
                let expected = f.stored.as_ref().map_or(f.size, |s| s.size);
                Ok::<_, Error>((f.path, expected, found))
            })
            .try_buffered(HEAD_PARALLELISM);
        while let Some(head) = heads.next().await {
            let (path, expected, found) = head?;
            line(events, format!("check: {}", check_name(&path))).await;
            let trouble = match found? {
                None => Some((ProblemKind::Missing, "not found".to_string())),
                Some(size) if size != expected => Some((
                    if size < expected {
                        ProblemKind::Truncated
                    } else {
                        ProblemKind::SizeMismatch
                    },
                    format!("{size} bytes, expected {expected}"),
                )),
                Some(_) => None,
            };
            if let Some((kind, detail)) = trouble {
                problems += 1;
                emit(
                    events,
                    job_event::Event::Problem(Problem {
                        path,
                        kind: kind.into(),
                        detail,
                    }),
                )
                .await;
            }
        }
    }
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems,
            summary: String::new(),
        }),
    )
    .await;
    Ok(())
}
