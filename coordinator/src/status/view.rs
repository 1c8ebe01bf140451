//! What the status page shows, as the JSON `/api/status` answers: this
//! replica's raft role and health, the running jobs with their progress,
//! the agents with their throughput, and the newest backups drawn as
//! chains. Bounded whatever the catalog holds: at most [`CATALOG_LIMIT`]
//! backups are shown.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use serde::Serialize;

use crate::catalog::{AgentRecord, BackupRecord, BackupState};
use crate::metrics::location_label;
use crate::{Coordinator, Result};

/// The newest backups shown, with the chains among them.
pub const CATALOG_LIMIT: usize = 200;

#[derive(Debug, Serialize)]
pub struct Status {
    /// RFC 3339, this replica's clock.
    pub generated_at: String,
    pub replica: Replica,
    pub jobs: Vec<JobView>,
    pub agents: Vec<AgentView>,
    pub catalog: CatalogView,
}

#[derive(Debug, Serialize)]
pub struct Replica {
    /// `cluster` (a raft replica) or `single` (a local catalog).
    pub mode: &'static str,
    pub id: u64,
    /// leader, follower, candidate or precandidate.
    pub role: String,
    pub term: u64,
    /// 0 when none is known.
    pub leader_id: u64,
    /// The leader's address when it is another replica.
    pub leader_address: Option<String>,
    /// A leader is known: the group has a quorum and calls can succeed.
    pub healthy: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
}

