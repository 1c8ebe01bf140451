//! `mo_br check [ID]`: re-reads every file of a backup and compares its
//! sha256 with the recorded one. Either a catalog ID or `--backup_dir` with
//! the location of a backup.

use std::path::Path;

use anyhow::Result;
use mo_br_proto::coordinator::{CheckRequest, ListRequest};

use crate::args::CheckArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::location::{self, FlagNames, S3Parts};
use crate::{compression, connect, job};

pub const CHECKING: &str = "Checking the backup data...";

pub fn request(a: &CheckArgs, s: &Settings, cwd: &Path) -> Result<CheckRequest, UsageError> {
    let creds = s.creds(
        a.s3.backup_access_key_id.as_deref(),
        a.s3.backup_secret_access_key.as_deref(),
    );
    let id = a.id.as_deref().map(str::trim).unwrap_or("");
    let parts = S3Parts::from(&a.s3);
    let storage = match (id.is_empty(), a.backup_dir.as_deref()) {
        (true, None) => {
            return Err(usage!(
                "check needs a backup ID or --backup_dir s3|filesystem with its location"
            ))
        }
        (false, Some(_)) => {
            return Err(usage!("check takes a backup ID or --backup_dir, not both"))
        }
        (false, None) => {
            if let Some(flag) = parts.given("backup_").first() {
                return Err(usage!("{flag} is for check without an ID"));
            }
            if a.backup_path.is_some() {
                return Err(usage!("--backup_path is for check without an ID"));
            }
            None
        }
        (true, Some(dir)) => {
            let names = FlagNames {
                dir: "--backup_dir",
                path: "--backup_path",
                s3_prefix: "backup_",
            };
            Some(location::storage(
                &names,
                dir,
                a.backup_path.as_deref(),
                &parts,
                &creds,
                cwd,
            )?)
        }
    };
    compression::of_backup(a.s3.backup_compression.as_deref())?;
    Ok(CheckRequest {
        id: id.to_string(),
        storage,
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        parallelism: s.read_parallelism(a.parallelism),
    })
}

pub async fn run(a: &CheckArgs, s: &Settings, cwd: &Path) -> Result<u8> {
    let req = request(a, s, cwd)?;
    let mut client =
        connect::connect_reader(s, &s.meta_path(a.meta_path.as_deref()), req.parallelism).await?;
    // With an ID the reference shows the backup's row first; the check
    // stream itself carries no table, so take it from the catalog.
    let by_id = !req.id.is_empty();
    if by_id {
        let list = ListRequest {
            id: req.id.clone(),
            not_check_data: true,
            access_key_id: req.access_key_id.clone(),
            secret_access_key: req.secret_access_key.clone(),
        };
        let stream = client.list(list).await?.into_inner();
        let opts = job::Options {
            after_table: Some(CHECKING),
            all: true,
            ..Default::default()
        };
        job::drive(stream, &opts).await?;
    }
    let stream = client.check(req).await?.into_inner();
    let opts = job::Options {
        skip_backups: by_id,
        ..Default::default()
    };
    let out = job::drive(stream, &opts).await?;
    job::conclude(&out, "check")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;
    use mo_br_proto::common::{storage, FsStorage};

    fn build(argv: &[&str]) -> Result<CheckRequest, UsageError> {
        let mut full = vec!["mo_br", "check"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Check(a)) = &cli.command else {
            unreachable!()
        };
        request(a, &s, Path::new("/cwd"))
    }

    #[test]
    fn by_id_or_by_location() {
        let r = build(&["1614f462", "--backup_access_key_id", "k"]).unwrap();
        assert_eq!(r.id, "1614f462");
        assert!(r.storage.is_none());
        assert_eq!(r.access_key_id, "k");

        let r = build(&["--backup_dir", "filesystem", "--backup_path", "back2"]).unwrap();
        assert_eq!(
            r.storage.unwrap().kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/cwd/back2".into()
            }))
        );

        let r = build(&[
            "--backup_dir",
            "s3",
            "--backup_bucket",
            "b",
            "--backup_filepath",
            "/x/y",
            "--backup_secret_access_key",
            "sk",
            "--backup_is_minio",
        ])
        .unwrap();
        let Some(storage::Kind::S3(s3)) = r.storage.unwrap().kind else {
            panic!("not s3")
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "x/y"));
        assert_eq!(s3.secret_access_key, "sk");
        assert!(s3.is_minio);
    }

    #[test]
    fn usage_errors() {
        assert!(build(&[])
            .unwrap_err()
            .0
            .contains("backup ID or --backup_dir"));
        assert!(build(&["id", "--backup_dir", "filesystem"])
            .unwrap_err()
            .0
            .contains("not both"));
        assert_eq!(
            build(&["--backup_dir", "s3"]).unwrap_err().0,
            "--backup_dir s3 needs --backup_bucket"
        );
        assert_eq!(
            build(&["id", "--backup_bucket", "b"]).unwrap_err().0,
            "--backup_bucket is for check without an ID"
        );
    }
}
