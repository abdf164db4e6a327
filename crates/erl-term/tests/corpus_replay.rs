//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/etf_decode/` (and, if present, `fuzz/regressions/etf_decode/`,
//! for inputs that once crashed) goes through the same entry point as the
//! fuzz target, so nothing the fuzzer found can come back unnoticed. A
//! missing or empty corpus fails the test.
//!
//! The seeds (`seed-*`) are real `term_to_binary` output of a plain
//! `erl -noshell` (see `fuzz/make_term_seeds.escript`).
//!
//! Each input runs on a thread with a large stack: the decoder accepts 1000
//! levels of nesting, and comparing, printing and dropping such a term in a
//! debug build needs more than a test thread's default 2 MiB (the fuzzer
//! runs on an 8 MiB main thread).

#[path = "support/fuzzing.rs"]
mod fuzzing;

use test_support::corpus::{replay, seed_files};

const TARGET: &str = "etf_decode";

/// Stack for each replayed input.
const STACK: usize = 256 << 20;

#[test]
fn replay_etf_decode_corpus() {
    replay(TARGET, STACK, fuzzing::fuzz_etf_decode);
}

/// The seeds are real `term_to_binary` output: every one decodes.
#[test]
fn seeds_decode() {
    let seeds = seed_files(TARGET);
    for path in seeds {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ok = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || erl_term::decode(&data).map(|_| ()))
            .expect("spawn a thread")
            .join()
            .expect("decode panicked");
        assert_eq!(ok, Ok(()), "{}", path.display());
    }
}
