//! S3-compatible backend through object_store.
//!
//! Object `name` is stored at key `<prefix>/<name>` (or `<name>` with an
//! empty prefix). Bodies up to 8 MiB go as one PUT, and so do bodies up to
//! 64 MiB while a process-wide budget has room to hold them whole; larger
//! ones as a multipart upload whose part size grows so that any object fits
//! in S3's 10,000 parts, with a bounded number of parts in flight so memory
//! stays bounded.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    BackoffConfig, Certificate, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt,
    PutPayload, RetryConfig,
};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::limit::{observe, LimitedConnector};
use crate::{
    check_name, ByteStream, Credentials, Entry, Error, Location, OpenOptions, Result, S3Location,
    Storage, Written,
};

/// Bodies up to this size are sent as one PUT; it is also the first part size.
const SINGLE_PUT_MAX: usize = 8 << 20;
/// Bodies up to this size are sent as one PUT too while [`WHOLE_BUDGET`] can
/// hold what they buffer beyond [`SINGLE_PUT_MAX`]. One request instead of
/// a multipart upload's three or more: fewer requests billed and waited on,
/// and servers that assemble parts by copying them (MinIO on a filesystem,
/// s3s-fs) write the object once instead of twice. rclone's default
/// cut-over is 200 MiB. Within the 300 s request timeout, a PUT of this size
/// needs ~220 KB/s on its connection.
const SINGLE_PUT_LIMIT: usize = 64 << 20;
/// Bytes that bodies between [`SINGLE_PUT_MAX`] and [`SINGLE_PUT_LIMIT`] may
/// hold beyond the first, process-wide; when it is spent, a body goes as a
/// multipart upload, as it would have without it, so memory stays bounded by
/// parallelism plus this.
const WHOLE_BUDGET: usize = 256 << 20;
/// The part size doubles every this many parts: 1,000 parts of 8 MiB, then
/// 1,000 of 16 MiB, ... so 10,000 parts hold ~8 TB, more than S3's 5 TiB
/// object limit, while small and medium objects keep small parts.
const PARTS_PER_SIZE: usize = 1000;
/// Parts uploading while the next one fills: memory per upload is at most
/// (MAX_IN_FLIGHT + 1) parts.
const MAX_IN_FLIGHT: usize = 2;
/// probe() must answer within a few seconds even when every retry would fail.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

pub struct S3Storage {
    /// put/head/delete/list: bounded per-request time.
    store: Arc<AmazonS3>,
    /// get: no overall timeout (a large object may take long to stream), a
    /// read timeout catches a stalled connection instead.
    reader: Arc<AmazonS3>,
    /// probe: few retries and short timeouts, to fail fast.
    prober: Arc<AmazonS3>,
    /// Every root the clients trust (the system's for an https endpoint,
    /// and the location's CA files), for clients made elsewhere (the
    /// server-side copier) to trust what this one trusts.
    roots: Arc<[Certificate]>,
    /// The connector of every client, for clients made elsewhere (the
    /// server-side copier) to be paced like this one.
    connector: LimitedConnector,
    virtual_hosted: bool,
    endpoint: String,
    /// The signing region.
    region: String,
    bucket: String,
    /// Without leading or trailing '/'; empty for the bucket root.
    prefix: String,
    description: String,
}

/// Hand-written so that nothing from the object_store clients (which hold the
/// credentials) can end up in a log line.
impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Left to itself, object_store reads and parses every file of the
/// system's trust store each time it builds a client: three clients per
/// location, a location opened per shard, ~0.1 s each, most of an
/// incremental backup's time. So the clients get the roots handed in.
fn with_roots(mut options: ClientOptions, roots: &[Certificate]) -> ClientOptions {
    options = options.with_no_system_certificates(true);
    for cert in roots {
        options = options.with_root_certificate(cert.clone());
    }
    options
}

