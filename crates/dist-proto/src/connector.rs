//! The initiator's side of the handshake.

use std::time::Instant;

use crate::core::Core;
use crate::digest::{digest, digest_eq};
use crate::message::{is_full_name, Challenge, ChallengeAck, ChallengeReply, SendName, Status};
use crate::{
    flags, ConfigError, Established, Event, Handshake, HandshakeConfig, HandshakeError, OnAlive,
    PeerCheck, Stage,
};

/// The initiator ("A") of a handshake, as a sans-I/O state machine.
///
/// It queues its send_name on construction; the caller then drives it
/// through [`Handshake`] until [`Handshake::poll_event`] yields
/// [`Event::Established`] or [`Event::Failed`].
///
/// Steps: send_name (`'N'`) → status → challenge (`'N'`; its name must be
/// the dialled node, its flags must hold the required ones) →
/// challenge_reply (`'r'`) → challenge_ack (`'a'`, checked against this
/// side's challenge).
#[derive(Debug)]
pub struct Connector {
    cfg: HandshakeConfig,
    dialled: String,
    core: Core,
    status: Option<Status>,
    assigned: Option<(String, u32)>,
    peer_flags: u64,
    peer_creation: u32,
}

impl Handshake for Connector {
    fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.core.check_deadline(now) {
            return;
        }
        self.core.push_input(bytes);
        while !self.core.is_done() {
            let msg = match self.core.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    self.core.fail(e);
                    break;
                }
            };
            if let Err(e) = self.on_message(&msg) {
                self.core.fail(e);
            }
        }
    }

    fn handle_eof(&mut self) {
        let stage = self.core.stage;
        self.core.fail(HandshakeError::Closed { stage });
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.check_deadline(now);
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.core.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// The outcome, once: [`Event::Established`] or [`Event::Failed`] (an
    /// initiator reports nothing else).
    fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    fn stage(&self) -> Stage {
        self.core.stage
    }

    /// An initiator is never asked about its peer: does nothing.
    fn resolve(&mut self, _check: PeerCheck) -> Option<Status> {
        None
    }
}

impl Connector {
    /// Starts a handshake with `dialled` (the peer's full name, as looked up
    /// in epmd). The timeout runs from `now`.
    pub fn new(
        config: HandshakeConfig,
        dialled: impl Into<String>,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let dialled = dialled.into();
        if !is_full_name(&dialled) {
            return Err(ConfigError::BadPeerName(dialled));
        }
        let mut core = Core::new(
            config.framing,
            now.checked_add(config.timeout),
            Stage::Status,
        );
        core.send(
            &SendName {
                flags: config.flags,
                creation: config.creation,
                name: config.this_node.as_bytes(),
            }
            .encode(),
        );
        Ok(Self {
            cfg: config,
            dialled,
            core,
            status: None,
            assigned: None,
            peer_flags: 0,
            peer_creation: 0,
        })
    }

    /// The node this handshake dialled.
    pub fn dialled(&self) -> &str {
        &self.dialled
    }

    fn on_message(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        match self.core.stage {
            Stage::Status => self.on_status(Status::decode(msg)?),
            Stage::Challenge => self.on_challenge(&Challenge::decode(msg)?),
            Stage::ChallengeAck => self.on_ack(&ChallengeAck::decode(msg)?),
            _ => Err(HandshakeError::BadMessage(
                "message after the handshake ended",
            )),
        }
    }

    fn on_status(&mut self, status: Status) -> Result<(), HandshakeError> {
        match &status {
            Status::Ok | Status::OkSimultaneous => {}
            Status::Nok => return Err(HandshakeError::Nok),
            Status::NotAllowed => return Err(HandshakeError::PeerNotAllowed),
            Status::Alive => match self.cfg.on_alive {
                OnAlive::Continue => self.core.send(&Status::True.encode()),
                OnAlive::Abort => {
                    self.core.send(&Status::False.encode());
                    return Err(HandshakeError::Alive);
                }
            },
            Status::Named { name, creation } => {
                if self.cfg.flags & flags::NAME_ME == 0 {
                    return Err(HandshakeError::BadMessage("named: status without NAME_ME"));
                }
                if !is_full_name(name) {
                    return Err(HandshakeError::BadMessage(
                        "named: status with an invalid name",
                    ));
                }
                self.assigned = Some((name.clone(), *creation));
            }
            Status::True | Status::False => {
                return Err(HandshakeError::BadMessage(
                    "true/false status from the acceptor",
                ))
            }
        }
        self.status = Some(status);
        self.core.stage = Stage::Challenge;
        Ok(())
    }

    fn on_challenge(&mut self, ch: &Challenge<'_>) -> Result<(), HandshakeError> {
        // OTP aborts with `no_node` here: a reply to the wrong node would
        // connect us to something we did not ask for.
        if ch.name != self.dialled.as_bytes() {
            return Err(HandshakeError::NameMismatch {
                dialled: self.dialled.clone(),
                got: String::from_utf8_lossy(ch.name).into_owned(),
            });
        }
        let missing = flags::missing_required(ch.flags, self.cfg.required_flags);
        if missing != 0 {
            return Err(HandshakeError::NotAllowed { missing });
        }
        self.peer_flags = flags::expand_digest(ch.flags);
        self.peer_creation = ch.creation;
        self.core.send(
            &ChallengeReply {
                challenge: self.cfg.challenge,
                digest: digest(&self.cfg.cookie_out, ch.challenge),
            }
            .encode(),
        );
        self.core.stage = Stage::ChallengeAck;
        Ok(())
    }

    fn on_ack(&mut self, ack: &ChallengeAck) -> Result<(), HandshakeError> {
        let expected = digest(&self.cfg.cookie_in, self.cfg.challenge);
        if !digest_eq(&ack.digest, &expected) {
            return Err(HandshakeError::WrongCookie);
        }
        let est = Established {
            peer_name: self.dialled.clone(),
            peer_flags: self.peer_flags,
            flags: self.cfg.flags & self.peer_flags,
            peer_creation: self.peer_creation,
            status: self.status.take().unwrap_or(Status::Ok),
            assigned: self.assigned.take(),
            leftover: self.core.take_rest(),
        };
        self.core.stage = Stage::Established;
        self.core.emit(Event::Established(est));
        Ok(())
    }
}
