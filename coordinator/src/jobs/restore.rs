//! Restore: read the manifest, map every file to its place under the
//! restore root (refusing anything that would land outside it), refuse a
//! non-empty target, then copy in shards, each file checked against its
//! recorded sha256 as it streams. A failed restore removes what it wrote;
//! so does the coordinator that finds one whose driver died (the restore is
//! on record in the catalog while it writes).

use std::collections::HashMap;
use std::path::PathBuf;

use futures::{StreamExt, TryStreamExt};
use mo_br_format::fileservice::{self, SharedService};
use mo_br_format::layout;
use mo_br_format::manifest::{BackupMeta, FileEntry};
use mo_br_proto::agent::FileTask;
use mo_br_proto::common::{Storage as WireStorage, Stored};
use mo_br_proto::coordinator::{job_event, Finished, RestoreRequest, Started};
use mo_br_storage::{Credentials, Location, Storage};

use super::shards::{self, LocalLedger, Op, RunOptions};
use super::{emit, entries, line, remove_all, remove_incomplete, resolve, sweep, Events};
use crate::agents::Eligibility;
use crate::catalog::{Command, RestoreRecord};
use crate::{Coordinator, Error, Result};

/// Where a backup's files go under the restore root.
struct Mapping<'a> {
    meta: &'a BackupMeta,
    shared_dir: String,
    /// SHARED goes to its own S3 store (a TN config put it there): its
    /// files' destinations are keys relative to that store's key-prefix.
    shared_on_s3: bool,
    /// Backups holding bytes: this one and its chain.
    holders: HashMap<String, WireStorage>,
    checksum: bool,
}

impl Mapping<'_> {
    fn task(&self, f: FileEntry) -> Result<FileTask> {
        let dst = if self.shared_on_s3 && f.kind.is_shared() {
            f.name.clone()
        } else {
            layout::restore_rel(f.kind, &f.name, &self.shared_dir)
                .ok_or_else(|| Error::Failed(format!("{} has no restore place", f.path)))?
        };
        mo_br_format::check_relative(&dst)?;
        let holder = f.origin.unwrap_or_else(|| self.meta.id.clone());
        if !self.holders.contains_key(&holder) {
            return Err(Error::FailedPrecondition(format!(
                "{} is held by backup {holder}, which is not in this backup's chain",
                f.path
            )));
        }
        if self.checksum && f.sha256.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "--checksum: no sha256 is recorded for {}",
                f.path
            )));
        }
        Ok(FileTask {
            src: f.path,
            dst,
            size: f.size,
            sha256: f.sha256,
            source_id: holder,
            compression: None,
            // Decompressed on the way: the restore holds the original bytes.
            stored: f.stored.as_ref().map(Stored::from_format),
        })
    }
}

