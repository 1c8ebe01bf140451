//! Per-test scenes: a temporary directory holding a sample node, backups,
//! restores and the `mo_br` working directory; plus readers of a backup's
//! files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mo_br_sample::{Backend, Generated, Options};

use crate::procs::{MoBr, Output};
use crate::s3server::S3Server;

pub const MIB: u64 = 1024 * 1024;

/// A test's temporary world; everything in it goes when it is dropped.
pub struct Scene {
    pub dir: tempfile::TempDir,
    /// `mo_br` embedded, working in `<dir>/cwd`.
    pub mobr: MoBr,
}

/// A failed test keeps its directory (logs, trees) for a look afterwards.
impl Drop for Scene {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("kept the test directory {}", self.dir.path().display());
        }
    }
}

impl Scene {
    pub fn new(name: &str) -> Scene {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mo-br-{name}-"))
            .tempdir()
            .expect("create the test directory");
        let mobr = MoBr::embedded(&dir.path().join("cwd"));
        Scene { dir, mobr }
    }

    /// `<dir>/<rel>` (not created).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Generates a sample node under `<dir>/<name>`.
    pub fn sample(&self, name: &str, seed: u64, total_bytes: u64, backend: Backend) -> Sample {
        let opts = Options {
            seed,
            total_bytes,
            backend,
        };
        let generated = mo_br_sample::generate(&self.path(name), &opts)
            .unwrap_or_else(|e| panic!("generate the sample {name}: {e}"));
        Sample { opts, generated }
    }
}

/// A generated MatrixOne node directory.
pub struct Sample {
    pub opts: Options,
    pub generated: Generated,
}

impl Sample {
    pub fn root(&self) -> &Path {
        &self.generated.root
    }

    pub fn data_dir(&self) -> &Path {
        &self.generated.data_dir
    }

    pub fn launch_config(&self) -> &Path {
        &self.generated.launch_config
    }

    pub fn shared_dir(&self) -> &Path {
        &self.generated.shared_dir
    }

    /// Simulates the node running on: `count` new objects and a newer ckp
    /// meta. Returns the new objects' names (without the ckp meta).
    pub fn grow(&self, round: u32, count: usize) -> Vec<String> {
        self.grow_sized(round, count, None)
    }

    /// [`Self::grow`] with every new object of `object_size` bytes, if given.
    pub fn grow_sized(&self, round: u32, count: usize, object_size: Option<u64>) -> Vec<String> {
        let mut added = mo_br_sample::grow(self.root(), &self.opts, round, count, object_size)
            .unwrap_or_else(|e| panic!("grow the sample: {e}"));
        let meta = added.pop().expect("grow adds a ckp meta last");
        assert!(meta.starts_with("ckp/meta_"), "grow added {meta} last");
        added
    }

