//! Client side of the codec: every reply decoder (ALIVE2/ALIVE2_X, PORT2,
//! ALIVE3, UNREG3, PORT3, NAMES3, DUMP3, the NAMES text), with re-encoding.
//! The logic is shared, by path, with the stable corpus replay of
//! epmd-proto, so both run the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/epmd-proto/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_decode_replies(data);
});
