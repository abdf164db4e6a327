#!/usr/bin/env python3
"""Writes the hand-made seed inputs into fuzz/corpus/<target>/seed-*.

Run from anywhere: python3 fuzz/make_seeds.py. The seeds are valid requests,
replies and registry-operation scripts; the fuzzer's own minimized inputs sit
beside them (named by their SHA-1). Layouts: docs/protocol.md and
crates/epmd-proto/src/{legacy,ext}.rs; the registry_ops byte format is
described in crates/epmd-server/tests/support/registry_harness.rs (Src).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u16(n):
    return struct.pack(">H", n)


def u32(n):
    return struct.pack(">I", n)


def b16(b):
    return u16(len(b)) + b


def frame(body):
    return u16(len(body)) + body


def alive2(port, ntype, proto, high, low, name, extra=b"", trailing=b""):
    return frame(b"x" + u16(port) + bytes([ntype, proto]) + u16(high) + u16(low)
                 + b16(name) + b16(extra) + trailing)


def transport(port, proto, extra=b""):
    return u16(port) + bytes([len(proto)]) + proto + b16(extra)


def alive3(ntype, high, low, name, ts):
    return frame(b"X" + bytes([ntype]) + u16(high) + u16(low) + b16(name)
                 + bytes([len(ts)]) + b"".join(transport(*t) for t in ts))


def port3(protos, name):
    return frame(b"Z" + bytes([len(protos)])
                 + b"".join(bytes([len(p)]) + p for p in protos) + b16(name))


def record(ntype, high, low, flags, name, ts):
    return (bytes([ntype]) + u16(high) + u16(low) + bytes([flags]) + b16(name)
            + bytes([len(ts)]) + b"".join(transport(*t) for t in ts))


REQUESTS = {
    "alive2-v6": alive2(5000, 77, 0, 6, 5, b"foo"),
    "alive2-v5-hidden-extra": alive2(40000, 72, 0, 5, 5, b"bar", b"AB\0"),
    "alive2-utf8": alive2(1, 77, 0, 6, 6, "n\u00f6de\U0001F608".encode()),
    "alive2-trailing": alive2(1, 77, 0, 6, 5, b"t", trailing=b"zz"),
    "alive2-empty-name-extra": frame(b"x" + u16(1) + b"M\0" + u16(6) + u16(5) + u16(0) + u16(0) + b"\0"),
    "alive2-nul-in-name": alive2(1, 77, 0, 6, 5, b"fo\0o"),
    "alive2-bad-elen": frame(b"x" + u16(1) + b"M\0" + u16(6) + u16(5) + b16(b"gurka") + u16(5)),
    "port-please2": frame(b"zfoo"),
    "port-please2-nul": frame(b"zfoo\0"),
    "port-please2-254": frame(b"z" + b"a" * 254),
    "names": frame(b"n"),
    "dump": frame(b"d"),
    "kill": frame(b"k"),
    "stop": frame(b"sfoo\0bar"),
    "alive3-tcp-tls": alive3(77, 6, 6, b"s", [(49645, b"inet_tcp"), (41477, b"inet_tls")]),
    "alive3-uds": alive3(77, 6, 6, b"s", [(0, b"uds", b"/tmp/s.sock"), (1, b"inet6_tcp")]),
    "alive3-bad-count": frame(bytes([88, 77, 0, 6, 0, 6, 0, 1]) + b"s" + bytes([255])),
    "port-please3": port3([b"inet_tls", b"inet_tcp"], b"s"),
    "port-please3-any": port3([], b"s"),
    "names3": frame(b"N"),
    "dump3": frame(b"D"),
    "unreg3": frame(b"U" + bytes([8]) + b"inet_tls"),
    "frame-empty": u16(0),
    "frame-too-large": u16(3058) + b"n",
    "frame-max": u16(3057) + b"n" + b"\0" * 3056,
    "frame-partial": u16(10) + b"z",
}

LEGACY_REC = record(77, 6, 5, 1, b"k", [(38558, b"")])
EXT_REC = record(77, 6, 6, 0, b"s", [(49645, b"inet_tcp"), (41477, b"inet_tls"),
                                      (0, b"uds", b"/tmp/s.sock")])
names3 = u32(4369) + u32(2) + EXT_REC + LEGACY_REC
dump3 = (u32(4369) + u32(2) + u32(7) + EXT_REC + u32(1800000001) + LEGACY_REC
         + u32(1) + u32(9) + u16(2) + b16(b"gone"))
port3_hit = b"\x77\x00" + EXT_REC

REPLIES = {
    "alive2-x-resp": bytes([118, 0]) + u32(1800000001),
    "alive2-resp": bytes([121, 0]) + u16(3),
    "alive2-x-fail": bytes([118, 1, 0, 0, 0, 99]),
    "port2-hit": bytes([0x77, 0, 0x13, 0x88, 0x4d, 0, 0, 6, 0, 6, 0, 3]) + b"foo" + b"\0\0",
    "port2-miss": bytes([0x77, 1]),
    "alive3-reply": u16(6) + bytes([118, 0]) + u32(1800000001),
    "unreg3-reply": u16(2) + bytes([117, 8]),
    "port3-hit": u16(len(port3_hit)) + port3_hit,
    "port3-miss": u16(2) + bytes([0x77, 1]),
    "names3": u32(len(names3)) + names3,
    "dump3": u32(len(dump3)) + dump3,
    "names-text": b"name foo at port 5000\nname b ar at port 1\n",
}


def tag(op, conn):
    """A registry_ops tag byte: tag % 6 = op, (tag >> 4) % 4 = conn."""
    for t in range(256):
        if t % 6 == op and (t >> 4) % 4 == conn:
            return t
    raise ValueError((op, conn))


NODE_V6 = 0b010  # type 77, high 6, low 5, protocol 0


def t_byte(proto, extra=0, off=0):
    # proto: 0 inet_tcp 1 inet6_tcp 2 inet_tls 3 inet6_tls 4 uds 5 quic 6 Bad 7 ""
    return proto | (extra << 3) | (off << 5)


def reg_legacy(conn, name, port, now=7, extra=0, node=NODE_V6):
    return bytes([tag(0, conn), name]) + u16(port) + bytes([node, extra, now])


def reg_ext(conn, name, ts, now=7, node=NODE_V6):
    return bytes([tag(1, conn), name, node, len(ts)] + ts + [now])


def add(conn, name, ts, node=NODE_V6):
    return bytes([tag(2, conn), name, node, len(ts)] + ts)


def remove(conn, name, proto):
    return bytes([tag(3, conn), name, proto])


def unreg(conn, name):
    return bytes([tag(4, conn), name])


def stop(name):
    return bytes([tag(5, 0), name])


REGISTRY = {
    "lifecycle": bytes([5, 1])
    + reg_legacy(1, 0, 5000)
    + reg_ext(2, 1, [t_byte(2), t_byte(0, off=1)])
    + add(2, 1, [t_byte(4, extra=1)])
    + remove(2, 1, 0)
    + unreg(3, 0)
    + unreg(1, 0)
    + stop(1)
    + reg_legacy(1, 0, 5001, now=0)
    + reg_legacy(3, 2, 5002, now=5),
    "recycle": bytes([10, 0])
    + reg_legacy(1, 0, 1, now=3) + unreg(1, 0)
    + reg_legacy(1, 1, 2, now=4) + unreg(1, 1)
    + reg_legacy(1, 2, 3, now=5),
    "capacity": bytes([1, 3]) + reg_legacy(1, 0, 1) + reg_legacy(2, 1, 2) + reg_ext(3, 2, [t_byte(0)]),
    "ext-errors": bytes([5, 3])
    + reg_ext(1, 3, [t_byte(0), t_byte(0)])          # repeated protocol
    + reg_ext(1, 3, [t_byte(6)])                      # bad protocol
    + reg_ext(1, 5, [t_byte(0)])                      # empty name
    + reg_ext(1, 3, [t_byte(0, extra=3)])             # extra too long
    + reg_ext(1, 3, [t_byte(i % 6, off=i % 8) for i in range(17)])  # too many
    + reg_ext(1, 3, [t_byte(3), t_byte(1)])
    + add(1, 3, [t_byte(1)])                          # protocol in use
    + add(1, 3, [t_byte(5)], node=NODE_V6 | 1)        # node mismatch
    + add(2, 3, [t_byte(5)])                          # not the owner
    + remove(1, 3, 4),                                # no such transport
    "names-limits": bytes([5, 3])
    + reg_legacy(1, 7, 1) + reg_legacy(1, 8, 2) + reg_legacy(1, 6, 3) + reg_legacy(1, 5, 4)
    + reg_legacy(1, 4, 5, extra=2) + reg_legacy(1, 0, 6, extra=3),
}


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


write("decode_request", REQUESTS)
write("decode_replies", REPLIES)
write("registry_ops", REGISTRY)
print(len(REQUESTS), len(REPLIES), len(REGISTRY))
