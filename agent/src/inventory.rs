//! What a backup takes from a MatrixOne node (facts §1).
//!
//! Taken: SHARED objects, SHARED `ckp/` and `gc/`, the launch configs, and —
//! cold backups of a stopped node only — `mo-data/logservice-data`.
//! Skipped by design: `.tmp.*` (unfinished writes), LOCAL (`local2`/`local`),
//! ETL, TMP and caches: nothing a restore needs.
//!
//! The files come in the order the `Inventory` RPC promises (see
//! `InventoryBatch` in agent.proto): every SHARED file sorted by name
//! bytewise, then the configs in `launch.toml` order, then logservice-data
//! sorted by name. A SHARED directory is mostly one flat directory of
//! millions of objects that `read_dir` lists in no order, so the listing is
//! sorted with an external merge sort (`mo_br_extsort`): memory stays
//! bounded by [`Options::run_size`], not by the number of files.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use mo_br_format::fileservice::{self, S3Shared, SharedService};
use mo_br_format::layout::FileKind;
use mo_br_format::mo::{self, Hlc};
use mo_br_storage::{Credentials, Location, Storage};
use serde::Deserialize;

use crate::{Error, Result};
use mo_br_extsort::{codec, ExternalSort, Record, Sorted};

/// How long the listing of a SHARED store on S3 retries a failing request.
const INVENTORY_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Default [`Options::run_size`]: some tens of MiB of names and paths.
pub const RUN_SIZE: usize = 200_000;

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

/// How to inventory a node.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node is running: leave out logservice-data (not safely copyable
    /// file by file while it runs) and the ckp/ and gc/ files that end after
    /// the cut (they could reference objects the backup does not hold).
    pub online: bool,
    /// Files sorted in memory before a run is spilled to disk.
    pub run_size: usize,
    /// Where sort runs are spilled; the system temp directory if `None`.
    pub spill_dir: Option<PathBuf>,
    /// Keys for a SHARED store on S3, when given explicitly (see
    /// [`s3_credentials`]).
    pub source_creds: Credentials,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            online: false,
            run_size: RUN_SIZE,
            spill_dir: None,
            source_creds: Credentials::default(),
        }
    }
}

/// A node's inventory: what is known before listing, and the files, listed
/// as they are consumed.
pub struct Inventory {
    /// "DISK-V2" or "DISK".
    pub shared_backend: String,
    /// SHARED root relative to the MatrixOne directory, as restored.
    pub shared_dir: String,
    /// The cut: the newest `ckp/meta_*` end; `None` before the first
    /// checkpoint.
    pub backup_ts: Option<Hlc>,
    /// Set when SHARED is on S3: where it is read (no credentials). SHARED
    /// files' `source` is then their key relative to its prefix.
    pub shared_store: Option<Location>,
    pub files: Files,
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
/// `etc/launch/launch.toml`, if given. Reads the configs and SHARED's `ckp/`
/// (both small); the big listings wait for the first [`Files::next`].
pub fn inventory(
    data_dir: &Path,
    launch_config: Option<&Path>,
    options: &Options,
) -> Result<Inventory> {
    // An online backup of a SHARED store on S3 reads nothing of the node's
    // disk but its configs: no data dir is needed then.
    let data_dir = if data_dir.as_os_str().is_empty() {
        None
    } else {
        Some(
            data_dir
                .canonicalize()
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| Error::NoDataDir(data_dir.display().to_string()))?,
        )
    };