pub async fn run(c: &Coordinator, req: RestoreRequest, events: &Events) -> Result<()> {
    let backup = resolve(
        c,
        &req.id,
        req.backup.as_ref(),
        &req.backup_access_key_id,
        &req.backup_secret_access_key,
    )
    .await?;
    let meta = &backup.meta;
    let target_wire = req
        .target
        .clone()
        .ok_or_else(|| Error::InvalidArgument("--restore_dir is required".into()))?;
    let (target_location, target_creds) =
        target_wire.to_location().map_err(Error::InvalidArgument)?;

    // The SHARED root to restore into: the TN config's, when given (a
    // directory, or a bucket and key-prefix); it must hold the bytes the way
    // the backup's backend did.
    let mut shared_dir = meta.shared_dir.clone();
    let mut shared_target: Option<(Location, Credentials)> = None;
    if !req.dn_config_path.is_empty() {
        let (backend, place) = shared_from_dn_config(&req.dn_config_path)?;
        if !same_bytes(&meta.shared_backend, &backend) {
            return Err(Error::FailedPrecondition(format!(
                "backup {} holds a {} SHARED store but {} configures {}; restore into the same backend",
                meta.id, meta.shared_backend, req.dn_config_path, backend
            )));
        }
        match place {
            SharedPlace::Dir(dir) => shared_dir = dir,
            SharedPlace::S3(place) => shared_target = Some(*place),
        }
    }
    let mut holders: HashMap<String, WireStorage> = HashMap::new();
    holders.insert(
        meta.id.clone(),
        WireStorage::from_location(&backup.location, &backup.creds),
    );
    for link in &meta.chain {
        holders.insert(
            link.id.clone(),
            WireStorage::from_location(&link.location, &backup.creds),
        );
    }
    let mapping = Mapping {
        meta,
        shared_dir,
        shared_on_s3: shared_target.is_some(),
        holders,
        checksum: req.checksum,
    };

    // Every entry is read and mapped once before the target is touched, so
    // a manifest naming a place outside the root, or a holder outside the
    // chain, is refused before anything is written. The chunks are verified
    // against backup_meta each time they are read, so the second reading
    // below is the same. Only the few files outside the places the restore
    // owns whole are kept.
    let owned = owned_prefixes(&target_location, &mapping.shared_dir);
    let mut loose = Vec::new();
    let (mut total_bytes, mut total_files) = (0u64, 0u64);
    let mut all = entries(backup.storage.as_ref(), meta);
    while let Some(f) = all.next().await {
        let f = f?;
        let to_shared_store = mapping.shared_on_s3 && f.kind.is_shared();
        let t = mapping.task(f)?;
        total_bytes += t.size;
        total_files += 1;
        if !to_shared_store && !owned.iter().any(|p| t.dst.starts_with(p.as_str())) {
            loose.push(t.dst);
        }
    }
    drop(all);

    let opts = super::open_options(req.retry_window_ms);
    let target = mo_br_storage::open_with(&target_location, &target_creds, &opts).await?;
    target.probe().await?;
    refuse_non_empty(target.as_ref(), &owned, &loose).await?;
    // A SHARED store of its own is owned whole: its key-prefix must be empty.
    let shared_store = match &shared_target {
        Some((location, creds)) => {
            let store = mo_br_storage::open_with(location, creds, &opts).await?;
            store.probe().await?;
            refuse_non_empty(store.as_ref(), &[String::new()], &[]).await?;
            Some(store)
        }
        None => None,
    };

    if req.dry_run {
        drop(shared_store);
        let rate = super::dry_run::throughput(c).await?;
        for l in [
            format!("files: {total_files}"),
            format!("bytes: {total_bytes}"),
            // A read of the backup and a write of the target per file.
            format!("requests: {} reads, {total_files} writes", total_files),
            format!(
                "{} (backups' throughput; restores are not measured)",
                super::dry_run::estimate(total_bytes, rate)
            ),
        ] {
            line(events, l).await;
        }
        return super::dry_run::finish(events, "dry run: nothing was written".into()).await;
    }
    // On record before anything is written, so a coordinator that outlives
    // this job's driver removes what it wrote.
    let places = owned_places(&owned, &loose);
    let record = RestoreRecord {
        id: uuid::Uuid::now_v7().to_string(),
        backup_id: meta.id.clone(),
        target: target_location.clone(),
        term: c.catalog.leadership().term,
        written: loose.clone(),
        places: places.clone(),
        owned: owned.clone(),
        shared_target: shared_target.as_ref().map(|(l, _)| l.clone()),
    };
    let (restore_id, term) = (record.id.clone(), record.term);
    c.catalog
        .propose(Command::RestoreStarted(Box::new(record)))
        .await?;
    let _driving = c.claim(&restore_id);

    emit(
        events,
        job_event::Event::Started(Started {
            job_id: meta.id.clone(),
            backup_id: meta.id.clone(),
            total_bytes,
            total_files,
            what: "restore".into(),
        }),
    )
    .await;
    // With SHARED in a store of its own, its files go there in a pass of
    // their own; everything else goes to the restore target.
    let mut passes = vec![(target_wire.clone(), Pass::All)];
    if let Some((location, creds)) = &shared_target {
        passes = vec![
            (WireStorage::from_location(location, creds), Pass::Shared),
            (target_wire.clone(), Pass::NodeLocal),
        ];
    }
    let ledger = LocalLedger::default();
    let mut outcome = Ok(shards::Outcome::default());
    let mut done = (0u64, 0u64);
    for (to, pass) in passes {
        let mapping = &mapping;
        let tasks = entries(backup.storage.as_ref(), meta)
            .try_filter_map(move |f: FileEntry| {
                let take = match pass {
                    Pass::All => true,
                    Pass::Shared => f.kind.is_shared(),
                    Pass::NodeLocal => !f.kind.is_shared(),
                };
                futures::future::ready(if take {
                    mapping.task(f).map(Some)
                } else {
                    Ok(None)
                })
            })
            .boxed();
        let copy = shards::run(
            &c.agents,
            &ledger,
            Op::Restore {
                sources: mapping.holders.clone(),
                target: to,
                checksum: req.checksum,
            },
            shards::batch(tasks, Eligibility::Any, c.shard_bytes),
            RunOptions {
                term: c.catalog.leadership().term,
                parallelism: req.parallelism,
                fail_fast: true,
                stop_without_client: true,
                report_problems: false,
                base: done,
                retry_window_ms: req.retry_window_ms,
                max_requests_per_sec: req.max_requests_per_sec,
            },
            events,
        );
        // A deposed leader stops: the new one removes what was written.
        outcome = tokio::select! {
            o = copy => o,
            () = c.catalog.deposed(term) => Err(Error::Failed(
                "this coordinator stopped leading; the new leader removes what was restored".into(),
            )),
        };
        match &outcome {
            Ok(o) if o.first_problem.is_none() => {}
            _ => break,
        }
        done = (total_bytes, total_files);
    }
    let failure = match &outcome {
        Err(e) => Some(e.to_string()),
        Ok(o) => o.first_problem.as_ref().map(|(_, p)| p.detail.clone()),
    };
    if let Some(reason) = failure {
        remove_restored(target.as_ref(), &owned, &loose, &places).await;
        if let Some(store) = &shared_store {
            remove_restored(store.as_ref(), &[String::new()], &[], &[]).await;
        }
        let _ = end(c, &restore_id).await;
        return Err(Error::Failed(format!(
            "restore of backup {} failed, nothing was left in {}: {reason}",
            meta.id,
            target.describe()
        )));
    }
    remove_incomplete(target.as_ref(), &places).await;
    // Off record, or whoever leads next would remove it: only then complete.
    if let Some(store) = &shared_store {
        remove_incomplete(store.as_ref(), &[String::new()]).await;
    }
    if let Err(e) = end(c, &restore_id).await {
        remove_restored(target.as_ref(), &owned, &loose, &places).await;
        if let Some(store) = &shared_store {
            remove_restored(store.as_ref(), &[String::new()], &[], &[]).await;
        }
        return Err(Error::Failed(format!(
            "restore of backup {} could not be recorded as finished, so it was removed from {}: {e}",
            meta.id,
            target.describe()
        )));
    }
    line(
        events,
        format!("restored backup {} into {}", meta.id, target.describe()),
    )
    .await;
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary: format!("restore complete: {total_files} files, {total_bytes} bytes"),
        }),
    )
    .await;
    Ok(())
}

