//! The agents work goes to, and whether each is alive.
//!
//! Two kinds of fleet: a fixed one (the embedded default's in-process agent,
//! or `--agents` given to a single coordinator), always taken as alive; and
//! a registry, where agents register (a replicated catalog entry, so every
//! replica knows them) and then heartbeat the leader, which grants each a
//! lease. Leases are soft state of the leader only: a new leader starts with
//! none and hands out work as heartbeats arrive.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mo_br_proto::agent::agent_client::AgentClient;
use mo_br_security::Security;
use tonic::transport::Channel;

use crate::catalog::AgentRecord;
use crate::status::RateMeter;
use crate::{Error, Result};

/// gRPC message size limit for agent calls: shards carry up to
/// `SHARD_FILES` file descriptions.
const MAX_MESSAGE: usize = 64 << 20;

#[derive(Clone)]
pub struct AgentRef {
    pub name: String,
    pub client: AgentClient<Channel>,
    /// The node's mo-data the agent serves.
    pub data_dir: String,
    /// The MatrixOne node it serves.
    pub node: String,
    /// A fixed agent reads every node's files (it runs where the CLI does).
    pub any_node: bool,
    pub reaches_shared: bool,
    /// The MatrixOne cluster (`host:port`) its node belongs to, if said.
    pub matrixone: String,
    /// The node's launch config it serves, if any.
    pub launch_config: String,
    /// Bytes it copied for this replica's jobs (the status page's
    /// throughput); kept across re-registrations.
    pub meter: Arc<RateMeter>,
}

/// Which agents may take a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eligibility {
    /// SHARED files: any agent that reaches the SHARED store.
    Shared,
    /// Node-local files: only an agent of this node can read them.
    Node { node: String },
    /// Files in backup storage (restore, check): any agent.
    Any,
}

impl Eligibility {
    pub fn describe(&self) -> String {
        match self {
            Eligibility::Shared => "SHARED files".into(),
            Eligibility::Node { node } => format!("node-local files of node {node}"),
            Eligibility::Any => "files in backup storage".into(),
        }
    }
}

struct Known {
    agent: AgentRef,
    address: String,
    /// `None`: never expires (fixed fleet).
    lease_until: Option<Instant>,
}

#[derive(Clone)]
pub struct Agents {
    /// Heartbeats arrive on gRPC handler tasks while jobs look up liveness;
    /// a std Mutex suffices: it guards a small map, never across an await.
    inner: Arc<Mutex<BTreeMap<String, Known>>>,
    lease: Duration,
    /// How long shards wait for an eligible agent before the job fails.
    absence_limit: Duration,
    /// How registered agents are called (TLS with the replica's certificate).
    security: Security,
}

