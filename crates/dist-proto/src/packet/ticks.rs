//! `net_ticktime` deadlines, one per direction, with time passed in.
//!
//! As in OTP, a connection on which nothing arrives for `net_ticktime` is
//! down, and a side that has sent nothing for a quarter of it sends a tick
//! (an empty frame). The two halves are separate values because a
//! connection's reader and writer run apart: each owns its own.

use std::time::{Duration, Instant};

use super::PacketError;

/// A tick: a frame of length zero.
pub const TICK: [u8; 4] = [0; 4];

/// The receiving half: the peer must be heard from every `net_ticktime`.
#[derive(Debug, Clone)]
pub struct Liveness {
    limit: Duration,
    deadline: Instant,
}

impl Liveness {
    /// Starts the clock at `now`.
    pub fn new(net_ticktime: Duration, now: Instant) -> Self {
        Self {
            limit: net_ticktime,
            deadline: now + net_ticktime,
        }
    }

    /// Bytes arrived (a tick or anything else): the peer is alive.
    pub fn on_input(&mut self, now: Instant) {
        self.deadline = now + self.limit;
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    /// [`PacketError::TickTimeout`] if nothing arrived for a whole
    /// `net_ticktime` before `now`; the connection is then down.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), PacketError> {
        if now >= self.deadline {
            Err(PacketError::TickTimeout)
        } else {
            Ok(())
        }
    }
}

/// The sending half: a tick goes out when nothing else has for a quarter of
/// `net_ticktime`.
#[derive(Debug, Clone)]
pub struct Ticker {
    every: Duration,
    deadline: Instant,
}

impl Ticker {
    /// Starts the clock at `now`.
    pub fn new(net_ticktime: Duration, now: Instant) -> Self {
        let every = net_ticktime / 4;
        Self {
            every,
            deadline: now + every,
        }
    }

    /// Something was written: no tick is needed for a while.
    pub fn on_send(&mut self, now: Instant) {
        self.deadline = now + self.every;
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline
    }

    /// The tick to write if one is due at `now` (the clock then restarts
    /// as if it had been sent), else `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<&'static [u8]> {
        if now >= self.deadline {
            self.on_send(now);
            Some(&TICK)
        } else {
            None
        }
    }
}
