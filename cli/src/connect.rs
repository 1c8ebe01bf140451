//! The coordinator to talk to: a remote one (`--coordinator host:port[,...]`,
//! MO_BR_COORDINATOR or `coordinator` in the config file) or, with none
//! configured, the embedded mode: coordinator and one agent in this process,
//! over in-memory pipes, with the catalog in `--meta_path`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use mo_br_proto::coordinator::coordinator_client::CoordinatorClient;
use mo_br_proto::coordinator::InspectRequest;
use mo_br_security::auth::{BearerToken, TokenInterceptor};
use mo_br_security::tls::{ca_file, CertFiles};
use mo_br_security::{ClientTls, ClientTlsFiles, Role};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::{Settings, TlsConfig};
use crate::error::{chain, usage};

pub type Client = CoordinatorClient<InterceptedService<Channel, TokenInterceptor>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to the configured coordinator, or starts the embedded one.
/// `meta_path` and `parallelism` only matter in the embedded mode.
pub async fn connect(s: &Settings, meta_path: &Path, parallelism: u32) -> Result<Client> {
    connect_as(s, meta_path, parallelism, Catalog::Write).await
}

/// [`connect`] for commands that only read the catalog (list, check,
/// snapshots): the embedded coordinator creates no catalog where there is
/// none and takes over nothing.
pub async fn connect_reader(s: &Settings, meta_path: &Path, parallelism: u32) -> Result<Client> {
    connect_as(s, meta_path, parallelism, Catalog::Read).await
}

/// [`connect`], or [`connect_reader`] for a dry run, which leaves no
/// catalog behind where there was none.
pub async fn connect_unless_dry(
    s: &Settings,
    meta_path: &Path,
    parallelism: u32,
    dry_run: bool,
) -> Result<Client> {
    let catalog = if dry_run {
        Catalog::Read
    } else {
        Catalog::Write
    };
    connect_as(s, meta_path, parallelism, catalog).await
}

/// What a command does with the embedded coordinator's catalog.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Catalog {
    Write,
    Read,
}

async fn connect_as(
    s: &Settings,
    meta_path: &Path,
    parallelism: u32,
    catalog: Catalog,
) -> Result<Client> {
    let (channel, token) = match s.coordinator.as_deref() {
        Some(list) => {
            let who = Credentials::resolve(&s.tls)?;
            (remote(list, &who).await?, who.token)
        }
        None => (embedded(meta_path, parallelism, catalog).await?, None),
    };
    Ok(client(channel, token.as_ref()))
}

fn client(channel: Channel, token: Option<&BearerToken>) -> Client {
    let interceptor = token.map(TokenInterceptor::new).unwrap_or_default();
    CoordinatorClient::with_interceptor(channel, interceptor).max_decoding_message_size(64 << 20)
}

/// TLS toward a remote coordinator and what proves who this CLI is.
#[derive(Default)]
struct Credentials {
    tls: Option<ClientTls>,
    token: Option<BearerToken>,
}

impl Credentials {
    /// From the config file and environment: TLS when a CA is named (or a
    /// `dir` holding one); the operator certificate of `dir` when there,
    /// and a token when a file names one. A token or certificate without a
    /// CA is refused: it would cross the network in the clear.
    fn resolve(t: &TlsConfig) -> Result<Credentials> {
        let in_dir = |f: fn(&Path) -> PathBuf| t.dir.as_deref().map(f).filter(|p| p.is_file());
        let ca = t.ca.clone().or_else(|| in_dir(ca_file));
        let cert = t
            .cert
            .clone()
            .or_else(|| in_dir(|d| CertFiles::in_dir(d, Role::Operator).cert));
        let key = t
            .key
            .clone()
            .or_else(|| in_dir(|d| CertFiles::in_dir(d, Role::Operator).key));
        let token = match (&t.token_file, std::env::var("MO_BR_TOKEN").ok()) {
            (Some(file), _) => Some(BearerToken::from_file(file).map_err(|e| usage!("{e}"))?),
            (None, Some(text)) if !text.is_empty() => Some(
                BearerToken::parse(&text)
                    .map_err(|why| usage!("MO_BR_TOKEN is not a usable token: {why}"))?,
            ),
            _ => None,
        };
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(CertFiles { cert, key }),
            (None, None) => None,
            _ => return Err(usage!("[tls]: give both cert and key, or neither").into()),
        };
        let Some(ca) = ca else {
            if token.is_some() || identity.is_some() {
                return Err(usage!(
                    "[tls]: a token or client certificate needs TLS: give dir or ca (the cluster's CA)"
                )
                .into());
            }
            return Ok(Credentials::default());
        };
        let tls = ClientTls::load(ClientTlsFiles { ca, identity }).map_err(|e| usage!("{e}"))?;
        Ok(Credentials {
            tls: Some(tls),
            token,
        })
    }
}

