//! Where the live node keeps SHARED: a directory on its disk (`DISK-V2`
//! `shared2` or legacy `DISK` `shared`), or a bucket and key prefix that it
//! reads and writes through the S3 API, as a MatrixOne node with a `MINIO`
//! or `S3` SHARED file service does. Both give readers only whole files: on
//! disk by write-then-rename, on S3 because a PUT is atomic.

use std::io;
use std::path::PathBuf;

use mo_br_storage::{Credentials, Location, S3Location, Storage};

/// A store on S3: the node's SHARED (`[[fileservice]] name = "SHARED"`,
/// `backend = "MINIO"`, `[fileservice.s3]`) or a BACKUP's S3OPTION target.
#[derive(Clone, Default)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub key_prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Empty: us-east-1.
    pub region: String,
    pub role_arn: String,
    pub is_minio: bool,
}

/// Without the keys: a config may end up in a log.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

pub enum Store {
    Disk(PathBuf),
    S3 {
        storage: Box<dyn Storage>,
        // Its own runtime: the node calls in from plain threads (its timer
        // thread, BACKUP's copy workers, the SQL engine's blocking tasks).
        rt: tokio::runtime::Runtime,
        describe: String,
    },
}

fn storage_err(e: mo_br_storage::Error) -> io::Error {
    match e {
        mo_br_storage::Error::NotFound(what) => io::Error::new(io::ErrorKind::NotFound, what),
        e => io::Error::other(e.to_string()),
    }
}

/// `dir/name`, or `name` at the root (`dir` empty).
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl Store {
    pub fn open_s3(cfg: &S3Config) -> io::Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mo-sim-s3")
            .enable_all()
            .build()?;
        let location = Location::S3(S3Location {
            endpoint: cfg.endpoint.clone(),
            region: if cfg.region.is_empty() {
                "us-east-1".into()
            } else {
                cfg.region.clone()
            },
            bucket: cfg.bucket.clone(),
            prefix: cfg.key_prefix.trim_matches('/').to_string(),
            role_arn: cfg.role_arn.clone(),
            is_minio: cfg.is_minio,
            ..Default::default()
        });
        let creds = Credentials {
            access_key_id: cfg.access_key_id.clone(),
            secret_access_key: cfg.secret_access_key.clone(),
            ..Default::default()
        };
        let storage = rt
            .block_on(mo_br_storage::open(&location, &creds))
            .map_err(storage_err)?;
        rt.block_on(storage.probe()).map_err(storage_err)?;
        let describe = storage.describe();
        Ok(Store::S3 {
            storage,
            rt,
            describe,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Disk(root) => root.display().to_string(),
            Store::S3 { describe, .. } => describe.clone(),
        }
    }

    /// Files directly in `dir` ("" for the root, or `ckp`, `gc`): base
    /// names and sizes, unfinished writes (`.tmp.*`) left out.
    pub fn list(&self, dir: &str) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        match self {
            Store::Disk(root) => {
                let rd = match std::fs::read_dir(root.join(dir)) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                };
                for entry in rd {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(".tmp.") || !entry.file_type()?.is_file() {
                        continue;
                    }
                    // A file GC removed since the directory was read.
                    match entry.metadata() {
                        Ok(m) => out.push((name, m.len())),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Store::S3 { storage, rt, .. } => {
                use futures::StreamExt;
                let prefix = join(dir, "");
                rt.block_on(async {
                    let mut listing = storage.list(&prefix);
                    while let Some(entry) = listing.next().await {
                        let entry = entry.map_err(storage_err)?;
                        let rest = entry.name.strip_prefix(&prefix).unwrap_or(&entry.name);
                        if rest.contains('/') || rest.starts_with(".tmp.") {
                            continue;
                        }
                        out.push((rest.to_string(), entry.size));
                    }
                    Ok::<_, io::Error>(())
                })?;
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        match self {
            Store::Disk(root) => std::fs::read(root.join(rel)),
            Store::S3 { storage, rt, .. } => rt
                .block_on(storage.get_bytes(rel))
                .map(|b| b.to_vec())
                .map_err(storage_err),
        }
    }

    pub fn size(&self, rel: &str) -> io::Result<u64> {
        match self {
            Store::Disk(root) => Ok(std::fs::metadata(root.join(rel))?.len()),
            Store::S3 { storage, rt, .. } => rt
                .block_on(storage.head(rel))
                .map_err(storage_err)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, rel.to_string())),
        }
    }

    pub fn exists(&self, rel: &str) -> io::Result<bool> {
        match self {
            Store::Disk(root) => Ok(root.join(rel).exists()),
            Store::S3 { storage, rt, .. } => Ok(rt
                .block_on(storage.head(rel))
                .map_err(storage_err)?
                .is_some()),
        }
    }

    /// Creates `rel` so that no reader ever sees part of it. On disk
    /// (facts §1): `.tmp.<tag>` in the root, fsync, rename, fsync the
    /// directories.
    pub fn create(&self, rel: &str, bytes: &[u8], tag: u64) -> io::Result<()> {
        match self {
            Store::Disk(root) => {
                use std::io::Write;
                let target = root.join(rel);
                let tmp = root.join(format!(".tmp.{tag:016x}"));
                {
                    let mut f = std::fs::File::create_new(&tmp)?;
                    f.write_all(bytes)?;
                    f.sync_all()?;
                }
                std::fs::rename(&tmp, &target)?;
                if let Some(dir) = target.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                std::fs::File::open(root)?.sync_all()
            }
            Store::S3 { storage, rt, .. } => rt
                .block_on(storage.put_bytes(rel, bytes::Bytes::copy_from_slice(bytes)))
                .map(|_| ())
                .map_err(storage_err),
        }
    }

    /// Removes `rel`; a missing file is not an error.
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        match self {
            Store::Disk(root) => match std::fs::remove_file(root.join(rel)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Store::S3 { storage, rt, .. } => rt.block_on(storage.delete(rel)).map_err(storage_err),
        }
    }
}
