//! List: the catalog's backups; with an ID, also check that every file of
//! the backup still exists with its recorded size (no checksum: that is
//! what `check` is for).

use mo_br_proto::coordinator::{job_event, Backups, Finished, ListRequest, Problem};

use super::{emit, info, line, resolve, Events};
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
        for f in backup.meta.files.iter().filter(|f| f.need_copy) {
            line(events, format!("check: {}", f.path)).await;
            let found = backup.storage.head(&f.path).await?;
            let trouble = match found {
                None => Some(("missing", "not found".to_string())),
                Some(size) if size != f.size => Some((
                    if size < f.size {
                        "truncated"
                    } else {
                        "size mismatch"
                    },
                    format!("{size} bytes, expected {}", f.size),
                )),
                Some(_) => None,
            };
            if let Some((kind, detail)) = trouble {
                problems += 1;
                emit(
                    events,
                    job_event::Event::Problem(Problem {
                        path: f.path.clone(),
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
