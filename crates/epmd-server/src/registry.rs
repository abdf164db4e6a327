//! The registry of live nodes and the unregistered-names list, with OTP's
//! creation rules. Pure data structure: no I/O, no clock (the caller passes
//! the Unix time), so every rule is unit-testable.
//!
//! Each live node is owned by one connection ([`ConnId`]); only that
//! connection can add or remove its transports, and its closing removes them
//! all. Replies that lookups send are pre-encoded when a node changes, so a
//! PORT_PLEASE2 costs one hash lookup and a reference-count increment.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use epmd_proto::ext::{self, Status, TransportRef, FLAG_LEGACY};
use epmd_proto::legacy::{self, Alive2Req};
use epmd_proto::limits::MAX_TRANSPORTS;
use epmd_proto::name::{check_node_name, proto};

mod snapshot;
pub use snapshot::{KindState, NodeState, OldState, Snapshot, TransportState};

/// Identifies the connection that owns a registration.
pub type ConnId = u64;

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name breaks OTP's rules (length, encoding, character count).
    #[error("invalid node name: {0}")]
    BadName(#[from] epmd_proto::name::NameError),
    /// Extra longer than 1020 bytes.
    #[error("extra data is too long ({0})")]
    ExtraTooLong(usize),
    /// Another connection holds the name.
    #[error("node name already occupied")]
    Duplicate,
    /// The daemon holds its maximum number of registrations.
    #[error("registration capacity reached")]
    Capacity,
    /// An extension-specific refusal.
    #[error("{}", .0.describe())]
    Ext(Status),
}

impl RegisterError {
    /// The extension status for this error.
    pub fn status(self) -> Status {
        match self {
            Self::BadName(_) | Self::ExtraTooLong(_) => Status::Refused,
            Self::Duplicate => Status::NameInUse,
            Self::Capacity => Status::Capacity,
            Self::Ext(s) => s,
        }
    }
}

/// One transport of an extended node.
#[derive(Debug, Clone)]
struct Transport {
    port: u16,
    proto: Box<str>,
    extra: Box<[u8]>,
    /// Marked in ALIVE3 as what legacy callers see.
    legacy: bool,
}

impl Transport {
    fn as_ref(&self) -> TransportRef<'_> {
        TransportRef {
            port: self.port,
            proto: self.proto.as_bytes(),
            extra: &self.extra,
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    /// Registered with ALIVE2: fields echoed verbatim.
    Legacy {
        port: u16,
        protocol: u8,
        extra: Box<[u8]>,
    },
    /// Registered with ALIVE3: transports in registration order.
    Ext { transports: Vec<Transport> },
}

#[derive(Debug)]
struct Node<H> {
    conn: ConnId,
    seq: u64,
    counter: u32,
    fd: i32,
    node_type: u8,
    high: u16,
    low: u16,
    kind: Kind,
    /// PORT2_RESP for legacy callers; `None` when the node has no plain-TCP
    /// transport, so legacy lookups miss.
    port2: Option<Arc<[u8]>>,
    handle: H,
}

impl<H> Node<H> {
    /// The port legacy callers see, if any.
    fn legacy_port(&self) -> Option<u16> {
        match &self.kind {
            Kind::Legacy { port, .. } => Some(*port),
            Kind::Ext { transports } => default_tcp(transports).map(|t| t.port),
        }
    }

    fn recompute_port2(&mut self, name: &[u8]) {
        self.port2 = match &self.kind {
            Kind::Legacy {
                port,
                protocol,
                extra,
            } => Some(
                legacy::encode_port2_hit(
                    *port,
                    self.node_type,
                    *protocol,
                    self.high,
                    self.low,
                    name,
                    extra,
                )
                .into(),
            ),
            Kind::Ext { transports } => default_tcp(transports).map(|t| {
                legacy::encode_port2_hit(
                    t.port,
                    self.node_type,
                    0,
                    self.high,
                    self.low,
                    name,
                    &t.extra,
                )
                .into()
            }),
        };
    }

