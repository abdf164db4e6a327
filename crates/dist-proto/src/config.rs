//! Handshake configuration.

use std::fmt;
use std::time::Duration;

use crate::frame::Framing;
use crate::message::{is_full_name, is_host_only};
use crate::{flags, ConfigError};

/// OTP's `net_setuptime` default: 7 seconds. OTP applies it to each step;
/// this crate applies it to the whole handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(7);

/// What an initiator answers when the acceptor says `alive` (it believes a
/// connection from this node already exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnAlive {
    /// Answer `true` and go on: this node is dialling, so from its side the
    /// old connection is dead, and the acceptor will drop its stale one.
    /// This is what OTP does while the attempt is still wanted.
    #[default]
    Continue,
    /// Answer `false` and fail with [`HandshakeError::Alive`](crate::HandshakeError::Alive),
    /// leaving the node layer to decide (for instance to wait for the
    /// peer's stale connection to time out).
    Abort,
}

/// Everything a handshake needs from the node. Build with
/// [`HandshakeConfig::new`], then adjust fields or use the `with_*` methods.
///
/// Randomness and time are the caller's: the challenge and creation are
/// plain fields (a node passes a random `u32` challenge per handshake), so
/// tests are deterministic.
#[derive(Clone)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// This node's full name (`alive@host`). With [`flags::NAME_ME`] set in
    /// `flags`, an initiator gives only the host and learns its full name
    /// from the acceptor's `named:` status.
    pub this_node: String,
    /// The cookie the peer must prove it knows (checks the peer's digest of
    /// our challenge).
    pub cookie_in: Vec<u8>,
    /// The cookie used to answer the peer's challenge.
    pub cookie_out: Vec<u8>,
    /// The complete flag set this node sends; see [`flags::node_flags`].
    pub flags: u64,
    /// The flags a peer must have (after digest expansion); a peer without
    /// them is refused with `not_allowed`. Default [`flags::MANDATORY`].
    pub required_flags: u64,
    /// This node's creation (from its epmd registration).
    pub creation: u32,
    /// This side's challenge, normally a fresh random `u32`.
    pub challenge: u32,
    /// The length prefix of handshake messages.
    pub framing: Framing,
    /// The bound on the whole handshake, from construction.
    pub timeout: Duration,
    /// The initiator's answer to `alive`; unused by the acceptor.
    pub on_alive: OnAlive,
}

impl HandshakeConfig {
    /// A configuration with one cookie for both directions, the default
    /// flags ([`flags::node_flags`] with [`flags::DEFAULT_OPTIONAL`],
    /// published), TCP framing and [`DEFAULT_TIMEOUT`].
    pub fn new(
        this_node: impl Into<String>,
        cookie: impl AsRef<[u8]>,
        creation: u32,
        challenge: u32,
    ) -> Self {
        let cookie = cookie.as_ref().to_vec();
        Self {
            this_node: this_node.into(),
            cookie_in: cookie.clone(),
            cookie_out: cookie,
            flags: flags::node_flags(flags::DEFAULT_OPTIONAL, true),
            required_flags: flags::MANDATORY,
            creation,
            challenge,
            framing: Framing::U16,
            timeout: DEFAULT_TIMEOUT,
            on_alive: OnAlive::Continue,
        }
    }

    /// Sets `flags` to [`flags::node_flags`]`(optional, published)`: the node
    /// layer chooses which optional traffic it handles and whether the node
    /// is hidden (`published == false`).
    pub fn with_optional_flags(mut self, optional: u64, published: bool) -> Self {
        self.flags = flags::node_flags(optional, published);
        self
    }

    /// Sets the framing (`U32` inside TLS).
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets the handshake timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the fields the wire format depends on: the node name must be
    /// `alive@host` (a host alone with NAME_ME), at most
    /// [`MAX_NAME_BYTES`](crate::message::MAX_NAME_BYTES), no NUL; and the
    /// flags must include HANDSHAKE_23, since only the version 6 handshake
    /// is spoken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = if self.flags & flags::NAME_ME != 0 {
            is_host_only(&self.this_node) && !self.this_node.contains('@')
        } else {
            is_full_name(&self.this_node)
        };
        if !name_ok {
            return Err(ConfigError::BadNodeName(self.this_node.clone()));
        }
        if self.flags & flags::HANDSHAKE_23 == 0 {
            return Err(ConfigError::NoHandshake23(self.flags));
        }
        Ok(())
    }
}

// Hand-written so cookies never reach a log.
impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("this_node", &self.this_node)
            .field("cookie_in", &"<redacted>")
            .field("cookie_out", &"<redacted>")
            .field("flags", &format_args!("{:#x}", self.flags))
            .field(
                "required_flags",
                &format_args!("{:#x}", self.required_flags),
            )
            .field("creation", &self.creation)
            .field("challenge", &self.challenge)
            .field("framing", &self.framing)
            .field("timeout", &self.timeout)
            .field("on_alive", &self.on_alive)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let c = HandshakeConfig::new("a@h", "c", 1, 2);
        assert_eq!(c.validate(), Ok(()));
        let mut bad = c.clone();
        bad.this_node = "nohost".into();
        assert!(matches!(bad.validate(), Err(ConfigError::BadNodeName(_))));
        let mut me = c.clone();
        me.this_node = "host".into();
        me.flags |= flags::NAME_ME;
        assert_eq!(me.validate(), Ok(()));
        let mut no23 = c.clone();
        no23.flags &= !flags::HANDSHAKE_23;
        assert!(matches!(
            no23.validate(),
            Err(ConfigError::NoHandshake23(_))
        ));
        let mut long = c;
        long.this_node = format!("{}@h", "x".repeat(2000));
        assert!(long.validate().is_err());
    }

    #[test]
    fn debug_hides_cookies() {
        let c = HandshakeConfig::new("a@h", "secret-cookie", 1, 2);
        let s = format!("{c:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(!s.contains("115, 101, 99"), "{s}");
    }
}
