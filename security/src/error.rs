use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while making, loading or checking security
/// material. Messages are one line, name the file or address involved, and
/// never carry key or token bytes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to write certificates into {path}: it is not an empty directory")]
    OutDirNotEmpty { path: PathBuf },
    #[error("invalid host {host:?} for a certificate: {reason}")]
    BadHost { host: String, reason: String },
    #[error("generating the {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path}: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("{cert} is not valid under the CA in {ca}: {source}")]
    NotSignedByCa {
        cert: PathBuf,
        ca: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("building the TLS {side} configuration: {source}")]
    Tls {
        side: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("building the client certificate verifier from {ca}: {source}")]
    Verifier {
        ca: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{path}: not a usable bearer token: {reason}")]
    BadToken { path: PathBuf, reason: &'static str },
    #[error("the operator and reader tokens are the same; give each role its own token")]
    SameTokens,
    #[error(
        "refusing to listen on {addr} without {missing}: configure TLS and authentication, \
         or pass --insecure to accept the risk"
    )]
    InsecureListen {
        addr: SocketAddr,
        missing: &'static str,
    },
    #[error("{uri}: {reason}")]
    BadUri { uri: String, reason: &'static str },
    /// `detail` is the whole cause chain in one line: tonic's own message is
    /// only "transport error", the reason (refused, unknown issuer, ...) is
    /// further down.
    #[error("connecting to {uri}: {detail}")]
    Connect {
        uri: String,
        detail: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("TLS is half configured: {missing} missing (or give --tls_dir)")]
    Incomplete { missing: String },
    #[error(
        "bearer tokens need TLS (they would cross the network in the clear): give --tls_dir too"
    )]
    TokensWithoutTls,
    #[error("listening for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
    /// A file of another part (a credentials file) refused on reload; the
    /// reason is one line without secrets.
    #[error("{0}")]
    Refused(String),
}

impl Error {
    /// A short stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::OutDirNotEmpty { .. } => "out_dir_not_empty",
            Error::BadHost { .. } => "bad_host",
            Error::Generate { .. } => "generate",
            Error::BadPem { .. } => "bad_pem",
            Error::NotSignedByCa { .. } => "not_signed_by_ca",
            Error::Tls { .. } => "tls",
            Error::Verifier { .. } => "verifier",
            Error::BadToken { .. } => "bad_token",
            Error::SameTokens => "same_tokens",
            Error::InsecureListen { .. } => "insecure_listen",
            Error::BadUri { .. } => "bad_uri",
            Error::Connect { .. } => "connect",
            Error::Incomplete { .. } => "incomplete",
            Error::TokensWithoutTls => "tokens_without_tls",
            Error::Signal(_) => "signal",
            Error::Refused(_) => "refused",
        }
    }

    pub(crate) fn connect(uri: &str, source: tonic::transport::Error) -> Self {
        Error::Connect {
            uri: uri.to_owned(),
            detail: one_line_chain(&source),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The messages of `e` and its sources, each once, joined with ": ".
fn one_line_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        let text = e.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cur = e.source();
    }
    line
}
