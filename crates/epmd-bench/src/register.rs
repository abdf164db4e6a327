//! Holding registrations: one ALIVE2 connection per name, kept open.
//!
//! A registration lives exactly as long as its ALIVE2 socket, so the generator
//! registers N names by holding N sockets. Dropping a [`Registrations`] closes
//! them all, which unregisters the names.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use epmd_proto::legacy::{Alive2Req, Alive2Resp};
use epmd_proto::NodeType;

use crate::net::connect_from;

/// Source addresses of registration connections, rotated: 127.0.1.1-8, apart
/// from the lookup sources (see [`crate::net`]).
pub const REG_SOURCES: [Ipv4Addr; 8] = [
    Ipv4Addr::new(127, 0, 1, 1),
    Ipv4Addr::new(127, 0, 1, 2),
    Ipv4Addr::new(127, 0, 1, 3),
    Ipv4Addr::new(127, 0, 1, 4),
    Ipv4Addr::new(127, 0, 1, 5),
    Ipv4Addr::new(127, 0, 1, 6),
    Ipv4Addr::new(127, 0, 1, 7),
    Ipv4Addr::new(127, 0, 1, 8),
];

/// The node name of registration `i`.
pub fn node_name(i: usize) -> String {
    format!("bench{i:05}")
}

/// The distribution port registered for name `i` (never sent to; just echoed).
pub fn node_port(i: usize) -> u16 {
    // 20000..59999: any value works, the daemon only stores it.
    20_000 + (i % 40_000) as u16
}

/// Why a registration did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegFailure {
    /// `connect` failed or timed out.
    Connect(String),
    /// The daemon closed or reset the socket before a complete reply (the C
    /// epmd's answer once its connection table is full).
    ClosedNoReply(String),
    /// No reply within the timeout.
    Timeout,
    /// The daemon replied with a non-zero result.
    Rejected(u8),
    /// The reply did not parse.
    Garbage(Vec<u8>),
    /// The generator ran out of its own file descriptors.
    GeneratorFds,
}

impl std::fmt::Display for RegFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::ClosedNoReply(e) => write!(f, "closed without reply ({e})"),
            Self::Timeout => write!(f, "no reply within timeout"),
            Self::Rejected(r) => write!(f, "rejected, result {r}"),
            Self::Garbage(b) => write!(f, "garbage reply {b:?}"),
            Self::GeneratorFds => write!(f, "generator out of file descriptors"),
        }
    }
}

/// Registers `name` on `addr` with one ALIVE2 (hi = lo = 6, type 77,
/// protocol 0, no Extra, as OTP 25 sends) and returns the open socket.
pub fn register_one(
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, RegFailure> {
    let mut s = match connect_from(src, addr, timeout) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return Err(RegFailure::GeneratorFds),
        Err(e) => return Err(RegFailure::Connect(e.to_string())),
    };
    let req = Alive2Req {
        port,
        node_type: NodeType::Normal.code(),
        protocol: 0,
        high: 6,
        low: 6,
        name: name.as_bytes(),
        extra: b"",
    }
    .encode();
    let _ = s.set_read_timeout(Some(timeout));
    if let Err(e) = s.write_all(&req) {
        return Err(RegFailure::ClosedNoReply(e.to_string()));
    }
    let mut buf = [0u8; 16];
    let mut got = 0;
    loop {
        match Alive2Resp::decode(&buf[..got]) {
            Ok(Some(resp)) if resp.result() == 0 => break,
            Ok(Some(resp)) => return Err(RegFailure::Rejected(resp.result())),
            Ok(None) => {}
            Err(_) => return Err(RegFailure::Garbage(buf[..got].to_vec())),
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(RegFailure::ClosedNoReply("EOF".into())),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(RegFailure::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(RegFailure::ClosedNoReply(e.to_string())),
        }
    }
    // Never write on this socket again: any byte unregisters the node.
    Ok(s)
}

/// Names held on one daemon.
#[derive(Debug, Default)]
pub struct Registrations {
    conns: Vec<TcpStream>,
}

/// The result of [`Registrations::fill`].
#[derive(Debug, Clone)]
pub struct FillReport {
    /// How many names were asked for.
    pub requested: usize,
    /// How many are held now.
    pub held: usize,
    /// Why registration stopped early, if it did.
    pub failure: Option<RegFailure>,
    /// Wall time of the registration loop.
    pub elapsed: Duration,
}

impl Registrations {
    /// Registers names `0..n` one connection at a time, stopping at the first
    /// failure. `fd_budget` bounds how many sockets the generator may hold.
    pub fn fill(
        addr: SocketAddr,
        n: usize,
        fd_budget: usize,
        timeout: Duration,
    ) -> (Self, FillReport) {
        let mut regs = Self {
            conns: Vec::with_capacity(n.min(fd_budget)),
        };
        let t0 = Instant::now();
        let mut failure = None;
        for i in 0..n {
            if i >= fd_budget {
                failure = Some(RegFailure::GeneratorFds);
                break;
            }
            let src = Some(REG_SOURCES[i % REG_SOURCES.len()]);
            match register_one(addr, src, &node_name(i), node_port(i), timeout) {
                Ok(s) => regs.conns.push(s),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let report = FillReport {
            requested: n,
            held: regs.conns.len(),
            failure,
            elapsed: t0.elapsed(),
        };
        (regs, report)
    }

    /// Wraps sockets that each hold one registration.
    pub fn from_conns(conns: Vec<TcpStream>) -> Self {
        Self { conns }
    }

    /// How many names are held.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Closes the most recent registrations until `keep` remain.
    pub fn truncate(&mut self, keep: usize) {
        self.conns.truncate(keep);
    }

    /// How many held sockets the daemon has closed (EOF or error on a
    /// non-blocking peek). A live registration's socket stays silent.
    pub fn count_dead(&self) -> usize {
        self.conns
            .iter()
            .filter(|s| {
                let mut b = [0u8; 1];
                // SAFETY: valid fd and a 1-byte writable buffer.
                let r = unsafe {
                    libc::recv(
                        s.as_raw_fd(),
                        b.as_mut_ptr().cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                if r == 0 {
                    return true;
                }
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    return e.kind() != ErrorKind::WouldBlock;
                }
                false
            })
            .count()
    }
}

/// The daemon's IPv4 loopback address on `port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
