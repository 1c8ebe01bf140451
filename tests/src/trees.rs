//! Directory trees: what a restore must produce from a sample, and
//! byte-for-byte comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every regular file under `root`, by '/'-separated path relative to it.
/// A missing root is an empty tree.
pub fn files_under(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read directory {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, path);
            }
        }
    }
    out
}

/// What restoring a backup of the sample at `sample_root` must produce,
/// relative to the restore root, with each file's source: every file of
/// `mo-data` a backup does not skip by design (LOCAL, ETL, TMP, caches,
/// `.tmp.*`), plus the launch configs under `etc/launch`.
pub fn expected_restored_files(sample_root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for (rel, path) in files_under(&sample_root.join("mo-data")) {
        let rel = format!("mo-data/{rel}");
        if mo_br_sample::skipped_by_design(&rel) {
            continue;
        }
        out.insert(rel, path);
    }
    for (rel, path) in files_under(&sample_root.join("etc/launch")) {
        if rel.ends_with(".toml") && !rel.contains('/') {
            out.insert(format!("etc/launch/{rel}"), path);
        }
    }
    out
}

/// Compares two sets of files (relative path -> file); `Err` describes every
/// difference (missing, unexpected, different bytes), a few of each.
pub fn compare(
    expected: &BTreeMap<String, PathBuf>,
    actual: &BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let exp: BTreeSet<&String> = expected.keys().collect();
    let act: BTreeSet<&String> = actual.keys().collect();
    let missing: Vec<&&String> = exp.difference(&act).collect();
    let extra: Vec<&&String> = act.difference(&exp).collect();
    let mut differ = Vec::new();
    for rel in exp.intersection(&act) {
        let a = std::fs::read(&expected[*rel]).expect("read expected file");
        let b = std::fs::read(&actual[*rel]).expect("read actual file");
        if a != b {
            differ.push(format!("{rel} ({} vs {} bytes)", a.len(), b.len()));
        }
    }
    if missing.is_empty() && extra.is_empty() && differ.is_empty() {
        return Ok(());
    }
    let show = |v: Vec<String>| {
        let n = v.len();
        let mut s: Vec<String> = v.into_iter().take(10).collect();
        if n > 10 {
            s.push(format!("... {} more", n - 10));
        }
        s.join(", ")
    };
    Err(format!(
        "{} expected, {} present\nmissing ({}): {}\nunexpected ({}): {}\ndifferent bytes ({}): {}",
        expected.len(),
        actual.len(),
        missing.len(),
        show(missing.iter().map(|s| s.to_string()).collect()),
        extra.len(),
        show(extra.iter().map(|s| s.to_string()).collect()),
        differ.len(),
        show(differ),
    ))
}

/// Panics unless `restore_root` holds exactly what restoring the sample at
/// `sample_root` must produce, byte for byte.
#[track_caller]
pub fn assert_restored(sample_root: &Path, restore_root: &Path) {
    let expected = expected_restored_files(sample_root);
    assert!(
        expected.len() > 10,
        "the sample at {} looks empty",
        sample_root.display()
    );
    if let Err(diff) = compare(&expected, &files_under(restore_root)) {
        panic!(
            "restore of {} into {} differs from the source:\n{diff}",
            sample_root.display(),
            restore_root.display()
        );
    }
}

/// Panics unless two trees are identical (same paths, same bytes).
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    if let Err(diff) = compare(&files_under(a), &files_under(b)) {
        panic!("{} and {} differ:\n{diff}", a.display(), b.display());
    }
}

/// Whether `dir` holds no regular file (missing counts as empty).
pub fn has_no_files(dir: &Path) -> bool {
    files_under(dir).is_empty()
}

fn is_temp(rel: &str) -> bool {
    rel.rsplit('/').next().unwrap_or(rel).starts_with(".tmp.")
}

/// Files under `dir` whose write finished (not `.tmp.*` temp files).
pub fn finished_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_keys()
        .filter(|k| !is_temp(k))
        .collect()
}

/// Temp files of unfinished writes under `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_keys()
        .filter(|k| is_temp(k))
        .collect()
}

/// Nothing at all under `dir`: no file, finished or not.
#[track_caller]
pub fn assert_left_nothing(dir: &Path) {
    let left: Vec<String> = files_under(dir).into_keys().collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}
