//! Shard work: copy (node -> backup), restore (backups -> restore target)
//! and verify (re-read and re-hash). Files of a shard run `parallelism` at a
//! time; every byte is streamed once and hashed on the way, so memory stays
//! bounded by parallelism x chunk size whatever the file sizes. A copy task
//! may ask for zstd, and a restore or verify task may name a source stored
//! compressed: [`crate::codec`] sits in the stream then, and the sha256
//! checked end to end is always that of the original bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use mo_br_proto::agent::{shard_event, FileDone, FileProblem, FileTask, ShardEvent};
use mo_br_proto::common::{Codec, ProblemKind, Stored};
use mo_br_storage::{ByteStream, Error as StorageError, ServerSideCopier, Storage};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::codec::{self, Probed};
use crate::metrics::{self, OpLabel};

/// How often accumulated byte counts are reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Attempts per file for errors that may be transient (I/O, S3 5xx after the
/// client's own retries, a dropped connection).
const ATTEMPTS: u32 = 3;

pub type Events = mpsc::Sender<Result<ShardEvent, tonic::Status>>;

/// What a shard does with each of its files.
#[derive(Clone, Debug)]
pub enum Op {
    /// Read `src` from `source`, write `dst` to `target`; or, when both are
    /// on one S3 endpoint under one identity, have the server copy it.
    Copy {
        source: Arc<dyn Storage>,
        target: Arc<dyn Storage>,
        server_copy: Option<Arc<ServerSideCopier>>,
    },
    /// Read `src` from `sources[source_id]`, write `dst` to `target`,
    /// refusing bytes whose sha256 differs from the recorded one.
    Restore {
        sources: HashMap<String, Arc<dyn Storage>>,
        target: Arc<dyn Storage>,
    },
    /// Read `src` from `storage` and compare size and sha256.
    Verify { storage: Arc<dyn Storage> },
}

impl Op {
    /// The `op` label of this work in the metrics.
    pub fn label(&self) -> OpLabel {
        match self {
            Op::Copy { .. } => OpLabel::Copy,
            Op::Restore { .. } => OpLabel::Restore,
            Op::Verify { .. } => OpLabel::Verify,
        }
    }
}

/// Runs a shard, sending progress and one `done` or `problem` per file.
/// Stops early when the receiver goes away (the coordinator cancelled).
pub async fn run(op: Op, files: Vec<FileTask>, parallelism: usize, epoch: u64, tx: Events) {
    let label = op.label();
    // Counts the shard as running; records duration and throughput when
    // dropped, however the shard ends.
    let mut timer = metrics::ShardTimer::start(label);
    let moved = Arc::new(AtomicU64::new(0));
    let parallelism = parallelism.max(1);
    let mut results = futures::stream::iter(files.into_iter().enumerate())
        .map(|(index, task)| {
            let op = op.clone();
            let moved = moved.clone();
            async move { one(&op, index as u32, task, epoch, &moved).await }
        })
        .buffer_unordered(parallelism);

    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let mut reported = 0u64;
    let mut report = |tx: &Events| {
        let now = moved.load(Ordering::Relaxed);
        let delta = now.saturating_sub(reported);
        reported = now;
        // Counted here, where progress is reported, so the byte counter and
        // the coordinator's progress agree (a failed attempt's bytes are
        // taken back from `moved` before they are reported, when possible).
        metrics::bytes(label, delta);
        timer.add_bytes(delta);
        let tx = tx.clone();
        async move {
            if delta > 0 {
                let _ = tx.send(Ok(event(shard_event::Event::Bytes(delta)))).await;
            }
        }
    };
    loop {
        tokio::select! {
            next = results.next() => {
                let Some(ev) = next else { break };
                match &ev.event {
                    Some(shard_event::Event::Done(_)) => metrics::file_ok(label),
                    Some(shard_event::Event::Problem(p)) => metrics::file_problem(label, p.kind),
                    _ => {}
                }
                report(&tx).await;
                if tx.send(Ok(ev)).await.is_err() {
                    // Count the bytes moved so far without sending them.
                    drop(report(&tx));
                    return;
                }
            }
            _ = ticker.tick() => report(&tx).await,
            _ = tx.closed() => {
                drop(report(&tx));
                return;
            }
        }
    }
    report(&tx).await;
}

