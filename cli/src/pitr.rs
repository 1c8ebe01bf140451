//! `mo_br pitr create|show|alter|restore|drop`: MatrixOne's point-in-time
//! recovery ranges over its SQL port, built like `mo_br snapshot`: the CLI
//! checks what was typed and sends one `Pitr` call; the coordinator
//! (embedded or remote) logs in to MatrixOne, builds and runs the
//! statements, and streams back `show`'s table as lines and a summary.
//! MatrixOne's errors are printed verbatim after `MatrixOne: `.
//!
//! The flag rules checked here need no login: they are usage errors (one
//! line, exit 2) before anything is sent. Rules that depend on who logs in
//! (sys or a tenant) are the coordinator's and MatrixOne's.

use anyhow::Result;
use mo_br_proto::coordinator::{PitrLevel, PitrOp, PitrRequest, PitrUnit};

use crate::args::{PitrCommand, PitrRestoreArgs};
use crate::config::Settings;
use crate::error::UsageError;
use crate::snapshot::{choice, given, login, PASSWORD_ENV};
use crate::{connect, job};

/// The range MatrixOne accepts for `RANGE n` (`invalid pitr value 0`).
pub const RANGE_VALUES: std::ops::RangeInclusive<u32> = 1..=100;

/// The only `--cluster` value with an effect: the sys tenant's cluster.
const CLUSTER_VALUE: &str = "sys";

