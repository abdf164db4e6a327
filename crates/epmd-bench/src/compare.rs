//! `compare`: lookups per second and latency, subjects side by side.
//!
//! For each registry size the daemons are started fresh, all at once, each on
//! its own private port. Then for each client count the subjects take turns,
//! round after round (A B, B A, A B, ...), so slow drifts of a shared machine
//! hit both alike. The report gives the median over rounds.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use test_support::{Daemon, Subject};

use crate::lookup::{queries, run_window, Engine, Workload, ERR_NAMES};
use crate::register::{loopback, FillReport, RegFailure, Registrations};
use serde_json::json;

use crate::stats::{median, min_max, ratio, si, us};
use crate::sys::{self, SysCpu};

/// One daemon under test and how to start it.
#[derive(Debug, Clone)]
pub struct SubjectSpec {
    /// Which implementation.
    pub kind: Subject,
    /// Label in the report (`otp`, `epmdx`, `otp#2`, ...).
    pub label: String,
    /// Extra daemon arguments after `-port P`.
    pub args: Vec<String>,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
}

/// Options of `compare`.
#[derive(Debug, Clone)]
pub struct CompareOpts {
    /// The daemons, in the order of the first round.
    pub subjects: Vec<SubjectSpec>,
    /// Concurrent client counts.
    pub clients: Vec<usize>,
    /// Registry sizes.
    pub names: Vec<usize>,
    /// Measured window per (subject, clients, round).
    pub duration: Duration,
    /// Unmeasured run before each window.
    pub warmup: Duration,
    /// Rounds per (names, clients).
    pub rounds: usize,
    /// Per-lookup timeout.
    pub timeout: Duration,
    /// Bound on lookups per window.
    pub max_requests: u64,
    /// Client source addresses (empty: kernel's choice).
    pub sources: Vec<Ipv4Addr>,
    /// Registrations kept free for lookups when a daemon refuses names.
    pub headroom: Option<usize>,
    /// Generator runtime threads (tokio engine).
    pub gen_threads: usize,
    /// How clients are driven.
    pub engine: Engine,
    /// File descriptors the generator may use for registrations.
    pub fd_budget: usize,
    /// Before each window, wait while other processes keep more than this
    /// many cores busy...
    pub quiet_threshold: f64,
    /// ...spending at most this much waiting over the whole run.
    pub quiet_budget: Duration,
    /// A window during which other processes kept more than this many
    /// cores busy is measured again (of the attempts, the one with the
    /// least other load counts)...
    pub max_rest: f64,
    /// ...at most this many times...
    pub retries: usize,
    /// ...and at most this many windows in the whole run.
    pub max_redo: usize,
}

/// One measured window.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Successful lookups per second.
    pub rate: f64,
    /// Median latency, µs.
    pub p50: f64,
    /// 99th percentile latency, µs.
    pub p99: f64,
    /// 99.9th percentile latency, µs.
    pub p999: f64,
    /// Successful lookups.
    pub ok: u64,
    /// Failed lookups by kind.
    pub errors: [u64; 5],
    /// Daemon CPU seconds (user + system) during the window.
    pub daemon_cpu: f64,
    /// Generator CPU seconds during the window.
    pub gen_cpu: f64,
    /// Machine-wide busy cores during the window.
    pub busy_cores: f64,
    /// Window wall time, seconds.
    pub secs: f64,
}

impl Round {
    /// Cores kept busy by everything but the daemon and the generator.
    pub fn rest_cores(&self) -> f64 {
        if self.secs <= 0.0 {
            return 0.0;
        }
        (self.busy_cores - (self.daemon_cpu + self.gen_cpu) / self.secs).max(0.0)
    }

    /// Daemon CPU per successful lookup, µs.
    pub fn cpu_per_lookup_us(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.daemon_cpu * 1e6 / self.ok as f64
        }
    }
}

/// What one subject held for one registry size.
#[derive(Debug, Clone)]
pub struct Held {
    /// The subject's label.
    pub label: String,
    /// The registration outcome.
    pub fill: FillReport,
    /// Names held during the measurement (after any headroom release).
    pub held: usize,
    /// RSS before registering, KiB.
    pub rss_before: u64,
    /// RSS with the names held, KiB.
    pub rss_after: u64,
    /// Daemon threads.
    pub threads: u64,
    /// Registrations found closed by the daemon after the workload.
    pub dead_after: usize,
    /// Whether the daemon was still running at the end.
    pub alive_at_end: bool,
}

