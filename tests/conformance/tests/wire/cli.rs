//! The command-line client modes and usage errors (docs/protocol.md §8.14). The client
//! of each subject talks to a daemon of the same subject; stdout, stderr
//! and the exit code are compared (the daemon's port and DUMP's fds
//! masked; of a usage text only the `usage: epmd` prefix).

use anyhow::Result;
use test_support::{free_port, Subject};

use crate::harness::{differential, mask_fds, render, Ctx, Reg, Transcript};
use crate::procs::{self, Out};

/// Runs the subject's binary with `-port P args` against the case's daemon.
fn client(ctx: &mut Ctx, label: &str, args: &[&str]) -> Result<Out> {
    let port = ctx.port().to_string();
    let mut full = vec!["-port", port.as_str()];
    full.extend_from_slice(args);
    let out = procs::run(&ctx.subject.bin(), &full, &[], ctx.port())?;
    let shown = show(&out, ctx.port());
    ctx.note(label, shown);
    Ok(out)
}

fn show(out: &Out, port: u16) -> String {
    let mask = |b: &[u8]| {
        let s = render(&mask_fds(b));
        s.replace(&format!("on port {port} with"), "on port {port} with")
    };
    let stderr = if out.stderr.starts_with(b"usage: epmd") {
        "<usage: epmd...>".to_owned()
    } else {
        mask(&out.stderr)
    };
    format!(
        "exit {} | stdout `{}` | stderr `{stderr}`",
        out.code_str(),
        mask(&out.stdout)
    )
}

fn expect_out(out: &Out, code: i32, stdout: &[u8], stderr: &[u8], what: &str) -> Result<()> {
    expect_eq!(out.code, Some(code), "{what}: exit code");
    expect_bytes!(out.stdout, stdout, "{what}: stdout");
    expect_bytes!(out.stderr, stderr, "{what}: stderr");
    Ok(())
}

fn header(port: u16) -> Vec<u8> {
    format!("epmd: up and running on port {port} with data:\n").into_bytes()
}

#[test]
fn cli_names_and_started() {
    differential(
        "cli_names_and_started",
        crate::harness::FAST_TIMEOUT,
        &[],
        |ctx| {
            let p = ctx.port();
            let out = client(ctx, "-names (empty)", &["-names"])?;
            expect_out(&out, 0, &header(p), b"", "-names")?;
            let _foo = ctx.alive_ok("register foobar", &Reg::v6("foobar"))?;
            let _bar = ctx.alive_ok("register bar", &Reg::v5("bar").port(1))?;
            let out = client(ctx, "-names", &["-names"])?;
            let want = [
                header(p),
                b"name bar at port 1\nname foobar at port 5000\n".to_vec(),
            ]
            .concat();
            expect_out(&out, 0, &want, b"", "-names")?;
            let out = client(ctx, "-started", &["-started"])?;
            expect_out(&out, 0, b"", b"", "-started")?;
            Ok(())
        },
    )
}

#[test]
fn cli_dump() {
    differential("cli_dump", crate::harness::FAST_TIMEOUT, &[], |ctx| {
        let foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let _bar = ctx.alive_ok("register bar", &Reg::v6("bar").port(5001))?;
        drop(foo);
        ctx.wait_listed(b"foo", false)?;
        let out = client(ctx, "-dump", &["-dump"])?;
        let want = [
            header(ctx.port()),
            b"active name     <bar> at port 5001, fd = {fd}\n\0old/unused name <foo>, port = 5000, fd = {fd} \n\0".to_vec(),
        ]
        .concat();
        expect_eq!(out.code, Some(0), "exit code");
        expect_bytes!(mask_fds(&out.stdout), want, "-dump stdout, NULs included");
        Ok(())
    })
}

#[test]
fn cli_kill() {
    differential("cli_kill", crate::harness::FAST_TIMEOUT, &[], |ctx| {
        let foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let out = client(ctx, "-kill with a live node", &["-kill"])?;
        expect_out(
            &out,
            1,
            b"Killing not allowed - living nodes in database.\n",
            b"",
            "-kill NO",
        )?;
        drop(foo);
        ctx.wait_listed(b"foo", false)?;
        let out = client(ctx, "-kill", &["-kill"])?;
        expect_out(&out, 0, b"Killed\n", b"", "-kill OK")?;
        let code = ctx.daemon.wait_exit(std::time::Duration::from_secs(10));
        ctx.note("daemon exit code", format!("{code:?}"));
        expect_eq!(code, Some(0), "daemon exit");
        Ok(())
    })
}

