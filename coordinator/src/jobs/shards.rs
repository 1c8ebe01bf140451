//! Runs files on agents in shards. A shard is the unit of assignment: a
//! batch of files bounded in bytes and count, handed to one agent, which
//! copies its files in parallel. Agents pull shards from a shared queue, so
//! faster agents take more. An assignment carries an epoch; results carrying
//! another epoch are ignored, so a shard taken away from an agent can never be
//! completed by it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mo_br_proto::agent::{
    shard_event, CopyShardRequest, FileDone, FileProblem, FileTask, ProblemKind,
    RestoreShardRequest, VerifyShardRequest,
};
use mo_br_proto::common::Storage as WireStorage;
use mo_br_proto::coordinator::{job_event, Progress};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{emit, Events};
use crate::agents::{AgentRef, Agents};
use crate::{Error, Result};

/// Shard bounds: small enough to spread over agents and to lose little on
/// reassignment, large enough that per-shard overhead stays negligible.
const SHARD_BYTES: u64 = 256 << 20;
const SHARD_FILES: usize = 1000;
/// Shards each agent works on at once: the next is already streaming while
/// the tail of the previous one drains.
const SHARDS_PER_AGENT: usize = 2;
/// Attempts of a shard whose agent call failed (transport error).
const SHARD_ATTEMPTS: u32 = 3;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub enum Op {
    Copy {
        source: WireStorage,
        target: WireStorage,
    },
    Restore {
        sources: HashMap<String, WireStorage>,
        target: WireStorage,
        checksum: bool,
    },
    Verify {
        storage: WireStorage,
    },
}

#[derive(Debug)]
pub struct Outcome {
    /// Per file (same order as the input), its result if it finished.
    pub done: Vec<Option<FileDone>>,
    pub problems: Vec<(usize, FileProblem)>,
}

struct Shard {
    /// Global indexes of the files, parallel to `files`.
    indexes: Vec<usize>,
    files: Vec<FileTask>,
    attempts: u32,
}

enum Msg {
    Bytes(u64),
    Done(usize, FileDone),
    Problem(usize, FileProblem),
    /// The agent call failed; the shard goes back to the queue.
    Lost(Shard, String),
    ShardFinished,
}

fn split(files: &[FileTask]) -> VecDeque<Shard> {
    let mut shards = VecDeque::new();
    let mut cur = Shard {
        indexes: vec![],
        files: vec![],
        attempts: 0,
    };
    let mut bytes = 0u64;
    for (i, f) in files.iter().enumerate() {
        if !cur.files.is_empty() && (bytes + f.size > SHARD_BYTES || cur.files.len() >= SHARD_FILES)
        {
            shards.push_back(std::mem::replace(
                &mut cur,
                Shard {
                    indexes: vec![],
                    files: vec![],
                    attempts: 0,
                },
            ));
            bytes = 0;
        }
        bytes += f.size;
        cur.indexes.push(i);
        cur.files.push(f.clone());
    }
    if !cur.files.is_empty() {
        shards.push_back(cur);
    }
    shards
}

/// Runs `files` on `agents`. With `fail_fast` the first problem cancels all
/// outstanding work. Progress goes to `events` (cumulative bytes and files);
/// a client that disconnects cancels the run with an error.
pub async fn run(
    agents: &Agents,
    op: Op,
    files: Vec<FileTask>,
    parallelism: u32,
    fail_fast: bool,
    events: &Events,
) -> Result<Outcome> {
    let total = files.len();
    let mut outcome = Outcome {
        done: vec![None; total],
        problems: vec![],
    };
    if total == 0 {
        return Ok(outcome);
    }
    if agents.all().is_empty() {
        return Err(Error::FailedPrecondition("no agent is available".into()));
    }
    // The queue is shared by the workers of this one run and nothing else;
    // a std Mutex is enough as it is never held across an await.
    let queue = Arc::new(Mutex::new(split(&files)));
    let mut pending_shards = queue.lock().expect("queue lock").len();
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let mut workers = JoinSet::new();
    let epoch = Arc::new(std::sync::atomic::AtomicU64::new(1));
    for agent in agents.all() {
        for _ in 0..SHARDS_PER_AGENT {
            workers.spawn(worker(
                agent.clone(),
                op.clone(),
                queue.clone(),
                tx.clone(),
                parallelism,
                epoch.clone(),
            ));
        }
    }
    drop(tx);

    let (mut bytes, mut files_done) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let mut lost_reason = None;
    while pending_shards > 0 {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = events.closed() => {
                workers.abort_all();
                return Err(Error::Failed("cancelled: the client went away".into()));
            }
        };
        let Some(msg) = msg else { break };
        match msg {
            Msg::Bytes(n) => bytes += n,
            Msg::Done(i, d) => {
                files_done += 1;
                outcome.done[i] = Some(d);
            }
            Msg::Problem(i, p) => {
                outcome.problems.push((i, p));
                if fail_fast {
                    workers.abort_all();
                    return Ok(outcome);
                }
            }
            Msg::Lost(mut shard, reason) => {
                shard.attempts += 1;
                if shard.attempts >= SHARD_ATTEMPTS {
                    workers.abort_all();
                    return Err(Error::Agent {
                        agent: "shard".into(),
                        detail: format!("gave up after {SHARD_ATTEMPTS} attempts: {reason}"),
                    });
                }
                tracing::warn!("shard reassigned: {reason}");
                lost_reason = Some(reason);
                queue.lock().expect("queue lock").push_back(shard);
            }
            Msg::ShardFinished => pending_shards -= 1,
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
    }
    workers.abort_all();
    emit(
        events,
        job_event::Event::Progress(Progress {
            bytes,
            files: files_done,
        }),
    )
    .await;
    if pending_shards > 0 {
        return Err(Error::Agent {
            agent: "all".into(),
            detail: lost_reason.unwrap_or_else(|| "agents stopped before finishing".into()),
        });
    }
    Ok(outcome)
}