fn event(e: shard_event::Event) -> ShardEvent {
    ShardEvent { event: Some(e) }
}

fn problem(index: u32, kind: ProblemKind, detail: String, epoch: u64) -> ShardEvent {
    event(shard_event::Event::Problem(FileProblem {
        index,
        kind: kind as i32,
        detail,
        epoch,
    }))
}

fn done(index: u32, size: u64, sha256: [u8; 32], epoch: u64) -> ShardEvent {
    done_stored(index, size, sha256, None, epoch)
}

fn done_stored(
    index: u32,
    size: u64,
    sha256: [u8; 32],
    stored: Option<Stored>,
    epoch: u64,
) -> ShardEvent {
    event(shard_event::Event::Done(FileDone {
        index,
        size,
        sha256: hex::encode(sha256),
        epoch,
        stored,
    }))
}

fn retryable(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { .. } | StorageError::S3 { .. }) && !codec::is_corrupt(e)
}

/// The zstd level a copy task asks for, if it asks for compression.
fn zstd_level(task: &FileTask) -> Option<i32> {
    task.compression
        .as_ref()
        .filter(|c| c.codec == Codec::Zstd as i32)
        .map(|c| c.level)
}

/// How a restore or verify task's source is stored, if not raw.
fn stored_zstd(task: &FileTask) -> Option<&Stored> {
    task.stored
        .as_ref()
        .filter(|s| s.codec == Codec::Zstd as i32)
}

/// The original bytes of `task.src`: decompressed as they stream when the
/// task says it is stored compressed.
async fn read_original(source: &dyn Storage, task: &FileTask) -> Result<ByteStream, StorageError> {
    let body = source.get(&task.src).await?;
    Ok(match stored_zstd(task) {
        Some(_) => codec::decompress(body, &task.src),
        None => body,
    })
}

/// What a copy stored: the original bytes' size and sha256, and how they
/// are stored when not raw.
struct Copied {
    size: u64,
    sha256: [u8; 32],
    stored: Option<Stored>,
}

/// A running sha256 and byte count of what streams through [`hashed`].
type Tally = Arc<std::sync::Mutex<(Sha256, u64)>>;

fn hashed(body: ByteStream, tally: Tally) -> ByteStream {
    Box::pin(body.inspect_ok(move |chunk| {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        t.0.update(chunk);
        t.1 += chunk.len() as u64;
    }))
}

fn finish_tally(tally: &Tally) -> ([u8; 32], u64) {
    let t = tally.lock().unwrap_or_else(|p| p.into_inner());
    (t.0.clone().finalize().into(), t.1)
}

/// Writes `body` (original bytes) to `task.dst` as one zstd frame, or raw
/// when the probe says it does not shrink, or when the whole frame turns
/// out no smaller than the file (then the file is read again and rewritten
/// raw).
async fn put_compressed(
    source: &dyn Storage,
    target: &dyn Storage,
    task: &FileTask,
    body: ByteStream,
    level: i32,
) -> Result<Copied, StorageError> {
    let tally: Tally = Arc::default();
    let frame = match codec::probe(hashed(body, tally.clone()), level, &task.src).await? {
        Probed::Raw(raw) => {
            let w = target.put(&task.dst, raw, None).await?;
            metrics::stored_raw();
            return Ok(Copied {
                size: w.size,
                sha256: w.sha256,
                stored: None,
            });
        }
        Probed::Zstd(frame) => frame,
    };
    let w = target.put(&task.dst, frame, None).await?;
    let (sha256, size) = finish_tally(&tally);
    if w.size >= size {
        let w = target
            .put(&task.dst, source.get(&task.src).await?, None)
            .await?;
        metrics::stored_raw();
        return Ok(Copied {
            size: w.size,
            sha256: w.sha256,
            stored: None,
        });
    }
    metrics::stored_zstd(size, w.size);
    Ok(Copied {
        size,
        sha256,
        stored: Some(Stored {
            codec: Codec::Zstd as i32,
            size: w.size,
            sha256: hex::encode(w.sha256),
        }),
    })
}

