//! The node: a cheap handle ([`Node`]) and the one task that owns the
//! `RawNode`, the storage and the state machine.
//!
//! Everything reaches the task through two mailboxes: commands from handles
//! (propose, read index, read, shutdown) and network events from the
//! transport (raft messages, unreachable peers, snapshot outcomes). The task
//! wakes on either or on the tick, then runs one round of the raft-rs Ready
//! loop (see [`Core::on_ready`]).
//!
//! A proposal is tagged with a context unique to this node's incarnation and
//! remembered under the log index raft gave it. When that index is applied,
//! the reply gets the state machine's result if the entry there is still
//! ours, or `NotLeader` if another leader's entry replaced it. Replies whose
//! caller gave up are dropped on the next tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant, MissedTickBehavior};

use crate::storage::{DiskStorage, Update};
use crate::transport::{self, Net, RaftService};
use crate::{Config, Error, Result, Role, StateMachine, Status};

/// How long `propose` and `read_index` wait for a leader and a commit
/// before answering `NoQuorum`: a few election timeouts' worth.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);
/// Command mailbox: handles wait when it is full.
const COMMANDS: usize = 1024;
/// Network mailbox: the gRPC service waits when it is full.
const NETWORK: usize = 4096;
/// Mailbox items handled per round before the Ready is processed, so one
/// fsync covers a burst without starving the tick.
const BATCH: usize = 256;

type Reader<S> = Box<dyn FnOnce(&S) + Send>;

enum Cmd<S> {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<()>>,
    },
    Read(Reader<S>),
    Shutdown,
}

