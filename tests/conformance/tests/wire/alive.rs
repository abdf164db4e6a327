//! ALIVE2: reply forms, creations, name and Extra rules, and what ends a
//! registration (docs/protocol.md §8.2, §8.8, §8.9, §8.12).

use std::net::Shutdown;
use std::time::Duration;

use anyhow::Result;
use epmd_proto::legacy::{encode_port2_hit, Alive2Resp};
use epmd_proto::NodeType;

use crate::harness::{differential, render, wait_for_second_after, Reg, FAST_TIMEOUT};
use crate::probe::{self, End};

const X_FAIL: [u8; 6] = [118, 1, 0, 0, 0, 99];
const Y_FAIL: [u8; 4] = [121, 1, 0, 99];

/// Checks a successful reply: form, result 0, socket open, one read.
fn check_ok(n: &crate::harness::Node, x_form: bool, what: &str) -> Result<()> {
    let resp = n.resp();
    match (x_form, resp) {
        (true, Some(Alive2Resp::X { result: 0, .. })) => {}
        (
            false,
            Some(Alive2Resp::Legacy {
                result: 0,
                creation,
            }),
        ) => {
            anyhow::ensure!(
                (1..=3).contains(&creation),
                "{what}: 121 creation {creation} not in 1..=3"
            );
        }
        _ => anyhow::bail!("{what}: not a success reply: {}", n.reply.show()),
    }
    expect_eq!(
        n.reply.bytes.len(),
        if x_form { 6 } else { 4 },
        "{what}: reply size"
    );
    expect_eq!(n.reply.end, End::Open, "{what}: registration socket");
    Ok(())
}

#[test]
fn alive2_hi5_gets_121_reply() {
    differential("alive2_hi5_gets_121_reply", FAST_TIMEOUT, &[], |ctx| {
        let n = ctx.alive("alive v5 foo", &Reg::v5("foo"))?;
        check_ok(&n, false, "hi=lo=5")?;
        expect_eq!(n.reply.first_read, 4, "reply arrives in one read");
        // hi = 5 with lo = 1: still the 121 form (only HighestVersion counts).
        let n2 = ctx.alive("alive hi5 lo1 bar", &Reg::v5("bar").versions(5, 1))?;
        check_ok(&n2, false, "hi=5 lo=1")?;
        ctx.names("names")?;
        Ok(())
    })
}

#[test]
fn alive2_hi6_gets_118_reply() {
    differential("alive2_hi6_gets_118_reply", FAST_TIMEOUT, &[], |ctx| {
        let t0 = crate::harness::unix_before();
        let n = ctx.alive("alive v6 foo", &Reg::v6("foo"))?;
        let t1 = crate::harness::unix_now();
        check_ok(&n, true, "hi=lo=6")?;
        expect_eq!(n.reply.first_read, 6, "reply arrives in one read");
        let c = u64::from(n.resp().map_or(0, |r| r.creation()));
        anyhow::ensure!(
            (t0 + 1..=t1 + 1).contains(&c),
            "new name creation {c} is not time()+1 (window {t0}..={t1})"
        );
        // OTP 23/24 and (measured) OTP 25.2.3 itself send hi = 6, lo = 5.
        let n2 = ctx.alive("alive hi6 lo5 bar", &Reg::v6("bar").versions(6, 5))?;
        check_ok(&n2, true, "hi=6 lo=5")?;
        let n3 = ctx.alive("alive hi7 lo6 baz", &Reg::v6("baz").versions(7, 6))?;
        check_ok(&n3, true, "hi=7 lo=6")?;
        ctx.names("names")?;
        Ok(())
    })
}

