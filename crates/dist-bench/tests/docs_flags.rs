//! docs/benchmarks.md's dist-bench invocations are not run (each takes
//! minutes): their blocks are marked `not run` and name this file, which
//! checks that `dist-bench [SUBCOMMAND] --help` lists every flag they use.

use anyhow::{ensure, Result};
use test_support::docs::{flags_in_help, invocations, not_run_blocks_naming};

#[test]
fn every_documented_dist_bench_flag_is_accepted() -> Result<()> {
    let blocks = not_run_blocks_naming(
        "docs/benchmarks.md",
        "crates/dist-bench/tests/docs_flags.rs",
    )?;
    ensure!(blocks.len() >= 2, "found {} blocks", blocks.len());
    let mut runs = Vec::new();
    for b in &blocks {
        let found = invocations(&b.body, "dist-bench", "dist-bench")?;
        ensure!(
            !found.is_empty(),
            "no dist-bench invocation in line {}",
            b.line
        );
        runs.extend(found);
    }
    let checked = flags_in_help(env!("CARGO_BIN_EXE_dist-bench").as_ref(), &runs)?;
    ensure!(checked >= 6, "only {checked} flags checked in {runs:?}");
    Ok(())
}
