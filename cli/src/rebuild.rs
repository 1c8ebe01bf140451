//! `mo_br catalog rebuild`: recovers the catalog from the backups
//! themselves, scanning a filesystem root or an S3 bucket/prefix given with
//! the location flags of `check`. Into the embedded catalog at --meta_path
//! (created if absent), or a cluster's with --coordinator. It merges:
//! backups already in the catalog stay as they are.

use std::path::Path;

use anyhow::Result;
use mo_br_proto::coordinator::RebuildRequest;

use crate::args::RebuildArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::location::{self, FlagNames, S3Parts};
use crate::{connect, job};

pub fn request(a: &RebuildArgs, s: &Settings, cwd: &Path) -> Result<RebuildRequest, UsageError> {
    let creds = s.creds(
        a.s3.backup_access_key_id.as_deref(),
        a.s3.backup_secret_access_key.as_deref(),
    );
    let Some(dir) = a.backup_dir.as_deref() else {
        return Err(usage!(
            "catalog rebuild needs --backup_dir s3|filesystem with the root to scan"
        ));
    };
    let names = FlagNames {
        dir: "--backup_dir",
        path: "--backup_path",
        s3_prefix: "backup_",
    };
    let storage = location::storage(
        &names,
        dir,
        a.backup_path.as_deref(),
        &S3Parts::from(&a.s3),
        &creds,
        cwd,
    )?;
    Ok(RebuildRequest {
        storage: Some(storage),
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        dry_run: a.dry_run,
    })
}

pub async fn run(a: &RebuildArgs, s: &Settings, cwd: &Path) -> Result<u8> {
    let req = request(a, s, cwd)?;
    let meta_path = s.meta_path(a.meta_path.as_deref());
    let parallelism = s.parallelism(None);
    let mut client = connect::connect_unless_dry(s, &meta_path, parallelism, req.dry_run).await?;
    let stream = client.rebuild(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    job::conclude(&out, "catalog rebuild")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{CatalogCommand, Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;
    use mo_br_proto::common::{storage, FsStorage};

    fn build(argv: &[&str]) -> Result<RebuildRequest, UsageError> {
        let mut full = vec!["mo_br", "catalog", "rebuild"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Catalog(CatalogCommand::Rebuild(a))) = &cli.command else {
            unreachable!()
        };
        request(a, &s, Path::new("/cwd"))
    }

    #[test]
    fn a_root_to_scan() {
        let r = build(&["--backup_dir", "filesystem", "--backup_path", "back"]).unwrap();
        assert_eq!(
            r.storage.unwrap().kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/cwd/back".into()
            }))
        );
        assert!(!r.dry_run);
        let r = build(&[
            "--backup_dir",
            "s3",
            "--backup_bucket",
            "b",
            "--backup_filepath",
            "x",
            "--dry_run",
        ])
        .unwrap();
        assert!(r.dry_run);
        let Some(storage::Kind::S3(s3)) = r.storage.unwrap().kind else {
            panic!("not s3")
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "x"));
        assert!(build(&[]).unwrap_err().0.contains("needs --backup_dir"));
    }
}
