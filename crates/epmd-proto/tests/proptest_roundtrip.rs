//! Property tests for the wire codec: every request and reply type survives
//! encode → decode, arbitrary bytes never panic a decoder, a strict prefix of
//! a valid frame is always "need more bytes", and the name checks agree with
//! small independent models.

use epmd_proto::ext::{
    self, Alive3Req, Dump3, Names3, NodeRecord, OldEntry, PortPlease3Req, Status, Transport,
    TransportRef, Unreg3Req,
};
use epmd_proto::legacy::{self, Alive2Req, Alive2Resp, PortInfo};
use epmd_proto::limits::{MAX_PACKET, MAX_PROTO_LEN, MAX_SYMLEN};
use epmd_proto::name::{check_node_name, check_proto_name, is_lookup_name_ok, NameError};
use epmd_proto::{code, frame, Malformed, NodeType, Request};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Every status the extension defines.
const STATUSES: [Status; 10] = [
    Status::Ok,
    Status::Refused,
    Status::NameInUse,
    Status::ProtoInUse,
    Status::TooManyTransports,
    Status::BadProtocol,
    Status::NodeMismatch,
    Status::Capacity,
    Status::NoSuchTransport,
    Status::NotRegistered,
];

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(&STATUSES[..])
}

/// Bytes without NUL: random bytes, or the UTF-8 of a random string.
fn name_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(1u8..=255, 0..=max),
        proptest::string::string_regex(&format!("[^\\x00]{{0,{}}}", max / 4))
            .unwrap()
            .prop_map(String::into_bytes),
    ]
}

/// A name that registers: 1..=255 characters of UTF-8, at most 1020 bytes.
fn valid_node_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9_.-]{1,40}".prop_map(String::into_bytes),
        "[^\\x00]{1,60}".prop_map(String::into_bytes),
        vec(
            any::<char>().prop_filter("no NUL", |c| *c != '\0'),
            250..=255
        )
        .prop_map(|cs| cs.into_iter().collect::<String>().into_bytes())
        .prop_filter("at most 1020 bytes", |b| b.len() <= MAX_SYMLEN),
    ]
}

/// A protocol name that passes `check_proto_name`.
fn valid_proto() -> impl Strategy<Value = Vec<u8>> {
    "[a-z][a-z0-9_]{0,31}".prop_map(String::into_bytes)
}

fn alive2_req() -> impl Strategy<Value = (u16, u8, u8, u16, u16, Vec<u8>, Vec<u8>)> {
    (
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        // At least one byte of name, as the C epmd's `bsize <= 13` check needs
        // (name + extra must not both be empty).
        name_bytes(200).prop_filter("non-empty", |n| !n.is_empty()),
        vec(any::<u8>(), 0..=300),
    )
}

fn borrow_alive2<'a>(f: &'a (u16, u8, u8, u16, u16, Vec<u8>, Vec<u8>)) -> Alive2Req<'a> {
    Alive2Req {
        port: f.0,
        node_type: f.1,
        protocol: f.2,
        high: f.3,
        low: f.4,
        name: &f.5,
        extra: &f.6,
    }
}

/// Owned transports: (port, proto, extra). Proto may be any bytes (the
/// decoder accepts them; `validate` judges them).
fn raw_transports(max: usize) -> impl Strategy<Value = Vec<(u16, Vec<u8>, Vec<u8>)>> {
    vec(
        (
            any::<u16>(),
            prop_oneof![valid_proto(), vec(any::<u8>(), 0..=40)],
            vec(any::<u8>(), 0..=40),
        ),
        0..=max,
    )
}

fn borrow_transports(ts: &[(u16, Vec<u8>, Vec<u8>)]) -> Vec<TransportRef<'_>> {
    ts.iter()
        .map(|(port, proto, extra)| TransportRef {
            port: *port,
            proto,
            extra,
        })
        .collect()
}

