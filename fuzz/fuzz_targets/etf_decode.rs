//! The External Term Format decoder: every decode entry point, re-encoding
//! and decoding again, compression, printing and parsing back. The logic is
//! shared, by path, with the stable corpus replay of erl-term, so both run
//! the same code.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/erl-term/tests/support/fuzzing.rs"]
mod fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::fuzz_etf_decode(data);
});
