//! The coordinator's Prometheus metrics.
//!
//! Everything is recorded through the `metrics` facade. `mo-br-coordinator
//! --metrics_listen ADDR` installs the Prometheus exporter ([`install`]);
//! without it (and in `mo_br`'s embedded mode) the facade's no-op recorder
//! swallows every call, so recording is always safe and nearly free.
//!
//! Labels are bounded: `kind` is a job kind, `result` ok or failed, `op` one
//! of copy/restore/verify, `target` the kind of backup location (`fs`, or
//! `s3:<bucket>`: a few per deployment), `schedule` the schedule that ran a
//! backup ("" for a manual one). Never a label per job, backup or file.
//!
//! Counters with known label values are set to 0 at start ([`describe`]):
//! a series that appears only at its first increment is invisible to
//! `increase()` (the first failure after a restart never alerts) and makes
//! Prometheus miss the first increment.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Gauge, Unit};

pub const JOBS_RUNNING: &str = "mo_br_coordinator_jobs_running";
pub const JOBS_TOTAL: &str = "mo_br_coordinator_jobs_total";
pub const SHARD_DURATION_SECONDS: &str = "mo_br_coordinator_shard_duration_seconds";
pub const SHARD_REASSIGNMENTS_TOTAL: &str = "mo_br_coordinator_shard_reassignments_total";
pub const LIVE_AGENTS: &str = "mo_br_coordinator_live_agents";
pub const GC_RENEWALS_TOTAL: &str = "mo_br_coordinator_gc_checker_renewals_total";
pub const GC_HOLDS: &str = "mo_br_coordinator_gc_holds";
pub const JOB_DURATION_SECONDS: &str = mo_br_telemetry::JOB_DURATION_SECONDS;
pub const JOB_BYTES_TOTAL: &str = "mo_br_coordinator_job_bytes_total";
pub const JOB_FILES_TOTAL: &str = "mo_br_coordinator_job_files_total";
pub const BACKUP_LAST_SUCCESS: &str = "mo_br_backup_last_success_timestamp_seconds";
pub const BACKUP_LAST_FAILURE: &str = "mo_br_backup_last_failure_timestamp_seconds";
pub const BACKUP_LAST_BYTES: &str = "mo_br_backup_last_size_bytes";
pub const BACKUP_LAST_FILES: &str = "mo_br_backup_last_size_files";
pub const GC_OLDEST_RENEWAL: &str = "mo_br_coordinator_gc_hold_oldest_renewal_timestamp_seconds";
pub const SCHEDULE_SKIPPED_TOTAL: &str = "mo_br_schedule_skipped_total";
pub const RAFT_HAS_QUORUM: &str = "mo_br_raft_has_quorum";
pub const RAFT_TERM: &str = "mo_br_raft_term";
pub const RAFT_IS_LEADER: &str = "mo_br_raft_is_leader";
pub const RAFT_LEADER_ID: &str = "mo_br_raft_leader_id";
pub const RAFT_COMMIT_INDEX: &str = "mo_br_raft_commit_index";
pub const RAFT_APPLIED_INDEX: &str = "mo_br_raft_applied_index";

/// The `kind` label of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Backup,
    Restore,
    Check,
    List,
    Delete,
    Copy,
    Expire,
    Rebuild,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::Backup,
        JobKind::Restore,
        JobKind::Check,
        JobKind::List,
        JobKind::Delete,
        JobKind::Copy,
        JobKind::Expire,
        JobKind::Rebuild,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Check => "check",
            JobKind::List => "list",
            JobKind::Delete => "delete",
            JobKind::Copy => "copy",
            JobKind::Expire => "expire",
            JobKind::Rebuild => "rebuild",
        }
    }
}

/// Installs the Prometheus exporter on `addr` and describes this crate's
/// metrics. Call once, inside the runtime.
pub fn install(addr: &str) -> Result<mo_br_telemetry::Exporter, mo_br_telemetry::Error> {
    let exporter = mo_br_telemetry::install(addr, env!("CARGO_PKG_VERSION"))?;
    describe();
    Ok(exporter)
}