    /// The record's fixed part.
    fn head<'a>(&self, name: &'a [u8]) -> ext::RecordHead<'a> {
        ext::RecordHead {
            node_type: self.node_type,
            high: self.high,
            low: self.low,
            flags: match self.kind {
                Kind::Legacy { .. } => FLAG_LEGACY,
                Kind::Ext { .. } => 0,
            },
            name,
        }
    }

    /// The transports `filter` lets the caller see, in its order; a legacy
    /// node's one transport always (protocol unknown).
    fn visible<'a>(&'a self, filter: &Filter<'_>) -> Vec<TransportRef<'a>> {
        match &self.kind {
            Kind::Legacy { port, extra, .. } => vec![TransportRef {
                port: *port,
                proto: b"",
                extra,
            }],
            Kind::Ext { transports } => filter
                .select(transports)
                .into_iter()
                .map(Transport::as_ref)
                .collect(),
        }
    }

    fn put_record(&self, out: &mut Vec<u8>, name: &[u8], filter: &Filter<'_>) {
        self.head(name).put(out, self.visible(filter).into_iter());
    }
}

/// What legacy callers see (docs/protocol.md §4): the first transport the
/// node marked, else the first plain-TCP one, else the first TLS one (what
/// a TLS-only node registered with ALIVE2 on a stock epmd looks like).
/// Never a host-local transport such as a Unix socket.
fn default_tcp(transports: &[Transport]) -> Option<&Transport> {
    transports
        .iter()
        .find(|t| t.legacy && !proto::is_host_local(&t.proto))
        .or_else(|| transports.iter().find(|t| proto::is_plain_tcp(&t.proto)))
        .or_else(|| transports.iter().find(|t| proto::is_tls(&t.proto)))
}

fn owned_transports(req: &ext::Alive3Req<'_>) -> Vec<Transport> {
    req.transports
        .iter()
        .enumerate()
        .map(|(i, t)| Transport {
            legacy: req.is_legacy_default(i),
            ..to_owned(t)
        })
        .collect()
}

/// Which transports a caller may see, in which order.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'a> {
    /// The caller's protocols, most preferred first; empty = all.
    pub protos: &'a [&'a [u8]],
    /// Whether the caller is on the daemon's host (may see Unix sockets).
    pub local: bool,
}

impl Filter<'_> {
    fn visible(&self, t: &Transport) -> bool {
        self.local || !proto::is_host_local(&t.proto)
    }

    fn select<'t>(&self, transports: &'t [Transport]) -> Vec<&'t Transport> {
        if self.protos.is_empty() {
            transports.iter().filter(|t| self.visible(t)).collect()
        } else {
            self.protos
                .iter()
                .filter_map(|p| transports.iter().find(|t| t.proto.as_bytes() == *p))
                .filter(|t| self.visible(t))
                .collect()
        }
    }
}

/// An unregistered-list entry: the name's creation counter survives here.
#[derive(Debug, Clone)]
struct Old {
    name: Box<[u8]>,
    port: u16,
    counter: u32,
    fd: i32,
}

/// Raises a creation counter: +1, and any result below 4 becomes 4.
fn bump(counter: u32) -> u32 {
    counter.wrapping_add(1).max(4)
}

/// What a successful registration returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The name's 32-bit creation counter.
    pub creation: u32,
}

impl Registered {
    /// The 16-bit creation a version-5 (121 reply) client gets: 1..=3.
    pub fn legacy_creation(self) -> u16 {
        // `% 3 + 1` is at most 3, so the cast is exact.
        (self.creation % 3 + 1) as u16
    }
}

/// Told of every change of a live node: its name and its state now
/// (`None` once it is gone). Called with the registry locked, so it must
/// only record the change and return (the cluster publisher hands it to
/// another task); it must not call back into the registry.
pub type Observer = Box<dyn FnMut(&[u8], Option<&NodeState>) + Send>;

/// Holds the optional [`Observer`] (a closure has no `Debug`).
struct ObserverSlot(Option<Observer>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Observer)"
        } else {
            "None"
        })
    }
}

/// Listings encoded once per registry change and shared by every caller
/// until the next change (a clone is a reference-count increment), so a
/// crowd of clients asking for a big listing costs one copy, not one each.
#[derive(Debug, Default)]
struct Listings {
    /// The epmd port the cached listings carry in their header.
    port: u16,
    names: Option<Bytes>,
    dump: Option<Bytes>,
    names3_local: Option<Bytes>,
    names3_remote: Option<Bytes>,
    dump3: Option<Bytes>,
}

