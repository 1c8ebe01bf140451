//! The coordinator's gRPC services.
//!
//! - The CLI's: each call starts a job task and streams its events; the
//!   handler holds no state. A follower forwards the call to the leader (once:
//!   a forwarded call is never forwarded again), so the CLI may talk to any
//!   replica.
//! - The agents' registry: registration is a replicated catalog entry;
//!   heartbeats renew a lease held by the leader only.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use mo_br_proto::coordinator::coordinator_client::CoordinatorClient;
use mo_br_proto::coordinator::coordinator_server::Coordinator as CoordinatorApi;
use mo_br_proto::coordinator::registry_server::Registry;
use mo_br_proto::coordinator::{
    job_event, AgentHeartbeat, AgentRegistration, AttachRequest, BackupRequest, CheckRequest,
    CopyRequest, DeleteRequest, ExpireRequest, Finished, InspectReply, InspectRequest, JobEvent,
    ListRequest, PitrRequest, Progress, RebuildRequest, RegistryReply, RestoreRequest,
    ScheduleListRequest, ScheduleRequest, SnapshotRequest, Started,
};
use mo_br_security::auth::MethodPolicy;
use mo_br_security::{Caller, Permission};
use mo_br_storage::Credentials;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::catalog::{AgentRecord, BackupState, Command};
use crate::jobs::snapshot::Op;
use crate::jobs::{self, emit, info, Events};
use crate::metrics::{self, JobKind};
use crate::{Coordinator, Error, Result};

/// Set on a call a follower forwarded, so it is never forwarded twice.
const FORWARDED: &str = "mo-br-forwarded";
/// How long a replica waits for a leader to be known before answering
/// "no quorum" (an election takes about a second).
const LEADER_WAIT: Duration = Duration::from_secs(3);

pub struct CoordinatorService {
    c: Coordinator,
}

