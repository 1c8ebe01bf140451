//! `mo_br schedule create|list|drop|pause|resume`: backup schedules kept in
//! the coordinators' replicated catalog and run by the leader. A schedule
//! holds no keys and no password: its runs use the coordinator's own (its
//! `--credentials_file`, its environment).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use mo_br_proto::common::storage;
use mo_br_proto::coordinator::{
    job_event, Retention, ScheduleInfo, ScheduleListRequest, ScheduleOp, ScheduleRequest,
};

use crate::args::{ScheduleCommand, ScheduleCreateArgs};
use crate::config::Settings;
use crate::error::{usage, UsageError};
use crate::{backup, connect, job, render};

pub fn create_request(
    a: &ScheduleCreateArgs,
    s: &Settings,
    cwd: &Path,
) -> Result<ScheduleRequest, UsageError> {
    if a.backup.conn.password.is_some() || a.backup.conn.password_file.is_some() {
        return Err(usage!(
            "a schedule stores no password: each run looks it up in the coordinator's --credentials_file (a [[matrixone]] entry for --host/--port/--user)"
        ));
    }
    let keys_given = [
        &a.backup.s3.access_key_id,
        &a.backup.s3.secret_access_key,
        &a.backup.base_access_key_id,
        &a.backup.source_access_key_id,
    ]
    .iter()
    .any(|k| k.is_some())
        || a.backup.s3.secret_access_key_file.is_some();
    if keys_given {
        return Err(usage!(
            "a schedule stores no keys: its runs use the coordinator's own (an [[s3]] entry of its --credentials_file, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its environment)"
        ));
    }
    let mut spec = backup::request_for(&a.backup, s, cwd, true)?;
    // Keys the environment or config file gave this CLI stay here.
    if let Some(storage::Kind::S3(s3)) = spec.target.as_mut().and_then(|t| t.kind.as_mut()) {
        s3.access_key_id.clear();
        s3.secret_access_key.clear();
        s3.session_token.clear();
    }
    spec.source_access_key_id.clear();
    spec.source_secret_access_key.clear();
    // MO_BR_PASSWORD of this CLI stays here too.
    if let Some(login) = spec.login.as_mut() {
        login.password.clear();
    }
    Ok(ScheduleRequest {
        op: ScheduleOp::Create.into(),
        name: a.name.trim().to_string(),
        cron: a.cron.clone(),
        spec: Some(spec),
        retention: Some(Retention {
            keep_last: a.keep_last.unwrap_or(0),
            keep_within: a.keep_within.clone().unwrap_or_default(),
            keep_daily: a.keep_daily.unwrap_or(0),
            keep_weekly: a.keep_weekly.unwrap_or(0),
            keep_monthly: a.keep_monthly.unwrap_or(0),
        }),
    })
}

pub async fn run(cmd: &ScheduleCommand, s: &Settings, cwd: &Path) -> Result<u8> {
    if s.coordinator.is_none() && !matches!(cmd, ScheduleCommand::List(_)) {
        return Err(usage!(
            "schedules run in a coordinator daemon: give --coordinator (or MO_BR_COORDINATOR, or `coordinator` in the config file)"
        )
        .into());
    }
    let (op, name) = match cmd {
        ScheduleCommand::List(a) => return list(s, a.json).await,
        ScheduleCommand::Create(a) => {
            let req = create_request(a, s, cwd)?;
            return change(s, req).await;
        }
        ScheduleCommand::Drop(a) => (ScheduleOp::Drop, &a.name),
        ScheduleCommand::Pause(a) => (ScheduleOp::Pause, &a.name),
        ScheduleCommand::Resume(a) => (ScheduleOp::Resume, &a.name),
    };
    change(
        s,
        ScheduleRequest {
            op: op.into(),
            name: name.trim().to_string(),
            ..Default::default()
        },
    )
    .await
}

async fn change(s: &Settings, req: ScheduleRequest) -> Result<u8> {
    let mut client = connect::connect(s, &s.meta_path(None), s.parallelism(None)).await?;
    let stream = client.schedule_change(req).await?.into_inner();
    let out = job::drive(stream, &job::Options::default()).await?;
    if let Some(f) = out.finished.as_ref().filter(|f| !f.summary.is_empty()) {
        job::print(&f.summary)?;
    }
    Ok(0)
}