    let mut configs: Vec<NodeFile> = Vec::new();
    let mut shared = None;
    let mut s3 = None;
    if let Some(launch) = launch_config {
        let launch = launch.canonicalize().map_err(|e| Error::io(launch, e))?;
        for (role, path) in launch_configs(&launch)? {
            if role == "dn" && shared.is_none() && s3.is_none() {
                s3 = s3_shared_from_tn_config(&path)?;
                if s3.is_none() {
                    if let Some(data_dir) = &data_dir {
                        shared = shared_from_tn_config(&path, data_dir)?;
                    }
                }
            }
            let size = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if configs.iter().any(|f| f.source == path) {
                continue;
            }
            configs.push(NodeFile {
                kind: FileKind::Config,
                source: path,
                name,
                size,
                role: Some(role),
            });
        }
    }
    let log_dir = data_dir
        .as_ref()
        .map(|d| d.join("logservice-data"))
        .filter(|d| !options.online && d.is_dir());
    let lister = Lister {
        run_size: options.run_size,
        spill_dir: options.spill_dir.clone(),
        stop: None,
    };

    if let Some(s3) = s3 {
        let location = Location::S3(s3.location());
        let creds = s3_credentials(&s3, &options.source_creds);
        let runtime = tokio::runtime::Handle::current();
        // The inventory is the start of a job: a store that cannot be read
        // (down, a refused certificate) fails it in seconds, not after the
        // retry window that running copies get.
        let opts = mo_br_storage::OpenOptions {
            retry_window: Some(INVENTORY_RETRY_WINDOW),
            ..Default::default()
        };
        let store: Arc<dyn Storage> =
            Arc::from(runtime.block_on(mo_br_storage::open_with(&location, &creds, &opts))?);
        let backup_ts = runtime.block_on(s3_cut(store.as_ref()))?;
        return Ok(Inventory {
            shared_backend: s3.backend.clone(),
            // Where its objects go when restored to a filesystem: raw
            // object bytes, as DISK-V2 keeps them.
            shared_dir: "mo-data/shared2".into(),
            backup_ts,
            shared_store: Some(location),
            files: Files {
                shared_root: SharedRoot::S3 { store, runtime },
                log_dir,
                configs: configs.into_iter(),
                cut: backup_ts.filter(|_| options.online),
                lister,
                phase: Phase::Start,
            },
        });
    }

    let data_dir = data_dir.ok_or_else(|| {
        Error::Request("--data_dir is required unless the TN config puts SHARED on S3".into())
    })?;
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
    let backup_ts = cut(&shared.dir)?;
    let log_dir = data_dir.join("logservice-data");
    let log_dir = (!options.online && log_dir.is_dir()).then_some(log_dir);
    Ok(Inventory {
        shared_backend: shared.backend,
        shared_dir: shared.rel,
        backup_ts,
        shared_store: None,
        files: Files {
            shared_root: SharedRoot::Disk(shared.dir),
            log_dir,
            configs: configs.into_iter(),
            cut: backup_ts.filter(|_| options.online),
            lister,
            phase: Phase::Start,
        },
    })
}

/// The SHARED store a TN config puts on S3 or MinIO, if it does.
pub fn s3_shared_from_tn_config(tn_config: &Path) -> Result<Option<S3Shared>> {
    let text = std::fs::read_to_string(tn_config).map_err(|e| Error::io(tn_config, e))?;
    let parsed = fileservice::shared_from_tn_config(&text).map_err(|detail| Error::Config {
        path: tn_config.display().to_string(),
        detail,
    })?;
    Ok(match parsed {
        Some(SharedService::S3(s3)) => Some(*s3),
        _ => None,
    })
}

/// The keys a SHARED store on S3 is read with: the ones given explicitly,
/// else the TN config's and then the standard AWS environment's, in the
/// order MatrixOne reads them. Empty keys leave it to the storage's own
/// chain (instance or container credentials, web identity).
pub fn s3_credentials(s3: &S3Shared, explicit: &Credentials) -> Credentials {
    if !explicit.access_key_id.is_empty() {
        return explicit.clone();
    }
    s3.static_credentials(|name| std::env::var(name).ok())
        .unwrap_or_default()
}

