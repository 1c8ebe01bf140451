//! Which backups a retention policy keeps: restic's `forget` semantics (a
//! backup kept by any rule is kept; `keep_within` counts back from the
//! newest backup, not from now, so an idle cluster never loses its last
//! backups to the clock), plus chains: a kept incremental keeps its whole
//! base chain, since it reads unchanged objects from its bases' locations.
//! Pure: the expire job decides with it, and dry runs print it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};

use super::{BackupRecord, BackupState};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: u32,
    pub keep_within: Option<chrono::Duration>,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl Policy {
    /// Whether any rule is given: without one, expire would remove
    /// everything, which is never what was meant.
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_within.is_none()
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Kept backups, newest first, with every rule that keeps them.
    pub keep: Vec<(String, Vec<String>)>,
    /// Backups to remove, in the order to remove them (an incremental
    /// before its base), with why.
    pub remove: Vec<(String, String)>,
    /// Backups expire does not touch (running, failed), with why.
    pub ignored: Vec<(String, String)>,
}

fn started(rec: &BackupRecord) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&rec.at_time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One periodic rule: the newest backup of each of the `count` newest
/// periods that have one.
struct Periodic {
    name: &'static str,
    left: u32,
    last: Option<String>,
    period: fn(&DateTime<Utc>) -> String,
}

