//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/dist_handshake/` (and, if present,
//! `fuzz/regressions/dist_handshake/`, for inputs that once crashed) goes
//! through the same entry point as the fuzz target, so nothing the fuzzer
//! found can come back unnoticed. A missing or empty corpus fails the test.
//!
//! The seeds (`seed-*`) are real handshake transcripts, recorded by running
//! a `Connector` against an `Acceptor` in memory; `write_seeds` (ignored)
//! regenerates them:
//!
//! ```sh
//! DIST_FUZZ_WRITE_SEEDS=1 cargo test -p dist-proto --test corpus_replay -- --ignored
//! ```

#[path = "support/fuzzing.rs"]
mod fuzzing;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dist_proto::Stage;

const TARGET: &str = "dist_handshake";

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn replay_dist_handshake_corpus() {
    let corpus = fuzz_dir().join("corpus").join(TARGET);
    let mut files = files_in(&corpus);
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: a replay of nothing must not pass",
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions").join(TARGET);
    if regressions.is_dir() {
        files.extend(files_in(&regressions));
    }
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| fuzzing::fuzz_dist_handshake(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {TARGET} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    eprintln!("replayed {} {TARGET} inputs", files.len());
}

/// The transcripts still are what they claim: the valid ones establish the
/// machine under test (both machines, in a pair), the failing ones do not.
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
#[test]
fn committed_seeds_are_current() {
    let corpus = fuzz_dir().join("corpus").join(TARGET);
    for seed in fuzzing::seeds() {
        let path = corpus.join(format!("seed-{}", seed.name));
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

#[test]
#[ignore = "writes fuzz/corpus/dist_handshake/seed-*; run with DIST_FUZZ_WRITE_SEEDS=1"]
fn write_seeds() {
    if std::env::var_os("DIST_FUZZ_WRITE_SEEDS").is_none() {
        eprintln!("DIST_FUZZ_WRITE_SEEDS is not set; nothing written");
        return;
    }
    let corpus = fuzz_dir().join("corpus").join(TARGET);
    std::fs::create_dir_all(&corpus).expect("create the corpus directory");
    for seed in fuzzing::seeds() {
        let path = corpus.join(format!("seed-{}", seed.name));
        std::fs::write(&path, &seed.data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
