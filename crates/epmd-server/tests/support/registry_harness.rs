//! A model of `epmd_server::registry::Registry`, and a harness that applies
//! the same operations to both and compares everything observable after each.
//!
//! Shared, by `#[path]`, by three users:
//! - `tests/registry_model.rs` (proptest generates the operations),
//! - `tests/corpus_replay.rs` (replays `fuzz/corpus/registry_ops/*` on stable),
//! - `fuzz/fuzz_targets/registry_ops.rs` (libFuzzer's bytes become operations).
//!
//! The model is deliberately naive (vectors, linear scans) and written from
//! the rules in docs/protocol.md (§3, §8), not from the registry's code.

#![allow(dead_code)]

use std::collections::VecDeque;

use epmd_proto::ext::{self, Alive3Req, Dump3, Names3, NodeRecord, OldEntry, Status, TransportRef};
use epmd_proto::legacy::{Alive2Req, PortInfo};
use epmd_server::registry::{Filter, RegisterError, Registered, Registry};

/// Node names the operations pick from: ordinary ones, an empty one (legal
/// for ALIVE2, refused by ALIVE3), a non-UTF-8 one, 255 characters (the
/// limit) and 256 (one over).
pub(crate) const NAMES: [&[u8]; 9] = [
    b"a",
    b"b",
    b"c",
    b"node",
    "n\u{f6}de".as_bytes(),
    b"",
    b"\xff\xfe",
    &[b'y'; 255],
    &[b'x'; 256],
];

/// Protocol names: the well-known ones, an unknown valid one, two invalid.
pub(crate) const PROTOS: [&[u8]; 8] = [
    b"inet_tcp",
    b"inet6_tcp",
    b"inet_tls",
    b"inet6_tls",
    b"uds",
    b"quic",
    b"Bad",
    b"",
];

/// Extra fields: empty, a socket path, the 1020-byte limit, one over.
pub(crate) const EXTRAS: [&[u8]; 4] = [b"", b"/tmp/epmdx.sock", &[7u8; 1020], &[0u8; 1021]];

/// The port the listings report for the daemon.
const EPMD_PORT: u16 = 4369;

/// One transport of an operation. `port` is `(proto + 1) * 1000 + offset`,
/// so a port read back from a reply tells which protocol it belonged to.
#[derive(Debug, Clone)]
pub(crate) struct T {
    pub(crate) proto: u8,
    pub(crate) port_offset: u16,
    pub(crate) extra: u8,
}

impl T {
    fn proto(&self) -> &'static [u8] {
        PROTOS[usize::from(self.proto) % PROTOS.len()]
    }
    fn port(&self) -> u16 {
        (u16::from(self.proto) % PROTOS.len() as u16 + 1) * 1000 + self.port_offset % 1000
    }
    fn extra(&self) -> &'static [u8] {
        EXTRAS[usize::from(self.extra) % EXTRAS.len()]
    }
}

/// The protocol a port built by [`T::port`] belongs to.
fn proto_of_port(port: u16) -> Option<&'static [u8]> {
    PROTOS
        .get(usize::from(port / 1000).checked_sub(1)?)
        .copied()
}

/// One registry operation. Names, protocols and extras are indices into the
/// tables above (taken modulo their length).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    RegisterLegacy {
        conn: u64,
        name: u8,
        port: u16,
        node_type: u8,
        protocol: u8,
        high: u16,
        low: u16,
        extra: u8,
        now: u64,
    },
    RegisterExt {
        conn: u64,
        name: u8,
        node_type: u8,
        high: u16,
        low: u16,
        transports: Vec<T>,
        now: u64,
    },
    AddTransports {
        conn: u64,
        name: u8,
        req_name: u8,
        node_type: u8,
        high: u16,
        low: u16,
        transports: Vec<T>,
    },
    RemoveTransport {
        conn: u64,
        name: u8,
        proto: u8,
    },
    Unregister {
        conn: u64,
        name: u8,
    },
    Stop {
        name: u8,
    },
}

fn name_at(i: u8) -> &'static [u8] {
    NAMES[usize::from(i) % NAMES.len()]
}