#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub backup_id: String,
    /// backup, restore, check, list, delete.
    pub kind: String,
    pub what: String,
    /// The backup location's label (`fs`, `s3:<bucket>`).
    pub target: Option<String>,
    /// Progress from the job's own events on this replica (`true`), or
    /// from the replicated state, shard by shard (a backup another replica
    /// drives, or one not yet adopted).
    pub live: bool,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub elapsed_secs: Option<f64>,
    /// Over the last seconds.
    pub bytes_per_sec: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AgentView {
    pub id: String,
    pub address: String,
    pub node: String,
    /// Its lease holds; `None` on a follower, which keeps no leases (the
    /// leader does). A fixed agent (`--agents`) is always taken as live.
    pub live: Option<bool>,
    /// Bytes it copied for jobs this replica drove since it started.
    pub bytes_copied: u64,
    pub bytes_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct CatalogView {
    /// Backups in the catalog.
    pub backups: usize,
    /// Of them, shown (the newest).
    pub shown: usize,
    pub limit: usize,
    /// Chains, newest first: a backup with the incrementals based on it
    /// as children.
    pub chains: Vec<BackupNode>,
}

#[derive(Debug, Serialize)]
pub struct BackupNode {
    pub id: String,
    /// full or incremental.
    pub backup_type: String,
    /// running, complete, failed, deleting.
    pub state: String,
    pub reason: Option<String>,
    pub at_time: String,
    pub complete_time: Option<String>,
    pub size: u64,
    pub files: u64,
    pub location: String,
    pub base_id: Option<String>,
    /// Its base is among those shown (it is drawn under it); an
    /// incremental whose base is older than the newest shown is a root.
    pub base_shown: bool,
    pub children: Vec<BackupNode>,
}

/// What is read from the catalog in one go.
struct FromCatalog {
    backups: usize,
    newest: Vec<BackupRecord>,
    /// Running backups: (id, location label, bytes, files, bytes done, files done).
    running: Vec<(String, String, crate::catalog::Totals)>,
    agents: Vec<AgentRecord>,
}

pub async fn collect(c: &Coordinator) -> Result<Status> {
    let from = c
        .catalog
        .read(|cat| {
            // The newest by start time, without copying the rest.
            let mut heap: BinaryHeap<Reverse<(&str, &str)>> = BinaryHeap::new();
            for b in cat.backups.values() {
                heap.push(Reverse((b.at_time.as_str(), b.id.as_str())));
                if heap.len() > CATALOG_LIMIT {
                    heap.pop();
                }
            }
            let newest = heap
                .into_iter()
                .filter_map(|Reverse((_, id))| cat.backups.get(id).cloned())
                .collect();
            let running = cat
                .jobs
                .values()
                .map(|j| {
                    let target = cat
                        .backups
                        .get(&j.id)
                        .map(|b| location_label(&b.location))
                        .unwrap_or_default();
                    (j.id.clone(), target, j.totals())
                })
                .collect();
            FromCatalog {
                backups: cat.backups.len(),
                newest,
                running,
                agents: cat.agents.values().cloned().collect(),
            }
        })
        .await?;
    Ok(Status {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        replica: replica(c),
        jobs: jobs(c, &from.running),
        agents: agents(c, &from.agents),
        catalog: CatalogView {
            backups: from.backups,
            shown: from.newest.len(),
            limit: CATALOG_LIMIT,
            chains: chains(from.newest),
        },
    })
}

fn replica(c: &Coordinator) -> Replica {
    let status = c.catalog.changes().borrow().clone();
    let leadership = c.catalog.leadership();
    let cluster = c.catalog.raft_node().is_some();
    Replica {
        mode: if cluster { "cluster" } else { "single" },
        id: status.id,
        role: format!("{:?}", status.role).to_lowercase(),
        term: status.term,
        leader_id: status.leader.unwrap_or(0),
        leader_address: leadership.leader_addr,
        healthy: !cluster || status.leader.is_some(),
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        snapshot_index: status.snapshot_index,
    }
}

fn jobs(c: &Coordinator, running: &[(String, String, crate::catalog::Totals)]) -> Vec<JobView> {
    let live = c.live.snapshot();
    let driven: BTreeSet<&str> = live
        .iter()
        .flat_map(|j| [j.job_id.as_str(), j.backup_id.as_str()])
        .collect();
    let mut out: Vec<JobView> = live
        .iter()
        .map(|j| JobView {
            job_id: j.job_id.clone(),
            backup_id: j.backup_id.clone(),
            kind: j.kind.to_string(),
            what: j.what.clone(),
            target: j.target.clone(),
            live: true,
            bytes_done: j.bytes,
            bytes_total: j.total_bytes,
            files_done: j.files,
            files_total: j.total_files,
            elapsed_secs: Some(j.started.elapsed().as_secs_f64()),
            bytes_per_sec: Some(j.meter.rate()),
        })
        .collect();
    out.extend(
        running
            .iter()
            .filter(|(id, _, _)| !driven.contains(id.as_str()))
            .map(|(id, target, t)| JobView {
                job_id: id.clone(),
                backup_id: id.clone(),
                kind: "backup".into(),
                what: "backup".into(),
                target: Some(target.clone()),
                live: false,
                bytes_done: t.bytes_done,
                bytes_total: t.bytes,
                files_done: t.files_done,
                files_total: t.files,
                elapsed_secs: None,
                bytes_per_sec: None,
            }),
    );
    out
}

fn agents(c: &Coordinator, registered: &[AgentRecord]) -> Vec<AgentView> {
    let knows_leases = c.catalog.is_leader();
    let mut out: BTreeMap<String, AgentView> = BTreeMap::new();
    for r in registered {
        out.insert(
            r.id.clone(),
            AgentView {
                id: r.id.clone(),
                address: r.address.clone(),
                node: r.node.clone(),
                live: knows_leases.then_some(false),
                bytes_copied: 0,
                bytes_per_sec: 0.0,
            },
        );
    }
    for (agent, address, live) in c.agents.known() {
        let view = out.entry(agent.name.clone()).or_insert_with(|| AgentView {
            id: agent.name.clone(),
            // A fixed agent is named by its address.
            address: if address.is_empty() {
                agent.name.clone()
            } else {
                address
            },
            node: agent.node.clone(),
            live: None,
            bytes_copied: 0,
            bytes_per_sec: 0.0,
        });
        view.live = knows_leases.then_some(live);
        view.bytes_copied = agent.meter.total();
        view.bytes_per_sec = agent.meter.rate();
    }
    out.into_values().collect()
}

/// The backups as a forest: each incremental under its base when the base
/// is shown too. Roots newest first, children in the order they were taken.
fn chains(newest: Vec<BackupRecord>) -> Vec<BackupNode> {
    let shown: BTreeSet<String> = newest.iter().map(|b| b.id.clone()).collect();
    let mut children: BTreeMap<String, Vec<BackupRecord>> = BTreeMap::new();
    let mut roots = Vec::new();
    for b in newest {
        match b.base_id.clone().filter(|base| shown.contains(base)) {
            Some(base) if base != b.id => children.entry(base).or_default().push(b),
            _ => roots.push(b),
        }
    }
    roots.sort_by(|a, b| (&b.at_time, &b.id).cmp(&(&a.at_time, &a.id)));
    for list in children.values_mut() {
        list.sort_by(|a, b| (&a.at_time, &a.id).cmp(&(&b.at_time, &b.id)));
    }
    // At most CATALOG_LIMIT deep; a node's children are taken out of the
    // map as it is built, so even a cycle of bases could not loop.
    roots
        .into_iter()
        .map(|r| node(r, &mut children, &shown))
        .collect()
}

fn node(
    b: BackupRecord,
    children: &mut BTreeMap<String, Vec<BackupRecord>>,
    shown: &BTreeSet<String>,
) -> BackupNode {
    let kids = children.remove(&b.id).unwrap_or_default();
    let (state, reason) = match &b.state {
        BackupState::Failed { reason } => (b.state.to_string(), Some(reason.clone())),
        s => (s.to_string(), None),
    };
    BackupNode {
        base_shown: b.base_id.as_ref().is_some_and(|base| shown.contains(base)),
        backup_type: format!("{:?}", b.backup_type).to_lowercase(),
        state,
        reason,
        location: location_label(&b.location),
        children: kids.into_iter().map(|k| node(k, children, shown)).collect(),
        id: b.id,
        at_time: b.at_time,
        complete_time: b.complete_time,
        size: b.size,
        files: b.files,
        base_id: b.base_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::record;
    use crate::catalog::Command;

    fn at(mut b: BackupRecord, minute: u32) -> BackupRecord {
        b.at_time = format!("2026-01-01T00:{minute:02}:00Z");
        b
    }

    #[test]
    fn incrementals_hang_under_their_base_and_orphans_are_roots() {
        let chains = chains(vec![
            at(record("a", None), 1),
            at(record("c", Some("b")), 3),
            at(record("b", Some("a")), 2),
            at(record("d", None), 4),
            // Its base is older than any shown.
            at(record("e", Some("gone")), 5),
        ]);
        let roots: Vec<_> = chains.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(roots, ["e", "d", "a"]);
        assert!(!chains[0].base_shown);
        let a = &chains[2];
        assert_eq!(a.children.len(), 1);
        let b = &a.children[0];
        assert_eq!(
            (b.id.as_str(), b.backup_type.as_str()),
            ("b", "incremental")
        );
        assert!(b.base_shown);
        assert_eq!(b.children[0].id, "c");
    }

    #[tokio::test]
    async fn the_catalog_view_keeps_to_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(
            &dir.path().join("mo_br.meta"),
            vec![],
            mo_br_security::Security::plaintext(),
        )
        .await
        .unwrap();
        let n = CATALOG_LIMIT + 50;
        for i in 0..n {
            let mut b = record(&format!("b{i:04}"), None);
            b.at_time = format!("2026-01-01T00:00:00.{i:04}Z");
            c.catalog
                .propose(Command::BackupStarted(Box::new(b)))
                .await
                .unwrap();
        }
        let status = collect(&c).await.unwrap();
        assert_eq!(status.catalog.backups, n);
        assert_eq!(status.catalog.shown, CATALOG_LIMIT);
        assert_eq!(status.catalog.chains.len(), CATALOG_LIMIT);
        assert_eq!(status.catalog.chains[0].id, format!("b{:04}", n - 1));
        assert_eq!(status.catalog.chains[CATALOG_LIMIT - 1].id, "b0050");
        assert_eq!(status.replica.mode, "single");
        assert_eq!(status.replica.role, "leader");
        assert!(status.replica.healthy);
        assert!(status.jobs.is_empty() && status.agents.is_empty());
    }
}
