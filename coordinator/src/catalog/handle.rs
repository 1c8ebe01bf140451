//! The catalog behind one handle, whoever orders its commands:
//! - local: one task owns the catalog and its on-disk command log (the
//!   embedded default and single-node coordinators);
//! - raft: the catalog is the state machine of a raft group of coordinator
//!   replicas; a proposal is a raft entry, answered when applied.
//!
//! Jobs only run where [`CatalogHandle::is_leader`]; followers forward.
//!
//! Either way [`CatalogHandle::changes`] is a watch of this replica's view
//! (role, term, commit and applied index), so whoever waits for the leader
//! to change or for a command to be applied waits on it rather than polling.

use std::collections::BTreeMap;
use std::path::Path;

use mo_br_replication as repl;
use tokio::sync::{mpsc, oneshot, watch};

use super::log::CommandLog;
use super::{Applied, Catalog, Command};
use crate::{Error, Result};

type Reader = Box<dyn FnOnce(&Catalog) + Send>;

enum Msg {
    Propose(Command, oneshot::Sender<Result<Applied>>),
    Read(Reader),
}

/// The replicated state machine: the catalog, commands as JSON entries.
pub struct CatalogMachine(Catalog);

impl repl::StateMachine for CatalogMachine {
    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        let applied = match serde_json::from_slice::<Command>(data) {
            Ok(cmd) => self.0.apply(index, &cmd),
            // A command this version cannot read is skipped the same way on
            // every replica, so they stay identical.
            Err(e) => Applied::Rejected(format!("unreadable command: {e}")),
        };
        serde_json::to_vec(&applied).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) {
        match serde_json::from_slice(snapshot) {
            Ok(c) => self.0 = c,
            Err(e) => tracing::error!("cannot restore catalog snapshot: {e}"),
        }
    }
}

/// Who leads, as this replica sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub term: u64,
    /// gRPC address of the leader, if known and not this replica.
    pub leader_addr: Option<String>,
    pub leader_id: u64,
    pub commit: u64,
    pub applied: u64,
    pub snapshot: u64,
}

impl Leadership {
    fn of(st: &repl::Status, peers: &BTreeMap<u64, String>) -> Leadership {
        let is_leader = st.role == repl::Role::Leader;
        Leadership {
            is_leader,
            term: st.term,
            leader_addr: st
                .leader
                .filter(|_| !is_leader)
                .and_then(|id| peers.get(&id).cloned()),
            leader_id: st.leader.unwrap_or(0),
            commit: st.commit_index,
            applied: st.applied_index,
            snapshot: st.snapshot_index,
        }
    }
}

/// A local catalog's view of itself in raft's terms: the only replica, so
/// always the leader of term 1; an applied command is committed.
fn local_status(applied: u64) -> repl::Status {
    repl::Status {
        id: 1,
        role: repl::Role::Leader,
        term: 1,
        leader: Some(1),
        commit_index: applied,
        applied_index: applied,
        snapshot_index: 0,
    }
}

#[derive(Clone)]
enum Backend {
    Local {
        tx: mpsc::Sender<Msg>,
        /// Published by the owning task after each applied command.
        status: watch::Receiver<repl::Status>,
    },
    Raft {
        node: repl::Node<CatalogMachine>,
        peers: BTreeMap<u64, String>,
    },
}

#[derive(Clone)]
pub struct CatalogHandle {
    backend: Backend,
}

fn from_repl(e: repl::Error) -> Error {
    match e {
        repl::Error::NotLeader { leader } => Error::NotLeader(leader.map(|(_, addr)| addr)),
        repl::Error::NoQuorum => Error::NoQuorum,
        repl::Error::Shutdown => Error::Shutdown,
        other => Error::Failed(other.to_string()),
    }
}

/// How long a call waits for an election to name a leader before it
/// concludes the group has no quorum.
const ELECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs a raft call on `node`, again after each change of its view while
/// it answers that no leader is known (an election is on); past
/// [`ELECTION_WAIT`] that means no quorum.
async fn leaderless_retry<T, F, Fut>(node: &repl::Node<CatalogMachine>, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = repl::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + ELECTION_WAIT;
    let mut changes = node.status_watch();
    loop {
        // Seen before the call: a change while it runs wakes the retry.
        changes.borrow_and_update();
        match call().await {
            Err(repl::Error::NotLeader { leader: None }) => {
                let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
                if !matches!(changed, Ok(Ok(()))) {
                    return Err(Error::NoQuorum);
                }
            }
            other => return other.map_err(from_repl),
        }
    }
}

impl CatalogHandle {
    /// A local catalog: opens the log at `path`, replays it and starts the
    /// owning task.
    pub fn open(path: &Path) -> Result<CatalogHandle> {
        Ok(CatalogHandle::local(CommandLog::open(path)?))
    }

    /// A local catalog for commands that only read: an absent one reads as
    /// empty and is not created.
    pub fn open_if_present(path: &Path) -> Result<CatalogHandle> {
        Ok(CatalogHandle::local(CommandLog::open_if_present(path)?))
    }

    fn local((log, catalog): (CommandLog, Catalog)) -> CatalogHandle {
        let (tx, rx) = mpsc::channel(64);
        let (status_tx, status) = watch::channel(local_status(catalog.applied));
        // Owned by the handles: it ends when the last one drops its sender.
        tokio::spawn(run(log, catalog, rx, status_tx));
        CatalogHandle {
            backend: Backend::Local { tx, status },
        }
    }

