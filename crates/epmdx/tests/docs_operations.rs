//! docs/operations.md's upgrade block, run as written (`test_support::docs`)
//! against a private daemon: `epmdx -port 4369 -upgrade` with the shell's
//! own port for 4369, and `kill -USR2 "$(pidof epmdx)"` with the PID of this
//! test's daemon for `$(pidof epmdx)` (pidof would also find the daemons of
//! other tests). The package block is run by `package.rs`; the systemctl
//! block is marked `not run`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use test_support::docs::{block, commands, matches_output, Shell};
use test_support::erl::ErlNode;
use test_support::upgrade::{become_subreaper, exited, kill_pid, parse_upgraded};
use test_support::{names_answers_at, wait_until};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn upgrade_block_upgrades_with_the_command_and_with_sigusr2() -> Result<()> {
    // Every generation of the daemon is re-parented to this process, so
    // each can be reaped and killed by PID.
    become_subreaper();
    let c = commands(&block("docs/operations.md", "upgrade")?)?;
    ensure!(c.len() == 2, "the upgrade block changed: {c:?}");
    let mut sh = Shell::new("docs-ops-upgrade")?;
    let port = sh.port();
    sh.substitute("4369", &port.to_string());
    sh.spawn("epmdx")?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    ensure!(
        wait_until(WAIT, || names_answers_at(addr)),
        "daemon never answered"
    );
    let mut nodes = vec![
        ErlNode::start("up1", "secret", port, &[])?,
        ErlNode::start("up2", "secret", port, &[])?,
    ];
    let names = |sh: &Shell| sh.ok("epmdx -names").unwrap_or_default();
    ensure!(
        wait_until(WAIT, || {
            let n = names(&sh);
            n.contains("name up1 at port ") && n.contains("name up2 at port ")
        }),
        "nodes never registered: {}",
        names(&sh)
    );

    // `-upgrade` prints what the comment says.
    let out = sh.ok(&c[0].line())?;
    let want = c[0]
        .comment
        .strip_prefix("prints: ")
        .context("the comment no longer says `prints: ...`")?;
    ensure!(matches_output(want, &out), "{out:?} vs {want:?}");
    let (old, new, n) = parse_upgraded(out.trim()).context("unparsable")?;
    ensure!(old != new && n == 2, "{out}");

    // `kill -USR2` on the serving daemon: it hands over and exits.
    sh.substitute("\"$(pidof epmdx)\"", &new.to_string());
    sh.ok(&c[1].line())?;
    ensure!(
        wait_until(WAIT, || exited(new)),
        "pid {new} still runs after SIGUSR2"
    );
    let after = names(&sh);
    ensure!(
        after.contains("name up1 at port ") && after.contains("name up2 at port "),
        "registrations lost across SIGUSR2: {after}"
    );
    // The daemon serving now is a newer one than the one signalled.
    let again = sh.ok(&c[0].line())?;
    let (was, now, n) = parse_upgraded(again.trim()).context("unparsable")?;
    ensure!(was != new && n == 2, "after SIGUSR2: {again}");
    for node in &mut nodes {
        node.kill();
    }
    drop(sh);
    kill_pid(now);
    Ok(())
}
