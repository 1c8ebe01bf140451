//! mo-sim: a TEST DOUBLE of MatrixOne, not MatrixOne.
//!
//! It speaks enough of the MySQL wire protocol for mo-br's clients (login
//! with `mysql_native_password`, text queries) and implements, with
//! MatrixOne's rules and verbatim error texts, the SQL a backup coordinator
//! uses: accounts, snapshots (create/drop/show/restore in both grammars),
//! PITRs, BACKUP (into a directory or an S3 bucket) and `mo_ctl` for GC
//! control, checkpoints and backup checkers. With `--data_dir` it also
//! runs a "live node" that flushes, merges, checkpoints and
//! garbage-collects files in a MatrixOne-shaped `mo-data` (SHARED in it,
//! or with `--s3_endpoint` in a bucket through the S3 API), and `mo-sim
//! verify` checks a (restored) data dir against the ledger of
//! everything the node wrote. Nothing here stores table data or runs a
//! query engine.

mod backup;
mod engine;
mod ids;
mod node;
mod pitr;
mod replay;
mod sql;
mod store;
mod verify;
mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;

use engine::{Engine, Grammar};
use wire::{Packets, SqlError};

pub const VERSION: &str = concat!(
    "8.0.30-mo-sim-",
    env!("CARGO_PKG_VERSION"),
    " (a test double of MatrixOne, not MatrixOne)"
);

