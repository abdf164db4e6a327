//! README.md's command blocks, run as written (`test_support::docs`): each
//! block is read by its `tested:` name, its commands run through `sh` with
//! this build's `epmdx` and `erldist` on `PATH`, `ERL_EPMD_PORT` set to a
//! private port, and documented ports (4369, 4370) replaced by free ones.
//! Expected output in a command's trailing comment is compared with digits
//! standing for any digits.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use test_support::docs::{block, commands, matches_output, Command, Shell};
use test_support::erl::ErlNode;
use test_support::{names_answers_at, wait_until};

const README: &str = "README.md";
const WAIT: Duration = Duration::from_secs(20);

fn cmds(name: &str) -> Result<Vec<Command>> {
    let c = commands(&block(README, name)?)?;
    ensure!(!c.is_empty(), "README block {name} is empty");
    Ok(c)
}

fn answers(port: u16) -> bool {
    names_answers_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

fn wait_names(sh: &Shell, port: u16, want: &str) -> Result<String> {
    let mut out = String::new();
    wait_until(WAIT, || {
        out = sh
            .ok(&format!("epmdx -port {port} -names"))
            .unwrap_or_default();
        out.contains(want)
    });
    ensure!(
        out.contains(want),
        "-names at {port} never showed {want:?}: {out}"
    );
    Ok(out)
}

#[test]
fn set_up_runs_the_daemon_on_defaults() -> Result<()> {
    let c = cmds("run the daemon")?;
    ensure!(c.len() == 1, "{c:?}");
    let mut sh = Shell::new("readme-setup")?;
    let port = sh.port();
    sh.spawn(&c[0].line())?;
    ensure!(
        wait_until(WAIT, || answers(port)),
        "daemon never answered on {port}"
    );
    let names = sh.ok("epmdx -names")?;
    ensure!(
        names.starts_with(&format!("epmd: up and running on port {port} with data:")),
        "{names}"
    );
    Ok(())
}

#[test]
fn usage_block_daemon_modes_names_stop_kill() -> Result<()> {
    let c = cmds("usage")?;
    ensure!(c.len() == 6, "the usage block changed: {c:?}");
    let mut sh = Shell::new("readme-usage")?;
    let port = sh.port();
    let p2 = sh.substitute_port(4370);
    // Loopback stands in for the example's 10.0.0.5: a second address of
    // this host that is not 127.0.0.1.
    sh.substitute("10.0.0.5", "127.0.0.2");

    // epmdx -daemon: returns once the port is bound.
    sh.ok(&c[0].line())?;
    ensure!(answers(port), "-daemon returned before {port} answered");
    sh.ok(&format!("epmdx -port {port} -kill"))?;
    ensure!(
        wait_until(WAIT, || !answers(port)),
        "-kill left {port} serving"
    );

    // A foreground debug daemon on 4370.
    let log = sh.spawn(&c[1].line())?;
    ensure!(
        wait_until(WAIT, || answers(p2)),
        "-d daemon never answered: {log:?}"
    );

    // -address: loopback plus the named address.
    sh.spawn(&c[2].line())?;
    ensure!(
        wait_until(WAIT, || names_answers_at(SocketAddr::from((
            [127, 0, 0, 2],
            port
        ))) && answers(port)),
        "-address daemon not on 127.0.0.1 and 127.0.0.2"
    );

    // -names, -stop (the daemon has -relaxed_command_check), -kill.
    let mut node = ErlNode::start("mynode", "secret", p2, &[])?;
    wait_names(&sh, p2, "name mynode at port")?;
    let names = sh.ok(&c[3].line())?;
    ensure!(
        names.starts_with(&format!("epmd: up and running on port {p2} with data:"))
            && names.contains("name mynode at port "),
        "{names}"
    );
    let stop = sh.ok(&c[4].line())?;
    ensure!(stop.trim() == "STOPPED", "-stop printed {stop:?}");
    let after = sh.ok(&format!("epmdx -port {p2} -names"))?;
    ensure!(
        !after.contains("mynode"),
        "still registered after -stop: {after}"
    );
    node.kill();
    let kill = sh.ok(&c[5].line())?;
    ensure!(kill.trim() == "Killed", "-kill printed {kill:?}");
    ensure!(wait_until(WAIT, || !answers(p2)), "-kill left {p2} serving");
    Ok(())
}

#[test]
fn with_erl_block_registers_a_stock_node() -> Result<()> {
    let c = cmds("with erl")?;
    ensure!(c.len() == 2, "{c:?}");
    let mut sh = Shell::new("readme-erl")?;
    let port = sh.port();
    sh.ok(&c[0].line())?;
    sh.spawn(&c[1].line())?;
    wait_names(&sh, port, "name a at port ")?;
    Ok(())
}

/// Starts `epmdx -daemon` and a TCP+TLS erldist node `s` in `sh`.
fn daemon_and_tls_node(sh: &mut Shell) -> Result<()> {
    sh.ok("epmdx -daemon")?;
    sh.ok("erldist gen-certs --dir certs --node s")?;
    let log = sh.spawn(
        "erldist serve --name s@localhost --cookie secret --listen inet_tcp --listen inet_tls \
         --tls-cert certs/s.pem --tls-key certs/s-key.pem --tls-ca certs/ca.pem",
    )?;
    sh.wait_log_line(&log, WAIT, |l| l.contains("listening on"))?;
    Ok(())
}

#[test]
fn extended_commands_block() -> Result<()> {
    let c = cmds("extended commands")?;
    ensure!(c.len() == 4, "{c:?}");
    let mut sh = Shell::new("readme-ext")?;
    let port = sh.port();
    sh.substitute("myhost", "localhost");
    sh.substitute("4370", &port.to_string());
    daemon_and_tls_node(&mut sh)?;

    let nodes = sh.ok(&c[0].line())?;
    let l = nodes
        .lines()
        .find(|l| l.starts_with("name s at port "))
        .with_context(|| format!("epmdx nodes: {nodes}"))?;
    ensure!(
        matches_output("name s at port 1#inet_tcp 2#inet_tls", l),
        "{l}"
    );

    let json: serde_json::Value = serde_json::from_str(&sh.ok(&c[1].line())?)?;
    ensure!(json.to_string().contains("inet_tls"), "{json}");

    let tls_first = sh.ok(&c[2].line())?;
    ensure!(
        matches_output("name s at port 2#inet_tls 1#inet_tcp", &tls_first),
        "lookup --proto inet_tls,inet_tcp: {tls_first}"
    );
    let json: serde_json::Value = serde_json::from_str(&sh.ok(&c[3].line())?)?;
    ensure!(json.to_string().contains("inet_tcp"), "{json}");
    Ok(())
}

#[test]
fn upgrade_block_prints_the_documented_line() -> Result<()> {
    let c = cmds("upgrade")?;
    ensure!(c.len() == 1, "{c:?}");
    let mut sh = Shell::new("readme-upgrade")?;
    let port = sh.port();
    sh.substitute("4369", &port.to_string());
    sh.spawn("epmdx")?;
    ensure!(wait_until(WAIT, || answers(port)), "daemon never answered");
    let mut node = ErlNode::start("u", "secret", port, &[])?;
    wait_names(&sh, port, "name u at port ")?;
    let out = sh.ok(&c[0].line())?;
    ensure!(
        matches_output(&c[0].comment, &out),
        "{out:?} vs {:?}",
        c[0].comment
    );
    ensure!(out.trim().ends_with(", 1 registrations"), "{out}");
    wait_names(&sh, port, "name u at port ")?;
    node.kill();
    Ok(())
}

#[test]
fn erldist_blocks_next_to_a_stock_node() -> Result<()> {
    let start = cmds("erldist next to erl")?;
    ensure!(start.len() == 3 && start[1].background, "{start:?}");
    let mut sh = Shell::new("readme-erldist")?;
    let port = sh.port();
    sh.ok(&start[0].line())?;
    sh.spawn(&start[1].line())?;
    let log = sh.spawn(&start[2].line())?;
    sh.wait_log_line(&log, WAIT, |l| l.contains("listening on"))?;
    wait_names(&sh, port, "name erl at port ")?;
    wait_names(&sh, port, "name rust at port ")?;

    // From the Erlang side: net_adm:ping(rust@localhost) is pong.
    let pong =
        sh.ok("erldist rpc erl@localhost net_adm ping '[rust@localhost]' --cookie secret")?;
    ensure!(pong.trim() == "pong", "erl -> rust: {pong}");

    let c = cmds("erldist commands")?;
    ensure!(c.len() == 4, "{c:?}");
    let ping = sh.ok(&c[0].line())?;
    ensure!(ping.trim() == "pong", "{ping}");
    sh.ok(&c[1].line())?;
    let rpc = sh.ok(&c[2].line())?;
    ensure!(rpc.contains("\"25\""), "rpc otp_release: {rpc}");
    let names = sh.ok(&c[3].line())?;
    ensure!(
        names.contains("erl") && names.contains("rust"),
        "erldist names: {names}"
    );
    Ok(())
}
