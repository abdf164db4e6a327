//! Name rules: OTP's node-name checks, and the extension's protocol names.
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

#[cfg(test)]
mod tests {
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
