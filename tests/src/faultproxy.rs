//! A plain-HTTP front for an S3 server (s3s-fs) that plays an S3 under load:
//! it takes at most `capacity` requests per second and answers the others
//! `503 SlowDown` with S3's XML error body, as AWS does. Every request and
//! every connection is counted, so a test can tell how a client reacted.
//!
//! Requests go on unchanged (headers included: the SigV4 signature covers
//! the `Host` the client used, and s3s-fs checks it as received).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>";

/// What the proxy saw.
#[derive(Debug, Default)]
pub struct Counts {
    /// Every request received.
    pub requests: AtomicU64,
    /// Requests answered `503 SlowDown`.
    pub slowdowns: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
}

pub struct FaultProxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct State {
    upstream: SocketAddr,
    capacity: usize,
    /// When the requests of the last second came.
    recent: Mutex<VecDeque<Instant>>,
    counts: Arc<Counts>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl FaultProxy {
    /// Serves on a free loopback port, forwarding to `upstream` at most
    /// `capacity` requests in any second.
    pub fn start(upstream: SocketAddr, capacity: usize) -> anyhow::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let state = Arc::new(State {
            upstream,
            capacity,
            recent: Mutex::new(VecDeque::new()),
            counts: counts.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                state.counts.connections.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            counts,
            runtime: Some(runtime),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    pub fn slowdowns(&self) -> u64 {
        self.counts.slowdowns.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::Relaxed)
    }
}

impl State {
    /// Whether one more request fits in the last second's capacity.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() >= self.capacity {
            return false;
        }
        recent.push_back(now);
        true
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        // The body is read either way, as a server does before it answers.
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if !self.admit() {
            self.counts.slowdowns.fetch_add(1, Ordering::Relaxed);
            let mut res = answer(StatusCode::SERVICE_UNAVAILABLE, SLOW_DOWN.to_string());
            res.headers_mut()
                .insert("content-type", "application/xml".parse().expect("a header"));
            return res;
        }
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut up = Request::builder()
            .method(parts.method.clone())
            .uri(format!("http://{}{path}", self.upstream));
        for (k, v) in &parts.headers {
            up = up.header(k, v);
        }
        let up = match up.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match self.client.request(up).await {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                match body.collect().await {
                    Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
                    Err(e) => answer(StatusCode::BAD_GATEWAY, e.to_string()),
                }
            }
            Err(e) => answer(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
