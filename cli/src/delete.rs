//! `mo_br delete ID`: removes a backup from the catalog and its data (unless
//! --not_delete_data). With --force, also the incrementals that depend on it.

use anyhow::Result;
use mo_br_proto::coordinator::DeleteRequest;

use crate::args::DeleteArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::{connect, job};

pub fn request(a: &DeleteArgs, s: &Settings) -> Result<DeleteRequest, UsageError> {
    let id = a.id.trim();
    if id.is_empty() {
        return Err(usage!("delete needs the ID of a backup"));
    }
    let creds = s.creds(a.access_key_id.as_deref(), a.secret_access_key.as_deref());
    Ok(DeleteRequest {
        id: id.to_string(),
        not_delete_data: a.not_delete_data,
        force: a.force,
        dry_run: a.dry_run,
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
    })
}

pub async fn run(a: &DeleteArgs, s: &Settings) -> Result<u8> {
    let req = request(a, s)?;
    let mut client =
        connect::connect(s, &s.meta_path(a.meta_path.as_deref()), s.parallelism(None)).await?;
    let stream = client.delete(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    job::conclude(&out, "delete")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;

    #[test]
    fn delete_request() {
        let cli = Cli::try_parse_from([
            "mo_br",
            "delete",
            "e4cade26",
            "--access_key_id",
            "k",
            "--secret_access_key",
            "s",
            "--force",
            "--not_delete_data",
        ])
        .unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Delete(a)) = &cli.command else {
            unreachable!()
        };
        let r = request(a, &s).unwrap();
        assert_eq!(r.id, "e4cade26");
        assert!(r.force && r.not_delete_data);
        assert_eq!(
            (r.access_key_id.as_str(), r.secret_access_key.as_str()),
            ("k", "s")
        );
        assert!(Cli::try_parse_from(["mo_br", "delete"]).is_err());
    }
}
