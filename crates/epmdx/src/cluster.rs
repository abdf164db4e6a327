//! `-etcd URLS -cluster NAME [-advertise ...] [-etcd_ttl SECS]`: publishing
//! this daemon's registrations to etcd (docs/cluster.md).
//!
//! The registry's observer turns each change into the node's record (or
//! none) and hands it to [`epmdx_cluster::Updates`], which only stores the
//! latest state and wakes the publisher; the publisher runs on its own
//! thread and runtime, so however slow or absent etcd is, the EPMD side
//! never waits for it.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use epmd_proto::NodeName;
use epmd_server::registry::{KindState, NodeState, Observer};
use epmdx_cluster::{
    parse_endpoints, ClusterName, DriveConfig, EtcdPublisher, Record, Transport, Updates,
    KNOWN_PROTOCOLS,
};
use tracing::{debug, error, info};

use crate::args::Args;

/// The lease TTL without `-etcd_ttl`.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// What the cluster options asked for, checked.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    endpoints: Vec<String>,
    cluster: ClusterName,
    /// The host part of published node names.
    host: String,
    addresses: Vec<IpAddr>,
    ttl: Duration,
}

/// Checks the cluster options; `Ok(None)` when publishing is off. The
/// error is the message to log before exiting 1.
pub(crate) fn config(args: &Args) -> Result<Option<ClusterConfig>, String> {
    let (urls, name) = match (&args.etcd, &args.cluster) {
        (None, None) => {
            if args.advertise.is_some() || args.etcd_ttl.is_some() {
                return Err("-advertise and -etcd_ttl need -etcd and -cluster".into());
            }
            return Ok(None);
        }
        (Some(u), Some(c)) => (u, c),
        _ => return Err("-etcd and -cluster go together".into()),
    };
    let endpoints = parse_endpoints(urls).map_err(|e| e.to_string())?;
    let cluster = ClusterName::new(name).map_err(|e| format!("-cluster {name:?}: {e}"))?;
    let mut host = None;
    let mut addresses = Vec::new();
    for tok in args.advertise.iter().flat_map(|a| a.split(',')) {
        let tok = tok.trim();
        match tok.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip),
            Err(_) if host.is_none() && NodeName::from_parts("a", tok).is_ok() => {
                host = Some(tok.to_owned());
            }
            Err(_) => return Err(format!("-advertise: cannot use {tok:?}")),
        }
    }
    let host = match host {
        Some(h) => h,
        None => system_hostname().ok_or("cannot read the host name; give -advertise HOST")?,
    };
    if addresses.is_empty() {
        addresses = resolve(&host);
    }
    addresses.truncate(epmdx_cluster::record::MAX_ADDRESSES);
    Ok(Some(ClusterConfig {
        endpoints,
        cluster,
        host,
        addresses,
        ttl: args.etcd_ttl.unwrap_or(DEFAULT_TTL),
    }))
}

/// `gethostname`, as `erl -sname` sees this host.
fn system_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (ok && !name.is_empty()).then(|| name.to_owned())
}

