//! `dist-bench`: a bounded Erlang-distribution benchmark, erldist against
//! Erlang/OTP, all four directions in one run.
//!
//! Topology (two OS processes per measurement, as two Erlang VMs would be):
//!
//! | role     | Rust                                       | Erlang                    |
//! |----------|--------------------------------------------|---------------------------|
//! | sender   | node `ra` in this process                  | `erl -sname ea@localhost` |
//! | receiver | node `rb` in a child process (`dist-bench sink`) | `erl -sname eb@localhost` |
//!
//! so Rust→Erlang is `ra`→`eb`, Erlang→Rust `ea`→`rb`, Rust→Rust `ra`→`rb`
//! and Erlang→Erlang `ea`→`eb`. Every node uses a private epmdx daemon
//! (never port 4369); the Erlang loops are `src/distbench.erl`, compiled
//! with `erlc` into a temporary directory at run time.
//!
//! Throughput: the sender sends `{go, self(), N}` and then N binaries to
//! the registered `sink` on the receiver, which counts them and replies
//! `done`; the time is from the first send to `done`. Each (direction,
//! payload) is measured `--reps` times, interleaved, and reported as the
//! median and the min–max.
//!
//! Handshake: Rust→X times `Node::connect` of a freshly started node;
//! Erlang→X times `net_kernel:connect_node/1` in `ea` after
//! `erlang:disconnect_node/1`. Both include the EPMD lookup. The first
//! sample of each direction (cold: code loading, first DNS lookup) is
//! reported apart and left out of the median.
//!
//! `dist-bench transports` (`src/transports.rs`) measures the same per
//! transport — `inet_tcp`, `inet_tls`, `uds` — Rust → Rust and Rust →
//! Erlang, in one run.

mod raw_tcp;
mod rust_side;
mod stats;
mod transports;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use erldist::Node;
use test_support::erl::{ErlNode, EvalResult, TempDir};
use test_support::{Daemon, Subject};

const ERL_MODULE: &str = include_str!("distbench.erl");
const SEND_TIMEOUT: Duration = Duration::from_secs(300);
const RUST_SINK_NODE: &str = "rb@localhost";

/// Bounded distribution benchmark: erldist vs Erlang/OTP.
#[derive(Debug, Parser)]
#[command(name = "dist-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Repetitions of each throughput measurement (interleaved).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Handshake repetitions per direction (after one cold sample).
    #[arg(long, default_value_t = 5)]
    handshake_reps: usize,
    /// Messages per small-payload measurement.
    #[arg(long, default_value_t = 800_000)]
    small_n: u64,
    /// Messages per large-payload measurement.
    #[arg(long, default_value_t = 40_000)]
    large_n: u64,
    /// Directions to run (for profiling one path).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "r2e,e2r,r2r,e2e,tcp"
    )]
    directions: Vec<Dir>,
    #[command(flatten)]
    common: Common,
    /// Extra argument for both `erl` nodes (repeatable), e.g. `--erl-arg=+zdbbl --erl-arg=8192`.
    #[arg(long, allow_hyphen_values = true)]
    erl_arg: Vec<String>,
}

