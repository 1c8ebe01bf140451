//! Synthetic MatrixOne data directories for demos, integration tests and
//! benchmarks.
//!
//! [`generate`] lays out a tree that looks like a MatrixOne node started in
//! launch mode (`mo-service -launch etc/launch/launch.toml`) after it has been
//! running for a while:
//!
//! ```text
//! <root>/etc/launch/{launch,tn,cn,log}.toml
//! <root>/mo-data/shared2/<uuidv7>_<nnnnn>        objects (flat, immutable)
//! <root>/mo-data/shared2/ckp/meta_<s>_<e>.ckp    checkpoint metas (+ one .cpt)
//! <root>/mo-data/shared2/gc/{gc_*.ckp,gc_*.fgc,snap_*.snap,acct_*.acct}
//! <root>/mo-data/shared2/.tmp.<hex>              an unfinished write
//! <root>/mo-data/logservice-data/<log-uuid>/<host>/...   raft log + snapshot
//! <root>/mo-data/{local2,etl,tmp,disk-cache}/... skipped by backups
//! ```
//!
//! With [`Backend::Disk`] the SHARED store is `mo-data/shared` in MatrixOne's
//! legacy `DISK` format (every 2048-byte block = 4-byte LE CRC32-Castagnoli +
//! 2044 content bytes) and LOCAL is `mo-data/local`.
//!
//! Everything (names, uuids, HLC timestamps, contents) derives from
//! [`Options::seed`] and [`Options::total_bytes`]; the clock is never read, so
//! the same options give a byte-identical tree. [`grow`] then simulates the
//! node running between two backups (a newer flush and a newer incremental
//! checkpoint).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Legacy `DISK` block geometry.
pub const DISK_BLOCK: usize = 2048;
/// Content bytes per legacy `DISK` block (the rest is the CRC).
pub const DISK_BLOCK_CONTENT: usize = DISK_BLOCK - 4;

/// Physical time (ns) of the first global checkpoint, before the seeded offset.
const BASE_PHYSICAL_NS: u64 = 1_732_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;
/// MatrixOne's default incremental checkpoint interval.
const CKP_INTERVAL_NS: u64 = 300 * SEC;

/// Which MatrixOne file-service backend holds SHARED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `DISK-V2`: raw bytes under `mo-data/shared2` (current configs).
    #[default]
    DiskV2,
    /// Legacy `DISK`: CRC-framed blocks under `mo-data/shared`.
    Disk,
}

impl Backend {
    /// The `backend = "..."` value in the service configs.
    pub fn config_name(self) -> &'static str {
        match self {
            Backend::DiskV2 => "DISK-V2",
            Backend::Disk => "DISK",
        }
    }

    /// SHARED directory, relative to `mo-data`.
    pub fn shared_dir(self) -> &'static str {
        match self {
            Backend::DiskV2 => "shared2",
            Backend::Disk => "shared",
        }
    }

    /// LOCAL directory, relative to `mo-data`.
    pub fn local_dir(self) -> &'static str {
        match self {
            Backend::DiskV2 => "local2",
            Backend::Disk => "local",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub seed: u64,
    /// Target size of the SHARED objects (content bytes); the result lands
    /// within about ±10% (metadata files come on top and are small).
    pub total_bytes: u64,
    pub backend: Backend,
}

