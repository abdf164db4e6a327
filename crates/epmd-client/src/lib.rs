//! Async EPMD client for every request: OTP's (ALIVE2, PORT_PLEASE2, NAMES,
//! DUMP, KILL, STOP) and the epmdx extension (ALIVE3, PORT_PLEASE3, NAMES3,
//! DUMP3, UNREG3).
//!
//! Each request opens its own connection, as EPMD requires, except the
//! registrations: [`Registration`] and [`ExtRegistration`] own the connection
//! whose life is the registration's life.
//!
//! Against a stock EPMD, extended requests are closed without a reply; the
//! client reports that as [`ClientError::Unsupported`], and [`Client::lookup`]
//! falls back to PORT_PLEASE2 and says so in its result.
//!
//! # Layout
//! Everything is in this file: [`Client`] (one method per request), the two
//! registration handles, and [`ClientError`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use epmd_proto::ext::{self, NodeRecord, Status, TransportRef};
use epmd_proto::legacy::{self, Alive2Req, Alive2Resp, PortInfo};
use epmd_proto::{code, frame, Malformed, NodeName, NodeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use epmd_proto::ext::{Dump3, Names3, Transport};

/// Errors from EPMD requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect to any address.
    #[error("cannot connect to epmd at {addrs}: {cause}")]
    Connect {
        /// The addresses tried.
        addrs: String,
        /// The last error.
        cause: io::Error,
    },
    /// An I/O error after connecting.
    #[error("epmd I/O error: {0}")]
    Io(#[from] io::Error),
    /// The daemon did not answer in time.
    #[error("epmd did not answer within {0:?}")]
    Timeout(Duration),
    /// The daemon closed the connection without a (complete) reply.
    #[error("epmd closed the connection without a reply")]
    NoReply,
    /// The daemon closed an extended request without a reply: it does not
    /// speak the epmdx extension (a stock OTP epmd).
    #[error("this epmd does not support the epmdx extension")]
    Unsupported,
    /// The reply could not be decoded.
    #[error("malformed reply from epmd: {0}")]
    Malformed(#[from] Malformed),
    /// The daemon refused a registration.
    #[error("epmd refused the registration: {}", .0.describe())]
    Refused(Status),
    /// A NAMES reply reported another port than the one dialled (OTP's
    /// `erl_epmd` rejects this too).
    #[error("epmd reported port {reported}, but {dialled} was dialled")]
    PortMismatch {
        /// Port in the reply header.
        reported: u32,
        /// Port the client connected to.
        dialled: u16,
    },
}

/// Result alias for this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An EPMD client bound to one daemon address (or a list tried in order).
#[derive(Debug, Clone)]
pub struct Client {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
}

/// A node's description for an extended registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpec<'a> {
    /// Node name (the part before `@`).
    pub name: &'a str,
    /// [`NodeType`](epmd_proto::NodeType) code: 77 (`M`) normal, 72 (`H`) hidden.
    pub node_type: u8,
    /// Highest distribution version.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// The protocol of the transport legacy callers (PORT_PLEASE2, NAMES,
    /// DUMP) should see; `None`: the daemon's default (docs/protocol.md §4).
    pub legacy_default: Option<&'a str>,
}

impl<'a> NodeSpec<'a> {
    /// The spec for a node named `node` (its alive part is what epmd stores)
    /// of type `node_type`, speaking distribution version 6 only.
    pub fn of(node: &'a NodeName, node_type: NodeType) -> Self {
        Self {
            name: node.alive(),
            node_type: node_type.code(),
            high: 6,
            low: 6,
            legacy_default: None,
        }
    }

    /// A normal node speaking distribution version 6 only, like OTP 25.
    pub fn otp25(name: &'a str) -> Self {
        Self {
            name,
            node_type: NodeType::Normal.code(),
            high: 6,
            low: 6,
            legacy_default: None,
        }
    }
}

/// The result of [`Client::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The node, with the transports the caller may use.
    Found(NodeRecord),
    /// No such node.
    NotFound,
    /// The daemon does not speak the extension; PORT_PLEASE2 answered. The
    /// record is marked legacy, with one transport of unknown protocol.
    Legacy(Option<NodeRecord>),
}

