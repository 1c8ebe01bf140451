//! `mo-br-coordinator`: serves the catalog and runs jobs on the given agents.

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "mo-br-coordinator",
    version,
    about = "mo-br coordinator: backup catalog and job planner"
)]
struct Args {
    /// Address to serve the CLI-facing gRPC service on.
    #[arg(
        long,
        default_value = "127.0.0.1:7101",
        env = "MO_BR_COORDINATOR_LISTEN"
    )]
    listen: String,
    /// The catalog's durable log.
    #[arg(long = "meta_path", default_value = "./mo_br.meta")]
    meta_path: std::path::PathBuf,
    /// Agents to hand work to (host:port, comma-separated); the first one
    /// inventories the node being backed up.
    #[arg(long, value_delimiter = ',', required = true)]
    agents: Vec<String>,
    /// error, warn, info, debug, trace.
    #[arg(long = "log_level", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    let mut agents = Vec::new();
    for a in &args.agents {
        let uri = if a.contains("://") {
            a.clone()
        } else {
            format!("http://{a}")
        };
        let channel = tonic::transport::Endpoint::from_shared(uri.clone())
            .with_context(|| format!("bad agent address {a}"))?
            .connect_timeout(std::time::Duration::from_secs(3))
            .connect_lazy();
        agents.push((a.clone(), channel));
    }
    let coordinator = mo_br_coordinator::Coordinator::open(&args.meta_path, agents).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("mo-br-coordinator listening on {}", listener.local_addr()?);
    coordinator
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
