//! Request framing: the length limits, garbage commands, pipelining and
//! trickled requests (docs/protocol.md §8.1, §8.6).
//!
//! Cases that expect an immediate close run with `-packet_timeout 30`, so a
//! daemon that waits for more bytes instead of closing shows as "open" at
//! the 5 s read deadline rather than being rescued by the timeout.

use std::thread::sleep;
use std::time::Duration;

use anyhow::Result;
use epmd_proto::legacy::encode_port2_hit;
use epmd_proto::NodeType;

use crate::harness::{differential, Ctx, Reg, PROMPT};
use crate::probe::{self, End, Reply};

fn closed_silently(r: &Reply, what: &str) -> Result<()> {
    expect_eq!(r.end, End::Closed, "{what}");
    anyhow::ensure!(r.bytes.is_empty(), "{what}: replied {}", r.show());
    Ok(())
}

#[test]
fn zero_length_closes() {
    differential("zero_length_closes", PROMPT, &[], |ctx| {
        let r = ctx.raw("ten zero bytes", &[0; 10])?;
        closed_silently(&r, "Length 0")?;
        let r = ctx.raw("Length 0 alone", &[0, 0])?;
        closed_silently(&r, "Length 0 alone")?;
        ctx.names("names")?;
        Ok(())
    })
}

#[test]
fn oversize_length_closes() {
    differential("oversize_length_closes", PROMPT, &[], |ctx| {
        let r = ctx.raw(
            "Length 63000 + n",
            &[&63000u16.to_be_bytes()[..], b"n"].concat(),
        )?;
        closed_silently(&r, "Length 63000")?;
        let r = ctx.raw("Length 3058 header only", &3058u16.to_be_bytes())?;
        closed_silently(&r, "Length 3058")?;
        let r = ctx.raw("Length 65535 header only", &[0xff, 0xff])?;
        closed_silently(&r, "Length 65535")?;
        let mut f = 3058u16.to_be_bytes().to_vec();
        f.push(b'n');
        f.extend_from_slice(&[b'x'; 3057]);
        let r = ctx.raw("NAMES padded to Length 3058", &f)?;
        closed_silently(&r, "NAMES Length 3058")?;
        // Length 3057 is the largest accepted.
        let r = ctx.request(
            "NAMES padded to Length 3057",
            &[&b"n"[..], &[b'x'; 3056]].concat(),
        )?;
        expect_eq!(r.bytes.len(), 4, "Length 3057 answered");
        Ok(())
    })
}

#[test]
fn garbage_command_closes() {
    differential("garbage_command_closes", PROMPT, &[], |ctx| {
        // Protocol-1 codes, reply codes, and plain junk. (The extension's
        // X Z N D U codes are epmdx's and are not probed here.)
        for cmd in [b'a', b'p', b'Y', b'y', b'v', b'w', 0u8, 0xff, b'?'] {
            let r = ctx.request(&format!("command {cmd}"), &[cmd, b'f', b'o', b'o'])?;
            closed_silently(&r, &format!("command {cmd}"))?;
            let r = ctx.request(&format!("command {cmd} alone"), &[cmd])?;
            closed_silently(&r, &format!("command {cmd} alone"))?;
        }
        ctx.names("names")?;
        Ok(())
    })
}

/// One request per connection: a second request in the same segment gets
/// the socket closed with no reply.
#[test]
fn pipelined_second_request_closes() {
    differential("pipelined_second_request_closes", PROMPT, &[], |ctx| {
        let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let r = ctx.raw("NAMES + NAMES", &[0, 1, 110, 0, 1, 110])?;
        closed_silently(&r, "NAMES + NAMES")?;
        let r = ctx.raw(
            "PORT_PLEASE2 foo + NAMES",
            &[0, 4, 122, b'f', b'o', b'o', 0, 1, 110],
        )?;
        closed_silently(&r, "PORT_PLEASE2 + NAMES")?;
        let r = ctx.raw("NAMES + 1 byte", &[0, 1, 110, 0])?;
        closed_silently(&r, "NAMES + 1 byte")?;
        let mut f = Reg::v6("bar").frame();
        f.push(0);
        let r = ctx.raw("ALIVE2 bar + 1 byte", &f)?;
        closed_silently(&r, "ALIVE2 + 1 byte")?;
        let mut f = Reg::v6("baz").frame();
        f.extend_from_slice(&[0, 1, 110]);
        let r = ctx.raw("ALIVE2 baz + NAMES", &f)?;
        closed_silently(&r, "ALIVE2 + NAMES")?;
        let names = ctx.names("names")?;
        expect_eq!(names.len(), 1, "only foo registered");
        Ok(())
    })
}

