//! The epmdx multi-transport extension (see `docs/protocol.md`).
//!
//! Requests use the ordinary `u16` framing. Every reply starts with a length
//! prefix, unlike OTP's replies: `u16` for ALIVE3, PORT_PLEASE3 and UNREG3,
//! `u32` for the NAMES3 and DUMP3 listings, which can exceed 64 KiB.
//!
//! A node record, shared by PORT3, NAMES3 and DUMP3 replies:
//!
//! ```text
//! NodeType u8 | High u16 | Low u16 | Flags u8 | Nlen u16 | Name
//!   | Count u8 | { Port u16 | Plen u8 | Proto | Elen u16 | Extra } × Count
//! ```
//!
//! Flags bit 0 ([`FLAG_LEGACY`]) marks a node that registered with ALIVE2: it
//! has exactly one transport, whose protocol is unknown (Plen = 0).

use crate::code;
use crate::frame::{self, Reader};
use crate::legacy::{put_bytes16, take_bytes16};
use crate::limits::MAX_TRANSPORTS;
use crate::name::{check_node_name, check_proto_name};
use crate::request::Malformed;

/// Node-record flag: registered with legacy ALIVE2; protocol unknown.
pub const FLAG_LEGACY: u8 = 1;

/// ALIVE3 only: bit 7 of a transport's Plen marks it as the one legacy
/// callers (PORT_PLEASE2, NAMES, DUMP) see. Protocol names are at most 32
/// bytes, so the bit is free (docs/protocol.md §3.1).
pub const PLEN_LEGACY_DEFAULT: u8 = 0x80;

/// Result codes of the extension's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Generic refusal (bad node name, empty request); for a lookup, "no such node".
    Refused = 1,
    /// Another connection holds this node name.
    NameInUse = 2,
    /// This node already registered a transport with that protocol name.
    ProtoInUse = 3,
    /// More than 16 transports for the node, or in one request.
    TooManyTransports = 4,
    /// A protocol name breaks the `[a-z][a-z0-9_]{0,31}` rule, or repeats.
    BadProtocol = 5,
    /// A follow-up ALIVE3 names another node, type or version range.
    NodeMismatch = 6,
    /// The daemon holds as many registrations as it may.
    Capacity = 7,
    /// UNREG3 of a protocol the node has not registered.
    NoSuchTransport = 8,
    /// UNREG3 on a connection that holds no extended registration.
    NotRegistered = 9,
}

impl Status {
    /// Decodes a status byte; unknown values map to [`Status::Refused`].
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Ok,
            2 => Self::NameInUse,
            3 => Self::ProtoInUse,
            4 => Self::TooManyTransports,
            5 => Self::BadProtocol,
            6 => Self::NodeMismatch,
            7 => Self::Capacity,
            8 => Self::NoSuchTransport,
            9 => Self::NotRegistered,
            _ => Self::Refused,
        }
    }

    /// A short human-readable explanation.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::NameInUse => "node name already registered by another connection",
            Self::ProtoInUse => "protocol already registered for this node",
            Self::TooManyTransports => "too many transports",
            Self::BadProtocol => "invalid or repeated protocol name",
            Self::NodeMismatch => "request does not match this connection's node",
            Self::Capacity => "daemon registration capacity reached",
            Self::NoSuchTransport => "no such transport",
            Self::NotRegistered => "connection holds no registration",
        }
    }
}

/// One transport, borrowed from a request or from the daemon's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportRef<'a> {
    /// Listen port (0 for transports that have none, such as a Unix socket).
    pub port: u16,
    /// Protocol name bytes (empty for a legacy registration).
    pub proto: &'a [u8],
    /// Transport-specific data, e.g. a Unix socket path.
    pub extra: &'a [u8],
}

