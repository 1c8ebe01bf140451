//! Where a MatrixOne node keeps its SHARED file service, read from the TN
//! config (`tn.toml`) the way MatrixOne itself reads it.
//!
//! MatrixOne decodes `[[fileservice]]` entries into `fileservice.Config`
//! (`pkg/fileservice/config.go`) with an `s3` sub-table of
//! `ObjectStorageArguments` (`pkg/fileservice/object_storage_arguments.go`);
//! `cmd/mo-service/config.go` fills in defaults. [`shared_from_tn_config`]
//! follows those rules so that mo-br reads exactly the bucket, prefix and
//! endpoint MatrixOne writes to. `docs/SHARED_ON_S3.md` is the prose
//! version, with the source paths each rule comes from.
//!
//! Secrets a config may carry (`key-secret`, tokens) are kept only in
//! [`ConfigSecrets`], whose `Debug` never shows them.

use std::fmt;

use mo_br_storage::{Credentials, S3Location};
use toml::Value;

/// The SHARED file service of a MatrixOne node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedService {
    /// `DISK` (legacy, a CRC per 2 KiB block) or `DISK-V2` (raw bytes): a
    /// directory on the node.
    Disk {
        /// Upper-cased backend name, `DISK` or `DISK-V2`.
        backend: String,
        data_dir: String,
    },
    /// `S3` or `MINIO`: a bucket and key prefix on an S3-compatible store.
    S3(Box<S3Shared>),
}

/// How MatrixOne's SDK names the bucket in its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `http://endpoint/bucket/key`: MinIO and most S3-compatible servers.
    Path,
    /// `http://bucket.endpoint/key`: the AWS SDK's default, and what
    /// MatrixOne uses for Aliyun OSS and Tencent COS.
    VirtualHosted,
}

/// A SHARED file service on S3 or MinIO, normalized the way MatrixOne
/// connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Shared {
    /// `S3` or `MINIO`, upper-cased as MatrixOne compares it.
    pub backend: String,
    /// `scheme://host[:port]`, lower-case, no trailing '/'; a config without
    /// a scheme means https, as MatrixOne assumes. Empty: AWS's own
    /// endpoint for `region`.
    pub endpoint: String,
    pub bucket: String,
    /// Where MatrixOne's files start inside the bucket: an object `x` of
    /// SHARED is key `<key_prefix>/x` (or `x` when empty). Without leading
    /// or trailing '/', `.` or empty parts, as Go's `path.Join` cleans it.
    pub key_prefix: String,
    /// As configured, or read from an AWS / Tencent endpoint name as
    /// MatrixOne does; empty when neither says (the SDK's default applies).
    pub region: String,
    /// MatrixOne talks to this store with the MinIO SDK (backend `MINIO`,
    /// or `is-minio = true`).
    pub is_minio: bool,
    pub addressing: Addressing,
    /// Extra CA certificates (PEM files) MatrixOne trusts for this store.
    pub cert_files: Vec<String>,
    /// MatrixOne assumes this role (STS AssumeRole) when set.
    pub role_arn: String,
    pub external_id: String,
    pub role_session_name: String,
    /// An AWS shared-config profile name (`~/.aws/config`).
    pub shared_config_profile: String,
    /// Parsed for completeness; MatrixOne's `NewS3FS` overrides it with
    /// `false` for the file services of a node, so it never takes effect
    /// there.
    pub no_default_credentials: bool,
    /// Static credentials written in the config, if any.
    pub secrets: ConfigSecrets,
}

/// Credentials written in the config itself (`key-id`, `key-secret`,
/// `session-token`, ...). Never printed: `Debug` says only which are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigSecrets {
    pub key_id: String,
    pub key_secret: String,
    pub session_token: String,
    pub security_token: String,
    pub bearer_token: String,
}

impl fmt::Debug for ConfigSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "<unset>" } else { "<set>" };
        f.debug_struct("ConfigSecrets")
            .field("key_id", &set(&self.key_id))
            .field("key_secret", &set(&self.key_secret))
            .field("session_token", &set(&self.session_token))
            .field("security_token", &set(&self.security_token))
            .field("bearer_token", &set(&self.bearer_token))
            .finish()
    }
}

impl ConfigSecrets {
    pub fn is_empty(&self) -> bool {
        *self == ConfigSecrets::default()
    }
}

