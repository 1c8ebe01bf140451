//! One replica's supervisor: it owns every task the coordinator starts
//! (jobs, adopted backups, clean-ups, the leader's duties) and stops them on
//! shutdown, and it carries out the leader's duties.
//!
//! - [`Supervisor`]: a shutdown token, the set of tasks it stops with it,
//!   the jobs this replica drives ([`DriveGuard`]) and their count, which
//!   [`Supervisor::wait_idle`] waits on.
//! - The leader's duties, on replicated catalogs: one task wakes when the
//!   catalog's view changes (leadership, an applied command; see
//!   [`CatalogHandle::changes`](crate::catalog::CatalogHandle::changes)) or
//!   a driven job ends, and while this replica leads it adopts running
//!   backups nobody here drives, releases MatrixOne GC holds of ended
//!   backups, carries on restores of earlier terms, and ends
//!   backups MatrixOne's BACKUP wrote for a leader that is gone. A leader
//!   just elected may not have applied its whole log yet: what it learns
//!   late, it handles at the change that brings it.
//! - [`take_over_local`]: the same duties, once, when a single coordinator
//!   opens the catalog a previous process left.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mo_br_format::manifest::Consistency;
use mo_br_storage::Credentials;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::catalog::{BackupMethod, BackupState};
use crate::matrixone::MoLogin;
use crate::{jobs, metrics, online, Coordinator, Error, Result};

/// Two rounds of duties are at least this far apart, so a leader applying
/// hundreds of commands a second runs them a few times a second, not
/// hundreds.
const ROUND_GAP: Duration = Duration::from_millis(200);
/// When a GC hold of an ended backup could not be released (MatrixOne
/// unreachable, no password known), the next try: nothing in the catalog
/// changes to say it may work now.
const RELEASE_RETRY: Duration = Duration::from_secs(2);
/// How often the live-agents gauge is refreshed: a lease ends by the clock,
/// not by an event.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// A cheap handle; every clone is the same supervisor.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

struct Shared {
    stop: CancellationToken,
    /// Every task started through [`Supervisor::spawn`]; `None` once shut
    /// down, so nothing new starts. A std Mutex: held to spawn into or to
    /// take the set, never across an await.
    tasks: Mutex<Option<JoinSet<()>>>,
    /// Jobs (backups, restores, clean-ups) driven here, so that each is
    /// adopted or cleaned up once. Touched by jobs, `Attach` and the duties;
    /// never held across an await.
    driving: Mutex<HashSet<String>>,
    /// How many [`DriveGuard`]s are alive. A watch, so that waiting for
    /// idle, and the duties waiting for a job to end, need no polling.
    running: watch::Sender<usize>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            shared: Arc::new(Shared {
                stop: CancellationToken::new(),
                tasks: Mutex::new(Some(JoinSet::new())),
                driving: Mutex::default(),
                running: watch::Sender::new(0),
            }),
        }
    }
}

