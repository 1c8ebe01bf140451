//! A tiny state machine and a cluster of real nodes on 127.0.0.1, each with
//! its own tonic server and raft directory.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mo_br_replication::{Config, Error, Node, Role, StateMachine};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

/// An append-only list of strings; `apply` returns the new length.
#[derive(Default)]
pub struct LogSm {
    pub entries: Vec<String>,
    /// How often `restore` ran (not part of the state).
    pub restores: u32,
}

impl StateMachine for LogSm {
    fn apply(&mut self, _index: u64, data: &[u8]) -> Vec<u8> {
        self.entries
            .push(String::from_utf8_lossy(data).into_owned());
        (self.entries.len() as u64).to_be_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.entries.join("\n").into_bytes()
    }
    fn restore(&mut self, snapshot: &[u8]) {
        self.restores += 1;
        let s = String::from_utf8_lossy(snapshot);
        self.entries = if s.is_empty() {
            Vec::new()
        } else {
            s.split('\n').map(str::to_string).collect()
        };
    }
}

pub struct TestNode {
    pub id: u64,
    pub node: Node<LogSm>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

pub struct Cluster {
    pub peers: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, TestNode>,
    pub snapshot_every: u64,
    _root: tempfile::TempDir,
    root: PathBuf,
}

impl Cluster {
    pub async fn start(n: u64, snapshot_every: u64) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        // Bind first, so the peer map holds real ports.
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.insert(id, l);
        }
        let peers = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
            .collect();
        let mut c = Cluster {
            peers,
            nodes: BTreeMap::new(),
            snapshot_every,
            root: root.path().to_path_buf(),
            _root: root,
        };
        for (id, l) in listeners {
            c.serve(id, l);
        }
        c
    }

    pub fn config(&self, id: u64) -> Config {
        Config {
            id,
            peers: self.peers.clone(),
            dir: self.root.join(format!("n{id}")),
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 2,
            snapshot_every: self.snapshot_every,
            ..Config::new(id, self.peers.clone(), self.root.join(format!("n{id}")))
        }
    }

    fn serve(&mut self, id: u64, listener: TcpListener) {
        let node = Node::start(self.config(id), LogSm::default()).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = node.service();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        self.nodes.insert(
            id,
            TestNode {
                id,
                node,
                stop,
                server,
            },
        );
    }

    /// Shuts the node down and stops its server.
    pub async fn stop(&mut self, id: u64) {
        let t = self.nodes.remove(&id).unwrap();
        t.node.shutdown().await;
        let _ = t.stop.send(());
        let mut server = t.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }

    /// Starts node `id` again from its directory, on its old address.
    pub async fn restart(&mut self, id: u64) {
        let addr: SocketAddr = self.peers[&id].parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebind {addr}: {e}");
                    sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {addr}: {e}"),
            }
        };
        self.serve(id, listener);
    }

    pub fn node(&self, id: u64) -> &Node<LogSm> {
        &self.nodes[&id].node
    }

    /// Waits until one running node leads and every running node knows it.
    pub async fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let statuses: Vec<_> = self.nodes.values().map(|t| t.node.status()).collect();
            if let Some(l) = statuses.iter().find(|s| s.role == Role::Leader) {
                if statuses.iter().all(|s| s.leader == Some(l.id)) {
                    return l.id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {within:?}: {statuses:?}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through whichever node leads, retrying while leadership moves.
    pub async fn propose(&self, data: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let id = self.leader(Duration::from_secs(10)).await;
            match self.node(id).propose(data.as_bytes().to_vec()).await {
                Ok(r) => return r,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("propose {data:?} on {id}: {e}; retrying");
                    sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("propose {data:?}: {e}"),
            }
        }
    }

    pub async fn entries(&self, id: u64) -> Vec<String> {
        self.node(id).read(|sm| sm.entries.clone()).await.unwrap()
    }

    /// Waits until every running node holds `expected`.
    pub async fn converge(&self, expected: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        for id in self.nodes.keys() {
            loop {
                let got = self.entries(*id).await;
                if got == expected {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} has {} entries, want {}; status {:?}",
                    got.len(),
                    expected.len(),
                    self.node(*id).status()
                );
                sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub async fn shutdown_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

pub fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("e{i}")).collect()
}

pub fn is_no_quorum(e: &Error) -> bool {
    matches!(e, Error::NoQuorum)
}
