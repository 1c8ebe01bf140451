//! The mo-br coordinator: keeps the backup catalog and runs every job.
//!
//! Layout:
//! - [`catalog`]: the catalog as a state machine: over a local durable
//!   command log, or replicated by raft over a group of coordinators.
//! - [`jobs`]: backup, restore, check, list, delete; each runs on its own
//!   task and streams events to the CLI; [`jobs::shards`] spreads files over
//!   agents with fenced assignments.
//! - [`leader`]: the per-replica supervisor: owns every task the
//!   coordinator starts, stops them on [`Coordinator::shutdown`], and
//!   carries out the leader's duties (adopting backups, releasing GC,
//!   cleaning up after restores) as leadership and the catalog change.
//! - [`agents`]: the agents work goes to and their leases.
//! - [`service`]: the gRPC services: the CLI's (followers forward to the
//!   leader) and the agents' registry.
//! - [`metrics`]: Prometheus metrics.
//! - [`status`]: the read-only status page (`--status_listen`).
//! - [`matrixone`]: the SQL connection to MatrixOne (snapshots, online
//!   backup); [`online`]: holding MatrixOne's GC during an online backup.
//!
//! This file is the front door: the [`Coordinator`] handle and the
//! constructors that start its supervisor.

pub mod agents;
pub mod catalog;
pub mod credentials;
pub mod jobs;
pub mod leader;
pub mod matrixone;
pub mod metrics;
pub mod online;
mod scheduler;
pub mod service;
pub mod status;

mod error;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use error::{Error, Result, LEADER_HEADER};

use agents::Agents;
use catalog::CatalogHandle;
use leader::{DriveGuard, Supervisor};
use mo_br_proto::coordinator::coordinator_server::CoordinatorServer;
use mo_br_proto::coordinator::registry_server::RegistryServer;
use mo_br_security::auth::AuthLayer;
use mo_br_security::Security;
use mo_br_storage::Credentials;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic::transport::Channel;
use tower::layer::util::{Identity, Stack};

/// gRPC message size limit between CLI and coordinator.
const MAX_MESSAGE: usize = 64 << 20;
/// How often a single coordinator asks its fixed agents whether they answer
/// (for `mo_br_coordinator_live_agents`).
const FIXED_AGENTS_EVERY: Duration = Duration::from_secs(5);
/// How long [`Coordinator::shutdown`] waits for its tasks to stop before it
/// aborts them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How long an in-process coordinator whose clients are all gone lets its
/// jobs wind down (remove what they wrote, release GC) before it stops.
const EMBEDDED_WIND_DOWN: Duration = Duration::from_secs(20);

/// A cheap handle to the coordinator's parts; every job gets a clone.
#[derive(Clone)]
pub struct Coordinator {
    pub catalog: CatalogHandle,
    pub agents: Agents,
    /// Upper bound of a shard's bytes.
    pub shard_bytes: u64,
    /// How often an online backup's GC checker is renewed.
    pub gc_renew: Duration,
    /// Owns the tasks this coordinator starts and the leader's duties.
    pub(crate) supervisor: Supervisor,
    /// MatrixOne passwords of online backups this replica drives.
    pub(crate) passwords: online::Passwords,
    /// How this replica serves and calls the leader, peers and agents.
    pub(crate) security: Security,
    /// The jobs running here and their progress, for the status page.
    pub(crate) live: status::LiveJobs,
    /// Keys and passwords for work no client attends (`--credentials_file`).
    pub credentials: credentials::CredentialsFile,
}

/// A replica of a coordinator cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub id: u64,
    /// Every replica's id and gRPC address, including this one.
    pub peers: BTreeMap<u64, String>,
    /// Where the raft log, hard state and snapshots live.
    pub data_dir: PathBuf,
    /// Agents must heartbeat within this.
    pub agent_lease: Duration,
    /// Compact the raft log after this many entries.
    pub snapshot_every: u64,
    /// Upper bound of a shard's bytes.
    pub shard_bytes: u64,
    /// How often an online backup's GC checker is renewed.
    pub gc_renew: Duration,
    /// TLS and who may call what, for every hop of this replica.
    pub security: Security,
    /// Keys and passwords for work no client attends.
    pub credentials: credentials::CredentialsFile,
}

