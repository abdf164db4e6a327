//! Distribution control messages: the tuple that heads every packet, plus
//! the payload (message or exit reason) that some of them carry. No I/O.
//!
//! Which forms a node receives depends on the flags it offered: with
//! SEND_SENDER OTP uses op 22 instead of 2, with EXIT_PAYLOAD ops 24..28
//! instead of 3, 8, 21. Trace-token (`_TT`) variants are accepted and their
//! token ignored.

use dist_proto::packet::{DecodeLimits, Packet, PacketError};
use erl_term::{Atom, Bytes, Pid, Reference, Term};

/// Operation codes (the first element of the control tuple).
#[allow(missing_docs)]
pub mod op {
    pub const LINK: i64 = 1;
    pub const SEND: i64 = 2;
    pub const EXIT: i64 = 3;
    pub const UNLINK: i64 = 4;
    pub const REG_SEND: i64 = 6;
    pub const GROUP_LEADER: i64 = 7;
    pub const EXIT2: i64 = 8;
    pub const SEND_TT: i64 = 12;
    pub const EXIT_TT: i64 = 13;
    pub const REG_SEND_TT: i64 = 16;
    pub const EXIT2_TT: i64 = 18;
    pub const MONITOR_P: i64 = 19;
    pub const DEMONITOR_P: i64 = 20;
    pub const MONITOR_P_EXIT: i64 = 21;
    pub const SEND_SENDER: i64 = 22;
    pub const SEND_SENDER_TT: i64 = 23;
    pub const PAYLOAD_EXIT: i64 = 24;
    pub const PAYLOAD_EXIT_TT: i64 = 25;
    pub const PAYLOAD_EXIT2: i64 = 26;
    pub const PAYLOAD_EXIT2_TT: i64 = 27;
    pub const PAYLOAD_MONITOR_P_EXIT: i64 = 28;
    pub const UNLINK_ID: i64 = 35;
    pub const UNLINK_ID_ACK: i64 = 36;
}

/// A decoded control message, with its payload where it has one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Control {
    /// A message to a pid (SEND, SEND_SENDER and their `_TT` forms).
    Send {
        /// The sender, when SEND_SENDER was used.
        from: Option<Pid>,
        /// The receiver.
        to: Pid,
        /// The message.
        msg: Term,
    },
    /// A message to a registered name (REG_SEND).
    RegSend {
        /// The sender.
        from: Pid,
        /// The registered name on this node.
        to: Atom,
        /// The message.
        msg: Term,
    },
    /// A link request.
    Link {
        /// Remote process.
        from: Pid,
        /// Local process.
        to: Pid,
    },
    /// The new unlink protocol (OTP 26 mandatory): unlink, to be acked.
    UnlinkId {
        /// Unlink id, echoed in the ack.
        id: Term,
        /// Remote process.
        from: Pid,
        /// Local process.
        to: Pid,
    },
    /// Acknowledges our UNLINK_ID.
    UnlinkIdAck {
        /// Unlink id.
        id: Term,
        /// Remote process.
        from: Pid,
        /// Local process.
        to: Pid,
    },
    /// A linked process exited (EXIT, PAYLOAD_EXIT), or an explicit exit
    /// signal (EXIT2, PAYLOAD_EXIT2).
    Exit {
        /// The exiting (or signalling) process.
        from: Pid,
        /// The local receiver.
        to: Pid,
        /// The reason.
        reason: Term,
        /// Whether it came from `exit/2` rather than a link.
        explicit: bool,
    },
    /// A remote process monitors a local one (by pid or registered name).
    MonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored local process: a pid or an atom.
        to: Term,
        /// The monitor reference.
        reference: Reference,
    },
    /// A remote process drops its monitor.
    DemonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored local process.
        to: Term,
        /// The monitor reference.
        reference: Reference,
    },
    /// A monitored remote process went down.
    MonitorPExit {
        /// The monitored process (pid or name).
        from: Term,
        /// The local monitoring process.
        to: Pid,
        /// The monitor reference.
        reference: Reference,
        /// The exit reason.
        reason: Term,
    },
    /// Anything this node does not act on (GROUP_LEADER, spawn, aliases...).
    Other(i64),
}

