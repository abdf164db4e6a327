//! Blocking client sockets with a chosen loopback source address.
//!
//! Each lookup is a new connection, and each registration holds one, so the
//! generator can use tens of thousands of local ports towards one daemon port.
//! `connect` without `bind` takes its source port from
//! `net.ipv4.ip_local_port_range` (28,232 ports here) on 127.0.0.1, and once
//! most of them hold registrations to the same daemon the kernel's port search
//! costs hundreds of microseconds per connect. Binding each socket to its own
//! 127.0.0.0/8 source address (with `IP_BIND_ADDRESS_NO_PORT`, so the port is
//! still picked at `connect` time, per 4-tuple) keeps the search short. Every
//! 127/8 address is local to the daemon, so ALIVE2's local-peer rule passes.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Connects to `dst` from `src` (kernel's choice when `None`), blocking, with
/// `SO_SNDTIMEO` and `SO_RCVTIMEO` set to `timeout`: the first bounds
/// `connect` (reported as `TimedOut`), the second every later read.
pub fn connect_from(
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
        // SAFETY: valid fd and a timeval option value.
        cvt(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                opt,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        })?;
    }
    if let Some(ip) = src {
        let one: libc::c_int = 1;
        let sa = sockaddr(ip, 0);
        // SAFETY: valid fd, a c_int option value and a sockaddr_in.
        unsafe {
            cvt(libc::setsockopt(
                raw,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            ))?;
            cvt(libc::bind(
                raw,
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ))?;
        }
    }
    let sa = sockaddr(*dst.ip(), dst.port());
    // SAFETY: valid fd and sockaddr_in.
    match cvt(unsafe {
        libc::connect(
            raw,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    }) {
        Ok(()) => Ok(TcpStream::from(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
        }
        Err(e) => Err(e),
    }
}

/// Lookup source addresses: 127.0.0.2 ..= 127.0.0.(1 + `n`); empty for 0.
pub fn lookup_sources(n: u8) -> Vec<Ipv4Addr> {
    (0..n.min(250))
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
        .collect()
}
