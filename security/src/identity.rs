//! How a certificate says which role it belongs to.
//!
//! The role is a URI subject alternative name, `mo-br://role/<name>` with
//! `<name>` one of `replica`, `agent`, `operator`, `reader`. That is the only
//! place it is read from: the subject (CN, O) is for people reading logs and
//! `openssl x509 -text`, never for decisions. A URI SAN was chosen over the
//! subject OU because SANs are covered by the same CA signature, are what
//! SPIFFE-style identities use, and cannot be confused with a host name
//! (a server name check only looks at DNS and IP SANs).

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::auth::Role;

/// The prefix of the URI SAN that carries a certificate's role.
pub const ROLE_URI_PREFIX: &str = "mo-br://role/";

impl Role {
    /// The URI SAN written into this role's certificates.
    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.name())
    }

    fn from_uri(uri: &str) -> Option<Role> {
        uri.strip_prefix(ROLE_URI_PREFIX).and_then(Role::from_name)
    }
}

/// Who is at the other end of a TLS connection, as its verified client
/// certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's subject, for logs and error messages.
    pub subject: String,
    /// The role from the `mo-br://role/...` URI SAN; `None` when the
    /// certificate has none, several different ones, or could not be parsed.
    pub role: Option<Role>,
}

impl PeerIdentity {
    /// Reads the identity from a certificate the TLS layer has already
    /// verified against the cluster CA; this does no verification itself.
    pub fn from_certificate(der: &CertificateDer<'_>) -> PeerIdentity {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            return PeerIdentity {
                subject: "<unparseable certificate>".to_owned(),
                role: None,
            };
        };
        let subject = cert.subject().to_string();
        let mut roles = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if let Some(role) = Role::from_uri(uri) {
                        roles.push(role);
                    }
                }
            }
        }
        // Two different roles in one certificate is a CA mistake; guessing
        // which one was meant would grant more than either alone.
        let role = match roles.first() {
            Some(first) if roles.iter().all(|r| r == first) => Some(*first),
            _ => None,
        };
        PeerIdentity { subject, role }
    }
}
