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

use std::path::{Path, PathBuf};

const TARGET: &str = "etf_decode";

/// Stack for each replayed input.
const STACK: usize = 256 << 20;

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
fn replay_etf_decode_corpus() {
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
        let run = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || fuzzing::fuzz_etf_decode(&data))
            .expect("spawn a replay thread")
            .join();
        if run.is_err() {
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

/// The seeds are real `term_to_binary` output: every one decodes.
#[test]
fn seeds_decode() {
    let corpus = fuzz_dir().join("corpus").join(TARGET);
    let seeds: Vec<PathBuf> = files_in(&corpus)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    assert!(!seeds.is_empty(), "no seed-* in {}", corpus.display());
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
