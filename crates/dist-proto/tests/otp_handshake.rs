//! The handshake state machines against real OTP nodes.
//!
//! Each test starts OTP's C `epmd` on a private port (never 4369) and an
//! `erl` node registered with it (`-start_epmd false`, `ERL_EPMD_PORT`), and
//! drives a [`Connector`] or [`Acceptor`] over a real TCP socket with the
//! tiny blocking driver below. The driver lives here, not in the library,
//! which does no I/O. Nodes are named after the daemon's port, so parallel
//! tests never collide; everything is killed by PID on drop; every wait is a
//! condition polled against a deadline.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dist_proto::{
    flags, Acceptor, Connector, Established, Event, Handshake, HandshakeConfig, HandshakeError,
    PeerCheck, Stage, Status,
};
use epmd_proto::legacy::{encode_port_please2, Alive2Req, Alive2Resp, PortInfo};
use test_support::erl::{require_on_path, ErlNode, TempDir};
use test_support::{wait_until, Daemon, Subject};

/// How long to wait for the OTP side to notice a connection change.
const OTP_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// A blocking driver, for tests only
// ---------------------------------------------------------------------------

/// A blocking stream with a read timeout: TCP or Unix.
trait Sock: Read + Write {
    fn set_timeout(&self, t: Duration) -> io::Result<()>;
}

impl Sock for TcpStream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

impl Sock for UnixStream {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// What one handshake did on the wire.
struct Run {
    outcome: Event,
    /// Everything read from the peer, in order.
    received: Vec<u8>,
}

/// Runs `m` over `sock` until it reports an outcome.
fn drive(m: &mut impl Handshake, sock: &mut impl Sock) -> Result<Run> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(bytes) = m.poll_transmit() {
            sock.write_all(&bytes).context("write")?;
        }
        let mut named = false;
        while let Some(ev) = m.poll_event() {
            match ev {
                Event::PeerNamed { .. } => named = true,
                outcome => {
                    // Flush a final status (not_allowed, nok) before handing
                    // the outcome back.
                    while let Some(bytes) = m.poll_transmit() {
                        let _ = sock.write_all(&bytes);
                    }
                    return Ok(Run { outcome, received });
                }
            }
        }
        if named {
            // The test node has no other connection or attempt to anyone.
            m.resolve(PeerCheck::Free);
            continue;
        }
        let deadline = m.poll_timeout().ok_or_else(|| anyhow!("no deadline"))?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            m.handle_timeout(Instant::now());
            continue;
        }
        sock.set_timeout(left)?;
        match sock.read(&mut buf) {
            Ok(0) => m.handle_eof(),
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                m.handle_input(&buf[..n], Instant::now());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                m.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => m.handle_eof(),
            Err(e) => return Err(e).context("read"),
        }
    }
}

