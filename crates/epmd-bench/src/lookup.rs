//! The closed-loop lookup workload.
//!
//! Each client repeatedly opens a new TCP connection, sends one PORT_PLEASE2,
//! reads until the daemon closes, checks the reply and records the latency
//! (connect to EOF). A client starts a new lookup only after the previous one
//! finished, so the offered load is bounded by the client count.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use epmd_proto::legacy::{encode_port_please2, PortInfo, PORT2_MISS};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::net::connect_from;
use crate::register::{node_name, node_port};

/// What a lookup asks for and what the reply must be.
#[derive(Debug, Clone)]
pub struct Query {
    /// The framed PORT_PLEASE2 request.
    pub request: Vec<u8>,
    /// The expected node name and port for a hit, or `None` for a miss.
    pub expect: Option<(Vec<u8>, u16)>,
}

/// The lookups a window cycles through: hits on names `0..n`, or one miss
/// when `n` is 0.
pub fn queries(n: usize) -> Arc<Vec<Query>> {
    if n == 0 {
        return Arc::new(vec![Query {
            request: encode_port_please2(b"nosuchnode"),
            expect: None,
        }]);
    }
    Arc::new(
        (0..n)
            .map(|i| {
                let name = node_name(i).into_bytes();
                Query {
                    request: encode_port_please2(&name),
                    expect: Some((name, node_port(i))),
                }
            })
            .collect(),
    )
}

/// Error classes, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrKind {
    /// `socket`/`bind`/`connect` failed (refused, no ephemeral port, ...).
    Connect = 0,
    /// Write or read failed (reset).
    Io = 1,
    /// The daemon closed without sending anything.
    NoReply = 2,
    /// The reply was not the expected hit or miss.
    BadReply = 3,
    /// The lookup did not finish within the per-lookup timeout.
    Timeout = 4,
}

/// Names for [`ErrKind`] in index order.
pub const ERR_NAMES: [&str; 5] = ["connect", "io", "no-reply", "bad-reply", "timeout"];

/// The workload's parameters.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The daemon.
    pub addr: SocketAddr,
    /// Concurrent clients.
    pub clients: usize,
    /// Length of the measured window (no new lookup starts after it).
    pub duration: Duration,
    /// Per-lookup bound; a slower lookup counts as a timeout error.
    pub timeout: Duration,
    /// Upper bound on lookups started in the window.
    pub max_requests: u64,
    /// Source addresses the clients rotate through (`bind` with
    /// `IP_BIND_ADDRESS_NO_PORT` before `connect`). Empty: let the kernel
    /// choose (127.0.0.1).
    pub sources: Arc<Vec<Ipv4Addr>>,
    /// What to look up.
    pub queries: Arc<Vec<Query>>,
}

/// What one window measured.
#[derive(Debug, Clone)]
pub struct WindowResult {
    /// Successful lookups.
    pub ok: u64,
    /// Failed lookups by [`ErrKind`].
    pub errors: [u64; 5],
    /// One example message per error kind.
    pub error_samples: [Option<String>; 5],
    /// From the first start to the last completion.
    pub elapsed: Duration,
    /// Latency of successful lookups, in microseconds.
    pub hist: Histogram<u64>,
}

impl WindowResult {
    /// Successful lookups per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// All failed lookups.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

async fn one_lookup(
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), (ErrKind, std::io::Error)> {
    let sock = TcpSocket::new_v4().map_err(|e| (ErrKind::Connect, e))?;
    if let Some(ip) = src {
        let one: libc::c_int = 1;
        // SAFETY: valid socket fd and a c_int option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::from((ip, 0)))
            .map_err(|e| (ErrKind::Connect, e))?;
    }
    let mut s = sock
        .connect(addr)
        .await
        .map_err(|e| (ErrKind::Connect, e))?;
    s.write_all(req).await.map_err(|e| (ErrKind::Io, e))?;
    buf.clear();
    s.read_to_end(buf).await.map_err(|e| (ErrKind::Io, e))?;
    Ok(())
}

fn check_reply(buf: &[u8], expect: Option<&(Vec<u8>, u16)>) -> Result<(), ErrKind> {
    if buf.is_empty() {
        return Err(ErrKind::NoReply);
    }
    match expect {
        None if buf == PORT2_MISS => Ok(()),
        None => Err(ErrKind::BadReply),
        Some((name, port)) => match PortInfo::decode_reply(buf) {
            Ok(Some(info)) if &info.name == name && info.port == *port => Ok(()),
            _ => Err(ErrKind::BadReply),
        },
    }
}

/// How the generator drives its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One tokio task per client on the caller's runtime (non-blocking
    /// sockets, epoll).
    Tokio,
    /// One OS thread per client with blocking sockets (fewer system calls
    /// per lookup, more context switches).
    Threads,
}

/// Per-client state: the name picker, the source rotation and the tallies.
struct Client {
    hist: Histogram<u64>,
    errors: [u64; 5],
    samples: [Option<String>; 5],
    ok: u64,
    rng: u64,
    src_i: usize,
    last_end: Instant,
}

impl Client {
    fn new(c: usize, start: Instant) -> Self {
        Self {
            hist: new_hist(),
            errors: [0; 5],
            samples: Default::default(),
            ok: 0,
            // xorshift64, seeded per client (never zero).
            rng: 0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
            src_i: c,
            last_end: start,
        }
    }