/// Removes what a restore wrote: everything under the places it owns whole,
/// its few other files, and temp files of unfinished writes.
async fn remove_restored(
    target: &dyn Storage,
    owned: &[String],
    loose: &[String],
    places: &[String],
) {
    for pass in 0..2 {
        if pass > 0 {
            tokio::time::sleep(super::CANCEL_GRACE).await;
        }
        for prefix in owned {
            if let Err(e) = remove_all(target, prefix).await {
                tracing::warn!("cleanup of {prefix:?}: {e}");
            }
        }
    }
    sweep(target, loose, places).await;
}

/// The places a restore owns whole, so they must be empty before it
/// starts: on S3 the whole target prefix; on a filesystem (MatrixOne's
/// directory, which holds other things too) `mo-data/`, and the SHARED
/// directory when a TN config puts it elsewhere.
fn owned_prefixes(target: &Location, shared_dir: &str) -> Vec<String> {
    match target {
        Location::S3(_) => vec![String::new()],
        Location::Filesystem { .. } => {
            let mut owned = vec!["mo-data/".to_string()];
            let shared = format!("{shared_dir}/");
            if !shared.starts_with("mo-data/") {
                owned.push(shared);
            }
            owned
        }
    }
}

/// Takes a restore off record. One left on record (no quorum) is removed by
/// the next leader, so a restore is reported complete only once this got
/// through.
async fn end(c: &Coordinator, id: &str) -> Result<()> {
    let ended = c
        .catalog
        .propose(Command::RestoreEnded { id: id.to_string() })
        .await;
    if let Err(e) = &ended {
        tracing::warn!("restore {id}: taking it off record: {e}");
    }
    ended.map(|_| ())
}

/// Ends a restore whose driver is gone (this coordinator before a restart, a
/// deposed leader): removes what it wrote and takes it off record.
pub(crate) async fn abandon(c: &Coordinator, rec: &RestoreRecord) {
    if let Some(location) = &rec.shared_target {
        match mo_br_storage::open(location, &Credentials::default()).await {
            Ok(store) => remove_restored(store.as_ref(), &[String::new()], &[], &[]).await,
            Err(e) => tracing::warn!(
                "restore {}: the SHARED store it wrote could not be opened to remove what it wrote: {e}",
                rec.id
            ),
        }
    }
    match mo_br_storage::open(&rec.target, &Credentials::default()).await {
        Ok(target) => {
            remove_restored(target.as_ref(), &rec.owned, &rec.written, &rec.places).await;
            tracing::warn!(
                "restore {} of backup {} into {} was interrupted; what it wrote was removed",
                rec.id,
                rec.backup_id,
                target.describe()
            );
        }
        Err(e) => tracing::warn!(
            "restore {} of backup {} was interrupted; its target could not be opened to remove what it wrote: {e}",
            rec.id,
            rec.backup_id
        ),
    }
    let _ = end(c, &rec.id).await;
}

