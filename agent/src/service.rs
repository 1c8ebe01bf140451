//! The agent's gRPC service. Handlers validate, open storages, start the
//! shard work on its own task and stream its events; they hold no state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use mo_br_format::layout::FileKind;
use mo_br_proto::agent::agent_server::Agent;
use mo_br_proto::agent::{
    AgentInfo, CopyShardRequest, FileKind as WireKind, InfoRequest, InventoryBatch, InventoryFile,
    InventoryRequest, RestoreShardRequest, ShardEvent, VerifyShardRequest,
};
use mo_br_proto::common::storage;
use mo_br_proto::common::Storage as WireStorage;
use mo_br_storage::{
    can_copy_server_side, CopyOptions, Durability, Location, OpenOptions, Pacer, ServerSideCopier,
    Storage,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::fence::Fence;
use crate::served::Served;
use crate::shard::{self, Op};
use crate::throttle::{RateLimiter, Throttled};
use crate::{inventory, Error};

/// Files per inventory message: keeps messages well under gRPC's 4 MiB limit.
const INVENTORY_BATCH: usize = 2000;
/// Inventory messages waiting for the coordinator: a slow reader pauses the
/// listing instead of letting it pile up in memory.
const INVENTORY_QUEUE: usize = 2;

#[derive(Debug, Clone)]
pub struct AgentService {
    id: String,
    /// Default files in flight per shard when a request does not say.
    parallelism: usize,
    /// Shared by every shard of this agent.
    limiter: Option<Arc<RateLimiter>>,
    /// How inventories sort; `online` comes from each request.
    inventory: inventory::Options,
    /// What it may read from this host's disk; `None` for the embedded
    /// default's agent, which runs as the user in the user's own process.
    served: Option<Arc<Served>>,
    /// The newest leader term seen: older ones get no work done.
    fence: Fence,
}

impl AgentService {
    pub fn new(id: impl Into<String>, parallelism: usize) -> Self {
        AgentService {
            id: id.into(),
            parallelism: parallelism.max(1),
            limiter: None,
            inventory: inventory::Options::default(),
            served: None,
            fence: Fence::default(),
        }
    }

    /// Shares `fence` with the registration, which learns newer terms from
    /// heartbeats.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Reads from disk only what `served` covers.
    pub fn serving(mut self, served: Served) -> Self {
        self.served = Some(Arc::new(served));
        self
    }

    /// Refuses a path of the host this agent does not serve.
    fn check_served(&self, path: &Path) -> Result<(), Status> {
        match &self.served {
            Some(served) => served
                .check(path)
                .map(|_| ())
                .map_err(|why| Status::from(Error::NotServed(why))),
            None => Ok(()),
        }
    }

    /// Sorts inventories in runs of `run_size` files spilled under
    /// `spill_dir` (the system temp directory if `None`).
    pub fn with_inventory_sort(mut self, run_size: usize, spill_dir: Option<PathBuf>) -> Self {
        self.inventory.run_size = run_size;
        self.inventory.spill_dir = spill_dir;
        self
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

/// A shard's retry window and the options its storages open with: the
/// request's window and request rate, else the agent's default window.
fn shard_limits(retry_window_ms: u64, max_requests_per_sec: u64) -> (Duration, OpenOptions) {
    let window = match retry_window_ms {
        0 => mo_br_storage::default_retry_window(),
        ms => Duration::from_millis(ms),
    };
    let opts = OpenOptions {
        retry_window: Some(window),
        pacer: (max_requests_per_sec > 0).then(|| Arc::new(Pacer::new(max_requests_per_sec))),
        // A shard's files are made durable together before any is reported
        // done (see `shard::run`).
        durability: Durability::Batched,
    };
    (window, opts)
}

async fn open(wire: Option<&WireStorage>, opts: &OpenOptions) -> Result<Arc<dyn Storage>, Status> {
    let wire = wire.ok_or_else(|| Status::invalid_argument("no storage given"))?;
    let (location, creds) = wire.to_location().map_err(Status::invalid_argument)?;
    let storage = mo_br_storage::open_with(&location, &creds, opts)
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

fn wire_file(f: inventory::NodeFile) -> InventoryFile {
    InventoryFile {
        kind: wire_kind(f.kind) as i32,
        source_path: f
            .source
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string(),
        name: f.name,
        size: f.size,
        role: f.role.unwrap_or_default(),
    }
}

/// Sends an inventory in batches, on a blocking thread: listing and merging
/// are file system work. The first batch carries the header (always sent,
/// even with no files); an error ends the stream as its status. Returns when
/// the receiver goes away, dropping the listing and its spilled runs.
fn send_inventory(inv: inventory::Inventory, tx: &mpsc::Sender<Result<InventoryBatch, Status>>) {
    let inventory::Inventory {
        shared_backend,
        shared_dir,
        backup_ts,
        shared_store,
        files,
    } = inv;
    let mut header = Some(InventoryBatch {
        shared_backend,
        shared_dir,
        backup_ts: backup_ts.map(|ts| ts.to_string()).unwrap_or_default(),
        shared_store: shared_store
            .map(|l| WireStorage::from_location(&l, &mo_br_storage::Credentials::default())),
        files: Vec::new(),
    });
    let mut batch = Vec::with_capacity(INVENTORY_BATCH);
    for file in files {
        match file {
            Ok(file) => batch.push(wire_file(file)),
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::from(e)));
                return;
            }
        }
        if batch.len() == INVENTORY_BATCH {
            let msg = InventoryBatch {
                files: std::mem::replace(&mut batch, Vec::with_capacity(INVENTORY_BATCH)),
                ..header.take().unwrap_or_default()
            };
            if tx.blocking_send(Ok(msg)).is_err() {
                return;
            }
        }
    }
    if header.is_some() || !batch.is_empty() {
        let msg = InventoryBatch {
            files: batch,
            ..header.take().unwrap_or_default()
        };
        let _ = tx.blocking_send(Ok(msg));
    }
}

fn start(
    op: Op,
    files: Vec<mo_br_proto::agent::FileTask>,
    parallelism: usize,
    epoch: u64,
    window: Duration,
) -> Response<EventStream<ShardEvent>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(shard::run(op, files, parallelism, epoch, window, tx));
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
        let request = request.into_inner();
        self.fence.admit(request.term)?;
        let source = request
            .source
            .ok_or_else(|| Status::invalid_argument("no source given"))?;
        if source.data_dir.is_empty() && source.launch_config.is_empty() {
            return Err(Status::invalid_argument(
                "--data_dir is required (or --launch_config, when SHARED is on S3)",
            ));
        }
        let data_dir = PathBuf::from(&source.data_dir);
        let launch =
            (!source.launch_config.is_empty()).then(|| PathBuf::from(&source.launch_config));
        if !source.data_dir.is_empty() {
            self.check_served(&data_dir)?;
        }
        if let Some(l) = &launch {
            self.check_served(l)?;
        }
        let options = inventory::Options {
            online: request.online,
            source_creds: mo_br_storage::Credentials {
                access_key_id: request.source_access_key_id.clone(),
                secret_access_key: request.source_secret_access_key.clone(),
                ..Default::default()
            },
            ..self.inventory.clone()
        };
        // Configs, SHARED detection and the cut: small, and their errors are
        // the call's status. The listing itself streams below.
        let mut inv = tokio::task::spawn_blocking(move || {
            inventory::inventory(&data_dir, launch.as_deref(), &options)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;

        let (tx, rx) = mpsc::channel(INVENTORY_QUEUE);
        let gone = tx.clone();
        inv.files.stop_when(move || gone.is_closed());
        let on_panic = tx.clone();
        let listing = tokio::task::spawn_blocking(move || send_inventory(inv, &tx));
        tokio::spawn(async move {
            // A stream that just ended would read as a complete listing.
            if let Err(e) = listing.await {
                let _ = on_panic
                    .send(Err(Status::internal(format!("inventory failed: {e}"))))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn copy_shard(
        &self,
        request: Request<CopyShardRequest>,
    ) -> Result<Response<Self::CopyShardStream>, Status> {
        let mut req = request.into_inner();
        self.fence.admit(req.term)?;
        let (window, opts) = shard_limits(req.retry_window_ms, req.max_requests_per_sec);
        let mut source_wire = req
            .source
            .clone()
            .ok_or_else(|| Status::invalid_argument("no source given"))?;
        // A SHARED store on S3 given without keys: the TN config's, then
        // the standard AWS environment's (as MatrixOne reads them).
        if let Some(storage::Kind::S3(s3)) = source_wire.kind.as_mut() {
            if s3.access_key_id.is_empty() && !req.launch_config.is_empty() {
                let launch = PathBuf::from(&req.launch_config);
                self.check_served(&launch)?;
                let creds =
                    tokio::task::spawn_blocking(move || inventory::s3_credentials_of(&launch))
                        .await
                        .map_err(|e| Status::internal(e.to_string()))?
                        .ok()
                        .flatten();
                if let Some(creds) = creds {
                    s3.access_key_id = creds.access_key_id;
                    s3.secret_access_key = creds.secret_access_key;
                    s3.session_token = creds.session_token;
                }
            }
        }
        let target_wire = req
            .target
            .clone()
            .ok_or_else(|| Status::invalid_argument("no target given"))?;
        let (src_loc, src_creds) = source_wire
            .to_location()
            .map_err(Status::invalid_argument)?;
        // Node files are named from the root of this host's filesystem;
        // each is read where its links really lead, once checked.
        if let (Location::Filesystem { path }, Some(served)) = (&src_loc, &self.served) {
            for f in &mut req.files {
                let real = served
                    .check(&path.join(&f.src))
                    .map_err(|why| Status::from(Error::NotServed(why)))?;
                if let Ok(rel) = real.strip_prefix(path) {
                    f.src = rel.to_string_lossy().into_owned();
                }
            }
        }
        let (dst_loc, dst_creds) = target_wire
            .to_location()
            .map_err(Status::invalid_argument)?;
        // One endpoint, one identity: the server copies, no byte comes here
        // (unless the files are to be compressed on the way).
        let compress = req.files.iter().any(|f| {
            f.compression
                .as_ref()
                .is_some_and(|c| c.codec != mo_br_proto::common::Codec::None as i32)
        });
        let server_copy = match (&src_loc, &dst_loc) {
            (Location::S3(src), Location::S3(dst))
                if !compress
                    && can_copy_server_side(&src_loc, &src_creds, &dst_loc, &dst_creds) =>
            {
                Some(Arc::new(
                    ServerSideCopier::with_open_options(
                        src,
                        dst,
                        &dst_creds,
                        CopyOptions::default(),
                        &opts,
                    )
                    .map_err(|e| Status::from(Error::from(e)))?,
                ))
            }
            _ => None,
        };
        let source = self.throttled(open(Some(&source_wire), &opts).await?);
        let target = open(Some(&target_wire), &opts).await?;
        let parallelism = self.parallelism(req.parallelism);
        Ok(start(
            Op::Copy {
                source,
                target,
                server_copy,
            },
            req.files,
            parallelism,
            req.epoch,
            window,
        ))
    }

    async fn restore_shard(
        &self,
        request: Request<RestoreShardRequest>,
    ) -> Result<Response<Self::RestoreShardStream>, Status> {
        let req = request.into_inner();
        self.fence.admit(req.term)?;
        let (window, opts) = shard_limits(req.retry_window_ms, req.max_requests_per_sec);
        let mut sources = HashMap::new();
        for (id, wire) in &req.sources {
            sources.insert(id.clone(), self.throttled(open(Some(wire), &opts).await?));
        }
        let target = open(req.target.as_ref(), &opts).await?;
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
            Op::Restore {
                sources,
                target,
                keep_verified: req.keep_verified,
            },
            req.files,
            parallelism,
            req.epoch,
            window,
        ))
    }

    async fn verify_shard(
        &self,
        request: Request<VerifyShardRequest>,
    ) -> Result<Response<Self::VerifyShardStream>, Status> {
        let req = request.into_inner();
        self.fence.admit(req.term)?;
        let (window, opts) = shard_limits(req.retry_window_ms, req.max_requests_per_sec);
        let storage = self.throttled(open(req.storage.as_ref(), &opts).await?);
        let parallelism = self.parallelism(req.parallelism);
        Ok(start(
            Op::Verify { storage },
            req.files,
            parallelism,
            req.epoch,
            window,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use mo_br_proto::common::Source;

    use super::*;

    fn request(root: &std::path::Path, online: bool) -> Request<InventoryRequest> {
        Request::new(InventoryRequest {
            source: Some(Source {
                data_dir: root.join("mo-data").display().to_string(),
                launch_config: root.join("etc/launch/launch.toml").display().to_string(),
                ..Default::default()
            }),
            online,
            ..Default::default()
        })
    }

    fn is_empty(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).unwrap().next().is_none()
    }

    #[tokio::test]
    async fn inventory_streams_the_header_first_then_sorted_batches() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        let (names, _) = inventory::tests::node(dir.path(), 5000);
        let service =
            AgentService::new("a", 1).with_inventory_sort(100, Some(spill.path().to_path_buf()));
        let mut stream = service
            .inventory(request(dir.path(), true))
            .await
            .unwrap()
            .into_inner();
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch.unwrap());
        }
        assert_eq!(batches[0].shared_backend, "DISK-V2");
        assert_eq!(batches[0].shared_dir, "mo-data/shared2");
        assert_eq!(batches[0].backup_ts, "300-0");
        assert!(batches[1..]
            .iter()
            .all(|b| b.shared_backend.is_empty() && b.backup_ts.is_empty()));
        assert!(batches.iter().all(|b| b.files.len() <= INVENTORY_BATCH));
        let files: Vec<InventoryFile> = batches.into_iter().flat_map(|b| b.files).collect();
        let shared: Vec<&str> = files
            .iter()
            .filter(|f| f.kind != WireKind::Config as i32)
            .map(|f| f.name.as_str())
            .collect();
        let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
        expected.retain(|n| *n != "gc/gc_0-0_400-0.ckp");
        assert_eq!(shared, expected);
        assert_eq!(files.len(), expected.len() + 4, "SHARED then 4 configs");
        assert!(is_empty(spill.path()));
    }

    /// A coordinator that stops reading must not leave the listing (or its
    /// runs on disk) behind.
    #[tokio::test]
    async fn inventory_stops_when_the_client_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        inventory::tests::node(dir.path(), 12_000);
        let service =
            AgentService::new("a", 1).with_inventory_sort(100, Some(spill.path().to_path_buf()));
        let mut stream = service
            .inventory(request(dir.path(), false))
            .await
            .unwrap()
            .into_inner();
        stream.next().await.unwrap().unwrap();
        // The listing is now parked on the full queue, its runs on disk.
        assert!(!is_empty(spill.path()));
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !is_empty(spill.path()) {
            assert!(tokio::time::Instant::now() < deadline, "runs left behind");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn inventory_of_a_missing_data_dir_is_the_call_status() {
        let dir = tempfile::tempdir().unwrap();
        let service = AgentService::new("a", 1);
        let status = service
            .inventory(request(&dir.path().join("nope"), false))
            .await
            .err()
            .unwrap();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
