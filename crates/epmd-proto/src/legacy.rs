//! OTP's EPMD requests and replies, byte-compatible with the C `epmd`.
//!
//! Replies carry no length prefix: the client knows each layout, or reads
//! until the server closes. Every encoder here returns the whole reply, so the
//! daemon can send it in one `write` (jinterface and `erl_epmd` depend on it).

use crate::code;
use crate::frame::{self, Reader};
use crate::request::Malformed;

/// ALIVE2_REQ: register a node. Fields are kept raw so replies echo them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alive2Req<'a> {
    /// The node's distribution listen port.
    pub port: u16,
    /// [`NodeType`](crate::NodeType) code: 77 (`M`) normal, 72 (`H`) hidden.
    pub node_type: u8,
    /// 0 = TCP/IPv4; OTP always sends 0, even for TLS.
    pub protocol: u8,
    /// Highest distribution version; decides the reply form.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// The node name (the part before `@`); no NUL inside.
    pub name: &'a [u8],
    /// Opaque Extra, echoed verbatim.
    pub extra: &'a [u8],
}

impl<'a> Alive2Req<'a> {
    /// Decodes the body of a frame whose first byte is 120, applying the C
    /// epmd's structural checks (all of which close without a reply).
    /// Bytes after Extra are ignored, as in the C server.
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let len = body.len();
        if len <= 13 {
            return Err(Malformed::TooShort);
        }
        let mut r = Reader::new(&body[1..]);
        let port = r.u16().ok_or(Malformed::TooShort)?;
        let node_type = r.u8().ok_or(Malformed::TooShort)?;
        let protocol = r.u8().ok_or(Malformed::TooShort)?;
        let high = r.u16().ok_or(Malformed::TooShort)?;
        let low = r.u16().ok_or(Malformed::TooShort)?;
        let nlen = usize::from(r.u16().ok_or(Malformed::TooShort)?);
        if nlen + 13 > len {
            return Err(Malformed::BadLength);
        }
        let name = r.bytes(nlen).ok_or(Malformed::BadLength)?;
        let elen = usize::from(r.u16().ok_or(Malformed::BadLength)?);
        if elen + nlen + 13 > len {
            return Err(Malformed::BadLength);
        }
        let extra = r.bytes(elen).ok_or(Malformed::BadLength)?;
        if name.contains(&0) {
            return Err(Malformed::NulInName);
        }
        Ok(Self {
            port,
            node_type,
            protocol,
            high,
            low,
            name,
            extra,
        })
    }

    /// Encodes the framed request (length header included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(13 + self.name.len() + self.extra.len());
        b.push(code::ALIVE2_REQ);
        b.extend_from_slice(&self.port.to_be_bytes());
        b.push(self.node_type);
        b.push(self.protocol);
        b.extend_from_slice(&self.high.to_be_bytes());
        b.extend_from_slice(&self.low.to_be_bytes());
        put_bytes16(&mut b, self.name);
        put_bytes16(&mut b, self.extra);
        frame::encode(&b)
    }

    /// Whether the reply must use the 32-bit ALIVE2_X_RESP (118) form.
    pub fn wants_x_reply(&self) -> bool {
        self.high >= 6
    }
}

/// The reply to ALIVE2_REQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alive2Resp {
    /// ALIVE2_X_RESP (118): `118 | Result | Creation u32`, 6 bytes.
    X {
        /// 0 = ok.
        result: u8,
        /// The 32-bit creation.
        creation: u32,
    },
    /// ALIVE2_RESP (121): `121 | Result | Creation u16`, 4 bytes.
    Legacy {
        /// 0 = ok.
        result: u8,
        /// The 16-bit creation (1..=3 from epmd, 99 on failure).
        creation: u16,
    },
}

/// The creation the C epmd sends with a failed registration.
pub const FAILED_CREATION: u16 = 99;

impl Alive2Resp {
    /// The failure reply in the form the request asked for.
    pub fn failure(x_form: bool) -> Self {
        if x_form {
            Self::X {
                result: 1,
                creation: u32::from(FAILED_CREATION),
            }
        } else {
            Self::Legacy {
                result: 1,
                creation: FAILED_CREATION,
            }
        }
    }