async fn worker(
    agent: AgentRef,
    op: Op,
    queue: Arc<Mutex<VecDeque<Shard>>>,
    tx: mpsc::Sender<Msg>,
    parallelism: u32,
    epochs: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        let Some(shard) = queue.lock().expect("queue lock").pop_front() else {
            return;
        };
        let epoch = epochs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match run_shard(&agent, &op, &shard, parallelism, epoch, &tx).await {
            Ok(()) => {
                if tx.send(Msg::ShardFinished).await.is_err() {
                    return;
                }
            }
            Err(reason) => {
                let reason = format!("agent {}: {reason}", agent.name);
                if tx.send(Msg::Lost(shard, reason)).await.is_err() {
                    return;
                }
                // Give the agent a moment before it takes more work.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Streams one shard's events into the run. Returns Err when the agent call
/// failed before every file was answered, so the shard can go elsewhere.
async fn run_shard(
    agent: &AgentRef,
    op: &Op,
    shard: &Shard,
    parallelism: u32,
    epoch: u64,
    tx: &mpsc::Sender<Msg>,
) -> std::result::Result<(), String> {
    let mut client = agent.client.clone();
    let files = shard.files.clone();
    let job_id = String::new();
    let response = match op {
        Op::Copy { source, target } => {
            client
                .copy_shard(CopyShardRequest {
                    job_id,
                    shard_id: 0,
                    epoch,
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    files,
                    parallelism,
                })
                .await
        }
        Op::Restore {
            sources,
            target,
            checksum,
        } => {
            client
                .restore_shard(RestoreShardRequest {
                    job_id,
                    shard_id: 0,
                    epoch,
                    sources: sources.clone(),
                    target: Some(target.clone()),
                    files,
                    parallelism,
                    checksum: *checksum,
                })
                .await
        }
        Op::Verify { storage } => {
            client
                .verify_shard(VerifyShardRequest {
                    job_id,
                    shard_id: 0,
                    epoch,
                    storage: Some(storage.clone()),
                    files,
                    parallelism,
                })
                .await
        }
    };
    let mut stream = match response {
        Ok(r) => r.into_inner(),
        // A refusal of the request itself (bad storage, bad credentials) is
        // not a lost agent: every agent would refuse it the same way.
        Err(status)
            if status.code() != tonic::Code::Unavailable
                && status.code() != tonic::Code::Unknown =>
        {
            for (i, &global) in shard.indexes.iter().enumerate() {
                let p = FileProblem {
                    index: i as u32,
                    kind: ProblemKind::Io as i32,
                    detail: status.message().to_string(),
                    epoch,
                };
                if tx.send(Msg::Problem(global, p)).await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
        Err(status) => return Err(status.message().to_string()),
    };
    let mut answered = 0usize;
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(|s| s.message().to_string())?;
        match ev.event {
            Some(shard_event::Event::Bytes(n)) => {
                let _ = tx.send(Msg::Bytes(n)).await;
            }
            Some(shard_event::Event::Done(d)) if d.epoch == epoch => {
                let Some(&global) = shard.indexes.get(d.index as usize) else {
                    continue;
                };
                answered += 1;
                let _ = tx.send(Msg::Done(global, d)).await;
            }
            Some(shard_event::Event::Problem(p)) if p.epoch == epoch => {
                let Some(&global) = shard.indexes.get(p.index as usize) else {
                    continue;
                };
                answered += 1;
                let _ = tx.send(Msg::Problem(global, p)).await;
            }
            // A result of another assignment: fenced off.
            _ => {}
        }
    }
    if answered < shard.files.len() {
        return Err(format!(
            "stream ended after {answered} of {} files",
            shard.files.len()
        ));
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

    #[test]
    fn split_bounds_bytes_and_counts() {
        let files: Vec<_> = (0..2500).map(|_| task(1)).collect();
        let shards = split(&files);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards.iter().map(|s| s.files.len()).sum::<usize>(), 2500);

        let files = vec![task(200 << 20), task(200 << 20), task(10), task(300 << 20)];
        let shards = split(&files);
        let sizes: Vec<_> = shards.iter().map(|s| s.indexes.clone()).collect();
        assert_eq!(sizes, vec![vec![0], vec![1, 2], vec![3]]);
    }
}
