//! In-memory tests: a [`Connector`] against an [`Acceptor`] with a virtual
//! clock, plus hand-made byte sequences for the forms only other
//! implementations send (old `'n'`, trailing bytes, garbage).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::digest::digest;
use crate::flags::*;
use crate::frame::{encode_frame, Framing};
use crate::message::{
    Challenge, ChallengeAck, ChallengeReply, Complement, OldSendName, SendName, Status,
};
use crate::{
    Acceptor, Connector, Established, Event, Handshake, HandshakeConfig, HandshakeError, OnAlive,
    PeerCheck, Stage,
};

const A_CHALLENGE: u32 = 0x8000_0001;
const B_CHALLENGE: u32 = 0xdead_beef;

fn cfg(name: &str, cookie: &str, creation: u32, challenge: u32) -> HandshakeConfig {
    HandshakeConfig::new(name, cookie, creation, challenge)
}

/// Two machines joined by an in-memory "wire", with a virtual clock.
struct Pair {
    now: Instant,
    a: Connector,
    b: Acceptor,
    /// What B's node answers when A's name arrives; `None` leaves it waiting.
    check: Option<PeerCheck>,
    /// Deliver at most this many bytes per `handle_input`.
    chunk: usize,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
}

impl Pair {
    fn new(a: HandshakeConfig, dialled: &str, b: HandshakeConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            a: Connector::new(a, dialled, now).expect("connector config"),
            b: Acceptor::new(b, now).expect("acceptor config"),
            check: Some(PeerCheck::Free),
            chunk: usize::MAX,
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_to_b: Vec::new(),
            b_to_a: Vec::new(),
        }
    }

    fn standard() -> Self {
        Self::new(
            cfg("a@host", "cookie", 11, A_CHALLENGE),
            "b@host",
            cfg("b@host", "cookie", 22, B_CHALLENGE),
        )
    }

    /// Shuttles bytes and events until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                self.a_to_b.extend_from_slice(&t);
                for piece in t.chunks(self.chunk.min(t.len().max(1))) {
                    self.b.handle_input(piece, self.now);
                }
                moved = true;
            }
            while let Some(ev) = self.b.poll_event() {
                if matches!(ev, Event::PeerNamed { .. }) {
                    if let Some(check) = self.check.clone() {
                        assert!(self.b.resolve(check).is_some());
                    }
                }
                self.b_events.push(ev);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                self.b_to_a.extend_from_slice(&t);
                for piece in t.chunks(self.chunk.min(t.len().max(1))) {
                    self.a.handle_input(piece, self.now);
                }
                moved = true;
            }
            while let Some(ev) = self.a.poll_event() {
                self.a_events.push(ev);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn a_outcome(&self) -> Option<&Event> {
        terminal(&self.a_events)
    }

    fn b_outcome(&self) -> Option<&Event> {
        terminal(&self.b_events)
    }

    fn a_est(&self) -> &Established {
        match self.a_outcome() {
            Some(Event::Established(e)) => e,
            other => panic!("connector: {other:?}"),
        }
    }

    fn b_est(&self) -> &Established {
        match self.b_outcome() {
            Some(Event::Established(e)) => e,
            other => panic!("acceptor: {other:?}"),
        }
    }

    fn a_err(&self) -> &HandshakeError {
        match self.a_outcome() {
            Some(Event::Failed(e)) => e,
            other => panic!("connector: {other:?}"),
        }
    }

    fn b_err(&self) -> &HandshakeError {
        match self.b_outcome() {
            Some(Event::Failed(e)) => e,
            other => panic!("acceptor: {other:?}"),
        }
    }
}

/// The one terminal event, checking there is at most one.
fn terminal(events: &[Event]) -> Option<&Event> {
    let mut t = events
        .iter()
        .filter(|e| matches!(e, Event::Established(_) | Event::Failed(_)));
    let first = t.next();
    assert!(t.next().is_none(), "more than one outcome: {events:?}");
    first
}

/// Splits a byte stream into framed message bodies.
fn bodies(mut wire: &[u8], framing: Framing) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Some((body, used))) = crate::take_frame(wire, framing) {
        out.push(wire[body].to_vec());
        wire = &wire[used..];
    }
    assert!(wire.is_empty(), "partial frame left: {wire:?}");
    out
}

fn drain_tx(b: &mut Acceptor) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = b.poll_transmit() {
        out.extend_from_slice(&t);
    }
    out
}

fn drain_tx_a(a: &mut Connector) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(t) = a.poll_transmit() {
        out.extend_from_slice(&t);
    }
    out
}

