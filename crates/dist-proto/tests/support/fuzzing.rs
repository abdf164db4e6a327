//! Fuzzing entry point for the handshake state machines, shared by the
//! cargo-fuzz target `dist_handshake` in `fuzz/` (which needs a nightly
//! compiler) and the stable test that replays the committed corpus
//! (`tests/corpus_replay.rs`). Both include this file with `#[path]`; it
//! uses only dist-proto's public API.
//!
//! # Input format
//!
//! Two header bytes choose a configuration (see [`setup`]); the rest is a
//! script of operations, each a tag byte (`tag % 8`) and usually one
//! argument byte:
//!
//! | `tag % 8` | operation |
//! | --- | --- |
//! | 0..=3 | chunk: `n` = next byte. One machine under test: the next `n` input bytes go to `handle_input`. Pair: `tag` 0/1 delivers `n` pending bytes (0 = all) from the connector to the acceptor, 2/3 the other way. |
//! | 4 | `handle_timeout(now)` (both machines in a pair) |
//! | 5 | `handle_eof()` (pair: on the connector if the next byte is even, else the acceptor) |
//! | 6 | `resolve(check)`, `check` from the next byte (see [`check_from_byte`]); nothing for a connector alone |
//! | 7 | advance the virtual clock by [`STEPS`]`[next byte % 8]` |
//!
//! The script stops at the first missing byte. A pair is then driven to
//! quiescence, answering the peer check with its natural answer, and must
//! be established on both sides unless the configuration or the script
//! made it fail (wrong cookie, missing flags, end of stream, deadline, a
//! refusing answer...).
//!
//! # What is checked
//!
//! After every operation, each machine's transmissions and events are
//! drained and checked against what the operation may do:
//! - every `poll_transmit` item is exactly one frame in the configured
//!   framing (`u16` or `u32` prefix) with a body of 1 to
//!   [`MAX_HANDSHAKE_MESSAGE`] bytes, and is the message this side may send
//!   at that point (exact send_name and challenge encodings, digests that
//!   answer the challenge received, `true`/`false` as configured);
//! - at most one `PeerNamed` (acceptor only), at most one terminal event,
//!   nothing after it; the stage agrees with the events (`Failed` iff a
//!   `Failed` event was seen, so nothing is established after a failure)
//!   and never changes once the handshake ended; nothing is transmitted
//!   after the operation that ended it;
//! - `poll_timeout` is the deadline until the end, then `None`;
//!   `peer_named` is `Some` exactly at `Stage::PeerCheck`;
//! - a timeout or input at or after the deadline, and end of stream, fail
//!   an unfinished handshake with `Timeout`/`Closed` naming the stage it was
//!   in, and do nothing to a finished one; a timeout before the deadline
//!   does nothing;
//! - `resolve` answers only at `Stage::PeerCheck`, with the status its
//!   documented table gives, and moves to the stage that status implies;
//! - an `Established` agrees with the bytes that were fed: peer name,
//!   flags (digest expanded, required ones present, ours AND theirs),
//!   creation, status, NAME_ME assignment, and `leftover` is exactly what
//!   followed the last handshake message.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use dist_proto::flags::{self, expand_digest, missing_required};
use dist_proto::frame::{encode_frame, take_frame, Framing, MAX_HANDSHAKE_MESSAGE};
use dist_proto::message::{
    tag, AnySendName, Challenge, ChallengeAck, ChallengeReply, Complement, OldSendName, SendName,
    OLD_VERSION,
};
use dist_proto::{
    digest, Acceptor, Connector, Established, Event, Handshake, HandshakeConfig, HandshakeError,
    OnAlive, PeerCheck, Stage, Status, DEFAULT_TIMEOUT,
};

/// Clock steps of operation 7. Two 3.5 s steps reach the default 7 s
/// deadline exactly; the others land just before, at and after it.
pub(crate) const STEPS: [Duration; 8] = [
    Duration::from_nanos(1),
    Duration::from_millis(1),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(3500),
    Duration::from_nanos(6_999_999_999),
    Duration::from_secs(7),
    Duration::from_secs(60),
];

/// Which machines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An acceptor fed the input bytes.
    Acceptor,
    /// A connector fed the input bytes.
    Connector,
    /// A connector and an acceptor talking; the input schedules delivery.
    Pair,
}

/// A configuration: the initiator's and the acceptor's, as a header picks
/// them.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) mode: Mode,
    /// The initiator's configuration (the connector's).
    pub(crate) a: HandshakeConfig,
    /// The name the connector dials.
    pub(crate) dialled: String,
    /// The acceptor's configuration.
    pub(crate) b: HandshakeConfig,
}

