//! Runs files on agents in shards. A shard is the unit of assignment: a
//! batch of files bounded in bytes and count, handed to one agent, which
//! copies its files in parallel. The scheduler keeps every live, eligible
//! agent busy with up to [`SHARDS_PER_AGENT`] shards, so faster agents take
//! more. Each assignment gets an epoch from a [`Ledger`]; results are
//! reported under that epoch and the ledger refuses them if the shard has
//! been handed to someone else since (fencing). A shard whose agent fails,
//! or whose lease expires, goes to another eligible agent.
//!
//! An agent retries each file through a storage outage for the job's retry
//! window; files it still could not move (problem `UNAVAILABLE`) go once
//! more, as a shard of only those files, preferably to another agent (its
//! network path may differ). The files the first agent finished are kept
//! and reported with the rest: they are not copied again.
//!
//! Shards come from a stream pulled only as agents have room for them, so
//! a job over millions of files holds the files of the shards in flight,
//! never all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::StreamExt;
use mo_br_proto::agent::{
    shard_event, CopyShardRequest, FileDone, FileProblem, FileTask, RestoreShardRequest,
    VerifyShardRequest,
};
use mo_br_proto::common::{ProblemKind, Storage as WireStorage};
use mo_br_proto::coordinator::{job_event, Problem, Progress};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{emit, Events};
use crate::agents::{AgentRef, Agents, Eligibility};
use crate::metrics;
use crate::{Error, Result};

/// Shard bounds: small enough to spread over agents and to lose little on
/// reassignment, large enough that per-shard overhead stays negligible.
pub const SHARD_BYTES: u64 = 64 << 20;
pub const SHARD_FILES: usize = 1000;
/// Shards each agent works on at once: the next is already streaming while
/// the tail of the previous one drains.
const SHARDS_PER_AGENT: usize = 2;
/// Attempts of a shard whose agent call failed (transport error, lost agent).
const SHARD_ATTEMPTS: u32 = 5;
/// Runs of a shard whose files outlasted an agent's retry window: the first
/// and one more, on another agent when there is one.
const OUTAGE_ATTEMPTS: u32 = 2;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often the scheduler looks at agent liveness when nothing else happens.
const SCHEDULE_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub enum Op {
    Copy(Box<CopyOp>),
    Restore {
        sources: HashMap<String, WireStorage>,
        target: WireStorage,
        checksum: bool,
        /// Keep a destination file that already holds the expected bytes
        /// (a copy resuming).
        keep_verified: bool,
    },
    Verify {
        storage: WireStorage,
    },
}

impl Op {
    /// The `op` label of this work in the metrics.
    fn label(&self) -> &'static str {
        match self {
            Op::Copy(_) => "copy",
            Op::Restore { .. } => "restore",
            Op::Verify { .. } => "verify",
        }
    }
}

/// Where a backup's shards read and write.
#[derive(Clone, Debug)]
pub struct CopyOp {
    /// Where SHARED shards read (the node's filesystem, or SHARED's S3).
    pub shared_source: WireStorage,
    /// Where node-local shards read: the node's filesystem.
    pub node_source: WireStorage,
    pub target: WireStorage,
    /// The node's launch config, for the keys of a SHARED store on S3.
    pub launch_config: String,
}

/// A planned shard.
#[derive(Clone, Debug)]
pub struct Shard {
    /// Position in the caller's shard list (what the ledger knows it by).
    pub id: usize,
    /// Caller's file indexes, parallel to `files`.
    pub indexes: Vec<usize>,
    pub files: Vec<FileTask>,
    pub eligibility: Eligibility,
}

/// Records assignments and results. For a backup it is the replicated job
/// state (so a new leader knows what is done); for restores and checks an
/// in-memory counter is enough.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Hands `shard` to `agent`; returns the assignment's epoch.
    async fn assign(&self, shard: usize, agent: &str) -> Result<u64>;
    /// Records a finished shard; `Ok(false)` if its epoch is no longer
    /// current (the report is stale and ignored).
    async fn finish(&self, shard: usize, epoch: u64, done: &[(usize, FileDone)]) -> Result<bool>;
}

