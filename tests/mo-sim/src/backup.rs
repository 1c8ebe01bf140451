//! MatrixOne's `BACKUP ... FILESYSTEM '<dir>'` and `BACKUP ... S3OPTION
//! {...}` (facts §2), simulated: the layout MO writes, into a directory or
//! through the S3 API into `bucket` under `filepath`, with objects copied
//! byte for byte from SHARED (on the node's disk or in its bucket).
//!
//! ```text
//! mo_meta (+ .sha256)                  version,0823 / buildinfo,... / launchconfig,<role>,<file>_<uuidv7>
//! config/<file>_<uuidv7> (+ .sha256)   the launch configs (pkg/backup backupConfigs)
//! tae/<object>                         objects created after TIMESTAMP (all without one)
//! tae/ckp/..., tae/gc/...              ckp/gc files with end <= the backup ts
//! tae/tae_list (+ .sha256)             path,size,sha256_hex,needCopy,create_ts
//! tae/tae_sum (+ .sha256)              backupTime,totalSize,backupTS,type
//! hakeeper/hk_data (+ .sha256)         protobuf BackupData{NextID, NextIDByKey}
//! ```
//! Every `.sha256` sidecar holds the RAW 32-byte SHA-256 of its file.

use std::fs;
use std::io;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::ids::BackupData;
use crate::node::{BackupFile, Hlc};
use crate::store::{S3Config, Store};
use crate::wire::SqlError;

/// Where a backup goes.
pub enum Target {
    Dir(PathBuf),
    /// `S3OPTION`: `filepath` is the store's key prefix.
    Bucket(Store),
}

impl Target {
    fn put(&self, rel: &str, data: &[u8]) -> io::Result<()> {
        match self {
            Target::Dir(dir) => {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(path, data)
            }
            // A PUT is atomic: no reader sees part of the object.
            Target::Bucket(store) => store.create(rel, data, 0),
        }
    }

    fn has(&self, rel: &str) -> io::Result<bool> {
        match self {
            Target::Dir(dir) => Ok(dir.join(rel).exists()),
            Target::Bucket(store) => store.exists(rel),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Dir(dir) => dir.display().to_string(),
            Target::Bucket(store) => store.describe(),
        }
    }
}

pub struct Plan<'a> {
    pub target: Target,
    pub shared: &'a Store,
    pub objects: Vec<BackupFile>,
    pub metas: Vec<BackupFile>,
    /// TIMESTAMP: objects created at or before it are listed with `needCopy=false`.
    pub since: Option<Hlc>,
    pub backup_ts: Hlc,
    pub kind: String,
    pub hk: BackupData,
    pub buildinfo: String,
    pub parallelism: usize,
    /// Launch configs by role; one that cannot be read is left out, as
    /// MatrixOne's backupConfigFile neglects the error.
    pub configs: &'a [(String, PathBuf)],
}

/// Writes `data` to `rel` and the raw sha256 to `rel.sha256`.
fn write_with_sidecar(target: &Target, rel: &str, data: &[u8]) -> io::Result<()> {
    target.put(rel, data)?;
    target.put(&format!("{rel}.sha256"), Sha256::digest(data).as_slice())
}

/// Copies `rel` of SHARED to `tae/rel`; returns (bytes, sha256 hex).
fn copy_one(shared: &Store, target: &Target, rel: &str) -> io::Result<(u64, String)> {
    let data = shared.read(rel)?;
    target.put(&format!("tae/{rel}"), &data)?;
    Ok((data.len() as u64, hex::encode(Sha256::digest(&data))))
}

