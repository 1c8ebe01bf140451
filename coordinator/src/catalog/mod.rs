//! The backup catalog as a state machine: [`Command`]s are applied in log
//! order to a [`Catalog`]; reads see applied state only. Today the log is a
//! local file ([`log::CommandLog`]); the distributed coordinator puts the
//! same commands through raft, so nothing here may depend on where the
//! order comes from: `apply` is deterministic and does no I/O.

mod handle;
mod job;
mod log;
pub mod retention;
pub mod schedule;

pub use handle::CatalogHandle;
pub use job::{Assignment, BackupJob, ShardState, Totals};
pub use schedule::{FiredRun, MoAddress, Retention, RunResult, Schedule, ScheduleSpec};

use std::collections::{BTreeMap, BTreeSet};

use mo_br_format::chunk::ChunkRef;
use mo_br_format::layout::FileKind;
use mo_br_format::manifest::{BackupType, Consistency, FileEntry};
use mo_br_proto::coordinator::{BackupMethod as WireMethod, BackupState as WireState};
use mo_br_proto::names::Named;
use mo_br_storage::Location;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BackupState {
    Running,
    Complete,
    Failed {
        reason: String,
    },
    /// Its objects are being removed (`delete`, `expire`): no longer
    /// restorable nor a base; a delete or expire run again finishes it.
    Deleting,
}

impl From<&BackupState> for WireState {
    fn from(s: &BackupState) -> Self {
        match s {
            BackupState::Running => WireState::Running,
            BackupState::Complete => WireState::Complete,
            BackupState::Failed { .. } => WireState::Failed,
            BackupState::Deleting => WireState::Deleting,
        }
    }
}

/// The word `list` shows for it.
impl std::fmt::Display for BackupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(WireState::from(self).name())
    }
}

/// Who copied a backup's files. Either way the backup has the same layout
/// and manifest, so list, check, restore, delete and incrementals treat it
/// alike; only `list --json` tells them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// mo-br's agents, in shards (every backup before this field existed).
    #[default]
    Agents,
    /// MatrixOne's own `BACKUP` statement, verified and indexed by the
    /// coordinator (`backup --host` with no agent of that MatrixOne).
    Matrixone,
}

impl BackupMethod {
    fn is_agents(&self) -> bool {
        *self == BackupMethod::Agents
    }
}

