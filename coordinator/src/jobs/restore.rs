//! Restore: read the manifest, map every file to its place under the
//! restore root (refusing anything that would land outside it), refuse a
//! non-empty target, then copy in shards, each file checked against its
//! recorded sha256 as it streams. A failed restore removes what it wrote.
//!
//! A restore is on record in the catalog while it writes, with each shard
//! whose files are all written and verified (agents write to a temp name
//! and rename, so a file is either whole or absent). A coordinator that
//! finds one whose driver died (a new leader, or a single coordinator
//! restarted) carries it on from there: the shards are cut again the same
//! way and the done ones skipped. It is reported complete only when every
//! shard is done and it is taken off record; a CLI that lost its
//! coordinator re-attaches by the restore's id.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use mo_br_format::fileservice::{self, SharedService};
use mo_br_format::layout;
use mo_br_format::manifest::FileEntry;
use mo_br_proto::agent::FileTask;
use mo_br_proto::common::{Storage as WireStorage, Stored};
use mo_br_proto::coordinator::{job_event, Finished, Progress, RestoreRequest, Started};
use mo_br_storage::{Credentials, Location, Storage};

use super::shards::{self, LocalLedger, Op, RunOptions};
use super::{emit, entries, line, remove_all, remove_incomplete, resolve, sweep, Events};
use crate::agents::Eligibility;
use crate::catalog::{Command, RestoreRecord, RestoreSpec};
use crate::{Coordinator, Error, Result};

/// Where a backup's files go under the restore root.
struct Mapping {
    backup_id: String,
    shared_dir: String,
    /// SHARED goes to its own S3 store (a TN config put it there): its
    /// files' destinations are keys relative to that store's key-prefix.
    shared_on_s3: bool,
    /// Backups holding bytes: this one and its chain.
    holders: HashMap<String, WireStorage>,
    checksum: bool,
}

