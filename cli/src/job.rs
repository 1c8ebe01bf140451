//! Drives the stream of `JobEvent`s every RPC returns: lines and problems as
//! they come, the backups table, the progress bar, and the `Finished` event.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use mo_br_proto::common::ProblemKind;
use mo_br_proto::coordinator::{job_event, AttachRequest, Finished, JobEvent, Problem};
use mo_br_proto::names::Named;
use tonic::Streaming;

use crate::config::Settings;
use crate::connect;
use crate::progress::Bar;
use crate::render;

/// How long the CLI keeps trying to re-attach to a job whose coordinator
/// went away (an election takes seconds); a replica answering restarts it.
const REATTACH_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Options {
    /// Printed (with blank lines around it) after a backups table, before
    /// the lines that follow: "Checking the backup data...".
    pub after_table: Option<&'static str>,
    /// Backups as JSON lines; lines and problems then go to stderr.
    pub json: bool,
    /// Do not print `backups` events (already shown).
    pub skip_backups: bool,
    /// The table also shows backups that are not complete (JSON lines
    /// always do: each carries its state).
    pub all: bool,
    /// The table's KIND and STATE columns.
    pub verbose: bool,
}

#[derive(Default)]
pub struct Outcome {
    pub finished: Option<Finished>,
    /// Problems seen on the stream.
    pub problems: u64,
    /// The job the stream was about, once it said.
    pub job_id: Option<String>,
    /// Set when the stream broke off (the coordinator went away) after the
    /// job had started: the job may well go on under another replica.
    pub interrupted: Option<tonic::Status>,
}

/// Whether a stream error means the connection or the replica went away,
/// rather than the job failing.
pub fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    ) || status.message().contains("h2 protocol error")
        || status.message().contains("transport error")
}

/// One attempt at following job `id` (a `what`) on another replica after
/// the one driving it went away: its outcome, and whether a replica
/// answered (which restarts the caller's re-attach deadline). A transient
/// error becomes an interruption to try again after; a refusal of the job
/// itself (it failed, or is unknown there) ends the command.
fn followed(
    attached: anyhow::Result<Outcome>,
    id: &str,
    what: &str,
) -> anyhow::Result<(Outcome, bool)> {
    match attached {
        Ok(o) => Ok((
            Outcome {
                job_id: o.job_id.or(Some(id.to_string())),
                ..o
            },
            true,
        )),
        Err(e) => {
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                if !transient(status) {
                    return Err(e);
                }
            }
            tracing::warn!("following {what} {id}: {e:#}");
            Ok((
                Outcome {
                    job_id: Some(id.to_string()),
                    interrupted: Some(tonic::Status::unavailable(format!("{e:#}"))),
                    ..Default::default()
                },
                false,
            ))
        }
    }
}

