//! Request side of the codec: `frame::check`, `Request::decode`, the
//! extension's `validate()`s and re-encoding. The logic is shared, by path,
//! with the stable corpus replay of epmd-proto, so both run the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/epmd-proto/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_decode_request(data);
});
