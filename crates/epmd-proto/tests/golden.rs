//! Golden byte vectors captured from the real thing, checked against the
//! codec's encoders and decoders.
//!
//! Sources (Debian's OTP 25.2.3, captured on 2026-11-25):
//! - requests that `erl -sname foo` (OTP 25.2.3) and the C `epmd` client
//!   modes sent to a recording listener;
//! - replies the C `/usr/bin/epmd` daemon sent, on a private port 51003
//!   (0x0000c73b), for this session: `foo` (port 5000, hi = lo = 6), `bar`
//!   (port 5001, hi = lo = 5), `hid` (port 65534, type `H`, hi 6, lo 5,
//!   Extra `ABC\0\0`), a duplicate `foo` in both forms, lookups, then `bar`
//!   closed and NAMES, DUMP, STOP and KILL;
//! - verdicts of the C daemon on malformed requests ("closed, no reply"),
//!   which the codec must refuse the same way.

use epmd_proto::frame::{self, FrameError};
use epmd_proto::legacy::{
    encode_port2_hit, encode_port_please2, parse_names_text, put_dump_active, put_dump_old,
    put_names_line, Alive2Req, Alive2Resp, PortInfo, KILL_NO, KILL_OK, PORT2_MISS, STOP_NOEXIST,
    STOP_STOPPED,
};
use epmd_proto::name::{check_node_name, is_lookup_name_ok, NameError};
use epmd_proto::{Malformed, NodeType, Request};

// ---------------------------------------------------------------------------
// Requests as real clients send them
// ---------------------------------------------------------------------------

/// ALIVE2_REQ from `erl -sname foo` (OTP 25.2.3) listening on 45678. Note
/// LowestVersion 5: OTP 25.2.3 sends hi = 6, lo = 5.
const ERL_ALIVE2_FOO: &[u8] = &[
    0x00, 0x10, 0x78, 0xb2, 0x6e, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x03, b'f', b'o', b'o',
    0x00, 0x00,
];

#[test]
fn erl_alive2_request() {
    let req = Alive2Req {
        port: 45678,
        node_type: NodeType::Normal.code(),
        protocol: 0,
        high: 6,
        low: 5,
        name: b"foo",
        extra: b"",
    };
    assert_eq!(req.encode(), ERL_ALIVE2_FOO);
    assert_eq!(frame::check(ERL_ALIVE2_FOO), Ok(Some(16)));
    assert_eq!(Alive2Req::decode(&ERL_ALIVE2_FOO[2..]), Ok(req.clone()));
    assert_eq!(
        Request::decode(&ERL_ALIVE2_FOO[2..]),
        Ok(Request::Alive2(req.clone()))
    );
    assert!(req.wants_x_reply());
}

#[test]
fn erl_and_cli_small_requests() {
    // erl_epmd:port_please("bar", ...) and net_adm:ping(bar@host).
    let pp = [0x00, 0x04, 0x7a, b'b', b'a', b'r'];
    assert_eq!(encode_port_please2(b"bar"), pp);
    assert_eq!(Request::decode(&pp[2..]), Ok(Request::PortPlease2(b"bar")));
    // erl_epmd:names/1, `epmd -names` and `epmd -started`.
    let names = [0x00, 0x01, 0x6e];
    assert_eq!(frame::encode(b"n"), names);
    assert_eq!(Request::decode(&names[2..]), Ok(Request::Names));
    // `epmd -dump`, `epmd -kill`.
    assert_eq!(frame::encode(b"d"), [0x00, 0x01, 0x64]);
    assert_eq!(Request::decode(b"d"), Ok(Request::Dump));
    assert_eq!(frame::encode(b"k"), [0x00, 0x01, 0x6b]);
    assert_eq!(Request::decode(b"k"), Ok(Request::Kill));
    // `epmd -stop foo`: no trailing NUL.
    let stop = [0x00, 0x04, 0x73, b'f', b'o', b'o'];
    assert_eq!(frame::encode(b"sfoo"), stop);
    assert_eq!(Request::decode(&stop[2..]), Ok(Request::Stop(b"foo")));
}

// ---------------------------------------------------------------------------
// Replies of the C daemon
// ---------------------------------------------------------------------------

