//! Pass-through distribution packets (`112`, control tuple, payload)
//! through the node's own receive path, `erldist::control::Control::decode_packet`
//! (`dist_proto::packet::decode_bytes` within the default budget, then
//! `Control::from_terms`), and every decoded control message rebuilt with
//! the node's own builders and encoder. The logic is shared, by path, with
//! the stable corpus replay of erldist, so both run the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/erldist/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_dist_packet(data);
});
