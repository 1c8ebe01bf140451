//! `mo_br backup`: a full or incremental backup of a node's files into a
//! filesystem or S3 location.

use std::path::Path;

use anyhow::Result;
use mo_br_proto::common::Source;
use mo_br_proto::coordinator::{AttachRequest, BackupRequest, BackupType, MoLogin};
use mo_br_proto::names::Named;

use crate::args::{BackupArgs, ConnFlags};
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::location::{self, FlagNames, S3Parts};
use crate::{compression, connect, job, render, snapshot};

/// The MatrixOne login of an online backup (`--host ...`); none for a cold
/// backup. The password may come from MO_BR_PASSWORD instead of the command line.
pub fn mo_login(c: &ConnFlags) -> Result<Option<MoLogin>, UsageError> {
    if snapshot::given(&c.host).is_none() {
        if c.user.is_some() || c.port.is_some() {
            return Err(usage!(
                "--user/--port go with --host (an online backup of a running cluster)"
            ));
        }
        return Ok(None);
    }
    snapshot::login(c, std::env::var(snapshot::PASSWORD_ENV).ok()).map(Some)
}

pub fn request(a: &BackupArgs, s: &Settings, cwd: &Path) -> Result<BackupRequest, UsageError> {
    request_for(a, s, cwd, false)
}

/// A backup request, or with `scheduled` a schedule's spec: an incremental
/// then builds on the schedule's own last backup (no `--base_id`).
pub fn request_for(
    a: &BackupArgs,
    s: &Settings,
    cwd: &Path,
    scheduled: bool,
) -> Result<BackupRequest, UsageError> {
    let Some(dir) = a.backup_dir.as_deref() else {
        return Err(usage!("backup needs --backup_dir s3|filesystem"));
    };
    let creds = s.creds(
        a.s3.access_key_id.as_deref(),
        a.s3.secret_access_key.as_deref(),
    );
    let names = FlagNames {
        dir: "--backup_dir",
        path: "--path",
        s3_prefix: "",
    };
    let target = location::storage(
        &names,
        dir,
        a.path.as_deref(),
        &S3Parts::from(&a.s3),
        &creds,
        cwd,
    )?;

    let base_id = a.base_id.as_deref().map(str::trim).unwrap_or("");
    let backup_type =
        snapshot::choice("--backup_type", &a.backup_type)?.unwrap_or(BackupType::Full);
    match backup_type {
        BackupType::Full | BackupType::Unspecified => {
            if !base_id.is_empty() {
                return Err(usage!("--base_id is for --backup_type incremental"));
            }
        }
        BackupType::Incremental if scheduled => {
            if !base_id.is_empty() {
                return Err(usage!(
                    "--base_id: an incremental schedule builds on its own last backup"
                ));
            }
        }
        BackupType::Incremental => {
            if base_id.is_empty() {
                return Err(usage!(
                    "--backup_type incremental needs --base_id (the ID of the backup it follows)"
                ));
            }
        }
    }

    let data_dir = a.data_dir.as_deref().filter(|d| !d.as_os_str().is_empty());
    let login = mo_login(&a.conn)?;
    // With --host alone the coordinator finds the node through agents
    // registered for that MatrixOne, or has MatrixOne back itself up.
    if data_dir.is_none() && a.launch_config.is_none() && login.is_none() {
        return Err(usage!(
            "backup needs --data_dir (the node's mo-data directory), or --launch_config when the TN config puts SHARED on S3, or --host to back up a running MatrixOne"
        ));
    }
    let source = Source {
        data_dir: data_dir
            .map(|d| location::absolute(d, cwd).to_string_lossy().into_owned())
            .unwrap_or_default(),
        launch_config: a
            .launch_config
            .as_deref()
            .map(|p| location::absolute(p, cwd).to_string_lossy().into_owned())
            .unwrap_or_default(),
        node: a.node.clone().unwrap_or_default(),
    };

    let source_creds = s.source_creds(
        a.source_access_key_id.as_deref(),
        a.source_secret_access_key.as_deref(),
    );
    Ok(BackupRequest {
        login,
        target: Some(target),
        source: Some(source),
        backup_type: backup_type.into(),
        base_id: base_id.to_string(),
        parallelism: s.parallelism(a.parallelism),
        base_access_key_id: a.base_access_key_id.clone().unwrap_or_default(),
        base_secret_access_key: a.base_secret_access_key.clone().unwrap_or_default(),
        source_access_key_id: source_creds.access_key_id,
        source_secret_access_key: source_creds.secret_access_key,
        compression: compression::backup(a.s3.compression.as_deref())?,
        retry_window_ms: a.limits.retry_window_ms(),
        max_requests_per_sec: a.limits.max_requests_per_sec.unwrap_or(0),
        dry_run: a.dry_run,
    })
}