/// ALIVE3_REQ: register one or more transports of a node.
///
/// `88 | NodeType u8 | High u16 | Low u16 | Nlen u16 | Name | Count u8 |
/// {Port u16 | Plen u8 | Proto | Elen u16 | Extra} × Count`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alive3Req<'a> {
    /// [`NodeType`](crate::NodeType) code: 77 normal, 72 hidden (any byte is kept).
    pub node_type: u8,
    /// Highest distribution version.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// Node name.
    pub name: &'a [u8],
    /// Transports to add.
    pub transports: Vec<TransportRef<'a>>,
    /// Bit `i` set: `transports[i]` is marked as what legacy callers see
    /// ([`PLEN_LEGACY_DEFAULT`] on the wire). 0: the daemon's default.
    pub legacy_default: u16,
}

impl<'a> Alive3Req<'a> {
    /// Decodes a frame body whose first byte is 88. Structural errors close
    /// the connection; semantic ones are found by [`Self::validate`].
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body.get(1..).ok_or(Malformed::TooShort)?);
        let node_type = r.u8().ok_or(Malformed::TooShort)?;
        let high = r.u16().ok_or(Malformed::TooShort)?;
        let low = r.u16().ok_or(Malformed::TooShort)?;
        let name = take_bytes16(&mut r)?;
        let count = usize::from(r.u8().ok_or(Malformed::TooShort)?);
        // Each transport needs at least 5 bytes; refuse counts the packet
        // cannot hold before allocating.
        if count * 5 > r.remaining() {
            return Err(Malformed::BadLength);
        }
        let mut transports = Vec::with_capacity(count);
        let mut legacy_default = 0u16;
        for i in 0..count {
            let port = r.u16().ok_or(Malformed::TooShort)?;
            let plen = r.u8().ok_or(Malformed::TooShort)?;
            if plen & PLEN_LEGACY_DEFAULT != 0 && i < 16 {
                legacy_default |= 1 << i;
            }
            let len = usize::from(plen & !PLEN_LEGACY_DEFAULT);
            let proto = r.bytes(len).ok_or(Malformed::BadLength)?;
            let extra = take_bytes16(&mut r)?;
            transports.push(TransportRef { port, proto, extra });
        }
        if r.remaining() != 0 {
            return Err(Malformed::TrailingBytes);
        }
        if name.contains(&0) {
            return Err(Malformed::NulInName);
        }
        Ok(Self {
            node_type,
            high,
            low,
            name,
            transports,
            legacy_default,
        })
    }

    /// Whether `transports[i]` is marked for legacy callers.
    pub fn is_legacy_default(&self, i: usize) -> bool {
        i < 16 && self.legacy_default & (1 << i) != 0
    }

    /// Checks names and counts. Duplicates against already registered
    /// transports are the daemon's business.
    pub fn validate(&self) -> Result<(), Status> {
        check_node_name(self.name).map_err(|_| Status::Refused)?;
        if self.name.is_empty() || self.transports.is_empty() {
            return Err(Status::Refused);
        }
        if self.transports.len() > MAX_TRANSPORTS {
            return Err(Status::TooManyTransports);
        }
        for (i, t) in self.transports.iter().enumerate() {
            check_proto_name(t.proto).map_err(|_| Status::BadProtocol)?;
            if self.transports[..i].iter().any(|o| o.proto == t.proto) {
                return Err(Status::BadProtocol);
            }
            if t.extra.len() > crate::limits::MAX_SYMLEN {
                return Err(Status::Refused);
            }
        }
        Ok(())
    }

    /// Encodes the framed request.
    ///
    /// # Panics
    /// Panics if there are more than 255 transports or a field exceeds its
    /// wire width; validate first.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![code::ALIVE3_REQ, self.node_type];
        b.extend_from_slice(&self.high.to_be_bytes());
        b.extend_from_slice(&self.low.to_be_bytes());
        put_bytes16(&mut b, self.name);
        b.push(u8::try_from(self.transports.len()).expect("transport count fits in u8"));
        for (i, t) in self.transports.iter().enumerate() {
            let start = b.len();
            put_transport(&mut b, t);
            if i < 16 && self.legacy_default & (1 << i) != 0 {
                b[start + 2] |= PLEN_LEGACY_DEFAULT;
            }
        }
        frame::encode(&b)
    }
}

