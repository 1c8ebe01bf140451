//! The mo-br coordinator: keeps the backup catalog and runs every job.
//!
//! - [`catalog`]: the catalog as a state machine: over a local durable
//!   command log, or replicated by raft over a group of coordinators.
//! - [`jobs`]: backup, restore, check, list, delete; each runs on its own
//!   task and streams events to the CLI; [`jobs::shards`] spreads files over
//!   agents with fenced assignments.
//! - [`agents`]: the agents work goes to and their leases.
//! - [`service`]: the gRPC services: the CLI's (followers forward to the
//!   leader) and the agents' registry.
//! - [`metrics`]: Prometheus metrics.
//! - [`matrixone`]: the SQL connection to MatrixOne (snapshots, online backup).

pub mod agents;
pub mod catalog;
pub mod jobs;
pub mod matrixone;
pub mod metrics;
pub mod online;
pub mod service;

mod error;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::{Error, Result, LEADER_HEADER};

use agents::Agents;
use catalog::{BackupState, CatalogHandle};
use mo_br_format::manifest::Consistency;
use mo_br_proto::coordinator::coordinator_server::CoordinatorServer;
use mo_br_proto::coordinator::registry_server::RegistryServer;
use mo_br_storage::{Credentials, Location};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

/// gRPC message size limit between CLI and coordinator.
const MAX_MESSAGE: usize = 64 << 20;

/// A cheap handle to the coordinator's parts; every job gets a clone.
#[derive(Clone)]
pub struct Coordinator {
    pub catalog: CatalogHandle,
    pub agents: Agents,
    /// Jobs (backups, restores) this replica is driving now, so that a
    /// leader adopts or cleans up each once. Touched by the leader loop and
    /// by `Attach`; never held across an await.
    driving: Arc<Mutex<HashSet<String>>>,
    /// Upper bound of a shard's bytes.
    pub shard_bytes: u64,
    /// How often an online backup's GC checker is renewed.
    pub gc_renew: Duration,
    /// MatrixOne passwords of online backups this replica drives, by backup.
    /// Only ever in memory (never in the catalog): touched by jobs and by
    /// `Attach`, never held across an await.
    passwords: Arc<Mutex<HashMap<String, String>>>,
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
}

impl Coordinator {
    /// A single coordinator over a local catalog at `meta_path`, with a fixed
    /// set of agents. Backups left running by a previous process cannot be
    /// finished by this one (its client and credentials are gone): they are
    /// marked failed.
    pub async fn open(meta_path: &Path, agents: Vec<(String, Channel)>) -> Result<Coordinator> {
        let catalog = CatalogHandle::open(meta_path)?;
        let stale = catalog
            .read(|c| {
                c.backups
                    .values()
                    .filter(|r| r.state == BackupState::Running)
                    .map(|r| r.id.clone())
                    .collect::<Vec<_>>()
            })
            .await?;
        let c = Coordinator {
            catalog,
            agents: Agents::fixed(agents),
            driving: Arc::default(),
            shard_bytes: jobs::shards::SHARD_BYTES,
            gc_renew: online::DEFAULT_RENEW,
            passwords: Arc::default(),
        };
        for id in stale {
            jobs::backup::abandon(&c, &id).await;
        }
        // Restores are not resumed: what an interrupted one wrote goes.
        let restores = c
            .catalog
            .read(|cat| cat.restores.values().cloned().collect::<Vec<_>>())
            .await?;
        for rec in &restores {
            jobs::restore::abandon(&c, rec).await;
        }
        // A previous process that died mid online backup left MatrixOne's
        // GC stopped: release it now if a password is at hand.
        release_ended_holds(&c).await;
        Ok(c)
    }

    /// A replica of a raft group. Whichever replica leads adopts the running
    /// backups of the replicated state and carries them on.
    pub fn start_cluster(config: ClusterConfig) -> Result<Coordinator> {
        let mut raft = mo_br_replication::Config::new(config.id, config.peers, config.data_dir);
        raft.snapshot_every = config.snapshot_every;
        let catalog = CatalogHandle::start_raft(raft)?;
        let c = Coordinator {
            catalog,
            agents: Agents::registry(config.agent_lease),
            driving: Arc::default(),
            shard_bytes: config.shard_bytes,
            gc_renew: config.gc_renew,
            passwords: Arc::default(),
        };
        tokio::spawn(leader_loop(c.clone()));
        Ok(c)
    }

    fn router(&self) -> tonic::transport::server::Router {
        let cli = CoordinatorServer::new(service::CoordinatorService::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let registry = RegistryServer::new(service::RegistryService::new(self.clone()));
        let mut router = tonic::transport::Server::builder()
            .add_service(cli)
            .add_service(registry);
        if let Some(node) = self.catalog.raft_node() {
            router = router.add_service(node.service());
        }
        router
    }

    /// Serves every service of this replica on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        self.router()
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
    }