/// The keys for a SHARED store on S3 that the TN config of `launch_config`
/// names; `None` if it names none or SHARED is not on S3.
pub fn s3_credentials_of(launch_config: &Path) -> Result<Option<Credentials>> {
    for (role, path) in launch_configs(launch_config)? {
        if role == "dn" {
            if let Some(s3) = s3_shared_from_tn_config(&path)? {
                let creds = s3_credentials(&s3, &Credentials::default());
                return Ok((!creds.access_key_id.is_empty()).then_some(creds));
            }
        }
    }
    Ok(None)
}

/// [`cut`] of a SHARED store on S3.
async fn s3_cut(store: &dyn Storage) -> Result<Option<Hlc>> {
    use futures::StreamExt;
    let mut cut = None;
    let mut listing = store.list("ckp/");
    while let Some(entry) = listing.next().await {
        let entry = entry?;
        if entry.name.starts_with("ckp/meta_") {
            cut = cut.max(mo::name_end_ts(&entry.name));
        }
    }
    Ok(cut)
}

/// The newest end among SHARED's `ckp/meta_*` names, the rule the
/// coordinator applies to a whole listing.
fn cut(shared_root: &Path) -> Result<Option<Hlc>> {
    let ckp = shared_root.join("ckp");
    // Not followed if it is a symlink, as in the listing itself.
    if !std::fs::symlink_metadata(&ckp).is_ok_and(|m| m.is_dir()) {
        return Ok(None);
    }
    let mut cut = None;
    walk(&ckp, &mut |_, rel, _| {
        if rel.starts_with("meta_") {
            cut = cut.max(mo::name_end_ts(&rel));
        }
        Ok(())
    })?;
    Ok(cut)
}

/// The files of an [`Inventory`], in the order of the module docs. Listing
/// and sorting happen as they are consumed; the first error ends them.
pub struct Files {
    shared_root: SharedRoot,
    /// `None` when online or when the node has none.
    log_dir: Option<PathBuf>,
    configs: std::vec::IntoIter<NodeFile>,
    /// Set only for online inventories: ckp/ and gc/ files ending after it
    /// are left out.
    cut: Option<Hlc>,
    lister: Lister,
    phase: Phase,
}

/// Where SHARED is listed.
enum SharedRoot {
    Disk(PathBuf),
    /// Listed through the async storage from the blocking thread the
    /// inventory runs on.
    S3 {
        store: Arc<dyn Storage>,
        runtime: tokio::runtime::Handle,
    },
}

enum Phase {
    Start,
    Shared(Sorted<Listed>),
    Configs,
    Logservice(Sorted<Listed>),
    Done,
}

impl Files {
    /// Makes the listing give up with [`Error::Cancelled`] once `stop`
    /// returns true, which it asks before every directory entry: a listing
    /// of millions of files is otherwise finished for nobody.
    pub fn stop_when(&mut self, stop: impl Fn() -> bool + Send + 'static) {
        self.lister.stop = Some(Box::new(stop));
    }

    fn step(&mut self) -> Result<Option<NodeFile>> {
        loop {
            match &mut self.phase {
                Phase::Start => {
                    self.phase = Phase::Shared(match &self.shared_root {
                        SharedRoot::Disk(root) => self.lister.list(root)?,
                        SharedRoot::S3 { store, runtime } => {
                            self.lister.list_store(store.as_ref(), runtime)?
                        }
                    })
                }
                Phase::Shared(sorted) => {
                    let Some(listed) = sorted.next().transpose()? else {
                        self.phase = Phase::Configs;
                        continue;
                    };
                    let kind = shared_kind(&listed.name);
                    if after_cut(kind, &listed.name, self.cut) {
                        continue;
                    }
                    return Ok(Some(listed.into_file(kind)));
                }
                Phase::Configs => {
                    if let Some(config) = self.configs.next() {
                        return Ok(Some(config));
                    }
                    match self.log_dir.take() {
                        Some(dir) => self.phase = Phase::Logservice(self.lister.list(&dir)?),
                        None => return Ok(None),
                    }
                }
                Phase::Logservice(sorted) => {
                    return Ok(sorted
                        .next()
                        .transpose()?
                        .map(|l| l.into_file(FileKind::Logservice)))
                }
                Phase::Done => return Ok(None),
            }
        }
    }
}

