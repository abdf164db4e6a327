//! Failure paths: broken selectors fall back to the built-in policy with a
//! warning, refusals are an immediate `pang`, and a node whose epmdx is
//! unreachable fails to start with a message naming epmdx.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use common::*;

fn with_selector(fx: &Fixture, name: &str, fun: &str) -> Result<ErlNode> {
    let sel = format!("{{test_selectors, {fun}}}");
    let pa = test_ebin().display().to_string();
    fx.adapted(
        name,
        &["epmdx_tcp", "epmdx_tls", "epmdx_uds"],
        &["-pa", &pa, "-kernel", "epmdx_selector", &sel],
    )
}

/// A selector that crashes, returns garbage, or returns an offer the peer
/// did not make: each is reported with a warning naming the selector, and
/// the built-in policy decides instead (same host → the Unix socket). A
/// selector that works is obeyed (it picks TLS).
#[test]
fn broken_selectors_fall_back_to_the_policy_with_a_warning() -> Result<()> {
    let fx = Fixture::new()?;
    let _s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    for fun in ["crash", "garbage", "not_offered"] {
        let mut n = with_selector(&fx, &format!("c_{fun}"), fun)?;
        ping_until_pong(&mut n, "s@localhost")?;
        let c = conn(&mut n, "s@localhost")?;
        ensure!(c.transport == "uds", "{fun}: {c:?}");
        wait_output(&n, &format!("selector test_selectors:{fun}"))?;
        wait_output(&n, "falling back to the built-in policy")?;
        if fun == "crash" {
            wait_output(&n, "selector_boom")?;
        }
    }
    let mut n = with_selector(&fx, "c_tls", "pick_tls")?;
    ping_until_pong(&mut n, "s@localhost")?;
    let c = conn(&mut n, "s@localhost")?;
    ensure!(c.transport == "inet_tls", "pick_tls: {c:?}");
    ensure!(
        !n.output().contains("falling back"),
        "a working selector was overridden:\n{}",
        n.output()
    );
    Ok(())
}

fn expect_quick_pang(n: &mut ErlNode, peer: &str) -> Result<()> {
    let t0 = Instant::now();
    let v = ping(n, peer)?;
    let took = t0.elapsed();
    ensure!(v == "pang", "{}: ping {peer}: {v}", n.node());
    ensure!(
        took < Duration::from_secs(5),
        "{}: the refusal took {took:?}",
        n.node()
    );
    let v = n.eval("nodes().")?;
    ensure!(v == "[]", "{}: connected anyway: {v}", n.node());
    Ok(())
}

/// A refusal, by the selector (`false`), by an explicit rule with no
/// transports, or because the policy allows nothing the peer offers
/// (same host → TLS only, against a TCP-only peer: refused, never
/// downgraded), makes the connection fail at once: `pang`, not a hang, with
/// the reason logged.
#[test]
fn refusals_are_an_immediate_pang() -> Result<()> {
    let fx = Fixture::new()?;
    let _s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    let _k = fx.adapted("k", &["epmdx_tcp"], &[])?;
    fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    fx.wait_nodes_line("k", |_| true)?;

    let mut n = with_selector(&fx, "c_refuse", "refuse")?;
    expect_quick_pang(&mut n, "s@localhost")?;
    wait_output(&n, "not connecting to s@localhost")?;

    let mut r = fx.adapted(
        "c_rule",
        &["epmdx_tcp", "epmdx_tls", "epmdx_uds"],
        &[
            "-kernel",
            "epmdx_policy",
            "[{rules, [{node, \"s@*\", []}]}, {same_host, [inet_tls]}]",
        ],
    )?;
    expect_quick_pang(&mut r, "s@localhost")?;
    wait_output(&r, "rule node = \"s@*\": policy allows [], peer offers")?;
    expect_quick_pang(&mut r, "k@localhost")?;
    wait_output(
        &r,
        "same host: policy allows [inet_tls], peer offers [inet_tcp]",
    )?;
    // An unregistered name is a quick pang too.
    expect_quick_pang(&mut r, "nobody@localhost")?;
    Ok(())
}

/// With nothing listening on ERL_EPMD_PORT, the node does not start: it
/// exits, and says which daemon it could not reach.
#[test]
fn unreachable_epmdx_is_a_clear_error_at_start() -> Result<()> {
    let fx = Fixture::new()?;
    let args = fx.adapter_args(&["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let port = free_port();
    let t0 = Instant::now();
    let err = match ErlNode::start("x@localhost", COOKIE, port, &refs) {
        Ok(n) => anyhow::bail!("started without epmdx:\n{}", n.output()),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        err.contains(&format!(
            "epmdx_epmd: cannot register x (inet_tcp): no epmdx daemon answers on \
             127.0.0.1 or ::1 port {port} (econnrefused)"
        )),
        "unclear error: {err}"
    );
    ensure!(
        err.contains("{epmdx_unreachable,") && err.contains("exit status Some("),
        "net_kernel's report, or the exit, is missing: {err}"
    );
    ensure!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    Ok(())
}

/// An epmdx on `port`, killed by PID on drop.
struct OwnDaemon(std::process::Child);

impl OwnDaemon {
    fn start(port: u16) -> Result<Self> {
        let child = std::process::Command::new(epmdx_bin())
            .args(["-port", &port.to_string()])
            .env_remove("ERL_EPMD_PORT")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let d = Self(child);
        ensure!(
            wait_until(WAIT, || test_support::names_answers(port)),
            "epmdx did not come up on {port}"
        );
        Ok(d)
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nodes_on(port: u16) -> String {
    std::process::Command::new(epmdx_bin())
        .args(["nodes", "--port", &port.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// When epmdx goes away and comes back on the same port, the node
/// registers all its transports again, in one ALIVE3, and says so.
#[test]
fn reregisters_every_transport_after_an_epmdx_restart() -> Result<()> {
    let fx = Fixture::new()?;
    let port = free_port();
    let d = OwnDaemon::start(port)?;
    let args = fx.adapter_args(&["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = ErlNode::start("s@localhost", COOKIE, port, &refs)?;
    let mut before = String::new();
    ensure!(
        wait_until(WAIT, || {
            before = nodes_on(port);
            before.contains("#uds")
        }),
        "s never registered: {before}"
    );
    drop(d);
    wait_output(&s, "lost the connection to epmdx")?;
    let _d2 = OwnDaemon::start(port)?;
    let mut after = String::new();
    let back = wait_until(WAIT, || {
        after = nodes_on(port);
        after == before
    });
    ensure!(back, "after the restart: {after:?}, before: {before:?}");
    wait_output(&s, "registered s with epmdx again")?;
    Ok(())
}
