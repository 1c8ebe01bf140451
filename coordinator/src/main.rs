//! `mo-br-coordinator`: serves the catalog and runs jobs.
//!
//! Two modes:
//! - cluster: `--id N --peers 1=h1:7101,2=h2:7101,3=h3:7101 --data_dir D`,
//!   a raft replica; agents register themselves (`mo-br-agent --coordinators`);
//! - single: `--agents a1:7201,... --meta_path F`, a local catalog and a
//!   fixed set of agents.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "mo-br-coordinator",
    version = mo_br_telemetry::VERSION,
    about = "mo-br coordinator: backup catalog and job planner"
)]
struct Args {
    /// Address to serve gRPC on (the CLI, agents and peer replicas).
    #[arg(
        long,
        default_value = "127.0.0.1:7101",
        env = "MO_BR_COORDINATOR_LISTEN"
    )]
    listen: String,
    /// This replica's raft id (cluster mode).
    #[arg(long)]
    id: Option<u64>,
    /// Every replica as id=host:port, comma-separated, this one included
    /// (cluster mode).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Directory of the raft log, hard state and snapshots (cluster mode).
    #[arg(long = "data_dir")]
    data_dir: Option<std::path::PathBuf>,
    /// Agents must heartbeat within this many milliseconds (cluster mode).
    #[arg(long = "agent_lease_ms", default_value_t = 3000)]
    agent_lease_ms: u64,
    /// Compact the raft log after this many entries (cluster mode).
    #[arg(long = "snapshot_every", default_value_t = 1000)]
    snapshot_every: u64,
    /// Upper bound of a shard's bytes: the unit of work handed to an agent
    /// and redone when it is lost.
    #[arg(long = "shard_bytes", default_value_t = 64 << 20)]
    shard_bytes: u64,
    /// How often an online backup renews MatrixOne's backup checker (ms);
    /// MatrixOne drops the protection 20 minutes after the last renewal.
    #[arg(long = "gc_renew_ms", default_value_t = 60_000)]
    gc_renew_ms: u64,
    /// Agents to hand work to, host:port, comma-separated (single mode).
    #[arg(long, value_delimiter = ',')]
    agents: Vec<String>,
    /// The catalog's durable log (single mode).
    #[arg(long = "meta_path", default_value = "./mo_br.meta")]
    meta_path: std::path::PathBuf,
    /// Serve Prometheus metrics over HTTP on this address (host:port, any
    /// path, e.g. /metrics). Off by default.
    #[arg(long = "metrics_listen", env = "MO_BR_COORDINATOR_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Also serve the gRPC health service alone, in plaintext, on this
    /// address (host:port): for Kubernetes' gRPC probes, which cannot do
    /// TLS. Off by default; the main port serves health too.
    #[arg(long = "health_listen", env = "MO_BR_COORDINATOR_HEALTH_LISTEN")]
    health_listen: Option<String>,
    /// Serve the read-only status page (running jobs, catalog chains,
    /// agents, raft role) on this address (host:port), with the same TLS
    /// and tokens as `--listen`: open https://host:port/ and log in with
    /// the reader or operator token. Off by default.
    #[arg(long = "status_listen", env = "MO_BR_COORDINATOR_STATUS_LISTEN")]
    status_listen: Option<String>,
    /// error, warn, info, debug, trace (debug and trace for mo-br's own
    /// code), or a filter such as `debug,h2=debug,raft=debug`.
    #[arg(long = "log_level", default_value = "info")]
    log_level: String,
    /// text, or json (one object a line).
    #[arg(long = "log_format", default_value = "text")]
    log_format: mo_br_telemetry::logs::LogFormat,
    #[command(flatten)]
    tls: mo_br_security::TlsArgs,
    /// The operators' bearer token (a file holding it); default
    /// `<tls_dir>/operator.token` if there. Clients may also use an
    /// operator certificate.
    #[arg(long = "operator_token_file", env = "MO_BR_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<std::path::PathBuf>,
    /// The read-only role's token (list, inspect, check); default
    /// `<tls_dir>/reader.token` if there.
    #[arg(long = "reader_token_file", env = "MO_BR_READER_TOKEN_FILE")]
    reader_token_file: Option<std::path::PathBuf>,
    /// A TOML file of S3 keys ([[s3]] by endpoint and bucket) and MatrixOne
    /// passwords ([[matrixone]] by host, port and user) for scheduled runs
    /// and for jobs carried on after a leader change; mode 600. Re-read on
    /// SIGHUP. Without it (or without a matching entry) S3 keys come from
    /// this process's AWS_* environment.
    #[arg(long = "credentials_file", env = "MO_BR_COORDINATOR_CREDENTIALS_FILE")]
    credentials_file: Option<std::path::PathBuf>,
}