impl Iterator for Files {
    type Item = Result<NodeFile>;

    fn next(&mut self) -> Option<Result<NodeFile>> {
        match self.step() {
            Ok(Some(file)) => Some(Ok(file)),
            Ok(None) => {
                self.phase = Phase::Done;
                None
            }
            Err(e) => {
                // Drops the runs now, not when the consumer drops us.
                self.phase = Phase::Done;
                Some(Err(e))
            }
        }
    }
}

fn shared_kind(name: &str) -> FileKind {
    match name.split_once('/') {
        Some(("ckp", _)) => FileKind::Checkpoint,
        Some(("gc", _)) => FileKind::Gc,
        _ => FileKind::Object,
    }
}

/// Whether an online backup leaves the file out: a ckp/ or gc/ file whose
/// name ends after the cut. Files without an end in their name are kept.
fn after_cut(kind: FileKind, name: &str, cut: Option<Hlc>) -> bool {
    matches!(kind, FileKind::Checkpoint | FileKind::Gc)
        && matches!((mo::name_end_ts(name), cut), (Some(end), Some(cut)) if end > cut)
}

/// Lists a directory tree sorted by relative name.
struct Lister {
    run_size: usize,
    spill_dir: Option<PathBuf>,
    stop: Option<Box<dyn Fn() -> bool + Send>>,
}

impl Lister {
    fn list(&self, root: &Path) -> Result<Sorted<Listed>> {
        let mut sorter = ExternalSort::new(self.run_size);
        if let Some(dir) = &self.spill_dir {
            sorter = sorter.spill_in(dir);
        }
        walk(root, &mut |path, rel, size| {
            if self.stop.as_ref().is_some_and(|stop| stop()) {
                return Err(Error::Cancelled);
            }
            Ok(sorter.push(Listed {
                name: rel,
                source: path,
                size,
            })?)
        })?;
        Ok(sorter.finish()?)
    }

    /// Lists a SHARED store on S3 sorted by key. S3 lists in key order
    /// already, but not every S3-compatible server does: the sort holds the
    /// order whatever the server.
    fn list_store(
        &self,
        store: &dyn Storage,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Sorted<Listed>> {
        use futures::StreamExt;
        let mut sorter = ExternalSort::new(self.run_size);
        if let Some(dir) = &self.spill_dir {
            sorter = sorter.spill_in(dir);
        }
        let mut listing = store.list("");
        while let Some(entry) = runtime.block_on(listing.next()) {
            if self.stop.as_ref().is_some_and(|stop| stop()) {
                return Err(Error::Cancelled);
            }
            let entry = entry?;
            let base = entry.name.rsplit('/').next().unwrap_or(&entry.name);
            if is_temp(base) {
                continue;
            }
            sorter.push(Listed {
                source: PathBuf::from(&entry.name),
                name: entry.name,
                size: entry.size,
            })?;
        }
        Ok(sorter.finish()?)
    }
}

/// A listed file as it is sorted and spilled. Field order matters: the
/// derived order is by `name` first.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    name: String,
    source: PathBuf,
    size: u64,
}

impl Listed {
    fn into_file(self, kind: FileKind) -> NodeFile {
        NodeFile {
            kind,
            source: self.source,
            name: self.name,
            size: self.size,
            role: None,
        }
    }
}

impl Record for Listed {
    fn encode(&self, out: &mut Vec<u8>) {
        codec::put_bytes(out, self.name.as_bytes());
        codec::put_u64(out, self.size);
        codec::put_bytes(out, &path_bytes(&self.source));
    }

    fn decode(mut bytes: &[u8]) -> Option<Self> {
        let name = String::from_utf8(codec::take_bytes(&mut bytes)?.to_vec()).ok()?;
        let size = codec::take_u64(&mut bytes)?;
        let source = path_from_bytes(codec::take_bytes(&mut bytes)?)?;
        Some(Listed { name, source, size })
    }
}

