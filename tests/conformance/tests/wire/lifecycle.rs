//! Registration lifetime: resets before the reply, churn at scale, and
//! NAMES matching the live set (docs/protocol.md §8.9).

use std::collections::BTreeSet;
use std::thread::sleep;
use std::time::Duration;

use anyhow::Result;

use crate::harness::{differential, Ctx, Node, Reg, FAST_TIMEOUT};
use crate::probe;

/// Registers `names` one after another; returns the nodes that succeeded
/// and the number of replies that were not success.
fn register_all(ctx: &mut Ctx, names: &[String]) -> Result<(Vec<Node>, usize)> {
    let mut nodes = Vec::with_capacity(names.len());
    let mut failed = 0;
    for (i, n) in names.iter().enumerate() {
        let reg = Reg::v6(n).port(10000 + i as u16);
        let node = ctx.alive_quiet(&reg, Duration::ZERO)?;
        if node.ok() {
            nodes.push(node);
        } else {
            failed += 1;
        }
    }
    Ok((nodes, failed))
}

fn wait_names_empty(ctx: &Ctx) -> Result<()> {
    let mut last = 0;
    let ok = test_support::wait_until(Duration::from_secs(20), || {
        last = ctx.name_list().map_or(usize::MAX, |l| l.len());
        last == 0
    });
    anyhow::ensure!(ok, "NAMES never became empty ({last} left)");
    Ok(())
}

/// `socket_reset_before_alive2_reply_is_written`: the client resets the
/// connection while epmd sleeps before its reply; no zombie may remain.
#[test]
fn reset_before_alive2_reply() {
    differential(
        "reset_before_alive2_reply",
        &[
            "-packet_timeout",
            "1",
            "-delay_write",
            "1",
            "-relaxed_command_check",
        ],
        &[],
        |ctx| {
            let mut s = ctx.connect()?;
            probe::send(&mut s, &Reg::v6("zombie").frame());
            // Half-way through the 1 s write delay.
            sleep(Duration::from_millis(500));
            probe::reset(s);
            // A zombie would stay listed forever; a transient entry is fine.
            wait_names_empty(ctx)?;
            ctx.names("names after the reset")?;
            // The name is free again.
            let n = ctx.alive_quiet(&Reg::v6("zombie"), crate::harness::QUIET)?;
            ctx.note(
                "register zombie again",
                format!("ok={} | {}", n.ok(), n.reply.end),
            );
            anyhow::ensure!(n.ok(), "zombie blocks its name: {}", n.reply.show());
            Ok(())
        },
    )
}

/// `register_overflow` at a smaller scale: 200 names, 3 rounds, closing in
/// alternating order; every round must reach the same count.
#[test]
fn register_churn_200x3() {
    differential("register_churn_200x3", FAST_TIMEOUT, &[], |ctx| {
        let names: Vec<String> = (0..200).map(|i| format!("churn{i}")).collect();
        for round in 0..3 {
            let (mut nodes, failed) = register_all(ctx, &names)?;
            let listed = ctx.name_list()?.len();
            ctx.note(
                format!("round {round}"),
                format!(
                    "registered {} refused {failed} listed {listed}",
                    nodes.len()
                ),
            );
            expect_eq!(
                (nodes.len(), failed, listed),
                (200, 0, 200),
                "round {round}"
            );
            if round % 2 == 1 {
                nodes.reverse();
            }
            drop(nodes);
            wait_names_empty(ctx)?;
        }
        ctx.names("names at the end")?;
        Ok(())
    })
}

/// `stupid_names_req` at 500: NAMES lists exactly the live set, newest
/// first, before and after the oldest node leaves.
#[test]
fn many_names_match_live_set() {
    differential("many_names_match_live_set", FAST_TIMEOUT, &[], |ctx| {
        let names: Vec<String> = (0..500).map(|i| format!("node{i:03}")).collect();
        let (mut nodes, failed) = register_all(ctx, &names)?;
        expect_eq!((nodes.len(), failed), (500, 0), "registrations");
        let check = |ctx: &mut Ctx, label: &str, live: &[String]| -> Result<()> {
            let got = ctx.names_quiet()?;
            let entries = epmd_proto::legacy::parse_names_text(&got.bytes[4..]);
            let want: Vec<(Vec<u8>, u16)> = live
                .iter()
                .rev()
                .map(|n| {
                    let i: u16 = n[4..].parse().expect("index");
                    (n.clone().into_bytes(), 10000 + i)
                })
                .collect();
            let same_set = entries.iter().map(|e| &e.0).collect::<BTreeSet<_>>()
                == want.iter().map(|e| &e.0).collect::<BTreeSet<_>>();
            let exact = entries == want;
            ctx.note(
                label,
                format!(
                    "{} entries, same set {same_set}, newest first with ports {exact}",
                    entries.len()
                ),
            );
            anyhow::ensure!(exact, "{label}: NAMES does not match the live set");
            Ok(())
        };
        check(ctx, "names with 500", &names)?;
        drop(nodes.remove(0));
        ctx.wait_listed(b"node000", false)?;
        check(ctx, "names with 499", &names[1..])?;
        Ok(())
    })
}