impl From<BackupMethod> for WireMethod {
    fn from(m: BackupMethod) -> Self {
        match m {
            BackupMethod::Agents => WireMethod::Agents,
            BackupMethod::Matrixone => WireMethod::Matrixone,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub location: Location,
    pub backup_type: BackupType,
    pub consistency: Consistency,
    pub base_id: Option<String>,
    pub state: BackupState,
    /// RFC 3339.
    pub at_time: String,
    pub complete_time: Option<String>,
    pub duration_secs: f64,
    /// Bytes stored in this backup's own location.
    pub size: u64,
    pub files: u64,
    pub backup_ts: String,
    pub data_dir: String,
    /// Left out when `agents`, so records of agent backups read and write
    /// exactly as before the field existed (older replicas and catalogs).
    #[serde(default, skip_serializing_if = "BackupMethod::is_agents")]
    pub method: BackupMethod,
    /// The schedule that ran it; none for a backup asked for by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// A copy made by `mo_br copy`: the backup it was copied from. Left out
    /// otherwise, so other records read and write as before the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
}

/// Every change to the catalog. Serialized into the log: add variants, never
/// change the meaning of existing ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    BackupStarted(Box<BackupRecord>),
    BackupCompleted {
        id: String,
        complete_time: String,
        duration_secs: f64,
        size: u64,
        files: u64,
        backup_ts: String,
    },
    BackupFailed {
        id: String,
        reason: String,
    },
    BackupDeleted {
        id: String,
    },
    /// A backup's objects are about to be removed: recorded first, so a
    /// crash midway leaves a record saying so, and a run again finishes.
    BackupDeleting {
        id: String,
    },
    /// A complete backup found in storage by `catalog rebuild`: added as
    /// given unless the catalog has that id already.
    BackupRecovered(Box<BackupRecord>),
    /// A complete copy of a backup (`mo_br copy`), recorded once its
    /// `backup_meta` is written at the destination: added as given unless
    /// the catalog has that id already.
    BackupReplicated(Box<BackupRecord>),
    /// An agent joined (or re-joined with a new address).
    AgentRegistered(AgentRecord),
    /// A backup's plan as one entry with every file (before manifest
    /// chunks). Still read from old logs, never applied: such a job cannot
    /// be carried on, and is ended as failed like any job whose driver is
    /// gone.
    JobPlanned(serde_json::Value),
    /// A backup's plan: its shards, each a plan chunk in the backup location.
    /// Its record is added by the `BackupStarted` before it.
    BackupPlanned(Box<BackupJob>),
    /// Hands a shard to an agent under a fresh epoch (returned by apply).
    ShardAssigned {
        job: String,
        shard: usize,
        agent: String,
    },
    /// A shard's per-file results of old logs; never applied (see `JobPlanned`).
    ShardDone(serde_json::Value),
    /// A shard's results, a manifest chunk in the backup location; accepted
    /// only under the shard's current epoch.
    ShardReported {
        job: String,
        shard: usize,
        epoch: u64,
        chunk: ChunkRef,
    },
    /// Every shard is done; the manifest is being written.
    JobCommitting {
        job: String,
        completed_at: String,
    },
    /// An online backup is about to stop MatrixOne's GC: recorded first, so
    /// whoever leads next knows to renew and to release it.
    GcHeld(GcHold),
    /// The timestamp the backup checker protects (renewed with it).
    GcChecker {
        backup: String,
        ts: String,
    },
    /// HAKeeper's watermarks are stored in the backup (online backups).
    JobHakeeper {
        job: String,
        size: u64,
        sha256: String,
    },
    /// GC was started again and the checker removed.
    GcReleased {
        backup: String,
    },
    /// A restore is about to write: recorded first, so that what it wrote
    /// is removed if its driver dies before it ends.
    RestoreStarted(Box<RestoreRecord>),
    /// The restore ended (finished, or failed and cleaned up).
    RestoreEnded {
        id: String,
        /// Why it failed; `None` when it completed. Kept a while for a CLI
        /// that re-attaches after its end.
        #[serde(default)]
        failure: Option<String>,
    },
    /// A shard of a restore is written and every file of it verified: a
    /// driver taking the restore over does not write it again. One entry
    /// per shard, never per file.
    RestoreShardDone {
        id: String,
        pass: u8,
        shard: usize,
        bytes: u64,
        files: u64,
    },
    /// A leader of `term` (or a restarted coordinator) drives the restore
    /// now, so it is not taken over again in that term.
    RestoreResumed {
        id: String,
        term: u64,
    },
    /// A schedule is added (rejected if its name is taken).
    ScheduleCreated(Box<Schedule>),
    ScheduleDropped {
        name: String,
    },
    /// Paused or resumed at `at` (Unix seconds): slots that passed while
    /// paused, up to `at`, are not run on resume.
    SchedulePaused {
        name: String,
        paused: bool,
        #[serde(default)]
        at: i64,
    },
    /// Slot `slot` (Unix seconds) of a schedule is taken: accepted only if
    /// later than the last one fired (see [`schedule`] for the rule). With a
    /// `backup_id` the run starts with that id; without, the slot is skipped
    /// (the previous run is still going).
    ScheduleFired {
        name: String,
        slot: i64,
        backup_id: Option<String>,
        term: u64,
    },
    /// A scheduled run ended before its backup went on record (its target
    /// was refused, say); a run whose backup is on record ends with it.
    ScheduleRunEnded {
        name: String,
        backup_id: String,
        reason: String,
    },
}

/// What a driver needs to carry a restore on, besides credentials (which
/// the catalog never holds: its environment's, or a re-attaching CLI's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// The backup by catalog id, or else by location.
    pub backup_id: String,
    pub backup_location: Option<Location>,
    pub dn_config_path: String,
    pub checksum: bool,
    pub parallelism: u32,
    pub retry_window_ms: u64,
    pub max_requests_per_sec: u64,
    /// Shard bounds the shards were cut with: the same manifest cut the
    /// same way gives the same shards, so done ones are known by number.
    pub shard_bytes: u64,
    pub total_bytes: u64,
    pub total_files: u64,
}

/// How many ended restores are remembered for re-attaching CLIs.
pub const ENDED_RESTORES_KEPT: usize = 64;

