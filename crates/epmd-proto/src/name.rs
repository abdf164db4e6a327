//! Name rules: OTP's node-name checks, and the extension's protocol names.
//!
//! Two rules, for two jobs:
//! - [`NodeName`] is *the* rule for a distribution node name (`alive@host`),
//!   the one OTP's `net_kernel` applies; nodes, the client library and the
//!   handshake use it.
//! - [`check_node_name`] and [`is_lookup_name_ok`] are what the daemon accepts
//!   on the wire as a registered name (any UTF-8 up to 255 characters), kept
//!   byte-compatible with the C epmd, which is looser than `net_kernel`.
//!
//! Node names are compared byte for byte and never interpreted beyond these
//! checks. Protocol names are deliberately narrow (`[a-z][a-z0-9_]{0,31}`) so
//! that no peer can use them to smuggle unbounded or odd data into clients
//! that map them to identifiers (the 2013 patch turned them into atoms).

use crate::limits::{MAX_NAME_CHARS, MAX_PROTO_LEN, MAX_SYMLEN};

/// Why a node name was refused at registration (the C epmd replies Result 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// More than 1020 bytes.
    #[error("node name is too long ({0} bytes)")]
    TooLong(usize),
    /// Not valid UTF-8 (overlongs, surrogates and code points above U+10FFFF
    /// are all invalid, as in OTP).
    #[error("invalid node name encoding")]
    BadEncoding,
    /// More than 255 characters.
    #[error("node name has too many characters ({0})")]
    TooManyChars(usize),
}

/// Checks a node name the way the C epmd's `node_reg2` does.
///
/// A NUL inside the name is refused earlier, at framing level, by the
/// request decoder; an empty name passes, as in the C server.
pub fn check_node_name(name: &[u8]) -> Result<(), NameError> {
    if name.len() > MAX_SYMLEN {
        return Err(NameError::TooLong(name.len()));
    }
    let s = std::str::from_utf8(name).map_err(|_| NameError::BadEncoding)?;
    let chars = s.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooManyChars(chars));
    }
    Ok(())
}

/// Checks a PORT_PLEASE2 name (after one trailing NUL was stripped).
///
/// The C server counts the terminating NUL of its buffer as a character, so
/// the effective limit is 254 characters: a 255-character name registers but
/// its lookup is closed without a reply. epmdx keeps that for byte
/// compatibility. Returns `false` when the request must be closed silently.
pub fn is_lookup_name_ok(name: &[u8]) -> bool {
    if name.is_empty() || name.contains(&0) {
        return false;
    }
    match std::str::from_utf8(name) {
        Ok(s) => s.chars().count() < MAX_NAME_CHARS,
        Err(_) => false,
    }
}

/// Why a protocol name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoNameError {
    /// Empty or longer than 32 bytes.
    #[error("protocol name must be 1..={MAX_PROTO_LEN} bytes, got {0}")]
    Length(usize),
    /// A byte outside `[a-z0-9_]`, or a first byte that is not a letter.
    #[error("protocol name must match [a-z][a-z0-9_]*")]
    Charset,
}

/// Checks a protocol name of the extension and returns it as `&str`.
pub fn check_proto_name(name: &[u8]) -> Result<&str, ProtoNameError> {
    if name.is_empty() || name.len() > MAX_PROTO_LEN {
        return Err(ProtoNameError::Length(name.len()));
    }
    if !name[0].is_ascii_lowercase()
        || !name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Err(ProtoNameError::Charset);
    }
    // The charset check above guarantees ASCII, so this cannot fail.
    std::str::from_utf8(name).map_err(|_| ProtoNameError::Charset)
}

/// Well-known protocol names. Others that pass [`check_proto_name`] are
/// stored and returned too; these are the ones the daemon gives meaning to.
pub mod proto {
    /// Erlang distribution over TCP/IPv4 (`inet_tcp_dist`).
    pub const INET_TCP: &str = "inet_tcp";
    /// Erlang distribution over TCP/IPv6 (`inet6_tcp_dist`).
    pub const INET6_TCP: &str = "inet6_tcp";
    /// Erlang distribution over TLS/IPv4 (`inet_tls_dist`).
    pub const INET_TLS: &str = "inet_tls";
    /// Erlang distribution over TLS/IPv6 (`inet6_tls_dist`).
    pub const INET6_TLS: &str = "inet6_tls";
    /// Erlang distribution over a Unix-domain stream socket; the socket path
    /// is the transport's Extra. Host-local.
    pub const UDS: &str = "uds";

