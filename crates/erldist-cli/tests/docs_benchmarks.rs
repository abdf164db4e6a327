//! docs/benchmarks.md's hardening block runs tests of this crate with
//! `--nocapture`; it is marked `not run` (the suite runs those tests
//! already) and names this file, which checks that the command still
//! selects tests: the `--test` file exists and every name filter matches a
//! test in it.

use anyhow::{ensure, Context, Result};
use test_support::docs::{commands, not_run_blocks_naming, repo_root};

#[test]
fn the_documented_hardening_filters_select_tests() -> Result<()> {
    let blocks = not_run_blocks_naming(
        "docs/benchmarks.md",
        "crates/erldist-cli/tests/docs_benchmarks.rs",
    )?;
    ensure!(blocks.len() == 1, "found {} blocks", blocks.len());
    let c = commands(&blocks[0].body)?;
    ensure!(c.len() == 1, "{c:?}");
    let w = &c[0].words;
    ensure!(
        w[..4] == ["cargo", "test", "-p", "erldist-cli"],
        "not this crate's tests: {w:?}"
    );
    let file = w
        .windows(2)
        .find(|p| p[0] == "--test")
        .map(|p| p[1].clone())
        .context("no --test")?;
    let src =
        std::fs::read_to_string(repo_root().join(format!("crates/erldist-cli/tests/{file}.rs")))?;
    // A test is the `fn` after a `#[test]` or `#[tokio::test(...)]` line.
    let lines: Vec<&str> = src.lines().collect();
    let tests: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim_start();
            l.starts_with("#[test]") || l.starts_with("#[tokio::test")
        })
        .filter_map(|(i, _)| {
            let f = lines.get(i + 1)?;
            f.split("fn ").nth(1)?.split('(').next()
        })
        .collect();
    let dashdash = w.iter().position(|x| x == "--").context("no --")?;
    let filters: Vec<&String> = w[dashdash + 1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .collect();
    ensure!(!filters.is_empty(), "no filters in {w:?}");
    for f in filters {
        ensure!(
            tests.iter().any(|t| t.contains(f.as_str())),
            "filter {f} selects none of {tests:?}"
        );
    }
    Ok(())
}
