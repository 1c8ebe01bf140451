//! `mo_br schedule create|drop|pause|resume|list`: backup schedules kept in
//! the replicated catalog (see [`crate::catalog::schedule`] for the rule that
//! makes each slot run once); [`crate::scheduler`] runs them on the leader.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use mo_br_proto::coordinator::{
    job_event, BackupType as WireBackupType, Finished, ScheduleInfo, ScheduleListRequest,
    ScheduleOp, ScheduleRequest, Schedules,
};
use mo_br_proto::names::Named;

use super::backup::requested_compression;
use super::{describe, emit, wire_enum, Events};
use crate::catalog::retention::{self, Policy};
use crate::catalog::{Applied, Command, MoAddress, Retention, Schedule, ScheduleSpec};
use crate::matrixone::MoLogin;
use crate::{Coordinator, Error, Result};

/// Parses a cron expression (with a seconds field; UTC).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule> {
    cron::Schedule::from_str(expr.trim()).map_err(|e| Error::BadCron {
        expr: expr.to_string(),
        // The parser's message spans lines (a caret under the spot).
        detail: e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// The first slot strictly after `after` (Unix seconds).
pub fn next_slot(cron: &cron::Schedule, after: i64) -> Option<i64> {
    let from = DateTime::<Utc>::from_timestamp(after, 0)?;
    cron.after(&from).next().map(|t| t.timestamp())
}

/// The latest slot after `after` and at or before `now`, if any: the one a
/// schedule that missed slots runs (once). Found backwards from `now`, so a
/// schedule far behind costs no walk through the slots it missed.
pub fn latest_due(cron: &cron::Schedule, after: i64, now: i64) -> Option<i64> {
    let from = DateTime::<Utc>::from_timestamp(now + 1, 0)?;
    let latest = cron.after(&from).next_back()?.timestamp();
    (latest > after && latest <= now).then_some(latest)
}

fn rfc3339(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub async fn change(c: &Coordinator, req: ScheduleRequest, events: &Events) -> Result<()> {
    let op = wire_enum::<ScheduleOp>("ScheduleRequest.op", req.op)?;
    let name = req.name.trim().to_string();
    crate::catalog::schedule::check_name(&name).map_err(Error::InvalidArgument)?;
    let (cmd, done) = match op {
        ScheduleOp::Unspecified => {
            return Err(Error::InvalidArgument(
                "say what to do: create, drop, pause or resume".into(),
            ))
        }
        ScheduleOp::Create => (
            Command::ScheduleCreated(Box::new(new_schedule(c, &name, &req)?)),
            "created",
        ),
        ScheduleOp::Drop => (Command::ScheduleDropped { name: name.clone() }, "dropped"),
        ScheduleOp::Pause => (
            Command::SchedulePaused {
                name: name.clone(),
                paused: true,
                at: Utc::now().timestamp(),
            },
            "paused",
        ),
        ScheduleOp::Resume => (
            Command::SchedulePaused {
                name: name.clone(),
                paused: false,
                at: Utc::now().timestamp(),
            },
            "resumed",
        ),
    };
    match c.catalog.propose(cmd).await? {
        Applied::Rejected(why) if op == ScheduleOp::Create => {
            return Err(Error::FailedPrecondition(why))
        }
        Applied::Rejected(_) => return Err(Error::UnknownSchedule(name)),
        _ => {}
    }
    tracing::info!(schedule = %name, "schedule {done}");
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary: format!("schedule {name} {done}"),
        }),
    )
    .await;
    Ok(())
}