/// The system's trust store, read once per process.
fn system_roots() -> &'static [Certificate] {
    static ROOTS: OnceLock<Vec<Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "part of the system's trust store could not be read");
        }
        found
            .certs
            .iter()
            .filter_map(|der| Certificate::from_der(der.as_ref()).ok())
            .collect()
    })
}

/// What a location's clients trust: the system's roots where the endpoint
/// speaks TLS, and its own CA files; with an id of exactly that set (two
/// locations share connections only if they trust the same).
fn roots_for(loc: &S3Location) -> Result<(Arc<[Certificate]>, Arc<str>)> {
    let (mut roots, mut id) = load_ca_files(&loc.ca_files)?;
    if !loc.endpoint.starts_with("http://") {
        roots.extend(system_roots().iter().cloned());
        id.update(b"system roots");
    }
    Ok((roots.into(), hex::encode(id.finalize()).into()))
}

fn part_size(part_index: usize) -> usize {
    SINGLE_PUT_MAX << (part_index / PARTS_PER_SIZE).min(9)
}

/// The URL a bucket's requests start with: `scheme://host/bucket` for
/// path-style (object_store appends the bucket itself, so the endpoint as
/// is), `scheme://bucket.host` for virtual-hosted.
fn base_url(endpoint: &str, bucket: &str, virtual_hosted: bool) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if !virtual_hosted {
        return endpoint.to_string();
    }
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
        None => format!("https://{bucket}.{endpoint}"),
    }
}

/// Reads the PEM CA files a location trusts besides the system's roots;
/// with the hash of what they hold.
fn load_ca_files(files: &[String]) -> Result<(Vec<Certificate>, Sha256)> {
    let mut certs = Vec::new();
    let mut id = Sha256::new();
    for file in files {
        let pem = std::fs::read(file).map_err(|e| Error::Config(format!("CA file {file}: {e}")))?;
        id.update((pem.len() as u64).to_le_bytes());
        id.update(&pem);
        let found = Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("CA file {file}: {e}")))?;
        if found.is_empty() {
            return Err(Error::Config(format!(
                "CA file {file} holds no PEM certificate"
            )));
        }
        certs.extend(found);
    }
    Ok((certs, id))
}

fn builder(
    loc: &S3Location,
    creds: &Credentials,
    region: &str,
    connector: LimitedConnector,
) -> Result<AmazonS3Builder> {
    // Never from_env(): the environment may carry settings (AWS_CA_BUNDLE,
    // AWS_ENDPOINT...) meant for other tools; only what is read below counts.
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        .with_region(region)
        // Path-style works with MinIO and most S3-compatible servers, AWS
        // included; the location asks for virtual-hosted where only that
        // works (then the endpoint below names the bucket).
        .with_virtual_hosted_style_request(loc.virtual_hosted)
        // We hash every byte ourselves; signing the payload would hash it a
        // second time.
        .with_unsigned_payload(true)
        // Every request counts against its endpoint's bound (limit.rs).
        .with_http_connector(connector);
    if !loc.endpoint.is_empty() {
        b = b.with_endpoint(base_url(&loc.endpoint, &loc.bucket, loc.virtual_hosted));
    }

    let have_keys = !creds.access_key_id.is_empty() || !creds.secret_access_key.is_empty();
    if !loc.role_arn.is_empty() {
        // object_store assumes a role only through web identity (EKS/IRSA
        // style); it cannot assume a role with static keys.
        if have_keys {
            return Err(Error::Config(
                "role_arn cannot be combined with an access key: the role is assumed through \
                 AWS web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
                    .into(),
            ));
        }
        let Some(token_file) = env("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Err(Error::Config(format!(
                "role_arn {} needs AWS web identity: set AWS_WEB_IDENTITY_TOKEN_FILE",
                loc.role_arn
            )));
        };
        b = b
            .with_config(AmazonS3ConfigKey::RoleArn, &loc.role_arn)
            .with_config(AmazonS3ConfigKey::WebIdentityTokenFile, token_file);
        if let Some(v) = env("AWS_ROLE_SESSION_NAME") {
            b = b.with_config(AmazonS3ConfigKey::RoleSessionName, v);
        }
        if let Some(v) = env("AWS_ENDPOINT_URL_STS") {
            b = b.with_config(AmazonS3ConfigKey::StsEndpoint, v);
        }
    } else if have_keys {
        b = b
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key);
        if !creds.session_token.is_empty() {
            b = b.with_token(&creds.session_token);
        }
    } else if let (Some(id), Some(secret)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = env("AWS_SESSION_TOKEN") {
            b = b.with_token(token);
        }
    }
    // Otherwise object_store falls back to instance / container credentials.
    Ok(b)
}