/// An owned node record as clients decode it. Protocol names are UTF-8 (the
/// decoder insists), up to 255 bytes.
fn node_record() -> impl Strategy<Value = NodeRecord> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<bool>(),
        vec(any::<u8>(), 0..=60),
        vec(
            (
                any::<u16>(),
                prop_oneof!["[a-z][a-z0-9_]{0,31}", Just(String::new()), "\\PC{0,20}"],
                vec(any::<u8>(), 0..=40),
            ),
            0..=6,
        ),
    )
        .prop_map(|(node_type, high, low, legacy, name, ts)| NodeRecord {
            node_type,
            high,
            low,
            legacy,
            name,
            transports: ts
                .into_iter()
                .map(|(port, proto, extra)| Transport { port, proto, extra })
                .collect(),
        })
}

fn put_record(out: &mut Vec<u8>, rec: &NodeRecord) {
    rec.encode_into(out);
}

/// Any valid framed request, as the encoders (or a hand-built frame) give it.
fn framed_request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        alive2_req().prop_map(|f| borrow_alive2(&f).encode()),
        "[a-z]{1,30}".prop_map(|n| legacy::encode_port_please2(n.as_bytes())),
        Just(frame::encode(&[code::NAMES_REQ])),
        Just(frame::encode(&[code::DUMP_REQ])),
        Just(frame::encode(&[code::KILL_REQ])),
        "[a-z]{1,30}".prop_map(|n| frame::encode(format!("s{n}").as_bytes())),
        Just(ext::encode_names3()),
        Just(ext::encode_dump3()),
        (valid_node_name(), raw_transports(8)).prop_map(|(name, ts)| Alive3Req {
            node_type: NodeType::Normal.code(),
            high: 6,
            low: 6,
            name: &name,
            transports: borrow_transports(&ts),
            legacy_default: 0,
        }
        .encode()),
        (vec(valid_proto(), 0..=5), "[a-z]{0,20}").prop_map(|(ps, n)| PortPlease3Req {
            protos: ps.iter().map(Vec::as_slice).collect(),
            name: n.as_bytes(),
        }
        .encode()),
        valid_proto().prop_map(|p| Unreg3Req { proto: &p }.encode()),
        // Any body up to the frame limit.
        vec(any::<u8>(), 1..=MAX_PACKET).prop_map(|b| frame::encode(&b)),
    ]
}