impl Client {
    /// A client for one daemon address.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addrs: vec![addr],
            timeout: Duration::from_secs(10),
        }
    }

    /// A client for the local daemon on `port`: `::1` first, then
    /// `127.0.0.1`, as OTP's `epmd` client modes do.
    pub fn local(port: u16) -> Self {
        Self {
            addrs: vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            ],
            timeout: Duration::from_secs(10),
        }
    }

    /// A client for `host`'s daemon on `port` (every address `host` resolves to).
    pub async fn for_host(host: &str, port: u16) -> Result<Self> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|cause| ClientError::Connect {
                addrs: format!("{host}:{port}"),
                cause,
            })?
            .collect();
        Ok(Self {
            addrs,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets the per-request timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The port this client dials.
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(0, SocketAddr::port)
    }

    /// Opens a connection to the first address that accepts.
    pub async fn connect(&self) -> Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        for a in &self.addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(a)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(ClientError::Connect {
            addrs: self
                .addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            cause: last,
        })
    }

    /// Sends one framed request and reads until the daemon closes.
    pub async fn request_raw(&self, framed: &[u8]) -> Result<Vec<u8>> {
        let mut s = self.connect().await?;
        s.write_all(framed).await?;
        let mut out = Vec::new();
        match tokio::time::timeout(self.timeout, s.read_to_end(&mut out)).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) if out.is_empty() => Err(e.into()),
            Ok(_) => Ok(out),
        }
    }

    /// PORT_PLEASE2: `Ok(None)` if the node is not registered.
    pub async fn port_please(&self, name: &str) -> Result<Option<PortInfo>> {
        let reply = self
            .request_raw(&legacy::encode_port_please2(name.as_bytes()))
            .await?;
        if reply.is_empty() {
            return Err(ClientError::NoReply);
        }
        Ok(PortInfo::decode_reply(&reply)?)
    }

    /// NAMES: the raw listing text after the u32 port header, checked
    /// against the dialled port.
    pub async fn names_raw(&self) -> Result<(u32, Vec<u8>)> {
        let reply = self.request_raw(&frame::encode(&[code::NAMES_REQ])).await?;
        split_port_header(reply)
    }

    /// NAMES, parsed into `(name, port)` pairs, newest registration first.
    pub async fn names(&self) -> Result<Vec<(String, u16)>> {
        let (port, text) = self.names_raw().await?;
        if port != u32::from(self.port()) {
            return Err(ClientError::PortMismatch {
                reported: port,
                dialled: self.port(),
            });
        }
        Ok(legacy::parse_names_text(&text)
            .into_iter()
            .map(|(n, p)| (String::from_utf8_lossy(&n).into_owned(), p))
            .collect())
    }

    /// DUMP (local only): the raw dump after the u32 header, NULs included.
    pub async fn dump_raw(&self) -> Result<(u32, Vec<u8>)> {
        let reply = self.request_raw(&frame::encode(&[code::DUMP_REQ])).await?;
        split_port_header(reply)
    }

    /// KILL (local only): the raw reply, `OK` or `NO`.
    pub async fn kill(&self) -> Result<Vec<u8>> {
        self.request_raw(&frame::encode(&[code::KILL_REQ])).await
    }

    /// STOP (local only, relaxed mode): the raw reply (`STOPPED`, or
    /// `NOEXIST` + `STOPPED`); empty when the daemon refused silently.
    pub async fn stop(&self, name: &str) -> Result<Vec<u8>> {
        let mut body = vec![code::STOP_REQ];
        body.extend_from_slice(name.as_bytes());
        self.request_raw(&frame::encode(&body)).await
    }

    /// ALIVE2: registers a node. The registration lasts while the returned
    /// handle (and its connection) lives.
    pub async fn register(&self, req: &Alive2Req<'_>) -> Result<Registration> {
        let mut s = self.connect().await?;
        s.write_all(&req.encode()).await?;
        let want = if req.wants_x_reply() { 6 } else { 4 };
        let mut buf = vec![0u8; want];
        self.read_exact_timed(&mut s, &mut buf).await?;
        let resp = Alive2Resp::decode(&buf)?.ok_or(ClientError::NoReply)?;
        if resp.result() != 0 {
            return Err(ClientError::Refused(Status::Refused));
        }
        Ok(Registration {
            stream: s,
            creation: resp.creation(),
        })
    }

    /// ALIVE3: registers a node with its transports. Later transports are
    /// added through the returned handle, over the same connection.
    pub async fn register_ext(
        &self,
        node: NodeSpec<'_>,
        transports: &[TransportRef<'_>],
    ) -> Result<ExtRegistration> {
        let mut s = self.connect().await?;
        let req = alive3(node, transports);
        s.write_all(&req.encode()).await?;
        let (status, creation) = self.read_alive3_reply(&mut s).await?;
        if status != Status::Ok {
            return Err(ClientError::Refused(status));
        }
        Ok(ExtRegistration {
            stream: s,
            creation,
            name: node.name.to_owned(),
            node_type: node.node_type,
            high: node.high,
            low: node.low,
            timeout: self.timeout,
        })
    }

    async fn read_alive3_reply(&self, s: &mut TcpStream) -> Result<(Status, u32)> {
        let mut buf = [0u8; 8];
        match self.read_exact_timed(s, &mut buf).await {
            Err(ClientError::NoReply) => return Err(ClientError::Unsupported),
            r => r?,
        }
        ext::decode_alive3_reply(&buf)?.ok_or(ClientError::NoReply)
    }

    async fn read_exact_timed(&self, s: &mut TcpStream, buf: &mut [u8]) -> Result<()> {
        match tokio::time::timeout(self.timeout, s.read_exact(buf)).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ClientError::NoReply),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// PORT_PLEASE3: the node's transports that match `protos` (most
    /// preferred first; empty = all), or `Ok(None)` if it is not registered.
    pub async fn port_please3(&self, name: &str, protos: &[&str]) -> Result<Option<NodeRecord>> {
        let req = ext::PortPlease3Req {
            protos: protos.iter().map(|p| p.as_bytes()).collect(),
            name: name.as_bytes(),
        };
        let reply = self.request_raw(&req.encode()).await?;
        if reply.is_empty() {
            return Err(ClientError::Unsupported);
        }
        let body = ext::check_reply16(&reply).ok_or(ClientError::NoReply)?;
        match ext::decode_port3_body(body)? {
            Ok(rec) => Ok(Some(rec)),
            Err(Status::Refused) => Ok(None),
            Err(s) => Err(ClientError::Refused(s)),
        }
    }

    /// [`Client::lookup`] of a full node name: epmd is asked for its alive
    /// part (the host part names the daemon, which the caller chose).
    pub async fn lookup_node(&self, node: &NodeName, protos: &[&str]) -> Result<Lookup> {
        self.lookup(node.alive(), protos).await
    }

    /// Looks a node up with PORT_PLEASE3, falling back to PORT_PLEASE2 when
    /// the daemon does not speak the extension.
    pub async fn lookup(&self, name: &str, protos: &[&str]) -> Result<Lookup> {
        match self.port_please3(name, protos).await {
            Ok(Some(rec)) => Ok(Lookup::Found(rec)),
            Ok(None) => Ok(Lookup::NotFound),
            Err(ClientError::Unsupported) => {
                let info = self.port_please(name).await?;
                Ok(Lookup::Legacy(info.map(|i| NodeRecord {
                    node_type: i.node_type,
                    high: i.high,
                    low: i.low,
                    legacy: true,
                    name: i.name,
                    transports: vec![Transport {
                        port: i.port,
                        proto: String::new(),
                        extra: i.extra,
                    }],
                })))
            }
            Err(e) => Err(e),
        }
    }

    /// NAMES3: every node with all the transports this caller may see.
    pub async fn names3(&self) -> Result<Names3> {
        let reply = self.request_raw(&ext::encode_names3()).await?;
        if reply.is_empty() {
            return Err(ClientError::Unsupported);
        }
        let body = ext::check_reply32(&reply).ok_or(ClientError::NoReply)?;
        Ok(ext::decode_names3_body(body)?)
    }

    /// DUMP3 (local only): live nodes with creations, and the unregistered list.
    pub async fn dump3(&self) -> Result<Dump3> {
        let reply = self.request_raw(&ext::encode_dump3()).await?;
        if reply.is_empty() {
            return Err(ClientError::Unsupported);
        }
        let body = ext::check_reply32(&reply).ok_or(ClientError::NoReply)?;
        Ok(ext::decode_dump3_body(body)?)
    }
}