/// `foo`, hi = lo = 6: ALIVE2_X_RESP with the raw counter (time() + 1).
const ALIVE_X_FOO: [u8; 6] = [0x76, 0x00, 0x6b, 0x06, 0xe2, 0x94];
/// `bar`, hi = lo = 5, registered in the same second: counter % 3 + 1.
const ALIVE_Y_BAR: [u8; 4] = [0x79, 0x00, 0x00, 0x02];
/// `hid`, hi 6, lo 5, one second later.
const ALIVE_X_HID: [u8; 6] = [0x76, 0x00, 0x6b, 0x06, 0xe2, 0x95];
/// Duplicate `foo`, both forms.
const ALIVE_X_DUP: [u8; 6] = [0x76, 0x01, 0x00, 0x00, 0x00, 0x63];
const ALIVE_Y_DUP: [u8; 4] = [0x79, 0x01, 0x00, 0x63];

#[test]
fn alive2_replies() {
    let foo = Alive2Resp::X {
        result: 0,
        creation: 0x6b06_e294,
    };
    assert_eq!(foo.encode(), ALIVE_X_FOO);
    assert_eq!(Alive2Resp::decode(&ALIVE_X_FOO), Ok(Some(foo)));
    // The 121 form sends counter % 3 + 1 of the same-second counter.
    let bar = Alive2Resp::Legacy {
        result: 0,
        creation: 2,
    };
    assert_eq!(0x6b06_e294u32 % 3 + 1, 2);
    assert_eq!(bar.encode(), ALIVE_Y_BAR);
    assert_eq!(Alive2Resp::decode(&ALIVE_Y_BAR), Ok(Some(bar)));
    assert_eq!(
        Alive2Resp::decode(&ALIVE_X_HID).map(|r| r.map(|r| r.creation())),
        Ok(Some(0x6b06_e295))
    );
    assert_eq!(Alive2Resp::failure(true).encode(), ALIVE_X_DUP);
    assert_eq!(Alive2Resp::failure(false).encode(), ALIVE_Y_DUP);
    assert_eq!(
        Alive2Resp::decode(&ALIVE_X_DUP).map(|r| r.map(|r| r.result())),
        Ok(Some(1))
    );
    // A partial reply is "need more".
    assert_eq!(Alive2Resp::decode(&ALIVE_X_FOO[..5]), Ok(None));
    assert_eq!(Alive2Resp::decode(&ALIVE_Y_BAR[..3]), Ok(None));
}

/// PORT2_RESP for `hid`: type H, hi 6, lo 5, Extra `ABC\0\0`.
const PORT2_HID: &[u8] = &[
    0x77, 0x00, 0xff, 0xfe, 0x48, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x03, b'h', b'i', b'd', 0x00,
    0x05, b'A', b'B', b'C', 0x00, 0x00,
];
/// PORT2_RESP for `foo` on 5000, hi = lo = 6.
const PORT2_FOO: &[u8] = &[
    0x77, 0x00, 0x13, 0x88, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x06, 0x00, 0x03, b'f', b'o', b'o', 0x00,
    0x00,
];
/// PORT2_RESP for a one-character name, U+1F600 (4 bytes).
const PORT2_EMOJI: &[u8] = &[
    0x77, 0x00, 0x13, 0x88, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x06, 0x00, 0x04, 0xf0, 0x9f, 0x98, 0x80,
    0x00, 0x00,
];

#[test]
fn port2_replies() {
    assert_eq!(
        encode_port2_hit(0xfffe, 72, 0, 6, 5, b"hid", b"ABC\0\0"),
        PORT2_HID
    );
    assert_eq!(encode_port2_hit(5000, 77, 0, 6, 6, b"foo", b""), PORT2_FOO);
    assert_eq!(
        encode_port2_hit(5000, 77, 0, 6, 6, "\u{1F600}".as_bytes(), b""),
        PORT2_EMOJI
    );
    let hid = PortInfo::decode_reply(PORT2_HID).unwrap().unwrap();
    assert_eq!(
        hid,
        PortInfo {
            port: 65534,
            node_type: NodeType::Hidden.code(),
            protocol: 0,
            high: 6,
            low: 5,
            name: b"hid".to_vec(),
            extra: b"ABC\0\0".to_vec(),
        }
    );
    assert_eq!(hid.encode(), PORT2_HID);
    assert_eq!(PORT2_MISS, [0x77, 0x01]);
    assert_eq!(PortInfo::decode_reply(&[0x77, 0x01]), Ok(None));
}