/// The configuration from the two header bytes.
///
/// `h0`: bits 0-1 mode (0 acceptor, 1 connector, 2-3 pair); bit 2 `u32`
/// framing; bit 3 the initiator asks for a name (NAME_ME, this node `host`);
/// bit 4 the initiator answers `alive` with `false`; bit 5 the initiator
/// has another cookie; bits 6-7 timeout (7 s, zero, `Duration::MAX` i.e. no
/// deadline, 1 s).
///
/// `h1`: bits 0-1 the initiator's flags (default; hidden with SPAWN, ALIAS
/// and FRAGMENTS; the OTP 25 set without UNLINK_ID and V4_NC; only the
/// digest bit plus the OTP 26 additions); bits 2-3 the acceptor's flags and
/// the flags both sides require (default and MANDATORY; hidden and
/// MANDATORY_25; digest only and MANDATORY; default and nothing); bit 4 the
/// initiator is `z@host` (greater than `b@host`) instead of `a@host`; bit 5
/// the connector dials `c@host`, not the acceptor's `b@host`; bit 6 other
/// challenges (0 and `u32::MAX`); bit 7 separate in and out cookies, used
/// consistently.
pub(crate) fn setup(h0: u8, h1: u8) -> Setup {
    let mode = match h0 & 3 {
        0 => Mode::Acceptor,
        1 => Mode::Connector,
        _ => Mode::Pair,
    };
    let framing = if h0 & 4 != 0 {
        Framing::U32
    } else {
        Framing::U16
    };
    let name_me = h0 & 8 != 0;
    let timeout = match h0 >> 6 {
        0 => DEFAULT_TIMEOUT,
        1 => Duration::ZERO,
        2 => Duration::MAX,
        _ => Duration::from_secs(1),
    };
    let a_name = if name_me {
        "host"
    } else if h1 & 16 != 0 {
        "z@host"
    } else {
        "a@host"
    };
    let (a_ch, b_ch) = if h1 & 64 != 0 {
        (0, u32::MAX)
    } else {
        (0x8000_0001, 0xdead_beef)
    };
    let mut a = HandshakeConfig::new(a_name, "cookie", 11, a_ch)
        .with_framing(framing)
        .with_timeout(timeout);
    let mut b = HandshakeConfig::new("b@host", "cookie", 22, b_ch)
        .with_framing(framing)
        .with_timeout(timeout);
    a.flags = match h1 & 3 {
        0 => flags::node_flags(flags::DEFAULT_OPTIONAL, true),
        1 => flags::node_flags(
            flags::DEFAULT_OPTIONAL | flags::SPAWN | flags::ALIAS | flags::FRAGMENTS,
            false,
        ),
        2 => flags::MANDATORY_25 | flags::MANDATORY_25_DIGEST | flags::PUBLISHED,
        _ => flags::HANDSHAKE_23 | flags::MANDATORY_25_DIGEST | flags::UNLINK_ID | flags::V4_NC,
    };
    if name_me {
        a.flags |= flags::NAME_ME;
    }
    let (b_flags, required) = match (h1 >> 2) & 3 {
        0 => (
            flags::node_flags(flags::DEFAULT_OPTIONAL, true),
            flags::MANDATORY,
        ),
        1 => (
            flags::node_flags(flags::DEFAULT_OPTIONAL, false),
            flags::MANDATORY_25,
        ),
        2 => (
            flags::HANDSHAKE_23 | flags::MANDATORY_25_DIGEST | flags::UNLINK_ID | flags::V4_NC,
            flags::MANDATORY,
        ),
        _ => (flags::node_flags(flags::DEFAULT_OPTIONAL, true), 0),
    };
    b.flags = b_flags;
    a.required_flags = required;
    b.required_flags = required;
    if h0 & 16 != 0 {
        a.on_alive = OnAlive::Abort;
    }
    if h1 & 128 != 0 {
        a.cookie_out = b"a-to-b".to_vec();
        b.cookie_in = b"a-to-b".to_vec();
        b.cookie_out = b"b-to-a".to_vec();
        a.cookie_in = b"b-to-a".to_vec();
    }
    if h0 & 32 != 0 {
        a.cookie_out = b"other".to_vec();
        a.cookie_in = b"other".to_vec();
    }
    let dialled = if h1 & 32 != 0 { "c@host" } else { "b@host" };
    Setup {
        mode,
        a,
        dialled: dialled.to_owned(),
        b,
    }
}

/// The answer to the peer check that argument byte `b` selects.
pub(crate) fn check_from_byte(b: u8) -> PeerCheck {
    match b % 8 {
        0 => PeerCheck::Free,
        1 => PeerCheck::PendingConnect,
        2 => PeerCheck::Connected,
        3 => PeerCheck::Refuse,
        4 => PeerCheck::AssignName {
            name: "gen7@host".into(),
            creation: 77,
        },
        5 => PeerCheck::AssignName {
            name: "nohost".into(),
            creation: 1,
        },
        // The longest acceptable full name (255 characters, the atom
        // limit), then one character more.
        6 => PeerCheck::AssignName {
            name: format!("{}@h", "n".repeat(253)),
            creation: u32::MAX,
        },
        _ => PeerCheck::AssignName {
            name: format!("{}@h", "n".repeat(254)),
            creation: 0,
        },
    }
}

/// The byte for the answer that lets a handshake with this initiator go on.
pub(crate) fn natural_check(a: &HandshakeConfig) -> u8 {
    if a.flags & flags::NAME_ME != 0 {
        4
    } else {
        0
    }
}

/// How each machine ended, for the tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Summary {
    /// The connector's final stage, if one ran.
    pub(crate) connector: Option<Stage>,
    /// The acceptor's final stage, if one ran.
    pub(crate) acceptor: Option<Stage>,
}

/// The fuzz target's entry point.
pub(crate) fn fuzz_dist_handshake(data: &[u8]) {
    run(data);
}

