//! `mo_br restore [ID]`: writes a backup (a catalog ID, or `--backup_dir`
//! with its location) into `--restore_dir filesystem --restore_path DIR` or
//! an S3 location.

use std::path::Path;

use anyhow::Result;
use mo_br_proto::coordinator::{AttachRequest, RestoreRequest};

use crate::args::RestoreArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::location::{self, FlagNames, S3Parts};
use crate::{compression, connect, job};

pub fn request(a: &RestoreArgs, s: &Settings, cwd: &Path) -> Result<RestoreRequest, UsageError> {
    let backup_creds = s.creds(
        a.backup_s3.backup_access_key_id.as_deref(),
        a.backup_s3.backup_secret_access_key.as_deref(),
    );
    let id = a.id.as_deref().map(str::trim).unwrap_or("");
    let backup_parts = S3Parts::from(&a.backup_s3);
    let backup = match (id.is_empty(), a.backup_dir.as_deref()) {
        (true, None) => {
            return Err(usage!(
                "restore needs a backup ID or --backup_dir s3|filesystem with its location"
            ))
        }
        (false, Some(_)) => {
            return Err(usage!(
                "restore takes a backup ID or --backup_dir, not both"
            ))
        }
        (false, None) => {
            if let Some(flag) = backup_parts.given("backup_").first() {
                return Err(usage!("{flag} is for restore without an ID"));
            }
            if a.backup_path.is_some() {
                return Err(usage!("--backup_path is for restore without an ID"));
            }
            None
        }
        (true, Some(dir)) => Some(location::storage(
            &FlagNames {
                dir: "--backup_dir",
                path: "--backup_path",
                s3_prefix: "backup_",
            },
            dir,
            a.backup_path.as_deref(),
            &backup_parts,
            &backup_creds,
            cwd,
        )?),
    };

    compression::of_backup(a.backup_s3.backup_compression.as_deref())?;
    compression::of_restore(a.restore_s3.restore_compression.as_deref())?;

    let Some(restore_dir) = a.restore_dir.as_deref() else {
        return Err(usage!(
            "restore needs --restore_dir s3|filesystem (and --restore_path for filesystem)"
        ));
    };
    let restore_creds = s.creds(
        a.restore_s3.restore_access_key_id.as_deref(),
        a.restore_s3.restore_secret_access_key.as_deref(),
    );
    let target = location::storage(
        &FlagNames {
            dir: "--restore_dir",
            path: "--restore_path",
            s3_prefix: "restore_",
        },
        restore_dir,
        a.restore_path.as_deref(),
        &S3Parts::from(&a.restore_s3),
        &restore_creds,
        cwd,
    )?;

    Ok(RestoreRequest {
        id: id.to_string(),
        backup,
        backup_access_key_id: backup_creds.access_key_id,
        backup_secret_access_key: backup_creds.secret_access_key,
        target: Some(target),
        dn_config_path: a
            .dn_config_path
            .as_deref()
            .map(|p| location::absolute(p, cwd).to_string_lossy().into_owned())
            .unwrap_or_default(),
        checksum: a.checksum,
        parallelism: s.read_parallelism(a.parallelism),
        retry_window_ms: a.limits.retry_window_ms(),
        max_requests_per_sec: a.limits.max_requests_per_sec.unwrap_or(0),
        dry_run: a.dry_run,
    })
}