impl CoordinatorService {
    pub fn new(c: Coordinator) -> Self {
        CoordinatorService { c }
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;

/// Where a call must go: here, or to the leader at this address. With no
/// leader known, waits for an election to name one.
async fn route(c: &Coordinator, forwarded: bool) -> Result<Option<String>, Status> {
    let mut changes = c.catalog.changes();
    let elected = tokio::time::timeout(LEADER_WAIT, changes.wait_for(|s| s.leader.is_some()));
    if !matches!(elected.await, Ok(Ok(_))) {
        return Err(Error::NoQuorum.into());
    }
    let l = c.catalog.leadership();
    if l.is_leader {
        return Ok(None);
    }
    match l.leader_addr {
        Some(addr) if !forwarded => Ok(Some(addr)),
        Some(addr) => Err(Error::NotLeader(Some(addr)).into()),
        // The leader was lost again since: as good as none.
        None => Err(Error::NoQuorum.into()),
    }
}

/// Who may call what. Operators (and replicas forwarding their calls) may
/// do anything; readers only look; agents only register. Snapshot's and
/// Pitr's own operations are told apart in their handlers.
pub(crate) fn policy() -> MethodPolicy {
    use Permission::{Mutate, Read, Register};
    let cli = [
        ("Backup", Mutate, "back up"),
        ("List", Read, "list backups"),
        ("Check", Read, "check backups"),
        ("Delete", Mutate, "delete backups"),
        ("Restore", Mutate, "restore"),
        ("Attach", Mutate, "follow a backup"),
        ("Inspect", Read, "inspect a replica"),
        ("Snapshot", Read, "use snapshots"),
        ("Pitr", Read, "use PITRs"),
        (
            "ScheduleChange",
            Mutate,
            "create, drop, pause or resume schedules",
        ),
        ("ScheduleList", Read, "list schedules"),
        // Both change the catalog (a dry run shows what an operator would do).
        ("Rebuild", Mutate, "rebuild the catalog"),
        ("Expire", Mutate, "expire backups"),
        ("Copy", Mutate, "copy backups"),
    ];
    let registry = [
        ("Register", Register, "register an agent"),
        ("Heartbeat", Register, "heartbeat as an agent"),
    ];
    let policy = cli
        .into_iter()
        .fold(MethodPolicy::new(), |p, (m, perm, what)| {
            p.method(format!("/mobr.coordinator.Coordinator/{m}"), perm, what)
        });
    let policy = registry.into_iter().fold(policy, |p, (m, perm, what)| {
        p.method(format!("/mobr.coordinator.Registry/{m}"), perm, what)
    });
    let policy = policy.method(
        mo_br_replication::SEND_METHOD,
        Permission::Raft,
        "send raft messages",
    );
    policy.standard_services(Read)
}

fn leader_client(c: &Coordinator, addr: &str) -> Result<CoordinatorClient<Channel>, Status> {
    let endpoint = c
        .security
        .endpoint(addr)
        .map_err(|e| Status::internal(format!("leader address {addr}: {e}")))?
        .connect_timeout(Duration::from_secs(3));
    let channel = c.security.connect_lazy(endpoint);
    Ok(CoordinatorClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

fn forwarded<T>(inner: T) -> Request<T> {
    let mut r = Request::new(inner);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

fn is_forwarded<T>(r: &Request<T>) -> bool {
    r.metadata().contains_key(FORWARDED)
}

fn boxed(s: tonic::Streaming<JobEvent>) -> Response<JobStream> {
    Response::new(Box::pin(s))
}

/// Starts `job` on its own task, owned by the coordinator's supervisor;
/// its error, if any, ends the stream as a status the CLI prints as one
/// line. Its events pass through here on their way to the client, for the
/// job's metrics and its end line in the log (id, bytes, files).
fn start<F, Fut>(
    c: &Coordinator,
    kind: JobKind,
    target: Option<String>,
    job: F,
) -> Result<Response<JobStream>, Status>
where
    F: FnOnce(Coordinator, Events) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(256);
    let task = {
        let c = c.clone();
        async move {
            let live = c.live.start(kind.as_str(), target.clone());
            let mut running = metrics::job_started(kind, target);
            let (inner, mut events) = mpsc::channel(256);
            let work = job(c, inner);
            tokio::pin!(work);
            let result = loop {
                tokio::select! {
                    result = &mut work => break result,
                    Some(event) = events.recv() => {
                        observe(&mut running, &live, &event);
                        let _ = tx.send(event).await;
                    }
                    // The client went away: the job sees its events closed,
                    // as it would without this relay.
                    () = tx.closed(), if !events.is_closed() => events.close(),
                }
            };
            while let Ok(event) = events.try_recv() {
                observe(&mut running, &live, &event);
                let _ = tx.send(event).await;
            }
            match result {
                Ok(()) => running.finish(true),
                Err(e) => {
                    running.finish(false);
                    tracing::warn!("{} failed: {e}", kind.as_str());
                    let _ = tx.send(Err(Status::from(e))).await;
                }
            }
        }
    };
    c.supervisor.spawn(task)?;
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// What a job's event tells its metrics and the status page: its id, and
/// how much it did.
fn observe(
    job: &mut metrics::JobGuard,
    live: &crate::status::LiveGuard,
    event: &Result<JobEvent, Status>,
) {
    live.observe(event);
    match event.as_ref().ok().and_then(|e| e.event.as_ref()) {
        Some(job_event::Event::Started(s)) => {
            job.id = s.job_id.clone();
            tracing::info!(
                id = %s.job_id,
                backup = %s.backup_id,
                planned_bytes = s.total_bytes,
                planned_files = s.total_files,
                "job planned"
            );
        }
        Some(job_event::Event::Progress(p)) => {
            job.bytes = job.bytes.max(p.bytes);
            job.files = job.files.max(p.files);
        }
        _ => {}
    }
}

/// Forwards to the leader or runs `$job` here.
macro_rules! serve_job {
    ($self:ident, $r:ident, $method:ident, $kind:expr, $job:path) => {
        serve_job!($self, $r, $method, $kind, $job, |_| None)
    };
    ($self:ident, $r:ident, $method:ident, $kind:expr, $job:path, $target:expr) => {{
        if let Some(addr) = route(&$self.c, is_forwarded(&$r)).await? {
            let mut client = leader_client(&$self.c, &addr)?;
            return client
                .$method(forwarded($r.into_inner()))
                .await
                .map(|r| boxed(r.into_inner()));
        }
        let req = $r.into_inner();
        let target: Option<String> = ($target)(&req);
        start(&$self.c, $kind, target, move |c, tx| async move {
            $job(&c, req, &tx).await
        })
    }};
}

#[tonic::async_trait]
impl CoordinatorApi for CoordinatorService {
    type BackupStream = JobStream;
    type ListStream = JobStream;
    type CheckStream = JobStream;
    type DeleteStream = JobStream;
    type RestoreStream = JobStream;
    type AttachStream = JobStream;
    type SnapshotStream = JobStream;
    type PitrStream = JobStream;
    type ScheduleChangeStream = JobStream;
    type ScheduleListStream = JobStream;

    async fn schedule_change(
        &self,
        r: Request<ScheduleRequest>,
    ) -> Result<Response<JobStream>, Status> {
        serve_job!(
            self,
            r,
            schedule_change,
            JobKind::Backup,
            jobs::schedule::change
        )
    }

    async fn schedule_list(
        &self,
        r: Request<ScheduleListRequest>,
    ) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, schedule_list, JobKind::List, jobs::schedule::list)
    }
    type RebuildStream = JobStream;
    type ExpireStream = JobStream;
    type CopyStream = JobStream;

    async fn backup(&self, r: Request<BackupRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(
            self,
            r,
            backup,
            JobKind::Backup,
            jobs::backup::run,
            |req: &BackupRequest| Some(metrics::target_label(req.target.as_ref()))
        )
    }

    async fn list(&self, r: Request<ListRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, list, JobKind::List, jobs::list::run)
    }

    async fn check(&self, r: Request<CheckRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, check, JobKind::Check, jobs::check::run)
    }

    async fn delete(&self, r: Request<DeleteRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, delete, JobKind::Delete, jobs::delete::run)
    }