/// The measurements of one (names, clients, subject).
#[derive(Debug, Clone)]
pub struct Cell {
    /// Registry size asked for.
    pub names: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Index into the subjects.
    pub subject: usize,
    /// One entry per round.
    pub rounds: Vec<Round>,
}

impl Cell {
    fn med(&self, f: impl Fn(&Round) -> f64) -> f64 {
        median(&self.rounds.iter().map(f).collect::<Vec<_>>())
    }
}

/// Everything `compare` measured.
#[derive(Debug, Clone)]
pub struct CompareResult {
    /// The options used.
    pub opts: CompareOpts,
    /// Per registry size, what each subject held.
    pub held: Vec<(usize, Vec<Held>)>,
    /// All cells.
    pub cells: Vec<Cell>,
    /// Error samples seen, for the notes.
    pub error_samples: Vec<String>,
    /// Time spent waiting for other load on the machine to pass.
    pub quiet_waited: Duration,
    /// Windows measured again because other load exceeded `max_rest`.
    pub retried: usize,
}

/// Waits until the machine's other load falls to `threshold` busy cores
/// (sampled over 200 ms, with the daemons idle), or `max` passes. Returns the
/// time spent.
fn wait_quiet(threshold: f64, max: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let a = SysCpu::now();
        std::thread::sleep(Duration::from_millis(200));
        let b = SysCpu::now();
        if b.busy_cores_since(&a, 0.2) <= threshold || t0.elapsed() >= max {
            return t0.elapsed();
        }
    }
}

fn pid_str(d: &Daemon) -> Result<String> {
    Ok(d.pid().context("daemon not running")?.to_string())
}

/// Runs the whole comparison.
pub fn run(opts: &CompareOpts) -> Result<CompareResult> {
    let rt = if opts.gen_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.gen_threads)
            .enable_all()
            .build()?
    };
    let max_clients = opts.clients.iter().copied().max().unwrap_or(1);
    let mut result = CompareResult {
        opts: opts.clone(),
        held: Vec::new(),
        cells: Vec::new(),
        error_samples: Vec::new(),
        quiet_waited: Duration::ZERO,
        retried: 0,
    };
    let sources = Arc::new(opts.sources.clone());
    let mut quiet_left = opts.quiet_budget;
    for &n in &opts.names {
        // Fresh daemons for each registry size.
        let mut daemons = Vec::new();
        for s in &opts.subjects {
            let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = s
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let d = Daemon::start_with_env(s.kind, &args, &env)
                .with_context(|| format!("start {} ({})", s.label, s.kind.bin().display()))?;
            eprintln!("[{}] pid {} port {}", s.label, d.pid().unwrap_or(0), d.port);
            daemons.push(d);
        }
        let mut held = Vec::new();
        let mut regs = Vec::new();
        let mut budget = opts.fd_budget;
        for (s, d) in opts.subjects.iter().zip(&daemons) {
            let pid = pid_str(d)?;
            let rss_before = sys::status_kib(&pid, "VmRSS")?;
            let (mut r, fill) = Registrations::fill(loopback(d.port), n, budget, opts.timeout);
            let mut keep = r.len();
            if fill
                .failure
                .as_ref()
                .is_some_and(|f| *f != RegFailure::GeneratorFds)
            {
                let headroom = opts.headroom.unwrap_or(max_clients + 8);
                keep = keep.saturating_sub(headroom);
                r.truncate(keep);
                // Let the daemon notice the closed sockets.
                std::thread::sleep(Duration::from_millis(300));
            }
            budget = budget.saturating_sub(r.len());
            eprintln!(
                "[{}] registered {}/{} in {:.2}s{}; holding {}",
                s.label,
                fill.held,
                n,
                fill.elapsed.as_secs_f64(),
                fill.failure
                    .as_ref()
                    .map(|f| format!(" (stopped: {f})"))
                    .unwrap_or_default(),
                keep
            );
            let rss_after = sys::status_kib(&pid, "VmRSS")?;
            held.push(Held {
                label: s.label.clone(),
                fill,
                held: keep,
                rss_before,
                rss_after,
                threads: sys::threads(&pid).unwrap_or(0),
                dead_after: 0,
                alive_at_end: true,
            });
            regs.push(r);
        }
        let qs: Vec<_> = regs.iter().map(|r| queries(r.len())).collect();

        for &clients in &opts.clients {
            let mut cells: Vec<Cell> = (0..opts.subjects.len())
                .map(|i| Cell {
                    names: n,
                    clients,
                    subject: i,
                    rounds: Vec::new(),
                })
                .collect();
            for round in 0..opts.rounds {
                let mut order: Vec<usize> = (0..opts.subjects.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for i in order {
                    let d = &daemons[i];
                    let pid = pid_str(d)?;
                    // Of a window and its redos, the one measured with the
                    // least other load counts: a redo can be noisier than
                    // the window it replaces.
                    let mut kept: Option<Round> = None;
                    for attempt in 0..=opts.retries {
                        let r = measure_window(
                            &rt,
                            opts,
                            &pid,
                            Workload {
                                addr: loopback(d.port),
                                clients,
                                duration: opts.duration,
                                timeout: opts.timeout,
                                max_requests: opts.max_requests,
                                sources: sources.clone(),
                                queries: qs[i].clone(),
                            },
                            &mut quiet_left,
                            &mut result,
                            &format!("{} names={n} clients={clients}", opts.subjects[i].label),
                        )?;
                        let noisy = r.rest_cores() > opts.max_rest;
                        let again =
                            noisy && attempt < opts.retries && result.retried < opts.max_redo;
                        eprintln!(
                            "  names={n:>5} clients={clients:>2} round {} {:<8} {:>9}/s p50 {:>8} p99 {:>8} cpu {:>5.1} µs/lookup  rest {:.2} cores  errors {}{}",
                            round + 1,
                            opts.subjects[i].label,
                            si(r.rate),
                            us(r.p50),
                            us(r.p99),
                            r.cpu_per_lookup_us(),
                            r.rest_cores(),
                            r.errors.iter().sum::<u64>(),
                            if again { "  (noisy: again)" } else { "" }
                        );
                        if kept
                            .as_ref()
                            .is_none_or(|k| r.rest_cores() < k.rest_cores())
                        {
                            kept = Some(r);
                        }
                        if !again {
                            break;
                        }
                        result.retried += 1;
                    }
                    cells[i].rounds.extend(kept);
                }
            }
            result.cells.extend(cells);
        }
        for ((h, r), d) in held.iter_mut().zip(&regs).zip(daemons.iter_mut()) {
            h.dead_after = r.count_dead();
            h.alive_at_end = !d.has_exited();
        }
        drop(regs);
        drop(daemons);
        result.held.push((n, held));
    }
    Ok(result)
}