/// Runs the backup; returns the number of files copied into `tae/`.
pub fn run(plan: Plan<'_>) -> io::Result<usize> {
    if plan.target.has("mo_meta")? {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already holds a backup", plan.target.describe()),
        ));
    }
    if let Target::Dir(dir) = &plan.target {
        fs::create_dir_all(dir.join("tae"))?;
        fs::create_dir_all(dir.join("hakeeper"))?;
    }
    // Configs first, as MatrixOne's Backup does (backupConfigs before backupTae).
    let mut launch_lines = String::new();
    for (role, path) in plan.configs {
        let Ok(data) = fs::read(path) else {
            eprintln!(
                "mo-sim: BACKUP: cannot read config {}: left out",
                path.display()
            );
            continue;
        };
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stored = format!("{file}_{}", uuid::Uuid::now_v7());
        write_with_sidecar(&plan.target, &format!("config/{stored}"), &data)?;
        launch_lines.push_str(&format!("launchconfig,{role},{stored}\n"));
    }

    // (path, created, copy?)
    let mut all: Vec<(&str, Hlc, bool)> = plan
        .objects
        .iter()
        .map(|o| {
            let copy = plan.since.is_none_or(|s| o.created > s);
            (o.rel.as_str(), o.created, copy)
        })
        .collect();
    all.extend(plan.metas.iter().map(|m| (m.rel.as_str(), m.created, true)));
    all.sort_by(|a, b| a.0.cmp(b.0));
    let to_copy: Vec<&str> = all.iter().filter(|e| e.2).map(|e| e.0).collect();

    // N workers; the first error wins. 0 (or 512 and more) is MatrixOne's
    // "by CPU count"; mo-sim's most is 16.
    let wanted = match plan.parallelism {
        0 | 512.. => 16,
        n => n,
    };
    let workers = wanted.clamp(1, 16).min(to_copy.len().max(1));
    let chunk = to_copy.len().div_ceil(workers).max(1);
    let mut copied: std::collections::BTreeMap<&str, (u64, String)> = Default::default();
    std::thread::scope(|s| -> io::Result<()> {
        let handles: Vec<_> = to_copy
            .chunks(chunk)
            .map(|part| {
                let (shared, target) = (plan.shared, &plan.target);
                s.spawn(move || {
                    part.iter()
                        .map(|rel| copy_one(shared, target, rel).map(|r| (*rel, r)))
                        .collect::<io::Result<Vec<_>>>()
                })
            })
            .collect();
        for h in handles {
            let part = h
                .join()
                .map_err(|_| io::Error::other("copy worker panicked"))??;
            copied.extend(part);
        }
        Ok(())
    })?;

    let mut list = String::new();
    let mut total = 0u64;
    for (rel, created, copy) in &all {
        if let Some((size, sha)) = copied.get(rel) {
            total += size;
            list.push_str(&format!("{rel},{size},{sha},true,{created}\n"));
        } else {
            debug_assert!(!copy);
            let size = plan.shared.size(rel)?;
            list.push_str(&format!("{rel},{size},,false,{created}\n"));
        }
    }
    write_with_sidecar(&plan.target, "tae/tae_list", list.as_bytes())?;
    let sum = format!(
        "{},{},{},{}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
        total,
        plan.backup_ts,
        plan.kind
    );
    write_with_sidecar(&plan.target, "tae/tae_sum", sum.as_bytes())?;
    write_with_sidecar(&plan.target, "hakeeper/hk_data", &plan.hk.encode())?;
    // mo_meta last: its presence marks a finished backup.
    let meta = format!(
        "version,0823\nbuildinfo,{}\n{launch_lines}",
        plan.buildinfo.replace([',', '\n'], ";")
    );
    write_with_sidecar(&plan.target, "mo_meta", meta.as_bytes())?;
    Ok(copied.len())
}

/// MatrixOne's `moerr.ErrBadConfig` (code 20300, SQLSTATE HY000).
fn bad_config(msg: impl std::fmt::Display) -> SqlError {
    SqlError {
        code: 20300,
        state: "HY000",
        message: format!("invalid configuration: {msg}"),
    }
}

/// The `S3OPTION {...}` of a BACKUP as MatrixOne's `getS3Config`
/// (`pkg/backup/utils.go`) reads it. `format`, `jsondata`, `compression`,
/// `provider` and `external_id` are accepted and, as there, change nothing
/// in what is written.
#[derive(Default)]
pub struct S3Options {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bucket: String,
    pub filepath: String,
    pub compression: String,
    pub provider: String,
    pub role_arn: String,
    pub external_id: String,
    pub format: String,
    pub jsondata: String,
    pub is_minio: bool,
    /// 0: not given (MatrixOne then picks by CPU count).
    pub parallelism: usize,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("filepath", &self.filepath)
            .field("is_minio", &self.is_minio)
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl S3Options {
    /// The statement's `'key'='value'` pairs in order; the first bad one
    /// is the error, as in MatrixOne's loop. Keys are case-insensitive.
    pub fn parse(pairs: &[(String, String)]) -> Result<S3Options, SqlError> {
        let mut o = S3Options::default();
        for (k, v) in pairs {
            let key = k.to_lowercase();
            match key.as_str() {
                "endpoint" => o.endpoint = v.clone(),
                "region" => o.region = v.clone(),
                "access_key_id" => o.access_key_id = v.clone(),
                "secret_access_key" => o.secret_access_key = v.clone(),
                "bucket" => o.bucket = v.clone(),
                "filepath" => o.filepath = v.clone(),
                "compression" => o.compression = v.clone(),
                "provider" => o.provider = v.clone(),
                "role_arn" => o.role_arn = v.clone(),
                "external_id" => o.external_id = v.clone(),
                "format" => {
                    let f = v.to_lowercase();
                    if f != "csv" && f != "jsonline" {
                        return Err(bad_config(format!("the format '{f}' is not supported")));
                    }
                    o.format = f;
                }
                "jsondata" => {
                    let j = v.to_lowercase();
                    if j != "object" && j != "array" {
                        return Err(bad_config(format!("the jsondata '{j}' is not supported")));
                    }
                    o.jsondata = j;
                    o.format = "jsonline".into();
                }
                "is_minio" => {
                    let m = v.to_lowercase();
                    if m != "true" && m != "false" {
                        return Err(bad_config(format!("the is_minio '{m}' is not supported")));
                    }
                    o.is_minio = m == "true";
                }
                "parallelism" => {
                    let n = v.to_lowercase();
                    o.parallelism = n
                        .parse::<u16>()
                        .ok()
                        .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| bad_config(format!("the parallelism '{n}' is invalid")))?
                        as usize;
                }
                _ => return Err(bad_config(format!("the keyword '{key}' is not support"))),
            }
        }
        if o.format == "jsonline" && o.jsondata.is_empty() {
            return Err(bad_config("the jsondata must be specified"));
        }
        if o.format.is_empty() {
            o.format = "csv".into();
        }
        Ok(o)
    }

