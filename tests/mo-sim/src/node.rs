//! The live node: a background writer that makes a MatrixOne-shaped data dir
//! change the way a running TN would (flushes, merges, checkpoints, GC), so
//! hot-copy backups can be tested against a moving target. SHARED is a
//! directory of the data dir or a bucket on S3 (see `store`). Only the file
//! layout and the rules of facts §1/§3 are simulated: object contents are
//! random bytes, checkpoint metas are the CSV of `mo-br-sample`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::Ids;
use crate::store::{S3Config, Store};

/// A MatrixOne HLC timestamp as file names carry it: `<physical-ns>-<logical>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    pub physical: u64,
    pub logical: u32,
}

impl Hlc {
    pub const ZERO: Hlc = Hlc {
        physical: 0,
        logical: 0,
    };

    pub fn new(physical: u64, logical: u32) -> Self {
        Hlc { physical, logical }
    }

    pub fn next(self) -> Self {
        Hlc::new(self.physical, self.logical + 1)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (p, l) = s.split_once('-')?;
        Some(Hlc::new(p.parse().ok()?, l.parse().ok()?))
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.physical, self.logical)
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Which file-service backend holds SHARED (facts §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `DISK-V2` at `mo-data/shared2`: raw bytes, as a `MINIO`/`S3`
    /// SHARED keeps its objects too.
    DiskV2,
    /// Legacy `DISK` at `mo-data/shared`: 2048-byte blocks = CRC32C + 2044 bytes.
    Disk,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub shared: PathBuf,
    pub backend: Backend,
}

impl Layout {
    /// `shared2` if present, else legacy `shared`, else a new empty `shared2`.
    pub fn detect(data_dir: &Path, create: bool) -> io::Result<Layout> {
        let v2 = data_dir.join("shared2");
        let legacy = data_dir.join("shared");
        let layout = if v2.is_dir() {
            Layout {
                shared: v2,
                backend: Backend::DiskV2,
            }
        } else if legacy.is_dir() {
            Layout {
                shared: legacy,
                backend: Backend::Disk,
            }
        } else if create {
            fs::create_dir_all(&v2)?;
            Layout {
                shared: v2,
                backend: Backend::DiskV2,
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} holds neither shared2/ nor shared/", data_dir.display()),
            ));
        };
        if create {
            fs::create_dir_all(layout.shared.join("ckp"))?;
            fs::create_dir_all(layout.shared.join("gc"))?;
        }
        Ok(layout)
    }

    /// Content of a store file (CRC-checked and unframed for legacy `DISK`).
    pub fn decode(&self, raw: &[u8]) -> Option<Vec<u8>> {
        self.backend.decode(raw)
    }

    /// The LOCAL root next to SHARED: `local2` for `shared2`, `local` for
    /// legacy `shared` (facts §1); `hk_data` goes there on restore.
    pub fn local(&self) -> PathBuf {
        let data_dir = self.shared.parent().unwrap_or(Path::new("."));
        data_dir.join(match self.backend {
            Backend::DiskV2 => "local2",
            Backend::Disk => "local",
        })
    }

    /// Stored size of an object of `content` bytes.
    pub fn stored_size(&self, content: u64) -> u64 {
        self.backend.stored_size(content)
    }
}

impl Backend {
    /// Store bytes on disk for `content` (framed for legacy `DISK`).
    pub fn encode(&self, content: &[u8]) -> Vec<u8> {
        match self {
            Backend::DiskV2 => content.to_vec(),
            Backend::Disk => {
                let mut out = Vec::with_capacity(content.len() + content.len() / 2044 * 4 + 4);
                for block in content.chunks(2044) {
                    out.extend_from_slice(&crc32c(block).to_le_bytes());
                    out.extend_from_slice(block);
                }
                out
            }
        }
    }

    /// Content of a store file (CRC-checked and unframed for legacy `DISK`).
    pub fn decode(&self, raw: &[u8]) -> Option<Vec<u8>> {
        match self {
            Backend::DiskV2 => Some(raw.to_vec()),
            Backend::Disk => {
                let mut out = Vec::with_capacity(raw.len());
                for block in raw.chunks(2048) {
                    if block.len() < 4 {
                        return None;
                    }
                    let (crc, body) = block.split_at(4);
                    if crc32c(body).to_le_bytes() != crc {
                        return None;
                    }
                    out.extend_from_slice(body);
                }
                Some(out)
            }
        }
    }