/// Re-registering a name from the unregistered list bumps its counter by
/// one; the 121 form sends `counter % 3 + 1`.
#[test]
fn creation_rules() {
    differential("creation_rules", FAST_TIMEOUT, &[], |ctx| {
        let foo = Reg::v6("foo");
        let n = ctx.alive_ok("v6 foo (new)", &foo)?;
        let c0 = ctx.creation_of(b"foo").expect("creation");
        // Let the clock pass c0 so that "now + 1" can no longer equal c0 + 1:
        // a daemon that hands out fresh time-based creations would show.
        wait_for_second_after(u64::from(c0));
        let mut node = Some(n);
        let steps: [(&str, Reg, u32); 5] = [
            ("v6 foo again", foo.clone(), 1),
            ("v5 foo again", Reg::v5("foo"), 2),
            ("v5 foo again", Reg::v5("foo"), 3),
            ("v5 foo again", Reg::v5("foo"), 4),
            ("v6 foo again", foo.clone(), 5),
        ];
        for (label, reg, k) in steps {
            drop(node.take());
            ctx.wait_listed(b"foo", false)?;
            let n = ctx.alive_ok(label, &reg)?;
            let want = c0.wrapping_add(k);
            match n.resp() {
                Some(Alive2Resp::X { creation, .. }) => {
                    expect_eq!(creation, want, "{label}: 118 creation (c0 + {k})");
                }
                Some(Alive2Resp::Legacy { creation, .. }) => {
                    expect_eq!(u32::from(creation), want % 3 + 1, "{label}: 121 creation");
                }
                None => anyhow::bail!("no reply"),
            }
            node = Some(n);
        }
        // A new name in the 121 form: (now + 1) % 3 + 1.
        let _bar = ctx.alive_ok("v5 bar (new)", &Reg::v5("bar"))?;
        Ok(())
    })
}

/// A duplicate gets Result 1 with creation 99, and the socket stays open,
/// immune to `packet_timeout` like every registration socket.
#[test]
fn duplicate_name_refused_and_kept_open() {
    differential(
        "duplicate_name_refused_and_kept_open",
        FAST_TIMEOUT,
        &[],
        |ctx| {
            let mut orig = ctx.alive_ok("v6 foo", &Reg::v6("foo"))?;
            let mut dup6 = ctx.alive("v6 foo duplicate", &Reg::v6("foo"))?;
            expect_bytes!(dup6.reply.bytes, X_FAIL, "118 failure");
            expect_eq!(dup6.reply.end, End::Open, "duplicate socket");
            let mut dup5 = ctx.alive("v5 foo duplicate", &Reg::v5("foo"))?;
            expect_bytes!(dup5.reply.bytes, Y_FAIL, "121 failure");
            expect_eq!(dup5.reply.end, End::Open, "duplicate socket");
            // Byte-exact, case-sensitive compare: Foo is another name.
            let _other = ctx.alive_ok("v6 Foo", &Reg::v6("Foo"))?;
            // An idle connection opened now is closed by packet_timeout; once it
            // is, the registration sockets (good or refused) must still be open.
            let mut idle = ctx.connect()?;
            let r = probe::read_to_close(&mut idle, Duration::from_secs(15));
            expect_eq!(r.end, End::Closed, "idle probe closed by packet_timeout");
            ctx.note("idle probe", r.show());
            for (label, n) in [
                ("orig", &mut orig),
                ("dup v6", &mut dup6),
                ("dup v5", &mut dup5),
            ] {
                let (closed, extra) = probe::closed_now(&mut n.stream, crate::harness::QUIET);
                ctx.note(
                    format!("{label} socket after the timeout sweep"),
                    format!(
                        "{} {}",
                        if closed { "closed" } else { "open" },
                        render(&extra)
                    ),
                );
                anyhow::ensure!(!closed && extra.is_empty(), "{label} socket was closed");
            }
            // Closing the refused sockets does not touch the registration.
            drop(dup6);
            drop(dup5);
            ctx.note("port_please after dups closed", "");
            let r = ctx.request("port_please foo", b"zfoo")?;
            anyhow::ensure!(r.bytes.starts_with(&[119, 0]), "foo lost: {}", r.show());
            ctx.names("names")?;
            Ok(())
        },
    )
}

