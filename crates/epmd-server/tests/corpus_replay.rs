//! Replays the committed cargo-fuzz corpus of the `registry_ops` target on
//! stable Rust: every file under `fuzz/corpus/registry_ops/` (and, if
//! present, `fuzz/regressions/registry_ops/`, for inputs that once crashed)
//! is read as a sequence of registry operations and checked against the
//! model, exactly as the fuzz target does. A missing or empty corpus fails.

#[path = "support/registry_harness.rs"]
mod harness;

use test_support::corpus::{replay, DEFAULT_STACK};

#[test]
fn replay_registry_ops_corpus() {
    replay("registry_ops", DEFAULT_STACK, |data| {
        harness::run_bytes(data)
    });
}
