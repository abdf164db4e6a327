//! Helpers for in-place upgrade tests: a daemon started from a private copy
//! of the epmdx binary (so a test can replace the file), followed across
//! upgrades by PID.
//!
//! The test process makes itself a child subreaper, so every generation of
//! the daemon (re-parented when its predecessor exits) is its child and can
//! be reaped and killed by PID; [`UpgradableDaemon`] kills the current one
//! on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::erl::TempDir;
use crate::{epmdx_bin, free_port, names_answers, wait_until};

/// Re-parent orphaned descendants (the upgraded daemons) to this process.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Whether `pid` has exited (reaping it if it was our child).
pub fn exited(pid: u32) -> bool {
    let p = pid as libc::pid_t;
    let mut st = 0;
    // SAFETY: waitpid and kill with plain integers.
    unsafe {
        let r = libc::waitpid(p, &mut st, libc::WNOHANG);
        if r == p {
            return true;
        }
        libc::kill(p, 0) != 0
    }
}

/// Kills `pid` and reaps it if it is our child.
pub fn kill_pid(pid: u32) {
    let p = pid as libc::pid_t;
    // SAFETY: as in `exited`.
    unsafe {
        if libc::kill(p, libc::SIGKILL) == 0 {
            let mut st = 0;
            libc::waitpid(p, &mut st, 0);
        }
    }
}

/// The PIDs of running processes whose `argv[0]` is `exe`.
pub fn pids_running(exe: &Path) -> Vec<u32> {
    let want = exe.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmd.split(|&b| b == 0).next()?;
        (argv0 == want && !exited(pid)).then_some(pid)
    })
    .collect()
}

/// Spawns a binary that was just written. Another test thread forking at
/// the moment the file was open for writing holds that descriptor until it
/// execs, and exec then fails with ETXTBSY: retry for a while.
pub fn spawn_fresh(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match cmd.spawn() {
            Err(e)
                if e.raw_os_error() == Some(libc::ETXTBSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// `upgraded: pid OLD -> NEW, N registrations`, parsed.
pub fn parse_upgraded(line: &str) -> Option<(u32, u32, usize)> {
    let rest = line.trim_end().strip_prefix("upgraded: pid ")?;
    let (old, rest) = rest.split_once(" -> ")?;
    let (new, rest) = rest.split_once(", ")?;
    let n = rest.strip_suffix(" registrations")?;
    Some((old.parse().ok()?, new.parse().ok()?, n.parse().ok()?))
}

/// A daemon run from `dir/epmdx`, a copy of the binary under test.
#[derive(Debug)]
pub struct UpgradableDaemon {
    /// Holds the binary copy and the log.
    pub dir: TempDir,
    /// The path the daemon runs from (replace it to upgrade).
    pub exe: PathBuf,
    /// Its private port.
    pub port: u16,
    /// The PID serving now.
    pub pid: u32,
}

impl UpgradableDaemon {
    /// Copies the binary and starts `exe -port P args` in the foreground,
    /// logging to `dir/daemon.log`; waits until it answers NAMES.
    pub fn start(args: &[&str]) -> Result<Self> {
        Self::start_with_env(args, &[])
    }

    /// Like [`UpgradableDaemon::start`], with extra environment variables
    /// (which the generations after it inherit).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        become_subreaper();
        let dir = TempDir::new("upgrade")?;
        let exe = dir.path().join("epmdx");
        std::fs::copy(epmdx_bin(), &exe).context("copy epmdx")?;
        for _ in 0..10 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("daemon.log"))?;
            let mut cmd = Command::new(&exe);
            cmd.arg("-port")
                .arg(port.to_string())
                .args(args)
                .env_remove("ERL_EPMD_PORT")
                .env_remove("ERL_EPMD_ADDRESS")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            let child = spawn_fresh(&mut cmd).context("spawn epmdx copy")?;
            let pid = child.id();
            // Reaped by PID (waitpid), like the generations after it.
            std::mem::forget(child);
            let mut gone = false;
            let up = wait_until(Duration::from_secs(10), || {
                gone = exited(pid);
                gone || names_answers(port)
            });
            if gone {
                continue; // port taken meanwhile: "already running", exit 0
            }
            ensure!(up, "epmdx copy did not answer NAMES on {port}");
            return Ok(Self {
                dir,
                exe,
                port,
                pid,
            });
        }
        bail!("no free port after 10 tries")
    }

    /// Runs `epmdx -port P -upgrade` (the binary under test, not the copy,
    /// so a broken copy does not break the client).
    pub fn upgrade_cmd(&self) -> Result<Output> {
        Command::new(epmdx_bin())
            .args(["-port", &self.port.to_string(), "-upgrade"])
            .env_remove("ERL_EPMD_PORT")
            .output()
            .context("epmdx -upgrade")
    }

    /// Upgrades; checks the output line and the old PID's exit; follows the
    /// new PID. Returns the registrations count the line reported.
    pub fn upgrade(&mut self) -> Result<usize> {
        let out = self.upgrade_cmd()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "-upgrade failed ({}): {stdout}{}\nlog:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let (old, new, n) = parse_upgraded(&stdout)
            .with_context(|| format!("unexpected -upgrade output {stdout:?}"))?;
        ensure!(old == self.pid, "old pid {old}, expected {}", self.pid);
        ensure!(new != old, "same pid after upgrade");
        ensure!(
            stdout == format!("upgraded: pid {old} -> {new}, {n} registrations\n"),
            "output {stdout:?}"
        );
        self.pid = new;
        ensure!(
            wait_until(Duration::from_secs(10), || exited(old)),
            "old daemon {old} still runs"
        );
        ensure!(!exited(new), "new daemon {new} is not running");
        Ok(n)
    }

    /// Replaces the binary file atomically (write aside, rename over), as a
    /// package manager does; the running daemon keeps its deleted inode.
    pub fn replace_binary(&self, contents: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = self.dir.path().join(".epmdx.new");
        std::fs::write(&tmp, contents)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, &self.exe)?;
        Ok(())
    }

    /// What the daemons logged (all generations share the file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for UpgradableDaemon {
    fn drop(&mut self) {
        kill_pid(self.pid);
    }
}