/// How long to look for the leader among the replicas before settling for
/// any reachable one (which then forwards, or reports that there is no
/// quorum). An election after a leader's loss takes one to two seconds.
const FIND_LEADER: Duration = Duration::from_secs(4);

/// The leader among a comma-separated list of `host:port`, or else the
/// first reachable replica. Talking to the leader directly saves a hop and
/// avoids a follower that still names a leader that just died.
async fn remote(list: &str, who: &Credentials) -> Result<Channel> {
    let addrs = addresses(list)?;
    let deadline = std::time::Instant::now() + FIND_LEADER;
    loop {
        let mut failures = Vec::new();
        let mut reachable = None;
        for addr in &addrs {
            let endpoint = mo_br_security::setup::endpoint(addr, who.tls.is_some())
                .map_err(|e| usage!("bad coordinator address \"{addr}\": {e}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(Duration::from_secs(24 * 3600));
            tracing::debug!("connecting to the coordinator at {addr}");
            let channel = match mo_br_security::setup::connect(endpoint, who.tls.as_ref()).await {
                Ok(channel) => channel,
                Err(e) => {
                    tracing::warn!("cannot reach the coordinator at {addr}: {}", chain(&e));
                    failures.push(chain(&e));
                    continue;
                }
            };
            let role = client(channel.clone(), who.token.as_ref())
                .inspect(InspectRequest {})
                .await
                .map(|r| r.into_inner().role);
            match role {
                Ok(role) if role == "leader" => {
                    tracing::info!("connected to the coordinator leader at {addr}");
                    return Ok(channel);
                }
                Ok(_) => {
                    reachable.get_or_insert(channel);
                }
                // Refused: no other replica will think otherwise.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(anyhow!("{}", status.message()));
                }
                Err(status) => failures.push(status.message().to_string()),
            }
        }
        match reachable {
            // A single coordinator, or a cluster without a leader right now.
            Some(channel) if addrs.len() == 1 || std::time::Instant::now() >= deadline => {
                return Ok(channel)
            }
            None if std::time::Instant::now() >= deadline
                || failures.len() == addrs.len() && addrs.len() == 1 =>
            {
                return Err(anyhow!(
                    "cannot reach the coordinator at {}: {}",
                    addrs.join(", "),
                    failures.last().map(String::as_str).unwrap_or("no address")
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// "a:1, b:2" -> ["a:1", "b:2"]; empty entries are a usage error.
pub fn addresses(list: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err(usage!("--coordinator: no address in \"{list}\"").into());
    }
    Ok(addrs)
}

#[cfg(feature = "embedded")]
async fn embedded(meta_path: &Path, parallelism: u32, catalog: Catalog) -> Result<Channel> {
    tracing::debug!(
        "embedded mode: catalog {}, parallelism {parallelism}",
        meta_path.display()
    );
    let agent = mo_br_agent::spawn_in_process(mo_br_agent::AgentService::new(
        "local",
        parallelism.max(1) as usize,
    ));
    let spawned = match catalog {
        Catalog::Write => {
            mo_br_coordinator::spawn_in_process(meta_path, vec![agent])
                .await
                .map(|(channel, notices)| {
                    // Whatever --log_level says: only the user can act on them.
                    for notice in notices {
                        eprintln!("mo_br: note: {notice}");
                    }
                    channel
                })
        }
        Catalog::Read => mo_br_coordinator::spawn_reader_in_process(meta_path, vec![agent]).await,
    };
    spawned.map_err(|e| anyhow!("{}: {}", meta_path.display(), chain(&e)))
}

#[cfg(not(feature = "embedded"))]
async fn embedded(_meta_path: &Path, _parallelism: u32, _catalog: Catalog) -> Result<Channel> {
    Err(usage!("this build has no embedded coordinator: give --coordinator host:port").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(addresses("a:1, b:2,").unwrap(), ["a:1", "b:2"]);
        assert!(addresses(" , ").is_err());
    }

    #[tokio::test]
    async fn unreachable_coordinator_is_one_clear_error() {
        // Port 9 on loopback: nothing listens there in a test environment.
        let err = remote("127.0.0.1:9", &Credentials::default())
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("cannot reach the coordinator at 127.0.0.1:9: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
}