#[derive(Parser)]
#[command(
    name = "mo-sim",
    version,
    about = "A test double of MatrixOne (NOT MatrixOne) for mo-br tests: MySQL-wire snapshot/mo_ctl SQL and a live data-dir writer",
    long_about = "mo-sim is a TEST DOUBLE of MatrixOne, not MatrixOne. It serves the MySQL wire protocol \
with MatrixOne's snapshot, PITR, restore, BACKUP, account and mo_ctl statements (rules and error texts from MatrixOne's \
source), and can run a simulated node that writes objects, checkpoint metas and GC into a mo-data dir."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum GrammarArg {
    Current,
    Old,
    Both,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Serve MySQL clients (and run the live node when --data_dir is given).
    Serve {
        #[arg(long, default_value = "127.0.0.1:6001")]
        listen: String,
        /// A node's mo-data (shared2/ or legacy shared/ is written into,
        /// unless --s3_endpoint puts SHARED in a bucket).
        #[arg(long = "data_dir")]
        data_dir: Option<PathBuf>,
        /// SHARED in a bucket through the S3 API, like a TN whose SHARED
        /// file service is MINIO/S3 (`[fileservice.s3] endpoint`).
        #[arg(long = "s3_endpoint", requires_all = ["data_dir", "s3_bucket"])]
        s3_endpoint: Option<String>,
        #[arg(long = "s3_bucket", requires = "s3_endpoint")]
        s3_bucket: Option<String>,
        /// `[fileservice.s3] key-prefix`: SHARED's root in the bucket.
        #[arg(long = "s3_key_prefix", default_value = "", requires = "s3_endpoint")]
        s3_key_prefix: String,
        #[arg(
            long = "s3_access_key_id",
            env = "AWS_ACCESS_KEY_ID",
            default_value = ""
        )]
        s3_access_key_id: String,
        #[arg(
            long = "s3_secret_access_key",
            env = "AWS_SECRET_ACCESS_KEY",
            default_value = "",
            hide_env_values = true
        )]
        s3_secret_access_key: String,
        /// JSON file keeping accounts, users, snapshots, restores and the checker across restarts.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Ledger of every file the node writes (default: <data_dir>/../mo-sim-ledger.jsonl).
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Which RESTORE grammar to accept; the other is a syntax error (1064).
        #[arg(long, value_enum, default_value = "both")]
        grammar: GrammarArg,
        /// New objects every this many ms (0 = never).
        #[arg(long = "flush_ms", default_value_t = 1000)]
        flush_ms: u64,
        /// An incremental checkpoint every this many ms (0 = never).
        #[arg(long = "ckp_ms", default_value_t = 3000)]
        ckp_ms: u64,
        /// A GC pass every this many ms (0 = never). MatrixOne: 30 min.
        #[arg(long = "gc_ms", default_value_t = 1_800_000)]
        gc_ms: u64,
        /// Also a global checkpoint every this many incrementals.
        #[arg(long = "global_every", default_value_t = 4)]
        global_every: u32,
        /// A merge (new object replacing 2-3 old ones) every this many flushes (0 = never).
        #[arg(long = "merge_every", default_value_t = 2)]
        merge_every: u32,
        /// A backup checker protects for this long after its last renewal (MatrixOne: 20 min).
        #[arg(long = "checker_ttl_ms", default_value_t = 1_200_000)]
        checker_ttl_ms: u64,
        /// mo-service's `-launch` file (`logservices`, `tnservices`,
        /// `cnservices`, `proxy-services`: paths as given, like mo-service
        /// reads them): BACKUP copies it and the files it lists into `config/`.
        #[arg(long = "launch_config")]
        launch_config: Option<PathBuf>,
        /// Snapshots per non-sys tenant and level (sys is unlimited, as in MatrixOne).
        #[arg(long = "snapshot_quota", default_value_t = 50)]
        snapshot_quota: usize,
    },
    /// Replay mo-tester cases (`.sql`/`.test` + `.result`) against a fresh
    /// in-process engine each and print how many in-scope statements agree.
    Replay {
        /// Read the paths at HEAD of this git dir (e.g. a bare mirror of
        /// matrixorigin/matrixone) instead of the file system.
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Also print every divergence (statement, expected, mo-sim's answer).
        #[arg(long)]
        verbose: bool,
        /// Print mo-sim's answers in result format instead (a draft for a
        /// new case: check every line against MatrixOne before committing).
        #[arg(long, conflicts_with_all = ["repo", "verbose"])]
        genrs: bool,
        /// Case directories or files (inside --repo when given).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Check that a data dir holds, byte for byte, what the checkpoint chain at CUT needs.
    Verify {
        #[arg(long = "data_dir")]
        data_dir: PathBuf,
        /// `<physical-ns>-<logical>`.
        #[arg(long)]
        cut: String,
        #[arg(long)]
        ledger: Option<PathBuf>,
        /// Also require `hk_data` at the LOCAL root (local2/ or local/) with NextID >= N.
        #[arg(long = "hk_data_min")]
        hk_data_min: Option<u64>,
    },
}

/// The launch file's config paths by role, as cmd/mo-service/launch.go
/// hands them to pkg/backup (SaveLaunchConfigPath): the launch file itself
/// (`launch`), then `log`, `dn`, `cn` and `proxy`.
fn launch_configs(launch: &std::path::Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Launch {
        logservices: Vec<PathBuf>,
        tnservices: Vec<PathBuf>,
        cnservices: Vec<PathBuf>,
        #[serde(rename = "proxy-services")]
        proxy_services: Vec<PathBuf>,
    }
    let text = std::fs::read_to_string(launch)
        .with_context(|| format!("reading --launch_config {}", launch.display()))?;
    let l: Launch = toml::from_str(&text)
        .with_context(|| format!("parsing --launch_config {}", launch.display()))?;
    let mut out = vec![("launch".to_string(), launch.to_path_buf())];
    for (role, files) in [
        ("log", l.logservices),
        ("dn", l.tnservices),
        ("cn", l.cnservices),
        ("proxy", l.proxy_services),
    ] {
        out.extend(files.into_iter().map(|f| (role.to_string(), f)));
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay {
            repo,
            verbose,
            genrs,
            paths,
        } => {
            if genrs {
                for p in &paths {
                    let sql = std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?;
                    print!("{}", replay::genrs(p, &sql));
                }
                return Ok(());
            }
            let cases = match &repo {
                Some(r) => replay::cases_from_git(r, &paths)?,
                None => {
                    let mut all = Vec::new();
                    for p in &paths {
                        all.extend(replay::cases_from_path(std::path::Path::new(p))?);
                    }
                    all
                }
            };
            let reports: Vec<_> = cases.iter().map(replay::replay).collect();
            print!("{}", replay::table(&reports, verbose));
            Ok(())
        }
        Cmd::Verify {
            data_dir,
            cut,
            ledger,
            hk_data_min,
        } => {
            let cut = node::Hlc::parse(&cut)
                .with_context(|| format!("bad --cut {cut:?}: want <physical-ns>-<logical>"))?;
            let ledger = ledger.unwrap_or_else(|| node::default_ledger(&data_dir));
            let out = verify::verify(&data_dir, cut, &ledger, hk_data_min)?;
            if out.problems.is_empty() {
                println!("{}", out.summary);
                Ok(())
            } else {
                for p in &out.problems {
                    println!("{p}");
                }
                eprintln!(
                    "verify failed: {} problem(s) at cut {cut}",
                    out.problems.len()
                );
                std::process::exit(1);
            }
        }
        Cmd::Serve {
            listen,
            data_dir,
            s3_endpoint,
            s3_bucket,
            s3_key_prefix,
            s3_access_key_id,
            s3_secret_access_key,
            state,
            ledger,
            grammar,
            flush_ms,
            ckp_ms,
            gc_ms,
            global_every,
            merge_every,
            checker_ttl_ms,
            launch_config,
            snapshot_quota,
        } => {
            let cfg = node::NodeConfig {
                flush_ms,
                ckp_ms,
                gc_ms,
                global_every,
                merge_every,
                checker_ttl_ms,
            };
            let ids = ids::Ids::default();
            let s3 = s3_endpoint.map(|endpoint| store::S3Config {
                endpoint,
                bucket: s3_bucket.unwrap_or_default(),
                key_prefix: s3_key_prefix,
                access_key_id: s3_access_key_id,
                secret_access_key: s3_secret_access_key,
                ..Default::default()
            });
            let node = match &data_dir {
                Some(d) => {
                    let ledger = ledger.unwrap_or_else(|| node::default_ledger(d));
                    let n = node::Node::open(d, s3.as_ref(), ledger, cfg.clone(), ids.clone())
                        .with_context(|| match &s3 {
                            Some(s3) => format!(
                                "opening {} with SHARED in {} bucket {} prefix {:?}",
                                d.display(),
                                s3.endpoint,
                                s3.bucket,
                                s3.key_prefix
                            ),
                            None => format!("opening {}", d.display()),
                        })?;
                    Some(Arc::new(Mutex::new(n)))
                }
                None => None,
            };
            let engine = Engine::new(
                engine::Config {
                    launch_configs: match &launch_config {
                        Some(p) => launch_configs(p)?,
                        None => Vec::new(),
                    },
                    grammar: match grammar {
                        GrammarArg::Current => Grammar::Current,
                        GrammarArg::Old => Grammar::Old,
                        GrammarArg::Both => Grammar::Both,
                    },
                    state_path: state,
                    snapshot_quota,
                    version: VERSION.to_string(),
                },
                node.clone(),
                ids,
            )?;
            let engine = Arc::new(engine);
            if let Some(n) = node {
                let e = engine.clone();
                node::spawn_loop(n, cfg, Box::new(move || e.persist_ids()));
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(serve(listen, engine))
        }
    }
}

async fn serve(listen: String, engine: Arc<Engine>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("mo-sim listening on {}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    static CONN_ID: AtomicU32 = AtomicU32::new(1);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let engine = engine.clone();
        let id = CONN_ID.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection(engine, stream, id).await {
                if e.kind() != std::io::ErrorKind::UnexpectedEof
                    && e.kind() != std::io::ErrorKind::ConnectionReset
                {
                    eprintln!("mo-sim: connection {id}: {e}");
                }
            }
        });
    }
}