fn events_b(b: &mut Acceptor) -> Vec<Event> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn events_a(a: &mut Connector) -> Vec<Event> {
    std::iter::from_fn(|| a.poll_event()).collect()
}

// ---------------------------------------------------------------------------
// Success
// ---------------------------------------------------------------------------

fn check_success(p: &Pair) {
    let default = node_flags(DEFAULT_OPTIONAL, true);
    let a = p.a_est();
    assert_eq!(a.peer_name, "b@host");
    assert_eq!(a.peer_creation, 22);
    assert_eq!(a.peer_flags, default);
    assert_eq!(a.flags, default);
    assert_eq!(a.status, Status::Ok);
    assert_eq!(a.assigned, None);
    assert!(a.leftover.is_empty());
    let b = p.b_est();
    assert_eq!(b.peer_name, "a@host");
    assert_eq!(b.peer_creation, 11);
    assert_eq!(b.flags, default);
    assert_eq!(b.status, Status::Ok);
    assert_eq!(
        p.b_events[0],
        Event::PeerNamed {
            name: "a@host".into(),
            wants_name: false
        }
    );
    assert_eq!(p.a.stage(), Stage::Established);
    assert_eq!(p.b.stage(), Stage::Established);
    assert_eq!(p.a.poll_timeout(), None);
    assert_eq!(p.b.poll_timeout(), None);
}

#[test]
fn success_u16_framing() {
    for chunk in [1, 2, 3, 7, usize::MAX] {
        let mut p = Pair::standard();
        p.chunk = chunk;
        p.drive();
        check_success(&p);
        // Exactly the documented sequence, u16-framed.
        let a_msgs = bodies(&p.a_to_b, Framing::U16);
        let b_msgs = bodies(&p.b_to_a, Framing::U16);
        assert_eq!(a_msgs.len(), 2);
        assert_eq!(b_msgs.len(), 3);
        let sn = SendName::decode(&a_msgs[0]).unwrap();
        assert_eq!(sn.name, b"a@host");
        assert_eq!(sn.flags, node_flags(DEFAULT_OPTIONAL, true));
        assert_eq!(Status::decode(&b_msgs[0]).unwrap(), Status::Ok);
        let ch = Challenge::decode(&b_msgs[1]).unwrap();
        assert_eq!(ch.challenge, B_CHALLENGE);
        assert_eq!(ch.name, b"b@host");
        let r = ChallengeReply::decode(&a_msgs[1]).unwrap();
        assert_eq!(r.challenge, A_CHALLENGE);
        assert_eq!(r.digest, digest(b"cookie", B_CHALLENGE));
        let ack = ChallengeAck::decode(&b_msgs[2]).unwrap();
        assert_eq!(ack.digest, digest(b"cookie", A_CHALLENGE));
    }
}

#[test]
fn success_u32_framing() {
    for chunk in [1, 5, usize::MAX] {
        let mut p = Pair::new(
            cfg("a@host", "cookie", 11, A_CHALLENGE).with_framing(Framing::U32),
            "b@host",
            cfg("b@host", "cookie", 22, B_CHALLENGE).with_framing(Framing::U32),
        );
        p.chunk = chunk;
        p.drive();
        check_success(&p);
        assert_eq!(p.a_to_b[..4], [0, 0, 0, 21]); // 'N' + 8 + 4 + 2 + 6
        assert_eq!(bodies(&p.a_to_b, Framing::U32).len(), 2);
        assert_eq!(bodies(&p.b_to_a, Framing::U32).len(), 3);
    }
}

#[test]
fn mixed_framing_fails_cleanly() {
    // A u16 client against a u32 (TLS) server: the TLS framing trap.
    let mut p = Pair::new(
        cfg("a@host", "cookie", 11, A_CHALLENGE),
        "b@host",
        cfg("b@host", "cookie", 22, B_CHALLENGE).with_framing(Framing::U32),
    );
    p.drive();
    assert!(matches!(
        p.b_err(),
        HandshakeError::FrameTooLarge { .. } | HandshakeError::BadMessage(_)
    ));
}

#[test]
fn hidden_peer_drops_published() {
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE).with_optional_flags(DEFAULT_OPTIONAL, false),
        "b@host",
        cfg("b@host", "cookie", 2, B_CHALLENGE),
    );
    p.drive();
    assert_eq!(p.b_est().flags & PUBLISHED, 0);
    assert_eq!(p.a_est().flags & PUBLISHED, 0);
    assert_ne!(p.a_est().peer_flags & PUBLISHED, 0);
}

