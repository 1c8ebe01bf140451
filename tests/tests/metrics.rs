//! Prometheus metrics of real daemons: a coordinator and an agent started
//! with `--metrics_listen`, a backup through `mo_br --coordinator`, then a
//! scrape of each daemon's `/metrics` over plain HTTP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, Scene, MIB};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::trees::files_under;

/// `GET /metrics` with HTTP/1.0 (the server closes the connection after the
/// answer); returns the body.
fn scrape(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_scrape(addr) {
            Ok(body) => return body,
            Err(e) if Instant::now() < deadline => {
                eprintln!("scrape {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("scrape http://{addr}/metrics: {e}"),
        }
    }
}

fn try_scrape(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {text:?}")))?;
    let code = head.split_whitespace().nth(1);
    if !head.starts_with("HTTP/1.") || code != Some("200") {
        return Err(std::io::Error::other(format!("answer: {head}")));
    }
    Ok(body.to_string())
}

/// The Prometheus text format's samples: `name{labels}` (labels as written,
/// sorted by name) to value. Comments and blank lines are skipped.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => line.split_once(' ').expect("a `name value` line"),
        };
        let value = value.split_whitespace().next().expect("a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("value of {line:?}: {e}")),
        };
        out.insert(canonical(series.trim()), value);
    }
    out
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}`, so lookups do not depend on
/// the exporter's label order.
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let inner = rest.strip_suffix('}').expect("labels end with }");
    let mut labels: Vec<&str> = split_labels(inner);
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(inner: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (vec![], 0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        parts.push(&inner[start..]);
    }
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(&canonical(series)).copied()
}

#[track_caller]
fn value(samples: &BTreeMap<String, f64>, series: &str, scraped: &str) -> f64 {
    get(samples, series).unwrap_or_else(|| panic!("no {series} in the scrape:\n{scraped}"))
}

/// The files of a filesystem backup that are copies of the node's files:
/// everything but our manifest and its chunks, MatrixOne's metadata files
/// and sidecars.
/// Returns (count, bytes).
fn copied_files(backup: &Path) -> (u64, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for (rel, path) in files_under(backup) {
        let meta = ["backup_meta", "mo_meta", "tae/tae_list", "tae/tae_sum"];
        if meta.contains(&rel.as_str()) || rel.ends_with(".sha256") || rel.starts_with("manifest/")
        {
            continue;
        }
        count += 1;
        bytes += std::fs::metadata(&path).expect("stat a backup file").len();
    }
    (count, bytes)
}

#[test]
fn agent_and_coordinator_metrics_count_a_backup() {
    let scene = Scene::new("metrics");
    let sample = scene.sample("node", 43, 3 * MIB, Backend::DiskV2);
    let cluster = Cluster::start_with_metrics(Some(sample.data_dir()))
        .expect("start a coordinator and an agent");
    let agent_metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();
    let coord_metrics = cluster
        .coordinator_metrics_addr()
        .expect("coordinator metrics")
        .to_string();
    let logs = || cluster.logs();

    // Before any work: the endpoints answer; no bytes were counted yet.
    let before = scrape(&agent_metrics);
    assert!(
        get(&parse(&before), r#"mo_br_agent_bytes_total{op="copy"}"#).is_none(),
        "bytes counted before any backup:\n{before}"
    );
    scrape(&coord_metrics);

    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let b = scene.path("backups/b1");
    let out = mobr.run(&sample.fs_backup_args(&b));
    assert!(out.success(), "backup failed\n{out}\n{}", logs());
    let id = backup_id(&out);
    let (files, bytes) = copied_files(&b);
    assert!(files > 0 && bytes > 0, "the backup copied nothing");

    // The agent counts its last progress before its last answer, so the
    // counters are final when the backup returns.
    let text = scrape(&agent_metrics);
    let m = parse(&text);
    assert_eq!(
        value(&m, r#"mo_br_agent_bytes_total{op="copy"}"#, &text),
        bytes as f64,
        "copied bytes ({files} files)\n{text}"
    );
    assert_eq!(
        value(
            &m,
            r#"mo_br_agent_files_total{op="copy",result="ok"}"#,
            &text
        ),
        files as f64,
        "copied files\n{text}"
    );
    assert!(
        get(&m, r#"mo_br_agent_files_total{op="copy",result="problem"}"#).is_none(),
        "problems counted in a clean backup:\n{text}"
    );
    assert!(
        !m.keys().any(|k| k.starts_with("mo_br_agent_errors_total")),
        "errors counted in a clean backup:\n{text}"
    );
    assert!(
        text.contains("# HELP mo_br_agent_bytes_total"),
        "bytes_total has no help text:\n{text}"
    );

    // The shard's timer stops just after its last answer: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, m) = loop {
        let text = scrape(&agent_metrics);
        let m = parse(&text);
        let timed = get(&m, r#"mo_br_agent_shard_duration_seconds_count{op="copy"}"#);
        let running = get(&m, "mo_br_agent_shards_running");
        if (timed.unwrap_or(0.0) >= 1.0 && running == Some(0.0)) || Instant::now() > deadline {
            break (text, m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(
            &m,
            r#"mo_br_agent_shard_duration_seconds_count{op="copy"}"#,
            &text
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&m, "mo_br_agent_shards_running", &text),
        0.0,
        "{text}"
    );
    assert!(
        value(
            &m,
            r#"mo_br_agent_last_shard_throughput_bytes_per_second{op="copy"}"#,
            &text
        ) > 0.0,
        "{text}"
    );
    assert!(
        text.contains(r#"mo_br_agent_shard_duration_seconds_bucket{op="copy",le="600"}"#),
        "shard durations lack the 600 s bucket:\n{text}"
    );

    // The coordinator timed the shards it handed out and lost none.
    let text = scrape(&coord_metrics);
    let m = parse(&text);
    assert!(
        value(
            &m,
            r#"mo_br_coordinator_shard_duration_seconds_count{op="copy"}"#,
            &text
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&m, "mo_br_coordinator_shard_reassignments_total", &text),
        0.0,
        "{text}"
    );

    // Jobs are counted once the coordinator's job runner wraps each job in
    // `metrics::job_started`; until then the series is absent and this is
    // skipped. The backup was the only job so far.
    if m.keys()
        .any(|k| k.starts_with("mo_br_coordinator_jobs_total"))
    {
        assert_eq!(
            value(
                &m,
                r#"mo_br_coordinator_jobs_total{kind="backup",result="ok"}"#,
                &text
            ),
            1.0,
            "{text}"
        );
        assert_eq!(
            get(&m, r#"mo_br_coordinator_jobs_running{kind="backup"}"#),
            Some(0.0),
            "{text}"
        );
    } else {
        eprintln!("mo_br_coordinator_jobs_total is not recorded yet: not checked");
    }

    // A check re-reads every copied file on the agent.
    let check = mobr.run(&["check", &id]);
    assert!(check.success(), "check failed\n{check}\n{}", logs());
    let text = scrape(&agent_metrics);
    let m = parse(&text);
    assert!(
        value(&m, r#"mo_br_agent_bytes_total{op="verify"}"#, &text) >= bytes as f64,
        "verify read fewer bytes than the backup copied\n{text}"
    );
    assert!(
        value(
            &m,
            r#"mo_br_agent_files_total{op="verify",result="ok"}"#,
            &text
        ) >= files as f64,
        "{text}"
    );
}

#[test]
fn prometheus_text_parsing() {
    let m = parse(
        "# HELP x help\n# TYPE x counter\nx{b=\"2\",a=\"1,\\\"q\"} 5\ny 1.5\nz_bucket{le=\"+Inf\"} 3\n",
    );
    assert_eq!(get(&m, r#"x{a="1,\"q",b="2"}"#), Some(5.0));
    assert_eq!(get(&m, "y"), Some(1.5));
    assert_eq!(get(&m, r#"z_bucket{le="+Inf"}"#), Some(3.0));
}
