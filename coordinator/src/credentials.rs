//! The credentials file a coordinator is given (`--credentials_file`): S3
//! keys by endpoint (and bucket) and MatrixOne passwords by host:port (and
//! user), for the work no client attends: scheduled runs, and backups and
//! restores carried on after a leader change. The catalog never holds a
//! secret, so these are looked up here each time they are needed.
//!
//! A file holding a secret itself must be readable by its owner only (as
//! the CLI's config file); one that names files for them instead
//! (`secret_access_key_file`, `password_file`: a Kubernetes Secret mounted
//! beside a ConfigMap) may be shared. A file that breaks this rule, does
//! not parse or has unknown keys is refused whole (at start: the process
//! does not start; on SIGHUP: the previous one stays in force).
//! Nothing here is printed: Debug of every type is redacted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mo_br_storage::{Credentials, Location};
use serde::Deserialize;

use crate::matrixone::DEFAULT_PORT;
use crate::{Error, Result};

/// The file as written. Unknown keys are refused: a misspelt
/// `secret_acess_key` must not silently leave a target without keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    s3: Vec<S3Doc>,
    #[serde(default)]
    matrixone: Vec<MoDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Doc {
    /// Empty or absent: AWS's own endpoint.
    #[serde(default)]
    endpoint: String,
    bucket: Option<String>,
    access_key_id: String,
    secret_access_key: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    session_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoDoc {
    host: String,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

struct S3Entry {
    endpoint: String,
    bucket: Option<String>,
    creds: Credentials,
}

struct MoEntry {
    host: String,
    port: u16,
    user: Option<String>,
    password: String,
}

/// What one reading of the file holds.
#[derive(Default)]
pub struct Entries {
    s3: Vec<S3Entry>,
    matrixone: Vec<MoEntry>,
    /// A secret written in the file itself (not in a file it names).
    inline_secrets: bool,
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entries({} s3, {} matrixone, <redacted>)",
            self.s3.len(),
            self.matrixone.len()
        )
    }
}

/// `http://h:9000/` and `http://h:9000` name the same endpoint.
fn normalize(endpoint: &str) -> &str {
    endpoint.trim().trim_end_matches('/')
}

impl Entries {
    /// Parses the file's text; `base` resolves relative `*_file` paths.
    pub fn parse(text: &str, base: &Path) -> std::result::Result<Entries, String> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            // toml's message spans lines (the line quoted, a caret).
            e.message().split_whitespace().collect::<Vec<_>>().join(" ")
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default()
        })?;
        let secret = |what: &str,
                      inline: Option<String>,
                      file: Option<PathBuf>,
                      entry: &str|
         -> std::result::Result<String, String> {
            match (inline, file) {
                (Some(s), None) => Ok(s),
                (None, Some(f)) => {
                    let f = base.join(f);
                    let s = std::fs::read_to_string(&f)
                        .map_err(|e| format!("{entry}: {what}_file {}: {e}", f.display()))?;
                    Ok(s.trim_end_matches(['\r', '\n']).to_string())
                }
                (Some(_), Some(_)) => Err(format!("{entry}: give {what} or {what}_file, not both")),
                (None, None) => Err(format!("{entry}: {what} (or {what}_file) is missing")),
            }
        };
        let mut out = Entries {
            inline_secrets: doc
                .s3
                .iter()
                .any(|d| d.secret_access_key.is_some() || d.session_token.is_some())
                || doc.matrixone.iter().any(|d| d.password.is_some()),
            ..Entries::default()
        };
        for (i, d) in doc.s3.into_iter().enumerate() {
            let entry = format!("[[s3]] #{} ({})", i + 1, describe_endpoint(&d.endpoint));
            if d.access_key_id.trim().is_empty() {
                return Err(format!("{entry}: access_key_id is empty"));
            }
            let secret_access_key = secret(
                "secret_access_key",
                d.secret_access_key,
                d.secret_access_key_file,
                &entry,
            )?;
            out.s3.push(S3Entry {
                endpoint: normalize(&d.endpoint).to_string(),
                bucket: d.bucket.filter(|b| !b.is_empty()),
                creds: Credentials {
                    access_key_id: d.access_key_id,
                    secret_access_key,
                    session_token: d.session_token.unwrap_or_default(),
                },
            });
        }
        for (i, d) in doc.matrixone.into_iter().enumerate() {
            let entry = format!("[[matrixone]] #{} ({})", i + 1, d.host);
            if d.host.trim().is_empty() {
                return Err(format!("{entry}: host is empty"));
            }
            let password = secret("password", d.password, d.password_file, &entry)?;
            out.matrixone.push(MoEntry {
                host: d.host.trim().to_string(),
                port: d.port.unwrap_or(DEFAULT_PORT),
                user: d.user.filter(|u| !u.is_empty()),
                password,
            });
        }
        Ok(out)
    }

    /// Keys for an S3 location: an entry naming its endpoint and bucket,
    /// else one naming its endpoint alone. `None` for a filesystem.
    pub fn s3_for(&self, location: &Location) -> Option<Credentials> {
        let Location::S3(s3) = location else {
            return None;
        };
        let endpoint = normalize(&s3.endpoint);
        let same_endpoint = self.s3.iter().filter(|e| e.endpoint == endpoint);
        same_endpoint
            .clone()
            .find(|e| e.bucket.as_deref() == Some(s3.bucket.as_str()))
            .or_else(|| same_endpoint.clone().find(|e| e.bucket.is_none()))
            .map(|e| e.creds.clone())
    }

    /// The password of `user` at `host:port`: an entry naming the user,
    /// else one for any user of that address.
    pub fn password_for(&self, host: &str, port: u16, user: &str) -> Option<String> {
        let at = self
            .matrixone
            .iter()
            .filter(|e| e.host == host.trim() && e.port == port);
        at.clone()
            .find(|e| e.user.as_deref() == Some(user))
            .or_else(|| at.clone().find(|e| e.user.is_none()))
            .map(|e| e.password.clone())
    }
}

