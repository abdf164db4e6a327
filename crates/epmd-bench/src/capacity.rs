//! `capacity`: how many live registrations a daemon holds, and at what memory.
//!
//! Registers names one connection at a time until the daemon refuses one or
//! the maximum is reached, sampling the daemon's RSS along the way, then checks
//! that lookups and NAMES still work with the registry full.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use epmd_proto::legacy::{encode_port_please2, PortInfo};
use hdrhistogram::Histogram;
use test_support::{names_text, Daemon, Subject};

use crate::lookup::one_lookup_blocking;
use crate::register::{
    loopback, node_name, node_port, register_one, RegFailure, Registrations, REG_SOURCES,
};

/// Source address of the verification lookups.
const LOOKUP_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
use serde_json::json;

use crate::stats::us;
use crate::sys;

/// Options of `capacity`.
#[derive(Debug, Clone)]
pub struct CapacityOpts {
    /// Which implementation.
    pub subject: Subject,
    /// Its label.
    pub label: String,
    /// Extra daemon arguments.
    pub args: Vec<String>,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// Stop after this many registrations.
    pub max: usize,
    /// Per-operation timeout.
    pub timeout: Duration,
    /// Lookups to try at the end.
    pub verify_lookups: usize,
    /// File descriptors the generator may hold for registrations.
    pub fd_budget: usize,
    /// Registry size for the projection.
    pub project_to: usize,
}

/// What `capacity` measured.
#[derive(Debug, Clone)]
pub struct CapacityResult {
    /// The options used.
    pub opts: CapacityOpts,
    /// Registrations held at the end.
    pub reached: usize,
    /// Why it stopped before `max`, if it did.
    pub failure: Option<RegFailure>,
    /// Time to register them all.
    pub elapsed: Duration,
    /// RSS with no names, KiB.
    pub rss_before: u64,
    /// RSS with all names, KiB.
    pub rss_after: u64,
    /// Peak RSS (VmHWM), KiB.
    pub rss_peak: u64,
    /// (registrations, RSS KiB) along the way.
    pub checkpoints: Vec<(usize, u64)>,
    /// Kernel slab before and after, KiB (machine-wide, both socket ends).
    pub slab: (Option<u64>, Option<u64>),
    /// Daemon file descriptors at the end.
    pub daemon_fds: Option<usize>,
    /// Daemon threads.
    pub threads: u64,
    /// Lookups of registered names: successes, attempts.
    pub lookups_ok: (usize, usize),
    /// A miss lookup answered correctly.
    pub miss_ok: bool,
    /// Lookup latency over the verification lookups, µs (p50, p99).
    pub lookup_latency: (f64, f64),
    /// Lines in the NAMES reply (None if NAMES failed).
    pub names_lines: Option<usize>,
    /// Registrations found closed by the daemon after verification.
    pub dead_after: usize,
    /// Whether the daemon was still running at the end.
    pub alive_at_end: bool,
    /// A sample lookup failure.
    pub lookup_error: Option<String>,
}

impl CapacityResult {
    /// RSS growth per registration, bytes.
    pub fn bytes_per_reg(&self) -> f64 {
        if self.reached == 0 {
            return f64::NAN;
        }
        (self.rss_after as f64 - self.rss_before as f64) * 1024.0 / self.reached as f64
    }

    /// RSS projected at `project_to` registrations, MiB.
    pub fn projected_mib(&self) -> f64 {
        (self.rss_before as f64 * 1024.0 + self.bytes_per_reg() * self.opts.project_to as f64)
            / (1024.0 * 1024.0)
    }
}

fn lookup_blocking(port: u16, name: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    one_lookup_blocking(
        loopback(port),
        Some(LOOKUP_SOURCE),
        &encode_port_please2(name),
        &mut buf,
        timeout,
    )
    .map_err(|(_, e)| e.to_string())?;
    Ok(buf)
}

