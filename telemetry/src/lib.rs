//! The Prometheus endpoint shared by the coordinator and the agent: one
//! exporter setup, so both serve the same format with the same buckets,
//! the same `mo_br_build_info` and the same `process_*` metrics; and their
//! logs ([`logs`]).

pub mod logs;

use std::net::{SocketAddr, ToSocketAddrs};

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// `mo_br_build_info{version, git_commit}`, always 1: joins any series to
/// the build that produced it.
pub const BUILD_INFO: &str = "mo_br_build_info";

/// The commit this binary was built from (see build.rs), "unknown" when
/// built from a tarball.
pub const GIT_COMMIT: &str = env!("MO_BR_GIT_COMMIT");

/// What `--version` prints after the binary's name, the same for the CLI
/// and both daemons: an operator filing a bug can name the exact build.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MO_BR_GIT_COMMIT"),
    ", built ",
    env!("MO_BR_BUILD_DATE"),
    ")"
);

/// How often the `process_*` metrics are refreshed: the exporter has no
/// scrape hook, and a few seconds stale is fine for CPU and memory.
const PROCESS_EVERY: Duration = Duration::from_secs(5);

/// Histogram buckets of every `*_duration_seconds` metric: a shard takes
/// from tens of milliseconds to minutes on slow S3.
pub const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The whole-job duration histogram: its own buckets, as a backup takes
/// from seconds to a day. A `Full` matcher wins over the `duration_seconds`
/// suffix (the exporter tries full names first).
pub const JOB_DURATION_SECONDS: &str = "mo_br_coordinator_job_duration_seconds";
pub const JOB_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 86400.0,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad --metrics_listen address {addr}: {detail}")]
    Address { addr: String, detail: String },
    #[error("cannot serve metrics on {addr}: {detail}")]
    Serve { addr: String, detail: String },
    #[error("unknown --log_level \"{spec}\": {detail}")]
    LogLevel { spec: String, detail: String },
    #[error("unknown --log_format \"{format}\": use text or json")]
    LogFormat { format: String },
    #[error("cannot install the logger: {0}")]
    Logger(String),
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

/// What [`install`] started: the refresher of the process metrics, stopped
/// when this is dropped.
pub struct Exporter {
    pub addr: SocketAddr,
    process: tokio::task::JoinHandle<()>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.process.abort();
    }
}

/// Installs the global Prometheus recorder with an HTTP listener on `addr`
/// serving the text format on any path (so `/metrics`), records
/// `mo_br_build_info` for `version`, and keeps the `process_*` metrics
/// (CPU, memory, open files, threads) current. Call once, inside a tokio
/// runtime; keep the returned [`Exporter`] for the process's life.
pub fn install(addr: &str, version: &'static str) -> Result<Exporter, Error> {
    let sock = resolve(addr)?;
    let serve = |detail: String| Error::Serve {
        addr: addr.to_string(),
        detail,
    };
    PrometheusBuilder::new()
        .with_http_listener(sock)
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
        .map_err(|e| serve(e.to_string()))?
        .set_buckets_for_metric(
            Matcher::Full(JOB_DURATION_SECONDS.into()),
            JOB_DURATION_BUCKETS,
        )
        .map_err(|e| serve(e.to_string()))?
        .install()
        .map_err(|e| serve(e.to_string()))?;
    build_info(version);
    let collector = metrics_process::Collector::default();
    collector.describe();
    let process = tokio::spawn(async move {
        let mut every = tokio::time::interval(PROCESS_EVERY);
        loop {
            every.tick().await;
            collector.collect();
        }
    });
    Ok(Exporter {
        addr: sock,
        process,
    })
}

/// Records `mo_br_build_info` (a no-op without a recorder).
pub fn build_info(version: &'static str) {
    metrics::describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build this process runs."
    );
    metrics::gauge!(BUILD_INFO, "version" => version, "git_commit" => GIT_COMMIT).set(1.0);
}
