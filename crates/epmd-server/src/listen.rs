//! Binding the listening sockets the way the C epmd does, with the
//! correction of OTP's 2026 EPMD advisory fix (GHSA-h6f3-hx58-xhj6,
//! erlang/otp#11402 and #11409) for the any-address.
//!
//! - No address list: `0.0.0.0` and `::` (IPV6_V6ONLY).
//! - With a list: `127.0.0.1` and `::1` first, then each listed address
//!   (loopbacks in the list are skipped); at most 16 sockets in all.
//! - A listed any-address (`0.0.0.0`, `::`) already covers the loopback of
//!   its family, so that implicit loopback is not bound. OTP 25's epmd
//!   (and epmdx before) bound `127.0.0.1` first and then failed on
//!   `0.0.0.0` with EADDRINUSE, exiting with "there is already a epmd
//!   running"; the fixed epmd listens. docs/compatibility.md says what was
//!   compared.
//! - A family the kernel lacks is skipped. A bind failure on an implicit
//!   loopback is tolerated, except EADDRINUSE; on a listed address it is fatal.
//! - EADDRINUSE anywhere means "an epmd already runs here" ([`BindError::InUse`]).
//!
//! Binding happens before the process daemonises, so `epmdx -daemon` returns
//! only once lookups can succeed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// The C epmd's MAX_LISTEN_SOCKETS.
pub const MAX_LISTEN_SOCKETS: usize = 16;

/// Why binding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The port is taken: another epmd runs (the C epmd exits 0 on this).
    #[error("there is already a epmd running at port {port}")]
    InUse {
        /// The contested port.
        port: u16,
        /// The address that was in use.
        addr: IpAddr,
    },
    /// A listed address could not be bound.
    #[error("failed to bind on ipaddr {addr}: {}", os_error_text(source))]
    Listed {
        /// The listed address.
        addr: IpAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Too many addresses for MAX_LISTEN_SOCKETS.
    #[error("cannot listen on more than {MAX_LISTEN_SOCKETS} IP addresses")]
    TooMany,
    /// Nothing at all was bound.
    #[error("unable to bind any address")]
    Nothing,
}

/// The OS's text for an error, without Rust's ` (os error N)` suffix, as
/// the C epmd prints it with `strerror`.
fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Parses an `-address` / `ERL_EPMD_ADDRESS` list: commas or spaces separate
/// tokens; each is tried as IPv6, then IPv4. Returns the first unparsable
/// token on failure. A list of only separators is an empty list.
pub fn parse_address_list(list: &str) -> Result<Vec<IpAddr>, String> {
    list.split([',', ' '])
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .or_else(|_| t.parse::<Ipv4Addr>().map(IpAddr::V4))
                .map_err(|_| t.to_owned())
        })
        .collect()
}

fn is_family_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT)
    )
}

/// Binds one listening socket the way the EPMD listeners are bound
/// (address reuse, IPv6-only for IPv6, non-blocking, close-on-exec): used
/// for the `-metrics` listener.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_one(addr.ip(), addr.port())
}

fn bind_one(addr: IpAddr, port: u16) -> io::Result<TcpListener> {
    let domain = match addr {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(addr, port).into())?;
    sock.listen(libc::SOMAXCONN)?;
    Ok(sock.into())
}

/// The loopbacks bound besides a non-empty address list: both, except the
/// one of a family whose any-address is listed (it covers the loopback;
/// binding both fails with EADDRINUSE).
fn implicit_loopbacks(addresses: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(2);
    if !addresses.contains(&IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
        out.push(Ipv4Addr::LOCALHOST.into());
    }
    if !addresses.contains(&IpAddr::V6(Ipv6Addr::UNSPECIFIED)) {
        out.push(Ipv6Addr::LOCALHOST.into());
    }
    out
}

/// Binds every listening socket for `port` and the given address list
/// (empty = all interfaces).
pub fn bind_all(port: u16, addresses: &[IpAddr]) -> Result<Vec<TcpListener>, BindError> {
    let implicit: Vec<IpAddr> = if addresses.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
    } else {
        implicit_loopbacks(addresses)
    };
    // Only the two implicit loopbacks are skipped; another 127.x address is
    // bound and counts, as in the C epmd.
    let listed: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|a| *a != IpAddr::V4(Ipv4Addr::LOCALHOST) && *a != IpAddr::V6(Ipv6Addr::LOCALHOST))
        .collect();
    if implicit.len() + listed.len() >= MAX_LISTEN_SOCKETS {
        return Err(BindError::TooMany);
    }
    let mut out = Vec::new();
    for addr in implicit {
        match bind_one(addr, port) {
            Ok(l) => out.push(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(BindError::InUse { port, addr });
            }
            // A missing family or an absent loopback is tolerated here.
            Err(_) => {}
        }
    }
    for addr in listed {
        match bind_one(addr, port) {
            Ok(l) => out.push(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(BindError::InUse { port, addr });
            }
            Err(e) if is_family_missing(&e) => {}
            Err(source) => return Err(BindError::Listed { addr, source }),
        }
    }
    if out.is_empty() {
        return Err(BindError::Nothing);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(parse_address_list(" , ,"), Ok(vec![]));
        assert_eq!(
            parse_address_list("127.0.0.1, ::1 10.0.0.1"),
            Ok(vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(Ipv6Addr::LOCALHOST),
                IpAddr::from([10, 0, 0, 1]),
            ])
        );
        assert_eq!(
            parse_address_list("1.2.3.4,999.1.1.1"),
            Err("999.1.1.1".into())
        );
    }

    #[test]
    fn in_use_is_reported() {
        let first = bind_all(0, &[IpAddr::from([127, 0, 0, 1])]).unwrap();
        let port = first[0].local_addr().unwrap().port();
        match bind_all(port, &[IpAddr::from([127, 0, 0, 1])]) {
            Err(BindError::InUse { port: p, .. }) => assert_eq!(p, port),
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn a_listed_any_address_replaces_its_loopback() {
        let any4 = IpAddr::from(Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::from(Ipv6Addr::UNSPECIFIED);
        let lo4 = IpAddr::from(Ipv4Addr::LOCALHOST);
        let lo6 = IpAddr::from(Ipv6Addr::LOCALHOST);
        let ext = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(implicit_loopbacks(&[ext]), vec![lo4, lo6]);
        assert_eq!(implicit_loopbacks(&[any4]), vec![lo6]);
        assert_eq!(implicit_loopbacks(&[any6]), vec![lo4]);
        assert_eq!(implicit_loopbacks(&[any4, any6]), Vec::<IpAddr>::new());
    }

    #[test]
    fn too_many_addresses() {
        let many: Vec<IpAddr> = (1..=14).map(|i| IpAddr::from([10, 0, 0, i])).collect();
        assert!(matches!(bind_all(0, &many), Err(BindError::TooMany)));
    }
}
