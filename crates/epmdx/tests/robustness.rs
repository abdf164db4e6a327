//! Abuse never stops service and never loses a live registration.
//!
//! Each test starts its own epmdx on a private port (never 4369), killed by
//! PID when the test ends. Waits are condition polls with generous deadlines:
//! CI is a loaded 2-core machine.
//!
//! - [`slowloris_flood_keeps_service_and_registrations`] — thousands of idle or
//!   half-sent connections, more than the pending cap; lookups and a new
//!   registration still succeed promptly, the daemon's descriptors stay
//!   bounded, and every live registration survives.
//! - [`garbage_storm_never_breaks_lookups`] — concurrent malformed requests of
//!   every kind next to lookups that must all be answered correctly.
//! - [`packet_timeout_closes_idle_but_not_registrations`] — `-packet_timeout 1`.
//! - [`only_the_owner_connection_ends_a_registration`] — other clients'
//!   misbehaviour never removes someone else's registration.
//! - [`capacity_refuses_cleanly_and_recovers`] — `EPMDX_MAX_NODES=50`.
//! - [`low_fd_limit_keeps_serving`] — under a 256-descriptor limit the bounds
//!   the binary derives keep registrations and lookups working in a flood.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use epmd_client::{Client, ClientError, NodeSpec, Registration};
use epmd_proto::ext::{self, Status};
use epmd_proto::{code, frame, legacy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Whether a registration's connection is still open (the daemon neither
/// closed it nor wrote to it).
async fn reg_open(r: &mut Registration) -> bool {
    tokio::time::timeout(Duration::from_millis(200), r.closed())
        .await
        .is_err()
}

// ---------------------------------------------------------------------------
// 1. Slowloris flood
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct FloodStats {
    opened: AtomicUsize,
    connect_failed: AtomicUsize,
    closed_by_daemon: AtomicUsize,
    replied: AtomicUsize,
}

impl FloodStats {
    fn get(a: &AtomicUsize) -> usize {
        a.load(Ordering::SeqCst)
    }
}

/// Opens one connection per index in `range` (at most 128 connecting at a
/// time), each sending nothing or an incomplete request, then holding the
/// socket until the daemon closes it or `release` turns true.
fn spawn_flood(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    stats: Arc<FloodStats>,
    release: watch::Receiver<bool>,
) -> JoinSet<()> {
    let gate = Arc::new(Semaphore::new(128));
    let mut set = JoinSet::new();
    for i in range {
        let (gate, stats, mut release) = (gate.clone(), stats.clone(), release.clone());
        set.spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let s = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(addr)).await;
            let Ok(Ok(mut s)) = s else {
                stats.connect_failed.fetch_add(1, Ordering::SeqCst);
                return;
            };
            // Nothing; half a header; a PORT_PLEASE2 missing its tail; an
            // ALIVE2 cut after its port.
            let partial: &[u8] = match i % 4 {
                0 => &[],
                1 => &[0],
                2 => &[0, 20, code::PORT_PLEASE2_REQ, b'l', b'i'],
                _ => &[0, 40, code::ALIVE2_REQ, 0x9c, 0x40],
            };
            if !partial.is_empty() {
                let _ = s.write_all(partial).await;
            }
            drop(permit);
            stats.opened.fetch_add(1, Ordering::SeqCst);
            let mut b = [0u8; 64];
            tokio::select! {
                r = s.read(&mut b) => match r {
                    Ok(0) | Err(_) => { stats.closed_by_daemon.fetch_add(1, Ordering::SeqCst); }
                    Ok(_) => { stats.replied.fetch_add(1, Ordering::SeqCst); }
                },
                _ = release.wait_for(|v| *v) => {}
            }
        });
    }
    set
}