#[test]
fn negotiated_flags_are_the_and() {
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE)
            .with_optional_flags(DEFAULT_OPTIONAL | FRAGMENTS | SPAWN, true),
        "b@host",
        cfg("b@host", "cookie", 2, B_CHALLENGE).with_optional_flags(SPAWN | ALIAS, true),
    );
    p.drive();
    let a = p.a_est();
    assert_eq!(a.flags & (SPAWN | FRAGMENTS | ALIAS | SEND_SENDER), SPAWN);
    assert_eq!(p.b_est().flags, a.flags);
}

#[test]
fn separate_in_and_out_cookies() {
    let mut a = cfg("a@host", "", 1, A_CHALLENGE);
    a.cookie_in = b"for-a".to_vec();
    a.cookie_out = b"for-b".to_vec();
    let mut b = cfg("b@host", "", 2, B_CHALLENGE);
    b.cookie_in = b"for-b".to_vec();
    b.cookie_out = b"for-a".to_vec();
    let mut p = Pair::new(a, "b@host", b);
    p.drive();
    p.a_est();
    p.b_est();
}

// ---------------------------------------------------------------------------
// Authentication and naming failures
// ---------------------------------------------------------------------------

#[test]
fn wrong_cookie_rejected_by_acceptor() {
    let mut p = Pair::new(
        cfg("a@host", "right", 1, A_CHALLENGE),
        "b@host",
        cfg("b@host", "wrong", 2, B_CHALLENGE),
    );
    p.drive();
    assert_eq!(p.b_err(), &HandshakeError::WrongCookie);
    // The acceptor sent status and challenge, and nothing after the reply.
    assert_eq!(bodies(&p.b_to_a, Framing::U16).len(), 2);
    assert_eq!(p.a_outcome(), None);
    assert_eq!(p.a.stage(), Stage::ChallengeAck);
    // OTP closes the socket at this point.
    p.a.handle_eof();
    assert_eq!(
        events_a(&mut p.a),
        [Event::Failed(HandshakeError::Closed {
            stage: Stage::ChallengeAck
        })]
    );
}

#[test]
fn wrong_cookie_rejected_by_connector() {
    // B accepts A's reply but answers A's challenge with another cookie.
    let mut b = cfg("b@host", "shared", 2, B_CHALLENGE);
    b.cookie_out = b"other".to_vec();
    let mut p = Pair::new(cfg("a@host", "shared", 1, A_CHALLENGE), "b@host", b);
    p.drive();
    p.b_est();
    assert_eq!(p.a_err(), &HandshakeError::WrongCookie);
}

#[test]
fn challenge_name_must_be_the_dialled_node() {
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE),
        "c@host",
        cfg("b@host", "cookie", 2, B_CHALLENGE),
    );
    p.drive();
    assert_eq!(
        p.a_err(),
        &HandshakeError::NameMismatch {
            dialled: "c@host".into(),
            got: "b@host".into()
        }
    );
    // A sent no challenge_reply.
    assert_eq!(bodies(&p.a_to_b, Framing::U16).len(), 1);
}

#[test]
fn missing_mandatory_flags_at_the_acceptor() {
    let mut a = cfg("a@host", "cookie", 1, A_CHALLENGE);
    a.flags &= !(BIG_CREATION | MANDATORY_25_DIGEST);
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.drive();
    assert_eq!(
        p.b_err(),
        &HandshakeError::NotAllowed {
            missing: BIG_CREATION
        }
    );
    assert_eq!(p.a_err(), &HandshakeError::PeerNotAllowed);
    assert_eq!(
        bodies(&p.b_to_a, Framing::U16),
        [Status::NotAllowed.encode()]
    );
    // No PeerNamed: the node layer is not asked about refused peers.
    assert_eq!(p.b_events.len(), 1);
}

#[test]
fn digest_bit_stands_for_the_otp25_set() {
    let mut a = cfg("a@host", "cookie", 1, A_CHALLENGE);
    a.flags = MANDATORY_25_DIGEST | UNLINK_ID | V4_NC | HANDSHAKE_23;
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.drive();
    let b = p.b_est();
    assert_eq!(b.peer_flags & MANDATORY_26, MANDATORY_26);
    assert_eq!(b.flags & MANDATORY_26, MANDATORY_26);
    // Without the OTP 26 additions the digest is not enough.
    let mut a = cfg("a@host", "cookie", 1, A_CHALLENGE);
    a.flags = MANDATORY_25_DIGEST | HANDSHAKE_23;
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.drive();
    assert_eq!(
        p.b_err(),
        &HandshakeError::NotAllowed {
            missing: UNLINK_ID | V4_NC
        }
    );
    // ... unless the node requires only the OTP 25 set.
    let mut a = cfg("a@host", "cookie", 1, A_CHALLENGE);
    a.flags = MANDATORY_25_DIGEST | HANDSHAKE_23;
    let mut b = cfg("b@host", "cookie", 2, B_CHALLENGE);
    b.required_flags = MANDATORY_25;
    let mut p = Pair::new(a, "b@host", b);
    p.drive();
    p.b_est();
}

