//! `mo_br copy ID --to_dir filesystem --to_path DIR` (or `--to_dir s3
//! --to_bucket ...`): copies a backup, with what its chain holds, to another
//! place as a self-contained replica recorded with `replica_of`. Run again
//! after an interruption, it resumes.

use std::path::Path;

use anyhow::Result;
use mo_br_proto::coordinator::CopyRequest;

use crate::args::CopyArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::location::{self, FlagNames, S3Parts};
use crate::{connect, job};

pub fn request(a: &CopyArgs, s: &Settings, cwd: &Path) -> Result<CopyRequest, UsageError> {
    let id = a.id.trim();
    if id.is_empty() {
        return Err(usage!("copy needs the ID of the backup to copy"));
    }
    let Some(to_dir) = a.to_dir.as_deref() else {
        return Err(usage!(
            "copy needs --to_dir s3|filesystem (and --to_path for filesystem)"
        ));
    };
    let to_creds = s.creds(
        a.to_s3.to_access_key_id.as_deref(),
        a.to_s3.to_secret_access_key.as_deref(),
    );
    let target = location::storage(
        &FlagNames {
            dir: "--to_dir",
            path: "--to_path",
            s3_prefix: "to_",
        },
        to_dir,
        a.to_path.as_deref(),
        &S3Parts::from(&a.to_s3),
        &to_creds,
        cwd,
    )?;
    let creds = s.creds(
        a.backup_access_key_id.as_deref(),
        a.backup_secret_access_key.as_deref(),
    );
    Ok(CopyRequest {
        id: id.to_string(),
        target: Some(target),
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        parallelism: s.parallelism(a.parallelism),
        dry_run: a.dry_run,
    })
}

pub async fn run(a: &CopyArgs, s: &Settings, cwd: &Path) -> Result<u8> {
    let req = request(a, s, cwd)?;
    tracing::info!(
        "copy of {} to {}",
        req.id,
        req.target
            .as_ref()
            .map(location::describe)
            .unwrap_or_default()
    );
    let meta_path = s.meta_path(a.meta_path.as_deref());
    let mut client =
        connect::connect_unless_dry(s, &meta_path, req.parallelism, req.dry_run).await?;
    let stream = client.copy(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    job::conclude(&out, "copy")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;
    use mo_br_proto::common::{storage, FsStorage};

    fn build(argv: &[&str]) -> Result<CopyRequest, UsageError> {
        let mut full = vec!["mo_br", "copy"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Copy(a)) = &cli.command else {
            unreachable!()
        };
        request(a, &s, Path::new("/cwd"))
    }

    #[test]
    fn to_a_filesystem_or_a_bucket() {
        let r = build(&["b1", "--to_dir", "filesystem", "--to_path", "dr/b1"]).unwrap();
        assert_eq!(r.id, "b1");
        assert_eq!(
            r.target.unwrap().kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/cwd/dr/b1".into()
            }))
        );

        let r = build(&[
            "b1",
            "--to_dir",
            "s3",
            "--to_endpoint",
            "http://127.0.0.1:9000",
            "--to_bucket",
            "dr",
            "--to_filepath",
            "/x/b1",
            "--to_access_key_id",
            "ak2",
            "--to_secret_access_key",
            "sk2",
            "--to_is_minio",
            "--backup_access_key_id",
            "ak1",
            "--backup_secret_access_key",
            "sk1",
            "--dry_run",
        ])
        .unwrap();
        let Some(storage::Kind::S3(s3)) = r.target.unwrap().kind else {
            panic!("not s3")
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("dr", "x/b1"));
        assert_eq!(
            (s3.access_key_id.as_str(), s3.secret_access_key.as_str()),
            ("ak2", "sk2")
        );
        assert!(s3.is_minio);
        assert_eq!(
            (r.access_key_id.as_str(), r.secret_access_key.as_str()),
            ("ak1", "sk1")
        );
        assert!(r.dry_run);
    }

    #[test]
    fn usage_errors() {
        assert!(build(&["b1"]).unwrap_err().0.contains("--to_dir"));
        assert_eq!(
            build(&["b1", "--to_dir", "s3"]).unwrap_err().0,
            "--to_dir s3 needs --to_bucket"
        );
        assert_eq!(
            build(&["b1", "--to_dir", "filesystem"]).unwrap_err().0,
            "--to_dir filesystem needs --to_path (the directory to use)"
        );
        assert_eq!(
            build(&[
                "b1",
                "--to_dir",
                "filesystem",
                "--to_path",
                "/p",
                "--to_bucket",
                "b"
            ])
            .unwrap_err()
            .0,
            "--to_bucket is for --to_dir s3"
        );
        assert_eq!(
            build(&["b1", "--to_dir", "nfs"]).unwrap_err().0,
            "unknown --to_dir \"nfs\": use s3 or filesystem"
        );
        assert!(build(&[" ", "--to_dir", "s3"])
            .unwrap_err()
            .0
            .contains("ID"));
    }
}