impl S3Storage {
    #[cfg(test)]
    pub fn new(loc: &S3Location, creds: &Credentials) -> Result<Self> {
        Self::with_options(loc, creds, &OpenOptions::default())
    }

    pub fn with_options(loc: &S3Location, creds: &Credentials, opts: &OpenOptions) -> Result<Self> {
        match loc.compression.as_str() {
            "" | "none" => {}
            other => {
                return Err(Error::Config(format!(
                    "compression {other} is not supported; use none"
                )))
            }
        }
        if loc.bucket.is_empty() {
            return Err(Error::Config("S3 bucket is empty".into()));
        }
        let region = if !loc.region.is_empty() {
            loc.region.clone()
        } else {
            env("AWS_REGION").unwrap_or_else(|| "us-east-1".to_string())
        };
        let prefix = loc.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_name(&prefix)
                .map_err(|_| Error::Config(format!("invalid S3 prefix {:?}", loc.prefix)))?;
        }

        // Transient failures (connection refused, 5xx, SlowDown, resets
        // before a request was sent) are retried with exponential backoff
        // and jitter (object_store's) for as long as the retry window lasts,
        // so an endpoint that restarts mid-job is waited for. Only probe()
        // fails fast on a dead endpoint.
        let window = opts
            .retry_window
            .unwrap_or_else(crate::default_retry_window);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            // The window bounds the retries, not their count.
            max_retries: if window.is_zero() { 0 } else { 100_000 },
            retry_timeout: window,
        };
        let (roots, trust) = roots_for(loc)?;
        let connector = LimitedConnector::new(opts.pacer.clone()).trusting(trust);
        let base_opts = with_roots(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(3))
                .with_read_timeout(Duration::from_secs(30)),
            &roots,
        );
        let build = |retry: RetryConfig, opts: ClientOptions| -> Result<Arc<AmazonS3>> {
            let s = builder(loc, creds, &region, connector.clone())?
                .with_retry(retry)
                .with_client_options(opts)
                // After the client options, which carry (and would reset)
                // this flag.
                .with_allow_http(loc.endpoint.starts_with("http://"))
                .build()
                .map_err(|e| Error::Config(format!("S3 location {}: {e}", loc.bucket)))?;
            Ok(Arc::new(s))
        };
        // Parts grow to a few hundred MiB only for objects of hundreds of GB;
        // 5 minutes per request leaves room for those on a slow link.
        let store = build(
            retry.clone(),
            base_opts.clone().with_timeout(Duration::from_secs(300)),
        )?;
        let reader = build(retry, base_opts.with_timeout_disabled())?;
        let prober = build(
            RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
                max_retries: 1,
                retry_timeout: Duration::from_secs(2),
            },
            with_roots(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(4)),
                &roots,
            ),
        )?;

        let endpoint = if loc.endpoint.is_empty() {
            format!("https://s3.{region}.amazonaws.com")
        } else {
            loc.endpoint.trim_end_matches('/').to_string()
        };
        Ok(Self {
            store,
            reader,
            prober,
            roots,
            connector,
            virtual_hosted: loc.virtual_hosted,
            endpoint,
            region,
            bucket: loc.bucket.clone(),
            prefix,
            description: Location::S3(loc.clone()).to_string(),
        })
    }

    /// The base URL requests go to, without a trailing '/'.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `key` (already escaped) in `bucket` on this endpoint,
    /// addressed the way this location's requests are.
    pub(crate) fn object_url(&self, bucket: &str, key: &str) -> String {
        if self.virtual_hosted {
            format!("{}/{key}", base_url(&self.endpoint, bucket, true))
        } else {
            format!("{}/{bucket}/{key}", self.endpoint)
        }
    }

    pub(crate) fn connector(&self) -> LimitedConnector {
        self.connector.clone()
    }

    /// `options` trusting what this location's clients trust.
    pub(crate) fn client_options(&self, options: ClientOptions) -> ClientOptions {
        with_roots(options, &self.roots)
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The credentials object_store signs with (static keys, web identity
    /// or instance credentials), for requests object_store cannot make.
    pub(crate) fn credential_provider(&self) -> &object_store::aws::AwsCredentialProvider {
        self.store.credentials()
    }

    /// The key prefix of the storage's directory `dir` ("" or a name
    /// ending in '/'), as a delimited listing takes it (`None`: the bucket).
    fn level_prefix(&self, dir: &str) -> Result<Option<String>> {
        if !dir.is_empty() {
            let Some(name) = dir.strip_suffix('/') else {
                return Err(Error::BadName(dir.to_string()));
            };
            check_name(name)?;
        }
        Ok(match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(dir.to_string()),
            (false, _) => Some(format!("{}/{dir}", self.prefix)),
        })
    }

    /// The storage's name of `key`; `None` for a key outside its prefix or
    /// a folder marker (a key ending in '/', which consoles create).
    fn name_of(&self, key: &str) -> Option<String> {
        let name = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        (!name.is_empty() && !name.ends_with('/')).then(|| name.to_string())
    }

    pub(crate) fn key(&self, name: &str) -> Result<Path> {
        check_name(name)?;
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        };
        Path::parse(&full).map_err(|_| Error::BadName(name.to_string()))
    }

    /// Runs an object_store call, turning its error into ours with the
    /// status of its last failed attempt.
    async fn call<T>(
        &self,
        name: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let (r, status) = observe(fut).await;
        r.map_err(|e| self.map_err(name, e, status))
    }

    /// Turns an object_store error into ours: transport failures by the
    /// kind of their `HttpError`, "try later" answers by the status of the
    /// last attempt (`status`, from [`observe`]); S3 error codes otherwise
    /// only appear in the response body text.
    fn map_err(&self, name: &str, e: object_store::Error, status: Option<u16>) -> Error {
        let detail = error_chain(&e);
        if is_unreachable(&e) {
            return Error::Unreachable {
                endpoint: self.endpoint.clone(),
                detail,
            };
        }
        if is_interrupted(&e) {
            return Error::Interrupted {
                endpoint: self.endpoint.clone(),
                detail,
            };
        }
        if detail.contains("NoSuchBucket") {
            return Error::NoBucket {
                bucket: self.bucket.clone(),
            };
        }
        let auth_codes = [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "InvalidToken",
            "ExpiredToken",
            "NotSignedUp",
            // List errors come back as Generic, with only the status text.
            "403 Forbidden",
            "401 Unauthorized",
        ];
        if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || auth_codes.iter().any(|c| detail.contains(c))
        {
            return Error::Auth {
                bucket: self.bucket.clone(),
                detail,
            };
        }
        if matches!(e, object_store::Error::NotFound { .. }) {
            return Error::NotFound(name.to_string());
        }
        if let Some(status) = status.filter(|s| *s >= 500 || *s == 429 || *s == 408) {
            return Error::Unavailable {
                endpoint: self.endpoint.clone(),
                name: name.to_string(),
                status,
                detail,
            };
        }
        Error::S3 {
            name: name.to_string(),
            detail,
        }
    }

    async fn put_inner(
        &self,
        name: &str,
        path: &Path,
        mut body: ByteStream,
        expect_sha256: Option<[u8; 32]>,
    ) -> Result<Written> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut part = PartBuf::default();
        let mut part_index = 0usize;
        let mut upload = AbortOnDrop(None);
        let mut in_flight: JoinSet<(object_store::Result<()>, Option<u16>)> = JoinSet::new();

        // What this body holds of WHOLE_BUDGET while it may still go whole.
        let mut whole = WholeHold::default();

        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                let mut pending = Vec::new();
                if upload.0.is_none() {
                    if whole.admit(whole_budget(), part.len + chunk.len()) {
                        part.push(chunk);
                        continue;
                    }
                    // Too large to go whole: what is held goes as the first
                    // parts of a multipart upload.
                    let u = self.call(name, self.store.put_multipart(path)).await?;
                    upload.0 = Some(u);
                    pending = std::mem::take(&mut part.chunks);
                    part.len = 0;
                }
                pending.push(chunk);
                for mut chunk in pending {
                    while !chunk.is_empty() {
                        let target = part_size(part_index);
                        // A full part is sent only once more data arrives,
                        // so the last part is never empty.
                        if part.len == target {
                            while in_flight.len() >= MAX_IN_FLIGHT {
                                self.join_one(name, &mut in_flight).await?;
                            }
                            if let Some(u) = upload.0.as_mut() {
                                in_flight.spawn(observe(u.put_part(part.take())));
                            }
                            part_index += 1;
                            continue;
                        }
                        let take = (target - part.len).min(chunk.len());
                        part.push(chunk.split_to(take));
                    }
                }
                // What was held whole is in parts now, bounded as any upload's.
                whole.release();
            }
            Ok(())
        }
        .await;

        let sha256: [u8; 32] = hasher.finalize().into();
        let mismatch =
            expect_sha256
                .filter(|e| *e != sha256)
                .map(|expected| Error::ChecksumMismatch {
                    name: name.to_string(),
                    expected: hex::encode(expected),
                    actual: hex::encode(sha256),
                });

        if upload.0.is_none() {
            outcome?;
            if let Some(e) = mismatch {
                return Err(e);
            }
            self.call(name, self.store.put(path, part.take())).await?;
            return Ok(Written { size, sha256 });
        }

        let finished: Result<()> = async {
            let upload = upload.0.as_mut().expect("the upload is held until it ends");
            outcome?;
            if let Some(e) = mismatch {
                return Err(e);
            }
            if part.len > 0 {
                in_flight.spawn(observe(upload.put_part(part.take())));
            }
            while !in_flight.is_empty() {
                self.join_one(name, &mut in_flight).await?;
            }
            self.call(name, upload.complete()).await?;
            Ok(())
        }
        .await;

        match finished {
            Ok(()) => {
                // Completed: nothing to abort.
                upload.0 = None;
                Ok(Written { size, sha256 })
            }
            Err(e) => {
                in_flight.shutdown().await;
                let Some(mut started) = upload.0.take() else {
                    return Err(e);
                };
                if let Err(abort_err) = started.abort().await {
                    tracing::warn!(
                        object = name,
                        error = %abort_err,
                        "could not abort multipart upload; an incomplete upload remains until the bucket's lifecycle rules remove it"
                    );
                }
                Err(e)
            }
        }
    }

    async fn join_one(
        &self,
        name: &str,
        set: &mut JoinSet<(object_store::Result<()>, Option<u16>)>,
    ) -> Result<()> {
        match set.join_next().await {
            None => Ok(()),
            Some(Ok((r, status))) => r.map_err(|e| self.map_err(name, e, status)),
            Some(Err(join)) => Err(Error::S3 {
                name: name.to_string(),
                detail: format!("part upload task failed: {join}"),
            }),
        }
    }
}