#[test]
fn cli_stop_not_relaxed() {
    differential(
        "cli_stop_not_relaxed",
        crate::harness::FAST_TIMEOUT,
        &[],
        |ctx| {
            let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
            let out = client(ctx, "-stop foo", &["-stop", "foo"])?;
            expect_out(
                &out,
                1,
                b"epmd: local epmd responded with <>\n",
                b"",
                "-stop",
            )?;
            ctx.wait_listed(b"foo", true)?;
            Ok(())
        },
    )
}

#[test]
fn cli_stop_relaxed() {
    differential(
        "cli_stop_relaxed",
        &["-packet_timeout", "1", "-relaxed_command_check"],
        &[],
        |ctx| {
            let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
            let out = client(ctx, "-stop foo", &["-stop", "foo"])?;
            expect_out(&out, 0, b"STOPPED\n", b"", "-stop foo")?;
            ctx.wait_listed(b"foo", false)?;
            let out = client(ctx, "-stop nope", &["-stop", "nope"])?;
            expect_out(&out, 0, b"NOEXIST\n", b"", "-stop nope")?;
            let long = "x".repeat(1001);
            let out = client(ctx, "-stop <1001 bytes>", &["-stop", &long])?;
            expect_out(&out, 1, b"epmd: Name too long!", b"", "-stop long")?;
            let ok = "y".repeat(1000);
            let out = client(ctx, "-stop <1000 bytes>", &["-stop", &ok])?;
            expect_out(&out, 0, b"NOEXIST\n", b"", "-stop 1000 bytes")?;
            Ok(())
        },
    )
}

/// Every client mode against a port where nothing listens.
#[test]
fn cli_no_daemon() {
    crate::harness::differential_plain("cli_no_daemon", |subject: Subject, t: &mut Transcript| {
        let port = free_port();
        let ps = port.to_string();
        for args in [
            vec!["-names"],
            vec!["-started"],
            vec!["-dump"],
            vec!["-kill"],
            vec!["-stop", "foo"],
        ] {
            let mut full = vec!["-port", ps.as_str()];
            full.extend_from_slice(&args);
            let out = procs::run(&subject.bin(), &full, &[], port)?;
            t.push(args.join(" "), show(&out, port));
            let stderr: &[u8] = if args[0] == "-started" {
                b""
            } else {
                b"epmd: Cannot connect to local epmd\n"
            };
            expect_out(&out, 1, b"", stderr, &args.join(" "))?;
        }
        Ok(())
    })
}

#[test]
fn cli_usage_errors() {
    crate::harness::differential_plain(
        "cli_usage_errors",
        |subject: Subject, t: &mut Transcript| {
            // Every invocation names a private port (and ERL_EPMD_PORT is set to
            // it), so a binary that misparses cannot reach 4369.
            let port = free_port();
            let ps = port.to_string();
            let cases: Vec<Vec<&str>> = vec![
                vec!["-names", "-port", &ps],
                vec!["-port", &ps, "-names", "extra"],
                vec!["-port", &ps, "-kill", "-names"],
                vec!["-port", &ps, "-bogus"],
                vec!["-port", &ps, "-names", "-bogus"],
                vec!["-port", "0", "-names"],
                vec!["-port", "abc", "-names"],
                vec!["-port", &ps, "-stop"],
                vec!["-port", &ps, "-stop", "a", "b"],
                vec!["-port", &ps, "-packet_timeout", "0"],
                vec!["-port", &ps, "-packet_timeout", "x"],
                vec!["-port", &ps, "-delay_write"],
                vec!["-port"],
            ];
            for args in cases {
                let out = procs::run(&subject.bin(), &args, &[], port)?;
                let label = args.join(" ").replace(&ps, "P");
                t.push(&label, show(&out, port));
                expect_eq!(out.code, Some(1), "{label}: exit code");
                anyhow::ensure!(
                    out.stderr.starts_with(b"usage: epmd"),
                    "{label}: stderr is not the usage text: {}",
                    render(&out.stderr)
                );
                expect_bytes!(out.stdout, *b"", "{label}: stdout");
            }
            Ok(())
        },
    )
}