/// The registry. `H` is a handle stored with each node (the daemon keeps a
/// way to close the owning connection there, for STOP).
#[derive(Debug)]
pub struct Registry<H> {
    nodes: HashMap<Box<[u8]>, Node<H>>,
    /// Registration sequence -> name; iterated newest first for NAMES.
    order: BTreeMap<u64, Box<[u8]>>,
    next_seq: u64,
    old: VecDeque<Old>,
    old_cap: usize,
    capacity: usize,
    observer: ObserverSlot,
    listings: Listings,
}

impl<H> Registry<H> {
    /// An empty registry holding at most `capacity` live nodes, with an
    /// unregistered list recycled beyond `old_cap` entries (1000, or 5 with
    /// `-d`, in OTP).
    pub fn new(capacity: usize, old_cap: usize) -> Self {
        Self {
            nodes: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            old: VecDeque::new(),
            old_cap,
            capacity,
            observer: ObserverSlot(None),
            listings: Listings::default(),
        }
    }

    /// Installs `observer` and tells it of every node already registered
    /// (oldest first), so it starts from the full state; from then on it
    /// hears of every registration, transport change and removal.
    pub fn set_observer(&mut self, mut observer: Observer) {
        for name in self.order.values() {
            observer(name, Some(&snapshot::node_state(name, &self.nodes[name])));
        }
        self.observer = ObserverSlot(Some(observer));
    }

    /// Tells the observer, if any, what `name` is now.
    fn changed(&mut self, name: &[u8]) {
        if let Some(obs) = self.observer.0.as_mut() {
            let state = self.nodes.get(name).map(|n| snapshot::node_state(name, n));
            obs(name, state.as_ref());
        }
    }

    /// Drops the cached listings: called by every change to the live
    /// nodes or the unregistered list.
    fn invalidate_listings(&mut self) {
        self.listings = Listings::default();
    }

