//! Rebuild: the catalog from the backups themselves. Every backup location
//! holds its `backup_meta` (written last, verified by its sidecar), which
//! says everything the catalog records of it, so a lost or damaged catalog
//! is recovered from the storage alone. The scan streams: S3 listings page
//! through the bucket, filesystem directories are walked one at a time and
//! a backup's own directory is not descended into; only `backup_meta`
//! files are read. It merges: backups already in the catalog are left as
//! they are, so running it twice, or against a catalog that only lost
//! some records, is harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mo_br_format::layout;
use mo_br_format::manifest::{BackupMeta, BackupType};
use mo_br_proto::coordinator::{job_event, Finished, RebuildRequest};
use mo_br_storage::{Credentials, Location, Storage};

use super::delete::TOMBSTONE;
use super::{emit, line, read_manifest, Events};
use crate::catalog::{Applied, BackupMethod, BackupRecord, BackupState, Command};
use crate::{Coordinator, Error, Result};

/// `backup_meta` reads in flight at once.
const READ_PARALLELISM: usize = 8;

/// What a found backup's manifest says (its file list is not kept).
struct Found {
    record: BackupRecord,
    /// Where its manifest says it was written, when it is not where found.
    moved_from: Option<Location>,
}

pub async fn run(c: &Coordinator, req: RebuildRequest, events: &Events) -> Result<()> {
    let wire = req.storage.as_ref().ok_or_else(|| {
        Error::InvalidArgument(
            "rebuild needs the root to scan (--backup_dir with --backup_path or the --backup_* s3 flags)".into(),
        )
    })?;
    let (root, mut creds) = wire.to_location().map_err(Error::InvalidArgument)?;
    if !req.access_key_id.is_empty() {
        creds = Credentials {
            access_key_id: req.access_key_id.clone(),
            secret_access_key: req.secret_access_key.clone(),
            ..Default::default()
        };
    }
    let in_catalog: BTreeMap<String, BackupState> = c
        .catalog
        .read_linearizable(|cat| {
            cat.backups
                .values()
                .map(|r| (r.id.clone(), r.state.clone()))
                .collect()
        })
        .await?;

    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut skipped = 0u64;
    let mut present = 0u64;
    // The S3 listing borrows its storage, which lives as long as the scan.
    let lister = match &root {
        Location::S3(_) => {
            let s = mo_br_storage::open(&root, &creds).await?;
            s.probe().await?;
            Some(s)
        }
        Location::Filesystem { .. } => None,
    };
    let dirs = match (&lister, &root) {
        (Some(s), _) => s3_backup_dirs(s.as_ref()),
        (None, Location::Filesystem { path }) => fs_backup_dirs(path.clone()),
        (None, Location::S3(_)) => unreachable!("opened above"),
    };
    let mut examined = dirs
        .map_ok(|dir| {
            let loc = sub_location(&root, &dir);
            let creds = creds.clone();
            async move {
                let outcome = examine(&loc, &creds).await;
                Ok::<_, Error>((loc, outcome))
            }
        })
        .try_buffer_unordered(READ_PARALLELISM);
    while let Some((loc, outcome)) = examined.try_next().await? {
        let meta = match outcome {
            Ok(meta) => meta,
            Err(reason) => {
                skipped += 1;
                line(events, format!("skipped {loc}: {reason}")).await;
                continue;
            }
        };
        if let Some(other) = found.get(&meta.id) {
            skipped += 1;
            line(
                events,
                format!(
                    "skipped {loc}: backup {} again (first found at {}; a copy?)",
                    meta.id, other.record.location
                ),
            )
            .await;
            continue;
        }
        if in_catalog.contains_key(&meta.id) {
            present += 1;
            line(
                events,
                format!("found {} at {loc}: already in the catalog", meta.id),
            )
            .await;
            continue;
        }
        let moved_from = (meta.location != loc).then(|| meta.location.clone());
        found.insert(
            meta.id.clone(),
            Found {
                record: record(&meta, loc),
                moved_from,
            },
        );
    }
    drop(examined);

    // Chains: an incremental is added only once its base is (or already
    // was) in the catalog as a complete backup; bases first.
    let mut known: BTreeSet<String> = in_catalog
        .iter()
        .filter(|(_, s)| **s == BackupState::Complete)
        .map(|(id, _)| id.clone())
        .collect();
    let mut order = Vec::new();
    loop {
        let ready: Vec<String> = found
            .values()
            .filter(|f| !order.contains(&f.record.id))
            .filter(|f| f.record.base_id.as_ref().is_none_or(|b| known.contains(b)))
            .map(|f| f.record.id.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for id in ready {
            known.insert(id.clone());
            order.push(id);
        }
    }
    for f in found.values().filter(|f| !order.contains(&f.record.id)) {
        skipped += 1;
        let base = f.record.base_id.clone().unwrap_or_default();
        let why = if found.contains_key(&base) {
            format!("its base {base} cannot be added (its own chain is incomplete)")
        } else if in_catalog.contains_key(&base) {
            format!("its base {base} is in the catalog but not complete")
        } else {
            format!("its base {base} was not found")
        };
        line(
            events,
            format!("skipped {} at {}: {why}", f.record.id, f.record.location),
        )
        .await;
    }
    let mut added = 0u64;
    for id in &order {
        let f = &found[id];
        let rec = &f.record;
        let what = match &rec.base_id {
            Some(base) => format!("incremental of {base}"),
            None => "full".to_string(),
        };
        let moved = f
            .moved_from
            .as_ref()
            .map(|l| format!(" (written at {l})"))
            .unwrap_or_default();
        if req.dry_run {
            line(
                events,
                format!(
                    "would add {id} ({what}, {}) at {}{moved}",
                    rec.at_time, rec.location
                ),
            )
            .await;
            added += 1;
            continue;
        }
        match c
            .catalog
            .propose(Command::BackupRecovered(Box::new(rec.clone())))
            .await?
        {
            Applied::Rejected(why) => {
                present += 1;
                line(events, format!("found {id} at {}: {why}", rec.location)).await;
            }
            _ => {
                added += 1;
                line(
                    events,
                    format!(
                        "added {id} ({what}, {}) at {}{moved}",
                        rec.at_time, rec.location
                    ),
                )
                .await;
            }
        }
    }
    let verb = if req.dry_run {
        "would be added"
    } else {
        "added"
    };
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary: format!(
                "rebuild: {added} backup(s) {verb}, {present} already in the catalog, {skipped} skipped"
            ),
        }),
    )
    .await;
    Ok(())
}