/// Waits for quiet (within the budget), warms up, then measures one window.
#[allow(clippy::too_many_arguments)]
fn measure_window(
    rt: &tokio::runtime::Runtime,
    opts: &CompareOpts,
    pid: &str,
    mut w: Workload,
    quiet_left: &mut Duration,
    result: &mut CompareResult,
    what: &str,
) -> Result<Round> {
    if *quiet_left > Duration::ZERO {
        let waited = wait_quiet(opts.quiet_threshold, *quiet_left);
        *quiet_left = quiet_left.saturating_sub(waited);
        result.quiet_waited += waited;
    }
    if !opts.warmup.is_zero() {
        let measured = w.duration;
        w.duration = opts.warmup;
        run_window(rt, opts.engine, &w);
        w.duration = measured;
    }
    let cpu0 = sys::cpu_secs(pid)?;
    let gen0 = sys::cpu_secs("self")?;
    let sys0 = SysCpu::now();
    let wr = run_window(rt, opts.engine, &w);
    let cpu1 = sys::cpu_secs(pid)?;
    let gen1 = sys::cpu_secs("self")?;
    let sys1 = SysCpu::now();
    let secs = wr.elapsed.as_secs_f64();
    for (k, s) in wr.error_samples.iter().enumerate() {
        if let Some(s) = s {
            result.error_samples.push(format!(
                "{what}: {} ({}x), e.g. {s}",
                ERR_NAMES[k], wr.errors[k]
            ));
        }
    }
    Ok(Round {
        rate: wr.rate(),
        p50: wr.hist.value_at_quantile(0.50) as f64,
        p99: wr.hist.value_at_quantile(0.99) as f64,
        p999: wr.hist.value_at_quantile(0.999) as f64,
        ok: wr.ok,
        errors: wr.errors,
        daemon_cpu: cpu1 - cpu0,
        gen_cpu: gen1 - gen0,
        busy_cores: sys1.busy_cores_since(&sys0, secs),
        secs,
    })
}