/// Checks a framed request and returns its body.
fn body_of(framed: &[u8]) -> &[u8] {
    let len = frame::check(framed)
        .expect("valid header")
        .expect("complete frame");
    assert_eq!(len + 2, framed.len(), "frame::check length");
    &framed[2..2 + len]
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/// OTP's node-name rule, written independently of `check_node_name`.
fn model_node_name(name: &[u8]) -> Result<(), NameError> {
    if name.len() > 1020 {
        return Err(NameError::TooLong(name.len()));
    }
    match std::str::from_utf8(name) {
        Err(_) => Err(NameError::BadEncoding),
        Ok(s) if s.chars().count() > 255 => Err(NameError::TooManyChars(s.chars().count())),
        Ok(_) => Ok(()),
    }
}

/// The lookup rule: non-empty, no NUL, UTF-8, at most 254 characters.
fn model_lookup_name(name: &[u8]) -> bool {
    !name.is_empty()
        && !name.contains(&0)
        && std::str::from_utf8(name).is_ok_and(|s| s.chars().count() <= 254)
}

/// The protocol-name rule `[a-z][a-z0-9_]{0,31}`.
fn model_proto(p: &[u8]) -> bool {
    matches!(p.first(), Some(b'a'..=b'z'))
        && p.len() <= 32
        && p.iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

// ---------------------------------------------------------------------------
// Request round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn alive2_req_round_trip(f in alive2_req(), junk in vec(any::<u8>(), 0..8)) {
        let req = borrow_alive2(&f);
        let framed = req.encode();
        let body = body_of(&framed);
        prop_assert_eq!(body[0], code::ALIVE2_REQ);
        prop_assert_eq!(Request::decode(body), Ok(Request::Alive2(req.clone())));
        prop_assert_eq!(req.wants_x_reply(), req.high >= 6);
        // Bytes after Extra are ignored, as in the C server.
        let mut padded = body.to_vec();
        padded.extend_from_slice(&junk);
        prop_assert_eq!(Request::decode(&padded), Ok(Request::Alive2(req.clone())));
        // The structural checks: a NUL in the name closes the connection.
        let mut with_nul = f.5.clone();
        with_nul.insert(with_nul.len() / 2, 0);
        let nul = Alive2Req { name: &with_nul, ..req.clone() }.encode();
        prop_assert_eq!(Request::decode(body_of(&nul)), Err(Malformed::NulInName));
        // Cutting the body anywhere inside the name or extra is refused.
        for cut in 1..body.len() {
            prop_assert!(Request::decode(&body[..cut]).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn alive2_empty_name_and_extra_is_too_short(port: u16, high: u16, low: u16) {
        // 13 bytes of body: the C epmd's `bsize <= 13` refuses it.
        let req = Alive2Req { port, node_type: NodeType::Normal.code(), protocol: 0, high, low, name: b"", extra: b"" };
        let framed = req.encode();
        prop_assert_eq!(framed.len(), 15);
        prop_assert_eq!(Request::decode(body_of(&framed)), Err(Malformed::TooShort));
        // One byte of extra is enough.
        let req = Alive2Req { extra: b"x", ..req };
        let framed = req.encode();
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::Alive2(req.clone())));
    }

    #[test]
    fn port_please2_round_trip(name in valid_node_name(), nul: bool) {
        prop_assume!(model_lookup_name(&name));
        let framed = if nul {
            let mut b = vec![code::PORT_PLEASE2_REQ];
            b.extend_from_slice(&name);
            b.push(0);
            frame::encode(&b)
        } else {
            legacy::encode_port_please2(&name)
        };
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::PortPlease2(&name)));
    }

    #[test]
    fn port_please2_decode_agrees_with_model(name in prop_oneof![
        name_bytes(300),
        vec(any::<u8>(), 0..=40),
        vec(any::<char>(), 250..=258).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
    ]) {
        let mut body = vec![code::PORT_PLEASE2_REQ];
        body.extend_from_slice(&name);
        let stripped = name.strip_suffix(&[0]).unwrap_or(&name);
        let want = if model_lookup_name(stripped) {
            Ok(Request::PortPlease2(stripped))
        } else {
            Err(Malformed::BadName)
        };
        prop_assert_eq!(Request::decode(&body), want);
    }

    #[test]
    fn alive3_req_round_trip(
        node_type: u8, high: u16, low: u16,
        name in name_bytes(200),
        ts in raw_transports(20),
    ) {
        let req = Alive3Req { node_type, high, low, name: &name, transports: borrow_transports(&ts), legacy_default: 0 };
        let framed = req.encode();
        let body = body_of(&framed);
        prop_assert_eq!(Request::decode(body), Ok(Request::Alive3(req.clone())));
        // The layout is exact: trailing bytes and truncation are refused.
        let mut padded = body.to_vec();
        padded.push(0);
        prop_assert_eq!(Request::decode(&padded), Err(Malformed::TrailingBytes));
        for cut in 1..body.len() {
            prop_assert!(Request::decode(&body[..cut]).is_err(), "cut at {}", cut);
        }
        // validate() against a model of the rules.
        let want = if model_node_name(&name).is_err() || name.is_empty() || ts.is_empty() {
            Err(Status::Refused)
        } else if ts.len() > 16 {
            Err(Status::TooManyTransports)
        } else {
            ts.iter().enumerate().try_for_each(|(i, (_, p, e))| {
                if !model_proto(p) || ts[..i].iter().any(|o| o.1 == *p) {
                    Err(Status::BadProtocol)
                } else if e.len() > 1020 {
                    Err(Status::Refused)
                } else {
                    Ok(())
                }
            })
        };
        prop_assert_eq!(req.validate(), want);
    }

    #[test]
    fn alive3_valid_requests_validate(
        name in valid_node_name(),
        protos in proptest::sample::subsequence(
            vec!["inet_tcp", "inet6_tcp", "inet_tls", "inet6_tls", "uds", "quic"], 1..=6),
        ports in vec(any::<u16>(), 6),
    ) {
        let ts: Vec<_> = protos.iter().zip(&ports).map(|(p, port)| TransportRef {
            port: *port, proto: p.as_bytes(), extra: b"/tmp/x",
        }).collect();
        let req = Alive3Req { node_type: NodeType::Hidden.code(), high: 6, low: 5, name: &name, transports: ts, legacy_default: 0 };
        prop_assert_eq!(req.validate(), Ok(()));
        let framed = req.encode();
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::Alive3(req.clone())));
    }

    #[test]
    fn port_please3_req_round_trip(
        protos in vec(prop_oneof![valid_proto(), vec(any::<u8>(), 0..=40)], 0..=20),
        name in vec(any::<u8>(), 0..=200),
    ) {
        let req = PortPlease3Req { protos: protos.iter().map(Vec::as_slice).collect(), name: &name };
        let framed = req.encode();
        let body = body_of(&framed);
        prop_assert_eq!(Request::decode(body), Ok(Request::PortPlease3(req.clone())));
        let mut padded = body.to_vec();
        padded.push(7);
        prop_assert_eq!(Request::decode(&padded), Err(Malformed::TrailingBytes));
        let want = if protos.len() > 16 {
            Err(Status::TooManyTransports)
        } else if protos.iter().enumerate()
            .any(|(i, p)| !model_proto(p) || protos[..i].contains(p)) {
            Err(Status::BadProtocol)
        } else {
            Ok(())
        };
        prop_assert_eq!(req.validate(), want);
    }

    #[test]
    fn unreg3_req_round_trip(proto in vec(any::<u8>(), 0..=255)) {
        let req = Unreg3Req { proto: &proto };
        let framed = req.encode();
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::Unreg3(req)));
    }

    #[test]
    fn stop_and_fixed_requests(name in vec(any::<u8>(), 1..=100), junk in vec(any::<u8>(), 0..10)) {
        let mut body = vec![code::STOP_REQ];
        body.extend_from_slice(&name);
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        prop_assert_eq!(Request::decode(&body), Ok(Request::Stop(&name[..end])));
        // NAMES ignores trailing bytes.
        let mut names = vec![code::NAMES_REQ];
        names.extend_from_slice(&junk);
        prop_assert_eq!(Request::decode(&names), Ok(Request::Names));
        let framed = ext::encode_names3();
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::Names3));
        let framed = ext::encode_dump3();
        prop_assert_eq!(Request::decode(body_of(&framed)), Ok(Request::Dump3));
    }
}