    /// Encodes the reply (no length prefix).
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::X { result, creation } => {
                let c = creation.to_be_bytes();
                vec![code::ALIVE2_X_RESP, result, c[0], c[1], c[2], c[3]]
            }
            Self::Legacy { result, creation } => {
                let c = creation.to_be_bytes();
                vec![code::ALIVE2_RESP, result, c[0], c[1]]
            }
        }
    }

    /// Decodes a reply; `Ok(None)` if more bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<Self>, Malformed> {
        match buf.first() {
            None => Ok(None),
            Some(&code::ALIVE2_X_RESP) => Ok(buf.get(..6).map(|b| Self::X {
                result: b[1],
                creation: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
            })),
            Some(&code::ALIVE2_RESP) => Ok(buf.get(..4).map(|b| Self::Legacy {
                result: b[1],
                creation: u16::from_be_bytes([b[2], b[3]]),
            })),
            Some(_) => Err(Malformed::UnknownCommand),
        }
    }

    /// The result byte.
    pub fn result(&self) -> u8 {
        match *self {
            Self::X { result, .. } | Self::Legacy { result, .. } => result,
        }
    }

    /// The creation, widened to 32 bits.
    pub fn creation(&self) -> u32 {
        match *self {
            Self::X { creation, .. } => creation,
            Self::Legacy { creation, .. } => u32::from(creation),
        }
    }
}

/// A node entry as returned by PORT_PLEASE2 (owned, for clients).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortInfo {
    /// Distribution port.
    pub port: u16,
    /// [`NodeType`](crate::NodeType) code: 77 normal, 72 hidden (any byte is kept).
    pub node_type: u8,
    /// The registration's protocol byte.
    pub protocol: u8,
    /// Highest distribution version.
    pub high: u16,
    /// Lowest distribution version.
    pub low: u16,
    /// Node name.
    pub name: Vec<u8>,
    /// Extra, verbatim.
    pub extra: Vec<u8>,
}

/// Encodes a PORT2_RESP hit from borrowed fields (no length prefix).
#[allow(clippy::too_many_arguments)]
pub fn encode_port2_hit(
    port: u16,
    node_type: u8,
    protocol: u8,
    high: u16,
    low: u16,
    name: &[u8],
    extra: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(14 + name.len() + extra.len());
    b.push(code::PORT2_RESP);
    b.push(0);
    b.extend_from_slice(&port.to_be_bytes());
    b.push(node_type);
    b.push(protocol);
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    put_bytes16(&mut b, name);
    put_bytes16(&mut b, extra);
    b
}

/// The PORT2_RESP miss: `119 | 1`.
pub const PORT2_MISS: [u8; 2] = [code::PORT2_RESP, 1];

impl PortInfo {
    /// Encodes this entry as a PORT2_RESP hit.
    pub fn encode(&self) -> Vec<u8> {
        encode_port2_hit(
            self.port,
            self.node_type,
            self.protocol,
            self.high,
            self.low,
            &self.name,
            &self.extra,
        )
    }

    /// Decodes a complete PORT2_RESP (the server closes after it). Returns
    /// `Ok(None)` for a miss (`119 | non-zero`).
    pub fn decode_reply(buf: &[u8]) -> Result<Option<Self>, Malformed> {
        let mut r = Reader::new(buf);
        if r.u8() != Some(code::PORT2_RESP) {
            return Err(Malformed::UnknownCommand);
        }
        match r.u8() {
            Some(0) => {}
            Some(_) => return Ok(None),
            None => return Err(Malformed::TooShort),
        }
        let port = r.u16().ok_or(Malformed::TooShort)?;
        let node_type = r.u8().ok_or(Malformed::TooShort)?;
        let protocol = r.u8().ok_or(Malformed::TooShort)?;
        let high = r.u16().ok_or(Malformed::TooShort)?;
        let low = r.u16().ok_or(Malformed::TooShort)?;
        let name = take_bytes16(&mut r)?.to_vec();
        let extra = take_bytes16(&mut r)?.to_vec();
        Ok(Some(Self {
            port,
            node_type,
            protocol,
            high,
            low,
            name,
            extra,
        }))
    }
}

