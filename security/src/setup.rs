//! A process's security settings, from its flags, in one value: what it
//! serves with, what it calls others with, and who it lets in.
//!
//! Every daemon takes the same [`TlsArgs`]; a directory made by
//! `mo_br certs init` (`--tls_dir`) is enough, single files override it.
//! Without any of them the daemon runs as before, in plaintext and letting
//! everyone in, which [`crate::policy`] allows only on loopback unless
//! `--insecure` says otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tonic::transport::{Channel, Endpoint};

use crate::auth::{AuthLayer, MethodPolicy};
use crate::policy::{self, Warning};
use crate::reload::Reload;
use crate::tls::connector::{tls_endpoint, TlsConnector};
use crate::tls::{ca_file, CertFiles, ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};
use crate::{Authenticator, Error, Result, Role, TokenFiles};

/// TLS flags every mo-br daemon takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// A directory made by `mo_br certs init`: the CA (`ca.pem`), this
    /// daemon's certificate and key (`<role>.pem`, `<role>.key`) and, for a
    /// coordinator, the operator and reader tokens. Turns on TLS.
    #[arg(long = "tls_dir", env = "MO_BR_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// The cluster CA (PEM), instead of `<tls_dir>/ca.pem`.
    #[arg(long = "tls_ca", env = "MO_BR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This daemon's certificate (PEM), instead of the one in `--tls_dir`.
    #[arg(long = "tls_cert", env = "MO_BR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long = "tls_key", env = "MO_BR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Listen off loopback without TLS or authentication: anyone who
    /// reaches the port may then back up, restore over and delete. Logged
    /// at every start.
    #[arg(long = "insecure")]
    pub insecure: bool,
}

impl TlsArgs {
    /// The CA and identity files of `role`, or `None` when nothing turns
    /// TLS on. Half a configuration (a CA without a certificate, ...) is an
    /// error naming what is missing.
    pub fn files(&self, role: Role) -> Result<Option<(PathBuf, CertFiles)>> {
        let dir = self.tls_dir.as_deref();
        let in_dir = dir.map(|d: &Path| CertFiles::in_dir(d, role));
        let ca = self.tls_ca.clone().or_else(|| dir.map(ca_file));
        let cert = self
            .tls_cert
            .clone()
            .or_else(|| in_dir.as_ref().map(|f| f.cert.clone()));
        let key = self
            .tls_key
            .clone()
            .or_else(|| in_dir.as_ref().map(|f| f.key.clone()));
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some((ca, CertFiles { cert, key }))),
            (ca, cert, key) => {
                let missing = [
                    (ca.is_none(), "--tls_ca"),
                    (cert.is_none(), "--tls_cert"),
                    (key.is_none(), "--tls_key"),
                ]
                .iter()
                .filter(|(m, _)| *m)
                .map(|(_, f)| *f)
                .collect::<Vec<_>>()
                .join(", ");
                Err(Error::Incomplete { missing })
            }
        }
    }
}

/// How a daemon serves and calls. Cheap to clone: the TLS configs and the
/// tokens are shared, and a reload is seen by every clone.
#[derive(Clone, Debug)]
pub struct Security {
    server: Option<ServerTls>,
    client: Option<ClientTls>,
    auth: Authenticator,
}

impl Security {
    /// No TLS, everyone let in: services wired together in one process (the
    /// embedded default) and daemons allowed to run so by [`policy`].
    pub fn plaintext() -> Security {
        Security {
            server: None,
            client: None,
            auth: Authenticator::allow_all(),
        }
    }

    /// Loads what `args` name for a daemon of `role` listening on `listen`;
    /// `tokens` are the bearer tokens it accepts besides client
    /// certificates. Refuses a setup [`policy::check_listen`] refuses, and
    /// returns the warning to log for one it lets through with
    /// `--insecure`.
    pub fn daemon(
        args: &TlsArgs,
        role: Role,
        tokens: TokenFiles,
        listen: SocketAddr,
    ) -> Result<(Security, Option<Warning>)> {
        let security = match args.files(role)? {
            Some((ca, identity)) => Security {
                server: Some(ServerTls::load(ServerTlsFiles {
                    ca: ca.clone(),
                    identity: identity.clone(),
                })?),
                client: Some(ClientTls::load(ClientTlsFiles {
                    ca,
                    identity: Some(identity),
                })?),
                auth: Authenticator::new(tokens)?,
            },
            None if tokens.operator.is_some() || tokens.reader.is_some() => {
                return Err(Error::TokensWithoutTls)
            }
            None => Security::plaintext(),
        };
        let warning = policy::check_listen(
            listen,
            security.server.is_some(),
            !security.auth.is_allow_all(),
            args.insecure,
        )?;
        Ok((security, warning))
    }

