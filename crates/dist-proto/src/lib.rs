//! The Erlang distribution handshake, flags and packet layer, as sans-I/O
//! state machines.
//!
//! This crate opens no socket and reads no clock. Bytes go in through
//! `handle_input`, framed messages come out of `poll_transmit`, time is an
//! [`Instant`](std::time::Instant) the caller passes in, and the challenge
//! and creation are configuration fields (the node passes a random `u32`
//! challenge). The same machines therefore run over TCP, Unix sockets and
//! TLS, under tokio or a blocking loop, and the tests drive them with a
//! virtual clock, in the style of `quinn-proto`.
//!
//! Interoperability with OTP 25 rests on details the documentation gets
//! wrong or leaves out; each is pinned by a unit test and by the real-node
//! tests in `tests/otp_handshake.rs`:
//! - MANDATORY_25_DIGEST is bit 26 (0x4000000), not `1 << 36`; the node sends
//!   it together with every mandatory bit, and expands it on receive;
//! - the digest prints the challenge as an **unsigned** decimal;
//! - inside TLS the handshake uses `u32` length prefixes, not `u16`;
//! - the challenge's name must equal the dialled node;
//! - bytes after the name in `'N'` messages are ignored;
//! - an acceptor must take the old `'n'` + `'c'` form of OTP 23/24 peers
//!   (OTP 25.2.3 itself sends `'N'` even where it believes the peer is
//!   version 5: over TCP with a version 5 epmd entry, and from `erl_uds_dist`).
//!
//! # Layout
//!
//! - [`flags`]: every `DFLAG_*` value, the OTP 25 and 26 mandatory sets,
//!   digest expansion, and the flag set this node sends.
//! - [`digest()`]: `MD5(cookie ‖ decimal(challenge))`.
//! - [`frame`]: [`Framing`] (`u16` over TCP/UDS, `u32` inside TLS),
//!   [`take_frame`] (check-then-parse) and the size bound applied before
//!   authentication.
//! - [`message`]: each handshake message's layout, encoder and decoder.
//! - [`Connector`]: the initiator's state machine.
//! - [`Acceptor`]: the acceptor's state machine, with the [`PeerCheck`] the
//!   node layer answers (simultaneous connect, `alive`, allow lists,
//!   NAME_ME).
//! - [`Handshake`]: the one interface of both machines, so a driver is
//!   written once.
//! - [`HandshakeConfig`], [`Event`], [`Established`], [`Stage`],
//!   [`HandshakeError`]: what goes in and what comes out.
//! - [`packet`]: the connection after the handshake: `u32` framing, tick
//!   deadlines, pass-through packets decoded within a memory budget.
//!
//! # Driving a handshake
//!
//! Both machines are driven the same way, through [`Handshake`]: write what `poll_transmit`
//! yields, feed what the socket reads to `handle_input`, call
//! `handle_timeout` when `poll_timeout` is due and `handle_eof` at end of
//! stream, and take reports from `poll_event` until `Established` or
//! `Failed`. An acceptor also reports [`Event::PeerNamed`] and waits for
//! [`Acceptor::resolve`]. Here two machines talk in memory:
//!
//! ```
//! use std::time::Instant;
//! use dist_proto::{Acceptor, Connector, Event, Handshake, HandshakeConfig, PeerCheck};
//!
//! let now = Instant::now();
//! let a_cfg = HandshakeConfig::new("a@host", "cookie", 1, 0xA11CE);
//! let b_cfg = HandshakeConfig::new("b@host", "cookie", 2, 0xB0B);
//! let mut a = Connector::new(a_cfg, "b@host", now).unwrap();
//! let mut b = Acceptor::new(b_cfg, now).unwrap();
//! let mut done = None;
//! while done.is_none() {
//!     while let Some(bytes) = a.poll_transmit() {
//!         b.handle_input(&bytes, now);
//!     }
//!     while let Some(ev) = b.poll_event() {
//!         if let Event::PeerNamed { .. } = ev {
//!             b.resolve(PeerCheck::Free); // no connection to "a@host" yet
//!         }
//!     }
//!     while let Some(bytes) = b.poll_transmit() {
//!         a.handle_input(&bytes, now);
//!     }
//!     done = a.poll_event();
//! }
//! match done {
//!     Some(Event::Established(est)) => assert_eq!(est.peer_name, "b@host"),
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! After `Established`, the connection's traffic is `u32`-framed (an empty
//! packet is a tick); [`Established::leftover`] holds any of it that
//! arrived with the last handshake message, and starts the
//! [`packet::Framer`].

mod acceptor;
mod config;
mod connector;
mod core;
mod digest;
mod error;
mod event;
pub mod flags;
pub mod frame;
mod handshake;
pub mod message;
pub mod packet;

#[cfg(test)]
mod tests;

pub use acceptor::Acceptor;
pub use config::{HandshakeConfig, OnAlive, DEFAULT_TIMEOUT};
pub use connector::Connector;
pub use digest::digest;
pub use error::{ConfigError, HandshakeError};
pub use event::{Established, Event, PeerCheck, Stage};
pub use frame::{take_frame, Framing, MAX_HANDSHAKE_MESSAGE};
pub use handshake::Handshake;
pub use message::Status;
