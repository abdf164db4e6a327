//! The cluster record: what one node offers to the rest of the cluster, as
//! JSON under `/epmdx/NAME/nodes/<node>` (see [`crate::key`]).
//!
//! ```json
//! {"node":"a@h1","host":"h1","addresses":["10.0.0.1"],"creation":1719999999,
//!  "transports":[{"proto":"inet_tls","port":41477},{"proto":"inet_tcp","port":49645}],
//!  "legacy":false}
//! ```
//!
//! A record is only ever built or accepted through [`Record::new`] /
//! [`Record::parse`], which enforce the rules remote readers rely on: a valid
//! `alive@host` name whose host part is `host`, IP addresses only, one to
//! [`MAX_TRANSPORTS`] transports of a known remote protocol
//! ([`KNOWN_PROTOCOLS`]: never `uds`, so never a socket path), no port 0, no
//! protocol twice. Pure: no I/O.

use std::net::IpAddr;

use epmd_proto::limits::MAX_TRANSPORTS;
use epmd_proto::name::proto;
use epmd_proto::{NodeName, NodeNameError, ProtoName};
use serde::{Deserialize, Serialize};

/// The protocols a record may name: distribution that can cross hosts.
/// Anything else (a Unix socket, a name no reader knows how to dial) is
/// refused, so readers never turn an unknown string into a transport.
pub const KNOWN_PROTOCOLS: &[&str] = &[
    proto::INET_TCP,
    proto::INET6_TCP,
    proto::INET_TLS,
    proto::INET6_TLS,
];

/// The largest record value accepted, in bytes. A valid record with 16
/// transports and a few addresses is well under 2 KiB; this bounds what a
/// reader parses from a hostile or corrupted key.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// The most addresses one record may carry.
pub const MAX_ADDRESSES: usize = 32;

/// Why a value is not a valid record. Callers that read the cluster ignore
/// such a record with a warning and count it; they never act on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("record is {0} bytes, more than {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    /// Not JSON, or JSON of the wrong shape (missing or mistyped field).
    #[error("not a valid record: {0}")]
    Json(String),
    /// `node` is not a valid `alive@host` name.
    #[error("bad node name {name:?}: {source}")]
    BadNode {
        /// The name as found.
        name: String,
        /// What is wrong with it.
        source: NodeNameError,
    },
    /// `host` differs from the host part of `node`.
    #[error("host {host:?} does not match node {node:?}")]
    HostMismatch {
        /// The node name.
        node: String,
        /// The host field.
        host: String,
    },
    /// More than [`MAX_ADDRESSES`] addresses.
    #[error("{0} addresses, more than {MAX_ADDRESSES}")]
    TooManyAddresses(usize),
    /// No transport, or more than [`MAX_TRANSPORTS`].
    #[error("{0} transports (1 to {MAX_TRANSPORTS} allowed)")]
    TransportCount(usize),
    /// A protocol outside [`KNOWN_PROTOCOLS`] (including `uds`).
    #[error("unknown protocol {0:?}")]
    UnknownProtocol(String),
    /// A transport on port 0.
    #[error("transport {0} claims port 0")]
    PortZero(String),
    /// The same protocol twice.
    #[error("protocol {0} listed twice")]
    DuplicateProtocol(String),
    /// The key does not name the node the value describes.
    #[error("key names {key:?} but the record is for {node:?}")]
    KeyMismatch {
        /// The node the key names.
        key: String,
        /// The node the value names.
        node: String,
    },
}

/// One transport of a record: a known remote protocol on a non-zero port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transport {
    proto: ProtoName,
    port: u16,
}

impl Transport {
    /// Checks and builds a transport.
    pub fn new(proto_name: &str, port: u16) -> Result<Self, RecordError> {
        if !KNOWN_PROTOCOLS.contains(&proto_name) {
            return Err(RecordError::UnknownProtocol(truncate(proto_name)));
        }
        if port == 0 {
            return Err(RecordError::PortZero(proto_name.to_owned()));
        }
        let proto = ProtoName::new(proto_name)
            .map_err(|_| RecordError::UnknownProtocol(truncate(proto_name)))?;
        Ok(Self { proto, port })
    }

    /// The protocol.
    pub fn proto(&self) -> &ProtoName {
        &self.proto
    }