fn whole_budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(Semaphore::new(WHOLE_BUDGET)))
}

/// The share of a budget that one body holds while it may still go as one
/// PUT: what it buffers beyond [`SINGLE_PUT_MAX`].
#[derive(Default)]
struct WholeHold(Option<OwnedSemaphorePermit>);

impl WholeHold {
    /// Whether a body of `len` bytes may still go as one PUT: within
    /// [`SINGLE_PUT_MAX`] always, within [`SINGLE_PUT_LIMIT`] if the budget
    /// has room for the excess now. Never waits, so bodies that each hold a
    /// share cannot wait on one another.
    fn admit(&mut self, budget: &Arc<Semaphore>, len: usize) -> bool {
        if len <= SINGLE_PUT_MAX {
            return true;
        }
        if len > SINGLE_PUT_LIMIT {
            return false;
        }
        let held = self.0.as_ref().map_or(0, |p| p.num_permits());
        let Some(need) = (len - SINGLE_PUT_MAX).checked_sub(held).filter(|n| *n > 0) else {
            return true;
        };
        let Ok(more) = budget.clone().try_acquire_many_owned(need as u32) else {
            return false;
        };
        match self.0.as_mut() {
            Some(p) => p.merge(more),
            None => self.0 = Some(more),
        }
        true
    }

