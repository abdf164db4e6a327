//! Third-party EPMD clients against the daemon under test:
//!
//! * jinterface (`OtpErlang.jar`): `tests/interop/java/EpmdProbe.java`, built
//!   with `javac` once per run, uses `OtpEpmd.publishPort`,
//!   `OtpEpmd.lookupPort`, `OtpEpmd.lookupNames` and `unPublishPort`, with
//!   the daemon's port given by `OtpEpmd.useEpmdPort` (and `ERL_EPMD_PORT`);
//! * `erl_call` (erl_interface's C client), which finds the node's port
//!   through the daemon named by `ERL_EPMD_PORT`.
//!
//! A missing `java`, `javac`, jinterface jar or `erl_call` fails the test
//! with the Debian package to install; nothing is skipped.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;

const JAVA_TIMEOUT: Duration = Duration::from_secs(60);

/// The stdout lines of a finished `EpmdProbe` run that must succeed.
fn probe_lines(p: u16, home: &TempDir, args: &[&str]) -> Result<Vec<String>> {
    let out = run(&mut java_probe(p, home.path(), args)?, JAVA_TIMEOUT)?;
    ensure!(
        out.status.success(),
        "EpmdProbe {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stdout).lines().map(str::to_owned).collect())
}

/// jinterface publishes a node with the daemon (NAMES lists it, an `erl`
/// node's `erl_epmd:port_please/2` finds it with version 6), looks itself
/// and an `erl` node up, lists names exactly as NAMES does, answers 0 for an
/// unknown node, and its `unPublishPort` (STOP request plus closing the
/// registration socket) unregisters it.
#[test]
fn jinterface_otp_epmd() {
    // Compile before the subjects run in parallel, so the time is counted once.
    java_probe_classes().expect("compile tests/interop/java/EpmdProbe.java");
    for_each_subject(|subject| {
        let d = Daemon::start(subject, &[])?;
        let p = d.port;
        let cookie = cookie_for(p);
        let home = TempDir::new(&format!("java-{p}"))?;

        let mut e = ErlNode::start(&format!("e{p}@localhost"), &cookie, p, &[])?;
        let eport = wait_registered(p, e.alive())?;
        ensure!(eport == e.dist_port()?, "NAMES port of {}", e.alive());

        let jname = format!("j{p}");
        let mut publisher = Proc::spawn(&mut java_probe(
            p,
            home.path(),
            &["publish", &format!("{jname}@localhost"), &cookie],
        )?)?;
        let line = publisher.line(JAVA_TIMEOUT)?;
        let jport: u16 = line
            .strip_prefix(&format!("published {jname} "))
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("publisher said {line:?}"))?;
        let line = publisher.line(JAVA_TIMEOUT)?;
        ensure!(
            line == format!("lookup {jport}"),
            "jinterface's lookup of itself: {line:?} (published port {jport})"
        );

        let listed = registered_port(p, &jname);
        ensure!(
            listed == Some(jport),
            "NAMES lists {jname} at {listed:?}, jinterface published {jport}"
        );
        let got = e.eval(&format!(
            "erl_epmd:port_please(\"{jname}\", \"localhost\")."
        ))?;
        ensure!(
            got == format!("{{port,{jport},6}}"),
            "erl_epmd:port_please({jname}): {got}"
        );

        let lines = probe_lines(p, &home, &["lookup", e.node()])?;
        ensure!(
            lines == [format!("port {eport}")],
            "jinterface lookup of {}: {lines:?}",
            e.node()
        );
        let lines = probe_lines(p, &home, &["lookup", &format!("nobody{p}@localhost")])?;
        ensure!(
            lines == ["port 0"],
            "jinterface lookup of unknown: {lines:?}"
        );

        // lookupNames returns the NAMES text; compare as sets of lines.
        let lines = probe_lines(p, &home, &["names"])?;
        let mut from_java: Vec<String> = lines
            .iter()
            .skip_while(|l| *l != "names-begin")
            .skip(1)
            .take_while(|l| *l != "names-end")
            .cloned()
            .collect();
        from_java.sort();
        let mut expected = vec![
            format!("name {} at port {eport}", e.alive()),
            format!("name {jname} at port {jport}"),
        ];
        expected.sort();
        ensure!(
            from_java == expected,
            "jinterface lookupNames: {lines:?}, expected {expected:?}"
        );

        publisher.send_line("done")?;
        let line = publisher.line(JAVA_TIMEOUT)?;
        ensure!(line == "unpublished", "publisher said {line:?}");
        let code = publisher.wait(JAVA_TIMEOUT);
        ensure!(code == Some(0), "publisher exit code {code:?}");
        wait_unregistered(p, &jname)?;
        ensure!(
            registered_port(p, e.alive()) == Some(eport),
            "{} vanished with {jname}",
            e.alive()
        );
        Ok(())
    });
}

/// `erl_call` finds a running node through the daemon on `ERL_EPMD_PORT`
/// and runs `erlang:node/0` and `erl_epmd:names/0` there; for a name that
/// is not registered it fails (exit 1) instead of finding anything.
#[test]
fn erl_call_through_daemon() {
    let erl_call = test_support::erl::erl_call_bin().expect("erl_call");
    for_each_subject(|subject| {
        let d = Daemon::start(subject, &[])?;
        let p = d.port;
        let cookie = cookie_for(p);
        let home = TempDir::new(&format!("erl_call-{p}"))?;
        let mut f = ErlNode::start(&format!("f{p}@localhost"), &cookie, p, &[])?;
        let fport = wait_registered(p, f.alive())?;
        ensure!(fport == f.dist_port()?, "NAMES port of {}", f.alive());

        let call = |node: &str, module: &str| {
            let mut cmd = Command::new(&erl_call);
            cmd.args(["-sname", node, "-c", &cookie, "-a", module])
                .env("ERL_EPMD_PORT", p.to_string())
                .env("HOME", home.path())
                .current_dir(home.path());
            run(&mut cmd, CMD_TIMEOUT)
        };

        let out = call(f.node(), "erlang node []")?;
        ensure!(
            out.status.code() == Some(0) && text(&out.stdout) == f.node(),
            "erl_call erlang:node(): exit {:?}, stdout {:?}, stderr {:?}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );

        let out = call(f.node(), "erl_epmd names []")?;
        // ei_print_term style: a space after each comma.
        let expected = format!("{{ok, [{{\"{}\", {fport}}}]}}", f.alive());
        ensure!(
            out.status.code() == Some(0) && text(&out.stdout) == expected,
            "erl_call erl_epmd:names(): exit {:?}, stdout {:?} (expected {expected:?}), \
             stderr {:?}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );

        let out = call(&format!("nobody{p}@localhost"), "erlang node []")?;
        ensure!(
            out.status.code() == Some(1) && out.stdout.is_empty(),
            "erl_call to an unregistered node: exit {:?}, stdout {:?}, stderr {:?}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        Ok(())
    });
}
