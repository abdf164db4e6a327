//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` (which
//! need a nightly compiler) and the stable test that replays the committed
//! corpus (`tests/corpus_replay.rs`), so an input that once crashed a target
//! keeps being checked by `cargo test` on stable. Both include this file with
//! `#[path]`; it uses only epmd-proto's public API.
//!
//! Each function takes arbitrary bytes and panics only when the codec breaks
//! one of its own promises: a decoder panicked, a decoded message does not
//! re-encode to the bytes it came from, or a frame check contradicts itself.

#![allow(dead_code)]

use epmd_proto::ext::{self, NodeRecord};
use epmd_proto::frame::{self, FrameError};
use epmd_proto::legacy::{self, Alive2Resp, PortInfo};
use epmd_proto::limits::{MAX_PACKET, MAX_TRANSPORTS};
use epmd_proto::name::{check_node_name, check_proto_name, is_lookup_name_ok};
use epmd_proto::request::{is_local_only_code, Request};

/// Request side: [`frame::check`], then [`Request::decode`] of the frame body,
/// the `validate()` of the extension's requests, and a re-encode of every
/// request that has an encoder.
///
/// The input is used twice: as a framed request (`u16` length first) and, so
/// that the fuzzer need not learn the header, as a bare body.
pub(crate) fn fuzz_decode_request(data: &[u8]) {
    match frame::check(data) {
        Ok(Some(len)) => {
            assert!((1..=MAX_PACKET).contains(&len), "frame length {len}");
            assert!(data.len() >= 2 + len, "frame overruns the buffer");
            assert_eq!(usize::from(u16::from_be_bytes([data[0], data[1]])), len);
            request_body(&data[2..2 + len]);
        }
        Ok(None) => {
            if let [hi, lo, rest @ ..] = data {
                let declared = usize::from(u16::from_be_bytes([*hi, *lo]));
                assert!(
                    (1..=MAX_PACKET).contains(&declared) && rest.len() < declared,
                    "incomplete frame reported for a complete one"
                );
            }
        }
        Err(FrameError::Empty) => assert_eq!(&data[..2], &[0, 0]),
        Err(FrameError::TooLarge(n)) => {
            assert!(n > MAX_PACKET);
            assert_eq!(usize::from(u16::from_be_bytes([data[0], data[1]])), n);
        }
        // FrameError is non-exhaustive; a new variant needs a rule here.
        Err(e) => panic!("unexpected frame error {e:?}"),
    }
    if !data.is_empty() && data.len() <= usize::from(u16::MAX) {
        request_body(data);
    }
}

/// Decodes one request body and checks what can be checked about it.
fn request_body(body: &[u8]) {
    let Ok(req) = Request::decode(body) else {
        return;
    };
    assert_eq!(req.is_local_only(), is_local_only_code(body[0]));
    match &req {
        Request::Alive2(a) => {
            // The encoding is the body up to the end of Extra; the C server
            // ignores what follows.
            let framed = a.encode();
            assert_eq!(&framed[2..], &body[..framed.len() - 2], "ALIVE2 re-encode");
            assert!(!a.name.contains(&0));
            // A body of exactly 13 bytes (empty name and extra) is refused by
            // the C epmd's `bsize <= 13`; it decoded here only thanks to
            // trailing bytes.
            if framed.len() - 2 > 13 {
                assert_eq!(Request::decode(&framed[2..]), Ok(req.clone()));
            }
            let _ = check_node_name(a.name);
            assert_eq!(a.wants_x_reply(), a.high >= 6);
        }
        Request::PortPlease2(name) => {
            assert!(is_lookup_name_ok(name));
            let framed = legacy::encode_port_please2(name);
            assert_eq!(Request::decode(&framed[2..]), Ok(req.clone()));
        }
        Request::Stop(name) => assert!(!name.contains(&0)),
        Request::Alive3(a) => {
            // The extension's layouts are exact: the encoding is the body.
            assert_eq!(&a.encode()[2..], body, "ALIVE3 re-encode");
            if a.validate().is_ok() {
                assert!(check_node_name(a.name).is_ok() && !a.name.is_empty());
                assert!((1..=MAX_TRANSPORTS).contains(&a.transports.len()));
                for t in &a.transports {
                    assert!(check_proto_name(t.proto).is_ok());
                }
            }
        }
        Request::PortPlease3(p) => {
            assert_eq!(&p.encode()[2..], body, "PORT_PLEASE3 re-encode");
            if p.validate().is_ok() {
                assert!(p.protos.len() <= MAX_TRANSPORTS);
                for q in &p.protos {
                    assert!(check_proto_name(q).is_ok());
                }
            }
        }
        Request::Unreg3(u) => {
            assert_eq!(&u.encode()[2..], body, "UNREG3 re-encode");
            let _ = check_proto_name(u.proto);
        }
        _ => {}
    }
}

