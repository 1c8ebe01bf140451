//! A generic raft-replicated state machine for the mo-br coordinators.
//!
//! The caller supplies a deterministic [`StateMachine`]; [`Node::start`]
//! puts it under raft (raft-rs 0.7) with durable storage in redb and a tonic
//! transport. Every node of the group runs the same state machine over the
//! same committed log.
//!
//! Layout:
//! - [`Node`] (node.rs): the cheap handle, and the one task that owns the
//!   `RawNode`, the state machine and the storage and runs the Ready loop.
//! - storage.rs: the raft log, hard state, conf state and last snapshot,
//!   kept in memory for raft and written to one redb file per Ready.
//! - transport.rs: the gRPC service peers send raft messages to, and one
//!   outbound task per peer with a bounded queue.
//! - [`proto`]: that service's wire types, from `proto/raft.proto`.
//! - logger.rs: raft-rs logs through slog; this forwards it to `tracing`.
//!
//! Reads: [`Node::read`] sees the local applied state, which may be stale on
//! a follower or on a deposed leader. For a linearizable read call
//! [`Node::read_index`] on the leader first, then [`Node::read`].

mod logger;
mod node;
mod storage;
mod transport;

/// The raft transport's gRPC types (`mobr.raft`): raft-rs messages travel
/// in them as opaque bytes.
pub mod proto {
    tonic::include_proto!("mobr.raft");
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use node::Node;
pub use transport::RaftService;

/// The gRPC path of raft messages between replicas, for authorization.
pub const SEND_METHOD: &str = "/mobr.raft.Raft/Send";

use mo_br_security::Security;

/// The replicated state. Every node applies the same entries in the same
/// order, so `apply` must be deterministic and do no I/O: anything it reads
/// besides `data` and its own state (clocks, files, randomness) would make
/// replicas diverge.
pub trait StateMachine: Send + 'static {
    /// Applies a committed entry; the returned bytes go back to the proposer
    /// (only on the node the proposal was made on).
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8>;
    /// The whole state, for log compaction and for followers too far behind.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state by one produced by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]);
}

#[derive(Debug, Clone)]
pub struct Config {
    /// This node's raft id (non-zero).
    pub id: u64,
    /// Every voter's id -> "host:port" of its gRPC server, including self.
    /// On the first start it is the initial membership; afterwards the
    /// membership comes from disk and this map is only the address book.
    pub peers: BTreeMap<u64, String>,
    /// Directory of the redb file (created if missing).
    pub dir: PathBuf,
    /// Raft's logical clock, e.g. 100 ms.
    pub tick: Duration,
    /// Ticks without a leader before an election, e.g. 10.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats, e.g. 2.
    pub heartbeat_ticks: usize,
    /// Snapshot the state machine and compact the log after this many
    /// applied entries since the last snapshot.
    pub snapshot_every: u64,
    /// How peers are called (TLS with this replica's certificate).
    pub security: Security,
}

impl Config {
    /// Defaults for a coordinator group: 100 ms ticks, 1 s election timeout,
    /// 200 ms heartbeats, a snapshot every 1000 entries.
    pub fn new(id: u64, peers: BTreeMap<u64, String>, dir: impl Into<PathBuf>) -> Config {
        Config {
            id,
            peers,
            dir: dir.into(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: 1000,
            security: Security::plaintext(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// This node is not the leader; `leader` is the one it knows of, with
    /// its address from [`Config::peers`].
    #[error("not the leader{}", match .leader {
        Some((id, addr)) => format!(" (the leader is node {id} at {addr})"),
        None => " (no leader is known)".to_string(),
    })]
    NotLeader { leader: Option<(u64, String)> },
    /// The entry (or read) was not committed within the bound. The outcome of
    /// a proposal is then unknown: it may still commit later.
    #[error(
        "no quorum: the coordinator cluster cannot commit (fewer than a majority of replicas are reachable)"
    )]
    NoQuorum,
    #[error("raft storage: {0}")]
    Storage(String),
    #[error("the raft node has shut down")]
    Shutdown,
    #[error("raft codec: {0}")]
    Codec(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    PreCandidate,
}

/// A node's view of the group, published after every round of the Ready loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Index of the last snapshot in storage (taken here or received from
    /// the leader); 0 if none.
    pub snapshot_index: u64,
}