// Paths keep their exact bytes through a spill: `name` may be a lossy
// rendering, but `source` must open the very file that was listed.
#[cfg(unix)]
fn path_bytes(path: &Path) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().into()
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(std::ffi::OsStr::from_bytes(bytes).into())
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> std::borrow::Cow<'_, [u8]> {
    match path.to_string_lossy() {
        std::borrow::Cow::Borrowed(s) => s.as_bytes().into(),
        std::borrow::Cow::Owned(s) => s.into_bytes().into(),
    }
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(bytes).ok().map(PathBuf::from)
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
pub(crate) fn launch_configs(launch: &Path) -> Result<Vec<(String, PathBuf)>> {
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
/// with `rel` '/'-separated, in no particular order; stops at the first
/// error `f` returns. Symlinks are not followed: a backup copies what
/// MatrixOne wrote (which has none), not what a link points at. One that
/// leads out of `root` fails the listing, naming it, so that nothing the
/// operator meant to be in the backup is left out unnoticed; one inside is
/// skipped (its target is listed where it is).
/// `f` is given each file's path, its name relative to `root` and its size,
/// owned: a listing keeps them, and tens of thousands of copies add up.
fn walk(root: &Path, f: &mut dyn FnMut(PathBuf, String, u64) -> Result<()>) -> Result<()> {
    let real_root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let mut stack = vec![root.to_path_buf()];
    let mut files = Vec::with_capacity(STAT_BATCH);
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_temp(&name) {
                continue;
            }
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if ft.is_symlink() {
                let path = entry.path();
                match path.canonicalize() {
                    Ok(target) if !target.starts_with(&real_root) => {
                        return Err(Error::LinkOut {
                            path: path.display().to_string(),
                            target: target.display().to_string(),
                        })
                    }
                    Ok(_) => tracing::warn!("{}: a symbolic link; not copied", path.display()),
                    Err(_) => {
                        tracing::warn!("{}: a dangling symbolic link; skipped", path.display())
                    }
                }
            } else if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                files.push((entry, name));
                if files.len() == STAT_BATCH {
                    each_sized(root, &mut files, f)?;
                }
            }
        }
        each_sized(root, &mut files, f)?;
    }
    Ok(())
}

/// Files whose sizes are asked for together, at most. A listing's time is
/// mostly these `statx` calls (a few µs each, tens of ms per 10,000
/// files): a batch is split over a few threads.
const STAT_BATCH: usize = 4096;
/// Below this many files a batch is stated on the walking thread alone.
const STAT_SPLIT_MIN: usize = 256;
const STAT_THREADS: usize = 4;

