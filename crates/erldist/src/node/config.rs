//! How a node is set up, and what its API reports: configuration, errors,
//! events and connection descriptions.

use std::sync::Arc;
use std::time::Duration;

use dist_proto::flags;
use dist_proto::packet::DecodeLimits;
use epmd_client::ClientError;
use erl_term::Term;

use crate::admission::AdmissionConfig;
use crate::cluster::Discovery;
use crate::conn::ConnError;
use crate::policy::{FirstOffered, SelectionPolicy};
use crate::transport::tls::{TlsConfig, TlsFiles};
use crate::transport::{uds, ListenSpec, Proto, TransportError};

/// Optional distribution flags this node offers: the traffic it decodes.
/// No atom cache and no fragments, so peers send pass-through messages.
pub const OFFERED_FLAGS: u64 = flags::DEFAULT_OPTIONAL;

/// How a node is set up: [`NodeConfig::new`] and the `with_*` setters
/// (fields stay public for reading and tweaking; new ones may be added).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Full node name, `alive@host`.
    pub name: String,
    /// The shared secret.
    pub cookie: String,
    /// Hidden nodes do not join the peer's `nodes()` list.
    pub hidden: bool,
    /// The transports to listen on, each registered with EPMD. Empty makes
    /// a client-only node that neither listens nor registers.
    pub listen: Vec<ListenSpec>,
    /// Certificates, needed for `inet_tls` / `inet6_tls` (unless
    /// `tls_config` is set).
    pub tls: Option<TlsFiles>,
    /// Ready rustls configurations; used instead of `tls` when set.
    pub tls_config: Option<TlsConfig>,
    /// Directory of the Unix socket (see [`crate::transport::uds`]).
    pub uds_dir: std::path::PathBuf,
    /// Chooses the transport for each outgoing connection.
    pub policy: Arc<dyn SelectionPolicy>,
    /// Try the next candidate when the chosen transport cannot be reached.
    pub failover: bool,
    /// The EPMD port (`ERL_EPMD_PORT`, default 4369), for registration and
    /// lookups.
    pub epmd_port: u16,
    /// `net_ticktime`: a peer silent this long is down; ticks go out every
    /// quarter of it.
    pub net_ticktime: Duration,
    /// Bound on one connection set-up (lookup, connect, handshake).
    pub setup_time: Duration,
    /// Incoming handshakes: pending permits per source and in total, the
    /// deadline of one incoming handshake (at most `setup_time`), and the
    /// failed-cookie lockout per (address, claimed name); see
    /// [`crate::admission`].
    pub admission: AdmissionConfig,
    /// The transport stock callers (PORT_PLEASE2, NAMES) get from epmdx;
    /// `None`: the daemon's default, plain TCP before TLS
    /// (docs/protocol.md §4).
    pub legacy_default: Option<Proto>,
    /// The cluster membership to follow: the node connects to every
    /// member, dialling each with the transports and addresses of its
    /// record instead of asking its host's EPMD ([`crate::cluster`]).
    pub discovery: Option<Arc<dyn Discovery>>,
    /// The memory budget of each received message (default: 64 bytes per
    /// frame byte, at least 1 MiB; bignums up to 4 MiB of digits); see
    /// [`DecodeLimits`] and docs/transports.md, "Decoding limits".
    pub decode_limits: DecodeLimits,
}

impl NodeConfig {
    /// Defaults: visible, listening on all interfaces on a free port, EPMD
    /// from `ERL_EPMD_PORT` or 4369, tick time 60 s, set-up time 7 s.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cookie: cookie.into(),
            hidden: false,
            listen: vec![ListenSpec::any(Proto::InetTcp)],
            tls: None,
            tls_config: None,
            uds_dir: uds::default_dir(),
            policy: Arc::new(FirstOffered),
            failover: true,
            epmd_port: epmd_port_from_env(),
            net_ticktime: Duration::from_secs(60),
            setup_time: Duration::from_secs(7),
            admission: AdmissionConfig::default(),
            legacy_default: None,
            discovery: None,
            decode_limits: DecodeLimits::new(),
        }
    }
}

impl NodeConfig {
    /// Marks the transport stock callers are given (`--legacy-default`).
    pub fn with_legacy_default(mut self, proto: Option<Proto>) -> Self {
        self.legacy_default = proto;
        self
    }

    /// Hidden nodes do not join the peer's `nodes()` list.
    pub fn with_hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    /// The transports to listen on (empty: a client-only node).
    pub fn with_listen(mut self, listen: Vec<ListenSpec>) -> Self {
        self.listen = listen;
        self
    }

