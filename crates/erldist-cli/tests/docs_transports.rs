//! docs/transports.md's command blocks, run as written (`test_support::docs`):
//! each block is read by its `tested:` name and its commands run through
//! `sh` with this build's `epmdx` and `erldist` on `PATH`, a private
//! `ERL_EPMD_PORT` served by `epmdx -daemon`, and `ERLDIST_UDS_DIR` in the
//! test's own directory. Expected output (the `# ...` lines below a command,
//! or its trailing comment) is compared with digits standing for any digits,
//! after putting this run's socket directory and host name in place of the
//! document's (`/run/user/1000/erldist`, `vm`).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use test_support::docs::{block, commands, matches_output, Command, Shell};
use test_support::net::short_hostname;
use test_support::wait_until;

const DOC: &str = "docs/transports.md";
const WAIT: Duration = Duration::from_secs(20);

fn cmds(name: &str) -> Result<Vec<Command>> {
    let c = commands(&block(DOC, name)?)?;
    ensure!(!c.is_empty(), "{DOC} block {name} is empty");
    Ok(c)
}

/// A shell with its own daemon (`epmdx -daemon` on the private
/// `ERL_EPMD_PORT`) and socket directory.
fn shell(tag: &str) -> Result<Shell> {
    let mut sh = Shell::new(tag)?;
    let uds = sh.dir().join("uds");
    sh.set_env("ERLDIST_UDS_DIR", &uds.display().to_string());
    sh.ok("epmdx -daemon")?;
    Ok(sh)
}

/// [`shell`] plus the certificates of the "gen-certs" block.
fn shell_with_certs(tag: &str) -> Result<Shell> {
    let sh = shell(tag)?;
    for c in cmds("gen-certs")? {
        sh.ok(&c.line())?;
    }
    Ok(sh)
}

/// Starts `line` in the background and waits for its "listening on" line.
fn serve(sh: &mut Shell, line: &str) -> Result<String> {
    let log = sh.spawn(line)?;
    sh.wait_log_line(&log, WAIT, |l| l.contains("listening on"))
}

/// Starts an erldist node `name@localhost` on plain TCP only (the
/// documents' `k`).
fn serve_tcp_node(sh: &mut Shell, name: &str) -> Result<()> {
    serve(
        sh,
        &format!("erldist serve --name {name}@localhost --cookie secret --listen inet_tcp"),
    )?;
    Ok(())
}

/// The document's expected text with this run's socket directory and host.
fn localize_expected(sh: &Shell, text: &str) -> String {
    let uds = sh.dir().join("uds");
    text.replace("/run/user/1000/erldist", &uds.display().to_string())
        .replace("@vm ", &format!("@{} ", short_hostname()))
}

/// Every expected line matches one output line, in order, and nothing else
/// is printed (a header line such as `epmd: up and running` aside).
fn same_lines(expected: &[String], actual: &str, skip_header: bool) -> bool {
    let got: Vec<&str> = actual
        .lines()
        .filter(|l| !(skip_header && l.starts_with("epmd: up and running")))
        .collect();
    got.len() == expected.len() && expected.iter().zip(&got).all(|(e, a)| matches_output(e, a))
}

/// `erldist connections` lines, sorted (the node lists its connections in
/// no particular order).
fn sorted(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = lines.into_iter().collect();
    v.sort();
    v
}

#[test]
fn gen_certs_blocks_make_a_ca_and_sign_with_it() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-certs")?;
    let dir = sh.dir().join("certs");
    for f in ["ca", "s", "k", "m"] {
        ensure!(dir.join(format!("{f}.pem")).is_file(), "no certs/{f}.pem");
        let key = dir.join(format!("{f}-key.pem"));
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{} has mode {mode:o}", key.display());
    }
    // Run again into the same directory: refused, nothing replaced.
    let ca = std::fs::read(dir.join("ca.pem"))?;
    let again = sh.run(&cmds("gen-certs")?[0].line())?;
    ensure!(!again.status.success(), "a second gen-certs succeeded");
    let err = String::from_utf8_lossy(&again.stderr);
    ensure!(err.contains("refusing to overwrite certs/ca.pem"), "{err}");
    ensure!(std::fs::read(dir.join("ca.pem"))? == ca, "the CA changed");

    let add = cmds("gen-certs with the CA")?;
    ensure!(add.len() == 1, "{add:?}");
    let out = sh.ok(&add[0].line())?;
    for f in add[0].output[0].split_whitespace() {
        ensure!(sh.dir().join(f).is_file(), "no {f}; gen-certs said {out}");
    }
    ensure!(
        std::fs::read(dir.join("ca.pem"))? == ca,
        "--ca replaced the CA"
    );
    // n2's certificate chains to the old CA: a TLS-only n2 answers a
    // client holding s's certificate.
    serve(
        &mut sh,
        "erldist serve --name n2@localhost --cookie secret --listen inet_tls \
         --tls-cert certs/n2.pem --tls-key certs/n2-key.pem --tls-ca certs/ca.pem",
    )?;
    let pong = sh.ok("erldist ping n2@localhost --cookie secret \
         --tls-cert certs/s.pem --tls-key certs/s-key.pem --tls-ca certs/ca.pem")?;
    ensure!(pong.trim() == "pong", "{pong}");
    Ok(())
}

