//! The coordinator's Prometheus metrics.
//!
//! Everything is recorded through the `metrics` facade. `mo-br-coordinator
//! --metrics_listen ADDR` installs the Prometheus exporter ([`install`]);
//! without it (and in `mo_br`'s embedded mode) the facade's no-op recorder
//! swallows every call, so recording is always safe and nearly free.
//!
//! Labels are bounded: `kind` is a job kind, `result` ok or failed, `op` one
//! of copy/restore/verify. Never a label per job, backup or file.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Gauge, Unit};

pub const JOBS_RUNNING: &str = "mo_br_coordinator_jobs_running";
pub const JOBS_TOTAL: &str = "mo_br_coordinator_jobs_total";
pub const SHARD_DURATION_SECONDS: &str = "mo_br_coordinator_shard_duration_seconds";
pub const SHARD_REASSIGNMENTS_TOTAL: &str = "mo_br_coordinator_shard_reassignments_total";
pub const LIVE_AGENTS: &str = "mo_br_coordinator_live_agents";
pub const GC_RENEWALS_TOTAL: &str = "mo_br_coordinator_gc_checker_renewals_total";
pub const GC_HOLDS: &str = "mo_br_coordinator_gc_holds";
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
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Check => "check",
            JobKind::List => "list",
            JobKind::Delete => "delete",
        }
    }
}

/// Installs the Prometheus exporter on `addr` and describes this crate's
/// metrics. Call once, inside the runtime.
pub fn install(addr: &str) -> Result<SocketAddr, mo_br_telemetry::Error> {
    let sock = mo_br_telemetry::install(addr)?;
    describe();
    Ok(sock)
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
    describe_gauge!(
        GC_HOLDS,
        "MatrixOne GC holds of online backups not yet released."
    );
    // Present from the start, so dashboards see 0 rather than no series.
    counter!(SHARD_REASSIGNMENTS_TOTAL).absolute(0);
}

/// Marks a job running until dropped. [`JobGuard::finish`] records its
/// result; a guard dropped without it (an error path, a panic, a client that
/// went away) counts the job as failed.
#[must_use = "the job counts as running only while the guard lives"]
pub struct JobGuard {
    kind: JobKind,
    running: Gauge,
    result: Option<bool>,
}

/// A job of `kind` starts: `jobs_running{kind}` goes up until the returned
/// guard is dropped.
pub fn job_started(kind: JobKind) -> JobGuard {
    let running = gauge!(JOBS_RUNNING, "kind" => kind.as_str());
    running.increment(1.0);
    JobGuard {
        kind,
        running,
        result: None,
    }
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
        let result = if self.result == Some(true) {
            "ok"
        } else {
            "failed"
        };
        counter!(JOBS_TOTAL, "kind" => self.kind.as_str(), "result" => result).increment(1);
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
        job_started(JobKind::Backup).finish(true);
        drop(job_started(JobKind::Delete));
        let r: Result<u8, ()> = job_started(JobKind::List).finish_with(Ok(1));
        assert_eq!(r, Ok(1));
        shard_finished("copy", Duration::from_millis(3));
        shard_reassigned();
        set_live_agents(3);
        set_raft(2, true, 1, 10, 9);
    }
}