    /// The bucket as a store rooted at `filepath`.
    pub fn open(&self) -> io::Result<Store> {
        Store::open_s3(&S3Config {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key_prefix: self.filepath.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            region: self.region.clone(),
            role_arn: self.role_arn.clone(),
            is_minio: self.is_minio,
        })
    }
}

/// FILESYSTEM's `PARALLELISM 'n'`, read with Go's `strconv.ParseUint(n, 10,
/// 16)`: its error is not MatrixOne's own, so it goes out as MySQL's
/// ER_UNKNOWN_ERROR (1105) with Go's text.
pub fn parse_parallelism(n: &str) -> Result<usize, SqlError> {
    let err = |why: &str| SqlError {
        code: 1105,
        state: "HY000",
        message: format!(
            "strconv.ParseUint: parsing \"{}\": {why}",
            n.replace('\\', "\\\\").replace('"', "\\\"")
        ),
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    n.parse::<u16>()
        .map(usize::from)
        .map_err(|_| err("value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bad(kv: &[(&str, &str)]) -> (u16, String) {
        let e = S3Options::parse(&pairs(kv)).unwrap_err();
        (e.code, e.message)
    }

    /// The keys and texts of getS3Config in pkg/backup/utils.go.
    #[test]
    fn s3_option_keys_and_errors_are_matrixones() {
        let o = S3Options::parse(&pairs(&[
            ("endpoint", "http://127.0.0.1:9000"),
            ("REGION", "us-east-1"),
            ("access_key_id", "AK"),
            ("secret_access_key", "SECRET-xyz"),
            ("bucket", "b"),
            ("filepath", "p/q"),
            ("compression", "gzip"),
            ("provider", "minio"),
            ("role_arn", ""),
            ("external_id", "e"),
            ("is_minio", "TRUE"),
            ("parallelism", "7"),
            ("format", "CSV"),
        ]))
        .unwrap();
        assert_eq!((o.bucket.as_str(), o.filepath.as_str()), ("b", "p/q"));
        assert!(o.is_minio);
        assert_eq!(o.parallelism, 7);
        assert!(!format!("{o:?}").contains("SECRET"), "{o:?}");
        assert_eq!(
            bad(&[("bucket", "b"), ("Bogus", "x")]),
            (
                20300,
                "invalid configuration: the keyword 'bogus' is not support".into()
            )
        );
        assert_eq!(
            bad(&[("is_minio", "yes")]),
            (
                20300,
                "invalid configuration: the is_minio 'yes' is not supported".into()
            )
        );
        for n in ["-1", "x", "70000", ""] {
            assert_eq!(
                bad(&[("parallelism", n)]),
                (
                    20300,
                    format!("invalid configuration: the parallelism '{n}' is invalid")
                )
            );
        }
        assert_eq!(
            bad(&[("format", "xml")]),
            (
                20300,
                "invalid configuration: the format 'xml' is not supported".into()
            )
        );
        assert_eq!(
            bad(&[("jsondata", "rows")]),
            (
                20300,
                "invalid configuration: the jsondata 'rows' is not supported".into()
            )
        );
        assert_eq!(
            bad(&[("format", "jsonline")]),
            (
                20300,
                "invalid configuration: the jsondata must be specified".into()
            )
        );
        // The first bad pair is the error.
        assert_eq!(
            bad(&[("nope", "1"), ("is_minio", "x")]).1,
            "invalid configuration: the keyword 'nope' is not support"
        );
        assert!(S3Options::parse(&[]).is_ok(), "no key is required");
    }

    #[test]
    fn filesystem_parallelism_fails_as_go_parseuint() {
        assert_eq!(parse_parallelism("0").unwrap(), 0);
        assert_eq!(parse_parallelism("65535").unwrap(), 65535);
        let e = parse_parallelism("x1").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (1105, r#"strconv.ParseUint: parsing "x1": invalid syntax"#)
        );
        assert_eq!(
            parse_parallelism("65536").unwrap_err().message,
            r#"strconv.ParseUint: parsing "65536": value out of range"#
        );
        assert_eq!(
            parse_parallelism("+1").unwrap_err().message,
            r#"strconv.ParseUint: parsing "+1": invalid syntax"#
        );
    }
}
