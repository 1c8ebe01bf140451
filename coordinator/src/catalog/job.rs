//! Running backups as replicated state, so that whichever coordinator leads
//! can carry a backup on: the manifest header, its shards (each a plan chunk
//! in the backup location), which agent holds each shard under which epoch,
//! and each finished shard's manifest chunk. Agents' results are accepted
//! only under the epoch of the shard's current assignment (fencing).
//!
//! Nothing here grows with the files of a backup: a shard is a chunk
//! reference of constant size, whatever the chunk holds.

use mo_br_format::chunk::ChunkRef;
use mo_br_format::manifest::BackupMeta;
use mo_br_storage::Location;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJob {
    pub id: String,
    /// The manifest header as planned; its `files` gets `hk_data` of an
    /// online backup, its `chunks` are filled in at the commit.
    pub meta: BackupMeta,
    pub shards: Vec<ShardState>,
    /// Where SHARED files are read when SHARED is on S3 (no credentials:
    /// the driver brings them); node-local files are read from the node.
    #[serde(default)]
    pub shared_source: Option<Location>,
    /// SHARED is read with keys the CLI gave (not the TN config's or the
    /// environment's): no replica keeps them, so a new leader waits for the
    /// CLI's `Attach` to bring them again before it drives the backup.
    #[serde(default)]
    pub source_keys: bool,
    pub parallelism: u32,
    /// How long agents retry a file through a storage outage, in ms (0:
    /// their default); replicated so a new leader drives it the same way.
    #[serde(default)]
    pub retry_window_ms: u64,
    /// S3 requests per second over the whole backup (0: no limit of its own).
    #[serde(default)]
    pub max_requests_per_sec: u64,
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
    /// The shard's plan chunk: its entries and where each is read.
    pub plan: ChunkRef,
    /// Node-local files (configs, logservice-data) only the node's own
    /// agent can read; SHARED files any agent that reaches SHARED can.
    pub node_local: bool,
    pub assignment: Option<Assignment>,
    /// The manifest chunk with the shard's results, once it is done.
    pub result: Option<ChunkRef>,
}

impl ShardState {
    pub fn done(&self) -> bool {
        self.result.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub agent: String,
    pub epoch: u64,
}

impl BackupJob {
    pub fn pending(&self) -> impl Iterator<Item = (usize, &ShardState)> {
        self.shards.iter().enumerate().filter(|(_, s)| !s.done())
    }

    /// Bytes and files to copy, in all and in the shards already done.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in &self.shards {
            t.bytes += s.plan.copied_bytes;
            t.files += s.plan.copied_files;
            if s.done() {
                t.bytes_done += s.plan.copied_bytes;
                t.files_done += s.plan.copied_files;
            }
        }
        t
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub bytes: u64,
    pub files: u64,
    pub bytes_done: u64,
    pub files_done: u64,
}