/// Follows job `what` from replica to replica while the one driving it
/// goes away, with `attach` (the job's id set each time; credentials the
/// job needs to be carried on), until it ends somewhere or no replica
/// answers for `REATTACH_FOR`. Embedded, there is nowhere else to go.
pub async fn follow_elsewhere(
    s: &Settings,
    mut out: Outcome,
    what: &str,
    attach: AttachRequest,
) -> anyhow::Result<Outcome> {
    let mut reattach_until = Instant::now() + REATTACH_FOR;
    while let (Some(status), Some(id)) = (out.interrupted.take(), out.job_id.clone()) {
        tracing::warn!(
            "lost the coordinator while {what} {id} ran ({}); following it on another replica",
            status.message()
        );
        if Instant::now() >= reattach_until || s.coordinator.is_none() {
            return Err(status.into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let attached = async {
            let mut client = connect::connect(s, Path::new(""), 0).await?;
            let stream = client
                .attach(AttachRequest {
                    job_id: id.clone(),
                    ..attach.clone()
                })
                .await?
                .into_inner();
            drive(stream, &Options::default()).await
        }
        .await;
        let answered;
        (out, answered) = followed(attached, &id, what)?;
        if answered {
            reattach_until = Instant::now() + REATTACH_FOR;
        }
    }
    Ok(out)
}

/// Reads the stream to its end. A status error ends it: the caller reports
/// it. Output errors (a closed pipe) are returned as such.
pub async fn drive(mut stream: Streaming<JobEvent>, opts: &Options) -> anyhow::Result<Outcome> {
    let mut bar = Bar::hidden();
    let mut out = Outcome::default();
    let mut ev_out = Printer { json: opts.json };
    loop {
        let event = match stream.message().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(status) if out.job_id.is_some() && transient(&status) => {
                out.interrupted = Some(status);
                break;
            }
            Err(status) => return Err(status.into()),
        };
        let Some(event) = event.event else { continue };
        match event {
            job_event::Event::Started(s) => {
                tracing::info!(
                    "job {} started: {} ({} files, {} bytes)",
                    s.job_id,
                    s.what,
                    s.total_files,
                    s.total_bytes
                );
                bar.finish();
                out.job_id = Some(s.job_id.clone());
                let what = if s.what.is_empty() { "job" } else { &s.what };
                bar = Bar::start(what, s.total_bytes, s.total_files);
            }
            job_event::Event::Progress(p) => bar.update(p.bytes, p.files),
            job_event::Event::Line(line) => bar.suspend(|| ev_out.line(&line))?,
            job_event::Event::Problem(p) => {
                out.problems += 1;
                bar.suspend(|| ev_out.line(&problem_line(&p)))?;
            }
            job_event::Event::Backups(_) if opts.skip_backups => {}
            job_event::Event::Backups(b) => {
                bar.suspend(|| -> std::io::Result<()> {
                    let mut stdout = std::io::stdout().lock();
                    if opts.json {
                        for info in &b.backups {
                            writeln!(stdout, "{}", render::json_line(info))?;
                        }
                        return stdout.flush();
                    }
                    let shown: Vec<_> = b
                        .backups
                        .into_iter()
                        .filter(|info| opts.all || render::is_complete(info))
                        .collect();
                    writeln!(stdout, "{}", render::table(&shown, opts.verbose))?;
                    if let Some(header) = opts.after_table {
                        writeln!(stdout, "\n{header}\n")?;
                    }
                    stdout.flush()
                })?;
            }
            // Read by `schedule list` itself.
            job_event::Event::Schedules(_) => {}
            job_event::Event::Finished(f) => {
                bar.finish();
                out.finished = Some(f);
            }
        }
    }
    bar.finish();
    Ok(out)
}

struct Printer {
    json: bool,
}

impl Printer {
    fn line(&mut self, line: &str) -> std::io::Result<()> {
        if self.json {
            let mut err = std::io::stderr().lock();
            writeln!(err, "{line}")
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()
        }
    }
}

/// "missing: tae/tae_list (not found in the backup)".
pub fn problem_line(p: &Problem) -> String {
    let kind = match ProblemKind::word(p.kind) {
        "" => "problem",
        k => k,
    };
    if p.detail.is_empty() {
        format!("{kind}: {}", p.path)
    } else {
        format!("{kind}: {} ({})", p.path, p.detail)
    }
}

/// Prints a finished job's summary and returns the exit code: 1 if it
/// reported problems, else 0.
pub fn conclude(out: &Outcome, what: &str) -> anyhow::Result<u8> {
    if let (None, Some(status)) = (&out.finished, &out.interrupted) {
        let next = if what == "restore" {
            "the coordinator, restarted, or the next leader carries the restore on from the files already written and verified"
        } else {
            "run it again"
        };
        anyhow::bail!(
            "the coordinator was lost during the {what} ({}); {next}",
            status.message()
        );
    }
    let Some(finished) = &out.finished else {
        anyhow::bail!("the coordinator ended the {what} without a result");
    };
    if !finished.summary.is_empty() {
        print(&finished.summary)?;
    }
    Ok(u8::from(finished.problems > 0 || out.problems > 0))
}

/// Prints a line to stdout (the summary of a job, ...).
pub fn print(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_lines_keep_kind_and_path() {
        let p = Problem {
            path: "tae/tae_list".into(),
            kind: ProblemKind::Missing.into(),
            detail: "not found".into(),
        };
        assert_eq!(problem_line(&p), "missing: tae/tae_list (not found)");
        let p = Problem {
            path: "a".into(),
            kind: ProblemKind::SizeMismatch.into(),
            detail: String::new(),
        };
        assert_eq!(problem_line(&p), "size mismatch: a");
        let p = Problem {
            path: "a".into(),
            kind: 99,
            detail: String::new(),
        };
        assert_eq!(problem_line(&p), "problem: a");
    }
}
