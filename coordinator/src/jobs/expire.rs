//! Expire: applies a retention policy ([`crate::catalog::retention`]) to
//! the catalog. Prints every decision (kept by which rules, removed and
//! why); a dry run stops there. Removal goes incrementals first, each
//! backup through [`super::delete::remove`] (crash-safe, finished by a run
//! again). Incrementals take unchanged objects from their bases' locations
//! rather than copying them, so an object is referenced exactly by its
//! backup and that backup's dependents: keeping every base of a kept
//! incremental is the reference count, and a removed backup's objects are
//! referenced by nothing kept.

use mo_br_proto::coordinator::{job_event, ExpireRequest, Finished};

use super::{emit, line, Events};
use crate::catalog::retention::{self, Policy};
use crate::{Coordinator, Error, Result};

pub fn policy(req: &ExpireRequest) -> Result<Policy> {
    let keep_within = match req.keep_within_secs {
        0 => None,
        s => Some(
            i64::try_from(s)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .ok_or_else(|| Error::InvalidArgument("keep_within is too long".into()))?,
        ),
    };
    let policy = Policy {
        keep_last: req.keep_last,
        keep_within,
        keep_daily: req.keep_daily,
        keep_weekly: req.keep_weekly,
        keep_monthly: req.keep_monthly,
    };
    if policy.is_empty() {
        return Err(Error::InvalidArgument(
            "expire needs at least one keep rule (--keep_last, --keep_within, --keep_daily, --keep_weekly, --keep_monthly)".into(),
        ));
    }
    Ok(policy)
}

pub async fn run(c: &Coordinator, req: ExpireRequest, events: &Events) -> Result<()> {
    let policy = policy(&req)?;
    let (plan, backups) = c
        .catalog
        .read_linearizable(move |cat| (retention::plan(&cat.backups, &policy), cat.backups.clone()))
        .await?;
    let verb = if req.dry_run {
        "would remove"
    } else {
        "remove"
    };
    for (id, why) in &plan.keep {
        let at = backups.get(id).map(|r| r.at_time.as_str()).unwrap_or("");
        line(events, format!("keep {id} ({at}): {}", why.join("; "))).await;
    }
    for (id, why) in &plan.remove {
        let at = backups.get(id).map(|r| r.at_time.as_str()).unwrap_or("");
        line(events, format!("{verb} {id} ({at}): {why}")).await;
    }
    for (id, why) in &plan.ignored {
        line(events, format!("leave {id}: {why}")).await;
    }
    let creds = mo_br_storage::Credentials {
        access_key_id: req.access_key_id.clone(),
        secret_access_key: req.secret_access_key.clone(),
        ..Default::default()
    };
    if req.dry_run {
        let ids: Vec<String> = plan.remove.iter().map(|(id, _)| id.clone()).collect();
        super::delete::would_remove(c, &ids, &creds, events).await?;
        let summary = format!(
            "dry run: would remove {} backup(s), keep {}; nothing changed",
            plan.remove.len(),
            plan.keep.len()
        );
        return finish(events, summary).await;
    }
    let mut removed = 0;
    for (id, _) in &plan.remove {
        let want = id.clone();
        let (rec, dependents) = c
            .catalog
            .read_linearizable(move |cat| (cat.backups.get(&want).cloned(), cat.dependents(&want)))
            .await?;
        let Some(rec) = rec else { continue };
        // Dependents go first; one still here was made on it since the plan.
        if !dependents.is_empty() {
            line(
                events,
                format!(
                    "kept {id}: incremental backup(s) {} depend on it now",
                    dependents.join(", ")
                ),
            )
            .await;
            continue;
        }
        super::delete::remove(c, &rec, &creds, true, events).await?;
        removed += 1;
    }
    finish(
        events,
        format!(
            "{removed} backup(s) removed, {} kept",
            plan.keep.len() + plan.remove.len() - removed
        ),
    )
    .await
}

async fn finish(events: &Events, summary: String) -> Result<()> {
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary,
        }),
    )
    .await;
    Ok(())
}
