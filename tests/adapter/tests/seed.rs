//! The seed e-mail's illustration, with unpatched OTP 25 `erl` and the
//! adapter instead of a patched OTP: one node registers TCP, TLS and a Unix
//! socket under one name, and every other node picks a transport for it.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;

fn expect_conn(c: &Conn, transport: &str, port: Option<u16>) -> Result<()> {
    ensure!(c.transport == transport, "expected {transport}, got {c:?}");
    if let Some(p) = port {
        ensure!(c.peer_port == p, "expected peer port {p}, got {c:?}");
    }
    let (proto, fam) = match transport {
        "inet_tcp" => ("tcp", "inet"),
        "inet6_tcp" => ("tcp", "inet6"),
        "inet_tls" => ("tls", "inet"),
        "uds" => ("tcp", "local"),
        other => unreachable!("{other}"),
    };
    ensure!(
        c.protocol == proto && c.family == fam,
        "net_kernel records {c:?} for a {transport} connection"
    );
    Ok(())
}

/// Node `s` runs `-proto_dist epmdx_tcp epmdx_tls epmdx_uds`; `epmdx nodes`
/// and `epmdx_epmd:names3/1` show its three transports under one name.
/// `k` (TCP only) reaches it over TCP; `m` (TCP and TLS, default policy:
/// same host, no common Unix socket) over TCP; `mt` (TCP and TLS, a rule
/// `s@*` → TLS) over TLS; `u` (all three) over the Unix socket. Each
/// connection is read from both ends' distribution controllers, and the
/// dialling end is connected to the port `s` registered for that
/// transport.
#[test]
fn seed_illustration() -> Result<()> {
    let fx = Fixture::new()?;
    let mut s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    let line = fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    let tcp = port_of(&line, "inet_tcp").context("inet_tcp port")?;
    let tls = port_of(&line, "inet_tls").context("inet_tls port")?;
    let sock = fx.uds_dir().join("s");
    ensure!(
        line == format!(
            "name s at port {tcp}#inet_tcp {tls}#inet_tls 0#uds({})",
            sock.display()
        ),
        "epmdx nodes: {line}"
    );
    ensure!(tcp != tls && tcp != 0 && tls != 0, "{line}");

    // The seed's erl_epmd:names() output, as epmdx_epmd:names3/1.
    let n3 = s.eval("epmdx_epmd:names3(\"localhost\").")?;
    ensure!(
        n3 == format!("{{ok,[{{\"s\",[{{{tcp},inet_tcp}},{{{tls},inet_tls}},{{0,uds}}]}}]}}"),
        "names3: {n3}"
    );
    // The stock names/1 shape: the legacy default transport (plain TCP).
    let n = s.eval("epmdx_epmd:names(\"localhost\").")?;
    ensure!(n == format!("{{ok,[{{\"s\",{tcp}}}]}}"), "names: {n}");
    // The registration itself: one connection, all three transports.
    let reg = s.eval("element(1, epmdx_epmd:registered()).")?;
    ensure!(reg == "extended", "registered: {reg}");

    // k: TCP only.
    let mut k = fx.adapted("k", &["epmdx_tcp"], &[])?;
    ping_until_pong(&mut k, "s@localhost")?;
    expect_conn(&conn(&mut k, "s@localhost")?, "inet_tcp", Some(tcp))?;
    expect_conn(&conn(&mut s, "k@localhost")?, "inet_tcp", None)?;
    let kline = fx.wait_nodes_line("k", |_| true)?;
    let kport = port_of(&kline, "inet_tcp").context("k's port")?;
    let n3 = k.eval("lists:sort(element(2, epmdx_epmd:names3(\"localhost\"))).")?;
    ensure!(
        n3 == format!(
            "[{{\"k\",[{{{kport},inet_tcp}}]}},\
             {{\"s\",[{{{tcp},inet_tcp}},{{{tls},inet_tls}},{{0,uds}}]}}]"
        ),
        "names3 from k: {n3}"
    );

    // m: TCP and TLS, the built-in policy: same host → [uds, inet_tcp,
    // inet6_tcp]; m has no Unix socket, so TCP.
    let mut m = fx.adapted("m", &["epmdx_tcp", "epmdx_tls"], &[])?;
    ping_until_pong(&mut m, "s@localhost")?;
    expect_conn(&conn(&mut m, "s@localhost")?, "inet_tcp", Some(tcp))?;
    expect_conn(&conn(&mut s, "m@localhost")?, "inet_tcp", None)?;

    // mt: TCP and TLS, with a rule sending s over TLS.
    let mut mt = fx.adapted(
        "mt",
        &["epmdx_tcp", "epmdx_tls"],
        &[
            "-kernel",
            "epmdx_policy",
            "[{rules, [{node, \"s@*\", [inet_tls]}]}]",
        ],
    )?;
    ping_until_pong(&mut mt, "s@localhost")?;
    expect_conn(&conn(&mut mt, "s@localhost")?, "inet_tls", Some(tls))?;
    expect_conn(&conn(&mut s, "mt@localhost")?, "inet_tls", None)?;

    // u: all three; same host → the Unix socket.
    let mut u = fx.adapted("u", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    ping_until_pong(&mut u, "s@localhost")?;
    expect_conn(&conn(&mut u, "s@localhost")?, "uds", None)?;
    expect_conn(&conn(&mut s, "u@localhost")?, "uds", None)?;
    // The dialling end is connected to s's socket file.
    let peer = u.eval(
        "{_, C} = lists:keyfind('s@localhost', 1, erlang:system_info(dist_ctrl)), \
         {ok, {local, P}} = inet:peername(C), P.",
    )?;
    ensure!(
        peer == format!("<<\"{}\">>", sock.display()),
        "u's socket peer: {peer}"
    );

    // Traffic flows on every connection (an rpc each way).
    for n in [&mut k, &mut m, &mut mt, &mut u] {
        let me = n.node().to_owned();
        let v = n.eval("rpc:call('s@localhost', erlang, node, []).")?;
        ensure!(v == "s@localhost", "{me}: rpc to s: {v}");
    }
    let v = s.eval("lists:sort(nodes()).")?;
    ensure!(
        v == "[k@localhost,m@localhost,mt@localhost,u@localhost]",
        "s's nodes(): {v}"
    );
    let v = s.eval("lists:sort(epmdx_select:connections()).")?;
    ensure!(
        v == "[{k@localhost,inet_tcp},{m@localhost,inet_tcp},\
              {mt@localhost,inet_tls},{u@localhost,uds}]",
        "s's epmdx_select:connections(): {v}"
    );
    Ok(())
}