impl Coordinator {
    fn new(catalog: CatalogHandle, agents: Agents, security: Security) -> Coordinator {
        Coordinator {
            catalog,
            agents,
            shard_bytes: jobs::shards::SHARD_BYTES,
            gc_renew: online::DEFAULT_RENEW,
            supervisor: Supervisor::default(),
            passwords: online::Passwords::default(),
            security,
            live: status::LiveJobs::default(),
            credentials: credentials::CredentialsFile::default(),
        }
    }

    /// A single coordinator over a local catalog at `meta_path`, with a fixed
    /// set of agents. Ends what a previous process left unfinished first
    /// (see [`leader::take_over_local`]); after that no leader's duties
    /// run: a local catalog always leads and only this process writes it.
    /// `security` is how it serves (its agents' channels are made by the
    /// caller).
    pub async fn open(
        meta_path: &Path,
        agents: Vec<(String, Channel)>,
        security: Security,
    ) -> Result<Coordinator> {
        Coordinator::open_with(meta_path, agents, security, Default::default()).await
    }

    /// [`Coordinator::open`] with a credentials file, in force already for
    /// the restores a previous process left and this one carries on.
    pub async fn open_with(
        meta_path: &Path,
        agents: Vec<(String, Channel)>,
        security: Security,
        credentials: credentials::CredentialsFile,
    ) -> Result<Coordinator> {
        let (c, _) =
            Coordinator::open_local(meta_path, agents, security, true, credentials).await?;
        Ok(c)
    }

    /// [`Coordinator::open`]; `resume_restores` is false for the embedded
    /// one, which lives only as long as one command: nobody could follow a
    /// restore it carried on in the background, so an interrupted restore
    /// waits for the same `mo_br restore` to be run again.
    async fn open_local(
        meta_path: &Path,
        agents: Vec<(String, Channel)>,
        security: Security,
        resume_restores: bool,
        credentials: credentials::CredentialsFile,
    ) -> Result<(Coordinator, Vec<String>)> {
        let mut c = Coordinator::new(
            CatalogHandle::open(meta_path)?,
            Agents::fixed(agents),
            security,
        );
        c.credentials = credentials;
        let notices = leader::take_over_local(&c, resume_restores).await?;
        Ok((c, notices))
    }