/// Encodes the ALIVE3 reply: `Len=6 | 118 | Status | Creation u32`.
pub fn encode_alive3_reply(status: Status, creation: u32) -> Vec<u8> {
    let c = creation.to_be_bytes();
    vec![
        0,
        6,
        code::ALIVE2_X_RESP,
        status as u8,
        c[0],
        c[1],
        c[2],
        c[3],
    ]
}

/// Decodes an ALIVE3 reply; `Ok(None)` if incomplete.
pub fn decode_alive3_reply(buf: &[u8]) -> Result<Option<(Status, u32)>, Malformed> {
    let Some(b) = buf.get(..8) else {
        return Ok(None);
    };
    if b[..3] != [0, 6, code::ALIVE2_X_RESP] {
        return Err(Malformed::UnknownCommand);
    }
    Ok(Some((
        Status::from_u8(b[3]),
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    )))
}

/// PORT_PLEASE3_REQ: look a node up, filtered by the caller's protocols.
///
/// `90 | Pcount u8 | {Plen u8 | Proto} × Pcount | Nlen u16 | Name`.
/// Pcount = 0 means "every transport I may see".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlease3Req<'a> {
    /// The caller's protocols, most preferred first.
    pub protos: Vec<&'a [u8]>,
    /// The node name.
    pub name: &'a [u8],
}

impl<'a> PortPlease3Req<'a> {
    /// Decodes a frame body whose first byte is 90.
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body.get(1..).ok_or(Malformed::TooShort)?);
        let count = usize::from(r.u8().ok_or(Malformed::TooShort)?);
        if count > r.remaining() {
            return Err(Malformed::BadLength);
        }
        let mut protos = Vec::with_capacity(count);
        for _ in 0..count {
            let n = usize::from(r.u8().ok_or(Malformed::TooShort)?);
            protos.push(r.bytes(n).ok_or(Malformed::BadLength)?);
        }
        let name = take_bytes16(&mut r)?;
        if r.remaining() != 0 {
            return Err(Malformed::TrailingBytes);
        }
        Ok(Self { protos, name })
    }

    /// Checks the protocol list (at most 16 valid, distinct names).
    pub fn validate(&self) -> Result<(), Status> {
        if self.protos.len() > MAX_TRANSPORTS {
            return Err(Status::TooManyTransports);
        }
        for (i, p) in self.protos.iter().enumerate() {
            check_proto_name(p).map_err(|_| Status::BadProtocol)?;
            if self.protos[..i].contains(p) {
                return Err(Status::BadProtocol);
            }
        }
        Ok(())
    }

    /// Encodes the framed request.
    ///
    /// # Panics
    /// Panics on more than 255 protocols or a protocol over 255 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![
            code::PORT_PLEASE3_REQ,
            u8::try_from(self.protos.len()).expect("protocol count fits in u8"),
        ];
        for p in &self.protos {
            b.push(u8::try_from(p.len()).expect("protocol name fits in u8"));
            b.extend_from_slice(p);
        }
        put_bytes16(&mut b, self.name);
        frame::encode(&b)
    }
}

/// UNREG3_REQ: `85 | Plen u8 | Proto`, only on the registering connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreg3Req<'a> {
    /// The protocol to remove from the caller's node.
    pub proto: &'a [u8],
}

impl<'a> Unreg3Req<'a> {
    /// Decodes a frame body whose first byte is 85.
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body.get(1..).ok_or(Malformed::TooShort)?);
        let n = usize::from(r.u8().ok_or(Malformed::TooShort)?);
        let proto = r.bytes(n).ok_or(Malformed::BadLength)?;
        if r.remaining() != 0 {
            return Err(Malformed::TrailingBytes);
        }
        Ok(Self { proto })
    }

    /// Encodes the framed request.
    ///
    /// # Panics
    /// Panics if the protocol name is over 255 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![
            code::UNREG3_REQ,
            u8::try_from(self.proto.len()).expect("protocol name fits in u8"),
        ];
        b.extend_from_slice(self.proto);
        frame::encode(&b)
    }
}

