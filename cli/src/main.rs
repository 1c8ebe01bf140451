//! `mo_br`, the backup and restore tool for the matrixone.
//!
//! The binary is glue: [`args`] parses what was typed, [`config`] merges it
//! with the config file (whose keys are the flags' names) and the
//! environment, each command module
//! ([`backup`], [`list`], [`check`], [`delete`], [`restore`], [`snapshot`])
//! builds its request and reads the job's event stream ([`job`]) through a
//! coordinator ([`connect`]: remote, or embedded in this process), and
//! [`render`] prints tables the way MatrixOne's mo_br does. [`completion`]
//! and [`man`] describe the commands to shells and to `man`.
//!
//! Exit codes: 0 success, 1 the operation failed or a check found problems,
//! 2 a usage error.

mod args;
mod backup;
mod check;
mod completion;
mod compression;
mod config;
mod connect;
mod copy;
mod delete;
mod error;
mod expire;
mod help;
mod job;
mod list;
mod location;
mod logging;
mod man;
mod pitr;
mod progress;
mod rebuild;
mod render;
mod restore;
mod schedule;
mod snapshot;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::args::{CatalogCommand, CertsCommand, Cli, Command};
use crate::config::{Config, EnvCreds, Settings};
use crate::error::usage;

fn main() -> ExitCode {
    completion::answer_the_shell();
    let argv: Vec<OsString> = std::env::args_os().collect();
    if help::asked(&argv[1..]) {
        print!("{}", help::top_level());
        return ExitCode::SUCCESS;
    }
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return clap_failure(e),
    };
    let code = match run(cli, argv, &matches) {
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

/// clap's own report of a bad command line (with usage), except for a value
/// a check of ours refused (`--parallelism 0`): one line, exit code 2, like
/// every other usage error.
fn clap_failure(e: clap::Error) -> ExitCode {
    if e.kind() == ErrorKind::ValueValidation {
        eprintln!("mo_br: {}", first_line(&e));
        return ExitCode::from(2);
    }
    e.exit()
}

fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn run(mut cli: Cli, mut argv: Vec<OsString>, matches: &ArgMatches) -> anyhow::Result<u8> {
    // Refused whatever the command, also by those that log nothing.
    if let Some(level) = &cli.log_level {
        logging::check(level)?;
    }
    match &cli.command {
        None => {
            print!("{}", help::top_level());
            return Ok(0);
        }
        Some(Command::Completion(c)) => {
            completion::write_registration(c.shell, &mut std::io::stdout())?;
            return Ok(0);
        }
        Some(Command::Certs(CertsCommand::Init(a))) => {
            let written =
                mo_br_security::certs::init(&a.out, &a.hosts).map_err(|e| usage!("{e}"))?;
            for file in written.files() {
                println!("{}", file.display());
            }
            return Ok(0);
        }
        Some(Command::Man(a)) => {
            let written = man::write(&a.out).map_err(|e| usage!("{}: {e}", a.out.display()))?;
            for page in written {
                println!("{}", page.display());
            }
            return Ok(0);
        }
        Some(_) => {}
    }

    let config = Config::load(cli.config.as_deref())?;
    for key in config.unknown_keys(&Cli::command()) {
        eprintln!(
            "mo_br: warning: {}: unknown key \"{key}\" (ignored)",
            config.name()
        );
    }
    let from_file = config.flag_args(&Cli::command(), matches)?;
    if !from_file.is_empty() {
        argv.extend(from_file);
        cli = Cli::try_parse_from(&argv)
            .map_err(|e| usage!("{}: {}", config.name(), first_line(&e)))?;
    }
    cli.read_secret_files()?;
    let Some(command) = &cli.command else {
        unreachable!("a command was given")
    };

    let env_coordinator = std::env::var("MO_BR_COORDINATOR").ok();
    let settings = Settings::resolve(&cli, config, env_coordinator, EnvCreds::from_env());
    logging::init(
        &settings.log_level,
        &settings.log_format,
        &settings.log_file,
    )?;
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
                Command::Expire(a) => expire::run(a, &settings).await,
                Command::Copy(a) => copy::run(a, &settings, &cwd).await,
                Command::Catalog(CatalogCommand::Rebuild(a)) => {
                    rebuild::run(a, &settings, &cwd).await
                }
                Command::Restore(a) => restore::run(a, &settings, &cwd).await,
                Command::Snapshot(c) => snapshot::run(c, &settings).await,
                Command::Pitr(c) => pitr::run(c, &settings).await,
                Command::Schedule(c) => schedule::run(c, &settings, &cwd).await,
                Command::Completion(_) | Command::Certs(_) | Command::Man(_) => {
                    unreachable!("handled above")
                }
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