    /// The listening port (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A validated cluster record. Fields are private so every value in hand
/// passed the checks; read them with the accessors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    node: NodeName,
    addresses: Vec<IpAddr>,
    creation: u32,
    transports: Vec<Transport>,
    legacy: bool,
}

/// The JSON shape, field for field.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    node: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    host: std::borrow::Cow<'a, str>,
    addresses: Vec<IpAddr>,
    creation: u32,
    transports: Vec<WireTransport<'a>>,
    legacy: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTransport<'a> {
    #[serde(borrow)]
    proto: std::borrow::Cow<'a, str>,
    port: u16,
}

/// At most 64 characters of untrusted text in an error message.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Record {
    /// Builds a record, with the same checks [`Record::parse`] applies.
    /// `legacy` says the node registered with ALIVE2 (its one transport is
    /// what a stock epmd would report).
    pub fn new(
        node: NodeName,
        addresses: Vec<IpAddr>,
        creation: u32,
        transports: Vec<Transport>,
        legacy: bool,
    ) -> Result<Self, RecordError> {
        if addresses.len() > MAX_ADDRESSES {
            return Err(RecordError::TooManyAddresses(addresses.len()));
        }
        if transports.is_empty() || transports.len() > MAX_TRANSPORTS {
            return Err(RecordError::TransportCount(transports.len()));
        }
        for (i, t) in transports.iter().enumerate() {
            if transports[..i].iter().any(|o| o.proto == t.proto) {
                return Err(RecordError::DuplicateProtocol(t.proto.to_string()));
            }
        }
        Ok(Self {
            node,
            addresses,
            creation,
            transports,
            legacy,
        })
    }

    /// Parses and validates a record value.
    pub fn parse(value: &[u8]) -> Result<Self, RecordError> {
        if value.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(value.len()));
        }
        let wire: Wire<'_> =
            serde_json::from_slice(value).map_err(|e| RecordError::Json(e.to_string()))?;
        let node = NodeName::new(&wire.node).map_err(|source| RecordError::BadNode {
            name: truncate(&wire.node),
            source,
        })?;
        if node.host() != wire.host {
            return Err(RecordError::HostMismatch {
                node: node.to_string(),
                host: truncate(&wire.host),
            });
        }
        if wire.transports.len() > MAX_TRANSPORTS {
            return Err(RecordError::TransportCount(wire.transports.len()));
        }
        let transports = wire
            .transports
            .iter()
            .map(|t| Transport::new(&t.proto, t.port))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(node, wire.addresses, wire.creation, transports, wire.legacy)
    }

    /// Parses a value found under the key of `key_node`, which must be the
    /// node the value describes (a record copied under another key is
    /// refused rather than believed).
    pub fn parse_for(key_node: &str, value: &[u8]) -> Result<Self, RecordError> {
        let rec = Self::parse(value)?;
        if rec.node.as_str() != key_node {
            return Err(RecordError::KeyMismatch {
                key: truncate(key_node),
                node: rec.node.to_string(),
            });
        }
        Ok(rec)
    }

    /// The JSON value stored in etcd.
    pub fn to_json(&self) -> String {
        let wire = Wire {
            node: self.node.as_str().into(),
            host: self.node.host().into(),
            addresses: self.addresses.clone(),
            creation: self.creation,
            transports: self
                .transports
                .iter()
                .map(|t| WireTransport {
                    proto: t.proto.as_str().into(),
                    port: t.port,
                })
                .collect(),
            legacy: self.legacy,
        };
        // Strings, numbers, bools and IP addresses always serialise.
        serde_json::to_string(&wire).expect("a record serialises")
    }

    /// The node, `alive@host`.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The host part of the node name: what peers resolve when they have
    /// no address.
    pub fn host(&self) -> &str {
        self.node.host()
    }

    /// Addresses the host can be reached at (may be empty: resolve
    /// [`Record::host`]).
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// The node's creation, as its EPMD handed it out.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// The transports, in the node's order of registration.
    pub fn transports(&self) -> &[Transport] {
        &self.transports
    }

    /// The transport of `proto`, if offered.
    pub fn transport(&self, proto_name: &str) -> Option<&Transport> {
        self.transports
            .iter()
            .find(|t| t.proto.as_str() == proto_name)
    }

    /// Whether the node registered with ALIVE2 (a stock OTP node): its one
    /// transport is the port a stock epmd would report.
    pub fn legacy(&self) -> bool {
        self.legacy
    }

    /// The `epmdx nodes` line: `name a@h1 at port 49645#inet_tcp 41477#inet_tls`,
    /// with `#legacy` for an ALIVE2 registration.
    pub fn text_line(&self) -> String {
        let mut line = format!("name {} at port", self.node);
        for t in &self.transports {
            let p = if self.legacy {
                "legacy"
            } else {
                t.proto.as_str()
            };
            line.push_str(&format!(" {}#{p}", t.port));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record::new(
            NodeName::new("a@h1").unwrap(),
            vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            7,
            vec![
                Transport::new("inet_tls", 41477).unwrap(),
                Transport::new("inet_tcp", 49645).unwrap(),
            ],
            false,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_through_the_documented_json() {
        let r = rec();
        let json = r.to_json();
        assert_eq!(
            json,
            r#"{"node":"a@h1","host":"h1","addresses":["10.0.0.1","fd00::1"],"creation":7,"transports":[{"proto":"inet_tls","port":41477},{"proto":"inet_tcp","port":49645}],"legacy":false}"#
        );
        assert_eq!(Record::parse(json.as_bytes()).unwrap(), r);
        assert_eq!(
            r.text_line(),
            "name a@h1 at port 41477#inet_tls 49645#inet_tcp"
        );
    }

    fn with(f: impl FnOnce(&mut serde_json::Value)) -> Result<Record, RecordError> {
        let mut v: serde_json::Value = serde_json::from_str(&rec().to_json()).unwrap();
        f(&mut v);
        Record::parse(v.to_string().as_bytes())
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        assert!(matches!(
            Record::parse(b"{not json"),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(Record::parse(b""), Err(RecordError::Json(_))));
        assert!(matches!(Record::parse(b"[]"), Err(RecordError::Json(_))));
        assert!(matches!(
            with(|v| v["transports"][0]["proto"] = "uds".into()),
            Err(RecordError::UnknownProtocol(p)) if p == "uds"
        ));
        assert!(matches!(
            with(|v| v["transports"][0]["proto"] = "quic".into()),
            Err(RecordError::UnknownProtocol(_))
        ));
        assert!(matches!(
            with(|v| v["transports"][1]["port"] = 0.into()),
            Err(RecordError::PortZero(p)) if p == "inet_tcp"
        ));
        assert!(matches!(
            with(|v| v["transports"][1]["port"] = 65536.into()),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            with(|v| v["transports"] = serde_json::json!([])),
            Err(RecordError::TransportCount(0))
        ));
        assert!(matches!(
            with(|v| v["transports"][1]["proto"] = "inet_tls".into()),
            Err(RecordError::DuplicateProtocol(_))
        ));
        assert!(matches!(
            with(|v| v["host"] = "h2".into()),
            Err(RecordError::HostMismatch { .. })
        ));
        assert!(matches!(
            with(|v| v["node"] = "a b@h1".into()),
            Err(RecordError::BadNode { .. })
        ));
        assert!(matches!(
            with(|v| v["addresses"][0] = "h1.example".into()),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            with(|v| v["extra"] = "/tmp/sock".into()),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            with(|v| {
                v.as_object_mut().unwrap().remove("creation");
            }),
            Err(RecordError::Json(_))
        ));
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(matches!(Record::parse(&big), Err(RecordError::TooLarge(_))));
    }

    #[test]
    fn the_key_must_name_the_node() {
        let json = rec().to_json();
        assert!(Record::parse_for("a@h1", json.as_bytes()).is_ok());
        assert!(matches!(
            Record::parse_for("b@h1", json.as_bytes()),
            Err(RecordError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn legacy_line_reads_like_epmdx_nodes() {
        let r = Record::new(
            NodeName::new("s@h2").unwrap(),
            vec![],
            3,
            vec![Transport::new("inet_tcp", 40001).unwrap()],
            true,
        )
        .unwrap();
        assert_eq!(r.text_line(), "name s@h2 at port 40001#legacy");
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the parser, and whatever it accepts
        /// has only known protocols and non-zero ports.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(r) = Record::parse(&bytes) {
                for t in r.transports() {
                    proptest::prop_assert!(KNOWN_PROTOCOLS.contains(&t.proto().as_str()));
                    proptest::prop_assert!(t.port() != 0);
                }
            }
        }
    }
}
