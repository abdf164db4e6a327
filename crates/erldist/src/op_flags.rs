//! Which control messages a peer may be sent: one table of the
//! distribution flags each operation needs, and the encoder every signal
//! this node sends goes through, so nothing reaches a peer that its
//! handshake did not offer.
//!
//! The rules are erts's. From `erts/emulator/beam/dist.c` at
//! erlang/otp@01286097711fd871d62cfcf299cbb5a1f5d6bd77
//! (`erts_dsig_send_monitor`, `erts_dsig_send_demonitor`,
//! `erts_dsig_send_m_exit`): MONITOR_P, DEMONITOR_P and MONITOR_P_EXIT go
//! only to a peer with both `DIST_MONITOR` and `DIST_MONITOR_NAME`; to any
//! other peer they are not sent, and the monitor is "reduced to only
//! supervise the connection" (it fires `noconnection` when the link goes),
//! which suits simple C nodes. The same file picks SEND_SENDER over SEND
//! and the PAYLOAD_ exit forms by `SEND_SENDER` / `EXIT_PAYLOAD`. The
//! flags' meanings for UNLINK_ID (new link protocol, else UNLINK), ALIAS
//! (ALIAS_SEND) and SPAWN (SPAWN_REQUEST / SPAWN_REPLY) are those of
//! docs/protocol.md and OTP's distribution protocol guide.

use dist_proto::flags;
use erl_term::{Pid, Reference, Term};

use crate::control::{build, op};

/// Operations this table knows that `control::op` does not name (this
/// node never sends them; they are here so the table is complete).
mod extra_op {
    pub(super) const SPAWN_REQUEST: i64 = 29;
    pub(super) const SPAWN_REQUEST_TT: i64 = 30;
    pub(super) const SPAWN_REPLY: i64 = 31;
    pub(super) const SPAWN_REPLY_TT: i64 = 32;
    pub(super) const ALIAS_SEND: i64 = 33;
    pub(super) const ALIAS_SEND_TT: i64 = 34;
}

/// Every control operation, its name, and the flags (all of them) the
/// peer must have offered for it to be sent.
pub const TABLE: &[(i64, &str, u64)] = &[
    (op::LINK, "LINK", 0),
    (op::SEND, "SEND", 0),
    (op::EXIT, "EXIT", 0),
    (op::UNLINK, "UNLINK", 0),
    (op::REG_SEND, "REG_SEND", 0),
    (op::GROUP_LEADER, "GROUP_LEADER", 0),
    (op::EXIT2, "EXIT2", 0),
    (op::SEND_TT, "SEND_TT", 0),
    (op::EXIT_TT, "EXIT_TT", 0),
    (op::REG_SEND_TT, "REG_SEND_TT", 0),
    (op::EXIT2_TT, "EXIT2_TT", 0),
    (op::MONITOR_P, "MONITOR_P", MONITORS),
    (op::DEMONITOR_P, "DEMONITOR_P", MONITORS),
    (op::MONITOR_P_EXIT, "MONITOR_P_EXIT", MONITORS),
    (op::SEND_SENDER, "SEND_SENDER", flags::SEND_SENDER),
    (op::SEND_SENDER_TT, "SEND_SENDER_TT", flags::SEND_SENDER),
    (op::PAYLOAD_EXIT, "PAYLOAD_EXIT", flags::EXIT_PAYLOAD),
    (op::PAYLOAD_EXIT_TT, "PAYLOAD_EXIT_TT", flags::EXIT_PAYLOAD),
    (op::PAYLOAD_EXIT2, "PAYLOAD_EXIT2", flags::EXIT_PAYLOAD),
    (
        op::PAYLOAD_EXIT2_TT,
        "PAYLOAD_EXIT2_TT",
        flags::EXIT_PAYLOAD,
    ),
    (
        op::PAYLOAD_MONITOR_P_EXIT,
        "PAYLOAD_MONITOR_P_EXIT",
        flags::EXIT_PAYLOAD | MONITORS,
    ),
    (extra_op::SPAWN_REQUEST, "SPAWN_REQUEST", flags::SPAWN),
    (extra_op::SPAWN_REQUEST_TT, "SPAWN_REQUEST_TT", flags::SPAWN),
    (extra_op::SPAWN_REPLY, "SPAWN_REPLY", flags::SPAWN),
    (extra_op::SPAWN_REPLY_TT, "SPAWN_REPLY_TT", flags::SPAWN),
    (extra_op::ALIAS_SEND, "ALIAS_SEND", flags::ALIAS),
    (extra_op::ALIAS_SEND_TT, "ALIAS_SEND_TT", flags::ALIAS),
    (op::UNLINK_ID, "UNLINK_ID", flags::UNLINK_ID),
    (op::UNLINK_ID_ACK, "UNLINK_ID_ACK", flags::UNLINK_ID),
];

