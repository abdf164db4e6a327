//! NAMES and DUMP, and the unregistered-names list they reveal (docs/protocol.md §8.4, §8.12).

use anyhow::Result;
use epmd_proto::legacy::{put_dump_active, put_dump_old, put_names_line};
use epmd_proto::NodeType;

use crate::harness::{differential, mask_fds, wait_for_second_after, Ctx, Node, Reg, FAST_TIMEOUT};
use crate::probe::End;

fn names_text(ctx: &Ctx) -> Result<Vec<u8>> {
    Ok(ctx.names_quiet()?.bytes.split_off(4))
}

#[test]
fn names_newest_first() {
    differential("names_newest_first", FAST_TIMEOUT, &[], |ctx| {
        let r = ctx.request("names on empty daemon", b"n")?;
        expect_eq!(r.bytes.len(), 4, "empty NAMES is the header only");
        let a = ctx.alive_ok("register a", &Reg::v6("a").port(1001))?;
        let b = ctx.alive_ok("register b", &Reg::v5("b").port(1002))?;
        let _c = ctx.alive_ok("register c", &Reg::v6("c").port(1003))?;
        let mut want = Vec::new();
        put_names_line(&mut want, b"c", 1003);
        put_names_line(&mut want, b"b", 1002);
        put_names_line(&mut want, b"a", 1001);
        ctx.names("names c b a")?;
        expect_bytes!(names_text(ctx)?, want, "NAMES order");
        drop(b);
        ctx.wait_listed(b"b", false)?;
        let _b = ctx.alive_ok("register b again", &Reg::v6("b").port(1004))?;
        drop(a);
        ctx.wait_listed(b"a", false)?;
        let mut want = Vec::new();
        put_names_line(&mut want, b"b", 1004);
        put_names_line(&mut want, b"c", 1003);
        ctx.names("names b c")?;
        expect_bytes!(names_text(ctx)?, want, "NAMES after churn");
        Ok(())
    })
}

#[test]
fn names_ignores_trailing_bytes() {
    differential("names_ignores_trailing_bytes", FAST_TIMEOUT, &[], |ctx| {
        let _n = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let plain = ctx.names_quiet()?.bytes;
        for (label, body) in [
            ("n xyz\\0", &b"nxyz\0"[..]),
            (
                "n + 3056 bytes (Length 3057)",
                &[&b"n"[..], &[b'x'; 3056]].concat()[..],
            ),
        ] {
            let r = ctx.request(label, body)?;
            expect_bytes!(r.bytes, plain, "{label}");
            expect_eq!(r.end, End::Closed, "{label}");
        }
        Ok(())
    })
}

#[test]
fn dump_format() {
    differential("dump_format", FAST_TIMEOUT, &[], |ctx| {
        let r = ctx.dump("dump empty")?;
        expect_eq!(r.bytes.len(), 4, "empty DUMP is the header only");
        let foo = ctx.alive_ok("register foo", &Reg::v6("foo").port(5000))?;
        let bar = ctx.alive_ok("register bar", &Reg::v5("bar").port(5001))?;
        let r = ctx.dump("dump foo bar")?;
        let mut want = Vec::new();
        put_dump_active(&mut want, b"bar", 5001, 0);
        put_dump_active(&mut want, b"foo", 5000, 0);
        expect_bytes!(mask_fds(&r.bytes[4..]), mask_fds(&want), "active lines");
        drop(foo);
        ctx.wait_listed(b"foo", false)?;
        let r = ctx.dump("dump after foo left")?;
        let mut want = Vec::new();
        put_dump_active(&mut want, b"bar", 5001, 0);
        put_dump_old(&mut want, b"foo", 5000, 0);
        expect_bytes!(mask_fds(&r.bytes[4..]), mask_fds(&want), "old/unused line");
        drop(bar);
        ctx.wait_listed(b"bar", false)?;
        let r = ctx.dump("dump after bar left")?;
        let mut want = Vec::new();
        put_dump_old(&mut want, b"foo", 5000, 0);
        put_dump_old(&mut want, b"bar", 5001, 0);
        expect_bytes!(
            mask_fds(&r.bytes[4..]),
            mask_fds(&want),
            "old list, oldest first"
        );
        // Re-registering a listed name takes it off the list.
        let _foo = ctx.alive_ok("register foo again on 6000", &Reg::v6("foo").port(6000))?;
        let r = ctx.dump("dump after foo came back")?;
        let mut want = Vec::new();
        put_dump_active(&mut want, b"foo", 6000, 0);
        put_dump_old(&mut want, b"bar", 5001, 0);
        expect_bytes!(mask_fds(&r.bytes[4..]), mask_fds(&want), "foo active again");
        // The fd of an old entry is the one its connection had.
        let r = ctx.request("dump with trailing bytes", b"dxyz")?;
        expect_eq!(r.end, End::Closed, "DUMP closes");
        Ok(())
    })
}

