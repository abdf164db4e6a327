//! Helpers shared by the erldist interop suites (`interop.rs`,
//! `failures.rs`, `cli.rs`).
//!
//! Every test starts its own `epmdx` on a private port (never 4369), names
//! its nodes after that port so parallel tests never collide, and waits on
//! conditions with generous deadlines (the CI box has two shared cores).
//! Daemons and `erl` nodes are killed by PID when dropped.
//!
//! The `epmdx` binary must exist (`cargo build --bins`, or `EPMDX_BIN`).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dist_proto::{Connector, Established, Event, Handshake, HandshakeConfig, HandshakeError};
use erl_term::Term;
use erldist::transport::{ListenSpec, Proto};
use erldist::{Mailbox, Node, NodeConfig};
use test_support::erl::ErlNode;
use test_support::{Daemon, Subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The cookie the suites share unless a test wants another.
pub const COOKIE: &str = "erldist-interop-cookie";

/// Deadline for anything that crosses a node boundary.
pub const LONG: u64 = 20;

/// Runs blocking code (an `erl` start or eval) without stalling the tokio
/// worker when called from inside the runtime.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

/// Logs to stderr (captured per test) when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

static TASK_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts panics on tokio worker threads: a panic in a node's task (an
/// accept or connection task) is swallowed by tokio, so the tests look for
/// it here. Test bodies run on their own threads and are not counted.
pub fn watch_task_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-"))
            {
                TASK_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            prev(info);
        }));
    });
}

/// Fails if any node task has panicked in this test binary so far.
pub fn assert_no_task_panics() {
    let n = TASK_PANICS.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(n, 0, "{n} panic(s) in node tasks (see the output above)");
}

/// A fresh epmdx on a private port.
pub fn daemon() -> Daemon {
    init_logging();
    watch_task_panics();
    blocking(|| Daemon::start(Subject::Epmdx, &[])).expect("start epmdx on a private port")
}

/// An `erl` node `erl_<tag>_<port>@localhost` registered with `d`.
pub fn erl(d: &Daemon, tag: &str, cookie: &str) -> ErlNode {
    let name = format!("erl_{tag}_{}@localhost", d.port);
    blocking(|| ErlNode::start(&name, cookie, d.port, &[]))
        .unwrap_or_else(|e| panic!("start {name}: {e:#}"))
}

/// Evaluates Erlang expressions in `erl`; panics with the node's output on
/// an exception or no answer.
pub fn eval(erl: &mut ErlNode, src: &str) -> String {
    blocking(|| erl.eval(src)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A node configuration `rust_<tag>_<port>@localhost` registered with `d`,
/// listening on loopback.
pub fn config(d: &Daemon, tag: &str, cookie: &str) -> NodeConfig {
    let mut c = NodeConfig::new(format!("rust_{tag}_{}@localhost", d.port), cookie);
    c.epmd_port = d.port;
    c.listen = vec![ListenSpec {
        proto: Proto::InetTcp,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }];
    c
}

/// Starts a Rust node.
pub async fn start(cfg: NodeConfig) -> Node {
    let name = cfg.name.clone();
    within(LONG, &format!("start {name}"), Node::start(cfg))
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// A client-only Rust node (no listener) on `d`, for "does the node still
/// serve" checks.
pub async fn client(d: &Daemon, tag: &str, cookie: &str) -> Node {
    let mut c = config(d, tag, cookie);
    c.listen = Vec::new();
    c.hidden = true;
    start(c).await
}

/// Awaits `f`, panicking if it takes more than `secs` seconds.
pub async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// Receives until a message satisfies `pred`; panics after `secs` seconds.
/// Other messages are skipped (and printed, to help debugging).
pub async fn recv_match(
    mb: &mut Mailbox,
    secs: u64,
    what: &str,
    pred: impl Fn(&Term) -> bool,
) -> Term {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match mb.recv_timeout(left).await {
            Some(t) if pred(&t) => return t,
            Some(t) => eprintln!("({what}: skipping {t})"),
            None => panic!("no message matching {what} within {secs} s"),
        }
    }
}

/// The next message, within `secs` seconds.
pub async fn recv(mb: &mut Mailbox, secs: u64, what: &str) -> Term {
    recv_match(mb, secs, what, |_| true).await
}

/// Serves `{Pid, Msg}` -> `Pid ! Msg` on `mb` until the mailbox closes or
/// the task is aborted.
pub fn spawn_echo(mut mb: Mailbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = mb.recv().await {
            if let Term::Tuple(e) = &m {
                if let [Term::Pid(to), msg] = e.as_slice() {
                    let _ = mb.send(to, msg.clone()).await;
                }
            }
        }
    })
}