/// A restore being written. A coordinator that finds one whose driver is
/// gone (itself before a restart, or a deposed leader) carries it on from
/// its done shards when it has a `spec` and can reach both places with its
/// environment's credentials; otherwise it removes what it wrote, so a
/// half-restored place never looks like a restored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub id: String,
    pub backup_id: String,
    /// Where it writes (no credentials: the cleaner uses its environment's).
    pub target: Location,
    /// The raft term of the leader driving it (1 without raft).
    pub term: u64,
    /// Files it writes outside the places it owns whole (configs, and
    /// `hk_data` when SHARED is moved out of `mo-data`): a handful.
    pub written: Vec<String>,
    /// Prefixes where temp files of its unfinished writes may be.
    pub places: Vec<String>,
    /// Prefixes it owns whole (they had to be empty): everything under them
    /// is its own and is removed if it does not finish.
    #[serde(default)]
    pub owned: Vec<String>,
    /// A SHARED store on S3 it writes (a TN config put SHARED there), owned
    /// whole like `owned`.
    #[serde(default)]
    pub shared_target: Option<Location>,
    /// How to carry it on; `None` for restores recorded before resuming.
    #[serde(default)]
    pub spec: Option<RestoreSpec>,
    /// Done shards, by pass and shard number.
    #[serde(default)]
    pub done: BTreeSet<(u8, usize)>,
    #[serde(default)]
    pub done_bytes: u64,
    #[serde(default)]
    pub done_files: u64,
}

/// MatrixOne's GC held by an online backup (facts §3). No password: the
/// driver brings it (request, re-attach, or the coordinator's environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcHold {
    pub backup: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The protected timestamp, once the cut is known.
    pub checker_ts: Option<String>,
}

/// What applying a command answers its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Ok,
    /// The epoch a `ShardAssigned` created.
    Epoch(u64),
    /// The command did not fit the state (a stale epoch, an unknown job).
    Rejected(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    /// host:port of its gRPC service.
    pub address: String,
    /// The MatrixOne node it serves.
    pub node: String,
    /// That node's mo-data, as the agent sees it.
    pub data_dir: String,
    /// Whether it can read the SHARED store (and so take SHARED shards).
    pub reaches_shared: bool,
    pub capacity: u32,
    /// The MatrixOne cluster its node belongs to (`host:port` of its SQL
    /// service), if the agent was told.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub matrixone: String,
    /// The node's launch config the agent serves, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub launch_config: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub backups: BTreeMap<String, BackupRecord>,
    /// Running backups. Named apart from the `jobs` of snapshots written
    /// before plans were chunked, whose shape no longer reads (those jobs
    /// are ended as failed).
    #[serde(default, rename = "backup_jobs")]
    pub jobs: BTreeMap<String, BackupJob>,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentRecord>,
    /// The last epoch handed out; epochs only grow.
    #[serde(default)]
    pub epoch: u64,
    /// GC holds of online backups not yet released, by backup id.
    #[serde(default)]
    pub gc_holds: BTreeMap<String, GcHold>,
    /// Restores being written, by restore id.
    #[serde(default)]
    pub restores: BTreeMap<String, RestoreRecord>,
    /// Backup schedules, by name.
    #[serde(default)]
    pub schedules: BTreeMap<String, Schedule>,
    /// Bumped by every schedule command, so the scheduler re-plans only
    /// when a schedule changed.
    #[serde(default)]
    pub schedules_rev: u64,
    /// The last [`ENDED_RESTORES_KEPT`] ended restores and why they failed
    /// (`None`: completed), by restore id (time-ordered uuids).
    #[serde(default)]
    pub restores_ended: BTreeMap<String, Option<String>>,
    /// Index of the last applied command.
    pub applied: u64,
}