    /// On-disk size of an object of `content` bytes.
    pub fn stored_size(&self, content: u64) -> u64 {
        match self {
            Backend::DiskV2 => content,
            Backend::Disk => content + content.div_ceil(2044) * 4,
        }
    }
}

/// CRC32-Castagnoli, bytewise (objects here are small).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `<uuid>_<5 digits>`.
pub fn is_object_name(name: &str) -> bool {
    let Some((id, num)) = name.rsplit_once('_') else {
        return false;
    };
    num.len() == 5 && num.bytes().all(|b| b.is_ascii_digit()) && uuid::Uuid::parse_str(id).is_ok()
}

/// `meta_<start>_<end>.ckp|.cpt` -> (start, end, compacted).
pub fn parse_ckp_name(name: &str) -> Option<(Hlc, Hlc, bool)> {
    let body = name.strip_prefix("meta_")?;
    let (body, compacted) = if let Some(b) = body.strip_suffix(".ckp") {
        (b, false)
    } else {
        (body.strip_suffix(".cpt")?, true)
    };
    let (s, e) = body.split_once('_')?;
    Some((Hlc::parse(s)?, Hlc::parse(e)?, compacted))
}

/// `<kind>_<start>_<end>.<ext>` in `gc/` -> end.
pub fn parse_gc_name(name: &str) -> Option<Hlc> {
    let stem = name.rsplit_once('.')?.0;
    let mut parts = stem.splitn(3, '_');
    let _kind = parts.next()?;
    let _start = Hlc::parse(parts.next()?)?;
    Hlc::parse(parts.next()?)
}

/// One reference row of a checkpoint meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub size: Option<u64>,
}

/// A parsed checkpoint meta (the CSV `mo-br-sample` writes).
#[derive(Debug, Clone)]
pub struct CkpMeta {
    pub file: String,
    pub start: Hlc,
    pub end: Hlc,
    pub compacted: bool,
    pub refs: Vec<Ref>,
    /// `objects=N` from the header comment, when present.
    pub declared: Option<usize>,
    /// `# merged=<new>:<old>+<old>` lines (written by mo-sim).
    pub merged_away: Vec<String>,
}

impl CkpMeta {
    pub fn is_global(&self) -> bool {
        self.start == Hlc::ZERO && !self.compacted
    }
}

/// Parses a meta's text; `None` when it does not look like a meta at all.
pub fn parse_ckp_body(file: &str, text: &str) -> Option<CkpMeta> {
    let (start, end, compacted) = parse_ckp_name(file)?;
    let mut meta = CkpMeta {
        file: file.to_string(),
        start,
        end,
        compacted,
        refs: Vec::new(),
        declared: None,
        merged_away: Vec::new(),
    };
    let mut header = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            for tok in c.split_whitespace() {
                if let Some(n) = tok.strip_prefix("objects=") {
                    meta.declared = n.parse().ok();
                }
                if let Some(m) = tok.strip_prefix("merged=") {
                    if let Some((_, olds)) = m.split_once(':') {
                        meta.merged_away.extend(olds.split('+').map(str::to_string));
                    }
                }
            }
            continue;
        }
        if !header {
            if !line.starts_with("object,") {
                return None;
            }
            header = true;
            continue;
        }
        let mut cols = line.split(',');
        let name = cols.next()?.to_string();
        let size = cols.next().and_then(|s| s.parse().ok());
        meta.refs.push(Ref { name, size });
    }
    header.then_some(meta)
}

/// One line of the ledger: every file the live node ever wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Path relative to SHARED ('/'-separated).
    pub path: String,
    pub kind: String,
    /// On-disk bytes.
    pub size: u64,
    pub sha256: String,
    pub created: String,
}

pub fn read_ledger(path: &Path) -> io::Result<BTreeMap<String, LedgerEntry>> {
    let mut out = BTreeMap::new();
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(e) = serde_json::from_str::<LedgerEntry>(line) {
            out.insert(e.path.clone(), e);
        }
    }
    Ok(out)
}

/// Default ledger location: next to `mo-data`, outside SHARED.
pub fn default_ledger(data_dir: &Path) -> PathBuf {
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join("mo-sim-ledger.jsonl")
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub flush_ms: u64,
    pub ckp_ms: u64,
    pub gc_ms: u64,
    /// A global checkpoint every this many incrementals.
    pub global_every: u32,
    /// A merge every this many flushes (0 = never).
    pub merge_every: u32,
    pub checker_ttl_ms: u64,
}