/// Runs one input; panics when a machine breaks one of its promises.
pub(crate) fn run(data: &[u8]) -> Summary {
    let [h0, h1, script @ ..] = data else {
        return Summary::default();
    };
    let s = setup(*h0, *h1);
    let mut src = Src {
        data: script,
        pos: 0,
    };
    match s.mode {
        Mode::Acceptor | Mode::Connector => run_single(&s, &mut src),
        Mode::Pair => run_pair(&s, &mut src),
    }
}

struct Src<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Src<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Up to `n` bytes.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let end = self.data.len().min(self.pos + n);
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }
}

// ---------------------------------------------------------------------------
// One machine, with everything that can be checked about it
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Machine {
    Connector(Connector),
    Acceptor(Acceptor),
}

impl Machine {
    /// The machine under its shared interface: one set of calls for both.
    fn hs(&mut self) -> &mut dyn Handshake {
        match self {
            Self::Connector(m) => m,
            Self::Acceptor(m) => m,
        }
    }

    fn get(&self) -> &dyn Handshake {
        match self {
            Self::Connector(m) => m,
            Self::Acceptor(m) => m,
        }
    }

    fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.hs().handle_input(bytes, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.hs().handle_timeout(now);
    }

    fn handle_eof(&mut self) {
        self.hs().handle_eof();
    }

    fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.hs().poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.hs().poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.get().poll_timeout()
    }

    fn stage(&self) -> Stage {
        self.get().stage()
    }

    fn is_done(&self) -> bool {
        self.get().is_done()
    }
}

fn is_end(stage: Stage) -> bool {
    matches!(stage, Stage::Established | Stage::Failed)
}

/// How a handshake ended, as its events said.
#[derive(Debug, Clone)]
enum Outcome {
    Established(Established),
    Failed(HandshakeError),
}

/// A machine and what has been seen of it.
struct Watch {
    m: Machine,
    cfg: HandshakeConfig,
    /// Connector: the dialled name.
    dialled: String,
    deadline: Option<Instant>,
    /// Every byte handed to `handle_input` while the handshake was running
    /// and before its deadline: the handshake messages, then the leftover.
    fed: Vec<u8>,
    /// Bodies transmitted, in order.
    sent: Vec<Vec<u8>>,
    /// The `PeerNamed` event: the name and whether it asked for one.
    named: Option<(String, bool)>,
    /// Acceptor: the status `resolve` returned.
    resolved: Option<Status>,
    outcome: Option<Outcome>,
    /// The handshake ended in an earlier operation: nothing more may be sent.
    closed: bool,
    stage: Stage,
}

impl Watch {
    fn connector(s: &Setup, now: Instant) -> Self {
        let m = Connector::new(s.a.clone(), s.dialled.clone(), now).expect("connector config");
        Self::new(Machine::Connector(m), s.a.clone(), s.dialled.clone(), now)
    }

    fn acceptor(s: &Setup, now: Instant) -> Self {
        let m = Acceptor::new(s.b.clone(), now).expect("acceptor config");
        Self::new(Machine::Acceptor(m), s.b.clone(), String::new(), now)
    }

    fn new(m: Machine, cfg: HandshakeConfig, dialled: String, now: Instant) -> Self {
        let deadline = now.checked_add(cfg.timeout);
        let stage = m.stage();
        assert_eq!(m.poll_timeout(), deadline, "initial poll_timeout");
        Self {
            m,
            cfg,
            dialled,
            deadline,
            fed: Vec::new(),
            sent: Vec::new(),
            named: None,
            resolved: None,
            outcome: None,
            closed: false,
            stage,
        }
    }

    fn is_connector(&self) -> bool {
        matches!(self.m, Machine::Connector(_))
    }