/// Epochs from a counter; everything is accepted.
#[derive(Default)]
pub struct LocalLedger(AtomicU64);

#[async_trait::async_trait]
impl Ledger for LocalLedger {
    async fn assign(&self, _: usize, _: &str) -> Result<u64> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
    async fn finish(&self, _: usize, _: u64, _: &[(usize, FileDone)]) -> Result<bool> {
        Ok(true)
    }
}

/// Shards to run, produced as they are needed.
pub type ShardStream<'a> = BoxStream<'a, Result<Shard>>;

#[derive(Debug, Default)]
pub struct Outcome {
    /// The first file that had a problem, and the problem.
    pub first_problem: Option<(FileTask, FileProblem)>,
    /// Files that had a problem.
    pub problems: u64,
}

/// How a run behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Files in flight per shard on an agent (0: the agent's default).
    pub parallelism: u32,
    /// The first problem ends the run; outstanding shards are cancelled.
    pub fail_fast: bool,
    /// A client that goes away ends the run (a backup goes on without its
    /// watcher; a check or restore does not).
    pub stop_without_client: bool,
    /// Every problem goes to the client as a `Problem` event, named by the
    /// file's source (`FileTask::src`).
    pub report_problems: bool,
    /// Bytes and files already done, where progress starts.
    pub base: (u64, u64),
    /// The raft term this replica leads in (0 outside a group): agents
    /// refuse work from a term older than one they have seen.
    pub term: u64,
    /// How long agents retry a file through a storage outage (0: their
    /// default).
    pub retry_window_ms: u64,
    /// S3 requests per second over the whole run (0: no limit of its own),
    /// split evenly over the shards that can run at once.
    pub max_requests_per_sec: u64,
}

/// What an agent is told about retries and request rate for one shard.
#[derive(Debug, Clone, Copy, Default)]
struct ShardLimits {
    retry_window_ms: u64,
    max_requests_per_sec: u64,
}

/// Groups files into shards of one eligibility as they stream in, bounded
/// by `max_bytes` and [`SHARD_FILES`]; shard ids count from 0.
pub fn batch<'a>(
    files: BoxStream<'a, Result<FileTask>>,
    eligibility: Eligibility,
    max_bytes: u64,
) -> ShardStream<'a> {
    struct State<'a> {
        files: BoxStream<'a, Result<FileTask>>,
        carry: Option<FileTask>,
        next_id: usize,
        ended: bool,
    }
    let state = State {
        files,
        carry: None,
        next_id: 0,
        ended: false,
    };
    futures::stream::unfold(state, move |mut st| {
        let eligibility = eligibility.clone();
        async move {
            if st.ended && st.carry.is_none() {
                return None;
            }
            let mut shard = Shard {
                id: st.next_id,
                indexes: Vec::new(),
                files: Vec::new(),
                eligibility,
            };
            let mut bytes = 0u64;
            let mut next = st.carry.take();
            loop {
                let f = match next.take() {
                    Some(f) => f,
                    None if st.ended => break,
                    None => match st.files.next().await {
                        Some(Ok(f)) => f,
                        Some(Err(e)) => {
                            st.ended = true;
                            return Some((Err(e), st));
                        }
                        None => {
                            st.ended = true;
                            break;
                        }
                    },
                };
                let full = !shard.files.is_empty()
                    && (bytes + f.size > max_bytes || shard.files.len() >= SHARD_FILES);
                if full {
                    st.carry = Some(f);
                    break;
                }
                bytes += f.size;
                shard.indexes.push(shard.files.len());
                shard.files.push(f);
            }
            if shard.files.is_empty() {
                return None;
            }
            st.next_id += 1;
            Some((Ok(shard), st))
        }
    })
    .boxed()
}