/// The catalog record of a complete backup, from its manifest.
pub(crate) fn record(meta: &BackupMeta, location: Location) -> BackupRecord {
    BackupRecord {
        id: meta.id.clone(),
        location,
        backup_type: meta.backup_type,
        consistency: meta.consistency,
        base_id: meta.base_id.clone(),
        state: BackupState::Complete,
        at_time: meta.started_at.clone(),
        complete_time: Some(meta.completed_at.clone()),
        duration_secs: super::backup::duration_secs(meta),
        size: meta.stored_size,
        files: meta.file_count(),
        backup_ts: meta.backup_ts.clone(),
        data_dir: meta.source_data_dir.clone(),
        // Agents' backups name their source; MatrixOne's BACKUP statement
        // names none.
        method: if meta.source_data_dir.is_empty() && meta.source_launch_config.is_empty() {
            BackupMethod::Matrixone
        } else {
            BackupMethod::Agents
        },
        schedule: meta.schedule.clone(),
        replica_of: meta.replica_of.clone(),
    }
}

/// The backup at `loc`: its verified manifest, or why it is skipped.
async fn examine(loc: &Location, creds: &Credentials) -> std::result::Result<BackupMeta, String> {
    let storage = mo_br_storage::open(loc, creds)
        .await
        .map_err(|e| e.to_string())?;
    let deleting = storage
        .head(TOMBSTONE)
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if deleting {
        return Err(
            "a delete of this backup was interrupted (backup_meta.deleting is here): not a backup"
                .into(),
        );
    }
    let meta = read_manifest(storage.as_ref()).await.map_err(|e| match e {
        // Its message names the location again: say only why.
        Error::FailedPrecondition(m) => m
            .strip_prefix(&format!("{}: ", storage.describe()))
            .map(str::to_string)
            .unwrap_or(m),
        other => other.to_string(),
    })?;
    if meta.backup_type == BackupType::Incremental && meta.base_id.is_none() {
        return Err(format!(
            "backup {} is incremental but names no base",
            meta.id
        ));
    }
    Ok(meta)
}