/// What is wrong with the flags of a pitr command. Each is one line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("--rangevalue \"{0}\": give a whole number from 1 to 100")]
    RangeValue(String),
    /// An object below the level asked for (`--table` for a database level
    /// PITR), or any object for a cluster level one.
    #[error("{flag} does not apply to {} {level} level PITR", article(.level))]
    BelowLevel {
        flag: &'static str,
        level: &'static str,
    },
    #[error("a {level} level PITR needs {needs}")]
    LevelNeeds {
        level: &'static str,
        needs: &'static str,
    },
    #[error("--timestamp \"{0}\": give a time like \"2024-08-08 15:47:15.216472\" (YYYY-MM-DD HH:MM:SS[.ffffff])")]
    Timestamp(String),
    #[error("--cluster \"{0}\": the only value is sys (the whole cluster)")]
    ClusterValue(String),
    #[error("--cluster sys shows cluster level PITRs, which name no account, database or table: drop {flag}")]
    ShowClusterWith { flag: &'static str },
    #[error("--cluster sys restores the whole cluster: drop {flag}")]
    RestoreClusterWith { flag: &'static str },
    #[error("--table needs its database (--database)")]
    TableWithoutDatabase,
    #[error("--new_admin_name and --new_admin_password go with --new_account")]
    AdminWithoutAccount,
    #[error("--new_account needs --new_admin_name and --new_admin_password for its admin")]
    AccountWithoutAdmin,
    #[error("only an account level restore can go to a new account: drop --database and --table")]
    NewAccountScope,
}

/// "a" or "an" before a level's word.
fn article(level: &str) -> &'static str {
    if level.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl From<FlagError> for UsageError {
    fn from(e: FlagError) -> Self {
        UsageError::new(e.to_string())
    }
}

fn required(flag: &'static str, v: &Option<String>) -> Result<String, FlagError> {
    given(v).ok_or(FlagError::Missing(flag))
}

/// `--rangevalue`: required, 1 to 100 (MatrixOne's own limits).
fn range_value(v: &Option<String>) -> Result<u32, FlagError> {
    let typed = given(v).ok_or(FlagError::Missing("--rangevalue"))?;
    typed
        .parse::<u32>()
        .ok()
        .filter(|n| RANGE_VALUES.contains(n))
        .ok_or(FlagError::RangeValue(typed))
}

/// Whether `ts` is a time as MatrixOne parses it (Go's "2006-01-02
/// 15:04:05", which takes an optional fraction of up to 9 digits): a real
/// date and time, every field zero-padded.
pub fn valid_timestamp(ts: &str) -> bool {
    let (base, frac) = match ts.split_once('.') {
        Some((b, f)) => (b, Some(f)),
        None => (ts, None),
    };
    let shape_ok = base.len() == 19
        && base.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    let frac_ok =
        frac.is_none_or(|f| (1..=9).contains(&f.len()) && f.chars().all(|c| c.is_ascii_digit()));
    shape_ok && frac_ok && chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// `--cluster`: whether it asks for the cluster. Only the value `sys` has
/// an effect (as documented for `show`).
fn cluster_flag(v: &Option<String>) -> bool {
    given(v).is_some_and(|c| c.eq_ignore_ascii_case(CLUSTER_VALUE))
}

/// The level asked for, or inferred like the coordinator does (table with
/// --table, database with --database, else account), and the objects below
/// it refused.
fn check_create_level(
    level: PitrLevel,
    account: bool,
    database: bool,
    table: bool,
) -> Result<(), FlagError> {
    let below = |flag: &'static str, present: bool, level: &'static str| {
        if present {
            Err(FlagError::BelowLevel { flag, level })
        } else {
            Ok(())
        }
    };
    match level {
        PitrLevel::Cluster => {
            below("--account", account, "cluster")?;
            below("--database", database, "cluster")?;
            below("--table", table, "cluster")
        }
        PitrLevel::Account => {
            below("--database", database, "account")?;
            below("--table", table, "account")
        }
        PitrLevel::Database => {
            below("--table", table, "database")?;
            if database {
                Ok(())
            } else {
                Err(FlagError::LevelNeeds {
                    level: "database",
                    needs: "--database",
                })
            }
        }
        PitrLevel::Table => {
            if database && table {
                Ok(())
            } else {
                Err(FlagError::LevelNeeds {
                    level: "table",
                    needs: "--database and --table",
                })
            }
        }
        PitrLevel::Unspecified if table && !database => Err(FlagError::TableWithoutDatabase),
        PitrLevel::Unspecified => Ok(()),
    }
}

/// The new account of a restore and its admin, all three or none; the
/// password is taken as typed (spaces may matter).
fn new_account_flags(a: &PitrRestoreArgs) -> Result<(String, String, String), FlagError> {
    let account = given(&a.new_account).unwrap_or_default();
    let admin = given(&a.new_admin_name).unwrap_or_default();
    let password = a.new_admin_password.clone().unwrap_or_default();
    match (account.is_empty(), admin.is_empty() || password.is_empty()) {
        (true, _) if !admin.is_empty() || !password.is_empty() => {
            Err(FlagError::AdminWithoutAccount)
        }
        (false, true) => Err(FlagError::AccountWithoutAdmin),
        _ => Ok((account, admin, password)),
    }
}

fn restore_request(a: &PitrRestoreArgs) -> Result<PitrRequest, FlagError> {
    let pname = required("--pname", &a.pname)?;
    let timestamp = required("--timestamp", &a.timestamp)?;
    if !valid_timestamp(&timestamp) {
        return Err(FlagError::Timestamp(timestamp));
    }
    // Restore changes data: a --cluster value that asks for nothing is
    // refused rather than taken for an account restore.
    let cluster = match given(&a.cluster) {
        Some(c) if c.eq_ignore_ascii_case(CLUSTER_VALUE) => true,
        Some(c) => return Err(FlagError::ClusterValue(c)),
        None => false,
    };
    let account = given(&a.account).unwrap_or_default();
    let database = given(&a.database).unwrap_or_default();
    let table = given(&a.table).unwrap_or_default();
    let (new_account, new_admin_name, new_admin_password) = new_account_flags(a)?;
    if cluster {
        for (flag, v) in [
            ("--account", &account),
            ("--database", &database),
            ("--table", &table),
            ("--new_account", &new_account),
        ] {
            if !v.is_empty() {
                return Err(FlagError::RestoreClusterWith { flag });
            }
        }
    }
    if !table.is_empty() && database.is_empty() {
        return Err(FlagError::TableWithoutDatabase);
    }
    if !new_account.is_empty() && !database.is_empty() {
        return Err(FlagError::NewAccountScope);
    }
    Ok(PitrRequest {
        op: PitrOp::Restore.into(),
        pname,
        timestamp,
        cluster,
        account,
        database,
        table,
        new_account,
        new_admin_name,
        new_admin_password,
        ..Default::default()
    })
}

/// The request for what was typed; `env_password` is MO_BR_PASSWORD.
pub fn request(cmd: &PitrCommand, env_password: Option<String>) -> Result<PitrRequest, UsageError> {
    let opt = |v: &Option<String>| given(v).unwrap_or_default();
    let unit = |v: &Option<String>| -> Result<PitrUnit, UsageError> {
        // Sent as the unit it stands for, so the coordinator never guesses.
        Ok(choice::<PitrUnit>("--rangeunit", v)?.unwrap_or(PitrUnit::Day))
    };
    let (conn, mut req) = match cmd {
        PitrCommand::Create(a) => {
            let level = choice("--level", &a.level)?.unwrap_or(PitrLevel::Unspecified);
            let (account, database, table) = (opt(&a.account), opt(&a.database), opt(&a.table));
            check_create_level(
                level,
                !account.is_empty(),
                !database.is_empty(),
                !table.is_empty(),
            )?;
            let req = PitrRequest {
                op: PitrOp::Create.into(),
                pname: required("--pname", &a.pname)?,
                level: level.into(),
                account,
                database,
                table,
                range_value: range_value(&a.rangevalue)?,
                range_unit: unit(&a.rangeunit)?.into(),
                ..Default::default()
            };
            (&a.conn, req)
        }
        PitrCommand::Show(a) => {
            let cluster = cluster_flag(&a.cluster);
            let req = PitrRequest {
                op: PitrOp::Show.into(),
                cluster,
                account: opt(&a.account),
                database: opt(&a.database),
                table: opt(&a.table),
                ..Default::default()
            };
            if cluster {
                for (flag, v) in [
                    ("--account", &req.account),
                    ("--database", &req.database),
                    ("--table", &req.table),
                ] {
                    if !v.is_empty() {
                        return Err(FlagError::ShowClusterWith { flag }.into());
                    }
                }
            }
            (&a.conn, req)
        }
        PitrCommand::Alter(a) => {
            let req = PitrRequest {
                op: PitrOp::Alter.into(),
                pname: required("--pname", &a.pname)?,
                range_value: range_value(&a.rangevalue)?,
                range_unit: unit(&a.rangeunit)?.into(),
                ..Default::default()
            };
            (&a.conn, req)
        }
        PitrCommand::Restore(a) => (&a.conn, restore_request(a)?),
        PitrCommand::Drop(a) => {
            let req = PitrRequest {
                op: PitrOp::Drop.into(),
                pname: required("--pname", &a.pname)?,
                ..Default::default()
            };
            (&a.conn, req)
        }
    };
    req.login = Some(login(conn, env_password)?);
    Ok(req)
}

pub async fn run(cmd: &PitrCommand, s: &Settings) -> Result<u8> {
    let env_password = std::env::var(PASSWORD_ENV).ok();
    let req = request(cmd, env_password)?;
    // PITR statements touch no catalog: nothing is created for them.
    let mut client = connect::connect_reader(s, &s.meta_path(None), s.parallelism(None)).await?;
    let stream = client.pitr(req).await?.into_inner();
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
    use clap::Parser;

    /// `mo_br pitr <argv>` as the request it sends, or its usage error.
    fn parse(argv: &[&str], env_pw: Option<&str>) -> Result<PitrRequest, String> {
        let mut full = vec!["mo_br", "pitr"];
        full.extend_from_slice(argv);
        let mut cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        cli.read_secret_files().map_err(|e| e.0)?;
        let Some(Command::Pitr(cmd)) = &cli.command else {
            panic!("not a pitr command")
        };
        request(cmd, env_pw.map(str::to_string)).map_err(|e| e.0)
    }

    fn ok(argv: &[&str]) -> PitrRequest {
        parse(argv, None).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    fn err(argv: &[&str]) -> String {
        match parse(argv, None) {
            Ok(r) => panic!("{argv:?} was accepted: {r:?}"),
            Err(e) => e,
        }
    }

    const CONN: [&str; 8] = [
        "--host",
        "127.0.0.1",
        "--port",
        "6001",
        "--user",
        "dump",
        "--password",
        "111",
    ];

    fn with_conn(argv: &[&'static str]) -> Vec<&'static str> {
        let mut v = vec![argv[0]];
        v.extend_from_slice(&CONN);
        v.extend_from_slice(&argv[1..]);
        v
    }

    #[test]
    fn the_documented_examples_parse() {
        let r = ok(&with_conn(&[
            "create",
            "--pname",
            "pitr01",
            "--level",
            "cluster",
            "--rangevalue",
            "10",
            "--rangeunit",
            "h",
        ]));
        assert_eq!(
            (r.op(), r.level(), r.range_unit()),
            (PitrOp::Create, PitrLevel::Cluster, PitrUnit::Hour)
        );
        assert_eq!((r.pname.as_str(), r.range_value), ("pitr01", 10));
        let l = r.login.clone().unwrap();
        assert_eq!(
            (
                l.host.as_str(),
                l.port,
                l.user.as_str(),
                l.password.as_str()
            ),
            ("127.0.0.1", 6001, "dump", "111")
        );
        assert!(
            !format!("{r:?}").contains("111\""),
            "Debug shows the password: {r:?}"
        );

        let r = ok(&with_conn(&[
            "restore",
            "--pname",
            "pitr100",
            "--timestamp",
            "2024-08-08 15:47:15.216472",
            "--account",
            "sys",
            "--database",
            "abc",
        ]));
        assert_eq!(r.op(), PitrOp::Restore);
        assert_eq!(
            (
                r.pname.as_str(),
                r.timestamp.as_str(),
                r.account.as_str(),
                r.database.as_str()
            ),
            ("pitr100", "2024-08-08 15:47:15.216472", "sys", "abc")
        );
        assert!(!r.cluster);
    }

    #[test]
    fn create_levels_units_and_defaults() {
        let r = ok(&[
            "create",
            "--user",
            "acc1#admin",
            "--pname",
            "p",
            "--rangevalue",
            "1",
        ]);
        assert_eq!(
            r.level(),
            PitrLevel::Unspecified,
            "inferred by the coordinator"
        );
        assert_eq!(r.range_unit(), PitrUnit::Day, "d is the default unit");
        assert_eq!(r.login.unwrap().port, 6001);
        for (unit, want) in [
            ("h", PitrUnit::Hour),
            ("D", PitrUnit::Day),
            ("mo", PitrUnit::Month),
            ("y", PitrUnit::Year),
        ] {
            let r = ok(&[
                "create",
                "--user",
                "dump",
                "--pname",
                "p",
                "--rangevalue",
                "100",
                "--rangeunit",
                unit,
            ]);
            assert_eq!(r.range_unit(), want);
        }
        let r = ok(&[
            "create",
            "--user",
            "dump",
            "--pname",
            "p",
            "--rangevalue",
            "5",
            "--level",
            "table",
            "--database",
            "d",
            "--table",
            "t",
        ]);
        assert_eq!(
            (r.level(), r.database.as_str(), r.table.as_str()),
            (PitrLevel::Table, "d", "t")
        );
        let r = ok(&[
            "create",
            "--user",
            "dump",
            "--pname",
            "p",
            "--rangevalue",
            "5",
            "--level",
            "account",
            "--account",
            "acc1",
        ]);
        assert_eq!(
            (r.level(), r.account.as_str()),
            (PitrLevel::Account, "acc1")
        );
        // A database level PITR may name the account it lives in; whether
        // that is the user's own is the coordinator's to say.
        assert!(parse(
            &[
                "create",
                "--user",
                "dump",
                "--pname",
                "p",
                "--rangevalue",
                "5",
                "--level",
                "database",
                "--database",
                "d",
                "--account",
                "sys"
            ],
            None
        )
        .is_ok());
    }

    #[test]
    fn create_usage_errors() {
        let base = [
            "create",
            "--user",
            "dump",
            "--pname",
            "p",
            "--rangevalue",
            "5",
        ];
        let with = |extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            err(&v)
        };
        assert_eq!(
            with(&["--level", "cluster", "--account", "sys"]),
            "--account does not apply to a cluster level PITR"
        );
        assert_eq!(
            with(&["--level", "cluster", "--database", "d"]),
            "--database does not apply to a cluster level PITR"
        );
        assert_eq!(
            with(&["--level", "account", "--database", "d"]),
            "--database does not apply to an account level PITR"
        );
        assert_eq!(
            with(&["--level", "tenant", "--table", "t"]),
            "--table does not apply to an account level PITR"
        );
        assert_eq!(
            with(&["--level", "database", "--database", "d", "--table", "t"]),
            "--table does not apply to a database level PITR"
        );
        assert_eq!(
            with(&["--level", "database"]),
            "a database level PITR needs --database"
        );
        assert_eq!(
            with(&["--level", "table", "--table", "t"]),
            "a table level PITR needs --database and --table"
        );
        assert_eq!(
            with(&["--table", "t"]),
            "--table needs its database (--database)"
        );
        assert_eq!(
            with(&["--level", "galaxy"]),
            "unknown --level \"galaxy\": use cluster, account, database or table"
        );
        assert_eq!(
            with(&["--rangeunit", "day"]),
            "unknown --rangeunit \"day\": use h, d, mo or y"
        );
        for bad in ["0", "101", "-1", "ten", "1.5"] {
            assert_eq!(
                err(&[
                    "create",
                    "--user",
                    "dump",
                    "--pname",
                    "p",
                    "--rangevalue",
                    bad
                ]),
                format!("--rangevalue \"{bad}\": give a whole number from 1 to 100")
            );
        }
        assert_eq!(
            err(&["create", "--user", "dump", "--pname", "p"]),
            "--rangevalue is required"
        );
        assert_eq!(
            err(&["create", "--user", "dump", "--rangevalue", "1"]),
            "--pname is required"
        );
        assert_eq!(
            err(&["create", "--pname", "p", "--rangevalue", "1"]),
            "--user is required: the MatrixOne user, e.g. dump (sys) or acc1#admin"
        );
    }

    #[test]
    fn show_alter_drop() {
        let r = ok(&["show", "--user", "dump", "--cluster", "sys"]);
        assert!(r.cluster);
        // Only the value sys has an effect.
        let r = ok(&["show", "--user", "dump", "--cluster", "acc1"]);
        assert!(!r.cluster);
        let r = ok(&[
            "show",
            "--user",
            "dump",
            "--account",
            "acc1",
            "--database",
            "d",
            "--table",
            "t",
        ]);
        assert_eq!(
            (r.account.as_str(), r.database.as_str(), r.table.as_str()),
            ("acc1", "d", "t")
        );
        assert_eq!(
            err(&["show", "--user", "dump", "--cluster", "sys", "--account", "acc1"]),
            "--cluster sys shows cluster level PITRs, which name no account, database or table: drop --account"
        );

        let r = ok(&[
            "alter",
            "--user",
            "dump",
            "--pname",
            "p",
            "--rangevalue",
            "30",
            "--rangeunit",
            "mo",
        ]);
        assert_eq!(
            (r.op(), r.range_value, r.range_unit()),
            (PitrOp::Alter, 30, PitrUnit::Month)
        );
        assert_eq!(
            ok(&[
                "alter",
                "--user",
                "dump",
                "--pname",
                "p",
                "--rangevalue",
                "3"
            ])
            .range_unit(),
            PitrUnit::Day
        );
        assert_eq!(
            err(&["alter", "--user", "dump", "--pname", "p"]),
            "--rangevalue is required"
        );
        assert_eq!(
            err(&["alter", "--user", "dump", "--rangevalue", "3"]),
            "--pname is required"
        );

        let r = ok(&["drop", "--user", "dump", "--pname", "p"]);
        assert_eq!((r.op(), r.pname.as_str()), (PitrOp::Drop, "p"));
        assert_eq!(err(&["drop", "--user", "dump"]), "--pname is required");
    }

    #[test]
    fn restore_rules() {
        let base = [
            "restore",
            "--user",
            "dump",
            "--pname",
            "p",
            "--timestamp",
            "2024-08-08 15:47:15",
        ];
        let with = |extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            parse(&v, None)
        };
        let r = with(&["--cluster", "sys"]).unwrap();
        assert!(r.cluster);
        assert_eq!(
            with(&["--cluster", "acc1"]).unwrap_err(),
            "--cluster \"acc1\": the only value is sys (the whole cluster)"
        );
        assert_eq!(
            with(&["--cluster", "sys", "--database", "d"]).unwrap_err(),
            "--cluster sys restores the whole cluster: drop --database"
        );
        let r = with(&["--account", "acc1", "--database", "d", "--table", "t"]).unwrap();
        assert_eq!(
            (r.account.as_str(), r.database.as_str(), r.table.as_str()),
            ("acc1", "d", "t")
        );
        assert_eq!(
            with(&["--table", "t"]).unwrap_err(),
            "--table needs its database (--database)"
        );

        let r = with(&[
            "--account",
            "acc1",
            "--new_account",
            "acc2",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "p w",
        ])
        .unwrap();
        assert_eq!(
            (
                r.new_account.as_str(),
                r.new_admin_name.as_str(),
                r.new_admin_password.as_str()
            ),
            ("acc2", "admin", "p w")
        );
        assert!(
            !format!("{r:?}").contains("p w"),
            "Debug shows the new admin's password"
        );
        assert_eq!(
            with(&["--new_account", "acc2"]).unwrap_err(),
            "--new_account needs --new_admin_name and --new_admin_password for its admin"
        );
        assert_eq!(
            with(&["--new_admin_name", "admin"]).unwrap_err(),
            "--new_admin_name and --new_admin_password go with --new_account"
        );
        assert_eq!(
            with(&[
                "--database",
                "d",
                "--new_account",
                "a2",
                "--new_admin_name",
                "x",
                "--new_admin_password",
                "y"
            ])
            .unwrap_err(),
            "only an account level restore can go to a new account: drop --database and --table"
        );
        assert_eq!(
            with(&[
                "--cluster",
                "sys",
                "--new_account",
                "a2",
                "--new_admin_name",
                "x",
                "--new_admin_password",
                "y"
            ])
            .unwrap_err(),
            "--cluster sys restores the whole cluster: drop --new_account"
        );
        assert_eq!(
            err(&["restore", "--user", "dump", "--pname", "p"]),
            "--timestamp is required"
        );
        for bad in [
            "2024-8-8 15:47:15",
            "2024-08-08T15:47:15",
            "2024-02-30 00:00:00",
            "2024-08-08 15:47:15.",
            "2024-08-08 15:47:15.1234567890",
            "yesterday",
            "2024-08-08 15:47:15' or 1=1",
        ] {
            assert!(!valid_timestamp(bad), "{bad}");
            assert_eq!(
                err(&["restore", "--user", "dump", "--pname", "p", "--timestamp", bad]),
                format!("--timestamp \"{bad}\": give a time like \"2024-08-08 15:47:15.216472\" (YYYY-MM-DD HH:MM:SS[.ffffff])")
            );
        }
        for good in [
            "2024-08-08 15:47:15",
            "2024-08-08 15:47:15.2",
            "2024-08-08 15:47:15.216472",
            "2024-08-08 15:47:15.216472123",
        ] {
            assert!(valid_timestamp(good), "{good}");
        }
    }

    #[test]
    fn passwords_from_env_and_files() {
        let r = parse(&["drop", "--user", "dump", "--pname", "p"], Some("env-pw")).unwrap();
        assert_eq!(r.login.unwrap().password, "env-pw");
        let r = parse(
            &[
                "drop",
                "--user",
                "dump",
                "--password",
                "flag",
                "--pname",
                "p",
            ],
            Some("env-pw"),
        )
        .unwrap();
        assert_eq!(
            r.login.unwrap().password,
            "flag",
            "the flag wins over MO_BR_PASSWORD"
        );
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let admin = dir.path().join("admin");
        std::fs::write(&admin, "admin-pw\n").unwrap();
        let r = parse(
            &[
                "restore",
                "--user",
                "dump",
                "--password_file",
                pw.to_str().unwrap(),
                "--pname",
                "p",
                "--timestamp",
                "2024-08-08 15:47:15",
                "--account",
                "acc1",
                "--new_account",
                "acc2",
                "--new_admin_name",
                "admin",
                "--new_admin_password_file",
                admin.to_str().unwrap(),
            ],
            Some("env-pw"),
        )
        .unwrap();
        assert_eq!(r.login.unwrap().password, "from-file");
        assert_eq!(r.new_admin_password, "admin-pw");
    }
}
