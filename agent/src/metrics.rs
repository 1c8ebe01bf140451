//! The agent's Prometheus metrics.
//!
//! Everything is recorded through the `metrics` facade. `mo-br-agent
//! --metrics_listen ADDR` installs the Prometheus exporter ([`install`]);
//! without it (and in `mo_br`'s embedded mode) the facade's no-op recorder
//! swallows every call, so recording is always safe and nearly free.
//!
//! Labels are bounded: `op` is one of copy/restore/verify, `result` ok or
//! problem, `kind` one of the seven problem kinds. Never a label per file, job
//! or backup.
//!
//! Every counter is set to 0 for all its label values at start
//! ([`describe`]): a series born at its first increment hides that
//! increment from `rate()` and `increase()` (the first backup after a start
//! was undercounted, the first error never alerted).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Gauge, Unit};
use mo_br_proto::common::ProblemKind;

pub const BYTES_TOTAL: &str = "mo_br_agent_bytes_total";
pub const FILES_TOTAL: &str = "mo_br_agent_files_total";
pub const FILE_RETRIES_TOTAL: &str = "mo_br_agent_file_retries_total";
pub const ERRORS_TOTAL: &str = "mo_br_agent_errors_total";
pub const SHARD_DURATION_SECONDS: &str = "mo_br_agent_shard_duration_seconds";
pub const SHARDS_RUNNING: &str = "mo_br_agent_shards_running";
pub const LAST_SHARD_THROUGHPUT: &str = "mo_br_agent_last_shard_throughput_bytes_per_second";

/// The `op` label of shard work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpLabel {
    Copy,
    Restore,
    Verify,
    /// Reading back a copy the S3 server made, for its sha256.
    Reread,
}

impl OpLabel {
    pub const ALL: [OpLabel; 4] = [
        OpLabel::Copy,
        OpLabel::Restore,
        OpLabel::Verify,
        OpLabel::Reread,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpLabel::Copy => "copy",
            OpLabel::Restore => "restore",
            OpLabel::Verify => "verify",
            OpLabel::Reread => "reread",
        }
    }
}

/// The `kind` label of a file problem.
pub fn problem_kind(kind: i32) -> &'static str {
    match ProblemKind::try_from(kind).unwrap_or(ProblemKind::Unspecified) {
        ProblemKind::Missing => "missing",
        ProblemKind::Truncated => "truncated",
        ProblemKind::Corrupt => "corrupt",
        ProblemKind::SizeMismatch => "size_mismatch",
        ProblemKind::UnsafePath => "unsafe_path",
        ProblemKind::Unavailable => "unavailable",
        // Unspecified does not happen; count it with I/O rather than add a label.
        ProblemKind::Io | ProblemKind::Unspecified => "io",
    }
}

/// Installs the Prometheus exporter on `addr` and describes this crate's
/// metrics. Call once, inside the runtime.
pub fn install(addr: &str) -> Result<mo_br_telemetry::Exporter, mo_br_telemetry::Error> {
    let exporter = mo_br_telemetry::install(addr, env!("CARGO_PKG_VERSION"))?;
    describe();
    Ok(exporter)
}

const SERVER_COPIED_BYTES_TOTAL: &str = "mo_br_agent_server_copied_bytes_total";

/// Files a backup asked to compress, by how they were stored.
pub const COMPRESSION_FILES_TOTAL: &str = "mo_br_agent_compression_files_total";
/// Bytes of the files stored compressed: original and stored.
pub const COMPRESSION_BYTES_TOTAL: &str = "mo_br_agent_compression_bytes_total";

/// Every problem kind's label.
const PROBLEM_KINDS: [&str; 7] = [
    "missing",
    "truncated",
    "corrupt",
    "size_mismatch",
    "unsafe_path",
    "unavailable",
    "io",
];

/// Help texts for every agent metric, and every counter at 0 (a no-op
/// without a recorder).
pub fn describe() {
    // S3 requests go through the storage crate, which records them.
    mo_br_storage::metrics::describe();
    describe_counter!(
        COMPRESSION_FILES_TOTAL,
        "Files a backup asked to compress, by how they were stored (zstd, or raw when they did not shrink)."
    );
    describe_counter!(
        COMPRESSION_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes of the files stored with zstd: side=original before, side=stored after."
    );
    describe_counter!(
        BYTES_TOTAL,
        Unit::Bytes,
        "Bytes moved by shard work (read and written for copy/restore, read for verify, read back after a server-side copy for reread)."
    );
    describe_counter!(
        SERVER_COPIED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes the S3 server copied for this agent (server-side copies: none passed through it)."
    );
    describe_counter!(
        FILES_TOTAL,
        "Files finished by shard work, by result (ok or problem)."
    );
    describe_counter!(
        FILE_RETRIES_TOTAL,
        "File transfer attempts retried after a transient storage error."
    );
    describe_counter!(
        ERRORS_TOTAL,
        "File problems reported to the coordinator, by problem kind."
    );
    describe_histogram!(
        SHARD_DURATION_SECONDS,
        Unit::Seconds,
        "Wall-clock time of one shard on this agent."
    );
    describe_gauge!(SHARDS_RUNNING, "Shards this agent is working on now.");
    describe_gauge!(
        LAST_SHARD_THROUGHPUT,
        "Bytes per second of the last shard this agent finished."
    );
    counter!(SERVER_COPIED_BYTES_TOTAL).absolute(0);
    gauge!(SHARDS_RUNNING).set(0.0);
    for stored in ["raw", "zstd"] {
        counter!(COMPRESSION_FILES_TOTAL, "stored" => stored).absolute(0);
    }
    for side in ["original", "stored"] {
        counter!(COMPRESSION_BYTES_TOTAL, "side" => side).absolute(0);
    }
    for op in OpLabel::ALL.map(OpLabel::as_str) {
        counter!(BYTES_TOTAL, "op" => op).absolute(0);
        counter!(FILE_RETRIES_TOTAL, "op" => op).absolute(0);
        for result in ["ok", "problem"] {
            counter!(FILES_TOTAL, "op" => op, "result" => result).absolute(0);
        }
        for kind in PROBLEM_KINDS {
            counter!(ERRORS_TOTAL, "op" => op, "kind" => kind).absolute(0);
        }
    }
}