/// With `-d` the unregistered list holds up to 5 entries before a new name
/// recycles the oldest entry, which keeps its creation counter unchanged.
#[test]
fn unregistered_list_recycling() {
    differential(
        "unregistered_list_recycling",
        &["-d", "-packet_timeout", "1"],
        &[],
        |ctx| {
            let names: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
            let mut nodes: Vec<Node> = Vec::new();
            for (i, n) in names.iter().enumerate() {
                nodes.push(ctx.alive_ok(&format!("register {n}"), &Reg::v6(n))?);
                if i < 2 {
                    // Give n0, n1 and n2 distinct counters (one second apart).
                    let c = ctx.creation_of(n.as_bytes()).expect("creation");
                    wait_for_second_after(u64::from(c) - 1);
                }
            }
            let counters: Vec<u32> = names
                .iter()
                .map(|n| ctx.creation_of(n.as_bytes()).expect("creation"))
                .collect();
            // From here on "now + 1" is above every counter seen so far, so a
            // recycled counter cannot be mistaken for a fresh one.
            wait_for_second_after(u64::from(*counters.iter().max().expect("7 names")) - 1);
            for (n, node) in names.iter().zip(nodes.drain(..)) {
                drop(node);
                ctx.wait_listed(n.as_bytes(), false)?;
            }
            ctx.dump("dump: 7 old entries")?;
            let f1 = ctx.alive_ok("register fresh1 (list holds 7)", &Reg::v6("fresh1"))?;
            expect_eq!(
                ctx.creation_of(b"fresh1"),
                Some(counters[0]),
                "fresh1 recycles n0"
            );
            ctx.dump("dump after fresh1")?;
            let f2 = ctx.alive_ok("register fresh2 (list holds 6)", &Reg::v6("fresh2"))?;
            expect_eq!(
                ctx.creation_of(b"fresh2"),
                Some(counters[1]),
                "fresh2 recycles n1"
            );
            let t0 = crate::harness::unix_before();
            let _f3 = ctx.alive_ok("register fresh3 (list holds 5)", &Reg::v6("fresh3"))?;
            let t1 = crate::harness::unix_now();
            let c3 = u64::from(ctx.creation_of(b"fresh3").expect("creation"));
            anyhow::ensure!(
                (t0 + 1..=t1 + 1).contains(&c3),
                "fresh3 got {c3}, not now + 1"
            );
            let _n6 = ctx.alive_ok("register n6 again", &Reg::v6("n6"))?;
            expect_eq!(ctx.creation_of(b"n6"), Some(counters[6] + 1), "n6 bumped");
            ctx.dump("dump at the end")?;
            drop(f1);
            ctx.wait_listed(b"fresh1", false)?;
            drop(f2);
            ctx.wait_listed(b"fresh2", false)?;
            ctx.dump("dump after fresh1/2 left")?;
            Ok(())
        },
    )
}

/// Without `-d` the unregistered list holds 1000 entries: with exactly 1000
/// a new name gets a fresh creation, with 1001 it recycles the oldest.
#[test]
fn unregistered_list_cap_1000() {
    differential("unregistered_list_cap_1000", FAST_TIMEOUT, &[], |ctx| {
        let cycle = |ctx: &mut Ctx, from: usize, to: usize| -> Result<()> {
            for i in from..to {
                let n = ctx.alive_quiet(&Reg::v6(format!("u{i}")), std::time::Duration::ZERO)?;
                anyhow::ensure!(n.ok(), "u{i} refused: {}", n.reply.show());
            }
            Ok(())
        };
        cycle(ctx, 0, 1000)?;
        let empty = test_support::wait_until(std::time::Duration::from_secs(20), || {
            ctx.name_list().is_ok_and(|l| l.is_empty())
        });
        anyhow::ensure!(empty, "cycled names still listed");
        let c0 = ctx.creation_of(b"u0").expect("u0");
        let max = (0..1000)
            .filter_map(|i| ctx.creation_of(format!("u{i}").as_bytes()))
            .max()
            .expect("counters");
        wait_for_second_after(u64::from(max) - 1);
        let t0 = crate::harness::unix_before();
        let a = ctx.alive_ok("fresh_a with 1000 old entries", &Reg::v6("fresh_a"))?;
        let t1 = crate::harness::unix_now();
        let ca = u64::from(ctx.creation_of(b"fresh_a").expect("fresh_a"));
        anyhow::ensure!(
            (t0 + 1..=t1 + 1).contains(&ca),
            "fresh_a got {ca}, not now + 1"
        );
        drop(a);
        ctx.wait_listed(b"fresh_a", false)?;
        // fresh_a's entry makes 1001.
        let _b = ctx.alive_ok("fresh_b with 1001 old entries", &Reg::v6("fresh_b"))?;
        let cb = ctx.creation_of(b"fresh_b").expect("fresh_b");
        ctx.note("fresh_b recycled u0's counter", cb == c0);
        expect_eq!(cb, c0, "fresh_b recycles the oldest entry (u0)");
        let dump = ctx.dump_quiet()?;
        let text = String::from_utf8_lossy(&dump);
        let olds = text.matches("old/unused name <").count();
        let has_u0 = text.contains("<u0>");
        ctx.note(
            "old entries after recycling / u0 still listed",
            format!("{olds} / {has_u0}"),
        );
        expect_eq!((olds, has_u0), (1000, false), "list after recycling");
        Ok(())
    })
}

/// Names are bytes: spaces, newlines, control characters and the text
/// " at port " go into NAMES and DUMP unescaped.
#[test]
fn odd_names_listed_raw() {
    differential("odd_names_listed_raw", FAST_TIMEOUT, &[], |ctx| {
        let odd: [&[u8]; 4] = [b"a b", b"x\ny", b"\x01\x7f", b"n at port 9"];
        let mut keep = Vec::new();
        for n in odd {
            keep.push(ctx.alive_ok(
                &format!("register {}", crate::harness::render(n)),
                &Reg::v6(n).port(7),
            )?);
        }
        let mut want = Vec::new();
        for n in odd.iter().rev() {
            put_names_line(&mut want, n, 7);
        }
        ctx.names("names")?;
        expect_bytes!(names_text(ctx)?, want, "NAMES");
        ctx.dump("dump")?;
        let r = ctx.request("port_please x\\ny", b"zx\ny")?;
        expect_bytes!(
            r.bytes,
            epmd_proto::legacy::encode_port2_hit(7, NodeType::Normal.code(), 0, 6, 6, b"x\ny", b""),
            "hit"
        );
        Ok(())
    })
}