/// The backup checker: GC keeps what checkpoints with end <= ts reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checker {
    pub ts: Hlc,
    /// Wall clock (ms since epoch) of the last add/renewal.
    pub renewed_ms: u64,
}

impl Serialize for Hlc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hlc::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad HLC {s:?}")))
    }
}

#[derive(Debug, Clone)]
struct Obj {
    size: u64,
    created: Hlc,
}

/// Counters, for tests and the `mo_sim.node` view.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub flushed: u64,
    pub merges: u64,
    pub checkpoints: u64,
    pub gc_passes: u64,
    pub deleted: u64,
}

pub struct Node {
    cfg: NodeConfig,
    pub store: Store,
    codec: Backend,
    /// The LOCAL root (`hk_data` lives there).
    pub local: PathBuf,
    ledger: PathBuf,
    clock: Hlc,
    rng: u64,
    live: BTreeMap<String, Obj>,
    pending: Vec<String>,
    merges_pending: Vec<(String, Vec<String>)>,
    known: BTreeSet<String>,
    metas: BTreeMap<String, CkpMeta>,
    last_ckp_end: Hlc,
    last_gc_end: Hlc,
    incr_since_global: u32,
    flushes: u32,
    pub gc_stopped: bool,
    pub checker: Option<Checker>,
    pub stats: Stats,
    /// Creation time of every object on disk (`known`), for BACKUP's TIMESTAMP.
    born: BTreeMap<String, Hlc>,
    /// HAKeeper ID allocator, shared with the engine.
    pub ids: Ids,
}

/// An object or meta file a BACKUP copies: path relative to SHARED, creation.
#[derive(Debug, Clone)]
pub struct BackupFile {
    pub rel: String,
    pub created: Hlc,
}

impl Node {
    /// Opens a node: SHARED in `s3` when given, else in the data dir
    /// (created empty if there is none); rebuilds the node's view from what
    /// SHARED holds.
    pub fn open(
        data_dir: &Path,
        s3: Option<&S3Config>,
        ledger: PathBuf,
        cfg: NodeConfig,
        ids: Ids,
    ) -> io::Result<Node> {
        let (store, codec, local) = match s3 {
            Some(s3) => {
                fs::create_dir_all(data_dir)?;
                (
                    Store::open_s3(s3)?,
                    Backend::DiskV2,
                    data_dir.join("local2"),
                )
            }
            None => {
                let layout = Layout::detect(data_dir, true)?;
                let local = layout.local();
                (Store::Disk(layout.shared), layout.backend, local)
            }
        };
        let mut node = Node {
            cfg,
            store,
            codec,
            local,
            ledger,
            clock: Hlc::ZERO,
            rng: now_ns() | 1,
            live: BTreeMap::new(),
            pending: Vec::new(),
            merges_pending: Vec::new(),
            known: BTreeSet::new(),
            metas: BTreeMap::new(),
            last_ckp_end: Hlc::ZERO,
            last_gc_end: Hlc::ZERO,
            incr_since_global: 0,
            flushes: 0,
            gc_stopped: false,
            checker: None,
            stats: Stats::default(),
            born: BTreeMap::new(),
            ids,
        };
        let mut sizes = BTreeMap::new();
        for (name, size) in node.store.list("")? {
            if is_object_name(&name) {
                sizes.insert(name.clone(), size);
                node.known.insert(name);
            }
        }
        for (name, _) in node.store.list("ckp")? {
            if parse_ckp_name(&name).is_none() {
                continue;
            }
            let raw = node.store.read(&format!("ckp/{name}"))?;
            let text = node
                .codec
                .decode(&raw)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if let Some(meta) = parse_ckp_body(&name, &text) {
                node.last_ckp_end = node.last_ckp_end.max(meta.end);
                node.metas.insert(name, meta);
            }
        }
        for (name, _) in node.store.list("gc")? {
            if let Some(end) = parse_gc_name(&name) {
                node.last_gc_end = node.last_gc_end.max(end);
            }
        }
        let mut referenced = BTreeSet::new();
        let mut merged_away = BTreeSet::new();
        for meta in node.metas.values() {
            merged_away.extend(meta.merged_away.iter().cloned());
            for r in &meta.refs {
                referenced.insert(r.name.clone());
                let at = Hlc::new(meta.end.physical, 0);
                let b = node.born.entry(r.name.clone()).or_insert(at);
                *b = (*b).min(at);
                if node.known.contains(&r.name) && !merged_away.contains(&r.name) {
                    let created = Hlc::new(meta.end.physical, 0);
                    node.live.insert(
                        r.name.clone(),
                        Obj {
                            size: r.size.unwrap_or(sizes[&r.name]),
                            created,
                        },
                    );
                }
            }
        }
        for name in &merged_away {
            node.live.remove(name);
        }
        for name in &node.known {
            if !referenced.contains(name) && !merged_away.contains(name) {
                node.live.insert(
                    name.clone(),
                    Obj {
                        size: sizes[name],
                        created: node.last_ckp_end,
                    },
                );
                node.pending.push(name.clone());
            }
        }
        for name in &node.known {
            node.born.entry(name.clone()).or_insert(node.last_ckp_end);
        }
        node.born.retain(|n, _| node.known.contains(n));
        node.clock = node.last_ckp_end.max(node.last_gc_end);
        Ok(node)
    }

