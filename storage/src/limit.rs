//! A bound on concurrent requests per S3 endpoint, shared by every S3 client
//! this process opens (backup target, SHARED source, server-side copies).
//!
//! MatrixOne's own backup once deadlocked at parallelism 150: readers held
//! every connection of a bounded HTTP pool while they waited for a
//! connection to write with. The rule here that rules this out: a permit is
//! held only while one request runs, and nothing waits for another permit
//! while holding one.
//! - A request takes its endpoint's permit before it is sent and keeps it
//!   until its response body has been read or dropped: S3 can answer a
//!   CopyObject with `200` at once and the real result only at the end of a
//!   long body, so the request is not over at the headers.
//! - Except an object GET (no query string): its body is streamed by a
//!   caller at the caller's pace, and that caller may write somewhere (the
//!   same endpoint included) before it finishes reading. Its permit goes back
//!   when the headers arrive, so a reader never holds a permit while it waits.
//!   Open read streams are bounded by the caller's own parallelism instead.
//! - Bodies of requests other than an object GET are read at once by the
//!   code that sent them (object_store or `s3copy`), which takes no other
//!   permit meanwhile; retries wait for their backoff without a permit.
//!
//! Endpoints are told apart by `scheme://host:port` of each request, so two
//! storages on one server share one bound whatever their bucket.
//!
//! Every request also passes here, before its permit:
//! - the request-rate pacers ([`crate::pace`]): the process's (an agent's
//!   `--max_requests_per_sec`), the job's (from [`crate::OpenOptions`]) and
//!   the endpoint's own adaptive one, which halves the allowed rate on a
//!   `503`/`429` (S3's `SlowDown`) and recovers gradually;
//! - the request metrics ([`crate::metrics`]), one attempt at a time, so
//!   the client's own retries count too;
//! - the status of the last failed attempt is kept for the task (see
//!   [`observe`]), so a failure can be classified by status, not by text.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Uri};
use http_body::{Body, Frame, SizeHint};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    ReqwestConnector,
};
use object_store::{ClientConfigKey, ClientOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{self, Outcome};
use crate::pace::{Adaptive, Pacer};
use crate::{Error, Result};

tokio::task_local! {
    /// The HTTP status of the last attempt that failed with one, in the
    /// task running [`observe`].
    static LAST_STATUS: Cell<Option<u16>>;
}

/// Runs `fut`, returning with its output the status of its last attempt
/// that the server answered with an error status (5xx, 429...), if any: an
/// object_store error carries the status only in its text.
pub(crate) async fn observe<F: Future>(fut: F) -> (F::Output, Option<u16>) {
    LAST_STATUS
        .scope(Cell::new(None), async move {
            let out = fut.await;
            (out, LAST_STATUS.with(|c| c.get()))
        })
        .await
}

/// Concurrent requests per endpoint unless set otherwise: well under the
/// connection limits S3-compatible servers and proxies commonly have.
pub const DEFAULT_REQUESTS_PER_ENDPOINT: usize = 64;

/// Read once, when the first endpoint is used, if
/// [`set_default_requests_per_endpoint`] was not called: lets an operator
/// change the bound without a flag in every binary.
pub const REQUESTS_PER_ENDPOINT_ENV: &str = "MO_BR_S3_REQUESTS_PER_ENDPOINT";

/// 0: not set by the program (the environment or the default applies).
static DEFAULT_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Endpoint key -> its limiter. A std mutex: held only for a map lookup,
/// never across an await.
static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<Limiter>>>> = OnceLock::new();

#[derive(Debug)]
struct Limiter {
    semaphore: Arc<Semaphore>,
    limit: usize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    /// The request rate this endpoint tolerates, learnt from its SlowDowns.
    adaptive: Arc<Adaptive>,
}

/// What one endpoint's bound looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointUsage {
    pub limit: usize,
    /// Requests holding a permit now.
    pub in_flight: usize,
    /// The most requests that held a permit at once since the limit was set.
    pub peak: usize,
}

/// The bound for endpoints this process has not used yet; at least 1.
pub fn set_default_requests_per_endpoint(limit: usize) {
    DEFAULT_LIMIT.store(limit.max(1), Ordering::Relaxed);
}

fn default_limit() -> usize {
    match DEFAULT_LIMIT.load(Ordering::Relaxed) {
        0 => std::env::var(REQUESTS_PER_ENDPOINT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_REQUESTS_PER_ENDPOINT),
        n => n,
    }
}