fn client(channel: Channel) -> AgentClient<Channel> {
    AgentClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl Agents {
    /// A fixed fleet, always alive.
    pub fn fixed(list: Vec<(String, Channel)>) -> Self {
        let map = list
            .into_iter()
            .map(|(name, ch)| {
                let known = Known {
                    agent: AgentRef {
                        name: name.clone(),
                        client: client(ch),
                        data_dir: String::new(),
                        node: String::new(),
                        any_node: true,
                        reaches_shared: true,
                        matrixone: String::new(),
                        launch_config: String::new(),
                        meter: Arc::default(),
                    },
                    address: String::new(),
                    lease_until: None,
                };
                (name, known)
            })
            .collect();
        Agents {
            inner: Arc::new(Mutex::new(map)),
            lease: Duration::MAX,
            absence_limit: Duration::from_secs(5),
            // Nobody registers with a fixed set.
            security: Security::plaintext(),
        }
    }

    /// A registry of agents that heartbeat within `lease`.
    pub fn registry(lease: Duration, security: Security) -> Self {
        Agents {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            lease,
            absence_limit: lease * 4,
            security,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub fn absence_limit(&self) -> Duration {
        self.absence_limit
    }

    /// Grants `record`'s agent a fresh lease (connecting to it if new or moved).
    pub fn heartbeat(&self, record: &AgentRecord) -> Result<()> {
        let mut map = self.inner.lock().expect("agents lock");
        let until = Some(Instant::now() + self.lease);
        if let Some(k) = map
            .get_mut(&record.id)
            .filter(|k| k.address == record.address)
        {
            k.lease_until = until;
            k.agent.data_dir = record.data_dir.clone();
            k.agent.node = record.node.clone();
            k.agent.reaches_shared = record.reaches_shared;
            k.agent.matrixone = record.matrixone.clone();
            k.agent.launch_config = record.launch_config.clone();
            return Ok(());
        }
        let endpoint = self
            .security
            .endpoint(&record.address)
            .map_err(|e| Error::InvalidArgument(format!("agent address {}: {e}", record.address)))?
            .connect_timeout(Duration::from_secs(2));
        let channel = self.security.connect_lazy(endpoint);
        let meter = map
            .get(&record.id)
            .map(|k| k.agent.meter.clone())
            .unwrap_or_default();
        map.insert(
            record.id.clone(),
            Known {
                agent: AgentRef {
                    name: record.id.clone(),
                    client: client(channel),
                    data_dir: record.data_dir.clone(),
                    node: record.node.clone(),
                    any_node: false,
                    reaches_shared: record.reaches_shared,
                    matrixone: record.matrixone.clone(),
                    launch_config: record.launch_config.clone(),
                    meter,
                },
                address: record.address.clone(),
                lease_until: until,
            },
        );
        Ok(())
    }

    fn alive(k: &Known, now: Instant) -> bool {
        k.lease_until.is_none_or(|t| t > now)
    }

    /// Every agent this replica knows, with its address and whether its
    /// lease holds (for the status page).
    pub fn known(&self) -> Vec<(AgentRef, String, bool)> {
        let now = Instant::now();
        let map = self.inner.lock().expect("agents lock");
        map.values()
            .map(|k| (k.agent.clone(), k.address.clone(), Self::alive(k, now)))
            .collect()
    }

    pub fn live(&self) -> Vec<AgentRef> {
        let now = Instant::now();
        let map = self.inner.lock().expect("agents lock");
        map.values()
            .filter(|k| Self::alive(k, now))
            .map(|k| k.agent.clone())
            .collect()
    }

    /// How many of a fixed fleet answer `Info` within `timeout` now: a fixed
    /// fleet is always taken as alive for work, but operators need to see
    /// one that is down (`mo_br_coordinator_live_agents` in single mode).
    pub async fn reachable(&self, timeout: Duration) -> usize {
        let clients: Vec<_> = {
            let map = self.inner.lock().expect("agents lock");
            map.values().map(|k| k.agent.client.clone()).collect()
        };
        let calls = clients.into_iter().map(|mut client| async move {
            let call = client.info(mo_br_proto::agent::InfoRequest {});
            matches!(tokio::time::timeout(timeout, call).await, Ok(Ok(_)))
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }

    pub fn is_live(&self, name: &str) -> bool {
        let map = self.inner.lock().expect("agents lock");
        map.get(name)
            .is_some_and(|k| Self::alive(k, Instant::now()))
    }

    /// A call to the agent failed: stop giving it work until it heartbeats again.
    pub fn suspect(&self, name: &str) {
        let mut map = self.inner.lock().expect("agents lock");
        if let Some(k) = map.get_mut(name) {
            if k.lease_until.is_some() {
                k.lease_until = Some(Instant::now());
            }
        }
    }

    pub fn eligible(&self, agent: &AgentRef, e: &Eligibility) -> bool {
        match e {
            Eligibility::Any => true,
            Eligibility::Shared => agent.reaches_shared,
            Eligibility::Node { node } => agent.any_node || agent.node == *node,
        }
    }

    /// A live agent among `candidates` (agent ids, as registered for one
    /// MatrixOne), of `node` if given, the first by id; waits for one up to
    /// the absence limit (a new leader grants leases as heartbeats come).
    /// `None`: none of them is alive.
    pub async fn live_one_of(&self, candidates: &[String], node: &str) -> Option<AgentRef> {
        let deadline = Instant::now() + self.absence_limit.min(Duration::from_secs(30));
        loop {
            let found = self
                .live()
                .into_iter()
                .filter(|a| candidates.contains(&a.name) && (node.is_empty() || a.node == node))
                .min_by(|a, b| a.name.cmp(&b.name));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A live agent of the node whose `data_dir` is to be backed up, to
    /// inventory it; waits up to the absence limit for one to appear (a new
    /// leader's leases). `node` picks among agents of several nodes that
    /// serve a data dir of the same path (every node mounts `mo-data` at
    /// the same place in most deployments).
    pub async fn node_agent(&self, data_dir: &str, node: &str) -> Result<AgentRef> {
        let deadline = Instant::now() + self.absence_limit.min(Duration::from_secs(30));
        loop {
            let candidates: Vec<AgentRef> = self
                .live()
                .into_iter()
                .filter(|a| {
                    // No data dir: a SHARED store on S3 with nothing of the
                    // node's disk to read but its configs.
                    a.any_node
                        || ((data_dir.is_empty() || same_dir(&a.data_dir, data_dir))
                            && (node.is_empty() || a.node == node))
                })
                .collect();
            let mut nodes: Vec<&str> = candidates
                .iter()
                .filter(|a| !a.any_node)
                .map(|a| a.node.as_str())
                .collect();
            nodes.sort();
            nodes.dedup();
            if nodes.len() > 1 {
                return Err(Error::InvalidArgument(format!(
                    "agents of several nodes serve {data_dir} ({}); pass --node to say which node to back up",
                    nodes.join(", ")
                )));
            }
            if let Some(a) = candidates.into_iter().next() {
                return Ok(a);
            }
            if Instant::now() >= deadline {
                let which = if node.is_empty() {
                    String::new()
                } else {
                    format!(" on node {node}")
                };
                return Err(Error::FailedPrecondition(format!(
                    "no live agent serves {data_dir}{which}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether `registered` (an agent's `--matrixone`, `host[:port]`) names the
/// MatrixOne at `host`:`port`. Host names compare without case, IPv6
/// brackets dropped; no name is resolved, so say it the same way on both
/// sides (`127.0.0.1` is not `localhost`). A missing port is 6001.
pub fn names_matrixone(registered: &str, host: &str, port: u16) -> bool {
    let registered = registered.trim();
    if registered.is_empty() {
        return false;
    }
    let (r_host, r_port) = split_host_port(registered);
    let r_port = match r_port {
        None => crate::matrixone::DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
    };
    let bare = |h: &str| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    r_port == port && bare(r_host) == bare(host)
}

/// `host:port`, `[v6]:port`, `host`, or a bare IPv6 address.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        // More than one ':' and no brackets: an IPv6 address alone.
        Some((h, _)) if h.contains(':') => (s, None),
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

/// Data dirs compare without trailing slashes.
fn same_dir(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrixone_addresses_compare_by_host_and_port() {
        assert!(names_matrixone("127.0.0.1:6001", "127.0.0.1", 6001));
        assert!(names_matrixone("MO-1.example:6001", "mo-1.EXAMPLE", 6001));
        assert!(names_matrixone("mo-1", "mo-1", 6001), "no port: 6001");
        assert!(names_matrixone("[::1]:7001", "::1", 7001));
        assert!(names_matrixone("::1", "[::1]", 6001));
        assert!(!names_matrixone("127.0.0.1:6001", "127.0.0.1", 6002));
        assert!(!names_matrixone("127.0.0.1:6001", "localhost", 6001));
        assert!(!names_matrixone("", "127.0.0.1", 6001));
        assert!(!names_matrixone("h:notaport", "h", 6001));
    }
}
