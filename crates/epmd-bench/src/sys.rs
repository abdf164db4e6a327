//! Readings from `/proc` and the process's own resource limits.
//!
//! Everything here is Linux-only, which is where the benchmark runs.

use std::fs;

use anyhow::{bail, Context, Result};

/// Clock ticks per second, for the `utime`/`stime` fields of `/proc/PID/stat`.
pub fn clk_tck() -> u64 {
    test_support::bench::clk_tck()
}

/// User plus system CPU time of a process (all its threads), in seconds,
/// from fields 14 and 15 of `/proc/<pid>/stat`. `pid` may be `"self"`.
pub fn cpu_secs(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': index 0 is field 3 (state), so field N is index N - 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / clk_tck() as f64)
}

/// A `kB` field (such as `VmRSS` or `VmHWM`) of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: &str, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let num = v.split_whitespace().next().context("empty field")?;
            return Ok(num.parse()?);
        }
    }
    bail!("{field} not in {path}")
}

/// Number of open file descriptors of a process.
pub fn fd_count(pid: &str) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Number of threads of a process.
pub fn threads(pid: &str) -> Option<u64> {
    status_kib(pid, "Threads").ok()
}

/// A `kB` line of `/proc/meminfo` (such as `Slab`), in KiB.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

/// Machine-wide CPU counters from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysCpu {
    /// Ticks not spent idle or in iowait.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

impl SysCpu {
    /// Reads the counters now.
    pub fn now() -> Self {
        let Ok(text) = fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = text.lines().next() else {
            return Self::default();
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Self {
            busy: total - idle,
            total,
        }
    }

    /// Busy cores between `self` and a later reading (0..=nproc).
    pub fn busy_cores_since(&self, earlier: &Self, wall_secs: f64) -> f64 {
        if wall_secs <= 0.0 {
            return 0.0;
        }
        (self.busy.saturating_sub(earlier.busy)) as f64 / clk_tck() as f64 / wall_secs
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns `(soft, hard)`
/// after the change.
pub fn raise_nofile() -> Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// A one-line text file under `/proc/sys`, trimmed.
pub fn sysctl(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Online CPUs.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
