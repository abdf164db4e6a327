//! Transports: how bytes get to another node. One module per transport, in
//! the hickory-dns style; all of them yield a [`BoxStream`] so the handshake
//! and connection code is shared.
//!
//! | [`Proto`] | EPMD name | Framing during the handshake | Extra in EPMD |
//! |---|---|---|---|
//! | `InetTcp` / `Inet6Tcp` | `inet_tcp` / `inet6_tcp` | `u16` | empty |
//! | `InetTls` / `Inet6Tls` | `inet_tls` / `inet6_tls` | `u32` (inside TLS) | empty |
//! | `Uds` | `uds` | `u16` | the socket's absolute path |
//!
//! - [`tcp`]: plain TCP over IPv4 or IPv6.
//! - [`tls`]: TLS with rustls, mutual authentication, peers checked against
//!   the host in their node name.
//! - [`uds`]: Unix-domain sockets in a directory only the node's user can
//!   reach.

pub mod tcp;
pub mod tls;
pub mod uds;

use crate::policy::PolicyError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use dist_proto::Framing;
use tokio::io::{AsyncRead, AsyncWrite};

/// A distribution transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP over IPv4.
    InetTcp,
    /// TCP over IPv6.
    Inet6Tcp,
    /// TLS over IPv4.
    InetTls,
    /// TLS over IPv6.
    Inet6Tls,
    /// A Unix-domain stream socket (same host only).
    Uds,
}

impl Proto {
    /// Every transport, in the order a node offers them by default.
    pub const ALL: [Self; 5] = [
        Self::Uds,
        Self::InetTcp,
        Self::Inet6Tcp,
        Self::InetTls,
        Self::Inet6Tls,
    ];

    /// The protocol name registered with epmdx.
    pub fn name(self) -> &'static str {
        match self {
            Self::InetTcp => "inet_tcp",
            Self::Inet6Tcp => "inet6_tcp",
            Self::InetTls => "inet_tls",
            Self::Inet6Tls => "inet6_tls",
            Self::Uds => "uds",
        }
    }

    /// The transport for a protocol name (a fixed table: names from the
    /// wire never create anything).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Handshake framing: `u32` inside TLS, `u16` otherwise.
    pub fn framing(self) -> Framing {
        if self.is_tls() {
            Framing::U32
        } else {
            Framing::U16
        }
    }

    /// TLS (either family).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::InetTls | Self::Inet6Tls)
    }

    /// Plain TCP (either family).
    pub fn is_plain_tcp(self) -> bool {
        matches!(self, Self::InetTcp | Self::Inet6Tcp)
    }

    /// IPv6 family.
    pub fn is_v6(self) -> bool {
        matches!(self, Self::Inet6Tcp | Self::Inet6Tls)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Proto {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::from_name(s).ok_or_else(|| PolicyError::UnknownTransport(s.to_owned()))
    }
}

/// A byte stream any transport produces.
pub trait DistStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> DistStream for T {}

/// A boxed transport stream.
pub type BoxStream = Box<dyn DistStream>;

/// One listener a node opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The transport.
    pub proto: Proto,
    /// For TCP and TLS: the address (port 0 = any free port). Ignored for UDS.
    pub addr: SocketAddr,
}

impl ListenSpec {
    /// A listener on every interface of the transport's family, any port.
    pub fn any(proto: Proto) -> Self {
        let addr = if proto.is_v6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        Self { proto, addr }
    }
}

impl std::str::FromStr for ListenSpec {
    type Err = PolicyError;
    /// `proto` or `proto@addr:port`, e.g. `inet_tls@0.0.0.0:9100`, `uds`.
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s.split_once('@') {
            None => Ok(Self::any(s.parse()?)),
            Some((p, a)) => Ok(Self {
                proto: p.parse()?,
                addr: a.parse().map_err(|source| PolicyError::BadAddress {
                    text: a.to_owned(),
                    source,
                })?,
            }),
        }
    }
}

/// Errors setting up transports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Socket error.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        cause: io::Error,
    },
    /// TLS configuration (files, keys) is unusable.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// A TLS listener or connection without TLS configuration.
    #[error("transport {0} needs TLS certificates (--tls-cert, --tls-key, --tls-ca)")]
    NoTls(Proto),
    /// The peer's certificate (or ours, to the peer) failed verification.
    #[error("TLS handshake with {peer} failed: {reason}")]
    TlsHandshake {
        /// The peer host.
        peer: String,
        /// What rustls said.
        reason: String,
    },
    /// Another live node already owns the Unix socket path.
    #[error("a node is already listening on {0}")]
    UdsInUse(PathBuf),
    /// A UDS offer without a usable path.
    #[error("invalid Unix socket path in EPMD extra data")]
    BadUdsPath,
}

impl TransportError {
    pub(crate) fn io(what: impl Into<String>, cause: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            cause,
        }
    }

    /// Whether trying another transport makes sense after this error:
    /// yes when the transport could not be reached, never after a
    /// security failure (a certificate that does not verify must not turn
    /// into a silent fallback to plain TCP).
    pub fn allows_failover(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::BadUdsPath)
    }
}
