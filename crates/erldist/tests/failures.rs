//! Failures end in a clear error and a closed connection, never a panic or
//! a hang: wrong cookies both ways (against a real `erl`), a name mismatch,
//! missing mandatory flags, garbage during the handshake, and the
//! pre-authentication bounds (pending handshakes, failed handshakes per
//! address, oversize handshake frames).
//!
//! Hand-driven handshakes use `dist_proto::Connector` over a raw tokio
//! socket; after each abuse the node must still answer a ping.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dist_proto::{flags, Connector, Handshake, HandshakeError, Stage};
use erldist::NodeError;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// "At once": well under any handshake timeout these tests configure.
const PROMPT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// 6. Handshake failures
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_cookie_both_directions() {
    let d = daemon();
    let mut e = erl(&d, "cookie", COOKIE);
    let erl_node = e.node().to_owned();
    let node = start(config(&d, "cookie", "not-the-cookie")).await;

    // Rust -> Erlang: ping is false, connect is a handshake error.
    let t0 = Instant::now();
    assert!(!within(LONG, "ping with a wrong cookie", node.ping(&erl_node)).await);
    let err = within(LONG, "connect with a wrong cookie", node.connect(&erl_node))
        .await
        .expect_err("connect with a wrong cookie");
    eprintln!("connect error: {err}");
    assert!(
        matches!(err, NodeError::CookieMismatch { .. }),
        "expected a cookie mismatch, got {err:?}"
    );
    assert!(err.to_string().contains("cookie mismatch"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(node.connections().is_empty());

    // Erlang -> Rust: pang.
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", node.name())),
        "pang"
    );
    assert_eq!(eval(&mut e, "nodes(connected)."), "[]");

    // Both still serve their own cookie.
    assert_serves(&d, &node, "cookie_c1", "not-the-cookie").await;
    let ok = start(config(&d, "cookie_ok", COOKIE)).await;
    assert!(within(LONG, "ping with the right cookie", ok.ping(&erl_node)).await);
    node.stop();
    ok.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn name_mismatch_is_detected() {
    let d = daemon();
    let node = start(config(&d, "named", COOKIE)).await;
    let wrong = format!("someone_else_{}@localhost", d.port);
    let probe = format!("probe_{}@localhost", d.port);
    let r = raw_handshake(listen_addr(&node), probe_config(&probe, COOKIE), &wrong).await;
    match r {
        Err(HandshakeError::NameMismatch { dialled, got }) => {
            assert_eq!(dialled, wrong);
            assert_eq!(got, node.name());
        }
        other => panic!("expected NameMismatch, got {other:?}"),
    }
    // The right name with the same configuration works.
    let r = raw_handshake(
        listen_addr(&node),
        probe_config(&probe, COOKIE),
        node.name(),
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert_serves(&d, &node, "named_c", COOKIE).await;
    node.stop();
    assert_no_task_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_mandatory_flags_are_refused() {
    let d = daemon();
    let node = start(config(&d, "flags", COOKIE)).await;
    let probe = format!("probe_{}@localhost", d.port);
    // The digest bit stands for every OTP 25 flag, so it goes too.
    for (what, strip) in [
        (
            "BIG_CREATION",
            flags::BIG_CREATION | flags::MANDATORY_25_DIGEST,
        ),
        ("UNLINK_ID", flags::UNLINK_ID),
        ("V4_NC", flags::V4_NC),
        ("UTF8_ATOMS", flags::UTF8_ATOMS | flags::MANDATORY_25_DIGEST),
    ] {
        let mut cfg = probe_config(&probe, COOKIE);
        cfg.flags &= !strip;
        let mut s = TcpStream::connect(listen_addr(&node)).await.unwrap();
        let c = Connector::new(cfg, node.name(), Instant::now()).unwrap();
        let r = within(15, what, drive_connector(&mut s, c)).await;
        assert!(
            matches!(r, Err(HandshakeError::PeerNotAllowed)),
            "without {what}: expected not_allowed, got {r:?}"
        );
        let closed = wait_closed(&mut s, PROMPT).await;
        assert!(closed.is_some(), "without {what}: socket left open");
    }
    assert_serves(&d, &node, "flags_c", COOKIE).await;
    node.stop();
    assert_no_task_panics();
}

/// Deterministic junk.
fn junk(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The framed send_name a correct initiator sends first.
fn send_name_frame(probe: &str, dialled: &str) -> Vec<u8> {
    let mut c = Connector::new(probe_config(probe, COOKIE), dialled, Instant::now()).unwrap();
    c.poll_transmit().expect("send_name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_during_the_handshake_closes_promptly() {
    let d = daemon();
    let mut cfg = config(&d, "garbage", COOKIE);
    // Long enough that "closed" cannot be the set-up timeout.
    cfg.setup_time = Duration::from_secs(15);
    cfg.admission.max_failures = 1000;
    let node = start(cfg).await;
    let addr = listen_addr(&node);
    let probe = format!("probe_{}@localhost", d.port);
    let name_frame = send_name_frame(&probe, node.name());

    let mut random = vec![0x00, 0x20, b'Z'];
    random.extend(junk(u64::from(d.port), 31 + 64));
    let mut oversize = vec![0xff, 0xff];
    oversize.extend(junk(7, 100));
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("random bytes", random, false),
        ("oversize u16 length", oversize, false),
        ("empty frame", vec![0, 0], false),
        ("unknown tag", vec![0, 3, b'x', b'y', b'z'], false),
        ("short send_name", vec![0, 3, b'N', 0, 0], false),
        (
            "truncated send_name, then close",
            name_frame[..name_frame.len() / 2].to_vec(),
            true,
        ),
        ("connect and close", Vec::new(), true),
    ];
    for (what, bytes, half_close) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        if half_close {
            s.shutdown().await.unwrap();
        }
        let closed = wait_closed(&mut s, PROMPT).await;
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after {PROMPT:?}"));
        eprintln!(
            "{what}: closed after {:?} (reset: {})",
            closed.after, closed.reset
        );
        assert!(closed.got.is_empty(), "{what}: got {:?}", closed.got);
    }

    // Garbage after the challenge, in place of the challenge_reply.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&name_frame).await.unwrap();
    let mut buf = [0u8; 512];
    let n = within(10, "status and challenge", async {
        use tokio::io::AsyncReadExt;
        s.read(&mut buf).await.unwrap()
    })
    .await;
    assert!(n > 0, "no status from the node");
    s.write_all(&[0, 4, b'r', 1, 2, 3]).await.unwrap();
    let closed = wait_closed(&mut s, PROMPT).await;
    assert!(closed.is_some(), "bad challenge_reply: socket left open");

    assert_serves(&d, &node, "garbage_c", COOKIE).await;
    node.stop();
    assert_no_task_panics();
}

// ---------------------------------------------------------------------------
// 7. Pre-authentication bounds
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_handshakes_are_bounded() {
    let d = daemon();
    let mut cfg = config(&d, "pending", COOKIE);
    // Per source: every connection here comes from 127.0.0.1.
    cfg.admission.max_pending_per_source = 8;
    cfg.setup_time = Duration::from_secs(2);
    cfg.admission.max_failures = 1000;
    let node = start(cfg).await;
    let addr = listen_addr(&node);

    // Eight idle connections take every slot...
    let t0 = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // ...so the next ones are closed at once, without a byte.
    for i in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let closed = wait_closed(&mut s, Duration::from_millis(1500))
            .await
            .unwrap_or_else(|| panic!("excess connection {i} was not closed at once"));
        assert!(closed.got.is_empty());
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1900),
        "the excess check outlived the idle timeout ({:?}); the machine is too slow \
         for this test",
        t0.elapsed()
    );
    // The idle ones time out after about setup_time.
    for (i, s) in idle.iter_mut().enumerate() {
        let closed = wait_closed(s, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("idle connection {i} never timed out"));
        assert!(closed.got.is_empty());
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "idle connections closed before setup_time: {waited:?}"
    );
    eprintln!("idle connections closed after {waited:?}");
    // And a legitimate peer gets in again.
    assert_serves(&d, &node, "pending_c", COOKIE).await;
    node.stop();
    assert_no_task_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_cookies_lock_out_per_address_and_name_only() {
    let d = daemon();
    let mut cfg = config(&d, "guess", COOKIE);
    cfg.admission.max_failures = 3;
    cfg.setup_time = Duration::from_secs(10);
    let node = start(cfg).await;
    let addr = listen_addr(&node);
    let probe = format!("probe_{}@localhost", d.port);

    // Before: a silent connection is left to the handshake timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(
        wait_closed(&mut s, Duration::from_millis(300))
            .await
            .is_none(),
        "a fresh connection was closed before any failure"
    );
    drop(s);

    // Three wrong cookies, each one rejected by the digest check.
    for i in 0..3 {
        let r = raw_handshake(addr, probe_config(&probe, "guess"), node.name()).await;
        assert!(
            matches!(
                r,
                Err(HandshakeError::Closed {
                    stage: Stage::ChallengeAck
                })
            ),
            "wrong cookie attempt {i}: {r:?}"
        );
    }

    // A fourth wrong one from the locked-out pair is answered only at the
    // handshake deadline (5 s here), which bounds the guessing rate.
    let t0 = Instant::now();
    let r = raw_handshake(addr, probe_config(&probe, "guess"), node.name()).await;
    let held = t0.elapsed();
    assert!(r.is_err(), "{r:?}");
    eprintln!("locked-out wrong cookie answered after {held:?}");
    assert!(held >= Duration::from_secs(3), "not held: {held:?}");
    // The lockout never refuses a correct digest: the right cookie under
    // the same name, from the same address, gets in.
    let r = raw_handshake(addr, probe_config(&probe, COOKIE), node.name()).await;
    assert!(r.is_ok(), "right cookie after the lockout: {r:?}");
    // Another name on the same address is not locked out at all.
    let c = client(&d, "guess_c", COOKIE).await;
    assert!(within(LONG, "ping from another name", c.ping(node.name())).await);
    c.stop();
    node.stop();
    assert_no_task_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversize_handshake_frame_is_refused() {
    let d = daemon();
    let mut cfg = config(&d, "oversize", COOKIE);
    cfg.setup_time = Duration::from_secs(15);
    cfg.admission.max_failures = 1000;
    let node = start(cfg).await;
    let addr = listen_addr(&node);
    // Just over the 2048-byte limit, and the largest u16: neither waits
    // for (or buffers) the announced body.
    for prefix in [[0x08, 0x01], [0xff, 0xff]] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(b"Nxxxxxxx");
        s.write_all(&bytes).await.unwrap();
        let closed = wait_closed(&mut s, PROMPT)
            .await
            .unwrap_or_else(|| panic!("length {prefix:?}: still open"));
        assert!(closed.got.is_empty());
    }
    assert_serves(&d, &node, "oversize_c", COOKIE).await;
    node.stop();
    assert_no_task_panics();
}
