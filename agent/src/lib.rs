//! The mo-br agent: runs next to one MatrixOne node and does the byte work.
//!
//! - [`inventory`]: what a backup takes from a node (SHARED objects, `ckp/`,
//!   `gc/`, launch configs, `logservice-data`) and what it skips, listed in
//!   a fixed order in bounded memory.
//! - [`shard`]: copy, restore and verify a shard of files, in parallel,
//!   streaming and hashing every byte once.
//! - [`codec`]: zstd on the copy path (one frame per file, streamed; files
//!   that do not shrink stay raw) and back on restore and verify.
//! - [`metrics`]: Prometheus metrics (exported with `--metrics_listen`).
//! - [`service`]: the gRPC service; handlers only start shard work and stream
//!   its events back.
//! - [`serve`]: runs the service on a listener or on in-process pipes.

pub mod codec;
pub mod fence;
pub mod inventory;
pub mod metrics;
pub mod registration;
pub mod served;
pub mod service;
pub mod shard;
pub mod throttle;

mod error;

pub use error::{Error, Result};
pub use service::AgentService;

use std::future::Future;

use mo_br_proto::agent::agent_server::AgentServer;
use mo_br_security::auth::MethodPolicy;
use mo_br_security::{Permission, Security};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Who may call what: only coordinator replicas hand out work.
fn policy() -> MethodPolicy {
    [
        ("Info", "ask an agent who it is"),
        ("Inventory", "list a node's files"),
        ("CopyShard", "copy a node's files"),
        ("RestoreShard", "restore files"),
        ("VerifyShard", "verify files"),
    ]
    .into_iter()
    .fold(MethodPolicy::new(), |p, (method, action)| {
        p.method(
            format!("/mobr.agent.Agent/{method}"),
            Permission::AgentWork,
            action,
        )
    })
    // Reflection: a replica's or an operator's certificate (agents take no
    // tokens).
    .standard_services(Permission::Read)
}

/// Serves the agent on `listener` until `shutdown` completes, with TLS and
/// every call authorized when `security` says so.
pub async fn serve(
    listener: TcpListener,
    service: AgentService,
    security: &Security,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // An agent serves as long as it runs: it has no state of its own that
    // could make it unable to work (its coordinator decides what it does).
    let (_health_reporter, health) = mo_br_proto::standard::health();
    let (reflection, reflection_v1alpha) = mo_br_proto::standard::reflection();
    let router = tonic::transport::Server::builder()
        .layer(security.layer(policy()))
        .add_service(AgentServer::new(service))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha);
    match security.server_tls() {
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

/// Serves only the standard health service (always SERVING), in plaintext,
/// on `listener` until `shutdown`: for kubelet's gRPC probes, which speak
/// neither TLS nor tokens.
pub async fn serve_health(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = mo_br_proto::standard::health();
    tonic::transport::Server::builder()
        .add_service(health)
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
