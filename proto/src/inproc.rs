//! In-process gRPC: every connection the client opens is a fresh in-memory
//! duplex pipe handed to the server's incoming stream. No port is opened.

use std::io;

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};

/// Bytes buffered in each direction of a pipe: large enough that a shard's
/// progress stream never waits on the reader for long.
const PIPE_BUFFER: usize = 1 << 20;

/// Returns a client channel and the matching stream of server connections,
/// to pass to `tonic::transport::Server::serve_with_incoming`.
pub fn pair() -> (
    Channel,
    impl Stream<Item = Result<DuplexStream, io::Error>> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<DuplexStream>(16);
    let connector = tower::service_fn(move |_uri| {
        let tx = tx.clone();
        async move {
            let (client, server) = tokio::io::duplex(PIPE_BUFFER);
            tx.send(server).await.map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "in-process server has stopped")
            })?;
            Ok::<_, io::Error>(TokioIo::new(client))
        }
    });
    // The URI is never resolved: the connector above replaces the network.
    let channel =
        Endpoint::from_static("http://in-process.invalid").connect_with_connector_lazy(connector);
    (channel, ReceiverStream::new(rx).map(Ok))
}
