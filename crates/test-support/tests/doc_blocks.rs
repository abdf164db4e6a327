//! Every shell block of the documents is either run by a named test or
//! says why it is not (see `test_support::docs`).

use anyhow::{ensure, Result};
use test_support::docs::{blocks, documents, repo_root, Marker};

/// Fence languages that hold commands.
const SHELL: &[&str] = &["sh", "bash", "console", "shell"];

#[test]
fn every_shell_block_is_tested_or_says_why_not() -> Result<()> {
    let mut problems = Vec::new();
    let mut tested = 0;
    for doc in documents()? {
        for b in blocks(&doc)? {
            match &b.marker {
                Marker::Tested { name, file } => {
                    let path = repo_root().join(file);
                    match std::fs::read_to_string(&path) {
                        Ok(src) if src.contains(&format!("\"{name}\"")) => tested += 1,
                        Ok(_) => problems.push(format!(
                            "{doc}:{}: {file} never asks for block {name:?}",
                            b.line
                        )),
                        Err(e) => problems.push(format!("{doc}:{}: {file}: {e}", b.line)),
                    }
                }
                Marker::NotRun(reason) => {
                    if reason.len() < 10 {
                        problems.push(format!("{doc}:{}: `not run` needs a reason", b.line));
                    }
                }
                Marker::None => {
                    if SHELL.contains(&b.lang.as_str()) {
                        problems.push(format!(
                            "{doc}:{}: shell block without `<!-- tested: NAME (FILE) -->` \
                             or `<!-- not run: REASON -->`",
                            b.line
                        ));
                    }
                }
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    ensure!(tested >= 10, "only {tested} tested blocks found");
    Ok(())
}