/// What [`generate`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub root: PathBuf,
    /// `root/mo-data`.
    pub data_dir: PathBuf,
    /// `root/etc/launch/launch.toml`.
    pub launch_config: PathBuf,
    /// SHARED root (`mo-data/shared2` or `mo-data/shared`).
    pub shared_dir: PathBuf,
    /// Number of objects in SHARED (data objects plus checkpoint data objects).
    pub objects: usize,
    /// On-disk bytes of every file written under `root`.
    pub bytes: u64,
    /// On-disk bytes of the SHARED objects alone (framing included for `DISK`).
    pub object_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("output directory {} is not empty; refusing to mix generated data with existing files", .0.display())]
    NotEmpty(PathBuf),
    #[error("{} holds no generated data directory ({} is missing)", root.display(), missing.display())]
    NotGenerated { root: PathBuf, missing: PathBuf },
    #[error("invalid size {0:?}: expected e.g. 12345, 200MiB, 1GiB, 500MB")]
    InvalidSize(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A MatrixOne HLC timestamp as it appears in file names: `<physical-ns>-<logical>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Hlc {
    physical: u64,
    logical: u32,
}

impl Hlc {
    const ZERO: Hlc = Hlc {
        physical: 0,
        logical: 0,
    };

    fn new(physical: u64, logical: u32) -> Self {
        Hlc { physical, logical }
    }

    /// MatrixOne starts an incremental checkpoint right after the previous end.
    fn next(self) -> Self {
        Hlc::new(self.physical, self.logical + 1)
    }

    fn parse(s: &str) -> Option<Self> {
        let (p, l) = s.split_once('-')?;
        Some(Hlc::new(p.parse().ok()?, l.parse().ok()?))
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.physical, self.logical)
    }
}

/// Generates a data directory under `root` (created if missing, must be empty).
pub fn generate(root: &Path, opts: &Options) -> Result<Generated, Error> {
    ensure_empty(root)?;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut w = TreeWriter {
        root: root.to_path_buf(),
        backend: opts.backend,
        bytes: 0,
    };

    let ids = NodeIds::new(&mut rng);
    let launch_config = write_configs(&mut w, opts.backend, &ids)?;

    let plan = Plan::new(&mut rng, opts.total_bytes);
    let shared_rel = format!("mo-data/{}", opts.backend.shared_dir());
    let before = w.bytes;
    for obj in &plan.objects {
        w.object(
            &format!("{shared_rel}/{}", obj.name),
            obj.size,
            obj.content_seed,
        )?;
    }
    let object_bytes = w.bytes - before;
    write_ckp_and_gc(&mut w, &mut rng, &shared_rel, &plan)?;

    // A writer killed between create and rename leaves exactly this behind.
    let tmp_name = format!("{shared_rel}/.tmp.{:016x}", rng.next_u64());
    let tmp_size = rng.random_range(KIB..=16 * KIB);
    w.object(&tmp_name, tmp_size, rng.next_u64())?;

    write_logservice(&mut w, &mut rng, &ids, opts.total_bytes)?;
    write_skipped_dirs(&mut w, &mut rng, opts.backend, &ids, &plan)?;

    let data_dir = root.join("mo-data");
    Ok(Generated {
        root: root.to_path_buf(),
        shared_dir: root.join(&shared_rel),
        data_dir,
        launch_config,
        objects: plan.objects.len(),
        bytes: w.bytes,
        object_bytes,
    })
}

/// Adds `count` new objects (a newer flush) plus one newer incremental ckp
/// meta, as a running node would between two backups; deterministic from
/// seed, round and the current newest ckp meta. Returns the names added,
/// relative to the SHARED dir: the objects, then `ckp/meta_<s>_<e>.ckp` last.
/// With `object_size`, every new object has that size.
pub fn grow(
    root: &Path,
    opts: &Options,
    round: u32,
    count: usize,
    object_size: Option<u64>,
) -> Result<Vec<String>, Error> {
    let shared_rel = format!("mo-data/{}", opts.backend.shared_dir());
    let ckp_dir = root.join(&shared_rel).join("ckp");
    let entries = fs::read_dir(&ckp_dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotGenerated {
            root: root.to_path_buf(),
            missing: ckp_dir.clone(),
        },
        _ => Error::Io {
            path: ckp_dir.clone(),
            source: e,
        },
    })?;
    let mut newest = Hlc::ZERO;
    for entry in entries {
        let entry = entry.map_err(io_err(&ckp_dir))?;
        let name = entry.file_name();
        if let Some((_, end)) = name.to_str().and_then(parse_ckp_meta_name) {
            newest = newest.max(end);
        }
    }
    if newest == Hlc::ZERO {
        return Err(Error::NotGenerated {
            root: root.to_path_buf(),
            missing: ckp_dir.join("meta_*.ckp"),
        });
    }

    let mut rng = ChaCha8Rng::seed_from_u64(splitmix(opts.seed ^ splitmix(u64::from(round) + 1)));
    let start = newest.next();
    let end = Hlc::new(
        newest.physical + CKP_INTERVAL_NS + rng.random_range(0..4 * SEC),
        1,
    );
    let sizes: Vec<u64> = (0..count)
        .map(|_| {
            if let Some(size) = object_size {
                size
            } else if rng.random_ratio(1, 5) {
                rng.random_range(256 * KIB..=MIB)
            } else {
                rng.random_range(KIB..=64 * KIB)
            }
        })
        .collect();
    let objects = group_into_flushes(&mut rng, &sizes, newest.physical, end.physical);

    let mut w = TreeWriter {
        root: root.to_path_buf(),
        backend: opts.backend,
        bytes: 0,
    };
    let mut added = Vec::with_capacity(count + 1);
    for obj in &objects {
        w.object(
            &format!("{shared_rel}/{}", obj.name),
            obj.size,
            obj.content_seed,
        )?;
        added.push(obj.name.clone());
    }
    let refs: Vec<&PlannedObject> = objects.iter().collect();
    let meta = format!("ckp/meta_{start}_{end}.ckp");
    w.text(
        &format!("{shared_rel}/{meta}"),
        &ckp_meta_body("incremental", start, end, &refs),
    )?;
    added.push(meta);
    Ok(added)
}

/// Whether a path (relative to the generated root, '/'-separated) is one a
/// backup must skip by design: LOCAL (`local`/`local2`), ETL, TMP, caches
/// (`*cache`) and unfinished `.tmp.*` writes. Paths relative to `mo-data` are
/// understood too.
pub fn skipped_by_design(rel: &str) -> bool {
    let rel = rel.trim_start_matches("./");
    let mut parts = rel.split('/').filter(|p| !p.is_empty() && *p != ".");
    let Some(first) = parts.next() else {
        return false;
    };
    let top = if first == "mo-data" {
        parts.next()
    } else {
        Some(first)
    };
    if let Some(top) = top {
        if matches!(top, "local" | "local2" | "etl" | "tmp") || top.ends_with("cache") {
            return true;
        }
    }
    rel.rsplit('/')
        .next()
        .is_some_and(|base| base.starts_with(".tmp."))
}

/// Parses sizes such as `12345`, `64KiB`, `200MiB`, `1GiB`, `1G` (binary) or
/// `500MB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| Error::InvalidSize(s.to_string()))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => 1024 * MIB,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(Error::InvalidSize(s.to_string())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::InvalidSize(s.to_string()))
}

