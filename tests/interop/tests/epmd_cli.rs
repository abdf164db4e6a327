//! OTP's own epmd client (the C `epmd` binary in client mode: `-names`,
//! `-started`, `-dump`, `-stop NAME`, `-kill`) against the daemon under test.
//! The client always gets `-port P` first (it must precede the interactive
//! option), and its environment has no `ERL_EPMD_*` variables, so it can
//! only talk to the private daemon.
//!
//! Stdout and exit codes are compared exactly; only the `fd = N` numbers in
//! `-dump` (the daemon's own descriptor numbers) are masked.

mod common;

use std::io::Read;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::*;

/// Runs OTP's `epmd -port P ARGS...` as a client.
fn epmd_client(port: u16, args: &[&str]) -> Result<Output> {
    let bin = test_support::otp_epmd_bin();
    ensure!(
        bin.is_absolute() || test_support::erl::require_on_path("epmd", "erlang-base").is_ok(),
        "OTP's epmd not found: install the Debian package erlang-base (or set OTP_EPMD_BIN)"
    );
    let mut cmd = Command::new(&bin);
    cmd.arg("-port")
        .arg(port.to_string())
        .args(args)
        .env_remove("ERL_EPMD_PORT")
        .env_remove("ERL_EPMD_ADDRESS")
        .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK");
    run(&mut cmd, CMD_TIMEOUT).with_context(|| format!("{} -port {port} {args:?}", bin.display()))
}

fn header(port: u16) -> String {
    format!("epmd: up and running on port {port} with data:\n")
}

/// Replaces every `fd = <digits>` with `fd = #`.
fn mask_fds(raw: &[u8]) -> String {
    let s = text(raw);
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("fd = ") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(if digits > 0 { "#" } else { "" });
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn expect_dump(what: &str, out: &Output, expected: &str) -> Result<()> {
    let got = mask_fds(&out.stdout);
    ensure!(
        out.status.code() == Some(0) && got == expected && out.stderr.is_empty(),
        "{what}: expected exit 0 and stdout {expected:?}; got exit {:?}, stdout {got:?}, \
         stderr {:?}",
        out.status.code(),
        text(&out.stderr)
    );
    Ok(())
}

/// Relaxed daemon: `-names` and `-dump` list a real node and a raw
/// registration exactly (most recent first; DUMP lines NUL-terminated),
/// `-started` is silent, `-stop` answers `NOEXIST`/`STOPPED` and really
/// drops the registration (the holder's socket is closed; the freed entry
/// shows as `old/unused` in the dump), a stopped `erl` node registers itself
/// again (OTP 24+ `erl_epmd` reconnects), and `-kill` with live nodes
/// answers `Killed` and ends the daemon with status 0.
#[test]
fn otp_epmd_client_relaxed() {
    for_each_subject(|subject| {
        let mut d = Daemon::start(subject, &["-relaxed_command_check"])?;
        let p = d.port;
        let h = header(p);

        let out = epmd_client(p, &["-names"])?;
        expect_output("-names (empty)", &out, 0, h.as_bytes(), b"")?;
        let out = epmd_client(p, &["-started"])?;
        expect_output("-started", &out, 0, b"", b"")?;
        let out = epmd_client(p, &["-dump"])?;
        expect_output("-dump (empty)", &out, 0, h.as_bytes(), b"")?;

        let mut c = ErlNode::start(&format!("c{p}@localhost"), &cookie_for(p), p, &[])?;
        let cname = c.alive().to_owned();
        wait_registered(p, &cname)?;
        let cport = c.dist_port()?;
        let rname = format!("r{p}");
        let rport = 40_123;
        let mut r = register_raw(p, &rname, rport, 6, 5)?;

        let out = epmd_client(p, &["-names"])?;
        let expected = format!("{h}name {rname} at port {rport}\nname {cname} at port {cport}\n");
        expect_output("-names", &out, 0, expected.as_bytes(), b"")?;

        let out = epmd_client(p, &["-dump"])?;
        let expected = format!(
            "{h}active name     <{rname}> at port {rport}, fd = #\n\0\
             active name     <{cname}> at port {cport}, fd = #\n\0"
        );
        expect_dump("-dump", &out, &expected)?;

        let out = epmd_client(p, &["-stop", &format!("nosuch{p}")])?;
        expect_output("-stop unknown", &out, 0, b"NOEXIST\n", b"")?;

        let out = epmd_client(p, &["-stop", &rname])?;
        expect_output("-stop raw registration", &out, 0, b"STOPPED\n", b"")?;
        ensure!(
            registered_port(p, &rname).is_none(),
            "{rname} still listed right after STOPPED: {:?}",
            names(p)
        );
        // The daemon closed the registration connection.
        r.conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = [0u8; 16];
        match r.conn.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => bail!("registration socket after -stop: {other:?} (expected EOF)"),
        }
        let out = epmd_client(p, &["-dump"])?;
        let expected = format!(
            "{h}active name     <{cname}> at port {cport}, fd = #\n\0\
             old/unused name <{rname}>, port = {rport}, fd = # \n\0"
        );
        expect_dump("-dump after -stop", &out, &expected)?;

        // A stopped erl node notices the closed connection and registers
        // again (erl_epmd retries every 2 s), at the same port.
        let out = epmd_client(p, &["-stop", &cname])?;
        expect_output("-stop erl node", &out, 0, b"STOPPED\n", b"")?;
        ensure!(
            registered_port(p, &cname).is_none(),
            "{cname} still listed right after STOPPED: {:?}",
            names(p)
        );
        let back = wait_registered(p, &cname).context("erl node did not re-register")?;
        ensure!(back == cport, "re-registered at {back}, listens on {cport}");

        let out = epmd_client(p, &["-kill"])?;
        expect_output("-kill (relaxed, live node)", &out, 0, b"Killed\n", b"")?;
        let code = d.wait_exit(Duration::from_secs(15));
        ensure!(code == Some(0), "daemon exit after -kill: {code:?}");
        drop(c);
        Ok(())
    });
}