// ---------------------------------------------------------------------------
// Reply round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn alive2_resp_round_trip(x: bool, result: u8, creation: u32, junk in vec(any::<u8>(), 0..4)) {
        let resp = if x {
            Alive2Resp::X { result, creation }
        } else {
            Alive2Resp::Legacy { result, creation: creation as u16 }
        };
        let enc = resp.encode();
        prop_assert_eq!(enc.len(), if x { 6 } else { 4 });
        prop_assert_eq!(Alive2Resp::decode(&enc), Ok(Some(resp)));
        for cut in 0..enc.len() {
            prop_assert_eq!(Alive2Resp::decode(&enc[..cut]), Ok(None));
        }
        let mut more = enc.clone();
        more.extend_from_slice(&junk);
        prop_assert_eq!(Alive2Resp::decode(&more), Ok(Some(resp)));
        prop_assert_eq!(resp.result(), result);
        let fail = Alive2Resp::failure(x);
        prop_assert_eq!(Alive2Resp::decode(&fail.encode()), Ok(Some(fail)));
        prop_assert_eq!((fail.result(), fail.creation()), (1, 99));
    }

    #[test]
    fn port_info_round_trip(
        port: u16, node_type: u8, protocol: u8, high: u16, low: u16,
        name in vec(any::<u8>(), 0..=300),
        extra in vec(any::<u8>(), 0..=300),
        miss in 1u8..=255,
    ) {
        let info = PortInfo { port, node_type, protocol, high, low, name, extra };
        let enc = info.encode();
        prop_assert_eq!(&enc, &legacy::encode_port2_hit(
            port, node_type, protocol, high, low, &info.name, &info.extra));
        prop_assert_eq!(PortInfo::decode_reply(&enc), Ok(Some(info.clone())));
        for cut in 2..enc.len() {
            prop_assert!(PortInfo::decode_reply(&enc[..cut]).is_err(), "cut at {}", cut);
        }
        prop_assert_eq!(PortInfo::decode_reply(&[code::PORT2_RESP, miss]), Ok(None));
        prop_assert_eq!(PortInfo::decode_reply(&legacy::PORT2_MISS), Ok(None));
    }

    #[test]
    fn alive3_and_unreg3_replies_round_trip(s in status(), creation: u32) {
        let enc = ext::encode_alive3_reply(s, creation);
        prop_assert_eq!(ext::decode_alive3_reply(&enc), Ok(Some((s, creation))));
        for cut in 0..enc.len() {
            prop_assert_eq!(ext::decode_alive3_reply(&enc[..cut]), Ok(None));
        }
        let enc = ext::encode_unreg3_reply(s);
        prop_assert_eq!(ext::decode_unreg3_reply(&enc), Ok(Some(s)));
        for cut in 0..enc.len() {
            prop_assert_eq!(ext::decode_unreg3_reply(&enc[..cut]), Ok(None));
        }
        prop_assert_eq!(Status::from_u8(s as u8), s);
    }

    #[test]
    fn status_from_unknown_byte_is_refused(b in 10u8..=255) {
        prop_assert_eq!(Status::from_u8(b), Status::Refused);
    }

    #[test]
    fn port3_reply_round_trip(rec in node_record(), s in status()) {
        let mut body = Vec::new();
        put_record(&mut body, &rec);
        let reply = ext::frame_port3_hit(&body);
        let got = ext::check_reply16(&reply).expect("complete");
        prop_assert_eq!(got.len() + 2, reply.len());
        prop_assert_eq!(ext::decode_port3_body(got), Ok(Ok(rec)));
        for cut in 0..reply.len() {
            prop_assert_eq!(ext::check_reply16(&reply[..cut]), None);
        }
        let miss = ext::encode_port3_status(s);
        let got = ext::decode_port3_body(ext::check_reply16(&miss).unwrap());
        if s == Status::Ok {
            // Status 0 means a hit; with no record after it, the body is short.
            prop_assert!(got.is_err());
        } else {
            prop_assert_eq!(got, Ok(Err(s)));
        }
    }

    #[test]
    fn names3_listing_round_trip(epmd_port: u32, nodes in vec(node_record(), 0..=8)) {
        let mut out = ext::start_reply32(epmd_port);
        out.extend_from_slice(&(nodes.len() as u32).to_be_bytes());
        for n in &nodes {
            put_record(&mut out, n);
        }
        ext::finish_reply32(&mut out);
        let body = ext::check_reply32(&out).expect("complete");
        prop_assert_eq!(body.len() + 4, out.len());
        prop_assert_eq!(ext::decode_names3_body(body), Ok(Names3 { epmd_port, nodes }));
        for cut in 0..out.len() {
            prop_assert_eq!(ext::check_reply32(&out[..cut]), None);
        }
    }

    #[test]
    fn dump3_listing_round_trip(
        epmd_port: u32,
        live in vec((any::<u32>(), node_record()), 0..=6),
        old in vec((any::<u32>(), any::<u16>(), vec(any::<u8>(), 0..=40)), 0..=6),
    ) {
        let mut out = ext::start_reply32(epmd_port);
        out.extend_from_slice(&(live.len() as u32).to_be_bytes());
        for (c, n) in &live {
            out.extend_from_slice(&c.to_be_bytes());
            put_record(&mut out, n);
        }
        out.extend_from_slice(&(old.len() as u32).to_be_bytes());
        for (c, p, n) in &old {
            ext::put_old_entry(&mut out, *c, *p, n);
        }
        ext::finish_reply32(&mut out);
        let body = ext::check_reply32(&out).expect("complete");
        let want = Dump3 {
            epmd_port,
            live,
            old: old.into_iter()
                .map(|(creation, port, name)| OldEntry { creation, port, name })
                .collect(),
        };
        prop_assert_eq!(ext::decode_dump3_body(body), Ok(want));
        for cut in 0..out.len() {
            prop_assert_eq!(ext::check_reply32(&out[..cut]), None);
        }
    }

    #[test]
    fn names_text_round_trip(
        lines in vec((vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..=40), any::<u16>()), 0..=10),
    ) {
        let mut text = Vec::new();
        for (name, port) in &lines {
            legacy::put_names_line(&mut text, name, *port);
        }
        prop_assert_eq!(legacy::parse_names_text(&text), lines);
    }
}