/// What erts needs before it sends any monitor operation.
const MONITORS: u64 = flags::DIST_MONITOR | flags::DIST_MONITOR_NAME;

/// The flags `op` needs; `None` for an operation not in the table (never
/// sent).
pub fn required(op: i64) -> Option<u64> {
    TABLE.iter().find(|(o, _, _)| *o == op).map(|(_, _, f)| *f)
}

/// Whether a peer that offered `peer_flags` may be sent `op`.
pub fn permits(peer_flags: u64, op: i64) -> bool {
    required(op).is_some_and(|need| peer_flags & need == need)
}

/// The operation number of an encoded control message.
pub(crate) fn op_of(ctrl: &Term) -> Option<i64> {
    match ctrl {
        Term::Tuple(e) => match e.first() {
            Some(Term::Integer(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// A signal (no message payload) this node sends to a remote process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outgoing {
    /// Link `from` (local) to `to` (remote).
    Link {
        /// Local.
        from: Pid,
        /// Remote.
        to: Pid,
    },
    /// Remove that link; `id` numbers it for UNLINK_ID.
    Unlink {
        /// Unlink id.
        id: u64,
        /// Local.
        from: Pid,
        /// Remote.
        to: Pid,
    },
    /// Acknowledge the peer's UNLINK_ID.
    UnlinkIdAck {
        /// The peer's id, echoed.
        id: Term,
        /// Local.
        from: Pid,
        /// Remote.
        to: Pid,
    },
    /// A link broke.
    Exit {
        /// Local.
        from: Pid,
        /// Remote.
        to: Pid,
        /// Why.
        reason: Term,
    },
    /// Monitor `target` (a remote pid or a name on the peer).
    Monitor {
        /// Local watcher.
        from: Pid,
        /// Pid or atom.
        target: Term,
        /// The monitor.
        reference: Reference,
    },
    /// Drop that monitor.
    Demonitor {
        /// Local watcher.
        from: Pid,
        /// Pid or atom.
        target: Term,
        /// The monitor.
        reference: Reference,
    },
    /// A monitored local process went down.
    MonitorExit {
        /// The local process as the watcher named it.
        from: Term,
        /// Remote watcher.
        to: Pid,
        /// The monitor.
        reference: Reference,
        /// Why.
        reason: Term,
    },
}

/// Encodes `out` for a peer that offered `peer_flags`: the control term
/// and the payload term (the PAYLOAD_ forms), or `None` when the peer
/// cannot be sent it at all (a monitor then only watches the connection).
pub(crate) fn encode(peer_flags: u64, out: Outgoing) -> Option<(Term, Option<Term>)> {
    let encoded = match out {
        Outgoing::Link { from, to } => (build::link(&from, &to), None),
        Outgoing::Unlink { id, from, to } => {
            if peer_flags & flags::UNLINK_ID != 0 {
                (build::unlink_id(id, &from, &to), None)
            } else {
                // The old protocol: {UNLINK, From, To}, no acknowledgement.
                let ctrl = Term::Tuple(vec![
                    Term::Integer(op::UNLINK),
                    Term::Pid(from),
                    Term::Pid(to),
                ]);
                (ctrl, None)
            }
        }
        Outgoing::UnlinkIdAck { id, from, to } => (build::unlink_id_ack(id, &from, &to), None),
        Outgoing::Exit { from, to, reason } => build::exit(peer_flags, &from, &to, reason),
        Outgoing::Monitor {
            from,
            target,
            reference,
        } => (build::monitor(&from, target, &reference), None),
        Outgoing::Demonitor {
            from,
            target,
            reference,
        } => (build::demonitor(&from, target, &reference), None),
        Outgoing::MonitorExit {
            from,
            to,
            reference,
            reason,
        } => build::monitor_exit(peer_flags, from, &to, &reference, reason),
    };
    let op = op_of(&encoded.0)?;
    permits(peer_flags, op).then_some(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_term::Atom;

    fn pid(node: &str, id: u32) -> Pid {
        Pid {
            node: Atom::new(node).unwrap(),
            id,
            serial: 0,
            creation: 1,
        }
    }

    fn reference() -> Reference {
        Reference {
            node: Atom::new("a@h").unwrap(),
            creation: 1,
            ids: vec![1, 2, 3],
        }
    }

    /// One of each signal this node sends.
    fn all_outgoing() -> Vec<Outgoing> {
        let (a, b) = (pid("a@h", 1), pid("b@h", 2));
        vec![
            Outgoing::Link {
                from: a.clone(),
                to: b.clone(),
            },
            Outgoing::Unlink {
                id: 7,
                from: a.clone(),
                to: b.clone(),
            },
            Outgoing::UnlinkIdAck {
                id: Term::Integer(7),
                from: a.clone(),
                to: b.clone(),
            },
            Outgoing::Exit {
                from: a.clone(),
                to: b.clone(),
                reason: Term::atom("x"),
            },
            Outgoing::Monitor {
                from: a.clone(),
                target: Term::atom("rex"),
                reference: reference(),
            },
            Outgoing::Monitor {
                from: a.clone(),
                target: Term::Pid(b.clone()),
                reference: reference(),
            },
            Outgoing::Demonitor {
                from: a.clone(),
                target: Term::atom("rex"),
                reference: reference(),
            },
            Outgoing::MonitorExit {
                from: Term::atom("srv"),
                to: b,
                reference: reference(),
                reason: Term::atom("x"),
            },
        ]
    }

    /// The flags that change what is sent.
    const RELEVANT: [u64; 6] = [
        flags::SEND_SENDER,
        flags::EXIT_PAYLOAD,
        flags::DIST_MONITOR,
        flags::DIST_MONITOR_NAME,
        flags::UNLINK_ID,
        flags::ALIAS,
    ];

    fn every_flag_set() -> impl Iterator<Item = u64> {
        (0u32..1 << RELEVANT.len()).map(|bits| {
            RELEVANT
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(0, |acc, (_, f)| acc | f)
        })
    }

    #[test]
    fn nothing_is_encoded_that_the_peer_did_not_offer() {
        for fl in every_flag_set() {
            for out in all_outgoing() {
                if let Some((ctrl, _)) = encode(fl, out.clone()) {
                    let op = op_of(&ctrl).unwrap();
                    assert!(permits(fl, op), "op {op} to a peer with {fl:#x}: {out:?}");
                }
            }
            // Messages: SEND or SEND_SENDER by flag, REG_SEND always.
            let send = build::send(fl, &pid("a@h", 1), &pid("b@h", 2));
            assert!(permits(fl, op_of(&send).unwrap()));
            assert!(permits(
                fl,
                op_of(&build::reg_send(&pid("a@h", 1), &Atom::new("r").unwrap())).unwrap()
            ));
        }
    }

    #[test]
    fn monitors_need_both_monitor_flags() {
        let out = &all_outgoing()[4..8];
        for fl in [0, flags::DIST_MONITOR, flags::DIST_MONITOR_NAME] {
            for o in out {
                assert_eq!(encode(fl, o.clone()), None, "{fl:#x} {o:?}");
            }
        }
        let both = flags::DIST_MONITOR | flags::DIST_MONITOR_NAME;
        let ops: Vec<i64> = out
            .iter()
            .map(|o| op_of(&encode(both, o.clone()).unwrap().0).unwrap())
            .collect();
        assert_eq!(
            ops,
            [
                op::MONITOR_P,
                op::MONITOR_P,
                op::DEMONITOR_P,
                op::MONITOR_P_EXIT
            ]
        );
        let with_payload = both | flags::EXIT_PAYLOAD;
        let (ctrl, payload) = encode(with_payload, out[3].clone()).unwrap();
        assert_eq!(op_of(&ctrl), Some(op::PAYLOAD_MONITOR_P_EXIT));
        assert_eq!(payload, Some(Term::atom("x")));
    }

    #[test]
    fn unlink_falls_back_to_the_old_protocol() {
        let out = all_outgoing()[1].clone();
        let (ctrl, _) = encode(flags::UNLINK_ID, out.clone()).unwrap();
        assert_eq!(op_of(&ctrl), Some(op::UNLINK_ID));
        let (ctrl, _) = encode(0, out).unwrap();
        assert_eq!(op_of(&ctrl), Some(op::UNLINK));
        // An ack answers an UNLINK_ID, which only a peer with the flag sends.
        assert_eq!(encode(0, all_outgoing()[2].clone()), None);
    }

    #[test]
    fn exits_and_links_go_to_every_peer() {
        let (ctrl, payload) = encode(0, all_outgoing()[3].clone()).unwrap();
        assert_eq!((op_of(&ctrl), payload), (Some(op::EXIT), None));
        let (ctrl, _) = encode(flags::EXIT_PAYLOAD, all_outgoing()[3].clone()).unwrap();
        assert_eq!(op_of(&ctrl), Some(op::PAYLOAD_EXIT));
        let (ctrl, _) = encode(0, all_outgoing()[0].clone()).unwrap();
        assert_eq!(op_of(&ctrl), Some(op::LINK));
    }

    #[test]
    fn the_table_op_by_op() {
        let expect: &[(i64, u64)] = &[
            (op::SEND, 0),
            (op::REG_SEND, 0),
            (op::LINK, 0),
            (op::EXIT, 0),
            (op::UNLINK, 0),
            (op::SEND_SENDER, flags::SEND_SENDER),
            (op::PAYLOAD_EXIT, flags::EXIT_PAYLOAD),
            (op::MONITOR_P, MONITORS),
            (op::DEMONITOR_P, MONITORS),
            (op::MONITOR_P_EXIT, MONITORS),
            (op::PAYLOAD_MONITOR_P_EXIT, MONITORS | flags::EXIT_PAYLOAD),
            (op::UNLINK_ID, flags::UNLINK_ID),
            (op::UNLINK_ID_ACK, flags::UNLINK_ID),
            (extra_op::ALIAS_SEND, flags::ALIAS),
            (extra_op::SPAWN_REQUEST, flags::SPAWN),
            (extra_op::SPAWN_REPLY, flags::SPAWN),
        ];
        for &(op, need) in expect {
            assert_eq!(required(op), Some(need), "op {op}");
            assert!(permits(need | flags::PUBLISHED, op));
            if need != 0 {
                assert!(!permits(0, op), "op {op} without its flags");
            }
        }
        assert!(!permits(u64::MAX, 99), "an unknown op is never sent");
        let mut ops: Vec<i64> = TABLE.iter().map(|t| t.0).collect();
        ops.sort_unstable();
        ops.dedup();
        assert_eq!(ops.len(), TABLE.len(), "one row per op");
    }
}