/// Help texts for every coordinator metric (a no-op without a recorder).
pub fn describe() {
    // S3 requests go through the storage crate, which records them.
    mo_br_storage::metrics::describe();
    describe_gauge!(JOBS_RUNNING, "Jobs running now, by kind.");
    describe_counter!(
        JOBS_TOTAL,
        "Jobs finished, by kind and result (ok or failed)."
    );
    describe_histogram!(
        SHARD_DURATION_SECONDS,
        Unit::Seconds,
        "Time from handing a shard to an agent to its last answer."
    );
    describe_counter!(
        SHARD_REASSIGNMENTS_TOTAL,
        "Shards put back in the queue after their agent call failed."
    );
    describe_gauge!(LIVE_AGENTS, "Agents currently reachable.");
    describe_histogram!(
        JOB_DURATION_SECONDS,
        Unit::Seconds,
        "Whole-job time from request to result, by kind and result."
    );
    describe_counter!(
        JOB_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes done by finished jobs, by kind (a backup's copied bytes)."
    );
    describe_counter!(JOB_FILES_TOTAL, "Files done by finished jobs, by kind.");
    describe_gauge!(
        BACKUP_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful backup, by target and schedule (\"\": manual)."
    );
    describe_gauge!(
        BACKUP_LAST_FAILURE,
        Unit::Seconds,
        "Unix time of the last failed backup, by target and schedule."
    );
    describe_gauge!(
        BACKUP_LAST_BYTES,
        Unit::Bytes,
        "Bytes of the last successful backup, by target and schedule."
    );
    describe_gauge!(
        BACKUP_LAST_FILES,
        "Files of the last successful backup, by target and schedule."
    );
    describe_gauge!(
        GC_OLDEST_RENEWAL,
        Unit::Seconds,
        "Unix time of the oldest last renewal among the GC checkers online backups hold now (0: none held). MatrixOne drops one 20 minutes after its last renewal."
    );
    describe_gauge!(
        RAFT_HAS_QUORUM,
        "1 if this coordinator knows a leader (its group has a quorum), else 0."
    );
    describe_gauge!(RAFT_TERM, "Current raft term of this coordinator.");
    describe_gauge!(
        RAFT_IS_LEADER,
        "1 if this coordinator is the raft leader, else 0."
    );
    describe_gauge!(
        RAFT_LEADER_ID,
        "Raft id of the leader this coordinator knows (0: none)."
    );
    describe_gauge!(RAFT_COMMIT_INDEX, "Raft log index known committed.");
    describe_gauge!(RAFT_APPLIED_INDEX, "Raft log index applied to the catalog.");
    describe_counter!(
        GC_RENEWALS_TOTAL,
        "Renewals of MatrixOne's backup checker by online backups, by result."
    );
    describe_counter!(
        SCHEDULE_SKIPPED_TOTAL,
        "Slots of a schedule skipped because its previous run was still going, by schedule."
    );
    describe_gauge!(
        GC_HOLDS,
        "MatrixOne GC holds of online backups not yet released."
    );
    // Present from the start, so dashboards see 0 rather than no series
    // and the first increment after a restart counts.
    counter!(SHARD_REASSIGNMENTS_TOTAL).absolute(0);
    for kind in JobKind::ALL {
        let k = kind.as_str();
        for result in ["ok", "failed"] {
            counter!(JOBS_TOTAL, "kind" => k, "result" => result).absolute(0);
        }
        gauge!(JOBS_RUNNING, "kind" => k).set(0.0);
        counter!(JOB_BYTES_TOTAL, "kind" => k).absolute(0);
        counter!(JOB_FILES_TOTAL, "kind" => k).absolute(0);
    }
    for result in ["ok", "failed"] {
        counter!(GC_RENEWALS_TOTAL, "result" => result).absolute(0);
    }
    gauge!(GC_HOLDS).set(0.0);
    gauge!(GC_OLDEST_RENEWAL).set(0.0);
}

/// Marks a job running until dropped. [`JobGuard::finish`] records its
/// result; a guard dropped without it (an error path, a panic, a client that
/// went away) counts the job as failed.
/// It also logs the job's start and end (at info: id, kind, location (the
/// `target` label), bytes, files, duration, result).
#[must_use = "the job counts as running only while the guard lives"]
pub struct JobGuard {
    kind: JobKind,
    /// A backup's location label (see the module doc); None for other jobs.
    target: Option<String>,
    started: Instant,
    running: Gauge,
    result: Option<bool>,
    /// The job's id, once its `Started` event names it.
    pub id: String,
    /// The schedule that started it ("" for a job asked for by hand).
    pub schedule: String,
    /// Bytes and files done so far, from its progress events.
    pub bytes: u64,
    pub files: u64,
}

/// A job of `kind` starts: `jobs_running{kind}` goes up until the returned
/// guard is dropped. `target` labels a backup's location.
pub fn job_started(kind: JobKind, target: Option<String>) -> JobGuard {
    let running = gauge!(JOBS_RUNNING, "kind" => kind.as_str());
    running.increment(1.0);
    tracing::info!(
        kind = kind.as_str(),
        // Not `target`: JSON logs have the module there.
        location = target.as_deref().unwrap_or(""),
        "job started"
    );
    JobGuard {
        kind,
        target,
        started: Instant::now(),
        running,
        result: None,
        id: String::new(),
        schedule: String::new(),
        bytes: 0,
        files: 0,
    }
}

/// Now as Unix seconds.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl JobGuard {
    /// Records the job's result (`ok` or not) and ends it.
    pub fn finish(mut self, ok: bool) {
        self.result = Some(ok);
    }

    /// Records the result of a `Result` and hands it back unchanged.
    pub fn finish_with<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        self.finish(result.is_ok());
        result
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.running.decrement(1.0);
        let ok = self.result == Some(true);
        let result = if ok { "ok" } else { "failed" };
        let kind = self.kind.as_str();
        let took = self.started.elapsed();
        counter!(JOBS_TOTAL, "kind" => kind, "result" => result).increment(1);
        histogram!(JOB_DURATION_SECONDS, "kind" => kind, "result" => result)
            .record(took.as_secs_f64());
        counter!(JOB_BYTES_TOTAL, "kind" => kind).increment(self.bytes);
        counter!(JOB_FILES_TOTAL, "kind" => kind).increment(self.files);
        if let (JobKind::Backup, Some(target)) = (self.kind, &self.target) {
            let labels = [
                ("target", target.clone()),
                ("schedule", self.schedule.clone()),
            ];
            if ok {
                gauge!(BACKUP_LAST_SUCCESS, &labels).set(unix_now());
                gauge!(BACKUP_LAST_BYTES, &labels).set(self.bytes as f64);
                gauge!(BACKUP_LAST_FILES, &labels).set(self.files as f64);
            } else {
                gauge!(BACKUP_LAST_FAILURE, &labels).set(unix_now());
            }
        }
        tracing::info!(
            id = %self.id,
            kind,
            location = self.target.as_deref().unwrap_or(""),
            bytes = self.bytes,
            files = self.files,
            duration_ms = took.as_millis() as u64,
            result,
            "job ended"
        );
    }
}