/// A schedule from a create request, checked: a cron expression that
/// parses, a cold backup of a node's files or a backup of a running
/// MatrixOne whose password this coordinator's credentials file holds, to
/// a location without keys.
fn new_schedule(c: &Coordinator, name: &str, req: &ScheduleRequest) -> Result<Schedule> {
    parse_cron(&req.cron)?;
    let spec = req
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("a schedule needs a backup spec".into()))?;
    let (target, creds) = spec
        .target
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("--backup_dir is required".into()))?
        .to_location()
        .map_err(Error::InvalidArgument)?;
    if !creds.access_key_id.is_empty() || !creds.secret_access_key.is_empty() {
        return Err(Error::InvalidArgument(
            "a schedule stores no keys: scheduled runs use the coordinator's own (its AWS_* environment or --s3_credentials_file)".into(),
        ));
    }
    if !spec.base_id.is_empty() {
        return Err(Error::InvalidArgument(
            "--base_id: an incremental schedule builds on its own last backup".into(),
        ));
    }
    let matrixone = match spec.login.as_ref().filter(|l| !l.host.is_empty()) {
        None => None,
        Some(wire) => {
            if !wire.password.is_empty() {
                return Err(Error::InvalidArgument(
                    "a schedule stores no password: each run looks it up in the coordinator's --credentials_file (a [[matrixone]] entry)".into(),
                ));
            }
            let login = MoLogin::from_wire(wire)?;
            if c.credentials
                .password_for(&login.host, login.port, &login.user)
                .is_none()
            {
                return Err(Error::FailedPrecondition(format!(
                    "the coordinator has no password for {}@{}:{}: add a [[matrixone]] entry (host, port, user, password) to its --credentials_file and reload it (SIGHUP)",
                    login.user, login.host, login.port
                )));
            }
            Some(MoAddress {
                host: login.host,
                port: login.port,
                user: login.user,
            })
        }
    };
    let source = spec.source.clone().unwrap_or_default();
    if source.data_dir.is_empty() && matrixone.is_none() {
        return Err(Error::InvalidArgument(
            "--data_dir is required: the node's mo-data directory".into(),
        ));
    }
    let backup_type: mo_br_format::manifest::BackupType =
        wire_enum::<WireBackupType>("BackupRequest.backup_type", spec.backup_type)?.into();
    let compression = requested_compression(spec)?;
    let retention = match &req.retention {
        None => Retention::default(),
        Some(r) => {
            let some = |n: u32| (n > 0).then_some(n);
            let within = Some(r.keep_within.trim().to_string()).filter(|w| !w.is_empty());
            if let Some(w) = &within {
                humantime::parse_duration(w)
                    .map_err(|e| Error::InvalidArgument(format!("--keep_within {w}: {e}")))?;
            }
            Retention {
                keep_last: some(r.keep_last),
                keep_within: within,
                keep_daily: some(r.keep_daily),
                keep_weekly: some(r.keep_weekly),
                keep_monthly: some(r.keep_monthly),
            }
        }
    };
    Ok(Schedule {
        name: name.to_string(),
        cron: req.cron.trim().to_string(),
        spec: ScheduleSpec {
            target,
            data_dir: source.data_dir,
            launch_config: source.launch_config,
            node: source.node,
            backup_type,
            parallelism: spec.parallelism,
            compression,
            matrixone,
        },
        retention,
        paused: false,
        created: Utc::now().timestamp(),
        last_fired: None,
        running: None,
        last_run: None,
        skipped: 0,
    })
}

pub async fn list(c: &Coordinator, _req: ScheduleListRequest, events: &Events) -> Result<()> {
    let all = c
        .catalog
        .read_linearizable(|cat| cat.schedules.values().cloned().collect::<Vec<_>>())
        .await?;
    let now = Utc::now().timestamp();
    let schedules = all.iter().map(|s| info(s, now)).collect();
    emit(events, job_event::Event::Schedules(Schedules { schedules })).await;
    Ok(())
}

