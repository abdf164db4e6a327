//! Plain TCP, IPv4 or IPv6.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::TransportError;

/// Binds a listener (IPv6 listeners are V6ONLY, so `inet_tcp` and
/// `inet6_tcp` can share a port number).
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, TransportError> {
    let what = || format!("cannot listen on {addr}");
    let sock = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .map_err(|e| TransportError::io(what(), e))?;
    if addr.is_ipv6() {
        let s = socket2::SockRef::from(&sock);
        s.set_only_v6(true)
            .map_err(|e| TransportError::io(what(), e))?;
    }
    sock.set_reuseaddr(true)
        .map_err(|e| TransportError::io(what(), e))?;
    sock.bind(addr).map_err(|e| TransportError::io(what(), e))?;
    sock.listen(1024).map_err(|e| TransportError::io(what(), e))
}

/// Connects to the first of `addrs` (on `port`) that answers, each attempt
/// bounded by `timeout`.
pub(crate) async fn connect(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let mut last = None;
    for ip in addrs {
        let sa = SocketAddr::new(*ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(sa)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Some(TransportError::io(format!("connect to {sa}"), e)),
            Err(_) => {
                last = Some(TransportError::io(
                    format!("connect to {sa}"),
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        TransportError::io(
            "connect",
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address of the right family",
            ),
        )
    }))
}
