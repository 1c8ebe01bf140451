//! Storage targets for backups, and the source a backup reads from.
//!
//! # Layout
//! - [`Location`]: a description of a place (filesystem directory or S3
//!   bucket + prefix), credentials kept apart in [`Credentials`] so a
//!   location can be stored in the catalog and printed without secrets.
//! - [`Storage`]: the one trait every backend implements: streaming reads and
//!   writes of named objects, hashed (sha256) while they stream.
//! - [`open`]: the one factory from a location to a boxed backend.
//! - `fs`: local directory backend (unnamed temp file, linked into place;
//!   fsynced per write, or in batches with [`Durability::Batched`]).
//! - `s3`: S3-compatible backend through object_store (multipart for large
//!   objects, bounded retries, fast failure on a dead endpoint or bad keys).
//! - `s3copy`: [`ServerSideCopier`], copies between two S3 locations on one
//!   endpoint without the bytes passing through this process, recording
//!   the sha256 of what the target holds.
//! - `limit`: a bound on concurrent requests per S3 endpoint, shared by every
//!   S3 client of the process, that cannot deadlock a reader that writes;
//!   every request passes there, through
//! - `pace`: request-rate limits (per process, per job) and the adaptive
//!   per-endpoint rate that backs off on S3's SlowDown, and
//! - `metrics`: `mo_br_s3_*` request counters and durations.
//!
//! # Outages
//! Once a job runs, a failed S3 request that may succeed later (endpoint
//! unreachable, connection reset, 5xx, SlowDown) is retried with backoff
//! and jitter for the retry window ([`OpenOptions::retry_window`], default
//! [`DEFAULT_RETRY_WINDOW`]); what is still failing then comes back as an
//! error for which [`Error::is_transient`] holds, for callers that retry
//! whole objects. [`Storage::probe`] alone fails fast.
//!
//! Object names are always relative, '/'-separated, with no empty, `.` or
//! `..` component: [`check_name`] enforces it so no name can escape a root.

mod error;
mod fs;
mod limit;
mod location;
pub mod metrics;
mod pace;
mod read_buffers;
mod s3;
mod s3copy;
mod trace;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

pub use error::{Error, Result};
pub use limit::{
    endpoint_allowed_rate, endpoint_usage, set_default_requests_per_endpoint,
    set_endpoint_request_limit, EndpointUsage, DEFAULT_REQUESTS_PER_ENDPOINT,
    REQUESTS_PER_ENDPOINT_ENV,
};
pub use location::{Credentials, Location, S3Location};
pub use pace::{set_process_requests_per_sec, Pacer};
pub use s3copy::{
    can_copy_server_side, same_endpoint, server_side_copy, ChecksumSource, CopyOptions,
    CopyOutcome, ServerSideCopier, Verify, MAX_SINGLE_COPY, MIN_PART_SIZE,
};
pub use trace::TRACE_ENV as DURABILITY_TRACE_ENV;

/// A stream of chunks of one object. Chunks are bounded in size (a few MiB at
/// most) so memory stays bounded whatever the object size.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name relative to the storage root, '/'-separated.
    pub name: String,
    pub size: u64,
}

/// What a completed write stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    /// Raw sha256 of every byte written.
    pub sha256: [u8; 32],
}

