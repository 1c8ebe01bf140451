//! Server-side copy between two S3 locations on one endpoint: the object's
//! bytes never pass through this process.
//!
//! - Up to [`CopyOptions::multipart_threshold`] (S3's limit for one
//!   CopyObject, 5 GiB): one `CopyObject` (`PUT` with `x-amz-copy-source:
//!   /<bucket>/<key>`, which works across buckets), asking the server for a
//!   SHA-256 of the object it wrote (`x-amz-checksum-algorithm: SHA256`).
//! - Above: a multipart upload whose parts are `UploadPartCopy` ranges of
//!   the source (`x-amz-copy-source-range`), aborted if anything fails or
//!   the copy is dropped.
//!
//! The sha256 a backup records must be of the bytes the target holds. A
//! SHA-256 the server computed over the object it stored is that; anything
//! else (no checksum, a checksum of parts, a multipart copy) is replaced by
//! reading the target back and hashing it as it streams.
//! `docs/SHARED_ON_S3.md` gives the reasoning.
//!
//! object_store copies only inside one bucket, so the requests are built
//! here, signed with object_store's own SigV4 signer and credentials, and
//! sent through the same per-endpoint bound as every other request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, ETAG};
use http::{HeaderMap, Method, StatusCode};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{HttpClient, HttpConnector, HttpErrorKind, HttpRequestBody};
use object_store::ClientOptions;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::limit::endpoint_key;
use crate::s3::{error_chain, S3Storage};
use crate::{check_name, Credentials, Error, Location, Result, S3Location, Storage};

/// S3's largest CopyObject and largest part.
pub const MAX_SINGLE_COPY: u64 = 5 << 30;
/// S3's smallest part (but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PARTS: u64 = 10_000;

/// Transient failures are retried with backoff like object_store's requests
/// (s3.rs): at least this many times, then for as long as the retry window
/// lasts.
const MAX_RETRIES: u32 = 5;
const INIT_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Every byte but the unreserved ones is escaped in keys, as SigV4's
/// canonical form has them; '/' separates segments and stays in paths.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
const QUERY: &AsciiSet = &KEY.add(b'/');

static COPY_SOURCE: HeaderName = HeaderName::from_static("x-amz-copy-source");
static COPY_SOURCE_RANGE: HeaderName = HeaderName::from_static("x-amz-copy-source-range");
static COPY_SOURCE_IF_MATCH: HeaderName = HeaderName::from_static("x-amz-copy-source-if-match");
static CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("x-amz-checksum-algorithm");

/// How the sha256 of a copy is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Take the server's SHA-256 of the stored object when it gives one,
    /// read the target back otherwise.
    #[default]
    ServerChecksumOrReread,
    /// Always read the target back (and compare with the server's checksum
    /// when there is one): for a server whose checksums are not trusted.
    AlwaysReread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Objects larger than this are copied in parts. At most 5 GiB (S3's
    /// CopyObject limit); tests lower it to exercise UploadPartCopy.
    pub multipart_threshold: u64,
    /// Size of each copied part, at least 5 MiB; grown when an object would
    /// need more than 10,000 parts.
    pub part_size: u64,
    /// Parts copied at once for one object.
    pub parts_in_flight: usize,
    pub verify: Verify,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            multipart_threshold: MAX_SINGLE_COPY,
            // 10,000 parts of 512 MiB exceed S3's 5 TiB object limit, so the
            // size rarely needs to grow.
            part_size: 512 << 20,
            parts_in_flight: 4,
            verify: Verify::default(),
        }
    }
}

/// Where the recorded sha256 came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumSource {
    /// The server's SHA-256 of the object it stored (CopyObject's
    /// `ChecksumSHA256`, a full-object checksum).
    Server,
    /// Hashed here while reading the target back.
    Reread,
}

/// What a server-side copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOutcome {
    pub size: u64,
    /// Raw sha256 of the bytes the target holds.
    pub sha256: [u8; 32],
    pub checksum_from: ChecksumSource,
    /// Bytes the server copied (the object size): none of them came here.
    pub copied_bytes: u64,
    /// Object bytes read back through this process to hash the target; 0
    /// when the server's checksum was used.
    pub reread_bytes: u64,
    /// Request and response body bytes of the copy requests themselves (a
    /// few hundred bytes of XML each), whatever the object size.
    pub wire_bytes: u64,
    /// Parts of a multipart copy; 0 for one CopyObject.
    pub parts: u32,
}

