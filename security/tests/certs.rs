//! `certs init`: what it writes and what it refuses.

use std::os::unix::fs::PermissionsExt;

use mo_br_security::certs;
use mo_br_security::{Error, PeerIdentity, Role};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

fn cert(path: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn init_writes_every_file_with_secrets_0600() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let w = certs::init(&out, &["db1.example".to_owned(), "10.1.2.3".to_owned()]).unwrap();

    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "agent.key",
            "agent.pem",
            "ca.key",
            "ca.pem",
            "operator.key",
            "operator.pem",
            "operator.token",
            "reader.key",
            "reader.pem",
            "reader.token",
            "replica.key",
            "replica.pem",
        ]
    );
    assert_eq!(w.files().len(), names.len());
    for path in w.files() {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let name = path.file_name().unwrap().to_str().unwrap();
        if name.ends_with(".key") || name.ends_with(".token") {
            assert_eq!(mode, 0o600, "{name}");
        } else {
            assert_eq!(mode & 0o077 & !0o044, 0, "{name}: {mode:o}");
        }
    }
    for token in [&w.operator_token, &w.reader_token] {
        let text = std::fs::read_to_string(token).unwrap();
        let hex = text.trim_end();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(
        std::fs::read(&w.operator_token).unwrap(),
        std::fs::read(&w.reader_token).unwrap()
    );
}

#[test]
fn every_certificate_carries_its_role_and_servers_their_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let w = certs::init(
        dir.path(),
        &["db1.example".to_owned(), "10.1.2.3".to_owned()],
    )
    .unwrap();
    assert_eq!(
        w.hosts,
        ["db1.example", "10.1.2.3", "localhost", "127.0.0.1", "::1"]
    );

    for role in Role::ALL {
        let der = cert(&w.cert_files(role).cert);
        assert_eq!(PeerIdentity::from_certificate(&der).role, Some(role));

        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let names = &parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        let mut uris = Vec::new();
        for name in names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(ip) => ips.push(ip.len()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        assert_eq!(uris, [format!("mo-br://role/{role}")]);
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth, "{role}");
        if matches!(role, Role::Replica | Role::Agent) {
            assert_eq!(dns, ["db1.example", "localhost"]);
            assert_eq!(ips, [4, 4, 16]);
            assert!(eku.server_auth, "{role}");
        } else {
            assert!(dns.is_empty() && ips.is_empty(), "{role}");
            assert!(!eku.server_auth, "{role}");
        }
    }
    // The CA is not itself any role.
    assert_eq!(PeerIdentity::from_certificate(&cert(&w.ca_cert)).role, None);
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    let err = certs::init(dir.path(), &[]).unwrap_err();
    assert!(matches!(err, Error::OutDirNotEmpty { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to write certificates into {}: it is not an empty directory",
            dir.path().display()
        )
    );
    assert!(!err.to_string().contains('\n'));
    // Untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // A second init over a first is the same refusal.
    let out = dir.path().join("certs");
    certs::init(&out, &[]).unwrap();
    assert!(matches!(
        certs::init(&out, &[]),
        Err(Error::OutDirNotEmpty { .. })
    ));
    // So is a file in the way.
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        certs::init(&file, &[]),
        Err(Error::OutDirNotEmpty { .. })
    ));
}

#[test]
fn init_into_an_existing_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let w = certs::init(dir.path(), &[]).unwrap();
    assert_eq!(w.dir, dir.path());
    assert!(w.ca_key.exists());
}

#[test]
fn bad_hosts_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let err = certs::init(&out, &["db1:7000".to_owned()]).unwrap_err();
    assert!(matches!(err, Error::BadHost { .. }), "{err}");
    assert!(!out.exists());
}