impl S3Shared {
    /// The place mo-br reads SHARED from. Path-style requests unless only
    /// virtual-hosted ones can work (Aliyun OSS, Tencent COS): MinIO and
    /// most S3-compatible servers answer path-style but not virtual-hosted
    /// ones on an IP or a plain host name, and AWS answers both. The
    /// config's `cert-files` become the location's extra CA roots.
    pub fn location(&self) -> S3Location {
        S3Location {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            prefix: self.key_prefix.clone(),
            role_arn: self.role_arn.clone(),
            is_minio: self.is_minio,
            compression: String::new(),
            virtual_hosted: self.addressing == Addressing::VirtualHosted
                && vendor_virtual(&self.endpoint),
            ca_files: self.cert_files.clone(),
        }
    }

    /// The credentials MatrixOne would sign with, when they are static: the
    /// config's `key-id` / `key-secret` first, then the environment variables
    /// MatrixOne's SDK reads (`env` looks one up; pass `std::env::var(..).ok()`).
    /// `None` leaves the choice to the storage's own chain (instance or
    /// container credentials, web identity).
    ///
    /// A session token goes with the pair it belongs to: the config's
    /// `session-token` (or Aliyun/Tencent `security-token`) with its keys,
    /// `AWS_SESSION_TOKEN` with keys from the environment.
    pub fn static_credentials(&self, env: impl Fn(&str) -> Option<String>) -> Option<Credentials> {
        let s = &self.secrets;
        if !s.key_id.is_empty() && !s.key_secret.is_empty() {
            let token = if s.session_token.is_empty() {
                &s.security_token
            } else {
                &s.session_token
            };
            return Some(Credentials {
                access_key_id: s.key_id.clone(),
                secret_access_key: s.key_secret.clone(),
                session_token: token.clone(),
            });
        }
        // minio_sdk.go falls back through these names in order; the AWS SDK
        // v2 environment provider reads the first two of each.
        let (ids, secrets): (&[&str], &[&str]) = if self.is_minio {
            (
                &[
                    "AWS_ACCESS_KEY_ID",
                    "AWS_ACCESS_KEY",
                    "MINIO_ROOT_USER",
                    "MINIO_ACCESS_KEY",
                ],
                &[
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SECRET_KEY",
                    "MINIO_ROOT_PASSWORD",
                    "MINIO_SECRET_KEY",
                ],
            )
        } else {
            (
                &["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"],
                &["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"],
            )
        };
        let first = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()));
        // The MinIO SDK fills each of the two from the environment on its
        // own; the AWS SDK takes the pair from the config or the pair from
        // its chain, never one of each.
        let (id, secret) = if self.is_minio {
            (
                Some(s.key_id.clone())
                    .filter(|v| !v.is_empty())
                    .or_else(|| first(ids))?,
                Some(s.key_secret.clone())
                    .filter(|v| !v.is_empty())
                    .or_else(|| first(secrets))?,
            )
        } else {
            (first(ids)?, first(secrets)?)
        };
        Some(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN").unwrap_or_default(),
        })
    }
}

