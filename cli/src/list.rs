//! `mo_br list [ID]`: the backups of the catalog; with an ID, that backup and
//! (unless --not_check_data) a check that its files exist.

use anyhow::Result;
use mo_br_proto::coordinator::ListRequest;

use crate::args::ListArgs;
use crate::config::Settings;
use crate::{connect, job};

pub const CHECKING: &str = "Checking the backup data(currently,no checksum)...";

pub fn request(a: &ListArgs, s: &Settings) -> ListRequest {
    let creds = s.creds(a.access_key_id.as_deref(), a.secret_access_key.as_deref());
    ListRequest {
        id: a.id.clone().unwrap_or_default().trim().to_string(),
        not_check_data: a.not_check_data,
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
    }
}

pub async fn run(a: &ListArgs, s: &Settings) -> Result<u8> {
    let req = request(a, s);
    let id_given = !req.id.is_empty();
    let checks = !req.id.is_empty() && !req.not_check_data;
    let mut client =
        connect::connect_reader(s, &s.meta_path(a.meta_path.as_deref()), s.parallelism(None))
            .await?;
    let stream = client.list(req).await?.into_inner();
    let opts = job::Options {
        after_table: (checks && !a.json).then_some(CHECKING),
        json: a.json,
        // A backup asked for by its ID is shown whatever its state.
        all: a.all || id_given,
        verbose: a.verbose,
        ..Default::default()
    };
    let out = job::drive(stream, &opts).await?;
    let problems = out
        .problems
        .max(out.finished.as_ref().map_or(0, |f| f.problems));
    if problems > 0 {
        if let Some(f) = out.finished.as_ref().filter(|f| !f.summary.is_empty()) {
            job::print(&f.summary)?;
        }
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;

    #[test]
    fn list_request() {
        let cli = Cli::try_parse_from([
            "mo_br",
            "list",
            "4d21b228",
            "--access_key_id",
            "k",
            "--secret_access_key",
            "s",
            "--not_check_data",
        ])
        .unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::List(a)) = &cli.command else {
            unreachable!()
        };
        let r = request(a, &s);
        assert_eq!(r.id, "4d21b228");
        assert!(r.not_check_data);
        assert_eq!(r.access_key_id, "k");
        assert_eq!(r.secret_access_key, "s");
    }
}
