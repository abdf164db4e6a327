//! docs/benchmarks.md's epmd-loadgen invocations are not run (each takes
//! minutes): their block is marked `not run` and names this file, which
//! checks that `epmd-loadgen SUBCOMMAND --help` lists every flag they use.

use anyhow::{ensure, Result};
use test_support::docs::{flags_in_help, invocations, not_run_blocks_naming};

#[test]
fn every_documented_epmd_loadgen_flag_is_accepted() -> Result<()> {
    let blocks = not_run_blocks_naming(
        "docs/benchmarks.md",
        "crates/epmd-bench/tests/docs_flags.rs",
    )?;
    ensure!(!blocks.is_empty(), "no block names this file");
    let mut runs = Vec::new();
    for b in &blocks {
        let found = invocations(&b.body, "epmd-bench", "epmd-loadgen")?;
        ensure!(
            !found.is_empty(),
            "no epmd-loadgen invocation in line {}",
            b.line
        );
        runs.extend(found);
    }
    let checked = flags_in_help(env!("CARGO_BIN_EXE_epmd-loadgen").as_ref(), &runs)?;
    ensure!(checked >= 10, "only {checked} flags checked in {runs:?}");
    Ok(())
}