impl Mapping {
    fn task(&self, f: FileEntry) -> Result<FileTask> {
        let dst = if self.shared_on_s3 && f.kind.is_shared() {
            f.name.clone()
        } else {
            layout::restore_rel(f.kind, &f.name, &self.shared_dir)
                .ok_or_else(|| Error::Failed(format!("{} has no restore place", f.path)))?
        };
        mo_br_format::check_relative(&dst)?;
        let holder = f.origin.unwrap_or_else(|| self.backup_id.clone());
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

/// A restore worked out from its request, before anything is written.
struct Plan {
    backup: super::Resolved,
    mapping: Mapping,
    target_wire: WireStorage,
    target_location: Location,
    target_creds: Credentials,
    shared_target: Option<(Location, Credentials)>,
    owned: Vec<String>,
    loose: Vec<String>,
    total_bytes: u64,
    total_files: u64,
}

async fn plan(c: &Coordinator, req: &RestoreRequest) -> Result<Plan> {
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
        backup_id: meta.id.clone(),
        shared_dir,
        shared_on_s3: shared_target.is_some(),
        holders,
        checksum: req.checksum,
    };

    // Every entry is read and mapped once before the target is touched, so
    // a manifest naming a place outside the root, or a holder outside the
    // chain, is refused before anything is written. The chunks are verified
    // against backup_meta each time they are read, so the second reading
    // is the same. Only the few files outside the places the restore owns
    // whole are kept.
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
    Ok(Plan {
        backup,
        mapping,
        target_wire,
        target_location,
        target_creds,
        shared_target,
        owned,
        loose,
        total_bytes,
        total_files,
    })
}

pub async fn run(c: &Coordinator, req: RestoreRequest, events: &Events) -> Result<()> {
    let plan = plan(c, &req).await?;
    if !req.dry_run {
        if let Some(rec) = interrupted_into(c, &plan.target_location).await? {
            let Some(_driving) = c.supervisor.try_claim(&rec.id) else {
                return Err(Error::FailedPrecondition(format!(
                    "restore {} of backup {} into this target is running",
                    rec.id, rec.backup_id
                )));
            };
            // The same restore asked again carries on from its done shards
            // (the embedded default's only way to resume: its coordinator
            // lives for one command); another backup into the same place
            // first removes what the interrupted one wrote.
            if rec.backup_id == plan.backup.meta.id {
                return take_over(c, &rec, Some(req), Resume::Reverify, events).await;
            }
            abandon(c, &rec).await;
        }
    }
    let meta = &plan.backup.meta;
    let opts = super::open_options(req.retry_window_ms);
    let target = mo_br_storage::open_with(&plan.target_location, &plan.target_creds, &opts).await?;
    target.probe().await?;
    refuse_non_empty(target.as_ref(), &plan.owned, &plan.loose).await?;
    // A SHARED store of its own is owned whole: its key-prefix must be empty.
    let shared_store = match &plan.shared_target {
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
        let (total_bytes, total_files) = (plan.total_bytes, plan.total_files);
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
    // this job's driver carries it on, or removes what it wrote.
    let record = RestoreRecord {
        id: uuid::Uuid::now_v7().to_string(),
        backup_id: meta.id.clone(),
        target: plan.target_location.clone(),
        term: c.catalog.leadership().term,
        written: plan.loose.clone(),
        places: owned_places(&plan.owned, &plan.loose),
        owned: plan.owned.clone(),
        shared_target: plan.shared_target.as_ref().map(|(l, _)| l.clone()),
        spec: Some(RestoreSpec {
            backup_id: req.id.clone(),
            backup_location: if req.id.is_empty() {
                Some(plan.backup.location.clone())
            } else {
                None
            },
            dn_config_path: req.dn_config_path.clone(),
            checksum: req.checksum,
            parallelism: req.parallelism,
            retry_window_ms: req.retry_window_ms,
            max_requests_per_sec: req.max_requests_per_sec,
            shard_bytes: c.shard_bytes,
            total_bytes: plan.total_bytes,
            total_files: plan.total_files,
        }),
        done: BTreeSet::new(),
        done_bytes: 0,
        done_files: 0,
    };
    c.catalog
        .propose(Command::RestoreStarted(Box::new(record.clone())))
        .await?;
    let _driving = c.claim(&record.id);
    execute(
        c,
        &plan,
        &record,
        target,
        shared_store,
        Resume::SkipDone,
        events,
    )
    .await
}

/// Writes what `rec` has not done yet. Done shards are skipped; each shard
/// finished here is recorded as soon as its agent reports every file of it
/// written and verified. A deposed driver leaves everything as it is, for
/// the next leader to carry on.
async fn execute(
    c: &Coordinator,
    plan: &Plan,
    rec: &RestoreRecord,
    target: Box<dyn Storage>,
    shared_store: Option<Box<dyn Storage>>,
    resume: Resume,
    events: &Events,
) -> Result<()> {
    let meta = &plan.backup.meta;
    let spec = rec
        .spec
        .as_ref()
        .ok_or_else(|| Error::Failed(format!("restore {} was recorded without a plan", rec.id)))?;
    let (total_bytes, total_files) = (plan.total_bytes, plan.total_files);
    let term = c.catalog.leadership().term;
    emit(
        events,
        job_event::Event::Started(Started {
            job_id: rec.id.clone(),
            backup_id: meta.id.clone(),
            total_bytes,
            total_files,
            what: "restore".into(),
        }),
    )
    .await;
    let carried = match resume {
        Resume::SkipDone if rec.done.is_empty() => None,
        Resume::SkipDone => Some(format!(
            "restore {} carried on: {} files ({} bytes) were already written and verified",
            rec.id, rec.done_files, rec.done_bytes
        )),
        Resume::Reverify => Some(format!(
            "restore {} carried on: what it wrote before is read back and kept where it matches",
            rec.id
        )),
    };
    if let Some(carried) = carried {
        line(events, carried).await;
    }
    // With SHARED in a store of its own, its files go there in a pass of
    // their own; everything else goes to the restore target.
    let mut passes = vec![(plan.target_wire.clone(), Pass::All)];
    if let Some((location, creds)) = &plan.shared_target {
        passes = vec![
            (WireStorage::from_location(location, creds), Pass::Shared),
            (plan.target_wire.clone(), Pass::NodeLocal),
        ];
    }
    let mut outcome = Ok(shards::Outcome::default());
    // Re-verified files count again as they are read back.
    let mut done = match resume {
        Resume::SkipDone => (rec.done_bytes, rec.done_files),
        Resume::Reverify => (0, 0),
    };
    for (pass_no, (to, pass)) in passes.into_iter().enumerate() {
        let pass_no = pass_no as u8;
        let ledger = RestoreLedger {
            c,
            id: rec.id.clone(),
            pass: pass_no,
            epochs: LocalLedger::default(),
            expected: Mutex::new(HashMap::new()),
            written: Mutex::new((0, 0)),
        };
        let mapping = &plan.mapping;
        let tasks = entries(plan.backup.storage.as_ref(), meta)
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
        let ledger_ref = &ledger;
        let already = &rec.done;
        // Shards are cut as they were the first time (same manifest, same
        // bounds), so a done one is known by its number.
        let todo = shards::batch(tasks, Eligibility::Any, spec.shard_bytes)
            .try_filter(move |s| {
                let skip = resume == Resume::SkipDone && already.contains(&(pass_no, s.id));
                if !skip {
                    ledger_ref.expect(s.id, s.files.len());
                }
                futures::future::ready(!skip)
            })
            .boxed();
        let copy = shards::run(
            &c.agents,
            &ledger,
            Op::Restore {
                sources: plan.mapping.holders.clone(),
                target: to,
                checksum: plan.mapping.checksum,
                keep_verified: resume == Resume::Reverify,
            },
            todo,
            RunOptions {
                term,
                parallelism: spec.parallelism,
                fail_fast: true,
                // A client that goes away cancels the restore, which then
                // removes what it wrote, as before it could be resumed.
                stop_without_client: true,
                report_problems: false,
                base: done,
                retry_window_ms: spec.retry_window_ms,
                max_requests_per_sec: spec.max_requests_per_sec,
            },
            events,
        );
        // A deposed leader stops where it stands: the new one carries on.
        let o = tokio::select! {
            o = copy => o,
            () = c.catalog.deposed(term) => {
                return Err(Error::Failed(format!(
                    "this coordinator stopped leading; the new leader carries restore {} on",
                    rec.id
                )));
            }
        };
        let written = *ledger.written.lock().expect("written lock");
        done = (done.0 + written.0, done.1 + written.1);
        outcome = o;
        match &outcome {
            Ok(o) if o.first_problem.is_none() => {}
            _ => break,
        }
    }
    let failure = match &outcome {
        Err(e) => Some(e.to_string()),
        Ok(o) => o.first_problem.as_ref().map(|(_, p)| p.detail.clone()),
    };
    if let Some(reason) = failure {
        remove_restored(target.as_ref(), &rec.owned, &rec.written, &rec.places).await;
        if let Some(store) = &shared_store {
            remove_restored(store.as_ref(), &[String::new()], &[], &[]).await;
        }
        let reason = format!(
            "restore of backup {} failed, nothing was left in {}: {reason}",
            meta.id,
            target.describe()
        );
        let _ = end(c, &rec.id, Some(reason.clone())).await;
        return Err(Error::Failed(reason));
    }
    remove_incomplete(target.as_ref(), &rec.places).await;
    // Off record, or whoever leads next would carry it on: only then complete.
    if let Some(store) = &shared_store {
        remove_incomplete(store.as_ref(), &[String::new()]).await;
    }
    if let Err(e) = end(c, &rec.id, None).await {
        remove_restored(target.as_ref(), &rec.owned, &rec.written, &rec.places).await;
        if let Some(store) = &shared_store {
            remove_restored(store.as_ref(), &[String::new()], &[], &[]).await;
        }
        return Err(Error::Failed(format!(
            "restore of backup {} could not be recorded as finished, so it was removed from {}: {e}",
            meta.id,
            target.describe()
        )));
    }
    tracing::info!("restore {} of backup {} complete", rec.id, meta.id);
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

/// Records a restore's shards as they finish, in the replicated state.
struct RestoreLedger<'a> {
    c: &'a Coordinator,
    id: String,
    pass: u8,
    epochs: LocalLedger,
    /// Files of each shard handed out, so a shard is recorded done only
    /// when every one of its files is.
    expected: Mutex<HashMap<usize, usize>>,
    /// Bytes and files of the shards recorded here.
    written: Mutex<(u64, u64)>,
}

impl RestoreLedger<'_> {
    fn expect(&self, shard: usize, files: usize) {
        self.expected
            .lock()
            .expect("expected lock")
            .insert(shard, files);
    }
}

#[async_trait::async_trait]
impl shards::Ledger for RestoreLedger<'_> {
    async fn assign(&self, shard: usize, agent: &str) -> Result<u64> {
        self.epochs.assign(shard, agent).await
    }