/// The Markdown report.
pub fn markdown(r: &CompareResult) -> String {
    let o = &r.opts;
    let mut m = String::new();
    let labels: Vec<&str> = o.subjects.iter().map(|s| s.label.as_str()).collect();
    let _ = writeln!(
        m,
        "Settings: {} s windows after {} ms warm-up, {} rounds (order alternates), \
         per-lookup timeout {} ms, generator engine {}, registrations from 127.0.1.1-8, \
         lookups from {}. Before each window the generator waited for the rest of the machine \
         to fall below {} busy cores (at most {:.0} s in all; {:.1} s spent); a window during which \
         the rest of the machine kept more than {} cores busy was measured again, up to {} time(s) \
         and {} windows in all ({} windows redone; of a window and its redo, the one with less \
         other load counts).\n",
        o.duration.as_secs_f64(),
        o.warmup.as_millis(),
        o.rounds,
        o.timeout.as_millis(),
        match o.engine {
            Engine::Threads => "`threads` (one blocking OS thread per client)".to_string(),
            Engine::Tokio => format!("`tokio` ({} runtime thread(s))", o.gen_threads),
        },
        if o.sources.is_empty() {
            "kernel's choice (127.0.0.1)".to_string()
        } else {
            format!(
                "{} ({} addresses)",
                o.sources
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                o.sources.len()
            )
        },
        o.quiet_threshold,
        o.quiet_budget.as_secs_f64(),
        r.quiet_waited.as_secs_f64(),
        o.max_rest,
        o.retries,
        o.max_redo,
        r.retried,
    );
    for (n, held) in &r.held {
        let _ = writeln!(m, "### Registry: {n} names requested\n");
        let _ = writeln!(
            m,
            "| subject | registered | held during lookups | registration time | stopped because | RSS before → with names | threads | registrations lost | daemon alive at end |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|");
        for h in held {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:.2} s | {} | {} → {} KiB | {} | {} | {} |",
                h.label,
                h.fill.held,
                h.held,
                h.fill.elapsed.as_secs_f64(),
                h.fill
                    .failure
                    .as_ref()
                    .map_or_else(|| "–".to_string(), ToString::to_string),
                h.rss_before,
                h.rss_after,
                h.threads,
                h.dead_after,
                if h.alive_at_end { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(m);
        let _ = writeln!(
            m,
            "| clients | subject | lookups/s (median) | min–max over rounds | p50 | p99 | p99.9 | daemon CPU per lookup | daemon CPU (cores) | generator CPU (cores) | rest of machine (cores of {}) | failed lookups |",
            sys::nproc()
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &c in &o.clients {
            let cells: Vec<&Cell> = r
                .cells
                .iter()
                .filter(|x| x.names == *n && x.clients == c)
                .collect();
            for cell in &cells {
                let rates: Vec<f64> = cell.rounds.iter().map(|x| x.rate).collect();
                let (lo, hi) = min_max(&rates);
                let errs: u64 = cell
                    .rounds
                    .iter()
                    .map(|x| x.errors.iter().sum::<u64>())
                    .sum();
                let oks: u64 = cell.rounds.iter().map(|x| x.ok).sum();
                let _ = writeln!(
                    m,
                    "| {c} | {} | {} | {}–{} | {} | {} | {} | {:.1} µs | {:.2} | {:.2} | {:.2} | {} |",
                    labels[cell.subject],
                    si(cell.med(|x| x.rate)),
                    si(lo),
                    si(hi),
                    us(cell.med(|x| x.p50)),
                    us(cell.med(|x| x.p99)),
                    us(cell.med(|x| x.p999)),
                    cell.med(Round::cpu_per_lookup_us),
                    cell.med(|x| x.daemon_cpu / x.secs),
                    cell.med(|x| x.gen_cpu / x.secs),
                    cell.med(Round::rest_cores),
                    if errs == 0 {
                        "0".to_string()
                    } else {
                        format!("**{errs}** of {}", errs + oks)
                    }
                );
            }
            if let Some(base) = cells.first() {
                for other in cells.iter().skip(1) {
                    let _ = writeln!(
                        m,
                        "| {c} | **{} / {}** | **{}** | | {} | **{}** | {} | {} | | | | |",
                        labels[other.subject],
                        labels[base.subject],
                        ratio(other.med(|x| x.rate), base.med(|x| x.rate)),
                        ratio(other.med(|x| x.p50), base.med(|x| x.p50)),
                        ratio(other.med(|x| x.p99), base.med(|x| x.p99)),
                        ratio(other.med(|x| x.p999), base.med(|x| x.p999)),
                        ratio(
                            other.med(Round::cpu_per_lookup_us),
                            base.med(Round::cpu_per_lookup_us)
                        ),
                    );
                }
            }
        }
        let _ = writeln!(m);
    }
    if o.names.len() > 1 {
        let _ = writeln!(
            m,
            "### Registry growth: median lookups/s and daemon CPU per lookup by names held\n"
        );
        let mut hdr = String::from("| subject | clients |");
        let mut sep = String::from("|---|---|");
        for (n, held) in &r.held {
            let max_held = held.iter().map(|h| h.held).max().unwrap_or(0);
            let _ = write!(
                hdr,
                " {n} names{} |",
                if max_held < *n { " (see held)" } else { "" }
            );
            sep.push_str("---|");
        }
        let _ = writeln!(m, "{hdr}\n{sep}");
        for (i, label) in labels.iter().enumerate() {
            for &c in &o.clients {
                let _ = write!(m, "| {label} | {c} |");
                for (n, held) in &r.held {
                    let h = held[i].held;
                    match r
                        .cells
                        .iter()
                        .find(|x| x.names == *n && x.clients == c && x.subject == i)
                    {
                        Some(cell) => {
                            let _ = write!(
                                m,
                                " {}/s, {:.1} µs{} |",
                                si(cell.med(|x| x.rate)),
                                cell.med(Round::cpu_per_lookup_us),
                                if h == *n {
                                    String::new()
                                } else {
                                    format!(" ({h} held)")
                                }
                            );
                        }
                        None => m.push_str(" – |"),
                    }
                }
                m.push('\n');
            }
        }
        let _ = writeln!(m);
    }
    if !r.error_samples.is_empty() {
        let _ = writeln!(
            m,
            "Failed lookups (first example of each kind per window):\n"
        );
        let mut seen = std::collections::BTreeSet::new();
        for s in &r.error_samples {
            if seen.insert(s.clone()) {
                let _ = writeln!(m, "* {s}");
            }
        }
        let _ = writeln!(m);
    }
    m
}

/// The JSON report (non-finite numbers become `null`).
pub fn json(r: &CompareResult) -> String {
    let registries: Vec<_> = r
        .held
        .iter()
        .map(|(n, held)| {
            let subjects: Vec<_> = held
                .iter()
                .map(|h| {
                    json!({
                        "subject": h.label,
                        "registered": h.fill.held,
                        "held": h.held,
                        "registration_s": h.fill.elapsed.as_secs_f64(),
                        "stopped": h.fill.failure.as_ref().map(ToString::to_string).unwrap_or_default(),
                        "rss_before_kib": h.rss_before,
                        "rss_after_kib": h.rss_after,
                        "registrations_lost": h.dead_after,
                        "alive_at_end": u8::from(h.alive_at_end),
                    })
                })
                .collect();
            json!({ "names_requested": n, "subjects": subjects })
        })
        .collect();
    let cells: Vec<_> = r
        .cells
        .iter()
        .map(|c| {
            let rounds: Vec<_> = c
                .rounds
                .iter()
                .map(|x| {
                    json!({
                        "lookups_per_s": x.rate,
                        "ok": x.ok,
                        "failed": x.errors.iter().sum::<u64>(),
                        "p50_us": x.p50,
                        "p99_us": x.p99,
                        "p999_us": x.p999,
                        "daemon_cpu_s": x.daemon_cpu,
                        "generator_cpu_s": x.gen_cpu,
                        "busy_cores": x.busy_cores,
                        "rest_cores": x.rest_cores(),
                        "secs": x.secs,
                    })
                })
                .collect();
            json!({
                "names": c.names,
                "clients": c.clients,
                "subject": r.opts.subjects[c.subject].label,
                "median_lookups_per_s": c.med(|x| x.rate),
                "median_p50_us": c.med(|x| x.p50),
                "median_p99_us": c.med(|x| x.p99),
                "median_daemon_cpu_us_per_lookup": c.med(Round::cpu_per_lookup_us),
                "rounds": rounds,
            })
        })
        .collect();
    json!({
        "command": "compare",
        "duration_s": r.opts.duration.as_secs_f64(),
        "rounds": r.opts.rounds,
        "gen_threads": r.opts.gen_threads,
        "nproc": sys::nproc(),
        "quiet_waited_s": r.quiet_waited.as_secs_f64(),
        "windows_redone": r.retried,
        "registries": registries,
        "cells": cells,
    })
    .to_string()
}