/// Encodes a PORT_PLEASE2_REQ for `name` (framed).
pub fn encode_port_please2(name: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + name.len());
    b.push(code::PORT_PLEASE2_REQ);
    b.extend_from_slice(name);
    frame::encode(&b)
}

/// Appends a NAMES line: `name {name} at port {port}\n`.
pub fn put_names_line(out: &mut Vec<u8>, name: &[u8], port: u16) {
    out.extend_from_slice(b"name ");
    out.extend_from_slice(name);
    out.extend_from_slice(b" at port ");
    out.extend_from_slice(port.to_string().as_bytes());
    out.push(b'\n');
}

/// Appends a DUMP line for a live node:
/// `active name     <{name}> at port {port}, fd = {fd}\n\0`.
pub fn put_dump_active(out: &mut Vec<u8>, name: &[u8], port: u16, fd: i32) {
    out.extend_from_slice(b"active name     <");
    out.extend_from_slice(name);
    out.extend_from_slice(format!("> at port {port}, fd = {fd}\n\0").as_bytes());
}

/// Appends a DUMP line for an unregistered-list entry:
/// `old/unused name <{name}>, port = {port}, fd = {fd} \n\0`.
pub fn put_dump_old(out: &mut Vec<u8>, name: &[u8], port: u16, fd: i32) {
    out.extend_from_slice(b"old/unused name <");
    out.extend_from_slice(name);
    out.extend_from_slice(format!(">, port = {port}, fd = {fd} \n\0").as_bytes());
}

/// A whole NAMES or DUMP reply: the `u32` port header, then one line per
/// entry (docs/protocol.md §8.4). The end of every part is kept so a
/// `-delay_write` daemon can send them separately, as the C epmd's one
/// `write` per line does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextListing {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl TextListing {
    /// Starts a listing for a daemon on `epmd_port`.
    pub fn new(epmd_port: u16) -> Self {
        Self {
            bytes: u32::from(epmd_port).to_be_bytes().to_vec(),
            ends: vec![4],
        }
    }

    fn end_part(&mut self) {
        self.ends.push(self.bytes.len());
    }

    /// Appends a NAMES line ([`put_names_line`]).
    pub fn names_line(&mut self, name: &[u8], port: u16) {
        put_names_line(&mut self.bytes, name, port);
        self.end_part();
    }

    /// Appends a DUMP line for a live node ([`put_dump_active`]).
    pub fn dump_active(&mut self, name: &[u8], port: u16, fd: i32) {
        put_dump_active(&mut self.bytes, name, port, fd);
        self.end_part();
    }

    /// Appends a DUMP line for an unregistered entry ([`put_dump_old`]).
    pub fn dump_old(&mut self, name: &[u8], port: u16, fd: i32) {
        put_dump_old(&mut self.bytes, name, port, fd);
        self.end_part();
    }

    /// The header, then each line, as separate slices.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.bytes[a..b])
    }

    /// The whole reply.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole reply, without the part boundaries.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.shrink_to_fit();
        self.bytes
    }
}

/// Parses the text of a NAMES reply (after the u32 port) into
/// `(name, port)` pairs, the way `erl_epmd` does. Lines that do not match
/// the format are skipped.
pub fn parse_names_text(text: &[u8]) -> Vec<(Vec<u8>, u16)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let rest = line.strip_prefix(b"name ")?;
            let at = rest.windows(9).rposition(|w| w == b" at port ")?;
            let port = std::str::from_utf8(&rest[at + 9..]).ok()?.parse().ok()?;
            Some((rest[..at].to_vec(), port))
        })
        .collect()
}

/// KILL_REQ reply when the daemon agrees to stop.
pub const KILL_OK: &[u8] = b"OK";
/// KILL_REQ reply when live nodes forbid it.
pub const KILL_NO: &[u8] = b"NO";
/// STOP_REQ reply when the name was found.
pub const STOP_STOPPED: &[u8] = b"STOPPED";
/// STOP_REQ reply when the name was not found: the C server writes
/// `NOEXIST` and then `STOPPED`.
pub const STOP_NOEXIST: &[u8] = b"NOEXISTSTOPPED";