/// The location of directory `dir` (relative, '/'-separated, "" for the
/// root itself) under `root`.
fn sub_location(root: &Location, dir: &str) -> Location {
    let dir = dir.trim_end_matches('/');
    match root {
        Location::Filesystem { path } => Location::Filesystem {
            path: if dir.is_empty() {
                path.clone()
            } else {
                path.join(dir)
            },
        },
        Location::S3(s3) => {
            let mut s3 = s3.clone();
            s3.prefix = match (s3.prefix.is_empty(), dir.is_empty()) {
                (_, true) => s3.prefix,
                (true, false) => dir.to_string(),
                (false, false) => format!("{}/{dir}", s3.prefix),
            };
            Location::S3(s3)
        }
    }
}

/// Names of an S3 listing that mark a backup's directory.
fn marked_dir(name: &str) -> Option<String> {
    [layout::BACKUP_META, TOMBSTONE].iter().find_map(|marker| {
        if name == *marker {
            Some(String::new())
        } else {
            name.strip_suffix(marker)
                .filter(|d| d.ends_with('/'))
                .map(str::to_string)
        }
    })
}

/// Directories of an S3 listing that hold a `backup_meta` (or set-aside
/// one): the listing pages through the bucket as it is read.
fn s3_backup_dirs(storage: &dyn Storage) -> BoxStream<'_, Result<String>> {
    let mut last = None::<String>;
    storage
        .list("")
        .map_err(Error::from)
        .try_filter_map(move |entry| {
            let dir = marked_dir(&entry.name)
                // Both markers of one directory are listed side by side:
                // report it once.
                .filter(|d| last.as_deref() != Some(d.as_str()));
            if let Some(d) = &dir {
                last = Some(d.clone());
            }
            futures::future::ready(Ok(dir))
        })
        .boxed()
}

/// A depth-first walk holding only the directories still to visit; a
/// directory with a `backup_meta` (or set-aside one) is a backup's and is
/// not descended into.
fn fs_backup_dirs(root: PathBuf) -> BoxStream<'static, Result<String>> {
    let io =
        |p: &std::path::Path, e: std::io::Error| Error::Failed(format!("{}: {e}", p.display()));
    futures::stream::try_unfold(vec![root.clone()], move |mut stack| {
        let root = root.clone();
        async move {
            while let Some(dir) = stack.pop() {
                let marked = tokio::fs::try_exists(dir.join(layout::BACKUP_META))
                    .await
                    .map_err(|e| io(&dir, e))?
                    || tokio::fs::try_exists(dir.join(TOMBSTONE))
                        .await
                        .map_err(|e| io(&dir, e))?;
                if marked {
                    let rel = dir
                        .strip_prefix(&root)
                        .unwrap_or(&dir)
                        .to_string_lossy()
                        .replace('\\', "/");
                    return Ok(Some((rel, stack)));
                }
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => {
                        return Err(Error::FailedPrecondition(format!(
                            "{}: no such directory",
                            root.display()
                        )))
                    }
                    Err(e) => return Err(io(&dir, e)),
                };
                while let Some(entry) = entries.next_entry().await.map_err(|e| io(&dir, e))? {
                    // Symlinks are not followed: a backup is its own tree.
                    let ty = entry.file_type().await.map_err(|e| io(&dir, e))?;
                    if ty.is_dir() {
                        stack.push(entry.path());
                    }
                }
            }
            Ok(None)
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_directory() {
        assert_eq!(marked_dir("backup_meta").as_deref(), Some(""));
        assert_eq!(marked_dir("a/b/backup_meta").as_deref(), Some("a/b/"));
        assert_eq!(marked_dir("a/backup_meta.deleting").as_deref(), Some("a/"));
        assert_eq!(marked_dir("a/backup_meta.sha256"), None);
        assert_eq!(marked_dir("a/not_backup_meta"), None);
        let root = Location::Filesystem {
            path: PathBuf::from("/r"),
        };
        assert_eq!(
            sub_location(&root, "x/y/"),
            Location::Filesystem {
                path: PathBuf::from("/r/x/y")
            }
        );
        let s3 = Location::S3(mo_br_storage::S3Location {
            bucket: "b".into(),
            prefix: "p".into(),
            ..Default::default()
        });
        let Location::S3(sub) = sub_location(&s3, "x/") else {
            unreachable!()
        };
        assert_eq!(sub.prefix, "p/x");
    }
}