/// A raft-replicated `S`. Cloning is cheap; all clones talk to one task.
/// The task stops on [`Node::shutdown`] or when the last clone is dropped.
pub struct Node<S: StateMachine> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Clone for Node<S> {
    fn clone(&self) -> Self {
        Node {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    commands: mpsc::Sender<Cmd<S>>,
    /// Strong, so the network mailbox lives as long as a handle does; the
    /// gRPC service and the peer tasks hold weak ones.
    network: mpsc::Sender<Net>,
    status: watch::Receiver<Status>,
    /// Taken by the first `shutdown` to wait for the task. A std mutex: held
    /// only to take the handle, never across an await.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<S: StateMachine> Node<S> {
    /// Opens (or creates) the storage in `config.dir`, restores `sm` from the
    /// stored snapshot, and starts the node task, which replays the
    /// committed log after it. Must be called inside a tokio runtime.
    ///
    /// On the first start the membership is the keys of `config.peers`;
    /// every node of a new group must be given the same map.
    pub fn start(config: Config, mut sm: S) -> Result<Node<S>> {
        if config.id == 0 || !config.peers.contains_key(&config.id) {
            return Err(Error::Storage(format!(
                "node id {} must be non-zero and in the peer map",
                config.id
            )));
        }
        let voters: Vec<u64> = config.peers.keys().copied().collect();
        let storage = DiskStorage::open(&config.dir, &voters)?;
        let snapshot_index = storage.snapshot_index();
        if snapshot_index > 0 {
            sm.restore(storage.snapshot_data());
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            // The state machine holds exactly the snapshot; raft hands the
            // committed entries after it back as committed entries.
            applied: snapshot_index,
            // A node cut off from the others campaigns without bumping terms,
            // so it cannot depose a healthy leader when it comes back...
            pre_vote: true,
            // ...and a leader that stops hearing from a majority steps down,
            // so clients are not told "leader" by a node that cannot commit.
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| Error::Storage(format!("raft config: {e}")))?;
        let logger = crate::logger::raft_logger(config.id);
        let raw = RawNode::new(&raft_config, storage, &logger)
            .map_err(|e| Error::Storage(format!("raft init: {e}")))?;

        let (commands, command_rx) = mpsc::channel(COMMANDS);
        let (network, network_rx) = mpsc::channel(NETWORK);
        let peers = config
            .peers
            .iter()
            .filter(|(id, _)| **id != config.id)
            .map(|(id, addr)| {
                let security = config.security.clone();
                (
                    *id,
                    transport::spawn_peer(*id, addr, security, network.downgrade()),
                )
            })
            .collect();
        let mut core = Core {
            id: config.id,
            raw,
            sm,
            addresses: config.peers,
            snapshot_every: config.snapshot_every.max(1),
            peers,
            proposals: BTreeMap::new(),
            reads: HashMap::new(),
            read_waits: Vec::new(),
            incarnation: incarnation(),
            seq: 0,
            applied: snapshot_index,
            reports: Vec::new(),
            status: None,
        };
        let (status_tx, status) = watch::channel(core.current_status());
        core.status = Some(status_tx);
        let task = tokio::spawn(run(core, command_rx, network_rx, config.tick));
        Ok(Node {
            inner: Arc::new(Inner {
                commands,
                network,
                status,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Replicates `data` and returns what the state machine's `apply`
    /// returned for it, once it is applied on this node.
    ///
    /// Only the leader accepts proposals: elsewhere this is `NotLeader`,
    /// naming the leader if one is known. With no leader known, it waits
    /// for an election. `NoQuorum` when no leader appears or the entry does
    /// not commit within 3 s; the entry may still commit later, so commands
    /// must be safe to apply twice if the caller retries.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>> {
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        self.wait_for_leader(deadline).await?;
        let (reply, rx) = oneshot::channel();
        self.command(Cmd::Propose { data, reply }).await?;
        match timeout_at(deadline, rx).await {
            Err(_) => Err(Error::NoQuorum),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(result)) => result,
        }
    }

    /// A linearizable barrier (raft ReadIndex): when it returns Ok, this
    /// node's state machine has applied everything committed before the
    /// call, as confirmed by a quorum. Follow it with [`Node::read`] for a
    /// linearizable read. Leader only, like [`Node::propose`].
    pub async fn read_index(&self) -> Result<()> {
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        self.wait_for_leader(deadline).await?;
        let (reply, rx) = oneshot::channel();
        self.command(Cmd::ReadIndex { reply }).await?;
        match timeout_at(deadline, rx).await {
            Err(_) => Err(Error::NoQuorum),
            Ok(Err(_)) => Err(Error::Shutdown),
            Ok(Ok(result)) => result,
        }
    }

    /// Runs `f` on this node's applied state, with no barrier: on a follower
    /// or a deposed leader the state may be stale.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.command(Cmd::Read(Box::new(move |sm: &S| {
            let _ = reply.send(f(sm));
        })))
        .await?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// Changes whenever the role, term, leader or an index changes.
    pub fn status_watch(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// The service peers send raft messages to; add it to this node's tonic
    /// server (at the address the peers have for this node). It holds only a
    /// weak reference: once the node stops it answers `unavailable`.
    pub fn service(&self) -> crate::proto::raft_server::RaftServer<RaftService> {
        RaftService::server(self.inner.network.downgrade())
    }

    /// Stops the node task and waits for it; pending proposals and reads fail
    /// with `Shutdown`. The storage file is closed when this returns, so the
    /// node can be started again from the same directory.
    pub async fn shutdown(&self) {
        let _ = self.inner.commands.send(Cmd::Shutdown).await;
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match task {
            Some(task) => {
                let _ = task.await;
            }
            None => self.inner.commands.closed().await,
        }
    }

    async fn command(&self, cmd: Cmd<S>) -> Result<()> {
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| Error::Shutdown)
    }

    async fn wait_for_leader(&self, deadline: Instant) -> Result<()> {
        let mut status = self.inner.status.clone();
        let found = timeout_at(deadline, async {
            status.wait_for(|s| s.leader.is_some()).await.is_ok()
        })
        .await;
        match found {
            Err(_) => Err(Error::NoQuorum),
            Ok(false) => Err(Error::Shutdown),
            Ok(true) => Ok(()),
        }
    }
}

/// Distinguishes this run's proposal contexts from those of earlier runs
/// still in the log, which are replayed after a restart.
fn incarnation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Pending {
    context: Vec<u8>,
    reply: oneshot::Sender<Result<Vec<u8>>>,
}

/// Everything the node task owns.
struct Core<S> {
    id: u64,
    raw: RawNode<DiskStorage>,
    sm: S,
    addresses: BTreeMap<u64, String>,
    snapshot_every: u64,
    /// Outbound queue per peer.
    peers: HashMap<u64, mpsc::Sender<Message>>,
    /// Proposals made here, by log index, until that index is applied.
    proposals: BTreeMap<u64, Pending>,
    /// Read-index requests by context, until raft confirms their index.
    reads: HashMap<Vec<u8>, oneshot::Sender<Result<()>>>,
    /// Confirmed reads waiting for the state machine to reach their index.
    read_waits: Vec<(u64, oneshot::Sender<Result<()>>)>,
    incarnation: u64,
    seq: u64,
    /// Index of the last entry applied to `sm`.
    applied: u64,
    /// Transport failures seen while a Ready was out; raft hears of them
    /// after `advance`, never in the middle of a Ready.
    reports: Vec<Net>,
    status: Option<watch::Sender<Status>>,
}

async fn run<S: StateMachine>(
    mut core: Core<S>,
    mut commands: mpsc::Receiver<Cmd<S>>,
    mut network: mpsc::Receiver<Net>,
    tick: Duration,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = false;
    while !stop {
        tokio::select! {
            _ = ticker.tick() => {
                core.raw.tick();
                core.forget_abandoned();
            }
            cmd = commands.recv() => match cmd {
                Some(Cmd::Shutdown) | None => stop = true,
                Some(cmd) => core.on_command(cmd),
            },
            net = network.recv() => match net {
                Some(net) => core.on_network(net),
                None => stop = true,
            },
        }
        for _ in 0..BATCH {
            match network.try_recv() {
                Ok(net) => core.on_network(net),
                Err(_) => break,
            }
        }
        for _ in 0..BATCH {
            match commands.try_recv() {
                Ok(Cmd::Shutdown) => {
                    stop = true;
                    break;
                }
                Ok(cmd) => core.on_command(cmd),
                Err(_) => break,
            }
        }
        // The Ready round writes and fsyncs; on a multi-threaded runtime let
        // the other tasks move to another worker meanwhile.
        let result = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| core.on_ready())
            }
            _ => core.on_ready(),
        };
        if let Err(e) = result {
            // Memory may now be ahead of the disk: this node must not take
            // part in raft any more. Restarting it reloads from the disk.
            tracing::error!("raft node {} stops: {e}", core.id);
            core.fail_all(&e);
            break;
        }
        core.publish_status();
    }
    tracing::debug!("raft node {} stopped", core.id);
    // Dropping `core` here closes the redb file and the peer queues (their
    // tasks end), and fails whatever is still pending with `Shutdown`.
}