/// The online backups' GC checkers renewing now: each one's last successful
/// renewal (or start), for [`GC_OLDEST_RENEWAL`].
static GC_RENEWALS: Mutex<BTreeMap<u64, f64>> = Mutex::new(BTreeMap::new());

/// One online backup's GC checker, renewed while it lives.
pub struct GcRenewal(u64);

impl GcRenewal {
    pub fn start() -> GcRenewal {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        set_renewal(id, Some(unix_now()));
        GcRenewal(id)
    }

    /// Records a renewal's outcome.
    pub fn renewed(&self, ok: bool) {
        gc_renewed(ok);
        if ok {
            set_renewal(self.0, Some(unix_now()));
        }
    }
}

impl Drop for GcRenewal {
    fn drop(&mut self) {
        set_renewal(self.0, None);
    }
}

fn set_renewal(id: u64, at: Option<f64>) {
    let mut all = GC_RENEWALS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match at {
        Some(t) => all.insert(id, t),
        None => all.remove(&id),
    };
    let oldest = all
        .values()
        .copied()
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
    gauge!(GC_OLDEST_RENEWAL).set(oldest.unwrap_or(0.0));
}

/// The `target` label of a catalog location (as [`target_label`] makes it
/// from a request).
pub fn location_label(location: &mo_br_storage::Location) -> String {
    match location {
        mo_br_storage::Location::S3(s3) => format!("s3:{}", s3.bucket),
        mo_br_storage::Location::Filesystem { .. } => "fs".into(),
    }
}