/// NAMES reply: u32 port 51003, newest first, no NULs.
const NAMES_REPLY: &[u8] = b"\x00\x00\xc7\x3bname hid at port 65534\nname foo at port 5000\n";

#[test]
fn names_reply() {
    let mut got = 51003u32.to_be_bytes().to_vec();
    put_names_line(&mut got, b"hid", 65534);
    put_names_line(&mut got, b"foo", 5000);
    assert_eq!(got, NAMES_REPLY);
    assert_eq!(
        parse_names_text(&NAMES_REPLY[4..]),
        vec![(b"hid".to_vec(), 65534), (b"foo".to_vec(), 5000)]
    );
    // A zero-length name (the docs/protocol.md §8.8 quirk) is listed with two spaces.
    let mut empty = Vec::new();
    put_names_line(&mut empty, b"", 5000);
    assert_eq!(empty, b"name  at port 5000\n");
}

/// DUMP reply after `bar` (fd 6) left: live entries in NAMES order, then
/// the unregistered list; angle brackets and a NUL after every line.
const DUMP_REPLY: &[u8] = b"\x00\x00\xc7\x3b\
active name     <hid> at port 65534, fd = 7\n\0\
active name     <foo> at port 5000, fd = 5\n\0\
old/unused name <bar>, port = 5001, fd = 6 \n\0";

#[test]
fn dump_reply() {
    let mut got = 51003u32.to_be_bytes().to_vec();
    put_dump_active(&mut got, b"hid", 65534, 7);
    put_dump_active(&mut got, b"foo", 5000, 5);
    put_dump_old(&mut got, b"bar", 5001, 6);
    assert_eq!(got, DUMP_REPLY);
}

#[test]
fn kill_and_stop_replies() {
    assert_eq!(STOP_STOPPED, b"STOPPED");
    // Unknown name: "NOEXIST" then "STOPPED", 14 bytes in all.
    assert_eq!(STOP_NOEXIST, b"NOEXISTSTOPPED");
    assert_eq!(KILL_OK, b"OK");
    assert_eq!(KILL_NO, b"NO");
}

// ---------------------------------------------------------------------------
// Requests the C daemon accepted or refused
// ---------------------------------------------------------------------------