#[test]
fn closing_unregisters() {
    differential("closing_unregisters", FAST_TIMEOUT, &[], |ctx| {
        let n = ctx.alive_ok("v6 foo", &Reg::v6("foo"))?;
        ctx.request("port_please foo while registered", b"zfoo")?;
        drop(n);
        ctx.wait_listed(b"foo", false)?;
        let r = ctx.request("port_please foo after close", b"zfoo")?;
        expect_bytes!(r.bytes, [119, 1], "miss");
        // Half-close: EOF on the registration socket unregisters too, and
        // epmd closes its end.
        let mut bar = ctx.alive_ok("v6 bar", &Reg::v6("bar"))?;
        bar.stream.shutdown(Shutdown::Write)?;
        let r = probe::read_to_close(&mut bar.stream, Duration::from_secs(5));
        ctx.note("bar socket after shutdown(write)", r.show());
        expect_eq!(r.end, End::Closed, "registration socket after EOF");
        ctx.wait_listed(b"bar", false)?;
        let names = ctx.names("names")?;
        anyhow::ensure!(names.is_empty(), "names not empty: {names:?}");
        Ok(())
    })
}

/// Any byte sent on a registered socket unregisters the node.
#[test]
fn byte_on_registered_socket_unregisters() {
    differential(
        "byte_on_registered_socket_unregisters",
        FAST_TIMEOUT,
        &[],
        |ctx| {
            let mut n = ctx.alive_ok("v6 foo", &Reg::v6("foo"))?;
            probe::send(&mut n.stream, b"x");
            let r = probe::read_to_close(&mut n.stream, Duration::from_secs(5));
            ctx.note("foo socket after one byte", r.show());
            expect_eq!(r.end, End::Closed, "registration socket after a byte");
            ctx.wait_listed(b"foo", false)?;
            // Even a whole valid request (here a NAMES) counts as "any byte".
            let mut m = ctx.alive_ok("v6 bar", &Reg::v6("bar"))?;
            probe::send(&mut m.stream, &[0, 1, 110]);
            let r = probe::read_to_close(&mut m.stream, Duration::from_secs(5));
            ctx.note("bar socket after a NAMES request", r.show());
            expect_eq!(r.end, End::Closed, "registration socket after a request");
            anyhow::ensure!(r.bytes.is_empty(), "answered a request on the ALIVE socket");
            ctx.wait_listed(b"bar", false)?;
            ctx.names("names")?;
            Ok(())
        },
    )
}

#[test]
fn unicode_names() {
    differential("unicode_names", FAST_TIMEOUT, &[], |ctx| {
        let emoji = "\u{1F600}";
        let one = Reg::v6(emoji);
        let _one = ctx.alive_ok("1 emoji (4 bytes)", &one)?;
        let r = ctx.request("port_please 1 emoji", &[b"z", emoji.as_bytes()].concat())?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(
                5000,
                NodeType::Normal.code(),
                0,
                6,
                6,
                emoji.as_bytes(),
                b""
            ),
            "hit"
        );
        let many = emoji.repeat(201);
        let _many = ctx.alive_ok("201 emoji (804 bytes)", &Reg::v6(&many))?;
        let r = ctx.request("port_please 201 emoji", &[b"z", many.as_bytes()].concat())?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, many.as_bytes(), b""),
            "hit"
        );
        // Mixed widths: 1-, 2-, 3- and 4-byte characters.
        let mixed = "a\u{e9}\u{20ac}\u{1F600}";
        let _mixed = ctx.alive_ok("mixed widths", &Reg::v6(mixed))?;
        ctx.request("port_please mixed", &[b"z", mixed.as_bytes()].concat())?;
        ctx.names("names")?;
        Ok(())
    })
}

