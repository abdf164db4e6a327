//! Outside programs run by tests: to completion with a deadline, or in the
//! background with their output drained, always killed by their own PID.
//!
//! Output is drained on threads from the moment the child starts, so a
//! chatty child never blocks on a full pipe while the test waits for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::wait_until;

/// Reads `r` to its end on a thread; join the handle for the bytes.
pub fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured.
/// Past `timeout` the child is killed by PID and this is an error.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let bg = Background::spawn(cmd).with_context(|| format!("spawn {desc}"))?;
    let fin = bg.finish(timeout);
    match fin.status {
        Some(status) => Ok(Output {
            status,
            stdout: fin.stdout,
            stderr: fin.stderr,
        }),
        None => bail!("{desc} did not finish within {timeout:?}"),
    }
}

/// What a background process left when it finished or was killed.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its exit status; `None` if it overstayed and was killed.
    pub status: Option<std::process::ExitStatus>,
    /// Everything it wrote to stdout (if piped).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (if piped).
    pub stderr: Vec<u8>,
}

impl Finished {
    /// The exit code: `None` if killed for overstaying or ended by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// A child whose piped stdout and stderr are drained in the background,
/// killed by PID when dropped.
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

impl Background {
    /// Spawns `cmd` as configured (pipe stdout/stderr to have them kept).
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let mut child = cmd.spawn()?;
        Ok(Self {
            out: child.stdout.take().map(drain),
            err: child.stderr.take().map(drain),
            child: Some(child),
        })
    }

    /// The child's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status, if it has exited (reaping it).
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for it to exit, kills it by PID if it has not,
    /// and collects its output.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let mut status = None;
        wait_until(timeout, || {
            status = self.try_status();
            status.is_some()
        });
        if let Some(mut c) = self.child.take() {
            if status.is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Finished {
            status,
            stdout: join(self.out.take()),
            stderr: join(self.err.take()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A long-running helper process spoken to line by line: stdin piped,
/// stdout read a line at a time, stderr inherited (so it shows in the test
/// output). Killed by PID when dropped.
#[derive(Debug)]
pub struct LineProcess {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    desc: String,
}

impl LineProcess {
    /// Spawns `cmd` with piped stdin and stdout.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {desc}"))?;
        let stdout = child.stdout.take().context("stdout was not piped")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            desc,
        })
    }

    /// The next stdout line, within `timeout`.
    pub fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => {
                bail!("{}: no output line within {timeout:?}", self.desc)
            }
            Err(RecvTimeoutError::Disconnected) => {
                let code = self.wait(Duration::from_secs(5));
                bail!("{}: stdout closed (exit code {code:?})", self.desc)
            }
        }
    }

    /// Writes `line` and a newline to stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits up to `timeout` for the exit code (-1 for a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        wait_exit_code(self.child.as_mut()?, timeout)
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits up to `timeout` for `child` to exit; its exit code, -1 for a
/// signal, `None` if it still runs.
pub fn wait_exit_code(child: &mut Child, timeout: Duration) -> Option<i32> {
    let mut code = None;
    wait_until(timeout, || match child.try_wait() {
        Ok(Some(st)) => {
            code = Some(st.code().unwrap_or(-1));
            true
        }
        Ok(None) => false,
        Err(_) => true,
    });
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_collects_output_and_status() {
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn run_kills_a_late_child() {
        let err = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200))
            .unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[test]
    fn line_process_round_trip() {
        let mut p = LineProcess::spawn(&mut Command::new("cat")).unwrap();
        p.send_line("hello").unwrap();
        assert_eq!(p.line(Duration::from_secs(10)).unwrap(), "hello");
    }
}
