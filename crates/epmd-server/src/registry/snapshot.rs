//! The registry as plain data, for the in-place upgrade: [`Registry::export`]
//! takes everything a new process needs (live nodes in registration order,
//! the unregistered-names list with its creation counters) and
//! [`Registry::import`] rebuilds an equivalent registry around new
//! connection ids and descriptors. The wire encoding is in
//! [`crate::handover`].

use super::{Kind, Node, Old, Registry, Transport};
use crate::registry::ConnId;

/// One transport of an extended node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportState {
    /// Listening port.
    pub port: u16,
    /// Per-transport flags: bit 0 = marked for legacy callers.
    pub flags: u8,
    /// Protocol name (ASCII, validated at registration).
    pub proto: String,
    /// Transport Extra.
    pub extra: Vec<u8>,
}

/// How a node registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindState {
    /// ALIVE2: the fields echoed to legacy callers.
    Legacy {
        /// PortNo.
        port: u16,
        /// Protocol byte.
        protocol: u8,
        /// Extra.
        extra: Vec<u8>,
    },
    /// ALIVE3: transports in registration order.
    Ext {
        /// The transports.
        transports: Vec<TransportState>,
    },
}

/// One live node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Node name.
    pub name: Vec<u8>,
    /// The name's creation counter.
    pub counter: u32,
    /// The descriptor of the owning connection in the exporting process.
    pub fd: i32,
    /// NodeType.
    pub node_type: u8,
    /// HighestVersion.
    pub high: u16,
    /// LowestVersion.
    pub low: u16,
    /// Legacy or extended fields.
    pub kind: KindState,
}

/// One unregistered-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldState {
    /// Node name.
    pub name: Vec<u8>,
    /// The port it had (shown by DUMP).
    pub port: u16,
    /// Its creation counter, continued at the next registration.
    pub counter: u32,
    /// The descriptor it had (shown by DUMP).
    pub fd: i32,
}

/// A whole registry: live nodes oldest first, then the unregistered list
/// oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Live nodes in registration order.
    pub nodes: Vec<NodeState>,
    /// The unregistered-names list in its order.
    pub old: Vec<OldState>,
}

/// The plain-data form of one live node (shared by [`Registry::export`]
/// and the registry's observer).
pub(super) fn node_state<H>(name: &[u8], n: &Node<H>) -> NodeState {
    NodeState {
        name: name.to_vec(),
        counter: n.counter,
        fd: n.fd,
        node_type: n.node_type,
        high: n.high,
        low: n.low,
        kind: match &n.kind {
            Kind::Legacy {
                port,
                protocol,
                extra,
            } => KindState::Legacy {
                port: *port,
                protocol: *protocol,
                extra: extra.to_vec(),
            },
            Kind::Ext { transports } => KindState::Ext {
                transports: transports
                    .iter()
                    .map(|t| TransportState {
                        port: t.port,
                        flags: u8::from(t.legacy),
                        proto: t.proto.to_string(),
                        extra: t.extra.to_vec(),
                    })
                    .collect(),
            },
        },
    }
}

impl<H> Registry<H> {
    /// Copies the registry's state out (handles and connection ids stay).
    pub fn export(&self) -> Snapshot {
        let nodes = self
            .order
            .values()
            .map(|name| node_state(name, &self.nodes[name]))
            .collect();
        let old = self
            .old
            .iter()
            .map(|o| OldState {
                name: o.name.to_vec(),
                port: o.port,
                counter: o.counter,
                fd: o.fd,
            })
            .collect();
        Snapshot { nodes, old }
    }

    /// Rebuilds a registry from `snap`. `owner` gives, for each live node
    /// in order, the connection id, descriptor and handle it has in this
    /// process. The capacity is raised to the number of nodes if needed, so
    /// an import never drops a registration.
    pub fn import(
        capacity: usize,
        old_cap: usize,
        snap: &Snapshot,
        mut owner: impl FnMut(usize, &NodeState) -> (ConnId, i32, H),
    ) -> Self {
        let mut reg = Self::new(capacity.max(snap.nodes.len()), old_cap);
        for (i, n) in snap.nodes.iter().enumerate() {
            let (conn, fd, handle) = owner(i, n);
            let kind = match &n.kind {
                KindState::Legacy {
                    port,
                    protocol,
                    extra,
                } => Kind::Legacy {
                    port: *port,
                    protocol: *protocol,
                    extra: extra.as_slice().into(),
                },
                KindState::Ext { transports } => Kind::Ext {
                    transports: transports
                        .iter()
                        .map(|t| Transport {
                            port: t.port,
                            proto: t.proto.as_str().into(),
                            extra: t.extra.as_slice().into(),
                            legacy: t.flags & 1 != 0,
                        })
                        .collect(),
                },
            };
            let node = Node {
                conn,
                seq: 0,
                counter: n.counter,
                fd,
                node_type: n.node_type,
                high: n.high,
                low: n.low,
                kind,
                port2: None,
                handle,
            };
            reg.insert(&n.name, node);
        }
        reg.old = snap
            .old
            .iter()
            .map(|o| Old {
                name: o.name.as_slice().into(),
                port: o.port,
                counter: o.counter,
                fd: o.fd,
            })
            .collect();
        reg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epmd_proto::legacy::Alive2Req;

    #[test]
    fn export_import_round_trip_keeps_order_and_counters() {
        let mut r: Registry<()> = Registry::new(10, 1000);
        for (i, name) in [&b"a"[..], b"b", b"c"].into_iter().enumerate() {
            let req = Alive2Req {
                port: 1000 + i as u16,
                node_type: 77,
                protocol: 0,
                high: 6,
                low: 5,
                name,
                extra: b"x",
            };
            r.register_legacy(i as u64, 10 + i as i32, &req, 100, ())
                .unwrap();
        }
        r.unregister(1, b"b");
        let snap = r.export();
        let mut back: Registry<()> =
            Registry::import(1, 1000, &snap, |i, n| (50 + i as u64, n.fd + 1, ()));
        assert_eq!(back.len(), 2);
        assert_eq!(back.names(4369), r.names(4369));
        assert_eq!(back.port2_reply(b"c"), r.port2_reply(b"c"));
        let again = back.export();
        assert_eq!(again.old, snap.old);
        assert_eq!(again.nodes.len(), 2);
        assert_eq!(again.nodes[0].fd, snap.nodes[0].fd + 1);
        assert_eq!(again.nodes[1].counter, snap.nodes[1].counter);
    }
}