/// CRC32-Castagnoli (as Go's `crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))`),
/// the checksum of MatrixOne's legacy `DISK` blocks.
pub fn crc32c(data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// Slice-by-8: byte-at-a-time CRC would dominate generating a 1 GiB legacy tree.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut j = 1;
        while j < 8 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            j += 1;
        }
        i += 1;
    }
    t
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ensure_empty(root: &Path) -> Result<(), Error> {
    match fs::read_dir(root) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::NotEmpty(root.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(root).map_err(io_err(root))
        }
        Err(e) => Err(Error::Io {
            path: root.to_path_buf(),
            source: e,
        }),
    }
}

fn parse_ckp_meta_name(name: &str) -> Option<(Hlc, Hlc)> {
    let body = name.strip_prefix("meta_")?.strip_suffix(".ckp")?;
    let (s, e) = body.split_once('_')?;
    Some((Hlc::parse(s)?, Hlc::parse(e)?))
}

/// Seeded identities of the services, so configs and directory names agree.
struct NodeIds {
    tn: uuid::Uuid,
    cn: uuid::Uuid,
    log: uuid::Uuid,
}

impl NodeIds {
    fn new(rng: &mut ChaCha8Rng) -> Self {
        let mut v4 = || {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            uuid::Builder::from_random_bytes(b).into_uuid()
        };
        NodeIds {
            tn: v4(),
            cn: v4(),
            log: v4(),
        }
    }
}

struct PlannedObject {
    name: String,
    size: u64,
    content_seed: u64,
    /// Flush time (ns); decides which checkpoint references the object.
    created: u64,
}

struct Plan {
    objects: Vec<PlannedObject>,
    /// Global checkpoint end first, then the incremental ends.
    ckp_ends: Vec<Hlc>,
    /// Index into `objects` of each checkpoint's own data object.
    ckp_data: Vec<usize>,
}