/// Name limits: 1020 bytes, 255 characters, valid UTF-8 (docs/protocol.md §8.8).
#[test]
fn name_limits() {
    differential("name_limits", FAST_TIMEOUT, &[], |ctx| {
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("255 ascii", vec![b'a'; 255], true),
            ("256 ascii", vec![b'b'; 256], false),
            (
                "255 emoji = 1020 bytes",
                "\u{1F600}".repeat(255).into_bytes(),
                true,
            ),
            (
                "256 emoji = 1024 bytes",
                "\u{1F601}".repeat(256).into_bytes(),
                false,
            ),
            ("600 ascii", vec![b'c'; 600], false),
            ("1021 ascii", vec![b'd'; 1021], false),
            ("overlong NUL c0 80", vec![0xc0, 0x80], false),
            ("surrogate ed a0 80", vec![0xed, 0xa0, 0x80], false),
            (
                "above U+10FFFF f4 90 80 80",
                vec![0xf4, 0x90, 0x80, 0x80],
                false,
            ),
            ("truncated e2 82", vec![b'a', b'b', 0xe2, 0x82], false),
            ("lone ff", vec![0xff], false),
        ];
        let mut keep = Vec::new();
        for (label, name, ok) in cases {
            for reg in [Reg::v5(&name), Reg::v6(&name)] {
                let form = if reg.high >= 6 { "v6" } else { "v5" };
                let n = ctx.alive(&format!("{label} {form}"), &reg)?;
                if ok {
                    check_ok(&n, reg.high >= 6, label)?;
                    // Release it so the v6 attempt is not a duplicate.
                    drop(n);
                    ctx.wait_listed(&name, false)?;
                } else {
                    let want: &[u8] = if reg.high >= 6 { &X_FAIL } else { &Y_FAIL };
                    expect_bytes!(n.reply.bytes, want, "{label} {form}");
                    expect_eq!(n.reply.end, End::Open, "{label}: refused socket stays open");
                    keep.push(n);
                }
            }
        }
        let names = ctx.names("names")?;
        anyhow::ensure!(
            names.is_empty(),
            "refused names were registered: {}",
            names.len()
        );
        Ok(())
    })
}

/// `alive_req_too_large`: a 600-byte ASCII name gets `[121, 1, ...]`.
#[test]
fn name_600_bytes_refused() {
    differential("name_600_bytes_refused", FAST_TIMEOUT, &[], |ctx| {
        let n = ctx.alive("600-byte name v5", &Reg::v5([b'x'; 600]))?;
        expect_bytes!(n.reply.bytes, Y_FAIL, "reply");
        expect_eq!(n.reply.end, End::Open, "socket");
        ctx.names("names")?;
        Ok(())
    })
}

#[test]
fn extra_with_nuls_echoed() {
    differential("extra_with_nuls_echoed", FAST_TIMEOUT, &[], |ctx| {
        let _foo = ctx.alive_ok("foo extra ABC\\0\\0", &Reg::v6("foo").extra(b"ABC\0\0"))?;
        let r = ctx.request("port_please foo", b"zfoo")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"foo", b"ABC\0\0"),
            "hit"
        );
        let bin: Vec<u8> = (0..=255u8).collect();
        let _bar = ctx.alive_ok("bar extra 00..ff", &Reg::v6("bar").extra(&bin))?;
        let r = ctx.request("port_please bar", b"zbar")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"bar", &bin),
            "hit"
        );
        let _baz = ctx.alive_ok("baz empty extra", &Reg::v6("baz"))?;
        let r = ctx.request("port_please baz", b"zbaz")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"baz", b""),
            "Elen = 0"
        );
        Ok(())
    })
}