fn describe_endpoint(endpoint: &str) -> &str {
    if endpoint.trim().is_empty() {
        "aws"
    } else {
        endpoint.trim()
    }
}

/// The coordinator's credentials: the file's entries, swapped whole on
/// reload. Cheap to clone; empty when no file was given.
#[derive(Clone, Default)]
pub struct CredentialsFile {
    path: Option<PathBuf>,
    entries: Arc<RwLock<Arc<Entries>>>,
}

impl fmt::Debug for CredentialsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsFile")
            .field("path", &self.path)
            .field("entries", &"<redacted>")
            .finish()
    }
}

impl CredentialsFile {
    /// Reads `path`, refusing it (one line) when others may read the
    /// secrets it holds, it does not parse, or it has unknown keys.
    pub fn load(path: &Path) -> Result<CredentialsFile> {
        let entries = read(path)?;
        Ok(CredentialsFile {
            path: Some(path.to_path_buf()),
            entries: Arc::new(RwLock::new(Arc::new(entries))),
        })
    }

    /// Whether a file was given.
    pub fn is_given(&self) -> bool {
        self.path.is_some()
    }

    fn current(&self) -> Arc<Entries> {
        self.entries.read().expect("credentials lock").clone()
    }

    /// The file's keys for `location`, if it has some.
    pub fn s3_for(&self, location: &Location) -> Option<Credentials> {
        self.current().s3_for(location)
    }

    /// Keys for `location` as a job without a client uses them: the file's,
    /// else empty (the S3 client then takes this process's environment).
    pub fn s3_or_env(&self, location: &Location) -> Credentials {
        self.s3_for(location).unwrap_or_default()
    }

    /// Whether this process reaches `location` without a client's keys:
    /// a filesystem, keys in this file, or keys in its environment.
    pub fn reaches(&self, location: &Location) -> bool {
        matches!(location, Location::Filesystem { .. })
            || self.s3_for(location).is_some()
            || std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
    }

    pub fn password_for(&self, host: &str, port: u16, user: &str) -> Option<String> {
        self.current().password_for(host, port, user)
    }

    /// Re-reads the file; on error the entries in force stay.
    pub fn reload(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fresh = read(path)?;
        *self.entries.write().expect("credentials lock") = Arc::new(fresh);
        Ok(())
    }
}

impl mo_br_security::Reload for CredentialsFile {
    fn reload(&self) -> mo_br_security::Result<()> {
        CredentialsFile::reload(self).map_err(|e| mo_br_security::Error::Refused(e.to_string()))
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("credentials file {}", p.display()),
            None => "credentials file".into(),
        }
    }
}