    pub fn is_tls(&self) -> bool {
        self.server.is_some() || self.client.is_some()
    }

    /// Who the server lets in, for servers other than gRPC (the
    /// coordinator's status page).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    pub fn server_tls(&self) -> Option<&ServerTls> {
        self.server.as_ref()
    }

    /// The layer that authorizes every call of a server by `policy`.
    pub fn layer(&self, policy: MethodPolicy) -> AuthLayer {
        AuthLayer::new(self.auth.clone(), policy)
    }

    /// What SIGHUP re-reads: certificates and tokens.
    pub fn reloaders(&self) -> Vec<Box<dyn Reload>> {
        let mut out: Vec<Box<dyn Reload>> = Vec::new();
        if let Some(s) = &self.server {
            out.push(Box::new(s.clone()));
        }
        if let Some(c) = &self.client {
            out.push(Box::new(c.clone()));
        }
        if !self.auth.is_allow_all() {
            out.push(Box::new(self.auth.clone()));
        }
        out
    }

    /// An endpoint for the daemon at `host:port` (https with TLS); set
    /// timeouts on it, then [`Security::connect_lazy`] or
    /// [`Security::connect`].
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint> {
        endpoint(addr, self.client.is_some())
    }

    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        connect_lazy(endpoint, self.client.as_ref())
    }

    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        connect(endpoint, self.client.as_ref()).await
    }
}

/// `host:port` (or a full URL) as an endpoint, https when `tls`.
pub fn endpoint(addr: &str, tls: bool) -> Result<Endpoint> {
    let bare = addr
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    if tls {
        tls_endpoint(&format!("https://{bare}"))
    } else {
        Endpoint::from_shared(format!("http://{bare}")).map_err(|_| Error::BadUri {
            uri: addr.to_string(),
            reason: "not a valid address",
        })
    }
}

pub fn connect_lazy(endpoint: Endpoint, tls: Option<&ClientTls>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(tls.clone())),
        None => endpoint.connect_lazy(),
    }
}

pub async fn connect(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => {
            endpoint
                .connect_with_connector(TlsConnector::new(tls.clone()))
                .await
        }
        None => endpoint.connect().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_from_the_dir_or_each_flag() {
        let none = TlsArgs::default();
        assert!(none.files(Role::Agent).unwrap().is_none());
        let dir = TlsArgs {
            tls_dir: Some("/pki".into()),
            ..Default::default()
        };
        let (ca, id) = dir.files(Role::Agent).unwrap().unwrap();
        assert_eq!(ca, PathBuf::from("/pki/ca.pem"));
        assert_eq!(id.cert, PathBuf::from("/pki/agent.pem"));
        assert_eq!(id.key, PathBuf::from("/pki/agent.key"));
        let half = TlsArgs {
            tls_ca: Some("/pki/ca.pem".into()),
            ..Default::default()
        };
        let err = half.files(Role::Replica).unwrap_err().to_string();
        assert!(err.contains("--tls_cert, --tls_key"), "{err}");
    }

    #[test]
    fn tokens_without_tls_are_refused_and_loopback_runs_plaintext() {
        let tokens = TokenFiles {
            operator: Some("/x".into()),
            reader: None,
        };
        let err = Security::daemon(
            &TlsArgs::default(),
            Role::Replica,
            tokens,
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::TokensWithoutTls), "{err}");
        let (s, warning) = Security::daemon(
            &TlsArgs::default(),
            Role::Replica,
            TokenFiles::default(),
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap();
        assert!(!s.is_tls() && warning.is_none());
        let err = Security::daemon(
            &TlsArgs::default(),
            Role::Agent,
            TokenFiles::default(),
            "0.0.0.0:7201".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
    }

    #[test]
    fn endpoints_follow_the_scheme() {
        assert_eq!(
            endpoint("h:1", false).unwrap().uri().to_string(),
            "http://h:1/"
        );
        assert!(endpoint("h:1", true).is_ok());
        assert!(endpoint("h", true).is_err());
    }
}
