//! The acceptor's side of the handshake.

use std::time::Instant;

use crate::core::Core;
use crate::digest::{digest, digest_eq};
use crate::message::{
    is_full_name, is_host_only, utf8_name, AnySendName, Challenge, ChallengeAck, ChallengeReply,
    Complement, Status, OLD_VERSION,
};
use crate::{
    flags, ConfigError, Established, Event, Handshake, HandshakeConfig, HandshakeError, PeerCheck,
    Stage,
};

/// The low 32 bits: all an old `'n'` send_name can carry.
const LOW32: u64 = 0xffff_ffff;

/// What send_name told us about the initiator.
#[derive(Debug)]
struct Peer {
    name: String,
    /// Raw flags as sent (digest not expanded); only the low half until an
    /// old initiator's complement arrives.
    flags: u64,
    creation: u32,
    /// Began with the old `'n'`: a `'c'` complement follows the challenge.
    old: bool,
    wants_name: bool,
}

/// The acceptor ("B") of a handshake, as a sans-I/O state machine.
///
/// Driven through [`Handshake`] like [`Connector`](crate::Connector), with
/// one extra step: once the initiator's send_name has arrived and its flags
/// are acceptable, [`Handshake::poll_event`] yields [`Event::PeerNamed`]
/// (and [`peer_named`](Self::peer_named) returns the name) and the
/// handshake waits until the caller calls [`Handshake::resolve`] with what its
/// node knows about that peer. That is how simultaneous connects, existing
/// connections (`alive`), allow lists and NAME_ME are decided by the node
/// layer while this crate stays free of shared state.
///
/// Steps: send_name (`'N'`, or `'n'` version 5 with HANDSHAKE_23) → the
/// caller's [`PeerCheck`] → status (`ok`, `ok_simultaneous`, `nok`, `alive`,
/// `not_allowed`, `named:`) → challenge (`'N'`, always version 6) → (`'c'`
/// complement, after an old `'n'` only) → challenge_reply (`'r'`, checked
/// against this side's challenge) → challenge_ack (`'a'`).
#[derive(Debug)]
pub struct Acceptor {
    cfg: HandshakeConfig,
    core: Core,
    peer: Option<Peer>,
    status: Option<Status>,
}

impl Handshake for Acceptor {
    fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.core.check_deadline(now) {
            return;
        }
        self.core.push_input(bytes);
        self.process();
    }

    fn handle_eof(&mut self) {
        let stage = self.core.stage;
        self.core.fail(HandshakeError::Closed { stage });
    }

    /// The deadline also covers the wait for [`resolve`](Handshake::resolve).
    fn handle_timeout(&mut self, now: Instant) {
        self.core.check_deadline(now);
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    fn stage(&self) -> Stage {
        self.core.stage
    }

    /// Answers the peer check and sends the status. Returns the status sent,
    /// or `None` (and does nothing) unless the handshake is waiting for it.
    ///
    /// The contract, for a peer that did not ask for a name:
    ///
    /// | `check` | status sent | then |
    /// |---|---|---|
    /// | [`Free`](PeerCheck::Free) | `ok` | challenge |
    /// | [`PendingConnect`](PeerCheck::PendingConnect), peer name > this node's name | `ok_simultaneous` | challenge; **the node layer must drop its own outgoing attempt** |
    /// | [`PendingConnect`](PeerCheck::PendingConnect), otherwise | `nok` | fails with [`HandshakeError::Nok`]; the node keeps its own attempt |
    /// | [`Connected`](PeerCheck::Connected) | `alive` | waits for `true` (challenge; **the node layer must drop its old connection**, see [`Established::status`]) or `false` (fails with [`HandshakeError::Alive`]) |
    /// | [`Refuse`](PeerCheck::Refuse) or [`AssignName`](PeerCheck::AssignName) | `not_allowed` | fails with [`HandshakeError::Refused`] |
    ///
    /// Names are compared literally, byte by byte (full names, `a@h`), as
    /// OTP's `net_kernel` compares the two atoms; the node whose name is
    /// greater keeps its own attempt, so both sides agree without talking.
    ///
    /// For a NAME_ME initiator ([`peer_wants_name`](Self::peer_wants_name)),
    /// [`AssignName`](PeerCheck::AssignName) with a full name sends `named:`
    /// and goes on with that name as the peer's name and that creation as
    /// its creation; any other answer sends `not_allowed`.
    fn resolve(&mut self, check: PeerCheck) -> Option<Status> {
        if self.core.stage != Stage::PeerCheck {
            return None;
        }
        let peer = self.peer.as_ref()?;
        let status = if peer.wants_name {
            match check {
                PeerCheck::AssignName { name, creation } if is_full_name(&name) => {
                    Status::Named { name, creation }
                }
                _ => Status::NotAllowed,
            }
        } else {
            match check {
                PeerCheck::Free => Status::Ok,
                PeerCheck::PendingConnect => {
                    if peer.name.as_bytes() > self.cfg.this_node.as_bytes() {
                        Status::OkSimultaneous
                    } else {
                        Status::Nok
                    }
                }
                PeerCheck::Connected => Status::Alive,
                PeerCheck::Refuse | PeerCheck::AssignName { .. } => Status::NotAllowed,
            }
        };
        self.core.send(&status.encode());
        match &status {
            Status::Named { name, creation } => {
                if let Some(peer) = self.peer.as_mut() {
                    peer.name.clone_from(name);
                    peer.creation = *creation;
                }
                self.send_challenge();
            }
            Status::Ok | Status::OkSimultaneous => self.send_challenge(),
            Status::Alive => self.core.stage = Stage::AliveReply,
            Status::Nok => self.core.fail(HandshakeError::Nok),
            _ => self.core.fail(HandshakeError::Refused),
        }
        self.status = Some(status.clone());
        Some(status)
    }
}