fn read(path: &Path) -> Result<Entries> {
    let bad = |detail: String| Error::CredentialsFile {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let entries = Entries::parse(&text, base).map_err(bad)?;
    if entries.inline_secrets {
        refuse_if_shared(path).map_err(bad)?;
    }
    Ok(entries)
}

#[cfg(unix)]
fn refuse_if_shared(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "holds secrets but others may read it (mode {:o}): chmod 600 it, \
             or move them to files named by secret_access_key_file / password_file",
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path) -> std::result::Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mo_br_storage::S3Location;

    fn s3(endpoint: &str, bucket: &str) -> Location {
        Location::S3(S3Location {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            ..Default::default()
        })
    }

    const SAMPLE: &str = r#"
[[s3]]
endpoint = "http://minio:9000/"
access_key_id = "ANY"
secret_access_key = "any-secret"

[[s3]]
endpoint = "http://minio:9000"
bucket = "backups"
access_key_id = "BACKUPS"
secret_access_key = "backups-secret"
session_token = "tok"

[[s3]]
access_key_id = "AWS"
secret_access_key = "aws-secret"

[[matrixone]]
host = "10.0.0.5"
user = "dump"
password = "dump-pw"

[[matrixone]]
host = "10.0.0.5"
port = 6001
password = "any-pw"
"#;

    #[test]
    fn s3_entries_match_by_endpoint_then_bucket() {
        let e = Entries::parse(SAMPLE, Path::new("/")).unwrap();
        let k = e.s3_for(&s3("http://minio:9000", "backups")).unwrap();
        assert_eq!(k.access_key_id, "BACKUPS");
        assert_eq!(k.session_token, "tok");
        let k = e.s3_for(&s3("http://minio:9000/", "other")).unwrap();
        assert_eq!(k.access_key_id, "ANY");
        assert_eq!(e.s3_for(&s3("", "b")).unwrap().access_key_id, "AWS");
        assert!(e.s3_for(&s3("http://elsewhere:9000", "backups")).is_none());
        assert!(e
            .s3_for(&Location::Filesystem { path: "/b".into() })
            .is_none());
    }

    #[test]
    fn matrixone_entries_match_by_address_then_user() {
        let e = Entries::parse(SAMPLE, Path::new("/")).unwrap();
        assert_eq!(e.password_for("10.0.0.5", 6001, "dump").unwrap(), "dump-pw");
        assert_eq!(e.password_for("10.0.0.5", 6001, "root").unwrap(), "any-pw");
        assert!(e.password_for("10.0.0.5", 6002, "dump").is_none());
        assert!(e.password_for("10.0.0.6", 6001, "dump").is_none());
    }

    #[test]
    fn secrets_come_from_files_and_nothing_is_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "from-file\n").unwrap();
        std::fs::write(dir.path().join("pw"), "pw-from-file\n").unwrap();
        let text = r#"
[[s3]]
endpoint = "http://h:1"
access_key_id = "A"
secret_access_key_file = "key"
[[matrixone]]
host = "h"
password_file = "pw"
"#;
        let e = Entries::parse(text, dir.path()).unwrap();
        let k = e.s3_for(&s3("http://h:1", "b")).unwrap();
        assert_eq!(k.secret_access_key, "from-file");
        assert_eq!(e.password_for("h", 6001, "u").unwrap(), "pw-from-file");
        let shown = format!("{e:?} {k:?}");
        assert!(!shown.contains("from-file"), "{shown}");
    }

    #[test]
    fn bad_files_are_refused_on_one_line() {
        let cases = [
            (
                "[[s3]]\nendpoint = \"x\"\naccess_key_id = \"A\"\nsecret_acess_key = \"s\"\n",
                "unknown field",
            ),
            (
                "[[s3]]\naccess_key_id = \"A\"\n",
                "secret_access_key (or secret_access_key_file) is missing",
            ),
            (
                "[[matrixone]]\nhost = \"h\"\npassword = \"p\"\npassword_file = \"f\"\n",
                "not both",
            ),
            ("[[s3]\n", "at byte"),
            ("[gcs]\nkey = 1\n", "unknown field"),
        ];
        for (text, want) in cases {
            let err = Entries::parse(text, Path::new("/")).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_shared_file_is_refused_and_a_bad_reload_keeps_the_old_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(&path, SAMPLE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CredentialsFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = CredentialsFile::load(&path).unwrap();
        assert!(file.password_for("10.0.0.5", 6001, "dump").is_some());

        std::fs::write(&path, "[[matrixone]]\nhost = 1\n").unwrap();
        assert!(file.reload().is_err());
        assert_eq!(
            file.password_for("10.0.0.5", 6001, "dump").unwrap(),
            "dump-pw"
        );

        std::fs::write(
            &path,
            "[[matrixone]]\nhost = \"10.0.0.5\"\npassword = \"new\"\n",
        )
        .unwrap();
        file.reload().unwrap();
        assert_eq!(file.password_for("10.0.0.5", 6001, "dump").unwrap(), "new");

        // Secrets in files it names (a mounted Secret): the file itself
        // may be shared (a ConfigMap).
        std::fs::write(dir.path().join("pw"), "in-a-secret\n").unwrap();
        let shared = dir.path().join("shared.toml");
        std::fs::write(
            &shared,
            "[[matrixone]]\nhost = \"h\"\npassword_file = \"pw\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = CredentialsFile::load(&shared).unwrap();
        assert_eq!(file.password_for("h", 6001, "u").unwrap(), "in-a-secret");
    }
}