/// `buffer_overrun_2` at its edge: Extra of 1020 bytes is fine, 1021 is
/// refused with Result 1.
#[test]
fn extra_limit_1020() {
    differential("extra_limit_1020", FAST_TIMEOUT, &[], |ctx| {
        let e1020 = vec![0xffu8; 1020];
        let _gurka = ctx.alive_ok("gurka extra 1020 v5", &Reg::v5("gurka").extra(&e1020))?;
        let r = ctx.request("port_please gurka", b"zgurka")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 5, 5, b"gurka", &e1020),
            "hit"
        );
        for (label, reg) in [
            (
                "other extra 1021 v5",
                Reg::v5("other").extra([0xffu8; 1021]),
            ),
            (
                "other extra 1021 v6",
                Reg::v6("other").extra([0xffu8; 1021]),
            ),
            (
                "other extra 3000 v5",
                Reg::v5("other").extra([0xffu8; 3000]),
            ),
        ] {
            let n = ctx.alive(label, &reg)?;
            let want: &[u8] = if reg.high >= 6 { &X_FAIL } else { &Y_FAIL };
            expect_bytes!(n.reply.bytes, want, "{label}");
        }
        // Beyond the 3057 packet limit the connection is simply closed.
        let big = Reg::v5("other").extra(vec![0xffu8; 3057 - 13 - 5 + 1]);
        let r = ctx.raw("other extra to Length 3058", &big.frame())?;
        expect_eq!(r.end, End::Closed, "Length 3058");
        anyhow::ensure!(r.bytes.is_empty(), "reply to an oversize packet");
        let at_limit = Reg::v5("other").extra(vec![0xffu8; 3057 - 13 - 5]);
        let n = ctx.alive("other extra to Length 3057", &at_limit)?;
        expect_bytes!(n.reply.bytes, Y_FAIL, "Length 3057, Elen 3039");
        ctx.names("names")?;
        Ok(())
    })
}

/// `buffer_overrun_1`: Elen beyond the packet closes without a reply.
#[test]
fn elen_beyond_packet_closes() {
    differential("elen_beyond_packet_closes", FAST_TIMEOUT, &[], |ctx| {
        for elen in [1u16, 2, 100, 1020, 10000] {
            let mut f = Reg::v5("gurka").frame();
            let n = f.len();
            f[n - 2..].copy_from_slice(&elen.to_be_bytes());
            let r = ctx.raw(&format!("gurka Elen {elen} no extra"), &f)?;
            expect_eq!(r.end, End::Closed, "Elen {elen}");
            anyhow::ensure!(r.bytes.is_empty(), "Elen {elen}: replied {}", r.show());
        }
        // Nlen beyond the packet, too.
        let mut f = Reg::v5("gurka").frame();
        f[11..13].copy_from_slice(&200u16.to_be_bytes());
        let r = ctx.raw("gurka Nlen 200", &f)?;
        expect_eq!(r.end, End::Closed, "Nlen beyond packet");
        anyhow::ensure!(r.bytes.is_empty(), "Nlen: replied {}", r.show());
        let names = ctx.names("names")?;
        anyhow::ensure!(names.is_empty(), "registered: {names:?}");
        Ok(())
    })
}

#[test]
fn nul_in_name_closes() {
    differential("nul_in_name_closes", FAST_TIMEOUT, &[], |ctx| {
        for (label, name) in [
            ("foo\\0bar", &b"foo\0bar"[..]),
            ("name_null_terminated foobar\\0", &b"foobar\0"[..]),
            ("\\0 only", &b"\0"[..]),
        ] {
            let r = ctx.raw(label, &Reg::v6(name).frame())?;
            expect_eq!(r.end, End::Closed, "{label}");
            anyhow::ensure!(r.bytes.is_empty(), "{label}: replied {}", r.show());
        }
        let names = ctx.names("names")?;
        anyhow::ensure!(names.is_empty(), "registered: {names:?}");
        Ok(())
    })
}

/// `alive_req_too_small_1/2`, and the Length 13 boundary.
#[test]
fn alive_too_small_closes() {
    differential("alive_too_small_closes", FAST_TIMEOUT, &[], |ctx| {
        // 120, port, type, proto, hi, lo, then Nlen = 0: Length 11.
        let mut body = vec![120, 0x13, 0x88, 77, 0, 0, 6, 0, 6];
        let r = ctx.request("Length 9 (no Nlen)", &body)?;
        expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "Length 9");
        body.extend_from_slice(&[0, 0]);
        let r = ctx.request("Length 11 (Nlen 0, no Elen)", &body)?;
        expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "Length 11");
        body.extend_from_slice(&[0, 0]);
        let r = ctx.request("Length 13 (Nlen 0, Elen 0)", &body)?;
        expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "Length 13");
        let r = ctx.request("Length 1 (command only)", &[120])?;
        expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "Length 1");
        ctx.names("names")?;
        Ok(())
    })
}