/// The SHARED file service a TN config names, read as MatrixOne reads it:
/// names compare case-insensitively, a service named `s3` is SHARED (an old
/// name `cmd/mo-service` still renames), backends are upper-cased, a disk
/// service without `data-dir` lives at `<data-dir>/shared`.
///
/// `Ok(None)` when the config names no SHARED service; MatrixOne then uses
/// `DISK` at `<data-dir>/shared`. `Err` explains what is wrong: not TOML,
/// a key of the wrong type, a backend SHARED cannot have (`MEM`, HDFS, ...)
/// or an S3 setting MatrixOne itself could not use.
pub fn shared_from_tn_config(text: &str) -> Result<Option<SharedService>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let top_data_dir = match get(&doc, "data-dir") {
        Some(v) => str_value(v, "data-dir")?,
        None => String::new(),
    };
    let services = match get(&doc, "fileservice") {
        None => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("fileservice must be an array of tables ([[fileservice]])".into()),
    };

    let mut found: Option<&toml::Table> = None;
    for (i, s) in services.iter().enumerate() {
        let Value::Table(t) = s else {
            return Err(format!("fileservice[{i}] is not a table"));
        };
        let name = match get(t, "name") {
            Some(v) => str_value(v, "fileservice.name")?,
            None => String::new(),
        };
        // MatrixOne decodes every entry into its Config struct: a mistyped
        // key in any of them stops the node from starting.
        if let Some(v) = get(t, "backend") {
            str_value(v, "fileservice.backend")?;
        }
        if name.eq_ignore_ascii_case("SHARED") || name.eq_ignore_ascii_case("s3") {
            if found.is_some() {
                // MatrixOne refuses two services with one name (file_services.go).
                return Err("more than one SHARED file service".into());
            }
            found = Some(t);
        }
    }
    let Some(t) = found else {
        return Ok(None);
    };

    let backend = match get(t, "backend") {
        Some(v) => str_value(v, "fileservice.backend")?.to_ascii_uppercase(),
        None => String::new(),
    };
    match backend.as_str() {
        "DISK" | "DISK-V2" => {
            let mut data_dir = match get(t, "data-dir") {
                Some(v) => str_value(v, "fileservice.data-dir")?,
                None => String::new(),
            };
            if data_dir.is_empty() {
                let root = if top_data_dir.is_empty() {
                    "./mo-data"
                } else {
                    top_data_dir.trim_end_matches('/')
                };
                data_dir = format!("{root}/shared");
            }
            Ok(Some(SharedService::Disk { backend, data_dir }))
        }
        "S3" | "MINIO" => {
            let empty = toml::Table::new();
            let args = match get(t, "s3") {
                Some(Value::Table(a)) => a,
                Some(_) => return Err("fileservice.s3 must be a table".into()),
                None => &empty,
            };
            s3_shared(backend, args).map(|s| Some(SharedService::S3(Box::new(s))))
        }
        "" => Err("the SHARED file service names no backend".into()),
        "MEM" => {
            Err("the SHARED file service is in memory (backend MEM): nothing to back up".into())
        }
        other => Err(format!(
            "the SHARED file service has backend {other}; mo-br reads DISK, DISK-V2, S3 and MINIO"
        )),
    }
}

fn s3_shared(backend: String, args: &toml::Table) -> Result<S3Shared, String> {
    let s = |key: &str| -> Result<String, String> {
        match get(args, key) {
            Some(v) => str_value(v, &format!("fileservice.s3.{key}")),
            None => Ok(String::new()),
        }
    };
    let b = |key: &str| -> Result<bool, String> {
        match get(args, key) {
            Some(Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!("fileservice.s3.{key} must be true or false")),
            None => Ok(false),
        }
    };

    let raw_endpoint = s("endpoint")?;
    if b("is-hdfs")? || raw_endpoint.to_ascii_lowercase().starts_with("hdfs") {
        return Err("the SHARED file service is on HDFS; mo-br reads S3-compatible stores".into());
    }
    if raw_endpoint.trim().eq_ignore_ascii_case("disk") {
        return Err(
            "the SHARED file service uses endpoint \"disk\" (MatrixOne's on-disk object storage \
             for tests); mo-br does not read it"
                .into(),
        );
    }
    let is_minio = backend == "MINIO" || b("is-minio")?;
    let endpoint = normalize_endpoint(&raw_endpoint)?;
    if endpoint.is_empty() && is_minio {
        return Err("backend MINIO needs fileservice.s3.endpoint".into());
    }
    if endpoint.contains("ctyunapi.cn") {
        return Err(
            "the SHARED file service is on China Telecom cloud (ctyunapi.cn), which MatrixOne \
             signs with signature V2; mo-br signs with V4 only"
                .into(),
        );
    }
    let bucket = s("bucket")?;
    if bucket.is_empty() {
        return Err("the SHARED file service names no bucket (fileservice.s3.bucket)".into());
    }
    if bucket.contains('/') {
        return Err(format!("invalid bucket name {bucket:?}"));
    }
    let key_prefix = clean_key_prefix(&s("key-prefix")?)?;

    let mut region = s("region")?;
    if region.is_empty() {
        region = region_from_endpoint(&endpoint);
    }

    let cert_files = match get(args, "cert-files") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| str_value(v, "fileservice.s3.cert-files"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("fileservice.s3.cert-files must be an array of paths".into()),
    };

    // s3_fs.go picks the SDK: MinIO for is-minio, the vendors' own SDKs for
    // Tencent and Aliyun, the AWS SDK v2 otherwise. minio_sdk.go forces DNS
    // (virtual-hosted) lookup for Tencent and Aliyun; minio-go's automatic
    // lookup is path-style except for AWS's and Google's endpoints.
    let addressing = if !is_minio
        || vendor_virtual(&endpoint)
        || endpoint.contains("amazonaws.com")
        || endpoint.contains("googleapis.com")
    {
        Addressing::VirtualHosted
    } else {
        Addressing::Path
    };

    Ok(S3Shared {
        backend,
        endpoint,
        bucket,
        key_prefix,
        region,
        is_minio,
        addressing,
        cert_files,
        role_arn: s("role-arn")?,
        external_id: s("external-id")?,
        role_session_name: s("role-session-name")?,
        shared_config_profile: s("shared-config-profile")?,
        no_default_credentials: b("no-default-credentials")?,
        secrets: ConfigSecrets {
            key_id: s("key-id")?,
            key_secret: s("key-secret")?,
            session_token: s("session-token")?,
            security_token: s("security-token")?,
            bearer_token: s("bearer-token")?,
        },
    })
}