    async fn restore(&self, r: Request<RestoreRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, restore, JobKind::Restore, jobs::restore::run)
    }

    async fn snapshot(&self, r: Request<SnapshotRequest>) -> Result<Response<JobStream>, Status> {
        let op = Op::from_wire(r.get_ref().op);
        // Showing is reading; creating, dropping and restoring change things.
        if !matches!(op, Ok(Op::Show)) {
            if let Some(role) = Caller::from_request(&r).and_then(|c| c.role()) {
                if !role.may(Permission::Mutate) {
                    return Err(Status::permission_denied(format!(
                        "role {role} may not create, drop or restore snapshots"
                    )));
                }
            }
        }
        // Counted with the job kind closest to what the statement does.
        let kind = match op {
            Ok(Op::Show) => JobKind::List,
            Ok(Op::Drop) => JobKind::Delete,
            Ok(Op::Restore) => JobKind::Restore,
            Ok(Op::Create) | Err(_) => JobKind::Backup,
        };
        serve_job!(self, r, snapshot, kind, jobs::snapshot::run)
    }

    async fn pitr(&self, r: Request<PitrRequest>) -> Result<Response<JobStream>, Status> {
        use jobs::pitr::Op as PitrOp;
        let op = PitrOp::from_wire(r.get_ref().op);
        // Showing is reading; everything else changes things.
        if !matches!(op, Ok(PitrOp::Show)) {
            if let Some(role) = Caller::from_request(&r).and_then(|c| c.role()) {
                if !role.may(Permission::Mutate) {
                    return Err(Status::permission_denied(format!(
                        "role {role} may not create, alter, drop or restore PITRs"
                    )));
                }
            }
        }
        // Counted with the job kind closest to what the statement does.
        let kind = match op {
            Ok(PitrOp::Show) => JobKind::List,
            Ok(PitrOp::Drop) => JobKind::Delete,
            Ok(PitrOp::Restore) => JobKind::Restore,
            Ok(PitrOp::Create | PitrOp::Alter) | Err(_) => JobKind::Backup,
        };
        serve_job!(self, r, pitr, kind, jobs::pitr::run)
    }

    async fn rebuild(&self, r: Request<RebuildRequest>) -> Result<Response<JobStream>, Status> {
        // Counted as a check: it reads and verifies manifests.
        serve_job!(self, r, rebuild, JobKind::Rebuild, jobs::rebuild::run)
    }

    async fn copy(&self, r: Request<CopyRequest>) -> Result<Response<JobStream>, Status> {
        // Counted as a restore: it reads a backup and writes verified files
        // elsewhere.
        serve_job!(self, r, copy, JobKind::Copy, jobs::copy::run)
    }

    async fn expire(&self, r: Request<ExpireRequest>) -> Result<Response<JobStream>, Status> {
        serve_job!(self, r, expire, JobKind::Expire, jobs::expire::run)
    }

    async fn attach(&self, r: Request<AttachRequest>) -> Result<Response<JobStream>, Status> {
        if let Some(addr) = route(&self.c, is_forwarded(&r)).await? {
            let mut client = leader_client(&self.c, &addr)?;
            return client
                .attach(forwarded(r.into_inner()))
                .await
                .map(|r| boxed(r.into_inner()));
        }
        let req = r.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let c = self.c.clone();
        self.c.supervisor.spawn(async move {
            if let Err(e) = follow(&c, req, &tx).await {
                let _ = tx.send(Err(Status::from(e))).await;
            }
        })?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn inspect(&self, _: Request<InspectRequest>) -> Result<Response<InspectReply>, Status> {
        let l = self.c.catalog.leadership();
        let catalog_json = self
            .c
            .catalog
            .read(|cat| serde_json::to_string(cat).unwrap_or_default())
            .await?;
        let role = if l.is_leader { "leader" } else { "follower" };
        Ok(Response::new(InspectReply {
            id: self
                .c
                .catalog
                .raft_node()
                .map(|n| n.status().id)
                .unwrap_or(1),
            role: role.into(),
            term: l.term,
            leader_id: l.leader_id,
            commit_index: l.commit,
            applied_index: l.applied,
            snapshot_index: l.snapshot,
            catalog_json,
            live_agents: self.c.agents.live().len() as u32,
        }))
    }
}