impl Plan {
    fn new(rng: &mut ChaCha8Rng, total: u64) -> Self {
        let global_end = Hlc::new(
            BASE_PHYSICAL_NS
                + rng.random_range(0..86_400) * SEC
                + rng.random_range(0..1000) * 1_000_000,
            1,
        );
        let n_incr = rng.random_range(5..=8usize);
        let mut ckp_ends = vec![global_end];
        for _ in 0..n_incr {
            let prev = ckp_ends.last().unwrap().physical;
            let jitter = rng.random_range(0..4 * SEC);
            ckp_ends.push(Hlc::new(prev + CKP_INTERVAL_NS - 2 * SEC + jitter, 1));
        }

        // Checkpoint data objects are part of the budget so tiny trees stay on target.
        let ckp_cap = (total / 64).clamp(KIB, 64 * KIB);
        let ckp_sizes: Vec<u64> = (0..ckp_ends.len())
            .map(|_| rng.random_range(KIB.min(ckp_cap)..=ckp_cap))
            .collect();
        let budget = total.saturating_sub(ckp_sizes.iter().sum::<u64>());
        let mut sizes = size_mix(rng, budget);
        sizes.shuffle(rng);

        // An hour of flushes before the global checkpoint, then the
        // incrementals, then a last minute or two that no checkpoint covers yet.
        let last_end = ckp_ends.last().unwrap().physical;
        let flush_start = global_end.physical - 3600 * SEC;
        let flush_end = last_end + rng.random_range(30..120) * SEC;
        let mut objects = group_into_flushes(rng, &sizes, flush_start, flush_end);

        let mut ckp_data = Vec::with_capacity(ckp_ends.len());
        for (end, size) in ckp_ends.iter().zip(ckp_sizes) {
            let created = end.physical + rng.random_range(SEC..3 * SEC);
            let name = format!("{}_00000", uuid_v7(rng, created));
            ckp_data.push(objects.len());
            objects.push(PlannedObject {
                name,
                size,
                content_seed: rng.next_u64(),
                created,
            });
        }
        Plan {
            objects,
            ckp_ends,
            ckp_data,
        }
    }

    /// Objects a checkpoint `(start, end]` covers: its flushes plus its own data object.
    fn refs(&self, ckp: usize, from: u64, to: u64) -> Vec<&PlannedObject> {
        let data = self.ckp_data[ckp];
        self.objects
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                *i == data || (!self.ckp_data.contains(i) && o.created > from && o.created <= to)
            })
            .map(|(_, o)| o)
            .collect()
    }
}

/// Object sizes summing to `budget`: a few large (only for big trees), a good
/// number medium, many small.
fn size_mix(rng: &mut ChaCha8Rng, budget: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut used = 0;
    if budget >= 256 * MIB {
        let large_budget = budget * 3 / 10;
        loop {
            let s = rng.random_range(16 * MIB..=64 * MIB);
            if used + s > large_budget {
                break;
            }
            sizes.push(s);
            used += s;
        }
    }
    let medium_target = used + (budget - used) * 65 / 100;
    loop {
        let s = rng.random_range(256 * KIB..=4 * MIB);
        if used + s > medium_target {
            break;
        }
        sizes.push(s);
        used += s;
    }
    while used < budget {
        let s = rng.random_range(KIB..=64 * KIB).min(budget - used);
        sizes.push(s);
        used += s;
    }
    sizes
}

/// Splits objects into flushes (one uuid each, objects numbered `_00000`,
/// `_00001`, ...), spread evenly over `(from, to]`.
fn group_into_flushes(
    rng: &mut ChaCha8Rng,
    sizes: &[u64],
    from: u64,
    to: u64,
) -> Vec<PlannedObject> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        let n = rng.random_range(1..=4usize).min(sizes.len() - i);
        groups.push(i..i + n);
        i += n;
    }
    let step = (to - from) / (groups.len() as u64 + 1);
    let mut out = Vec::with_capacity(sizes.len());
    for (g, range) in groups.into_iter().enumerate() {
        let created = from + step * (g as u64 + 1) + rng.random_range(0..step.clamp(1, SEC));
        let id = uuid_v7(rng, created);
        for (k, idx) in range.enumerate() {
            out.push(PlannedObject {
                name: format!("{id}_{k:05}"),
                size: sizes[idx],
                content_seed: rng.next_u64(),
                created,
            });
        }
    }
    out
}

/// A v7 uuid whose timestamp is the (simulated) creation time, as MatrixOne's
/// object names carry; the random part comes from the seeded stream.
fn uuid_v7(rng: &mut ChaCha8Rng, created_ns: u64) -> uuid::Uuid {
    let mut rand_bytes = [0u8; 10];
    rng.fill_bytes(&mut rand_bytes);
    uuid::Builder::from_unix_timestamp_millis(created_ns / 1_000_000, &rand_bytes).into_uuid()
}