fn split_port_header(mut reply: Vec<u8>) -> Result<(u32, Vec<u8>)> {
    if reply.len() < 4 {
        return Err(ClientError::NoReply);
    }
    let port = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
    Ok((port, reply.split_off(4)))
}

fn alive3<'a>(node: NodeSpec<'a>, transports: &[TransportRef<'a>]) -> ext::Alive3Req<'a> {
    ext::Alive3Req {
        node_type: node.node_type,
        high: node.high,
        low: node.low,
        name: node.name.as_bytes(),
        transports: transports.to_vec(),
        legacy_default: transports
            .iter()
            .take(16)
            .enumerate()
            .filter(|(_, t)| node.legacy_default.map(str::as_bytes) == Some(t.proto))
            .fold(0, |m, (i, _)| m | 1 << i),
    }
}

/// A live ALIVE2 registration. Dropping it (or [`Registration::close`])
/// closes the connection, which unregisters the node.
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
    creation: u32,
}

impl Registration {
    /// The creation epmd assigned (1..=3 for a version-5 request).
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// Waits until the daemon closes the connection (it was stopped, or
    /// the daemon exited).
    pub async fn closed(&mut self) {
        let mut b = [0u8; 1];
        let _ = self.stream.read(&mut b).await;
    }

    /// Unregisters by closing the connection.
    pub fn close(self) {}
}

