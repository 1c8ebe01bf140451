//! tonic `Channel`s over TLS with a reloadable [`ClientTls`].
//!
//! [`TlsConnector`] is a tower `Service<Uri>`: TCP to the URI's host and port,
//! then a TLS handshake that checks the server's certificate against the
//! cluster CA for that host name (or IP address). Each new connection takes
//! the newest config.
//!
//! tonic is given the address as `http://` and the `https://` form only as
//! the request origin: the TLS here is ours, and if tonic's own TLS feature
//! is switched on elsewhere in the build, an `https://` connect target would
//! make it look for a TLS config of its own and fail.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::ClientTls;
use crate::{Error, Result};

/// Connects TCP + TLS for tonic's `Endpoint::connect_with_connector`.
#[derive(Clone, Debug)]
pub struct TlsConnector {
    tls: ClientTls,
}

impl TlsConnector {
    pub fn new(tls: ClientTls) -> TlsConnector {
        TlsConnector { tls }
    }
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.tls.current());
        Box::pin(async move {
            let invalid =
                |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {what}"));
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            // An IPv6 literal keeps its brackets in a URI, not in a name.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let server_name =
                ServerName::try_from(host.clone()).map_err(|_| invalid("not a valid host name"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// An `Endpoint` for `https://host:port`, ready for
/// `connect_with_connector(TlsConnector::new(tls))`; set timeouts and the
/// like on it first.
pub fn tls_endpoint(uri: &str) -> Result<Endpoint> {
    let bad = |reason| Error::BadUri {
        uri: uri.to_owned(),
        reason,
    };
    let parsed: Uri = uri.parse().map_err(|_| bad("not a valid URI"))?;
    if parsed.scheme_str() != Some("https") {
        return Err(bad("a TLS address must start with https://"));
    }
    let authority = parsed
        .authority()
        .ok_or_else(|| bad("no host in the address"))?;
    if authority.port_u16().is_none() {
        return Err(bad("the address needs a port (https://host:port)"));
    }
    let target = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| bad("not a valid address"))?;
    let origin: Uri = format!("https://{authority}")
        .parse()
        .map_err(|_| bad("not a valid address"))?;
    Ok(target.origin(origin))
}

/// Connects to `https://host:port` now.
pub async fn connect(uri: &str, tls: &ClientTls) -> Result<Channel> {
    tls_endpoint(uri)?
        .connect_with_connector(TlsConnector::new(tls.clone()))
        .await
        .map_err(|source| Error::connect(uri, source))
}

/// A channel to `https://host:port` that connects on first use.
pub fn connect_lazy(uri: &str, tls: &ClientTls) -> Result<Channel> {
    Ok(tls_endpoint(uri)?.connect_with_connector_lazy(TlsConnector::new(tls.clone())))
}
