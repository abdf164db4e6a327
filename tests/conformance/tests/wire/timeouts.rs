//! `packet_timeout` and `delay_write` (docs/protocol.md §8.7).
//!
//! With `-packet_timeout 1` the C epmd closes an idle connection once
//! `last_activity + 1 < now` in whole seconds, checked every second: always
//! more than 1 s after the last byte, normally within 3 s. The cases wait
//! up to 15 s for the close (a loaded machine only makes it later) and
//! record "closed by timeout" when it came after at least 0.9 s and within
//! 8 s.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::harness::{differential, Ctx, Reg, FAST_TIMEOUT};
use crate::probe::{self, End};

fn idle_closed(ctx: &mut Ctx, label: &str, bytes: &[u8]) -> Result<()> {
    let mut s = ctx.connect()?;
    probe::send(&mut s, bytes);
    let r = probe::read_to_close(&mut s, Duration::from_secs(15));
    let secs = r.elapsed.as_secs_f64();
    let verdict = match r.end {
        End::Closed if (0.9..=8.0).contains(&secs) => "closed by timeout".to_owned(),
        End::Closed => format!("closed after {secs:.1} s"),
        End::Open => "still open after 15 s".to_owned(),
    };
    ctx.note(
        label,
        format!("{} | {verdict}", crate::harness::render(&r.bytes)),
    );
    anyhow::ensure!(r.bytes.is_empty(), "{label}: replied {}", r.show());
    anyhow::ensure!(verdict == "closed by timeout", "{label}: {verdict}");
    Ok(())
}

#[test]
fn no_data_times_out() {
    differential("no_data_times_out", FAST_TIMEOUT, &[], |ctx| {
        idle_closed(ctx, "no data", &[])
    })
}

#[test]
fn one_byte_times_out() {
    differential("one_byte_times_out", FAST_TIMEOUT, &[], |ctx| {
        idle_closed(ctx, "one byte", &[0])
    })
}

#[test]
fn two_bytes_times_out() {
    differential("two_bytes_times_out", FAST_TIMEOUT, &[], |ctx| {
        idle_closed(ctx, "Length 3, no body", &[0, 3])
    })
}

#[test]
fn partial_packet_times_out() {
    differential("partial_packet_times_out", FAST_TIMEOUT, &[], |ctx| {
        let mut f = vec![0, 100, 122];
        f.extend_from_slice(&[b'a'; 49]);
        idle_closed(ctx, "Length 100, 50 bytes", &f)?;
        // A partial ALIVE2 times out too: only complete registrations are
        // exempt.
        let full = Reg::v6("foo").frame();
        idle_closed(ctx, "ALIVE2 minus its last byte", &full[..full.len() - 1])?;
        ctx.names("names")?;
        Ok(())
    })
}

/// `-delay_write 1` delays every write: NAMES with one node writes the
/// header and one line, so it takes at least 2 s.
#[test]
fn delay_write_delays_each_write() {
    differential(
        "delay_write_delays_each_write",
        &["-packet_timeout", "5", "-delay_write", "1"],
        &[],
        |ctx| {
            let start = Instant::now();
            let _n = ctx.alive_ok("register foo", &Reg::v6("foo"))?;
            let alive = start.elapsed();
            ctx.note(
                "ALIVE2 reply took >= 1 s",
                alive >= Duration::from_millis(950),
            );
            let start = Instant::now();
            ctx.names("names")?;
            let names = start.elapsed();
            ctx.note(
                "NAMES (header + 1 line) took >= 2 s",
                names >= Duration::from_millis(1950),
            );
            anyhow::ensure!(
                alive >= Duration::from_millis(950),
                "ALIVE2 reply after {alive:?}"
            );
            anyhow::ensure!(
                names >= Duration::from_millis(1950),
                "NAMES after {names:?}"
            );
            Ok(())
        },
    )
}
