//! The catalog actor: one task owns the catalog and its log; everyone else
//! holds a cheap [`CatalogHandle`] and sends it proposals and reads. This is
//! the seam where raft goes: a proposal then becomes a raft entry, answered
//! when applied.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use super::log::CommandLog;
use super::{Catalog, Command};
use crate::{Error, Result};

type Reader = Box<dyn FnOnce(&Catalog) + Send>;

enum Msg {
    Propose(Command, oneshot::Sender<Result<u64>>),
    Read(Reader),
}

#[derive(Clone)]
pub struct CatalogHandle {
    tx: mpsc::Sender<Msg>,
}

impl CatalogHandle {
    /// Opens the log at `path`, replays it and starts the owning task.
    pub fn open(path: &Path) -> Result<CatalogHandle> {
        let (log, catalog) = CommandLog::open(path)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(log, catalog, rx));
        Ok(CatalogHandle { tx })
    }

    /// Commits `cmd` durably and applies it; returns its log index.
    pub async fn propose(&self, cmd: Command) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose(cmd, reply))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Runs `f` on the applied state.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let reader: Reader = Box::new(move |c| {
            let _ = reply.send(f(c));
        });
        self.tx
            .send(Msg::Read(reader))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }
}

async fn run(mut log: CommandLog, mut catalog: Catalog, mut rx: mpsc::Receiver<Msg>) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Propose(cmd, reply) => {
                let index = catalog.applied + 1;
                // A synchronous append + fsync: commands are few and small,
                // and this task must not answer before the entry is durable.
                let result = log.append(index, &cmd).map(|()| {
                    catalog.apply(index, &cmd);
                    index
                });
                let _ = reply.send(result);
            }
            Msg::Read(f) => f(&catalog),
        }
    }
}
