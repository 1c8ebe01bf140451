//! `mo_br man --out DIR` (hidden): man pages from the command definition
//! itself, one per command (`mo_br.1`, `mo_br-backup.1`,
//! `mo_br-snapshot-create.1`, ...), so they never drift from `--help`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::args::Cli;

/// Writes every page into `dir` (created if needed); returns their paths.
pub fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // `help` is a man page's job, not a page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_tree(cmd, dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub.clone(), dir, written)?;
    }
    written.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "mo_br.1",
            "mo_br-backup.1",
            "mo_br-list.1",
            "mo_br-snapshot-show.1",
        ] {
            assert!(names.iter().any(|n| n == page), "no {page} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "mo_br-man.1"), "{names:?}");
        let list = std::fs::read_to_string(dir.path().join("mo_br-list.1")).unwrap();
        assert!(list.contains("not_check_data"), "{list}");
    }
}