    /// Certificates for the TLS transports.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// TLS from rustls configurations built by the caller, instead of
    /// certificate files.
    pub fn with_tls_config(mut self, tls: TlsConfig) -> Self {
        self.tls_config = Some(tls);
        self
    }

    /// The Unix socket's directory.
    pub fn with_uds_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.uds_dir = dir.into();
        self
    }

    /// The transport selection policy.
    pub fn with_policy(mut self, policy: impl SelectionPolicy + 'static) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Whether to try the next transport when one is unreachable.
    pub fn with_failover(mut self, failover: bool) -> Self {
        self.failover = failover;
        self
    }

    /// The EPMD port.
    pub fn with_epmd_port(mut self, port: u16) -> Self {
        self.epmd_port = port;
        self
    }

    /// `net_ticktime`.
    pub fn with_net_ticktime(mut self, t: Duration) -> Self {
        self.net_ticktime = t;
        self
    }

    /// The bound on one connection set-up.
    pub fn with_setup_time(mut self, t: Duration) -> Self {
        self.setup_time = t;
        self
    }

    /// Follow a cluster's members and stay connected to all of them (see
    /// [`crate::cluster`]; with the `etcd` feature,
    /// `crate::cluster::etcd::EtcdDiscovery`).
    pub fn with_discovery(mut self, discovery: impl Discovery + 'static) -> Self {
        self.discovery = Some(Arc::new(discovery));
        self
    }

    /// The memory budget of each received message. A message over it is
    /// dropped with a warning and the connection stays up; a budget below
    /// 48 bytes per frame byte (`erl_term::TERM_COST`) refuses some honest
    /// messages (long lists of small terms).
    pub fn with_decode_limits(mut self, limits: DecodeLimits) -> Self {
        self.decode_limits = limits;
        self
    }

    /// Admission of incoming handshakes (see [`crate::admission`]).
    pub fn with_admission(mut self, admission: AdmissionConfig) -> Self {
        self.admission = admission;
        self
    }
}

/// The EPMD port from `ERL_EPMD_PORT`, else 4369: [`epmd_proto::port_from_env`],
/// the one rule (the C epmd's) for the whole workspace.
pub fn epmd_port_from_env() -> u16 {
    epmd_proto::port_from_env()
}

/// Errors of the node API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A node name that is not `alive@host`, or a bad atom.
    #[error("invalid name {0:?}")]
    BadName(String),
    /// EPMD failed or refused.
    #[error(transparent)]
    Epmd(#[from] ClientError),
    /// The peer is not registered with its host's EPMD.
    #[error("node {0} is not registered with epmd")]
    NotRegistered(String),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A transport could not be set up or reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The selection policy refused the peer.
    #[error("transport selection refused {peer}: {reason}")]
    Refused {
        /// The peer node.
        peer: String,
        /// The policy's reason.
        reason: String,
    },
    /// Connection set-up or connection failure.
    #[error("connection to {peer} failed: {cause}")]
    Connect {
        /// The peer node.
        peer: String,
        /// Why.
        cause: ConnError,
    },
    /// The peer closed the connection right after our challenge reply,
    /// which is how a node rejects a wrong digest: the cookies differ.
    #[error("connection to {peer} failed: cookie mismatch: {peer} closed the connection after our challenge reply")]
    CookieMismatch {
        /// The peer node.
        peer: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The called process went down (or its node did) before replying.
    #[error("process down: {0}")]
    Down(Term),
    /// The name is already registered on this node.
    #[error("name {0} is already registered")]
    NameTaken(String),
}

/// A connection or registration event, for [`Node::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A connection to the node came up.
    Up(String),
    /// The connection went down.
    Down {
        /// The peer node.
        peer: String,
        /// Why, as text (the connection error's message).
        reason: String,
    },
    /// The registration connection to EPMD closed (EPMD restarted or was
    /// killed): the node is not findable until it re-registers, which it
    /// keeps trying with backoff. Existing connections are unaffected.
    RegistrationLost,
    /// Registered with EPMD again after [`NodeEvent::RegistrationLost`].
    Reregistered {
        /// Whether through the epmdx extension (else plain ALIVE2).
        extended: bool,
    },
}

/// What [`Node::connections`] reports per peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The peer node.
    pub peer: String,
    /// The transport in use.
    pub transport: Proto,
    /// Negotiated distribution flags.
    pub flags: u64,
}