/// The host's non-loopback addresses, as name resolution gives them (once,
/// at start; `-advertise` with addresses skips this).
fn resolve(host: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in (host, 0).to_socket_addrs().into_iter().flatten() {
        let ip = a.ip();
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

impl ClusterConfig {
    /// The record `state` publishes, or `None` when it has nothing remote
    /// callers could use (only `uds` or unknown protocols), or a name that
    /// is not a valid node name with this host.
    fn record(&self, name: &[u8], state: &NodeState) -> Option<Record> {
        let alive = std::str::from_utf8(name).ok()?;
        let node = NodeName::from_parts(alive, &self.host).ok()?;
        let (transports, legacy) = match &state.kind {
            // ALIVE2 says "TCP" and nothing about the address family; what
            // a stock epmd reports is what this record says.
            KindState::Legacy { port, .. } => {
                (vec![Transport::new(KNOWN_PROTOCOLS[0], *port).ok()?], true)
            }
            KindState::Ext { transports } => (
                transports
                    .iter()
                    // Never uds (a socket path means nothing elsewhere), never
                    // a protocol remote readers would refuse.
                    .filter_map(|t| Transport::new(&t.proto, t.port).ok())
                    .collect(),
                false,
            ),
        };
        match Record::new(
            node,
            self.addresses.clone(),
            state.counter,
            transports,
            legacy,
        ) {
            Ok(r) => Some(r),
            Err(e) => {
                debug!(alive, error = %e, "not published");
                None
            }
        }
    }

    fn node_key(&self, name: &[u8]) -> Option<String> {
        let alive = std::str::from_utf8(name).ok()?;
        NodeName::from_parts(alive, &self.host)
            .ok()
            .map(|n| n.to_string())
    }

    /// Starts the publisher thread and returns the registry observer that
    /// feeds it.
    pub(crate) fn start(self) -> Observer {
        let updates = Updates::new();
        let feed = updates.clone();
        let publisher = EtcdPublisher::new(self.endpoints.clone(), self.cluster.clone(), self.ttl);
        let drive_cfg = DriveConfig::with_ttl(self.ttl);
        info!(
            cluster = %self.cluster,
            host = %self.host,
            ttl_s = self.ttl.as_secs(),
            endpoints = self.endpoints.len(),
            "publishing registrations to etcd"
        );
        let spawned = std::thread::Builder::new()
            .name("epmdx-cluster".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(epmdx_cluster::drive(publisher, updates, drive_cfg)),
                    Err(e) => error!("cannot start the cluster publisher: {e}"),
                }
            });
        if let Err(e) = spawned {
            // EPMD service goes on without publishing rather than refusing.
            error!("cannot start the cluster publisher thread: {e}");
        }
        Box::new(move |name, state| {
            let Some(key) = self.node_key(name) else {
                return;
            };
            let rec = state.and_then(|s| self.record(name, s));
            feed.set(key, rec);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epmd_server::registry::TransportState;

    fn cfg() -> ClusterConfig {
        ClusterConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            cluster: ClusterName::new("c").unwrap(),
            host: "h1".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            ttl: DEFAULT_TTL,
        }
    }

    fn ext(ts: &[(&str, u16)]) -> NodeState {
        NodeState {
            name: b"a".to_vec(),
            counter: 9,
            fd: 3,
            node_type: 77,
            high: 6,
            low: 5,
            kind: KindState::Ext {
                transports: ts
                    .iter()
                    .map(|(p, port)| TransportState {
                        port: *port,
                        flags: 0,
                        proto: (*p).into(),
                        extra: if *p == "uds" {
                            b"/run/a.sock".to_vec()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect(),
            },
        }
    }

    #[test]
    fn records_never_carry_uds_or_socket_paths() {
        let c = cfg();
        let r = c
            .record(b"a", &ext(&[("uds", 1), ("inet_tls", 2), ("inet_tcp", 3)]))
            .unwrap();
        let json = r.to_json();
        assert!(!json.contains("uds") && !json.contains("sock"), "{json}");
        assert_eq!(r.node().as_str(), "a@h1");
        assert_eq!(r.transports().len(), 2);
        assert_eq!(r.creation(), 9);
        // Only a Unix socket: nothing to publish.
        assert_eq!(c.record(b"a", &ext(&[("uds", 1)])), None);
        // Not a node name OTP would accept: not published.
        assert_eq!(c.node_key("a.b".as_bytes()), None);
    }

    #[test]
    fn legacy_registrations_publish_their_port() {
        let c = cfg();
        let st = NodeState {
            kind: KindState::Legacy {
                port: 4000,
                protocol: 0,
                extra: Vec::new(),
            },
            ..ext(&[])
        };
        let r = c.record(b"a", &st).unwrap();
        assert!(r.legacy());
        assert_eq!(r.text_line(), "name a@h1 at port 4000#legacy");
    }
}