/// Encodes the UNREG3 reply: `Len=2 | 117 | Status`.
pub fn encode_unreg3_reply(status: Status) -> [u8; 4] {
    [0, 2, code::UNREG3_RESP, status as u8]
}

/// Decodes an UNREG3 reply; `Ok(None)` if incomplete.
pub fn decode_unreg3_reply(buf: &[u8]) -> Result<Option<Status>, Malformed> {
    let Some(b) = buf.get(..4) else {
        return Ok(None);
    };
    if b[..3] != [0, 2, code::UNREG3_RESP] {
        return Err(Malformed::UnknownCommand);
    }
    Ok(Some(Status::from_u8(b[3])))
}

/// Encodes a NAMES3 request (framed).
pub fn encode_names3() -> Vec<u8> {
    frame::encode(&[code::NAMES3_REQ])
}

/// Encodes a DUMP3 request (framed).
pub fn encode_dump3() -> Vec<u8> {
    frame::encode(&[code::DUMP3_REQ])
}

/// An owned transport, as decoded by clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// Listen port.
    pub port: u16,
    /// Protocol name; empty for a legacy registration.
    pub proto: String,
    /// Transport-specific data.
    pub extra: Vec<u8>,
}

/// An owned node record, as decoded by clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// [`NodeType`](crate::NodeType) code: 77 normal, 72 hidden (any byte is kept).
    pub node_type: u8,
    /// Highest distribution version.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// Registered with ALIVE2: one transport, protocol unknown.
    pub legacy: bool,
    /// Node name.
    pub name: Vec<u8>,
    /// Transports, filtered for the caller.
    pub transports: Vec<Transport>,
}

/// Appends a node record. `transports` must hold at most 255 entries.
pub fn put_node_record<'t>(
    out: &mut Vec<u8>,
    node_type: u8,
    high: u16,
    low: u16,
    flags: u8,
    name: &[u8],
    transports: impl ExactSizeIterator<Item = TransportRef<'t>>,
) {
    out.push(node_type);
    out.extend_from_slice(&high.to_be_bytes());
    out.extend_from_slice(&low.to_be_bytes());
    out.push(flags);
    put_bytes16(out, name);
    out.push(u8::try_from(transports.len()).expect("transport count fits in u8"));
    for t in transports {
        put_transport(out, &t);
    }
}

impl NodeRecord {
    /// Appends this record as [`put_node_record`] lays it out (the inverse
    /// of decoding it). It must hold at most 255 transports.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_node_record(
            out,
            self.node_type,
            self.high,
            self.low,
            if self.legacy { FLAG_LEGACY } else { 0 },
            &self.name,
            self.transports.iter().map(|t| TransportRef {
                port: t.port,
                proto: t.proto.as_bytes(),
                extra: &t.extra,
            }),
        );
    }
}

fn put_transport(out: &mut Vec<u8>, t: &TransportRef<'_>) {
    out.extend_from_slice(&t.port.to_be_bytes());
    out.push(u8::try_from(t.proto.len()).expect("protocol name fits in u8"));
    out.extend_from_slice(t.proto);
    put_bytes16(out, t.extra);
}

fn take_transport<'a>(r: &mut Reader<'a>) -> Result<TransportRef<'a>, Malformed> {
    let port = r.u16().ok_or(Malformed::TooShort)?;
    let plen = usize::from(r.u8().ok_or(Malformed::TooShort)?);
    let proto = r.bytes(plen).ok_or(Malformed::BadLength)?;
    let extra = take_bytes16(r)?;
    Ok(TransportRef { port, proto, extra })
}