// ---------------------------------------------------------------------------
// Robustness and models
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop_oneof![
        vec(any::<u8>(), 0..=64),
        vec(any::<u8>(), 0..=4000),
        // A plausible header and command byte, then noise.
        (1u16..=3057, proptest::sample::select(
            b"xyzndkswvXZNDUu\x00".to_vec()), vec(any::<u8>(), 0..=200))
            .prop_map(|(len, cmd, rest)| {
                let mut v = len.to_be_bytes().to_vec();
                v.push(cmd);
                v.extend(rest);
                v
            }),
    ]) {
        match frame::check(&data) {
            Ok(Some(len)) => {
                prop_assert!((1..=MAX_PACKET).contains(&len));
                prop_assert!(data.len() >= len + 2);
                let body = &data[2..2 + len];
                if let Ok(req) = Request::decode(body) {
                    prop_assert_eq!(req.is_local_only(), epmd_proto::request::is_local_only_code(body[0]));
                    match &req {
                        Request::Alive3(a) => { let _ = a.validate(); }
                        Request::PortPlease3(p) => { let _ = p.validate(); }
                        _ => {}
                    }
                }
            }
            Ok(None) => {
                prop_assert!(data.len() < 2 || usize::from(u16::from_be_bytes([data[0], data[1]])) + 2 > data.len());
            }
            Err(_) => {
                let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
                prop_assert!(len == 0 || len > MAX_PACKET);
            }
        }
        // Every decoder, fed the raw bytes, returns rather than panicking.
        let _ = Request::decode(&data);
        let _ = Alive2Resp::decode(&data);
        let _ = PortInfo::decode_reply(&data);
        let _ = ext::decode_alive3_reply(&data);
        let _ = ext::decode_unreg3_reply(&data);
        let _ = ext::decode_port3_body(&data);
        let _ = ext::decode_names3_body(&data);
        let _ = ext::decode_dump3_body(&data);
        let _ = ext::check_reply16(&data).map(ext::decode_port3_body);
        let _ = ext::check_reply32(&data).map(ext::decode_names3_body);
        let _ = ext::check_reply32(&data).map(ext::decode_dump3_body);
        let _ = legacy::parse_names_text(&data);
    }

    #[test]
    fn every_strict_prefix_of_a_frame_needs_more(framed in framed_request()) {
        let len = body_of(&framed).len();
        for cut in 0..framed.len() {
            prop_assert_eq!(frame::check(&framed[..cut]), Ok(None), "cut at {}", cut);
        }
        // Bytes after a complete frame do not change the answer.
        let mut more = framed.clone();
        more.extend_from_slice(b"\x00\x01n");
        prop_assert_eq!(frame::check(&more), Ok(Some(len)));
    }

    #[test]
    fn check_node_name_agrees_with_model(name in prop_oneof![
        vec(any::<u8>(), 0..=40),
        vec(any::<u8>(), 1000..=1030),
        "\\PC{0,40}".prop_map(String::into_bytes),
        // Around the 255-character and 1020-byte limits, in 1- to 4-byte characters.
        vec(any::<char>(), 250..=260).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        (250usize..=260).prop_map(|n| "é".repeat(n).into_bytes()),
        (250usize..=260).prop_map(|n| "a".repeat(n).into_bytes()),
        (1015usize..=1025).prop_map(|n| vec![b'a'; n]),
    ]) {
        prop_assert_eq!(check_node_name(&name), model_node_name(&name));
        prop_assert_eq!(is_lookup_name_ok(&name), model_lookup_name(&name));
    }

    #[test]
    fn check_proto_name_agrees_with_model(p in prop_oneof![
        vec(any::<u8>(), 0..=40),
        "[a-z0-9_]{0,34}".prop_map(String::into_bytes),
    ]) {
        let got = check_proto_name(&p);
        prop_assert_eq!(got.is_ok(), model_proto(&p));
        if let Ok(s) = got {
            prop_assert_eq!(s.as_bytes(), &p[..]);
            prop_assert!(s.len() <= MAX_PROTO_LEN);
        }
    }
}
