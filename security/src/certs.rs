//! `certs init`: a cluster CA, a certificate per role, and two bearer tokens.
//!
//! Files written into the (new or empty) output directory:
//!
//! | file | what | mode |
//! |---|---|---|
//! | `ca.pem`, `ca.key` | the cluster CA; keep `ca.key` offline once the rest is made | 0644, 0600 |
//! | `replica.pem`, `.key` | coordinator replicas: server and client | 0644, 0600 |
//! | `agent.pem`, `.key` | agents: server and client | 0644, 0600 |
//! | `operator.pem`, `.key` | the CLI, all operations: client only | 0644, 0600 |
//! | `reader.pem`, `.key` | the CLI, read-only: client only | 0644, 0600 |
//! | `operator.token`, `reader.token` | 32 random bytes as 64 hex characters | 0600 |
//!
//! Every certificate carries its role as a URI SAN `mo-br://role/<role>`
//! (see [`crate::identity`]). The two server certificates also carry every
//! given host plus `localhost`, `127.0.0.1` and `::1` as DNS/IP SANs.
//! Keys are ECDSA P-256. The CA is valid for ten years, the others for two:
//! replace them with a new `init` and a reload (SIGHUP) before then.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::auth::Role;
use crate::tls::{ca_file, CertFiles};
use crate::{Error, Result};

const CA_VALIDITY: Duration = Duration::days(10 * 365);
const LEAF_VALIDITY: Duration = Duration::days(2 * 365);
/// Certificates start an hour in the past so a machine whose clock is a
/// little behind still accepts them.
const BACKDATE: Duration = Duration::hours(1);
/// Always in the server certificates, so local tools and tests need no flags.
const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The paths `init` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub replica: CertFiles,
    pub agent: CertFiles,
    pub operator: CertFiles,
    pub reader: CertFiles,
    pub operator_token: PathBuf,
    pub reader_token: PathBuf,
    /// The host names and addresses in the server certificates.
    pub hosts: Vec<String>,
}

impl Written {
    /// Every file, in the order written.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.ca_cert.as_path(), self.ca_key.as_path()];
        for pair in [&self.replica, &self.agent, &self.operator, &self.reader] {
            files.push(&pair.cert);
            files.push(&pair.key);
        }
        files.push(&self.operator_token);
        files.push(&self.reader_token);
        files
    }

    pub fn cert_files(&self, role: Role) -> &CertFiles {
        match role {
            Role::Replica => &self.replica,
            Role::Agent => &self.agent,
            Role::Operator => &self.operator,
            Role::Reader => &self.reader,
        }
    }
}

/// One file's name, content and whether it is secret (mode 0600).
struct Output {
    name: String,
    content: String,
    secret: bool,
}