    /// Exports the last successful backup per target from the catalog (see
    /// [`metrics::seed_last_success`]).
    pub async fn seed_backup_metrics(&self) {
        let completed = self
            .catalog
            .read(|cat| {
                cat.backups
                    .values()
                    .filter(|b| b.state == catalog::BackupState::Complete)
                    .filter_map(|b| {
                        let at = b.complete_time.clone()?;
                        Some((
                            metrics::location_label(&b.location),
                            b.schedule.clone().unwrap_or_default(),
                            at,
                            b.size,
                            b.files,
                        ))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        metrics::seed_last_success(completed);
    }

    /// Keeps `mo_br_coordinator_live_agents` current for a fixed fleet (a
    /// single coordinator started with `--agents`) by asking each agent who
    /// it is every few seconds; the task is the supervisor's.
    pub fn watch_fixed_agents(&self) -> Result<()> {
        let agents = self.agents.clone();
        self.supervisor.spawn(async move {
            let mut every = tokio::time::interval(FIXED_AGENTS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let n = agents.reachable(FIXED_AGENTS_EVERY).await;
                metrics::set_live_agents(n);
            }
        })
    }

    /// A single coordinator for commands that only read the catalog (list,
    /// check, snapshots): an absent catalog reads as empty and is not
    /// created, and nothing is taken over: a backup marked running may be
    /// driven by another process right now.
    pub fn open_reader(
        meta_path: &Path,
        agents: Vec<(String, Channel)>,
        security: Security,
    ) -> Result<Coordinator> {
        Ok(Coordinator::new(
            CatalogHandle::open_if_present(meta_path)?,
            Agents::fixed(agents),
            security,
        ))
    }

    /// A replica of a raft group. Whichever replica leads adopts the running
    /// backups of the replicated state and carries them on.
    pub fn start_cluster(config: ClusterConfig) -> Result<Coordinator> {
        let mut raft = mo_br_replication::Config::new(config.id, config.peers, config.data_dir);
        raft.snapshot_every = config.snapshot_every;
        raft.security = config.security.clone();
        let catalog = CatalogHandle::start_raft(raft)?;
        let agents = Agents::registry(config.agent_lease, config.security.clone());
        let mut c = Coordinator::new(catalog, agents, config.security);
        c.shard_bytes = config.shard_bytes;
        c.gc_renew = config.gc_renew;
        c.credentials = config.credentials;
        c.supervisor.lead(c.clone())?;
        c.run_schedules()?;
        Ok(c)
    }

    /// Starts the scheduler (see [`scheduler`]): a daemon's, not the
    /// embedded default's, whose process lives for one command.
    pub fn run_schedules(&self) -> Result<()> {
        self.supervisor.spawn(scheduler::run(self.clone()))
    }

    /// Every service of this coordinator; `standard` adds the standard
    /// health and reflection services (not in-process: nobody probes those).
    fn router(&self, standard: bool) -> Router<Stack<AuthLayer, Identity>> {
        let cli = CoordinatorServer::new(service::CoordinatorService::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let registry = RegistryServer::new(service::RegistryService::new(self.clone()));
        let mut router = tonic::transport::Server::builder()
            .layer(self.security.layer(service::policy()))
            .add_service(cli)
            .add_service(registry);
        if standard {
            let (reporter, health) = mo_br_proto::standard::health();
            // Fails only once shut down, when nothing is served anyway.
            let _ = self.supervisor.spawn(report_health(self.clone(), reporter));
            let (reflection, reflection_v1alpha) = mo_br_proto::standard::reflection();
            router = router
                .add_service(health)
                .add_service(reflection)
                .add_service(reflection_v1alpha);
        }
        if let Some(node) = self.catalog.raft_node() {
            router = router.add_service(node.service());
        }
        router
    }

    /// Serves every service of this replica on `listener` until `shutdown`.
    /// Then call [`Coordinator::shutdown`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let router = self.router(true);
        match self.security.server_tls() {
            Some(tls) => {
                let incoming = mo_br_security::tls::incoming(listener, tls.clone());
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
        }
    }

    /// Serves only the standard health service, in plaintext, on `listener`
    /// until `shutdown`: for kubelet's gRPC probes, which speak neither TLS
    /// nor tokens. It says no more than SERVING or NOT_SERVING, as open as
    /// the metrics port.
    pub async fn serve_health(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let (reporter, health) = mo_br_proto::standard::health();
        // Fails only once shut down, when nothing is served anyway.
        let _ = self.supervisor.spawn(report_health(self.clone(), reporter));
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
    }

    /// Stops the coordinator: every task it started (jobs, adopted backups,
    /// clean-ups, the leader's duties) is stopped where it stands, waiting
    /// up to a few seconds before aborting; then the raft node stops. What
    /// is left unfinished is on record for whoever leads next.
    pub async fn shutdown(&self) {
        self.supervisor.shutdown(SHUTDOWN_WAIT).await;
        if let Some(node) = self.catalog.raft_node() {
            node.shutdown().await;
        }
    }

    /// Waits until no job is being driven here, or `limit` passes; returns
    /// whether it got idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        self.supervisor.wait_idle(limit).await
    }

    /// Starts driving backup `id` here unless it already is. `creds` are
    /// for its target; empty ones fall back to the environment.
    pub fn adopt(
        &self,
        id: &str,
        creds: Credentials,
        source_creds: Credentials,
        login: Option<matrixone::MoLogin>,
    ) {
        leader::adopt(self, id, creds, source_creds, login);
    }

    /// Marks `id` as driven by this replica (the job that planned it).
    pub(crate) fn claim(&self, id: &str) -> DriveGuard {
        self.supervisor.claim(id)
    }
}

/// How many jobs each coordinator this process embeds is driving. The CLI
/// holds no handle to them (each command connects on its own), so
/// [`wait_idle`] finds them here. A receiver keeps no coordinator alive.
static EMBEDDED: Mutex<Vec<watch::Receiver<usize>>> = Mutex::new(Vec::new());

/// Waits until no coordinator embedded in this process drives a job, or
/// `limit` passes; returns whether they got idle. The CLI calls it on
/// Ctrl-C so that cancelled jobs clean up (release GC, remove what they
/// wrote) before it exits.
pub async fn wait_idle(limit: Duration) -> bool {
    let embedded = EMBEDDED.lock().expect("embedded lock").clone();
    let deadline = tokio::time::Instant::now() + limit;
    for running in embedded {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !leader::wait_idle(running, left).await {
            return false;
        }
    }
    true
}

/// The embedded default: a coordinator in this process, reachable only
/// through the returned channel (no port), over the same gRPC service; and
/// notices for the user of the command it serves (interrupted restores it
/// leaves for that user to carry on).
pub async fn spawn_in_process(
    meta_path: &Path,
    agents: Vec<Channel>,
) -> Result<(Channel, Vec<String>)> {
    let (coordinator, notices) = Coordinator::open_local(
        meta_path,
        local_agents(agents),
        Security::plaintext(),
        false,
        Default::default(),
    )
    .await?;
    Ok((serve_in_process(coordinator), notices))
}

/// [`spawn_in_process`] for commands that only read the catalog (see
/// [`Coordinator::open_reader`]).
pub async fn spawn_reader_in_process(meta_path: &Path, agents: Vec<Channel>) -> Result<Channel> {
    let coordinator =
        Coordinator::open_reader(meta_path, local_agents(agents), Security::plaintext())?;
    Ok(serve_in_process(coordinator))
}

fn local_agents(agents: Vec<Channel>) -> Vec<(String, Channel)> {
    agents
        .into_iter()
        .enumerate()
        .map(|(i, ch)| (format!("local-{i}"), ch))
        .collect()
}

fn serve_in_process(coordinator: Coordinator) -> Channel {
    {
        let mut embedded = EMBEDDED.lock().expect("embedded lock");
        // Those whose coordinator is gone are closed.
        embedded.retain(|running| running.has_changed().is_ok());
        embedded.push(coordinator.supervisor.running());
    }
    let (channel, incoming) = mo_br_proto::inproc::pair();
    let router = coordinator.router(false);
    // Ends when the last clone of the channel is dropped.
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!("in-process coordinator stopped: {e}");
        }
        // The clients are gone; their jobs, cancelled, clean up first.
        coordinator.wait_idle(EMBEDDED_WIND_DOWN).await;
        coordinator.shutdown().await;
    });
    channel
}

/// Keeps the health service's status current: SERVING while this replica
/// knows a leader (its group has a quorum, so calls to it can succeed),
/// NOT_SERVING while it knows none. A single coordinator always serves.
async fn report_health(c: Coordinator, reporter: tonic_health::server::HealthReporter) {
    const SERVICES: [&str; 2] = ["mobr.coordinator.Coordinator", "mobr.coordinator.Registry"];
    reporter
        .set_service_status(
            mo_br_proto::standard::LIVENESS,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let mut changes = c.catalog.changes();
    let mut last = None;
    loop {
        let serving =
            c.catalog.raft_node().is_none() || changes.borrow_and_update().leader.is_some();
        if last != Some(serving) {
            mo_br_proto::standard::set(&reporter, &SERVICES, serving).await;
            tracing::info!(
                "health: {}",
                if serving {
                    "SERVING"
                } else {
                    "NOT_SERVING (no quorum)"
                }
            );
            last = Some(serving);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
