//! Backup schedules as replicated state: what to back up and when (a cron
//! expression), and the one fact that makes a run happen once across
//! leader changes, the last slot fired.
//!
//! The rule (the leader's scheduler, `crate::scheduler`, follows it):
//! - A slot is a time the cron expression names. A run of slot `t` starts
//!   only after `ScheduleFired { slot: t, .. }` is applied, and that command
//!   is accepted only if `t` is later than the schedule's `last_fired`. Raft
//!   orders proposals, so of two leaders (an old one that has not noticed
//!   its deposition, and a new one) at most one gets `t` accepted.
//! - The fired record names the backup id the run will use, decided before
//!   it is on record. A leader that finds a fired run whose backup is not in
//!   the catalog and that no task of its own runs (its driver died between
//!   firing and starting the backup: a previous leader, or this coordinator
//!   before a restart) starts it with that same id; a backup that is on
//!   record is carried on like any running backup (or, never planned, ended
//!   as failed). So a slot never gets two backups.
//! - Slots that passed with no leader to fire them are caught up once: the
//!   latest passed slot runs at once, earlier ones are not run.
//! - A slot that comes while the previous run is still going is recorded as
//!   fired with no run (skipped).
//! - A paused schedule fires nothing; resuming it at `t` moves `last_fired`
//!   to `t`, so the slots that passed while it was paused are not caught up.

use mo_br_format::compression::Compression;
use mo_br_format::manifest::BackupType;
use mo_br_storage::Location;
use serde::{Deserialize, Serialize};

/// A schedule's backup: the `backup` command's flags minus credentials,
/// which the coordinator takes from its credentials file or its own
/// environment when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Where runs go: each run writes into its own directory or prefix
    /// below it, `<name>-<slot as YYYYMMDDTHHMMSSZ>`.
    pub target: Location,
    pub data_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub launch_config: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Incremental: each run builds on this schedule's last complete backup
    /// (a full one when there is none yet).
    pub backup_type: BackupType,
    pub parallelism: u32,
    /// `None`: files stored raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// A running MatrixOne to back up (`--host`), without its password:
    /// each run looks it up in the coordinator's credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrixone: Option<MoAddress>,
}

/// Who a `--host` schedule logs in as; the password is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoAddress {
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// What to keep of a schedule's backups after each success (the flags of
/// `mo_br expire`). Every field unset: keep everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// A humantime duration (`7d`, `36h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// A run that was fired and has not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredRun {
    /// Unix seconds of the slot.
    pub slot: i64,
    pub backup_id: String,
    /// The raft term of the leader that fired it.
    pub term: u64,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub slot: i64,
    pub backup_id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    /// The cron expression as given (with a seconds field).
    pub cron: String,
    pub spec: ScheduleSpec,
    #[serde(default, skip_serializing_if = "Retention::is_empty")]
    pub retention: Retention,
    #[serde(default)]
    pub paused: bool,
    /// Unix seconds of its creation: slots before it never run.
    pub created: i64,
    /// Unix seconds of the last slot fired (run or skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<FiredRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunResult>,
    /// Slots skipped because a run was still going.
    #[serde(default)]
    pub skipped: u64,
}

impl Schedule {
    /// Where the run of `slot` writes.
    pub fn run_location(&self, slot: i64) -> Location {
        let stamp = chrono::DateTime::from_timestamp(slot, 0)
            .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|| slot.to_string());
        let leaf = format!("{}-{stamp}", self.name);
        match &self.spec.target {
            Location::Filesystem { path } => Location::Filesystem {
                path: path.join(leaf),
            },
            Location::S3(s3) => {
                let mut s3 = s3.clone();
                s3.prefix = if s3.prefix.is_empty() {
                    leaf
                } else {
                    format!("{}/{leaf}", s3.prefix.trim_end_matches('/'))
                };
                Location::S3(s3)
            }
        }
    }

    /// Whether a slot may be fired now: later than the last one fired, and
    /// not before the schedule existed.
    pub fn accepts(&self, slot: i64) -> bool {
        slot >= self.created && self.last_fired.is_none_or(|last| slot > last)
    }
}

/// A schedule name: it names directories, prefixes and a metric label.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schedule name {name:?}: use 1-64 letters, digits, '-' or '_'"
        ))
    }
}