impl Catalog {
    /// Applies one command. Commands that no longer fit the state (a second
    /// completion, a failure of a deleted backup) are ignored, so replaying a
    /// log, or the same entry twice, always gives the same state.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Applied {
        if index <= self.applied {
            return Applied::Rejected(format!("entry {index} was already applied"));
        }
        self.applied = index;
        match cmd {
            Command::BackupStarted(rec) => {
                self.backups
                    .entry(rec.id.clone())
                    .or_insert_with(|| (**rec).clone());
            }
            Command::BackupCompleted {
                id,
                complete_time,
                duration_secs,
                size,
                files,
                backup_ts,
            } => {
                self.jobs.remove(id);
                if let Some(rec) = self.backups.get_mut(id) {
                    if rec.state == BackupState::Running {
                        rec.state = BackupState::Complete;
                        rec.complete_time = Some(complete_time.clone());
                        rec.duration_secs = *duration_secs;
                        rec.size = *size;
                        rec.files = *files;
                        rec.backup_ts = backup_ts.clone();
                    }
                }
                self.end_scheduled_run(id, true, String::new());
            }
            Command::BackupFailed { id, reason } => {
                self.jobs.remove(id);
                if let Some(rec) = self.backups.get_mut(id) {
                    if rec.state == BackupState::Running {
                        rec.state = BackupState::Failed {
                            reason: reason.clone(),
                        };
                    }
                }
                self.end_scheduled_run(id, false, reason.clone());
            }
            Command::BackupDeleted { id } => {
                self.end_scheduled_run(id, false, "deleted".into());
                self.backups.remove(id);
                self.jobs.remove(id);
            }
            Command::BackupDeleting { id } => match self.backups.get_mut(id) {
                Some(rec) if rec.state != BackupState::Running => {
                    rec.state = BackupState::Deleting;
                }
                _ => return Applied::Rejected(format!("backup {id} cannot be deleted now")),
            },
            Command::BackupRecovered(rec) | Command::BackupReplicated(rec) => {
                if self.backups.contains_key(&rec.id) {
                    return Applied::Rejected(format!("backup {} is in the catalog", rec.id));
                }
                self.backups.insert(rec.id.clone(), (**rec).clone());
            }
            Command::AgentRegistered(agent) => {
                self.agents.insert(agent.id.clone(), agent.clone());
            }
            Command::JobPlanned(_) | Command::ShardDone(_) => {
                return Applied::Rejected(
                    "a job planned before manifest chunks cannot be carried on".into(),
                );
            }
            Command::BackupPlanned(job) => {
                if !self.backups.contains_key(&job.id) || self.jobs.contains_key(&job.id) {
                    return Applied::Rejected(format!("job {} cannot be planned", job.id));
                }
                self.jobs.insert(job.id.clone(), (**job).clone());
            }
            Command::ShardAssigned { job, shard, agent } => {
                let Some(s) = self
                    .jobs
                    .get_mut(job)
                    .and_then(|j| j.shards.get_mut(*shard))
                else {
                    return Applied::Rejected(format!("no shard {shard} in job {job}"));
                };
                if s.done() {
                    return Applied::Rejected(format!("shard {shard} of job {job} is done"));
                }
                self.epoch += 1;
                s.assignment = Some(Assignment {
                    agent: agent.clone(),
                    epoch: self.epoch,
                });
                return Applied::Epoch(self.epoch);
            }
            Command::ShardReported {
                job,
                shard,
                epoch,
                chunk,
            } => {
                let Some(j) = self.jobs.get_mut(job) else {
                    return Applied::Rejected(format!("no job {job}"));
                };
                let Some(s) = j.shards.get_mut(*shard) else {
                    return Applied::Rejected(format!("no shard {shard} in job {job}"));
                };
                let current = s.assignment.as_ref().map(|a| a.epoch);
                if s.done() || current != Some(*epoch) {
                    return Applied::Rejected(format!(
                        "stale report for shard {shard} of job {job}: epoch {epoch}, current {current:?}"
                    ));
                }
                if chunk.files != s.plan.files || chunk.copied_files != s.plan.copied_files {
                    return Applied::Rejected(format!(
                        "report for shard {shard} of job {job} does not match its plan"
                    ));
                }
                s.result = Some(chunk.clone());
            }
            Command::JobCommitting { job, completed_at } => {
                let Some(j) = self.jobs.get_mut(job) else {
                    return Applied::Rejected(format!("no job {job}"));
                };
                if j.shards.iter().any(|s| !s.done()) {
                    return Applied::Rejected(format!("job {job} has unfinished shards"));
                }
                j.committing.get_or_insert_with(|| completed_at.clone());
            }
            Command::JobHakeeper { job, size, sha256 } => {
                let Some(j) = self.jobs.get_mut(job) else {
                    return Applied::Rejected(format!("no job {job}"));
                };
                j.meta.files.retain(|f| f.kind != FileKind::Hakeeper);
                j.meta.files.push(FileEntry {
                    kind: FileKind::Hakeeper,
                    name: "hk_data".into(),
                    path: mo_br_format::layout::HK_DATA.into(),
                    size: *size,
                    sha256: sha256.clone(),
                    need_copy: true,
                    origin: None,
                    role: None,
                    stored: None,
                });
            }
            Command::GcHeld(hold) => {
                self.gc_holds.insert(hold.backup.clone(), hold.clone());
            }
            Command::GcChecker { backup, ts } => {
                if let Some(h) = self.gc_holds.get_mut(backup) {
                    h.checker_ts = Some(ts.clone());
                }
            }
            Command::GcReleased { backup } => {
                self.gc_holds.remove(backup);
            }
            Command::RestoreStarted(rec) => {
                self.restores
                    .entry(rec.id.clone())
                    .or_insert_with(|| (**rec).clone());
            }
            Command::RestoreEnded { id, failure } => {
                if self.restores.remove(id).is_some() {
                    self.restores_ended.insert(id.clone(), failure.clone());
                    while self.restores_ended.len() > ENDED_RESTORES_KEPT {
                        self.restores_ended.pop_first();
                    }
                }
            }
            Command::RestoreShardDone {
                id,
                pass,
                shard,
                bytes,
                files,
            } => {
                let Some(r) = self.restores.get_mut(id) else {
                    return Applied::Rejected(format!("no restore {id}"));
                };
                if r.done.insert((*pass, *shard)) {
                    r.done_bytes += bytes;
                    r.done_files += files;
                }
            }
            Command::RestoreResumed { id, term } => {
                let Some(r) = self.restores.get_mut(id) else {
                    return Applied::Rejected(format!("no restore {id}"));
                };
                r.term = r.term.max(*term);
            }
            Command::ScheduleCreated(sched) => {
                if self.schedules.contains_key(&sched.name) {
                    return Applied::Rejected(format!("schedule {} exists", sched.name));
                }
                self.schedules.insert(sched.name.clone(), (**sched).clone());
                self.schedules_rev += 1;
            }
            Command::ScheduleDropped { name } => {
                if self.schedules.remove(name).is_none() {
                    return Applied::Rejected(format!("no schedule {name}"));
                }
                self.schedules_rev += 1;
            }
            Command::SchedulePaused { name, paused, at } => {
                let Some(s) = self.schedules.get_mut(name) else {
                    return Applied::Rejected(format!("no schedule {name}"));
                };
                if s.paused && !*paused {
                    s.last_fired = Some(s.last_fired.map_or(*at, |l| l.max(*at)));
                }
                s.paused = *paused;
                self.schedules_rev += 1;
            }
            Command::ScheduleFired {
                name,
                slot,
                backup_id,
                term,
            } => {
                let Some(s) = self.schedules.get_mut(name) else {
                    return Applied::Rejected(format!("no schedule {name}"));
                };
                if !s.accepts(*slot) {
                    return Applied::Rejected(format!(
                        "slot {slot} of schedule {name} was already fired"
                    ));
                }
                s.last_fired = Some(*slot);
                match backup_id {
                    Some(id) => {
                        s.running = Some(FiredRun {
                            slot: *slot,
                            backup_id: id.clone(),
                            term: *term,
                        })
                    }
                    None => s.skipped += 1,
                }
                self.schedules_rev += 1;
            }
            Command::ScheduleRunEnded {
                name,
                backup_id,
                reason,
            } => {
                let Some(s) = self.schedules.get_mut(name) else {
                    return Applied::Rejected(format!("no schedule {name}"));
                };
                let Some(run) = s.running.take_if(|r| r.backup_id == *backup_id) else {
                    return Applied::Rejected(format!("no run {backup_id} of schedule {name}"));
                };
                s.last_run = Some(RunResult {
                    slot: run.slot,
                    backup_id: run.backup_id,
                    ok: false,
                    reason: reason.clone(),
                });
                self.schedules_rev += 1;
            }
        }
        Applied::Ok
    }

    /// Ends the run of the schedule that ran backup `id`, if it is one.
    fn end_scheduled_run(&mut self, id: &str, ok: bool, reason: String) {
        let Some(name) = self.backups.get(id).and_then(|r| r.schedule.clone()) else {
            return;
        };
        let Some(s) = self.schedules.get_mut(&name) else {
            return;
        };
        if let Some(run) = s.running.take_if(|r| r.backup_id == id) {
            s.last_run = Some(RunResult {
                slot: run.slot,
                backup_id: run.backup_id,
                ok,
                reason,
            });
            self.schedules_rev += 1;
        }
    }

    /// Incrementals whose chain passes through `id`, nearest first.
    pub fn dependents(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut frontier = vec![id.to_string()];
        while let Some(cur) = frontier.pop() {
            for rec in self.backups.values() {
                if rec.base_id.as_deref() == Some(cur.as_str()) && !out.contains(&rec.id) {
                    out.push(rec.id.clone());
                    frontier.push(rec.id.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn record(id: &str, base: Option<&str>) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            location: Location::Filesystem {
                path: PathBuf::from(format!("/b/{id}")),
            },
            backup_type: if base.is_some() {
                BackupType::Incremental
            } else {
                BackupType::Full
            },
            consistency: Consistency::Cold,
            base_id: base.map(str::to_string),
            state: BackupState::Running,
            at_time: "2026-01-01T00:00:00Z".into(),
            complete_time: None,
            duration_secs: 0.0,
            size: 0,
            files: 0,
            backup_ts: String::new(),
            data_dir: "/d".into(),
            method: BackupMethod::Agents,
            schedule: None,
            replica_of: None,
        }
    }

    #[test]
    fn lifecycle_and_idempotent_replay() {
        let cmds = [
            Command::BackupStarted(Box::new(record("a", None))),
            Command::BackupCompleted {
                id: "a".into(),
                complete_time: "t".into(),
                duration_secs: 1.5,
                size: 10,
                files: 2,
                backup_ts: "5-0".into(),
            },
            Command::BackupFailed {
                id: "a".into(),
                reason: "late".into(),
            },
        ];
        let mut c = Catalog::default();
        for (i, cmd) in cmds.iter().enumerate() {
            c.apply(i as u64 + 1, cmd);
        }
        let once = c.clone();
        for (i, cmd) in cmds.iter().enumerate() {
            c.apply(i as u64 + 1, cmd);
        }
        assert_eq!(c, once);
        let a = &c.backups["a"];
        assert_eq!(
            a.state,
            BackupState::Complete,
            "a failure after completion is ignored"
        );
        assert_eq!(a.size, 10);
    }

    #[test]
    fn a_restore_is_on_record_until_it_ends() {
        let rec = RestoreRecord {
            id: "r1".into(),
            backup_id: "a".into(),
            target: Location::Filesystem {
                path: PathBuf::from("/r"),
            },
            term: 3,
            written: vec!["etc/launch/tn.toml".into()],
            places: vec!["mo-data/".into(), "etc/launch/".into()],
            owned: vec!["mo-data/".into()],
            shared_target: None,
            spec: None,
            done: BTreeSet::new(),
            done_bytes: 0,
            done_files: 0,
        };
        let mut c = Catalog::default();
        c.apply(1, &Command::RestoreStarted(Box::new(rec.clone())));
        assert_eq!(c.restores.get("r1"), Some(&rec));
        // A catalog written before restores were recorded still reads.
        let mut old = serde_json::to_value(Catalog::default()).unwrap();
        old.as_object_mut().unwrap().remove("restores");
        let old: Catalog = serde_json::from_value(old).unwrap();
        assert!(old.restores.is_empty());
        // Done shards count once, however often they are reported.
        let done = |pass, shard| Command::RestoreShardDone {
            id: "r1".into(),
            pass,
            shard,
            bytes: 10,
            files: 2,
        };
        c.apply(2, &done(0, 0));
        c.apply(3, &done(0, 0));
        c.apply(4, &done(1, 0));
        let r = &c.restores["r1"];
        assert_eq!((r.done.len(), r.done_bytes, r.done_files), (2, 20, 4));
        c.apply(
            5,
            &Command::RestoreResumed {
                id: "r1".into(),
                term: 4,
            },
        );
        assert_eq!(c.restores["r1"].term, 4);
        let failure = Some("boom".to_string());
        c.apply(
            6,
            &Command::RestoreEnded {
                id: "r1".into(),
                failure: failure.clone(),
            },
        );
        assert!(c.restores.is_empty());
        assert_eq!(c.restores_ended.get("r1"), Some(&failure));
        // Ending it again (a deposed leader and its successor both do) is
        // harmless and keeps the first outcome.
        assert_eq!(
            c.apply(
                7,
                &Command::RestoreEnded {
                    id: "r1".into(),
                    failure: None
                }
            ),
            Applied::Ok
        );
        assert_eq!(c.restores_ended.get("r1"), Some(&failure));
        assert!(matches!(c.apply(8, &done(0, 1)), Applied::Rejected(_)));
        // Only the last few outcomes are kept.
        for i in 0..(ENDED_RESTORES_KEPT as u64 + 5) {
            let mut r = rec.clone();
            r.id = format!("x{i:04}");
            c.apply(100 + 2 * i, &Command::RestoreStarted(Box::new(r)));
            c.apply(
                101 + 2 * i,
                &Command::RestoreEnded {
                    id: format!("x{i:04}"),
                    failure: None,
                },
            );
        }
        assert_eq!(c.restores_ended.len(), ENDED_RESTORES_KEPT);
    }

    #[test]
    fn a_log_from_before_manifest_chunks_still_replays() {
        // As written by the previous release: the plan with every file.
        let old = r#"{"cmd":"job_planned","id":"j","meta":{"files":[]},"sources":[],"shards":[],"parallelism":1,"committing":null}"#;
        let cmd: Command = serde_json::from_str(old).unwrap();
        let old_done = r#"{"cmd":"shard_done","job":"j","shard":0,"epoch":1,"files":[]}"#;
        let done: Command = serde_json::from_str(old_done).unwrap();
        let mut c = Catalog::default();
        c.apply(1, &Command::BackupStarted(Box::new(record("j", None))));
        assert!(matches!(c.apply(2, &cmd), Applied::Rejected(_)));
        assert!(matches!(c.apply(3, &done), Applied::Rejected(_)));
        assert!(c.jobs.is_empty(), "an old plan is never carried on");
        assert_eq!(c.backups["j"].state, BackupState::Running);
        // A snapshot with jobs of the old shape reads, without them.
        let snap = r#"{"backups":{},"jobs":{"j":{"id":"j","sources":[]}},"applied":7}"#;
        let c: Catalog = serde_json::from_str(snap).unwrap();
        assert!(c.jobs.is_empty());
        assert_eq!(c.applied, 7);
    }

    #[test]
    fn dependents_follow_the_chain() {
        let mut c = Catalog::default();
        for (i, (id, base)) in [("a", None), ("b", Some("a")), ("c", Some("b")), ("d", None)]
            .into_iter()
            .enumerate()
        {
            c.apply(
                i as u64 + 1,
                &Command::BackupStarted(Box::new(record(id, base))),
            );
        }
        assert_eq!(c.dependents("a"), vec!["b".to_string(), "c".to_string()]);
        assert!(c.dependents("d").is_empty());
    }

    fn job_with_one_shard(id: &str) -> BackupJob {
        let meta: mo_br_format::manifest::BackupMeta = serde_json::from_value(serde_json::json!({
            "format": 2, "id": id, "backup_type": "full", "consistency": "cold",
            "location": {"type": "filesystem", "path": "/b"}, "backup_ts": "1-0",
            "started_at": "", "completed_at": "", "source_data_dir": "/d",
            "shared_backend": "DISK-V2", "shared_dir": "mo-data/shared2",
            "stored_size": 0, "total_size": 0, "files": []
        }))
        .unwrap();
        BackupJob {
            id: id.into(),
            meta,
            shards: vec![ShardState {
                plan: chunk("plan/000000", ""),
                node_local: false,
                assignment: None,
                result: None,
            }],
            shared_source: None,
            source_keys: false,
            parallelism: 1,
            retry_window_ms: 0,
            max_requests_per_sec: 0,
            node: String::new(),
            committing: None,
        }
    }

    fn chunk(name: &str, sha256: &str) -> ChunkRef {
        ChunkRef {
            name: name.into(),
            size: 10,
            sha256: sha256.into(),
            files: 1,
            bytes: 3,
            copied_files: 1,
            copied_bytes: 3,
            stored_bytes: None,
        }
    }

    #[test]
    fn a_stale_agents_late_report_is_rejected() {
        let mut c = Catalog::default();
        let mut i = 0;
        let mut apply = |c: &mut Catalog, cmd: Command| {
            i += 1;
            c.apply(i, &cmd)
        };
        apply(&mut c, Command::BackupStarted(Box::new(record("j", None))));
        apply(
            &mut c,
            Command::BackupPlanned(Box::new(job_with_one_shard("j"))),
        );
        let assign = |agent: &str| Command::ShardAssigned {
            job: "j".into(),
            shard: 0,
            agent: agent.into(),
        };
        let Applied::Epoch(first) = apply(&mut c, assign("a")) else {
            panic!()
        };
        // Agent a's lease expired: the shard goes to b under a new epoch.
        let Applied::Epoch(second) = apply(&mut c, assign("b")) else {
            panic!()
        };
        assert!(second > first);
        let report = |epoch: u64, sha: &str| Command::ShardReported {
            job: "j".into(),
            shard: 0,
            epoch,
            chunk: chunk(&format!("manifest/000000-{epoch}"), sha),
        };
        assert!(matches!(
            apply(&mut c, report(first, "aaaa")),
            Applied::Rejected(_)
        ));
        assert!(!c.jobs["j"].shards[0].done());
        assert_eq!(apply(&mut c, report(second, "bbbb")), Applied::Ok);
        let accepted = |c: &Catalog| c.jobs["j"].shards[0].result.clone().unwrap();
        assert_eq!(accepted(&c).sha256, "bbbb");
        assert_eq!(accepted(&c).name, format!("manifest/000000-{second}"));
        // Late again, after completion: still rejected, nothing changes.
        assert!(matches!(
            apply(&mut c, report(first, "aaaa")),
            Applied::Rejected(_)
        ));
        assert_eq!(accepted(&c).sha256, "bbbb");
        // The manifest can only be committed once every shard is done.
        apply(
            &mut c,
            Command::JobCommitting {
                job: "j".into(),
                completed_at: "t1".into(),
            },
        );
        apply(
            &mut c,
            Command::JobCommitting {
                job: "j".into(),
                completed_at: "t2".into(),
            },
        );
        assert_eq!(
            c.jobs["j"].committing.as_deref(),
            Some("t1"),
            "the first commit time wins"
        );
    }

    fn schedule(name: &str) -> Schedule {
        Schedule {
            name: name.into(),
            cron: "*/2 * * * * *".into(),
            spec: ScheduleSpec {
                target: Location::Filesystem {
                    path: PathBuf::from("/b"),
                },
                data_dir: "/d".into(),
                launch_config: String::new(),
                node: String::new(),
                backup_type: BackupType::Full,
                parallelism: 0,
                compression: None,
                matrixone: None,
            },
            retention: Retention::default(),
            paused: false,
            created: 100,
            last_fired: None,
            running: None,
            last_run: None,
            skipped: 0,
        }
    }

    /// The exactly-once rule: a slot is fired once, later slots only; the
    /// run ends with its backup; a resume does not bring back paused slots.
    #[test]
    fn a_slot_fires_once_and_its_run_ends_with_its_backup() {
        let mut c = Catalog::default();
        let mut i = 0;
        let mut apply = |c: &mut Catalog, cmd: Command| {
            i += 1;
            c.apply(i, &cmd)
        };
        apply(&mut c, Command::ScheduleCreated(Box::new(schedule("s"))));
        assert!(matches!(
            apply(&mut c, Command::ScheduleCreated(Box::new(schedule("s")))),
            Applied::Rejected(_)
        ));
        let fire = |slot: i64, id: Option<&str>, term: u64| Command::ScheduleFired {
            name: "s".into(),
            slot,
            backup_id: id.map(str::to_string),
            term,
        };
        // Before the schedule existed: never.
        assert!(matches!(
            apply(&mut c, fire(98, Some("b0"), 1)),
            Applied::Rejected(_)
        ));
        assert_eq!(apply(&mut c, fire(102, Some("b1"), 1)), Applied::Ok);
        // The same slot again (a second leader): rejected, the run unchanged.
        assert!(matches!(
            apply(&mut c, fire(102, Some("b2"), 2)),
            Applied::Rejected(_)
        ));
        assert_eq!(c.schedules["s"].running.as_ref().unwrap().backup_id, "b1");
        // The next slot while b1 runs: skipped.
        assert_eq!(apply(&mut c, fire(104, None, 1)), Applied::Ok);
        assert_eq!(c.schedules["s"].skipped, 1);
        let mut rec = record("b1", None);
        rec.schedule = Some("s".into());
        apply(&mut c, Command::BackupStarted(Box::new(rec)));
        apply(
            &mut c,
            Command::BackupCompleted {
                id: "b1".into(),
                complete_time: "t".into(),
                duration_secs: 1.0,
                size: 1,
                files: 1,
                backup_ts: String::new(),
            },
        );
        let s = &c.schedules["s"];
        assert!(s.running.is_none());
        assert_eq!(
            s.last_run,
            Some(RunResult {
                slot: 102,
                backup_id: "b1".into(),
                ok: true,
                reason: String::new()
            })
        );
        // A run refused before its backup went on record ends by itself.
        apply(&mut c, fire(106, Some("b3"), 1));
        apply(
            &mut c,
            Command::ScheduleRunEnded {
                name: "s".into(),
                backup_id: "b3".into(),
                reason: "not empty".into(),
            },
        );
        assert!(!c.schedules["s"].last_run.as_ref().unwrap().ok);
        // Paused at 107, resumed at 120: slots up to 120 are gone.
        let pause = |paused, at| Command::SchedulePaused {
            name: "s".into(),
            paused,
            at,
        };
        apply(&mut c, pause(true, 107));
        apply(&mut c, pause(false, 120));
        assert!(matches!(
            apply(&mut c, fire(118, Some("b4"), 1)),
            Applied::Rejected(_)
        ));
        assert_eq!(apply(&mut c, fire(122, Some("b5"), 1)), Applied::Ok);
        let rev = c.schedules_rev;
        apply(&mut c, Command::ScheduleDropped { name: "s".into() });
        assert!(c.schedules.is_empty());
        assert!(c.schedules_rev > rev);
    }
}
