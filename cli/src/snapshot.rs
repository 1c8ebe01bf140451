//! `mo_br snapshot create|show|drop|restore`: MatrixOne snapshots over its
//! SQL port. The CLI checks what was typed and sends one `Snapshot` call;
//! the coordinator (embedded or remote) logs in to MatrixOne, builds and
//! runs the statements, and streams back `show`'s table as lines and a
//! summary. MatrixOne's errors are printed verbatim after `MatrixOne: `.
//!
//! The password comes from `--password`, else from MO_BR_PASSWORD, so it
//! need not be on the command line.

use anyhow::Result;
use mo_br_proto::coordinator::{
    MoLogin, RestoreGrammar, SnapshotLevel, SnapshotOp, SnapshotRequest,
};
use mo_br_proto::names::Named;

use crate::args::{ConnFlags, SnapshotCommand};
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::{connect, job};

/// Where the MatrixOne password is read from without `--password`.
pub const PASSWORD_ENV: &str = "MO_BR_PASSWORD";
/// MatrixOne's default SQL port.
pub const DEFAULT_PORT: u16 = 6001;
pub const DEFAULT_HOST: &str = "127.0.0.1";

pub(crate) fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A flag naming one of a closed set of values; `None` when not given.
/// Parsed here rather than by clap so that a wrong value is one line, like
/// every other usage error, and so that the config file's values parse the
/// same way.
pub(crate) fn choice<E: Named>(flag: &str, v: &Option<String>) -> Result<Option<E>, UsageError> {
    given(v)
        .map(|w| E::parse(&w).ok_or_else(|| usage!("unknown {flag} \"{w}\": use {}", E::choices())))
        .transpose()
}

/// The MatrixOne login from the connection flags (snapshots and online
/// backups); `env_password` is MO_BR_PASSWORD.
pub(crate) fn login(c: &ConnFlags, env_password: Option<String>) -> Result<MoLogin, UsageError> {
    let user = given(&c.user).ok_or_else(|| {
        usage!("--user is required: the MatrixOne user, e.g. dump (sys) or acc1#admin")
    })?;
    let port = c.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(usage!("--port 0: give MatrixOne's SQL port (default 6001)"));
    }
    Ok(MoLogin {
        host: given(&c.host).unwrap_or_else(|| DEFAULT_HOST.to_string()),
        port: u32::from(port),
        user,
        password: c.password.clone().or(env_password).unwrap_or_default(),
    })
}

fn required(flag: &str, v: &Option<String>) -> Result<String, UsageError> {
    given(v).ok_or_else(|| usage!("{flag} is required"))
}

/// One of two spellings of a flag; both given and different is an error.
fn either(a: (&str, &Option<String>), b: (&str, &Option<String>)) -> Result<String, UsageError> {
    match (given(a.1), given(b.1)) {
        (Some(x), Some(y)) if x != y => Err(usage!(
            "{} \"{x}\" and {} \"{y}\" disagree: give one of them",
            a.0,
            b.0
        )),
        (x, y) => Ok(x.or(y).unwrap_or_default()),
    }
}

