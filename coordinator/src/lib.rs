//! The mo-br coordinator: keeps the backup catalog and runs every job.
//!
//! - [`catalog`]: the catalog as a state machine over a durable command log,
//!   owned by one task ([`catalog::CatalogHandle`]).
//! - [`jobs`]: backup, restore, check, list, delete; each runs on its own
//!   task and streams events to the CLI; [`jobs::shards`] spreads files over
//!   agents.
//! - [`agents`]: the agents work goes to.
//! - [`service`]: the gRPC service the CLI calls.

pub mod agents;
pub mod catalog;
pub mod jobs;
pub mod service;

mod error;

use std::future::Future;
use std::path::Path;

pub use error::{Error, Result};

use agents::{AgentRef, Agents};
use catalog::{BackupState, CatalogHandle, Command};
use mo_br_proto::agent::agent_client::AgentClient;
use mo_br_proto::coordinator::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

/// A cheap handle to the coordinator's parts; every job gets a clone.
#[derive(Clone)]
pub struct Coordinator {
    pub catalog: CatalogHandle,
    pub agents: Agents,
}

impl Coordinator {
    /// Opens the catalog at `meta_path`. Backups left running by a previous
    /// process cannot be finished by this one: they are marked failed.
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
        for id in stale {
            catalog
                .propose(Command::BackupFailed {
                    id,
                    reason: "the coordinator stopped before the backup finished".into(),
                })
                .await?;
        }
        let agents = Agents::new(
            agents
                .into_iter()
                .map(|(name, ch)| AgentRef {
                    name,
                    client: AgentClient::new(ch)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                })
                .collect(),
        );
        Ok(Coordinator { catalog, agents })
    }

    fn server(&self) -> CoordinatorServer<service::CoordinatorService> {
        CoordinatorServer::new(service::CoordinatorService::new(self.clone()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// Serves the CLI-facing service on `listener` until `shutdown`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        tonic::transport::Server::builder()
            .add_service(self.server())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
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
    let server = coordinator.server();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = result {
            tracing::error!("in-process coordinator stopped: {e}");
        }
    });
    Ok(channel)
}