/// Options both benchmark modes take.
#[derive(Debug, clap::Args)]
pub(crate) struct Common {
    /// Size of the small payload, bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) small_size: usize,
    /// Size of the large payload, bytes.
    #[arg(long, default_value_t = 65_536)]
    pub(crate) large_size: usize,
    /// Skip the handshake measurements.
    #[arg(long)]
    pub(crate) no_handshake: bool,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Internal: the Rust receiver node, run as a child process.
    #[command(hide = true)]
    Sink {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cookie: String,
        #[arg(long)]
        epmd_port: u16,
    },
    /// Internal: the raw TCP (or, with `--uds`, Unix-socket) receiver, run
    /// as a child process.
    #[command(hide = true)]
    TcpSink {
        #[arg(long)]
        uds: Option<PathBuf>,
    },
    /// Per-transport benchmark: inet_tcp, inet_tls and uds, Rust → Rust
    /// and Rust → Erlang, handshake and throughput, in one run.
    Transports(transports::Args),
    /// Internal: the Rust receivers of `transports`, run as a child process.
    #[command(hide = true)]
    TransportSink {
        #[arg(long)]
        name: Vec<String>,
        #[arg(long)]
        cookie: String,
        #[arg(long)]
        epmd_port: u16,
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        uds_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Dir {
    /// Rust → Erlang.
    R2e,
    /// Erlang → Rust.
    E2r,
    /// Rust → Rust.
    R2r,
    /// Erlang → Erlang.
    E2e,
    /// Raw TCP reference: Rust, one write() per message, no encoding.
    Tcp,
}

impl Dir {
    fn label(self) -> &'static str {
        match self {
            Self::R2e => "Rust → Erlang",
            Self::E2r => "Erlang → Rust",
            Self::R2r => "Rust → Rust",
            Self::E2e => "Erlang → Erlang",
            Self::Tcp => "raw TCP (reference)",
        }
    }
    fn rust_sender(self) -> bool {
        matches!(self, Self::R2e | Self::R2r | Self::Tcp)
    }
    fn rust_receiver(self) -> bool {
        matches!(self, Self::E2r | Self::R2r)
    }
    fn short(self) -> &'static str {
        match self {
            Self::R2e => "r2e",
            Self::E2r => "e2r",
            Self::R2r => "r2r",
            Self::E2e => "e2e",
            Self::Tcp => "tcp",
        }
    }
}

/// One throughput measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) secs: f64,
    pub(crate) sender: Option<stats::ProcStat>,
    pub(crate) receiver: Option<stats::ProcStat>,
}

/// Logs one throughput sample to stderr: rate, MB/s, and CPU and faults per
/// message on each side.
pub(crate) fn log_sample(rep: usize, label: &str, width: usize, size: usize, n: u64, s: &Sample) {
    let per = |p: Option<stats::ProcStat>| {
        p.map_or_else(
            || "?".to_owned(),
            |p| {
                format!(
                    "{:.2} µs {:.2} faults",
                    p.cpu.as_secs_f64() * 1e6 / n as f64,
                    p.minflt as f64 / n as f64
                )
            },
        )
    };
    eprintln!(
        "rep {rep} {label:<width$} {:>8} × {n}: {:.3} s, {} msg/s, {} MB/s; per msg: \
         sender {}, receiver {}; loadavg {}",
        fmt_size(size),
        s.secs,
        fmt_rate(n as f64 / s.secs),
        fmt_mb(n as f64 * size as f64 / s.secs / 1e6),
        per(s.sender),
        per(s.receiver),
        stats::loadavg()
    );
}