/// Calls `f(path, rel, size)` for each of `files` (entries of one
/// directory), in order, and empties it.
fn each_sized(
    root: &Path,
    files: &mut Vec<(std::fs::DirEntry, String)>,
    f: &mut dyn FnMut(PathBuf, String, u64) -> Result<()>,
) -> Result<()> {
    let size_of = |part: &[(std::fs::DirEntry, String)]| -> Vec<std::io::Result<u64>> {
        part.iter()
            .map(|(entry, _)| entry.metadata().map(|m| m.len()))
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(STAT_THREADS);
    let sizes: Vec<std::io::Result<u64>> = if threads < 2 || files.len() < STAT_SPLIT_MIN {
        size_of(files)
    } else {
        let per = files.len().div_ceil(threads);
        std::thread::scope(|s| {
            let mut parts = files.chunks(per);
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts.map(|part| s.spawn(move || size_of(part))).collect();
            let mut sizes = size_of(first);
            for other in others {
                // A panic in a stat thread is a bug; pass it on.
                sizes.extend(
                    other
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                );
            }
            sizes
        })
    };
    for ((entry, name), size) in files.drain(..).zip(sizes) {
        let path = entry.path();
        let size = size.map_err(|e| Error::io(&path, e))?;
        let rel = path
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().replace('\\', "/"))
            .unwrap_or(name);
        f(path, rel, size)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::fs;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A node in launch mode whose SHARED holds `objects` objects plus the
    /// ckp/ and gc/ files below (cut `300-0`), unfinished writes and a
    /// symlink, and some logservice-data. Returns (root, the SHARED names an
    /// offline inventory lists, the logservice names).
    pub(crate) fn node(root: &Path, objects: usize) -> (BTreeSet<String>, Vec<String>) {
        let launch = root.join("etc/launch");
        fs::create_dir_all(&launch).unwrap();
        fs::write(
            launch.join("launch.toml"),
            "tnservices = [\"./etc/launch/tn.toml\"]\n\
             logservices = [\"./etc/launch/log.toml\"]\n\
             cnservices = [\"./etc/launch/cn.toml\"]\n",
        )
        .unwrap();
        fs::write(
            launch.join("tn.toml"),
            "[[fileservice]]\nname = \"SHARED\"\nbackend = \"DISK-V2\"\ndata-dir = \"./mo-data/shared2\"\n",
        )
        .unwrap();
        fs::write(launch.join("log.toml"), "# log\n").unwrap();
        fs::write(launch.join("cn.toml"), "# cn\n").unwrap();

        let shared = root.join("mo-data/shared2");
        fs::create_dir_all(shared.join("ckp")).unwrap();
        fs::create_dir_all(shared.join("gc")).unwrap();
        let mut names = BTreeSet::new();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for i in 0..objects {
            let id: u128 = rng.random();
            let id = format!("{id:032x}");
            let name = format!(
                "{}-{}-{}-{}-{}_{:05}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..],
                i % 3
            );
            fs::write(shared.join(&name), vec![b'x'; i % 7]).unwrap();
            names.insert(name);
        }
        for name in [
            "ckp/meta_0-0_100-0.ckp",
            "ckp/meta_100-1_300-0.ckp",
            "ckp/meta_0-0_300-0.cpt",
            "gc/gc_0-0_250-0.ckp",
            "gc/gc_0-0_400-0.ckp",
            "gc/x.fgc",
        ] {
            fs::write(shared.join(name), name).unwrap();
            names.insert(name.to_string());
        }
        fs::write(shared.join(".tmp.0001"), "partial").unwrap();
        fs::write(shared.join("ckp/.tmp.0002"), "partial").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(shared.join("gc/x.fgc"), shared.join("link")).unwrap();

        let mut logs = Vec::new();
        for i in 0..30 {
            let name = format!("4e1e/host/{}/{i:03}.log", ["a", "b"][i % 2]);
            let path = root.join("mo-data/logservice-data").join(&name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "log").unwrap();
            logs.push(name);
        }
        logs.sort();
        fs::create_dir_all(root.join("mo-data/local2")).unwrap();
        fs::write(root.join("mo-data/local2/hk"), "local").unwrap();
        (names, logs)
    }

    /// A link planted in SHARED that leads out of it fails the listing,
    /// naming the link and its target.
    #[test]
    fn a_link_out_of_the_tree_fails_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        node(dir.path(), 3);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "root").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            dir.path().join("mo-data/shared2/planted"),
        )
        .unwrap();
        let launch = dir.path().join("etc/launch/launch.toml");
        let err = inventory(
            &dir.path().join("mo-data"),
            Some(&launch),
            &options(false, spill.path()),
        )
        .and_then(|mut inv| {
            while inv.files.next().transpose()?.is_some() {}
            Ok(())
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("planted") && text.contains("outside the directory"),
            "{text}"
        );
    }

    fn options(online: bool, spill: &Path) -> Options {
        Options {
            online,
            run_size: 100,
            spill_dir: Some(spill.to_path_buf()),
            ..Options::default()
        }
    }

    fn is_empty(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().next().is_none()
    }

    /// 5,000 objects sorted in runs of 100: SHARED sorted and complete, then
    /// the configs, then logservice-data; an online inventory leaves out what
    /// ends after the cut (here a checkpoint written while it lists) and
    /// logservice-data.
    #[test]
    fn lists_in_order_in_runs() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        let (names, logs) = node(dir.path(), 5000);
        let launch = dir.path().join("etc/launch/launch.toml");
        let root = dir.path().canonicalize().unwrap();
        for online in [false, true] {
            let inv = inventory(
                &dir.path().join("mo-data"),
                Some(&launch),
                &options(online, spill.path()),
            )
            .unwrap();
            assert_eq!(inv.shared_backend, "DISK-V2");
            assert_eq!(inv.shared_dir, "mo-data/shared2");
            assert_eq!(inv.backup_ts.unwrap().to_string(), "300-0");
            // A checkpoint that lands after the cut was taken.
            let late = dir.path().join("mo-data/shared2/ckp/meta_300-1_500-0.ckp");
            fs::write(&late, "late").unwrap();

            let files: Vec<NodeFile> = inv.files.collect::<Result<_>>().unwrap();
            assert!(is_empty(spill.path()), "runs left behind");

            let mut expected = names.clone();
            if online {
                expected.remove("gc/gc_0-0_400-0.ckp");
            } else {
                expected.insert("ckp/meta_300-1_500-0.ckp".into());
            }
            let shared: Vec<&NodeFile> = files
                .iter()
                .take_while(|f| f.kind != FileKind::Config)
                .collect();
            assert!(
                shared.windows(2).all(|w| w[0].name < w[1].name),
                "SHARED not sorted"
            );
            let got: BTreeSet<String> = shared.iter().map(|f| f.name.clone()).collect();
            assert_eq!(got, expected);
            assert_eq!(shared.len(), expected.len());
            for f in &shared {
                assert_eq!(f.kind, shared_kind(&f.name), "{}", f.name);
                assert_eq!(f.source, root.join("mo-data/shared2").join(&f.name));
                assert_eq!(f.size, fs::metadata(&f.source).unwrap().len());
            }

            let rest = &files[shared.len()..];
            let roles: Vec<&str> = rest
                .iter()
                .take_while(|f| f.kind == FileKind::Config)
                .map(|f| f.role.as_deref().unwrap())
                .collect();
            assert_eq!(roles, ["launch", "dn", "log", "cn"]);
            let rest = &rest[roles.len()..];
            assert!(rest.iter().all(|f| f.kind == FileKind::Logservice));
            let got: Vec<&str> = rest.iter().map(|f| f.name.as_str()).collect();
            if online {
                assert!(got.is_empty(), "{got:?}");
            } else {
                assert_eq!(got, logs);
            }
            fs::remove_file(&late).unwrap();
        }
    }

    #[test]
    fn no_checkpoint_no_cut_and_nothing_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        let (mut names, _) = node(dir.path(), 10);
        let shared = dir.path().join("mo-data/shared2");
        fs::remove_dir_all(shared.join("ckp")).unwrap();
        names.retain(|n| !n.starts_with("ckp/"));
        let inv = inventory(
            &dir.path().join("mo-data"),
            None,
            &options(true, spill.path()),
        )
        .unwrap();
        assert_eq!(inv.backup_ts, None);
        let got: Vec<String> = inv.files.map(|f| f.unwrap().name).collect();
        assert_eq!(got, names.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn a_stopped_listing_ends_with_an_error_and_leaves_no_runs() {
        let dir = tempfile::tempdir().unwrap();
        let spill = tempfile::tempdir().unwrap();
        node(dir.path(), 500);
        let mut inv = inventory(
            &dir.path().join("mo-data"),
            None,
            &options(false, spill.path()),
        )
        .unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        inv.files
            .stop_when(move || counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 300);
        let mut files = inv.files;
        assert!(matches!(files.next(), Some(Err(Error::Cancelled))));
        assert!(files.next().is_none());
        assert!(is_empty(spill.path()), "runs left behind");
    }
}