fn take_node_record(r: &mut Reader<'_>) -> Result<NodeRecord, Malformed> {
    let node_type = r.u8().ok_or(Malformed::TooShort)?;
    let high = r.u16().ok_or(Malformed::TooShort)?;
    let low = r.u16().ok_or(Malformed::TooShort)?;
    let flags = r.u8().ok_or(Malformed::TooShort)?;
    let name = take_bytes16(r)?.to_vec();
    let count = usize::from(r.u8().ok_or(Malformed::TooShort)?);
    let mut transports = Vec::with_capacity(count.min(MAX_TRANSPORTS));
    for _ in 0..count {
        let t = take_transport(r)?;
        transports.push(Transport {
            port: t.port,
            proto: String::from_utf8(t.proto.to_vec()).map_err(|_| Malformed::BadProtocol)?,
            extra: t.extra.to_vec(),
        });
    }
    Ok(NodeRecord {
        node_type,
        high,
        low,
        legacy: flags & FLAG_LEGACY != 0,
        name,
        transports,
    })
}

/// Encodes a PORT3 miss or error reply: `Len=2 | 119 | Status`.
pub fn encode_port3_status(status: Status) -> [u8; 4] {
    [0, 2, code::PORT2_RESP, status as u8]
}

/// Wraps a PORT3 hit body (a node record) with `Len u16 | 119 | 0`.
///
/// # Panics
/// Panics if the record exceeds the `u16` length; the daemon's limits keep
/// records under 20 KiB.
pub fn frame_port3_hit(record: &[u8]) -> Vec<u8> {
    let len = u16::try_from(record.len() + 2).expect("PORT3 reply fits in u16");
    let mut out = Vec::with_capacity(4 + record.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.push(code::PORT2_RESP);
    out.push(0);
    out.extend_from_slice(record);
    out
}

/// Checks a `u16`-prefixed reply: `Ok(Some(body))` once complete.
pub fn check_reply16(buf: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    buf.get(2..2 + len)
}

/// Checks a `u32`-prefixed reply: `Ok(Some(body))` once complete.
pub fn check_reply32(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    buf.get(4..usize::try_from(len).ok()?.checked_add(4)?)
}

/// Decodes a PORT3 reply body (after its `u16` length):
/// `Ok(Ok(record))` on a hit, `Ok(Err(status))` on a miss or error.
pub fn decode_port3_body(body: &[u8]) -> Result<Result<NodeRecord, Status>, Malformed> {
    let mut r = Reader::new(body);
    if r.u8() != Some(code::PORT2_RESP) {
        return Err(Malformed::UnknownCommand);
    }
    match r.u8().ok_or(Malformed::TooShort)? {
        0 => {
            let rec = take_node_record(&mut r)?;
            if r.remaining() != 0 {
                return Err(Malformed::TrailingBytes);
            }
            Ok(Ok(rec))
        }
        s => Ok(Err(Status::from_u8(s))),
    }
}

/// The NAMES3 listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names3 {
    /// The port the daemon listens on.
    pub epmd_port: u32,
    /// Live nodes, newest registration first.
    pub nodes: Vec<NodeRecord>,
}

/// Starts a `u32`-length-prefixed listing; finish with [`finish_reply32`].
pub fn start_reply32(epmd_port: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&epmd_port.to_be_bytes());
    out
}

/// Patches the `u32` length of a listing started with [`start_reply32`].
pub fn finish_reply32(out: &mut [u8]) {
    let len = u32::try_from(out.len() - 4).expect("listing fits in u32");
    out[..4].copy_from_slice(&len.to_be_bytes());
}

/// The fixed part of a node record (§3.6 of docs/protocol.md), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead<'a> {
    /// [`NodeType`](crate::NodeType) code, echoed from the registration.
    pub node_type: u8,
    /// Highest distribution version.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// [`FLAG_LEGACY`] or 0.
    pub flags: u8,
    /// Node name.
    pub name: &'a [u8],
}