impl<S: StateMachine> Core<S> {
    fn leader(&self) -> Option<(u64, String)> {
        let id = self.raw.raft.leader_id;
        (id != raft::INVALID_ID).then(|| (id, self.addresses.get(&id).cloned().unwrap_or_default()))
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.leader(),
        }
    }

    fn on_command(&mut self, cmd: Cmd<S>) {
        match cmd {
            Cmd::Propose { data, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                self.seq += 1;
                let mut context = Vec::with_capacity(24);
                context.extend_from_slice(&self.id.to_be_bytes());
                context.extend_from_slice(&self.incarnation.to_be_bytes());
                context.extend_from_slice(&self.seq.to_be_bytes());
                if let Err(e) = self.raw.propose(context.clone(), data) {
                    // ProposalDropped: leadership is being transferred, or
                    // too much is uncommitted.
                    tracing::debug!("raft node {}: proposal dropped: {e}", self.id);
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                // raft appended the entry to the leader's log just now.
                let index = self.raw.raft.raft_log.last_index();
                if let Some(old) = self.proposals.insert(index, Pending { context, reply }) {
                    // An earlier proposal of ours at this index was cut from
                    // the log by another leader: it will never commit.
                    let _ = old.reply.send(Err(self.not_leader()));
                }
            }
            Cmd::ReadIndex { reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                self.seq += 1;
                let mut context = b"read".to_vec();
                context.extend_from_slice(&self.incarnation.to_be_bytes());
                context.extend_from_slice(&self.seq.to_be_bytes());
                self.raw.read_index(context.clone());
                self.reads.insert(context, reply);
            }
            Cmd::Read(f) => f(&self.sm),
            // Handled by the loop.
            Cmd::Shutdown => {}
        }
    }

    fn on_network(&mut self, net: Net) {
        match net {
            Net::Raft(m) => {
                if !self.addresses.contains_key(&m.from) {
                    tracing::debug!(
                        "raft node {}: message from unknown node {}",
                        self.id,
                        m.from
                    );
                    return;
                }
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!("raft node {}: step: {e}", self.id);
                }
            }
            Net::Unreachable(id) => self.raw.report_unreachable(id),
            Net::Snapshot(id, status) => self.raw.report_snapshot(id, status),
        }
    }

    /// Drops replies nobody waits for any more (the caller timed out), so
    /// proposals that never commit do not pile up.
    fn forget_abandoned(&mut self) {
        self.proposals.retain(|_, p| !p.reply.is_closed());
        self.reads.retain(|_, r| !r.is_closed());
        self.read_waits.retain(|(_, r)| !r.is_closed());
    }

    /// One round of the raft-rs Ready loop, in the order raft-rs requires.
    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            self.flush_reports();
            return Ok(());
        }
        let mut rd = self.raw.ready();

        if let Some(ss) = rd.ss() {
            if ss.raft_state != StateRole::Leader {
                // raft forgets pending read-index requests when it stops
                // leading; answer them now rather than at the timeout.
                let err = self.not_leader();
                for (_, reply) in self.reads.drain() {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }

        // 1. Messages that do not depend on this node's disk: at once.
        self.send(rd.take_messages());

        let mut update = Update::default();
        // 2. A snapshot from the leader replaces the state machine. It goes
        //    to disk with the rest of this Ready in step 4, still before
        //    anything that depends on it (persisted messages, advance).
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let index = snap.get_metadata().index;
            self.sm.restore(&snap.data);
            self.applied = index;
            update.snapshot = Some(snap);
            // Our proposals up to there are inside the snapshot or were
            // lost; which one cannot be told.
            self.settle_proposals_up_to(index);
            tracing::info!(
                "raft node {}: restored a snapshot at index {index}",
                self.id
            );
        }

        // 3. Committed entries (already durable here): to the state machine.
        if let Some(cs) = self.apply(rd.take_committed_entries())? {
            update.conf_state = Some(cs);
        }

        // 4. New entries and the hard state: durable (one redb commit with an
        //    fsync) before any message that promises they are.
        update.entries = rd.take_entries();
        update.hard_state = rd.hs().cloned();
        self.raw.mut_store().persist(update)?;

        // 5. Only now: votes and append responses.
        self.send(rd.take_persisted_messages());

        for rs in rd.take_read_states() {
            if let Some(reply) = self.reads.remove(&rs.request_ctx) {
                self.read_waits.push((rs.index, reply));
            }
        }

        // 6. The LightReady: the same steps for what advancing released.
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.raft.hard_state();
            hs.commit = commit;
            self.raw.mut_store().persist(Update {
                hard_state: Some(hs),
                ..Update::default()
            })?;
        }
        self.send(light.take_messages());
        if let Some(cs) = self.apply(light.take_committed_entries())? {
            self.raw.mut_store().persist(Update {
                conf_state: Some(cs),
                ..Update::default()
            })?;
        }
        self.raw.advance_apply();

        self.answer_reads();
        self.maybe_compact()?;
        self.flush_reports();
        Ok(())
    }

    /// Applies committed entries; returns the conf state if one changed.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<Option<raft::eraftpb::ConfState>> {
        let mut conf_state = None;
        for e in entries {
            let index = e.index;
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    // An empty entry is a new leader's no-op: nothing to
                    // apply, but it may stand where our proposal was.
                    let result = (!e.data.is_empty()).then(|| self.sm.apply(index, &e.data));
                    self.applied = index;
                    if let Some(p) = self.proposals.remove(&index) {
                        let answer = match result {
                            Some(r) if e.context[..] == p.context[..] => Ok(r),
                            _ => Err(self.not_leader()),
                        };
                        let _ = p.reply.send(answer);
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data)
                        .map_err(|err| Error::Codec(format!("conf change at {index}: {err}")))?;
                    conf_state = Some(
                        self.raw
                            .apply_conf_change(&cc)
                            .map_err(|err| Error::Storage(format!("conf change: {err}")))?,
                    );
                    self.applied = index;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&e.data)
                        .map_err(|err| Error::Codec(format!("conf change at {index}: {err}")))?;
                    conf_state = Some(
                        self.raw
                            .apply_conf_change(&cc)
                            .map_err(|err| Error::Storage(format!("conf change: {err}")))?,
                    );
                    self.applied = index;
                }
            }
        }
        // A proposal below the applied index whose entry never showed up
        // (skipped by a snapshot) has an unknown outcome.
        let applied = self.applied;
        self.settle_proposals_up_to(applied);
        Ok(conf_state)
    }

    fn settle_proposals_up_to(&mut self, index: u64) {
        while let Some(entry) = self.proposals.first_entry() {
            if *entry.key() > index {
                break;
            }
            let _ = entry.remove().reply.send(Err(Error::NoQuorum));
        }
    }

    fn answer_reads(&mut self) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_waits)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.read_waits = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }

    /// After `snapshot_every` applied entries, snapshots the state machine
    /// and drops the log it covers, so memory and disk stay bounded. A
    /// follower that needs the dropped entries gets the snapshot instead.
    fn maybe_compact(&mut self) -> Result<()> {
        let store = self.raw.store();
        if self.applied < store.snapshot_index() + self.snapshot_every {
            return Ok(());
        }
        let data = self.sm.snapshot();
        let applied = self.applied;
        self.raw.mut_store().compact(applied, data)?;
        tracing::debug!("raft node {}: log compacted up to {applied}", self.id);
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            let to = m.to;
            let Some(queue) = self.peers.get(&to) else {
                tracing::debug!("raft node {}: no address for node {to}", self.id);
                continue;
            };
            let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            if queue.try_send(m).is_err() {
                // Full (the peer is slow or down) or closed: drop it, raft
                // retransmits; a dropped snapshot must be reported or raft
                // waits for it forever.
                if snapshot {
                    self.reports
                        .push(Net::Snapshot(to, SnapshotStatus::Failure));
                }
                self.reports.push(Net::Unreachable(to));
            }
        }
    }

    fn flush_reports(&mut self) {
        for r in std::mem::take(&mut self.reports) {
            self.on_network(r);
        }
    }

    fn current_status(&self) -> Status {
        let r = &self.raw.raft;
        Status {
            id: self.id,
            role: match r.state {
                StateRole::Leader => Role::Leader,
                StateRole::Follower => Role::Follower,
                StateRole::Candidate => Role::Candidate,
                StateRole::PreCandidate => Role::PreCandidate,
            },
            term: r.term,
            leader: (r.leader_id != raft::INVALID_ID).then_some(r.leader_id),
            commit_index: r.raft_log.committed,
            applied_index: self.applied,
            snapshot_index: self.raw.store().snapshot_index(),
        }
    }

    fn publish_status(&self) {
        if let Some(tx) = &self.status {
            let now = self.current_status();
            tx.send_if_modified(|s| {
                if *s == now {
                    false
                } else {
                    *s = now;
                    true
                }
            });
        }
    }

    fn fail_all(&mut self, e: &Error) {
        for (_, p) in std::mem::take(&mut self.proposals) {
            let _ = p.reply.send(Err(e.clone()));
        }
        for (_, r) in self.reads.drain() {
            let _ = r.send(Err(e.clone()));
        }
        for (_, r) in self.read_waits.drain(..) {
            let _ = r.send(Err(e.clone()));
        }
    }
}