#[test]
fn missing_mandatory_flags_at_the_connector() {
    let mut b = cfg("b@host", "cookie", 2, B_CHALLENGE);
    b.flags &= !V4_NC;
    let mut p = Pair::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", b);
    p.drive();
    assert_eq!(p.a_err(), &HandshakeError::NotAllowed { missing: V4_NC });
    assert_eq!(p.b_outcome(), None);
}

#[test]
fn refused_by_the_node_layer() {
    let mut p = Pair::standard();
    p.check = Some(PeerCheck::Refuse);
    p.drive();
    assert_eq!(p.b_err(), &HandshakeError::Refused);
    assert_eq!(p.a_err(), &HandshakeError::PeerNotAllowed);
}

// ---------------------------------------------------------------------------
// Simultaneous connect and `alive`
// ---------------------------------------------------------------------------

#[test]
fn simultaneous_connect_greater_initiator_wins() {
    // Initiator c@host > acceptor b@host: ok_simultaneous.
    let mut p = Pair::new(
        cfg("c@host", "cookie", 1, A_CHALLENGE),
        "b@host",
        cfg("b@host", "cookie", 2, B_CHALLENGE),
    );
    p.check = Some(PeerCheck::PendingConnect);
    p.drive();
    assert_eq!(p.a_est().status, Status::OkSimultaneous);
    assert_eq!(p.b_est().status, Status::OkSimultaneous);
}

#[test]
fn simultaneous_connect_greater_acceptor_keeps_its_attempt() {
    // Initiator a@host < acceptor b@host: nok.
    let mut p = Pair::standard();
    p.check = Some(PeerCheck::PendingConnect);
    p.drive();
    assert_eq!(p.b_err(), &HandshakeError::Nok);
    assert_eq!(p.a_err(), &HandshakeError::Nok);
    assert_eq!(bodies(&p.b_to_a, Framing::U16), [b"snok".to_vec()]);
}

#[test]
fn simultaneous_connect_compares_bytes_literally() {
    // "B@host" < "a@host" in byte order (uppercase sorts first).
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE),
        "B@host",
        cfg("B@host", "cookie", 2, B_CHALLENGE),
    );
    p.check = Some(PeerCheck::PendingConnect);
    p.drive();
    assert_eq!(p.b_est().status, Status::OkSimultaneous);
    // Bytes, not "alive parts": '@' (0x40) sorts after '1' (0x31), so
    // "a@host" > "a1@host".
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE),
        "a1@host",
        cfg("a1@host", "cookie", 2, B_CHALLENGE),
    );
    p.check = Some(PeerCheck::PendingConnect);
    p.drive();
    assert_eq!(p.b_est().status, Status::OkSimultaneous);
    // A name sorts after its own prefix: "a@host" < "a@hostx".
    let mut p = Pair::new(
        cfg("a@host", "cookie", 1, A_CHALLENGE),
        "a@hostx",
        cfg("a@hostx", "cookie", 2, B_CHALLENGE),
    );
    p.check = Some(PeerCheck::PendingConnect);
    p.drive();
    assert_eq!(p.b_err(), &HandshakeError::Nok);
}