/// Sets the bound of one endpoint (`http://host:port`, as in a location),
/// for requests that start from now on; requests already running finish
/// under the old bound.
pub fn set_endpoint_request_limit(endpoint: &str, limit: usize) -> Result<()> {
    let key = endpoint_key(endpoint)
        .ok_or_else(|| Error::Config(format!("invalid S3 endpoint {endpoint:?}")))?;
    let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
    // The rate learnt so far stays: the server has not changed.
    let adaptive = map
        .get(&key)
        .map(|l| l.adaptive.clone())
        .unwrap_or_else(|| Arc::new(Adaptive::new(&key)));
    map.insert(key, Arc::new(Limiter::new(limit.max(1), adaptive)));
    Ok(())
}

/// The bound and use of an endpoint, `None` if no request went there yet.
pub fn endpoint_usage(endpoint: &str) -> Option<EndpointUsage> {
    let key = endpoint_key(endpoint)?;
    let map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.get(&key).map(|l| EndpointUsage {
        limit: l.limit,
        in_flight: l.in_flight.load(Ordering::Relaxed),
        peak: l.peak.load(Ordering::Relaxed),
    })
}

fn registry() -> &'static Mutex<HashMap<String, Arc<Limiter>>> {
    LIMITERS.get_or_init(Default::default)
}

fn limiter_for(key: String) -> Arc<Limiter> {
    let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key.clone())
        .or_insert_with(|| Arc::new(Limiter::new(default_limit(), Arc::new(Adaptive::new(&key)))))
        .clone()
}

/// The request rate an endpoint is held to after its SlowDowns (requests
/// per second), `None` while it is not held to any; `None` too for an
/// endpoint not used yet.
pub fn endpoint_allowed_rate(endpoint: &str) -> Option<f64> {
    let key = endpoint_key(endpoint)?;
    let map = registry().lock().unwrap_or_else(|p| p.into_inner());
    map.get(&key)?.adaptive.allowed()
}

impl Limiter {
    fn new(limit: usize, adaptive: Arc<Adaptive>) -> Self {
        Limiter {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            adaptive,
        }
    }
}

/// `scheme://host:port`, lower-case, the port filled in from the scheme;
/// `None` if `endpoint` is not an absolute http(s) URL.
pub(crate) fn endpoint_key(endpoint: &str) -> Option<String> {
    let uri: Uri = endpoint.trim().trim_end_matches('/').parse().ok()?;
    uri_key(&uri)
}

fn uri_key(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "http") => 80,
        (None, "https") => 443,
        _ => return None,
    };
    Some(format!("{scheme}://{host}:{port}"))
}

/// A held permit; counts itself out of `in_flight` when dropped.
struct Permit {
    _permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn acquire(limiter: Arc<Limiter>) -> Permit {
    // The semaphore is never closed; should it be, the request goes
    // unbounded rather than failing.
    let permit = limiter.semaphore.clone().acquire_owned().await.ok();
    let now = limiter.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    limiter.peak.fetch_max(now, Ordering::Relaxed);
    Permit {
        _permit: permit,
        limiter,
    }
}

/// Builds object_store's usual reqwest client, with every request going
/// through its endpoint's bound, the request-rate pacers and the metrics.
#[derive(Debug, Default, Clone)]
pub(crate) struct LimitedConnector {
    /// The job's own request rate, on top of the process's.
    pub(crate) job_pacer: Option<Arc<Pacer>>,
    /// What the clients' TLS trusts (see [`Self::trusting`]); with it, they
    /// come from the process's shared pools.
    trust: Option<Arc<str>>,
}

impl LimitedConnector {
    pub(crate) fn new(job_pacer: Option<Arc<Pacer>>) -> Self {
        LimitedConnector {
            job_pacer,
            trust: None,
        }
    }

