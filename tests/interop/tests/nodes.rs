//! Real `erl` nodes against the daemon under test.
//!
//! Every node runs with `ERL_EPMD_PORT` = the daemon's private port and
//! `-start_epmd false` (see `test_support::erl`), so nothing here touches
//! port 4369.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context};
use common::*;

/// Two nodes register through `ERL_EPMD_PORT`, NAMES lists them at the ports
/// they really listen on, and they find each other through the daemon:
/// `net_adm:ping/1` answers `pong` (and `pang` for a name nobody registered).
#[test]
fn erl_nodes_register_and_ping() {
    for_each_subject(|subject| {
        let d = Daemon::start(subject, &[])?;
        let p = d.port;
        let cookie = cookie_for(p);
        let mut nodes = start_nodes(
            &[format!("pa{p}@localhost"), format!("pb{p}@localhost")],
            &cookie,
            p,
        )?;
        let mut b = nodes.pop().expect("b");
        let mut a = nodes.pop().expect("a");

        for n in [&mut a, &mut b] {
            let listed = wait_registered(p, n.alive())?;
            let real = n.dist_port()?;
            ensure!(
                listed == real,
                "NAMES lists {} at port {listed}, but it listens on {real}",
                n.alive()
            );
        }

        let pong = a.eval(&format!("net_adm:ping('{}').", b.node()))?;
        ensure!(
            pong == "pong",
            "ping {} from {}: {pong}",
            b.node(),
            a.node()
        );
        // The acceptor marks the connection up just after the connector
        // does, so poll.
        let want = format!("[{}]", a.node());
        let mut seen = String::new();
        let up = wait_until(Duration::from_secs(10), || {
            seen = b.eval("nodes().").unwrap_or_else(|e| format!("{e:#}"));
            seen == want
        });
        ensure!(up, "nodes() on {}: {seen}, expected {want}", b.node());
        let pang = a.eval(&format!("net_adm:ping('nobody{p}@localhost')."))?;
        ensure!(pang == "pang", "ping of an unregistered name: {pang}");
        Ok(())
    });
}

/// Stopping a node unregisters it, whichever way it ends: `init:stop()`
/// (orderly), `erlang:halt(3)` (abrupt) and SIGKILL of its PID (no cleanup
/// at all; the daemon only sees the connection close). The other nodes stay
/// listed, a lookup of a gone node answers `noport`, and the freed name can
/// be registered again.
#[test]
fn stopped_nodes_unregister() {
    for_each_subject(|subject| {
        let d = Daemon::start(subject, &[])?;
        let p = d.port;
        let cookie = cookie_for(p);
        let names: Vec<String> = ["hs", "hh", "hk", "hx"]
            .iter()
            .map(|n| format!("{n}{p}@localhost"))
            .collect();
        let mut nodes = start_nodes(&names, &cookie, p)?;
        let mut x = nodes.pop().expect("x");
        let mut k = nodes.pop().expect("k");
        let mut h = nodes.pop().expect("h");
        let mut s = nodes.pop().expect("s");
        for n in [&s, &h, &k, &x] {
            wait_registered(p, n.alive())?;
        }

        // init:stop(): an orderly shutdown, exit status 0.
        s.eval_nowait("init:stop().")?;
        let st = s.wait_exit(Duration::from_secs(30));
        ensure!(
            st.and_then(|st| st.code()) == Some(0),
            "init:stop() exit: {st:?}; output:\n{}",
            s.output()
        );
        wait_unregistered(p, s.alive())?;
        for n in [&h, &k, &x] {
            ensure!(
                registered_port(p, n.alive()).is_some(),
                "{} vanished with {}",
                n.alive(),
                s.alive()
            );
        }

        // erlang:halt(3): the emulator exits at once.
        h.eval_nowait("erlang:halt(3).")?;
        let st = h.wait_exit(Duration::from_secs(30));
        ensure!(
            st.and_then(|st| st.code()) == Some(3),
            "erlang:halt(3) exit: {st:?}"
        );
        wait_unregistered(p, h.alive())?;

        // SIGKILL by PID.
        k.kill();
        wait_unregistered(p, k.alive())?;
        ensure!(
            registered_port(p, x.alive()).is_some(),
            "{} vanished",
            x.alive()
        );

        // The survivor's own lookups agree.
        for gone in [s.alive(), h.alive(), k.alive()] {
            let r = x.eval(&format!("erl_epmd:port_please(\"{gone}\", \"localhost\")."))?;
            ensure!(r == "noport", "port_please({gone}) after stop: {r}");
        }

        // The name is free again.
        let s_name = names[0].clone();
        drop(s);
        let mut s2 = ErlNode::start(&s_name, &cookie, p, &[])?;
        let listed = wait_registered(p, s2.alive())?;
        ensure!(listed == s2.dist_port()?, "re-registered port mismatch");
        let pong = x.eval(&format!("net_adm:ping('{}').", s2.node()))?;
        ensure!(pong == "pong", "ping re-registered node: {pong}");
        Ok(())
    });
}

