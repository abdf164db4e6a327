//! `epmd-loadgen`: bounded EPMD load generator. See `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use epmd_bench::lookup::Engine;
use epmd_bench::stats::parse_duration;
use epmd_bench::{capacity, compare, sys};
use test_support::Subject;

#[derive(Debug, Parser)]
#[command(
    name = "epmd-loadgen",
    about = "Bounded EPMD load generator: epmdx versus OTP's C epmd, on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Lookups/s and latency at several client counts and registry sizes,
    /// subjects side by side in interleaved rounds.
    Compare(CompareArgs),
    /// Registrations until the daemon refuses one (or --max), with RSS per
    /// registration and lookups checked at the end.
    Capacity(CapacityArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// OTP's C epmd.
    Otp,
    /// This project's epmdx.
    Epmdx,
}

impl Which {
    fn subject(self) -> Subject {
        match self {
            Self::Otp => Subject::Otp,
            Self::Epmdx => Subject::Epmdx,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::Epmdx => "epmdx",
        }
    }
}

#[derive(Debug, Args)]
struct Common {
    /// The epmdx binary [default: $EPMDX_BIN, else `epmdx` next to this
    /// program, else target/release/epmdx].
    #[arg(long)]
    epmdx: Option<PathBuf>,
    /// OTP's C epmd binary [default: $OTP_EPMD_BIN, else Debian's].
    #[arg(long)]
    otp: Option<PathBuf>,
    /// Extra argument for epmdx after `-port P` (repeatable).
    #[arg(long = "epmdx-arg", allow_hyphen_values = true)]
    epmdx_args: Vec<String>,
    /// Extra argument for the C epmd after `-port P` (repeatable).
    #[arg(long = "otp-arg", allow_hyphen_values = true)]
    otp_args: Vec<String>,
    /// Extra environment variable `KEY=VALUE` for epmdx (repeatable), e.g.
    /// `EPMDX_THREADS=1`.
    #[arg(long = "epmdx-env", value_parser = parse_env)]
    epmdx_env: Vec<(String, String)>,
    /// Extra environment variable `KEY=VALUE` for the C epmd (repeatable).
    #[arg(long = "otp-env", value_parser = parse_env)]
    otp_env: Vec<(String, String)>,
    /// Timeout of each lookup and registration.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// File descriptors kept free for everything but registrations.
    #[arg(long, default_value_t = 256)]
    fd_reserve: usize,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    /// Subjects, in the order of the first round (e.g. `otp,otp` measures
    /// the noise between two identical daemons).
    #[arg(long, value_delimiter = ',', default_value = "otp,epmdx")]
    subjects: Vec<Which>,
    /// Concurrent client counts.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Registry sizes (names held during the lookups).
    #[arg(long, value_delimiter = ',', default_value = "0,1000,18000")]
    names: Vec<usize>,
    /// Measured window for each subject, client count and round.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured run before each window.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Rounds; subjects alternate order each round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Upper bound on lookups started in one window.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Client source addresses 127.0.0.2 .. 127.0.0.(1+N), rotated per
    /// lookup; 0 lets the kernel pick (127.0.0.1). Registrations always come
    /// from 127.0.1.1-8.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// When a daemon refuses registrations, release this many so lookups can
    /// connect [default: largest client count + 8].
    #[arg(long)]
    headroom: Option<usize>,
    /// Generator runtime threads for the tokio engine (1 = current-thread
    /// runtime).
    #[arg(long, default_value_t = 1)]
    gen_threads: usize,
    /// How the generator drives its clients.
    #[arg(long, value_enum, default_value_t = EngineArg::Threads)]
    engine: EngineArg,
    /// Before each window, wait while other processes keep more than this
    /// many cores busy (a shared machine's builds and tests)...
    #[arg(long, default_value_t = 0.3)]
    quiet_threshold: f64,
    /// ...spending at most this much waiting over the whole run (0 = never).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    quiet_budget: Duration,
    /// Measure a window again when the rest of the machine kept more than
    /// this many cores busy during it (the attempt with the least other
    /// load counts)...
    #[arg(long, default_value_t = 0.5)]
    max_rest: f64,
    /// ...at most this many times per window...
    #[arg(long, default_value_t = 1)]
    retries: usize,
    /// ...and at most this many windows in the whole run.
    #[arg(long, default_value_t = 12)]
    max_redo: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineArg {
    /// One OS thread per client, blocking sockets.
    Threads,
    /// One tokio task per client, non-blocking sockets.
    Tokio,
}

#[derive(Debug, Args)]
struct CapacityArgs {
    #[command(flatten)]
    common: Common,
    /// The daemon to fill.
    #[arg(long)]
    subject: Which,
    /// Stop after this many registrations.
    #[arg(long, default_value_t = 18_000)]
    max: usize,
    /// Lookups of registered names tried with the registry full.
    #[arg(long, default_value_t = 1000)]
    verify_lookups: usize,
    /// Registry size for the memory projection.
    #[arg(long, default_value_t = 100_000)]
    project_to: usize,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Resolves the binaries and exports them for `test_support::Daemon`.
fn setup_bins(c: &Common, need_epmdx: bool) -> Result<()> {
    let epmdx = c
        .epmdx
        .clone()
        .or_else(|| std::env::var_os("EPMDX_BIN").map(PathBuf::from))
        .or_else(|| {
            let p = std::env::current_exe().ok()?.parent()?.join("epmdx");
            p.exists().then_some(p)
        })
        .unwrap_or_else(|| PathBuf::from("target/release/epmdx"));
    if need_epmdx && !epmdx.exists() {
        bail!(
            "epmdx binary {} not found: run `cargo build --release -p epmdx` or pass --epmdx",
            epmdx.display()
        );
    }
    let epmdx = std::fs::canonicalize(&epmdx).unwrap_or(epmdx);
    // Single-threaded here: no other thread reads the environment yet.
    std::env::set_var("EPMDX_BIN", &epmdx);
    if let Some(otp) = &c.otp {
        std::env::set_var("OTP_EPMD_BIN", otp);
    }
    Ok(())
}

fn environment(cmdline: &str, bins: &[Subject]) -> String {
    let otp_version = std::fs::read_dir("/usr/lib/erlang/releases")
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok)
                .find_map(|e| std::fs::read_to_string(e.path().join("OTP_VERSION")).ok())
        })
        .map_or_else(|| "?".into(), |s| s.trim().to_string());
    let cpu = test_support::bench::cpu_model();
    let mut s = format!(
        "Command: `{cmdline}`\n\nMachine: {} CPUs ({cpu}), kernel {}, OTP {otp_version}; \
         ip_local_port_range {}, tcp_tw_reuse {}, somaxconn {}, RLIMIT_NOFILE {}.\n\n",
        sys::nproc(),
        sys::sysctl("/proc/sys/kernel/osrelease"),
        sys::sysctl("/proc/sys/net/ipv4/ip_local_port_range"),
        sys::sysctl("/proc/sys/net/ipv4/tcp_tw_reuse"),
        sys::sysctl("/proc/sys/net/core/somaxconn"),
        sys::raise_nofile().map_or_else(|e| e.to_string(), |(s, _)| s.to_string()),
    );
    for b in bins {
        s.push_str(&format!("{b:?} binary: `{}`\n", b.bin().display()));
    }
    s.push('\n');
    s
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cmdline = std::env::args().collect::<Vec<_>>().join(" ");
    let (soft, hard) = sys::raise_nofile()?;
    eprintln!("RLIMIT_NOFILE soft {soft} hard {hard}");
    match cli.cmd {
        Cmd::Compare(a) => {
            if a.subjects.is_empty() || a.clients.is_empty() || a.names.is_empty() {
                bail!("--subjects, --clients and --names must not be empty");
            }
            if a.rounds == 0 || a.clients.contains(&0) {
                bail!("--rounds and every --clients value must be at least 1");
            }
            let max_clients = a.clients.iter().copied().max().unwrap_or(1);
            if max_clients > 4096 {
                bail!("at most 4096 clients");
            }
            setup_bins(&a.common, a.subjects.contains(&Which::Epmdx))?;
            let mut subjects = Vec::new();
            for w in &a.subjects {
                let count = subjects
                    .iter()
                    .filter(|s: &&compare::SubjectSpec| s.kind == w.subject())
                    .count();
                let label = if count == 0 {
                    w.name().to_string()
                } else {
                    format!("{}#{}", w.name(), count + 1)
                };
                subjects.push(compare::SubjectSpec {
                    kind: w.subject(),
                    label,
                    args: match w {
                        Which::Otp => a.common.otp_args.clone(),
                        Which::Epmdx => a.common.epmdx_args.clone(),
                    },
                    env: match w {
                        Which::Otp => a.common.otp_env.clone(),
                        Which::Epmdx => a.common.epmdx_env.clone(),
                    },
                });
            }
            let sources = epmd_bench::net::lookup_sources(a.sources);
            let fd_budget = (soft as usize).saturating_sub(a.common.fd_reserve + 2 * max_clients);
            let opts = compare::CompareOpts {
                subjects,
                clients: a.clients.clone(),
                names: a.names.clone(),
                duration: a.duration,
                warmup: a.warmup,
                rounds: a.rounds,
                timeout: a.common.timeout,
                max_requests: a.max_requests,
                sources,
                headroom: a.headroom,
                gen_threads: a.gen_threads.max(1),
                engine: match a.engine {
                    EngineArg::Threads => Engine::Threads,
                    EngineArg::Tokio => Engine::Tokio,
                },
                fd_budget,
                quiet_threshold: a.quiet_threshold,
                quiet_budget: a.quiet_budget,
                max_rest: a.max_rest,
                retries: a.retries,
                max_redo: a.max_redo,
            };
            let windows = a.names.len() * a.clients.len() * a.rounds * opts.subjects.len();
            eprintln!(
                "{windows} windows of {:.1}s (+{:.1}s warm-up): about {:.0}s of load plus registration; \
                 at most {:.0}s more for quiet waits and {:.0}s for redone windows",
                a.duration.as_secs_f64(),
                a.warmup.as_secs_f64(),
                windows as f64 * (a.duration + a.warmup).as_secs_f64(),
                a.quiet_budget.as_secs_f64(),
                (windows * a.retries).min(a.max_redo) as f64 * (a.duration + a.warmup).as_secs_f64()
            );
            let bins: Vec<Subject> = {
                let mut v: Vec<Subject> = opts.subjects.iter().map(|s| s.kind).collect();
                v.dedup();
                v
            };
            let r = compare::run(&opts)?;
            print!("{}", environment(&cmdline, &bins));
            print!("{}", compare::markdown(&r));
            if let Some(p) = &a.common.json {
                std::fs::write(p, compare::json(&r))?;
            }
        }
        Cmd::Capacity(a) => {
            setup_bins(&a.common, a.subject == Which::Epmdx)?;
            let fd_budget = (soft as usize).saturating_sub(a.common.fd_reserve);
            let opts = capacity::CapacityOpts {
                subject: a.subject.subject(),
                label: a.subject.name().to_string(),
                args: match a.subject {
                    Which::Otp => a.common.otp_args.clone(),
                    Which::Epmdx => a.common.epmdx_args.clone(),
                },
                env: match a.subject {
                    Which::Otp => a.common.otp_env.clone(),
                    Which::Epmdx => a.common.epmdx_env.clone(),
                },
                max: a.max,
                timeout: a.common.timeout,
                verify_lookups: a.verify_lookups,
                fd_budget,
                project_to: a.project_to,
            };
            let r = capacity::run(&opts)?;
            print!("{}", environment(&cmdline, &[opts.subject]));
            print!("{}", capacity::markdown(&r));
            if let Some(p) = &a.common.json {
                std::fs::write(p, capacity::json(&r))?;
            }
        }
    }
    Ok(())
}
