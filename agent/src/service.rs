//! The agent's gRPC service. Handlers validate, open storages, start the
//! shard work on its own task and stream its events; they hold no state.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use mo_br_format::layout::FileKind;
use mo_br_proto::agent::agent_server::Agent;
use mo_br_proto::agent::{
    AgentInfo, CopyShardRequest, FileKind as WireKind, InfoRequest, InventoryBatch, InventoryFile,
    InventoryRequest, RestoreShardRequest, ShardEvent, VerifyShardRequest,
};
use mo_br_proto::common::Storage as WireStorage;
use mo_br_storage::Storage;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::shard::{self, Op};
use crate::throttle::{RateLimiter, Throttled};
use crate::{inventory, Error};

/// Files per inventory message: keeps messages well under gRPC's 4 MiB limit.
const INVENTORY_BATCH: usize = 2000;

#[derive(Debug, Clone)]
pub struct AgentService {
    id: String,
    /// Default files in flight per shard when a request does not say.
    parallelism: usize,
    /// Shared by every shard of this agent.
    limiter: Option<Arc<RateLimiter>>,
}

impl AgentService {
    pub fn new(id: impl Into<String>, parallelism: usize) -> Self {
        AgentService {
            id: id.into(),
            parallelism: parallelism.max(1),
            limiter: None,
        }
    }

    /// Caps what this agent reads, over all its shards, at `bytes_per_sec`.
    pub fn with_rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.limiter = Some(Arc::new(RateLimiter::new(bytes_per_sec)));
        self
    }

    /// Sources are read through the agent's rate limit, if it has one.
    fn throttled(&self, storage: Arc<dyn Storage>) -> Arc<dyn Storage> {
        match &self.limiter {
            Some(limiter) => Arc::new(Throttled {
                inner: storage,
                limiter: limiter.clone(),
            }),
            None => storage,
        }
    }

    fn parallelism(&self, asked: u32) -> usize {
        if asked == 0 {
            self.parallelism
        } else {
            asked as usize
        }
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

async fn open(wire: Option<&WireStorage>) -> Result<Arc<dyn Storage>, Status> {
    let wire = wire.ok_or_else(|| Status::invalid_argument("no storage given"))?;
    let (location, creds) = wire.to_location().map_err(Status::invalid_argument)?;
    let storage = mo_br_storage::open(&location, &creds)
        .await
        .map_err(|e| Status::from(Error::from(e)))?;
    Ok(Arc::from(storage))
}

fn wire_kind(kind: FileKind) -> WireKind {
    match kind {
        FileKind::Object => WireKind::Object,
        FileKind::Checkpoint => WireKind::Checkpoint,
        FileKind::Gc => WireKind::Gc,
        FileKind::Config => WireKind::Config,
        FileKind::Logservice => WireKind::Logservice,
        FileKind::Meta | FileKind::Hakeeper => WireKind::Unspecified,
    }
}

fn start(
    op: Op,
    files: Vec<mo_br_proto::agent::FileTask>,
    parallelism: usize,
    epoch: u64,
) -> Response<EventStream<ShardEvent>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(shard::run(op, files, parallelism, epoch, tx));
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl Agent for AgentService {
    type InventoryStream = EventStream<InventoryBatch>;
    type CopyShardStream = EventStream<ShardEvent>;
    type RestoreShardStream = EventStream<ShardEvent>;
    type VerifyShardStream = EventStream<ShardEvent>;

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<AgentInfo>, Status> {
        Ok(Response::new(AgentInfo {
            id: self.id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capacity: self.parallelism as u32,
        }))
    }

    async fn inventory(
        &self,
        request: Request<InventoryRequest>,
    ) -> Result<Response<Self::InventoryStream>, Status> {
        let source = request
            .into_inner()
            .source
            .ok_or_else(|| Status::invalid_argument("no source given"))?;
        if source.data_dir.is_empty() {
            return Err(Status::invalid_argument("--data_dir is required"));
        }
        let data_dir = PathBuf::from(&source.data_dir);
        let launch =
            (!source.launch_config.is_empty()).then(|| PathBuf::from(&source.launch_config));
        let inv =
            tokio::task::spawn_blocking(move || inventory::inventory(&data_dir, launch.as_deref()))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;

        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut first = true;
            let mut files = inv.files.into_iter().peekable();
            while first || files.peek().is_some() {
                let batch: Vec<InventoryFile> = files
                    .by_ref()
                    .take(INVENTORY_BATCH)
                    .map(|f| InventoryFile {
                        kind: wire_kind(f.kind) as i32,
                        source_path: f
                            .source
                            .to_string_lossy()
                            .trim_start_matches('/')
                            .to_string(),
                        name: f.name,
                        size: f.size,
                        role: f.role.unwrap_or_default(),
                    })
                    .collect();
                let msg = InventoryBatch {
                    shared_backend: if first {
                        inv.shared_backend.clone()
                    } else {
                        String::new()
                    },
                    shared_dir: if first {
                        inv.shared_dir.clone()
                    } else {
                        String::new()
                    },
                    files: batch,
                };
                first = false;
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn copy_shard(
        &self,
        request: Request<CopyShardRequest>,
    ) -> Result<Response<Self::CopyShardStream>, Status> {
        let req = request.into_inner();
        let source = self.throttled(open(req.source.as_ref()).await?);
        let target = open(req.target.as_ref()).await?;
        let parallelism = self.parallelism(req.parallelism);
        Ok(start(
            Op::Copy { source, target },
            req.files,
            parallelism,
            req.epoch,
        ))
    }

    async fn restore_shard(
        &self,
        request: Request<RestoreShardRequest>,
    ) -> Result<Response<Self::RestoreShardStream>, Status> {
        let req = request.into_inner();
        let mut sources = HashMap::new();
        for (id, wire) in &req.sources {
            sources.insert(id.clone(), self.throttled(open(Some(wire)).await?));
        }
        let target = open(req.target.as_ref()).await?;
        if req.checksum {
            if let Some(f) = req.files.iter().find(|f| f.sha256.is_empty()) {
                return Err(Status::failed_precondition(format!(
                    "--checksum: no sha256 is recorded for {}",
                    f.src
                )));
            }
        }
        let parallelism = self.parallelism(req.parallelism);
        Ok(start(
            Op::Restore { sources, target },
            req.files,
            parallelism,
            req.epoch,
        ))
    }

    async fn verify_shard(
        &self,
        request: Request<VerifyShardRequest>,
    ) -> Result<Response<Self::VerifyShardStream>, Status> {
        let req = request.into_inner();
        let storage = self.throttled(open(req.storage.as_ref()).await?);
        let parallelism = self.parallelism(req.parallelism);
        Ok(start(
            Op::Verify { storage },
            req.files,
            parallelism,
            req.epoch,
        ))
    }
}
