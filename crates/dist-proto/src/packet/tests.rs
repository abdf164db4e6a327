use std::time::{Duration, Instant};

use erl_term::{DecodeError, Term};

use super::*;

fn nils(n: usize) -> Term {
    Term::List(vec![Term::Nil; n])
}

/// A packet body: 112, the control term, the payload's bytes as given.
fn body(control: &Term, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![PASS_THROUGH];
    b.extend_from_slice(&erl_term::encode(control));
    b.extend_from_slice(payload);
    b
}

fn send_ctrl() -> Term {
    Term::Tuple(vec![Term::Integer(2), Term::atom(""), Term::atom("to")])
}

#[test]
fn encode_then_decode_round_trips() {
    let ctrl = send_ctrl();
    let msg = Term::Tuple(vec![Term::atom("hello"), Term::Integer(-7), nils(3)]);
    for payload in [None, Some(&msg)] {
        let framed = encode(&ctrl, payload);
        let (range, used) = take_frame(&framed, MAX_PACKET).unwrap().unwrap();
        assert_eq!(used, framed.len());
        let p = decode(&framed[range], &DecodeLimits::new()).unwrap();
        assert_eq!(p.control, ctrl);
        assert_eq!(p.payload.as_ref(), payload);
    }
}

#[test]
fn packet_types_other_than_pass_through_are_refused() {
    let l = DecodeLimits::new();
    assert_eq!(decode(&[], &l), Err(PacketError::Empty));
    assert_eq!(decode(&[131, 68, 0], &l), Err(PacketError::DistHeader));
    assert_eq!(decode(&[7, 131, 106], &l), Err(PacketError::UnknownType(7)));
    assert!(matches!(
        decode(&[PASS_THROUGH], &l),
        Err(PacketError::Control(DecodeError::Truncated))
    ));
}

#[test]
fn an_unknown_tag_fails_that_packet_only() {
    let l = DecodeLimits::new();
    // 255 is no tag in any OTP release.
    let err = decode(&body(&send_ctrl(), &[131, 255, 0]), &l).unwrap_err();
    assert_eq!(err, PacketError::Payload(DecodeError::UnknownTag(255)));
    assert!(!err.is_fatal());
    assert!(err.to_string().contains("tag 255"), "{err}");
    // Tag 67 (RECORD_EXT, OTP 29) with a cut-off body fails too, whether
    // or not erl-term knows the tag.
    assert!(decode(&body(&send_ctrl(), &[131, 67, 0]), &l).is_err());
    assert!(decode(&body(&send_ctrl(), &[131, 106]), &l).is_ok());
}

