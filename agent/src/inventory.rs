//! What a backup takes from a MatrixOne node (facts §1).
//!
//! Taken: SHARED objects, SHARED `ckp/` and `gc/`, the launch configs, and —
//! cold backups of a stopped node only — `mo-data/logservice-data`.
//! Skipped by design: `.tmp.*` (unfinished writes), LOCAL (`local2`/`local`),
//! ETL, TMP and caches: nothing a restore needs.

use std::path::{Path, PathBuf};

use mo_br_format::layout::FileKind;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub kind: FileKind,
    /// Absolute path on the node.
    pub source: PathBuf,
    /// Name within its kind (see `mo_br_format::manifest::FileEntry::name`).
    pub name: String,
    pub size: u64,
    /// For configs: launch, cn, dn, log, proxy.
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    /// "DISK-V2" or "DISK".
    pub shared_backend: String,
    /// SHARED root relative to the MatrixOne directory, as restored.
    pub shared_dir: String,
    pub files: Vec<NodeFile>,
}

/// Shape of `launch.toml`: which config each service of the process uses.
#[derive(Debug, Deserialize, Default)]
struct LaunchToml {
    #[serde(default)]
    logservices: Vec<String>,
    #[serde(default)]
    tnservices: Vec<String>,
    #[serde(default)]
    cnservices: Vec<String>,
    #[serde(default)]
    proxy_services: Vec<String>,
}

/// Where SHARED lives on disk and which backend wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStore {
    pub backend: String,
    /// Absolute directory.
    pub dir: PathBuf,
    /// Relative to the MatrixOne directory, as restored.
    pub rel: String,
}

/// Reads a TN config and returns its SHARED file service, with `data-dir`
/// resolved against `data_dir` (the node's `mo-data`) when it is the usual
/// `./mo-data/...` form. `Ok(None)` if the config names no SHARED service.
pub fn shared_from_tn_config(tn_config: &Path, data_dir: &Path) -> Result<Option<SharedStore>> {
    let text = std::fs::read_to_string(tn_config).map_err(|e| Error::io(tn_config, e))?;
    let shared = mo_br_format::mo::tn_shared(&text).map_err(|detail| Error::Config {
        path: tn_config.display().to_string(),
        detail,
    })?;
    let Some(fs) = shared else {
        return Ok(None);
    };
    let backend = fs.backend.clone();
    if backend != "DISK" && backend != "DISK-V2" {
        return Err(Error::Config {
            path: tn_config.display().to_string(),
            detail: format!(
                "SHARED uses backend {:?}; only local DISK and DISK-V2 are supported as a backup source",
                fs.backend
            ),
        });
    }
    let configured = fs.data_dir.trim_start_matches("./");
    let (dir, rel) = match configured.strip_prefix("mo-data/") {
        Some(rest) => (data_dir.join(rest), configured.to_string()),
        None if Path::new(configured).is_absolute() => {
            let name = Path::new(configured)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (PathBuf::from(configured), format!("mo-data/{name}"))
        }
        None => (
            data_dir.parent().unwrap_or(data_dir).join(configured),
            configured.to_string(),
        ),
    };
    Ok(Some(SharedStore { backend, dir, rel }))
}

/// Inventories a node. `data_dir` is its `mo-data`; `launch_config` its
/// `etc/launch/launch.toml`, if given.
pub fn inventory(data_dir: &Path, launch_config: Option<&Path>) -> Result<Inventory> {
    let data_dir = data_dir
        .canonicalize()
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| Error::NoDataDir(data_dir.display().to_string()))?;

    let mut files = Vec::new();
    let mut shared = None;
    if let Some(launch) = launch_config {
        let launch = launch.canonicalize().map_err(|e| Error::io(launch, e))?;
        for (role, path) in launch_configs(&launch)? {
            if role == "dn" && shared.is_none() {
                shared = shared_from_tn_config(&path, &data_dir)?;
            }
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if files.iter().any(|f: &NodeFile| f.source == path) {
                continue;
            }
            files.push(NodeFile {
                kind: FileKind::Config,
                source: path,
                name,
                size,
                role: Some(role),
            });
        }
    }
    let shared = match shared {
        Some(s) => s,
        None => detect_shared(&data_dir)?,
    };
    if !shared.dir.is_dir() {
        return Err(Error::Shared(format!(
            "SHARED directory {} does not exist",
            shared.dir.display()
        )));
    }

    walk(&shared.dir, &mut |path, rel, size| {
        let kind = match rel.split_once('/') {
            Some(("ckp", _)) => FileKind::Checkpoint,
            Some(("gc", _)) => FileKind::Gc,
            _ => FileKind::Object,
        };
        files.push(NodeFile {
            kind,
            source: path.to_path_buf(),
            name: rel.to_string(),
            size,
            role: None,
        });
    })?;

    let log_dir = data_dir.join("logservice-data");
    if log_dir.is_dir() {
        walk(&log_dir, &mut |path, rel, size| {
            files.push(NodeFile {
                kind: FileKind::Logservice,
                source: path.to_path_buf(),
                name: rel.to_string(),
                size,
                role: None,
            });
        })?;
    }

    Ok(Inventory {
        shared_backend: shared.backend,
        shared_dir: shared.rel,
        files,
    })
}