    fn tick(&mut self) -> Hlc {
        let now = now_ns();
        self.clock = if now > self.clock.physical {
            Hlc::new(now, 1)
        } else {
            self.clock.next()
        };
        self.clock
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn random_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            let r = self.rand();
            v.extend_from_slice(&r.to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// A new file in SHARED, visible only whole (see [`Store::create`]);
    /// then the ledger line.
    fn write_file(
        &mut self,
        rel: &str,
        kind: &str,
        content: &[u8],
        created: Hlc,
    ) -> io::Result<()> {
        let bytes = self.codec.encode(content);
        if self.store.exists(rel)? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{rel} exists in {}: names are never reused",
                    self.store.describe()
                ),
            ));
        }
        let tag = self.rand();
        self.store.create(rel, &bytes, tag)?;
        let entry = LedgerEntry {
            path: rel.to_string(),
            kind: kind.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            created: created.to_string(),
        };
        let mut line = serde_json::to_string(&entry).map_err(io::Error::other)?;
        line.push('\n');
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.ledger)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    fn new_object(
        &mut self,
        id: &uuid::Uuid,
        k: usize,
        size: u64,
        created: Hlc,
    ) -> io::Result<String> {
        let name = format!("{id}_{k:05}");
        let content = self.random_bytes(size as usize);
        self.write_file(&name, "object", &content, created)?;
        self.known.insert(name.clone());
        self.born.insert(name.clone(), created);
        self.live.insert(name.clone(), Obj { size, created });
        self.pending.push(name.clone());
        Ok(name)
    }

    /// A TN flush: 1-3 new objects under one uuid; every `merge_every`
    /// flushes also a merge.
    pub fn flush(&mut self) -> io::Result<()> {
        let created = self.tick();
        let id = uuid::Uuid::now_v7();
        let n = 1 + (self.rand() % 3) as usize;
        // A flush creates catalog entries (object IDs) through HAKeeper.
        self.ids.alloc("object", n as u64);
        for k in 0..n {
            let size = 1024 + self.rand() % (15 * 1024);
            self.new_object(&id, k, size, created)?;
        }
        self.stats.flushed += n as u64;
        self.flushes += 1;
        if self.cfg.merge_every > 0 && self.flushes.is_multiple_of(self.cfg.merge_every) {
            self.merge()?;
        }
        Ok(())
    }

    /// Replaces 2-3 checkpointed small objects by one new object.
    pub fn merge(&mut self) -> io::Result<Option<(String, Vec<String>)>> {
        let pending: BTreeSet<&String> = self.pending.iter().collect();
        let candidates: Vec<String> = self
            .live
            .iter()
            .filter(|(n, o)| o.size <= 64 * 1024 && !pending.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        if candidates.len() < 2 {
            return Ok(None);
        }
        let take = (2 + (self.rand() % 2) as usize).min(candidates.len());
        let first = (self.rand() as usize) % (candidates.len() - take + 1);
        let olds: Vec<String> = candidates[first..first + take].to_vec();
        let size: u64 = olds
            .iter()
            .map(|n| self.live[n].size)
            .sum::<u64>()
            .min(256 * 1024);
        let created = self.tick();
        let new = self.new_object(&uuid::Uuid::now_v7(), 0, size, created)?;
        for o in &olds {
            self.live.remove(o);
        }
        self.merges_pending.push((new.clone(), olds.clone()));
        self.stats.merges += 1;
        Ok(Some((new, olds)))
    }

    fn meta_body(
        kind: &str,
        start: Hlc,
        end: Hlc,
        refs: &[(String, u64, Hlc)],
        merged: &[(String, Vec<String>)],
    ) -> String {
        let mut s = format!(
            "# checkpoint meta (mo-sim live node, a MatrixOne test double)\n# kind={kind} start={start} end={end} objects={}\n",
            refs.len()
        );
        for (new, olds) in merged {
            s.push_str(&format!("# merged={new}:{}\n", olds.join("+")));
        }
        s.push_str("object,size,create_ts\n");
        for (n, size, created) in refs {
            s.push_str(&format!("{n},{size},{created}\n"));
        }
        s
    }

    /// An incremental checkpoint (plus a global one every `global_every`, or
    /// when `global`); returns the end. Returns once the metas are durable.
    pub fn checkpoint(&mut self, global: bool) -> io::Result<Hlc> {
        let first = self.last_ckp_end == Hlc::ZERO;
        // The checkpoint's own data object.
        let data_created = self.tick();
        let size = 1024 + self.rand() % 4096;
        self.new_object(&uuid::Uuid::now_v7(), 0, size, data_created)?;
        let end = self.tick();
        let start = if first {
            Hlc::ZERO
        } else {
            self.last_ckp_end.next()
        };
        let refs: Vec<(String, u64, Hlc)> = self
            .pending
            .iter()
            .filter_map(|n| self.live.get(n).map(|o| (n.clone(), o.size, o.created)))
            .collect();
        let kind = if first { "global" } else { "incremental" };
        let merged = std::mem::take(&mut self.merges_pending);
        let name = format!("ckp/meta_{start}_{end}.ckp");
        self.write_file(
            &name,
            "ckp",
            Self::meta_body(kind, start, end, &refs, &merged).as_bytes(),
            end,
        )?;
        let text = Self::meta_body(kind, start, end, &refs, &merged);
        let file = name.trim_start_matches("ckp/").to_string();
        self.metas.insert(
            file.clone(),
            parse_ckp_body(&file, &text).expect("own meta parses"),
        );
        self.pending.clear();
        self.incr_since_global += 1;
        if !first && (global || self.incr_since_global >= self.cfg.global_every.max(1)) {
            let refs: Vec<(String, u64, Hlc)> = self
                .live
                .iter()
                .map(|(n, o)| (n.clone(), o.size, o.created))
                .collect();
            let name = format!("ckp/meta_{}_{end}.ckp", Hlc::ZERO);
            let text = Self::meta_body("global", Hlc::ZERO, end, &refs, &[]);
            self.write_file(&name, "ckp", text.as_bytes(), end)?;
            let file = name.trim_start_matches("ckp/").to_string();
            self.metas.insert(
                file.clone(),
                parse_ckp_body(&file, &text).expect("own meta parses"),
            );
            self.incr_since_global = 0;
        } else if first {
            self.incr_since_global = 0;
        }
        self.last_ckp_end = end;
        self.stats.checkpoints += 1;
        Ok(end)
    }

    pub fn active_checker(&mut self) -> Option<Hlc> {
        let c = self.checker?;
        if now_ms().saturating_sub(c.renewed_ms) >= self.cfg.checker_ttl_ms {
            self.checker = None;
            return None;
        }
        Some(c.ts)
    }

    /// One GC pass. Deletes objects no checkpoint of the newest chain (newest
    /// global + later incrementals) references and that are not live, ckp
    /// metas older than the newest global, gc files older than the newest;
    /// never anything a checkpoint with end <= the checker's ts references.
    pub fn gc(&mut self) -> io::Result<usize> {
        if self.gc_stopped {
            return Ok(0);
        }
        self.stats.gc_passes += 1;
        let checker = self.active_checker();
        let Some(global_end) = self
            .metas
            .values()
            .filter(|m| m.is_global())
            .map(|m| m.end)
            .max()
        else {
            return Ok(0);
        };
        let protected = |end: Hlc| checker.is_some_and(|c| end <= c);
        let mut keep: BTreeSet<&str> = self.live.keys().map(String::as_str).collect();
        keep.extend(self.pending.iter().map(String::as_str));
        for m in self.metas.values() {
            if m.end >= global_end || protected(m.end) {
                keep.extend(m.refs.iter().map(|r| r.name.as_str()));
            }
        }
        let doomed_objs: Vec<String> = self
            .known
            .iter()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        let doomed_metas: Vec<String> = self
            .metas
            .values()
            .filter(|m| m.end < global_end && !protected(m.end))
            .map(|m| m.file.clone())
            .collect();
        let mut deleted = Vec::new();
        for n in &doomed_objs {
            self.store.remove(n)?;
            self.known.remove(n);
            self.born.remove(n);
            deleted.push(n.clone());
        }
        for f in &doomed_metas {
            self.store.remove(&format!("ckp/{f}"))?;
            self.metas.remove(f);
            deleted.push(format!("ckp/{f}"));
        }
        if deleted.is_empty() {
            return Ok(0);
        }
        let start = if self.last_gc_end == Hlc::ZERO {
            Hlc::ZERO
        } else {
            self.last_gc_end.next()
        };
        let end = self.tick();
        let mut body =
            format!("# gc pass (mo-sim live node) {start}..{end} global={global_end}\nfile\n");
        for d in &deleted {
            body.push_str(d);
            body.push('\n');
        }
        self.write_file(
            &format!("gc/gc_{start}_{end}.ckp"),
            "gc",
            body.as_bytes(),
            end,
        )?;
        self.last_gc_end = end;
        for (name, _) in self.store.list("gc")? {
            if let Some(e) = parse_gc_name(&name) {
                if e < end && !protected(e) {
                    self.store.remove(&format!("gc/{name}"))?;
                    deleted.push(format!("gc/{name}"));
                }
            }
        }
        self.stats.deleted += deleted.len() as u64;
        Ok(deleted.len())
    }

    /// What a BACKUP at the newest checkpoint end copies: every object on
    /// disk, and the `ckp/` and `gc/` files whose name-encoded end is <= it.
    pub fn backup_files(&self, cut: Hlc) -> io::Result<(Vec<BackupFile>, Vec<BackupFile>)> {
        let objects = self
            .known
            .iter()
            .map(|n| BackupFile {
                rel: n.clone(),
                created: self.born.get(n).copied().unwrap_or(Hlc::ZERO),
            })
            .collect();
        let mut metas: Vec<BackupFile> = self
            .metas
            .values()
            .filter(|m| m.end <= cut)
            .map(|m| BackupFile {
                rel: format!("ckp/{}", m.file),
                created: m.end,
            })
            .collect();
        for (name, _) in self.store.list("gc")? {
            if let Some(end) = parse_gc_name(&name).filter(|e| *e <= cut) {
                metas.push(BackupFile {
                    rel: format!("gc/{name}"),
                    created: end,
                });
            }
        }
        Ok((objects, metas))
    }

    pub fn newest_ckp_end(&self) -> Hlc {
        self.last_ckp_end
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

/// Runs the node's timers on a thread of its own until the process exits;
/// `after_flush` runs (node unlocked) after each flush, to persist the IDs.
pub fn spawn_loop(
    node: std::sync::Arc<std::sync::Mutex<Node>>,
    cfg: NodeConfig,
    after_flush: Box<dyn Fn() + Send>,
) {
    std::thread::Builder::new()
        .name("mo-sim-node".into())
        .spawn(move || {
            let start = Instant::now();
            let (mut next_flush, mut next_ckp, mut next_gc) = (
                Duration::from_millis(cfg.flush_ms),
                Duration::from_millis(cfg.ckp_ms),
                Duration::from_millis(cfg.gc_ms),
            );
            loop {
                std::thread::sleep(Duration::from_millis(10));
                let now = start.elapsed();
                let mut n = match node.lock() {
                    Ok(n) => n,
                    Err(p) => p.into_inner(),
                };
                let mut flushed = false;
                if cfg.flush_ms > 0 && now >= next_flush {
                    if let Err(e) = n.flush() {
                        eprintln!("mo-sim: flush failed: {e}");
                    }
                    flushed = true;
                    next_flush = now + Duration::from_millis(cfg.flush_ms);
                }
                if cfg.ckp_ms > 0 && now >= next_ckp {
                    if let Err(e) = n.checkpoint(false) {
                        eprintln!("mo-sim: checkpoint failed: {e}");
                    }
                    next_ckp = now + Duration::from_millis(cfg.ckp_ms);
                }
                if cfg.gc_ms > 0 && now >= next_gc {
                    if let Err(e) = n.gc() {
                        eprintln!("mo-sim: gc failed: {e}");
                    }
                    next_gc = now + Duration::from_millis(cfg.gc_ms);
                }
                drop(n);
                if flushed {
                    after_flush();
                }
            }
        })
        .expect("spawn node thread");
}