#[test]
fn inflation_is_charged_before_inflating() {
    // 256 Ki of [] compress to a few hundred bytes; the declared size is
    // over a 64 KiB budget, so nothing is inflated.
    let bomb = erl_term::encode_compressed(&nils(256 << 10), 6);
    let b = body(&send_ctrl(), &bomb);
    assert!(b.len() < 2048, "{}", b.len());
    let tight = DecodeLimits::new().with_min_budget(64 << 10);
    let err = decode(&b, &tight).unwrap_err();
    assert!(
        matches!(err, PacketError::Payload(DecodeError::OverBudget(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("memory budget"), "{err}");
    // With room for it, the same packet decodes.
    let roomy = DecodeLimits::new().with_min_budget(64 << 20);
    assert_eq!(decode(&b, &roomy).unwrap().payload, Some(nils(256 << 10)));
}

#[test]
fn honest_uncompressed_terms_fit_the_default_budget() {
    // One term per wire byte, the densest an uncompressed term gets.
    let msg = nils(2 << 20);
    let b = body(&send_ctrl(), &erl_term::encode(&msg));
    assert_eq!(decode(&b, &DecodeLimits::new()).unwrap().payload, Some(msg));
    // A factor below TERM_COST refuses it: the budget is the setting.
    let low = DecodeLimits::new().with_budget_per_byte(16);
    assert!(matches!(
        decode(&b, &low),
        Err(PacketError::Payload(DecodeError::OverBudget(_)))
    ));
}

#[test]
fn control_and_payload_share_one_budget() {
    // The control message costs about 48 KiB, the payload about 24 KiB.
    let big_ctrl = Term::Tuple(vec![Term::Integer(2), nils(1000)]);
    let payload = erl_term::encode(&nils(500));
    let fixed = |b| {
        DecodeLimits::new()
            .with_budget_per_byte(0)
            .with_min_budget(b)
    };
    let both = body(&big_ctrl, &payload);
    assert!(decode(&both, &fixed(100 << 10)).is_ok());
    // 60 KiB: each alone fits, both together do not.
    let err = decode(&both, &fixed(60 << 10)).unwrap_err();
    assert!(
        matches!(err, PacketError::Payload(DecodeError::OverBudget(_))),
        "{err:?}"
    );
    assert!(decode(&body(&big_ctrl, &[]), &fixed(60 << 10)).is_ok());
    assert!(decode(&body(&send_ctrl(), &payload), &fixed(60 << 10)).is_ok());
}

#[test]
fn bignums_are_bounded() {
    // SMALL_BIG_EXT of 255 digit bytes; LARGE_BIG_EXT of 5 MiB, over the
    // default 4 MiB (erts's bound).
    let mut small = vec![131, 110, 255, 0];
    small.extend(std::iter::repeat_n(1u8, 255));
    let l = DecodeLimits::new().with_max_big_bytes(16);
    assert!(matches!(
        decode(&body(&send_ctrl(), &small), &l),
        Err(PacketError::Payload(DecodeError::BigTooLarge(255)))
    ));
    let mut large = vec![131, 111];
    large.extend_from_slice(&(5u32 << 20).to_be_bytes());
    large.push(0);
    large.resize(large.len() + (5 << 20), 1);
    let err = decode(&body(&send_ctrl(), &large), &DecodeLimits::new()).unwrap_err();
    assert!(
        matches!(err, PacketError::Payload(DecodeError::BigTooLarge(_))),
        "{err:?}"
    );
}

#[test]
fn budget_scales_with_the_frame() {
    let l = DecodeLimits::new();
    assert_eq!(l.budget(10), DEFAULT_MIN_BUDGET);
    assert_eq!(l.budget(1 << 20), 64 << 20);
    assert_eq!(l.budget(usize::MAX), usize::MAX);
}

#[test]
fn take_frame_checks_then_parses() {
    assert_eq!(take_frame(&[0, 0, 0], 10), Ok(None));
    assert_eq!(take_frame(&[0, 0, 0, 0, 9], 10), Ok(Some((4..4, 4))));
    assert_eq!(take_frame(&[0, 0, 0, 2, 1], 10), Ok(None));
    assert_eq!(take_frame(&[0, 0, 0, 2, 1, 2, 3], 10), Ok(Some((4..6, 6))));
    // Refused on the prefix alone.
    assert_eq!(
        take_frame(&[0, 0, 0, 11], 10),
        Err(PacketError::TooLarge { len: 11, max: 10 })
    );
    assert_eq!(
        take_frame(&[0xff; 4], MAX_PACKET),
        Err(PacketError::TooLarge {
            len: u64::from(u32::MAX),
            max: MAX_PACKET
        })
    );
}

fn frames(f: &mut Framer) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    while let Some(frame) = f.poll_frame().unwrap() {
        out.push(match frame {
            Frame::Tick => None,
            Frame::Packet(b) => Some(b.to_vec()),
        });
    }
    out
}

#[test]
fn framer_yields_the_same_frames_however_the_bytes_come() {
    let mut stream = TICK.to_vec();
    stream.extend_from_slice(&encode(&send_ctrl(), Some(&nils(5))));
    stream.extend_from_slice(&TICK);
    stream.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
    let mut whole = Framer::new(stream.clone());
    let want = frames(&mut whole);
    assert_eq!(want.len(), 4);
    assert_eq!(want[0], None);
    assert_eq!(want[3], Some(vec![1, 2, 3]));
    assert_eq!(whole.buffered(), 0);
    for chunk in [1, 2, 3, 5, 7] {
        let mut f = Framer::new(Vec::new());
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            f.handle_input(piece);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, want, "chunks of {chunk}");
        // The same, appending to read_buf as a socket read would.
        let mut f = Framer::new(Vec::new());
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            f.read_buf().extend_from_slice(piece);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, want, "read_buf, chunks of {chunk}");
    }
}