/// Quirk: a zero-length name in a packet padded to Length >= 14 registers;
/// it cannot be looked up, but (measured) STOP with an empty name stops it.
#[test]
fn zero_length_name_quirk() {
    differential(
        "zero_length_name_quirk",
        &["-packet_timeout", "1", "-relaxed_command_check"],
        &[],
        |ctx| {
            let mut f = Reg::v6("").frame();
            f.push(0);
            f[1] += 1;
            let mut s = ctx.connect()?;
            probe::send(&mut s, &f);
            let r = probe::read_reply(&mut s, 6, Duration::from_secs(5), crate::harness::QUIET);
            let ok = r.bytes.len() == 6 && r.bytes[..2] == [118, 0] && r.end == End::Open;
            ctx.note("empty name, Length 14", format!("ok={ok} | {}", r.end));
            anyhow::ensure!(ok, "empty name not registered: {}", r.show());
            let names = ctx.names("names")?;
            expect_eq!(names, vec![(Vec::new(), 5000)], "NAMES");
            let r = ctx.request("port_please empty", b"z")?;
            expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "empty lookup");
            let r = ctx.request("port_please \\0", b"z\0")?;
            expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "NUL lookup");
            ctx.dump("dump")?;
            let r = ctx.request("stop \\0", b"s\0")?;
            expect_bytes!(r.bytes, *b"STOPPED", "STOP of the empty name");
            ctx.wait_listed(b"", false)?;
            let (closed, _) = probe::closed_now(&mut s, Duration::from_secs(5));
            ctx.note(
                "empty-name socket after STOP",
                if closed { "closed" } else { "open" },
            );
            Ok(())
        },
    )
}

/// Bytes after the end of Extra are ignored (docs/protocol.md §8.2).
#[test]
fn bytes_after_extra_ignored() {
    differential("bytes_after_extra_ignored", FAST_TIMEOUT, &[], |ctx| {
        let reg = Reg::v6("foo").extra(b"AB");
        let mut f = reg.frame();
        f.extend_from_slice(b"zzzz");
        let len = (f.len() - 2) as u16;
        f[..2].copy_from_slice(&len.to_be_bytes());
        let mut s = ctx.connect()?;
        probe::send(&mut s, &f);
        let r = probe::read_reply(&mut s, 6, Duration::from_secs(5), crate::harness::QUIET);
        let ok = r.bytes.len() == 6 && r.bytes[..2] == [118, 0] && r.end == End::Open;
        ctx.note(
            "foo extra AB + 4 trailing bytes",
            format!("ok={ok} | {}", r.end),
        );
        anyhow::ensure!(ok, "not registered: {}", r.show());
        let r = ctx.request("port_please foo", b"zfoo")?;
        expect_bytes!(
            r.bytes,
            encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"foo", b"AB"),
            "hit"
        );
        Ok(())
    })
}

/// Every field of the registration is echoed by PORT_PLEASE2, whatever it is.
#[test]
fn fields_echoed_verbatim() {
    differential("fields_echoed_verbatim", FAST_TIMEOUT, &[], |ctx| {
        let regs = [
            Reg::v6("hid")
                .port(65535)
                .kind(NodeType::Hidden.code(), 0)
                .versions(6, 5),
            Reg::v6("odd")
                .port(1)
                .kind(0, 7)
                .versions(0xffff, 0x1234)
                .extra(b"\0"),
            Reg::v5("old")
                .port(0)
                .kind(NodeType::Normal.code(), 1)
                .versions(5, 0),
        ];
        let mut keep = Vec::new();
        for r in &regs {
            keep.push(ctx.alive_ok(&format!("register {}", render(&r.name)), r)?);
            let rep = ctx.request(
                &format!("port_please {}", render(&r.name)),
                &[b"z", r.name.as_slice()].concat(),
            )?;
            expect_bytes!(
                rep.bytes,
                encode_port2_hit(
                    r.port,
                    r.node_type,
                    r.protocol,
                    r.high,
                    r.low,
                    &r.name,
                    &r.extra
                ),
                "echo"
            );
        }
        ctx.names("names")?;
        Ok(())
    })
}

