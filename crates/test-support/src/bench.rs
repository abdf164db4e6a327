//! What both benchmarks measure with: small statistics and `/proc`
//! readings. Linux-only, which is where the benchmarks run.

use std::time::Duration;

/// The median of `v` (mean of the middle two for an even count); NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Smallest and largest of `v` (`(inf, -inf)` if empty).
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Clock ticks per second, for the `utime`/`stime` fields of `/proc/PID/stat`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// What `/proc/PID/stat` says about a process so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// CPU time, user + system, all threads; one clock tick (usually
    /// 10 ms) of resolution.
    pub cpu: Duration,
    /// Minor page faults.
    pub minflt: u64,
}

impl ProcStat {
    /// The difference `self - earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            minflt: self.minflt.saturating_sub(earlier.minflt),
        }
    }
}

/// CPU time and page faults of process `pid` (a number or `self`) so far,
/// from `/proc/PID/stat`.
pub fn proc_stat(pid: &str) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields restart after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is index 0: minflt (10) is 7, utime (14) 11, stime (15) 12.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let minflt = f.get(7)?.parse().ok()?;
    Some(ProcStat {
        cpu: Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / clk_tck()),
        minflt,
    })
}

/// The first line of a `/proc` (or `/sys`) file, trimmed; `?` if unreadable.
pub fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "?".into())
}

/// The CPU model from `/proc/cpuinfo`; `?` if not found.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, -1.0, 5.0]), (-1.0, 5.0));
    }

    #[test]
    fn own_proc_readings() {
        let a = proc_stat("self").expect("/proc/self/stat");
        let b = proc_stat("self").expect("/proc/self/stat");
        assert!(b.since(a).cpu <= b.cpu);
        assert_ne!(proc_line("/proc/sys/kernel/osrelease"), "?");
        assert_eq!(loadavg().split(' ').count(), 3);
    }
}
