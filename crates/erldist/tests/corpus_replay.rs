//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/dist_packet/` (and, if present, `fuzz/regressions/dist_packet/`,
//! for inputs that once crashed) goes through the same entry point as the
//! fuzz target, so nothing the fuzzer found can come back unnoticed. A
//! missing or empty corpus fails the test.
//!
//! The seeds (`seed-*`) are pass-through packets built from real
//! `term_to_binary` output of a plain `erl -noshell` (see
//! `fuzz/make_term_seeds.escript`).
//!
//! Each input runs on a thread with a large stack: the decoder accepts 1000
//! levels of nesting, and comparing and dropping such a term in a debug
//! build needs more than a test thread's default 2 MiB (the fuzzer
//! runs on an 8 MiB main thread).

#[path = "support/fuzzing.rs"]
mod fuzzing;

use test_support::corpus::{replay, seed_files};

const TARGET: &str = "dist_packet";

/// Stack for each replayed input.
const STACK: usize = 256 << 20;

#[test]
fn replay_dist_packet_corpus() {
    replay(TARGET, STACK, fuzzing::fuzz_dist_packet);
}

/// The seeds are packets as a node sends them: every one decodes.
#[test]
fn seeds_decode() {
    let seeds = seed_files(TARGET);
    for path in seeds {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = fuzzing::decode_packet(&data);
        assert!(got.is_ok(), "{}: {got:?}", path.display());
    }
}
