//! `scripts/bench.sh` keeps working (issue 10): run on a tiny pair of trees
//! with the binaries this build made (no release build), every mo-br step
//! runs, restores are byte-compared by the script, and the table it prints
//! has a time for each row. Its timings are not asserted: at this size they
//! are start-up costs, and CI's cores are shared.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mo_br_tests::procs::{bin, run_with_timeout};

/// The cells of a table row `| a | b | ... |`, trimmed.
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn the_benchmark_runs_on_a_tiny_tree_and_prints_its_table() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bins = bin("mo_br").parent().unwrap().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("scripts/bench.sh"))
        .current_dir(repo)
        .env("BIN", &bins)
        .env("SIZE", "3MiB")
        .env("SMALL", "300")
        .env("WORK", work.path().join("bench"));
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("AWS_") || k.starts_with("MO_BR_") {
            cmd.env_remove(&key);
        }
    }
    let out = run_with_timeout(cmd, Duration::from_secs(900));
    out.assert_ok("scripts/bench.sh on a tiny tree");

    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("| ["))
        .map(cells)
        .collect();
    for tree in ["mixed", "small"] {
        for op in [
            "backup -> S3",
            "backup -> filesystem",
            "incremental, 1 % new",
            "restore <- S3",
            "restore <- filesystem",
            "check S3",
            "check filesystem",
        ] {
            let name = format!("[{tree}] {op}");
            let row = rows
                .iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("no row {name:?}\n{out}"));
            let secs = row[1]
                .strip_suffix(" s")
                .unwrap_or_else(|| panic!("{name}: no time for mo-br: {:?}\n{out}", row[1]));
            assert!(secs.parse::<f64>().is_ok_and(|s| s > 0.0), "{row:?}");
        }
        // The ceiling and cp -a are always measured; rclone and restic too,
        // unless the script said it could not install them.
        let mut peers = vec!["PUT ceiling", "GET ceiling", "cp -a + sync"];
        if !out.stdout.contains("could not be installed") {
            peers.extend(["rclone copy", "restic restore", "restic check --read-data"]);
        }
        for peer in peers {
            let measured = rows.iter().any(|r| {
                r[0].starts_with(&format!("[{tree}]"))
                    && r[2].starts_with(peer)
                    && r[2].ends_with(" s")
                    && r[3].parse::<f64>().is_ok()
            });
            assert!(measured, "[{tree}]: {peer} not measured\n{out}");
        }
    }
    assert!(out.stdout.contains("max RSS of mo_br"), "{out}");
}