fn parse_sha(hex_sha: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_sha, &mut out).ok()?;
    Some(out)
}

/// Wraps a body so the bytes it yields count towards progress, remembering
/// how many this attempt moved so a failed attempt can take them back.
fn counted(body: ByteStream, moved: Arc<AtomicU64>, attempt: Arc<AtomicU64>) -> ByteStream {
    Box::pin(body.inspect_ok(move |chunk| {
        moved.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        attempt.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }))
}

async fn one(
    op: &Op,
    index: u32,
    task: FileTask,
    epoch: u64,
    moved: &Arc<AtomicU64>,
) -> ShardEvent {
    if let Err(e) = mo_br_storage::check_name(&task.dst).and(mo_br_storage::check_name(&task.src)) {
        return problem(index, ProblemKind::UnsafePath, e.to_string(), epoch);
    }
    match op {
        Op::Verify { storage } => verify(storage.as_ref(), index, &task, epoch, moved).await,
        Op::Copy {
            server_copy: Some(copier),
            ..
        } => server_copy(copier, index, &task, epoch).await,
        Op::Copy { source, target, .. } => {
            transfer(
                source.as_ref(),
                target.as_ref(),
                index,
                &task,
                None,
                epoch,
                moved,
                OpLabel::Copy,
            )
            .await
        }
        Op::Restore { sources, target } => {
            let Some(source) = sources.get(&task.source_id) else {
                return problem(
                    index,
                    ProblemKind::Missing,
                    format!(
                        "{}: backup {} holding it is not available",
                        task.src, task.source_id
                    ),
                    epoch,
                );
            };
            let expect = if task.sha256.is_empty() {
                None
            } else {
                match parse_sha(&task.sha256) {
                    Some(s) => Some(s),
                    None => {
                        return problem(
                            index,
                            ProblemKind::Corrupt,
                            format!(
                                "{}: recorded sha256 {:?} is not valid hex",
                                task.src, task.sha256
                            ),
                            epoch,
                        )
                    }
                }
            };
            transfer(
                source.as_ref(),
                target.as_ref(),
                index,
                &task,
                expect,
                epoch,
                moved,
                OpLabel::Restore,
            )
            .await
        }
    }
}

/// Copies a file on the S3 server: no byte of it passes through this agent
/// on the way; its sha256 is the server's checksum of the copy or, if the
/// server gives none, that of the copy read back (counted as `reread`).
async fn server_copy(
    copier: &ServerSideCopier,
    index: u32,
    task: &FileTask,
    epoch: u64,
) -> ShardEvent {
    let mut last = None;
    for _ in 1..=ATTEMPTS {
        match copier.copy(&task.src, &task.dst, task.size).await {
            Ok(outcome) => {
                metrics::bytes(OpLabel::Reread, outcome.reread_bytes);
                metrics::server_copied(outcome.copied_bytes);
                return done(index, outcome.size, outcome.sha256, epoch);
            }
            Err(e) if retryable(&e) => last = Some(e),
            Err(StorageError::NotFound(_)) => {
                return problem(
                    index,
                    ProblemKind::Missing,
                    format!("{}: not found in SHARED", task.src),
                    epoch,
                )
            }
            Err(e) => return problem(index, ProblemKind::Io, e.to_string(), epoch),
        }
    }
    let e = last.map(|e| e.to_string()).unwrap_or_default();
    problem(index, ProblemKind::Io, e, epoch)
}

