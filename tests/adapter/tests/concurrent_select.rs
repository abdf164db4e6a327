//! `select/1` of the wrappers for one peer, called from many processes at
//! once: exactly one wrapper answers true per attempt, however the calls
//! interleave. Newer OTP releases may call the modules' `select/1`
//! concurrently (OTP 25 asks them one after another from `net_kernel`), so
//! each round starts one process per wrapper, releases them together and
//! counts the trues, many rounds in a row; a last check runs overlapping
//! attempts from several processes per wrapper and asks that every
//! concurrent attempt's answers name one transport.

mod common;

use anyhow::{ensure, Result};
use common::*;

const ROUNDS: u32 = 300;

/// Runs ROUNDS rounds on `node` against `peer`; returns the node's
/// `{Ones, Zeros, More}` count of rounds with one, zero or several trues.
fn rounds(node: &mut ErlNode, peer: &str) -> Result<String> {
    let expr = format!(
        "Peer = '{peer}', Mods = [epmdx_tcp_dist, epmdx_tls_dist, epmdx_uds_dist], \
         Round = fun() -> Parent = self(), Go = make_ref(), \
             Pids = [spawn(fun() -> receive Go -> Parent ! {{self(), M:select(Peer)}} end end) \
                     || M <- Mods], \
             [P ! Go || P <- Pids], \
             length([x || P <- Pids, true <- [receive {{P, R}} -> R end]]) end, \
         Counts = [Round() || _ <- lists:seq(1, {ROUNDS})], \
         {{length([1 || 1 <- Counts]), length([0 || 0 <- Counts]), \
          length([C || C <- Counts, C > 1])}}."
    );
    node.eval(&expr)
}

fn check(fx: &Fixture, name: &str, extra: &[&str]) -> Result<()> {
    let mut n = fx.adapted(name, &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], extra)?;
    let got = rounds(&mut n, "s@localhost")?;
    ensure!(
        got == format!("{{{ROUNDS},0,0}}"),
        "{name}: rounds with one/zero/several trues: {got}; output:\n{}",
        n.output()
    );
    // And the node still connects through the answer.
    ping_until_pong(&mut n, "s@localhost")?;
    Ok(())
}

#[test]
fn exactly_one_wrapper_answers_true_per_attempt() -> Result<()> {
    let fx = Fixture::new()?;
    let _s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    // The built-in policy (same host: the Unix socket).
    check(&fx, "c_policy", &[])?;
    // A slow selector that picks a random offer each time it is asked: two
    // decisions for one attempt would disagree.
    let pa = test_ebin().display().to_string();
    check(
        &fx,
        "c_random",
        &[
            "-pa",
            &pa,
            "-kernel",
            "epmdx_selector",
            "{test_selectors, slow_random}",
        ],
    )?;
    Ok(())
}
