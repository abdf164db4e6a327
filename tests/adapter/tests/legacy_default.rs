//! What legacy callers see (docs/protocol.md §4): an adapter node that
//! listens on TCP and TLS and marks TLS (`-kernel epmdx_legacy_default
//! inet_tls`) is reachable from a stock OTP node running `-proto_dist
//! inet_tls` through epmdx, and reaches it, in both directions; without
//! the mark, the stock TLS node is handed the TCP port.

mod common;

use anyhow::{ensure, Result};
use common::*;

#[test]
fn stock_tls_node_and_adapter_node_with_tls_legacy_default() -> Result<()> {
    let fx = Fixture::new()?;
    let mut tls_args = vec!["-proto_dist".to_owned(), "inet_tls".to_owned()];
    tls_args.extend(fx.tls_args());
    let mut stock = fx.erl("lds", &tls_args)?;
    let marked = fx.adapted(
        "ldm",
        &["epmdx_tcp", "epmdx_tls"],
        &["-kernel", "epmdx_legacy_default", "inet_tls"],
    )?;
    let line = fx.wait_nodes_line("ldm", |l| {
        l.contains("#inet_tcp") && l.contains("#inet_tls")
    })?;
    let tls_port: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("#inet_tls"))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // PORT_PLEASE2 / NAMES give the marked TLS port.
    ensure!(
        wait_until(WAIT, || test_support::names_text(fx.port()).is_some_and(
            |t| String::from_utf8_lossy(&t).contains(&format!("name ldm at port {tls_port}\n"))
        )),
        "NAMES does not show ldm on its TLS port {tls_port}: {line}"
    );
    // Stock -> adapter, over TLS.
    ping_until_pong(&mut stock, "ldm@localhost")?;
    let c = conn(&mut stock, "ldm@localhost")?;
    ensure!(c.transport == "inet_tls", "{c:?}");
    // Adapter -> stock: a second marked node dials the stock node (a legacy
    // registration, looked up through epmdx). Which transport it dials is
    // its selection policy's choice (docs/erlang.md); a TLS cluster's
    // policy puts TLS first on every locality.
    let mut dialer = fx.adapted(
        "ldd",
        &["epmdx_tcp", "epmdx_tls"],
        &[
            "-kernel",
            "epmdx_legacy_default",
            "inet_tls",
            "-kernel",
            "epmdx_policy",
            "[{same_host,[inet_tls,inet_tcp]}]",
        ],
    )?;
    ping_until_pong(&mut dialer, "lds@localhost")?;
    let c = conn(&mut dialer, "lds@localhost")?;
    ensure!(c.transport == "inet_tls", "{c:?}");
    drop(marked);

    // Unmarked, the same node hands stock callers its TCP port: a stock TLS
    // node cannot reach it.
    let _plain = fx.adapted("ldp", &["epmdx_tcp", "epmdx_tls"], &[])?;
    let line = fx.wait_nodes_line("ldp", |l| {
        l.contains("#inet_tcp") && l.contains("#inet_tls")
    })?;
    let tcp_port: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("#inet_tcp"))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    ensure!(
        test_support::names_text(fx.port()).is_some_and(
            |t| String::from_utf8_lossy(&t).contains(&format!("name ldp at port {tcp_port}\n"))
        ),
        "ldp not on its TCP port: {line}"
    );
    ensure!(ping(&mut stock, "ldp@localhost")? == "pang");
    Ok(())
}