/// Adds `n` bytes the S3 server copied (not moved by this agent).
pub fn server_copied(n: u64) {
    if n > 0 {
        counter!(SERVER_COPIED_BYTES_TOTAL).increment(n);
    }
}

/// A file asked to be compressed was stored raw (it did not shrink).
pub fn stored_raw() {
    counter!(COMPRESSION_FILES_TOTAL, "stored" => "raw").increment(1);
}

/// A file of `original` bytes was stored as `stored` bytes of zstd.
pub fn stored_zstd(original: u64, stored: u64) {
    counter!(COMPRESSION_FILES_TOTAL, "stored" => "zstd").increment(1);
    counter!(COMPRESSION_BYTES_TOTAL, "side" => "original").increment(original);
    counter!(COMPRESSION_BYTES_TOTAL, "side" => "stored").increment(stored);
}

/// Adds `n` moved bytes.
pub fn bytes(op: OpLabel, n: u64) {
    if n > 0 {
        counter!(BYTES_TOTAL, "op" => op.as_str()).increment(n);
    }
}

/// A file finished without a problem.
pub fn file_ok(op: OpLabel) {
    counter!(FILES_TOTAL, "op" => op.as_str(), "result" => "ok").increment(1);
}

/// A file finished with a problem of `kind` (a `ProblemKind` value).
pub fn file_problem(op: OpLabel, kind: i32) {
    counter!(FILES_TOTAL, "op" => op.as_str(), "result" => "problem").increment(1);
    counter!(ERRORS_TOTAL, "op" => op.as_str(), "kind" => problem_kind(kind)).increment(1);
}

/// A file attempt is being retried.
pub fn file_retry(op: OpLabel) {
    counter!(FILE_RETRIES_TOTAL, "op" => op.as_str()).increment(1);
}

/// Counts a shard as running until dropped, then records its duration and
/// throughput. Dropping covers every way a shard ends, cancellation included.
pub struct ShardTimer {
    op: OpLabel,
    started: std::time::Instant,
    running: Gauge,
    bytes: u64,
}

impl ShardTimer {
    pub fn start(op: OpLabel) -> ShardTimer {
        let running = gauge!(SHARDS_RUNNING);
        running.increment(1.0);
        ShardTimer {
            op,
            started: std::time::Instant::now(),
            running,
            bytes: 0,
        }
    }

    /// Bytes this shard moved so far (for its throughput).
    pub fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }
}

impl Drop for ShardTimer {
    fn drop(&mut self) {
        self.running.decrement(1.0);
        let elapsed = self.started.elapsed();
        let op = self.op.as_str();
        histogram!(SHARD_DURATION_SECONDS, "op" => op).record(elapsed.as_secs_f64());
        let secs = elapsed.max(Duration::from_millis(1)).as_secs_f64();
        gauge!(LAST_SHARD_THROUGHPUT, "op" => op).set(self.bytes as f64 / secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_without_a_recorder_is_harmless() {
        bytes(OpLabel::Copy, 10);
        file_ok(OpLabel::Restore);
        file_problem(OpLabel::Verify, ProblemKind::Corrupt as i32);
        file_problem(OpLabel::Verify, 99);
        file_retry(OpLabel::Copy);
        let mut t = ShardTimer::start(OpLabel::Copy);
        t.add_bytes(5);
        drop(t);
        describe();
    }

    #[test]
    fn problem_kinds_are_bounded() {
        for kind in 0..10 {
            assert!(PROBLEM_KINDS.contains(&problem_kind(kind)), "{kind}");
        }
        assert_eq!(
            problem_kind(ProblemKind::SizeMismatch as i32),
            "size_mismatch"
        );
        assert_eq!(problem_kind(ProblemKind::UnsafePath as i32), "unsafe_path");
        assert_eq!(problem_kind(1234), "io");
    }
}