enum Msg {
    Bytes(u64),
    /// A shard ended with every file answered.
    Finished {
        shard: Shard,
        epoch: u64,
        agent: String,
        done: Vec<(usize, FileDone)>,
        /// By position in the shard.
        problems: Vec<(usize, FileProblem)>,
        took: Duration,
    },
    /// The agent call failed; the shard goes back to the queue.
    Lost {
        shard: Shard,
        agent: String,
        reason: String,
    },
    /// The agent has seen a leader of a newer term than this run's: this
    /// run's leadership is over, even when this replica leads again (at
    /// the newer term, where the job is adopted afresh).
    Superseded {
        reason: String,
    },
}

/// Why a shard's agent call ended without an answer for every file.
enum Interrupted {
    Lost(String),
    Superseded(String),
}

struct Running {
    agent: String,
    task: JoinHandle<()>,
    shard: Shard,
}

/// Runs `shards` on `agents`, as `opts` says. Progress goes to `events`
/// (cumulative bytes and files).
pub async fn run(
    agents: &Agents,
    ledger: &dyn Ledger,
    op: Op,
    mut shards: ShardStream<'_>,
    opts: RunOptions,
    events: &Events,
) -> Result<Outcome> {
    let RunOptions {
        parallelism,
        fail_fast,
        stop_without_client,
        report_problems,
        base,
        term,
        retry_window_ms,
        max_requests_per_sec,
    } = opts;
    let mut outcome = Outcome::default();
    let mut queue: VecDeque<Shard> = VecDeque::new();
    let mut exhausted = false;
    let mut attempts: HashMap<usize, u32> = HashMap::new();
    // Shards that outlasted an agent's retry window: their runs so far, the
    // agent to avoid, and the files already done (by the caller's index).
    let mut outage_runs: HashMap<usize, u32> = HashMap::new();
    let mut avoid: HashMap<usize, String> = HashMap::new();
    let mut partial: HashMap<usize, Vec<(usize, FileDone)>> = HashMap::new();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut waiting_since: Option<Instant> = None;
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let (mut bytes, mut files_done) = base;
    let mut last_report = Instant::now();
    let mut ticker = tokio::time::interval(SCHEDULE_EVERY);

    let result = 'sched: loop {
        // Take shards away from agents whose lease has expired.
        let lost: Vec<usize> = running
            .iter()
            .filter(|(_, r)| !agents.is_live(&r.agent))
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            let r = running.remove(&id).expect("listed above");
            r.task.abort();
            tracing::warn!(
                "agent {} lost its lease; shard {id} goes elsewhere",
                r.agent
            );
            metrics::shard_reassigned();
            queue.push_front(r.shard);
        }

        // Take as many new shards as agents have free slots for (one at
        // least, so that a run with no agent yet notices it is stuck).
        let live = agents.live();
        let want = (live.len() * SHARDS_PER_AGENT)
            .saturating_sub(running.len())
            .max(1);
        while !exhausted && queue.len() < want {
            match shards.next().await {
                Some(Ok(shard)) => queue.push_back(shard),
                Some(Err(e)) => break 'sched Err(e),
                None => exhausted = true,
            }
        }

        // Hand out shards to live agents with a free slot.
        let mut stuck = None;
        let mut i = 0;
        while i < queue.len() {
            let shard = &queue[i];
            let avoided = avoid.get(&shard.id);
            let candidate = live
                .iter()
                .filter(|a| agents.eligible(a, &shard.eligibility))
                .map(|a| (a, running.values().filter(|r| r.agent == a.name).count()))
                .filter(|(_, n)| *n < SHARDS_PER_AGENT)
                .min_by_key(|(a, n)| (Some(&a.name) == avoided, *n))
                .map(|(a, _)| a.clone());
            let Some(agent) = candidate else {
                if !live.iter().any(|a| agents.eligible(a, &shard.eligibility)) {
                    stuck = Some(shard.eligibility.describe());
                }
                i += 1;
                continue;
            };
            let shard = queue.remove(i).expect("index in range");
            // Losing leadership (or quorum) here ends the run; the shards
            // already running are aborted below like on any other exit.
            let epoch = match ledger.assign(shard.id, &agent.name).await {
                Ok(epoch) => epoch,
                Err(e) => break 'sched Err(e),
            };
            // The run's request rate, shared by every shard that can run
            // at once, so that together they keep to it: the agents' slots,
            // or fewer once the last shards are known.
            let mut slots = (live.len() * SHARDS_PER_AGENT).max(1);
            if exhausted {
                slots = slots.min(running.len() + queue.len() + 1);
            }
            let slots = slots as u64;
            let limits = ShardLimits {
                retry_window_ms,
                max_requests_per_sec: match max_requests_per_sec {
                    0 => 0,
                    n => (n / slots).max(1),
                },
            };
            let task = tokio::spawn(run_shard(
                agent.clone(),
                op.clone(),
                shard.clone(),
                parallelism,
                (epoch, term, limits),
                tx.clone(),
            ));
            running.insert(
                shard.id,
                Running {
                    agent: agent.name.clone(),
                    task,
                    shard,
                },
            );
        }
        if exhausted && queue.is_empty() && running.is_empty() {
            break Ok(());
        }
        // Shards nobody can take: wait a while for an agent to (re)appear.
        match (stuck, running.is_empty()) {
            (Some(what), true) => {
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > agents.absence_limit() {
                    break Err(Error::Failed(format!(
                        "no live agent can take the remaining work ({what}) for {:?}",
                        agents.absence_limit()
                    )));
                }
            }
            _ => waiting_since = None,
        }

        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = ticker.tick() => None,
            _ = events.closed(), if stop_without_client => {
                break Err(Error::Failed("cancelled: the client went away".into()));
            }
        };
        match msg {
            None => {}
            Some(Msg::Bytes(n)) => bytes += n,
            Some(Msg::Finished {
                shard,
                epoch,
                agent,
                done,
                problems,
                took,
            }) => {
                if running.get(&shard.id).map(|r| r.agent.as_str()) != Some(agent.as_str()) {
                    continue; // a shard taken away meanwhile
                }
                running.remove(&shard.id);
                metrics::shard_finished(op.label(), took);
                let mut done = done;
                let outage = !problems.is_empty()
                    && problems
                        .iter()
                        .all(|(_, p)| p.kind == ProblemKind::Unavailable as i32);
                let runs = if outage {
                    let runs = outage_runs.entry(shard.id).or_default();
                    *runs += 1;
                    *runs
                } else {
                    0
                };
                if outage && runs < OUTAGE_ATTEMPTS {
                    // Keep what was done; run the rest again elsewhere.
                    let detail = &problems[0].1.detail;
                    tracing::warn!(
                        "shard {}: {} file(s) still failing on agent {agent} after the retry \
                         window; trying them once more, on another agent if there is one: {detail}",
                        shard.id,
                        problems.len()
                    );
                    metrics::shard_reassigned();
                    files_done += done.len() as u64;
                    partial.entry(shard.id).or_default().append(&mut done);
                    let mut rest = Shard {
                        id: shard.id,
                        indexes: Vec::new(),
                        files: Vec::new(),
                        eligibility: shard.eligibility.clone(),
                    };
                    for (i, _) in &problems {
                        if let (Some(&global), Some(f)) =
                            (shard.indexes.get(*i), shard.files.get(*i))
                        {
                            rest.indexes.push(global);
                            rest.files.push(f.clone());
                        }
                    }
                    avoid.insert(shard.id, agent);
                    queue.push_back(rest);
                    continue;
                }
                // Files an earlier run of this shard finished count now.
                outage_runs.remove(&shard.id);
                avoid.remove(&shard.id);
                let earlier = partial.remove(&shard.id).unwrap_or_default();
                files_done = files_done.saturating_sub(earlier.len() as u64);
                done.extend(earlier);
                if !problems.is_empty() {
                    outcome.problems += problems.len() as u64;
                    for (i, p) in problems {
                        let Some(task) = shard.files.get(i) else {
                            continue;
                        };
                        if report_problems {
                            emit(
                                events,
                                job_event::Event::Problem(Problem {
                                    path: task.src.clone(),
                                    kind: p.kind,
                                    detail: p.detail.clone(),
                                }),
                            )
                            .await;
                        }
                        if outcome.first_problem.is_none() {
                            outcome.first_problem = Some((task.clone(), p));
                        }
                    }
                    if fail_fast {
                        break Ok(());
                    }
                }
                let accepted = match ledger.finish(shard.id, epoch, &done).await {
                    Ok(accepted) => accepted,
                    Err(e) => break 'sched Err(e),
                };
                if accepted {
                    files_done += done.len() as u64;
                }
            }
            Some(Msg::Superseded { reason }) => {
                tracing::info!("run of term {term} ends: {reason}");
                break Err(Error::NotLeader(None));
            }
            Some(Msg::Lost {
                shard,
                agent,
                reason,
            }) => {
                if running.get(&shard.id).map(|r| r.agent.as_str()) != Some(agent.as_str()) {
                    continue;
                }
                running.remove(&shard.id);
                let n = attempts.entry(shard.id).or_default();
                *n += 1;
                if *n >= SHARD_ATTEMPTS {
                    break Err(Error::Agent {
                        agent,
                        detail: format!("shard failed {SHARD_ATTEMPTS} times, last: {reason}"),
                    });
                }
                tracing::warn!("shard {} lost on agent {agent}: {reason}", shard.id);
                metrics::shard_reassigned();
                agents.suspect(&agent);
                queue.push_back(shard);
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            emit(
                events,
                job_event::Event::Progress(Progress {
                    bytes,
                    files: files_done,
                }),
            )
            .await;
        }
    };
    for r in running.into_values() {
        r.task.abort();
    }
    emit(
        events,
        job_event::Event::Progress(Progress {
            bytes,
            files: files_done,
        }),
    )
    .await;
    result.map(|()| outcome)
}