/// The Rust receiver in its own process; killed by PID on drop.
#[derive(Debug)]
struct SinkChild {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl SinkChild {
    /// Starts `dist-bench ARGS` and waits for its `ready ...` line; returns
    /// the child and the rest of that line.
    fn start(args: &[&str]) -> Result<(Self, String)> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn the Rust sink process")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let me = Self { child, stdin };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.starts_with("ready ") => Ok((me, l["ready ".len()..].trim().to_owned())),
            Ok(l) => bail!("dist-bench {args:?} did not start: {l:?}"),
            Err(_) => bail!("dist-bench {args:?} did not start within 30 s"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SinkChild {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    cookie: String,
    epmd_port: u16,
    ra: Node,
    ea: ErlNode,
    eb: ErlNode,
    rb: SinkChild,
    tcp_sink: SinkChild,
    tcp: raw_tcp::RawTcp,
    // Drop order: nodes before the daemon and the module directory.
    _epmd: Daemon,
    _dir: TempDir,
}

impl Bench {
    fn receiver(&self, dir: Dir) -> (String, u32) {
        if dir == Dir::Tcp {
            ("tcp-sink".to_owned(), self.tcp_sink.pid())
        } else if dir.rust_receiver() {
            (RUST_SINK_NODE.to_owned(), self.rb.pid())
        } else {
            (self.eb.node().to_owned(), self.eb.pid().unwrap_or(0))
        }
    }

    fn sender_pid(&self, dir: Dir) -> u32 {
        if dir.rust_sender() {
            std::process::id()
        } else {
            self.ea.pid().unwrap_or(0)
        }
    }

    fn throughput(&mut self, dir: Dir, size: usize, n: u64) -> Result<Sample> {
        let (peer, rpid) = self.receiver(dir);
        let spid = self.sender_pid(dir);
        let (s0, r0) = (stats::proc_stat(spid), stats::proc_stat(rpid));
        let secs = if dir == Dir::Tcp {
            self.tcp.send(size, n)?.as_secs_f64()
        } else if dir.rust_sender() {
            let fut = rust_side::send(self.ra.clone(), peer.clone(), size, n, SEND_TIMEOUT);
            let h = self.rt.spawn(fut);
            self.rt.block_on(h)??.as_secs_f64()
        } else {
            let expr = format!(
                "distbench:send('{peer}', {size}, {n}, {}).",
                SEND_TIMEOUT.as_millis()
            );
            let ns: u64 = match self
                .ea
                .eval_result(&expr, SEND_TIMEOUT + Duration::from_secs(10))?
            {
                EvalResult::Ok(v) => v
                    .parse()
                    .map_err(|_| anyhow!("{}: {expr} returned {v}", self.ea.node()))?,
                EvalResult::Error(e) => bail!("{}: {expr} raised {e}", self.ea.node()),
            };
            ns as f64 / 1e9
        };
        let (s1, r1) = (stats::proc_stat(spid), stats::proc_stat(rpid));
        Ok(Sample {
            secs,
            sender: s1.zip(s0).map(|(a, b)| a.since(b)),
            receiver: r1.zip(r0).map(|(a, b)| a.since(b)),
        })
    }

    /// One handshake sample, in milliseconds.
    fn handshake(&mut self, dir: Dir, rep: usize) -> Result<f64> {
        let (peer, _) = self.receiver(dir);
        if dir.rust_sender() {
            let name = format!("hs_{}_{rep}@localhost", dir.short());
            let fut = {
                let (cookie, port) = (self.cookie.clone(), self.epmd_port);
                async move { rust_side::handshake(&name, &cookie, port, &peer).await }
            };
            let h = self.rt.spawn(fut);
            return Ok(self.rt.block_on(h)??.as_secs_f64() * 1e3);
        }
        // Erlang: drop the connection, wait until both ends forgot it.
        self.ea
            .eval(&format!("erlang:disconnect_node('{peer}')."))?;
        let ea = self.ea.node().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let here = self
                .ea
                .eval(&format!("lists:member('{peer}', nodes(connected))."))?;
            let there = if dir.rust_receiver() {
                "false".to_owned()
            } else {
                self.eb
                    .eval(&format!("lists:member('{ea}', nodes(connected))."))?
            };
            if here == "false" && there == "false" {
                break;
            }
            if Instant::now() > deadline {
                bail!("{ea} and {peer} still connected after disconnect_node");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The Rust sink cannot be asked; give it time to see the close.
        std::thread::sleep(Duration::from_millis(if dir.rust_receiver() {
            300
        } else {
            50
        }));
        let v = self
            .ea
            .eval(&format!("distbench:connect_time('{peer}')."))?;
        let ns = v
            .strip_prefix("{true,")
            .and_then(|s| s.strip_suffix('}'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("{ea}: connect_node('{peer}') gave {v}"))?;
        Ok(ns as f64 / 1e6)
    }
}

/// `$EPMDX_BIN`, else `epmdx` next to this binary, built with the same
/// profile if missing (so `cargo run -p dist-bench` is enough).
fn locate_epmdx() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("EPMDX_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().context("exe dir")?;
    let bin = dir.join("epmdx");
    if bin.exists() {
        return Ok(bin);
    }
    let profile = dir
        .file_name()
        .and_then(|s| s.to_str())
        .context("profile dir")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", "epmdx", "--bin", "epmdx", "--manifest-path"])
        .arg(&manifest);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!(
        "dist-bench: {} not found, building it: {cmd:?}",
        bin.display()
    );
    let st = cmd.status().context("run cargo build for epmdx")?;
    if !st.success() || !bin.exists() {
        bail!("could not build {} ({st})", bin.display());
    }
    Ok(bin)
}

/// Starts epmdx on a private port; returns it, the load average before the
/// run and this run's cookie. `EPMDX_BIN` is set first, before any thread
/// starts: test_support's `Daemon` reads it.
pub(crate) fn start_epmd() -> Result<(Daemon, String, String)> {
    let epmdx = locate_epmdx()?;
    std::env::set_var("EPMDX_BIN", &epmdx);
    let load_before = stats::loadavg();
    let epmd = Daemon::start(Subject::Epmdx, &[]).context("start epmdx")?;
    eprintln!("epmdx {} on private port {}", epmdx.display(), epmd.port);
    let cookie = format!("distbench{}", std::process::id());
    Ok((epmd, load_before, cookie))
}

/// Writes `distbench.erl` into `dir` and compiles it there.
fn compile_module(dir: &Path) -> Result<()> {
    let src = dir.join("distbench.erl");
    std::fs::write(&src, ERL_MODULE)?;
    test_support::erl::erlc(&src, dir)
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_mb(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_size(b: usize) -> String {
    if b >= 1024 && b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

fn med_range(v: &[f64], f: fn(f64) -> String) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let (lo, hi) = stats::range(v);
    format!("{} ({}–{})", f(stats::median(v)), f(lo), f(hi))
}

fn main() -> Result<()> {
    // As the erldist binary does (see erldist::tune_allocator).
    erldist::tune_allocator();
    let cli = Cli::parse();
    if let Some(Cmd::Sink {
        name,
        cookie,
        epmd_port,
    }) = &cli.cmd
    {
        return rust_side::run_sink_process(name, cookie, *epmd_port);
    }
    match &cli.cmd {
        Some(Cmd::TcpSink { uds }) => return raw_tcp::run_sink_process(uds.as_deref()),
        Some(Cmd::Transports(a)) => return transports::run(a),
        Some(Cmd::TransportSink {
            name,
            cookie,
            epmd_port,
            certs,
            uds_dir,
        }) => return transports::run_sink_process(name, cookie, *epmd_port, certs, uds_dir),
        _ => {}
    }
    if cli.reps == 0 || cli.directions.is_empty() {
        bail!("nothing to measure");
    }
    let mut dirs = cli.directions.clone();
    dirs.sort();
    dirs.dedup();

    let (epmd, load_before, cookie) = start_epmd()?;
    let epmd_port = epmd.port;

    let dir = TempDir::new("dist-bench")?;
    compile_module(dir.path())?;
    let pa = dir.path().to_string_lossy().into_owned();
    let mut erl_args: Vec<&str> = vec!["-pa", &pa];
    erl_args.extend(cli.erl_arg.iter().map(String::as_str));
    let ea = ErlNode::start("ea@localhost", &cookie, epmd_port, &erl_args)?;
    let mut eb = ErlNode::start("eb@localhost", &cookie, epmd_port, &erl_args)?;
    eb.eval("distbench:start_sink().")?;
    let mut ea = ea;
    ea.eval("{module, distbench} = code:ensure_loaded(distbench).")?;
    let otp = ea.eval("erlang:system_info(otp_release).")?;
    let erts = ea.eval("erlang:system_info(version).")?;
    let otp = format!(
        "OTP {} (erts {})",
        otp.trim_matches('"'),
        erts.trim_matches('"')
    );
    let schedulers = ea.eval("erlang:system_info(schedulers_online).")?;

    let port_arg = epmd_port.to_string();
    let (rb, _) = SinkChild::start(&[
        "sink",
        "--name",
        RUST_SINK_NODE,
        "--cookie",
        &cookie,
        "--epmd-port",
        &port_arg,
    ])?;
    let (tcp_sink, tcp_port) = SinkChild::start(&["tcp-sink"])?;
    let tcp = raw_tcp::RawTcp::connect(tcp_port.parse().context("tcp-sink port")?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ra = rt.block_on(Node::start(rust_side::config(
        "ra@localhost",
        &cookie,
        epmd_port,
    )))?;

    let mut b = Bench {
        rt,
        cookie,
        epmd_port,
        ra,
        ea,
        eb,
        rb,
        tcp_sink,
        tcp,
        _epmd: epmd,
        _dir: dir,
    };

    // Handshakes first, while no data connection exists yet.
    let mut hs: BTreeMap<Dir, Vec<f64>> = BTreeMap::new();
    let mut hs_cold: BTreeMap<Dir, f64> = BTreeMap::new();
    if !cli.common.no_handshake {
        let hs_dirs: Vec<Dir> = dirs.iter().copied().filter(|&d| d != Dir::Tcp).collect();
        for rep in 0..=cli.handshake_reps {
            for i in 0..hs_dirs.len() {
                let d = hs_dirs[(i + rep) % hs_dirs.len()];
                let ms = b.handshake(d, rep)?;
                eprintln!("handshake {:<16} rep {rep}: {ms:.3} ms", d.label());
                if rep == 0 {
                    hs_cold.insert(d, ms);
                } else {
                    hs.entry(d).or_default().push(ms);
                }
            }
        }
    }

    // Warm-up: connections, code, allocators.
    let payloads = [
        (cli.common.small_size, cli.small_n),
        (cli.common.large_size, cli.large_n),
    ];
    for &d in &dirs {
        for &(size, n) in &payloads {
            let s = b.throughput(d, size, (n / 10).max(1))?;
            eprintln!(
                "warm-up {:<16} {:>8}: {:.3} s",
                d.label(),
                fmt_size(size),
                s.secs
            );
        }
    }

    let mut res: BTreeMap<(Dir, usize), Vec<Sample>> = BTreeMap::new();
    for rep in 0..cli.reps {
        for (pi, &(size, n)) in payloads.iter().enumerate() {
            for i in 0..dirs.len() {
                let d = dirs[(i + rep + pi) % dirs.len()];
                std::thread::sleep(Duration::from_millis(100));
                let s = b.throughput(d, size, n)?;
                log_sample(rep, d.label(), 16, size, n, &s);
                res.entry((d, pi)).or_default().push(s);
            }
        }
    }
    let load_after = stats::loadavg();

    // Report.
    let (nproc, kernel, cpu) = stats::machine();
    let (mut md, build) = stats::report_start();
    let _ = writeln!(
        md,
        "Machine: {nproc} cores ({cpu}), Linux {kernel}; {otp}, \
         {schedulers} schedulers per VM; dist-bench built `{build}`; loadavg before {load_before}, \
         after {load_after}.\n"
    );
    let _ = writeln!(
        md,
        "Erlang nodes: `erl -sname ea|eb@localhost -start_epmd false -noshell +sbwt none \
         +sbwtdcpu none +sbwtdio none{}` (test-support's ErlNode flags); Rust nodes: erldist on \
         a multi-threaded tokio runtime with {nproc} workers each, receiver in a child process.\n",
        cli.erl_arg
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    let _ = writeln!(
        md,
        "Parameters: {} × {}, {} × {}; {} interleaved repetitions; handshake {} repetitions \
         after 1 cold sample.\n",
        cli.small_n,
        fmt_size(cli.common.small_size),
        cli.large_n,
        fmt_size(cli.common.large_size),
        cli.reps,
        cli.handshake_reps
    );
    md.push_str(
        "| Direction | Payload | msgs/s median (min–max) | MB/s median (min–max) | \
         sender CPU µs/msg | receiver CPU µs/msg | handshake ms median (min–max) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let rates = |d: Dir, pi: usize| -> Vec<f64> {
        let n = payloads[pi].1 as f64;
        res.get(&(d, pi))
            .map(|v| v.iter().map(|s| n / s.secs).collect())
            .unwrap_or_default()
    };
    for &d in &dirs {
        for (pi, &(size, n)) in payloads.iter().enumerate() {
            let r = rates(d, pi);
            let mbs: Vec<f64> = r.iter().map(|x| x * size as f64 / 1e6).collect();
            let samples = res.get(&(d, pi)).cloned().unwrap_or_default();
            let cpu_per = |f: fn(&Sample) -> Option<stats::ProcStat>| -> String {
                let v: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| f(s).map(|c| c.cpu.as_secs_f64() * 1e6 / n as f64))
                    .collect();
                if v.is_empty() {
                    "–".into()
                } else {
                    format!("{:.2}", stats::median(&v))
                }
            };
            let hsv = hs.get(&d).map(|v| med_range(v, |x| format!("{x:.2}")));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                d.label(),
                fmt_size(size),
                med_range(&r, fmt_rate),
                med_range(&mbs, fmt_mb),
                cpu_per(|s| s.sender),
                cpu_per(|s| s.receiver),
                hsv.unwrap_or_else(|| "–".into())
            );
        }
    }
    if !hs_cold.is_empty() {
        let cold: Vec<String> = hs_cold
            .iter()
            .map(|(d, ms)| format!("{} {ms:.2} ms", d.label()))
            .collect();
        let _ = writeln!(
            md,
            "\nCold first handshake (not in the median): {}.",
            cold.join(", ")
        );
    }

    // Paired ratios: per repetition, both directions ran back to back.
    // Besides the rate, the CPU both processes spent per message (sender +
    // receiver), inverted so that > 1 means "Rust is cheaper": it is less
    // sensitive to what else the shared machine runs than the wall clock.
    let cpu_total = |d: Dir, pi: usize| -> Vec<Option<f64>> {
        res.get(&(d, pi))
            .map(|v| {
                v.iter()
                    .map(|s| Some(s.sender?.cpu.as_secs_f64() + s.receiver?.cpu.as_secs_f64()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ratio_rows = Vec::new();
    for (num, den, target) in [(Dir::R2r, Dir::E2e, 2.0), (Dir::R2e, Dir::E2e, 1.0)] {
        for (pi, &(size, _)) in payloads.iter().enumerate() {
            let (a, c) = (rates(num, pi), rates(den, pi));
            if a.is_empty() || c.is_empty() {
                continue;
            }
            let paired: Vec<f64> = a.iter().zip(&c).map(|(x, y)| x / y).collect();
            let m = stats::median(&paired);
            let (lo, hi) = stats::range(&paired);
            let eff: Vec<f64> = cpu_total(num, pi)
                .iter()
                .zip(cpu_total(den, pi))
                .filter_map(|(x, y)| Some(y? / (*x)?))
                .filter(|r| r.is_finite())
                .collect();
            let eff = if eff.is_empty() {
                "–".to_owned()
            } else {
                let (elo, ehi) = stats::range(&eff);
                format!("{:.2}x ({elo:.2}–{ehi:.2})", stats::median(&eff))
            };
            ratio_rows.push(format!(
                "| {} vs {} | {} | {m:.2}x ({lo:.2}–{hi:.2}) | ≥ {target:.0}x | {} | {eff} |",
                num.label(),
                den.label(),
                fmt_size(size),
                if m >= target { "met" } else { "**not met**" }
            ));
        }
    }
    if !ratio_rows.is_empty() {
        md.push_str(
            "\n| Ratio | Payload | msgs/s: median of per-repetition ratios (min–max) | target | \
             | CPU per message, Erlang ÷ Rust (min–max) |\n\
             |---|---|---|---|---|---|\n",
        );
        for r in ratio_rows {
            md.push_str(&r);
            md.push('\n');
        }
    }
    print!("{md}");
    if let Some(p) = &cli.common.out {
        std::fs::write(p, &md).with_context(|| format!("write {}", p.display()))?;
    }
    b.ra.stop();
    Ok(())
}
