//! Decoding limits after authentication (issue 8 item 3), against
//! `erldist serve` as a separate process, so its log and its memory are
//! its own:
//!
//! - a hostile Rust peer completes a real handshake (dist-proto's
//!   `Connector`, over TCP) and then sends a compressed term that honestly
//!   inflates to 16 MiB of `[]`, terms with unknown tags (255, which no
//!   release defines, and OTP 29's RECORD_EXT, 67, cut short) and an
//!   unknown control operation: each is dropped with a warning naming the
//!   peer and not the contents, the connection stays up (the next message
//!   is echoed on it), and the node's peak RSS grows by a bounded amount
//!   (printed; run with `--nocapture`);
//! - a real OTP 25 `erl` node's honest message that is one term per byte
//!   (`lists:duplicate(1000000, [])`) passes the default budget, and is
//!   dropped, with the connection kept, under `--decode-budget-per-byte 16`;
//! - a budget of nothing at all is refused at start.
//!
//! Every test has its own epmdx on a private port; `erl` nodes get
//! `-start_epmd false`; processes are stopped by PID when their handles
//! drop.

mod transport_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use dist_proto::packet::{self, DecodeLimits, Frame, Framer};
use dist_proto::{Connector, Established, Event, Handshake, HandshakeConfig};
use erl_term::{Atom, Pid, Term};
use flate2::write::ZlibEncoder;
use test_support::erl::ErlNode;
use test_support::{Daemon, Subject};
use transport_support::*;

/// A marker that must never reach the log.
const SECRET: &str = "secret_marker_7c1d";

/// What a dropped message costs the node at most, in peak RSS (the frame,
/// the budgeted decode, allocator slack). Before the bounds existed the
/// 16 MiB bomb alone raised it by 786 MiB.
const RSS_BOUND_KIB: u64 = 64 << 10;

fn serve(d: &Daemon, name: &str, home: &Path, extra: &[&str]) -> (Bg, u16) {
    let port = d.port.to_string();
    let mut args = vec![
        "serve",
        "--name",
        name,
        "--cookie",
        COOKIE,
        "--epmd-port",
        &port,
    ];
    args.extend_from_slice(extra);
    let mut cmd = erldist(&args, home);
    cmd.env("RUST_LOG", "info");
    let (bg, first) = Bg::spawn(cmd);
    // "erldist: node N listening on inet_tcp:PORT (creation ...)"
    let port = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("inet_tcp:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no inet_tcp port in {first:?}"));
    (bg, port)
}

/// The log without its ANSI colours, so fields read `op=99`.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A hand-driven peer: a real handshake, then raw packets.
struct Peer {
    sock: TcpStream,
    framer: Framer,
    me: Pid,
}

impl Peer {
    /// Dials `node` at `port` as `name` and completes the handshake.
    fn connect(port: u16, name: &str, node: &str) -> Self {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let cfg = HandshakeConfig::new(name, COOKIE, 7, 0x5EED_0003)
            .with_timeout(Duration::from_secs(LONG));
        let mut c = Connector::new(cfg, node, Instant::now()).expect("connector config");
        let est = drive(&mut c, &mut sock);
        let me = Pid {
            node: Atom::new(name).expect("atom"),
            id: 1,
            serial: 0,
            creation: 7,
        };
        Self {
            sock,
            framer: Framer::new(est.leftover),
            me,
        }
    }

    fn send_raw(&mut self, body: &[u8]) {
        let len = u32::try_from(body.len()).expect("frame size");
        self.sock.write_all(&len.to_be_bytes()).expect("write");
        self.sock.write_all(body).expect("write");
    }

    /// REG_SEND to `echo`, the payload given as encoded bytes.
    fn reg_send_raw(&mut self, payload: &[u8]) {
        let ctrl = Term::Tuple(vec![
            Term::Integer(6),
            Term::Pid(self.me.clone()),
            Term::atom(""),
            Term::atom("echo"),
        ]);
        let mut body = vec![packet::PASS_THROUGH];
        body.extend_from_slice(&erl_term::encode(&ctrl));
        body.extend_from_slice(payload);
        self.send_raw(&body);
    }

    /// `{echo, Node} ! {self(), Msg}`.
    fn echo(&mut self, msg: &Term) {
        let t = Term::Tuple(vec![Term::Pid(self.me.clone()), msg.clone()]);
        self.reg_send_raw(&erl_term::encode(&t));
    }