/// Default (strict) daemon: `-kill` with a live node answers `Killing not
/// allowed - living nodes in database.` (exit 1) and the daemon keeps
/// running; `-stop` gets no answer (`epmd: local epmd responded with <>`,
/// exit 1) and changes nothing; once the node is gone `-kill` answers
/// `Killed`, the daemon exits 0, and then every client mode reports
/// `epmd: Cannot connect to local epmd` on stderr (silently for `-started`)
/// with exit 1.
#[test]
fn otp_epmd_client_strict() {
    for_each_subject(|subject| {
        let mut d = Daemon::start(subject, &[])?;
        let p = d.port;
        let h = header(p);

        let mut n = ErlNode::start(&format!("s{p}@localhost"), &cookie_for(p), p, &[])?;
        let nname = n.alive().to_owned();
        let nport = wait_registered(p, &nname)?;
        ensure!(
            nport == n.dist_port()?,
            "NAMES port differs from the node's"
        );

        let out = epmd_client(p, &["-kill"])?;
        expect_output(
            "-kill (live node)",
            &out,
            1,
            b"Killing not allowed - living nodes in database.\n",
            b"",
        )?;
        ensure!(!d.has_exited(), "daemon exited after a refused KILL");

        let out = epmd_client(p, &["-stop", &nname])?;
        expect_output(
            "-stop (strict)",
            &out,
            1,
            b"epmd: local epmd responded with <>\n",
            b"",
        )?;
        let out = epmd_client(p, &["-names"])?;
        let expected = format!("{h}name {nname} at port {nport}\n");
        expect_output(
            "-names after refused -stop",
            &out,
            0,
            expected.as_bytes(),
            b"",
        )?;

        n.kill();
        wait_unregistered(p, &nname)?;
        let out = epmd_client(p, &["-kill"])?;
        expect_output("-kill (no nodes)", &out, 0, b"Killed\n", b"")?;
        let code = d.wait_exit(Duration::from_secs(15));
        ensure!(code == Some(0), "daemon exit after -kill: {code:?}");

        let gone = b"epmd: Cannot connect to local epmd\n";
        for mode in ["-names", "-dump", "-kill"] {
            let out = epmd_client(p, &[mode])?;
            expect_output(&format!("{mode} (no daemon)"), &out, 1, b"", gone)?;
        }
        let out = epmd_client(p, &["-started"])?;
        expect_output("-started (no daemon)", &out, 1, b"", b"")?;
        Ok(())
    });
}
