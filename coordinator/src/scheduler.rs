//! The leader's scheduler: one task, owned by the supervisor, that sleeps
//! until the next slot of any schedule and wakes early when the catalog's
//! view changes (a schedule created, paused or dropped, a run ended, a new
//! leader). Only the leader fires slots; the exactly-once rule it follows is
//! in [`crate::catalog::schedule`].
//!
//! A run is a backup like any other (`jobs::backup::run_as`) with the id
//! fixed when its slot was fired and the schedule's name on its record. Its
//! target's keys and its MatrixOne password (a `--host` schedule) are this
//! process's own, looked up at each run: its credentials file, else (keys)
//! its AWS_* environment; the catalog holds none. The keys travel to the
//! agents in the shard requests, as a CLI-started backup's do. A run on
//! record whose leader died is carried on by the leader's duties like any
//! running backup.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use mo_br_format::manifest::BackupType;
use mo_br_proto::common::{Compression as WireCompression, Source, Storage as WireStorage};
use mo_br_proto::coordinator::{
    job_event, BackupRequest, BackupType as WireBackupType, MoLogin as WireMoLogin,
};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Duration, Instant};

use crate::catalog::{Applied, BackupState, Command, Schedule};
use crate::jobs::backup::Origin;
use crate::jobs::schedule::{latest_due, next_slot, parse_cron};
use crate::metrics::{self, JobKind};
use crate::{jobs, Coordinator, Error};

/// When reading the catalog failed (no quorum for a moment), the next try.
const RETRY: Duration = Duration::from_secs(1);

/// The runs this process's scheduler started and whose task has not ended
/// (until after it has recorded how the run ended). A fired run that is in
/// neither this set nor the catalog lost its driver: a previous leader, or
/// this process before a restart.
#[derive(Clone, Default)]
struct Mine(Arc<Mutex<HashSet<String>>>);

impl Mine {
    fn has(&self, id: &str) -> bool {
        self.0.lock().expect("runs lock").contains(id)
    }

    fn add(&self, id: &str) {
        self.0.lock().expect("runs lock").insert(id.to_string());
    }

    fn remove(&self, id: &str) {
        self.0.lock().expect("runs lock").remove(id);
    }
}

/// Runs for as long as the supervisor does.
pub(crate) async fn run(c: Coordinator) {
    let mut changes = c.catalog.changes();
    // What the last pass planned from: (schedules revision, term).
    let mut planned = None;
    let mut wake: Option<Instant> = None;
    let mine = Mine::default();
    loop {
        changes.borrow_and_update();
        let l = c.catalog.leadership();
        if l.is_leader {
            let rev = c.catalog.read(|cat| cat.schedules_rev).await.ok();
            let due = wake.is_some_and(|w| w <= Instant::now());
            if rev.is_none() || planned != Some((rev, l.term)) || due {
                planned = Some((rev, l.term));
                wake = match pass(&c, &mine, l.term).await {
                    Some(next) => next,
                    None => {
                        planned = None;
                        Some(Instant::now() + RETRY)
                    }
                };
            }
        } else {
            planned = None;
            wake = None;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // the catalog stopped
                }
            }
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
    }
}

/// What the pass reads of the catalog about one schedule.
struct View {
    schedule: Schedule,
    /// The running run's backup, if on record: its state and whether it
    /// has a plan (a backup job).
    run_record: Option<(BackupState, bool)>,
    /// The schedule's last complete backup: an incremental run's base.
    last_complete: Option<String>,
}

