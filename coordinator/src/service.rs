//! The coordinator's gRPC service. Each call starts a job task and streams
//! its events; the handler itself holds no state.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;
use mo_br_proto::coordinator::coordinator_server::Coordinator as CoordinatorApi;
use mo_br_proto::coordinator::{
    BackupRequest, CheckRequest, DeleteRequest, JobEvent, ListRequest, RestoreRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::jobs::{self, Events};
use crate::{Coordinator, Result};

pub struct CoordinatorService {
    coordinator: Coordinator,
}

impl CoordinatorService {
    pub fn new(coordinator: Coordinator) -> Self {
        CoordinatorService { coordinator }
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;

/// Starts `job` on its own task; its error, if any, ends the stream as a
/// status the CLI prints as one line.
fn start<F, Fut>(c: &Coordinator, job: F) -> Response<JobStream>
where
    F: FnOnce(Coordinator, Events) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(256);
    let c = c.clone();
    tokio::spawn(async move {
        let events = tx.clone();
        if let Err(e) = job(c, events).await {
            tracing::warn!("job failed: {e}");
            let _ = tx.send(Err(Status::from(e))).await;
        }
    });
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

#[tonic::async_trait]
impl CoordinatorApi for CoordinatorService {
    type BackupStream = JobStream;
    type ListStream = JobStream;
    type CheckStream = JobStream;
    type DeleteStream = JobStream;
    type RestoreStream = JobStream;

    async fn backup(&self, r: Request<BackupRequest>) -> Result<Response<JobStream>, Status> {
        let req = r.into_inner();
        Ok(start(&self.coordinator, |c, tx| async move {
            jobs::backup::run(&c, req, &tx).await
        }))
    }

    async fn list(&self, r: Request<ListRequest>) -> Result<Response<JobStream>, Status> {
        let req = r.into_inner();
        Ok(start(&self.coordinator, |c, tx| async move {
            jobs::list::run(&c, req, &tx).await
        }))
    }

    async fn check(&self, r: Request<CheckRequest>) -> Result<Response<JobStream>, Status> {
        let req = r.into_inner();
        Ok(start(&self.coordinator, |c, tx| async move {
            jobs::check::run(&c, req, &tx).await
        }))
    }

    async fn delete(&self, r: Request<DeleteRequest>) -> Result<Response<JobStream>, Status> {
        let req = r.into_inner();
        Ok(start(&self.coordinator, |c, tx| async move {
            jobs::delete::run(&c, req, &tx).await
        }))
    }

    async fn restore(&self, r: Request<RestoreRequest>) -> Result<Response<JobStream>, Status> {
        let req = r.into_inner();
        Ok(start(&self.coordinator, |c, tx| async move {
            jobs::restore::run(&c, req, &tx).await
        }))
    }
}