    async fn finish(
        &self,
        shard: usize,
        _epoch: u64,
        done: &[(usize, mo_br_proto::agent::FileDone)],
    ) -> Result<bool> {
        let expected = self
            .expected
            .lock()
            .expect("expected lock")
            .get(&shard)
            .copied();
        if expected != Some(done.len()) {
            return Ok(true); // a shard with problems: the restore fails anyway
        }
        let bytes = done.iter().map(|(_, d)| d.size).sum();
        let files = done.len() as u64;
        let cmd = Command::RestoreShardDone {
            id: self.id.clone(),
            pass: self.pass,
            shard,
            bytes,
            files,
        };
        match self.c.catalog.propose(cmd).await {
            Ok(_) => {
                tracing::info!(
                    "restore {}: shard {shard} of pass {} done ({files} files, {bytes} bytes)",
                    self.id,
                    self.pass
                );
                let mut w = self.written.lock().expect("written lock");
                w.0 += bytes;
                w.1 += files;
            }
            // Written but not on record: carried on, it is written again.
            Err(e) => tracing::warn!("restore {}: recording shard {shard}: {e}", self.id),
        }
        Ok(true)
    }
}

/// How a restore carried on treats the shards it recorded done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Skipped: a new leader taking over a moment after its predecessor
    /// recorded them.
    SkipDone,
    /// Read back and kept where size and sha256 match, written again where
    /// not: the same restore run again by hand, maybe long after, into a
    /// target someone may have touched meanwhile.
    Reverify,
}