/// A refused registration socket stays open but is not a registration: a
/// byte or a second ALIVE2 on it gets it closed with no reply, and a STOP
/// of the name it asked for does not touch it.
#[test]
fn refused_socket_is_not_a_registration() {
    differential(
        "refused_socket_is_not_a_registration",
        &["-packet_timeout", "30", "-relaxed_command_check"],
        &[],
        |ctx| {
            let mut orig = ctx.alive_ok("v6 foo", &Reg::v6("foo"))?;
            let mut d1 = ctx.alive("dup 1", &Reg::v6("foo"))?;
            probe::send(&mut d1.stream, &Reg::v6("other").frame());
            let r = probe::read_to_close(&mut d1.stream, Duration::from_secs(5));
            ctx.note("ALIVE2 other on the refused socket", r.show());
            expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "second ALIVE2");
            let mut d2 = ctx.alive("dup 2", &Reg::v6("foo"))?;
            probe::send(&mut d2.stream, b"x");
            let r = probe::read_to_close(&mut d2.stream, Duration::from_secs(5));
            ctx.note("one byte on the refused socket", r.show());
            expect_eq!((r.end, r.bytes.len()), (End::Closed, 0), "byte");
            let names = ctx.names("names: foo only")?;
            expect_eq!(names, vec![(b"foo".to_vec(), 5000)], "NAMES");
            let mut d3 = ctx.alive("dup 3", &Reg::v6("foo"))?;
            let r = ctx.request("STOP foo", b"sfoo")?;
            expect_bytes!(r.bytes, *b"STOPPED", "STOP");
            let (closed, _) = probe::closed_now(&mut orig.stream, Duration::from_secs(5));
            ctx.note(
                "registered socket after STOP",
                if closed { "closed" } else { "open" },
            );
            anyhow::ensure!(closed, "registered socket not closed by STOP");
            let (closed, _) = probe::closed_now(&mut d3.stream, crate::harness::QUIET);
            ctx.note(
                "refused socket after STOP",
                if closed { "closed" } else { "open" },
            );
            anyhow::ensure!(!closed, "STOP closed the refused socket");
            ctx.wait_listed(b"foo", false)?;
            ctx.dump("dump")?;
            Ok(())
        },
    )
}

/// A client that half-closes right after its request still gets the reply;
/// an ALIVE2 then ends at once (EOF on a registration unregisters).
#[test]
fn half_close_after_request() {
    differential(
        "half_close_after_request",
        &["-packet_timeout", "30"],
        &[],
        |ctx| {
            let _foo = ctx.alive_ok("v6 foo", &Reg::v6("foo"))?;
            for (label, body) in [
                ("NAMES", &b"n"[..]),
                ("PORT_PLEASE2 foo", b"zfoo"),
                ("PORT_PLEASE2 bar", b"zbar"),
            ] {
                let mut s = ctx.connect()?;
                probe::send(&mut s, &epmd_proto::frame::encode(body));
                s.shutdown(Shutdown::Write)?;
                let r = probe::read_to_close(&mut s, Duration::from_secs(5));
                let shown = ctx.show_masked(&r);
                ctx.note(format!("{label} + shutdown(write)"), shown);
                anyhow::ensure!(
                    !r.bytes.is_empty() && r.end == End::Closed,
                    "{label}: {}",
                    r.show()
                );
            }
            let mut s = ctx.connect()?;
            probe::send(&mut s, &Reg::v6("hc").frame());
            s.shutdown(Shutdown::Write)?;
            let r = probe::read_to_close(&mut s, Duration::from_secs(5));
            let ok = r.bytes.len() == 6 && r.bytes[..2] == [118, 0];
            ctx.note(
                "ALIVE2 hc + shutdown(write)",
                format!("reply ok={ok} | {}", r.end),
            );
            anyhow::ensure!(ok && r.end == End::Closed, "ALIVE2 + EOF: {}", r.show());
            ctx.wait_listed(b"hc", false)?;
            ctx.dump("dump")?;
            Ok(())
        },
    )
}
