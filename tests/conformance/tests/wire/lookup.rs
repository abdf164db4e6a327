//! PORT_PLEASE2: hit and miss bytes, NUL handling, name limits (docs/protocol.md §8.3, §8.11).

use anyhow::Result;
use epmd_proto::legacy::encode_port2_hit;
use epmd_proto::NodeType;

use crate::harness::{differential, Ctx, Reg, FAST_TIMEOUT};
use crate::probe::End;

fn lookup(ctx: &mut Ctx, label: &str, name: &[u8]) -> Result<crate::probe::Reply> {
    ctx.request(label, &[b"z", name].concat())
}

fn expect_closed_silently(r: &crate::probe::Reply, what: &str) -> Result<()> {
    expect_eq!(r.end, End::Closed, "{what}");
    anyhow::ensure!(r.bytes.is_empty(), "{what}: replied {}", r.show());
    Ok(())
}

#[test]
fn port_please2_hit_and_miss() {
    differential("port_please2_hit_and_miss", FAST_TIMEOUT, &[], |ctx| {
        let r = lookup(ctx, "miss on empty daemon", b"foo")?;
        expect_bytes!(r.bytes, [119, 1], "miss");
        expect_eq!(r.end, End::Closed, "miss closes");
        let _foo = ctx.alive_ok("register foo 5000 v6", &Reg::v6("foo"))?;
        let r = lookup(ctx, "hit foo", b"foo")?;
        // Captured live: foo on 5000 with hi = lo = 6.
        expect_bytes!(
            r.bytes,
            [0x77, 0, 0x13, 0x88, 0x4d, 0, 0, 6, 0, 6, 0, 3, b'f', b'o', b'o', 0, 0],
            "hit"
        );
        expect_eq!(r.end, End::Closed, "hit closes");
        expect_eq!(r.first_read, r.bytes.len(), "hit arrives in one read");
        let r = lookup(ctx, "case-sensitive FOO", b"FOO")?;
        expect_bytes!(r.bytes, [119, 1], "FOO is a miss");
        let r = lookup(ctx, "prefix fo", b"fo")?;
        expect_bytes!(r.bytes, [119, 1], "prefix is a miss");
        let r = lookup(ctx, "longer fooo", b"fooo")?;
        expect_bytes!(r.bytes, [119, 1], "longer is a miss");
        Ok(())
    })
}

#[test]
fn port_please2_nul_handling() {
    differential("port_please2_nul_handling", FAST_TIMEOUT, &[], |ctx| {
        let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let r = lookup(ctx, "foo\\0", b"foo\0")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"foo", b""),
            "trailing NUL"
        );
        let r = lookup(ctx, "foo\\0\\0", b"foo\0\0")?;
        expect_closed_silently(&r, "two trailing NULs")?;
        let r = lookup(ctx, "fo\\0o", b"fo\0o")?;
        expect_closed_silently(&r, "NUL inside")?;
        let r = lookup(ctx, "empty", b"")?;
        expect_closed_silently(&r, "empty name")?;
        let r = lookup(ctx, "\\0 only", b"\0")?;
        expect_closed_silently(&r, "NUL-only name")?;
        let r = lookup(ctx, "bad utf-8 c0 80", &[0xc0, 0x80])?;
        expect_closed_silently(&r, "invalid UTF-8")?;
        let r = lookup(ctx, "bad utf-8 ff", &[0xff])?;
        expect_closed_silently(&r, "invalid UTF-8")?;
        // A valid but unknown name is a plain miss.
        let r = lookup(ctx, "unknown bar\\0", b"bar\0")?;
        expect_bytes!(r.bytes, [119, 1], "miss");
        Ok(())
    })
}

/// The spec's off-by-one (docs/protocol.md §8.11), measured on OTP 25.2.3: a 255-character
/// name registers, but its lookup is closed without a reply; 254 works.
#[test]
fn port_please2_255_vs_254_chars() {
    differential("port_please2_255_vs_254_chars", FAST_TIMEOUT, &[], |ctx| {
        let a255 = vec![b'a'; 255];
        let b254 = vec![b'b'; 254];
        let e255 = "\u{1F600}".repeat(255).into_bytes();
        let e254 = "\u{1F601}".repeat(254).into_bytes();
        let mut keep = Vec::new();
        for (label, n) in [
            ("255 ascii", &a255),
            ("254 ascii", &b254),
            ("255 emoji", &e255),
            ("254 emoji", &e254),
        ] {
            keep.push(ctx.alive_ok(&format!("register {label}"), &Reg::v6(n))?);
        }
        for (label, n) in [("254 ascii", &b254), ("254 emoji", &e254)] {
            let r = lookup(ctx, &format!("lookup {label}"), n)?;
            expect_bytes!(
                r.bytes,
                encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, n, b""),
                "{label}"
            );
            let r = lookup(
                ctx,
                &format!("lookup {label} + NUL"),
                &[n.as_slice(), b"\0"].concat(),
            )?;
            expect_bytes!(
                r.bytes,
                encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, n, b""),
                "{label} + NUL"
            );
        }
        for (label, n) in [("255 ascii", &a255), ("255 emoji", &e255)] {
            let r = lookup(ctx, &format!("lookup {label}"), n)?;
            expect_closed_silently(&r, label)?;
            let r = lookup(
                ctx,
                &format!("lookup {label} + NUL"),
                &[n.as_slice(), b"\0"].concat(),
            )?;
            expect_closed_silently(&r, label)?;
        }
        let r = lookup(ctx, "lookup 256 ascii", &[b'a'; 256])?;
        expect_closed_silently(&r, "256")?;
        let r = lookup(ctx, "lookup 1021 ascii", &[b'a'; 1021])?;
        expect_closed_silently(&r, "1021")?;
        Ok(())
    })
}