    /// Clients made by this connector come from a process-wide cache, one
    /// per set of options, shared by every storage whose roots `trust`
    /// names (an id of the exact certificates trusted). A storage is opened
    /// per shard; with a client of its own, each shard opened its own
    /// connections (about one per file in flight) and closed them at its
    /// end: a check of 20,000 small objects made 2,400 connections for
    /// 20,000 GETs. Shared, the connections stay warm from shard to shard
    /// and job to job, as reqwest keeps idle ones for 90 s.
    pub(crate) fn trusting(mut self, trust: Arc<str>) -> Self {
        self.trust = Some(trust);
        self
    }
}

/// The client settings that tell two of this crate's clients apart, besides
/// what they trust: every option the crate sets on one.
const POOL_SETTINGS: [ClientConfigKey; 6] = [
    ClientConfigKey::AllowHttp,
    ClientConfigKey::AllowInvalidCertificates,
    ClientConfigKey::NoSystemCertificates,
    ClientConfigKey::ConnectTimeout,
    ClientConfigKey::ReadTimeout,
    ClientConfigKey::Timeout,
];

/// The process's client for `trust` and `options`, made on first use and
/// kept for the process's life: one per CA set and kind of client it meets.
fn shared_client(trust: &str, options: &ClientOptions) -> object_store::Result<HttpClient> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, HttpClient>>> = OnceLock::new();
    let mut key = trust.to_string();
    for setting in &POOL_SETTINGS {
        key.push('|');
        key.push_str(&options.get_config_value(setting).unwrap_or_default());
    }
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(client) = clients.get(&key) {
        return Ok(client.clone());
    }
    let client = ReqwestConnector::default().connect(options)?;
    clients.insert(key, client.clone());
    Ok(client)
}

impl HttpConnector for LimitedConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = match &self.trust {
            Some(trust) => shared_client(trust, options)?,
            None => ReqwestConnector::default().connect(options)?,
        };
        Ok(HttpClient::new(LimitedService {
            inner,
            job_pacer: self.job_pacer.clone(),
        }))
    }
}

#[derive(Debug)]
struct LimitedService {
    inner: HttpClient,
    job_pacer: Option<Arc<Pacer>>,
}

#[async_trait::async_trait]
impl HttpService for LimitedService {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let op = metrics::op_of(&req);
        let Some(key) = uri_key(req.uri()) else {
            return self.inner.execute(req).await;
        };
        let streamed_by_caller = req.method() == Method::GET && req.uri().query().is_none();
        let limiter = limiter_for(key);
        // Paced before the permit is taken: a request waiting for its turn
        // holds no connection slot.
        if let Some(p) = crate::pace::process_pacer() {
            p.take().await;
        }
        if let Some(p) = &self.job_pacer {
            p.take().await;
        }
        limiter.adaptive.take().await;
        let permit = acquire(limiter.clone()).await;
        let started = Instant::now();
        let res = self.inner.execute(req).await;
        let outcome = match &res {
            Ok(r) => Outcome::Status(r.status().as_u16()),
            Err(e) => Outcome::Transport(e.kind()),
        };
        metrics::request(op, outcome, started.elapsed());
        if let Outcome::Status(status) = outcome {
            if status == 503 || status == 429 {
                limiter.adaptive.slow_down();
            }
            if status >= 400 {
                let _ = LAST_STATUS.try_with(|c| c.set(Some(status)));
            }
        }
        let res = res?;
        if streamed_by_caller {
            drop(permit);
            return Ok(res);
        }
        let (parts, body) = res.into_parts();
        let body = PermitBody {
            inner: body,
            permit: Some(permit),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// A response body that gives its request's permit back when it ends,
/// fails, or is dropped.
struct PermitBody {
    inner: HttpResponseBody,
    permit: Option<Permit>,
}

impl Body for PermitBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            endpoint_key("http://127.0.0.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            endpoint_key("HTTPS://S3.Example.com").as_deref(),
            Some("https://s3.example.com:443")
        );
        assert_eq!(endpoint_key("http://h").as_deref(), Some("http://h:80"));
        assert_eq!(endpoint_key("h:9000"), None);
        assert_eq!(endpoint_key(""), None);
    }

    #[tokio::test]
    async fn permits_bound_and_count() {
        let key = "http://limit-test.invalid:1".to_string();
        set_endpoint_request_limit(&key, 2).unwrap();
        let l = limiter_for(endpoint_key(&key).unwrap());
        assert_eq!(endpoint_allowed_rate(&key), None);
        let a = acquire(l.clone()).await;
        let b = acquire(l.clone()).await;
        // A third waits until one is returned.
        let third = tokio::spawn(acquire(l.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        drop(a);
        let c = third.await.unwrap();
        let u = endpoint_usage(&key).unwrap();
        assert_eq!((u.limit, u.in_flight, u.peak), (2, 2, 2));
        drop((b, c));
        assert_eq!(endpoint_usage(&key).unwrap().in_flight, 0);
    }
}
