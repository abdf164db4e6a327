//! Loopback probes and host names: what tests poll while a daemon or node
//! comes up, and the names nodes are given.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Sends NAMES to `addr` and reports whether a 4-byte header came back.
pub fn names_answers_at(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(&[0, 1, 110]).is_err() {
        return false;
    }
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).is_ok()
}

/// Whether anything accepts a TCP connection at `addr` (within 500 ms).
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether this host can bind IPv6 loopback.
pub fn have_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// This host's name from `gethostname`, or `localhost` if it fails.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    }
}

/// This host's short name (up to the first dot), as `erl -sname x` uses it.
pub fn short_hostname() -> String {
    let name = hostname();
    name.split('.').next().unwrap_or("localhost").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(accepts(addr));
        // A listener that never answers: NAMES gets no header.
        assert!(!names_answers_at(addr));
        drop(l);
        // The freed port could be taken by a test running in parallel, so
        // probe a port held by a socket that is bound but not listening:
        // nobody else can take it, and connecting to it is refused.
        let closed = bound_not_listening();
        assert!(!accepts(closed));
        assert!(!names_answers_at(closed));
    }

    /// A loopback address whose port is held by a bound, non-listening
    /// socket (closed again when the process ends).
    fn bound_not_listening() -> SocketAddr {
        // SAFETY: plain socket calls on a fresh descriptor with a zeroed,
        // correctly sized sockaddr_in; the descriptor is deliberately kept
        // open for the rest of the test process.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, (&raw const sa).cast(), len), 0);
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            assert_eq!(libc::getsockname(fd, (&raw mut got).cast(), &mut glen), 0);
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, u16::from_be(got.sin_port)))
        }
    }

    #[test]
    fn short_hostname_has_no_dot() {
        let h = short_hostname();
        assert!(!h.is_empty() && !h.contains('.'), "{h}");
        assert!(hostname().starts_with(&h));
    }
}