impl RecordHead<'_> {
    /// Appends the record with these transports (at most 255).
    pub fn put<'t>(
        &self,
        out: &mut Vec<u8>,
        transports: impl ExactSizeIterator<Item = TransportRef<'t>>,
    ) {
        put_node_record(
            out,
            self.node_type,
            self.high,
            self.low,
            self.flags,
            self.name,
            transports,
        );
    }
}

/// Builds a whole NAMES3 reply: `Len u32 | EpmdPort u32 | Count u32 |
/// NodeRecord × Count`. The count and the length are filled in by
/// [`Names3Writer::finish`], so they always match the records written.
#[derive(Debug)]
pub struct Names3Writer {
    out: Vec<u8>,
    count: u32,
}

impl Names3Writer {
    /// Starts a listing for a daemon on `epmd_port`.
    pub fn new(epmd_port: u16) -> Self {
        let mut out = start_reply32(u32::from(epmd_port));
        out.extend_from_slice(&[0; 4]);
        Self { out, count: 0 }
    }

    /// Appends one node record (newest registration first is the caller's
    /// job).
    pub fn node<'t>(
        &mut self,
        head: &RecordHead<'_>,
        transports: impl ExactSizeIterator<Item = TransportRef<'t>>,
    ) {
        head.put(&mut self.out, transports);
        self.count += 1;
    }

    /// The finished reply.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[8..12].copy_from_slice(&self.count.to_be_bytes());
        finish_reply32(&mut self.out);
        self.out.shrink_to_fit();
        self.out
    }
}

/// Builds a whole DUMP3 reply (§3.5 of docs/protocol.md): every live node
/// with its creation, then the unregistered-names list. Counts and the
/// length are filled in as the parts are written.
#[derive(Debug)]
pub struct Dump3Writer {
    out: Vec<u8>,
    live: u32,
}

impl Dump3Writer {
    /// Starts a listing for a daemon on `epmd_port`.
    pub fn new(epmd_port: u16) -> Self {
        let mut out = start_reply32(u32::from(epmd_port));
        out.extend_from_slice(&[0; 4]);
        Self { out, live: 0 }
    }

    /// Appends one live node with its creation counter.
    pub fn live<'t>(
        &mut self,
        creation: u32,
        head: &RecordHead<'_>,
        transports: impl ExactSizeIterator<Item = TransportRef<'t>>,
    ) {
        self.out.extend_from_slice(&creation.to_be_bytes());
        head.put(&mut self.out, transports);
        self.live += 1;
    }

    /// Ends the live part; the unregistered entries follow.
    pub fn old_list(mut self) -> Dump3OldWriter {
        self.out[8..12].copy_from_slice(&self.live.to_be_bytes());
        let at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        Dump3OldWriter {
            out: self.out,
            at,
            count: 0,
        }
    }
}

/// The second part of a DUMP3 reply, from [`Dump3Writer::old_list`].
#[derive(Debug)]
pub struct Dump3OldWriter {
    out: Vec<u8>,
    at: usize,
    count: u32,
}

impl Dump3OldWriter {
    /// Appends one unregistered-list entry (oldest first).
    pub fn old(&mut self, creation: u32, port: u16, name: &[u8]) {
        put_old_entry(&mut self.out, creation, port, name);
        self.count += 1;
    }

    /// The finished reply.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[self.at..self.at + 4].copy_from_slice(&self.count.to_be_bytes());
        finish_reply32(&mut self.out);
        self.out.shrink_to_fit();
        self.out
    }
}

/// Decodes a NAMES3 body (after its `u32` length).
pub fn decode_names3_body(body: &[u8]) -> Result<Names3, Malformed> {
    let mut r = Reader::new(body);
    let epmd_port = r.u32().ok_or(Malformed::TooShort)?;
    let count = r.u32().ok_or(Malformed::TooShort)?;
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(take_node_record(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(Malformed::TrailingBytes);
    }
    Ok(Names3 { epmd_port, nodes })
}

/// An entry of the unregistered-names list, as DUMP3 shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldEntry {
    /// Creation counter kept for the name.
    pub creation: u32,
    /// Port of the last registration.
    pub port: u16,
    /// Node name.
    pub name: Vec<u8>,
}

