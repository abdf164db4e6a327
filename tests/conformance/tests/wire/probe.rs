//! Blocking wire probes: connect, send, and observe what comes back and how
//! the connection ends.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::harness::render;

/// How a connection looked when the probe stopped watching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The server closed it (FIN, or a reset: a server that closes with
    /// unread input sends RST, which is the same decision).
    Closed,
    /// Still open when the probe stopped waiting.
    Open,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
        })
    }
}

/// What one connection delivered.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) bytes: Vec<u8>,
    pub(crate) end: End,
    /// Size of the first successful read (0 if none): a fixed-size reply
    /// sent in one write arrives in one read on loopback.
    pub(crate) first_read: usize,
    /// Time from the start of reading to the end observation.
    pub(crate) elapsed: Duration,
}

impl Reply {
    /// `bytes | end`, for transcripts and messages.
    pub(crate) fn show(&self) -> String {
        format!("{} | {}", render(&self.bytes), self.end)
    }
}

/// Connects to `127.0.0.1:port` with Nagle off.
pub(crate) fn connect(port: u16) -> Result<TcpStream> {
    connect_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Connects to `addr` with Nagle off.
pub(crate) fn connect_addr(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Writes everything, ignoring errors: a server that closes early may make
/// the write fail, and the read side reports what happened.
pub(crate) fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
}

enum Step {
    Data(usize),
    Eof,
    Quiet,
}

fn read_step(s: &mut TcpStream, buf: &mut [u8], wait: Duration) -> Step {
    let wait = wait.max(Duration::from_millis(1));
    if s.set_read_timeout(Some(wait)).is_err() {
        return Step::Eof;
    }
    loop {
        match s.read(buf) {
            Ok(0) => return Step::Eof,
            Ok(n) => return Step::Data(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Step::Quiet
            }
            // Reset, aborted, broken pipe: the server closed it.
            Err(_) => return Step::Eof,
        }
    }
}

/// Reads while `more(bytes read so far)` holds, until the server closes the
/// connection or `deadline` passes; `Open` unless it closed.
fn read_while(s: &mut TcpStream, deadline: Duration, more: impl Fn(usize) -> bool) -> Reply {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut first_read = 0;
    let mut buf = vec![0u8; 65536];
    let mut end = End::Open;
    while more(bytes.len()) {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match read_step(s, &mut buf, left) {
            Step::Data(n) => {
                if first_read == 0 {
                    first_read = n;
                }
                bytes.extend_from_slice(&buf[..n]);
            }
            Step::Eof => {
                end = End::Closed;
                break;
            }
            Step::Quiet => {}
        }
    }
    Reply {
        bytes,
        end,
        first_read,
        elapsed: start.elapsed(),
    }
}

/// Reads until the server closes the connection or `deadline` passes.
pub(crate) fn read_to_close(s: &mut TcpStream, deadline: Duration) -> Reply {
    read_while(s, deadline, |_| true)
}

/// Reads until `want` bytes arrived (or the server closed, or `deadline`
/// passed), then keeps watching for `linger` to see whether more bytes or a
/// close follow. A zero `linger` reports `Open` without watching.
pub(crate) fn read_reply(
    s: &mut TcpStream,
    want: usize,
    deadline: Duration,
    linger: Duration,
) -> Reply {
    let start = Instant::now();
    let mut r = read_while(s, deadline, |n| n < want);
    if r.end == End::Closed || r.bytes.len() < want || linger.is_zero() {
        return r;
    }
    let rest = read_to_close(s, linger);
    r.bytes.extend_from_slice(&rest.bytes);
    r.end = rest.end;
    r.elapsed = start.elapsed();
    r
}

/// Whether the server has closed `s`, judged by a short read (any data
/// that arrives is returned too).
pub(crate) fn closed_now(s: &mut TcpStream, wait: Duration) -> (bool, Vec<u8>) {
    let r = read_to_close(s, wait);
    (r.end == End::Closed, r.bytes)
}

/// Closes `s` with an RST instead of a FIN (SO_LINGER with a zero timeout).
#[cfg(target_os = "linux")]
pub(crate) fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let l = sys::Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is valid while `s` lives; the option value is a
    // properly sized `struct linger`.
    let rc = unsafe {
        sys::setsockopt(
            s.as_raw_fd(),
            sys::SOL_SOCKET,
            sys::SO_LINGER,
            std::ptr::addr_of!(l).cast(),
            size_of::<sys::Linger>() as u32,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
    drop(s);
}

/// Connects from the local address `src` (port 0) to `dst`, so the daemon
/// sees `src` as the peer. Needed for the local-peer rule.
#[cfg(target_os = "linux")]
pub(crate) fn connect_from(src: IpAddr, dst: SocketAddr) -> Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (domain, src_sa, dst_sa) = match (src, dst) {
        (IpAddr::V4(a), SocketAddr::V4(d)) => (
            sys::AF_INET,
            sys::SockAddr::v4(a, 0),
            sys::SockAddr::v4(*d.ip(), d.port()),
        ),
        (IpAddr::V6(a), SocketAddr::V6(d)) => (
            sys::AF_INET6,
            sys::SockAddr::v6(a, 0),
            sys::SockAddr::v6(*d.ip(), d.port()),
        ),
        _ => anyhow::bail!("address families differ: {src} -> {dst}"),
    };
    // SAFETY: plain socket calls on an fd this function owns until it is
    // handed to `TcpStream::from_raw_fd`; the sockaddr buffers are valid
    // for the lengths passed.
    unsafe {
        let fd = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        if sys::bind(fd, src_sa.ptr(), src_sa.len) != 0 {
            anyhow::bail!("bind {src}: {}", std::io::Error::last_os_error());
        }
        if sys::connect(fd, dst_sa.ptr(), dst_sa.len) != 0 {
            anyhow::bail!(
                "connect {src} -> {dst}: {}",
                std::io::Error::last_os_error()
            );
        }
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// A non-loopback address of this host in the given family, found by
/// asking the kernel which source address it would use for a route.
pub(crate) fn external_addr(v6: bool) -> Option<IpAddr> {
    let (bind, targets): (&str, &[&str]) = if v6 {
        (
            "[::]:0",
            &["[2001:db8::1]:9", "[fd00::1]:9", "[2606:4700::1]:9"],
        )
    } else {
        (
            "0.0.0.0:0",
            &["192.0.2.1:9", "203.0.113.1:9", "10.255.255.1:9"],
        )
    };
    for t in targets {
        let Ok(u) = UdpSocket::bind(bind) else {
            return None;
        };
        if u.connect(t).is_ok() {
            if let Ok(a) = u.local_addr() {
                let ip = a.ip();
                if !ip.is_loopback() && !ip.is_unspecified() {
                    return Some(ip);
                }
            }
        }
    }
    None
}

#[cfg(target_os = "linux")]
mod sys {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::raw::{c_int, c_void};

    pub(super) const AF_INET: c_int = 2;
    pub(super) const AF_INET6: c_int = 10;
    pub(super) const SOCK_STREAM: c_int = 1;
    pub(super) const SOCK_CLOEXEC: c_int = 0o2_000_000;
    pub(super) const SOL_SOCKET: c_int = 1;
    pub(super) const SO_LINGER: c_int = 13;

    #[repr(C)]
    pub(super) struct Linger {
        pub(super) l_onoff: c_int,
        pub(super) l_linger: c_int,
    }

    /// Room for a `sockaddr_in` or `sockaddr_in6`, built by hand.
    pub(super) struct SockAddr {
        buf: [u8; 28],
        pub(super) len: u32,
    }

    impl SockAddr {
        pub(super) fn v4(ip: Ipv4Addr, port: u16) -> Self {
            let mut buf = [0u8; 28];
            buf[..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
            buf[2..4].copy_from_slice(&port.to_be_bytes());
            buf[4..8].copy_from_slice(&ip.octets());
            Self { buf, len: 16 }
        }

        pub(super) fn v6(ip: Ipv6Addr, port: u16) -> Self {
            let mut buf = [0u8; 28];
            buf[..2].copy_from_slice(&(AF_INET6 as u16).to_ne_bytes());
            buf[2..4].copy_from_slice(&port.to_be_bytes());
            buf[8..24].copy_from_slice(&ip.octets());
            Self { buf, len: 28 }
        }

        pub(super) fn ptr(&self) -> *const c_void {
            self.buf.as_ptr().cast()
        }
    }

    extern "C" {
        pub(super) fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
        pub(super) fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
        pub(super) fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
        pub(super) fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    }
}