impl Supervisor {
    /// Runs `task` on its own task until it ends or the supervisor stops,
    /// whichever comes first: on stop it is dropped where it stands.
    /// `Error::Shutdown` once stopped.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let stop = self.shared.stop.clone();
        let mut tasks = self.shared.tasks.lock().expect("tasks lock");
        let set = tasks.as_mut().ok_or(Error::Shutdown)?;
        // The set keeps finished tasks until joined: reap them here, so it
        // only ever holds live ones.
        while let Some(done) = set.try_join_next() {
            if let Err(e) = done {
                tracing::error!("a coordinator task panicked: {e}");
            }
        }
        set.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
        Ok(())
    }

    /// Starts the leader's duties of a replicated catalog.
    pub(crate) fn lead(&self, c: Coordinator) -> Result<()> {
        self.spawn(duties(c))
    }

    /// Marks `id` as driven here (by the job that is about to plan it),
    /// until the guard drops.
    pub(crate) fn claim(&self, id: &str) -> DriveGuard {
        self.shared
            .driving
            .lock()
            .expect("driving lock")
            .insert(id.to_string());
        DriveGuard::new(self, id)
    }

    /// Like [`Supervisor::claim`], unless `id` is already driven here.
    pub(crate) fn try_claim(&self, id: &str) -> Option<DriveGuard> {
        let fresh = self
            .shared
            .driving
            .lock()
            .expect("driving lock")
            .insert(id.to_string());
        fresh.then(|| DriveGuard::new(self, id))
    }

    pub(crate) fn is_driving(&self, id: &str) -> bool {
        self.shared
            .driving
            .lock()
            .expect("driving lock")
            .contains(id)
    }

    /// How many jobs are driven here, as it changes.
    pub(crate) fn running(&self) -> watch::Receiver<usize> {
        self.shared.running.subscribe()
    }

    /// Waits until no job is driven here, or `limit` passes; returns whether
    /// it got idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        wait_idle(self.running(), limit).await
    }

    /// Stops every task: signals them, waits up to `limit` for them to
    /// end, then aborts the rest. What they leave is on record in the
    /// catalog, for whoever leads next. A second call returns at once.
    pub async fn shutdown(&self, limit: Duration) {
        self.shared.stop.cancel();
        let tasks = self.shared.tasks.lock().expect("tasks lock").take();
        let Some(mut tasks) = tasks else {
            return;
        };
        let joined =
            tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
        if joined.is_err() {
            tracing::warn!(
                "{} coordinator tasks did not stop within {limit:?}: aborted",
                tasks.len()
            );
            tasks.abort_all();
        }
    }
}

/// Waits until `running` reads 0 (or its supervisor is gone), up to `limit`.
pub(crate) async fn wait_idle(mut running: watch::Receiver<usize>, limit: Duration) -> bool {
    tokio::time::timeout(limit, running.wait_for(|n| *n == 0))
        .await
        // Closed: the supervisor is gone, so is everything it drove.
        .is_ok()
}

/// Marks a job as driven here until dropped.
pub(crate) struct DriveGuard {
    supervisor: Supervisor,
    id: String,
}

impl DriveGuard {
    fn new(supervisor: &Supervisor, id: &str) -> DriveGuard {
        supervisor.shared.running.send_modify(|n| *n += 1);
        DriveGuard {
            supervisor: supervisor.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        let shared = &self.supervisor.shared;
        shared
            .driving
            .lock()
            .expect("driving lock")
            .remove(&self.id);
        shared.running.send_modify(|n| *n -= 1);
    }
}

/// Starts driving backup `id` here unless it already is. `creds` are for
/// its target; empty ones fall back to the environment.
pub(crate) fn adopt(
    c: &Coordinator,
    id: &str,
    creds: Credentials,
    source_creds: Credentials,
    login: Option<MoLogin>,
) {
    let Some(guard) = c.supervisor.try_claim(id) else {
        return;
    };
    let job = {
        let c = c.clone();
        let id = id.to_string();
        async move {
            let _guard = guard;
            // No client watches an adopted job's events (`Attach` reads
            // progress from the replicated state); the status page does.
            let live = c.live.start(metrics::JobKind::Backup.as_str(), None);
            let (tx, mut rx) = mpsc::channel(64);
            let drain = async move {
                while let Some(event) = rx.recv().await {
                    live.observe(&event);
                }
            };
            let drive = async {
                // Empty source keys: the agent reads an S3 SHARED with the
                // TN config's or its environment's keys.
                let result =
                    jobs::backup::drive(&c, &id, &creds, &source_creds, login, false, &tx).await;
                drop(tx);
                result
            };
            match tokio::join!(drive, drain).0 {
                Ok(()) => tracing::info!("adopted backup {id} completed"),
                Err(e) => tracing::warn!("adopted backup {id}: {e}"),
            }
        }
    };
    if c.supervisor.spawn(job).is_err() {
        tracing::debug!("backup {id} not adopted: the coordinator is shutting down");
    }
}

/// The leader's duties of a replicated catalog, for as long as the
/// supervisor runs. Every replica keeps its raft gauges current.
async fn duties(c: Coordinator) {
    let mut changes = c.catalog.changes();
    let mut running = c.supervisor.running();
    let mut gauges = tokio::time::interval(GAUGES_EVERY);
    gauges.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut was_leader = false;
    loop {
        // Seen before the round reads anything: a change during it wakes
        // the next one.
        changes.borrow_and_update();
        running.borrow_and_update();
        let l = c.catalog.leadership();
        metrics::set_raft(l.term, l.is_leader, l.leader_id, l.commit, l.applied);
        let mut retry = None;
        if l.is_leader {
            if !was_leader {
                tracing::info!("leading (term {})", l.term);
                c.seed_backup_metrics().await;
            }
            if round(&c, l.term).await {
                retry = Some(Instant::now() + RELEASE_RETRY);
            }
        }
        was_leader = l.is_leader;
        let earliest = Instant::now() + ROUND_GAP;
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return; // the raft node stopped
                    }
                    break;
                }
                // A job ended here: what it left undone may be adopted.
                _ = running.changed() => break,
                () = sleep_until(retry.unwrap_or(earliest)), if retry.is_some() => break,
                _ = gauges.tick() => metrics::set_live_agents(c.agents.live().len()),
            }
        }
        sleep_until(earliest).await;
    }
}