fn ckp_meta_body(kind: &str, start: Hlc, end: Hlc, refs: &[&PlannedObject]) -> String {
    let mut s = format!(
        "# checkpoint meta (mo-br-sample synthetic)\n# kind={kind} start={start} end={end} objects={}\nobject,size,create_ts\n",
        refs.len()
    );
    for o in refs {
        s.push_str(&format!("{},{},{}-0\n", o.name, o.size, o.created));
    }
    s
}

fn write_ckp_and_gc(
    w: &mut TreeWriter,
    rng: &mut ChaCha8Rng,
    shared_rel: &str,
    plan: &Plan,
) -> Result<(), Error> {
    let ends = &plan.ckp_ends;
    let global = ends[0];
    w.text(
        &format!("{shared_rel}/ckp/meta_{}_{global}.ckp", Hlc::ZERO),
        &ckp_meta_body(
            "global",
            Hlc::ZERO,
            global,
            &plan.refs(0, 0, global.physical),
        ),
    )?;
    for i in 1..ends.len() {
        let (start, end) = (ends[i - 1].next(), ends[i]);
        let refs = plan.refs(i, ends[i - 1].physical, end.physical);
        w.text(
            &format!("{shared_rel}/ckp/meta_{start}_{end}.ckp"),
            &ckp_meta_body("incremental", start, end, &refs),
        )?;
    }

    // Compaction merges the global and the first few incrementals into one.
    let k = ends.len() / 2;
    let compacted: Vec<&PlannedObject> = (0..=k)
        .flat_map(|i| {
            let from = if i == 0 { 0 } else { ends[i - 1].physical };
            plan.refs(i, from, ends[i].physical)
        })
        .collect();
    w.text(
        &format!("{shared_rel}/ckp/meta_{}_{}.cpt", Hlc::ZERO, ends[k]),
        &ckp_meta_body("compacted", Hlc::ZERO, ends[k], &compacted),
    )?;

    // GC metadata trails the checkpoints it consumed.
    let gc_start = ends[1].next();
    let gc_end = ends[k];
    let gc = format!("{shared_rel}/gc");
    let mut body =
        format!("# gc window (mo-br-sample synthetic) {gc_start}..{gc_end}\nobject,size\n");
    for o in compacted.iter().filter(|_| rng.random_ratio(1, 3)) {
        body.push_str(&format!("{},{}\n", o.name, o.size));
    }
    w.text(&format!("{gc}/gc_{gc_start}_{gc_end}.ckp"), &body)?;
    w.object(
        &format!("{gc}/gc_{}_{gc_end}.fgc", Hlc::ZERO),
        rng.random_range(2 * KIB..=8 * KIB),
        rng.next_u64(),
    )?;
    let mut snap = String::from("account_id,snapshot_ts\n");
    for acct in [0u32, 1, 2] {
        let ts = Hlc::new(global.physical - rng.random_range(60..1800) * SEC, 0);
        snap.push_str(&format!("{acct},{ts}\n"));
    }
    w.text(&format!("{gc}/snap_{gc_start}_{gc_end}.snap"), &snap)?;
    w.text(
        &format!("{gc}/acct_{gc_start}_{gc_end}.acct"),
        "account_id,account_name,create_ts\n0,sys,0-0\n1,acc1,1731990000000000000-1\n2,acc2,1731995000000000000-1\n",
    )?;
    Ok(())
}

fn write_logservice(
    w: &mut TreeWriter,
    rng: &mut ChaCha8Rng,
    ids: &NodeIds,
    total: u64,
) -> Result<(), Error> {
    // Dragonboat keeps NodeHost state under <hostname>/<deployment-id>.
    let host = format!(
        "mo-data/logservice-data/{}/mo-sample-host/00000000000000000001",
        ids.log
    );
    let cap = (total / 100).clamp(4 * KIB, 256 * KIB);
    w.plain(&format!("{host}/NODEHOST.ID"), &format!("{}\n", ids.log))?;
    w.raw(&format!("{host}/LOCK"), &[])?;
    w.raw_random(&format!("{host}/dragonboat.ds"), 64, rng.next_u64())?;
    for seg in 1..=3u32 {
        w.raw_random(
            &format!("{host}/logdb/{seg:06}.log"),
            rng.random_range(KIB..=cap),
            rng.next_u64(),
        )?;
    }
    for (shard, index) in [(0u64, 0x3e8u64), (1, 0x1f40)] {
        let dir = format!("{host}/snapshot-part-1/snapshot-{shard}-1/snapshot-{index:016X}");
        w.raw_random(
            &format!("{dir}/snapshot-{index:016X}.gbsnap"),
            rng.random_range(KIB..=cap / 2),
            rng.next_u64(),
        )?;
        w.raw_random(&format!("{dir}/snapshot.metadata"), 96, rng.next_u64())?;
    }
    Ok(())
}