/// A PORT_PLEASE2 that must answer `want` within the client's timeout;
/// retried once (a lookup racing a flood may, rarely, be the oldest pending
/// connection when the table overflows). Returns the latency and attempts.
async fn lookup_port(c: &Client, name: &str, want: u16) -> Result<(Duration, u32)> {
    let t = Instant::now();
    let mut last = None;
    for attempt in 1..=2 {
        match c.port_please(name).await {
            Ok(Some(info)) if info.port == want => return Ok((t.elapsed(), attempt)),
            Ok(other) => bail!("PORT_PLEASE2 {name}: got {other:?}, want port {want}"),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!("PORT_PLEASE2 {name} failed twice: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_flood_keeps_service_and_registrations() -> Result<()> {
    const FLOOD: usize = 3000;
    const WAVE2: usize = 1000;
    const CAP: usize = 256;
    let started = Instant::now();
    let mut d = start_epmdx(&["-packet_timeout", "60"], &[("EPMDX_MAX_PENDING", "256")]);
    let addr = d.addr();
    let pid = d.pid().context("daemon pid")?;
    // "Promptly": a lookup must answer within 5 s even under the flood.
    let c = Client::new(addr).with_timeout(Duration::from_secs(5));

    let mut regs = Vec::new();
    for i in 0..5u16 {
        regs.push(c.register(&alive2(&format!("live{i}"), 41000 + i)).await?);
    }

    let (release_tx, release_rx) = watch::channel(false);
    let stats = Arc::new(FloodStats::default());
    let mut wave1 = spawn_flood(addr, 0..FLOOD, stats.clone(), release_rx.clone());
    eventually(
        "all flood connections opened",
        Duration::from_secs(60),
        || {
            let s = stats.clone();
            async move { FloodStats::get(&s.opened) + FloodStats::get(&s.connect_failed) == FLOOD }
        },
    )
    .await?;
    ensure!(
        FloodStats::get(&stats.connect_failed) == 0,
        "{} flood connects failed: the daemon stopped accepting",
        FloodStats::get(&stats.connect_failed)
    );
    // Evict-oldest: at most CAP of them may stay open.
    eventually(
        "the daemon closes all but the newest pending connections",
        Duration::from_secs(30),
        || {
            let s = stats.clone();
            async move { FloodStats::get(&s.closed_by_daemon) >= FLOOD - CAP }
        },
    )
    .await?;
    // And its descriptors stay bounded: pending cap + registrations + a
    // reserve for listeners, stdio and the runtime.
    eventually(
        "daemon descriptors bounded by the pending cap",
        SETTLE,
        || async move { fd_count(pid).is_some_and(|n| n <= CAP + 5 + 64) },
    )
    .await
    .with_context(|| format!("daemon holds {:?} descriptors", fd_count(pid)))?;

    // Fresh lookups, with the flood's survivors still held open.
    let mut worst = Duration::ZERO;
    let mut retries = 0;
    for _round in 0..3 {
        for i in 0..5u16 {
            let (lat, attempts) = lookup_port(&c, &format!("live{i}"), 41000 + i).await?;
            worst = worst.max(lat);
            retries += attempts - 1;
        }
    }
    let listed: BTreeSet<_> = names(&c).await?.into_iter().collect();
    for i in 0..5u16 {
        ensure!(
            listed.contains(&(format!("live{i}"), 41000 + i)),
            "live{i} missing from NAMES after the flood: {listed:?}"
        );
    }
    // A new registration still succeeds.
    let fresh = tokio::time::timeout(Duration::from_secs(5), c.register(&alive2("fresh", 41100)))
        .await
        .map_err(|_| anyhow!("a new ALIVE2 was not answered within 5 s under the flood"))??;
    ensure!(port2(&c, "fresh").await? == Some(41100));
    // The extension answers too.
    let rec = c
        .port_please3("live0", &[])
        .await?
        .context("PORT_PLEASE3 live0 missed")?;
    ensure!(rec.legacy && rec.transports[0].port == 41000, "{rec:?}");

    // Second wave, concurrent with lookups. These queue behind up to WAVE2
    // connections in the listen backlog, so they get the default 10 s
    // budget (and one retry) rather than 5 s.
    let mut wave2 = spawn_flood(
        addr,
        FLOOD..FLOOD + WAVE2,
        stats.clone(),
        release_rx.clone(),
    );
    let mut lookups = JoinSet::new();
    let mut worst_concurrent = Duration::ZERO;
    for j in 0..40u16 {
        let c = client(&d);
        lookups.spawn(async move {
            let i = j % 5;
            lookup_port(&c, &format!("live{i}"), 41000 + i).await
        });
    }
    while let Some(r) = lookups.join_next().await {
        let (lat, attempts) = r??;
        worst_concurrent = worst_concurrent.max(lat);
        retries += attempts - 1;
    }
    eventually("second wave opened", Duration::from_secs(60), || {
        let s = stats.clone();
        async move {
            FloodStats::get(&s.opened) + FloodStats::get(&s.connect_failed) == FLOOD + WAVE2
        }
    })
    .await?;
    ensure!(FloodStats::get(&stats.connect_failed) == 0);
    // Once the daemon has accepted (and evicted) the second wave too, the
    // backlog is empty again and lookups must be prompt once more.
    eventually(
        "the daemon evicts the second wave",
        Duration::from_secs(30),
        || {
            let s = stats.clone();
            async move { FloodStats::get(&s.closed_by_daemon) >= FLOOD + WAVE2 - CAP }
        },
    )
    .await?;
    ensure!(
        FloodStats::get(&stats.replied) == 0,
        "the daemon replied to {} incomplete requests",
        FloodStats::get(&stats.replied)
    );

    // Every registration survived, with its connection.
    for (i, r) in regs.iter_mut().enumerate() {
        ensure!(
            reg_open(r).await,
            "registration live{i} lost its connection"
        );
        let (lat, attempts) = lookup_port(&c, &format!("live{i}"), 41000 + i as u16).await?;
        worst = worst.max(lat);
        retries += attempts - 1;
    }
    let listed: BTreeSet<_> = names(&c).await?.into_iter().map(|(n, _)| n).collect();
    let want: BTreeSet<_> = (0..5)
        .map(|i| format!("live{i}"))
        .chain(["fresh".to_string()])
        .collect();
    ensure!(listed == want, "NAMES after the flood: {listed:?}");
    ensure!(!d.has_exited(), "the daemon died");

    let _ = release_tx.send(true);
    while wave1.join_next().await.is_some() {}
    while wave2.join_next().await.is_some() {}
    drop(fresh);
    eprintln!(
        "slowloris: {} connections, {} closed by the daemon, worst lookup {worst:?} \
         (during the second wave {worst_concurrent:?}), {retries} retries, {:?} total",
        FLOOD + WAVE2,
        FloodStats::get(&stats.closed_by_daemon),
        started.elapsed()
    );
    ensure!(
        worst < Duration::from_secs(5),
        "worst lookup latency {worst:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Garbage storm
// ---------------------------------------------------------------------------

/// What the daemon must do with one piece of garbage.
#[derive(Debug)]
enum Expect {
    /// Close without sending a byte (the C epmd's answer to bad input).
    Silent,
    /// Reply starting with these bytes, then close once we half-close.
    ReplyPrefix(Vec<u8>),
    /// Anything, but close in bounded time.
    Any,
}

/// One garbage request: bytes, whether we half-close after sending, and
/// what must happen. `drop_now` connections are aborted without waiting.
struct Garbage {
    kind: usize,
    bytes: Vec<u8>,
    half_close: bool,
    drop_now: bool,
    expect: Expect,
}

const GARBAGE_KINDS: usize = 17;

fn garbage(rng: &mut Rng, kind: usize) -> Garbage {
    let mut g = Garbage {
        kind,
        bytes: Vec::new(),
        half_close: false,
        drop_now: false,
        expect: Expect::Silent,
    };
    match kind {
        // Random bytes, then EOF.
        0 => {
            let n = 1 + rng.below(300);
            g.bytes = rng.bytes(n);
            g.half_close = true;
            g.expect = Expect::Any;
        }
        // Oversize length headers.
        1 => {
            g.bytes = vec![0xff, 0xff];
            let n = rng.below(100);
            g.bytes.extend(rng.bytes(n));
        }
        2 => {
            g.bytes = ((epmd_proto::limits::MAX_PACKET + 1) as u16)
                .to_be_bytes()
                .to_vec();
            let n = rng.below(100);
            g.bytes.extend(rng.bytes(n));
        }
        // Zero length.
        3 => {
            g.bytes = vec![0, 0];
            let n = rng.below(10);
            g.bytes.extend(rng.bytes(n));
        }
        // ALIVE2 truncated inside a complete frame.
        4 => g.bytes = frame::encode(&[code::ALIVE2_REQ, 0x9c, 0x40, 77]),
        // ALIVE2 whose name length runs past the frame.
        5 => {
            let mut b = vec![code::ALIVE2_REQ, 0x9c, 0x40, 77, 0, 0, 6, 0, 5, 0x01, 0xf4];
            b.extend_from_slice(b"ab\0\0");
            g.bytes = frame::encode(&b);
        }
        // ALIVE2 with a NUL inside the name.
        6 => g.bytes = alive2("li\0ve0", 40000).encode(),
        // PORT_PLEASE2 with a NUL inside the name, and with an empty name.
        7 => g.bytes = legacy::encode_port_please2(b"li\0ve0"),
        8 => g.bytes = frame::encode(&[code::PORT_PLEASE2_REQ]),
        // Unknown command.
        9 => g.bytes = frame::encode(&[1, 2, 3]),
        // ALIVE3 announcing 255 transports and carrying none.
        10 => {
            g.bytes = frame::encode(&[code::ALIVE3_REQ, 77, 0, 6, 0, 6, 0, 1, b'z', 255]);
        }
        // PORT_PLEASE3 announcing 200 protocols, truncated.
        11 => g.bytes = frame::encode(&[code::PORT_PLEASE3_REQ, 200, 8, b'i', b'n']),
        // UNREG3 from a connection that registered nothing.
        12 => {
            g.bytes = ext::Unreg3Req { proto: b"inet_tcp" }.encode();
            g.expect =
                Expect::ReplyPrefix(ext::encode_unreg3_reply(Status::NotRegistered).to_vec());
        }
        // Duplicate ALIVE2 of a live name: refused, held until we close.
        13 => {
            let name = format!("live{}", rng.below(5));
            g.bytes = alive2(&name, 40000).encode();
            g.half_close = true;
            g.expect = Expect::ReplyPrefix(vec![code::ALIVE2_X_RESP, 1]);
        }
        // A request cut short, then EOF.
        14 => {
            g.bytes = vec![0, 50, code::PORT_PLEASE2_REQ, b'l'];
            g.half_close = true;
        }
        // Random bytes, then an abortive close without waiting.
        15 => {
            let n = 1 + rng.below(300);
            g.bytes = rng.bytes(n);
            g.drop_now = true;
            g.expect = Expect::Any;
        }
        // A maximal frame followed by 16 KiB of junk.
        _ => {
            g.bytes = (epmd_proto::limits::MAX_PACKET as u16)
                .to_be_bytes()
                .to_vec();
            g.bytes.extend(rng.bytes(16 * 1024));
            g.expect = Expect::Any;
        }
    }
    g
}

async fn throw_garbage(addr: SocketAddr, g: Garbage) -> Result<()> {
    let mut conn = Raw::connect(addr).await?;
    conn.send(&g.bytes).await?;
    if g.drop_now {
        return Ok(());
    }
    if g.half_close {
        let _ = conn.stream.shutdown().await;
    }
    let got = conn.until_closed(ANSWER).await.with_context(|| {
        format!(
            "garbage kind {} ({:02x?}...)",
            g.kind,
            &g.bytes[..g.bytes.len().min(16)]
        )
    })?;
    match g.expect {
        Expect::Silent => ensure!(
            got.is_empty(),
            "garbage kind {} got a reply {got:02x?}",
            g.kind
        ),
        Expect::ReplyPrefix(p) => ensure!(
            got.starts_with(&p),
            "garbage kind {}: reply {got:02x?}, want prefix {p:02x?}",
            g.kind
        ),
        Expect::Any => {}
    }
    Ok(())
}

/// One randomly chosen lookup whose answer is known exactly.
async fn checked_lookup(c: &Client, rng: &mut Rng) -> Result<()> {
    match rng.below(6) {
        0 | 1 => {
            let i = rng.below(5) as u16;
            let got = port2(c, &format!("live{i}")).await?;
            ensure!(got == Some(42000 + i), "PORT_PLEASE2 live{i}: {got:?}");
        }
        2 => {
            let got = port2(c, "xs").await?;
            ensure!(got == Some(42010), "PORT_PLEASE2 xs: {got:?}");
            ensure!(
                port2(c, "nobody").await?.is_none(),
                "PORT_PLEASE2 nobody hit"
            );
        }
        3 => {
            let listed: BTreeSet<_> = names(c).await?.into_iter().collect();
            for i in 0..5u16 {
                ensure!(
                    listed.contains(&(format!("live{i}"), 42000 + i)),
                    "NAMES lacks live{i}: {listed:?}"
                );
            }
            ensure!(listed.contains(&("xs".into(), 42010)), "NAMES lacks xs");
        }
        4 => {
            let rec = c
                .port_please3("xs", &["inet_tls"])
                .await?
                .context("PORT_PLEASE3 xs missed")?;
            ensure!(
                triples(&rec) == [("inet_tls".into(), 42011, String::new())],
                "PORT_PLEASE3 xs [inet_tls]: {rec:?}"
            );
        }
        _ => {
            let n3 = c.names3().await?;
            let xs = find(&n3, "xs").context("NAMES3 lacks xs")?;
            ensure!(xs.transports.len() == 2 && !xs.legacy, "NAMES3 xs: {xs:?}");
            for i in 0..5 {
                let r = find(&n3, &format!("live{i}")).context("NAMES3 lacks a live node")?;
                ensure!(r.legacy, "{r:?}");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_storm_never_breaks_lookups() -> Result<()> {
    const WORKERS: usize = 24;
    const ROUNDS: usize = 60;
    let started = Instant::now();
    let mut d = start_epmdx(&[], &[]);
    let addr = d.addr();
    let c = client(&d);
    let mut regs = Vec::new();
    for i in 0..5u16 {
        regs.push(c.register(&alive2(&format!("live{i}"), 42000 + i)).await?);
    }
    let mut xs = c
        .register_ext(
            NodeSpec::otp25("xs"),
            &[tr("inet_tcp", 42010, ""), tr("inet_tls", 42011, "")],
        )
        .await?;

    let seed = std::env::var("EPMDX_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("garbage storm seed {seed} (set EPMDX_STORM_SEED to replay)");

    let mut storm = JoinSet::new();
    for w in 0..WORKERS {
        let mut rng = Rng::new(seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        storm.spawn(async move {
            for round in 0..ROUNDS {
                // Every kind is thrown by every worker at least once.
                let kind = if round < GARBAGE_KINDS {
                    (round + w) % GARBAGE_KINDS
                } else {
                    rng.below(GARBAGE_KINDS)
                };
                throw_garbage(addr, garbage(&mut rng, kind)).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let done = Arc::new(AtomicUsize::new(0));
    let mut checkers = JoinSet::new();
    for k in 0..4u64 {
        let (c, done, stop_rx) = (c.clone(), done.clone(), stop_rx.clone());
        let mut rng = Rng::new(seed.wrapping_add(1000 + k));
        checkers.spawn(async move {
            while !*stop_rx.borrow() {
                checked_lookup(&c, &mut rng).await?;
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = storm.join_next().await {
        if let Err(e) = r? {
            failures.push(format!("{e:#}"));
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = checkers.join_next().await {
        if let Err(e) = r? {
            failures.push(format!("lookup: {e:#}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} failures (seed {seed}), first: {}",
        failures.len(),
        failures[0]
    );
    let lookups = done.load(Ordering::SeqCst);
    ensure!(lookups >= 20, "only {lookups} lookups ran during the storm");

    // Afterwards: daemon alive, every registration intact, nothing stray.
    ensure!(!d.has_exited(), "the daemon died");
    for (i, r) in regs.iter_mut().enumerate() {
        ensure!(
            reg_open(r).await,
            "registration live{i} lost its connection"
        );
    }
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), xs.closed())
            .await
            .is_err(),
        "xs lost its connection"
    );
    let want: BTreeSet<_> = (0..5u16)
        .map(|i| (format!("live{i}"), 42000 + i))
        .chain([("xs".to_string(), 42010)])
        .collect();
    eventually("NAMES lists exactly the live nodes", SETTLE, || {
        let (c, want) = (c.clone(), want.clone());
        async move {
            names(&c)
                .await
                .is_ok_and(|l| l.into_iter().collect::<BTreeSet<_>>() == want)
        }
    })
    .await?;
    let rec = c.port_please3("xs", &[]).await?.context("xs gone")?;
    ensure!(
        triples(&rec)
            == [
                ("inet_tcp".into(), 42010, String::new()),
                ("inet_tls".into(), 42011, String::new())
            ],
        "xs after the storm: {rec:?}"
    );
    eprintln!(
        "garbage storm: {} garbage connections, {lookups} checked lookups, {:?}",
        WORKERS * ROUNDS,
        started.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Packet timeout
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_timeout_closes_idle_but_not_registrations() -> Result<()> {
    let d = start_epmdx(&["-packet_timeout", "1"], &[]);
    let addr = d.addr();
    let c = client(&d);
    let mut reg = c.register(&alive2("idlereg", 43000)).await?;
    let mut xreg = c
        .register_ext(NodeSpec::otp25("idleext"), &[tr("inet_tcp", 43001, "")])
        .await?;
    let registered_at = Instant::now();

    // An idle connection and a half-sent request are both closed, silently,
    // a little after the timeout (the C epmd allows whole seconds).
    let t0 = Instant::now();
    let mut idle = Raw::connect(addr).await?;
    let mut partial = Raw::connect(addr).await?;
    partial.send(&[0, 10, code::PORT_PLEASE2_REQ, b'i']).await?;
    let (a, b) = tokio::join!(
        idle.until_closed(Duration::from_secs(15)),
        partial.until_closed(Duration::from_secs(15))
    );
    let closed_after = t0.elapsed();
    ensure!(
        a?.is_empty() && b?.is_empty(),
        "timed-out connections got a reply"
    );
    ensure!(
        closed_after >= Duration::from_millis(900),
        "idle connection closed after only {closed_after:?}, before the 1 s timeout"
    );

    // A client that trickles its request byte by byte, each gap well under
    // the limit, is served even though the whole request takes longer.
    let mut slow = Raw::connect(addr).await?;
    let req = legacy::encode_port_please2(b"idlereg");
    let t1 = Instant::now();
    for byte in &req {
        slow.send(&[*byte]).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let reply = slow.until_closed(ANSWER).await?;
    let info = legacy::PortInfo::decode_reply(&reply)?.context("trickled lookup missed")?;
    ensure!(info.port == 43000, "{info:?}");
    ensure!(t1.elapsed() > Duration::from_secs(2));

    // The registrations have now been idle longer than the timeout (plus
    // its one-second grace), twice over.
    let idle_for = Duration::from_millis(4500);
    if let Some(rest) = idle_for.checked_sub(registered_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    ensure!(
        reg_open(&mut reg).await,
        "the daemon closed an idle ALIVE2 registration"
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), xreg.closed())
            .await
            .is_err(),
        "the daemon closed an idle ALIVE3 registration"
    );
    ensure!(port2(&c, "idlereg").await? == Some(43000));
    ensure!(port2(&c, "idleext").await? == Some(43001));
    // And the extended registration's connection still serves follow-ups.
    xreg.add(&[tr("inet_tls", 43002, "")]).await?;
    let rec = c
        .port_please3("idleext", &["inet_tls"])
        .await?
        .context("idleext")?;
    ensure!(triples(&rec) == [("inet_tls".into(), 43002, String::new())]);
    eprintln!("packet timeout: idle connections closed after {closed_after:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Only the owner's connection ends a registration
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_connection_ends_a_registration() -> Result<()> {
    let mut d = start_epmdx(&[], &[]);
    let addr = d.addr();
    let c = client(&d);

    let mut victim = c.register(&alive2("victim", 44001)).await?;
    let mut xvictim = c
        .register_ext(
            NodeSpec::otp25("xvictim"),
            &[tr("inet_tcp", 44002, ""), tr("inet_tls", 44003, "")],
        )
        .await?;
    let dump = c.dump3().await?;
    let creation_of = |d: &epmd_client::Dump3, n: &str| {
        d.live
            .iter()
            .find(|(_, r)| r.name == n.as_bytes())
            .map(|(c, _)| *c)
    };
    let (cv, cx) = (creation_of(&dump, "victim"), creation_of(&dump, "xvictim"));
    ensure!(cv.is_some() && cx.is_some(), "DUMP3: {dump:?}");

    let intact = |c: Client| async move {
        ensure!(port2(&c, "victim").await? == Some(44001), "victim lost");
        ensure!(port2(&c, "xvictim").await? == Some(44002), "xvictim lost");
        let rec = c.port_please3("xvictim", &[]).await?.context("xvictim")?;
        ensure!(
            triples(&rec)
                == [
                    ("inet_tcp".into(), 44002, String::new()),
                    ("inet_tls".into(), 44003, String::new())
                ],
            "xvictim transports changed: {rec:?}"
        );
        Ok::<_, anyhow::Error>(())
    };

    // (a) Another registered client sends bytes on its own socket: only it
    // is unregistered (the C epmd's rule), nobody else.
    let mut other = Raw::connect(addr).await?;
    other.send(&alive2("other", 44004).encode()).await?;
    ensure!(other.read_n(6).await?[..2] == [code::ALIVE2_X_RESP, 0]);
    other.send(b"\x00\x01n garbage").await?;
    other.until_closed(ANSWER).await?;
    eventually("other unregistered", SETTLE, || {
        let c = c.clone();
        async move { port2(&c, "other").await.is_ok_and(|p| p.is_none()) }
    })
    .await?;
    intact(c.clone())
        .await
        .context("after (a) bytes on another registration")?;

    // (b) Duplicate ALIVE2 for the live names, from other connections:
    // refused (result 1), and closing those connections removes nothing.
    for name in ["victim", "xvictim"] {
        let mut dup = Raw::connect(addr).await?;
        dup.send(&alive2(name, 45000).encode()).await?;
        let r = dup.read_n(6).await?;
        ensure!(
            r == [code::ALIVE2_X_RESP, 1, 0, 0, 0, 99],
            "duplicate ALIVE2 {name}: {r:?}"
        );
        ensure!(dup.still_open(Duration::from_millis(200)).await);
        drop(dup);
        let mut dup5 = Raw::connect(addr).await?;
        let mut req = alive2(name, 45000);
        req.high = 5;
        dup5.send(&req.encode()).await?;
        let r = dup5.read_n(4).await?;
        ensure!(
            r == [code::ALIVE2_RESP, 1, 0, 99],
            "duplicate v5 ALIVE2 {name}: {r:?}"
        );
        let _ = dup5.stream.shutdown().await;
        dup5.until_closed(ANSWER).await?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    intact(c.clone())
        .await
        .context("after (b) duplicate ALIVE2")?;

    // (c) STOP without -relaxed_command_check: closed without a reply.
    for name in ["victim", "xvictim"] {
        let r = c.stop(name).await?;
        ensure!(r.is_empty(), "STOP {name} answered {r:?} in strict mode");
    }
    intact(c.clone()).await.context("after (c) STOP")?;
    // KILL is refused while nodes live (strict mode).
    let r = c.kill().await?;
    ensure!(r == b"NO", "KILL with live nodes answered {r:?}");
    ensure!(!d.has_exited(), "KILL stopped the daemon with live nodes");

    // (d) ALIVE3 from another connection claiming either name.
    for name in ["victim", "xvictim"] {
        match c
            .register_ext(NodeSpec::otp25(name), &[tr("uds", 0, "/tmp/x.sock")])
            .await
        {
            Err(ClientError::Refused(Status::NameInUse)) => {}
            other => bail!("ALIVE3 claiming {name}: {other:?}"),
        }
    }
    intact(c.clone()).await.context("after (d) ALIVE3 claims")?;

    // (e) UNREG3 from a connection that owns nothing.
    for proto in ["inet_tcp", "inet_tls", "uds"] {
        let r = exchange(
            addr,
            &ext::Unreg3Req {
                proto: proto.as_bytes(),
            }
            .encode(),
        )
        .await?;
        ensure!(
            r == ext::encode_unreg3_reply(Status::NotRegistered),
            "UNREG3 {proto} from a stranger: {r:?}"
        );
    }
    intact(c.clone())
        .await
        .context("after (e) UNREG3 from a stranger")?;

    // (f) A registered extended node acting on someone else's name over its
    // own connection: follow-up ALIVE3 naming the victims is a mismatch;
    // its UNREG3 only ever touches its own transports.
    let mut xother = Raw::connect(addr).await?;
    let (st, _) = xother
        .alive3(&alive3("xother", &[tr("inet_tcp", 44005, "")]))
        .await?;
    ensure!(st == Status::Ok, "xother: {st:?}");
    for name in ["victim", "xvictim"] {
        let (st, _) = xother
            .alive3(&alive3(name, &[tr("inet6_tcp", 44006, "")]))
            .await?;
        ensure!(
            st == Status::NodeMismatch,
            "follow-up ALIVE3 naming {name}: {st:?}"
        );
    }
    ensure!(xother.unreg3("inet_tls").await? == Status::NoSuchTransport);
    ensure!(xother.unreg3("inet_tcp").await? == Status::Ok);
    ensure!(
        port2(&c, "xother").await?.is_none(),
        "xother kept its TCP port"
    );
    intact(c.clone())
        .await
        .context("after (f) follow-ups on another node")?;
    // Anything else on a registration connection ends that registration only.
    xother.send(&alive2("xvictim", 44007).encode()).await?;
    xother.until_closed(ANSWER).await?;
    eventually("xother unregistered", SETTLE, || {
        let c = c.clone();
        async move {
            c.port_please3("xother", &[])
                .await
                .is_ok_and(|r| r.is_none())
        }
    })
    .await?;
    intact(c.clone()).await.context("after (f) xother closed")?;

    // Nothing above touched the victims' connections or creations.
    ensure!(
        reg_open(&mut victim).await,
        "victim's connection was closed"
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), xvictim.closed())
            .await
            .is_err(),
        "xvictim's connection was closed"
    );
    let dump = c.dump3().await?;
    ensure!(creation_of(&dump, "victim") == cv && creation_of(&dump, "xvictim") == cx);

    // Closing its own connection is what removes each.
    victim.close();
    eventually("victim unregistered on close", SETTLE, || {
        let c = c.clone();
        async move { port2(&c, "victim").await.is_ok_and(|p| p.is_none()) }
    })
    .await?;
    ensure!(port2(&c, "xvictim").await? == Some(44002));
    xvictim.close();
    eventually("xvictim unregistered on close", SETTLE, || {
        let c = c.clone();
        async move {
            c.port_please3("xvictim", &[])
                .await
                .is_ok_and(|r| r.is_none())
                && c.names3().await.is_ok_and(|n| n.nodes.is_empty())
        }
    })
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Capacity
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_refuses_cleanly_and_recovers() -> Result<()> {
    const MAX: usize = 50;
    let d = start_epmdx(&[], &[("EPMDX_MAX_NODES", "50")]);
    let addr = d.addr();
    let c = client(&d);
    let mut legacy_regs = Vec::new();
    let mut ext_regs = Vec::new();
    for i in 0..MAX / 2 {
        legacy_regs.push(
            c.register(&alive2(&format!("cl{i}"), 46000 + i as u16))
                .await?,
        );
        ext_regs.push(
            c.register_ext(
                NodeSpec::otp25(&format!("cx{i}")),
                &[tr("inet_tcp", 47000 + i as u16, "")],
            )
            .await?,
        );
    }

    // Full: the 51st ALIVE2 gets result 1, in either reply form.
    let mut over = Raw::connect(addr).await?;
    over.send(&alive2("over", 46999).encode()).await?;
    let r = over.read_n(6).await?;
    ensure!(
        r == [code::ALIVE2_X_RESP, 1, 0, 0, 0, 99],
        "51st ALIVE2: {r:?}"
    );
    let mut over5 = Raw::connect(addr).await?;
    let mut req = alive2("over5", 46998);
    req.high = 5;
    over5.send(&req.encode()).await?;
    let r = over5.read_n(4).await?;
    ensure!(r == [code::ALIVE2_RESP, 1, 0, 99], "51st v5 ALIVE2: {r:?}");
    // ... and the 51st ALIVE3 gets Capacity.
    match c
        .register_ext(NodeSpec::otp25("overx"), &[tr("inet_tcp", 47999, "")])
        .await
    {
        Err(ClientError::Refused(Status::Capacity)) => {}
        other => bail!("51st ALIVE3: {other:?}"),
    }

    // Lookups still work.
    ensure!(port2(&c, "cl0").await? == Some(46000));
    ensure!(port2(&c, "cx24").await? == Some(47024));
    ensure!(port2(&c, "over").await?.is_none());
    ensure!(names(&c).await?.len() == MAX, "NAMES at capacity");
    ensure!(c.names3().await?.nodes.len() == MAX, "NAMES3 at capacity");

    // Closing one legacy registration makes room for one more.
    legacy_regs.remove(7).close();
    eventually("cl7 unregistered", SETTLE, || {
        let c = c.clone();
        async move { names(&c).await.is_ok_and(|n| n.len() == MAX - 1) }
    })
    .await?;
    let _again = c.register(&alive2("again", 46500)).await?;
    ensure!(port2(&c, "again").await? == Some(46500));
    match c
        .register_ext(NodeSpec::otp25("overx"), &[tr("inet_tcp", 47999, "")])
        .await
    {
        Err(ClientError::Refused(Status::Capacity)) => {}
        other => bail!("ALIVE3 at capacity again: {other:?}"),
    }
    // Closing an extended one makes room for an extended one.
    ext_regs.remove(3).close();
    eventually("cx3 unregistered", SETTLE, || {
        let c = c.clone();
        async move { c.names3().await.is_ok_and(|n| n.nodes.len() == MAX - 1) }
    })
    .await?;
    let _againx = c
        .register_ext(NodeSpec::otp25("againx"), &[tr("inet_tls", 47500, "")])
        .await?;
    ensure!(c.names3().await?.nodes.len() == MAX);
    // The refused connections held nothing.
    ensure!(port2(&c, "over").await?.is_none() && port2(&c, "over5").await?.is_none());
    drop((over, over5));
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. A low open-file limit
// ---------------------------------------------------------------------------

/// epmdx started through `sh -c 'ulimit -n N; exec epmdx -port P'`, so its
/// hard descriptor limit is N. Killed by PID on drop.
struct LimitedDaemon {
    child: std::process::Child,
    port: u16,
}

impl LimitedDaemon {
    fn start(nofile: u32) -> Result<Self> {
        for _ in 0..10 {
            let port = test_support::free_port();
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -n {nofile} && exec \"$0\" -port \"$1\""))
                .arg(epmdx_bin())
                .arg(port.to_string())
                .env_remove("EPMDX_MAX_PENDING")
                .env_remove("EPMDX_MAX_NODES")
                .env_remove("ERL_EPMD_ADDRESS")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            let mut exited = None;
            let up = test_support::wait_until(Duration::from_secs(10), || {
                if let Ok(Some(st)) = child.try_wait() {
                    exited = Some(st);
                    return true;
                }
                test_support::names_answers(port)
            });
            match exited {
                // "Already running": the port was taken meanwhile; retry.
                Some(st) if st.success() => continue,
                Some(st) => bail!("epmdx under ulimit -n {nofile} exited: {st}"),
                None if up => return Ok(Self { child, port }),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("epmdx under ulimit -n {nofile} did not answer NAMES");
                }
            }
        }
        bail!("no free port after 10 tries")
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for LimitedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_fd_limit_keeps_serving() -> Result<()> {
    const NOFILE: usize = 256;
    const FLOOD: usize = 1500;
    let mut d = LimitedDaemon::start(NOFILE as u32)?;
    let addr = d.addr();
    let pid = d.child.id();
    // Lookups queue behind the flood in the listen backlog; this test is
    // about staying up and correct, so allow a loaded machine 20 s.
    let c = Client::new(addr).with_timeout(Duration::from_secs(20));

    // Register until the daemon says it is full: that must happen well
    // before the descriptors run out, and with a clean refusal.
    let mut regs = Vec::new();
    let full_at = loop {
        let i = regs.len();
        ensure!(
            i < NOFILE,
            "{i} registrations accepted under a {NOFILE}-descriptor limit"
        );
        match c
            .register(&alive2(&format!("n{i}"), 30000 + i as u16))
            .await
        {
            Ok(r) => regs.push(r),
            Err(ClientError::Refused(_)) => break i,
            Err(e) => bail!("registration {i} failed instead of being refused: {e}"),
        }
    };
    ensure!(
        full_at >= NOFILE / 4,
        "only {full_at} registrations under {NOFILE} descriptors"
    );

    // A flood of idle connections on top.
    let (release_tx, release_rx) = watch::channel(false);
    let stats = Arc::new(FloodStats::default());
    let mut flood = spawn_flood(addr, 0..FLOOD, stats.clone(), release_rx);
    eventually("flood opened", Duration::from_secs(60), || {
        let s = stats.clone();
        async move { FloodStats::get(&s.opened) + FloodStats::get(&s.connect_failed) == FLOOD }
    })
    .await?;
    let t = Instant::now();
    for i in [0, full_at / 2, full_at - 1] {
        let got = port2(&c, &format!("n{i}")).await?;
        ensure!(
            got == Some(30000 + i as u16),
            "n{i} under the flood: {got:?}"
        );
    }
    let listed = names(&c).await?;
    ensure!(
        listed.len() == full_at,
        "NAMES lists {} of {full_at}",
        listed.len()
    );
    let lookup_time = t.elapsed();
    ensure!(
        fd_count(pid).is_some_and(|n| n <= NOFILE),
        "descriptor count {:?}",
        fd_count(pid)
    );
    for (i, r) in regs.iter_mut().enumerate().step_by(10) {
        ensure!(reg_open(r).await, "registration n{i} lost its connection");
    }
    ensure!(d.child.try_wait()?.is_none(), "the daemon died");
    let _ = release_tx.send(true);
    while flood.join_next().await.is_some() {}
    eprintln!(
        "low fd limit: {full_at} registrations before refusal, lookups under a {FLOOD}-connection \
         flood took {lookup_time:?}"
    );
    Ok(())
}