/// Sends `bytes` one at a time with `gap` between them.
fn trickle(ctx: &Ctx, bytes: &[u8], gap: Duration) -> Result<std::net::TcpStream> {
    let mut s = ctx.connect()?;
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            sleep(gap);
        }
        probe::send(&mut s, std::slice::from_ref(b));
    }
    Ok(s)
}

/// `slow_get_port_nr`: a request trickled one byte at a time is
/// reassembled, and each byte refreshes the idle timer: the whole request
/// takes longer than `packet_timeout` (2 s) but no gap comes near it.
#[test]
fn trickled_request_reassembled() {
    differential(
        "trickled_request_reassembled",
        &["-packet_timeout", "2"],
        &[],
        |ctx| {
            let gap = Duration::from_millis(300);
            let reg = Reg::v6("trickle").extra(b"E");
            let mut s = trickle(ctx, &reg.frame()[..8], gap)?;
            sleep(gap);
            for b in &reg.frame()[8..] {
                probe::send(&mut s, std::slice::from_ref(b));
                sleep(Duration::from_millis(100));
            }
            let r = probe::read_reply(&mut s, 6, Duration::from_secs(5), crate::harness::QUIET);
            let ok = r.bytes.len() == 6 && r.bytes[..2] == [118, 0] && r.end == End::Open;
            ctx.note("trickled ALIVE2", format!("ok={ok} | {}", r.end));
            anyhow::ensure!(ok, "trickled ALIVE2 failed: {}", r.show());
            let mut q = trickle(
                ctx,
                &[0, 8, 122, b't', b'r', b'i', b'c', b'k', b'l', b'e'],
                gap,
            )?;
            let r = probe::read_to_close(&mut q, Duration::from_secs(5));
            ctx.note("trickled PORT_PLEASE2", r.show());
            expect_bytes!(
                r.bytes,
                encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"trickle", b"E"),
                "hit"
            );
            let mut q = trickle(ctx, &[0, 1, 110], gap)?;
            let r = probe::read_to_close(&mut q, Duration::from_secs(5));
            expect_eq!(r.end, End::Closed, "trickled NAMES");
            expect_eq!(
                &r.bytes[..4],
                &u32::from(ctx.port()).to_be_bytes()[..],
                "trickled NAMES header"
            );
            ctx.note(
                "trickled NAMES",
                format!("{} bytes | {}", r.bytes.len(), r.end),
            );
            Ok(())
        },
    )
}

/// EOF before the packet is complete closes at once, without waiting for
/// `packet_timeout`.
#[test]
fn eof_before_complete_closes() {
    differential("eof_before_complete_closes", PROMPT, &[], |ctx| {
        for (label, bytes) in [
            ("nothing", &[][..]),
            ("one byte", &[0][..]),
            ("header only", &[0, 5][..]),
            ("half a PORT_PLEASE2", &[0, 5, 122, b'f'][..]),
        ] {
            let mut s = ctx.connect()?;
            probe::send(&mut s, bytes);
            s.shutdown(std::net::Shutdown::Write)?;
            let r = probe::read_to_close(&mut s, Duration::from_secs(5));
            ctx.note(format!("{label} + shutdown(write)"), r.show());
            closed_silently(&r, label)?;
        }
        Ok(())
    })
}

/// Measured refinement of "more than L + 2 bytes read → close": once the
/// header has arrived in an earlier read, the C epmd reads only up to the
/// end of the frame, so surplus bytes in a later segment are left unread:
/// the request is answered, then the socket is closed (an RST, since input
/// is pending). Surplus in the same read as an incomplete header still
/// closes without a reply. The gap lets the header be read on its own.
#[test]
fn surplus_after_known_header() {
    differential("surplus_after_known_header", PROMPT, &[], |ctx| {
        let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
        let gap = Duration::from_millis(500);
        let mut bad = Vec::new();
        for (label, first, second, answered) in [
            (
                "header | n + NAMES",
                &[0u8, 1][..],
                &[110u8, 0, 1, 110][..],
                true,
            ),
            (
                "header + zf | oo + X",
                &[0, 4, 122, b'f'][..],
                &[b'o', b'o', b'X'][..],
                true,
            ),
            (
                "1 byte | rest of NAMES + X",
                &[0][..],
                &[1, 110, b'X'][..],
                false,
            ),
        ] {
            let mut s = ctx.connect()?;
            probe::send(&mut s, first);
            sleep(gap);
            probe::send(&mut s, second);
            let r = probe::read_to_close(&mut s, Duration::from_secs(5));
            let shown = ctx.show_masked(&r);
            ctx.note(label, shown);
            if r.end != End::Closed || r.bytes.is_empty() == answered {
                bad.push(format!("{label}: {}", r.show()));
            }
        }
        ctx.names("names")?;
        anyhow::ensure!(bad.is_empty(), "unexpected: {bad:?}");
        Ok(())
    })
}
