//! Mixed clusters: adapted nodes next to stock OTP nodes (registered with
//! ALIVE2), next to Rust `erldist` nodes, and on a stock OTP epmd.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;

/// A stock node (no adapter) reaches an adapted node through the legacy
/// default: PORT_PLEASE2 answers with the adapted node's first plain-TCP
/// transport, even though it registered TLS first.
#[test]
fn stock_node_reaches_adapted_node_over_legacy_default() -> Result<()> {
    let fx = Fixture::new()?;
    let mut s = fx.adapted("s", &["epmdx_tls", "epmdx_tcp", "epmdx_uds"], &[])?;
    let line = fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    let tcp = port_of(&line, "inet_tcp").context("inet_tcp port")?;
    let tls = port_of(&line, "inet_tls").context("inet_tls port")?;
    ensure!(
        line.starts_with(&format!(
            "name s at port {tls}#inet_tls {tcp}#inet_tcp 0#uds("
        )),
        "registration order: {line}"
    );

    let mut st = fx.erl("st", &[])?;
    let pp = st.eval("erl_epmd:port_please(\"s\", \"localhost\").")?;
    ensure!(pp == format!("{{port,{tcp},6}}"), "port_please: {pp}");
    ping_until_pong(&mut st, "s@localhost")?;
    let c = conn(&mut st, "s@localhost")?;
    ensure!(
        c.transport == "inet_tcp" && c.peer_port == tcp,
        "stock node's connection: {c:?}"
    );
    let c = conn(&mut s, "st@localhost")?;
    ensure!(c.transport == "inet_tcp", "s's side: {c:?}");
    Ok(())
}

/// Adapted nodes reach stock nodes registered the old way (ALIVE2, shown
/// as `#legacy`). EPMD cannot tell what a legacy registration speaks, so it
/// is offered as each IP transport the caller speaks, TCP first: the
/// built-in policy reads a stock TCP node as `inet_tcp`, and a rule can read
/// a stock TLS node as `inet_tls`. Read as TCP, the TLS node is simply
/// unreachable (`pang`, at once).
#[test]
fn adapted_node_reaches_stock_nodes() -> Result<()> {
    let fx = Fixture::new()?;
    let _old = fx.erl("old", &[])?;
    let oline = fx.wait_nodes_line("old", |_| true)?;
    let oport = port_of(&oline, "legacy").with_context(|| format!("legacy port in {oline}"))?;
    let mut tls_args = vec!["-proto_dist".to_owned(), "inet_tls".to_owned()];
    tls_args.extend(fx.tls_args());
    let mut oldtls = fx.erl("oldtls", &tls_args)?;
    let tline = fx.wait_nodes_line("oldtls", |_| true)?;
    let tport = port_of(&tline, "legacy").with_context(|| format!("legacy port in {tline}"))?;

    let mut a = fx.adapted("a", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    ping_until_pong(&mut a, "old@localhost")?;
    let c = conn(&mut a, "old@localhost")?;
    ensure!(
        c.transport == "inet_tcp" && c.peer_port == oport,
        "a → old: {c:?}"
    );
    let t0 = std::time::Instant::now();
    let v = ping(&mut a, "oldtls@localhost")?;
    ensure!(
        v == "pang" && t0.elapsed() < std::time::Duration::from_secs(15),
        "a reads the stock TLS node as TCP: {v} after {:?}",
        t0.elapsed()
    );

    let mut a2 = fx.adapted(
        "a2",
        &["epmdx_tcp", "epmdx_tls"],
        &[
            "-kernel",
            "epmdx_policy",
            "[{rules, [{node, \"oldtls@*\", [inet_tls]}]}]",
        ],
    )?;
    ping_until_pong(&mut a2, "oldtls@localhost")?;
    let c = conn(&mut a2, "oldtls@localhost")?;
    ensure!(
        c.transport == "inet_tls" && c.peer_port == tport,
        "a2 → oldtls: {c:?}"
    );
    let c = conn(&mut oldtls, "a2@localhost")?;
    ensure!(c.transport == "inet_tls", "oldtls's side: {c:?}");
    let n3 = a2.eval("lists:sort(element(2, epmdx_epmd:names3(\"localhost\"))).")?;
    ensure!(
        n3.contains(&format!("{{\"old\",[{{{oport},legacy}}]}}"))
            && n3.contains(&format!("{{\"oldtls\",[{{{tport},legacy}}]}}")),
        "names3: {n3}"
    );
    Ok(())
}

/// The transports `erldist connections NODE` reports, as (peer, transport).
fn rust_connections(fx: &Fixture, node: &str) -> Result<Vec<(String, String)>> {
    let o = fx.erldist(&["connections", node])?;
    ensure!(o.status.success(), "erldist connections {node}: {o:?}");
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (p, t) = l.split_once(' ')?;
            Some((p.trim_matches('\'').to_owned(), t.trim().to_owned()))
        })
        .collect())
}

fn wait_rust_conn(fx: &Fixture, node: &str, peer: &str) -> Result<String> {
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = rust_connections(fx, node).unwrap_or_default();
        last.iter().any(|(p, _)| p == peer)
    });
    ensure!(ok, "{node} never listed {peer}: {last:?}");
    Ok(last
        .into_iter()
        .find(|(p, _)| p == peer)
        .map(|(_, t)| t)
        .unwrap_or_default())
}