fn write_skipped_dirs(
    w: &mut TreeWriter,
    rng: &mut ChaCha8Rng,
    backend: Backend,
    ids: &NodeIds,
    plan: &Plan,
) -> Result<(), Error> {
    let local = format!("mo-data/{}", backend.local_dir());
    // LOCAL has the same backend as SHARED in these configs, so it is framed alike.
    w.object(
        &format!("{local}/{}/tn.state", ids.tn),
        rng.random_range(KIB..=4 * KIB),
        rng.next_u64(),
    )?;
    w.object(
        &format!("{local}/{}/query_result_meta", ids.cn),
        rng.random_range(KIB..=4 * KIB),
        rng.next_u64(),
    )?;

    let ts = plan.ckp_ends.last().unwrap().physical;
    let mut csv = String::new();
    for i in 0..20 {
        csv.push_str(&format!(
            "{},{},sys,root,select {i} from dual,{}\n",
            uuid_v7(rng, ts),
            ids.cn,
            ts + i * SEC
        ));
    }
    w.plain(
        &format!(
            "mo-data/etl/sys/logs/2024/11/19/statement_info/{}_{}.csv",
            ts / SEC,
            ids.cn
        ),
        &csv,
    )?;
    w.raw_random(
        &format!("mo-data/tmp/sort-spill-{:08x}", rng.next_u32()),
        8 * KIB,
        rng.next_u64(),
    )?;
    w.raw_random(
        &format!("mo-data/disk-cache/{}_00000.cache", uuid_v7(rng, ts)),
        16 * KIB,
        rng.next_u64(),
    )?;
    Ok(())
}

fn write_configs(w: &mut TreeWriter, backend: Backend, ids: &NodeIds) -> Result<PathBuf, Error> {
    let launch = "etc/launch/launch.toml";
    w.plain(
        launch,
        "logservices = [\n    \"./etc/launch/log.toml\",\n]\n\ntnservices = [\n    \"./etc/launch/tn.toml\",\n]\n\ncnservices = [\n    \"./etc/launch/cn.toml\",\n]\n",
    )?;
    let fs_entries = format!(
        r#"[[fileservice]]
name = "LOCAL"
backend = "{b}"
data-dir = "./mo-data/{local}"

[[fileservice]]
name = "SHARED"
backend = "{b}"
data-dir = "./mo-data/{shared}"

[[fileservice]]
name = "ETL"
backend = "DISK-ETL"
data-dir = "./mo-data/etl"
"#,
        b = backend.config_name(),
        local = backend.local_dir(),
        shared = backend.shared_dir(),
    );
    let common_tail = "\n[log]\nlevel = \"info\"\nformat = \"console\"\nmax-size = 512\n\n[observability]\ndisableMetric = false\nenable-metric-to-prom = false\nstatus-port = 7001\n";

    w.plain(
        "etc/launch/tn.toml",
        &format!(
            "service-type = \"TN\"\ndata-dir = \"./mo-data\"\n\n{fs_entries}{common_tail}\n[tn]\nuuid = \"{tn}\"\nport-base = 19000\n\n[tn.Txn.Storage]\nbackend = \"TAE\"\nlog-backend = \"logservice\"\n\n[tn.Ckp]\nflush-interval = \"60s\"\nscan-interval = \"5s\"\nmin-count = 100\nincremental-interval = \"300s\"\nglobal-min-count = 60\n\n[tn.GCCfg]\ngc-ttl = \"1h\"\nscan-gc-interval = \"30m\"\n",
            tn = ids.tn
        ),
    )?;
    w.plain(
        "etc/launch/cn.toml",
        &format!(
            "service-type = \"CN\"\ndata-dir = \"./mo-data\"\n\n{fs_entries}{common_tail}\n[cn]\nuuid = \"{cn}\"\nport-base = 18000\n\n[cn.frontend]\nport = 6001\n\n[cn.Engine]\ntype = \"distributed-tae\"\n",
            cn = ids.cn
        ),
    )?;
    w.plain(
        "etc/launch/log.toml",
        &format!(
            "# service node type, [TN|CN|LOG]\nservice-type = \"LOG\"\ndata-dir = \"./mo-data\"\n\n{fs_entries}{common_tail}\n[logservice]\nuuid = \"{log}\"\ndeployment-id = 1\n\n[logservice.BootstrapConfig]\nbootstrap-cluster = true\nnum-of-log-shards = 1\nnum-of-tn-shards = 1\nnum-of-log-shard-replicas = 1\ninit-hakeeper-members = [\"131072:{log}\"]\n",
            log = ids.log
        ),
    )?;
    Ok(w.root.join(launch))
}