#[test]
fn serve_on_three_transports_and_what_epmdx_holds() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-serve")?;
    let serve_cmd = cmds("serve three transports")?;
    ensure!(serve_cmd.len() == 1, "{serve_cmd:?}");
    let said = serve(&mut sh, &serve_cmd[0].line())?;
    let want = &serve_cmd[0].output[0];
    ensure!(
        matches_output(want, &said),
        "serve printed {said:?}, doc says {want:?}"
    );

    let view = cmds("what epmdx holds")?;
    ensure!(view.len() == 4, "{view:?}");
    for c in &view {
        ensure!(
            !c.output.is_empty(),
            "no expected output for {:?}",
            c.line()
        );
        let expected: Vec<String> = c.output.iter().map(|l| localize_expected(&sh, l)).collect();
        let out = sh.ok(&c.line())?;
        ensure!(
            same_lines(&expected, &out, true),
            "`{}` printed {out:?}, doc says {expected:?}",
            c.line()
        );
    }
    // The ports are the ones the node announced.
    let tcp = said
        .split("inet_tcp:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .context("no inet_tcp port")?;
    let names = sh.ok(&view[3].line())?;
    ensure!(
        names.contains(&format!("name s at port {tcp}\n")),
        "{names}"
    );
    Ok(())
}

#[test]
fn two_rust_nodes_over_tls() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-tls")?;
    let c = cmds("two Rust nodes over TLS")?;
    ensure!(
        c.len() == 4 && c[0].background && c[1].background,
        "the block changed: {c:?}"
    );
    serve(&mut sh, &c[0].line())?;
    serve(&mut sh, &c[1].line())?;
    let ok = sh.ok(&c[2].line())?;
    ensure!(ok.trim() == c[2].comment, "connect printed {ok:?}");
    let expected = sorted(c[3].output.iter().map(|l| localize_expected(&sh, l)));
    let out = sh.ok(&c[3].line())?;
    let got = sorted(out.lines().map(str::to_owned));
    ensure!(
        got.len() == expected.len() && expected.iter().zip(&got).all(|(e, a)| matches_output(e, a)),
        "connections printed {got:?}, doc says {expected:?}"
    );
    Ok(())
}

/// Writes the document's `ssl_dist.conf` into the shell's directory.
fn write_ssl_dist_conf(sh: &Shell) -> Result<()> {
    std::fs::write(sh.dir().join("ssl_dist.conf"), block(DOC, "ssl_dist.conf")?)?;
    Ok(())
}

#[test]
fn stock_tls_node_with_the_documented_options() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-erltls")?;
    write_ssl_dist_conf(&sh)?;
    let erl = cmds("stock TLS node")?;
    ensure!(erl.len() == 1, "{erl:?}");
    sh.spawn(&erl[0].line())?;
    let mut names = String::new();
    wait_until(WAIT, || {
        names = sh.ok("epmdx nodes").unwrap_or_default();
        names.contains("name e at port ")
    });
    ensure!(
        names.contains("#legacy"),
        "e not registered (legacy): {names}"
    );

    // Rust -> Erlang over TLS, as section 6 says.
    let ping = cmds("ping a stock TLS node")?;
    ensure!(ping.len() == 1, "{ping:?}");
    let out = sh.ok(&ping[0].line())?;
    ensure!(out.trim() == ping[0].comment, "ping printed {out:?}");
    // Without the TLS reading the same peer is unreachable: the pong above
    // went over TLS.
    let plain = sh.run("erldist ping e@localhost --cookie secret")?;
    ensure!(
        !plain.status.success() && String::from_utf8_lossy(&plain.stdout).trim() == "pang",
        "plain TCP reached a TLS node: {plain:?}"
    );

    // Erlang -> Rust over TLS: the stock node pings a TLS-only Rust node,
    // and net_kernel:node_info/1 shows protocol tls.
    serve(
        &mut sh,
        "erldist serve --name t@localhost --cookie secret --listen inet_tls \
         --tls-cert certs/s.pem --tls-key certs/s-key.pem --tls-ca certs/ca.pem",
    )?;
    let tls_client = "--cookie secret --policy rules --same-host inet_tls \
                      --tls-cert certs/m.pem --tls-key certs/m-key.pem --tls-ca certs/ca.pem";
    let pong = sh.ok(&format!(
        "erldist rpc e@localhost net_adm ping '[t@localhost]' {tls_client}"
    ))?;
    ensure!(pong.trim() == "pong", "erl -> rust over TLS: {pong}");
    let info = sh.ok(&format!(
        "erldist rpc e@localhost net_kernel node_info '[t@localhost]' {tls_client}"
    ))?;
    ensure!(info.contains("tls"), "node_info(t) has no tls: {info}");
    Ok(())
}

