//! A `TcpListener` as a stream of TLS connections, for tonic:
//!
//! ```ignore
//! Server::builder()
//!     .layer(AuthLayer::new(authenticator, policy))
//!     .add_service(svc)
//!     .serve_with_incoming_shutdown(incoming(listener, tls), shutdown)
//! ```
//!
//! One task accepts; each handshake runs in its own task under a timeout, so
//! a client that connects and says nothing delays nobody. A failed handshake
//! is logged and dropped: the stream only ever yields finished connections.
//! Dropping the stream stops the accept task and closes the listener.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use super::ServerTls;
use crate::identity::PeerIdentity;

/// Limits for [`incoming_with`].
#[derive(Clone, Copy, Debug)]
pub struct IncomingOptions {
    /// How long a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; past that, new connections wait in
    /// the kernel's accept queue.
    pub max_handshakes: usize,
    /// Offer HTTP/1.1 besides h2 (ALPN): for a web page, which browsers and
    /// plain HTTP clients may fetch over either. gRPC needs h2 only.
    pub http1: bool,
}

impl Default for IncomingOptions {
    fn default() -> Self {
        IncomingOptions {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 128,
            http1: false,
        }
    }
}

/// What tonic puts in every request's extensions for a [`TlsConnection`].
#[derive(Clone, Debug)]
pub struct ConnectInfo {
    pub remote_addr: SocketAddr,
    pub local_addr: Option<SocketAddr>,
    /// From the client certificate, verified against the CA during the
    /// handshake; `None` when the client presented none.
    pub peer: Option<PeerIdentity>,
}

impl ConnectInfo {
    pub fn from_request<T>(request: &tonic::Request<T>) -> Option<&ConnectInfo> {
        request.extensions().get::<ConnectInfo>()
    }
}

/// A server-side TLS connection whose handshake is done.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: ConnectInfo,
}

impl TlsConnection {
    pub fn info(&self) -> &ConnectInfo {
        &self.info
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = ConnectInfo;

    fn connect_info(&self) -> ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The stream of finished TLS connections. It never yields an error: accept
/// and handshake failures are logged where they happen. (The error type is
/// what tonic's `serve_with_incoming` expects.)
pub struct TlsIncoming {
    connections: mpsc::Receiver<TlsConnection>,
    accept_task: JoinHandle<()>,
}

impl Stream for TlsIncoming {
    type Item = Result<TlsConnection, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// [`incoming_with`] with default limits.
pub fn incoming(listener: TcpListener, tls: ServerTls) -> TlsIncoming {
    incoming_with(listener, tls, IncomingOptions::default())
}

/// Accepts TLS connections on `listener`, each with the config current when
/// it was accepted. Must be called inside a tokio runtime.
pub fn incoming_with(
    listener: TcpListener,
    tls: ServerTls,
    options: IncomingOptions,
) -> TlsIncoming {
    // Small: a finished connection waits here only until tonic's accept loop
    // comes round, which it does as fast as it can.
    let (tx, rx) = mpsc::channel(16);
    let accept_task = tokio::spawn(accept_loop(listener, tls, options, tx));
    TlsIncoming {
        connections: rx,
        accept_task,
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: ServerTls,
    options: IncomingOptions,
    tx: mpsc::Sender<TlsConnection>,
) {
    let local_addr = listener.local_addr().ok();
    // Owning the handshakes here means they are aborted with this task.
    let mut handshakes = JoinSet::new();
    let max_handshakes = options.max_handshakes.max(1);
    loop {
        let may_accept = handshakes.len() < max_handshakes;
        tokio::select! {
            _ = tx.closed() => return,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept(), if may_accept => match accepted {
                Ok((tcp, remote_addr)) => {
                    let acceptor = TlsAcceptor::from(config(&tls, options.http1));
                    let tx = tx.clone();
                    handshakes.spawn(async move {
                        let info = ConnectInfo { remote_addr, local_addr, peer: None };
                        if let Some(conn) = handshake(acceptor, tcp, info, options.handshake_timeout).await {
                            // Fails only when the server has stopped listening.
                            let _ = tx.send(conn).await;
                        }
                    });
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    // Out of file descriptors and the like: accepting again at
                    // once would spin. Give running connections time to close.
                    tracing::error!(error = %e, "accept failed; retrying in 100ms");
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }
}

/// The config a new connection gets: the current one, with HTTP/1.1 added
/// to its protocols when asked.
fn config(tls: &ServerTls, http1: bool) -> Arc<ServerConfig> {
    let current = tls.current();
    if !http1 {
        return current;
    }
    let mut config = (*current).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    mut info: ConnectInfo,
    timeout: Duration,
) -> Option<TlsConnection> {
    let remote = info.remote_addr;
    // gRPC sends small frames both ways; Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            info.peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(PeerIdentity::from_certificate);
            Some(TlsConnection { stream, info })
        }
        // A TCP probe (load balancer, port check) connects and closes
        // without a word: not worth a warning each time.
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%remote, "connection closed before the TLS handshake");
            None
        }
        Ok(Err(e)) => {
            // rustls errors name what failed (unknown issuer, expired, ...),
            // never key material.
            tracing::warn!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(%remote, ?timeout, "TLS handshake timed out");
            None
        }
    }
}