/// Whether two locations are on one S3 endpoint, so that a server-side copy
/// between them is possible. Two locations on AWS's default endpoint
/// (empty) count as one: S3 copies across its regions.
pub fn same_endpoint(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::S3(a), Location::S3(b)) => {
            match (a.endpoint.trim().is_empty(), b.endpoint.trim().is_empty()) {
                (true, true) => true,
                (false, false) => match (endpoint_key(&a.endpoint), endpoint_key(&b.endpoint)) {
                    (Some(x), Some(y)) => x == y,
                    _ => false,
                },
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a copy from `src` to `dst` can go server-side: one endpoint, and
/// one identity (the same keys, or no keys on both sides, i.e. this
/// process's ambient credentials). The copy is signed with the target's
/// credentials, which must be allowed to read the source too; MatrixOne's
/// own provider-side copy requires the same (`object_storage.go`,
/// `objectStorageCopyCredentialDomain`).
pub fn can_copy_server_side(
    src: &Location,
    src_creds: &Credentials,
    dst: &Location,
    dst_creds: &Credentials,
) -> bool {
    let same_identity = src_creds.access_key_id == dst_creds.access_key_id
        && src_creds.secret_access_key == dst_creds.secret_access_key;
    let same_role = match (src, dst) {
        (Location::S3(a), Location::S3(b)) => a.role_arn == b.role_arn,
        _ => false,
    };
    same_identity && same_role && same_endpoint(src, dst)
}

/// Copies `src_name` (relative to `src`'s prefix) to `dst_name` (relative to
/// `dst`'s prefix) on the server, with default options. `size` is the
/// source's size as listed. For many objects, build one
/// [`ServerSideCopier`] instead.
pub async fn server_side_copy(
    src: &S3Location,
    dst: &S3Location,
    dst_creds: &Credentials,
    src_name: &str,
    dst_name: &str,
    size: u64,
) -> Result<CopyOutcome> {
    ServerSideCopier::new(src, dst, dst_creds, CopyOptions::default())?
        .copy(src_name, dst_name, size)
        .await
}

/// Copies objects from one S3 location to another on the same endpoint.
/// Cheap to share: it holds one HTTP client and the target's storage.
pub struct ServerSideCopier {
    /// The target: its credentials sign every request, and it reads the
    /// copy back when needed.
    dst: S3Storage,
    http: HttpClient,
    src_bucket: String,
    /// Without leading or trailing '/'; empty for the bucket root.
    src_prefix: String,
    options: CopyOptions,
    /// Cleared when the server refuses `x-amz-checksum-algorithm` on a
    /// copy, so later copies do not ask again.
    ask_checksum: AtomicBool,
    retry_window: Duration,
}

impl std::fmt::Debug for ServerSideCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSideCopier")
            .field("dst", &self.dst)
            .field("src_bucket", &self.src_bucket)
            .field("src_prefix", &self.src_prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServerSideCopier {
    /// Fails with [`Error::Config`] if the two locations are not on one
    /// endpoint or the options break S3's limits.
    pub fn new(
        src: &S3Location,
        dst: &S3Location,
        dst_creds: &Credentials,
        options: CopyOptions,
    ) -> Result<Self> {
        Self::with_open_options(src, dst, dst_creds, options, &crate::OpenOptions::default())
    }

    /// Like [`ServerSideCopier::new`], with a job's retry window and pacer.
    pub fn with_open_options(
        src: &S3Location,
        dst: &S3Location,
        dst_creds: &Credentials,
        options: CopyOptions,
        open: &crate::OpenOptions,
    ) -> Result<Self> {
        if !same_endpoint(&Location::S3(src.clone()), &Location::S3(dst.clone())) {
            return Err(Error::Config(format!(
                "server-side copy needs one endpoint; source is on {:?}, target on {:?}",
                src.endpoint, dst.endpoint
            )));
        }
        if src.bucket.is_empty() {
            return Err(Error::Config("source S3 bucket is empty".into()));
        }
        if options.multipart_threshold > MAX_SINGLE_COPY {
            return Err(Error::Config(format!(
                "multipart copy threshold {} is above S3's 5 GiB CopyObject limit",
                options.multipart_threshold
            )));
        }
        if options.part_size < MIN_PART_SIZE || options.part_size > MAX_SINGLE_COPY {
            return Err(Error::Config(format!(
                "copy part size {} is outside S3's 5 MiB..5 GiB",
                options.part_size
            )));
        }
        let src_prefix = src.prefix.trim_matches('/').to_string();
        if !src_prefix.is_empty() {
            check_name(&src_prefix)
                .map_err(|_| Error::Config(format!("invalid S3 prefix {:?}", src.prefix)))?;
        }
        let dst_storage = S3Storage::with_options(dst, dst_creds, open)?;
        // A CopyObject answers only when the server has copied: minutes for
        // gigabytes on a server that sends no keep-alive whitespace. The
        // read timeout still catches a connection that went silent.
        let client_options = dst_storage.client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_read_timeout(Duration::from_secs(300))
                .with_timeout(Duration::from_secs(3600))
                .with_allow_http(dst_storage.endpoint().starts_with("http://")),
        );
        let http = dst_storage
            .connector()
            .connect(&client_options)
            .map_err(|e| Error::Config(format!("S3 copy client: {e}")))?;
        Ok(ServerSideCopier {
            dst: dst_storage,
            http,
            src_bucket: src.bucket.clone(),
            src_prefix,
            options: CopyOptions {
                parts_in_flight: options.parts_in_flight.max(1),
                ..options
            },
            ask_checksum: AtomicBool::new(true),
            retry_window: open
                .retry_window
                .unwrap_or_else(crate::default_retry_window),
        })
    }

    /// Copies `src_name` to `dst_name` on the server; `size` is the source's
    /// size as listed (the copy is checked to have exactly that size).
    /// [`Error::NotFound`] names the source object when it does not exist.
    pub async fn copy(&self, src_name: &str, dst_name: &str, size: u64) -> Result<CopyOutcome> {
        check_name(src_name)?;
        let dst_key = self.dst.key(dst_name)?.to_string();
        let src_key = if self.src_prefix.is_empty() {
            src_name.to_string()
        } else {
            format!("{}/{src_name}", self.src_prefix)
        };
        let job = Job {
            src_desc: format!("{}/{src_key}", self.src_bucket),
            copy_source: format!(
                "/{}/{}",
                self.src_bucket,
                utf8_percent_encode(&src_key, KEY)
            ),
            src_url: self.url(&self.src_bucket, &src_key),
            dst_url: self.url(self.dst.bucket(), &dst_key),
            dst_desc: format!("{}/{dst_key}", self.dst.bucket()),
            wire: AtomicU64::new(0),
        };

        let (server_sum, parts) = if size > self.options.multipart_threshold && size > 0 {
            (None, self.copy_parts(&job, size).await?)
        } else {
            (self.copy_object(&job).await?, 0)
        };

        let mut outcome = CopyOutcome {
            size,
            sha256: [0; 32],
            checksum_from: ChecksumSource::Server,
            copied_bytes: size,
            reread_bytes: 0,
            wire_bytes: 0,
            parts,
        };
        let settled = match (server_sum, self.options.verify) {
            (Some(sum), Verify::ServerChecksumOrReread) => {
                // The checksum says nothing of the length: a HEAD does.
                match self.dst.head(dst_name).await? {
                    Some(n) if n == size => {
                        outcome.sha256 = sum;
                        Ok(())
                    }
                    Some(n) => Err(self.size_mismatch(&job, n, size)),
                    None => {
                        return Err(Error::S3 {
                            name: job.dst_desc.clone(),
                            detail: "the copy succeeded but the object is not there".into(),
                        })
                    }
                }
            }
            (server_sum, _) => {
                let (n, sum) = self.reread(dst_name).await?;
                outcome.reread_bytes = n;
                outcome.checksum_from = ChecksumSource::Reread;
                if n != size {
                    Err(self.size_mismatch(&job, n, size))
                } else if let Some(server) = server_sum.filter(|s| *s != sum) {
                    Err(Error::ChecksumMismatch {
                        name: job.dst_desc.clone(),
                        expected: hex::encode(server),
                        actual: hex::encode(sum),
                    })
                } else {
                    outcome.sha256 = sum;
                    Ok(())
                }
            }
        };
        if let Err(e) = settled {
            // Like a put whose bytes do not match, a copy that is not what
            // was asked for leaves nothing behind.
            if let Err(del) = self.dst.delete(dst_name).await {
                tracing::warn!(object = job.dst_desc, error = %del, "could not remove a bad copy");
            }
            return Err(e);
        }
        outcome.wire_bytes = job.wire.load(Ordering::Relaxed);
        Ok(outcome)
    }

    fn size_mismatch(&self, job: &Job, got: u64, want: u64) -> Error {
        Error::S3 {
            name: job.dst_desc.clone(),
            detail: format!(
                "the copy of {} holds {got} bytes, the source was listed with {want}",
                job.src_desc
            ),
        }
    }

    fn url(&self, bucket: &str, key: &str) -> String {
        self.dst
            .object_url(bucket, &utf8_percent_encode(key, KEY).to_string())
    }

    /// One CopyObject; the server's full-object SHA-256 if it gave one.
    async fn copy_object(&self, job: &Job) -> Result<Option<[u8; 32]>> {
        loop {
            let ask = self.ask_checksum.load(Ordering::Relaxed);
            let mut headers = vec![(&COPY_SOURCE, job.copy_source.clone())];
            if ask {
                headers.push((&CHECKSUM_ALGORITHM, "SHA256".to_string()));
            }
            let res = self
                .send(job, Method::PUT, &job.dst_url, &headers, Bytes::new())
                .await;
            let res = match res {
                Err(f) if ask && f.refuses_checksum() => {
                    tracing::debug!(
                        endpoint = self.dst.endpoint(),
                        "server refuses a checksum on CopyObject; copies re-read their targets"
                    );
                    self.ask_checksum.store(false, Ordering::Relaxed);
                    continue;
                }
                other => other.map_err(|f| self.copy_error(job, f))?,
            };
            let parsed: CopyResult = parse_xml(&res.body).map_err(|detail| Error::S3 {
                name: job.dst_desc.clone(),
                detail: format!("unreadable CopyObject answer: {detail}"),
            })?;
            return Ok(parsed.full_object_sha256());
        }
    }

    /// A multipart upload of UploadPartCopy ranges; returns the part count.
    async fn copy_parts(&self, job: &Job, size: u64) -> Result<u32> {
        // The source's ETag pins every part to one version of the object:
        // a source replaced mid-copy fails the copy instead of mixing.
        let head = self
            .send(job, Method::HEAD, &job.src_url, &[], Bytes::new())
            .await
            .map_err(|f| self.copy_error(job, f))?;
        let listed = head
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if listed != Some(size) {
            return Err(Error::S3 {
                name: job.src_desc.clone(),
                detail: format!(
                    "the source has {} bytes, it was listed with {size}",
                    listed.map_or("an unknown number of".to_string(), |n| n.to_string())
                ),
            });
        }
        let etag = head
            .headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);

        let created = self
            .send(
                job,
                Method::POST,
                &format!("{}?uploads", job.dst_url),
                &[],
                Bytes::new(),
            )
            .await
            .map_err(|f| self.copy_error(job, f))?;
        let upload_id = parse_xml::<InitiateResult>(&created.body)
            .map_err(|detail| Error::S3 {
                name: job.dst_desc.clone(),
                detail: format!("unreadable CreateMultipartUpload answer: {detail}"),
            })?
            .upload_id;
        let mut guard = AbortOnDrop {
            http: self.http.clone(),
            creds: self.dst.credential_provider().clone(),
            region: self.dst.region().to_string(),
            url: format!(
                "{}?uploadId={}",
                job.dst_url,
                utf8_percent_encode(&upload_id, QUERY)
            ),
            armed: true,
        };

        let result = self
            .copy_and_complete(job, size, &upload_id, etag.as_deref())
            .await;
        match result {
            Ok(parts) => {
                guard.armed = false;
                Ok(parts)
            }
            Err(e) => {
                guard.armed = false;
                if let Err(abort) = abort_upload(
                    &self.http,
                    self.dst.credential_provider(),
                    self.dst.region(),
                    &guard.url,
                )
                .await
                {
                    tracing::warn!(
                        object = job.dst_desc,
                        error = abort,
                        "could not abort a failed multipart copy; an incomplete upload remains until the bucket's lifecycle rules remove it"
                    );
                }
                Err(e)
            }
        }
    }

    async fn copy_and_complete(
        &self,
        job: &Job,
        size: u64,
        upload_id: &str,
        etag: Option<&str>,
    ) -> Result<u32> {
        let part_size = self.options.part_size.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size);
        let upload_q = utf8_percent_encode(upload_id, QUERY).to_string();
        let etags: Vec<String> = futures::stream::iter(0..count)
            .map(|i| {
                let start = i * part_size;
                let end = (start + part_size).min(size) - 1;
                let url = format!("{}?partNumber={}&uploadId={upload_q}", job.dst_url, i + 1);
                async move {
                    let mut headers = vec![
                        (&COPY_SOURCE, job.copy_source.clone()),
                        (&COPY_SOURCE_RANGE, format!("bytes={start}-{end}")),
                    ];
                    if let Some(e) = etag {
                        headers.push((&COPY_SOURCE_IF_MATCH, e.to_string()));
                    }
                    let res = self
                        .send(job, Method::PUT, &url, &headers, Bytes::new())
                        .await
                        .map_err(|f| self.copy_error(job, f))?;
                    let part: CopyPartResult =
                        parse_xml(&res.body).map_err(|detail| Error::S3 {
                            name: job.dst_desc.clone(),
                            detail: format!("unreadable UploadPartCopy answer: {detail}"),
                        })?;
                    Ok::<_, Error>(part.etag)
                }
            })
            .buffered(self.options.parts_in_flight)
            .try_collect()
            .await?;

        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.send(
            job,
            Method::POST,
            &format!("{}?uploadId={upload_q}", job.dst_url),
            &[],
            Bytes::from(body),
        )
        .await
        .map_err(|f| self.copy_error(job, f))?;
        Ok(count as u32)
    }

    /// Streams the target back and hashes it: bounded memory whatever the
    /// size.
    async fn reread(&self, dst_name: &str) -> Result<(u64, [u8; 32])> {
        let mut stream = self.dst.get(dst_name).await?;
        let mut hasher = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((n, hasher.finalize().into()))
    }

    /// Sends one signed request, retrying transient failures; the whole
    /// response body is read before it returns.
    async fn send(
        &self,
        job: &Job,
        method: Method,
        url: &str,
        headers: &[(&HeaderName, String)],
        body: Bytes,
    ) -> std::result::Result<Response, Failure> {
        let creds = self.dst.credential_provider();
        let mut attempt = 0u32;
        let started = std::time::Instant::now();
        loop {
            let res = send_once(
                &self.http,
                creds,
                self.dst.region(),
                method.clone(),
                url,
                headers,
                body.clone(),
            )
            .await;
            let failure = match res {
                Ok(r) => {
                    job.wire
                        .fetch_add((body.len() + r.body.len()) as u64, Ordering::Relaxed);
                    match Failure::from_response(&r) {
                        None => return Ok(r),
                        Some(f) => f,
                    }
                }
                Err(f) => f,
            };
            if !failure.retryable()
                || (attempt >= MAX_RETRIES && started.elapsed() >= self.retry_window)
            {
                return Err(failure);
            }
            let backoff = INIT_BACKOFF
                .saturating_mul(1 << attempt.min(8))
                .min(MAX_BACKOFF);
            tracing::debug!(
                object = job.dst_desc,
                attempt,
                failure = %failure,
                "retrying an S3 copy request"
            );
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    fn copy_error(&self, job: &Job, f: Failure) -> Error {
        if f.unreachable {
            return Error::Unreachable {
                endpoint: self.dst.endpoint().to_string(),
                detail: f.to_string(),
            };
        }
        if f.transient {
            return Error::Interrupted {
                endpoint: self.dst.endpoint().to_string(),
                detail: f.to_string(),
            };
        }
        if let Some(status) = f.status.filter(|_| f.retryable()) {
            return Error::Unavailable {
                endpoint: self.dst.endpoint().to_string(),
                name: job.dst_desc.clone(),
                status: status.as_u16(),
                detail: format!("copy from {}: {f}", job.src_desc),
            };
        }
        match f.code.as_str() {
            // On a copy, a missing key is the source's.
            "NoSuchKey" => return Error::NotFound(job.src_desc.clone()),
            "NoSuchBucket" => {
                return Error::NoBucket {
                    bucket: if f.bucket.is_empty() {
                        format!("{} or {}", self.src_bucket, self.dst.bucket())
                    } else {
                        f.bucket.clone()
                    },
                }
            }
            _ => {}
        }
        // A HEAD of a missing source answers 404 without a body.
        if f.status == Some(StatusCode::NOT_FOUND) && f.code.is_empty() {
            return Error::NotFound(job.src_desc.clone());
        }
        let auth_codes = [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
        ];
        if matches!(
            f.status,
            Some(StatusCode::FORBIDDEN) | Some(StatusCode::UNAUTHORIZED)
        ) || auth_codes.contains(&f.code.as_str())
        {
            return Error::Auth {
                bucket: self.dst.bucket().to_string(),
                detail: format!(
                    "{f} (a server-side copy is signed with the target's credentials, which \
                     must also be allowed to read {})",
                    self.src_bucket
                ),
            };
        }
        Error::S3 {
            name: job.dst_desc.clone(),
            detail: format!("copy from {}: {f}", job.src_desc),
        }
    }
}

/// Per-copy names and counters.
struct Job {
    src_desc: String,
    dst_desc: String,
    /// `/<bucket>/<escaped key>`, the `x-amz-copy-source` value.
    copy_source: String,
    src_url: String,
    dst_url: String,
    wire: AtomicU64,
}

struct Response {
    headers: HeaderMap,
    body: Bytes,
}

/// A request that did not succeed, before it is turned into an [`Error`]
/// with the names that explain it.
#[derive(Debug, Default)]
struct Failure {
    status: Option<StatusCode>,
    code: String,
    message: String,
    bucket: String,
    /// Connection refused, timed out...: the endpoint, not the request.
    unreachable: bool,
    /// A transport error worth another attempt.
    transient: bool,
    transport: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.transport.is_empty() {
            return f.write_str(&self.transport);
        }
        if let Some(s) = self.status {
            write!(f, "{s}")?;
        }
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl Failure {
    /// `None` for a success. A `200` whose body is an `<Error>` is a
    /// failure: S3 answers long copies that way.
    fn from_response(r: &Response) -> Option<Failure> {
        let text = std::str::from_utf8(&r.body).unwrap_or("");
        if !is_error_document(text) {
            return None;
        }
        let e: ErrorDoc = parse_xml(&r.body).unwrap_or_default();
        Some(Failure {
            code: e.code,
            message: e.message,
            bucket: e.bucket_name,
            ..Default::default()
        })
    }

    fn retryable(&self) -> bool {
        if self.transient {
            return true;
        }
        if let Some(s) = self.status {
            if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS {
                return true;
            }
        }
        matches!(
            self.code.as_str(),
            "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout"
        )
    }

    /// The server does not take `x-amz-checksum-algorithm` on a copy.
    fn refuses_checksum(&self) -> bool {
        let bad_request = matches!(
            self.status,
            Some(StatusCode::BAD_REQUEST) | Some(StatusCode::NOT_IMPLEMENTED)
        );
        bad_request
            && (self.code == "NotImplemented"
                || self.message.to_ascii_lowercase().contains("checksum"))
    }
}

async fn send_once(
    http: &HttpClient,
    creds: &AwsCredentialProvider,
    region: &str,
    method: Method,
    url: &str,
    headers: &[(&HeaderName, String)],
    body: Bytes,
) -> std::result::Result<Response, Failure> {
    let credential = creds.get_credential().await.map_err(|e| Failure {
        code: "InvalidToken".into(),
        message: format!("no credentials: {e}"),
        ..Default::default()
    })?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(HttpRequestBody::from(body))
        .map_err(|e| Failure {
            transport: format!("bad request {url}: {e}"),
            ..Default::default()
        })?;
    for (name, value) in headers {
        let v = HeaderValue::from_str(value).map_err(|e| Failure {
            transport: format!("bad header {name}: {e}"),
            ..Default::default()
        })?;
        req.headers_mut().insert((*name).clone(), v);
    }
    AwsAuthorizer::new(&credential, "s3", region)
        .try_authorize(&mut req, None)
        .map_err(|e| Failure {
            transport: format!("signing failed: {e}"),
            ..Default::default()
        })?;

    let transport = |e: object_store::client::HttpError| {
        let kind = e.kind();
        Failure {
            unreachable: matches!(kind, HttpErrorKind::Connect | HttpErrorKind::Timeout),
            transient: matches!(
                kind,
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            ),
            transport: error_chain(&e),
            ..Default::default()
        }
    };
    let res = http.execute(req).await.map_err(transport)?;
    let status = res.status();
    let (parts, body) = res.into_parts();
    let body = body.bytes().await.map_err(transport)?;
    if status.is_success() {
        return Ok(Response {
            headers: parts.headers,
            body,
        });
    }
    let e: ErrorDoc = parse_xml(&body).unwrap_or_default();
    Err(Failure {
        status: Some(status),
        code: e.code,
        message: e.message,
        bucket: e.bucket_name,
        ..Default::default()
    })
}

/// Aborts a multipart copy whose `copy` was dropped before it ended (the
/// job was cancelled), so its parts do not stay on the server.
struct AbortOnDrop {
    http: HttpClient,
    creds: AwsCredentialProvider,
    region: String,
    url: String,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (http, creds, region, url) = (
            self.http.clone(),
            self.creds.clone(),
            std::mem::take(&mut self.region),
            std::mem::take(&mut self.url),
        );
        runtime.spawn(async move {
            if let Err(e) = abort_upload(&http, &creds, &region, &url).await {
                tracing::warn!(error = e, "could not abort a cancelled multipart copy");
            }
        });
    }
}

async fn abort_upload(
    http: &HttpClient,
    creds: &AwsCredentialProvider,
    region: &str,
    url: &str,
) -> std::result::Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3u32 {
        match send_once(http, creds, region, Method::DELETE, url, &[], Bytes::new()).await {
            // Already gone counts as aborted.
            Ok(_) => return Ok(()),
            Err(f) if f.code == "NoSuchUpload" => return Ok(()),
            Err(f) if f.retryable() => last = f.to_string(),
            Err(f) => return Err(f.to_string()),
        }
        tokio::time::sleep(INIT_BACKOFF * (attempt + 1)).await;
    }
    Err(last)
}

fn is_error_document(text: &str) -> bool {
    let mut t = text.trim_start();
    if let Some(rest) = t.strip_prefix("<?xml") {
        t = rest
            .split_once("?>")
            .map(|(_, r)| r)
            .unwrap_or("")
            .trim_start();
    }
    t.starts_with("<Error>") || t.starts_with("<Error ")
}

fn parse_xml<T: for<'de> Deserialize<'de>>(body: &[u8]) -> std::result::Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    quick_xml::de::from_str(text.trim()).map_err(|e| e.to_string())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorDoc {
    code: String,
    message: String,
    bucket_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CopyResult {
    #[serde(rename = "ChecksumSHA256")]
    checksum_sha256: Option<String>,
    #[serde(rename = "ChecksumType")]
    checksum_type: Option<String>,
}

impl CopyResult {
    /// Only a checksum of the whole object counts: a composite one (a
    /// checksum of part checksums, `...-<parts>`) is not the sha256 of the
    /// bytes, and is refused by its length or its type.
    fn full_object_sha256(&self) -> Option<[u8; 32]> {
        if let Some(t) = &self.checksum_type {
            if !t.eq_ignore_ascii_case("FULL_OBJECT") {
                return None;
            }
        }
        let b64 = self.checksum_sha256.as_deref()?.trim();
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        raw.try_into().ok()
    }
}

#[derive(Debug, Deserialize)]
struct InitiateResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

#[derive(Debug, Deserialize)]
struct CopyPartResult {
    #[serde(rename = "ETag")]
    etag: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(endpoint: &str) -> Location {
        Location::S3(S3Location {
            endpoint: endpoint.into(),
            bucket: "b".into(),
            ..Default::default()
        })
    }

    #[test]
    fn endpoints_compare_normalized() {
        assert!(same_endpoint(&loc("http://H:9000/"), &loc("http://h:9000")));
        assert!(same_endpoint(&loc("https://h"), &loc("https://h:443")));
        assert!(!same_endpoint(&loc("http://h:9000"), &loc("http://h:9001")));
        assert!(!same_endpoint(&loc("http://h"), &loc("https://h")));
        assert!(same_endpoint(&loc(""), &loc("")));
        assert!(!same_endpoint(&loc(""), &loc("http://h")));
        let fs = Location::Filesystem { path: "/x".into() };
        assert!(!same_endpoint(&fs, &loc("http://h")));
    }

    #[test]
    fn same_identity_required() {
        let k = |id: &str| Credentials {
            access_key_id: id.into(),
            secret_access_key: "s".into(),
            ..Default::default()
        };
        let (a, b) = (loc("http://h:1"), loc("http://h:1"));
        assert!(can_copy_server_side(&a, &k("x"), &b, &k("x")));
        assert!(!can_copy_server_side(&a, &k("x"), &b, &k("y")));
        assert!(can_copy_server_side(
            &a,
            &Credentials::default(),
            &b,
            &Credentials::default()
        ));
    }

    #[test]
    fn copy_result_checksums() {
        let sum = Sha256::digest(b"hello");
        let b64 = base64::engine::general_purpose::STANDARD.encode(sum);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ETag>&quot;5d41&quot;</ETag><LastModified>2024-01-01T00:00:00.000Z</LastModified><ChecksumSHA256>{b64}</ChecksumSHA256><ChecksumType>FULL_OBJECT</ChecksumType></CopyObjectResult>"
        );
        let r: CopyResult = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(r.full_object_sha256(), Some(sum.into()));

        // Without a type (older servers): a 32-byte value is a full object's.
        let xml =
            format!("<CopyObjectResult><ChecksumSHA256>{b64}</ChecksumSHA256></CopyObjectResult>");
        let r: CopyResult = parse_xml(xml.as_bytes()).unwrap();
        assert!(r.full_object_sha256().is_some());

        // Composite (per part) checksums are not the object's sha256.
        let xml = format!(
            "<CopyObjectResult><ChecksumSHA256>{b64}-3</ChecksumSHA256></CopyObjectResult>"
        );
        let r: CopyResult = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(r.full_object_sha256(), None);
        let xml = format!("<CopyObjectResult><ChecksumSHA256>{b64}</ChecksumSHA256><ChecksumType>COMPOSITE</ChecksumType></CopyObjectResult>");
        let r: CopyResult = parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(r.full_object_sha256(), None);

        // s3s-fs 0.14: ETag and LastModified only.
        let r: CopyResult =
            parse_xml(b"<CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>").unwrap();
        assert_eq!(r.full_object_sha256(), None);
    }

    #[test]
    fn error_documents() {
        let body = Bytes::from_static(
            b"<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>try again</Message></Error>",
        );
        let f = Failure::from_response(&Response {
            headers: HeaderMap::new(),
            body,
        })
        .unwrap();
        assert_eq!(f.code, "InternalError");
        assert!(f.retryable());
        let ok = Failure::from_response(&Response {
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"<CopyObjectResult><ETag>x</ETag></CopyObjectResult>"),
        });
        assert!(ok.is_none());
        let e: ErrorDoc =
            parse_xml(b"<Error><Code>NoSuchBucket</Code><BucketName>bk</BucketName></Error>")
                .unwrap();
        assert_eq!(
            (e.code.as_str(), e.bucket_name.as_str()),
            ("NoSuchBucket", "bk")
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            utf8_percent_encode("a b/c+d~e_f.g-h", KEY).to_string(),
            "a%20b/c%2Bd~e_f.g-h"
        );
        assert_eq!(utf8_percent_encode("x/y=", QUERY).to_string(), "x%2Fy%3D");
        assert_eq!(xml_escape("\"e&t\""), "&quot;e&amp;t&quot;");
    }

    /// A request as the mock server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    type Reply = (u16, Vec<(String, String)>, String);

    /// A minimal HTTP/1.1 server that answers each request with
    /// `answer(request, how many came before)` and closes the connection.
    async fn mock(
        answer: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Seen>::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let path = first.next().unwrap_or("").to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let req = Seen {
                    method,
                    path,
                    headers,
                };
                let before = {
                    let mut l = log.lock().unwrap();
                    l.push(req.clone());
                    l.len() - 1
                };
                let (status, extra, body) = answer(&req, before);
                let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                let has_length = extra
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
                for (k, v) in &extra {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_length {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                out.push_str("\r\n");
                if req.method != "HEAD" {
                    out.push_str(&body);
                }
                let _ = conn.write_all(out.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (endpoint, seen)
    }

    fn locations(endpoint: &str) -> (S3Location, S3Location, Credentials) {
        let src = S3Location {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            bucket: "src".into(),
            prefix: "server/data".into(),
            ..Default::default()
        };
        let dst = S3Location {
            bucket: "dst".into(),
            prefix: "b1".into(),
            ..src.clone()
        };
        let creds = Credentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            ..Default::default()
        };
        (src, dst, creds)
    }

    const BODY: &str = "hello world";

    fn copy_result_with_checksum() -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(BODY));
        format!(
            "<CopyObjectResult><ETag>&quot;x&quot;</ETag><ChecksumSHA256>{b64}</ChecksumSHA256><ChecksumType>FULL_OBJECT</ChecksumType></CopyObjectResult>"
        )
    }

    /// A server that returns a full-object SHA-256 for the copy: it is used
    /// as is, no byte of the object is read back, and the request is a
    /// signed CopyObject naming the source bucket and key.
    #[tokio::test]
    async fn server_checksum_is_used_without_reading_back() {
        let (endpoint, seen) = mock(|req, _| match req.method.as_str() {
            "PUT" => (200, vec![], copy_result_with_checksum()),
            "HEAD" => (
                200,
                vec![("Content-Length".into(), BODY.len().to_string())],
                String::new(),
            ),
            "GET" => (200, vec![], BODY.to_string()),
            _ => (204, vec![], String::new()),
        })
        .await;
        let (src, dst, creds) = locations(&endpoint);
        let copier = ServerSideCopier::new(&src, &dst, &creds, CopyOptions::default()).unwrap();
        let out = copier.copy("a b_00001", "x/a b_00001", 11).await.unwrap();
        assert_eq!(out.checksum_from, ChecksumSource::Server);
        assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(BODY)));
        assert_eq!((out.reread_bytes, out.copied_bytes, out.parts), (0, 11, 0));
        {
            let seen = seen.lock().unwrap();
            assert!(seen.iter().all(|r| r.method != "GET"), "{seen:?}");
            let put = seen.iter().find(|r| r.method == "PUT").unwrap();
            assert_eq!(put.path, "/dst/b1/x/a%20b_00001");
            assert_eq!(
                put.header("x-amz-copy-source"),
                Some("/src/server/data/a%20b_00001")
            );
            assert_eq!(put.header("x-amz-checksum-algorithm"), Some("SHA256"));
            let auth = put.header("authorization").unwrap();
            assert!(
                auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
                "{auth}"
            );
            assert!(auth.contains("x-amz-copy-source"), "{auth}");
        }

        // Told not to trust it, the copier reads back, and agrees.
        let always = CopyOptions {
            verify: Verify::AlwaysReread,
            ..Default::default()
        };
        let copier = ServerSideCopier::new(&src, &dst, &creds, always).unwrap();
        let out = copier.copy("a_00001", "a_00001", 11).await.unwrap();
        assert_eq!(out.checksum_from, ChecksumSource::Reread);
        assert_eq!(out.reread_bytes, 11);
    }

    /// The server's checksum and the bytes read back disagree: the copy is
    /// refused and removed.
    #[tokio::test]
    async fn disagreeing_checksum_removes_the_copy() {
        let (endpoint, seen) = mock(|req, _| match req.method.as_str() {
            "PUT" => (200, vec![], copy_result_with_checksum()),
            "GET" => (200, vec![], "hello worlD".to_string()),
            _ => (204, vec![], String::new()),
        })
        .await;
        let (src, dst, creds) = locations(&endpoint);
        let always = CopyOptions {
            verify: Verify::AlwaysReread,
            ..Default::default()
        };
        let copier = ServerSideCopier::new(&src, &dst, &creds, always).unwrap();
        let err = copier.copy("a_00001", "a_00001", 11).await.unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        let seen = seen.lock().unwrap();
        // object_store deletes with DeleteObjects (`POST ?delete`).
        assert!(
            seen.iter()
                .any(|r| (r.method == "DELETE" && r.path == "/dst/b1/a_00001")
                    || (r.method == "POST" && r.path == "/dst?delete")),
            "{seen:?}"
        );
    }

    /// A server that refuses the checksum header gets copies without it
    /// (from then on); a `200` carrying an `<Error>` is retried.
    #[tokio::test]
    async fn checksum_refusal_and_error_bodies() {
        let (endpoint, seen) = mock(|req, before| match req.method.as_str() {
            "PUT" if req.header("x-amz-checksum-algorithm").is_some() => (
                400,
                vec![],
                "<Error><Code>NotImplemented</Code><Message>checksums are not supported</Message></Error>".into(),
            ),
            "PUT" if before == 1 => (
                200,
                vec![],
                "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>again</Message></Error>".into(),
            ),
            "PUT" => (200, vec![], "<CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>".into()),
            "GET" => (200, vec![], BODY.to_string()),
            _ => (204, vec![], String::new()),
        })
        .await;
        let (src, dst, creds) = locations(&endpoint);
        let copier = ServerSideCopier::new(&src, &dst, &creds, CopyOptions::default()).unwrap();
        let out = copier.copy("a_00001", "a_00001", 11).await.unwrap();
        assert_eq!(out.checksum_from, ChecksumSource::Reread);
        assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(BODY)));
        copier.copy("b_00001", "b_00001", 11).await.unwrap();
        let seen = seen.lock().unwrap();
        let puts: Vec<_> = seen.iter().filter(|r| r.method == "PUT").collect();
        // Refused, then an error body, then the copy; the next copy asks no more.
        assert_eq!(puts.len(), 4, "{seen:?}");
        assert!(puts[0].header("x-amz-checksum-algorithm").is_some());
        assert!(puts[1..]
            .iter()
            .all(|r| r.header("x-amz-checksum-algorithm").is_none()));
    }

    /// Errors name what they are about.
    #[tokio::test]
    async fn errors_are_mapped() {
        let (endpoint, _) = mock(|req, _| match req.path.as_str() {
            p if p.ends_with("missing_00001") => (
                404,
                vec![],
                "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>".into(),
            ),
            _ => (
                403,
                vec![],
                "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>".into(),
            ),
        })
        .await;
        let (src, dst, creds) = locations(&endpoint);
        let copier = ServerSideCopier::new(&src, &dst, &creds, CopyOptions::default()).unwrap();
        let err = copier
            .copy("missing_00001", "missing_00001", 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotFound(n) if n == "src/server/data/missing_00001"),
            "{err}"
        );
        let err = copier
            .copy("denied_00001", "denied_00001", 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Auth { bucket, .. } if bucket == "dst"),
            "{err}"
        );
        assert!(err.to_string().contains("read src"), "{err}");

        // Nobody listening.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (src, dst, creds) = locations(&dead);
        // Retried for the retry window, then unreachable.
        let open = crate::OpenOptions {
            retry_window: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let copier =
            ServerSideCopier::with_open_options(&src, &dst, &creds, CopyOptions::default(), &open)
                .unwrap();
        let started = std::time::Instant::now();
        let err = copier.copy("a_00001", "a_00001", 1).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(err.is_transient());
        assert!(started.elapsed() >= Duration::from_millis(500), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let a = S3Location {
            endpoint: "http://127.0.0.1:1".into(),
            bucket: "a".into(),
            ..Default::default()
        };
        let creds = Credentials::default();
        let too_small = CopyOptions {
            part_size: 1 << 20,
            ..Default::default()
        };
        assert!(matches!(
            ServerSideCopier::new(&a, &a, &creds, too_small),
            Err(Error::Config(_))
        ));
        let other = S3Location {
            endpoint: "http://127.0.0.1:2".into(),
            ..a.clone()
        };
        assert!(matches!(
            ServerSideCopier::new(&a, &other, &creds, CopyOptions::default()),
            Err(Error::Config(_))
        ));
    }
}