/// Accepted: a zero-length name padded to Length 14 registers (docs/protocol.md §8.8 quirk).
const ALIVE2_EMPTY_NAME_PADDED: &[u8] = &[
    0x00, 0x0e, 0x78, 0x13, 0x88, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[test]
fn accepted_oddities() {
    let req = Alive2Req::decode(&ALIVE2_EMPTY_NAME_PADDED[2..]).unwrap();
    assert_eq!(req.name, b"");
    assert_eq!(check_node_name(req.name), Ok(()));
    // Bytes after Extra are ignored: `foo`, Extra `AB`, then `zzzz`.
    let mut padded = Alive2Req {
        port: 5000,
        node_type: NodeType::Normal.code(),
        protocol: 0,
        high: 6,
        low: 6,
        name: b"foo",
        extra: b"AB",
    }
    .encode();
    padded.extend_from_slice(b"zzzz");
    let req = Alive2Req::decode(&padded[2..]).unwrap();
    assert_eq!((req.name, req.extra), (&b"foo"[..], &b"AB"[..]));
    // One trailing NUL on a lookup is stripped.
    assert_eq!(Request::decode(b"zfoo\0"), Ok(Request::PortPlease2(b"foo")));
    // STOP compares up to the first NUL: `s\0` stopped the empty name, and
    // `sbaz\0junk` stopped `baz`.
    assert_eq!(Request::decode(b"s\0"), Ok(Request::Stop(b"")));
    assert_eq!(Request::decode(b"sbaz\0junk"), Ok(Request::Stop(b"baz")));
    // Trailing bytes after NAMES, DUMP and KILL are ignored (KILL `kxyz`
    // got "OK").
    assert_eq!(Request::decode(b"nxyz\0"), Ok(Request::Names));
    assert_eq!(Request::decode(b"dxyz"), Ok(Request::Dump));
    assert_eq!(Request::decode(b"kxyz"), Ok(Request::Kill));
    // Largest accepted frame: NAMES padded to Length 3057.
    let mut big = vec![0x0b, 0xf1, b'n'];
    big.extend_from_slice(&[b'x'; 3056]);
    assert_eq!(frame::check(&big), Ok(Some(3057)));
}

#[test]
fn refused_like_the_c_daemon() {
    // Framing: Length 0, 3058, 63000 were closed without a reply.
    assert_eq!(frame::check(&[0, 0]), Err(FrameError::Empty));
    assert_eq!(frame::check(&[0x0b, 0xf2]), Err(FrameError::TooLarge(3058)));
    assert_eq!(
        frame::check(&63000u16.to_be_bytes()),
        Err(FrameError::TooLarge(63000))
    );
    // ALIVE2 of Length 9, 11 and 13.
    let body = &ALIVE2_EMPTY_NAME_PADDED[2..];
    for len in [9, 11, 13] {
        assert!(Alive2Req::decode(&body[..len]).is_err(), "Length {len}");
    }
    // NUL in the name, inside or counted at the end.
    for name in [&b"foo\0bar"[..], b"foobar\0", b"\0"] {
        let f = Alive2Req {
            port: 5000,
            node_type: NodeType::Normal.code(),
            protocol: 0,
            high: 6,
            low: 6,
            name,
            extra: b"",
        }
        .encode();
        assert_eq!(Alive2Req::decode(&f[2..]), Err(Malformed::NulInName));
    }
    // Elen beyond the packet (`gurka`, Elen 1, no Extra bytes).
    let mut f = Alive2Req {
        port: 5000,
        node_type: NodeType::Normal.code(),
        protocol: 0,
        high: 5,
        low: 5,
        name: b"gurka",
        extra: b"",
    }
    .encode();
    let n = f.len();
    f[n - 2..].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(Alive2Req::decode(&f[2..]), Err(Malformed::BadLength));
    // Lookups closed without a reply: empty, NUL only, two trailing NULs, a
    // NUL inside, bad UTF-8, and 255 characters (the off-by-one).
    for body in [
        &b"z"[..],
        b"z\0",
        b"zfoo\0\0",
        b"zfo\0o",
        b"z\xc0\x80",
        b"z\xff",
    ] {
        assert_eq!(Request::decode(body), Err(Malformed::BadName), "{body:?}");
    }
    assert!(!is_lookup_name_ok(&[b'a'; 255]));
    assert!(is_lookup_name_ok(&[b'b'; 254]));
    assert!(!is_lookup_name_ok("\u{1F600}".repeat(255).as_bytes()));
    assert!(is_lookup_name_ok("\u{1F601}".repeat(254).as_bytes()));
    // STOP with Length 1.
    assert!(Request::decode(b"s").is_err());
    // Protocol-1 and reply codes are garbage.
    for cmd in [b'a', b'p', b'Y', b'y', b'v', b'w', 0, 0xff] {
        assert_eq!(
            Request::decode(&[cmd, b'f']),
            Err(Malformed::UnknownCommand),
            "{cmd}"
        );
    }
}

#[test]
fn registration_verdicts() {
    // Registered by the C daemon.
    assert_eq!(check_node_name(&[b'a'; 255]), Ok(()));
    assert_eq!(check_node_name("\u{1F600}".repeat(255).as_bytes()), Ok(()));
    assert_eq!(check_node_name("\u{1F600}".repeat(201).as_bytes()), Ok(()));
    // Refused with Result 1, creation 99.
    assert_eq!(
        check_node_name(&[b'b'; 256]),
        Err(NameError::TooManyChars(256))
    );
    assert_eq!(
        check_node_name("\u{1F601}".repeat(256).as_bytes()),
        Err(NameError::TooLong(1024))
    );
    assert_eq!(
        check_node_name(&[b'c'; 600]),
        Err(NameError::TooManyChars(600))
    );
    for bad in [
        &[0xc0, 0x80][..],
        &[0xed, 0xa0, 0x80],
        &[0xf4, 0x90, 0x80, 0x80],
        &[b'a', b'b', 0xe2, 0x82],
        &[0xff],
    ] {
        assert_eq!(check_node_name(bad), Err(NameError::BadEncoding), "{bad:?}");
    }
}
