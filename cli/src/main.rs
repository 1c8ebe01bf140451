//! `mo_br`, the backup and restore tool for the matrixone.
//!
//! The binary is glue: [`args`] parses what was typed, [`config`] merges it
//! with the config file and the environment, each command module
//! ([`backup`], [`list`], [`check`], [`delete`], [`restore`], [`snapshot`])
//! builds its request and reads the job's event stream ([`job`]) through a
//! coordinator ([`connect`]: remote, or embedded in this process), and
//! [`render`] prints tables the way MatrixOne's mo_br does.
//!
//! Exit codes: 0 success, 1 the operation failed or a check found problems,
//! 2 a usage error.

mod args;
mod backup;
mod check;
mod config;
mod connect;
mod delete;
mod error;
mod job;
mod list;
mod location;
mod logging;
mod pitr;
mod progress;
mod render;
mod restore;
mod snapshot;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{CertsCommand, Cli, Command};
use crate::config::{Config, EnvCreds, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let (line, code) = error::report(&err);
            if let Some(line) = line {
                eprintln!("mo_br: {line}");
            }
            code
        }
    };
    ExitCode::from(code)
}

fn run(mut cli: Cli) -> anyhow::Result<u8> {
    cli.read_secret_files()?;
    let command = match &cli.command {
        None => {
            Cli::command().print_help()?;
            return Ok(0);
        }
        Some(Command::Completion(c)) => {
            clap_complete::generate(
                c.shell,
                &mut Cli::command(),
                "mo_br",
                &mut std::io::stdout(),
            );
            return Ok(0);
        }
        Some(Command::Certs(CertsCommand::Init(a))) => {
            let written =
                mo_br_security::certs::init(&a.out, &a.hosts).map_err(|e| error::usage!("{e}"))?;
            for file in written.files() {
                println!("{}", file.display());
            }
            return Ok(0);
        }
        Some(c) => c,
    };

    let config = Config::load(cli.config.as_deref())?;
    let env_coordinator = std::env::var("MO_BR_COORDINATOR").ok();
    let settings = Settings::resolve(&cli, config, env_coordinator, EnvCreds::from_env());
    logging::init(&settings.log_level, &settings.log_file)?;
    let cwd = std::env::current_dir()?;

    let runtime = tokio::runtime::Runtime::new()?;
    let embedded = settings.coordinator.is_none();
    let result = runtime.block_on(async {
        let work = async {
            match command {
                Command::Backup(a) => backup::run(a, &settings, &cwd).await,
                Command::List(a) => list::run(a, &settings).await,
                Command::Check(a) => check::run(a, &settings, &cwd).await,
                Command::Delete(a) => delete::run(a, &settings).await,
                Command::Restore(a) => restore::run(a, &settings, &cwd).await,
                Command::Snapshot(c) => snapshot::run(c, &settings).await,
                Command::Pitr(c) => pitr::run(c, &settings).await,
                Command::Completion(_) | Command::Certs(_) => unreachable!("handled above"),
            }
        };
        tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => {
                // Dropping the call cancels the job: the coordinator
                // removes what it wrote and releases MatrixOne's GC. The
                // embedded one runs in this process: let it finish that.
                if embedded {
                    eprintln!("mo_br: interrupted; cancelling (cleaning up, releasing GC)...");
                    #[cfg(feature = "embedded")]
                    mo_br_coordinator::wait_idle(std::time::Duration::from_secs(20)).await;
                }
                anyhow::bail!("interrupted")
            }
        }
    });
    // The embedded servers are still running: do not wait for them.
    runtime.shutdown_background();
    result
}