    /// Moves this node's SHARED into `server`'s bucket `bucket` under
    /// `key_prefix` (s3s-fs keeps object `key` of bucket `b` as the file
    /// `<root>/b/key`) and points its TN config there, in MatrixOne's shape
    /// (`backend = "MINIO"` with a `[fileservice.s3]` table). The local
    /// SHARED directory is gone afterwards. Returns the directory s3s-fs
    /// keeps the objects in.
    pub fn move_shared_to_s3(&self, server: &S3Server, bucket: &str, key_prefix: &str) -> PathBuf {
        server.new_bucket(bucket).expect("create the SHARED bucket");
        let shared = server.root().join(bucket).join(key_prefix);
        for (rel, path) in crate::trees::files_under(self.shared_dir()) {
            let to = shared.join(&rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::rename(&path, &to).unwrap();
        }
        std::fs::remove_dir_all(self.shared_dir()).unwrap();

        let tn = self.root().join("etc/launch/tn.toml");
        let text = std::fs::read_to_string(&tn).unwrap();
        let disk = "name = \"SHARED\"\nbackend = \"DISK-V2\"\ndata-dir = \"./mo-data/shared2\"\n";
        assert!(text.contains(disk), "unexpected tn.toml:\n{text}");
        // The endpoint without "http://" would mean https to MatrixOne.
        let s3 = format!(
            "name = \"SHARED\"\nbackend = \"MINIO\"\n\n[fileservice.s3]\nendpoint = \"{}\"\nbucket = \"{bucket}\"\nkey-prefix = \"{key_prefix}\"\n",
            server.endpoint()
        );
        std::fs::write(&tn, text.replace(disk, &s3)).unwrap();
        shared
    }

    /// Writes an extra object of `size` pseudo-random bytes into SHARED.
    pub fn add_object(&self, name: &str, size: usize, seed: u64) -> PathBuf {
        let path = self.shared_dir().join(name);
        std::fs::write(&path, pseudo_random(size, seed)).expect("write an extra object");
        path
    }

    /// Removes the files of `mo-data` whose path relative to it is longer
    /// than `max` bytes; returns how many went.
    ///
    /// `s3s-fs` keeps each object's attributes in one file named after the
    /// base64 of bucket and key, so a key longer than about 155 bytes makes
    /// that name exceed NAME_MAX and the PUT fail with a 500. The sample's
    /// deepest raft snapshot files are that long; real S3 and MinIO take them.
    pub fn drop_long_paths(&self, max: usize) -> usize {
        let mut removed = 0;
        for (rel, path) in crate::trees::files_under(self.data_dir()) {
            if rel.len() > max {
                std::fs::remove_file(&path).expect("remove a long-named file");
                removed += 1;
            }
        }
        removed
    }

    /// `backup --backup_dir filesystem --path <to> --data_dir .. --launch_config ..`.
    pub fn fs_backup_args(&self, to: &Path) -> Vec<String> {
        let mut args = strings(&["backup", "--backup_dir", "filesystem"]);
        args.push("--path".into());
        args.push(to.display().to_string());
        args.extend(self.source_args());
        args
    }

    /// `--data_dir .. --launch_config ..`.
    pub fn source_args(&self) -> Vec<String> {
        vec![
            "--data_dir".into(),
            self.data_dir().display().to_string(),
            "--launch_config".into(),
            self.launch_config().display().to_string(),
        ]
    }
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `--backup_dir s3 ...`: a backup into `bucket`/`filepath` of `server`,
/// with its keys (the `backup` subcommand not included).
pub fn s3_target_args(server: &S3Server, bucket: &str, filepath: &str) -> Vec<String> {
    strings(&[
        "--backup_dir",
        "s3",
        "--endpoint",
        &server.endpoint(),
        "--access_key_id",
        server.access_key(),
        "--secret_access_key",
        server.secret_key(),
        "--bucket",
        bucket,
        "--filepath",
        filepath,
        "--is_minio",
    ])
}

/// `mo_br restore <id> --restore_dir filesystem --restore_path <to>`.
pub fn restore_by_id_args(id: &str, to: &Path) -> Vec<String> {
    let mut args = strings(&["restore", id, "--restore_dir", "filesystem"]);
    args.push("--restore_path".into());
    args.push(to.display().to_string());
    args
}

/// The ID a successful `mo_br backup` printed.
#[track_caller]
pub fn backup_id(out: &Output) -> String {
    out.assert_ok("backup");
    out.first_uuid()
        .unwrap_or_else(|| panic!("backup printed no backup ID\n{out}"))
}

/// Runs a backup and returns its ID.
#[track_caller]
pub fn backup(mobr: &MoBr, args: &[String]) -> String {
    backup_id(&mobr.run(args))
}

/// Names of the SHARED objects stored in a filesystem backup: the files
/// directly under `tae/`, without MatrixOne's metadata files and sidecars.
pub fn stored_objects(backup_root: &Path) -> BTreeSet<String> {
    let tae = backup_root.join("tae");
    let Ok(entries) = std::fs::read_dir(&tae) else {
        return BTreeSet::new();
    };
    entries
        .map(|e| e.expect("directory entry"))
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("tae_list") && !n.starts_with("tae_sum"))
        .filter(|n| !n.ends_with(".sha256"))
        .collect()
}

/// Rows of a backup's `tae/tae_list`: `path,size,sha256_hex,needCopy,create_ts`.
pub fn tae_list_rows(backup_root: &Path) -> Vec<Vec<String>> {
    let path = backup_root.join("tae/tae_list");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Deterministic bytes that do not compress.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Raw sha256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