/// What an operation returned, in a form both sides can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Registered(u32),
    BadName,
    ExtraTooLong(usize),
    Duplicate,
    Capacity,
    Ext(Status),
    Status(Status),
    Removed(bool),
}

fn outcome(r: Result<Registered, RegisterError>) -> Outcome {
    match r {
        Ok(reg) => Outcome::Registered(reg.creation),
        Err(RegisterError::BadName(_)) => Outcome::BadName,
        Err(RegisterError::ExtraTooLong(n)) => Outcome::ExtraTooLong(n),
        Err(RegisterError::Duplicate) => Outcome::Duplicate,
        Err(RegisterError::Capacity) => Outcome::Capacity,
        Err(RegisterError::Ext(s)) => Outcome::Ext(s),
        Err(e) => panic!("unexpected registry error {e:?}"),
    }
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct MTransport {
    port: u16,
    proto: Vec<u8>,
    extra: Vec<u8>,
}

#[derive(Debug, Clone)]
enum MKind {
    Legacy {
        port: u16,
        protocol: u8,
        extra: Vec<u8>,
    },
    Ext(Vec<MTransport>),
}

#[derive(Debug, Clone)]
struct MNode {
    name: Vec<u8>,
    conn: u64,
    fd: i32,
    counter: u32,
    node_type: u8,
    high: u16,
    low: u16,
    kind: MKind,
}

impl MNode {
    /// The port a legacy (PORT_PLEASE2, NAMES) caller is given: the ALIVE2
    /// port, or the first plain-TCP transport registered.
    fn legacy_port(&self) -> Option<u16> {
        match &self.kind {
            MKind::Legacy { port, .. } => Some(*port),
            MKind::Ext(ts) => first_plain_tcp(ts).map(|t| t.port),
        }
    }

    /// The node record a caller with this filter is sent.
    fn record(&self, protos: &[&[u8]], local: bool) -> NodeRecord {
        let (legacy, transports) = match &self.kind {
            MKind::Legacy { port, extra, .. } => (
                true,
                vec![ext::Transport {
                    port: *port,
                    proto: String::new(),
                    extra: extra.clone(),
                }],
            ),
            MKind::Ext(ts) => {
                let visible = |t: &&MTransport| local || t.proto != b"uds";
                let chosen: Vec<&MTransport> = if protos.is_empty() {
                    ts.iter().filter(visible).collect()
                } else {
                    protos
                        .iter()
                        .filter_map(|p| ts.iter().find(|t| t.proto == *p))
                        .filter(visible)
                        .collect()
                };
                (
                    false,
                    chosen
                        .into_iter()
                        .map(|t| ext::Transport {
                            port: t.port,
                            proto: String::from_utf8(t.proto.clone()).unwrap(),
                            extra: t.extra.clone(),
                        })
                        .collect(),
                )
            }
        };
        NodeRecord {
            node_type: self.node_type,
            high: self.high,
            low: self.low,
            legacy,
            name: self.name.clone(),
            transports,
        }
    }
}

fn is_plain_tcp(proto: &[u8]) -> bool {
    proto == b"inet_tcp" || proto == b"inet6_tcp"
}

fn is_tls(proto: &[u8]) -> bool {
    proto == b"inet_tls" || proto == b"inet6_tls"
}

/// What legacy callers see of an unmarked node (docs/protocol.md §4): the
/// first plain-TCP transport, else the first TLS one.
fn first_plain_tcp(ts: &[MTransport]) -> Option<&MTransport> {
    ts.iter()
        .find(|t| is_plain_tcp(&t.proto))
        .or_else(|| ts.iter().find(|t| is_tls(&t.proto)))
}

#[derive(Debug, Clone)]
struct MOld {
    name: Vec<u8>,
    port: u16,
    counter: u32,
    fd: i32,
}

/// OTP's node-name rule: at most 1020 bytes of UTF-8, at most 255 characters.
fn name_ok(name: &[u8]) -> bool {
    name.len() <= 1020 && std::str::from_utf8(name).is_ok_and(|s| s.chars().count() <= 255)
}

/// `[a-z][a-z0-9_]{0,31}`.
fn proto_ok(p: &[u8]) -> bool {
    matches!(p.first(), Some(b'a'..=b'z'))
        && p.len() <= 32
        && p.iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The ALIVE3 request rules, in the order the protocol document gives them.
fn validate3(name: &[u8], ts: &[MTransport]) -> Result<(), Status> {
    if !name_ok(name) || name.is_empty() || ts.is_empty() {
        return Err(Status::Refused);
    }
    if ts.len() > 16 {
        return Err(Status::TooManyTransports);
    }
    for (i, t) in ts.iter().enumerate() {
        if !proto_ok(&t.proto) || ts[..i].iter().any(|o| o.proto == t.proto) {
            return Err(Status::BadProtocol);
        }
        if t.extra.len() > 1020 {
            return Err(Status::Refused);
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Model {
    /// Live nodes, oldest registration first.
    live: Vec<MNode>,
    /// The unregistered-names list, oldest first.
    old: VecDeque<MOld>,
    capacity: usize,
    old_cap: usize,
}

impl Model {
    fn find(&self, name: &[u8]) -> Option<usize> {
        self.live.iter().position(|n| n.name == name)
    }

    /// Creation rules: a listed name gets its counter + 1; a new name, while
    /// the list is over its cap, takes the oldest entry's counter unchanged;
    /// otherwise `now + 1`. Any bumped value below 4 becomes 4 (u32 wrap).
    fn take_counter(&mut self, name: &[u8], now: u64) -> u32 {
        let floor4 = |c: u32| if c < 4 { 4 } else { c };
        if let Some(i) = self.old.iter().position(|o| o.name == name) {
            let o = self.old.remove(i).unwrap();
            return floor4(o.counter.wrapping_add(1));
        }
        if self.old.len() > self.old_cap {
            return self.old.pop_front().unwrap().counter;
        }
        // time_t truncated to 32 bits, then + 1.
        let now32 = u32::try_from(now % (1 << 32)).unwrap();
        floor4(now32.wrapping_add(1))
    }

    fn admit(&self, name: &[u8]) -> Result<(), Outcome> {
        if self.find(name).is_some() {
            return Err(Outcome::Duplicate);
        }
        if self.live.len() >= self.capacity {
            return Err(Outcome::Capacity);
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) {
        let n = self.live.remove(i);
        self.old.push_back(MOld {
            port: n.legacy_port().unwrap_or(0),
            name: n.name,
            counter: n.counter,
            fd: n.fd,
        });
    }

    fn apply(&mut self, op: &Op, fd: i32) -> Outcome {
        match op {
            Op::RegisterLegacy {
                conn,
                name,
                port,
                node_type,
                protocol,
                high,
                low,
                extra,
                now,
            } => {
                let name = name_at(*name);
                let extra = EXTRAS[usize::from(*extra) % EXTRAS.len()];
                if !name_ok(name) {
                    return Outcome::BadName;
                }
                if extra.len() > 1020 {
                    return Outcome::ExtraTooLong(extra.len());
                }
                if let Err(o) = self.admit(name) {
                    return o;
                }
                let counter = self.take_counter(name, *now);
                self.live.push(MNode {
                    name: name.to_vec(),
                    conn: *conn,
                    fd,
                    counter,
                    node_type: *node_type,
                    high: *high,
                    low: *low,
                    kind: MKind::Legacy {
                        port: *port,
                        protocol: *protocol,
                        extra: extra.to_vec(),
                    },
                });
                Outcome::Registered(counter)
            }
            Op::RegisterExt {
                conn,
                name,
                node_type,
                high,
                low,
                transports,
                now,
            } => {
                let name = name_at(*name);
                let ts = model_transports(transports);
                if let Err(s) = validate3(name, &ts) {
                    return Outcome::Ext(s);
                }
                if let Err(o) = self.admit(name) {
                    return o;
                }
                let counter = self.take_counter(name, *now);
                self.live.push(MNode {
                    name: name.to_vec(),
                    conn: *conn,
                    fd,
                    counter,
                    node_type: *node_type,
                    high: *high,
                    low: *low,
                    kind: MKind::Ext(ts),
                });
                Outcome::Registered(counter)
            }
            Op::AddTransports {
                conn,
                name,
                req_name,
                node_type,
                high,
                low,
                transports,
            } => {
                let (name, req_name) = (name_at(*name), name_at(*req_name));
                let ts = model_transports(transports);
                if let Err(s) = validate3(req_name, &ts) {
                    return Outcome::Ext(s);
                }
                let Some(i) = self.find(name).filter(|&i| self.live[i].conn == *conn) else {
                    return Outcome::Ext(Status::NotRegistered);
                };
                let node = &mut self.live[i];
                if req_name != name
                    || *node_type != node.node_type
                    || *high != node.high
                    || *low != node.low
                {
                    return Outcome::Ext(Status::NodeMismatch);
                }
                let MKind::Ext(have) = &mut node.kind else {
                    return Outcome::Ext(Status::NodeMismatch);
                };
                if ts.iter().any(|t| have.iter().any(|h| h.proto == t.proto)) {
                    return Outcome::Ext(Status::ProtoInUse);
                }
                if have.len() + ts.len() > 16 {
                    return Outcome::Ext(Status::TooManyTransports);
                }
                have.extend(ts);
                Outcome::Registered(node.counter)
            }
            Op::RemoveTransport { conn, name, proto } => {
                let name = name_at(*name);
                let proto = PROTOS[usize::from(*proto) % PROTOS.len()];
                let Some(i) = self.find(name).filter(|&i| self.live[i].conn == *conn) else {
                    return Outcome::Status(Status::NotRegistered);
                };
                let MKind::Ext(have) = &mut self.live[i].kind else {
                    return Outcome::Status(Status::NotRegistered);
                };
                match have.iter().position(|t| t.proto == proto) {
                    None => Outcome::Status(Status::NoSuchTransport),
                    Some(j) => {
                        have.remove(j);
                        Outcome::Status(Status::Ok)
                    }
                }
            }
            Op::Unregister { conn, name } => {
                match self
                    .find(name_at(*name))
                    .filter(|&i| self.live[i].conn == *conn)
                {
                    Some(i) => {
                        self.remove(i);
                        Outcome::Removed(true)
                    }
                    None => Outcome::Removed(false),
                }
            }
            Op::Stop { name } => match self.find(name_at(*name)) {
                Some(i) => {
                    self.remove(i);
                    Outcome::Removed(true)
                }
                None => Outcome::Removed(false),
            },
        }
    }
}

fn model_transports(ts: &[T]) -> Vec<MTransport> {
    ts.iter()
        .map(|t| MTransport {
            port: t.port(),
            proto: t.proto().to_vec(),
            extra: t.extra().to_vec(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// A registry and its model, driven in lockstep.
#[derive(Debug)]
pub(crate) struct Harness {
    reg: Registry<()>,
    model: Model,
    steps: usize,
}

impl Harness {
    pub(crate) fn new(capacity: usize, old_cap: usize) -> Self {
        Self {
            reg: Registry::new(capacity, old_cap),
            model: Model {
                live: Vec::new(),
                old: VecDeque::new(),
                capacity,
                old_cap,
            },
            steps: 0,
        }
    }

    /// Applies `op` to the registry and the model, asserts that both gave
    /// the same answer, then checks every invariant. Returns the answer.
    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        self.steps += 1;
        let fd = i32::try_from(self.steps % 1000).unwrap() + 3;
        let want = self.model.apply(op, fd);
        let got = self.apply_registry(op, fd);
        assert_eq!(got, want, "step {}: {op:?}", self.steps);
        self.check();
        got
    }

    fn apply_registry(&mut self, op: &Op, fd: i32) -> Outcome {
        match op {
            Op::RegisterLegacy {
                conn,
                name,
                port,
                node_type,
                protocol,
                high,
                low,
                extra,
                now,
            } => {
                let req = Alive2Req {
                    port: *port,
                    node_type: *node_type,
                    protocol: *protocol,
                    high: *high,
                    low: *low,
                    name: name_at(*name),
                    extra: EXTRAS[usize::from(*extra) % EXTRAS.len()],
                };
                outcome(self.reg.register_legacy(*conn, fd, &req, *now, ()))
            }
            Op::RegisterExt {
                conn,
                name,
                node_type,
                high,
                low,
                transports,
                now,
            } => {
                let req = alive3(name_at(*name), *node_type, *high, *low, transports);
                outcome(self.reg.register_ext(*conn, fd, &req, *now, ()))
            }
            Op::AddTransports {
                conn,
                name,
                req_name,
                node_type,
                high,
                low,
                transports,
            } => {
                let req = alive3(name_at(*req_name), *node_type, *high, *low, transports);
                outcome(self.reg.add_transports(*conn, name_at(*name), &req))
            }
            Op::RemoveTransport { conn, name, proto } => {
                Outcome::Status(self.reg.remove_transport(
                    *conn,
                    name_at(*name),
                    PROTOS[usize::from(*proto) % PROTOS.len()],
                ))
            }
            Op::Unregister { conn, name } => {
                Outcome::Removed(self.reg.unregister(*conn, name_at(*name)).is_some())
            }
            Op::Stop { name } => Outcome::Removed(self.reg.stop(name_at(*name)).is_some()),
        }
    }

    /// Compares everything the registry shows with the model.
    pub(crate) fn check(&mut self) {
        let (reg, m) = (&mut self.reg, &self.model);
        let step = self.steps;

        // Capacity is never exceeded.
        assert_eq!(reg.len(), m.live.len(), "step {step}: live count");
        assert!(reg.len() <= reg.capacity(), "step {step}: over capacity");
        assert_eq!(reg.is_empty(), m.live.is_empty());

        // NAMES: newest first, exactly the live nodes with a legacy port.
        let mut want_names = Vec::new();
        let mut want_dump = Vec::new();
        for n in m.live.iter().rev() {
            if let Some(port) = n.legacy_port() {
                want_names.push(
                    [
                        b"name ",
                        &n.name[..],
                        format!(" at port {port}\n").as_bytes(),
                    ]
                    .concat(),
                );
                want_dump.push(
                    [
                        b"active name     <",
                        &n.name[..],
                        format!("> at port {port}, fd = {}\n\0", n.fd).as_bytes(),
                    ]
                    .concat(),
                );
            }
        }
        for o in &m.old {
            want_dump.push(
                [
                    b"old/unused name <",
                    &o.name[..],
                    format!(">, port = {}, fd = {} \n\0", o.port, o.fd).as_bytes(),
                ]
                .concat(),
            );
        }
        let names = reg.names_listing(EPMD_PORT);
        let dump = reg.dump_listing(EPMD_PORT);
        let lines = |l: &epmd_proto::legacy::TextListing| -> Vec<Vec<u8>> {
            l.parts().skip(1).map(<[u8]>::to_vec).collect()
        };
        assert_eq!(lines(&names), want_names, "step {step}: NAMES");
        assert_eq!(lines(&dump), want_dump, "step {step}: DUMP");
        // The shared copies are the same bytes (and were dropped by every
        // change since the last step).
        assert_eq!(
            &reg.names(EPMD_PORT)[..],
            names.as_bytes(),
            "step {step}: cached NAMES"
        );
        assert_eq!(
            &reg.dump(EPMD_PORT)[..],
            dump.as_bytes(),
            "step {step}: cached DUMP"
        );

        // PORT_PLEASE2: the ALIVE2 fields, or the first plain-TCP transport,
        // else the first TLS one; never a Unix-socket one.
        for name in NAMES.iter().chain([&b"nobody"[..]].iter()) {
            let got = reg.port2_reply(name).map(|r| {
                PortInfo::decode_reply(&r)
                    .expect("PORT2 reply decodes")
                    .expect("PORT2 reply is a hit")
            });
            let want = m.find(name).and_then(|i| {
                let n = &m.live[i];
                let (port, protocol, extra) = match &n.kind {
                    MKind::Legacy {
                        port,
                        protocol,
                        extra,
                    } => (*port, *protocol, extra.clone()),
                    MKind::Ext(ts) => {
                        let t = first_plain_tcp(ts)?;
                        (t.port, 0, t.extra.clone())
                    }
                };
                Some(PortInfo {
                    port,
                    node_type: n.node_type,
                    protocol,
                    high: n.high,
                    low: n.low,
                    name: n.name.clone(),
                    extra,
                })
            });
            if let (Some(info), Some(i)) = (&got, m.find(name)) {
                if matches!(m.live[i].kind, MKind::Ext(_)) {
                    let proto = proto_of_port(info.port).expect("port from the table");
                    assert!(
                        is_plain_tcp(proto) || is_tls(proto),
                        "step {step}: PORT2 for {name:?} points at {proto:?}"
                    );
                }
            }
            assert_eq!(got, want, "step {step}: PORT2 for {name:?}");
        }

        // DUMP3: live nodes newest first with their creation, then the
        // unregistered list oldest first (this checks every counter).
        let dump = ext::decode_dump3_body(
            ext::check_reply32(&reg.dump3(EPMD_PORT)).expect("complete DUMP3"),
        )
        .expect("DUMP3 decodes");
        let want_dump3 = Dump3 {
            epmd_port: u32::from(EPMD_PORT),
            live: m
                .live
                .iter()
                .rev()
                .map(|n| (n.counter, n.record(&[], true)))
                .collect(),
            old: m
                .old
                .iter()
                .map(|o| OldEntry {
                    creation: o.counter,
                    port: o.port,
                    name: o.name.clone(),
                })
                .collect(),
        };
        assert_eq!(dump, want_dump3, "step {step}: DUMP3");
        // A name is held by at most one registration.
        for (i, (_, a)) in dump.live.iter().enumerate() {
            assert!(
                dump.live[..i].iter().all(|(_, b)| b.name != a.name),
                "step {step}: {:?} listed twice",
                a.name
            );
        }

        // NAMES3, for local and remote callers.
        for local in [false, true] {
            let got = ext::decode_names3_body(
                ext::check_reply32(&reg.names3(EPMD_PORT, local)).expect("complete NAMES3"),
            )
            .expect("NAMES3 decodes");
            let want = Names3 {
                epmd_port: u32::from(EPMD_PORT),
                nodes: m.live.iter().rev().map(|n| n.record(&[], local)).collect(),
            };
            assert_eq!(got, want, "step {step}: NAMES3 local={local}");
        }

        // PORT_PLEASE3 with a few filters.
        let filters: [(&[&[u8]], bool); 4] = [
            (&[], false),
            (&[], true),
            (&[b"uds", b"inet_tls", b"inet_tcp"], false),
            (&[b"inet6_tcp", b"quic", b"uds"], true),
        ];
        for name in NAMES.iter().chain([&b"nobody"[..]].iter()) {
            for (protos, local) in filters {
                let got = reg.port3_reply(name, &Filter { protos, local });
                let want = match m.find(name) {
                    None => ext::encode_port3_status(Status::Refused).to_vec(),
                    Some(i) => {
                        let rec = m.live[i].record(protos, local);
                        let mut body = Vec::new();
                        ext::put_node_record(
                            &mut body,
                            rec.node_type,
                            rec.high,
                            rec.low,
                            u8::from(rec.legacy),
                            &rec.name,
                            rec.transports.iter().map(|t| TransportRef {
                                port: t.port,
                                proto: t.proto.as_bytes(),
                                extra: &t.extra,
                            }),
                        );
                        ext::frame_port3_hit(&body)
                    }
                };
                assert_eq!(
                    got, want,
                    "step {step}: PORT3 {name:?} protos={protos:?} local={local}"
                );
            }
        }
    }
}

fn alive3<'a>(name: &'a [u8], node_type: u8, high: u16, low: u16, ts: &[T]) -> Alive3Req<'a> {
    Alive3Req {
        node_type,
        high,
        low,
        name,
        transports: ts
            .iter()
            .map(|t| TransportRef {
                port: t.port(),
                proto: t.proto(),
                extra: t.extra(),
            })
            .collect(),
        legacy_default: 0,
    }
}

// ---------------------------------------------------------------------------
// Bytes to operations (the fuzz target's and the corpus replay's input)
// ---------------------------------------------------------------------------

/// The most operations one input runs, to keep each execution short.
pub(crate) const MAX_OPS: usize = 256;

struct Src<'a>(&'a [u8]);

impl Src<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    /// A clock value: mostly ones near the creation rules' edges.
    fn now(&mut self) -> Option<u64> {
        const NOWS: [u64; 8] = [
            0,
            2,
            3,
            1_000,
            u32::MAX as u64 - 1,
            u32::MAX as u64,
            (1 << 32) + 2,
            1_800_000_000,
        ];
        let b = self.u8()?;
        Some(if b < 128 {
            NOWS[usize::from(b) % NOWS.len()]
        } else {
            u64::from(b) << 24
        })
    }

    /// Node type, highest and lowest version packed in one byte.
    fn node(&mut self) -> Option<(u8, u16, u16, u8)> {
        let f = self.u8()?;
        Some((
            if f & 1 == 0 { 77 } else { 72 },
            5 + u16::from((f >> 1) & 1),
            5 + u16::from((f >> 2) & 1),
            (f >> 3) & 1,
        ))
    }

    /// A transport list: a count (0..=18), then one byte per transport
    /// (protocol in bits 0-2, extra in bits 3-4, port offset in bits 5-7).
    fn transports(&mut self) -> Option<Vec<T>> {
        let n = self.u8()? % 19;
        (0..n)
            .map(|_| {
                let b = self.u8()?;
                Some(T {
                    proto: b & 7,
                    extra: (b >> 3) & 3,
                    port_offset: u16::from(b >> 5),
                })
            })
            .collect()
    }

    fn op(&mut self) -> Option<Op> {
        let tag = self.u8()?;
        let conn = u64::from((tag >> 4) % 4);
        Some(match tag % 6 {
            0 => {
                let name = self.u8()?;
                let port = self.u16()?;
                let (node_type, high, low, protocol) = self.node()?;
                Op::RegisterLegacy {
                    conn,
                    name,
                    port,
                    node_type,
                    protocol,
                    high,
                    low,
                    extra: self.u8()?,
                    now: self.now()?,
                }
            }
            1 => {
                let name = self.u8()?;
                let (node_type, high, low, _) = self.node()?;
                Op::RegisterExt {
                    conn,
                    name,
                    node_type,
                    high,
                    low,
                    transports: self.transports()?,
                    now: self.now()?,
                }
            }
            2 => {
                // One byte picks both names: low nibble the registered one,
                // high nibble the one in the request (usually the same).
                let b = self.u8()?;
                let name = b & 15;
                let req_name = if b >> 4 < 12 { name } else { b >> 4 };
                let (node_type, high, low, _) = self.node()?;
                Op::AddTransports {
                    conn,
                    name,
                    req_name,
                    node_type,
                    high,
                    low,
                    transports: self.transports()?,
                }
            }
            3 => Op::RemoveTransport {
                conn,
                name: self.u8()?,
                proto: self.u8()?,
            },
            4 => Op::Unregister {
                conn,
                name: self.u8()?,
            },
            _ => Op::Stop { name: self.u8()? },
        })
    }
}

/// The fuzzing entry point: the first two bytes set the capacity (0..=5)
/// and the unregistered list's cap (0..=3); the rest is read as operations
/// until it runs out (or [`MAX_OPS`]).
pub(crate) fn run_bytes(data: &[u8]) {
    let mut src = Src(data);
    let (Some(cap), Some(old_cap)) = (src.u8(), src.u8()) else {
        return;
    };
    let mut h = Harness::new(usize::from(cap % 6), usize::from(old_cap % 4));
    h.check();
    for _ in 0..MAX_OPS {
        let Some(op) = src.op() else { break };
        let _ = h.apply(&op);
    }
}