async fn list(s: &Settings, json: bool) -> Result<u8> {
    let mut client = connect::connect_reader(s, &s.meta_path(None), s.parallelism(None)).await?;
    let mut stream = client
        .schedule_list(ScheduleListRequest {})
        .await?
        .into_inner();
    let mut all = Vec::new();
    while let Some(event) = stream.message().await? {
        if let Some(job_event::Event::Schedules(list)) = event.event {
            all.extend(list.schedules);
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        for sched in &all {
            writeln!(out, "{}", json_line(sched))?;
        }
    } else {
        writeln!(out, "{}", table(&all))?;
    }
    out.flush()?;
    Ok(0)
}

pub fn table(all: &[ScheduleInfo]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let last = if s.last_run.is_empty() {
                String::new()
            } else {
                format!("{} {}", s.last_run, s.last_result)
            };
            vec![
                s.name.clone(),
                s.cron.clone(),
                if s.paused {
                    "paused".into()
                } else {
                    s.next_run.clone()
                },
                last,
                if s.paused { "yes" } else { "no" }.into(),
                s.spec.clone(),
            ]
        })
        .collect();
    render::tablewriter(
        &["NAME", "CRON", "NEXT RUN", "LAST RUN", "PAUSED", "SPEC"],
        &rows,
    )
}

pub fn json_line(s: &ScheduleInfo) -> String {
    serde_json::json!({
        "name": s.name,
        "cron": s.cron,
        "paused": s.paused,
        "next_run": s.next_run,
        "last_run": s.last_run,
        "last_backup_id": s.last_backup_id,
        "last_result": s.last_result,
        "running_backup_id": s.running_backup_id,
        "spec": s.spec,
        "retention": s.retention,
        "skipped": s.skipped,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use crate::config::{Config, EnvCreds};
    use clap::Parser;

    fn parse(argv: &[&str], env: EnvCreds) -> Result<ScheduleRequest, UsageError> {
        let cli = Cli::try_parse_from(argv).unwrap();
        let s = Settings::resolve(&cli, Config::default(), None, env);
        let Some(Command::Schedule(ScheduleCommand::Create(a))) = &cli.command else {
            panic!("not schedule create")
        };
        create_request(a, &s, Path::new("/work"))
    }

    #[test]
    fn a_schedule_carries_no_keys() {
        let env = EnvCreds {
            access_key_id: Some("AKIDENV".into()),
            secret_access_key: Some("SECRETENV".into()),
        };
        let r = parse(
            &[
                "mo_br",
                "schedule",
                "create",
                "--name",
                "nightly",
                "--cron",
                "0 0 2 * * *",
                "--backup_dir",
                "s3",
                "--bucket",
                "b",
                "--filepath",
                "x",
                "--endpoint",
                "http://127.0.0.1:9",
                "--data_dir",
                "/d",
                "--backup_type",
                "incremental",
                "--keep_last",
                "3",
            ],
            env,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("SECRETENV"));
        let Some(storage::Kind::S3(s3)) = r.spec.as_ref().unwrap().target.clone().unwrap().kind
        else {
            panic!("an s3 target")
        };
        assert!(s3.access_key_id.is_empty() && s3.secret_access_key.is_empty());
        assert_eq!(r.retention.unwrap().keep_last, 3);

        let refused = parse(
            &[
                "mo_br",
                "schedule",
                "create",
                "--name",
                "n",
                "--cron",
                "0 0 2 * * *",
                "--backup_dir",
                "filesystem",
                "--path",
                "/b",
                "--data_dir",
                "/d",
                "--access_key_id",
                "k",
            ],
            EnvCreds::default(),
        )
        .unwrap_err();
        assert!(refused.0.contains("stores no keys"), "{}", refused.0);
    }

    #[test]
    fn a_host_schedule_carries_no_password() {
        let base = [
            "mo_br",
            "schedule",
            "create",
            "--name",
            "online",
            "--cron",
            "0 0 2 * * *",
            "--backup_dir",
            "filesystem",
            "--path",
            "/b",
            "--host",
            "10.0.0.5",
            "--user",
            "dump",
        ];
        let r = parse(&base, EnvCreds::default()).unwrap();
        let login = r.spec.unwrap().login.unwrap();
        assert_eq!(
            (login.host.as_str(), login.user.as_str()),
            ("10.0.0.5", "dump")
        );
        assert!(login.password.is_empty());

        let mut with_password = base.to_vec();
        with_password.extend(["--password", "pw"]);
        let refused = parse(&with_password, EnvCreds::default()).unwrap_err();
        assert!(refused.0.contains("stores no password"), "{}", refused.0);
    }

    #[test]
    fn a_bad_cron_expression_is_a_value_error() {
        let e = Cli::try_parse_from([
            "mo_br",
            "schedule",
            "create",
            "--name",
            "n",
            "--cron",
            "every night",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
