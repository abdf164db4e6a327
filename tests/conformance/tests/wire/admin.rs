//! KILL and STOP, with and without relaxed mode (docs/protocol.md §8.5, §8.15).

use std::time::Duration;

use anyhow::Result;

use crate::harness::{differential, Ctx, Reg, FAST_TIMEOUT};
use crate::probe::{self, End};

const RELAXED: &[&str] = &["-packet_timeout", "1", "-relaxed_command_check"];

/// Waits for the daemon to exit and records the exit code.
fn expect_exit0(ctx: &mut Ctx) -> Result<()> {
    let code = ctx.daemon.wait_exit(Duration::from_secs(10));
    ctx.note("daemon exit code", format!("{code:?}"));
    expect_eq!(code, Some(0), "daemon exit after KILL OK");
    Ok(())
}

fn expect_running(ctx: &mut Ctx) -> Result<()> {
    let running = !ctx.daemon.has_exited() && ctx.names_quiet().is_ok();
    ctx.note("daemon still running", running);
    anyhow::ensure!(running, "daemon is gone");
    Ok(())
}

/// `no_live_killing`: KILL with a live node gets `NO`; STOP without relaxed
/// mode is closed silently; once the node is gone KILL gets `OK` and the
/// daemon exits 0.
#[test]
fn kill_with_live_node_refused() {
    differential("kill_with_live_node_refused", FAST_TIMEOUT, &[], |ctx| {
        let foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let r = ctx.request("KILL", b"k")?;
        expect_bytes!(r.bytes, *b"NO", "KILL with a live node");
        expect_eq!(r.end, End::Closed, "KILL closes");
        expect_running(ctx)?;
        let r = ctx.request("STOP foo (not relaxed)", b"sfoo")?;
        expect_eq!(
            (r.end, r.bytes.len()),
            (End::Closed, 0),
            "STOP without relaxed"
        );
        ctx.names("names: foo still there")?;
        ctx.wait_listed(b"foo", true)?;
        // A refused registration's socket stays open but is no live node.
        let _dup = ctx.alive("duplicate foo (refused, kept open)", &Reg::v6("foo"))?;
        drop(foo);
        ctx.wait_listed(b"foo", false)?;
        let r = ctx.request("KILL after foo left", b"k")?;
        expect_bytes!(r.bytes, *b"OK", "KILL with only old entries");
        expect_eq!(r.end, End::Closed, "KILL closes");
        expect_exit0(ctx)
    })
}

#[test]
fn kill_without_nodes_exits_0() {
    differential("kill_without_nodes_exits_0", FAST_TIMEOUT, &[], |ctx| {
        let r = ctx.request("KILL", b"k")?;
        expect_bytes!(r.bytes, *b"OK", "KILL");
        expect_eq!(r.end, End::Closed, "KILL closes");
        expect_exit0(ctx)?;
        let gone = !crate::procs::accepts(ctx.daemon.addr());
        ctx.note("port closed after exit", gone);
        anyhow::ensure!(gone, "port still accepts connections");
        Ok(())
    })
}

#[test]
fn kill_ignores_trailing_bytes() {
    differential("kill_ignores_trailing_bytes", FAST_TIMEOUT, &[], |ctx| {
        let r = ctx.request("KILL xyz", b"kxyz")?;
        expect_bytes!(r.bytes, *b"OK", "KILL");
        expect_exit0(ctx)
    })
}

#[test]
fn kill_relaxed_with_live_node() {
    differential("kill_relaxed_with_live_node", RELAXED, &[], |ctx| {
        let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let r = ctx.request("KILL", b"k")?;
        expect_bytes!(r.bytes, *b"OK", "relaxed KILL");
        expect_exit0(ctx)
    })
}

#[test]
fn stop_without_relaxed_closes() {
    differential("stop_without_relaxed_closes", FAST_TIMEOUT, &[], |ctx| {
        let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        for (label, body) in [
            ("STOP foo", &b"sfoo"[..]),
            ("STOP nope", &b"snope"[..]),
            ("STOP alone", &b"s"[..]),
        ] {
            let r = ctx.request(label, body)?;
            expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "{label}");
        }
        ctx.wait_listed(b"foo", true)?;
        ctx.names("names")?;
        Ok(())
    })
}

fn stop_story(ctx: &mut Ctx) -> Result<()> {
    let mut foo_node = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
    let mut bar = ctx.alive_ok("register bar", &Reg::v6("bar"))?;
    let _baz = ctx.alive_ok("register baz", &Reg::v6("baz"))?;
    let r = ctx.request("STOP foo", b"sfoo")?;
    expect_bytes!(r.bytes, *b"STOPPED", "STOP foo");
    expect_eq!(r.end, End::Closed, "STOP closes");
    // epmd closes foo's registration socket, which unregisters it.
    let (closed, extra) = probe::closed_now(&mut foo_node.stream, Duration::from_secs(5));
    ctx.note(
        "foo socket after STOP",
        if closed { "closed" } else { "open" },
    );
    anyhow::ensure!(closed && extra.is_empty(), "foo socket not closed");
    ctx.wait_listed(b"foo", false)?;
    let r = ctx.request("STOP foo again", b"sfoo")?;
    expect_bytes!(r.bytes, *b"NOEXISTSTOPPED", "STOP of an unknown name");
    let r = ctx.request("STOP nope", b"snope")?;
    expect_bytes!(r.bytes, *b"NOEXISTSTOPPED", "STOP of an unknown name");
    expect_eq!(r.end, End::Closed, "STOP closes");
    let r = ctx.request("STOP bar\\0", b"sbar\0")?;
    expect_bytes!(r.bytes, *b"STOPPED", "trailing NUL is harmless");
    let (closed, _) = probe::closed_now(&mut bar.stream, Duration::from_secs(5));
    ctx.note(
        "bar socket after STOP",
        if closed { "closed" } else { "open" },
    );
    ctx.wait_listed(b"bar", false)?;
    let r = ctx.request("STOP baz\\0junk", b"sbaz\0junk")?;
    expect_bytes!(r.bytes, *b"STOPPED", "name compared up to the first NUL");
    ctx.wait_listed(b"baz", false)?;
    let r = ctx.request("STOP alone (Length 1)", b"s")?;
    expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "Length 1");
    let r = ctx.request("STOP \\0 (no empty name registered)", b"s\0")?;
    expect_bytes!(r.bytes, *b"NOEXISTSTOPPED", "empty name");
    let r = ctx.request("STOP Foo (case)", b"sFoo")?;
    expect_bytes!(r.bytes, *b"NOEXISTSTOPPED", "case-sensitive");
    let names = ctx.names("names")?;
    anyhow::ensure!(names.is_empty(), "names left: {names:?}");
    ctx.dump("dump")?;
    Ok(())
}

/// `unregister_others_name_1/2` with `-relaxed_command_check`.
#[test]
fn stop_relaxed() {
    differential("stop_relaxed", RELAXED, &[], stop_story)
}

/// `ERL_EPMD_RELAXED_COMMAND_CHECK` present (even empty) means relaxed.
#[test]
fn relaxed_env_variable() {
    differential(
        "relaxed_env_variable",
        FAST_TIMEOUT,
        &[("ERL_EPMD_RELAXED_COMMAND_CHECK", "")],
        |ctx| {
            stop_story(ctx)?;
            let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
            let r = ctx.request("KILL with a live node", b"k")?;
            expect_bytes!(r.bytes, *b"OK", "relaxed KILL");
            expect_exit0(ctx)
        },
    )
}