impl Args {
    /// Token files from the flags, else those `mo_br certs init` put in
    /// `--tls_dir`.
    fn token_files(&self) -> mo_br_security::TokenFiles {
        let in_dir = |name: &str| {
            self.tls
                .tls_dir
                .as_ref()
                .map(|d| d.join(name))
                .filter(|p| p.is_file())
        };
        mo_br_security::TokenFiles {
            operator: self
                .operator_token_file
                .clone()
                .or_else(|| in_dir("operator.token")),
            reader: self
                .reader_token_file
                .clone()
                .or_else(|| in_dir("reader.token")),
        }
    }
}

fn parse_peers(list: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for p in list {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("--peers entry {p:?}: expected id=host:port"))?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("--peers entry {p:?}: the id must be a number"))?;
        if id == 0 {
            bail!("--peers entry {p:?}: ids start at 1");
        }
        peers.insert(id, addr.to_string());
    }
    Ok(peers)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    mo_br_telemetry::logs::init(&args.log_level, args.log_format)?;
    // Refused before anything starts: a shared or bad file is a setup error.
    let credentials = match &args.credentials_file {
        Some(path) => mo_br_coordinator::credentials::CredentialsFile::load(path)?,
        None => Default::default(),
    };
    let _exporter = match &args.metrics_listen {
        Some(addr) => {
            let exporter = mo_br_coordinator::metrics::install(addr)?;
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
        mo_br_security::Role::Replica,
        args.token_files(),
        addr,
    )?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    // Certificates, tokens and the credentials file are re-read on SIGHUP
    // (rotation without a restart).
    let mut reloaders = security.reloaders();
    if credentials.is_given() {
        reloaders.push(Box::new(credentials.clone()));
    }
    let _reloader = mo_br_security::reload_on_sighup(reloaders, shutdown.clone())?;
    let coordinator = if args.peers.is_empty() {
        if args.agents.is_empty() {
            bail!("give --agents (single coordinator) or --id/--peers/--data_dir (cluster)");
        }
        let mut agents = Vec::new();
        for a in &args.agents {
            let endpoint = security
                .endpoint(a)
                .with_context(|| format!("bad agent address {a}"))?
                .connect_timeout(Duration::from_secs(3));
            agents.push((a.clone(), security.connect_lazy(endpoint)));
        }
        let mut c = mo_br_coordinator::Coordinator::open_with(
            &args.meta_path,
            agents,
            security.clone(),
            credentials,
        )
        .await?;
        c.shard_bytes = args.shard_bytes;
        c.gc_renew = Duration::from_millis(args.gc_renew_ms);
        if args.metrics_listen.is_some() {
            c.watch_fixed_agents()?;
            c.run_schedules()?;
            c.seed_backup_metrics().await;
        }
        c
    } else {
        let id = args.id.context("--peers needs --id")?;
        let peers = parse_peers(&args.peers)?;
        if !peers.contains_key(&id) {
            bail!("--id {id} is not among --peers");
        }
        let data_dir = args.data_dir.context("--peers needs --data_dir")?;
        mo_br_coordinator::Coordinator::start_cluster(mo_br_coordinator::ClusterConfig {
            id,
            peers,
            data_dir,
            agent_lease: Duration::from_millis(args.agent_lease_ms),
            snapshot_every: args.snapshot_every,
            shard_bytes: args.shard_bytes,
            gc_renew: Duration::from_millis(args.gc_renew_ms),
            security: security.clone(),
            credentials,
        })?
    };
    // The line tests and scripts wait for: the real address when port 0 was asked.
    println!(
        "mo-br-coordinator listening on {addr}{}",
        if security.is_tls() { " (TLS)" } else { "" }
    );
    let health = match &args.health_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --health_listen {a}"))?;
            println!("mo-br-coordinator health on {}", l.local_addr()?);
            let stop = shutdown.clone();
            Some(tokio::spawn(
                coordinator
                    .clone()
                    .serve_health(l, async move { stop.cancelled().await }),
            ))
        }
        None => None,
    };
    let status = match &args.status_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on --status_listen {a}"))?;
            let status_addr = l.local_addr()?;
            // The page shows the catalog: off loopback it needs TLS and
            // auth like the gRPC port (or --insecure).
            if let Some(w) = mo_br_security::policy::check_listen(
                status_addr,
                security.server_tls().is_some(),
                !security.authenticator().is_allow_all(),
                args.tls.insecure,
            )? {
                tracing::warn!("--status_listen: {w}");
            }
            let scheme = if security.server_tls().is_some() {
                "https"
            } else {
                "http"
            };
            println!("mo-br-coordinator status page on {scheme}://{status_addr}/");
            let stop = shutdown.clone();
            Some(tokio::spawn(mo_br_coordinator::status::serve(
                coordinator.clone(),
                l,
                async move { stop.cancelled().await },
            )))
        }
        None => None,
    };
    let served = coordinator
        .clone()
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        })
        .await;
    shutdown.cancel();
    if let Some(h) = health {
        h.await??;
    }
    if let Some(s) = status {
        s.await??;
    }
    // Jobs, adopted backups and the leader's duties stop where they stand
    // (the catalog keeps what is left for the next leader); raft's storage
    // is closed cleanly.
    coordinator.shutdown().await;
    served?;
    Ok(())
}