async fn connection(
    engine: Arc<Engine>,
    stream: tokio::net::TcpStream,
    id: u32,
) -> std::io::Result<()> {
    let mut pk = Packets::new(stream);
    let salt = pk.greet(engine.version(), id).await?;
    let Some(resp) = pk.read().await? else {
        return Ok(());
    };
    let Some(hr) = wire::parse_handshake_response(&resp) else {
        pk.err(&SqlError {
            code: 1043,
            state: "08S01",
            message: "Bad handshake".into(),
        })
        .await?;
        return pk.flush().await;
    };
    let mut ses = match engine.login(&hr.user, &salt, &hr.auth) {
        Ok(s) => s,
        Err(e) => {
            pk.err(&e).await?;
            return pk.flush().await;
        }
    };
    ses.db = hr.db;
    pk.ok(0).await?;
    pk.flush().await?;
    loop {
        let Some(cmd) = pk.read().await? else {
            return Ok(());
        };
        match cmd.first().copied() {
            Some(wire::COM_QUIT) | None => return Ok(()),
            Some(wire::COM_PING) | Some(wire::COM_RESET_CONNECTION) => pk.ok(0).await?,
            Some(wire::COM_INIT_DB) => {
                ses.db = Some(String::from_utf8_lossy(&cmd[1..]).to_ascii_lowercase());
                pk.ok(0).await?
            }
            Some(wire::COM_QUERY) => {
                let sql = String::from_utf8_lossy(&cmd[1..]).into_owned();
                let eng = engine.clone();
                let mut s = ses.clone();
                let (res, s) = tokio::task::spawn_blocking(move || {
                    let r = eng.execute(&mut s, &sql);
                    (r, s)
                })
                .await
                .map_err(std::io::Error::other)?;
                ses = s;
                match res {
                    Ok(reply) => pk.reply(&reply).await?,
                    Err(e) => pk.err(&e).await?,
                }
            }
            Some(other) => {
                pk.err(&SqlError {
                    code: 1047,
                    state: "08S01",
                    message: format!("mo-sim does not implement command 0x{other:02x}"),
                })
                .await?
            }
        }
        pk.flush().await?;
    }
}
