//! `mo_br expire`: chain-aware retention. A backup kept by any --keep_*
//! rule is kept, and so is every base a kept incremental needs; the rest
//! are removed (incrementals first). --dry_run prints the same decisions
//! and changes nothing.

use anyhow::Result;
use mo_br_proto::coordinator::ExpireRequest;

use crate::args::ExpireArgs;
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::{connect, job};

/// A duration as `7d`, `36h`, `90m`, `1w2d`, `3600s`: whole numbers, each
/// with a unit (s, m, h, d, w); in seconds.
pub fn duration_secs(text: &str) -> Result<u64, UsageError> {
    let bad = || usage!("--keep_within {text:?}: give a duration like 7d, 36h or 1w2d");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit: u64 = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

pub fn request(a: &ExpireArgs, s: &Settings) -> Result<ExpireRequest, UsageError> {
    let keep_within_secs = a.keep_within.as_deref().map(duration_secs).transpose()?;
    let rules = [a.keep_last, a.keep_daily, a.keep_weekly, a.keep_monthly];
    if rules.iter().all(|r| r.unwrap_or(0) == 0) && keep_within_secs.is_none() {
        return Err(usage!(
            "expire needs at least one keep rule: --keep_last, --keep_within, --keep_daily, --keep_weekly or --keep_monthly"
        ));
    }
    let creds = s.creds(a.access_key_id.as_deref(), a.secret_access_key.as_deref());
    Ok(ExpireRequest {
        keep_last: a.keep_last.unwrap_or(0),
        keep_within_secs: keep_within_secs.unwrap_or(0),
        keep_daily: a.keep_daily.unwrap_or(0),
        keep_weekly: a.keep_weekly.unwrap_or(0),
        keep_monthly: a.keep_monthly.unwrap_or(0),
        dry_run: a.dry_run,
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
    })
}

pub async fn run(a: &ExpireArgs, s: &Settings) -> Result<u8> {
    let req = request(a, s)?;
    let meta_path = s.meta_path(a.meta_path.as_deref());
    let parallelism = s.parallelism(None);
    let mut client = connect::connect_unless_dry(s, &meta_path, parallelism, req.dry_run).await?;
    let stream = client.expire(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    job::conclude(&out, "expire")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;

    fn build(argv: &[&str]) -> Result<ExpireRequest, UsageError> {
        let mut full = vec!["mo_br", "expire"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, EnvCreds::default());
        let Some(Command::Expire(a)) = &cli.command else {
            unreachable!()
        };
        request(a, &s)
    }

    #[test]
    fn durations() {
        assert_eq!(duration_secs("7d").unwrap(), 7 * 86_400);
        assert_eq!(duration_secs("36h").unwrap(), 36 * 3600);
        assert_eq!(duration_secs("1w2d").unwrap(), 9 * 86_400);
        assert_eq!(duration_secs("90m").unwrap(), 5400);
        for bad in ["", "7", "d", "7x", "0d", "-1d", "99999999999999999999w"] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules() {
        let r = build(&["--keep_last", "3", "--keep_within", "36h", "--dry_run"]).unwrap();
        assert_eq!((r.keep_last, r.keep_within_secs), (3, 36 * 3600));
        assert!(r.dry_run);
        let r = build(&[
            "--keep_daily",
            "7",
            "--keep_weekly",
            "4",
            "--keep_monthly",
            "6",
        ])
        .unwrap();
        assert_eq!((r.keep_daily, r.keep_weekly, r.keep_monthly), (7, 4, 6));
        assert!(build(&[]).unwrap_err().0.contains("at least one keep rule"));
        assert!(build(&["--keep_last", "0"]).is_err());
        assert!(build(&["--keep_within", "soon"])
            .unwrap_err()
            .0
            .contains("--keep_within"));
    }
}