    /// Whether to start another lookup.
    fn go(&self, w: &Workload, deadline: Instant, issued: &AtomicU64) -> bool {
        Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < w.max_requests
    }

    /// The next query and source address.
    fn next<'w>(&mut self, w: &'w Workload) -> (&'w Query, Option<Ipv4Addr>) {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
        let q = &w.queries[r as usize % w.queries.len()];
        let src = if w.sources.is_empty() {
            None
        } else {
            self.src_i = (self.src_i + 1) % w.sources.len();
            Some(w.sources[self.src_i])
        };
        (q, src)
    }

    fn record(&mut self, t0: Instant, t1: Instant, outcome: Result<(), (ErrKind, String)>) {
        self.last_end = t1;
        match outcome {
            Ok(()) => {
                self.ok += 1;
                let us = (t1 - t0).as_micros().max(1) as u64;
                let _ = self.hist.record(us.min(120_000_000));
            }
            Err((k, msg)) => {
                self.errors[k as usize] += 1;
                self.samples[k as usize].get_or_insert(msg);
            }
        }
    }
}

fn judge(
    r: Result<(), (ErrKind, std::io::Error)>,
    buf: &[u8],
    q: &Query,
) -> Result<(), (ErrKind, String)> {
    match r {
        Err((k, e)) => Err((k, e.to_string())),
        Ok(()) => check_reply(buf, q.expect.as_ref())
            .map_err(|k| (k, format!("reply {:?}", &buf[..buf.len().min(24)]))),
    }
}

/// A blocking lookup: connect (see [`connect_from`]), write, read to EOF,
/// close.
pub fn one_lookup_blocking(
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    req: &[u8],
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), (ErrKind, std::io::Error)> {
    use std::io::{Read, Write};
    let mut s = connect_from(src, addr, timeout).map_err(|e| {
        let k = if e.kind() == std::io::ErrorKind::TimedOut {
            ErrKind::Timeout
        } else {
            ErrKind::Connect
        };
        (k, e)
    })?;
    let io = |e: std::io::Error| {
        let k = if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            ErrKind::Timeout
        } else {
            ErrKind::Io
        };
        (k, e)
    };
    s.write_all(req).map_err(io)?;
    buf.clear();
    s.read_to_end(buf).map_err(io)?;
    Ok(())
}

/// Runs one closed-loop window with `engine` (tokio tasks run on `rt`).
pub fn run_window(rt: &tokio::runtime::Runtime, engine: Engine, w: &Workload) -> WindowResult {
    match engine {
        Engine::Tokio => rt.block_on(run_window_tokio(w)),
        Engine::Threads => run_window_threads(w),
    }
}

fn merge(start: Instant, clients: impl IntoIterator<Item = Client>) -> WindowResult {
    let mut total = WindowResult {
        ok: 0,
        errors: [0; 5],
        error_samples: Default::default(),
        elapsed: Duration::ZERO,
        hist: new_hist(),
    };
    let mut end = start;
    for c in clients {
        total.ok += c.ok;
        for i in 0..5 {
            total.errors[i] += c.errors[i];
            if total.error_samples[i].is_none() {
                total.error_samples[i].clone_from(&c.samples[i]);
            }
        }
        total.hist.add(&c.hist).expect("same histogram bounds");
        end = end.max(c.last_end);
    }
    total.elapsed = end - start;
    total
}

/// The threads engine: one blocking OS thread per client.
pub fn run_window_threads(w: &Workload) -> WindowResult {
    let start = Instant::now();
    let deadline = start + w.duration;
    let issued = AtomicU64::new(0);
    let clients: Vec<Client> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..w.clients)
            .map(|c| {
                let issued = &issued;
                std::thread::Builder::new()
                    .name(format!("client{c}"))
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        let mut st = Client::new(c, start);
                        let mut buf = Vec::with_capacity(64);
                        while st.go(w, deadline, issued) {
                            let (q, src) = st.next(w);
                            let t0 = Instant::now();
                            let r =
                                one_lookup_blocking(w.addr, src, &q.request, &mut buf, w.timeout);
                            let t1 = Instant::now();
                            st.record(t0, t1, judge(r, &buf, q));
                        }
                        st
                    })
                    .expect("spawn client thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    merge(start, clients)
}

/// The tokio engine: one task per client.
pub async fn run_window_tokio(w: &Workload) -> WindowResult {
    let start = Instant::now();
    let deadline = start + w.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(w.clients);
    for c in 0..w.clients {
        let w = w.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut st = Client::new(c, start);
            let mut buf = Vec::with_capacity(64);
            while st.go(&w, deadline, &issued) {
                let (q, src) = st.next(&w);
                let t0 = Instant::now();
                let r = match tokio::time::timeout(
                    w.timeout,
                    one_lookup(w.addr, src, &q.request, &mut buf),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err((ErrKind::Timeout, std::io::Error::other("timed out"))),
                };
                let t1 = Instant::now();
                st.record(t0, t1, judge(r, &buf, q));
            }
            st
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for t in tasks {
        clients.push(t.await.expect("client task"));
    }
    merge(start, clients)
}
