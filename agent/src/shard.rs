//! Shard work: copy (node -> backup), restore (backups -> restore target)
//! and verify (re-read and re-hash). Files of a shard run `parallelism` at a
//! time; every byte is streamed once and hashed on the way, so memory stays
//! bounded by parallelism x chunk size whatever the file sizes. A copy task
//! may ask for zstd, and a restore or verify task may name a source stored
//! compressed: [`crate::codec`] sits in the stream then, and the sha256
//! checked end to end is always that of the original bytes.
//!
//! Durability: targets are opened with batched durability, so a written
//! file is reported done only after a sync of the target that started once
//! it was written (see [`Batch`]); a backup's commit point, written by the
//! coordinator after every file is reported done, comes after them all.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// Attempts per file for errors that might not happen again (a local I/O
/// error, an S3 error that is not an outage).
const ATTEMPTS: u32 = 3;
/// Backoff between attempts of a file during an outage: doubling from the
/// first, up to the last, each with jitter so files retry apart.
const OUTAGE_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

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
    /// With `keep_verified`, a `dst` already holding the recorded size and
    /// sha256 is kept as it is (a copy between backup locations resuming).
    Restore {
        sources: HashMap<String, Arc<dyn Storage>>,
        target: Arc<dyn Storage>,
        keep_verified: bool,
    },
    /// Read `src` from `storage` and compare size and sha256.
    Verify { storage: Arc<dyn Storage> },
}