    fn release(&mut self) {
        self.0 = None;
    }
}

/// One part being filled: the body's own chunks, so nothing is copied.
#[derive(Default)]
struct PartBuf {
    chunks: Vec<Bytes>,
    len: usize,
}

impl PartBuf {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        self.chunks.push(b);
    }

    fn take(&mut self) -> PutPayload {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_iter().collect()
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A connection that broke under a request: reset, closed, cut short.
fn is_interrupted(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            if matches!(
                h.kind(),
                HttpErrorKind::Request | HttpErrorKind::Interrupted
            ) {
                return true;
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

/// Whether the chain holds a transport error (no answer, or a body cut
/// short), as opposed to an answer the server gave.
fn is_transport(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<object_store::client::HttpError>() || c.is::<std::io::Error>() {
            return true;
        }
        cur = c.source();
    }
    false
}

fn is_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            if matches!(h.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return true;
            }
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable
            ) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        expect_sha256: Option<[u8; 32]>,
    ) -> Result<Written> {
        let path = self.key(name)?;
        self.put_inner(name, &path, body, expect_sha256).await
    }

    async fn put_bytes(&self, name: &str, data: Bytes) -> Result<Written> {
        self.put(
            name,
            Box::pin(futures::stream::once(async { Ok(data) })),
            None,
        )
        .await
    }

    async fn get(&self, name: &str) -> Result<ByteStream> {
        let path = self.key(name)?;
        let res = self.call(name, self.reader.get(&path)).await?;
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        let name = name.to_string();
        Ok(Box::pin(res.into_stream().map_err(move |e| {
            // Errors in the middle of a body are transport errors; the
            // classification needs no request context beyond these names.
            let detail = error_chain(&e);
            if is_unreachable(&e) {
                Error::Unreachable {
                    endpoint: endpoint.clone(),
                    detail,
                }
            } else if is_interrupted(&e) || is_transport(&e) {
                Error::Interrupted {
                    endpoint: endpoint.clone(),
                    detail,
                }
            } else {
                Error::S3 {
                    name: format!("{bucket}/{name}"),
                    detail,
                }
            }
        })))
    }

    async fn get_bytes(&self, name: &str) -> Result<Bytes> {
        crate::collect(self.get(name).await?).await
    }

    async fn head(&self, name: &str) -> Result<Option<u64>> {
        let path = self.key(name)?;
        match observe(self.store.head(&path)).await {
            (Ok(meta), _) => Ok(Some(meta.size)),
            (Err(object_store::Error::NotFound { .. }), _) => Ok(None),
            (Err(e), status) => Err(self.map_err(name, e, status)),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.key(name)?;
        match observe(self.store.delete(&path)).await {
            (Ok(()), _) | (Err(object_store::Error::NotFound { .. }), _) => Ok(()),
            (Err(e), status) => Err(self.map_err(name, e, status)),
        }
    }

    fn list(&self, prefix: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>> {
        let bad = prefix.starts_with('/')
            || prefix.contains("//")
            || prefix.split('/').any(|c| c == "." || c == "..");
        if bad {
            return Box::pin(futures::stream::once(futures::future::ready(Err(
                Error::BadName(prefix.to_string()),
            ))));
        }
        // object_store lists whole path segments, so list the deepest
        // directory the prefix names in full and filter the rest here.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full_dir = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{dir}", self.prefix),
        };
        let list_path = if full_dir.is_empty() {
            None
        } else {
            match Path::parse(&full_dir) {
                Ok(p) => Some(p),
                Err(_) => {
                    return Box::pin(futures::stream::once(futures::future::ready(Err(
                        Error::BadName(prefix.to_string()),
                    ))))
                }
            }
        };
        let want = prefix.to_string();
        let err_name = prefix.to_string();
        Box::pin(
            self.store
                .list(list_path.as_ref())
                .map_err(move |e| self.map_err(&err_name, e, None))
                .try_filter_map(move |meta| {
                    let keep = self
                        .name_of(meta.location.as_ref())
                        .filter(|n| n.starts_with(want.as_str()))
                        .map(|name| Entry {
                            name,
                            size: meta.size,
                        });
                    futures::future::ready(Ok(keep))
                }),
        )
    }

    fn list_dir(&self, dir: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>> {
        let key_prefix = match self.level_prefix(dir) {
            Ok(p) => p,
            Err(e) => return Box::pin(futures::stream::once(futures::future::ready(Err(e)))),
        };
        let dir = dir.to_string();
        let pages =
            futures::stream::try_unfold(Some(None), move |token: Option<Option<String>>| {
                let key_prefix = key_prefix.clone();
                let dir = dir.clone();
                async move {
                    // None: the last page was read.
                    let Some(page_token) = token else {
                        return Ok(None);
                    };
                    let opts = PaginatedListOptions {
                        delimiter: Some("/".into()),
                        page_token,
                        ..Default::default()
                    };
                    let page = match observe(self.store.list_paginated(key_prefix.as_deref(), opts))
                        .await
                    {
                        (Ok(page), _) => page,
                        (Err(e), status) => return Err(self.map_err(&dir, e, status)),
                    };
                    let entries: Vec<Result<Entry>> = page
                        .result
                        .objects
                        .into_iter()
                        .filter_map(|meta| {
                            let name = self.name_of(meta.location.as_ref())?;
                            Some(Ok(Entry {
                                name,
                                size: meta.size,
                            }))
                        })
                        .collect();
                    let next = page.page_token.map(Some);
                    Ok(Some((futures::stream::iter(entries), next)))
                }
            });
        Box::pin(pages.try_flatten())
    }

    async fn first_under(&self, dir: &str) -> Result<Option<String>> {
        let key_prefix = self.level_prefix(dir)?;
        let opts = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys: Some(1),
            ..Default::default()
        };
        match observe(self.store.list_paginated(key_prefix.as_deref(), opts)).await {
            (Ok(page), _) => {
                let more = page.page_token.is_some();
                let keys = page.result.objects.into_iter().map(|m| m.location);
                let found = keys
                    .chain(page.result.common_prefixes)
                    .find_map(|key| self.name_of(key.as_ref()));
                match found {
                    // The one key was none of this storage's (a folder
                    // marker) and more follow: not proof of emptiness.
                    None if more => match self.list(dir).next().await {
                        Some(entry) => Ok(Some(entry?.name)),
                        None => Ok(None),
                    },
                    found => Ok(found),
                }
            }
            (Err(e), status) => Err(self.map_err(dir, e, status)),
        }
    }

    async fn probe(&self) -> Result<()> {
        // A delimited list of the prefix is one cheap GET that names the
        // bucket (NoSuchBucket), checks the signature, and works on servers
        // that answer HEAD of a "directory" with a 500.
        let path = if self.prefix.is_empty() {
            None
        } else {
            Some(Path::from(self.prefix.as_str()))
        };
        let fut = self.prober.list_with_delimiter(path.as_ref());
        match tokio::time::timeout(PROBE_DEADLINE, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match self.map_err(&self.prefix, e, None) {
                Error::NotFound(_) => Ok(()),
                other => Err(other),
            },
            Err(_) => Err(Error::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: format!("no answer within {PROBE_DEADLINE:?}"),
            }),
        }
    }
}

