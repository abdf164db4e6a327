//! The handshake state machines: the input picks a configuration and is a
//! script of chunks, timeouts, end of stream, peer-check answers and clock
//! steps driving a `Connector`, an `Acceptor`, or both talking to each
//! other, with every output and event checked. The logic is shared, by
//! path, with the stable corpus replay of dist-proto, so both run the same
//! code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/dist-proto/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_dist_handshake(data);
});