impl Op {
    /// Where this work writes, when it does.
    fn written(&self) -> Option<Arc<dyn Storage>> {
        match self {
            Op::Copy { target, .. } | Op::Restore { target, .. } => Some(target.clone()),
            Op::Verify { .. } => None,
        }
    }

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
/// `window`: how long a file's transient storage failures (see
/// [`StorageError::is_transient`]) are retried before it is given up.
pub async fn run(
    op: Op,
    files: Vec<FileTask>,
    parallelism: usize,
    epoch: u64,
    window: Duration,
    tx: Events,
) {
    let label = op.label();
    // Counts the shard as running; records duration and throughput when
    // dropped, however the shard ends.
    let mut timer = metrics::ShardTimer::start(label);
    let moved = Arc::new(AtomicU64::new(0));
    let parallelism = parallelism.max(1);
    // Once a file has outlasted the retry window, the outage is taken as
    // the shard's: files not started yet are reported with it at once
    // rather than each waiting out a window of its own.
    let outage = Arc::new(std::sync::OnceLock::<String>::new());
    let mut results = futures::stream::iter(files.into_iter().enumerate())
        .map(|(index, task)| {
            let op = op.clone();
            let moved = moved.clone();
            let outage = outage.clone();
            async move {
                if let Some(why) = outage.get() {
                    return problem(index as u32, ProblemKind::Unavailable, why.clone(), epoch);
                }
                let ev = one(&op, index as u32, task, epoch, window, &moved).await;
                if let Some(shard_event::Event::Problem(p)) = &ev.event {
                    if p.kind == ProblemKind::Unavailable as i32 {
                        let _ = outage.set(p.detail.clone());
                    }
                }
                ev
            }
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
    // Files written but not yet durable wait in `batch`; one sync of the
    // target makes a batch durable while the next fills, and only then are
    // its files reported done.
    let target = op.written();
    let mut batch = Batch::default();
    let mut syncing: Option<Syncing> = None;
    let mut finished = false;
    loop {
        if syncing.is_none() && batch.due(finished) {
            if let Some(target) = &target {
                syncing = Some(batch.sync(target.clone(), epoch));
            }
        }
        if finished && syncing.is_none() && batch.events.is_empty() {
            break;
        }
        let mut out = Vec::new();
        tokio::select! {
            next = results.next(), if !finished => match next {
                None => finished = true,
                Some(ev) => {
                    match &ev.event {
                        Some(shard_event::Event::Done(d)) if target.is_some() => {
                            batch.add(d.size, ev);
                        }
                        _ => out.push(ev),
                    }
                }
            },
            synced = async { syncing.as_mut().expect("guarded").await }, if syncing.is_some() => {
                syncing = None;
                out = synced;
            }
            _ = ticker.tick() => report(&tx).await,
            _ = tx.closed() => {
                drop(report(&tx));
                return;
            }
        }
        for ev in out {
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
    }
    report(&tx).await;
}

/// Files in a batch made durable by one sync, at most: a sync waits for
/// every dirty page of the filesystem, so it pays to let it cover many
/// files, and the coordinator hears of them in steps rather than all at
/// the end of a large shard.
const BATCH_FILES: usize = 2048;
const BATCH_BYTES: u64 = 1 << 30;

/// Done events of files written since the last sync started.
#[derive(Default)]
struct Batch {
    events: Vec<ShardEvent>,
    bytes: u64,
}

/// A running sync; yields the events to send once it returned: the
/// batch's files done, or each a problem if the sync failed.
type Syncing = Pin<Box<dyn Future<Output = Vec<ShardEvent>> + Send>>;

impl Batch {
    fn add(&mut self, size: u64, ev: ShardEvent) {
        self.bytes += size;
        self.events.push(ev);
    }

    fn due(&self, finished: bool) -> bool {
        !self.events.is_empty()
            && (finished || self.events.len() >= BATCH_FILES || self.bytes >= BATCH_BYTES)
    }

    /// Syncs `target`, covering every file of the batch: each was written
    /// (its `put` returned) before the sync starts.
    fn sync(&mut self, target: Arc<dyn Storage>, epoch: u64) -> Syncing {
        let events = std::mem::take(&mut self.events);
        self.bytes = 0;
        Box::pin(async move {
            match target.sync().await {
                Ok(()) => events,
                Err(e) => {
                    tracing::warn!("sync of {} failed: {e}", target.describe());
                    events
                        .into_iter()
                        .filter_map(|ev| match ev.event {
                            Some(shard_event::Event::Done(d)) => Some(problem(
                                d.index,
                                ProblemKind::Io,
                                format!("written but not made durable: {e}"),
                                epoch,
                            )),
                            _ => None,
                        })
                        .collect()
                }
            }
        })
    }
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
        kept: false,
    }))
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

/// Copies a small file stored as it is from one local filesystem to
/// another in a single trip to a blocking thread ([`Storage::put_file`]),
/// when `source` has it as a local file; `None` when the file is to be
/// streamed instead.
async fn whole_file(
    source: &dyn Storage,
    target: &dyn Storage,
    task: &FileTask,
    expect: Option<[u8; 32]>,
) -> Result<Option<mo_br_storage::Written>, StorageError> {
    if zstd_level(task).is_some() || stored_zstd(task).is_some() {
        return Ok(None);
    }
    let Some(src) = source.local_file(&task.src) else {
        return Ok(None);
    };
    target.put_file(&task.dst, &src, task.size, expect).await
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

/// Decides whether a failed attempt at a file is followed by another.
struct Retries {
    window: Duration,
    /// Start of the first attempt that failed with an outage: the window
    /// runs from there (the client's own retries of that attempt count).
    failing_since: Option<Instant>,
    attempts: u32,
    outage_attempts: u32,
}

impl Retries {
    fn new(window: Duration) -> Self {
        Retries {
            window,
            failing_since: None,
            attempts: 0,
            outage_attempts: 0,
        }
    }

    /// How long to wait before the next attempt, `None` to give up.
    fn after(&mut self, e: &StorageError, attempt_started: Instant) -> Option<Duration> {
        self.attempts += 1;
        if e.is_transient() {
            let since = *self.failing_since.get_or_insert(attempt_started);
            let left = self.window.checked_sub(since.elapsed())?;
            let (first, max) = OUTAGE_BACKOFF;
            let exp = first
                .saturating_mul(1 << self.outage_attempts.min(8))
                .min(max);
            self.outage_attempts += 1;
            // Full jitter over the upper half: spread, never zero.
            let wait = exp.mul_f64(rand::random_range(0.5..=1.0));
            return (!left.is_zero()).then(|| wait.min(left));
        }
        // A damaged zstd frame reads the same every time.
        let again = matches!(e, StorageError::Io { .. } | StorageError::S3 { .. })
            && !codec::is_corrupt(e)
            && self.attempts < ATTEMPTS;
        again.then(|| Duration::from_millis(200 * u64::from(self.attempts)))
    }

    /// The problem to report for the error the file was given up on.
    fn problem(&self, e: &StorageError) -> (ProblemKind, String) {
        let kind = match e {
            e if codec::is_corrupt(e) => ProblemKind::Corrupt,
            StorageError::NotFound(_) => ProblemKind::Missing,
            StorageError::ChecksumMismatch { .. } => ProblemKind::Corrupt,
            StorageError::BadName(_) => ProblemKind::UnsafePath,
            e if e.is_transient() => ProblemKind::Unavailable,
            _ => ProblemKind::Io,
        };
        let detail = match kind {
            ProblemKind::Unavailable => {
                format!(
                    "still failing after the {:?} retry window: {e}",
                    self.window
                )
            }
            _ => e.to_string(),
        };
        (kind, detail)
    }
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
    window: Duration,
    moved: &Arc<AtomicU64>,
) -> ShardEvent {
    if let Err(e) = mo_br_storage::check_name(&task.dst).and(mo_br_storage::check_name(&task.src)) {
        return problem(index, ProblemKind::UnsafePath, e.to_string(), epoch);
    }
    match op {
        Op::Verify { storage } => {
            let mut retries = Retries::new(window);
            loop {
                let started = Instant::now();
                let before = moved.load(Ordering::Relaxed);
                match verify(storage.as_ref(), index, &task, epoch, moved).await {
                    Ok(ev) => return ev,
                    Err(e) => {
                        let read = moved.load(Ordering::Relaxed).saturating_sub(before);
                        moved.fetch_sub(read, Ordering::Relaxed);
                        match retries.after(&e, started) {
                            Some(wait) if e.is_transient() => {
                                tracing::warn!(file = %task.src, "retrying in {wait:?} after: {e}");
                                metrics::file_retry(OpLabel::Verify);
                                tokio::time::sleep(wait).await;
                            }
                            _ => {
                                let (kind, detail) = match &e {
                                    StorageError::NotFound(_) => {
                                        (ProblemKind::Missing, "not found".to_string())
                                    }
                                    e if e.is_transient() => retries.problem(e),
                                    e => (ProblemKind::Io, e.to_string()),
                                };
                                return problem(index, kind, detail, epoch);
                            }
                        }
                    }
                }
            }
        }
        Op::Copy {
            server_copy: Some(copier),
            ..
        } => server_copy(copier, index, &task, epoch, window).await,
        Op::Copy { source, target, .. } => {
            transfer(
                source.as_ref(),
                target.as_ref(),
                index,
                &task,
                None,
                (epoch, window),
                moved,
                OpLabel::Copy,
            )
            .await
        }
        Op::Restore {
            sources,
            target,
            keep_verified,
        } => {
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
            if let (true, Some(want)) = (*keep_verified, expect) {
                if already_there(target.as_ref(), &task, want).await {
                    let mut ev = done(index, task.size, want, epoch);
                    if let Some(shard_event::Event::Done(d)) = &mut ev.event {
                        d.kept = true;
                    }
                    return ev;
                }
            }
            transfer(
                source.as_ref(),
                target.as_ref(),
                index,
                &task,
                expect,
                (epoch, window),
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
    window: Duration,
) -> ShardEvent {
    let mut retries = Retries::new(window);
    loop {
        let started = Instant::now();
        match copier.copy(&task.src, &task.dst, task.size).await {
            Ok(outcome) => {
                metrics::bytes(OpLabel::Reread, outcome.reread_bytes);
                metrics::server_copied(outcome.copied_bytes);
                return done(index, outcome.size, outcome.sha256, epoch);
            }
            Err(StorageError::NotFound(_)) => {
                return problem(
                    index,
                    ProblemKind::Missing,
                    format!("{}: not found in SHARED", task.src),
                    epoch,
                )
            }
            Err(e) => match retries.after(&e, started) {
                Some(wait) => {
                    tracing::warn!(file = %task.src, "retrying in {wait:?} after: {e}");
                    metrics::file_retry(OpLabel::Copy);
                    tokio::time::sleep(wait).await;
                }
                None => {
                    let (kind, detail) = retries.problem(&e);
                    let kind = match kind {
                        ProblemKind::Unavailable => kind,
                        _ => ProblemKind::Io,
                    };
                    return problem(index, kind, detail, epoch);
                }
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn transfer(
    source: &dyn Storage,
    target: &dyn Storage,
    index: u32,
    task: &FileTask,
    expect: Option<[u8; 32]>,
    (epoch, window): (u64, Duration),
    moved: &Arc<AtomicU64>,
    label: OpLabel,
) -> ShardEvent {
    let mut retries = Retries::new(window);
    loop {
        let started = Instant::now();
        let attempt = Arc::new(AtomicU64::new(0));
        let result = async {
            if let Some(w) = whole_file(source, target, task, expect).await? {
                moved.fetch_add(w.size, Ordering::Relaxed);
                attempt.fetch_add(w.size, Ordering::Relaxed);
                return Ok(Copied {
                    size: w.size,
                    sha256: w.sha256,
                    stored: None,
                });
            }
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
                match retries.after(&e, started) {
                    Some(wait) => {
                        tracing::warn!(file = %task.src, "retrying in {wait:?} after: {e}");
                        metrics::file_retry(label);
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        let (kind, detail) = retries.problem(&e);
                        return problem(index, kind, detail, epoch);
                    }
                }
            }
        }
    }
}

/// Whether `task.dst` already holds `task.size` bytes hashing to `want`.
/// Read back rather than trusted by its size: a resumed copy must not keep
/// a file a crash left damaged. Any error just means "copy it again".
async fn already_there(target: &dyn Storage, task: &FileTask, want: [u8; 32]) -> bool {
    match target.head(&task.dst).await {
        Ok(Some(size)) if size == task.size => {}
        _ => return false,
    }
    let Ok(mut body) = target.get(&task.dst).await else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { return false };
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    metrics::bytes(OpLabel::Reread, size);
    size == task.size && <[u8; 32]>::from(hasher.finalize()) == want
}

async fn verify(
    storage: &dyn Storage,
    index: u32,
    task: &FileTask,
    epoch: u64,
    moved: &Arc<AtomicU64>,
) -> Result<ShardEvent, StorageError> {
    let body = storage.get(&task.src).await?;
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
                return Ok(problem(index, ProblemKind::Corrupt, e.to_string(), epoch))
            }
            Err(e) => return Err(e),
        }
    }
    let sha: [u8; 32] = hasher.finalize().into();
    if let Some(stored) = stored_zstd(task) {
        let (stored_sha, stored_size) = finish_tally(&stored_tally);
        if stored_size != stored.size || hex::encode(stored_sha) != stored.sha256 {
            return Ok(problem(
                index,
                ProblemKind::Corrupt,
                format!(
                    "stored zstd bytes: {stored_size} bytes with sha256 {} instead of {} bytes with {}",
                    hex::encode(stored_sha),
                    stored.size,
                    stored.sha256
                ),
                epoch,
            ));
        }
    }
    if size < task.size {
        return Ok(problem(
            index,
            ProblemKind::Truncated,
            format!("{size} of {} bytes", task.size),
            epoch,
        ));
    }
    if size > task.size {
        return Ok(problem(
            index,
            ProblemKind::SizeMismatch,
            format!("{size} bytes, expected {}", task.size),
            epoch,
        ));
    }
    if !task.sha256.is_empty() && hex::encode(sha) != task.sha256.to_ascii_lowercase() {
        return Ok(problem(
            index,
            ProblemKind::Corrupt,
            format!("sha256 {} instead of {}", hex::encode(sha), task.sha256),
            epoch,
        ));
    }
    Ok(done(index, size, sha, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> StorageError {
        StorageError::Unreachable {
            endpoint: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        }
    }

    /// Objects in memory; `sync` waits for the test to open `gate`, or
    /// fails when `fail_sync` says so.
    #[derive(Debug)]
    struct Memory {
        objects: std::sync::Mutex<HashMap<String, bytes::Bytes>>,
        syncs_started: std::sync::atomic::AtomicUsize,
        sync_started: tokio::sync::Notify,
        gate: tokio::sync::Semaphore,
        fail_sync: bool,
    }

    impl Default for Memory {
        fn default() -> Self {
            Memory {
                objects: Default::default(),
                syncs_started: Default::default(),
                sync_started: Default::default(),
                gate: tokio::sync::Semaphore::new(0),
                fail_sync: false,
            }
        }
    }

    #[async_trait::async_trait]
    impl Storage for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn put(
            &self,
            name: &str,
            body: ByteStream,
            _expect: Option<[u8; 32]>,
        ) -> mo_br_storage::Result<mo_br_storage::Written> {
            let data = mo_br_storage::collect(body).await?;
            let w = mo_br_storage::Written {
                size: data.len() as u64,
                sha256: Sha256::digest(&data).into(),
            };
            self.objects.lock().unwrap().insert(name.into(), data);
            Ok(w)
        }
        async fn put_bytes(
            &self,
            name: &str,
            data: bytes::Bytes,
        ) -> mo_br_storage::Result<mo_br_storage::Written> {
            self.put(
                name,
                Box::pin(futures::stream::once(async { Ok(data) })),
                None,
            )
            .await
        }
        async fn get(&self, name: &str) -> mo_br_storage::Result<ByteStream> {
            let data = self.get_bytes(name).await?;
            Ok(Box::pin(futures::stream::once(async { Ok(data) })))
        }
        async fn get_bytes(&self, name: &str) -> mo_br_storage::Result<bytes::Bytes> {
            let objects = self.objects.lock().unwrap();
            objects
                .get(name)
                .cloned()
                .ok_or_else(|| StorageError::NotFound(name.into()))
        }
        async fn head(&self, name: &str) -> mo_br_storage::Result<Option<u64>> {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(name)
                .map(|d| d.len() as u64))
        }
        async fn delete(&self, name: &str) -> mo_br_storage::Result<()> {
            self.objects.lock().unwrap().remove(name);
            Ok(())
        }
        fn list(
            &self,
            _prefix: &str,
        ) -> std::pin::Pin<
            Box<
                dyn futures::Stream<Item = mo_br_storage::Result<mo_br_storage::Entry>> + Send + '_,
            >,
        > {
            Box::pin(futures::stream::empty())
        }
        async fn probe(&self) -> mo_br_storage::Result<()> {
            Ok(())
        }
        async fn sync(&self) -> mo_br_storage::Result<()> {
            self.syncs_started.fetch_add(1, Ordering::SeqCst);
            self.sync_started.notify_one();
            let _pass = self.gate.acquire().await.expect("gate open");
            if self.fail_sync {
                return Err(StorageError::Io {
                    path: "/backups".into(),
                    source: std::io::Error::other("EIO"),
                });
            }
            Ok(())
        }
    }

    /// A restore shard of `n` files from a memory source into `target`;
    /// returns the events as they come.
    fn restore_shard(
        n: usize,
        target: Arc<Memory>,
    ) -> mpsc::Receiver<Result<ShardEvent, tonic::Status>> {
        let source = Memory::default();
        let mut files = Vec::new();
        for i in 0..n {
            let data = bytes::Bytes::from(vec![i as u8; 100 + i]);
            files.push(FileTask {
                src: format!("s/{i}"),
                dst: format!("d/{i}"),
                size: data.len() as u64,
                sha256: hex::encode(Sha256::digest(&data)),
                source_id: "b".into(),
                ..Default::default()
            });
            source
                .objects
                .lock()
                .unwrap()
                .insert(format!("s/{i}"), data);
        }
        let op = Op::Restore {
            sources: HashMap::from([("b".to_string(), Arc::new(source) as Arc<dyn Storage>)]),
            target,
            keep_verified: false,
        };
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(op, files, 4, 1, Duration::from_secs(1), tx));
        rx
    }

    fn dones(events: &[ShardEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e.event, Some(shard_event::Event::Done(_))))
            .count()
    }

    /// No file is reported done while the sync that makes it durable has
    /// not returned; once it returns, every one is.
    #[tokio::test]
    async fn files_are_reported_done_only_after_the_sync() {
        let target = Arc::new(Memory::default());
        let mut rx = restore_shard(20, target.clone());
        target.sync_started.notified().await;
        // Every file is written (the shard syncs once all are), none said done.
        let mut seen = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            seen.push(ev.expect("event"));
        }
        assert_eq!(target.objects.lock().unwrap().len(), 20);
        assert_eq!(dones(&seen), 0, "a file was reported done before its sync");
        target.gate.add_permits(1);
        while let Some(ev) = rx.recv().await {
            seen.push(ev.expect("event"));
        }
        assert_eq!(dones(&seen), 20);
        assert_eq!(target.syncs_started.load(Ordering::SeqCst), 1);
    }

    /// A sync that fails turns each of its files into a problem.
    #[tokio::test]
    async fn a_failed_sync_reports_its_files_as_problems() {
        let target = Arc::new(Memory {
            fail_sync: true,
            ..Default::default()
        });
        target.gate.add_permits(1);
        let mut rx = restore_shard(5, target.clone());
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            seen.push(ev.expect("event"));
        }
        assert_eq!(dones(&seen), 0);
        let problems: Vec<&FileProblem> = seen
            .iter()
            .filter_map(|e| match &e.event {
                Some(shard_event::Event::Problem(p)) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(problems.len(), 5, "{seen:?}");
        assert!(problems
            .iter()
            .all(|p| p.kind == ProblemKind::Io as i32 && p.detail.contains("not made durable")));
    }

    #[test]
    fn outages_are_retried_for_the_window_from_the_first_failure() {
        let window = Duration::from_millis(300);
        let mut r = Retries::new(window);
        let first = Instant::now();
        for _ in 0..20 {
            let wait = r.after(&unreachable(), first).expect("within the window");
            // Jittered, never zero, never past the window.
            assert!(wait > Duration::ZERO && wait <= window, "{wait:?}");
        }
        // An attempt that started before the window began to count (its
        // request was already retried for a while) leaves none of it.
        let mut late = Retries::new(window);
        let long_ago = Instant::now() - window;
        assert_eq!(late.after(&unreachable(), long_ago), None);
        let (kind, detail) = late.problem(&unreachable());
        assert_eq!(kind, ProblemKind::Unavailable);
        assert!(
            detail.contains("retry window") && detail.contains("127.0.0.1"),
            "{detail}"
        );
    }

    #[test]
    fn other_errors_get_a_few_attempts_or_none() {
        let mut r = Retries::new(Duration::from_secs(60));
        let now = Instant::now();
        let io = || StorageError::Io {
            path: "p".into(),
            source: std::io::Error::other("disk"),
        };
        assert!(r.after(&io(), now).is_some());
        assert!(r.after(&io(), now).is_some());
        assert_eq!(r.after(&io(), now), None);
        let mut r = Retries::new(Duration::from_secs(60));
        assert_eq!(r.after(&StorageError::NotFound("a".into()), now), None);
        let mismatch = StorageError::ChecksumMismatch {
            name: "a".into(),
            expected: "00".into(),
            actual: "11".into(),
        };
        assert_eq!(r.after(&mismatch, now), None);
        assert_eq!(r.problem(&mismatch).0, ProblemKind::Corrupt);
    }

    /// A resumed copy: a file already there with the recorded bytes is kept
    /// as it is; one there with other bytes of the same size is written
    /// again from the source.
    #[tokio::test]
    async fn keep_verified_keeps_only_files_that_read_back_right() {
        let root = std::env::temp_dir().join(format!("mo-br-keep-{}", uuid_like()));
        let (src, dst) = (root.join("src"), root.join("dst"));
        for dir in [&src, &dst] {
            std::fs::create_dir_all(dir.join("tae")).unwrap();
        }
        std::fs::write(src.join("tae/a"), b"alpha bytes").unwrap();
        std::fs::write(src.join("tae/b"), b"bravo bytes").unwrap();
        std::fs::write(dst.join("tae/a"), b"alpha bytes").unwrap();
        std::fs::write(dst.join("tae/b"), b"bravo BYTES").unwrap();
        let kept_inode =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dst.join("tae/a")).unwrap());
        let open = |p: &std::path::Path| {
            let location = mo_br_storage::Location::Filesystem {
                path: p.to_path_buf(),
            };
            async move {
                Arc::<dyn Storage>::from(
                    mo_br_storage::open(&location, &Default::default())
                        .await
                        .unwrap(),
                )
            }
        };
        let task = |name: &str, bytes: &[u8]| FileTask {
            src: format!("tae/{name}"),
            dst: format!("tae/{name}"),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
            source_id: "s".into(),
            ..Default::default()
        };
        let op = Op::Restore {
            sources: HashMap::from([("s".to_string(), open(&src).await)]),
            target: open(&dst).await,
            keep_verified: true,
        };
        let (tx, mut rx) = mpsc::channel(16);
        run(
            op,
            vec![task("a", b"alpha bytes"), task("b", b"bravo bytes")],
            1,
            1,
            Duration::from_secs(1),
            tx,
        )
        .await;
        let mut kept = HashMap::new();
        while let Some(Ok(ev)) = rx.recv().await {
            match ev.event {
                Some(shard_event::Event::Done(d)) => {
                    kept.insert(d.index, d.kept);
                }
                Some(shard_event::Event::Problem(p)) => panic!("{p:?}"),
                _ => {}
            }
        }
        assert_eq!(kept, HashMap::from([(0, true), (1, false)]));
        assert_eq!(std::fs::read(dst.join("tae/b")).unwrap(), b"bravo bytes");
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dst.join("tae/a")).unwrap()),
            kept_inode,
            "a kept file was written again"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn uuid_like() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }
}
