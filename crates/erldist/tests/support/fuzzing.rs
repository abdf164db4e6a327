//! Fuzzing entry point for the packets of an established connection, shared
//! by the cargo-fuzz target `dist_packet` in `fuzz/` (which needs a nightly
//! compiler) and the stable test that replays the committed corpus
//! (`tests/corpus_replay.rs`). Both include this file with `#[path]`.
//!
//! The decoder under test is the node's own: [`Control::decode_packet`],
//! the function its connection reader calls for every frame
//! (`dist_proto::packet::decode_bytes` within the default [`DecodeLimits`],
//! then `Control::from_terms`).
//!
//! The input is one packet body (what follows the `u32` length): a
//! pass-through packet is `112`, then the control tuple and the payload,
//! each a standalone term (`131` first). It is decoded as it is and, when it
//! does not start with `112`, with `112` put in front, so every input
//! reaches the term decoder. Whatever decodes must be rebuilt, by the
//! node's own builders (`erldist::control::build`) wherever one exists, in
//! every form the flags allow (SEND and SEND_SENDER, EXIT inline and as
//! payload, ...), into a packet that decodes to the same [`Control`].

#![allow(dead_code)]

use dist_proto::flags;
use erl_term::{Atom, Bytes, Pid, Term};
use erldist::control::{build, op, BadPacket, Control};
use erldist::DecodeLimits;

/// Pass-through message tag.
pub(crate) use dist_proto::packet::PASS_THROUGH;

/// The node's receive path, with its default limits. The reader hands
/// it frames as `Bytes`; here the input is copied into one first.
pub(crate) fn decode_packet(body: &[u8]) -> Result<Control, BadPacket> {
    Control::decode_packet(&Bytes::copy_from_slice(body), &DecodeLimits::new())
}

/// The fuzz target's entry point.
pub(crate) fn fuzz_dist_packet(data: &[u8]) {
    packet(data);
    if data.first() != Some(&PASS_THROUGH) {
        let mut p = Vec::with_capacity(data.len() + 1);
        p.push(PASS_THROUGH);
        p.extend_from_slice(data);
        packet(&p);
    }
}

fn packet(body: &[u8]) {
    let decoded = decode_packet(body);
    // The terms themselves, checked apart from the control logic.
    let Some(rest) = body.strip_prefix(&[PASS_THROUGH]) else {
        assert!(decoded.is_err());
        return;
    };
    let Ok((ctrl, used)) = erl_term::decode_used(rest) else {
        assert!(decoded.is_err());
        return;
    };
    assert!(used <= rest.len());
    let payload = erl_term::decode(&rest[used..]).ok();
    let code = match &ctrl {
        Term::Tuple(e) => match e.first() {
            Some(Term::Integer(c)) => Some(*c),
            _ => None,
        },
        _ => None,
    };
    match decoded {
        Ok(c) => {
            let code = code.expect("a control tuple with an operation");
            check_payload_rule(&ctrl, payload.as_ref(), code, &c);
            for form in rebuild(&c) {
                let p = encode_packet(&form.0, form.1.as_ref());
                assert_eq!(
                    decode_packet(&p).as_ref(),
                    Ok(&c),
                    "rebuilt packet {form:?} of {c:?}"
                );
            }
        }
        Err(_) => {
            // Whatever the payload, a control term that is not a tuple
            // headed by an integer is refused.
            if code.is_none() {
                assert!(Control::from_terms(ctrl.clone(), None).is_err());
                assert!(Control::from_terms(ctrl, Some(Term::Nil)).is_err());
            }
        }
    }
}

/// Operations that carry their message or reason as the payload.
fn takes_payload(code: i64) -> bool {
    matches!(
        code,
        op::SEND
            | op::SEND_TT
            | op::SEND_SENDER
            | op::SEND_SENDER_TT
            | op::REG_SEND
            | op::REG_SEND_TT
            | op::PAYLOAD_EXIT
            | op::PAYLOAD_EXIT_TT
            | op::PAYLOAD_EXIT2
            | op::PAYLOAD_EXIT2_TT
            | op::PAYLOAD_MONITOR_P_EXIT
    )
}