pub async fn run(a: &BackupArgs, s: &Settings, cwd: &Path) -> Result<u8> {
    let req = request(a, s, cwd)?;
    tracing::info!(
        "backup ({}) of {} to {}",
        BackupType::word(req.backup_type),
        req.source
            .as_ref()
            .map(|s| s.data_dir.as_str())
            .unwrap_or(""),
        req.target
            .as_ref()
            .map(location::describe)
            .unwrap_or_default()
    );
    let meta_path = s.meta_path(a.meta_path.as_deref());
    let mut client =
        connect::connect_unless_dry(s, &meta_path, req.parallelism, req.dry_run).await?;
    let mo_password = req
        .login
        .as_ref()
        .map(|l| l.password.clone())
        .unwrap_or_default();
    let (access_key_id, secret_access_key) = match req.target.as_ref().and_then(|t| t.kind.as_ref())
    {
        Some(mo_br_proto::common::storage::Kind::S3(s3)) => {
            (s3.access_key_id.clone(), s3.secret_access_key.clone())
        }
        _ => Default::default(),
    };
    let attach = AttachRequest {
        access_key_id,
        secret_access_key,
        mo_password,
        source_access_key_id: req.source_access_key_id.clone(),
        source_secret_access_key: req.source_secret_access_key.clone(),
        ..Default::default()
    };
    let stream = client.backup(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    // The replica driving the backup went away: the backup goes on under
    // the new leader (its state is replicated); follow it there.
    let out = job::follow_elsewhere(s, out, "backup", attach).await?;
    let Some(finished) = out.finished else {
        anyhow::bail!("the coordinator ended the backup without a result");
    };
    if !finished.summary.is_empty() {
        job::print(&finished.summary)?;
    }
    if let Some(b) = &finished.backup {
        job::print(&render::table(std::slice::from_ref(b), false))?;
    }
    Ok(if finished.problems > 0 || out.problems > 0 {
        1
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;
    use mo_br_proto::common::{storage, FsStorage};

    fn build(argv: &[&str], file: &str, env: EnvCreds) -> Result<BackupRequest, UsageError> {
        let mut full = vec!["mo_br", "backup"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::parse(file).unwrap(), None, env);
        let Some(Command::Backup(a)) = &cli.command else {
            unreachable!()
        };
        request(a, &s, Path::new("/work/here"))
    }

    #[test]
    fn filesystem_backup() {
        let r = build(
            &[
                "--backup_dir",
                "filesystem",
                "--path",
                "yourpath",
                "--data_dir",
                "mo-data",
                "--launch_config",
                "/mo/etc/launch/launch.toml",
                "--parallelism",
                "3",
                "--host",
                "127.0.0.1",
                "--port",
                "6001",
                "--user",
                "dump",
                "--password",
                "111",
            ],
            "",
            EnvCreds::default(),
        )
        .unwrap();
        assert_eq!(
            r.target.unwrap().kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/work/here/yourpath".into()
            }))
        );
        let src = r.source.unwrap();
        assert_eq!(src.data_dir, "/work/here/mo-data");
        assert_eq!(src.launch_config, "/mo/etc/launch/launch.toml");
        assert_eq!(r.backup_type, i32::from(BackupType::Full));
        assert_eq!(r.parallelism, 3);
    }

    #[test]
    fn s3_backup_takes_keys_from_flags_then_file_then_env() {
        let argv = [
            "--backup_dir",
            "s3",
            "--endpoint",
            "http://127.0.0.1:9000",
            "--bucket",
            "bucket1",
            "--filepath",
            "/backup1",
            "--is_minio",
            "--data_dir",
            "/mo/mo-data",
        ];
        let env = EnvCreds {
            access_key_id: Some("env-id".into()),
            secret_access_key: Some("env-secret".into()),
        };
        let r = build(&argv, "", env.clone()).unwrap();
        let Some(storage::Kind::S3(s3)) = r.target.unwrap().kind else {
            panic!("not s3")
        };
        assert_eq!(s3.prefix, "backup1");
        assert_eq!(s3.bucket, "bucket1");
        assert!(s3.is_minio);
        assert_eq!(s3.access_key_id, "env-id");
        assert_eq!(s3.secret_access_key, "env-secret");

        let mut with_flags = argv.to_vec();
        with_flags.extend(["--access_key_id", "flag-id"]);
        let r = build(
            &with_flags,
            "[s3]\naccess_key_id = \"file-id\"\nsecret_access_key = \"file-secret\"",
            env,
        )
        .unwrap();
        let Some(storage::Kind::S3(s3)) = r.target.unwrap().kind else {
            panic!("not s3")
        };
        assert_eq!(s3.access_key_id, "flag-id");
        assert_eq!(s3.secret_access_key, "file-secret");
    }

    #[test]
    fn incremental() {
        let base = [
            "--backup_dir",
            "filesystem",
            "--path",
            "/b",
            "--data_dir",
            "/d",
        ];
        let mut argv = base.to_vec();
        argv.extend(["--backup_type", "incremental", "--base_id", "xxx"]);
        let r = build(&argv, "", EnvCreds::default()).unwrap();
        assert_eq!(r.backup_type(), BackupType::Incremental);
        let mut argv = base.to_vec();
        argv.extend(["--backup_type", " Incremental ", "--base_id", "xxx"]);
        let r = build(&argv, "", EnvCreds::default()).unwrap();
        assert_eq!(
            r.backup_type(),
            BackupType::Incremental,
            "any case, blanks ignored"
        );
        assert_eq!(r.base_id, "xxx");

        let mut argv = base.to_vec();
        argv.extend(["--backup_type", "incremental"]);
        let e = build(&argv, "", EnvCreds::default()).unwrap_err();
        assert!(e.0.contains("--base_id"), "{e}");

        let mut argv = base.to_vec();
        argv.extend(["--backup_type", "differential"]);
        let e = build(&argv, "", EnvCreds::default()).unwrap_err();
        assert_eq!(
            e.0,
            "unknown --backup_type \"differential\": use full or incremental"
        );
    }

    #[test]
    fn host_alone_needs_no_data_dir() {
        let r = build(
            &[
                "--backup_dir",
                "filesystem",
                "--path",
                "/b",
                "--host",
                "127.0.0.1",
                "--port",
                "6001",
                "--user",
                "dump",
                "--password",
                "111",
            ],
            "",
            EnvCreds::default(),
        )
        .unwrap();
        let login = r.login.unwrap();
        assert_eq!((login.host.as_str(), login.port), ("127.0.0.1", 6001));
        let src = r.source.unwrap();
        assert!(src.data_dir.is_empty() && src.launch_config.is_empty());
    }

    #[test]
    fn usage_errors() {
        let e = build(&["--path", "/b"], "", EnvCreds::default()).unwrap_err();
        assert_eq!(e.0, "backup needs --backup_dir s3|filesystem");
        let e = build(
            &["--backup_dir", "s3", "--data_dir", "/d"],
            "",
            EnvCreds::default(),
        )
        .unwrap_err();
        assert_eq!(e.0, "--backup_dir s3 needs --bucket");
        let e = build(
            &["--backup_dir", "filesystem", "--path", "/b"],
            "",
            EnvCreds::default(),
        )
        .unwrap_err();
        assert!(e.0.contains("--data_dir"), "{e}");
        let e = build(
            &["--backup_dir", "tape", "--path", "/b"],
            "",
            EnvCreds::default(),
        )
        .unwrap_err();
        assert_eq!(e.0, "unknown --backup_dir \"tape\": use s3 or filesystem");
    }
}