/// Why a control message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed control message: {0}")]
pub struct BadControl(pub &'static str);

/// Why a received packet was dropped: its terms, or their meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadPacket {
    /// The packet layer refused it (type, term encoding, memory budget).
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// The terms decoded but are not a control message this node reads.
    #[error(transparent)]
    Control(#[from] BadControl),
}

fn pid(t: &Term) -> Result<Pid, BadControl> {
    match t {
        Term::Pid(p) => Ok(p.clone()),
        _ => Err(BadControl("expected a pid")),
    }
}

fn reference(t: &Term) -> Result<Reference, BadControl> {
    match t {
        Term::Reference(r) => Ok(r.clone()),
        _ => Err(BadControl("expected a reference")),
    }
}

fn payload(p: Option<Term>) -> Result<Term, BadControl> {
    p.ok_or(BadControl("missing payload"))
}

impl Control {
    /// Decodes one non-empty frame body, as the node's reader does for
    /// every frame it receives: the packet layer's terms within `limits`
    /// ([`dist_proto::packet::decode`]), then their meaning
    /// ([`from_terms`](Self::from_terms)). The fuzz target `dist_packet`
    /// calls this very function. The body is the frame as the framer split
    /// it off its buffer: binaries in the message are slices of it.
    pub fn decode_packet(body: &Bytes, limits: &DecodeLimits) -> Result<Self, BadPacket> {
        let Packet { control, payload } = dist_proto::packet::decode_bytes(body, limits)?;
        Ok(Self::from_terms(control, payload)?)
    }

    /// Interprets a control tuple and the payload that followed it.
    pub fn from_terms(ctrl: Term, payload_term: Option<Term>) -> Result<Self, BadControl> {
        let Term::Tuple(e) = ctrl else {
            return Err(BadControl("control message is not a tuple"));
        };
        let Some(Term::Integer(code)) = e.first() else {
            return Err(BadControl("control tuple has no operation"));
        };
        let get = |i: usize| e.get(i).ok_or(BadControl("control tuple too short"));
        Ok(match *code {
            op::SEND | op::SEND_TT => Self::Send {
                from: None,
                to: pid(get(2)?)?,
                msg: payload(payload_term)?,
            },
            op::SEND_SENDER | op::SEND_SENDER_TT => Self::Send {
                from: Some(pid(get(1)?)?),
                to: pid(get(2)?)?,
                msg: payload(payload_term)?,
            },
            op::REG_SEND | op::REG_SEND_TT => Self::RegSend {
                from: pid(get(1)?)?,
                to: match get(3)? {
                    Term::Atom(a) => a.clone(),
                    _ => return Err(BadControl("REG_SEND name is not an atom")),
                },
                msg: payload(payload_term)?,
            },
            op::LINK => Self::Link {
                from: pid(get(1)?)?,
                to: pid(get(2)?)?,
            },
            op::UNLINK_ID => Self::UnlinkId {
                id: get(1)?.clone(),
                from: pid(get(2)?)?,
                to: pid(get(3)?)?,
            },
            op::UNLINK_ID_ACK => Self::UnlinkIdAck {
                id: get(1)?.clone(),
                from: pid(get(2)?)?,
                to: pid(get(3)?)?,
            },
            op::EXIT | op::EXIT2 => Self::Exit {
                from: pid(get(1)?)?,
                to: pid(get(2)?)?,
                reason: get(3)?.clone(),
                explicit: *code == op::EXIT2,
            },
            op::EXIT_TT | op::EXIT2_TT => Self::Exit {
                from: pid(get(1)?)?,
                to: pid(get(2)?)?,
                reason: get(4)?.clone(),
                explicit: *code == op::EXIT2_TT,
            },
            op::PAYLOAD_EXIT | op::PAYLOAD_EXIT_TT | op::PAYLOAD_EXIT2 | op::PAYLOAD_EXIT2_TT => {
                Self::Exit {
                    from: pid(get(1)?)?,
                    to: pid(get(2)?)?,
                    reason: payload(payload_term)?,
                    explicit: matches!(*code, op::PAYLOAD_EXIT2 | op::PAYLOAD_EXIT2_TT),
                }
            }
            op::MONITOR_P => Self::MonitorP {
                from: pid(get(1)?)?,
                to: get(2)?.clone(),
                reference: reference(get(3)?)?,
            },
            op::DEMONITOR_P => Self::DemonitorP {
                from: pid(get(1)?)?,
                to: get(2)?.clone(),
                reference: reference(get(3)?)?,
            },
            op::MONITOR_P_EXIT => Self::MonitorPExit {
                from: get(1)?.clone(),
                to: pid(get(2)?)?,
                reference: reference(get(3)?)?,
                reason: get(4)?.clone(),
            },
            op::PAYLOAD_MONITOR_P_EXIT => Self::MonitorPExit {
                from: get(1)?.clone(),
                to: pid(get(2)?)?,
                reference: reference(get(3)?)?,
                reason: payload(payload_term)?,
            },
            other => Self::Other(other),
        })
    }
}

fn int(i: i64) -> Term {
    Term::Integer(i)
}

/// Builders for the control tuples this node sends. `flags` are the
/// connection's negotiated flags: they decide between the old and the
/// payload / sender-carrying forms.
pub mod build {
    use super::*;
    use dist_proto::flags;

    /// SEND_SENDER `{22, From, To}` if negotiated, else SEND `{2, '', To}`;
    /// the message follows as payload.
    pub fn send(conn_flags: u64, from: &Pid, to: &Pid) -> Term {
        if conn_flags & flags::SEND_SENDER != 0 {
            Term::Tuple(vec![
                int(op::SEND_SENDER),
                Term::Pid(from.clone()),
                Term::Pid(to.clone()),
            ])
        } else {
            Term::Tuple(vec![int(op::SEND), Term::atom(""), Term::Pid(to.clone())])
        }
    }

    /// REG_SEND `{6, From, '', Name}`; the message follows.
    pub fn reg_send(from: &Pid, to: &Atom) -> Term {
        Term::Tuple(vec![
            int(op::REG_SEND),
            Term::Pid(from.clone()),
            Term::atom(""),
            Term::Atom(to.clone()),
        ])
    }

    /// LINK `{1, From, To}`.
    pub fn link(from: &Pid, to: &Pid) -> Term {
        Term::Tuple(vec![
            int(op::LINK),
            Term::Pid(from.clone()),
            Term::Pid(to.clone()),
        ])
    }

    /// UNLINK_ID `{35, Id, From, To}`.
    pub fn unlink_id(id: u64, from: &Pid, to: &Pid) -> Term {
        Term::Tuple(vec![
            int(op::UNLINK_ID),
            Term::Integer(i64::try_from(id).unwrap_or(i64::MAX)),
            Term::Pid(from.clone()),
            Term::Pid(to.clone()),
        ])
    }

    /// UNLINK_ID_ACK `{36, Id, From, To}`.
    pub fn unlink_id_ack(id: Term, from: &Pid, to: &Pid) -> Term {
        Term::Tuple(vec![
            int(op::UNLINK_ID_ACK),
            id,
            Term::Pid(from.clone()),
            Term::Pid(to.clone()),
        ])
    }

    /// An exit signal to a linked process: PAYLOAD_EXIT `{24, From, To}`
    /// plus the reason as payload if negotiated, else EXIT with the reason
    /// inline. Returns the control tuple and the payload, if any.
    pub fn exit(conn_flags: u64, from: &Pid, to: &Pid, reason: Term) -> (Term, Option<Term>) {
        if conn_flags & flags::EXIT_PAYLOAD != 0 {
            (
                Term::Tuple(vec![
                    int(op::PAYLOAD_EXIT),
                    Term::Pid(from.clone()),
                    Term::Pid(to.clone()),
                ]),
                Some(reason),
            )
        } else {
            (
                Term::Tuple(vec![
                    int(op::EXIT),
                    Term::Pid(from.clone()),
                    Term::Pid(to.clone()),
                    reason,
                ]),
                None,
            )
        }
    }

    /// MONITOR_P `{19, From, To, Ref}`.
    pub fn monitor(from: &Pid, to: Term, reference: &Reference) -> Term {
        Term::Tuple(vec![
            int(op::MONITOR_P),
            Term::Pid(from.clone()),
            to,
            Term::Reference(reference.clone()),
        ])
    }

    /// DEMONITOR_P `{20, From, To, Ref}`.
    pub fn demonitor(from: &Pid, to: Term, reference: &Reference) -> Term {
        Term::Tuple(vec![
            int(op::DEMONITOR_P),
            Term::Pid(from.clone()),
            to,
            Term::Reference(reference.clone()),
        ])
    }

    /// A monitored local process went down: PAYLOAD_MONITOR_P_EXIT
    /// `{28, From, To, Ref}` plus the reason if negotiated, else
    /// MONITOR_P_EXIT with the reason inline.
    pub fn monitor_exit(
        conn_flags: u64,
        from: Term,
        to: &Pid,
        reference: &Reference,
        reason: Term,
    ) -> (Term, Option<Term>) {
        if conn_flags & flags::EXIT_PAYLOAD != 0 {
            (
                Term::Tuple(vec![
                    int(op::PAYLOAD_MONITOR_P_EXIT),
                    from,
                    Term::Pid(to.clone()),
                    Term::Reference(reference.clone()),
                ]),
                Some(reason),
            )
        } else {
            (
                Term::Tuple(vec![
                    int(op::MONITOR_P_EXIT),
                    from,
                    Term::Pid(to.clone()),
                    Term::Reference(reference.clone()),
                    reason,
                ]),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u32) -> Pid {
        Pid {
            node: Atom::new("a@h").unwrap(),
            id,
            serial: 0,
            creation: 1,
        }
    }

    #[test]
    fn send_forms_round_trip() {
        let all = dist_proto::flags::node_flags(dist_proto::flags::DEFAULT_OPTIONAL, true);
        let ctrl = build::send(all, &p(1), &p(2));
        let got = Control::from_terms(ctrl, Some(Term::atom("hi"))).unwrap();
        assert_eq!(
            got,
            Control::Send {
                from: Some(p(1)),
                to: p(2),
                msg: Term::atom("hi")
            }
        );
        let ctrl = build::send(0, &p(1), &p(2));
        assert!(matches!(
            Control::from_terms(ctrl, Some(Term::Nil)).unwrap(),
            Control::Send { from: None, .. }
        ));
        let (ctrl, pl) = build::exit(all, &p(1), &p(2), Term::atom("boom"));
        assert!(matches!(
            Control::from_terms(ctrl, pl).unwrap(),
            Control::Exit {
                explicit: false,
                ..
            }
        ));
        assert!(Control::from_terms(Term::Nil, None).is_err());
        assert!(Control::from_terms(Term::Tuple(vec![int(op::SEND)]), None).is_err());
        assert_eq!(
            Control::from_terms(Term::Tuple(vec![int(29)]), None).unwrap(),
            Control::Other(29)
        );
    }
}