/// A multipart upload whose put was dropped mid-way (the coordinator gave up
/// on the shard, the agent lost its caller) is aborted in the background, so
/// its parts do not linger on the server until a lifecycle rule finds them.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(mut upload) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "could not abort a cancelled multipart upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_go_whole_while_the_budget_holds_them() {
        const MIB: usize = 1 << 20;
        let budget = Arc::new(Semaphore::new(20 * MIB));
        let mut small = WholeHold::default();
        assert!(small.admit(&budget, SINGLE_PUT_MAX));
        assert_eq!(
            budget.available_permits(),
            20 * MIB,
            "the first part is free"
        );

        let mut a = WholeHold::default();
        assert!(a.admit(&budget, SINGLE_PUT_MAX + MIB));
        assert!(a.admit(&budget, SINGLE_PUT_MAX + 12 * MIB));
        assert_eq!(budget.available_permits(), 8 * MIB);
        // Past the limit a body goes in parts whatever the budget.
        let mut huge = WholeHold::default();
        assert!(!huge.admit(&budget, SINGLE_PUT_LIMIT + 1));

        // What is left is not enough for b's excess: b goes in parts, and
        // takes nothing from the budget for it.
        let mut b = WholeHold::default();
        assert!(!b.admit(&budget, SINGLE_PUT_MAX + 9 * MIB));
        assert_eq!(budget.available_permits(), 8 * MIB);

        a.release();
        assert_eq!(budget.available_permits(), 20 * MIB);
        assert!(b.admit(&budget, SINGLE_PUT_MAX + 9 * MIB));
        drop(b);
        assert_eq!(
            budget.available_permits(),
            20 * MIB,
            "a dropped hold gives back"
        );
    }

    #[test]
    fn base_url_by_addressing() {
        assert_eq!(
            base_url("http://127.0.0.1:9000/", "b", false),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            base_url("https://oss-cn-hangzhou.aliyuncs.com", "mo", true),
            "https://mo.oss-cn-hangzhou.aliyuncs.com"
        );
    }

    #[test]
    fn virtual_hosted_urls_name_the_bucket_in_the_host() {
        let loc = S3Location {
            endpoint: "https://cos.ap-shanghai.myqcloud.com".into(),
            bucket: "mo-1250000000".into(),
            virtual_hosted: true,
            ..Default::default()
        };
        let s = S3Storage::new(&loc, &Credentials::default()).unwrap();
        assert_eq!(
            s.object_url("other", "a/b"),
            "https://other.cos.ap-shanghai.myqcloud.com/a/b"
        );
        let path = S3Storage::new(
            &S3Location {
                virtual_hosted: false,
                ..loc
            },
            &Credentials::default(),
        )
        .unwrap();
        assert_eq!(
            path.object_url("other", "a/b"),
            "https://cos.ap-shanghai.myqcloud.com/other/a/b"
        );
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem").to_string_lossy().into_owned();
        let err = load_ca_files(std::slice::from_ref(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = load_ca_files(&[empty.to_string_lossy().into_owned()]).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