/// Reply side: every client-side reply decoder, fed the whole input. A reply
/// that decodes must re-encode to what was decoded (byte for byte where the
/// layout allows, else to a value that decodes the same).
pub(crate) fn fuzz_decode_replies(data: &[u8]) {
    // ALIVE2_RESP / ALIVE2_X_RESP.
    match Alive2Resp::decode(data) {
        Ok(Some(r)) => {
            let enc = r.encode();
            assert_eq!(&data[..enc.len()], &enc[..], "ALIVE2 reply re-encode");
        }
        Ok(None) => assert!(data.len() < 6, "complete ALIVE2 reply seen as partial"),
        Err(_) => {}
    }

    // PORT2_RESP: a hit re-encodes to a prefix of the input.
    if let Ok(Some(info)) = PortInfo::decode_reply(data) {
        let enc = info.encode();
        assert_eq!(&data[..enc.len()], &enc[..], "PORT2 reply re-encode");
    }

    // ALIVE3 and UNREG3 replies (fixed size).
    match ext::decode_alive3_reply(data) {
        Ok(Some((status, creation))) => {
            if status as u8 == data[3] {
                assert_eq!(ext::encode_alive3_reply(status, creation), &data[..8]);
            }
        }
        Ok(None) => assert!(data.len() < 8),
        Err(_) => {}
    }
    match ext::decode_unreg3_reply(data) {
        Ok(Some(status)) => {
            if status as u8 == data[3] {
                assert_eq!(ext::encode_unreg3_reply(status), &data[..4]);
            }
        }
        Ok(None) => assert!(data.len() < 4),
        Err(_) => {}
    }

    // PORT3: through its u16 framing, and as a bare body.
    if let Some(body) = ext::check_reply16(data) {
        assert_eq!(
            body.len(),
            usize::from(u16::from_be_bytes([data[0], data[1]]))
        );
        port3_body(body);
    }
    port3_body(data);

    // NAMES3 and DUMP3: through their u32 framing, and as bare bodies.
    if let Some(body) = ext::check_reply32(data) {
        names3_body(body);
        dump3_body(body);
    }
    names3_body(data);
    dump3_body(data);

    // The NAMES text, as erl_epmd parses it.
    for (name, port) in legacy::parse_names_text(data) {
        let mut line = Vec::new();
        legacy::put_names_line(&mut line, &name, port);
        assert_eq!(legacy::parse_names_text(&line), vec![(name, port)]);
    }
}

fn put_record(out: &mut Vec<u8>, rec: &NodeRecord) {
    rec.encode_into(out);
}

fn port3_body(body: &[u8]) {
    match ext::decode_port3_body(body) {
        Ok(Ok(rec)) => {
            let mut enc = Vec::new();
            put_record(&mut enc, &rec);
            let reply = ext::frame_port3_hit(&enc);
            let again = ext::check_reply16(&reply).expect("complete PORT3 reply");
            assert_eq!(
                ext::decode_port3_body(again),
                Ok(Ok(rec)),
                "PORT3 re-encode"
            );
            // Only the flags byte (offset 2 + 5) may differ: bits other than
            // FLAG_LEGACY are dropped by the decoder.
            assert_eq!(again.len(), body.len());
        }
        Ok(Err(status)) => {
            assert_ne!(body[1], 0);
            let _ = status.describe();
        }
        Err(_) => {}
    }
}

fn names3_body(body: &[u8]) {
    if let Ok(names) = ext::decode_names3_body(body) {
        let mut out = ext::start_reply32(names.epmd_port);
        out.extend_from_slice(&(names.nodes.len() as u32).to_be_bytes());
        for n in &names.nodes {
            put_record(&mut out, n);
        }
        ext::finish_reply32(&mut out);
        assert_eq!(out.len() - 4, body.len());
        let again = ext::check_reply32(&out).expect("complete NAMES3 reply");
        assert_eq!(
            ext::decode_names3_body(again),
            Ok(names),
            "NAMES3 re-encode"
        );
    }
}

fn dump3_body(body: &[u8]) {
    if let Ok(dump) = ext::decode_dump3_body(body) {
        let mut out = ext::start_reply32(dump.epmd_port);
        out.extend_from_slice(&(dump.live.len() as u32).to_be_bytes());
        for (creation, n) in &dump.live {
            out.extend_from_slice(&creation.to_be_bytes());
            put_record(&mut out, n);
        }
        out.extend_from_slice(&(dump.old.len() as u32).to_be_bytes());
        for o in &dump.old {
            ext::put_old_entry(&mut out, o.creation, o.port, &o.name);
        }
        ext::finish_reply32(&mut out);
        assert_eq!(out.len() - 4, body.len());
        let again = ext::check_reply32(&out).expect("complete DUMP3 reply");
        assert_eq!(ext::decode_dump3_body(again), Ok(dump), "DUMP3 re-encode");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_edge_inputs() {
        for data in [
            &b""[..],
            b"\x00",
            b"\x00\x00",
            b"\xff\xff",
            b"\x00\x01n",
            b"\x00\x01z",
            b"\x00\x0e\x78\x00\x01\x4d\x00\x00\x06\x00\x05\x00\x00\x00\x00\x00",
        ] {
            fuzz_decode_request(data);
            fuzz_decode_replies(data);
        }
    }
}
