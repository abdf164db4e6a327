//! Pass-through distribution packets (`112`, control tuple, payload): the
//! node's packet decoding (`erl_term::decode_used`, `erl_term::decode`,
//! `erldist::control::Control::from_terms`) and rebuilding every decoded
//! control message with the node's own builders. The logic is shared, by
//! path, with the stable corpus replay of erldist, so both run the same
//! code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/erldist/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_dist_packet(data);
});
