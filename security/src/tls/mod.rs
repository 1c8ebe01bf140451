//! rustls configurations loaded from PEM files, replaceable while running.
//!
//! [`ServerTls`] and [`ClientTls`] are cheap handles on the current config.
//! [`reload`](ServerTls::reload) re-reads the files and swaps the config in
//! only if everything in them is usable, so a half-copied rotation keeps the
//! old certificates working. Connections already open keep the config they
//! were made with; every new one takes the newest.
//!
//! - [`incoming`]: a `TcpListener` as a stream of TLS connections for
//!   tonic's `serve_with_incoming`, with the peer's identity in
//!   [`ConnectInfo`].
//! - [`connector`]: tonic `Channel`s over TLS.
//!
//! Both ends speak TLS 1.3 only (every peer is mo-br itself, so nothing
//! older needs to be spoken) with aws-lc-rs as the crypto provider, passed
//! explicitly so no process-wide default is needed.

pub mod connector;
pub mod incoming;

pub use connector::{connect, connect_lazy, tls_endpoint, TlsConnector};
pub use incoming::{
    incoming, incoming_with, ConnectInfo, IncomingOptions, TlsConnection, TlsIncoming,
};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::auth::Role;
use crate::reload::Reload;
use crate::{Error, Result};

/// ALPN for gRPC: HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// A certificate chain and its private key, as two PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// `<dir>/<role>.pem` and `<dir>/<role>.key`, as `certs init` names them.
    pub fn in_dir(dir: &Path, role: Role) -> CertFiles {
        CertFiles {
            cert: dir.join(format!("{}.pem", role.name())),
            key: dir.join(format!("{}.key", role.name())),
        }
    }
}

/// `<dir>/ca.pem`, as `certs init` names it.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bad = |reason: String| Error::BadPem {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in the file".to_owned()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    // The parser's own message could quote part of the key file: say only
    // what was expected.
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|_| Error::BadPem {
        path: path.to_owned(),
        reason: "no usable PEM private key (PKCS#8, PKCS#1 or SEC1) in the file".to_owned(),
    })
}

fn load_roots(ca: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| Error::BadPem {
            path: ca.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A server's files: the CA its clients' certificates must be signed by, and
/// its own certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub ca: PathBuf,
    pub identity: CertFiles,
}

/// A client's files: the CA the server's certificate must be signed by, and
/// optionally a certificate to present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: PathBuf,
    pub identity: Option<CertFiles>,
}

fn build_server(files: &ServerTlsFiles) -> Result<ServerConfig> {
    let provider = provider();
    let roots = load_roots(&files.ca)?;
    let chain = load_certs(&files.identity.cert)?;
    let key = load_key(&files.identity.key)?;

    // Catch a rotation that copied a new CA but not the matching
    // certificate (or the other way round) before it is served.
    let end_entity = ParsedCertificate::try_from(&chain[0]).map_err(|source| Error::Tls {
        side: "server",
        source,
    })?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &end_entity,
        &roots,
        &chain[1..],
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|source| Error::NotSignedByCa {
        cert: files.identity.cert.clone(),
        ca: files.ca.clone(),
        source,
    })?;

    // Clients without a certificate get through the handshake on purpose: a
    // bearer token may still identify them, and the auth layer says no with a
    // message a person can act on, where a failed handshake says nothing.
    // A certificate that IS presented must verify.
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|source| Error::Verifier {
            ca: files.ca.clone(),
            source,
        })?;
    let tls = |source| Error::Tls {
        side: "server",
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| Error::Tls {
            side: "server",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No resumption: every connection shows its certificate again, so the
    // identity a connection carries always comes from a full verification
    // under the config in force (and a reload takes effect at once).
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn build_client(files: &ClientTlsFiles) -> Result<ClientConfig> {
    let provider = provider();
    let roots = load_roots(&files.ca)?;
    let tls = |source| Error::Tls {
        side: "client",
        source,
    };
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|source| Error::Verifier {
                ca: files.ca.clone(),
                source,
            })?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_webpki_verifier(server_verifier);
    let mut config = match &files.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let chain = load_certs(&identity.cert)?;
            let key = load_key(&identity.key)?;
            // Same reason as on the server: refuse a mismatched rotation at
            // load time rather than as a failed handshake later.
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|source| Error::Verifier {
                    ca: files.ca.clone(),
                    source,
                })?;
            verifier
                .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
                .map_err(|source| Error::NotSignedByCa {
                    cert: identity.cert.clone(),
                    ca: files.ca.clone(),
                    source,
                })?;
            builder.with_client_auth_cert(chain, key).map_err(tls)?
        }
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The current config behind a lock that is only held to clone an `Arc`.
struct Current<T, F> {
    files: F,
    // Read once per new connection, written on reload; never held across an
    // await, so a std lock is enough.
    config: RwLock<Arc<T>>,
}

impl<T, F> Current<T, F> {
    fn get(&self) -> Arc<T> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, config: T) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }
}

/// A server's TLS config, reloadable. Clones share it.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Current<ServerConfig, ServerTlsFiles>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    pub fn load(files: ServerTlsFiles) -> Result<ServerTls> {
        let config = build_server(&files)?;
        Ok(ServerTls {
            inner: Arc::new(Current {
                files,
                config: RwLock::new(Arc::new(config)),
            }),
        })
    }

    /// The config new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.inner.get()
    }

    pub fn files(&self) -> &ServerTlsFiles {
        &self.inner.files
    }

    /// Re-reads the files; on error the old config stays.
    pub fn reload(&self) -> Result<()> {
        let config = build_server(&self.inner.files)?;
        self.inner.set(config);
        Ok(())
    }
}

impl Reload for ServerTls {
    fn reload(&self) -> Result<()> {
        ServerTls::reload(self)
    }

    fn describe(&self) -> String {
        format!("server TLS ({})", self.inner.files.identity.cert.display())
    }
}

/// A client's TLS config, reloadable. Clones share it.
#[derive(Clone)]
pub struct ClientTls {
    inner: Arc<Current<ClientConfig, ClientTlsFiles>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    pub fn load(files: ClientTlsFiles) -> Result<ClientTls> {
        let config = build_client(&files)?;
        Ok(ClientTls {
            inner: Arc::new(Current {
                files,
                config: RwLock::new(Arc::new(config)),
            }),
        })
    }

    /// The config new connections get.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.inner.get()
    }

    pub fn files(&self) -> &ClientTlsFiles {
        &self.inner.files
    }

    /// Re-reads the files; on error the old config stays.
    pub fn reload(&self) -> Result<()> {
        let config = build_client(&self.inner.files)?;
        self.inner.set(config);
        Ok(())
    }
}

impl Reload for ClientTls {
    fn reload(&self) -> Result<()> {
        ClientTls::reload(self)
    }

    fn describe(&self) -> String {
        match &self.inner.files.identity {
            Some(identity) => format!("client TLS ({})", identity.cert.display()),
            None => format!("client TLS (CA {})", self.inner.files.ca.display()),
        }
    }
}
