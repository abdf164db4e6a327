//! Model-based test of the registry: random sequences of register_legacy,
//! register_ext, add_transports, remove_transport, unregister and stop,
//! applied to `Registry<()>` and to a naive model, compared after each step.
//!
//! Invariants checked after every operation (see `support/registry_harness.rs`):
//! - every operation answers as the model does (ownership: only the owning
//!   connection unregisters or modifies a node; one registration per name);
//! - NAMES and DUMP lines: newest first, exactly the live nodes that have a
//!   legacy-visible port;
//! - PORT_PLEASE2 replies never point at a TLS or Unix-socket transport;
//! - the live count never exceeds the capacity;
//! - creation counters (DUMP3): new name `now + 1` floored at 4, a listed
//!   name +1, the oldest list entry recycled unchanged once the list is over
//!   its cap;
//! - NAMES3 and PORT_PLEASE3 records, with their transport filters.

#[path = "support/registry_harness.rs"]
mod harness;

use harness::{Harness, Op, Outcome, EXTRAS, NAMES, PROTOS, T};
use proptest::collection::vec;
use proptest::prelude::*;

fn conn() -> impl Strategy<Value = u64> {
    1u64..=3
}

fn name() -> impl Strategy<Value = u8> {
    // Mostly the first four (ordinary) names, so that operations collide.
    prop_oneof![
        4 => 0u8..4,
        1 => 0..NAMES.len() as u8,
    ]
}

fn now() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..8,
        1_700_000_000u64..1_700_000_010,
        Just(u64::from(u32::MAX) - 1),
        Just(u64::from(u32::MAX)),
        Just((1u64 << 32) + 1),
        any::<u64>(),
    ]
}

fn transport() -> impl Strategy<Value = T> {
    (
        // Mostly valid protocols (the first six).
        prop_oneof![6 => 0u8..6, 1 => 0..PROTOS.len() as u8],
        0u16..1000,
        // Mostly the short extras.
        prop_oneof![6 => 0u8..2, 1 => 0..EXTRAS.len() as u8],
    )
        .prop_map(|(proto, port_offset, extra)| T {
            proto,
            port_offset,
            extra,
        })
}

fn transports() -> impl Strategy<Value = Vec<T>> {
    prop_oneof![
        8 => vec(transport(), 1..=4),
        1 => vec(transport(), 0..=18),
    ]
}

/// Node type, highest and lowest version.
fn node() -> impl Strategy<Value = (u8, u16, u16)> {
    (
        prop_oneof![4 => Just(77u8), 1 => Just(72u8)],
        prop_oneof![4 => Just(6u16), 1 => Just(5u16)],
        prop_oneof![4 => Just(5u16), 1 => Just(6u16)],
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (conn(), name(), any::<u16>(), node(), 0u8..2, 0..EXTRAS.len() as u8, now())
            .prop_map(|(conn, name, port, (node_type, high, low), protocol, extra, now)| {
                Op::RegisterLegacy { conn, name, port, node_type, protocol, high, low, extra, now }
            }),
        3 => (conn(), name(), node(), transports(), now())
            .prop_map(|(conn, name, (node_type, high, low), transports, now)| {
                Op::RegisterExt { conn, name, node_type, high, low, transports, now }
            }),
        2 => (conn(), name(), prop_oneof![6 => Just(None), 1 => name().prop_map(Some)], node(), transports())
            .prop_map(|(conn, name, other, (node_type, high, low), transports)| {
                Op::AddTransports {
                    conn, name, req_name: other.unwrap_or(name), node_type, high, low, transports,
                }
            }),
        2 => (conn(), name(), 0..PROTOS.len() as u8)
            .prop_map(|(conn, name, proto)| Op::RemoveTransport { conn, name, proto }),
        2 => (conn(), name()).prop_map(|(conn, name)| Op::Unregister { conn, name }),
        1 => name().prop_map(|name| Op::Stop { name }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Small caps, so that capacity refusals and recycling happen often.
    #[test]
    fn registry_matches_model(
        capacity in 0usize..=6,
        old_cap in 0usize..=3,
        ops in vec(op(), 1..=60),
    ) {
        let mut h = Harness::new(capacity, old_cap);
        h.check();
        for op in &ops {
            h.apply(op);
        }
    }


    /// The byte interpreter the fuzz target uses never trips on its own.
    #[test]
    fn byte_interpreter_runs(data in vec(any::<u8>(), 0..=400)) {
        harness::run_bytes(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A roomy registry and a long history: the unregistered list grows past
    /// its cap and names come back many times.
    #[test]
    fn registry_matches_model_long_runs(ops in vec(op(), 100..=300)) {
        let mut h = Harness::new(1000, 2);
        for op in &ops {
            h.apply(op);
        }
    }
}

/// The creation rules, spelled out on a fixed sequence with the expected
/// values written by hand (so the model itself is checked too).
#[test]
fn creation_rules_by_hand() {
    let mut h = Harness::new(10, 1);
    let reg = |conn, name, now| Op::RegisterLegacy {
        conn,
        name,
        port: 5000,
        node_type: 77,
        protocol: 0,
        high: 6,
        low: 5,
        extra: 0,
        now,
    };
    // New names: now + 1, floored at 4, with u32 wrap.
    assert_eq!(h.apply(&reg(1, 0, 1000)), Outcome::Registered(1001));
    assert_eq!(h.apply(&reg(1, 1, 10)), Outcome::Registered(11));
    assert_eq!(
        h.apply(&reg(1, 2, u64::from(u32::MAX))),
        Outcome::Registered(4)
    );
    assert_eq!(h.apply(&reg(1, 3, 1)), Outcome::Registered(4));
    assert_eq!(h.apply(&reg(1, 3, 1)), Outcome::Duplicate);
    // Only the owner unregisters; re-registration is +1.
    assert_eq!(
        h.apply(&Op::Unregister { conn: 2, name: 0 }),
        Outcome::Removed(false)
    );
    assert_eq!(
        h.apply(&Op::Unregister { conn: 1, name: 0 }),
        Outcome::Removed(true)
    );
    assert_eq!(h.apply(&reg(2, 0, 5)), Outcome::Registered(1002));
    // Two entries (b = 11, c = 4) on a list capped at 1: the next new name
    // takes the oldest entry's counter unchanged.
    assert_eq!(
        h.apply(&Op::Unregister { conn: 1, name: 1 }),
        Outcome::Removed(true)
    );
    assert_eq!(h.apply(&Op::Stop { name: 2 }), Outcome::Removed(true));
    assert_eq!(h.apply(&reg(3, 4, 123_456)), Outcome::Registered(11));
    // Back on the list, that name gets +1 like any listed name.
    assert_eq!(h.apply(&Op::Stop { name: 4 }), Outcome::Removed(true));
    assert_eq!(h.apply(&reg(3, 4, 123_456)), Outcome::Registered(12));
    // The list is now [c], not over its cap: a new name gets now + 1, and
    // b's old counter is gone with its recycled entry.
    assert_eq!(h.apply(&reg(1, 1, 99)), Outcome::Registered(100));
}
