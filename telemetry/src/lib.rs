//! The Prometheus endpoint shared by the coordinator and the agent: one
//! exporter setup, so both serve the same format with the same buckets;
//! and their logs ([`logs`]).

pub mod logs;

use std::net::{SocketAddr, ToSocketAddrs};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Histogram buckets of every `*_duration_seconds` metric: a shard takes
/// from tens of milliseconds to minutes on slow S3.
pub const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad --metrics_listen address {addr}: {detail}")]
    Address { addr: String, detail: String },
    #[error("cannot serve metrics on {addr}: {detail}")]
    Serve { addr: String, detail: String },
    #[error("unknown --log_level \"{spec}\": {detail}")]
    LogLevel { spec: String, detail: String },
}

/// `host:port` to the first address it resolves to.
pub fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    let bad = |detail: String| Error::Address {
        addr: addr.to_string(),
        detail,
    };
    addr.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// Installs the global Prometheus recorder with an HTTP listener on `addr`
/// serving the text format on any path (so `/metrics`). Call once, inside a
/// tokio runtime.
pub fn install(addr: &str) -> Result<SocketAddr, Error> {
    let sock = resolve(addr)?;
    let serve = |detail: String| Error::Serve {
        addr: addr.to_string(),
        detail,
    };
    PrometheusBuilder::new()
        .with_http_listener(sock)
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
        .map_err(|e| serve(e.to_string()))?
        .install()
        .map_err(|e| serve(e.to_string()))?;
    Ok(sock)
}