#[test]
fn resolve_reports_the_status_and_only_once() {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    assert_eq!(b.resolve(PeerCheck::Free), None);
    let mut a = Connector::new(cfg("z@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    b.handle_input(&drain_tx_a(&mut a), now);
    assert_eq!(b.peer_named(), Some("z@host"));
    assert_eq!(b.stage(), Stage::PeerCheck);
    assert_eq!(
        b.resolve(PeerCheck::PendingConnect),
        Some(Status::OkSimultaneous)
    );
    assert_eq!(b.peer_named(), None);
    assert_eq!(b.resolve(PeerCheck::Free), None);
}

#[test]
fn alive_continue() {
    let mut p = Pair::standard();
    p.check = Some(PeerCheck::Connected);
    p.drive();
    assert_eq!(p.a_est().status, Status::Alive);
    assert_eq!(p.b_est().status, Status::Alive);
    assert_eq!(bodies(&p.a_to_b, Framing::U16)[1], b"strue");
}

#[test]
fn alive_abort() {
    let mut a = cfg("a@host", "cookie", 1, A_CHALLENGE);
    a.on_alive = OnAlive::Abort;
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.check = Some(PeerCheck::Connected);
    p.drive();
    assert_eq!(p.a_err(), &HandshakeError::Alive);
    assert_eq!(p.b_err(), &HandshakeError::Alive);
    assert_eq!(bodies(&p.a_to_b, Framing::U16)[1], b"sfalse");
}

// ---------------------------------------------------------------------------
// NAME_ME
// ---------------------------------------------------------------------------

#[test]
fn name_me() {
    let mut a = cfg("host", "cookie", 0, A_CHALLENGE);
    a.flags |= NAME_ME;
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.check = Some(PeerCheck::AssignName {
        name: "gen7@host".into(),
        creation: 77,
    });
    p.drive();
    assert_eq!(
        p.b_events[0],
        Event::PeerNamed {
            name: "host".into(),
            wants_name: true
        }
    );
    let a = p.a_est();
    assert_eq!(a.assigned, Some(("gen7@host".to_owned(), 77)));
    let b = p.b_est();
    assert_eq!(b.peer_name, "gen7@host");
    assert_eq!(b.peer_creation, 77);

    // Any other answer to a NAME_ME request refuses it.
    let mut a = cfg("host", "cookie", 0, A_CHALLENGE);
    a.flags |= NAME_ME;
    let mut p = Pair::new(a, "b@host", cfg("b@host", "cookie", 2, B_CHALLENGE));
    p.drive();
    assert_eq!(p.b_err(), &HandshakeError::Refused);
}

#[test]
fn named_status_without_name_me_is_bad() {
    let now = Instant::now();
    let mut a = Connector::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    let named = Status::Named {
        name: "x@host".into(),
        creation: 1,
    };
    a.handle_input(&encode_frame(&named.encode(), Framing::U16), now);
    assert!(matches!(
        events_a(&mut a)[..],
        [Event::Failed(HandshakeError::BadMessage(_))]
    ));
}

// ---------------------------------------------------------------------------
// The old 'n' + 'c' form
// ---------------------------------------------------------------------------

fn old_name(flags: u32, version: u16) -> Vec<u8> {
    encode_frame(
        &OldSendName {
            version,
            flags,
            name: b"old@host",
        }
        .encode(),
        Framing::U16,
    )
}

#[test]
fn old_send_name_and_complement() {
    let now = Instant::now();
    let full = node_flags(DEFAULT_OPTIONAL, true);
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    b.handle_input(&old_name(full as u32, 5), now);
    assert_eq!(b.peer_named(), Some("old@host"));
    assert_eq!(b.resolve(PeerCheck::Free), Some(Status::Ok));
    let sent = bodies(&drain_tx(&mut b), Framing::U16);
    assert_eq!(sent[0], b"sok");
    // The challenge is always the version 6 'N'.
    let ch = Challenge::decode(&sent[1]).unwrap();
    assert_eq!(ch.name, b"b@host");
    assert_eq!(b.stage(), Stage::Complement);
    // 'c' and 'r' in one read.
    let mut input = encode_frame(
        &Complement {
            flags_high: (full >> 32) as u32,
            creation: 3,
        }
        .encode(),
        Framing::U16,
    );
    input.extend(encode_frame(
        &ChallengeReply {
            challenge: 99,
            digest: digest(b"cookie", ch.challenge),
        }
        .encode(),
        Framing::U16,
    ));
    b.handle_input(&input, now);
    let sent = bodies(&drain_tx(&mut b), Framing::U16);
    assert_eq!(
        ChallengeAck::decode(&sent[0]).unwrap().digest,
        digest(b"cookie", 99)
    );
    let evs = events_b(&mut b);
    let Some(Event::Established(est)) = evs.last() else {
        panic!("{evs:?}")
    };
    assert_eq!(est.peer_name, "old@host");
    assert_eq!(est.peer_flags, full);
    assert_eq!(est.peer_creation, 3);
}

#[test]
fn old_send_name_needs_handshake_23() {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    let low = (node_flags(DEFAULT_OPTIONAL, true) & !HANDSHAKE_23 & !MANDATORY_25_DIGEST) as u32;
    b.handle_input(&old_name(low, 5), now);
    assert_eq!(
        events_b(&mut b),
        [Event::Failed(HandshakeError::NotAllowed {
            missing: HANDSHAKE_23
        })]
    );
    assert_eq!(
        drain_tx(&mut b),
        encode_frame(b"snot_allowed", Framing::U16)
    );
}

#[test]
fn old_send_name_high_flags_checked_after_complement() {
    let now = Instant::now();
    let full = node_flags(DEFAULT_OPTIONAL, true);
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    b.handle_input(&old_name(full as u32, 5), now);
    b.resolve(PeerCheck::Free);
    drain_tx(&mut b);
    let c = Complement {
        flags_high: 0,
        creation: 3,
    };
    b.handle_input(&encode_frame(&c.encode(), Framing::U16), now);
    let evs = events_b(&mut b);
    assert_eq!(
        evs.last(),
        Some(&Event::Failed(HandshakeError::NotAllowed {
            missing: V4_NC
        }))
    );
}

#[test]
fn old_send_name_other_versions_refused() {
    let now = Instant::now();
    for v in [0, 4, 6, 0xffff] {
        let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
        b.handle_input(&old_name(HANDSHAKE_23 as u32, v), now);
        assert_eq!(
            events_b(&mut b),
            [Event::Failed(HandshakeError::UnsupportedVersion(v))]
        );
    }
}

// ---------------------------------------------------------------------------
// Timeouts and end of stream
// ---------------------------------------------------------------------------

#[test]
fn timeout_while_the_node_layer_decides() {
    let mut p = Pair::standard();
    p.check = None;
    p.drive();
    assert_eq!(p.b.stage(), Stage::PeerCheck);
    let deadline = p.b.poll_timeout().expect("deadline");
    assert_eq!(deadline, p.now + crate::DEFAULT_TIMEOUT);
    assert_eq!(p.a.poll_timeout(), Some(deadline));
    // Not yet.
    p.a.handle_timeout(deadline - Duration::from_millis(1));
    p.b.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!p.a.is_done() && !p.b.is_done());
    p.a.handle_timeout(deadline);
    p.b.handle_timeout(deadline);
    assert_eq!(
        events_a(&mut p.a),
        [Event::Failed(HandshakeError::Timeout {
            stage: Stage::Status
        })]
    );
    assert_eq!(
        events_b(&mut p.b),
        [Event::Failed(HandshakeError::Timeout {
            stage: Stage::PeerCheck
        })]
    );
    assert_eq!(p.a.poll_timeout(), None);
    // A late resolve does nothing.
    assert_eq!(p.b.resolve(PeerCheck::Free), None);
    assert!(p.b.poll_transmit().is_none());
}

#[test]
fn input_after_the_deadline_is_a_timeout() {
    let now = Instant::now();
    let c = cfg("b@host", "cookie", 2, B_CHALLENGE).with_timeout(Duration::from_secs(1));
    let mut b = Acceptor::new(c, now).unwrap();
    let mut a = Connector::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    b.handle_input(&drain_tx_a(&mut a), now + Duration::from_secs(1));
    assert_eq!(
        events_b(&mut b),
        [Event::Failed(HandshakeError::Timeout {
            stage: Stage::Name
        })]
    );
}

#[test]
fn eof_fails_once() {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    b.handle_eof();
    b.handle_eof();
    b.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(
        events_b(&mut b),
        [Event::Failed(HandshakeError::Closed { stage: Stage::Name })]
    );
}

// ---------------------------------------------------------------------------
// Trailing bytes and leftovers
// ---------------------------------------------------------------------------

#[test]
fn trailing_bytes_after_names_are_ignored() {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    let mut sn = SendName {
        flags: node_flags(DEFAULT_OPTIONAL, true),
        creation: 5,
        name: b"a@host",
    }
    .encode();
    sn.extend_from_slice(b"\0\0some future field");
    b.handle_input(&encode_frame(&sn, Framing::U16), now);
    assert_eq!(b.peer_named(), Some("a@host"));

    let mut a = Connector::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    drain_tx_a(&mut a);
    let mut ch = Challenge {
        flags: node_flags(DEFAULT_OPTIONAL, true),
        challenge: 42,
        creation: 6,
        name: b"b@host",
    }
    .encode();
    ch.extend_from_slice(&[1, 2, 3, 4, 5]);
    let mut input = encode_frame(b"sok", Framing::U16);
    input.extend(encode_frame(&ch, Framing::U16));
    a.handle_input(&input, now);
    assert_eq!(a.stage(), Stage::ChallengeAck);
    let reply = bodies(&drain_tx_a(&mut a), Framing::U16);
    assert_eq!(
        ChallengeReply::decode(&reply[0]).unwrap().digest,
        digest(b"cookie", 42)
    );
    // The ack, followed at once by distribution traffic (a tick and a
    // packet) in the same read: it all becomes the leftover.
    let mut input = encode_frame(
        &ChallengeAck {
            digest: digest(b"cookie", A_CHALLENGE),
        }
        .encode(),
        Framing::U16,
    );
    input.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 112]);
    a.handle_input(&input, now);
    // More arrives before the event is taken: appended.
    a.handle_input(&[9, 9], now);
    let evs = events_a(&mut a);
    let [Event::Established(est)] = &evs[..] else {
        panic!("{evs:?}")
    };
    assert_eq!(est.leftover, [0, 0, 0, 0, 0, 0, 0, 1, 112, 9, 9]);
    assert_eq!(est.peer_creation, 6);
}