/// An adapted Erlang node and a Rust node under the same rule policy
/// (`*_tcp@*` → inet_tcp, `*_tls@*` → inet_tls, otherwise same host → uds)
/// pick the same transport whichever side dials, and talk over TCP, TLS and
/// the Unix socket. Each side's view is read from itself: the Erlang
/// node's distribution controller, and `erldist connections`.
#[test]
fn erlang_and_rust_pick_the_same_transport() -> Result<()> {
    let fx = Fixture::new()?;
    let uds = fx.uds_dir().display().to_string();
    let [cert, key, ca] = fx.tls_files().map(|p| p.display().to_string());
    let rules = "[{rules, [{node, \"*_tcp@*\", [inet_tcp]}, {node, \"*_tls@*\", [inet_tls]}]}]";
    for t in ["tcp", "tls", "uds"] {
        let want = match t {
            "tcp" => "inet_tcp",
            "tls" => "inet_tls",
            _ => "uds",
        };
        let r = fx.rust_node(
            &format!("r_{t}"),
            &[
                "--listen",
                "inet_tcp",
                "--listen",
                "inet_tls",
                "--listen",
                "uds",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-ca",
                &ca,
                "--uds-dir",
                &uds,
                "--policy",
                "rules",
                "--rule",
                "node=*_tcp@*:inet_tcp",
                "--rule",
                "node=*_tls@*:inet_tls",
            ],
        )?;
        let en = format!("e_{t}@localhost");
        let mut e = fx.adapted(
            &format!("e_{t}"),
            &["epmdx_tcp", "epmdx_tls", "epmdx_uds"],
            &["-kernel", "epmdx_policy", rules],
        )?;

        // Erlang dials.
        ping_until_pong(&mut e, &r.node)?;
        let c = conn(&mut e, &r.node)?;
        ensure!(c.transport == want, "{en} → {}: {c:?}", r.node);
        let rt = wait_rust_conn(&fx, &r.node, &en)?;
        ensure!(rt == want, "{} sees {en} on {rt}, expected {want}", r.node);
        let echo = e.eval(&format!(
            "{{echo, '{}'}} ! {{self(), {{hello, <<\"bin\">>, [1,2,3]}}}}, \
             receive M -> M after 10000 -> timeout end.",
            r.node
        ))?;
        ensure!(
            echo == "{hello,<<\"bin\">>,[1,2,3]}",
            "echo over {want}: {echo}"
        );

        // Rust dials: drop the connection, then ask the Rust node to connect.
        e.eval(&format!("erlang:disconnect_node('{}').", r.node))?;
        let gone = wait_until(WAIT, || {
            rust_connections(&fx, &r.node)
                .map(|l| !l.iter().any(|(p, _)| *p == en))
                .unwrap_or(false)
        });
        ensure!(gone, "{} still lists {en} after disconnect", r.node);
        let o = fx.erldist(&["connect", &r.node, &en])?;
        ensure!(
            o.status.success(),
            "erldist connect {} {en}: {o:?}\n{}",
            r.node,
            r.output()
        );
        let rt = wait_rust_conn(&fx, &r.node, &en)?;
        ensure!(
            rt == want,
            "{} dialled {en} over {rt}, expected {want}",
            r.node
        );
        let c = conn(&mut e, &r.node)?;
        ensure!(c.transport == want, "{en} accepted {} on {c:?}", r.node);
        let v = e.eval(&format!("net_adm:ping('{}').", r.node))?;
        ensure!(
            v == "pong",
            "ping over the Rust-dialled {want} connection: {v}"
        );
    }
    Ok(())
}

/// An adapted node on a stock OTP epmd: the extended registration is
/// refused the stock way (closed without a reply), so it falls back to
/// ALIVE2 for its first plain-TCP transport and says so; stock and adapted
/// nodes still reach it over TCP, and names3/1 lists everyone as legacy.
#[test]
fn adapted_node_on_a_stock_epmd() -> Result<()> {
    let fx = Fixture::with_subject(Subject::Otp)?;
    let mut s = fx.adapted("s", &["epmdx_tls", "epmdx_tcp", "epmdx_uds"], &[])?;
    wait_output(&s, "does not speak the epmdx extension")?;
    wait_output(&s, "registered s with ALIVE2 (legacy): inet_tcp on port")?;
    let reg = s.eval("element(1, epmdx_epmd:registered()).")?;
    ensure!(reg == "legacy", "registered: {reg}");
    let tcp: u16 = s
        .eval(
            "{legacy, _, Ts} = epmdx_epmd:registered(), \
             {inet_tcp, P, _} = lists:keyfind(inet_tcp, 1, Ts), P.",
        )?
        .parse()?;

    let mut st = fx.erl("st", &[])?;
    ping_until_pong(&mut st, "s@localhost")?;
    let c = conn(&mut st, "s@localhost")?;
    ensure!(
        c.transport == "inet_tcp" && c.peer_port == tcp,
        "st → s: {c:?}"
    );

    let mut m = fx.adapted("m", &["epmdx_tcp", "epmdx_tls"], &[])?;
    ping_until_pong(&mut m, "s@localhost")?;
    let c = conn(&mut m, "s@localhost")?;
    ensure!(
        c.transport == "inet_tcp" && c.peer_port == tcp,
        "m → s: {c:?}"
    );
    let n3 = m.eval("lists:sort(element(2, epmdx_epmd:names3(\"localhost\"))).")?;
    ensure!(
        n3.contains(&format!("{{\"s\",[{{{tcp},legacy}}]}}")) && n3.contains("{\"st\",[{"),
        "names3 on a stock epmd: {n3}"
    );
    Ok(())
}