/// The DUMP3 listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump3 {
    /// The port the daemon listens on.
    pub epmd_port: u32,
    /// Live nodes with their creation, newest first.
    pub live: Vec<(u32, NodeRecord)>,
    /// The unregistered-names list, oldest first.
    pub old: Vec<OldEntry>,
}

/// Appends a DUMP3 old-list entry: `Creation u32 | Port u16 | Nlen u16 | Name`.
pub fn put_old_entry(out: &mut Vec<u8>, creation: u32, port: u16, name: &[u8]) {
    out.extend_from_slice(&creation.to_be_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    put_bytes16(out, name);
}

/// Decodes a DUMP3 body (after its `u32` length).
pub fn decode_dump3_body(body: &[u8]) -> Result<Dump3, Malformed> {
    let mut r = Reader::new(body);
    let epmd_port = r.u32().ok_or(Malformed::TooShort)?;
    let live_count = r.u32().ok_or(Malformed::TooShort)?;
    let mut live = Vec::new();
    for _ in 0..live_count {
        let creation = r.u32().ok_or(Malformed::TooShort)?;
        live.push((creation, take_node_record(&mut r)?));
    }
    let old_count = r.u32().ok_or(Malformed::TooShort)?;
    let mut old = Vec::new();
    for _ in 0..old_count {
        let creation = r.u32().ok_or(Malformed::TooShort)?;
        let port = r.u16().ok_or(Malformed::TooShort)?;
        let name = take_bytes16(&mut r)?.to_vec();
        old.push(OldEntry {
            creation,
            port,
            name,
        });
    }
    if r.remaining() != 0 {
        return Err(Malformed::TrailingBytes);
    }
    Ok(Dump3 {
        epmd_port,
        live,
        old,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeType;

    fn sample() -> Alive3Req<'static> {
        Alive3Req {
            node_type: NodeType::Normal.code(),
            high: 6,
            low: 6,
            name: b"s",
            transports: vec![
                TransportRef {
                    port: 49645,
                    proto: b"inet_tcp",
                    extra: b"",
                },
                TransportRef {
                    port: 41477,
                    proto: b"inet_tls",
                    extra: b"",
                },
            ],
            legacy_default: 0,
        }
    }

    #[test]
    fn alive3_round_trip_and_validation() {
        let req = sample();
        let framed = req.encode();
        assert_eq!(Alive3Req::decode(&framed[2..]), Ok(req.clone()));
        assert_eq!(req.validate(), Ok(()));
        let mut dup = req.clone();
        dup.transports[1].proto = b"inet_tcp";
        assert_eq!(dup.validate(), Err(Status::BadProtocol));
        let mut bad = req.clone();
        bad.transports[0].proto = b"TCP";
        assert_eq!(bad.validate(), Err(Status::BadProtocol));
        let mut none = req;
        none.transports.clear();
        assert_eq!(none.validate(), Err(Status::Refused));
        // A count the packet cannot hold is refused before allocating.
        assert_eq!(
            Alive3Req::decode(&[88, 77, 0, 6, 0, 6, 0, 1, b's', 255]),
            Err(Malformed::BadLength)
        );
    }

    #[test]
    fn port3_round_trip() {
        let req = PortPlease3Req {
            protos: vec![b"inet_tls", b"inet_tcp"],
            name: b"s",
        };
        let framed = req.encode();
        assert_eq!(PortPlease3Req::decode(&framed[2..]), Ok(req));
        let mut rec = Vec::new();
        put_node_record(&mut rec, 77, 6, 6, 0, b"s", sample().transports.into_iter());
        let reply = frame_port3_hit(&rec);
        let body = check_reply16(&reply).unwrap();
        let got = decode_port3_body(body).unwrap().unwrap();
        assert_eq!(got.transports.len(), 2);
        assert_eq!(got.transports[1].proto, "inet_tls");
        let miss = encode_port3_status(Status::Refused);
        assert_eq!(
            decode_port3_body(check_reply16(&miss).unwrap()),
            Ok(Err(Status::Refused))
        );
    }

    #[test]
    fn listings_round_trip() {
        let mut out = start_reply32(crate::DEFAULT_PORT.into());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&7u32.to_be_bytes());
        put_node_record(
            &mut out,
            77,
            6,
            6,
            FLAG_LEGACY,
            b"k",
            [TransportRef {
                port: 1,
                proto: b"",
                extra: b"",
            }]
            .into_iter(),
        );
        out.extend_from_slice(&1u32.to_be_bytes());
        put_old_entry(&mut out, 9, 2, b"gone");
        finish_reply32(&mut out);
        let d = decode_dump3_body(check_reply32(&out).unwrap()).unwrap();
        assert_eq!(d.epmd_port, u32::from(crate::DEFAULT_PORT));
        assert!(d.live[0].1.legacy);
        assert_eq!(d.live[0].0, 7);
        assert_eq!(d.old[0].name, b"gone");
    }

    #[test]
    fn writers_count_what_they_write() {
        let head = RecordHead {
            node_type: 77,
            high: 6,
            low: 6,
            flags: 0,
            name: b"s",
        };
        let ts = [TransportRef {
            port: 1,
            proto: b"inet_tcp",
            extra: b"x",
        }];
        let mut w = Names3Writer::new(4369);
        w.node(&head, ts.iter().copied());
        w.node(&RecordHead { name: b"t", ..head }, [].into_iter());
        let out = w.finish();
        let n = decode_names3_body(check_reply32(&out).unwrap()).unwrap();
        assert_eq!(n.epmd_port, 4369);
        assert_eq!(n.nodes.len(), 2);
        assert_eq!(n.nodes[0].transports[0].extra, b"x");
        assert!(n.nodes[1].transports.is_empty());
        let empty = Names3Writer::new(7).finish();
        assert_eq!(empty, [0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]);

        let mut d = Dump3Writer::new(4369);
        d.live(9, &head, ts.iter().copied());
        let mut o = d.old_list();
        o.old(3, 2, b"gone");
        o.old(4, 5, b"also");
        let out = o.finish();
        let d = decode_dump3_body(check_reply32(&out).unwrap()).unwrap();
        assert_eq!(d.live.len(), 1);
        assert_eq!(d.live[0].0, 9);
        assert_eq!(d.old.len(), 2);
        assert_eq!(d.old[1].name, b"also");
        let empty = Dump3Writer::new(7).old_list().finish();
        assert_eq!(empty, [0, 0, 0, 12, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn unreg3_round_trip() {
        let req = Unreg3Req { proto: b"inet_tls" };
        assert_eq!(Unreg3Req::decode(&req.encode()[2..]), Ok(req));
        assert_eq!(
            decode_unreg3_reply(&encode_unreg3_reply(Status::NoSuchTransport)),
            Ok(Some(Status::NoSuchTransport))
        );
    }

    #[test]
    fn legacy_default_mark_round_trips_in_plen_bit_7() {
        let req = Alive3Req {
            node_type: 77,
            high: 6,
            low: 6,
            name: b"s",
            transports: vec![
                TransportRef {
                    port: 1,
                    proto: b"inet_tcp",
                    extra: b"",
                },
                TransportRef {
                    port: 2,
                    proto: b"inet_tls",
                    extra: b"",
                },
            ],
            legacy_default: 0b10,
        };
        let framed = req.encode();
        // Second transport's Plen: 8 | 0x80.
        assert!(framed.windows(3).any(|w| w == [0, 2, 0x88]));
        let back = Alive3Req::decode(&framed[2..]).unwrap();
        assert_eq!(back, req);
        assert!(back.validate().is_ok());
        assert!(!back.is_legacy_default(0) && back.is_legacy_default(1));
    }
}
