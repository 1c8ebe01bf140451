//! Storage targets for backups, and the source a backup reads from.
//!
//! # Layout
//! - [`Location`]: a description of a place (filesystem directory or S3
//!   bucket + prefix), credentials kept apart in [`Credentials`] so a
//!   location can be stored in the catalog and printed without secrets.
//! - [`Storage`]: the one trait every backend implements: streaming reads and
//!   writes of named objects, hashed (sha256) while they stream.
//! - [`open`]: the one factory from a location to a boxed backend.
//! - `fs`: local directory backend (temp file, fsync, rename, fsync dir).
//! - `s3`: S3-compatible backend through object_store (multipart for large
//!   objects, bounded retries, fast failure on a dead endpoint or bad keys).
//! - `s3copy`: [`ServerSideCopier`], copies between two S3 locations on one
//!   endpoint without the bytes passing through this process, recording
//!   the sha256 of what the target holds.
//! - `limit`: a bound on concurrent requests per S3 endpoint, shared by every
//!   S3 client of the process, that cannot deadlock a reader that writes.
//!
//! Object names are always relative, '/'-separated, with no empty, `.` or
//! `..` component: [`check_name`] enforces it so no name can escape a root.

mod error;
mod fs;
mod limit;
mod location;
mod s3;
mod s3copy;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub use error::{Error, Result};
pub use limit::{
    endpoint_usage, set_default_requests_per_endpoint, set_endpoint_request_limit, EndpointUsage,
    DEFAULT_REQUESTS_PER_ENDPOINT, REQUESTS_PER_ENDPOINT_ENV,
};
pub use location::{Credentials, Location, S3Location};
pub use s3copy::{
    can_copy_server_side, same_endpoint, server_side_copy, ChecksumSource, CopyOptions,
    CopyOutcome, ServerSideCopier, Verify, MAX_SINGLE_COPY, MIN_PART_SIZE,
};

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
}

/// Opens the backend for `location`.
pub async fn open(location: &Location, creds: &Credentials) -> Result<Box<dyn Storage>> {
    match location {
        Location::Filesystem { path } => Ok(Box::new(fs::FsStorage::new(path.clone()))),
        Location::S3(s3) => Ok(Box::new(s3::S3Storage::new(s3, creds)?)),
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