/// Streams one shard on one agent and reports the whole of it at the end.
async fn run_shard(
    agent: AgentRef,
    op: Op,
    shard: Shard,
    parallelism: u32,
    (epoch, term, limits): (u64, u64, ShardLimits),
    tx: mpsc::Sender<Msg>,
) {
    let started = Instant::now();
    let mut done = Vec::new();
    let mut problems = Vec::new();
    let outcome = stream_shard(
        &agent,
        &op,
        &shard,
        parallelism,
        (epoch, term, limits),
        &tx,
        &mut done,
        &mut problems,
    )
    .await;
    let msg = match outcome {
        Ok(()) => Msg::Finished {
            shard,
            epoch,
            agent: agent.name.clone(),
            done,
            problems,
            took: started.elapsed(),
        },
        Err(Interrupted::Lost(reason)) => Msg::Lost {
            shard,
            agent: agent.name.clone(),
            reason,
        },
        Err(Interrupted::Superseded(reason)) => Msg::Superseded { reason },
    };
    let _ = tx.send(msg).await;
}

#[allow(clippy::too_many_arguments)]
async fn stream_shard(
    agent: &AgentRef,
    op: &Op,
    shard: &Shard,
    parallelism: u32,
    (epoch, term, limits): (u64, u64, ShardLimits),
    tx: &mpsc::Sender<Msg>,
    done: &mut Vec<(usize, FileDone)>,
    problems: &mut Vec<(usize, FileProblem)>,
) -> std::result::Result<(), Interrupted> {
    let mut client = agent.client.clone();
    let files = shard.files.clone();
    let job_id = String::new();
    let shard_id = shard.id as u64;
    let response = match op {
        Op::Copy(copy) => {
            let source = match shard.eligibility {
                Eligibility::Node { .. } => &copy.node_source,
                _ => &copy.shared_source,
            };
            client
                .copy_shard(CopyShardRequest {
                    job_id,
                    shard_id,
                    epoch,
                    source: Some(source.clone()),
                    target: Some(copy.target.clone()),
                    files,
                    parallelism,
                    launch_config: copy.launch_config.clone(),
                    term,
                    retry_window_ms: limits.retry_window_ms,
                    max_requests_per_sec: limits.max_requests_per_sec,
                })
                .await
        }
        Op::Restore {
            sources,
            target,
            checksum,
            keep_verified,
        } => {
            client
                .restore_shard(RestoreShardRequest {
                    job_id,
                    shard_id,
                    epoch,
                    sources: sources.clone(),
                    target: Some(target.clone()),
                    files,
                    parallelism,
                    checksum: *checksum,
                    term,
                    retry_window_ms: limits.retry_window_ms,
                    max_requests_per_sec: limits.max_requests_per_sec,
                    keep_verified: *keep_verified,
                })
                .await
        }
        Op::Verify { storage } => {
            client
                .verify_shard(VerifyShardRequest {
                    job_id,
                    shard_id,
                    epoch,
                    storage: Some(storage.clone()),
                    files,
                    parallelism,
                    term,
                    retry_window_ms: limits.retry_window_ms,
                    max_requests_per_sec: limits.max_requests_per_sec,
                })
                .await
        }
    };
    let mut stream = match response {
        Ok(r) => r.into_inner(),
        // The agent's fence: it has seen a newer leader.
        Err(status) if status.code() == tonic::Code::Aborted => {
            return Err(Interrupted::Superseded(status.message().to_string()))
        }
        // A refusal of the request itself (bad storage, bad credentials) is
        // not a lost agent: every agent would refuse it the same way.
        Err(status)
            if !matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ) =>
        {
            for i in 0..shard.files.len() {
                problems.push((
                    i,
                    FileProblem {
                        index: i as u32,
                        kind: ProblemKind::Io as i32,
                        detail: status.message().to_string(),
                        epoch,
                    },
                ));
            }
            return Ok(());
        }
        Err(status) => return Err(Interrupted::Lost(status.message().to_string())),
    };
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|s| Interrupted::Lost(s.message().to_string()))?;
        match ev.event {
            Some(shard_event::Event::Bytes(n)) => {
                agent.meter.add(n);
                let _ = tx.send(Msg::Bytes(n)).await;
            }
            Some(shard_event::Event::Done(d)) if d.epoch == epoch => {
                if let Some(&global) = shard.indexes.get(d.index as usize) {
                    done.push((global, d));
                }
            }
            Some(shard_event::Event::Problem(p))
                if p.epoch == epoch && (p.index as usize) < shard.files.len() =>
            {
                problems.push((p.index as usize, p));
            }
            // A result of another assignment: fenced off.
            _ => {}
        }
    }
    let answered = done.len() + problems.len();
    if answered < shard.files.len() {
        return Err(Interrupted::Lost(format!(
            "stream ended after {answered} of {} files",
            shard.files.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(size: u64) -> FileTask {
        FileTask {
            size,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn batch_bounds_bytes_and_counts_as_files_stream() {
        let files = (0..2500).map(|_| Ok(task(1)));
        let shards: Vec<Shard> = batch(
            futures::stream::iter(files).boxed(),
            Eligibility::Shared,
            SHARD_BYTES,
        )
        .map(|s| s.unwrap())
        .collect()
        .await;
        let sizes: Vec<_> = shards.iter().map(|s| s.files.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(shards.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 1, 2]);

        let files = [50 << 20, 50 << 20, 10, 100 << 20].map(|n| Ok(task(n)));
        let shards: Vec<Shard> = batch(
            futures::stream::iter(files).boxed(),
            Eligibility::Shared,
            SHARD_BYTES,
        )
        .map(|s| s.unwrap())
        .collect()
        .await;
        let sizes: Vec<_> = shards.iter().map(|s| s.files.len()).collect();
        assert_eq!(sizes, vec![1, 2, 1]);
    }
}