#[test]
fn erl_uds_dist_pings_a_rust_node_over_its_socket() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-uds")?;
    serve(&mut sh, &cmds("serve three transports")?[0].line())?;
    let c = cmds("erl_uds_dist")?;
    ensure!(
        c.len() == 4 && c[2].words == ["cd", "$ERLDIST_UDS_DIR"],
        "the block changed: {c:?}"
    );
    let ebin = sh.dir().join("ebin");
    sh.substitute("/path/to/ebin", &ebin.display().to_string());
    sh.ok(&c[0].line())?;
    sh.ok(&c[1].line())?;
    ensure!(
        ebin.join("erl_uds_dist.beam").is_file(),
        "erlc made no beam"
    );
    // Each line runs in its own `sh`: the `cd` goes with the `erl` after
    // it. The shell is driven through stdin with what the comment types.
    let input = sh.dir().join("erl-input");
    std::fs::write(
        &input,
        "net_adm:ping('s@localhost').\nnet_kernel:node_info('s@localhost').\nhalt().\n",
    )?;
    let out = sh.ok(&format!(
        "{} && {} < {}",
        c[2].line(),
        c[3].line(),
        input.display()
    ))?;
    ensure!(
        out.contains("(e@localhost)1> pong"),
        "ping over erl_uds did not answer pong: {out}"
    );
    let sock = sh.dir().join("uds/s");
    ensure!(
        out.contains(&format!("{{local,<<\"{}\">>}}", sock.display())),
        "the connection is not over {}: {out}",
        sock.display()
    );
    Ok(())
}

/// The client's own connection line (`erldist_<pid>@<host> TRANSPORT`).
fn own_transport(out: &str) -> Option<&str> {
    out.lines()
        .find(|l| l.starts_with("erldist_"))
        .and_then(|l| l.split_whitespace().nth(1))
}

#[test]
fn policy_flags_and_which_transport_is_in_use() -> Result<()> {
    let mut sh = shell_with_certs("docs-tr-policy")?;
    serve(&mut sh, &cmds("serve three transports")?[0].line())?;
    serve_tcp_node(&mut sh, "k")?;

    let c = cmds("policy flags")?;
    ensure!(c.len() == 5, "the block changed: {c:?}");
    for (cmd, want) in [(&c[0], "uds"), (&c[1], "inet_tcp"), (&c[2], "inet_tcp")] {
        let out = sh.ok(&cmd.line())?;
        ensure!(
            own_transport(&out) == Some(want),
            "`{}` printed {out:?}; want the client's connection over {want}",
            cmd.line()
        );
    }
    let refused = sh.run(&c[3].line())?;
    ensure!(
        refused.status.code() == Some(1)
            && String::from_utf8_lossy(&refused.stdout).trim() == "pang",
        "`{}`: {refused:?}",
        c[3].line()
    );
    let ok = sh.ok(&c[4].line())?;
    ensure!(ok.trim() == "ok", "`{}` printed {ok:?}", c[4].line());

    // Section 7: m dials s over TLS (the "two Rust nodes" block's m), s
    // has dialled k over TCP above.
    let tls = cmds("two Rust nodes over TLS")?;
    serve(&mut sh, &tls[1].line())?;
    ensure!(sh.ok(&tls[2].line())?.trim() == "ok", "m could not reach s");
    let s7 = cmds("connections of s")?;
    ensure!(s7.len() == 1, "{s7:?}");
    let expected = sorted(s7[0].output.iter().map(|l| localize_expected(&sh, l)));
    let mut got = Vec::new();
    // Earlier clients' connections close as those commands exit.
    let matched = wait_until(WAIT, || {
        got = sorted(
            sh.ok(&s7[0].line())
                .unwrap_or_default()
                .lines()
                .map(str::to_owned),
        );
        got.len() == expected.len() && expected.iter().zip(&got).all(|(e, a)| matches_output(e, a))
    });
    ensure!(
        matched,
        "connections printed {got:?}, doc says {expected:?}"
    );
    Ok(())
}
