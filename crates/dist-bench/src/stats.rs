//! Small statistics and `/proc` helpers (shared with epmd-bench through
//! `test_support::bench`).

pub(crate) use test_support::bench::{loadavg, median, min_max as range, ProcStat};

/// CPU time and page faults of process `pid` so far, from `/proc/PID/stat`.
pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    test_support::bench::proc_stat(&pid.to_string())
}

/// A one-line description of the machine: cores, kernel, CPU model.
pub(crate) fn machine() -> (usize, String, String) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = test_support::bench::proc_line("/proc/sys/kernel/osrelease");
    (nproc, kernel, test_support::bench::cpu_model())
}

/// An empty report that starts with a warning in a debug build, and the
/// build's name (`debug` or `release`) for the machine line.
pub(crate) fn report_start() -> (String, &'static str) {
    if cfg!(debug_assertions) {
        let warn =
            "**Debug build: the Rust figures below mean nothing; run with `--release`.**\n\n";
        (warn.to_owned(), "debug")
    } else {
        (String::new(), "release")
    }
}