    /// Whether a legacy PORT_PLEASE2/NAMES caller may be given this
    /// transport: plain TCP only, never TLS or a Unix socket.
    pub fn is_plain_tcp(proto: &str) -> bool {
        proto == INET_TCP || proto == INET6_TCP
    }

    /// Whether the transport is distribution over TLS (IPv4 or IPv6).
    pub fn is_tls(proto: &str) -> bool {
        proto == INET_TLS || proto == INET6_TLS
    }

    /// Whether the transport is meaningful only on the daemon's own host, and
    /// so is returned only to local callers.
    pub fn is_host_local(proto: &str) -> bool {
        proto == UDS
    }
}

/// Why a string is not a [`NodeName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameError {
    /// No `@`, or more than one.
    #[error("node name must be alive@host with exactly one '@'")]
    NotAliveAtHost,
    /// The part before `@` is empty or has a character outside `[A-Za-z0-9_-]`.
    #[error("the alive part of a node name must be one or more of [A-Za-z0-9_-]")]
    BadAlive,
    /// The part after `@` is empty or has a character outside U+0021..=U+00FF.
    #[error("the host part of a node name must be one or more characters in '!'..='\u{ff}'")]
    BadHost,
    /// More than 255 characters in all (the atom limit).
    #[error("node name has more than {MAX_NAME_CHARS} characters ({0})")]
    TooLong(usize),
}

/// A full distribution node name, `alive@host`, checked by the rule OTP 25's
/// `net_kernel` applies when a node starts (measured with `erl`):
///
/// - exactly one `@`;
/// - the alive part is one or more of `[A-Za-z0-9_-]` (`a.b`, `a+b`, `a b`,
///   `ä` are refused: "Invalid node name!");
/// - the host part is one or more characters in `'!'..='ÿ'` (U+0021..=U+00FF:
///   no space, no control character; `,` and Latin-1 letters pass);
/// - at most 255 characters in all, since the name is an atom.
///
/// Its alive part therefore always passes [`check_node_name`], the looser rule
/// the daemon applies to a registered name (any UTF-8, for byte compatibility
/// with the C epmd); a node name is never registered in a form epmd refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName {
    full: String,
    at: usize,
}

impl NodeName {
    /// Checks `full` and wraps it.
    pub fn new(full: &str) -> Result<Self, NodeNameError> {
        let at = Self::check(full)?;
        Ok(Self {
            full: full.to_owned(),
            at,
        })
    }