/// Runs the capacity measurement.
pub fn run(o: &CapacityOpts) -> Result<CapacityResult> {
    let args: Vec<&str> = o.args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = o
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut d = Daemon::start_with_env(o.subject, &args, &env)
        .with_context(|| format!("start {} ({})", o.label, o.subject.bin().display()))?;
    let pid = d.pid().context("daemon gone")?.to_string();
    eprintln!("[{}] pid {pid} port {}", o.label, d.port);
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = sys::status_kib(&pid, "VmRSS")?;
    let slab0 = sys::meminfo_kib("Slab");
    let addr = loopback(d.port);
    let step = (o.max / 10).max(1);
    let mut conns = Vec::with_capacity(o.max.min(o.fd_budget));
    let mut checkpoints = vec![(0, rss_before)];
    let mut failure = None;
    let t0 = Instant::now();
    for i in 0..o.max {
        if i >= o.fd_budget {
            failure = Some(RegFailure::GeneratorFds);
            break;
        }
        let src = Some(REG_SOURCES[i % REG_SOURCES.len()]);
        match register_one(addr, src, &node_name(i), node_port(i), o.timeout) {
            Ok(s) => conns.push(s),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if (i + 1) % step == 0 || [100, 250, 500, 1000].contains(&(i + 1)) {
            checkpoints.push((i + 1, sys::status_kib(&pid, "VmRSS").unwrap_or(0)));
        }
    }
    let elapsed = t0.elapsed();
    let reached = conns.len();
    eprintln!(
        "[{}] {} registrations in {:.2}s{}",
        o.label,
        reached,
        elapsed.as_secs_f64(),
        failure
            .as_ref()
            .map(|f| format!(" (stopped: {f})"))
            .unwrap_or_default()
    );
    // Let the daemon settle before reading memory.
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = sys::status_kib(&pid, "VmRSS")?;
    let rss_peak = sys::status_kib(&pid, "VmHWM").unwrap_or(0);
    let slab1 = sys::meminfo_kib("Slab");
    if checkpoints.last().map(|c| c.0) != Some(reached) {
        checkpoints.push((reached, rss_after));
    }

    // Lookups with the registry full.
    let mut ok = 0;
    let mut lookup_error = None;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let tries = if reached == 0 { 0 } else { o.verify_lookups };
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    for k in 0..tries {
        // Spread over the registry, including both ends.
        let i = match k {
            0 => 0,
            1 => reached - 1,
            _ => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % reached as u64) as usize
            }
        };
        let name = node_name(i).into_bytes();
        let t = Instant::now();
        match lookup_blocking(d.port, &name, o.timeout) {
            Ok(buf) => match PortInfo::decode_reply(&buf) {
                Ok(Some(info)) if info.name == name && info.port == node_port(i) => {
                    ok += 1;
                    let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                }
                _ => {
                    lookup_error.get_or_insert(format!("{}: reply {buf:?}", node_name(i)));
                }
            },
            Err(e) => {
                lookup_error.get_or_insert(format!("{}: {e}", node_name(i)));
            }
        }
    }
    let miss_ok = matches!(
        lookup_blocking(d.port, b"nosuchnode", o.timeout).as_deref(),
        Ok([119, 1])
    );
    let names_lines = names_text(d.port).map(|t| t.iter().filter(|&&b| b == b'\n').count());
    let regs = Registrations::from_conns(conns);
    let dead_after = regs.count_dead();
    let result = CapacityResult {
        opts: o.clone(),
        reached,
        failure,
        elapsed,
        rss_before,
        rss_after,
        rss_peak,
        checkpoints,
        slab: (slab0, slab1),
        daemon_fds: sys::fd_count(&pid),
        threads: sys::threads(&pid).unwrap_or(0),
        lookups_ok: (ok, tries),
        miss_ok,
        lookup_latency: if ok == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (
                hist.value_at_quantile(0.5) as f64,
                hist.value_at_quantile(0.99) as f64,
            )
        },
        names_lines,
        dead_after,
        alive_at_end: !d.has_exited(),
        lookup_error,
    };
    drop(regs);
    drop(d);
    Ok(result)
}