/// A restore on record into `target` whose driver is gone or elsewhere.
async fn interrupted_into(c: &Coordinator, target: &Location) -> Result<Option<RestoreRecord>> {
    let target = target.clone();
    c.catalog
        .read(move |cat| cat.restores.values().find(|r| r.target == target).cloned())
        .await
}

/// Takes over a restore whose driver is gone (this coordinator before a
/// restart, a deposed or dead leader): carries it on from its done shards
/// when it can, with `req`'s credentials (a re-attaching CLI's) or this
/// process's own (its credentials file, its environment); otherwise
/// removes what it wrote.
pub(crate) async fn take_over(
    c: &Coordinator,
    rec: &RestoreRecord,
    req: Option<RestoreRequest>,
    resume: Resume,
    events: &Events,
) -> Result<()> {
    let Some(spec) = rec.spec.clone() else {
        abandon(c, rec).await;
        return Ok(());
    };
    let req = match req {
        Some(req) => req,
        None => {
            let places = std::iter::once(&rec.target)
                .chain(&spec.backup_location)
                .chain(&rec.shared_target);
            if !places.clone().all(|p| c.credentials.reaches(p)) {
                tracing::warn!(
                    "restore {} needs keys this coordinator does not have to carry on",
                    rec.id
                );
                abandon(c, rec).await;
                return Ok(());
            }
            let own = |l: &Location| WireStorage::from_location(l, &c.credentials.s3_or_env(l));
            RestoreRequest {
                id: spec.backup_id.clone(),
                backup: spec.backup_location.as_ref().map(own),
                target: Some(own(&rec.target)),
                dn_config_path: spec.dn_config_path.clone(),
                checksum: spec.checksum,
                parallelism: spec.parallelism,
                retry_window_ms: spec.retry_window_ms,
                max_requests_per_sec: spec.max_requests_per_sec,
                ..Default::default()
            }
        }
    };
    let resumed = async {
        let plan = plan(c, &req).await?;
        if plan.target_location != rec.target
            || (plan.total_bytes, plan.total_files) != (spec.total_bytes, spec.total_files)
        {
            return Err(Error::FailedPrecondition(format!(
                "restore {} no longer matches its backup or target",
                rec.id
            )));
        }
        let opts = super::open_options(spec.retry_window_ms);
        let target =
            mo_br_storage::open_with(&plan.target_location, &plan.target_creds, &opts).await?;
        let shared_store = match &plan.shared_target {
            Some((location, creds)) => {
                Some(mo_br_storage::open_with(location, creds, &opts).await?)
            }
            None => None,
        };
        let term = c.catalog.leadership().term;
        c.catalog
            .propose(Command::RestoreResumed {
                id: rec.id.clone(),
                term,
            })
            .await?;
        tracing::info!(
            "carrying restore {} of backup {} on: {} of {} files done",
            rec.id,
            rec.backup_id,
            rec.done_files,
            spec.total_files
        );
        Ok((plan, target, shared_store))
    }
    .await;
    match resumed {
        Ok((plan, target, shared_store)) => {
            execute(c, &plan, rec, target, shared_store, resume, events).await
        }
        Err(e @ (Error::NotLeader(_) | Error::Shutdown | Error::NoQuorum)) => Err(e),
        Err(e) => {
            tracing::warn!("restore {} cannot be carried on: {e}", rec.id);
            abandon(c, rec).await;
            Err(e)
        }
    }
}