pub fn atom(s: &str) -> Term {
    Term::atom(s)
}

pub fn tuple(v: Vec<Term>) -> Term {
    Term::Tuple(v)
}

/// Whether `t` is a tuple whose first element is the atom `tag`.
pub fn tagged(t: &Term, tag: &str) -> bool {
    matches!(t, Term::Tuple(e) if e.first().and_then(Term::as_atom) == Some(tag))
}

/// Element `i` of a tuple, panicking with the term otherwise.
pub fn elem(t: &Term, i: usize) -> &Term {
    t.as_tuple()
        .and_then(|e| e.get(i))
        .unwrap_or_else(|| panic!("no element {i} in {t}"))
}

// ---------------------------------------------------------------------------
// Raw sockets: handshakes driven by hand, garbage, idle connections
// ---------------------------------------------------------------------------

/// The loopback address of a node's listener.
pub fn listen_addr(node: &Node) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], node.listen_port().expect("listening")))
}

/// A handshake configuration for a hand-driven initiator.
pub fn probe_config(name: &str, cookie: &str) -> HandshakeConfig {
    HandshakeConfig::new(name, cookie, 7, 0x5EED_1234).with_timeout(Duration::from_secs(5))
}

/// Drives `c` over `s` until it reports an outcome. The connector's own
/// timeout bounds it; the caller should still wrap it in [`within`].
pub async fn drive_connector(
    s: &mut TcpStream,
    mut c: Connector,
) -> Result<Established, HandshakeError> {
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(out) = c.poll_transmit() {
            // A refused write shows up as end of stream on the next read.
            let _ = s.write_all(&out).await;
        }
        while let Some(ev) = c.poll_event() {
            match ev {
                Event::Established(e) => return Ok(e),
                Event::Failed(e) => return Err(e),
                _ => {}
            }
        }
        let at = c
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(30));
        match tokio::time::timeout_at(at, s.read(&mut buf)).await {
            Err(_) => c.handle_timeout(Instant::now()),
            Ok(Ok(0) | Err(_)) => c.handle_eof(),
            Ok(Ok(n)) => c.handle_input(&buf[..n], Instant::now()),
        }
    }
}

/// Dials `addr` and runs a hand-driven handshake as `cfg`, expecting the
/// peer to be `dialled`.
pub async fn raw_handshake(
    addr: SocketAddr,
    cfg: HandshakeConfig,
    dialled: &str,
) -> Result<Established, HandshakeError> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let c = Connector::new(cfg, dialled, Instant::now()).expect("connector config");
    within(15, "hand-driven handshake", drive_connector(&mut s, c)).await
}

/// How a socket ended, seen from our side.
#[derive(Debug)]
pub struct Closed {
    /// Bytes the peer sent before closing.
    pub got: Vec<u8>,
    /// How long after the call the close was seen.
    pub after: Duration,
    /// Whether it ended with a reset (an error) rather than a clean EOF.
    pub reset: bool,
}

/// Reads until the peer closes (EOF or reset) or `limit` passes. `None`
/// means the socket was still open at the limit.
pub async fn wait_closed(s: &mut TcpStream, limit: Duration) -> Option<Closed> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) => {
                return Some(Closed {
                    got,
                    after: t0.elapsed(),
                    reset: false,
                })
            }
            Ok(Err(_)) => {
                return Some(Closed {
                    got,
                    after: t0.elapsed(),
                    reset: true,
                })
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts `node` still answers a ping from a fresh client node.
pub async fn assert_serves(d: &Daemon, node: &Node, tag: &str, cookie: &str) {
    let c = client(d, tag, cookie).await;
    let ok = within(LONG, "ping after abuse", c.ping(node.name())).await;
    assert!(ok, "{} no longer answers pings", node.name());
    c.stop();
    assert_no_task_panics();
}