/// One pass over every schedule: fires what is due, restarts a fired run
/// whose leader died before it went on record. Returns when to wake next
/// (`Some(None)`: no slot ahead), or `None` if the catalog could not be read.
async fn pass(c: &Coordinator, mine: &Mine, term: u64) -> Option<Option<Instant>> {
    let views = c
        .catalog
        .read_linearizable(|cat| {
            cat.schedules
                .values()
                .map(|s| {
                    let run_record = s.running.as_ref().and_then(|r| {
                        cat.backups
                            .get(&r.backup_id)
                            .map(|b| (b.state.clone(), cat.jobs.contains_key(&b.id)))
                    });
                    let last_complete = cat
                        .backups
                        .values()
                        .filter(|b| {
                            b.schedule.as_deref() == Some(s.name.as_str())
                                && b.state == BackupState::Complete
                        })
                        .max_by(|a, b| a.complete_time.cmp(&b.complete_time))
                        .map(|b| b.id.clone());
                    View {
                        schedule: s.clone(),
                        run_record,
                        last_complete,
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .ok()?;
    let now = Utc::now().timestamp();
    let mut next: Option<i64> = None;
    for v in views {
        let s = &v.schedule;
        let busy = s.running.is_some();
        if let Some(run) = &s.running {
            let driven = mine.has(&run.backup_id) || c.supervisor.is_driving(&run.backup_id);
            match &v.run_record {
                // Fired by a leader (or this process before a restart) that
                // died before the backup went on record: started here, with
                // the fired id.
                None if !driven => {
                    tracing::info!(
                        schedule = %s.name,
                        backup = %run.backup_id,
                        "starting a fired run whose driver is gone"
                    );
                    start(
                        c,
                        mine,
                        s,
                        run.slot,
                        run.backup_id.clone(),
                        v.last_complete.clone(),
                    );
                }
                // On record but never planned, and nobody drives it: its
                // leader died in between. It cannot be carried on (no plan),
                // so it is ended like any backup whose driver is gone (what
                // it wrote removed, recorded failed) and the schedule goes on.
                Some((BackupState::Running, false)) if !driven => {
                    let guard = c.supervisor.claim(&run.backup_id);
                    let (c2, id) = (c.clone(), run.backup_id.clone());
                    let _ = c.supervisor.spawn(async move {
                        let _guard = guard;
                        jobs::backup::abandon(&c2, &id).await;
                    });
                }
                _ => {}
            }
        }
        if s.paused {
            continue;
        }
        let Ok(cron) = parse_cron(&s.cron) else {
            continue; // checked at create: never happens
        };
        let anchor = s.last_fired.unwrap_or(s.created - 1);
        if let Some(slot) = latest_due(&cron, anchor, now) {
            fire(c, mine, &v, slot, busy, term).await;
        }
        if let Some(n) = next_slot(&cron, anchor.max(now)) {
            next = Some(next.map_or(n, |m| m.min(n)));
        }
    }
    Some(next.map(|n| {
        let wait = (n - Utc::now().timestamp()).max(0) as u64;
        // Cron slots are whole seconds: wake just past the second.
        Instant::now() + Duration::from_secs(wait) + Duration::from_millis(5)
    }))
}

/// Fires `slot` of a schedule: skipped if its previous run is going, else
/// a run with a fresh backup id, started here once the slot is on record.
async fn fire(c: &Coordinator, mine: &Mine, v: &View, slot: i64, busy: bool, term: u64) {
    let s = &v.schedule;
    let backup_id = (!busy).then(|| uuid::Uuid::now_v7().to_string());
    let cmd = Command::ScheduleFired {
        name: s.name.clone(),
        slot,
        backup_id: backup_id.clone(),
        term,
    };
    match c.catalog.propose(cmd).await {
        Ok(Applied::Ok) => {}
        // Another leader fired it, or the schedule is gone: nothing to do.
        Ok(_) | Err(_) => return,
    }
    match backup_id {
        Some(id) => start(c, mine, s, slot, id, v.last_complete.clone()),
        None => {
            metrics::schedule_skipped(&s.name);
            tracing::info!(
                schedule = %s.name,
                running = %s.running.as_ref().map(|r| r.backup_id.as_str()).unwrap_or(""),
                "slot skipped: the previous run is still going"
            );
        }
    }
}

/// Starts the run of `slot` as backup `id` on the supervisor.
fn start(c: &Coordinator, mine: &Mine, s: &Schedule, slot: i64, id: String, base: Option<String>) {
    // Marked before the task runs, so no later pass starts it again; the
    // claim counts it among the jobs driven here.
    mine.add(&id);
    let guard = c.supervisor.claim(&id);
    let spec = &s.spec;
    let (backup_type, base_id) = match (spec.backup_type, base) {
        (BackupType::Incremental, Some(base)) => (WireBackupType::Incremental, base),
        _ => (WireBackupType::Full, String::new()),
    };
    let location = s.run_location(slot);
    // Empty keys when the file has none: opening the target (here and on
    // the agents) falls back to the process's environment.
    let creds = c.credentials.s3_or_env(&location);
    let login = match &spec.matrixone {
        None => Ok(None),
        Some(mo) => c
            .credentials
            .password_for(&mo.host, mo.port, &mo.user)
            .map(|password| {
                Some(WireMoLogin {
                    host: mo.host.clone(),
                    port: mo.port.into(),
                    user: mo.user.clone(),
                    password,
                })
            })
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "no password for {}@{}:{} in the coordinator's --credentials_file",
                    mo.user, mo.host, mo.port
                ))
            }),
    };
    let mut req = BackupRequest {
        target: Some(WireStorage::from_location(&location, &creds)),
        source: Some(Source {
            data_dir: spec.data_dir.clone(),
            launch_config: spec.launch_config.clone(),
            node: spec.node.clone(),
        }),
        backup_type: backup_type.into(),
        base_id,
        parallelism: spec.parallelism,
        compression: spec.compression.as_ref().map(WireCompression::from_format),
        ..Default::default()
    };
    let name = s.name.clone();
    let id_for_err = id.clone();
    let retention = jobs::schedule::policy(&s.retention);
    let label = metrics::location_label(&location);
    let task = {
        let c = c.clone();
        let mine = mine.clone();
        async move {
            let _guard = guard;
            // Unmarked last, once the run's end is on record (or this task
            // is dropped on shutdown).
            let _mark = Unmark(mine, id.clone());
            let live = c.live.start(JobKind::Backup.as_str(), Some(label.clone()));
            let mut job = metrics::job_started(JobKind::Backup, Some(label));
            job.schedule = name.clone();
            job.id = id.clone();
            tracing::info!(schedule = %name, backup = %id, "scheduled backup started");
            let (tx, mut rx) = mpsc::channel(64);
            let origin = Origin {
                id: Some(id.clone()),
                schedule: Some(name.clone()),
            };
            let drive = async {
                let r = match login {
                    Ok(login) => {
                        req.login = login;
                        jobs::backup::run_as(&c, req, origin, &tx).await
                    }
                    Err(e) => Err(e),
                };
                drop(tx);
                r
            };
            let watch = async {
                let (mut bytes, mut files) = (0, 0);
                while let Some(event) = rx.recv().await {
                    live.observe(&event);
                    if let Some(job_event::Event::Progress(p)) = event.ok().and_then(|e| e.event) {
                        bytes = bytes.max(p.bytes);
                        files = files.max(p.files);
                    }
                }
                (bytes, files)
            };
            let (result, (bytes, files)) = tokio::join!(drive, watch);
            job.bytes = bytes;
            job.files = files;
            match result {
                Ok(()) => {
                    tracing::info!(schedule = %name, backup = %id, "scheduled backup completed");
                    job.finish(true);
                    if let Some(policy) = retention {
                        let (tx, mut rx) = mpsc::channel(64);
                        let drain = async move { while rx.recv().await.is_some() {} };
                        let expire = async {
                            let r = jobs::schedule::expire(&c, &name, policy, &tx).await;
                            drop(tx);
                            r
                        };
                        match tokio::join!(expire, drain).0 {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(schedule = %name, "retention removed {n} backup(s)")
                            }
                            Err(e) => tracing::warn!(schedule = %name, "retention: {e}"),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(schedule = %name, backup = %id, "scheduled backup failed: {e}");
                    job.finish(false);
                    // A backup on record ended with it; one refused before
                    // (its target was not empty, say) ends the run here.
                    let _ = c
                        .catalog
                        .propose(Command::ScheduleRunEnded {
                            name,
                            backup_id: id,
                            reason: e.to_string(),
                        })
                        .await;
                }
            }
        }
    };
    if c.supervisor.spawn(task).is_err() {
        mine.remove(&id_for_err);
        tracing::debug!("scheduled run not started: the coordinator is shutting down");
    }
}

/// Takes a run out of [`Mine`] when its task ends, however it ends.
struct Unmark(Mine, String);

impl Drop for Unmark {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}