/// Sets the last-success gauges from the catalog's completed backups, so a
/// coordinator that (re)starts, or a replica that starts leading, exports
/// the age of the last backup rather than nothing until the next one.
/// `backups` are (target label, schedule ("" for none), completion time as
/// RFC 3339, bytes, files).
pub fn seed_last_success(backups: impl IntoIterator<Item = (String, String, String, u64, u64)>) {
    let mut newest: BTreeMap<(String, String), (f64, u64, u64)> = BTreeMap::new();
    for (target, schedule, complete, bytes, files) in backups {
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&complete) else {
            continue;
        };
        let at = at.timestamp_millis() as f64 / 1000.0;
        let e = newest
            .entry((target, schedule))
            .or_insert((at, bytes, files));
        if at > e.0 {
            *e = (at, bytes, files);
        }
    }
    for ((target, schedule), (at, bytes, files)) in newest {
        let labels = [("target", target), ("schedule", schedule)];
        let last = gauge!(BACKUP_LAST_SUCCESS, &labels);
        last.set(at);
        gauge!(BACKUP_LAST_BYTES, &labels).set(bytes as f64);
        gauge!(BACKUP_LAST_FILES, &labels).set(files as f64);
    }
}

/// The `target` label of a backup location: its kind, and the bucket for
/// S3 (bounded: a deployment has a few), never a path.
pub fn target_label(storage: Option<&mo_br_proto::common::Storage>) -> String {
    use mo_br_proto::common::storage::Kind;
    match storage.and_then(|s| s.kind.as_ref()) {
        Some(Kind::S3(s3)) => format!("s3:{}", s3.bucket),
        Some(Kind::Fs(_)) => "fs".into(),
        None => "unknown".into(),
    }
}

/// One shard's time on an agent; `op` is copy, restore or verify.
pub fn shard_finished(op: &'static str, elapsed: Duration) {
    histogram!(SHARD_DURATION_SECONDS, "op" => op).record(elapsed.as_secs_f64());
}

/// A shard goes back to the queue after its agent failed.
pub fn shard_reassigned() {
    counter!(SHARD_REASSIGNMENTS_TOTAL).increment(1);
}

/// A slot of `schedule` skipped: its previous run was still going.
pub fn schedule_skipped(schedule: &str) {
    counter!(SCHEDULE_SKIPPED_TOTAL, "schedule" => schedule.to_string()).increment(1);
}

/// A renewal of an online backup's GC checker, by outcome.
pub fn gc_renewed(ok: bool) {
    counter!(GC_RENEWALS_TOTAL, "result" => if ok { "ok" } else { "failed" }).increment(1);
}

/// How many GC holds the catalog records.
pub fn set_gc_holds(n: usize) {
    gauge!(GC_HOLDS).set(n as f64);
}

/// How many agents are reachable now.
pub fn set_live_agents(n: usize) {
    gauge!(LIVE_AGENTS).set(n as f64);
}

/// This coordinator's raft state.
pub fn set_raft(term: u64, is_leader: bool, leader_id: u64, commit: u64, applied: u64) {
    gauge!(RAFT_HAS_QUORUM).set(if leader_id != 0 { 1.0 } else { 0.0 });
    gauge!(RAFT_TERM).set(term as f64);
    gauge!(RAFT_IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
    gauge!(RAFT_LEADER_ID).set(leader_id as f64);
    gauge!(RAFT_COMMIT_INDEX).set(commit as f64);
    gauge!(RAFT_APPLIED_INDEX).set(applied as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_without_a_recorder_is_harmless() {
        describe();
        job_started(JobKind::Backup, Some("fs".into())).finish(true);
        drop(job_started(JobKind::Delete, None));
        let r: Result<u8, ()> = job_started(JobKind::List, None).finish_with(Ok(1));
        assert_eq!(r, Ok(1));
        shard_finished("copy", Duration::from_millis(3));
        shard_reassigned();
        set_live_agents(3);
        set_raft(2, true, 1, 10, 9);
        seed_last_success([
            (
                "fs".into(),
                String::new(),
                "2026-01-02T03:04:05Z".into(),
                5,
                1,
            ),
            ("fs".into(), "nightly".into(), "not a time".into(), 5, 1),
        ]);
        let g = GcRenewal::start();
        g.renewed(true);
        drop(g);
    }
}
