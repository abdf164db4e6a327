//! The local-peer rule (docs/protocol.md §8.10): ALIVE2, DUMP, KILL and STOP are silently
//! closed for a peer that is not loopback and not the socket's own local
//! address; NAMES and PORT_PLEASE2 are public.
//!
//! A non-local peer is simulated by binding the client to this host's
//! external address and connecting to loopback: the daemon then sees a
//! peer address that differs from the local end of the socket. Connecting
//! from the external address to itself counts as local.

use std::net::{IpAddr, SocketAddr, TcpStream};

use anyhow::Result;
use epmd_proto::legacy::encode_port2_hit;
use epmd_proto::NodeType;

use crate::harness::{differential, Ctx, Reg, CLOSE_DEADLINE};
use crate::probe::{self, End, Reply};

/// Sends one request from `src` to `dst`, records the masked reply, and
/// returns the socket (an ALIVE2 registration lives as long as it does).
fn raw_from(
    ctx: &mut Ctx,
    label: &str,
    src: IpAddr,
    dst: SocketAddr,
    body: &[u8],
) -> Result<(Reply, TcpStream)> {
    let mut s = probe::connect_from(src, dst)?;
    probe::send(&mut s, &epmd_proto::frame::encode(body));
    let r = if body.first() == Some(&120) {
        probe::read_reply(&mut s, 6, CLOSE_DEADLINE, crate::harness::QUIET)
    } else {
        probe::read_to_close(&mut s, CLOSE_DEADLINE)
    };
    let shown = if body.first() == Some(&120) && r.bytes.len() == 6 && r.bytes[1] == 0 {
        format!("v\\x00{{creation}} | {}", r.end)
    } else {
        ctx.show_masked(&r)
    };
    ctx.note(label, shown);
    Ok((r, s))
}

fn nonlocal_story(
    ctx: &mut Ctx,
    ext: IpAddr,
    loopback: IpAddr,
    keep: &mut Vec<TcpStream>,
) -> Result<()> {
    let fam = if ext.is_ipv4() { "v4" } else { "v6" };
    let lo = SocketAddr::new(loopback, ctx.port());
    let own = SocketAddr::new(ext, ctx.port());
    let silent = |r: &Reply, what: &str| -> Result<()> {
        expect_eq!(
            (r.end, r.bytes.len()),
            (End::Closed, 0),
            "{what} from a non-local peer"
        );
        Ok(())
    };
    let (r, _) = raw_from(
        ctx,
        &format!("{fam} non-local ALIVE2 bar"),
        ext,
        lo,
        &Reg::v6("bar").frame()[2..],
    )?;
    silent(&r, "ALIVE2")?;
    let (r, _) = raw_from(ctx, &format!("{fam} non-local DUMP"), ext, lo, b"d")?;
    silent(&r, "DUMP")?;
    let (r, _) = raw_from(ctx, &format!("{fam} non-local KILL"), ext, lo, b"k")?;
    silent(&r, "KILL")?;
    let (r, _) = raw_from(ctx, &format!("{fam} non-local STOP foo"), ext, lo, b"sfoo")?;
    silent(&r, "STOP")?;
    let (r, _) = raw_from(ctx, &format!("{fam} non-local NAMES"), ext, lo, b"n")?;
    anyhow::ensure!(r.bytes.len() >= 4, "public NAMES refused");
    let (r, _) = raw_from(
        ctx,
        &format!("{fam} non-local PORT_PLEASE2 foo"),
        ext,
        lo,
        b"zfoo",
    )?;
    expect_bytes!(
        r.bytes,
        encode_port2_hit(5000, NodeType::Normal.code(), 0, 6, 6, b"foo", b""),
        "public lookup"
    );
    // Same address at both ends: local.
    let name = format!("self{fam}");
    let (r, s) = raw_from(
        ctx,
        &format!("{fam} own-address ALIVE2 {name}"),
        ext,
        own,
        &Reg::v6(&name).frame()[2..],
    )?;
    anyhow::ensure!(
        r.bytes.len() == 6 && r.bytes[1] == 0,
        "own address is local: {}",
        r.show()
    );
    keep.push(s);
    let (r, _) = raw_from(ctx, &format!("{fam} own-address DUMP"), ext, own, b"d")?;
    anyhow::ensure!(!r.bytes.is_empty(), "own-address DUMP refused");
    ctx.wait_listed(b"foo", true)?;
    Ok(())
}

#[test]
fn nonlocal_peers_refused() {
    differential(
        "nonlocal_peers_refused",
        &["-packet_timeout", "1", "-relaxed_command_check"],
        &[],
        |ctx| {
            let _foo = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
            let mut keep = Vec::new();
            // ::1 is a local peer.
            if crate::procs::have_ipv6_loopback() {
                let lo6 = IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
                let dst = SocketAddr::new(lo6, ctx.port());
                let (r, s) = raw_from(
                    ctx,
                    "::1 ALIVE2 loop6",
                    lo6,
                    dst,
                    &Reg::v6("loop6").frame()[2..],
                )?;
                anyhow::ensure!(
                    r.bytes.len() == 6 && r.bytes[1] == 0,
                    "::1 refused: {}",
                    r.show()
                );
                keep.push(s);
                let (r, _) = raw_from(ctx, "::1 DUMP", lo6, dst, b"d")?;
                anyhow::ensure!(r.bytes.len() > 4, "::1 DUMP refused");
            } else {
                ctx.note("::1", "skipped: no IPv6 loopback");
            }
            match probe::external_addr(false) {
                Some(ext) => nonlocal_story(ctx, ext, IpAddr::from([127, 0, 0, 1]), &mut keep)?,
                None => ctx.note("v4", "skipped: no external IPv4 address"),
            }
            match probe::external_addr(true).filter(|_| crate::procs::have_ipv6_loopback()) {
                Some(ext) => nonlocal_story(
                    ctx,
                    ext,
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                    &mut keep,
                )?,
                None => ctx.note("v6", "skipped: no external IPv6 address"),
            }
            let running = !ctx.daemon.has_exited();
            ctx.note("daemon still running", running);
            anyhow::ensure!(running, "a non-local KILL stopped the daemon");
            ctx.names("names")?;
            Ok(())
        },
    )
}
