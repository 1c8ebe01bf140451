//! The mo-br agent: runs next to one MatrixOne node and does the byte work.
//!
//! - [`inventory`]: what a backup takes from a node (SHARED objects, `ckp/`,
//!   `gc/`, launch configs, `logservice-data`) and what it skips, listed in
//!   a fixed order in bounded memory.
//! - [`sorted`]: the external merge sort behind that order.
//! - [`shard`]: copy, restore and verify a shard of files, in parallel,
//!   streaming and hashing every byte once.
//! - [`metrics`]: Prometheus metrics (exported with `--metrics_listen`).
//! - [`service`]: the gRPC service; handlers only start shard work and stream
//!   its events back.
//! - [`serve`]: runs the service on a listener or on in-process pipes.

pub mod inventory;
pub mod metrics;
pub mod registration;
pub mod service;
pub mod shard;
pub mod sorted;
pub mod throttle;

mod error;

pub use error::{Error, Result};
pub use service::AgentService;

use std::future::Future;

use mo_br_proto::agent::agent_server::AgentServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Serves the agent on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    service: AgentService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AgentServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Starts the agent on in-process pipes and returns a channel to it: the
/// embedded default's agent, same service, no port.
pub fn spawn_in_process(service: AgentService) -> tonic::transport::Channel {
    let (channel, incoming) = mo_br_proto::inproc::pair();
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(AgentServer::new(service))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = result {
            tracing::error!("in-process agent stopped: {e}");
        }
    });
    channel
}