pub async fn run(a: &RestoreArgs, s: &Settings, cwd: &Path) -> Result<u8> {
    let req = request(a, s, cwd)?;
    tracing::info!(
        "restore of {} to {}",
        if req.id.is_empty() {
            req.backup
                .as_ref()
                .map(location::describe)
                .unwrap_or_default()
        } else {
            req.id.clone()
        },
        req.target
            .as_ref()
            .map(location::describe)
            .unwrap_or_default()
    );
    let meta_path = s.meta_path(a.meta_path.as_deref());
    let mut client =
        connect::connect_unless_dry(s, &meta_path, req.parallelism, req.dry_run).await?;
    let attach = AttachRequest {
        restore: Some(req.clone()),
        ..Default::default()
    };
    let stream = client.restore(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    // The replica driving the restore went away: a new leader carries it on
    // from the files already written and verified; follow it there.
    let out = job::follow_elsewhere(s, out, "restore", attach).await?;
    job::conclude(&out, "restore")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;
    use mo_br_proto::common::{storage, FsStorage};

    fn build(argv: &[&str]) -> Result<RestoreRequest, UsageError> {
        let mut full = vec!["mo_br", "restore"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Restore(a)) = &cli.command else {
            unreachable!()
        };
        request(a, &s, Path::new("/cwd"))
    }

    #[test]
    fn restore_by_id_to_filesystem() {
        let r = build(&[
            "fb26fd88",
            "--restore_dir",
            "filesystem",
            "--restore_path",
            "your_mopath",
            "--checksum",
            "--parallelism",
            "2",
            "--backup_access_key_id",
            "bk",
            "--dn_config_path",
            "etc/tn.toml",
        ])
        .unwrap();
        assert_eq!(r.id, "fb26fd88");
        assert!(r.backup.is_none());
        assert_eq!(r.backup_access_key_id, "bk");
        assert_eq!(
            r.target.unwrap().kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/cwd/your_mopath".into()
            }))
        );
        assert!(r.checksum);
        assert_eq!(r.parallelism, 2);
        assert_eq!(r.dn_config_path, "/cwd/etc/tn.toml");
    }

    #[test]
    fn restore_from_s3_location_to_s3() {
        let r = build(&[
            "--backup_dir",
            "s3",
            "--backup_bucket",
            "src",
            "--backup_filepath",
            "/b1",
            "--backup_access_key_id",
            "bk",
            "--backup_secret_access_key",
            "bs",
            "--restore_dir",
            "s3",
            "--restore_bucket",
            "dst",
            "--restore_filepath",
            "r1/",
            "--restore_endpoint",
            "http://m:9000",
            "--restore_region",
            "r",
            "--restore_role_arn",
            "arn",
            "--restore_compression",
            "none",
            "--restore_is_minio=true",
            "--restore_access_key_id",
            "rk",
            "--restore_secret_access_key",
            "rs",
        ])
        .unwrap();
        let Some(storage::Kind::S3(b)) = r.backup.unwrap().kind else {
            panic!("backup not s3")
        };
        assert_eq!((b.bucket.as_str(), b.prefix.as_str()), ("src", "b1"));
        assert_eq!(
            (b.access_key_id.as_str(), b.secret_access_key.as_str()),
            ("bk", "bs")
        );
        let Some(storage::Kind::S3(t)) = r.target.unwrap().kind else {
            panic!("target not s3")
        };
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("dst", "r1"));
        assert_eq!(t.endpoint, "http://m:9000");
        assert_eq!((t.region.as_str(), t.role_arn.as_str()), ("r", "arn"));
        assert!(t.is_minio);
        assert_eq!(
            (t.access_key_id.as_str(), t.secret_access_key.as_str()),
            ("rk", "rs")
        );
    }

    #[test]
    fn usage_errors() {
        assert!(
            build(&["--restore_dir", "filesystem", "--restore_path", "/p"])
                .unwrap_err()
                .0
                .contains("backup ID or --backup_dir")
        );
        assert!(build(&["id"]).unwrap_err().0.contains("--restore_dir"));
        assert_eq!(
            build(&["id", "--restore_dir", "filesystem"]).unwrap_err().0,
            "--restore_dir filesystem needs --restore_path (the directory to use)"
        );
        assert_eq!(
            build(&["id", "--restore_dir", "s3"]).unwrap_err().0,
            "--restore_dir s3 needs --restore_bucket"
        );
        assert_eq!(
            build(&["id", "--restore_dir", "ftp"]).unwrap_err().0,
            "unknown --restore_dir \"ftp\": use s3 or filesystem"
        );
        assert!(build(&[
            "--backup_dir",
            "filesystem",
            "--restore_dir",
            "filesystem",
            "--restore_path",
            "/p"
        ])
        .unwrap_err()
        .0
        .contains("--backup_path"));
    }
}
