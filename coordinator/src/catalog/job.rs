//! Running backups as replicated state, so that whichever coordinator leads
//! can carry a backup on: the plan (every file, where it comes from and where
//! it goes), its shards, which agent holds each shard under which epoch, and
//! the results of finished shards. Agents' results are accepted only under
//! the epoch of the shard's current assignment (fencing).

use mo_br_format::manifest::BackupMeta;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJob {
    pub id: String,
    /// The manifest as planned: every file, without checksums for the files
    /// still to copy. Completed into the committed manifest.
    pub meta: BackupMeta,
    /// For each file of `meta.files`: where the agent reads it (absolute
    /// path without the leading '/'); empty for files held by the chain.
    pub sources: Vec<String>,
    pub shards: Vec<ShardState>,
    pub parallelism: u32,
    /// The MatrixOne node whose node-local files this backup copies ("" for
    /// the embedded default's agent, which reads everything).
    #[serde(default)]
    pub node: String,
    /// Set once every shard is done and the metadata files are being written:
    /// the completion time that goes into the manifest, so that a new leader
    /// writes the very same manifest.
    pub committing: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    /// Indexes into `meta.files`.
    pub files: Vec<usize>,
    pub bytes: u64,
    /// Node-local files (configs, logservice-data) only the node's own
    /// agent can read; SHARED files any agent that reaches SHARED can.
    pub node_local: bool,
    pub assignment: Option<Assignment>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub agent: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneFile {
    /// Index into `meta.files`.
    pub index: usize,
    pub size: u64,
    pub sha256: String,
}

impl BackupJob {
    pub fn pending(&self) -> impl Iterator<Item = (usize, &ShardState)> {
        self.shards.iter().enumerate().filter(|(_, s)| !s.done)
    }

    pub fn bytes_done(&self) -> u64 {
        self.shards.iter().filter(|s| s.done).map(|s| s.bytes).sum()
    }

    pub fn files_done(&self) -> u64 {
        self.shards
            .iter()
            .filter(|s| s.done)
            .map(|s| s.files.len() as u64)
            .sum()
    }
}