#[test]
fn framer_makes_room_for_a_whole_frame_and_refuses_oversize() {
    let mut f = Framer::new(vec![0, 0x10, 0, 0, 1]);
    assert_eq!(f.poll_frame(), Ok(None));
    assert!(f.read_buf().capacity() >= 4 + (1 << 20));
    let mut f = Framer::new(vec![0, 0, 0, 9]).with_max_packet(8);
    for _ in 0..2 {
        assert_eq!(
            f.poll_frame(),
            Err(PacketError::TooLarge { len: 9, max: 8 })
        );
    }
    assert!(PacketError::TooLarge { len: 9, max: 8 }.is_fatal());
}

#[test]
fn liveness_fails_after_a_silent_tick_time() {
    let t0 = Instant::now();
    let tt = Duration::from_secs(60);
    let mut l = Liveness::new(tt, t0);
    assert_eq!(l.poll_timeout(), t0 + tt);
    assert_eq!(l.handle_timeout(t0 + tt / 2), Ok(()));
    l.on_input(t0 + tt / 2);
    assert_eq!(l.poll_timeout(), t0 + tt + tt / 2);
    assert_eq!(l.handle_timeout(t0 + tt), Ok(()));
    assert_eq!(
        l.handle_timeout(t0 + tt + tt / 2),
        Err(PacketError::TickTimeout)
    );
    assert_eq!(PacketError::TickTimeout.to_string(), "net_tick_timeout");
}

#[test]
fn ticker_ticks_a_quarter_after_the_last_send() {
    let t0 = Instant::now();
    let tt = Duration::from_secs(60);
    let q = tt / 4;
    let mut t = Ticker::new(tt, t0);
    assert_eq!(t.poll_timeout(), t0 + q);
    assert_eq!(t.handle_timeout(t0 + q / 2), None);
    t.on_send(t0 + q / 2);
    assert_eq!(t.handle_timeout(t0 + q), None);
    assert_eq!(t.handle_timeout(t0 + q + q / 2), Some(&TICK[..]));
    // The clock restarted at the tick.
    assert_eq!(t.poll_timeout(), t0 + 2 * q + q / 2);
    assert_eq!(t.handle_timeout(t0 + 2 * q), None);
}

/// The zero-copy path: a 64 KiB binary goes out as its own buffer in the
/// encoded chunks (same bytes as `encode`), comes out of the framer as a
/// split of its read buffer, and decodes as a slice of that frame; a
/// 100-byte one is still a slice, a 10-byte one a copy.
#[test]
fn binaries_are_not_copied_on_either_path() {
    let ctrl = send_ctrl();
    for (size, out_shared, in_shared) in
        [(65_536, true, true), (100, false, true), (10, false, false)]
    {
        let bin = Term::binary(vec![0xab; size]);
        let msg = Term::Tuple(vec![Term::atom("from"), bin.clone()]);
        let chunks = encode_chunks(&ctrl, Some(&msg));
        assert_eq!(chunks.to_vec(), encode(&ctrl, Some(&msg)), "{size}");
        let Term::Binary(orig) = &bin else {
            unreachable!()
        };
        let shares = chunks.slices().any(|s| s.as_ptr() == orig.as_ptr());
        assert_eq!(shares, out_shared, "{size}: sent without a copy");

        let mut f = Framer::new(Vec::new());
        for s in chunks.slices() {
            f.read_buf().extend_from_slice(s);
        }
        let Ok(Some(Frame::Packet(body))) = f.poll_frame() else {
            panic!("{size}: no frame")
        };
        let p = decode_bytes(&body, &DecodeLimits::new()).unwrap();
        assert_eq!(p.payload.as_ref(), Some(&msg));
        let Some(Term::Tuple(items)) = &p.payload else {
            unreachable!()
        };
        let Term::Binary(got) = &items[1] else {
            unreachable!()
        };
        let inside = body.as_ptr_range().contains(&got.as_ptr());
        assert_eq!(inside, in_shared, "{size}: received without a copy");
        assert_eq!(decode(&body, &DecodeLimits::new()).unwrap(), p);
    }
}