pub(crate) fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).expect("field fits in u16");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn take_bytes16<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Malformed> {
    let n = usize::from(r.u16().ok_or(Malformed::TooShort)?);
    r.bytes(n).ok_or(Malformed::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeType;

    /// Captured from Debian's OTP 25.2.3 `epmd`: `foo` on port 5000, hi = lo = 6.
    #[test]
    fn golden_port2_hit() {
        let got = encode_port2_hit(5000, 77, 0, 6, 6, b"foo", b"");
        assert_eq!(
            got,
            [0x77, 0, 0x13, 0x88, 0x4d, 0, 0, 6, 0, 6, 0, 3, b'f', b'o', b'o', 0, 0]
        );
        let info = PortInfo::decode_reply(&got).unwrap().unwrap();
        assert_eq!(info.port, 5000);
        assert_eq!(info.encode(), got);
        assert_eq!(PortInfo::decode_reply(&PORT2_MISS), Ok(None));
    }

    #[test]
    fn golden_alive_failures() {
        assert_eq!(Alive2Resp::failure(true).encode(), [0x76, 1, 0, 0, 0, 0x63]);
        assert_eq!(Alive2Resp::failure(false).encode(), [0x79, 1, 0, 0x63]);
    }

    #[test]
    fn alive2_structural_checks() {
        let req = Alive2Req {
            port: 1,
            node_type: NodeType::Normal.code(),
            protocol: 0,
            high: 6,
            low: 6,
            name: b"foo",
            extra: b"AB\0",
        };
        let framed = req.encode();
        assert_eq!(Alive2Req::decode(&framed[2..]), Ok(req.clone()));
        // Trailing garbage after Extra is ignored.
        let mut padded = framed[2..].to_vec();
        padded.extend_from_slice(b"zz");
        assert_eq!(Alive2Req::decode(&padded), Ok(req));
        // Length 11 and 9 (too small).
        assert_eq!(Alive2Req::decode(&framed[2..13]), Err(Malformed::TooShort));
        assert_eq!(Alive2Req::decode(&framed[2..11]), Err(Malformed::TooShort));
        // Elen larger than the packet.
        let bad = Alive2Req {
            extra: b"",
            ..req_with_name(b"gurka")
        }
        .encode();
        let mut bad = bad[2..].to_vec();
        let n = bad.len();
        bad[n - 2..].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(Alive2Req::decode(&bad), Err(Malformed::BadLength));
        let nul = req_with_name(b"foo\0bar").encode();
        assert_eq!(Alive2Req::decode(&nul[2..]), Err(Malformed::NulInName));
    }

    fn req_with_name(name: &[u8]) -> Alive2Req<'_> {
        Alive2Req {
            port: 1,
            node_type: NodeType::Normal.code(),
            protocol: 0,
            high: 5,
            low: 5,
            name,
            extra: b"",
        }
    }

    #[test]
    fn text_listing_keeps_its_parts() {
        let mut l = TextListing::new(4369);
        l.names_line(b"b", 2);
        l.names_line(b"a", 1);
        let parts: Vec<&[u8]> = l.parts().collect();
        assert_eq!(
            parts,
            [
                &[0, 0, 17, 17][..],
                b"name b at port 2\n",
                b"name a at port 1\n"
            ]
        );
        assert_eq!(l.as_bytes(), parts.concat());
        assert_eq!(TextListing::new(1).into_bytes(), [0, 0, 0, 1]);
    }

    #[test]
    fn names_and_dump_lines() {
        let mut out = Vec::new();
        put_names_line(&mut out, b"foo", 5000);
        put_names_line(&mut out, b"b ar", 1);
        assert_eq!(out, b"name foo at port 5000\nname b ar at port 1\n");
        assert_eq!(
            parse_names_text(&out),
            vec![(b"foo".to_vec(), 5000), (b"b ar".to_vec(), 1)]
        );
        let mut d = Vec::new();
        put_dump_active(&mut d, b"foo", 5000, 7);
        put_dump_old(&mut d, b"bar", 1, 8);
        assert_eq!(
            d,
            b"active name     <foo> at port 5000, fd = 7\n\0old/unused name <bar>, port = 1, fd = 8 \n\0"
                .to_vec()
        );
    }
}