// ---------------------------------------------------------------------------
// Garbage
// ---------------------------------------------------------------------------

fn acceptor_outcome(input: &[u8], framing: Framing) -> Vec<Event> {
    let now = Instant::now();
    let mut b = Acceptor::new(
        cfg("b@host", "cookie", 2, B_CHALLENGE).with_framing(framing),
        now,
    )
    .unwrap();
    b.handle_input(input, now);
    events_b(&mut b)
}

#[test]
fn garbage_input() {
    let bad = |input: &[u8]| {
        let evs = acceptor_outcome(input, Framing::U16);
        assert!(
            matches!(evs[..], [Event::Failed(HandshakeError::BadMessage(_))]),
            "{input:?}: {evs:?}"
        );
    };
    bad(&[0, 0]); // empty message
    bad(&[0, 1, b'N']); // cut short
    bad(&[0, 3, b'G', b'E', b'T']);
    bad(&encode_frame(b"sok", Framing::U16)); // a status, from the initiator
    bad(&encode_frame(
        b"N\0\0\0\0\0\0\0\0\0\0\0\0\x03\xe8",
        Framing::U16,
    )); // Nlen 1000 > rest
    let mut no_at = SendName {
        flags: node_flags(0, true),
        creation: 1,
        name: b"noatsign",
    }
    .encode();
    bad(&encode_frame(&no_at, Framing::U16));
    no_at.truncate(15);
    no_at.extend_from_slice(b"\xff@h");
    bad(&encode_frame(&no_at, Framing::U16)); // not UTF-8

    // Too large, refused from the prefix alone.
    let evs = acceptor_outcome(&[0xff, 0xff], Framing::U16);
    assert_eq!(
        evs,
        [Event::Failed(HandshakeError::FrameTooLarge {
            len: 0xffff,
            max: crate::MAX_HANDSHAKE_MESSAGE
        })]
    );
    let evs = acceptor_outcome(b"GET / HTTP/1.1\r\n", Framing::U32);
    assert!(matches!(
        evs[..],
        [Event::Failed(HandshakeError::FrameTooLarge { .. })]
    ));

    // Connector side.
    let now = Instant::now();
    for input in [
        &[0u8, 4, b's', b'b', b'a', b'd'][..],
        &[0, 2, b'a', 0],
        &[0, 1, b's'],
        &[0xff, 0xff, 0],
    ] {
        let mut a = Connector::new(cfg("a@host", "c", 1, 2), "b@host", now).unwrap();
        a.handle_input(input, now);
        let evs = events_a(&mut a);
        assert!(
            matches!(
                evs[..],
                [Event::Failed(
                    HandshakeError::BadMessage(_) | HandshakeError::FrameTooLarge { .. }
                )]
            ),
            "{input:?}: {evs:?}"
        );
        // Later input is ignored.
        a.handle_input(b"more", now);
        assert!(a.poll_event().is_none());
    }
}