/// One round of the leader's duties in `term`. Returns whether a GC hold
/// is left to release later.
async fn round(c: &Coordinator, term: u64) -> bool {
    adopt_running(c).await;
    let held = release_ended_holds(c).await;
    take_over_orphaned_restores(c, term).await;
    abandon_orphaned_mo_backups(c).await;
    held
}

/// Ends the running backups MatrixOne's BACKUP statement was writing for a
/// coordinator that no longer drives them (a deposed or dead leader): a
/// statement is bound to its session and cannot be carried on, so what it
/// wrote is removed and the backup recorded as failed. The leader that
/// drives one claims it before it is on record, so it is never taken here.
async fn abandon_orphaned_mo_backups(c: &Coordinator) {
    let running = c
        .catalog
        .read(|cat| {
            cat.backups
                .values()
                .filter(|r| r.state == BackupState::Running && r.method == BackupMethod::Matrixone)
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for id in running {
        let Some(guard) = c.supervisor.try_claim(&id) else {
            continue;
        };
        let cleanup = {
            let c = c.clone();
            async move {
                let _guard = guard;
                jobs::backup::abandon(&c, &id).await;
            }
        };
        if c.supervisor.spawn(cleanup).is_err() {
            return;
        }
    }
}

/// Adopts the running backups whose target needs no credentials beyond
/// this process's own (its credentials file, its environment); others wait
/// for the CLI's `Attach`.
async fn adopt_running(c: &Coordinator) {
    let jobs = c
        .catalog
        .read(|cat| {
            cat.jobs
                .values()
                .map(|j| {
                    let hold = (j.meta.consistency == Consistency::Online)
                        .then(|| cat.gc_holds.get(&j.id).cloned())
                        .flatten();
                    (j.id.clone(), j.meta.location.clone(), j.source_keys, hold)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for (id, location, source_keys, hold) in jobs {
        if source_keys || !c.credentials.reaches(&location) {
            continue; // waits for the CLI to re-attach with keys
        }
        let creds = c.credentials.s3_or_env(&location);
        match hold {
            // An online backup is adopted only with a password to renew and
            // release its GC hold.
            Some(hold) => {
                if let Some(login) = online::login_for(c, &hold) {
                    adopt(c, &id, creds, Credentials::default(), Some(login));
                }
            }
            None => adopt(c, &id, creds, Credentials::default(), None),
        }
    }
}

/// Takes over restores of earlier terms: their leader was deposed (and
/// stopped them) or died. Each is carried on (or, when it cannot be,
/// cleaned up) once, in the background.
async fn take_over_orphaned_restores(c: &Coordinator, term: u64) {
    let orphans = c
        .catalog
        .read(move |cat| {
            cat.restores
                .values()
                .filter(|r| r.term < term)
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for rec in orphans {
        jobs::restore::take_over_in_background(c, rec, None);
    }
}

/// Releases MatrixOne GC holds whose backup has ended (completed, failed or
/// deleted) but whose release did not get through, e.g. because the leader
/// that held it died first. Returns whether one is still held.
async fn release_ended_holds(c: &Coordinator) -> bool {
    let holds = c
        .catalog
        .read(|cat| {
            cat.gc_holds
                .values()
                .filter(|h| {
                    cat.backups
                        .get(&h.backup)
                        .is_none_or(|b| b.state != BackupState::Running)
                })
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    metrics::set_gc_holds(holds.len());
    let mut held = false;
    for hold in holds {
        if c.supervisor.is_driving(&hold.backup) {
            continue;
        }
        match online::login_for(c, &hold) {
            Some(login) => {
                if let Err(e) = online::release(c, &hold.backup, &login).await {
                    tracing::warn!("releasing GC held by backup {}: {e}", hold.backup);
                    held = true;
                }
            }
            None => {
                tracing::warn!(
                    "GC is held by ended backup {} but no MatrixOne password is known here (add a [[matrixone]] entry to --credentials_file, or set MO_BR_MO_PASSWORD)",
                    hold.backup
                );
                held = true;
            }
        }
    }
    held
}

/// A single coordinator opening the catalog a previous process left: that
/// process's client and credentials are gone, so its running backups cannot
/// be finished here and are marked failed; its restores are carried on in
/// the background when its environment reaches their places (else what
/// they wrote goes), or, in the embedded coordinator, when the same restore
/// is asked again; GC it left stopped is released if a password is at hand.
/// Returns what the user of an embedded coordinator must hear of: its
/// interrupted restores, left for the same command to carry on.
pub(crate) async fn take_over_local(c: &Coordinator, resume_restores: bool) -> Result<Vec<String>> {
    let stale = c
        .catalog
        .read(|cat| {
            cat.backups
                .values()
                .filter(|r| r.state == BackupState::Running)
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        })
        .await?;
    for id in stale {
        jobs::backup::abandon(c, &id).await;
    }
    let restores = c
        .catalog
        .read(|cat| cat.restores.values().cloned().collect::<Vec<_>>())
        .await?;
    let mut notices = Vec::new();
    for rec in restores {
        if resume_restores {
            jobs::restore::take_over_in_background(c, rec, None);
        } else {
            // Left as it is: the same `mo_br restore` run again carries it
            // on, and a restore of another backup into its target removes
            // what it wrote first (see `jobs::restore::run`).
            notices.push(format!(
                "restore {} of backup {} into {} was interrupted: run the same mo_br restore again to carry it on",
                rec.id, rec.backup_id, rec.target
            ));
        }
    }
    release_ended_holds(c).await;
    Ok(notices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_follows_the_guards() {
        let s = Supervisor::default();
        assert!(s.wait_idle(Duration::ZERO).await);
        let a = s.claim("a");
        assert!(s.try_claim("a").is_none(), "driven twice");
        let b = s.try_claim("b").expect("b is free");
        assert!(s.is_driving("a") && s.is_driving("b"));
        assert!(!s.wait_idle(Duration::from_millis(10)).await);
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_idle(Duration::from_secs(60)).await }
        });
        drop(a);
        assert!(!s.is_driving("a"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished(), "idle with b still driven");
        drop(b);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn shutdown_stops_tasks_and_refuses_new_ones() {
        let s = Supervisor::default();
        let guard = s.claim("job");
        // A task that would never end by itself; it holds a claim.
        s.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        })
        .unwrap();
        assert!(!s.wait_idle(Duration::from_millis(10)).await);
        s.shutdown(Duration::from_secs(1)).await;
        // Dropped where it stood: its claim is gone with it.
        assert!(s.wait_idle(Duration::ZERO).await);
        assert!(matches!(s.spawn(async {}), Err(Error::Shutdown)));
        // A second shutdown has nothing left to do.
        s.shutdown(Duration::from_secs(1)).await;
    }
}
