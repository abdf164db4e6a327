//! Replays the committed cargo-fuzz corpus of the `registry_ops` target on
//! stable Rust: every file under `fuzz/corpus/registry_ops/` (and, if
//! present, `fuzz/regressions/registry_ops/`, for inputs that once crashed)
//! is read as a sequence of registry operations and checked against the
//! model, exactly as the fuzz target does. A missing or empty corpus fails.

#[path = "support/registry_harness.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

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
fn replay_registry_ops_corpus() {
    let corpus = fuzz_dir().join("corpus/registry_ops");
    let mut files = files_in(&corpus);
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: a replay of nothing must not pass",
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions/registry_ops");
    if regressions.is_dir() {
        files.extend(files_in(&regressions));
    }
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| harness::run_bytes(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} registry_ops inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    eprintln!("replayed {} registry_ops inputs", files.len());
}