/// Registrations made by hand (a raw ALIVE2_REQ from Rust, built with
/// `epmd_proto`) are visible to OTP's own client module inside a node:
/// `erl_epmd:names/0` and `net_adm:names/0` list them, and
/// `erl_epmd:port_please/2` returns their port and highest version, for both
/// the 32-bit-creation form (versions 6..5) and the legacy one (5..5). After
/// the Rust side closes its connection, the node gets `noport`.
#[test]
fn rust_alive2_visible_to_erl_epmd() {
    for_each_subject(|subject| {
        let d = Daemon::start(subject, &[])?;
        let p = d.port;
        let cookie = cookie_for(p);
        let rname = format!("rx{p}");
        let lname = format!("rl{p}");
        let (rport, lport) = (40_001, 40_002);
        let r = register_raw(p, &rname, rport, 6, 5).context("ALIVE2 6..5")?;
        let l = register_raw(p, &lname, lport, 5, 5).context("ALIVE2 5..5")?;
        ensure!(r.creation != 0 && l.creation != 0, "zero creation");

        let mut g = ErlNode::start(&format!("g{p}@localhost"), &cookie, p, &[])?;
        let gport = wait_registered(p, g.alive())?;
        let gname = g.alive().to_owned();

        // Sorted by name: g < rl < rx.
        let expected = format!(
            "{{ok,[{{\"{gname}\",{gport}}},{{\"{lname}\",{lport}}},{{\"{rname}\",{rport}}}]}}"
        );
        for call in [
            "erl_epmd:names()",
            "net_adm:names()",
            "erl_epmd:names(\"localhost\")",
        ] {
            let got = g.eval(&format!("{{ok, Ns}} = {call}, {{ok, lists:sort(Ns)}}."))?;
            ensure!(got == expected, "{call}: got {got}, expected {expected}");
        }

        let got = g.eval(&format!(
            "erl_epmd:port_please(\"{rname}\", \"localhost\")."
        ))?;
        ensure!(
            got == format!("{{port,{rport},6}}"),
            "port_please({rname}): {got}"
        );
        let got = g.eval(&format!(
            "erl_epmd:port_please(\"{lname}\", \"localhost\")."
        ))?;
        ensure!(
            got == format!("{{port,{lport},5}}"),
            "port_please({lname}): {got}"
        );
        let got = g.eval(&format!(
            "erl_epmd:port_please(\"{gname}\", \"localhost\")."
        ))?;
        ensure!(
            got == format!("{{port,{gport},6}}"),
            "port_please({gname}): {got}"
        );

        // Closing the registration connection unregisters.
        drop(r);
        wait_unregistered(p, &rname)?;
        let got = g.eval(&format!(
            "erl_epmd:port_please(\"{rname}\", \"localhost\")."
        ))?;
        ensure!(got == "noport", "port_please({rname}) after close: {got}");
        let got = g.eval("{ok, Ns} = erl_epmd:names(), lists:sort(Ns).")?;
        ensure!(
            got == format!("[{{\"{gname}\",{gport}}},{{\"{lname}\",{lport}}}]"),
            "names after close: {got}"
        );
        drop(l);
        Ok(())
    });
}
