//! Running the binaries under test directly: CLI client modes, and daemons
//! whose start-up itself is the thing under test. Every child is waited for
//! with a deadline and killed by its own handle (its PID) if it overstays.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use test_support::Background;
pub(crate) use test_support::{accepts, have_ipv6_loopback, names_answers_at};

use crate::harness::render;

/// What a finished (or killed) process produced.
#[derive(Debug, Clone)]
pub(crate) struct Out {
    /// Exit code; `None` if it had to be killed or died from a signal.
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Out {
    pub(crate) fn code_str(&self) -> String {
        self.code
            .map_or_else(|| "killed/timeout".to_owned(), |c| c.to_string())
    }
}

/// A child started by a test, its output drained, killed by PID when
/// dropped.
#[derive(Debug)]
pub(crate) struct Proc(Background);

/// Builds the command for `bin args`, with the EPMD environment cleared,
/// then `env` applied. `ERL_EPMD_PORT` is always set (to `safety_port`
/// unless `env` sets it), so a binary that misparses its arguments falls
/// back to a private port, never to 4369.
fn command(bin: &Path, args: &[&str], env: &[(&str, &str)], safety_port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env_remove("ERL_EPMD_ADDRESS")
        .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK")
        .env("ERL_EPMD_PORT", safety_port.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Proc {
    /// Spawns `bin args`; see [`command`] for the environment.
    pub(crate) fn spawn(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        safety_port: u16,
    ) -> Result<Self> {
        let bg = Background::spawn(&mut command(bin, args, env, safety_port))
            .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
        Ok(Self(bg))
    }

    /// Whether it has exited; returns the status code if so.
    pub(crate) fn exited(&mut self) -> Option<Option<i32>> {
        self.0.try_status().map(|st| st.code())
    }

    /// Waits up to `timeout` for exit, killing it afterwards if needed, and
    /// collects its output.
    pub(crate) fn finish(self, timeout: Duration) -> Out {
        let fin = self.0.finish(timeout);
        Out {
            code: fin.code(),
            stdout: fin.stdout,
            stderr: fin.stderr,
        }
    }
}

/// Runs `bin args` to completion (at most 15 s).
pub(crate) fn run(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    safety_port: u16,
) -> Result<Out> {
    Ok(Proc::spawn(bin, args, env, safety_port)?.finish(Duration::from_secs(15)))
}

/// Masks the `{ctime}` of foreground log lines: `epmd: Wed Nov 25 13:24:43
/// 2026: msg` becomes `epmd: {ctime}: msg`.
pub(crate) fn mask_log(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        match line.strip_prefix("epmd: ") {
            Some(rest) if rest.len() > 26 && rest.is_char_boundary(24) && &rest[24..26] == ": " => {
                out.push_str("epmd: {ctime}: ");
                out.push_str(&rest[26..]);
            }
            _ => out.push_str(line),
        }
    }
    render(out.as_bytes())
}