/// Streams a running backup's progress from the replicated state until it
/// ends, adopting it here (with the caller's credentials) if no one drives
/// it. The state is read again each time this replica applies commands.
async fn follow(c: &Coordinator, mut req: AttachRequest, events: &Events) -> Result<()> {
    if let Some(restore) = req.restore.take() {
        return jobs::restore::follow(c, &req.job_id, Some(restore), events).await;
    }
    // Watched from before the first read, so no change after it is missed.
    let mut changes = c.catalog.changes();
    changes.borrow_and_update();
    let id = req.job_id.clone();
    let want = id.clone();
    let (job, record) = c
        .catalog
        .read_linearizable(move |cat| {
            (
                cat.jobs.get(&want).cloned(),
                cat.backups.get(&want).cloned(),
            )
        })
        .await?;
    let record = record.ok_or_else(|| Error::UnknownBackup(id.clone()))?;
    if let Some(job) = &job {
        let hold = c
            .catalog
            .read({
                let id = id.clone();
                move |cat| cat.gc_holds.get(&id).cloned()
            })
            .await?;
        let login = hold.map(|h| crate::matrixone::MoLogin {
            host: h.host,
            port: h.port,
            user: h.user,
            password: req.mo_password.clone(),
        });
        if let Some(l) = login.as_ref().filter(|l| !l.password.is_empty()) {
            c.passwords.remember(&id, l);
        }
        let login = login.filter(|l| !l.password.is_empty());
        if job.source_keys && req.source_access_key_id.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "backup {id} reads SHARED with the source keys it was started with; attach with them (--source_access_key_id, --source_secret_access_key)"
            )));
        }
        c.adopt(
            &id,
            Credentials {
                access_key_id: req.access_key_id.clone(),
                secret_access_key: req.secret_access_key.clone(),
                ..Default::default()
            },
            Credentials {
                access_key_id: req.source_access_key_id.clone(),
                secret_access_key: req.source_secret_access_key.clone(),
                ..Default::default()
            },
            login,
        );
        emit(
            events,
            job_event::Event::Started(Started {
                job_id: id.clone(),
                backup_id: id.clone(),
                total_bytes: job.totals().bytes,
                total_files: job.totals().files,
                what: "backup".into(),
            }),
        )
        .await;
    }
    let mut record = record;
    // Progress as last sent: many applied commands change none of it.
    let mut shown = None;
    loop {
        match &record.state {
            BackupState::Complete => {
                emit(
                    events,
                    job_event::Event::Finished(Finished {
                        backup: Some(info(&record)),
                        problems: 0,
                        summary: format!("backup {} complete", record.id),
                    }),
                )
                .await;
                return Ok(());
            }
            BackupState::Failed { reason } => {
                return Err(Error::Failed(format!("backup {id} failed: {reason}")));
            }
            BackupState::Deleting => {
                return Err(Error::Failed(format!("backup {id} is being deleted")));
            }
            BackupState::Running => {}
        }
        tokio::select! {
            // The client went away.
            () = events.closed() => return Ok(()),
            changed = changes.changed() => changed.map_err(|_| Error::Shutdown)?,
        }
        let want = id.clone();
        let (job, rec) = c
            .catalog
            .read(move |cat| {
                (
                    cat.jobs.get(&want).cloned(),
                    cat.backups.get(&want).cloned(),
                )
            })
            .await?;
        if let Some(job) = job {
            let totals = job.totals();
            let progress = Progress {
                bytes: totals.bytes_done,
                files: totals.files_done,
            };
            if shown.as_ref() != Some(&progress) {
                shown = Some(progress);
                emit(events, job_event::Event::Progress(progress)).await;
            }
        }
        record = rec.ok_or_else(|| Error::UnknownBackup(id.clone()))?;
    }
}

