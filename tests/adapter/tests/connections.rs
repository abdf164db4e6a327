//! `epmdx_select:connections/0` classifies a connection by its controller
//! and the address net_kernel recorded. OTP 25 runs TLS in a `tls_sender`
//! process; with kTLS (newer `inet_tls_dist`, `{ktls, true}`) the
//! controller is the plain socket port and only the recorded
//! `protocol = tls` tells TLS from TCP. OTP 25 cannot run kTLS, so the
//! classification (`transport_of/3`, the pure part) is checked on a table
//! that includes the kTLS shapes, and live connections on OTP 25 are
//! checked by `seed.rs` and `netns.rs`.

mod common;

use anyhow::{ensure, Result};
use common::*;

#[test]
fn connections_classify_ktls_ports_as_tls() -> Result<()> {
    let fx = Fixture::new()?;
    let mut n = fx.adapted("c", &["epmdx_tcp"], &[])?;
    let cases = [
        // kTLS: a port controller, protocol tls.
        ("port, {{127,0,0,1},40000}, {net_address, {{127,0,0,1},5000}, \"h\", tls, inet}", "inet_tls"),
        ("port, {{0,0,0,0,0,0,0,1},40000}, {net_address, {{0,0,0,0,0,0,0,1},5000}, \"h\", tls, inet6}", "inet6_tls"),
        // TCP and the Unix socket.
        ("port, {{127,0,0,1},40000}, {net_address, {{127,0,0,1},5000}, \"h\", tcp, inet}", "inet_tcp"),
        ("port, {{0,0,0,0,0,0,0,1},40000}, {net_address, {{0,0,0,0,0,0,0,1},5000}, \"h\", tcp, inet6}", "inet6_tcp"),
        ("port, {local, <<\"/run/x/s\">>}, {net_address, {local, <<\"/run/x/s\">>}, \"h\", tcp, local}", "uds"),
        // TLS in a process: OTP 25 records family inet even over IPv6.
        ("process, undefined, {net_address, {{0,0,0,0,0,0,0,1},5000}, \"h\", tls, inet}", "inet6_tls"),
        ("process, undefined, {net_address, {{127,0,0,1},5000}, \"h\", tls, inet}", "inet_tls"),
        ("process, undefined, undefined", "unknown"),
    ];
    for (args, want) in cases {
        let got = n.eval(&format!("epmdx_select:transport_of({args})."))?;
        ensure!(got == want, "transport_of({args}) = {got}, want {want}");
    }
    Ok(())
}

/// A stock TLS node (`-proto_dist inet_tls`) with the adapter's EPMD
/// module: the default policy refuses a peer on the same host (it allows
/// only the Unix socket and TCP there); `same_host [inet_tls]` lets it
/// connect over TLS, as docs/erlang.md says.
#[test]
fn stock_tls_node_with_the_epmd_module_needs_a_tls_policy() -> Result<()> {
    let fx = Fixture::new()?;
    let _s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls"], &[])?;
    fx.wait_nodes_line("s", |l| l.contains("#inet_tls"))?;
    let stock = |name: &str, extra: &[&str]| -> Result<ErlNode> {
        let mut a: Vec<String> = vec![
            "-pa".into(),
            ebin().display().to_string(),
            "-epmd_module".into(),
            "epmdx_epmd".into(),
            "-proto_dist".into(),
            "inet_tls".into(),
        ];
        a.extend(fx.tls_args());
        a.extend(extra.iter().map(|s| s.to_string()));
        fx.erl(name, &a)
    };
    let mut d = stock("d", &[])?;
    let v = ping(&mut d, "s@localhost")?;
    ensure!(v == "pang", "default policy: {v}");
    wait_output(&d, "policy allows [uds, inet_tcp, inet6_tcp]")?;
    let mut t = stock(
        "t",
        &[
            "-kernel",
            "epmdx_policy",
            "[{same_host, [inet_tls]}, {same_subnet, [inet_tls]}]",
        ],
    )?;
    ping_until_pong(&mut t, "s@localhost")?;
    let c = conn(&mut t, "s@localhost")?;
    ensure!(c.transport == "inet_tls", "t → s: {c:?}");
    Ok(())
}