    /// Starts driving backup `id` here unless it already is. `creds` are
    /// for its target; empty ones fall back to the environment.
    pub fn adopt(&self, id: &str, creds: Credentials, login: Option<matrixone::MoLogin>) {
        if !self
            .driving
            .lock()
            .expect("driving lock")
            .insert(id.to_string())
        {
            return;
        }
        let guard = DriveGuard::new(self, id);
        let c = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            // Nobody watches an adopted job's events; `Attach` reads progress
            // from the replicated state instead.
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(async move { while rx.recv().await.is_some() {} });
            // Keys of a SHARED store on S3 come from the environment here.
            let source_creds = Credentials::default();
            match jobs::backup::drive(&c, &id, &creds, &source_creds, login, false, &tx).await {
                Ok(()) => tracing::info!("adopted backup {id} completed"),
                Err(e) => tracing::warn!("adopted backup {id}: {e}"),
            }
        });
    }

    pub(crate) fn remember_login(&self, backup: &str, login: &matrixone::MoLogin) {
        self.passwords
            .lock()
            .expect("passwords lock")
            .insert(backup.to_string(), login.password.clone());
    }

    pub(crate) fn forget_login(&self, backup: &str) {
        self.passwords
            .lock()
            .expect("passwords lock")
            .remove(backup);
    }

    pub(crate) fn known_password(&self, backup: &str) -> Option<String> {
        self.passwords
            .lock()
            .expect("passwords lock")
            .get(backup)
            .cloned()
    }

    /// Marks `id` as driven by this replica (the job that planned it).
    pub(crate) fn claim(&self, id: &str) -> DriveGuard {
        self.driving
            .lock()
            .expect("driving lock")
            .insert(id.to_string());
        DriveGuard::new(self, id)
    }
}

/// Jobs (backups, restores, clean-ups) being driven in this process, over
/// every coordinator in it: the embedded CLI waits for them to wind down
/// (release GC, clean up) before it exits on Ctrl-C.
static DRIVING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits until no job is being driven in this process, or `limit` passes;
/// returns whether it got idle.
pub async fn wait_idle(limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while DRIVING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Releases a claimed job when its driver ends. The job must already be in
/// `driving`.
pub(crate) struct DriveGuard {
    c: Coordinator,
    id: String,
}

impl DriveGuard {
    fn new(c: &Coordinator, id: &str) -> DriveGuard {
        DRIVING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        DriveGuard {
            c: c.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for DriveGuard {
    fn drop(&mut self) {
        self.c
            .driving
            .lock()
            .expect("driving lock")
            .remove(&self.id);
        DRIVING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Watches leadership. On the leader, adopts running backups (those whose
/// target needs no credentials beyond this process's environment; others
/// wait for the CLI's `Attach`) and keeps the raft gauges current.
async fn leader_loop(c: Coordinator) {
    let mut was_leader = false;
    loop {
        let l = c.catalog.leadership();
        metrics::set_raft(l.term, l.is_leader, l.leader_id, l.commit, l.applied);
        metrics::set_live_agents(c.agents.live().len());
        if l.is_leader {
            if !was_leader {
                tracing::info!("leading (term {})", l.term);
            }
            let jobs = c
                .catalog
                .read(|cat| {
                    cat.jobs
                        .values()
                        .map(|j| {
                            let hold = (j.meta.consistency == Consistency::Online)
                                .then(|| cat.gc_holds.get(&j.id).cloned())
                                .flatten();
                            (j.id.clone(), j.meta.location.clone(), hold)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
            for (id, location, hold) in jobs {
                let env_creds = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
                if !(matches!(location, Location::Filesystem { .. }) || env_creds) {
                    continue; // waits for the CLI to re-attach with keys
                }
                match hold {
                    // An online backup is adopted only with a password to
                    // renew and release its GC hold.
                    Some(hold) => {
                        if let Some(login) = online::login_for(&c, &hold) {
                            c.adopt(&id, Credentials::default(), Some(login));
                        }
                    }
                    None => c.adopt(&id, Credentials::default(), None),
                }
            }
            release_ended_holds(&c).await;
            abandon_orphaned_restores(&c, l.term).await;
        }
        was_leader = l.is_leader;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Removes what restores of earlier terms wrote: their leader was deposed
/// (and stopped them) or died. Each is cleaned once, in the background.
async fn abandon_orphaned_restores(c: &Coordinator, term: u64) {
    let orphans = c
        .catalog
        .read(move |cat| {
            cat.restores
                .values()
                .filter(|r| r.term < term)
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for rec in orphans {
        if c.driving.lock().expect("driving lock").contains(&rec.id) {
            continue;
        }
        let guard = c.claim(&rec.id);
        let c = c.clone();
        tokio::spawn(async move {
            let _guard = guard;
            jobs::restore::abandon(&c, &rec).await;
        });
    }
}

/// Releases MatrixOne GC holds whose backup has ended (completed, failed or
/// deleted) but whose release did not get through, e.g. because the leader
/// that held it died first.
async fn release_ended_holds(c: &Coordinator) {
    let holds = c
        .catalog
        .read(|cat| {
            cat.gc_holds
                .values()
                .filter(|h| {
                    cat.backups
                        .get(&h.backup)
                        .is_none_or(|b| b.state != BackupState::Running)
                })
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    metrics::set_gc_holds(holds.len());
    for hold in holds {
        if c.driving
            .lock()
            .expect("driving lock")
            .contains(&hold.backup)
        {
            continue;
        }
        match online::login_for(c, &hold) {
            Some(login) => {
                if let Err(e) = online::release(c, &hold.backup, &login).await {
                    tracing::warn!("releasing GC held by backup {}: {e}", hold.backup);
                }
            }
            None => tracing::warn!(
                "GC is held by ended backup {} but no MatrixOne password is known here (set MO_BR_MO_PASSWORD)",
                hold.backup
            ),
        }
    }
}

/// The embedded default: a coordinator in this process, reachable only
/// through the returned channel (no port), over the same gRPC service.
pub async fn spawn_in_process(meta_path: &Path, agents: Vec<Channel>) -> Result<Channel> {
    let named = agents
        .into_iter()
        .enumerate()
        .map(|(i, ch)| (format!("local-{i}"), ch))
        .collect();
    let coordinator = Coordinator::open(meta_path, named).await?;
    let (channel, incoming) = mo_br_proto::inproc::pair();
    let router = coordinator.router();
    tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!("in-process coordinator stopped: {e}");
        }
    });
    Ok(channel)
}