/// Where a restore may remove temp files of unfinished writes: the places
/// it owns whole, and the directories of its other files (configs, a
/// LOCAL dir a TN config moved), where only the restore writes temp files
/// of this naming. Nested places are covered by their parent; the root
/// itself is never swept whole unless the restore owns it.
fn owned_places(owned: &[String], loose: &[String]) -> Vec<String> {
    let mut dirs: Vec<&str> = owned
        .iter()
        .map(String::as_str)
        .chain(
            loose
                .iter()
                .filter_map(|dst| dst.rfind('/').map(|i| &dst[..=i])),
        )
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    let mut places: Vec<String> = Vec::new();
    for dir in dirs {
        if !places.iter().any(|p| dir.starts_with(p.as_str())) {
            places.push(dir.to_string());
        }
    }
    places
}

/// A restore never overwrites: the places it owns whole must be empty and
/// none of its other files may exist.
async fn refuse_non_empty(target: &dyn Storage, owned: &[String], loose: &[String]) -> Result<()> {
    let mut occupied = None;
    for prefix in owned {
        if let Some(e) = target.list(prefix).next().await.transpose()? {
            occupied = Some(e.name);
            break;
        }
    }
    if occupied.is_none() {
        for dst in loose {
            if target.head(dst).await?.is_some() {
                occupied = Some(dst.clone());
                break;
            }
        }
    }
    match occupied {
        Some(name) => Err(Error::FailedPrecondition(format!(
            "restore target {} is not empty (it holds {name}); restore into an empty place",
            target.describe()
        ))),
        None => Ok(()),
    }
}

/// Whether a SHARED store of `to` holds bytes as one of `from` does: DISK
/// frames every block with a CRC; DISK-V2, S3 and MinIO keep raw bytes.
fn same_bytes(from: &str, to: &str) -> bool {
    let raw = |b: &str| matches!(b, "DISK-V2" | "S3" | "MINIO");
    from == to || (raw(from) && raw(to))
}

/// Where a TN config keeps SHARED.
enum SharedPlace {
    /// A directory, relative to the MatrixOne directory.
    Dir(String),
    /// A bucket and key-prefix, with the keys the config (or else the
    /// environment) names, as MatrixOne would read them.
    S3(Box<(Location, Credentials)>),
}

/// Which files a restore pass writes.
#[derive(Clone, Copy)]
enum Pass {
    All,
    Shared,
    NodeLocal,
}

/// The SHARED backend and place that a TN config names.
fn shared_from_dn_config(path: &str) -> Result<(String, SharedPlace)> {
    let text = std::fs::read_to_string(PathBuf::from(path))
        .map_err(|e| Error::InvalidArgument(format!("--dn_config_path {path}: {e}")))?;
    let bad = |e: String| Error::InvalidArgument(format!("--dn_config_path {path}: {e}"));
    match fileservice::shared_from_tn_config(&text).map_err(bad)? {
        None => Err(Error::InvalidArgument(format!(
            "--dn_config_path {path}: no [[fileservice]] named SHARED"
        ))),
        Some(SharedService::S3(s3)) => {
            let creds = s3
                .static_credentials(|name| std::env::var(name).ok())
                .unwrap_or_default();
            Ok((
                s3.backend.clone(),
                SharedPlace::S3(Box::new((Location::S3(s3.location()), creds))),
            ))
        }
        Some(SharedService::Disk { backend, data_dir }) => {
            let dir = data_dir
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            mo_br_format::check_relative(&dir).map_err(|_| {
                Error::InvalidArgument(format!(
                    "--dn_config_path {path}: SHARED data-dir {data_dir:?} must be relative to the MatrixOne directory"
                ))
            })?;
            Ok((backend, SharedPlace::Dir(dir)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{owned_places, owned_prefixes};
    use mo_br_storage::Location;

    #[test]
    fn owned_places_cover_each_restored_file_once() {
        let fs = Location::Filesystem { path: "/r".into() };
        let owned = owned_prefixes(&fs, "data/shared");
        assert_eq!(owned, ["mo-data/", "data/shared/"]);
        let loose: Vec<String> = [
            "etc/launch/tn.toml",
            "etc/launch/cn.toml",
            "data/local/hk_data",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            owned_places(&owned, &loose),
            ["data/local/", "data/shared/", "etc/launch/", "mo-data/"]
        );
        assert_eq!(owned_prefixes(&fs, "mo-data/shared2"), ["mo-data/"]);
    }
}