/// A live ALIVE3 registration: add or remove transports over its own
/// connection; dropping it unregisters every transport.
#[derive(Debug)]
pub struct ExtRegistration {
    stream: TcpStream,
    creation: u32,
    name: String,
    node_type: u8,
    high: u16,
    low: u16,
    timeout: Duration,
}

impl ExtRegistration {
    /// The 32-bit creation.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// The registered node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn exchange(&mut self, framed: &[u8], reply: &mut [u8]) -> Result<()> {
        self.stream.write_all(framed).await?;
        match tokio::time::timeout(self.timeout, self.stream.read_exact(reply)).await {
            Err(_) => Err(ClientError::Timeout(self.timeout)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ClientError::NoReply),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Adds transports to this node (atomically: all or none).
    pub async fn add(&mut self, transports: &[TransportRef<'_>]) -> Result<()> {
        let spec = NodeSpec {
            name: &self.name,
            node_type: self.node_type,
            high: self.high,
            low: self.low,
            legacy_default: None,
        };
        let framed = alive3(spec, transports).encode();
        let mut buf = [0u8; 8];
        self.exchange(&framed, &mut buf).await?;
        let (status, _) = ext::decode_alive3_reply(&buf)?.ok_or(ClientError::NoReply)?;
        match status {
            Status::Ok => Ok(()),
            s => Err(ClientError::Refused(s)),
        }
    }

    /// Removes one transport from this node.
    pub async fn remove(&mut self, proto: &str) -> Result<()> {
        let framed = ext::Unreg3Req {
            proto: proto.as_bytes(),
        }
        .encode();
        let mut buf = [0u8; 4];
        self.exchange(&framed, &mut buf).await?;
        match ext::decode_unreg3_reply(&buf)?.ok_or(ClientError::NoReply)? {
            Status::Ok => Ok(()),
            s => Err(ClientError::Refused(s)),
        }
    }

    /// Waits until the daemon closes the connection.
    pub async fn closed(&mut self) {
        let mut b = [0u8; 1];
        let _ = self.stream.read(&mut b).await;
    }

    /// Unregisters every transport by closing the connection.
    pub fn close(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_of_a_node_name_registers_its_alive_part() {
        let n = NodeName::new("foo@bar").unwrap();
        let spec = NodeSpec::of(&n, NodeType::Hidden);
        assert_eq!((spec.name, spec.node_type), ("foo", 72));
        assert_eq!(NodeSpec::otp25("foo"), NodeSpec::of(&n, NodeType::Normal));
    }
}