pub struct RegistryService {
    c: Coordinator,
}

impl RegistryService {
    pub fn new(c: Coordinator) -> Self {
        RegistryService { c }
    }

    fn redirect(&self) -> Option<RegistryReply> {
        let l = self.c.catalog.leadership();
        (!l.is_leader).then(|| RegistryReply {
            lease_ms: 0,
            leader: l.leader_addr.unwrap_or_default(),
            term: 0,
        })
    }

    fn granted(&self) -> RegistryReply {
        RegistryReply {
            lease_ms: self.c.agents.lease().as_millis() as u64,
            leader: String::new(),
            term: self.c.catalog.leadership().term,
        }
    }
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register(
        &self,
        r: Request<AgentRegistration>,
    ) -> Result<Response<RegistryReply>, Status> {
        if let Some(reply) = self.redirect() {
            return Ok(Response::new(reply));
        }
        let reg = r.into_inner();
        if reg.id.is_empty() || reg.address.is_empty() {
            return Err(Status::invalid_argument(
                "an agent needs an id and an address",
            ));
        }
        let record = AgentRecord {
            id: reg.id,
            address: reg.address,
            node: reg.node,
            data_dir: reg.data_dir,
            reaches_shared: reg.reaches_shared,
            capacity: reg.capacity,
            matrixone: reg.matrixone,
            launch_config: reg.launch_config,
        };
        let want = record.id.clone();
        let known = self
            .c
            .catalog
            .read(move |cat| cat.agents.get(&want).cloned())
            .await?;
        // Re-registering unchanged is idempotent and costs no log entry.
        if known.as_ref() != Some(&record) {
            self.c
                .catalog
                .propose(Command::AgentRegistered(record.clone()))
                .await?;
        }
        self.c.agents.heartbeat(&record)?;
        Ok(Response::new(self.granted()))
    }

    async fn heartbeat(
        &self,
        r: Request<AgentHeartbeat>,
    ) -> Result<Response<RegistryReply>, Status> {
        if let Some(reply) = self.redirect() {
            return Ok(Response::new(reply));
        }
        let id = r.into_inner().id;
        let want = id.clone();
        let record = self
            .c
            .catalog
            .read(move |cat| cat.agents.get(&want).cloned())
            .await?
            .ok_or_else(|| Status::not_found(format!("agent {id} is not registered")))?;
        self.c.agents.heartbeat(&record)?;
        Ok(Response::new(self.granted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mo_br_security::auth::{HEALTH_METHODS, REFLECTION_METHODS};
    use mo_br_security::Role;

    /// Health is open to kubelet; reflection is a read; every CLI method
    /// needs a credential.
    #[test]
    fn the_standard_services_have_rules() {
        let p = policy();
        for m in HEALTH_METHODS {
            assert!(p.is_public(m), "{m}");
        }
        for m in REFLECTION_METHODS {
            assert!(!p.is_public(m), "{m}");
            assert_eq!(
                p.get(m).map(|(perm, _)| perm),
                Some(Permission::Read),
                "{m}"
            );
        }
        assert!(!p.is_public("/mobr.coordinator.Coordinator/List"));
        assert_eq!(
            p.get("/mobr.coordinator.Coordinator/Backup")
                .map(|(perm, _)| perm),
            Some(Permission::Mutate)
        );
    }

    #[test]
    fn rebuilding_the_catalog_and_expiring_are_for_operators() {
        let policy = super::policy();
        for method in ["Rebuild", "Expire"] {
            let (needs, _) = policy
                .get(&format!("/mobr.coordinator.Coordinator/{method}"))
                .unwrap_or_else(|| panic!("{method} has no policy"));
            assert_eq!(needs, Permission::Mutate, "{method}");
            assert!(Role::Operator.may(needs));
            assert!(!Role::Reader.may(needs), "a reader may {method}");
        }
    }

    #[test]
    fn changing_schedules_is_for_operators_listing_them_for_readers() {
        let policy = super::policy();
        let needs = |m: &str| {
            policy
                .get(&format!("/mobr.coordinator.Coordinator/{m}"))
                .unwrap_or_else(|| panic!("{m} has no policy"))
                .0
        };
        assert!(Role::Operator.may(needs("ScheduleChange")));
        assert!(!Role::Reader.may(needs("ScheduleChange")));
        assert!(Role::Reader.may(needs("ScheduleList")));
    }
}