#[allow(clippy::too_many_arguments)]
async fn transfer(
    source: &dyn Storage,
    target: &dyn Storage,
    index: u32,
    task: &FileTask,
    expect: Option<[u8; 32]>,
    epoch: u64,
    moved: &Arc<AtomicU64>,
    label: OpLabel,
) -> ShardEvent {
    let mut last = None;
    for attempt_no in 1..=ATTEMPTS {
        let attempt = Arc::new(AtomicU64::new(0));
        let result = async {
            let body = counted(
                read_original(source, task).await?,
                moved.clone(),
                attempt.clone(),
            );
            match zstd_level(task) {
                Some(level) => put_compressed(source, target, task, body, level).await,
                None => target.put(&task.dst, body, expect).await.map(|w| Copied {
                    size: w.size,
                    sha256: w.sha256,
                    stored: None,
                }),
            }
        }
        .await;
        match result {
            Ok(w) if expect.is_none() && w.size != task.size => {
                // Without a recorded checksum the size is the only witness;
                // take back what does not match rather than leave it looking
                // complete.
                let _ = target.delete(&task.dst).await;
                let kind = if w.size < task.size {
                    ProblemKind::Truncated
                } else {
                    ProblemKind::SizeMismatch
                };
                return problem(
                    index,
                    kind,
                    format!(
                        "{}: expected {} bytes, read {}",
                        task.src, task.size, w.size
                    ),
                    epoch,
                );
            }
            Ok(w) => return done_stored(index, w.size, w.sha256, w.stored, epoch),
            Err(e) => {
                moved.fetch_sub(attempt.load(Ordering::Relaxed), Ordering::Relaxed);
                if retryable(&e) && attempt_no < ATTEMPTS {
                    tracing::warn!(file = %task.src, attempt = attempt_no, "retrying after: {e}");
                    metrics::file_retry(label);
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt_no))).await;
                    last = Some(e);
                    continue;
                }
                last = Some(e);
                break;
            }
        }
    }
    let e = last.expect("at least one attempt ran");
    let kind = match &e {
        e if codec::is_corrupt(e) => ProblemKind::Corrupt,
        StorageError::NotFound(_) => ProblemKind::Missing,
        StorageError::ChecksumMismatch { .. } => ProblemKind::Corrupt,
        StorageError::BadName(_) => ProblemKind::UnsafePath,
        _ => ProblemKind::Io,
    };
    problem(index, kind, e.to_string(), epoch)
}

async fn verify(
    storage: &dyn Storage,
    index: u32,
    task: &FileTask,
    epoch: u64,
    moved: &Arc<AtomicU64>,
) -> ShardEvent {
    let body = match storage.get(&task.src).await {
        Ok(b) => b,
        Err(StorageError::NotFound(_)) => {
            return problem(index, ProblemKind::Missing, "not found".to_string(), epoch)
        }
        Err(e) => return problem(index, ProblemKind::Io, e.to_string(), epoch),
    };
    // A compressed file: the stored bytes are hashed as they come, then
    // decoded, and the original bytes checked like any file's.
    let stored_tally: Tally = Arc::default();
    let mut body = match stored_zstd(task) {
        Some(_) => codec::decompress(hashed(body, stored_tally.clone()), &task.src),
        None => body,
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                hasher.update(&c);
                size += c.len() as u64;
                moved.fetch_add(c.len() as u64, Ordering::Relaxed);
            }
            Err(e) if codec::is_corrupt(&e) => {
                return problem(index, ProblemKind::Corrupt, e.to_string(), epoch)
            }
            Err(e) => return problem(index, ProblemKind::Io, e.to_string(), epoch),
        }
    }
    let sha: [u8; 32] = hasher.finalize().into();
    if let Some(stored) = stored_zstd(task) {
        let (stored_sha, stored_size) = finish_tally(&stored_tally);
        if stored_size != stored.size || hex::encode(stored_sha) != stored.sha256 {
            return problem(
                index,
                ProblemKind::Corrupt,
                format!(
                    "stored zstd bytes: {stored_size} bytes with sha256 {} instead of {} bytes with {}",
                    hex::encode(stored_sha),
                    stored.size,
                    stored.sha256
                ),
                epoch,
            );
        }
    }
    if size < task.size {
        return problem(
            index,
            ProblemKind::Truncated,
            format!("{size} of {} bytes", task.size),
            epoch,
        );
    }
    if size > task.size {
        return problem(
            index,
            ProblemKind::SizeMismatch,
            format!("{size} bytes, expected {}", task.size),
            epoch,
        );
    }
    if !task.sha256.is_empty() && hex::encode(sha) != task.sha256.to_ascii_lowercase() {
        return problem(
            index,
            ProblemKind::Corrupt,
            format!("sha256 {} instead of {}", hex::encode(sha), task.sha256),
            epoch,
        );
    }
    done(index, size, sha, epoch)
}
