//! `mo-br-agent`: serves the agent gRPC service next to a MatrixOne node.

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "mo-br-agent",
    version = mo_br_telemetry::VERSION,
    about = "mo-br agent: copies a MatrixOne node's files for the coordinator"
)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:7201", env = "MO_BR_AGENT_LISTEN")]
    listen: String,
    /// This agent's id (default: the advertised address, which differs per host).
    #[arg(long)]
    id: Option<String>,
    /// Files copied at once per shard when a request does not say.
    #[arg(long, default_value_t = 32)]
    parallelism: usize,
    /// Serve Prometheus metrics over HTTP on this address (host:port, any
    /// path, e.g. /metrics). Off by default.
    #[arg(long = "metrics_listen", env = "MO_BR_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Read at most this many bytes per second over all shards (0: no limit).
    #[arg(long = "max_bytes_per_sec", default_value_t = 0)]
    max_bytes_per_sec: u64,
    /// Send at most this many S3 requests per second over all shards (0: no
    /// limit). S3's SlowDown lowers the rate further on its own.
    #[arg(long = "max_requests_per_sec", default_value_t = 0)]
    max_requests_per_sec: u64,
    /// How long a file's transient S3 failures (endpoint unreachable,
    /// connection reset, 5xx, SlowDown) are retried before the file fails,
    /// when the job does not say (e.g. 30s, 2m, 1h).
    #[arg(long = "retry_window", default_value = "2m", value_parser = humantime::parse_duration)]
    retry_window: std::time::Duration,
    /// Coordinator replicas to register with, host:port, comma-separated.
    /// Without it the agent only serves a coordinator started with --agents.
    #[arg(long, value_delimiter = ',', env = "MO_BR_COORDINATORS")]
    coordinators: Vec<String>,
    /// Address coordinators reach this agent at (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// The MatrixOne node this agent serves (default: the host name).
    #[arg(long)]
    node: Option<String>,
    /// That node's mo-data directory. The agent reads nothing of this host
    /// but it, the node's launch configs and the SHARED directory they name.
    #[arg(long = "data_dir")]
    data_dir: Option<std::path::PathBuf>,
    /// That node's launch config (default: etc/launch/launch.toml beside
    /// mo-data, MatrixOne's layout, if it is there).
    #[arg(long = "launch_config")]
    launch_config: Option<std::path::PathBuf>,
    /// The MatrixOne cluster this node belongs to: `host:port` of its SQL
    /// service, spelled as `mo_br backup --host H --port P` names it. A
    /// backup given only --host then goes through the agents that name it
    /// (else through MatrixOne's own BACKUP statement).
    #[arg(long, value_name = "HOST:PORT", env = "MO_BR_AGENT_MATRIXONE")]
    matrixone: Option<String>,
    /// Whether this agent can read the SHARED store (takes SHARED shards).
    #[arg(long = "reaches_shared", default_value_t = true, action = clap::ArgAction::Set)]
    reaches_shared: bool,
    /// Also serve the gRPC health service alone, in plaintext, on this
    /// address (host:port): for Kubernetes' gRPC probes, which cannot do
    /// TLS. Off by default; the main port serves health too.
    #[arg(long = "health_listen", env = "MO_BR_AGENT_HEALTH_LISTEN")]
    health_listen: Option<String>,
    /// error, warn, info, debug, trace (debug and trace for mo-br's own
    /// code), or a filter such as `debug,h2=debug,raft=debug`.
    #[arg(long = "log_level", default_value = "info")]
    log_level: String,
    /// text, or json (one object a line).
    #[arg(long = "log_format", default_value = "text")]
    log_format: mo_br_telemetry::logs::LogFormat,
    #[command(flatten)]
    tls: mo_br_security::TlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mo_br_telemetry::logs::init(&args.log_level, args.log_format)?;
    let _exporter = match &args.metrics_listen {
        Some(addr) => {
            let exporter = mo_br_agent::metrics::install(addr)?;
            tracing::info!("metrics on http://{}/metrics", exporter.addr);
            Some(exporter)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (security, warning) = mo_br_security::Security::daemon(
        &args.tls,
        mo_br_security::Role::Agent,
        Default::default(),
        addr,
    )?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Certificates are re-read on SIGHUP (rotation without a restart).
    let _reloader = mo_br_security::reload_on_sighup(security.reloaders(), shutdown.clone())?;
    // The line tests and scripts wait for: the real address when port 0 was asked.
    println!(
        "mo-br-agent listening on {addr}{}",
        if security.is_tls() { " (TLS)" } else { "" }
    );
    let advertise = args.advertise.clone().unwrap_or_else(|| addr.to_string());
    let id = args.id.unwrap_or_else(|| advertise.clone());
    let served =
        mo_br_agent::served::Served::node(args.data_dir.as_deref(), args.launch_config.as_deref())?;
    let fence = mo_br_agent::fence::Fence::default();
    let mut service = mo_br_agent::AgentService::new(id.clone(), args.parallelism)
        .serving(served)
        .with_fence(fence.clone());
    mo_br_storage::set_default_retry_window(args.retry_window);
    mo_br_storage::set_process_requests_per_sec(args.max_requests_per_sec);
    if args.max_bytes_per_sec > 0 {
        service = service.with_rate_limit(args.max_bytes_per_sec);
    }
    if !args.coordinators.is_empty() {
        let data_dir = match &args.data_dir {
            Some(d) => d
                .canonicalize()
                .with_context(|| format!("--data_dir {}", d.display()))?
                .display()
                .to_string(),
            None => String::new(),
        };
        // The launch config served, as the coordinator passes it back in a
        // backup that names no --data_dir: the given one, or MatrixOne's
        // layout beside mo-data.
        let launch_config = match &args.launch_config {
            Some(l) => Some(
                l.canonicalize()
                    .with_context(|| format!("--launch_config {}", l.display()))?,
            ),
            None => args
                .data_dir
                .as_deref()
                .and_then(|d| d.canonicalize().ok())
                .and_then(|d| d.parent().map(|root| root.join("etc/launch/launch.toml")))
                .filter(|l| l.is_file()),
        };
        let me = mo_br_proto::coordinator::AgentRegistration {
            id,
            address: advertise,
            node: args.node.clone().unwrap_or_else(|| {
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
            }),
            data_dir,
            reaches_shared: args.reaches_shared,
            capacity: args.parallelism as u32,
            matrixone: args
                .matrixone
                .clone()
                .unwrap_or_default()
                .trim()
                .to_string(),
            launch_config: launch_config
                .map(|l| l.display().to_string())
                .unwrap_or_default(),
        };
        tokio::spawn(mo_br_agent::registration::run(
            args.coordinators.clone(),
            me,
            security.clone(),
            fence,
        ));
    }
    let health = match &args.health_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --health_listen {a}"))?;
            println!("mo-br-agent health on {}", l.local_addr()?);
            let stop = shutdown.clone();
            Some(tokio::spawn(mo_br_agent::serve_health(l, async move {
                stop.cancelled().await
            })))
        }
        None => None,
    };
    mo_br_agent::serve(listener, service, &security, async {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    })
    .await?;
    shutdown.cancel();
    if let Some(h) = health {
        h.await??;
    }
    Ok(())
}