fn established(run: &Run) -> Result<&Established> {
    match &run.outcome {
        Event::Established(e) => Ok(e),
        other => bail!("handshake did not establish: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Setup helpers
// ---------------------------------------------------------------------------

struct Setup {
    // Dropped in reverse order: the node before its daemon.
    node: ErlNode,
    daemon: Daemon,
    cookie: String,
}

impl Setup {
    fn start() -> Result<Self> {
        let daemon = Daemon::start(Subject::Otp, &[])?;
        let p = daemon.port;
        let cookie = format!("cookie{p}");
        let node = ErlNode::start(&format!("otp{p}@localhost"), &cookie, p, &[])?;
        Ok(Self {
            node,
            daemon,
            cookie,
        })
    }

    /// Our node's full name, unique per test.
    fn rust_name(&self) -> String {
        format!("rust{}@localhost", self.daemon.port)
    }

    /// A challenge that differs per test run, without a random crate.
    fn challenge(&self) -> u32 {
        0x9e37_79b9_u32.wrapping_mul(u32::from(self.daemon.port)) | 0x8000_0000
    }

    fn config(&self, cookie: &str) -> HandshakeConfig {
        HandshakeConfig::new(self.rust_name(), cookie, 1, self.challenge())
    }

    /// The OTP node's distribution port, by a raw PORT_PLEASE2.
    fn otp_port(&self) -> Result<u16> {
        let mut s = TcpStream::connect(self.daemon.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&encode_port_please2(self.node.alive().as_bytes()))?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        let info = PortInfo::decode_reply(&reply)
            .map_err(|e| anyhow!("PORT2_RESP: {e}"))?
            .ok_or_else(|| anyhow!("{} not registered", self.node.alive()))?;
        ensure!(info.high >= 6, "OTP node registered version {}", info.high);
        Ok(info.port)
    }

    /// Registers our node with ALIVE2 (raw), pointing at `port`, with the
    /// given version range. The returned socket keeps the registration.
    fn register(&self, port: u16, high: u16, low: u16) -> Result<(TcpStream, u32)> {
        let alive = format!("rust{}", self.daemon.port);
        let mut s = TcpStream::connect(self.daemon.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let req = Alive2Req {
            port,
            node_type: 77,
            protocol: 0,
            high,
            low,
            name: alive.as_bytes(),
            extra: b"",
        };
        s.write_all(&req.encode())?;
        let want = if high >= 6 { 6 } else { 4 };
        let mut reply = vec![0u8; want];
        s.read_exact(&mut reply)?;
        let resp = Alive2Resp::decode(&reply)
            .map_err(|e| anyhow!("ALIVE2 reply: {e}"))?
            .ok_or_else(|| anyhow!("short ALIVE2 reply"))?;
        ensure!(resp.result() == 0, "ALIVE2 refused: {resp:?}");
        Ok((s, resp.creation()))
    }

    /// Polls `expr` in the node until it evaluates to `want`.
    fn wait_eval(&mut self, expr: &str, want: &str) -> Result<()> {
        let mut last = String::new();
        let node = &mut self.node;
        let ok = wait_until(OTP_WAIT, || match node.eval(expr) {
            Ok(v) => {
                last = v;
                last == want
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        });
        ensure!(
            ok,
            "`{expr}` never gave {want} (last: {last}); output:\n{}",
            self.node.output()
        );
        Ok(())
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Accepts one connection on `listener` in a thread and runs an acceptor on
/// it; the socket comes back with the result so the connection stays up.
fn accept_in_thread(
    listener: TcpListener,
    config: HandshakeConfig,
) -> thread::JoinHandle<Result<(Run, TcpStream)>> {
    thread::spawn(move || {
        listener.set_nonblocking(false)?;
        let (mut sock, _) = listener.accept()?;
        sock.set_nodelay(true)?;
        let mut acc = Acceptor::new(config, Instant::now())?;
        let run = drive(&mut acc, &mut sock)?;
        Ok((run, sock))
    })
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// (a) We dial the OTP node with the right cookie: the handshake completes,
/// the peer's flags are what OTP 25 sends, and the OTP node lists us among
/// its (hidden) connected nodes until we close the socket.
#[test]
fn connector_to_otp_node() -> Result<()> {
    let mut s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let cfg = s
        .config(&s.cookie.clone())
        .with_optional_flags(flags::DEFAULT_OPTIONAL, false);
    let mut conn = Connector::new(cfg, s.node.node(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    let est = established(&run)?;
    assert_eq!(est.peer_name, s.node.node());
    assert_eq!(est.status, Status::Ok);
    assert_eq!(
        est.peer_flags & flags::MANDATORY_26,
        flags::MANDATORY_26,
        "OTP 25 sends {}",
        flags::names(est.peer_flags).join(" ")
    );
    assert_eq!(est.flags & flags::PUBLISHED, 0, "we are hidden");
    let creation = s.node.eval("erlang:system_info(creation).")?;
    assert_eq!(est.peer_creation.to_string(), creation);
    eprintln!(
        "OTP 25 challenge flags: {:#x} = {}",
        est.peer_flags,
        flags::names(est.peer_flags).join(" ")
    );

    let me = s.rust_name();
    s.wait_eval(&format!("lists:member('{me}', nodes(hidden))."), "true")?;
    // A tick keeps the connection honest; then closing it is seen as down.
    sock.write_all(&[0, 0, 0, 0])?;
    drop(sock);
    s.wait_eval(&format!("lists:member('{me}', nodes(hidden))."), "false")?;
    Ok(())
}

/// (a') The same over a published connection: OTP lists us in `nodes()`.
#[test]
fn published_connector_to_otp_node() -> Result<()> {
    let mut s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let mut conn = Connector::new(s.config(&s.cookie.clone()), s.node.node(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    let est = established(&run)?;
    assert_ne!(est.flags & flags::PUBLISHED, 0);
    let me = s.rust_name();
    s.wait_eval(&format!("lists:member('{me}', nodes())."), "true")?;
    drop(sock);
    Ok(())
}

/// (b) A wrong cookie: OTP checks our challenge_reply, logs the rejection
/// and closes without an ack, so the connector fails while waiting for it.
#[test]
fn connector_wrong_cookie() -> Result<()> {
    let s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let mut conn = Connector::new(s.config("not-the-cookie"), s.node.node(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    assert_eq!(
        run.outcome,
        Event::Failed(HandshakeError::Closed {
            stage: Stage::ChallengeAck
        })
    );
    let node = &s.node;
    assert!(
        wait_until(OTP_WAIT, || node
            .output()
            .contains("Invalid challenge reply")),
        "OTP did not log the rejection; output:\n{}",
        node.output()
    );
    Ok(())
}

/// A dialled name that is not the node's name: OTP still answers with its
/// real name in the challenge, and the connector refuses it.
#[test]
fn connector_name_mismatch() -> Result<()> {
    let s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let wrong = format!("other{}@localhost", s.daemon.port);
    let mut conn = Connector::new(s.config(&s.cookie), wrong.clone(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    assert_eq!(
        run.outcome,
        Event::Failed(HandshakeError::NameMismatch {
            dialled: wrong,
            got: s.node.node().to_owned()
        })
    );
    Ok(())
}

/// Missing mandatory flags: OTP 25 answers `not_allowed`.
#[test]
fn connector_missing_flags_not_allowed() -> Result<()> {
    let s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let mut cfg = s.config(&s.cookie);
    cfg.flags &= !(flags::BIG_CREATION | flags::MANDATORY_25_DIGEST);
    let mut conn = Connector::new(cfg, s.node.node(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    assert_eq!(run.outcome, Event::Failed(HandshakeError::PeerNotAllowed));
    Ok(())
}

/// Only the digest bit stands for the OTP 25 mandatory set: OTP 25 expands
/// it and accepts (with UNLINK_ID and V4_NC, which OTP 26 would need).
#[test]
fn connector_digest_only_flags() -> Result<()> {
    let s = Setup::start()?;
    let port = s.otp_port()?;
    let mut sock = connect(port)?;
    let mut cfg = s.config(&s.cookie);
    cfg.flags = flags::MANDATORY_25_DIGEST | flags::HANDSHAKE_23 | flags::UNLINK_ID | flags::V4_NC;
    let mut conn = Connector::new(cfg, s.node.node(), Instant::now())?;
    let run = drive(&mut conn, &mut sock)?;
    established(&run)?;
    Ok(())
}

/// (c) The OTP node dials us: we register in the private epmd with ALIVE2
/// (versions 6..5), run the acceptor on the accepted socket, and
/// `net_kernel:connect_node/1` on the OTP side returns `true` once the
/// handshake is done; the OTP node then lists us in `nodes()`.
#[test]
fn acceptor_for_otp_node() -> Result<()> {
    let mut s = Setup::start()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let (_reg, creation) = s.register(listener.local_addr()?.port(), 6, 5)?;
    let mut cfg = s.config(&s.cookie.clone());
    cfg.creation = creation;
    let acceptor = accept_in_thread(listener, cfg);

    let me = s.rust_name();
    let got = s.node.eval(&format!("net_kernel:connect_node('{me}')."))?;
    let (run, _sock) = acceptor.join().expect("acceptor thread")?;
    let est = established(&run)?;
    assert_eq!(got, "true", "connect_node; output:\n{}", s.node.output());
    assert_eq!(est.peer_name, s.node.node());
    assert_eq!(
        run.received.get(2),
        Some(&b'N'),
        "OTP 25 sends the version 6 send_name to a version 6 node"
    );
    let otp_creation = s.node.eval("erlang:system_info(creation).")?;
    assert_eq!(est.peer_creation.to_string(), otp_creation);
    assert_eq!(est.peer_flags & flags::MANDATORY_26, flags::MANDATORY_26);
    s.wait_eval(&format!("lists:member('{me}', nodes())."), "true")?;
    Ok(())
}

/// The OTP node dials us with the wrong cookie: our acceptor refuses its
/// challenge_reply and `connect_node` returns `false`.
#[test]
fn acceptor_wrong_cookie_from_otp() -> Result<()> {
    let mut s = Setup::start()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let (_reg, creation) = s.register(listener.local_addr()?.port(), 6, 5)?;
    let mut cfg = s.config("our-own-cookie");
    cfg.creation = creation;
    let acceptor = accept_in_thread(listener, cfg);
    let me = s.rust_name();
    let got = s.node.eval(&format!("net_kernel:connect_node('{me}')."))?;
    let (run, _sock) = acceptor.join().expect("acceptor thread")?;
    assert_eq!(run.outcome, Event::Failed(HandshakeError::WrongCookie));
    assert_eq!(got, "false");
    Ok(())
}

/// A version 5 registration in epmd does not make OTP 25.2.3 fall back to
/// the old send_name over TCP: it still sends `'N'`, and the handshake
/// completes.
#[test]
fn acceptor_for_otp_node_registered_as_version_5() -> Result<()> {
    let mut s = Setup::start()?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let (_reg, creation) = s.register(listener.local_addr()?.port(), 5, 5)?;
    let mut cfg = s.config(&s.cookie.clone());
    cfg.creation = creation;
    let acceptor = accept_in_thread(listener, cfg);
    let me = s.rust_name();
    let got = s.node.eval(&format!("net_kernel:connect_node('{me}')."))?;
    let (run, _sock) = acceptor.join().expect("acceptor thread")?;
    let est = established(&run)?;
    assert_eq!(got, "true", "connect_node; output:\n{}", s.node.output());
    assert_eq!(est.peer_name, s.node.node());
    assert_eq!(run.received.get(2), Some(&b'N'));
    Ok(())
}

/// Compiles OTP's `erl_uds_dist` example (shipped with the kernel
/// application) into a fresh directory.
fn build_erl_uds_dist() -> Result<TempDir> {
    let erlc = require_on_path("erlc", "erlang-base")?;
    let kernel = std::fs::read_dir("/usr/lib/erlang/lib")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kernel-"))
        })
        .max()
        .ok_or_else(|| anyhow!("no kernel application under /usr/lib/erlang/lib"))?;
    let src = kernel.join("examples/erl_uds_dist/src/erl_uds_dist.erl");
    ensure!(
        src.exists(),
        "{} missing (Debian's erlang-base ships it)",
        src.display()
    );
    let out = TempDir::new("uds-beam")?;
    let st = Command::new(erlc)
        .arg("-o")
        .arg(out.path())
        .arg(&src)
        .status()?;
    ensure!(st.success(), "erlc {} failed: {st}", src.display());
    Ok(out)
}

/// OTP's `erl_uds_dist` (as shipped, it declares distribution version 5)
/// dials us over a Unix socket, with `{packet,2}` framing and no epmd: the
/// socket path is the node-name head, relative to the dialling node's
/// working directory.
///
/// Finding: OTP 25.2.3's `dist_util` sends the version 6 `'N'` send_name
/// even then, so no peer available here sends the old `'n'` + `'c'`; the
/// unit tests cover that form byte by byte. The test accepts either tag and
/// prints the one seen.
#[test]
fn acceptor_for_erl_uds_dist() -> Result<()> {
    let beams = build_erl_uds_dist()?;
    // A daemon only to give the node a private ERL_EPMD_PORT; -no_epmd means
    // it is never contacted.
    let daemon = Daemon::start(Subject::Otp, &[])?;
    let p = daemon.port;
    let cookie = format!("cookie{p}");
    let pa = beams.path().to_string_lossy().into_owned();
    let mut node = ErlNode::start(
        &format!("uds{p}@localhost"),
        &cookie,
        p,
        &["-proto_dist", "erl_uds", "-no_epmd", "-pa", &pa],
    )?;
    let me = format!("rust{p}@localhost");
    let path = node.dir().join(format!("rust{p}"));
    let listener = UnixListener::bind(&path)?;
    let cfg = HandshakeConfig::new(me.clone(), &cookie, 1, 0x8765_4321);
    let acceptor = thread::spawn(move || -> Result<(Run, UnixStream)> {
        let (mut sock, _) = listener.accept()?;
        let mut acc = Acceptor::new(cfg, Instant::now())?;
        let run = drive(&mut acc, &mut sock)?;
        Ok((run, sock))
    });
    let got = node.eval(&format!("net_kernel:connect_node('{me}')."))?;
    let (run, _sock) = acceptor.join().expect("acceptor thread")?;
    let est = established(&run)?;
    assert_eq!(got, "true", "connect_node; output:\n{}", node.output());
    assert_eq!(est.peer_name, node.node());
    let tag = run.received.get(2).copied().map(char::from);
    eprintln!("erl_uds_dist send_name tag: {tag:?}");
    assert!(matches!(tag, Some('N' | 'n')), "send_name tag {tag:?}");
    // With 'n', the complement carried the high flags and the creation
    // (1..3, from the node's .uds file).
    assert_eq!(est.peer_flags & flags::MANDATORY_26, flags::MANDATORY_26);
    let creation = node.eval("erlang:system_info(creation).")?;
    assert_eq!(est.peer_creation.to_string(), creation);
    let nodes = node.eval("nodes().")?;
    assert!(nodes.contains(&me), "nodes() = {nodes}");
    remove_socket(&path);
    Ok(())
}

fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
}
