//! The agents this coordinator hands work to. Static for now (given at
//! start); registration with leases comes with the distributed coordinator.

use mo_br_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct AgentRef {
    pub name: String,
    pub client: AgentClient<Channel>,
}

#[derive(Clone, Default)]
pub struct Agents {
    list: Vec<AgentRef>,
}

impl Agents {
    pub fn new(list: Vec<AgentRef>) -> Self {
        Agents { list }
    }

    /// Every agent that can take SHARED shards.
    pub fn all(&self) -> &[AgentRef] {
        &self.list
    }

    /// The agent next to the node being backed up: it inventories the node
    /// and copies its node-local files.
    pub fn node_agent(&self) -> Option<&AgentRef> {
        self.list.first()
    }
}