/// Creates the CA, the four role certificates and the two tokens in
/// `out_dir`, which must not exist or be empty. `hosts` are the names and
/// addresses the replicas and agents are reached at.
pub fn init(out_dir: &Path, hosts: &[String]) -> Result<Written> {
    check_out_dir(out_dir)?;
    let hosts = server_hosts(hosts)?;
    // Everything is made in memory first, so a generation error leaves no
    // half-written directory behind.
    let outputs = generate(&hosts)?;
    if !out_dir.exists() {
        // 0700: the directory holds the CA key.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out_dir)
            .map_err(|e| Error::io(out_dir, e))?;
    }
    let mut written = Vec::new();
    for output in &outputs {
        let path = out_dir.join(&output.name);
        if let Err(e) = write_new(&path, &output.content, output.secret) {
            // Leave the directory as it was, so the user can simply run again.
            for path in written {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        written.push(path);
    }
    sync_dir(out_dir)?;

    Ok(Written {
        dir: out_dir.to_owned(),
        ca_cert: ca_file(out_dir),
        ca_key: out_dir.join("ca.key"),
        replica: CertFiles::in_dir(out_dir, Role::Replica),
        agent: CertFiles::in_dir(out_dir, Role::Agent),
        operator: CertFiles::in_dir(out_dir, Role::Operator),
        reader: CertFiles::in_dir(out_dir, Role::Reader),
        operator_token: out_dir.join("operator.token"),
        reader_token: out_dir.join("reader.token"),
        hosts,
    })
}

fn check_out_dir(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::OutDirNotEmpty {
                path: dir.to_owned(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // A file in the way: not a directory we may fill.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::OutDirNotEmpty {
            path: dir.to_owned(),
        }),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// The given hosts plus the local ones, without duplicates, in order.
fn server_hosts(hosts: &[String]) -> Result<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    for host in hosts.iter().map(|h| h.trim()) {
        let bad = |reason: &str| Error::BadHost {
            host: host.to_owned(),
            reason: reason.to_owned(),
        };
        if host.is_empty() {
            return Err(bad("empty"));
        }
        if host.contains("://") || host.contains('/') {
            return Err(bad("give a host name or IP address, not a URL"));
        }
        // `host:port` would become a DNS name no client ever asks for.
        if host.parse::<IpAddr>().is_err() && host.contains(':') {
            return Err(bad("give the host without a port"));
        }
        if !all.iter().any(|h| h == host) {
            all.push(host.to_owned());
        }
    }
    for host in LOCAL_HOSTS {
        if !all.iter().any(|h| h == host) {
            all.push(host.to_owned());
        }
    }
    Ok(all)
}

fn san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.try_into().map_err(|e: rcgen::Error| Error::BadHost {
        host: host.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(SanType::DnsName(name))
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // A serial must be positive: clear the sign bit of the DER integer.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "mo-br");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn generate(hosts: &[String]) -> Result<Vec<Output>> {
    let now = OffsetDateTime::now_utc();
    let failed = |what: &'static str| move |source| Error::Generate { what, source };

    let ca_key = KeyPair::generate().map_err(failed("CA key"))?;
    let mut ca = CertificateParams::default();
    // A short random id tells two clusters' (or a rotation's old and new)
    // CAs apart in logs and `openssl x509` output.
    let mut id = [0u8; 4];
    rand::rng().fill_bytes(&mut id);
    ca.distinguished_name = name(&format!("mo-br cluster CA {}", hex::encode(id)));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - BACKDATE;
    ca.not_after = now + CA_VALIDITY;
    ca.serial_number = Some(random_serial());
    let ca_cert = ca.self_signed(&ca_key).map_err(failed("CA certificate"))?;

    let mut outputs = vec![
        Output {
            name: "ca.pem".into(),
            content: ca_cert.pem(),
            secret: false,
        },
        Output {
            name: "ca.key".into(),
            content: ca_key.serialize_pem(),
            secret: true,
        },
    ];
    let issuer = Issuer::new(ca, ca_key);

    for role in Role::ALL {
        let is_server = matches!(role, Role::Replica | Role::Agent);
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("mo-br {role}"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if is_server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let role_uri = role.uri().try_into().map_err(failed("role URI"))?;
        params.subject_alt_names = vec![SanType::URI(role_uri)];
        if is_server {
            for host in hosts {
                params.subject_alt_names.push(san(host)?);
            }
        }
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;

        let what = match role {
            Role::Replica => "replica certificate",
            Role::Agent => "agent certificate",
            Role::Operator => "operator certificate",
            Role::Reader => "reader certificate",
        };
        let key = KeyPair::generate().map_err(failed(what))?;
        let cert = params.signed_by(&key, &issuer).map_err(failed(what))?;
        outputs.push(Output {
            name: format!("{role}.pem"),
            content: cert.pem(),
            secret: false,
        });
        outputs.push(Output {
            name: format!("{role}.key"),
            content: key.serialize_pem(),
            secret: true,
        });
    }

    for role in [Role::Operator, Role::Reader] {
        let mut token = [0u8; 32];
        rand::rng().fill_bytes(&mut token);
        outputs.push(Output {
            name: format!("{role}.token"),
            content: format!("{}\n", hex::encode(token)),
            secret: true,
        });
    }
    Ok(outputs)
}

/// Creates `path` (never overwriting) with its final mode from the start, so
/// a secret is never readable by others even for a moment, and syncs it.
fn write_new(path: &Path, content: &str, secret: bool) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_the_local_names_once() {
        let hosts =
            server_hosts(&["db1.example".into(), "127.0.0.1".into(), "10.0.0.5".into()]).unwrap();
        assert_eq!(
            hosts,
            ["db1.example", "127.0.0.1", "10.0.0.5", "localhost", "::1"]
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        for host in ["", "https://db1", "db1:7000"] {
            let err = server_hosts(&[host.to_owned()]).unwrap_err();
            assert!(matches!(err, Error::BadHost { .. }), "{host}: {err}");
        }
        // An IPv6 literal has colons and is fine.
        server_hosts(&["fe80::1".to_owned()]).unwrap();
    }
}
