//! TLS and authentication for every mo-br gRPC hop.
//!
//! A cluster has one CA. Coordinator replicas and agents hold certificates
//! that serve TLS and also identify them as clients; the CLI holds an
//! operator or reader certificate, or a bearer token. Every certificate
//! names its [`Role`] in a `mo-br://role/<role>` URI SAN.
//!
//! # Layout
//! - [`certs`]: `certs init`, making the CA, the role certificates and tokens.
//! - [`identity`]: reading the role back out of a verified certificate.
//! - [`tls`]: reloadable rustls configs from PEM files; [`tls::incoming`]
//!   turns a `TcpListener` into TLS connections for tonic, and
//!   [`tls::connector`] makes TLS `Channel`s.
//! - [`reload`]: re-reading certificates and tokens on SIGHUP.
//! - [`auth`]: roles, permissions, the [`Authenticator`] and a tower layer
//!   that authorizes every method of a server.
//! - [`policy`]: refusing to listen off loopback without TLS and auth.
//!
//! # Wiring a server
//! ```ignore
//! let tls = ServerTls::load(ServerTlsFiles { ca, identity })?;
//! let auth = Authenticator::new(TokenFiles { operator, reader })?;
//! if let Some(w) = policy::check_listen(addr, true, true, insecure)? { warn!("{w}") }
//! let _reloader = reload_on_sighup(vec![Box::new(tls.clone()), Box::new(auth.clone())], shutdown.clone())?;
//! Server::builder()
//!     .layer(AuthLayer::new(auth, policy_table))
//!     .add_service(svc)
//!     .serve_with_incoming_shutdown(tls::incoming(listener, tls), shutdown.cancelled())
//!     .await?;
//! ```

pub mod auth;
pub mod certs;
pub mod identity;
pub mod policy;
pub mod reload;
pub mod setup;
pub mod tls;

mod error;

pub use auth::{Authenticator, Caller, Permission, Role, TokenFiles};
pub use error::{Error, Result};
pub use identity::PeerIdentity;
pub use reload::{reload_on_sighup, Reload, SighupReloader};
pub use setup::{Security, TlsArgs};
pub use tls::{CertFiles, ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};
