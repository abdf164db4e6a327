//! Replaying the committed cargo-fuzz corpus on stable Rust.
//!
//! Every file under `fuzz/corpus/<target>/` (and `fuzz/regressions/<target>/`,
//! for inputs that once crashed) goes through the same entry point as the
//! fuzz target. A missing or empty corpus fails: a replay of nothing must
//! not pass.

use std::path::{Path, PathBuf};

/// The workspace's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The regular files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The corpus of `target` plus its regressions; panics if the corpus is
/// missing or empty.
pub fn corpus_files(target: &str) -> Vec<PathBuf> {
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
    files
}

/// The `seed-*` files of `target`'s corpus; panics if there are none.
pub fn seed_files(target: &str) -> Vec<PathBuf> {
    let corpus = fuzz_dir().join("corpus").join(target);
    let seeds: Vec<PathBuf> = files_in(&corpus)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    assert!(!seeds.is_empty(), "no seed-* in {}", corpus.display());
    seeds
}

/// Runs `entry` on every input of `target`, each on its own thread with
/// `stack` bytes of stack (deeply nested terms need more than a test
/// thread's default in debug builds). Fails listing every input that
/// panicked; returns how many ran.
pub fn replay(target: &str, stack: usize, entry: fn(&[u8])) -> usize {
    let files = corpus_files(target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let run = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || entry(&data))
            .expect("spawn a replay thread")
            .join();
        if run.is_err() {
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
    eprintln!("replayed {} {target} inputs", files.len());
    files.len()
}

/// Stack for replay threads that do not need a large one.
pub const DEFAULT_STACK: usize = 8 << 20;