/// Writes files under a root and counts their on-disk bytes.
struct TreeWriter {
    root: PathBuf,
    backend: Backend,
    bytes: u64,
}

impl TreeWriter {
    fn create(&self, rel: &str) -> Result<(PathBuf, BufWriter<File>), Error> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        // create_new: MatrixOne never overwrites a name, neither do we.
        let f = File::create_new(&path).map_err(io_err(&path))?;
        Ok((path, BufWriter::with_capacity(256 * 1024, f)))
    }

    fn raw(&mut self, rel: &str, data: &[u8]) -> Result<(), Error> {
        let (path, mut f) = self.create(rel)?;
        f.write_all(data)
            .and_then(|_| f.flush())
            .map_err(io_err(&path))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Text outside the SHARED/LOCAL file services (configs, ETL, raft state).
    fn plain(&mut self, rel: &str, body: &str) -> Result<(), Error> {
        self.raw(rel, body.as_bytes())
    }

    /// A file in a store of the configured backend: framed for legacy `DISK`.
    fn text(&mut self, rel: &str, body: &str) -> Result<(), Error> {
        match self.backend {
            Backend::DiskV2 => self.raw(rel, body.as_bytes()),
            Backend::Disk => self.raw(rel, &frame(body.as_bytes())),
        }
    }

    /// Unframed pseudo-random bytes (files outside the file services).
    fn raw_random(&mut self, rel: &str, size: u64, seed: u64) -> Result<(), Error> {
        self.stream(rel, size, seed, Backend::DiskV2)
    }

    /// Pseudo-random object content in the configured backend's format.
    fn object(&mut self, rel: &str, size: u64, seed: u64) -> Result<(), Error> {
        self.stream(rel, size, seed, self.backend)
    }

    fn stream(&mut self, rel: &str, size: u64, seed: u64, backend: Backend) -> Result<(), Error> {
        // A multiple of the block content size keeps frames aligned across chunks.
        const CHUNK: usize = DISK_BLOCK_CONTENT * 128;
        let (path, mut f) = self.create(rel)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut content = vec![0u8; CHUNK.min(size as usize)];
        let mut framed = Vec::new();
        let mut left = size;
        while left > 0 {
            let n = (left as usize).min(CHUNK);
            fill_content(&mut rng, &mut content[..n]);
            let out = match backend {
                Backend::DiskV2 => &content[..n],
                Backend::Disk => {
                    frame_into(&content[..n], &mut framed);
                    &framed[..]
                }
            };
            f.write_all(out).map_err(io_err(&path))?;
            self.bytes += out.len() as u64;
            left -= n as u64;
        }
        f.flush().map_err(io_err(&path))?;
        Ok(())
    }
}

/// Mostly incompressible (MatrixOne objects are LZ4-compressed columns) with
/// some low-entropy 4 KiB runs, so compressing backups see a realistic ratio.
fn fill_content(rng: &mut ChaCha8Rng, buf: &mut [u8]) {
    for block in buf.chunks_mut(4096) {
        let r = rng.next_u32();
        if r.is_multiple_of(4) {
            for (v, word) in (u64::from(r >> 2)..).zip(block.chunks_mut(8)) {
                word.copy_from_slice(&v.to_le_bytes()[..word.len()]);
            }
        } else {
            rng.fill_bytes(block);
        }
    }
}

fn frame(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(content, &mut out);
    out
}

fn frame_into(content: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(content.len() + content.len().div_ceil(DISK_BLOCK_CONTENT) * 4);
    for block in content.chunks(DISK_BLOCK_CONTENT) {
        out.extend_from_slice(&crc32c(block).to_le_bytes());
        out.extend_from_slice(block);
    }
}

#[cfg(test)]
mod tests;
