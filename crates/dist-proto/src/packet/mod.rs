//! The connection after the handshake, sans-I/O: `u32` frames, ticks,
//! and pass-through packets.
//!
//! Once a handshake is established, every message is a `u32` big-endian
//! length and that many bytes; an empty frame is a tick. This node offers
//! neither the atom cache nor fragments (no `DFLAG_DIST_HDR_ATOM_CACHE`,
//! no `DFLAG_FRAGMENTS`), so every non-empty frame a peer may send is a
//! pass-through packet: the byte `112`, then the control message and, for
//! the operations that carry one, the payload, each a standalone term
//! (`131` first).
//!
//! - [`Framer`]: bytes in, frames out; check-then-parse through
//!   [`take_frame`], bounded by [`MAX_PACKET`] before the body is buffered.
//! - [`decode`] / [`encode`]: a packet body to its [`Packet`] (control and
//!   payload terms) and back, within the memory budget of
//!   [`DecodeLimits`].
//! - [`Liveness`] and [`Ticker`]: the `net_ticktime` deadlines of the
//!   receiving and the sending half, in the `poll_timeout` /
//!   `handle_timeout` style of the handshake machines, with time passed in.
//! - [`PacketError`]: why a frame or a packet was refused.
//!
//! Interpreting the control tuple (which operation, which pids) is the
//! node layer's job; this module only guarantees that the terms decoded
//! and stayed within their budget.

mod framer;
mod ticks;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use erl_term::{Chunks, DecodeError, DecodeOptions, Term, TERM_COST};

pub use framer::{take_frame, Frame, Framer};
pub use ticks::{Liveness, Ticker, TICK};

/// The first byte of a pass-through packet.
pub const PASS_THROUGH: u8 = 112;

/// The version byte that starts a standalone term, and the first byte of a
/// distribution header (`131 68`) or fragment (`131 69`, `131 70`).
const VERSION: u8 = 131;

/// erl-term's tag of a compressed term (`131 80 ...`).
const COMPRESSED: u8 = 80;

/// The largest frame accepted after authentication, in bytes. OTP itself
/// has no limit; this bound keeps one peer from making the node buffer
/// without end.
pub const MAX_PACKET: usize = 256 << 20;

/// Default memory budget of a received message per byte of its frame. An
/// uncompressed term can hold one term per wire byte (a list of `[]`,
/// [`TERM_COST`] bytes each), so a factor below `TERM_COST` would refuse
/// honest messages; 64 covers that and leaves compressed terms a 64:1
/// ratio.
pub const DEFAULT_BUDGET_PER_BYTE: usize = 64;
const _: () = assert!(DEFAULT_BUDGET_PER_BYTE > TERM_COST);

/// Default floor of a message's budget, so small frames may still hold a
/// modestly compressed term: 1 MiB.
pub const DEFAULT_MIN_BUDGET: usize = 1 << 20;

/// How much memory decoding one received packet may take.
///
/// The budget of a frame of `n` bytes is `max(n × budget_per_byte,
/// min_budget)`, shared by the control message and the payload. Each
/// decoded term is charged [`TERM_COST`] plus the bytes it owns (binary,
/// string, atom text, bignum digits), and a compressed term (tag 80) is
/// charged its declared size before it is inflated, so an over-budget
/// message fails without taking the memory. Big integers are further
/// limited to `max_big_bytes` of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Bytes of budget per byte of the frame ([`DEFAULT_BUDGET_PER_BYTE`]).
    pub budget_per_byte: usize,
    /// The budget of a small frame is never below this
    /// ([`DEFAULT_MIN_BUDGET`]).
    pub min_budget: usize,
    /// The largest bignum magnitude, in bytes
    /// ([`erl_term::DEFAULT_MAX_BIG_BYTES`], 4 MiB, the bound erts has).
    pub max_big_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl DecodeLimits {
    /// The defaults: [`DEFAULT_BUDGET_PER_BYTE`], [`DEFAULT_MIN_BUDGET`],
    /// [`erl_term::DEFAULT_MAX_BIG_BYTES`].
    pub const fn new() -> Self {
        Self {
            budget_per_byte: DEFAULT_BUDGET_PER_BYTE,
            min_budget: DEFAULT_MIN_BUDGET,
            max_big_bytes: erl_term::DEFAULT_MAX_BIG_BYTES,
        }
    }

    /// Sets the budget per frame byte.
    pub const fn with_budget_per_byte(mut self, bytes: usize) -> Self {
        self.budget_per_byte = bytes;
        self
    }

    /// Sets the floor of the budget.
    pub const fn with_min_budget(mut self, bytes: usize) -> Self {
        self.min_budget = bytes;
        self
    }

    /// Sets the largest bignum magnitude, in bytes.
    pub const fn with_max_big_bytes(mut self, bytes: usize) -> Self {
        self.max_big_bytes = bytes;
        self
    }

    /// The memory budget for decoding a frame of `frame_len` bytes.
    pub fn budget(&self, frame_len: usize) -> usize {
        frame_len
            .saturating_mul(self.budget_per_byte)
            .max(self.min_budget)
    }

    fn options(&self, budget: usize) -> DecodeOptions<'static> {
        DecodeOptions::new()
            .max_memory(budget)
            .max_big_bytes(self.max_big_bytes)
    }
}