    /// Checks `full` without allocating; returns the byte index of the `@`.
    pub fn check(full: &str) -> Result<usize, NodeNameError> {
        let (alive, host) = full
            .split_once('@')
            .filter(|(_, h)| !h.contains('@'))
            .ok_or(NodeNameError::NotAliveAtHost)?;
        Self::check_alive(alive)?;
        if host.is_empty() || !host.chars().all(|c| ('!'..='\u{ff}').contains(&c)) {
            return Err(NodeNameError::BadHost);
        }
        let chars = full.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(NodeNameError::TooLong(chars));
        }
        Ok(alive.len())
    }

    /// Checks an alive part alone (what a node registers with epmd).
    pub fn check_alive(alive: &str) -> Result<(), NodeNameError> {
        if alive.is_empty()
            || !alive
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NodeNameError::BadAlive);
        }
        if alive.len() > MAX_NAME_CHARS {
            return Err(NodeNameError::TooLong(alive.len()));
        }
        Ok(())
    }

    /// Whether `full` is a valid node name.
    pub fn is_valid(full: &str) -> bool {
        Self::check(full).is_ok()
    }

    /// Joins an alive part and a host, checking the result.
    pub fn from_parts(alive: &str, host: &str) -> Result<Self, NodeNameError> {
        Self::new(&format!("{alive}@{host}"))
    }

    /// The whole name, `alive@host`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The part before `@`: the name registered with epmd.
    pub fn alive(&self) -> &str {
        &self.full[..self.at]
    }

    /// The part after `@`.
    pub fn host(&self) -> &str {
        &self.full[self.at + 1..]
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

impl std::str::FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// A protocol name of the extension that passed [`check_proto_name`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtoName(String);

impl ProtoName {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, ProtoNameError> {
        check_proto_name(name.as_bytes()).map(|s| Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a legacy caller may be given this transport (see
    /// [`proto::is_plain_tcp`]).
    pub fn is_plain_tcp(&self) -> bool {
        proto::is_plain_tcp(&self.0)
    }
}

impl std::fmt::Display for ProtoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProtoName {
    type Err = ProtoNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ProtoName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_name_rule_matches_net_kernel() {
        // Accepted by OTP 25's net_kernel:start/1.
        for ok in [
            "a@vm",
            "a-b@vm",
            "a@localhost",
            "a@lo,c",
            "a@\u{e4}",
            "A_1@127.0.0.1",
            "x@::1",
        ] {
            assert!(NodeName::is_valid(ok), "{ok}");
        }
        let long = format!("{}@localhost", "a".repeat(240));
        assert!(NodeName::is_valid(&long));
        // Refused by it ("Invalid node name!", or an atom too long).
        use NodeNameError::*;
        for (bad, why) in [
            ("a.b@vm", BadAlive),
            ("a+b@vm", BadAlive),
            ("a b@vm", BadAlive),
            ("\u{e4}@vm", BadAlive),
            ("@localhost", BadAlive),
            ("a@loc host", BadHost),
            ("a@\u{100}", BadHost),
            ("a@", BadHost),
            ("a@b@c", NotAliveAtHost),
            ("ab", NotAliveAtHost),
            ("a\0@b", BadAlive),
        ] {
            assert_eq!(NodeName::check(bad), Err(why), "{bad:?}");
        }
        let too_long = format!("{}@localhost", "a".repeat(250));
        assert_eq!(NodeName::check(&too_long), Err(TooLong(260)));
        let n = NodeName::new("foo@bar.example").unwrap();
        assert_eq!((n.alive(), n.host()), ("foo", "bar.example"));
        assert_eq!(n.to_string(), "foo@bar.example");
        assert_eq!(NodeName::from_parts("foo", "bar.example"), Ok(n));
        // Every valid alive part is one the daemon registers.
        assert_eq!(check_node_name(b"a-b_C9"), Ok(()));
    }

    #[test]
    fn proto_name_newtype() {
        let p: ProtoName = "inet_tls".parse().unwrap();
        assert_eq!(p.as_str(), "inet_tls");
        assert!(!p.is_plain_tcp());
        assert_eq!(ProtoName::new("Bad"), Err(ProtoNameError::Charset));
    }

    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(check_node_name(b"foo"), Ok(()));
        assert_eq!(check_node_name(b""), Ok(()));
        assert_eq!(
            check_node_name(&[b'a'; 600]),
            Err(NameError::TooManyChars(600))
        );
        assert_eq!(
            check_node_name(&[b'a'; 1021]),
            Err(NameError::TooLong(1021))
        );
        assert_eq!(check_node_name(&[0xc0, 0x80]), Err(NameError::BadEncoding));
        assert_eq!(
            check_node_name(&[0xed, 0xa0, 0x80]),
            Err(NameError::BadEncoding)
        );
        assert_eq!(
            check_node_name(&[0xf4, 0x90, 0x80, 0x80]),
            Err(NameError::BadEncoding)
        );
        let emoji = "\u{1F608}".repeat(255);
        assert_eq!(check_node_name(emoji.as_bytes()), Ok(()));
        let emoji = "\u{1F608}".repeat(256);
        assert_eq!(
            check_node_name(emoji.as_bytes()),
            Err(NameError::TooLong(1024))
        );
    }

    #[test]
    fn lookup_names() {
        assert!(is_lookup_name_ok(b"foo"));
        assert!(!is_lookup_name_ok(b""));
        assert!(!is_lookup_name_ok(b"fo\0o"));
        assert!(is_lookup_name_ok(&[b'a'; 254]));
        assert!(!is_lookup_name_ok(&[b'a'; 255]));
        assert!(!is_lookup_name_ok(&[0xff]));
    }

    #[test]
    fn proto_names() {
        assert_eq!(check_proto_name(b"inet_tcp"), Ok("inet_tcp"));
        assert_eq!(check_proto_name(b"uds"), Ok("uds"));
        assert_eq!(check_proto_name(b""), Err(ProtoNameError::Length(0)));
        assert_eq!(
            check_proto_name(&[b'a'; 33]),
            Err(ProtoNameError::Length(33))
        );
        assert_eq!(check_proto_name(b"Inet"), Err(ProtoNameError::Charset));
        assert_eq!(check_proto_name(b"1tcp"), Err(ProtoNameError::Charset));
        assert_eq!(check_proto_name(b"in-et"), Err(ProtoNameError::Charset));
        assert!(proto::is_plain_tcp("inet6_tcp"));
        assert!(!proto::is_plain_tcp("inet_tls"));
        assert!(proto::is_host_local("uds"));
    }
}