/// [`take_over`] on a task of its own, unless `rec` is driven here already.
/// Nobody watches its events: a CLI follows it through the catalog.
pub(crate) fn take_over_in_background(
    c: &Coordinator,
    rec: RestoreRecord,
    req: Option<RestoreRequest>,
) {
    let Some(guard) = c.supervisor.try_claim(&rec.id) else {
        return;
    };
    let c2 = c.clone();
    let job = async move {
        let _guard = guard;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let drain = async move { while rx.recv().await.is_some() {} };
        let drive = async {
            let r = take_over(&c2, &rec, req, Resume::SkipDone, &tx).await;
            drop(tx);
            r
        };
        if let Err(e) = tokio::join!(drive, drain).0 {
            tracing::warn!("restore {}: {e}", rec.id);
        }
    };
    if c.supervisor.spawn(job).is_err() {
        tracing::debug!("restore not taken over: the coordinator is shutting down");
    }
}

/// Follows restore `id` for a re-attaching CLI until it ends, carrying it
/// on here with the CLI's request if nobody drives it.
pub(crate) async fn follow(
    c: &Coordinator,
    id: &str,
    req: Option<RestoreRequest>,
    events: &Events,
) -> Result<()> {
    let mut changes = c.catalog.changes();
    changes.borrow_and_update();
    let want = id.to_string();
    let read = move |cat: &crate::catalog::Catalog| {
        (
            cat.restores.get(&want).cloned(),
            cat.restores_ended.get(&want).cloned(),
        )
    };
    let (mut running, mut ended) = c.catalog.read_linearizable(read.clone()).await?;
    let mut totals = None;
    if let Some(rec) = &running {
        let spec = rec.spec.clone().unwrap_or_else(|| RestoreSpec {
            backup_id: rec.backup_id.clone(),
            backup_location: None,
            dn_config_path: String::new(),
            checksum: false,
            parallelism: 0,
            retry_window_ms: 0,
            max_requests_per_sec: 0,
            shard_bytes: 0,
            total_bytes: 0,
            total_files: 0,
        });
        totals = Some((spec.total_files, spec.total_bytes));
        emit(
            events,
            job_event::Event::Started(Started {
                job_id: rec.id.clone(),
                backup_id: rec.backup_id.clone(),
                total_bytes: spec.total_bytes,
                total_files: spec.total_files,
                what: "restore".into(),
            }),
        )
        .await;
        if req.is_some() && !c.supervisor.is_driving(id) {
            // Nobody drives it here (the leader's duties have not got to it):
            // the CLI's request, with its keys, carries it on.
            take_over_in_background(c, rec.clone(), req);
        }
    }
    loop {
        if let Some(outcome) = &ended {
            return match outcome {
                None => {
                    emit(
                        events,
                        job_event::Event::Finished(Finished {
                            backup: None,
                            problems: 0,
                            summary: match totals {
                                Some((files, bytes)) => {
                                    format!("restore {id} complete: {files} files, {bytes} bytes")
                                }
                                None => format!("restore {id} complete"),
                            },
                        }),
                    )
                    .await;
                    Ok(())
                }
                Some(failure) => Err(Error::Failed(failure.clone())),
            };
        }
        let Some(rec) = &running else {
            return Err(Error::FailedPrecondition(format!(
                "no restore {id} is running or recently ended"
            )));
        };
        emit(
            events,
            job_event::Event::Progress(Progress {
                bytes: rec.done_bytes,
                files: rec.done_files,
            }),
        )
        .await;
        if changes.changed().await.is_err() {
            return Err(Error::Shutdown);
        }
        (running, ended) = c.catalog.read(read.clone()).await?;
    }
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
async fn end(c: &Coordinator, id: &str, failure: Option<String>) -> Result<()> {
    let ended = c
        .catalog
        .propose(Command::RestoreEnded {
            id: id.to_string(),
            failure,
        })
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
        match mo_br_storage::open(location, &c.credentials.s3_or_env(location)).await {
            Ok(store) => remove_restored(store.as_ref(), &[String::new()], &[], &[]).await,
            Err(e) => tracing::warn!(
                "restore {}: the SHARED store it wrote could not be opened to remove what it wrote: {e}",
                rec.id
            ),
        }
    }
    match mo_br_storage::open(&rec.target, &c.credentials.s3_or_env(&rec.target)).await {
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
    let failure = format!(
        "restore {} of backup {} was interrupted and could not be carried on; what it wrote was removed",
        rec.id, rec.backup_id
    );
    let _ = end(c, &rec.id, Some(failure)).await;
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
