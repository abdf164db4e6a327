//! Running the binaries under test directly: CLI client modes, and daemons
//! whose start-up itself is the thing under test. Every child is waited for
//! with a deadline and killed by its own handle (its PID) if it overstays.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};

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

/// A child started by a test, killed by PID when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

fn drain(r: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    })
}

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
        let mut child = command(bin, args, env, safety_port)
            .spawn()
            .with_context(|| format!("spawn {} {args:?}", bin.display()))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Ok(Self {
            child: Some(child),
            out,
            err,
        })
    }

    /// Whether it has exited; returns the status code if so.
    pub(crate) fn exited(&mut self) -> Option<Option<i32>> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.code()),
            _ => None,
        }
    }

    /// Waits up to `timeout` for exit, killing it afterwards if needed, and
    /// collects its output.
    pub(crate) fn finish(mut self, timeout: Duration) -> Out {
        let mut code = None;
        let mut done = false;
        test_support::wait_until(timeout, || match self.exited() {
            Some(c) => {
                code = c;
                done = true;
                true
            }
            None => false,
        });
        if let Some(mut c) = self.child.take() {
            if !done {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let stdout = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Out {
            code: if done { code } else { None },
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
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

/// Whether a NAMES request to `addr` gets a 4-byte header back.
pub(crate) fn names_answers_at(addr: SocketAddr) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(&[0, 1, 110]).is_err() {
        return false;
    }
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).is_ok()
}

/// Whether anything accepts a TCP connection at `addr`.
pub(crate) fn accepts(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Whether this host can bind IPv6 loopback.
pub(crate) fn have_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}
