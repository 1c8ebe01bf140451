//! The git commit the daemons report in `mo_br_build_info` and every binary
//! prints with `--version`: taken from `MO_BR_GIT_COMMIT` when the builder
//! sets it (a Docker build without .git), else from `git`, else "unknown" (a
//! source tarball). The build date is `SOURCE_DATE_EPOCH`'s when set (a
//! reproducible build), else today's in UTC.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=MO_BR_GIT_COMMIT");
    let commit = std::env::var("MO_BR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuilt when HEAD moves: HEAD itself (a checkout) and the ref it names
    // (a commit). Paths from git, as worktrees keep refs elsewhere.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rustc-env=MO_BR_GIT_COMMIT={commit}");

    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(chrono::Utc::now);
    println!(
        "cargo:rustc-env=MO_BR_BUILD_DATE={}",
        built.format("%Y-%m-%d")
    );
}