    fn past(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    fn done(&self) -> bool {
        is_end(self.stage)
    }

    fn established(&self) -> Option<&Established> {
        match &self.outcome {
            Some(Outcome::Established(e)) => Some(e),
            _ => None,
        }
    }

    /// Feeds bytes; returns the frames transmitted in response.
    fn input(&mut self, bytes: &[u8], now: Instant) -> Vec<Vec<u8>> {
        let before = self.stage;
        let late = !self.done() && self.past(now);
        if !self.done() && !late {
            self.fed.extend_from_slice(bytes);
        }
        self.m.handle_input(bytes, now);
        let out = self.settle();
        if late {
            self.expect_failure(&HandshakeError::Timeout { stage: before });
        }
        out
    }

    fn timeout(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let before = self.stage;
        let due = !self.done() && self.past(now);
        self.m.handle_timeout(now);
        let out = self.settle();
        if due {
            self.expect_failure(&HandshakeError::Timeout { stage: before });
        } else {
            assert_eq!(self.stage, before, "handle_timeout before the deadline");
            assert!(out.is_empty(), "handle_timeout transmitted");
        }
        out
    }

    fn eof(&mut self) -> Vec<Vec<u8>> {
        let before = self.stage;
        self.m.handle_eof();
        let out = self.settle();
        if !is_end(before) {
            self.expect_failure(&HandshakeError::Closed { stage: before });
        }
        assert!(out.is_empty(), "handle_eof transmitted");
        out
    }

    fn resolve(&mut self, check: PeerCheck) -> Vec<Vec<u8>> {
        let Machine::Acceptor(b) = &mut self.m else {
            return Vec::new();
        };
        let before = self.stage;
        let wants_name = b.peer_wants_name();
        let peer_name = b.peer_named().map(str::to_owned);
        let got = b.resolve(check.clone());
        let Some(status) = got else {
            assert_ne!(before, Stage::PeerCheck, "resolve refused at PeerCheck");
            let out = self.settle();
            assert_eq!(self.stage, before, "a refused resolve changed the stage");
            assert!(out.is_empty(), "a refused resolve transmitted");
            return out;
        };
        assert_eq!(
            before,
            Stage::PeerCheck,
            "resolve answered outside PeerCheck"
        );
        let peer_name = peer_name.expect("a name at PeerCheck");
        let this = self.cfg.this_node.as_bytes();
        // The table in `Acceptor::resolve`'s documentation.
        let expected = match (wants_name, check) {
            (true, PeerCheck::AssignName { name, creation }) if full_name(&name) => {
                Status::Named { name, creation }
            }
            (true, _) => Status::NotAllowed,
            (false, PeerCheck::Free) => Status::Ok,
            (false, PeerCheck::PendingConnect) if peer_name.as_bytes() > this => {
                Status::OkSimultaneous
            }
            (false, PeerCheck::PendingConnect) => Status::Nok,
            (false, PeerCheck::Connected) => Status::Alive,
            (false, _) => Status::NotAllowed,
        };
        assert_eq!(status, expected, "resolve's status");
        self.resolved = Some(status.clone());
        let out = self.settle();
        let framed = encode_frame(&status.encode(), self.cfg.framing);
        assert_eq!(out.first(), Some(&framed), "status not sent first");
        let old = self.first_is_old();
        match status {
            Status::Ok | Status::OkSimultaneous | Status::Named { .. } => {
                let next = if old {
                    Stage::Complement
                } else {
                    Stage::ChallengeReply
                };
                assert_eq!(self.stage, next, "stage after {status:?}");
                assert_eq!(out.len(), 2, "status and challenge");
            }
            Status::Alive => {
                assert_eq!(self.stage, Stage::AliveReply);
                assert_eq!(out.len(), 1);
            }
            Status::Nok => self.expect_failure(&HandshakeError::Nok),
            _ => self.expect_failure(&HandshakeError::Refused),
        }
        out
    }

    fn expect_failure(&self, err: &HandshakeError) {
        match &self.outcome {
            Some(Outcome::Failed(e)) => assert_eq!(e, err),
            other => panic!("expected failure {err:?}, got {other:?}"),
        }
    }

    /// Drains transmissions and events and checks them; returns the
    /// transmitted frames (whole, prefix included).
    fn settle(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = self.m.poll_transmit() {
            assert!(!self.closed, "transmitted after the handshake ended");
            let body = self.check_frame(&frame);
            self.check_sent(&body);
            self.sent.push(body);
            out.push(frame);
        }
        while let Some(ev) = self.m.poll_event() {
            assert!(
                self.outcome.is_none(),
                "event after the outcome: {ev:?} after {:?}",
                self.outcome
            );
            match ev {
                Event::PeerNamed { name, wants_name } => {
                    assert!(!self.is_connector(), "PeerNamed from a connector");
                    assert!(self.named.is_none(), "PeerNamed twice");
                    if wants_name {
                        assert!(!name.contains('@') && !name.is_empty());
                    } else {
                        assert!(full_name(&name), "PeerNamed {name:?}");
                    }
                    self.named = Some((name, wants_name));
                }
                Event::Established(est) => {
                    self.check_established(&est);
                    self.outcome = Some(Outcome::Established(est));
                }
                Event::Failed(e) => {
                    let _ = e.to_string();
                    self.outcome = Some(Outcome::Failed(e));
                }
                other => panic!("unknown event {other:?}"),
            }
        }
        let stage = self.m.stage();
        if self.done() {
            assert_eq!(stage, self.stage, "stage changed after the end");
        }
        match (&self.outcome, stage) {
            (Some(Outcome::Established(_)), Stage::Established)
            | (Some(Outcome::Failed(_)), Stage::Failed) => {}
            (None, s) if !is_end(s) => {}
            (o, s) => panic!("stage {s:?} with outcome {o:?}"),
        }
        assert_eq!(self.m.is_done(), is_end(stage));
        let expected_timeout = if is_end(stage) { None } else { self.deadline };
        assert_eq!(self.m.poll_timeout(), expected_timeout, "poll_timeout");
        if let Machine::Acceptor(b) = &self.m {
            assert_eq!(b.peer_named().is_some(), stage == Stage::PeerCheck);
            if stage == Stage::PeerCheck {
                let (name, wants) = self.named.as_ref().expect("PeerNamed before PeerCheck");
                assert_eq!(b.peer_named(), Some(name.as_str()));
                assert_eq!(b.peer_wants_name(), *wants);
            }
        }
        self.stage = stage;
        if is_end(stage) {
            self.closed = true;
        }
        out
    }

    /// One whole frame in this side's framing; returns its body.
    fn check_frame(&self, frame: &[u8]) -> Vec<u8> {
        let framing = self.cfg.framing;
        match take_frame(frame, framing) {
            Ok(Some((body, used))) => {
                assert_eq!(used, frame.len(), "poll_transmit gave a partial frame");
                assert_eq!(body.start, framing.header_len());
                assert!(
                    (1..=MAX_HANDSHAKE_MESSAGE).contains(&body.len()),
                    "frame body of {} bytes",
                    body.len()
                );
                frame[body].to_vec()
            }
            other => panic!("transmitted {frame:?}, not one frame: {other:?}"),
        }
    }

    /// The first `n` frames fed, as bodies (fewer if not there).
    fn fed_frames(&self, n: usize) -> (Vec<Vec<u8>>, usize) {
        let mut at = 0;
        let mut out = Vec::new();
        while out.len() < n {
            match take_frame(&self.fed[at..], self.cfg.framing) {
                Ok(Some((body, used))) => {
                    out.push(self.fed[at..][body].to_vec());
                    at += used;
                }
                _ => break,
            }
        }
        (out, at)
    }

    fn first_is_old(&self) -> bool {
        let (f, _) = self.fed_frames(1);
        f.first().and_then(|b| b.first()) == Some(&tag::OLD_NAME)
    }

    /// A transmitted body is a message this side may send now.
    fn check_sent(&self, body: &[u8]) {
        let cfg = &self.cfg;
        if self.is_connector() {
            if self.sent.is_empty() {
                let sn = SendName {
                    flags: cfg.flags,
                    creation: cfg.creation,
                    name: cfg.this_node.as_bytes(),
                };
                assert_eq!(body, sn.encode(), "send_name");
                return;
            }
            match body[0] {
                tag::STATUS => {
                    let want = match cfg.on_alive {
                        OnAlive::Abort => Status::False,
                        _ => Status::True,
                    };
                    assert_eq!(body, want.encode(), "answer to alive");
                }
                tag::REPLY => {
                    let r = ChallengeReply::decode(body).expect("challenge_reply");
                    assert_eq!(r.challenge, cfg.challenge);
                    // Status, then the challenge being answered.
                    let (frames, _) = self.fed_frames(2);
                    let ch = Challenge::decode(&frames[1]).expect("the challenge answered");
                    assert_eq!(r.digest, digest(&cfg.cookie_out, ch.challenge));
                }
                t => panic!("connector sent tag {t}"),
            }
        } else {
            match body[0] {
                tag::STATUS => {
                    Status::decode(body).expect("status");
                }
                tag::NEW => {
                    let ch = Challenge {
                        flags: cfg.flags,
                        challenge: cfg.challenge,
                        creation: cfg.creation,
                        name: cfg.this_node.as_bytes(),
                    };
                    assert_eq!(body, ch.encode(), "challenge");
                }
                tag::ACK => {
                    let ack = ChallengeAck::decode(body).expect("challenge_ack");
                    let n = self.acceptor_frames();
                    let (frames, _) = self.fed_frames(n);
                    let r = ChallengeReply::decode(&frames[n - 1]).expect("the reply answered");
                    assert_eq!(ack.digest, digest(&cfg.cookie_out, r.challenge));
                    assert_eq!(r.digest, digest(&cfg.cookie_in, cfg.challenge));
                }
                t => panic!("acceptor sent tag {t}"),
            }
        }
    }

    /// Handshake messages an acceptor reads: send_name, `true` after
    /// `alive`, the complement after an old send_name, challenge_reply.
    fn acceptor_frames(&self) -> usize {
        2 + usize::from(self.resolved == Some(Status::Alive)) + usize::from(self.first_is_old())
    }

    fn check_established(&self, est: &Established) {
        let cfg = &self.cfg;
        assert_eq!(expand_digest(est.peer_flags), est.peer_flags);
        assert_eq!(missing_required(est.peer_flags, cfg.required_flags), 0);
        assert_eq!(est.flags, cfg.flags & est.peer_flags);
        let n = if self.is_connector() {
            3
        } else {
            self.acceptor_frames()
        };
        let (frames, used) = self.fed_frames(n);
        assert_eq!(
            frames.len(),
            n,
            "established after {} messages",
            frames.len()
        );
        assert_eq!(est.leftover, self.fed[used..], "leftover");
        if self.is_connector() {
            assert_eq!(est.peer_name, self.dialled);
            let status = Status::decode(&frames[0]).expect("status");
            assert_eq!(est.status, status);
            let ch = Challenge::decode(&frames[1]).expect("challenge");
            assert_eq!(ch.name, self.dialled.as_bytes());
            assert_eq!(est.peer_flags, expand_digest(ch.flags));
            assert_eq!(est.peer_creation, ch.creation);
            match &est.status {
                Status::Ok | Status::OkSimultaneous => assert_eq!(est.assigned, None),
                Status::Alive => {
                    assert!(matches!(cfg.on_alive, OnAlive::Continue));
                    assert_eq!(est.assigned, None);
                }
                Status::Named { name, creation } => {
                    assert_ne!(cfg.flags & flags::NAME_ME, 0);
                    assert!(full_name(name));
                    assert_eq!(est.assigned, Some((name.clone(), *creation)));
                }
                s => panic!("connector established after {s:?}"),
            }
        } else {
            assert_eq!(est.assigned, None);
            let resolved = self.resolved.clone().expect("established unresolved");
            assert_eq!(est.status, resolved);
            let (flags, creation) = match AnySendName::decode(&frames[0]).expect("send_name") {
                AnySendName::New(sn) => (sn.flags, sn.creation),
                AnySendName::Old(sn) => {
                    assert_eq!(sn.version, OLD_VERSION);
                    let c = Complement::decode(&frames[n - 2]).expect("complement");
                    (
                        (u64::from(c.flags_high) << 32) | u64::from(sn.flags),
                        c.creation,
                    )
                }
            };
            assert_eq!(est.peer_flags, expand_digest(flags));
            let (named, _) = self.named.clone().expect("PeerNamed before established");
            match resolved {
                Status::Named { name, creation } => {
                    assert_eq!(est.peer_name, name);
                    assert_eq!(est.peer_creation, creation);
                }
                Status::Ok | Status::OkSimultaneous | Status::Alive => {
                    assert_eq!(est.peer_name, named);
                    assert_eq!(est.peer_creation, creation);
                }
                s => panic!("acceptor established after {s:?}"),
            }
        }
    }
}

/// OTP's node-name rule, written apart from `epmd_proto::NodeName`:
/// `alive@host`, alive of `[A-Za-z0-9_-]+`, host of `['!'..='\u{ff}']+`
/// with exactly one `@` (which that range includes), at most 255 characters.
fn full_name(n: &str) -> bool {
    let alive_ok = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let host_ok = |h: &str| !h.is_empty() && h.chars().all(|c| ('!'..='\u{ff}').contains(&c));
    n.matches('@').count() == 1
        && n.chars().count() <= 255
        && n.split_once('@')
            .is_some_and(|(a, h)| alive_ok(a) && host_ok(h))
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

fn run_single(s: &Setup, src: &mut Src<'_>) -> Summary {
    let t0 = Instant::now();
    let mut now = t0;
    let mut w = if s.mode == Mode::Connector {
        Watch::connector(s, t0)
    } else {
        Watch::acceptor(s, t0)
    };
    w.settle();
    while let Some(op) = src.byte() {
        match op % 8 {
            0..=3 => {
                let Some(n) = src.byte() else { break };
                let chunk = src.bytes(usize::from(n));
                w.input(chunk, now);
            }
            4 => {
                w.timeout(now);
            }
            5 => {
                w.eof();
            }
            6 => {
                let Some(b) = src.byte() else { break };
                w.resolve(check_from_byte(b));
            }
            _ => {
                let Some(b) = src.byte() else { break };
                now = now.checked_add(STEPS[usize::from(b % 8)]).unwrap_or(now);
            }
        }
    }
    let stage = Some(w.stage);
    if s.mode == Mode::Connector {
        Summary {
            connector: stage,
            acceptor: None,
        }
    } else {
        Summary {
            connector: None,
            acceptor: stage,
        }
    }
}

/// Whether the configuration lets a handshake succeed at all.
fn can_succeed(s: &Setup) -> bool {
    s.a.cookie_out == s.b.cookie_in
        && s.b.cookie_out == s.a.cookie_in
        && s.dialled == s.b.this_node
        && missing_required(s.a.flags, s.b.required_flags) == 0
        && missing_required(s.b.flags, s.a.required_flags) == 0
        && !s.a.timeout.is_zero()
}

fn run_pair(s: &Setup, src: &mut Src<'_>) -> Summary {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Watch::connector(s, t0);
    let mut b = Watch::acceptor(s, t0);
    let mut a_to_b: Vec<u8> = a.settle().concat();
    let mut b_to_a: Vec<u8> = Vec::new();
    let mut faulted = !can_succeed(s);
    let deadline = t0.checked_add(s.a.timeout);
    while let Some(op) = src.byte() {
        match op % 8 {
            0..=3 => {
                let Some(n) = src.byte() else { break };
                let (wire, to) = if op % 8 < 2 {
                    (&mut a_to_b, &mut b)
                } else {
                    (&mut b_to_a, &mut a)
                };
                let k = if n == 0 {
                    wire.len()
                } else {
                    wire.len().min(usize::from(n))
                };
                let chunk: Vec<u8> = wire.drain(..k).collect();
                let out = to.input(&chunk, now);
                if op % 8 < 2 {
                    b_to_a.extend(out.concat());
                } else {
                    a_to_b.extend(out.concat());
                }
            }
            4 => {
                a_to_b.extend(a.timeout(now).concat());
                b_to_a.extend(b.timeout(now).concat());
            }
            5 => {
                let Some(side) = src.byte() else { break };
                let w = if side % 2 == 0 { &mut a } else { &mut b };
                if !w.done() {
                    faulted = true;
                }
                w.eof();
            }
            6 => {
                let Some(c) = src.byte() else { break };
                b_to_a.extend(b.resolve(check_from_byte(c)).concat());
                faulted |= fatal_answer(&b, &s.a);
            }
            _ => {
                let Some(c) = src.byte() else { break };
                now = now.checked_add(STEPS[usize::from(c % 8)]).unwrap_or(now);
                if deadline.is_some_and(|d| now >= d) && !(a.done() && b.done()) {
                    faulted = true;
                }
            }
        }
    }
    // Deliver everything, answering the peer check naturally.
    for _ in 0..8 {
        let mut moved = false;
        if !a_to_b.is_empty() {
            b_to_a.extend(b.input(&std::mem::take(&mut a_to_b), now).concat());
            moved = true;
        }
        if b.stage == Stage::PeerCheck {
            b_to_a.extend(b.resolve(check_from_byte(natural_check(&s.a))).concat());
            faulted |= fatal_answer(&b, &s.a);
            moved = true;
        }
        if !b_to_a.is_empty() {
            a_to_b.extend(a.input(&std::mem::take(&mut b_to_a), now).concat());
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(
        a_to_b.is_empty() && b_to_a.is_empty(),
        "the handshake did not settle"
    );
    match (a.established(), b.established()) {
        (Some(ea), Some(eb)) => check_agree(s, ea, eb),
        (ea, eb) => assert!(
            faulted,
            "a handshake that should succeed did not: connector {:?} ({:?}), acceptor {:?} ({:?})",
            a.stage,
            ea.map(|_| ()).ok_or(&a.outcome),
            b.stage,
            eb.map(|_| ()).ok_or(&b.outcome),
        ),
    }
    Summary {
        connector: Some(a.stage),
        acceptor: Some(b.stage),
    }
}

/// Whether the status the acceptor's last `resolve` sent ends the handshake.
fn fatal_answer(b: &Watch, a_cfg: &HandshakeConfig) -> bool {
    match &b.resolved {
        None | Some(Status::Ok | Status::OkSimultaneous | Status::Named { .. }) => false,
        Some(Status::Alive) => !matches!(a_cfg.on_alive, OnAlive::Continue),
        Some(_) => true,
    }
}

/// Both sides established: they must describe the same connection.
fn check_agree(s: &Setup, ea: &Established, eb: &Established) {
    assert_eq!(ea.peer_name, s.b.this_node);
    assert_eq!(ea.peer_creation, s.b.creation);
    assert_eq!(ea.peer_flags, expand_digest(s.b.flags));
    assert_eq!(eb.peer_flags, expand_digest(s.a.flags));
    assert_eq!(ea.status, eb.status);
    if s.a.flags & flags::NAME_ME != 0 {
        assert_eq!(
            ea.assigned,
            Some((eb.peer_name.clone(), eb.peer_creation)),
            "NAME_ME assignment"
        );
    } else {
        assert_eq!(ea.assigned, None);
        assert_eq!(eb.peer_name, s.a.this_node);
        assert_eq!(eb.peer_creation, s.a.creation);
    }
    assert!(ea.leftover.is_empty() && eb.leftover.is_empty());
}

// ---------------------------------------------------------------------------
// Seeds: real handshake transcripts
// ---------------------------------------------------------------------------

/// One seed: a file name, the input, and whether the machine under test
/// (both, in a pair) must end established.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    pub(crate) established: bool,
}

/// The frames each side of a real in-memory handshake transmitted, in
/// order, as the [`setup`] for `(h0, h1)` configures them and with the peer
/// check answered by `check`.
pub(crate) fn transcript(h0: u8, h1: u8, check: u8) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, bool) {
    let s = setup(h0, h1);
    let now = Instant::now();
    let mut a = Connector::new(s.a.clone(), s.dialled.clone(), now).expect("connector config");
    let mut b = Acceptor::new(s.b.clone(), now).expect("acceptor config");
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    let mut ok = (false, false);
    loop {
        let mut moved = false;
        while let Some(f) = a.poll_transmit() {
            b.handle_input(&f, now);
            from_a.push(f);
            moved = true;
        }
        while let Some(ev) = b.poll_event() {
            match ev {
                Event::PeerNamed { .. } => {
                    b.resolve(check_from_byte(check));
                }
                Event::Established(_) => ok.1 = true,
                _ => {}
            }
            moved = true;
        }
        while let Some(f) = b.poll_transmit() {
            a.handle_input(&f, now);
            from_b.push(f);
            moved = true;
        }
        while let Some(ev) = a.poll_event() {
            if let Event::Established(_) = ev {
                ok.0 = true;
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    (from_a, from_b, ok.0 && ok.1)
}

/// Chunk operations delivering `bytes` in pieces of at most `piece`.
fn chunk_ops(out: &mut Vec<u8>, bytes: &[u8], piece: usize) {
    for c in bytes.chunks(piece.clamp(1, 255)) {
        out.push(0);
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
}

/// Seeds from real transcripts, hand-made old-form and failure scripts.
pub(crate) fn seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    // (name, h0 without the mode bits, h1, peer-check byte, piece size,
    // also as a pair script). The pair scripts are all alike; only a few
    // configurations get one.
    let variants: &[(&str, u8, u8, u8, usize, bool)] = &[
        ("u16", 0, 0, 0, 255, true),
        ("u16-bytewise", 0, 0, 0, 1, false),
        ("u32", 4, 0, 0, 255, false),
        ("u32-pieces3", 4, 0, 0, 3, false),
        ("name-me", 8, 0, 4, 255, true),
        ("name-me-u32-longest", 8 | 4, 0, 6, 255, false),
        ("alive-continue", 0, 0, 2, 255, true),
        ("simultaneous-ok", 0, 16, 1, 255, true),
        ("hidden-peer", 0, 1 | 4, 0, 255, false),
        ("digest-only-flags", 0, 3 | 8, 0, 255, false),
        ("otp25-flags-required25", 4, 2 | 4, 0, 255, false),
        ("no-required-flags", 0, 2 | 12, 0, 255, false),
        ("split-cookies", 0, 128, 0, 255, false),
        ("challenge-extremes", 0, 64, 0, 255, false),
        ("no-deadline", 128, 0, 0, 255, false),
        ("deadline-1s", 192, 0, 0, 255, false),
    ];
    for &(name, h0, h1, check, piece, pair) in variants {
        let (from_a, from_b, ok) = transcript(h0, h1, check);
        assert!(ok, "transcript {name} did not establish");
        // Acceptor under test: the connector's frames, the peer check after
        // the first.
        let mut acc = vec![h0, h1];
        for (i, f) in from_a.iter().enumerate() {
            chunk_ops(&mut acc, f, piece);
            if i == 0 {
                acc.extend_from_slice(&[6, check]);
            }
        }
        // Connector under test: the acceptor's frames.
        let mut con = vec![h0 | 1, h1];
        for f in &from_b {
            chunk_ops(&mut con, f, piece);
        }
        seeds.push(Seed {
            name: format!("acceptor-{name}"),
            data: acc,
            established: true,
        });
        seeds.push(Seed {
            name: format!("connector-{name}"),
            data: con,
            established: true,
        });
        if pair {
            // The same exchange between two machines, scheduled by the
            // script.
            seeds.push(Seed {
                name: format!("pair-{name}"),
                data: vec![h0 | 2, h1, 0, 0, 6, check, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0],
                established: true,
            });
        }
    }

    // Distribution traffic right behind the last message: the leftover.
    let (from_a, from_b, _) = transcript(0, 0, 0);
    let tick_and_packet = [0, 0, 0, 0, 0, 0, 0, 2, 112, 131];
    let mut acc = vec![0, 0];
    chunk_ops(&mut acc, &from_a[0], 255);
    acc.extend_from_slice(&[6, 0]);
    chunk_ops(&mut acc, &[&from_a[1][..], &tick_and_packet].concat(), 255);
    chunk_ops(&mut acc, b"dropped", 255);
    seeds.push(Seed {
        name: "acceptor-leftover".into(),
        data: acc,
        established: true,
    });
    let mut con = vec![1, 0];
    chunk_ops(&mut con, &from_b[..2].concat(), 255);
    chunk_ops(&mut con, &[&from_b[2][..], &tick_and_packet].concat(), 255);
    seeds.push(Seed {
        name: "connector-leftover".into(),
        data: con,
        established: true,
    });

    // The old 'n' send_name and 'c' complement of OTP 23/24 peers.
    let s = setup(0, 0);
    let old = OldSendName {
        version: OLD_VERSION,
        flags: s.a.flags as u32,
        name: s.a.this_node.as_bytes(),
    };
    let comp = Complement {
        flags_high: (s.a.flags >> 32) as u32,
        creation: s.a.creation,
    };
    let reply = ChallengeReply {
        challenge: s.a.challenge,
        digest: digest(&s.a.cookie_out, s.b.challenge),
    };
    let mut acc = vec![0, 0];
    chunk_ops(&mut acc, &encode_frame(&old.encode(), Framing::U16), 255);
    acc.extend_from_slice(&[6, 0]);
    chunk_ops(&mut acc, &encode_frame(&comp.encode(), Framing::U16), 255);
    chunk_ops(&mut acc, &encode_frame(&reply.encode(), Framing::U16), 255);
    seeds.push(Seed {
        name: "acceptor-old-name-complement".into(),
        data: acc,
        established: true,
    });

    // Failures: a wrong cookie, refusals, nok, alive and false, missing
    // flags, a wrong dialled name, bad NAME_ME answers; for the side(s) that
    // notice them (acceptor, connector).
    let failing: &[(&str, u8, u8, u8, bool, bool)] = &[
        ("wrong-cookie", 32, 0, 0, true, false),
        ("refused", 0, 0, 3, true, true),
        ("nok", 0, 0, 1, true, true),
        ("alive-abort", 16, 0, 2, true, true),
        ("missing-flags", 0, 2, 0, true, false),
        ("wrong-dialled", 0, 32, 0, false, true),
        ("name-me-bad-name", 8, 0, 5, true, false),
        ("name-me-too-long", 8, 0, 7, true, false),
    ];
    for &(name, h0, h1, check, acceptor, connector) in failing {
        let (from_a, from_b, ok) = transcript(h0, h1, check);
        assert!(!ok, "transcript {name} established");
        if acceptor {
            let mut acc = vec![h0, h1];
            for (i, f) in from_a.iter().enumerate() {
                chunk_ops(&mut acc, f, 255);
                if i == 0 {
                    acc.extend_from_slice(&[6, check]);
                }
            }
            seeds.push(Seed {
                name: format!("acceptor-{name}"),
                data: acc,
                established: false,
            });
        }
        if connector {
            let mut con = vec![h0 | 1, h1];
            for f in &from_b {
                chunk_ops(&mut con, f, 255);
            }
            seeds.push(Seed {
                name: format!("connector-{name}"),
                data: con,
                established: false,
            });
        }
    }
    let (from_a, _, _) = transcript(0, 0, 0);
    let mut late = vec![0, 0];
    late.extend_from_slice(&[7, 4, 4, 7, 4]);
    chunk_ops(&mut late, &from_a[0], 255);
    seeds.push(Seed {
        name: "acceptor-deadline".into(),
        data: late,
        established: false,
    });
    seeds.push(Seed {
        name: "pair-deadline-waiting-for-check".into(),
        data: vec![2, 0, 0, 0, 7, 5, 4, 7, 0, 4, 6, 0],
        established: false,
    });
    seeds.push(Seed {
        name: "pair-eof".into(),
        data: vec![2, 0, 0, 0, 6, 0, 2, 0, 5, 0],
        established: false,
    });
    seeds.push(Seed {
        name: "connector-eof".into(),
        data: vec![1, 0, 5, 5, 4],
        established: false,
    });
    seeds
}