/// The request for what was typed; `env_password` is MO_BR_PASSWORD.
pub fn request(
    cmd: &SnapshotCommand,
    s: &Settings,
    env_password: Option<String>,
) -> Result<SnapshotRequest, UsageError> {
    let opt = |v: &Option<String>| given(v).unwrap_or_default();
    let r = match cmd {
        SnapshotCommand::Create(a) => SnapshotRequest {
            login: Some(login(&a.conn, env_password)?),
            op: SnapshotOp::Create.into(),
            level: choice("--level", &a.level)?
                .unwrap_or(SnapshotLevel::Unspecified)
                .into(),
            account: opt(&a.account),
            db: opt(&a.db),
            table: opt(&a.table),
            sname: required("--sname", &a.sname)?,
            ..Default::default()
        },
        SnapshotCommand::Show(a) => {
            // Only the value sys has an effect (mo_br-newer-commands.md).
            let cluster = given(&a.cluster).is_some_and(|c| c.eq_ignore_ascii_case("sys"));
            if cluster {
                for (flag, v) in [
                    ("--account", &a.account),
                    ("--db", &a.db),
                    ("--table", &a.table),
                ] {
                    if given(v).is_some() {
                        return Err(usage!("--cluster sys shows cluster level snapshots, which name no account, database or table: drop {flag}"));
                    }
                }
            }
            SnapshotRequest {
                login: Some(login(&a.conn, env_password)?),
                op: SnapshotOp::Show.into(),
                account: opt(&a.account),
                db: opt(&a.db),
                table: opt(&a.table),
                sname: opt(&a.sname),
                begin_ts: opt(&a.begin_ts),
                end_ts: opt(&a.end_ts),
                cluster,
                ..Default::default()
            }
        }
        SnapshotCommand::Drop(a) => SnapshotRequest {
            login: Some(login(&a.conn, env_password)?),
            op: SnapshotOp::Drop.into(),
            sname: required("--sname", &a.sname)?,
            ..Default::default()
        },
        SnapshotCommand::Restore(a) => {
            let typed = given(&a.restore_grammar).or_else(|| given(&s.restore_grammar));
            let grammar = choice("--restore_grammar", &typed)?.unwrap_or(RestoreGrammar::Auto);
            let new_account = either(
                ("--new_account", &a.new_account),
                ("--newaccount", &a.newaccount),
            )?;
            let new_admin_name = either(
                ("--new_admin_name", &a.new_admin_name),
                ("--newaccountadmin", &a.newaccountadmin),
            )?;
            // A password is taken as typed (spaces may matter).
            let new_admin_password = match (&a.new_admin_password, &a.newaccountpwd) {
                (Some(x), Some(y)) if x != y => {
                    return Err(usage!(
                        "--new_admin_password and --newaccountpwd disagree: give one of them"
                    ))
                }
                (x, y) => x.clone().or_else(|| y.clone()).unwrap_or_default(),
            };
            if new_account.is_empty()
                && (!new_admin_name.is_empty() || !new_admin_password.is_empty())
            {
                return Err(usage!(
                    "--new_admin_name and --new_admin_password go with --new_account"
                ));
            }
            if !new_account.is_empty()
                && (new_admin_name.is_empty() || new_admin_password.is_empty())
            {
                return Err(usage!(
                    "--new_account needs --new_admin_name and --new_admin_password for its admin"
                ));
            }
            SnapshotRequest {
                login: Some(login(&a.conn, env_password)?),
                op: SnapshotOp::Restore.into(),
                account: opt(&a.account),
                db: opt(&a.db),
                table: opt(&a.table),
                sname: required("--sname", &a.sname)?,
                new_account,
                new_admin_name,
                new_admin_password,
                grammar: grammar.into(),
                ..Default::default()
            }
        }
    };
    Ok(r)
}

