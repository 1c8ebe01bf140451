//! Joining a coordinator cluster: register once, then heartbeat the leader
//! so it keeps this agent's lease. Any replica may be asked; a follower
//! answers with the leader's address and the agent moves there. When no
//! replica answers, the agent keeps trying: it is the coordinators' job to
//! notice it is gone (its lease expires) and the agent's to come back.

use std::time::Duration;

use std::collections::HashMap;

use mo_br_proto::coordinator::registry_client::RegistryClient;
use mo_br_proto::coordinator::{AgentHeartbeat, AgentRegistration};
use mo_br_security::Security;

use crate::fence::Fence;
use tonic::transport::Channel;

/// Heartbeats per lease: a couple may be lost before the lease runs out.
const BEATS_PER_LEASE: u32 = 3;
const RETRY: Duration = Duration::from_millis(300);

/// Registers `me` with the cluster at `coordinators` (host:port) and keeps
/// heartbeating until the task is dropped; calls go out as `security` says
/// (TLS with the agent's certificate).
pub async fn run(
    coordinators: Vec<String>,
    me: AgentRegistration,
    security: Security,
    fence: Fence,
) {
    // One channel per replica, reconnecting on its own: no handshake per beat.
    let mut channels: HashMap<String, Channel> = HashMap::new();
    let mut at = 0usize;
    let mut leader_hint: Option<String> = None;
    let mut registered = false;
    loop {
        let addr = leader_hint
            .clone()
            .unwrap_or_else(|| coordinators[at % coordinators.len()].clone());
        let channel = match channels.get(&addr) {
            Some(c) => Ok(c.clone()),
            None => security.endpoint(&addr).map(|e| {
                let c = security.connect_lazy(
                    e.connect_timeout(Duration::from_secs(1))
                        .timeout(Duration::from_secs(2)),
                );
                channels.insert(addr.clone(), c.clone());
                c
            }),
        };
        let reply = async {
            let channel = channel.map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            let mut client = RegistryClient::new(channel);
            if registered {
                client.heartbeat(AgentHeartbeat { id: me.id.clone() }).await
            } else {
                client.register(me.clone()).await
            }
        }
        .await;
        match reply.map(|r| r.into_inner()) {
            Ok(r) if !r.leader.is_empty() => {
                leader_hint = Some(r.leader);
                continue;
            }
            Ok(r) if r.lease_ms == 0 => {
                // A follower that knows no leader yet (an election).
                leader_hint = None;
                at += 1;
                tokio::time::sleep(RETRY).await;
            }
            Ok(r) => {
                fence.observe(r.term);
                if !registered {
                    tracing::info!("registered with the coordinator at {addr}");
                }
                registered = true;
                let beat = Duration::from_millis(r.lease_ms) / BEATS_PER_LEASE;
                tokio::time::sleep(beat.max(Duration::from_millis(50))).await;
            }
            Err(status) => {
                if status.code() == tonic::Code::NotFound {
                    // A leader that has not heard of us: register again.
                    registered = false;
                } else if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) {
                    // Configuration, not weather: say so where it is seen.
                    tracing::warn!(
                        "coordinator {addr} refused this agent: {}",
                        status.message()
                    );
                    leader_hint = None;
                    at += 1;
                } else {
                    tracing::debug!("coordinator {addr}: {}", status.message());
                    leader_hint = None;
                    at += 1;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
