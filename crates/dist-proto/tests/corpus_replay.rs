//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/dist_handshake/` (and, if present,
//! `fuzz/regressions/dist_handshake/`, for inputs that once crashed) goes
//! through the same entry point as the fuzz target, so nothing the fuzzer
//! found can come back unnoticed. A missing or empty corpus fails the test.
//!
//! The seeds (`seed-*`) are real handshake transcripts, recorded by running
//! a `Connector` against an `Acceptor` in memory; this regenerates them:
//!
//! ```sh
//! DIST_FUZZ_WRITE_SEEDS=1 cargo test -p dist-proto --test corpus_replay committed_seeds_are_current
//! ```

#[path = "support/fuzzing.rs"]
mod fuzzing;

use dist_proto::Stage;
use test_support::corpus::{fuzz_dir, replay, DEFAULT_STACK};

const TARGET: &str = "dist_handshake";

#[test]
fn replay_dist_handshake_corpus() {
    replay(TARGET, DEFAULT_STACK, fuzzing::fuzz_dist_handshake);
}

#[test]
fn seeds_reach_their_outcome() {
    for seed in fuzzing::seeds() {
        let s = fuzzing::run(&seed.data);
        let stages: Vec<Stage> = [s.connector, s.acceptor].into_iter().flatten().collect();
        assert!(!stages.is_empty(), "{}: nothing ran", seed.name);
        let all = stages.iter().all(|&st| st == Stage::Established);
        assert_eq!(all, seed.established, "{}: {s:?}", seed.name);
    }
}

/// The committed seeds are the generated ones.
/// The committed seed files match what the in-memory handshakes record
/// now. With `DIST_FUZZ_WRITE_SEEDS=1` the test rewrites them instead.
#[test]
fn committed_seeds_are_current() {
    let corpus = fuzz_dir().join("corpus").join(TARGET);
    let write = std::env::var_os("DIST_FUZZ_WRITE_SEEDS").is_some();
    for seed in fuzzing::seeds() {
        let path = corpus.join(format!("seed-{}", seed.name));
        if write {
            std::fs::create_dir_all(&corpus).expect("create the corpus directory");
            std::fs::write(&path, &seed.data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with DIST_FUZZ_WRITE_SEEDS=1 (see the module docs)",
                path.display()
            )
        });
        assert!(
            on_disk == seed.data,
            "{} is stale; regenerate it (see the module docs)",
            path.display()
        );
    }
}