    /// Waits for a message to our pid equal to `want`, answering nothing
    /// (the node's ticks need no answer within a test's time).
    fn expect(&mut self, want: &Term, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(frame) = self.framer.poll_frame().expect("frame") {
                let Frame::Packet(body) = frame else { continue };
                let p = packet::decode(&body, &DecodeLimits::new()).expect("packet from the node");
                if p.payload.as_ref() == Some(want) {
                    return;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no echo of {want:?} in {secs} s");
            self.sock.set_read_timeout(Some(left)).expect("timeout");
            let mut buf = [0u8; 16 << 10];
            match self.sock.read(&mut buf) {
                Ok(0) => panic!("the node closed the connection"),
                Ok(n) => self.framer.handle_input(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

/// A blocking handshake driver (no `resolve`: an initiator never asks).
fn drive(m: &mut impl Handshake, sock: &mut TcpStream) -> Established {
    let mut buf = [0u8; 4096];
    loop {
        while let Some(bytes) = m.poll_transmit() {
            sock.write_all(&bytes).expect("write");
        }
        match m.poll_event() {
            Some(Event::Established(est)) => return est,
            Some(other) => panic!("handshake: {other:?}"),
            None => {}
        }
        let at = m.poll_timeout().expect("a deadline");
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            m.handle_timeout(Instant::now());
            continue;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.read(&mut buf) {
            Ok(0) => m.handle_eof(),
            Ok(n) => m.handle_input(&buf[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                m.handle_timeout(Instant::now());
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// `{Pid, [[] x n]}` as a compressed standalone term (`131 80 Size
/// zlib(...)`), streamed through zlib so the list is never built.
fn compressed_nils(pid: &Pid, n: usize) -> Vec<u8> {
    let head = erl_term::encode(&Term::Tuple(vec![Term::Pid(pid.clone()), Term::Nil]));
    // The tuple's encoding ends with NIL_EXT (106) for the `[]` element;
    // replace it with LIST_EXT of n NIL_EXTs and a NIL_EXT tail.
    let mut inner = head[1..head.len() - 1].to_vec();
    inner.push(108);
    inner.extend_from_slice(&u32::try_from(n).expect("n").to_be_bytes());
    let size = inner.len() + n + 1;
    let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    z.write_all(&inner).expect("zlib");
    let chunk = vec![106u8; 1 << 20];
    let mut left = n + 1;
    while left > 0 {
        let k = left.min(chunk.len());
        z.write_all(&chunk[..k]).expect("zlib");
        left -= k;
    }
    let body = z.finish().expect("zlib");
    let mut out = vec![131, 80];
    out.extend_from_slice(&u32::try_from(size).expect("size").to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// `131`, then `{Pid, {SECRET, <the bytes>}}` with `tail` as the last
/// element's encoding (a bad term).
fn secret_then(pid: &Pid, tail: &[u8]) -> Vec<u8> {
    let mut b = erl_term::encode(&Term::Tuple(vec![
        Term::Pid(pid.clone()),
        Term::Tuple(vec![Term::atom(SECRET), Term::Nil]),
    ]));
    b.pop(); // the Nil placeholder
    b.extend_from_slice(tail);
    b
}

#[test]
fn hostile_messages_are_dropped_alone_naming_the_peer_within_bounded_memory() {
    let d = daemon(Subject::Epmdx);
    let home = tmp("declimits");
    let node = format!("dl_{}@localhost", d.port);
    let probe = format!("hostile_{}@localhost", d.port);
    let (mut bg, port) = serve(&d, &node, home.path(), &[]);
    let pid = bg.child.id();
    let mut peer = Peer::connect(port, &probe, &node);
    peer.echo(&Term::atom("warm_up"));
    peer.expect(&Term::atom("warm_up"), LONG);
    let hwm_before = status_kib(pid, "VmHWM");
    let rss_before = status_kib(pid, "VmRSS");

    // (a) 16 MiB of [] in about 16 KiB.
    let bomb = compressed_nils(&peer.me, 16 << 20);
    eprintln!("compressed bomb: {} bytes on the wire", bomb.len());
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    peer.reg_send_raw(&bomb);
    peer.echo(&Term::atom("after_bomb"));
    peer.expect(&Term::atom("after_bomb"), LONG);
    let hwm_bomb = status_kib(pid, "VmHWM");

    // (b) a tag no release defines, and RECORD_EXT cut short (an error
    // whether or not erl-term decodes tag 67).
    peer.reg_send_raw(&secret_then(&peer.me, &[255, 0, 0]));
    peer.reg_send_raw(&secret_then(&peer.me, &[67]));
    peer.echo(&Term::atom("after_tags"));
    peer.expect(&Term::atom("after_tags"), LONG);

    // (c) an unknown control operation.
    let odd = Term::Tuple(vec![
        Term::Integer(99),
        Term::Pid(peer.me.clone()),
        Term::atom(SECRET),
    ]);
    let framed = packet::encode(&odd, None);
    peer.send_raw(&framed[4..]);
    peer.echo(&Term::atom("after_op"));
    peer.expect(&Term::atom("after_op"), LONG);
    let hwm_after = status_kib(pid, "VmHWM");

    let grew = hwm_bomb.saturating_sub(hwm_before);
    eprintln!(
        "decoding-limit figures: peak RSS (VmHWM) {hwm_before} KiB before the bomb, \
         {hwm_bomb} KiB after it (+{grew} KiB), {hwm_after} KiB after all three; \
         RSS before {rss_before} KiB"
    );
    assert!(
        grew < RSS_BOUND_KIB,
        "the bomb raised peak RSS by {grew} KiB"
    );
    assert!(hwm_after.saturating_sub(hwm_before) < RSS_BOUND_KIB);

    // The warnings are written before the echo that follows them; give the
    // pipe a moment, then read the log of the node still running.
    let warned = || bg.log().lines().filter(|l| l.contains("WARN")).count();
    assert!(test_support::wait_until(
        Duration::from_secs(LONG),
        || warned() >= 4
    ));
    let log = bg.log();
    assert!(!log.contains("connection down"), "{log}");
    assert!(bg.terminate(LONG).is_some_and(|s| s.success()));
    let log = plain(&bg.log());
    assert!(!log.contains(SECRET), "contents in the log:\n{log}");
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dropping a message"))
        .collect();
    assert_eq!(dropped.len(), 3, "{log}");
    assert!(dropped[0].contains("memory budget"), "{}", dropped[0]);
    assert!(dropped[1].contains("tag 255"), "{}", dropped[1]);
    let ignored: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("unknown control operation"))
        .collect();
    assert_eq!(ignored.len(), 1, "{log}");
    assert!(ignored[0].contains("op=99"), "{}", ignored[0]);
    for l in dropped.iter().chain(&ignored) {
        assert!(
            l.contains(&probe),
            "the warning does not name the peer: {l}"
        );
    }
}

fn erl(d: &Daemon, name: &str) -> ErlNode {
    blocking(|| ErlNode::start(name, COOKIE, d.port, &[]))
        .unwrap_or_else(|e| panic!("start {name}: {e:#}"))
}

fn eval(e: &mut ErlNode, src: &str) -> String {
    blocking(|| e.eval(src)).unwrap_or_else(|err| panic!("{err:#}"))
}

#[test]
fn an_otp_peer_s_dense_message_passes_the_default_budget_and_a_lower_one_drops_it() {
    let d = daemon(Subject::Epmdx);
    let home = tmp("declimits_otp");
    let mut e = erl(&d, &format!("dl_erl_{}@localhost", d.port));
    // A 1 MB frame of one term per byte: 48 MB decoded, within 64 per byte.
    let dense = |name: &str| {
        format!(
            "{{echo, '{name}'}} ! {{self(), lists:duplicate(1000000, [])}}, \
             receive L when is_list(L) -> length(L) after 30000 -> timeout end."
        )
    };
    let name = format!("dl_default_{}@localhost", d.port);
    let (mut bg, _) = serve(&d, &name, home.path(), &[]);
    assert_eq!(eval(&mut e, &dense(&name)), "1000000");
    assert!(bg.terminate(LONG).is_some());

    let name = format!("dl_low_{}@localhost", d.port);
    let (mut bg, _) = serve(&d, &name, home.path(), &["--decode-budget-per-byte", "16"]);
    eval(&mut e, "net_kernel:monitor_nodes(true).");
    let dropped = format!(
        "{{echo, '{name}'}} ! {{self(), lists:duplicate(1000000, [])}}, \
         {{echo, '{name}'}} ! {{self(), small_one}}, \
         receive L when is_list(L) -> length(L); small_one -> small_one after 30000 -> timeout end."
    );
    assert_eq!(eval(&mut e, &dropped), "small_one");
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "receive {{nodedown, '{name}'}} -> down after 0 -> \
                 lists:member('{name}', nodes()) end."
            )
        ),
        "true"
    );
    assert!(bg.terminate(LONG).is_some());
    let log = plain(&bg.log());
    let erl_name = e.node().to_owned();
    let warn = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("dropping a message"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warn.contains("memory budget"), "{warn}");
    assert!(warn.contains(&erl_name), "{warn}");
}

#[test]
fn a_budget_of_nothing_is_refused_at_start() {
    let home = tmp("declimits_zero");
    let cmd = erldist(
        &[
            "serve",
            "--name",
            "z@localhost",
            "--cookie",
            "c",
            "--epmd-port",
            "1",
            "--decode-budget-per-byte",
            "0",
            "--decode-budget-min",
            "0",
        ],
        home.path(),
    );
    let o = blocking(|| run_cmd(cmd, 30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--decode-budget-per-byte"), "{err}");
}
