//! Test helpers shared by the conformance, interop and benchmark code.
//!
//! Rules these helpers enforce (see `docs/testing.md`):
//! - no daemon ever runs on port 4369: every daemon gets a free private port;
//! - daemons run in the foreground and are killed by PID when dropped;
//! - waits poll a condition against a deadline instead of sleeping.
//!
//! # Layout
//! - [`Subject`] and [`Daemon`]: start OTP's C `epmd` or `epmdx` on a private
//!   port and wait until it answers NAMES.
//! - [`wait_until`]: poll a condition with a deadline.
//! - [`epmdx_bin`] / [`otp_epmd_bin`]: where the binaries under test live.
//! - [`process`]: run a program with a deadline, or in the background with
//!   its output drained ([`run_with_timeout`], [`Background`],
//!   [`LineProcess`]).
//! - [`net`]: loopback probes (NAMES answers, a port accepts, IPv6 loopback)
//!   and the host names nodes use.
//! - [`netns`]: network namespaces and a router-and-subnets [`netns::Topology`]
//!   (root and iproute2 needed).
//! - [`bench`]: medians and `/proc` readings for the benchmarks.
//! - [`etcd`]: a real etcd cluster (loopback or one member per namespace);
//!   [`cluster`]: hosts in namespaces each running an etcd member and an
//!   epmdx that publishes to it.
//! - [`erl`]: real Erlang nodes; [`corpus`]: fuzz-corpus replay.
//! - [`docs`]: the documents' command blocks, for the tests that run them.
//! - [`upgrade`]: a daemon run from a replaceable copy, followed across
//!   in-place upgrades.

pub mod bench;
pub mod cluster;
pub mod corpus;
pub mod docs;
pub mod erl;
pub mod etcd;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod process;
pub use net::{accepts, have_ipv6_loopback, names_answers_at};
pub use process::{run_with_timeout, Background, Finished, LineProcess};
pub mod upgrade;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which EPMD implementation a test talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Debian's OTP `epmd` (the reference).
    Otp,
    /// This project's `epmdx`.
    Epmdx,
}

impl Subject {
    /// The binary for this subject.
    pub fn bin(self) -> PathBuf {
        match self {
            Self::Otp => otp_epmd_bin(),
            Self::Epmdx => epmdx_bin(),
        }
    }

    /// Subjects selected by `EPMD_TEST_SUBJECT` (`otp`, `epmdx`, or unset for both).
    pub fn selected() -> Vec<Self> {
        match std::env::var("EPMD_TEST_SUBJECT").as_deref() {
            Ok("otp") => vec![Self::Otp],
            Ok("epmdx") => vec![Self::Epmdx],
            _ => vec![Self::Otp, Self::Epmdx],
        }
    }
}

/// Path of the `epmdx` binary: `$EPMDX_BIN`, else `target/<profile>/epmdx`
/// next to the running test executable.
pub fn epmdx_bin() -> PathBuf {
    workspace_bin("epmdx", "EPMDX_BIN")
}

/// Path of the `erldist` binary: `$ERLDIST_BIN`, else
/// `target/<profile>/erldist` next to the running test executable.
pub fn erldist_bin() -> PathBuf {
    workspace_bin("erldist", "ERLDIST_BIN")
}

/// A binary of this workspace: `$env_var` if set, else `target/<profile>/name`
/// next to the running test executable. Panics, naming the fix, if absent.
pub fn workspace_bin(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first or set {env_var}",
        bin.display()
    );
    bin
}

/// Path of OTP's C `epmd`: `$OTP_EPMD_BIN`, else the one Debian installs.
pub fn otp_epmd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OTP_EPMD_BIN") {
        return PathBuf::from(p);
    }
    for cand in ["/usr/lib/erlang/erts-13.1.5/bin/epmd", "/usr/bin/epmd"] {
        let p = PathBuf::from(cand);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("epmd")
}

/// A port that was free a moment ago. Never 4369.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind port 0");
        let port = l.local_addr().expect("local_addr").port();
        if port != epmd_proto::DEFAULT_PORT {
            return port;
        }
    }
}

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon under test, on a private port, killed by PID when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// The subject that runs.
    pub subject: Subject,
    /// The private port it listens on.
    pub port: u16,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `subject` in the foreground with `-port P` followed by `args`,
    /// and waits until it answers NAMES. Retries on another port when the
    /// daemon exits at once with status 0 (its "already running" answer to a
    /// port taken in the meantime).
    pub fn start(subject: Subject, args: &[&str]) -> Result<Self> {
        Self::start_with_env(subject, args, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_with_env(subject: Subject, args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        for _ in 0..10 {
            let port = free_port();
            let mut cmd = Command::new(subject.bin());
            cmd.arg("-port").arg(port.to_string()).args(args);
            cmd.env_remove("ERL_EPMD_PORT")
                .env_remove("ERL_EPMD_ADDRESS")
                .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK");
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd
                .spawn()
                .with_context(|| format!("spawn {}", subject.bin().display()))?;
            let mut d = Self {
                subject,
                port,
                child: Some(child),
            };
            let mut exited = None;
            let up = wait_until(Duration::from_secs(10), || {
                if let Some(c) = d.child.as_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        exited = Some(st);
                        return true;
                    }
                }
                names_answers(port)
            });
            match exited {
                Some(st) if st.success() => {
                    d.child = None;
                    continue;
                }
                Some(st) => bail!("{subject:?} exited at start: {st}"),
                None if up => return Ok(d),
                None => bail!("{subject:?} did not answer NAMES on port {port}"),
            }
        }
        bail!("no free port after 10 tries")
    }

    /// Starts `subject` on the given `port` (e.g. again, on the port of one
    /// that was killed), waiting up to 10 s for it to bind and answer NAMES.
    pub fn start_on(subject: Subject, port: u16, args: &[&str]) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new(subject.bin())
                .arg("-port")
                .arg(port.to_string())
                .args(args)
                .env_remove("ERL_EPMD_PORT")
                .env_remove("ERL_EPMD_ADDRESS")
                .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("spawn {}", subject.bin().display()))?;
            let mut d = Self {
                subject,
                port,
                child: Some(child),
            };
            let up = wait_until(Duration::from_secs(5), || {
                d.child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
                    && names_answers(port)
            });
            if up {
                return Ok(d);
            }
            // Exited (the port not free yet) or silent: try again.
            drop(d);
            if Instant::now() >= deadline {
                bail!("{subject:?} did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's address on IPv4 loopback.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The daemon's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        process::wait_exit_code(self.child.as_mut()?, timeout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends NAMES to `127.0.0.1:port` and reports whether 4 bytes came back.
pub fn names_answers(port: u16) -> bool {
    names_answers_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Sends NAMES and returns the reply after the u32 header, or `None`.
pub fn names_text(port: u16) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&[0, 1, 110]).ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    (all.len() >= 4).then(|| all.split_off(4))
}

/// Whether a node `name` appears in the NAMES listing on `port`.
pub fn is_registered(port: u16, name: &str) -> bool {
    names_text(port).is_some_and(|t| {
        String::from_utf8_lossy(&t)
            .lines()
            .any(|l| l.starts_with(&format!("name {name} at port ")))
    })
}
