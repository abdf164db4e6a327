//! Replays the committed cargo-fuzz corpus on stable Rust: every file under
//! `fuzz/corpus/decode_request/` and `fuzz/corpus/decode_replies/` (and, if
//! present, `fuzz/regressions/<target>/`, for inputs that once crashed) goes
//! through the same entry points as the fuzz targets, so nothing the fuzzer
//! found can come back unnoticed. A missing or empty corpus fails the test.

#[path = "support/fuzzing.rs"]
mod fuzzing;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use fuzzing::{fuzz_decode_replies, fuzz_decode_request};

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

/// Runs `entry` on every corpus file of `target`; returns how many ran.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut files = files_in(&corpus);
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: a replay of nothing must not pass",
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        files.extend(files_in(&regressions));
    }
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    files.len()
}

#[test]
fn replay_decode_request_corpus() {
    let n = replay("decode_request", fuzz_decode_request);
    eprintln!("replayed {n} decode_request inputs");
}

#[test]
fn replay_decode_replies_corpus() {
    let n = replay("decode_replies", fuzz_decode_replies);
    eprintln!("replayed {n} decode_replies inputs");
}