impl Acceptor {
    /// Starts a handshake on an accepted connection. The timeout runs from
    /// `now`.
    pub fn new(config: HandshakeConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let core = Core::new(config.framing, now.checked_add(config.timeout), Stage::Name);
        Ok(Self {
            cfg: config,
            core,
            peer: None,
            status: None,
        })
    }

    /// The initiator's name while the handshake waits for
    /// [`Handshake::resolve`]; `None` at any other time.
    pub fn peer_named(&self) -> Option<&str> {
        match (&self.peer, self.core.stage) {
            (Some(p), Stage::PeerCheck) => Some(&p.name),
            _ => None,
        }
    }

    /// Whether the initiator asked for a name (NAME_ME); meaningful while
    /// [`peer_named`](Self::peer_named) is `Some`.
    pub fn peer_wants_name(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.wants_name)
    }

    fn process(&mut self) {
        while !self.core.is_done() {
            if self.core.stage == Stage::PeerCheck {
                // The initiator must wait for our status; bytes now are a
                // protocol violation, and refusing them keeps the buffer
                // bounded while the node layer decides.
                if self.core.has_buffered() {
                    self.core.fail(HandshakeError::BadMessage(
                        "data before the status was sent",
                    ));
                }
                return;
            }
            let msg = match self.core.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => return self.core.fail(e),
            };
            if let Err(e) = self.on_message(&msg) {
                self.core.fail(e);
            }
        }
    }

    fn on_message(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        match self.core.stage {
            Stage::Name => self.on_name(AnySendName::decode(msg)?),
            Stage::AliveReply => match Status::decode(msg)? {
                Status::True => {
                    self.send_challenge();
                    Ok(())
                }
                Status::False => Err(HandshakeError::Alive),
                _ => Err(HandshakeError::BadMessage(
                    "expected true or false after alive",
                )),
            },
            Stage::Complement => self.on_complement(Complement::decode(msg)?),
            Stage::ChallengeReply => self.on_reply(&ChallengeReply::decode(msg)?),
            _ => Err(HandshakeError::BadMessage(
                "message after the handshake ended",
            )),
        }
    }

    fn on_name(&mut self, sn: AnySendName<'_>) -> Result<(), HandshakeError> {
        let peer = match sn {
            AnySendName::New(sn) => {
                let name = utf8_name(sn.name)?;
                let wants_name = sn.flags & flags::NAME_ME != 0;
                let name_ok = if wants_name {
                    is_host_only(name) && !name.contains('@')
                } else {
                    is_full_name(name)
                };
                if !name_ok {
                    return Err(HandshakeError::BadMessage("invalid node name in send_name"));
                }
                self.refuse_if_missing(flags::missing_required(sn.flags, self.cfg.required_flags))?;
                Peer {
                    name: name.to_owned(),
                    flags: sn.flags,
                    creation: sn.creation,
                    old: false,
                    wants_name,
                }
            }
            AnySendName::Old(sn) => {
                if sn.version != OLD_VERSION {
                    return Err(HandshakeError::UnsupportedVersion(sn.version));
                }
                let name = utf8_name(sn.name)?;
                if !is_full_name(name) {
                    return Err(HandshakeError::BadMessage("invalid node name in send_name"));
                }
                let flags = u64::from(sn.flags);
                // Without HANDSHAKE_23 the initiator expects a version 5
                // challenge, which no OTP >= 25 sends and neither do we. The
                // high half of the required flags is checked after 'c'.
                let required = (self.cfg.required_flags & LOW32) | flags::HANDSHAKE_23;
                self.refuse_if_missing(flags::missing_required(flags, required))?;
                Peer {
                    name: name.to_owned(),
                    flags,
                    creation: 0,
                    old: true,
                    wants_name: false,
                }
            }
        };
        let ev = Event::PeerNamed {
            name: peer.name.clone(),
            wants_name: peer.wants_name,
        };
        self.peer = Some(peer);
        self.core.stage = Stage::PeerCheck;
        self.core.emit(ev);
        Ok(())
    }

    fn refuse_if_missing(&mut self, missing: u64) -> Result<(), HandshakeError> {
        if missing == 0 {
            return Ok(());
        }
        // As OTP's check_dflags: tell the initiator why before closing.
        self.core.send(&Status::NotAllowed.encode());
        Err(HandshakeError::NotAllowed { missing })
    }

    fn send_challenge(&mut self) {
        let old = self.peer.as_ref().is_some_and(|p| p.old);
        self.core.send(
            &Challenge {
                flags: self.cfg.flags,
                challenge: self.cfg.challenge,
                creation: self.cfg.creation,
                name: self.cfg.this_node.as_bytes(),
            }
            .encode(),
        );
        self.core.stage = if old {
            Stage::Complement
        } else {
            Stage::ChallengeReply
        };
    }

    fn on_complement(&mut self, c: Complement) -> Result<(), HandshakeError> {
        let Some(peer) = self.peer.as_mut() else {
            return Err(HandshakeError::BadMessage("complement before send_name"));
        };
        peer.flags = (u64::from(c.flags_high) << 32) | (peer.flags & LOW32);
        peer.creation = c.creation;
        let missing = flags::missing_required(peer.flags, self.cfg.required_flags);
        self.refuse_if_missing(missing)?;
        self.core.stage = Stage::ChallengeReply;
        Ok(())
    }

    fn on_reply(&mut self, r: &ChallengeReply) -> Result<(), HandshakeError> {
        let expected = digest(&self.cfg.cookie_in, self.cfg.challenge);
        if !digest_eq(&r.digest, &expected) {
            // Nothing is sent: the caller closes, as OTP does.
            return Err(HandshakeError::WrongCookie);
        }
        self.core.send(
            &ChallengeAck {
                digest: digest(&self.cfg.cookie_out, r.challenge),
            }
            .encode(),
        );
        let Some(peer) = self.peer.take() else {
            return Err(HandshakeError::BadMessage(
                "challenge_reply before send_name",
            ));
        };
        let peer_flags = flags::expand_digest(peer.flags);
        let est = Established {
            peer_name: peer.name,
            peer_flags,
            flags: self.cfg.flags & peer_flags,
            peer_creation: peer.creation,
            status: self.status.take().unwrap_or(Status::Ok),
            assigned: None,
            leftover: self.core.take_rest(),
        };
        self.core.stage = Stage::Established;
        self.core.emit(Event::Established(est));
        Ok(())
    }
}