#[test]
fn data_before_status_is_refused() {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    let mut a = Connector::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    let mut input = drain_tx_a(&mut a);
    input.extend_from_slice(b"x");
    b.handle_input(&input, now);
    let evs = events_b(&mut b);
    assert!(
        matches!(
            evs[..],
            [
                Event::PeerNamed { .. },
                Event::Failed(HandshakeError::BadMessage(_))
            ]
        ),
        "{evs:?}"
    );
}

#[test]
fn bad_configs() {
    let now = Instant::now();
    assert!(Connector::new(cfg("a@host", "c", 1, 2), "nohost", now).is_err());
    assert!(Connector::new(cfg("a", "c", 1, 2), "b@h", now).is_err());
    assert!(Acceptor::new(cfg("", "c", 1, 2), now).is_err());
    // A huge timeout has no deadline rather than overflowing.
    let c = cfg("a@host", "c", 1, 2).with_timeout(Duration::MAX);
    let a = Connector::new(c, "b@h", now).unwrap();
    assert_eq!(a.poll_timeout(), None);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Input split into arbitrary reads.
fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
}

/// Well-framed messages with arbitrary bodies, to get past the framing.
fn framed_chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let tags = prop::sample::select(vec![b'N', b'n', b's', b'c', b'r', b'a', b'x']);
    prop::collection::vec(
        (tags, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(t, mut rest)| {
            rest.insert(0, t);
            encode_frame(&rest, Framing::U16)
        }),
        0..6,
    )
}