/// Aliyun OSS and Tencent COS, which answer only virtual-hosted requests.
fn vendor_virtual(endpoint: &str) -> bool {
    ["myqcloud.com", "aliyuncs.com"]
        .iter()
        .any(|d| endpoint.contains(d))
}

/// `scheme://host[:port]` as MatrixOne connects, or "" for none.
///
/// MatrixOne parses the endpoint with Go's `url.Parse` and adds `https` when
/// it finds no scheme (`ObjectStorageArguments.validate`). Go reads
/// `host:port` without a scheme as scheme `host` (or fails for an IP
/// address), so MatrixOne cannot use such an endpoint: it is refused here
/// with a hint rather than guessed.
fn normalize_endpoint(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => {
            if raw.contains(':') {
                return Err(format!(
                    "S3 endpoint {raw:?} has no scheme: MatrixOne (Go's url.Parse) does not read \
                     host:port without one; write http://{raw} or https://{raw}"
                ));
            }
            ("https".to_string(), raw)
        }
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "S3 endpoint scheme {scheme:?} is not http or https"
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        // Never echo it: the part before '@' may be a secret.
        return Err("S3 endpoint carries user info; give credentials separately".into());
    }
    if authority.is_empty() {
        return Err(format!("S3 endpoint {raw:?} names no host"));
    }
    if !tail.trim_end_matches('/').is_empty() {
        return Err(format!(
            "S3 endpoint {raw:?} has a path or query; mo-br takes scheme://host[:port] only"
        ));
    }
    Ok(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Cleans `key-prefix` as Go's `path.Join(prefix, name)` does when
/// MatrixOne builds a key (`S3FS.pathToKey`): empty and `.` parts go, `..`
/// removes the part before it. A leading '/' would survive into MatrixOne's
/// keys (`/prefix/x`), which mo-br cannot name: refused.
fn clean_key_prefix(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err(format!(
            "key-prefix {raw:?} starts with '/': MatrixOne's keys then start with '/', which \
             mo-br does not support"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in raw.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("key-prefix {raw:?} climbs above the bucket root"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The region an endpoint name carries, as MatrixOne reads it for Tencent
/// (`cos.<region>.myqcloud.com`), plus AWS's regional names
/// (`s3.<region>.amazonaws.com`, `s3-<region>.amazonaws.com`). MatrixOne
/// asks AWS for the bucket's region instead (a HEAD on the bucket); the
/// name says the same for a regional endpoint.
fn region_from_endpoint(endpoint: &str) -> String {
    let host = endpoint
        .split_once("://")
        .map(|(_, h)| h)
        .unwrap_or(endpoint);
    let host = host.split(':').next().unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    if let Some(i) = labels.iter().position(|l| *l == "myqcloud") {
        if i >= 2 && labels[i - 2] == "cos" {
            return labels[i - 1].to_string();
        }
    }
    if let Some(i) = labels.iter().position(|l| *l == "amazonaws") {
        if i >= 1 {
            let l = labels[i - 1];
            if let Some(r) = l.strip_prefix("s3-") {
                return r.to_string();
            }
            if i >= 2 && labels[i - 2] == "s3" && l != "s3" {
                return l.to_string();
            }
        }
    }
    String::new()
}

/// A key, exactly or else ignoring case, as BurntSushi/toml (MatrixOne's
/// decoder) matches struct fields.
fn get<'a>(t: &'a toml::Table, key: &str) -> Option<&'a Value> {
    t.get(key).or_else(|| {
        t.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn str_value(v: &Value, what: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("{what} must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(text: &str) -> S3Shared {
        match shared_from_tn_config(text).unwrap().unwrap() {
            SharedService::S3(s) => *s,
            other => panic!("not S3: {other:?}"),
        }
    }

    fn err(text: &str) -> String {
        shared_from_tn_config(text).unwrap_err()
    }

    /// MatrixOne's etc/launch-minio-local/tn.toml, abridged.
    const MINIO_LOCAL: &str = r#"
service-type = "TN"
data-dir = "./etc/launch-minio-local/mo-data"

[[fileservice]]
backend = "DISK-V2"
data-dir = "./etc/launch-minio-local/mo-data"
name = "LOCAL"

[[fileservice]]
backend = "MINIO"
name = "SHARED"

[fileservice.s3]
bucket = "mo-test"
endpoint = "http://127.0.0.1:9000"
key-prefix = "server/data"
key-id = "minio"
key-secret = "minio123"

[fileservice.cache]
memory-capacity = "512MB"
disk-capacity = "2GB"

[[fileservice]]
backend = "MINIO"
name = "ETL"

[fileservice.s3]
bucket = "mo-test"
endpoint = "http://127.0.0.1:9000"
key-prefix = "server/etl"
key-id = "minio"
key-secret = "minio123"

[tn]
uuid = "713F97B0-1E28-4F80-849D-FE0979AE734A"
"#;

    /// MatrixOne's etc/launch-tae-compose/config/tn.toml, abridged.
    const COMPOSE: &str = r#"
service-type = "TN"

[[fileservice]]
backend = "DISK-V2"
data-dir = "/var/lib/matrixone/data"
name = "LOCAL"

[[fileservice]]
backend = "MINIO"
name = "SHARED"

[fileservice.s3]
bucket = "mo-test"
endpoint = "http://minio:9000"
key-prefix = "server/data"
cert-files = ["/etc/ssl/cert.pem"]
"#;

    #[test]
    fn minio_local_example() {
        let s = s3(MINIO_LOCAL);
        assert_eq!(s.backend, "MINIO");
        assert_eq!(s.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s.bucket, "mo-test");
        // SHARED's own table, not ETL's that follows it.
        assert_eq!(s.key_prefix, "server/data");
        assert!(s.is_minio);
        assert_eq!(s.addressing, Addressing::Path);
        assert_eq!(s.region, "");
        let creds = s.static_credentials(|_| None).unwrap();
        assert_eq!(creds.access_key_id, "minio");
        assert_eq!(creds.secret_access_key, "minio123");

        let loc = s.location();
        assert_eq!(loc.endpoint, "http://127.0.0.1:9000");
        assert_eq!(loc.bucket, "mo-test");
        assert_eq!(loc.prefix, "server/data");
        assert!(loc.is_minio);
    }

    #[test]
    fn compose_example_without_keys() {
        let s = s3(COMPOSE);
        assert_eq!(s.endpoint, "http://minio:9000");
        assert_eq!(s.cert_files, vec!["/etc/ssl/cert.pem".to_string()]);
        assert!(s.secrets.is_empty());
        // Keys from the environment, in the MinIO SDK's order.
        let env = |k: &str| match k {
            "MINIO_ROOT_USER" => Some("root".to_string()),
            "MINIO_ROOT_PASSWORD" => Some("rootpw".to_string()),
            "AWS_ACCESS_KEY" => Some(String::new()),
            _ => None,
        };
        let c = s.static_credentials(env).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("root", "rootpw")
        );
        assert!(s.static_credentials(|_| None).is_none());
    }

    #[test]
    fn aws_s3_backend() {
        let s = s3(r#"
[[fileservice]]
name = "SHARED"
backend = "S3"
[fileservice.s3]
bucket = "prod-mo"
endpoint = "s3.us-west-2.amazonaws.com"
key-prefix = "prod/mo-data/"
role-arn = "arn:aws:iam::123456789012:role/mo"
external-id = "ext-1"
"#);
        // No scheme: https, as MatrixOne assumes.
        assert_eq!(s.endpoint, "https://s3.us-west-2.amazonaws.com");
        assert_eq!(s.region, "us-west-2");
        assert_eq!(s.key_prefix, "prod/mo-data");
        assert!(!s.is_minio);
        assert_eq!(s.addressing, Addressing::VirtualHosted);
        assert_eq!(s.role_arn, "arn:aws:iam::123456789012:role/mo");
        assert_eq!(s.external_id, "ext-1");
        // MinIO variables are not what the AWS SDK reads.
        let env = |k: &str| match k {
            "MINIO_ROOT_USER" | "MINIO_ROOT_PASSWORD" => Some("x".to_string()),
            _ => None,
        };
        assert!(s.static_credentials(env).is_none());
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
            _ => None,
        };
        assert_eq!(s.static_credentials(env).unwrap().access_key_id, "AKID");
        // Half a pair in the config: the AWS SDK ignores it for its chain.
        let mut half = s.clone();
        half.secrets.key_id = "CONFIG-ID".into();
        assert_eq!(half.static_credentials(env).unwrap().access_key_id, "AKID");
        // The MinIO SDK completes it field by field.
        half.is_minio = true;
        let c = half.static_credentials(env).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("CONFIG-ID", "SK")
        );
    }

    #[test]
    fn is_minio_flag_and_region_key() {
        let s = s3(r#"
[[fileservice]]
name = "shared"
backend = "s3"
[fileservice.s3]
bucket = "b"
endpoint = "HTTPS://Minio.Example.com:9443/"
is-minio = true
region = "eu-1"
"#);
        assert_eq!(s.backend, "S3");
        assert!(s.is_minio);
        assert_eq!(s.addressing, Addressing::Path);
        assert_eq!(s.endpoint, "https://minio.example.com:9443");
        assert_eq!(s.region, "eu-1");
        assert_eq!(s.key_prefix, "");
    }

    #[test]
    fn empty_endpoint_is_aws_default() {
        let s = s3("[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nbucket = \"b\"\n");
        assert_eq!(s.endpoint, "");
        assert_eq!(s.location().endpoint, "");
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"MINIO\"\n[fileservice.s3]\nbucket = \"b\"\n")
            .contains("needs fileservice.s3.endpoint"));
    }

    #[test]
    fn key_prefix_is_cleaned_like_path_join() {
        for (raw, want) in [
            ("server/data/", "server/data"),
            ("server//data", "server/data"),
            ("./server/./data", "server/data"),
            ("server/x/../data", "server/data"),
            ("", ""),
            ("/", ""),
        ] {
            if raw.starts_with('/') {
                assert!(clean_key_prefix(raw).is_err(), "{raw:?}");
                continue;
            }
            assert_eq!(clean_key_prefix(raw).unwrap(), want, "{raw:?}");
        }
        assert!(clean_key_prefix("/server/data").is_err());
        assert!(clean_key_prefix("../x").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            normalize_endpoint("minio.local").unwrap(),
            "https://minio.local"
        );
        assert_eq!(
            normalize_endpoint(" http://A:9000// ").unwrap(),
            "http://a:9000"
        );
        for bad in [
            "127.0.0.1:9000",
            "minio:9000",
            "ftp://x",
            "http://",
            "http://h/p",
            "http://h/?x=1",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?}");
        }
        let e = normalize_endpoint("http://user:hunter2@h").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn regions_from_names() {
        assert_eq!(
            region_from_endpoint("https://s3.eu-west-1.amazonaws.com"),
            "eu-west-1"
        );
        assert_eq!(
            region_from_endpoint("https://s3-eu-west-1.amazonaws.com"),
            "eu-west-1"
        );
        assert_eq!(region_from_endpoint("https://s3.amazonaws.com"), "");
        assert_eq!(
            region_from_endpoint("https://cos.ap-shanghai.myqcloud.com"),
            "ap-shanghai"
        );
        assert_eq!(region_from_endpoint("http://127.0.0.1:9000"), "");
    }

    #[test]
    fn vendor_endpoints_are_virtual_hosted() {
        let s = s3(r#"
[[fileservice]]
name = "SHARED"
backend = "MINIO"
[fileservice.s3]
bucket = "b"
endpoint = "https://oss-cn-hangzhou.aliyuncs.com"
"#);
        assert_eq!(s.addressing, Addressing::VirtualHosted);
        // Only those stores are read virtual-hosted; an AWS endpoint answers
        // path-style too, and a MinIO on an IP only path-style.
        assert!(s.location().virtual_hosted);
        let aws = s3("[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nbucket = \"b\"\nendpoint = \"s3.us-west-2.amazonaws.com\"\n");
        assert_eq!(aws.addressing, Addressing::VirtualHosted);
        assert!(!aws.location().virtual_hosted);
    }

    #[test]
    fn cert_files_and_session_tokens_are_passed_on() {
        let s = s3(r#"
[[fileservice]]
name = "SHARED"
backend = "S3"
[fileservice.s3]
bucket = "b"
endpoint = "https://s3.internal:9443"
cert-files = ["/etc/mo/ca.pem"]
key-id = "AKID"
key-secret = "SK"
session-token = "TOKEN"
"#);
        assert_eq!(s.location().ca_files, vec!["/etc/mo/ca.pem".to_string()]);
        let c = s.static_credentials(|_| None).unwrap();
        assert_eq!(c.session_token, "TOKEN");
        // Aliyun / Tencent name theirs security-token.
        let mut sts = s.clone();
        sts.secrets.session_token.clear();
        sts.secrets.security_token = "STS".into();
        assert_eq!(
            sts.static_credentials(|_| None).unwrap().session_token,
            "STS"
        );
        // Keys from the environment take the environment's token.
        let mut bare = s.clone();
        bare.secrets = ConfigSecrets::default();
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("EID".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("ESK".to_string()),
            "AWS_SESSION_TOKEN" => Some("ETOKEN".to_string()),
            _ => None,
        };
        assert_eq!(
            bare.static_credentials(env).unwrap().session_token,
            "ETOKEN"
        );
    }

    #[test]
    fn disk_backends() {
        let text = "[[fileservice]]\nname = \"SHARED\"\nbackend = \"disk-v2\"\ndata-dir = \"./mo-data/shared2\"\n";
        assert_eq!(
            shared_from_tn_config(text).unwrap(),
            Some(SharedService::Disk {
                backend: "DISK-V2".into(),
                data_dir: "./mo-data/shared2".into()
            })
        );
        // No data-dir: <data-dir>/shared, as cmd/mo-service fills it in.
        let text =
            "data-dir = \"/data/mo/\"\n[[fileservice]]\nname = \"SHARED\"\nbackend = \"DISK\"\n";
        assert_eq!(
            shared_from_tn_config(text).unwrap(),
            Some(SharedService::Disk {
                backend: "DISK".into(),
                data_dir: "/data/mo/shared".into()
            })
        );
        let text = "[[fileservice]]\nname = \"SHARED\"\nbackend = \"DISK\"\n";
        assert!(matches!(
            shared_from_tn_config(text).unwrap(),
            Some(SharedService::Disk { data_dir, .. }) if data_dir == "./mo-data/shared"
        ));
    }

    #[test]
    fn legacy_s3_name_is_shared() {
        let s = s3("[[fileservice]]\nname = \"S3\"\nbackend = \"S3\"\n[fileservice.s3]\nbucket = \"b\"\nendpoint = \"http://h:1\"\n");
        assert_eq!(s.bucket, "b");
    }

    #[test]
    fn refusals() {
        assert_eq!(shared_from_tn_config("x = 1").unwrap(), None);
        assert_eq!(
            shared_from_tn_config("[[fileservice]]\nname = \"LOCAL\"\nbackend = \"DISK\"\n")
                .unwrap(),
            None
        );
        assert!(shared_from_tn_config("[[fileservice]]\nbackend = 1").is_err());
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"MEM\"\n").contains("MEM"));
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"AZURE\"\n").contains("AZURE"));
        assert!(err("[[fileservice]]\nname = \"SHARED\"\n").contains("no backend"));
        // etc/launch-hdfs/tn.toml: backend S3 with an hdfs:// endpoint.
        assert!(err(
            "[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nendpoint = \"hdfs://nn:8020\"\nbucket = \"/user/mo\"\n"
        )
        .contains("HDFS"));
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nendpoint = \"disk\"\nbucket = \"b\"\n").contains("disk"));
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nendpoint = \"http://h\"\n").contains("no bucket"));
        assert!(err("[[fileservice]]\nname = \"SHARED\"\nbackend = \"S3\"\n[fileservice.s3]\nbucket = \"b\"\nis-minio = \"yes\"\n").contains("is-minio"));
        assert!(err(
            "[[fileservice]]\nname = \"SHARED\"\nbackend = \"DISK\"\n[[fileservice]]\nname = \"shared\"\nbackend = \"DISK\"\n"
        )
        .contains("more than one"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = s3(MINIO_LOCAL);
        let text = format!("{:?}", SharedService::S3(Box::new(s)));
        assert!(!text.contains("minio123"), "{text}");
        assert!(text.contains("<set>") && text.contains("mo-test"), "{text}");
    }
}