pub async fn run(cmd: &SnapshotCommand, s: &Settings) -> Result<u8> {
    let env_password = std::env::var(PASSWORD_ENV).ok();
    let req = request(cmd, s, env_password)?;
    let mut client = connect::connect_reader(s, &s.meta_path(None), s.parallelism(None)).await?;
    let stream = client.snapshot(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    if let Some(f) = out.finished.as_ref().filter(|f| !f.summary.is_empty()) {
        job::print(&f.summary)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;

    fn parse(
        argv: &[&str],
        file: &str,
        env_pw: Option<&str>,
    ) -> Result<SnapshotRequest, UsageError> {
        let cli = Cli::try_parse_from(argv).unwrap();
        let s = Settings::resolve(
            &cli,
            Config::parse(file).unwrap(),
            None,
            EnvCreds::default(),
        );
        let Some(Command::Snapshot(cmd)) = &cli.command else {
            panic!("not a snapshot command")
        };
        request(cmd, &s, env_pw.map(str::to_string))
    }

    #[test]
    fn create_request_and_login_defaults() {
        let r = parse(
            &[
                "mo_br",
                "snapshot",
                "create",
                "--user",
                "dump",
                "--password",
                "111",
                "--level",
                "table",
                "--db",
                "d",
                "--table",
                "t",
                "--sname",
                "sp",
            ],
            "",
            Some("env"),
        )
        .unwrap();
        let l = r.login.clone().unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 6001));
        assert_eq!(l.password, "111", "the flag wins over MO_BR_PASSWORD");
        assert_eq!(
            (r.op(), r.level()),
            (SnapshotOp::Create, SnapshotLevel::Table)
        );
        assert_eq!(
            (r.db.as_str(), r.table.as_str(), r.sname.as_str()),
            ("d", "t", "sp")
        );
        assert!(
            !format!("{r:?}").contains("111"),
            "Debug shows the password"
        );
    }

    #[test]
    fn levels_by_any_of_their_names() {
        let create = |extra: &[&str]| {
            let mut argv = vec![
                "mo_br", "snapshot", "create", "--user", "dump", "--sname", "sp",
            ];
            argv.extend_from_slice(extra);
            parse(&argv, "", None)
        };
        let level = |extra: &[&str]| create(extra).unwrap().level();
        assert_eq!(
            level(&[]),
            SnapshotLevel::Unspecified,
            "inferred by the coordinator"
        );
        assert_eq!(level(&["--level", "tenant"]), SnapshotLevel::Account);
        assert_eq!(level(&["--level", "DB"]), SnapshotLevel::Database);
        assert_eq!(level(&["--level", " cluster "]), SnapshotLevel::Cluster);
        assert_eq!(level(&["--level", ""]), SnapshotLevel::Unspecified);
        assert_eq!(
            create(&["--level", "galaxy"]).unwrap_err().0,
            "unknown --level \"galaxy\": use cluster, account, database or table"
        );
    }

    #[test]
    fn password_from_env_and_required_flags() {
        let r = parse(
            &[
                "mo_br",
                "snapshot",
                "show",
                "--user",
                "acc1#admin",
                "--port",
                "7001",
            ],
            "",
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!(r.login.as_ref().unwrap().password, "s3cret");
        assert_eq!(r.login.as_ref().unwrap().port, 7001);
        assert!(parse(&["mo_br", "snapshot", "show"], "", None).is_err());
        assert!(parse(&["mo_br", "snapshot", "drop", "--user", "dump"], "", None).is_err());
        assert!(parse(&["mo_br", "snapshot", "create", "--user", "dump"], "", None).is_err());
    }

    #[test]
    fn show_cluster_only_with_sys() {
        let show = |extra: &[&str]| {
            let mut argv = vec!["mo_br", "snapshot", "show", "--user", "dump"];
            argv.extend_from_slice(extra);
            parse(&argv, "", None)
        };
        assert!(show(&["--cluster", "sys"]).unwrap().cluster);
        assert!(show(&["--cluster", "SYS"]).unwrap().cluster);
        assert!(
            !show(&["--cluster", "acc1"]).unwrap().cluster,
            "only sys has an effect"
        );
        assert!(!show(&[]).unwrap().cluster);
        assert!(show(&["--cluster", "sys", "--sname", "sp"]).is_ok());
        assert_eq!(
            show(&["--cluster", "sys", "--db", "d"]).unwrap_err().0,
            "--cluster sys shows cluster level snapshots, which name no account, database or table: drop --db"
        );
    }

    #[test]
    fn restore_spellings_and_grammar() {
        let base = [
            "mo_br", "snapshot", "restore", "--user", "dump", "--sname", "sp",
        ];
        let with = |extra: &[&str], file: &str| {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            parse(&argv, file, None)
        };
        let r = with(&[], "").unwrap();
        assert_eq!(r.grammar(), RestoreGrammar::Auto);
        let r = with(&[], "restore_grammar = \"old\"").unwrap();
        assert_eq!(r.grammar(), RestoreGrammar::Old);
        let r = with(
            &["--restore_grammar", "current"],
            "restore_grammar = \"old\"",
        )
        .unwrap();
        assert_eq!(r.grammar(), RestoreGrammar::Current);
        let r = with(&["--restore_grammar", "OLD"], "").unwrap();
        assert_eq!(r.grammar(), RestoreGrammar::Old);
        assert_eq!(
            with(&["--restore_grammar", "x"], "").unwrap_err().0,
            "unknown --restore_grammar \"x\": use auto, current or old"
        );

        for extra in [
            [
                "--new_account",
                "a2",
                "--new_admin_name",
                "adm",
                "--new_admin_password",
                "pw",
            ],
            [
                "--newaccount",
                "a2",
                "--newaccountadmin",
                "adm",
                "--newaccountpwd",
                "pw",
            ],
        ] {
            let r = with(&extra, "").unwrap();
            assert_eq!(
                (
                    r.new_account.as_str(),
                    r.new_admin_name.as_str(),
                    r.new_admin_password.as_str()
                ),
                ("a2", "adm", "pw")
            );
        }
        // Both spellings, same value: fine; different: a usage error.
        assert!(with(
            &[
                "--new_account",
                "a2",
                "--newaccount",
                "a2",
                "--new_admin_name",
                "adm",
                "--newaccountpwd",
                "pw"
            ],
            ""
        )
        .is_ok());
        let e = with(
            &[
                "--new_account",
                "a2",
                "--newaccount",
                "a3",
                "--new_admin_name",
                "adm",
                "--newaccountpwd",
                "pw",
            ],
            "",
        )
        .unwrap_err();
        assert!(e.0.contains("disagree"), "{}", e.0);
        assert!(with(&["--new_account", "a2"], "").is_err());
        assert!(with(&["--newaccountadmin", "adm"], "").is_err());
    }
}