#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// A human description without secrets, e.g. `filesystem /backups/b1` or
    /// `s3 http://127.0.0.1:9000 bucket/prefix`.
    fn describe(&self) -> String;

    /// Streams `body` into object `name`, hashing it on the way. The object
    /// becomes visible only when the whole body is durably stored. If
    /// `expect_sha256` is given and the bytes differ, nothing is committed
    /// (temp file removed / multipart upload aborted) and
    /// [`Error::ChecksumMismatch`] is returned.
    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        expect_sha256: Option<[u8; 32]>,
    ) -> Result<Written>;

    /// The file on this host that object `name` is, when another storage
    /// may read it directly ([`Storage::put_file`]); `None` where objects
    /// are not local files, or where reads must pass through
    /// [`Storage::get`] (a throttled source).
    fn local_file(&self, _name: &str) -> Option<PathBuf> {
        None
    }

    /// Copies the local file `src`, listed at `size` bytes, into object
    /// `name` as [`Storage::put`] would (hashed, checked against
    /// `expect_sha256`, as durable as this storage's writes are), in one
    /// trip to a blocking thread where this storage can: a filesystem, for
    /// a file smaller than its read chunk. Each trip is a thread wake-up;
    /// a reading trip and a writing one per file were a fifth of the CPU of
    /// a backup of 20,000 small files between two filesystems.
    /// `Ok(None)`: nothing was done, and the file is to be streamed through
    /// `get` and `put` (another backend, a larger file, or anything unusual
    /// about the source, which that stream then reports as it does).
    async fn put_file(
        &self,
        _name: &str,
        _src: &Path,
        _size: u64,
        _expect_sha256: Option<[u8; 32]>,
    ) -> Result<Option<Written>> {
        Ok(None)
    }

    /// Small objects (manifests, sidecars): one buffer, durably stored.
    async fn put_bytes(&self, name: &str, data: Bytes) -> Result<Written>;

    /// Streams the object. [`Error::NotFound`] if it does not exist.
    async fn get(&self, name: &str) -> Result<ByteStream>;

    /// Reads a small object whole. [`Error::NotFound`] if it does not exist.
    async fn get_bytes(&self, name: &str) -> Result<Bytes>;

    /// Size of the object, or `None` if it does not exist.
    async fn head(&self, name: &str) -> Result<Option<u64>>;

    /// Removes the object; removing a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Every object whose name starts with `prefix` ("" for all), in no
    /// particular order. Temporary files of unfinished writes are not listed.
    fn list(&self, prefix: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>>;

    /// The objects directly in the directory `dir` ("" for the root, else
    /// a name ending in '/'), not those further down, in no particular order. S3 lists them with a
    /// delimiter: servers that keep objects as files (MinIO, s3s-fs) then
    /// read that one directory instead of walking everything the prefix
    /// covers.
    fn list_dir(&self, dir: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>> {
        use futures::TryStreamExt;
        let depth = dir.len();
        Box::pin(self.list(dir).try_filter(move |e| {
            let directly = e.name.get(depth..).is_some_and(|rest| !rest.contains('/'));
            std::future::ready(directly)
        }))
    }

    /// The name of one thing in the directory `dir` ("" for the root, else
    /// a name ending in '/'): an object, or on S3 a common prefix holding
    /// some; `None` when it holds nothing. S3 asks for one key of one
    /// delimited level, a single request however much lies below.
    async fn first_under(&self, dir: &str) -> Result<Option<String>> {
        use futures::StreamExt;
        match self.list(dir).next().await {
            Some(entry) => Ok(Some(entry?.name)),
            None => Ok(None),
        }
    }

    /// Removes what writes that never finished left under `prefix` (a
    /// killed agent's temp files); returns how many. Only for a place one
    /// job owns, once no write of its own is running. S3 keeps an
    /// interrupted multipart upload out of sight and object_store cannot
    /// list those: a bucket lifecycle rule (AbortIncompleteMultipartUpload)
    /// clears them, so this does nothing there.
    async fn remove_incomplete(&self, _prefix: &str) -> Result<usize> {
        Ok(0)
    }

    /// Fails fast (a few seconds) with a clear error if the place cannot be
    /// reached or the credentials are refused. Creates nothing.
    async fn probe(&self) -> Result<()>;

    /// Makes every write that returned before this call durable. Only a
    /// storage opened with [`Durability::Batched`] has anything to do here
    /// (a filesystem: one `syncfs`); elsewhere a returned write already is
    /// durable (S3: a PUT that succeeded).
    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// When a write becomes durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `put` returns once the object is durable: on a filesystem, the
    /// file's fsync and its directory's, two per file. For what marks a
    /// backup complete (manifest, `backup_meta`) and anything written alone.
    #[default]
    EachWrite,
    /// `put` returns once the object is written and named; it is durable
    /// only after a later [`Storage::sync`]. Whoever writes this way reports
    /// nothing done before that sync returned: for the bulk of a shard's
    /// files, where one sync of the filesystem replaces thousands of fsyncs.
    Batched,
}

/// How long a failing S3 request is retried once a job runs, unless the
/// job or the process says otherwise: long enough for a server to restart.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(120);

/// Milliseconds; u64::MAX: not set by the program.
static RETRY_WINDOW_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The retry window of storages opened without one (an agent's
/// `--retry_window`).
pub fn set_default_retry_window(window: Duration) {
    RETRY_WINDOW_MS.store(window.as_millis() as u64, Ordering::Relaxed);
}

pub fn default_retry_window() -> Duration {
    match RETRY_WINDOW_MS.load(Ordering::Relaxed) {
        u64::MAX => DEFAULT_RETRY_WINDOW,
        ms => Duration::from_millis(ms),
    }
}

/// How a storage is opened for one job.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// How long a failing request is retried; `None`: the process default
    /// ([`default_retry_window`]).
    pub retry_window: Option<Duration>,
    /// Paces this storage's S3 requests (a job's requests-per-second
    /// limit, shared by every storage the job opens), on top of the
    /// process's limit.
    pub pacer: Option<std::sync::Arc<Pacer>>,
    /// When writes become durable; S3 writes always are when they return.
    pub durability: Durability,
}

/// Opens the backend for `location`.
pub async fn open(location: &Location, creds: &Credentials) -> Result<Box<dyn Storage>> {
    open_with(location, creds, &OpenOptions::default()).await
}

/// Opens the backend for `location` as `opts` says.
pub async fn open_with(
    location: &Location,
    creds: &Credentials,
    opts: &OpenOptions,
) -> Result<Box<dyn Storage>> {
    match location {
        Location::Filesystem { path } => Ok(Box::new(fs::FsStorage::with_durability(
            path.clone(),
            opts.durability,
        ))),
        Location::S3(s3) => Ok(Box::new(s3::S3Storage::with_options(s3, creds, opts)?)),
    }
}

/// Rejects names that are empty, absolute, or have an empty, `.` or `..`
/// component: such a name could escape the storage root.
pub fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::BadName(name.to_string()));
    }
    Ok(())
}

/// Reads a whole stream into memory; for small objects only.
pub async fn collect(mut stream: ByteStream) -> Result<Bytes> {
    use futures::StreamExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf.freeze())
}