/// Without a TN config, SHARED is whichever of `shared2` (DISK-V2) and
/// `shared` (legacy DISK) exists. Both at once is ambiguous: the formats are
/// not interchangeable, so guessing could restore into the wrong backend.
fn detect_shared(data_dir: &Path) -> Result<SharedStore> {
    let v2 = data_dir.join("shared2");
    let v1 = data_dir.join("shared");
    match (v2.is_dir(), v1.is_dir()) {
        (true, false) => Ok(SharedStore {
            backend: "DISK-V2".into(),
            dir: v2,
            rel: "mo-data/shared2".into(),
        }),
        (false, true) => Ok(SharedStore {
            backend: "DISK".into(),
            dir: v1,
            rel: "mo-data/shared".into(),
        }),
        (true, true) => Err(Error::Shared(format!(
            "both {} and {} exist; pass --launch_config so the TN config says which one is SHARED",
            v2.display(),
            v1.display()
        ))),
        (false, false) => Err(Error::Shared(format!(
            "no SHARED directory (shared2 or shared) under {}",
            data_dir.display()
        ))),
    }
}

/// The configs `launch.toml` names, with their roles, launch.toml first.
/// Relative paths are relative to the MatrixOne directory, where mo-service
/// is started (`etc/launch/launch.toml` lives three levels below it).
fn launch_configs(launch: &Path) -> Result<Vec<(String, PathBuf)>> {
    let text = std::fs::read_to_string(launch).map_err(|e| Error::io(launch, e))?;
    let parsed: LaunchToml = toml::from_str(&text).map_err(|e| Error::Config {
        path: launch.display().to_string(),
        detail: e.message().to_string(),
    })?;
    let launch_dir = launch.parent().unwrap_or(Path::new("/"));
    let mo_root = launch_dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(launch_dir);
    let resolve = |p: &str| -> Result<PathBuf> {
        let p = Path::new(p);
        let candidates = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            vec![mo_root.join(p), launch_dir.join(p)]
        };
        candidates
            .iter()
            .find(|c| c.is_file())
            .and_then(|c| c.canonicalize().ok())
            .ok_or_else(|| Error::Config {
                path: launch.display().to_string(),
                detail: format!("names {}, which does not exist", p.display()),
            })
    };
    let mut out = vec![("launch".to_string(), launch.to_path_buf())];
    let groups = [
        ("dn", &parsed.tnservices),
        ("log", &parsed.logservices),
        ("cn", &parsed.cnservices),
        ("proxy", &parsed.proxy_services),
    ];
    for (role, paths) in groups {
        for p in paths {
            out.push((role.to_string(), resolve(p)?));
        }
    }
    Ok(out)
}

/// Skipped anywhere: unfinished writes.
fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp.")
}

/// Recursively lists regular files under `root`, calling `f(path, rel, size)`
/// with `rel` '/'-separated. Symlinks are not followed: a backup copies what
/// MatrixOne wrote, not what a link points at.
fn walk(root: &Path, f: &mut dyn FnMut(&Path, &str, u64)) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) {
                continue;
            }
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let size = entry.metadata().map_err(|e| Error::io(&path, e))?.len();
                let rel = path
                    .strip_prefix(root)
                    .map(|r| r.to_string_lossy().replace('\\', "/"))
                    .unwrap_or(name);
                f(&path, &rel, size);
            }
        }
    }
    Ok(())
}
