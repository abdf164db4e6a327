//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/decode_request/` and `fuzz/corpus/decode_replies/` (and, if
//! present, `fuzz/regressions/<target>/`, for inputs that once crashed) goes
//! through the same entry points as the fuzz targets, so nothing the fuzzer
//! found can come back unnoticed. A missing or empty corpus fails the test.

#[path = "support/fuzzing.rs"]
mod fuzzing;

use fuzzing::{fuzz_decode_replies, fuzz_decode_request};
use test_support::corpus::{replay, DEFAULT_STACK};

#[test]
fn replay_decode_request_corpus() {
    replay("decode_request", DEFAULT_STACK, fuzz_decode_request);
}

#[test]
fn replay_decode_replies_corpus() {
    replay("decode_replies", DEFAULT_STACK, fuzz_decode_replies);
}
