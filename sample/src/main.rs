//! `mo-br-sample`: writes a realistic MatrixOne data directory (see the
//! `mo_br_sample` library docs for the layout).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mo_br_sample::{generate, grow, parse_size, Backend, Options};

#[derive(Parser)]
#[command(
    name = "mo-br-sample",
    version,
    about = "Generate a realistic MatrixOne data directory (deterministic from --seed and --size)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Output directory (created; must be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Total size of the SHARED objects, e.g. 1GiB, 200MiB, 12345.
    #[arg(long, default_value = "64MiB", value_parser = size_arg)]
    size: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Legacy DISK backend (CRC-framed blocks in mo-data/shared) instead of DISK-V2.
    #[arg(long)]
    legacy_disk: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Simulate the node running on: add a newer flush and incremental checkpoint.
    Grow {
        /// A directory previously written by mo-br-sample.
        #[arg(long)]
        out: PathBuf,
        /// Distinguishes successive grows; same tree + round + seed => same result.
        #[arg(long)]
        round: u32,
        /// Number of new objects.
        #[arg(long, default_value_t = 16)]
        count: usize,
        /// Every new object of this size (e.g. 16, 4KiB) instead of the
        /// usual mix: many tiny objects for scale tests.
        #[arg(long, value_parser = size_arg)]
        object_size: Option<u64>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Grow {
            out,
            round,
            count,
            object_size,
            seed,
        }) => {
            let backend = detect_backend(&out)?;
            let opts = Options {
                seed,
                total_bytes: 0,
                backend,
            };
            let added = grow(&out, &opts, round, count, object_size)
                .with_context(|| format!("growing {}", out.display()))?;
            let meta = added.last().map(String::as_str).unwrap_or("");
            println!(
                "grew {}: {} new objects, new checkpoint {meta}",
                out.display(),
                added.len().saturating_sub(1)
            );
        }
        None => {
            let Some(out) = cli.gen.out else {
                bail!("--out DIR is required (see --help)");
            };
            let opts = Options {
                seed: cli.gen.seed,
                total_bytes: cli.gen.size,
                backend: if cli.gen.legacy_disk {
                    Backend::Disk
                } else {
                    Backend::DiskV2
                },
            };
            let g = generate(&out, &opts)
                .with_context(|| format!("generating into {}", out.display()))?;
            println!(
                "generated {} objects, {} bytes ({} backend); data dir {}; launch config {}",
                g.objects,
                g.bytes,
                opts.backend.config_name(),
                g.data_dir.display(),
                g.launch_config.display()
            );
        }
    }
    Ok(())
}

/// Grow must write in the format the tree already has, so read it off the tree.
fn detect_backend(root: &Path) -> Result<Backend> {
    for b in [Backend::DiskV2, Backend::Disk] {
        if root.join("mo-data").join(b.shared_dir()).is_dir() {
            return Ok(b);
        }
    }
    bail!(
        "{} has no mo-data/shared2 or mo-data/shared; generate it first",
        root.display()
    )
}