fn at_most_one_outcome(events: &[Event]) {
    terminal(events);
}

fn run_connector(prefix: &[u8], input: &[Vec<u8>]) {
    let now = Instant::now();
    let mut a = Connector::new(cfg("a@host", "cookie", 1, A_CHALLENGE), "b@host", now).unwrap();
    a.handle_input(prefix, now);
    for piece in input {
        a.handle_input(piece, now);
        while a.poll_transmit().is_some() {}
    }
    a.handle_timeout(now + Duration::from_secs(60));
    let evs = events_a(&mut a);
    at_most_one_outcome(&evs);
    assert!(a.is_done());
}

fn run_acceptor(prefix: &[u8], resolve: bool, input: &[Vec<u8>]) {
    let now = Instant::now();
    let mut b = Acceptor::new(cfg("b@host", "cookie", 2, B_CHALLENGE), now).unwrap();
    b.handle_input(prefix, now);
    if resolve {
        b.resolve(PeerCheck::Free);
    }
    for piece in input {
        b.handle_input(piece, now);
        if b.peer_named().is_some() {
            b.resolve(PeerCheck::Connected);
        }
        while b.poll_transmit().is_some() {}
    }
    b.handle_timeout(now + Duration::from_secs(60));
    let evs = events_b(&mut b);
    at_most_one_outcome(&evs);
    assert!(b.is_done());
}

fn valid_send_name() -> Vec<u8> {
    encode_frame(
        &SendName {
            flags: node_flags(DEFAULT_OPTIONAL, true),
            creation: 1,
            name: b"a@host",
        }
        .encode(),
        Framing::U16,
    )
}

fn valid_status_and_challenge() -> Vec<u8> {
    let mut v = encode_frame(b"sok", Framing::U16);
    v.extend(encode_frame(
        &Challenge {
            flags: node_flags(DEFAULT_OPTIONAL, true),
            challenge: 1,
            creation: 2,
            name: b"b@host",
        }
        .encode(),
        Framing::U16,
    ));
    v
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in chunks()) {
        run_connector(&[], &input);
        run_connector(&encode_frame(b"sok", Framing::U16), &input);
        run_connector(&valid_status_and_challenge(), &input);
        run_acceptor(&[], false, &input);
        run_acceptor(&valid_send_name(), true, &input);
        run_acceptor(&old_name(node_flags(0, true) as u32, 5), true, &input);
    }

    #[test]
    fn arbitrary_messages_never_panic(input in framed_chunks()) {
        run_connector(&[], &input);
        run_connector(&valid_status_and_challenge(), &input);
        run_acceptor(&[], false, &input);
        run_acceptor(&valid_send_name(), true, &input);
        run_acceptor(&old_name(node_flags(0, true) as u32, 5), true, &input);
    }

    /// Any split of the byte streams gives the same result.
    #[test]
    fn any_chunking_succeeds(chunk in 1usize..40, u32_framing in any::<bool>()) {
        let framing = if u32_framing { Framing::U32 } else { Framing::U16 };
        let mut p = Pair::new(
            cfg("a@host", "cookie", 11, A_CHALLENGE).with_framing(framing),
            "b@host",
            cfg("b@host", "cookie", 22, B_CHALLENGE).with_framing(framing),
        );
        p.chunk = chunk;
        p.drive();
        check_success(&p);
    }

    /// The flag helpers agree with a bit-by-bit model.
    #[test]
    fn missing_matches_model(f in any::<u64>()) {
        let model: u64 = (0..64)
            .map(|b| 1u64 << b)
            .filter(|bit| MANDATORY & bit != 0)
            .filter(|bit| {
                f & bit == 0 && !(f & MANDATORY_25_DIGEST != 0 && MANDATORY_25 & bit != 0)
            })
            .sum();
        prop_assert_eq!(missing_mandatory(f), model);
    }
}