pub fn plan(backups: &BTreeMap<String, BackupRecord>, policy: &Policy) -> Plan {
    let mut out = Plan::default();
    let mut complete: Vec<(&BackupRecord, Option<DateTime<Utc>>)> = Vec::new();
    let mut remove = BTreeMap::new();
    for rec in backups.values() {
        match &rec.state {
            // A replica (`mo_br copy`) is a disaster-recovery copy with its
            // original's time: counting it would keep it in the original's
            // place, or remove it by the original's age. Deleted by ID.
            BackupState::Complete if rec.replica_of.is_some() => out.ignored.push((
                rec.id.clone(),
                format!(
                    "a replica of {} (remove it with delete)",
                    rec.replica_of.as_deref().unwrap_or_default()
                ),
            )),
            BackupState::Complete => complete.push((rec, started(rec))),
            BackupState::Deleting => {
                remove.insert(
                    rec.id.clone(),
                    "its deletion was interrupted: finishing it".to_string(),
                );
            }
            BackupState::Running => out.ignored.push((rec.id.clone(), "running".into())),
            BackupState::Failed { .. } => out
                .ignored
                .push((rec.id.clone(), "failed (remove it with delete)".into())),
        }
    }
    // Newest first; an unreadable time sorts last and is kept below.
    complete.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.id.cmp(&a.0.id)));
    let newest = complete.first().and_then(|(_, t)| *t);
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut periodic = [
        Periodic {
            name: "keep_daily",
            left: policy.keep_daily,
            last: None,
            period: |t| t.format("%Y-%m-%d").to_string(),
        },
        Periodic {
            name: "keep_weekly",
            left: policy.keep_weekly,
            last: None,
            period: |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            },
        },
        Periodic {
            name: "keep_monthly",
            left: policy.keep_monthly,
            last: None,
            period: |t| t.format("%Y-%m").to_string(),
        },
    ];
    for (i, (rec, at)) in complete.iter().enumerate() {
        let why = reasons.entry(&rec.id).or_default();
        let Some(at) = at else {
            why.push(format!("start time {:?} is unreadable", rec.at_time));
            continue;
        };
        if (i as u64) < u64::from(policy.keep_last) {
            why.push(format!("keep_last {} (#{})", policy.keep_last, i + 1));
        }
        if let (Some(d), Some(newest)) = (policy.keep_within, newest) {
            if newest - *at <= d {
                why.push(format!("keep_within (started within {d} of the newest)"));
            }
        }
        for p in &mut periodic {
            let key = (p.period)(at);
            if p.left > 0 && p.last.as_deref() != Some(key.as_str()) {
                p.left -= 1;
                why.push(format!("{} ({key})", p.name));
                p.last = Some(key);
            }
        }
    }
    // A kept incremental needs every backup of its chain.
    let kept: Vec<String> = reasons
        .iter()
        .filter(|(_, why)| !why.is_empty())
        .map(|(id, _)| id.to_string())
        .collect();
    for id in kept {
        let mut cur = backups.get(&id).and_then(|r| r.base_id.clone());
        while let Some(base) = cur {
            if let Some(why) = reasons.get_mut(base.as_str()) {
                let reason = format!("base of kept incremental {id}");
                if !why.contains(&reason) {
                    why.push(reason);
                }
            }
            cur = backups.get(&base).and_then(|r| r.base_id.clone());
        }
    }
    for (rec, _) in &complete {
        let why = &reasons[rec.id.as_str()];
        if why.is_empty() {
            remove.insert(rec.id.clone(), "kept by no rule".into());
        } else {
            out.keep.push((rec.id.clone(), why.clone()));
        }
    }
    // Incrementals before their bases: deepest chain first.
    let depth = |id: &str| {
        let mut n = 0;
        let mut cur = backups.get(id).and_then(|r| r.base_id.clone());
        let mut seen = BTreeSet::new();
        while let Some(b) = cur.filter(|b| seen.insert(b.clone())) {
            n += 1;
            cur = backups.get(&b).and_then(|r| r.base_id.clone());
        }
        n
    };
    let mut remove: Vec<(String, String)> = remove.into_iter().collect();
    remove.sort_by_key(|(id, _)| std::cmp::Reverse(depth(id)));
    out.remove = remove;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::record;

    fn at(id: &str, base: Option<&str>, time: &str) -> BackupRecord {
        let mut r = record(id, base);
        r.state = BackupState::Complete;
        r.at_time = time.into();
        r
    }

    fn set(recs: Vec<BackupRecord>) -> BTreeMap<String, BackupRecord> {
        recs.into_iter().map(|r| (r.id.clone(), r)).collect()
    }

    fn kept(p: &Plan) -> Vec<&str> {
        let mut v: Vec<&str> = p.keep.iter().map(|(id, _)| id.as_str()).collect();
        v.sort();
        v
    }

    fn removed(p: &Plan) -> Vec<&str> {
        p.remove.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn replicas_are_left_alone() {
        let mut replica = at("r", None, "2026-01-01T10:00:00Z");
        replica.replica_of = Some("a".into());
        let b = set(vec![at("a", None, "2026-01-01T10:00:00Z"), replica]);
        let p = plan(
            &b,
            &Policy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["a"]);
        assert!(removed(&p).is_empty());
        assert_eq!(p.ignored.len(), 1);
        assert!(p.ignored[0].1.contains("replica of a"), "{:?}", p.ignored);
    }

    #[test]
    fn any_rule_keeps() {
        let b = set(vec![
            at("a", None, "2026-01-01T10:00:00Z"),
            at("b", None, "2026-01-01T20:00:00Z"),
            at("c", None, "2026-01-02T10:00:00Z"),
            at("d", None, "2026-01-09T10:00:00Z"),
            at("e", None, "2026-02-01T10:00:00Z"),
        ]);
        let p = plan(
            &b,
            &Policy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["e"]);
        // Daily: the newest of each of the 3 newest days.
        let p = plan(
            &b,
            &Policy {
                keep_daily: 3,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["c", "d", "e"]);
        // Within 30 days of the newest (not of now): the cut is at
        // 2026-01-02T10:00, inclusive.
        let p = plan(
            &b,
            &Policy {
                keep_within: Some(chrono::Duration::days(30)),
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["c", "d", "e"]);
        // Monthly: the newest of February, then of January.
        let p = plan(
            &b,
            &Policy {
                keep_monthly: 2,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["d", "e"]);
        assert_eq!(removed(&p).len(), 3);
        let p = plan(
            &b,
            &Policy {
                keep_weekly: 2,
                ..Default::default()
            },
        );
        // 2026-01-09 and 2026-02-01 are in different ISO weeks; the newest
        // two weeks are those of e and d.
        assert_eq!(kept(&p), ["d", "e"]);
    }

    #[test]
    fn a_kept_incremental_keeps_its_chain() {
        let b = set(vec![
            at("full", None, "2026-01-01T00:00:00Z"),
            at("inc1", Some("full"), "2026-01-02T00:00:00Z"),
            at("inc2", Some("inc1"), "2026-01-03T00:00:00Z"),
            at("old", None, "2025-12-01T00:00:00Z"),
            at("oldinc", Some("old"), "2025-12-02T00:00:00Z"),
        ]);
        let p = plan(
            &b,
            &Policy {
                keep_last: 1,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["full", "inc1", "inc2"]);
        let why = &p.keep.iter().find(|(id, _)| id == "full").unwrap().1;
        assert_eq!(why, &vec!["base of kept incremental inc2".to_string()]);
        // The incremental goes before its base.
        assert_eq!(removed(&p), ["oldinc", "old"]);
    }

    #[test]
    fn running_failed_and_deleting() {
        let mut b = set(vec![at("a", None, "2026-01-01T00:00:00Z")]);
        let mut r = record("r", None);
        r.at_time = "2026-01-05T00:00:00Z".into();
        b.insert("r".into(), r);
        let mut d = at("d", None, "2026-01-06T00:00:00Z");
        d.state = BackupState::Deleting;
        b.insert("d".into(), d);
        let p = plan(
            &b,
            &Policy {
                keep_last: 5,
                ..Default::default()
            },
        );
        assert_eq!(kept(&p), ["a"]);
        assert_eq!(removed(&p), ["d"]);
        assert_eq!(p.ignored, vec![("r".to_string(), "running".to_string())]);
    }
}