/// The Markdown report.
pub fn markdown(r: &CapacityResult) -> String {
    let mut m = String::new();
    let o = &r.opts;
    let _ = writeln!(m, "### Capacity: {} (max {})\n", o.label, o.max);
    let _ = writeln!(m, "| measure | value |");
    let _ = writeln!(m, "|---|---|");
    let _ = writeln!(m, "| live registrations reached | **{}** |", r.reached);
    let _ = writeln!(
        m,
        "| stopped because | {} |",
        r.failure
            .as_ref()
            .map_or_else(|| format!("reached --max {}", o.max), ToString::to_string)
    );
    let _ = writeln!(
        m,
        "| registration time | {:.2} s ({:.0} registrations/s, one at a time) |",
        r.elapsed.as_secs_f64(),
        r.reached as f64 / r.elapsed.as_secs_f64().max(1e-9)
    );
    let _ = writeln!(
        m,
        "| daemon RSS empty → full (peak) | {} → {} KiB ({} KiB) |",
        r.rss_before, r.rss_after, r.rss_peak
    );
    let _ = writeln!(
        m,
        "| RSS per registration | **{:.0} bytes** |",
        r.bytes_per_reg()
    );
    let _ = writeln!(
        m,
        "| projected RSS at {} registrations (RSS empty + per-registration growth × {}) | {:.1} MiB{} |",
        o.project_to,
        o.project_to,
        r.projected_mib(),
        match &r.failure {
            Some(f) if *f != RegFailure::GeneratorFds => format!(
                " (hypothetical: this daemon refused registration {})",
                r.reached + 1
            ),
            _ => String::new(),
        }
    );
    if let (Some(a), Some(b)) = r.slab {
        let _ = writeln!(
            m,
            "| kernel slab growth, machine-wide (both socket ends) | {} KiB ({:.0} bytes per registration) |",
            b as i64 - a as i64,
            (b as f64 - a as f64) * 1024.0 / (r.reached.max(1)) as f64
        );
    }
    let _ = writeln!(
        m,
        "| daemon fds / threads at the end | {} / {} |",
        r.daemon_fds.map_or_else(|| "?".into(), |v| v.to_string()),
        r.threads
    );
    let _ = writeln!(
        m,
        "| lookups of registered names at the end | {} of {} ok (p50 {}, p99 {}) |",
        r.lookups_ok.0,
        r.lookups_ok.1,
        us(r.lookup_latency.0),
        us(r.lookup_latency.1)
    );
    let _ = writeln!(
        m,
        "| miss lookup answered `119 1` | {} |",
        if r.miss_ok { "yes" } else { "**no**" }
    );
    let _ = writeln!(
        m,
        "| NAMES lines | {} |",
        r.names_lines
            .map_or_else(|| "**NAMES failed**".into(), |v| v.to_string())
    );
    let _ = writeln!(
        m,
        "| registrations closed by the daemon | {} |",
        r.dead_after
    );
    let _ = writeln!(
        m,
        "| daemon alive at the end | {} |",
        if r.alive_at_end { "yes" } else { "**no**" }
    );
    if let Some(e) = &r.lookup_error {
        let _ = writeln!(m, "| first lookup failure | {e} |");
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "RSS along the way:\n");
    let _ = writeln!(m, "| registrations | RSS KiB |");
    let _ = writeln!(m, "|---|---|");
    for (n, rss) in &r.checkpoints {
        let _ = writeln!(m, "| {n} | {rss} |");
    }
    let _ = writeln!(m);
    m
}

/// The JSON report (non-finite numbers become `null`).
pub fn json(r: &CapacityResult) -> String {
    let checkpoints: Vec<_> = r
        .checkpoints
        .iter()
        .map(|(n, rss)| json!({ "registrations": n, "rss_kib": rss }))
        .collect();
    json!({
        "command": "capacity",
        "subject": r.opts.label,
        "max": r.opts.max,
        "reached": r.reached,
        "stopped": r.failure.as_ref().map(ToString::to_string).unwrap_or_default(),
        "registration_s": r.elapsed.as_secs_f64(),
        "rss_before_kib": r.rss_before,
        "rss_after_kib": r.rss_after,
        "rss_peak_kib": r.rss_peak,
        "bytes_per_registration": r.bytes_per_reg(),
        "projected_mib": r.projected_mib(),
        "project_to": r.opts.project_to,
        "lookups_ok": r.lookups_ok.0,
        "lookups_tried": r.lookups_ok.1,
        "lookup_p50_us": r.lookup_latency.0,
        "lookup_p99_us": r.lookup_latency.1,
        "names_lines": r.names_lines,
        "registrations_lost": r.dead_after,
        "checkpoints": checkpoints,
    })
    .to_string()
}