/// A schedule as `schedule list` shows it.
pub fn info(s: &Schedule, now: i64) -> ScheduleInfo {
    let next = if s.paused {
        None
    } else {
        parse_cron(&s.cron).ok().and_then(|cron| {
            let after = s.last_fired.unwrap_or(s.created - 1).max(now - 1);
            next_slot(&cron, after)
        })
    };
    let (dir, path) = describe(&s.spec.target);
    let mut spec = format!(
        "{} {dir}:{path} {}",
        WireBackupType::from(s.spec.backup_type).name(),
        s.spec.data_dir
    );
    if let Some(mo) = &s.spec.matrixone {
        spec = format!("{} {}@{}:{}", spec.trim_end(), mo.user, mo.host, mo.port);
    }
    if let Some(comp) = &s.spec.compression {
        spec.push_str(&format!(" compression {comp}"));
    }
    if s.spec.parallelism > 0 {
        spec.push_str(&format!(" parallelism {}", s.spec.parallelism));
    }
    ScheduleInfo {
        name: s.name.clone(),
        cron: s.cron.clone(),
        paused: s.paused,
        next_run: next.map(rfc3339).unwrap_or_default(),
        last_run: s
            .last_run
            .as_ref()
            .map(|r| rfc3339(r.slot))
            .unwrap_or_default(),
        last_backup_id: s
            .last_run
            .as_ref()
            .map(|r| r.backup_id.clone())
            .unwrap_or_default(),
        last_result: s
            .last_run
            .as_ref()
            .map(|r| {
                if r.ok {
                    "ok".to_string()
                } else {
                    format!("failed: {}", r.reason)
                }
            })
            .unwrap_or_default(),
        running_backup_id: s
            .running
            .as_ref()
            .map(|r| r.backup_id.clone())
            .unwrap_or_default(),
        spec,
        retention: retention_summary(&s.retention),
        skipped: s.skipped,
    }
}

/// A schedule's retention as `expire`'s policy; `None` if it keeps all.
pub fn policy(r: &Retention) -> Option<Policy> {
    let keep_within = r
        .keep_within
        .as_deref()
        .and_then(|w| humantime::parse_duration(w).ok())
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let policy = Policy {
        keep_last: r.keep_last.unwrap_or(0),
        keep_within,
        keep_daily: r.keep_daily.unwrap_or(0),
        keep_weekly: r.keep_weekly.unwrap_or(0),
        keep_monthly: r.keep_monthly.unwrap_or(0),
    };
    (!policy.is_empty()).then_some(policy)
}

/// Applies `policy` to the backups schedule `name` took (no others), as
/// `expire` does: chain-aware, incrementals first, each removal
/// crash-safe; a backup something else now builds on is kept. Keys are
/// this process's own. Returns how many were removed.
pub async fn expire(c: &Coordinator, name: &str, policy: Policy, events: &Events) -> Result<usize> {
    let own = name.to_string();
    let plan = c
        .catalog
        .read_linearizable(move |cat| {
            let taken = cat
                .backups
                .iter()
                .filter(|(_, b)| b.schedule.as_deref() == Some(own.as_str()))
                .map(|(id, b)| (id.clone(), b.clone()))
                .collect();
            retention::plan(&taken, &policy)
        })
        .await?;
    let mut removed = 0;
    for (id, why) in plan.remove {
        let want = id.clone();
        let (rec, dependents) = c
            .catalog
            .read_linearizable(move |cat| (cat.backups.get(&want).cloned(), cat.dependents(&want)))
            .await?;
        let Some(rec) = rec else { continue };
        if !dependents.is_empty() {
            continue;
        }
        tracing::info!(schedule = %name, backup = %id, "expiring: {why}");
        let creds = c.credentials.s3_or_env(&rec.location);
        super::delete::remove(c, &rec, &creds, true, events).await?;
        removed += 1;
    }
    Ok(removed)
}

fn retention_summary(r: &Retention) -> String {
    let mut parts = Vec::new();
    if let Some(n) = r.keep_last {
        parts.push(format!("keep_last {n}"));
    }
    if let Some(w) = &r.keep_within {
        parts.push(format!("keep_within {w}"));
    }
    if let Some(n) = r.keep_daily {
        parts.push(format!("keep_daily {n}"));
    }
    if let Some(n) = r.keep_weekly {
        parts.push(format!("keep_weekly {n}"));
    }
    if let Some(n) = r.keep_monthly {
        parts.push(format!("keep_monthly {n}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_with_seconds_parse_and_bad_ones_say_why() {
        let every2 = parse_cron("*/2 * * * * *").unwrap();
        assert_eq!(next_slot(&every2, 100), Some(102));
        assert_eq!(latest_due(&every2, 100, 107), Some(106));
        assert_eq!(latest_due(&every2, 100, 101), None);
        // Far behind: still the latest passed slot, found quickly.
        assert_eq!(latest_due(&every2, 0, 10_000_001), Some(10_000_000));
        let err = parse_cron("every day").unwrap_err().to_string();
        assert!(err.starts_with("cron expression \"every day\""), "{err}");
        assert!(!err.contains('\n'));
    }
}
