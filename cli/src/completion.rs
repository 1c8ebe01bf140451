//! Shell completion through clap_complete's engine: the script that
//! `mo_br completion <shell>` prints makes the shell run `mo_br` again at
//! each TAB (with `MO_BR_COMPLETE` set), so completions follow this very
//! binary's flags, and the ID of `restore`, `check`, `copy`, `list` and `delete`
//! completes to the backups of the catalog, read the way `mo_br list`
//! reads it (the embedded catalog, created by nothing, or the coordinator).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Local;
use clap::{CommandFactory, Parser};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{CompleteEnv, Shells};
use mo_br_proto::coordinator::{job_event, BackupInfo, ListRequest};

use crate::args::Cli;
use crate::config::{Config, EnvCreds, Settings};
use crate::{connect, render};

/// Set by the shell's script when it asks for completions. Not the engine's
/// default `COMPLETE`, which another program's environment may well carry.
pub const VAR: &str = "MO_BR_COMPLETE";

/// How long a TAB may wait for the catalog (a remote coordinator may be
/// unreachable): no completion is better than a hung shell.
const CATALOG_WAIT: Duration = Duration::from_secs(3);

/// Commands whose ID argument names a backup, and whether any backup will
/// do (`delete` removes failed ones too) or only complete ones.
const ID_COMMANDS: [(&str, bool); 5] = [
    ("restore", false),
    ("check", false),
    ("copy", false),
    ("list", true),
    ("delete", true),
];

/// The command line as the completion engine sees it: [`Cli`] with the
/// backup IDs as candidates.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (name, any_state) in ID_COMMANDS {
        cmd = cmd.mut_subcommand(name, |c| {
            c.mut_arg("id", |a| {
                a.add(ArgValueCandidates::new(move || backup_ids(any_state)))
            })
        });
    }
    cmd
}

/// When the shell is asking, answers it and exits; else returns.
pub fn answer_the_shell() {
    CompleteEnv::with_factory(command).var(VAR).complete();
}

/// `mo_br completion <shell>`: the script to source.
pub fn write_registration(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(std::io::Error::other(format!(
            "no completion for the {name} shell"
        )));
    };
    completer.write_registration(VAR, "mo_br", "mo_br", &callback(), out)
}

/// How the script calls this binary back: as typed when found on PATH,
/// else by its absolute path, so that `./mo_br completion bash` still works
/// from another directory.
fn callback() -> String {
    let typed = PathBuf::from(std::env::args_os().next().unwrap_or_else(|| "mo_br".into()));
    if typed.components().count() <= 1 {
        return typed.to_string_lossy().into_owned();
    }
    std::env::current_dir()
        .map(|d| d.join(&typed))
        .unwrap_or(typed)
        .to_string_lossy()
        .into_owned()
}

/// The catalog's backups as candidates, each with its time, size and
/// place as help. Silent on any failure: a TAB prints no errors.
fn backup_ids(any_state: bool) -> Vec<CompletionCandidate> {
    let words: Vec<OsString> = std::env::args_os().collect();
    let backups = catalog(&words).unwrap_or_default();
    backups
        .into_iter()
        .filter(|b| any_state || render::is_complete(b))
        .map(|b| {
            let help = format!(
                "{} {} {}",
                render::time_in(&b.at_time, &Local),
                render::size(b.size),
                render::path(&b)
            );
            CompletionCandidate::new(b.id).help(Some(help.into()))
        })
        .collect()
}

/// The backups of the catalog that the command line being completed names
/// (its `--config`, `--meta_path` and `--coordinator`, else the defaults).
fn catalog(words: &[OsString]) -> Option<Vec<BackupInfo>> {
    let config_file = flag_value(words, "--config");
    let config = Config::load(config_file.as_deref().map(Path::new)).ok()?;
    let mut cli = Cli::try_parse_from(["mo_br", "list"]).ok()?;
    cli.coordinator = flag_value(words, "--coordinator");
    let settings = Settings::resolve(
        &cli,
        config,
        std::env::var("MO_BR_COORDINATOR").ok(),
        EnvCreds::from_env(),
    );
    let meta_path = settings.meta_path(flag_value(words, "--meta_path").as_deref().map(Path::new));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let listed = async {
            let mut client = connect::connect_reader(&settings, &meta_path, 1).await?;
            let request = ListRequest {
                not_check_data: true,
                ..Default::default()
            };
            let mut stream = client.list(request).await?.into_inner();
            let mut backups = Vec::new();
            while let Some(event) = stream.message().await? {
                if let Some(job_event::Event::Backups(b)) = event.event {
                    backups.extend(b.backups);
                }
            }
            anyhow::Ok(backups)
        };
        tokio::time::timeout(CATALOG_WAIT, listed).await.ok()?.ok()
    })
}

/// The value of `--flag v` or `--flag=v` among the words being completed.
fn flag_value(words: &[OsString], flag: &str) -> Option<String> {
    let mut it = words.iter().map(|w| w.to_string_lossy());
    while let Some(w) = it.next() {
        if w == flag {
            return it.next().map(|v| v.into_owned());
        }
        if let Some(v) = w.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_in_both_spellings() {
        let words: Vec<OsString> = [
            "mo_br",
            "--",
            "mo_br",
            "list",
            "--meta_path",
            "/m",
            "--config=c.toml",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(flag_value(&words, "--meta_path").as_deref(), Some("/m"));
        assert_eq!(flag_value(&words, "--config").as_deref(), Some("c.toml"));
        assert_eq!(flag_value(&words, "--coordinator"), None);
    }

    #[test]
    fn every_shell_has_a_script() {
        use clap::ValueEnum;
        for shell in clap_complete::Shell::value_variants() {
            let mut out = Vec::new();
            write_registration(*shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains(VAR), "{shell}: {script}");
        }
    }

    #[test]
    fn the_id_arguments_have_candidates() {
        let cmd = command();
        for (name, _) in ID_COMMANDS {
            let sub = cmd.find_subcommand(name).unwrap();
            let id = sub.get_arguments().find(|a| a.get_id() == "id").unwrap();
            assert!(id.get::<ArgValueCandidates>().is_some(), "{name}");
        }
    }
}
