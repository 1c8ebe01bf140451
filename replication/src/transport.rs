//! Raft messages between nodes, over gRPC (`mobr.raft.Raft/Send`).
//!
//! Inbound: [`RaftService`] decodes each message and hands it to the node
//! task's network mailbox. Outbound: one task per peer drains a bounded
//! queue into batches and sends them on a lazy tonic channel. Delivery is
//! best effort: a full queue or a failed call drops messages, because raft
//! retransmits what matters (appends are re-sent after probing, heartbeats
//! and votes are periodic). Failures are reported back to raft
//! (`report_unreachable`, `report_snapshot`) so it stops streaming appends to
//! a dead peer and retries a failed snapshot.

use std::time::Duration;

use mo_br_security::Security;
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;

use crate::proto::raft_client::RaftClient;
use crate::proto::raft_server::{Raft, RaftServer};
use crate::proto::{RaftAck, RaftBatch};

/// Messages queued per peer before new ones are dropped.
pub(crate) const PEER_QUEUE: usize = 1024;
/// Messages sent in one gRPC call at most.
const MAX_BATCH: usize = 256;
/// Short, so a dead peer holds its queue up for little time; raft's own
/// timers decide what is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Long enough for a large snapshot on a slow link.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Snapshots travel in one message, so the default 4 MiB gRPC limit would
/// cap the state machine's size; allow far more.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// What the network tells the node task.
pub(crate) enum Net {
    /// A message from a peer, to `step`.
    Raft(Box<Message>),
    /// Sending to this peer failed.
    Unreachable(u64),
    /// A snapshot to this peer was delivered or failed.
    Snapshot(u64, SnapshotStatus),
}

/// The gRPC service peers send raft messages to. It holds only a weak
/// reference to the node's mailbox, so open connections cannot keep a
/// stopped node alive; a stopped node answers `unavailable`.
pub struct RaftService {
    mailbox: mpsc::WeakSender<Net>,
}

impl RaftService {
    pub(crate) fn server(mailbox: mpsc::WeakSender<Net>) -> RaftServer<RaftService> {
        RaftServer::new(RaftService { mailbox }).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(
        &self,
        request: tonic::Request<RaftBatch>,
    ) -> Result<tonic::Response<RaftAck>, tonic::Status> {
        let mailbox = self
            .mailbox
            .upgrade()
            .ok_or_else(|| tonic::Status::unavailable("raft node stopped"))?;
        for bytes in request.into_inner().messages {
            let m = Message::parse_from_bytes(&bytes)
                .map_err(|e| tonic::Status::invalid_argument(format!("raft message: {e}")))?;
            // Waiting here (instead of dropping) pushes back on a peer that
            // sends faster than this node steps.
            mailbox
                .send(Net::Raft(Box::new(m)))
                .await
                .map_err(|_| tonic::Status::unavailable("raft node stopped"))?;
        }
        Ok(tonic::Response::new(RaftAck {}))
    }
}

/// Starts the outbound task for peer `to` at `addr` ("host:port"); it runs
/// until the returned sender is dropped.
pub(crate) fn spawn_peer(
    to: u64,
    addr: &str,
    security: Security,
    mailbox: mpsc::WeakSender<Net>,
) -> mpsc::Sender<Message> {
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    tokio::spawn(peer_loop(to, addr.to_string(), security, rx, mailbox));
    tx
}

async fn peer_loop(
    to: u64,
    uri: String,
    security: Security,
    mut rx: mpsc::Receiver<Message>,
    mailbox: mpsc::WeakSender<Net>,
) {
    let endpoint = match security.endpoint(&uri) {
        Ok(e) => e
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true),
        Err(e) => {
            tracing::error!("raft peer {to}: bad address {uri}: {e}; nothing will be sent to it");
            // Keep draining so the node's sends never see a full queue.
            while rx.recv().await.is_some() {}
            return;
        }
    };
    // Lazy: connects on first use and reconnects after failures, so a peer
    // that is down at start or restarts later is picked up on its own.
    let mut client = RaftClient::new(security.connect_lazy(endpoint))
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let snapshot = batch
            .iter()
            .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
        let mut messages = Vec::with_capacity(batch.len());
        for m in &batch {
            match m.write_to_bytes() {
                Ok(b) => messages.push(b),
                Err(e) => tracing::error!("raft peer {to}: cannot encode a message: {e}"),
            }
        }
        let result = client.send(RaftBatch { messages }).await;
        let Some(mailbox) = mailbox.upgrade() else {
            return;
        };
        // try_send: reports are hints; losing one under load is harmless,
        // blocking this task on a busy node is not.
        match result {
            Ok(_) => {
                if failing {
                    tracing::info!("raft peer {to} at {uri} is reachable again");
                    failing = false;
                }
                if snapshot {
                    // Awaited, unlike the hints: raft keeps the peer paused
                    // in snapshot state until it hears the outcome.
                    let _ = mailbox
                        .send(Net::Snapshot(to, SnapshotStatus::Finish))
                        .await;
                }
            }
            Err(status) => {
                if !failing {
                    tracing::warn!("raft peer {to} at {uri} unreachable: {}", status.message());
                    failing = true;
                }
                if snapshot {
                    let _ = mailbox
                        .send(Net::Snapshot(to, SnapshotStatus::Failure))
                        .await;
                }
                let _ = mailbox.try_send(Net::Unreachable(to));
            }
        }
    }
}