    /// The cached listing in `slot` for `port`, encoding it on a miss.
    fn cached(
        &mut self,
        port: u16,
        slot: fn(&mut Listings) -> &mut Option<Bytes>,
        encode: impl FnOnce(&Self) -> Vec<u8>,
    ) -> Bytes {
        if self.listings.port != port {
            self.listings = Listings {
                port,
                ..Listings::default()
            };
        }
        if let Some(b) = slot(&mut self.listings) {
            return b.clone();
        }
        let b = Bytes::from(encode(self));
        *slot(&mut self.listings) = Some(b.clone());
        b
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Live nodes by kind: (ALIVE2, ALIVE3).
    pub fn kinds(&self) -> (usize, usize) {
        let legacy = self
            .nodes
            .values()
            .filter(|n| matches!(n.kind, Kind::Legacy { .. }))
            .count();
        (legacy, self.nodes.len() - legacy)
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The most live nodes this registry accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes the creation counter for a new registration of `name`,
    /// following the C epmd: a listed name gets its old counter + 1; a new
    /// name recycles the oldest list entry's counter unchanged when the list
    /// is over its cap, else gets `now + 1`.
    fn take_counter(&mut self, name: &[u8], now_unix: u64) -> u32 {
        if let Some(i) = self.old.iter().position(|o| *o.name == *name) {
            let o = self.old.remove(i).expect("index from position");
            return bump(o.counter);
        }
        if self.old.len() > self.old_cap {
            if let Some(o) = self.old.pop_front() {
                return o.counter;
            }
        }
        // time_t truncated to 32 bits, as the C server's arithmetic does.
        bump(now_unix as u32)
    }

    fn check_free(&self, name: &[u8]) -> Result<(), RegisterError> {
        if self.nodes.contains_key(name) {
            return Err(RegisterError::Duplicate);
        }
        if self.nodes.len() >= self.capacity {
            return Err(RegisterError::Capacity);
        }
        Ok(())
    }

    fn insert(&mut self, name: &[u8], mut node: Node<H>) -> Registered {
        let seq = self.next_seq;
        self.next_seq += 1;
        node.seq = seq;
        node.recompute_port2(name);
        let creation = node.counter;
        self.order.insert(seq, name.into());
        self.nodes.insert(name.into(), node);
        self.invalidate_listings();
        self.changed(name);
        Registered { creation }
    }

    /// Registers a node from ALIVE2, with the C epmd's checks.
    pub fn register_legacy(
        &mut self,
        conn: ConnId,
        fd: i32,
        req: &Alive2Req<'_>,
        now_unix: u64,
        handle: H,
    ) -> Result<Registered, RegisterError> {
        check_node_name(req.name)?;
        if req.extra.len() > epmd_proto::limits::MAX_SYMLEN {
            return Err(RegisterError::ExtraTooLong(req.extra.len()));
        }
        let kind = Kind::Legacy {
            port: req.port,
            protocol: req.protocol,
            extra: req.extra.into(),
        };
        let header = (req.node_type, req.high, req.low);
        self.register(conn, fd, req.name, header, kind, now_unix, handle)
    }

    /// Registers a node from its first ALIVE3. The request must have passed
    /// [`ext::Alive3Req::validate`].
    pub fn register_ext(
        &mut self,
        conn: ConnId,
        fd: i32,
        req: &ext::Alive3Req<'_>,
        now_unix: u64,
        handle: H,
    ) -> Result<Registered, RegisterError> {
        req.validate().map_err(RegisterError::Ext)?;
        let kind = Kind::Ext {
            transports: owned_transports(req),
        };
        let header = (req.node_type, req.high, req.low);
        self.register(conn, fd, req.name, header, kind, now_unix, handle)
    }

    /// The part both registrations share: the duplicate and capacity
    /// checks, the creation counter, and insertion.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        conn: ConnId,
        fd: i32,
        name: &[u8],
        (node_type, high, low): (u8, u16, u16),
        kind: Kind,
        now_unix: u64,
        handle: H,
    ) -> Result<Registered, RegisterError> {
        self.check_free(name)?;
        let counter = self.take_counter(name, now_unix);
        let node = Node {
            conn,
            seq: 0,
            counter,
            fd,
            node_type,
            high,
            low,
            kind,
            port2: None,
            handle,
        };
        Ok(self.insert(name, node))
    }

    /// Adds transports to the node `conn` registered as `name`, atomically.
    pub fn add_transports(
        &mut self,
        conn: ConnId,
        name: &[u8],
        req: &ext::Alive3Req<'_>,
    ) -> Result<Registered, RegisterError> {
        req.validate().map_err(RegisterError::Ext)?;
        let node = self
            .nodes
            .get_mut(name)
            .filter(|n| n.conn == conn)
            .ok_or(RegisterError::Ext(Status::NotRegistered))?;
        if req.name != name
            || req.node_type != node.node_type
            || req.high != node.high
            || req.low != node.low
        {
            return Err(RegisterError::Ext(Status::NodeMismatch));
        }
        let Kind::Ext { transports } = &mut node.kind else {
            return Err(RegisterError::Ext(Status::NodeMismatch));
        };
        if req
            .transports
            .iter()
            .any(|t| transports.iter().any(|o| o.proto.as_bytes() == t.proto))
        {
            return Err(RegisterError::Ext(Status::ProtoInUse));
        }
        if transports.len() + req.transports.len() > MAX_TRANSPORTS {
            return Err(RegisterError::Ext(Status::TooManyTransports));
        }
        transports.extend(owned_transports(req));
        node.recompute_port2(name);
        let creation = node.counter;
        self.invalidate_listings();
        self.changed(name);
        Ok(Registered { creation })
    }

    /// Removes one transport of the node `conn` registered as `name`. The
    /// node stays registered (its name reserved) even with no transports.
    pub fn remove_transport(&mut self, conn: ConnId, name: &[u8], proto_name: &[u8]) -> Status {
        let Some(node) = self.nodes.get_mut(name).filter(|n| n.conn == conn) else {
            return Status::NotRegistered;
        };
        let Kind::Ext { transports } = &mut node.kind else {
            return Status::NotRegistered;
        };
        let Some(i) = transports
            .iter()
            .position(|t| t.proto.as_bytes() == proto_name)
        else {
            return Status::NoSuchTransport;
        };
        transports.remove(i);
        node.recompute_port2(name);
        self.invalidate_listings();
        self.changed(name);
        Status::Ok
    }

    /// Unregisters `name` if `conn` owns it, moving it to the unregistered
    /// list. Returns the node's handle when something was removed.
    pub fn unregister(&mut self, conn: ConnId, name: &[u8]) -> Option<H> {
        if self.nodes.get(name)?.conn != conn {
            return None;
        }
        self.remove(name)
    }

    /// Unregisters `name` whoever owns it (STOP). Returns its handle.
    pub fn stop(&mut self, name: &[u8]) -> Option<H> {
        self.remove(name)
    }

    fn remove(&mut self, name: &[u8]) -> Option<H> {
        let (key, node) = self.nodes.remove_entry(name)?;
        self.order.remove(&node.seq);
        self.old.push_back(Old {
            port: node.legacy_port().unwrap_or(0),
            name: key,
            counter: node.counter,
            fd: node.fd,
        });
        self.invalidate_listings();
        self.changed(name);
        Some(node.handle)
    }

    /// The pre-encoded PORT2_RESP for a legacy lookup, if the node exists
    /// and has a transport legacy callers may use.
    pub fn port2_reply(&self, name: &[u8]) -> Option<Arc<[u8]>> {
        self.nodes.get(name)?.port2.clone()
    }

    /// The PORT3 reply (length-prefixed) for an extended lookup.
    pub fn port3_reply(&self, name: &[u8], filter: &Filter<'_>) -> Vec<u8> {
        match self.nodes.get(name) {
            None => ext::encode_port3_status(Status::Refused).to_vec(),
            Some(node) => {
                let mut rec = Vec::with_capacity(64);
                node.put_record(&mut rec, name, filter);
                ext::frame_port3_hit(&rec)
            }
        }
    }

    fn newest_first(&self) -> impl Iterator<Item = (&[u8], &Node<H>)> {
        self.order.values().rev().map(|name| {
            let node = &self.nodes[name];
            (&name[..], node)
        })
    }

    /// The NAMES listing: one line per node legacy callers can use, newest
    /// first, with its parts kept apart for `-delay_write` pacing. See
    /// [`Self::names`] for the cached bytes.
    pub fn names_listing(&self, epmd_port: u16) -> legacy::TextListing {
        let mut l = legacy::TextListing::new(epmd_port);
        for (name, node) in self.newest_first() {
            if let Some(port) = node.legacy_port() {
                l.names_line(name, port);
            }
        }
        l
    }

    /// The DUMP listing: live nodes (as NAMES lists them), then the
    /// unregistered list, oldest first.
    pub fn dump_listing(&self, epmd_port: u16) -> legacy::TextListing {
        let mut l = legacy::TextListing::new(epmd_port);
        for (name, node) in self.newest_first() {
            if let Some(port) = node.legacy_port() {
                l.dump_active(name, port, node.fd);
            }
        }
        for o in &self.old {
            l.dump_old(&o.name, o.port, o.fd);
        }
        l
    }

    /// The whole NAMES reply, shared until the registry changes.
    pub fn names(&mut self, epmd_port: u16) -> Bytes {
        self.cached(
            epmd_port,
            |l| &mut l.names,
            |r| r.names_listing(epmd_port).into_bytes(),
        )
    }

    /// The whole DUMP reply, shared until the registry changes.
    pub fn dump(&mut self, epmd_port: u16) -> Bytes {
        self.cached(
            epmd_port,
            |l| &mut l.dump,
            |r| r.dump_listing(epmd_port).into_bytes(),
        )
    }

    /// The NAMES3 reply (length-prefixed), shared until the registry
    /// changes; `local` callers also see Unix-socket transports.
    pub fn names3(&mut self, epmd_port: u16, local: bool) -> Bytes {
        fn local_slot(l: &mut Listings) -> &mut Option<Bytes> {
            &mut l.names3_local
        }
        fn remote_slot(l: &mut Listings) -> &mut Option<Bytes> {
            &mut l.names3_remote
        }
        let slot = if local { local_slot } else { remote_slot };
        self.cached(epmd_port, slot, |r| r.encode_names3(epmd_port, local))
    }

    /// The DUMP3 reply (length-prefixed; local callers only), shared until
    /// the registry changes.
    pub fn dump3(&mut self, epmd_port: u16) -> Bytes {
        self.cached(epmd_port, |l| &mut l.dump3, |r| r.encode_dump3(epmd_port))
    }

    fn encode_names3(&self, epmd_port: u16, local: bool) -> Vec<u8> {
        let filter = Filter { protos: &[], local };
        let mut w = ext::Names3Writer::new(epmd_port);
        for (name, node) in self.newest_first() {
            w.node(&node.head(name), node.visible(&filter).into_iter());
        }
        w.finish()
    }

    fn encode_dump3(&self, epmd_port: u16) -> Vec<u8> {
        let filter = Filter {
            protos: &[],
            local: true,
        };
        let mut w = ext::Dump3Writer::new(epmd_port);
        for (name, node) in self.newest_first() {
            w.live(
                node.counter,
                &node.head(name),
                node.visible(&filter).into_iter(),
            );
        }
        let mut w = w.old_list();
        for o in &self.old {
            w.old(o.counter, o.port, &o.name);
        }
        w.finish()
    }
}

fn to_owned(t: &TransportRef<'_>) -> Transport {
    Transport {
        port: t.port,
        // validate() guaranteed an ASCII protocol name.
        proto: String::from_utf8_lossy(t.proto).into(),
        extra: t.extra.into(),
        legacy: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(name: &[u8], port: u16, high: u16) -> Alive2Req<'_> {
        Alive2Req {
            port,
            node_type: 77,
            protocol: 0,
            high,
            low: 5,
            name,
            extra: b"",
        }
    }

    fn alive3<'a>(name: &'a [u8], ts: &[(&'a [u8], u16)]) -> ext::Alive3Req<'a> {
        ext::Alive3Req {
            node_type: 77,
            high: 6,
            low: 6,
            name,
            transports: ts
                .iter()
                .map(|&(proto, port)| TransportRef {
                    port,
                    proto,
                    extra: b"",
                })
                .collect(),
            legacy_default: 0,
        }
    }

    #[test]
    fn the_observer_hears_every_change() {
        use std::sync::{Arc, Mutex};
        let mut r: Registry<()> = Registry::new(10, 1000);
        r.register_legacy(1, 5, &alive(b"old", 4000, 6), 1000, ())
            .unwrap();
        // (node, its ports, or None once it is gone), in order.
        type Seen = Vec<(String, Option<Vec<u16>>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = Arc::clone(&seen);
        r.set_observer(Box::new(move |name, state| {
            let ports = state.map(|s| match &s.kind {
                KindState::Legacy { port, .. } => vec![*port],
                KindState::Ext { transports } => transports.iter().map(|t| t.port).collect(),
            });
            log.lock()
                .unwrap()
                .push((String::from_utf8_lossy(name).into_owned(), ports));
        }));
        let req = alive3(b"x", &[(b"inet_tcp", 5000)]);
        r.register_ext(2, 6, &req, 1000, ()).unwrap();
        let more = alive3(b"x", &[(b"inet_tls", 5001)]);
        r.add_transports(2, b"x", &more).unwrap();
        assert_eq!(r.remove_transport(2, b"x", b"inet_tcp"), Status::Ok);
        // Refused changes are not reported.
        assert!(r.add_transports(3, b"x", &more).is_err());
        assert_eq!(r.unregister(3, b"x"), None);
        r.unregister(2, b"x").unwrap();
        r.stop(b"old").unwrap();
        let seen = seen.lock().unwrap().clone();
        let s = |n: &str, p: Option<&[u16]>| (n.to_owned(), p.map(<[u16]>::to_vec));
        assert_eq!(
            seen,
            vec![
                s("old", Some(&[4000])),
                s("x", Some(&[5000])),
                s("x", Some(&[5000, 5001])),
                s("x", Some(&[5001])),
                s("x", None),
                s("old", None),
            ]
        );
    }

    #[test]
    fn creation_rules() {
        let mut r: Registry<()> = Registry::new(10, 2);
        let a = r
            .register_legacy(1, 5, &alive(b"a", 1, 6), 1000, ())
            .unwrap();
        assert_eq!(a.creation, 1001);
        assert_eq!(
            r.register_legacy(2, 6, &alive(b"a", 1, 6), 1000, ()),
            Err(RegisterError::Duplicate)
        );
        r.unregister(1, b"a").unwrap();
        let again = r
            .register_legacy(3, 7, &alive(b"a", 1, 6), 2000, ())
            .unwrap();
        assert_eq!(again.creation, 1002, "a listed name gets +1");
        assert_eq!(again.legacy_creation(), 1, "1002 % 3 + 1");
        // Wrap lands on 4.
        assert_eq!(bump(u32::MAX), 4);
        assert_eq!(bump(1), 4);
        // Fill the old list past its cap: b, c, d unregistered.
        for (i, n) in [b"b", b"c", b"d"].iter().enumerate() {
            r.register_legacy(10 + i as u64, 0, &alive(*n, 1, 6), 50 + i as u64, ())
                .unwrap();
            r.unregister(10 + i as u64, *n).unwrap();
        }
        // len 3 > cap 2: a new name recycles b's counter (51) unchanged.
        let e = r
            .register_legacy(20, 0, &alive(b"e", 1, 6), 9999, ())
            .unwrap();
        assert_eq!(e.creation, 51);
    }

    #[test]
    fn names_newest_first_and_only_owner_unregisters() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        r.register_legacy(1, 0, &alive(b"one", 11, 5), 0, ())
            .unwrap();
        r.register_legacy(2, 0, &alive(b"two", 22, 5), 0, ())
            .unwrap();
        assert_eq!(
            r.names(0)[4..].to_vec(),
            b"name two at port 22\nname one at port 11\n".to_vec()
        );
        assert!(r.unregister(2, b"one").is_none(), "not the owner");
        assert!(r.unregister(1, b"one").is_some());
        assert_eq!(r.names(0)[4..].to_vec(), b"name two at port 22\n".to_vec());
        assert!(r.port2_reply(b"one").is_none());
        assert!(r.port2_reply(b"two").is_some());
    }

    #[test]
    fn capacity_is_enforced() {
        let mut r: Registry<()> = Registry::new(1, 1000);
        r.register_legacy(1, 0, &alive(b"a", 1, 6), 0, ()).unwrap();
        assert_eq!(
            r.register_legacy(2, 0, &alive(b"b", 1, 6), 0, ()),
            Err(RegisterError::Capacity)
        );
    }

    #[test]
    fn extended_registration_and_legacy_default() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        // TLS first: legacy callers must still get TCP, never TLS.
        let req = alive3(b"s", &[(b"inet_tls", 41477), (b"inet_tcp", 49645)]);
        r.register_ext(1, 0, &req, 0, ()).unwrap();
        let reply = r.port2_reply(b"s").unwrap();
        assert_eq!(&reply[2..4], &49645u16.to_be_bytes());
        assert_eq!(r.names(0)[4..].to_vec(), b"name s at port 49645\n".to_vec());
        // Another connection cannot add to it.
        let more = alive3(b"s", &[(b"uds", 0)]);
        assert_eq!(
            r.add_transports(2, b"s", &more),
            Err(RegisterError::Ext(Status::NotRegistered))
        );
        r.add_transports(1, b"s", &more).unwrap();
        let dup = alive3(b"s", &[(b"uds", 0)]);
        assert_eq!(
            r.add_transports(1, b"s", &dup),
            Err(RegisterError::Ext(Status::ProtoInUse))
        );
        // Filtered lookup in the caller's order; UDS hidden from remote callers.
        let protos: [&[u8]; 3] = [b"uds", b"inet_tls", b"inet_tcp"];
        let remote = Filter {
            protos: &protos,
            local: false,
        };
        let body = r.port3_reply(b"s", &remote);
        let rec = ext::decode_port3_body(ext::check_reply16(&body).unwrap())
            .unwrap()
            .unwrap();
        let got: Vec<_> = rec.transports.iter().map(|t| t.proto.as_str()).collect();
        assert_eq!(got, ["inet_tls", "inet_tcp"]);
        let local = Filter {
            protos: &protos,
            local: true,
        };
        let body = r.port3_reply(b"s", &local);
        let rec = ext::decode_port3_body(ext::check_reply16(&body).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(rec.transports[0].proto, "uds");
        // Without TCP, legacy callers get TLS; with neither, they miss
        // (a Unix socket is never a legacy answer).
        assert_eq!(r.remove_transport(1, b"s", b"inet_tcp"), Status::Ok);
        assert_eq!(&r.port2_reply(b"s").unwrap()[2..4], &41477u16.to_be_bytes());
        assert_eq!(r.names(0)[4..].to_vec(), b"name s at port 41477\n".to_vec());
        assert_eq!(
            r.remove_transport(1, b"s", b"inet_tcp"),
            Status::NoSuchTransport
        );
        assert_eq!(r.remove_transport(1, b"s", b"inet_tls"), Status::Ok);
        assert!(r.port2_reply(b"s").is_none());
        assert_eq!(r.names(0).len(), 4);
    }

    #[test]
    fn a_marked_transport_is_what_legacy_callers_see() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        let mut req = alive3(b"m", &[(b"inet_tcp", 1000), (b"inet_tls", 2000)]);
        req.legacy_default = 0b10;
        r.register_ext(1, 0, &req, 0, ()).unwrap();
        assert_eq!(&r.port2_reply(b"m").unwrap()[2..4], &2000u16.to_be_bytes());
        assert_eq!(r.names(0)[4..].to_vec(), b"name m at port 2000\n".to_vec());
        // The mark survives an upgrade's export and import.
        let back: Registry<()> = Registry::import(10, 1000, &r.export(), |_, n| (1, n.fd, ()));
        assert_eq!(back.port2_reply(b"m"), r.port2_reply(b"m"));
        // A later mark in a follow-up does not displace the first one.
        let mut more = alive3(b"m", &[(b"inet6_tcp", 3000)]);
        more.legacy_default = 1;
        r.add_transports(1, b"m", &more).unwrap();
        assert_eq!(&r.port2_reply(b"m").unwrap()[2..4], &2000u16.to_be_bytes());
        // Removing the marked one falls back to the default rule.
        assert_eq!(r.remove_transport(1, b"m", b"inet_tls"), Status::Ok);
        assert_eq!(&r.port2_reply(b"m").unwrap()[2..4], &3000u16.to_be_bytes());
        // A marked Unix socket is ignored: legacy callers are remote.
        let mut u = alive3(b"u", &[(b"uds", 0), (b"inet_tls", 4000)]);
        u.legacy_default = 1;
        r.register_ext(2, 0, &u, 0, ()).unwrap();
        assert_eq!(&r.port2_reply(b"u").unwrap()[2..4], &4000u16.to_be_bytes());
    }

    #[test]
    fn legacy_nodes_show_up_in_extended_lookups() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        r.register_legacy(1, 0, &alive(b"k", 38558, 6), 0, ())
            .unwrap();
        let protos: [&[u8]; 1] = [b"inet_tls"];
        let body = r.port3_reply(
            b"k",
            &Filter {
                protos: &protos,
                local: false,
            },
        );
        let rec = ext::decode_port3_body(ext::check_reply16(&body).unwrap())
            .unwrap()
            .unwrap();
        assert!(rec.legacy);
        assert_eq!(rec.transports.len(), 1);
        assert_eq!(rec.transports[0].port, 38558);
        assert_eq!(rec.transports[0].proto, "");
        let miss = r.port3_reply(
            b"nobody",
            &Filter {
                protos: &protos,
                local: false,
            },
        );
        assert_eq!(miss, ext::encode_port3_status(Status::Refused));
    }

    #[test]
    fn dump3_lists_live_and_old() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        r.register_legacy(1, 0, &alive(b"a", 1, 6), 10, ()).unwrap();
        r.register_legacy(2, 0, &alive(b"b", 2, 6), 10, ()).unwrap();
        r.unregister(1, b"a");
        let out = r.dump3(4369);
        let d = ext::decode_dump3_body(ext::check_reply32(&out).unwrap()).unwrap();
        assert_eq!(d.live.len(), 1);
        assert_eq!(d.live[0].1.name, b"b");
        assert_eq!(d.old[0].name, b"a");
        assert_eq!(d.old[0].creation, 11);
    }
}