    /// A replica of a raft group.
    pub fn start_raft(config: repl::Config) -> Result<CatalogHandle> {
        let peers = config.peers.clone();
        let node =
            repl::Node::start(config, CatalogMachine(Catalog::default())).map_err(from_repl)?;
        Ok(CatalogHandle {
            backend: Backend::Raft { node, peers },
        })
    }

    /// The raft service peers send messages to, in raft mode.
    pub fn raft_node(&self) -> Option<&repl::Node<CatalogMachine>> {
        match &self.backend {
            Backend::Raft { node, .. } => Some(node),
            Backend::Local { .. } => None,
        }
    }

    /// Commits `cmd` and applies it; returns what applying it answered.
    pub async fn propose(&self, cmd: Command) -> Result<Applied> {
        match &self.backend {
            Backend::Local { tx, .. } => {
                let (reply, rx) = oneshot::channel();
                tx.send(Msg::Propose(cmd, reply))
                    .await
                    .map_err(|_| Error::Shutdown)?;
                rx.await.map_err(|_| Error::Shutdown)?
            }
            Backend::Raft { node, .. } => {
                let data = serde_json::to_vec(&cmd).map_err(|e| Error::Failed(e.to_string()))?;
                let out = leaderless_retry(node, || node.propose(data.clone())).await?;
                serde_json::from_slice(&out).map_err(|e| Error::Failed(e.to_string()))
            }
        }
    }

    /// Runs `f` on this replica's applied state (possibly stale on a follower).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> T + Send + 'static,
    ) -> Result<T> {
        match &self.backend {
            Backend::Local { tx, .. } => {
                let (reply, rx) = oneshot::channel();
                let reader: Reader = Box::new(move |c| {
                    let _ = reply.send(f(c));
                });
                tx.send(Msg::Read(reader))
                    .await
                    .map_err(|_| Error::Shutdown)?;
                rx.await.map_err(|_| Error::Shutdown)
            }
            Backend::Raft { node, .. } => node.read(move |m| f(&m.0)).await.map_err(from_repl),
        }
    }

    /// Like [`read`](Self::read), after a raft read barrier: sees every
    /// command committed before the call (linearizable).
    pub async fn read_linearizable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> T + Send + 'static,
    ) -> Result<T> {
        if let Backend::Raft { node, .. } = &self.backend {
            leaderless_retry(node, || node.read_index()).await?;
        }
        self.read(f).await
    }

    pub fn leadership(&self) -> Leadership {
        match &self.backend {
            Backend::Local { status, .. } => Leadership::of(&status.borrow(), &BTreeMap::new()),
            Backend::Raft { node, peers } => Leadership::of(&node.status(), peers),
        }
    }

    /// This replica's view of the group, changed whenever its role, term,
    /// leader or an index changes: in particular after every applied
    /// command, so a reader woken by it sees the command. The value is
    /// current as of the wake-up; a burst of changes may wake a waiter once.
    /// Closed when the node stops (raft) or the last handle is dropped.
    pub fn changes(&self) -> watch::Receiver<repl::Status> {
        match &self.backend {
            Backend::Raft { node, .. } => node.status_watch(),
            Backend::Local { status, .. } => status.clone(),
        }
    }

    /// Resolves once this replica no longer leads in `term`, or its node
    /// stopped. A local catalog leads for good: never.
    pub async fn deposed(&self, term: u64) {
        let mut changes = self.changes();
        let _ = changes
            .wait_for(|s| s.role != repl::Role::Leader || s.term != term)
            .await;
    }

    pub fn is_leader(&self) -> bool {
        self.leadership().is_leader
    }
}

async fn run(
    mut log: CommandLog,
    mut catalog: Catalog,
    mut rx: mpsc::Receiver<Msg>,
    status: watch::Sender<repl::Status>,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Propose(cmd, reply) => {
                let index = catalog.applied + 1;
                // A synchronous append + fsync: commands are few and small,
                // and this task must not answer before the entry is durable.
                let result = log.append(index, &cmd).map(|()| catalog.apply(index, &cmd));
                if result.is_ok() {
                    status.send_replace(local_status(index));
                }
                let _ = reply.send(result);
            }
            Msg::Read(f) => f(&catalog),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_local_catalog_signals_each_applied_command() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = CatalogHandle::open(&dir.path().join("meta")).unwrap();
        let mut changes = catalog.changes();
        assert_eq!(changes.borrow_and_update().applied_index, 0);
        let waiter = tokio::spawn(async move {
            changes.changed().await.unwrap();
            changes.borrow().applied_index
        });
        catalog
            .propose(Command::BackupDeleted { id: "b".into() })
            .await
            .unwrap();
        assert_eq!(waiter.await.unwrap(), 1);
        let l = catalog.leadership();
        assert!(l.is_leader);
        assert_eq!((l.term, l.leader_id, l.applied), (1, 1, 1));
        // Always the leader of term 1: deposed from any other term at once,
        // from term 1 never.
        catalog.deposed(2).await;
        let still = tokio::time::timeout(Duration::from_millis(50), catalog.deposed(1)).await;
        assert!(still.is_err());
    }
}