/// A payload is required exactly by the operations that carry one, and
/// ignored by the others.
fn check_payload_rule(ctrl: &Term, payload: Option<&Term>, code: i64, c: &Control) {
    if takes_payload(code) {
        assert!(payload.is_some(), "op {code} decoded without its payload");
        let without = Control::from_terms(ctrl.clone(), None);
        assert!(
            without.is_err(),
            "op {code} without its payload: {without:?}"
        );
    } else {
        let other = match payload {
            Some(_) => None,
            None => Some(Term::atom("other_payload")),
        };
        let again = Control::from_terms(ctrl.clone(), other);
        assert_eq!(
            again.as_ref(),
            Ok(c),
            "op {code}: the payload changed the result"
        );
    }
}

/// `112`, the control tuple, the payload if any: the node's own encoder,
/// without the `u32` length it puts in front.
fn encode_packet(ctrl: &Term, payload: Option<&Term>) -> Vec<u8> {
    let framed = dist_proto::packet::encode(ctrl, payload);
    let len = u32::from_be_bytes([framed[0], framed[1], framed[2], framed[3]]);
    assert_eq!(len as usize, framed.len() - 4, "length prefix");
    framed[4..].to_vec()
}

fn int(i: i64) -> Term {
    Term::Integer(i)
}

fn any_pid() -> Pid {
    Pid {
        node: Atom::new("fuzz@host").expect("atom"),
        id: 1,
        serial: 0,
        creation: 1,
    }
}

/// Every control tuple and payload that says `c`.
fn rebuild(c: &Control) -> Vec<(Term, Option<Term>)> {
    let all = flags::node_flags(flags::DEFAULT_OPTIONAL, true);
    let old = all & !(flags::SEND_SENDER | flags::EXIT_PAYLOAD);
    let pid = |p: &Pid| Term::Pid(p.clone());
    match c {
        Control::Send {
            from: Some(f),
            to,
            msg,
        } => vec![
            (build::send(all, f, to), Some(msg.clone())),
            (
                Term::Tuple(vec![int(op::SEND_SENDER_TT), pid(f), pid(to), Term::Nil]),
                Some(msg.clone()),
            ),
        ],
        Control::Send {
            from: None,
            to,
            msg,
        } => vec![
            (build::send(old, &any_pid(), to), Some(msg.clone())),
            (
                Term::Tuple(vec![int(op::SEND_TT), Term::atom(""), pid(to), Term::Nil]),
                Some(msg.clone()),
            ),
        ],
        Control::RegSend { from, to, msg } => vec![(build::reg_send(from, to), Some(msg.clone()))],
        Control::Link { from, to } => vec![(build::link(from, to), None)],
        Control::UnlinkId { id, from, to } => vec![(
            Term::Tuple(vec![int(op::UNLINK_ID), id.clone(), pid(from), pid(to)]),
            None,
        )],
        Control::UnlinkIdAck { id, from, to } => {
            vec![(build::unlink_id_ack(id.clone(), from, to), None)]
        }
        Control::Exit {
            from,
            to,
            reason,
            explicit: false,
        } => vec![
            build::exit(all, from, to, reason.clone()),
            build::exit(old, from, to, reason.clone()),
        ],
        Control::Exit {
            from,
            to,
            reason,
            explicit: true,
        } => vec![
            (
                Term::Tuple(vec![int(op::EXIT2), pid(from), pid(to), reason.clone()]),
                None,
            ),
            (
                Term::Tuple(vec![int(op::PAYLOAD_EXIT2), pid(from), pid(to)]),
                Some(reason.clone()),
            ),
        ],
        Control::MonitorP {
            from,
            to,
            reference,
        } => vec![(build::monitor(from, to.clone(), reference), None)],
        Control::DemonitorP {
            from,
            to,
            reference,
        } => vec![(build::demonitor(from, to.clone(), reference), None)],
        Control::MonitorPExit {
            from,
            to,
            reference,
            reason,
        } => vec![
            build::monitor_exit(all, from.clone(), to, reference, reason.clone()),
            build::monitor_exit(old, from.clone(), to, reference, reason.clone()),
        ],
        Control::Other(code) => vec![(Term::Tuple(vec![int(*code)]), None)],
        other => panic!("a Control variant this harness does not know: {other:?}"),
    }
}