/// Why a frame or a packet was refused, or the peer declared silent.
///
/// Only [`TooLarge`](Self::TooLarge) and [`TickTimeout`](Self::TickTimeout)
/// end a connection: the others concern one frame whose boundary is
/// intact, so the caller drops that message and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A length prefix above the frame limit ([`MAX_PACKET`]).
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Nothing arrived, not even a tick, for a whole `net_ticktime`.
    #[error("net_tick_timeout")]
    TickTimeout,
    /// An empty body handed to [`decode`] (an empty frame is a tick).
    #[error("empty packet")]
    Empty,
    /// A distribution header or fragment (`131` first), which this node
    /// does not offer, so a peer must not send it.
    #[error("distribution header or fragment without the flag")]
    DistHeader,
    /// A first byte that is neither `112` nor `131`.
    #[error("unknown packet type {0}")]
    UnknownType(u8),
    /// The control message is not a term (or is over the budget).
    #[error("control message: {0}")]
    Control(#[source] DecodeError),
    /// The payload is not a term (or is over what the control message left
    /// of the budget).
    #[error("payload: {0}")]
    Payload(#[source] DecodeError),
}

impl PacketError {
    /// Whether the connection must close (the framing is lost, or the peer
    /// is silent), rather than just this message being dropped.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::TickTimeout)
    }
}

/// A decoded pass-through packet: the control tuple and, if present, the
/// payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The control message (a tuple headed by the operation, if the peer
    /// is well-behaved; this module does not look inside).
    pub control: Term,
    /// The payload term that followed the control message, if any.
    pub payload: Option<Term>,
}

/// Decodes one non-empty frame body (what follows the `u32` length) within
/// the memory budget `limits` gives a frame of its size.
///
/// The control message may take the whole budget; the payload gets what
/// is left once the control message is charged an upper bound of its
/// cost: `TERM_COST + 2` bytes per byte of it (every decoded term uses at
/// least one input byte, and owns at most two bytes per byte it was read
/// from, a Latin-1 atom growing into UTF-8), or the whole budget if it is
/// compressed (OTP never compresses control messages).
pub fn decode(body: &[u8], limits: &DecodeLimits) -> Result<Packet, PacketError> {
    decode_in(body, None, limits)
}

/// [`decode`] of a frame split off a [`Framer`]: the same checks and
/// budget, but binaries of [`erl_term::SHARE_MIN`] bytes or more are
/// slices of `body`, not copies.
pub fn decode_bytes(body: &Bytes, limits: &DecodeLimits) -> Result<Packet, PacketError> {
    decode_in(body, Some(body), limits)
}

/// `body` is `owner`'s contents when there is an owner.
fn decode_in(
    body: &[u8],
    owner: Option<&Bytes>,
    limits: &DecodeLimits,
) -> Result<Packet, PacketError> {
    match body.first() {
        Some(&PASS_THROUGH) => {}
        Some(&VERSION) => return Err(PacketError::DistHeader),
        Some(&other) => return Err(PacketError::UnknownType(other)),
        None => return Err(PacketError::Empty),
    }
    let rest = &body[1..];
    let budget = limits.budget(body.len());
    let (control, used) = limits
        .options(budget)
        .decode_used(rest)
        .map_err(PacketError::Control)?;
    if used == rest.len() {
        return Ok(Packet {
            control,
            payload: None,
        });
    }
    let spent = if rest.get(1) == Some(&COMPRESSED) {
        budget
    } else {
        used.saturating_mul(TERM_COST + 2)
    };
    let opts = limits.options(budget.saturating_sub(spent));
    let payload = match owner {
        Some(o) => opts.decode_bytes(&o.slice(1 + used..)),
        None => opts.decode(&rest[used..]),
    }
    .map_err(PacketError::Payload)?;
    Ok(Packet {
        control,
        payload: Some(payload),
    })
}

/// Encodes a pass-through packet, `u32` length prefix included, ready to
/// write. (A packet over 4 GiB, which no peer accepts, would get a
/// saturated length; the node's terms never come near.)
pub fn encode(control: &Term, payload: Option<&Term>) -> Vec<u8> {
    encode_flat(control, payload)
}

/// [`encode`] in pieces: the payload's binaries of
/// [`erl_term::CHUNK_MIN`] bytes or more are shared with the term, not
/// copied, for a vectored write.
pub fn encode_chunks(control: &Term, payload: Option<&Term>) -> Chunks {
    let mut out = Chunks::with_capacity(128);
    out.flat_mut()
        .extend_from_slice(&[0, 0, 0, 0, PASS_THROUGH, VERSION]);
    // OTP's control messages hold no binaries worth sharing.
    erl_term::encode_to(control, out.flat_mut());
    if let Some(p) = payload {
        out.flat_mut().push(VERSION);
        erl_term::encode_chunks_to(p, &mut out);
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    // The prefix was written before anything was shared, so it is at the
    // start of the flat bytes.
    out.flat_mut()[..4].copy_from_slice(&len.to_be_bytes());
    out
}

fn encode_flat(control: &Term, payload: Option<&Term>) -> Vec<u8> {
    let size = erl_term::encoded_len(control) + payload.map_or(0, erl_term::encoded_len) + 8;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[0, 0, 0, 0, PASS_THROUGH, VERSION]);
    erl_term::encode_to(control, &mut out);
    if let Some(p) = payload {
        out.push(VERSION);
        erl_term::encode_to(p, &mut out);
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}
