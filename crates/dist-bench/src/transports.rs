//! `dist-bench transports`: the same benchmark per transport — `inet_tcp`,
//! `inet_tls`, `uds` — in one run, from a Rust sender to a Rust receiver
//! (in a child process) and to Erlang receivers (one VM per transport).
//!
//! | receiver | `inet_tcp` | `inet_tls` | `uds` |
//! |---|---|---|---|
//! | Rust (child process `dist-bench transport-sink`) | `rb_tcp` | `rb_tls` | `rb_uds` |
//! | Erlang (`erl`) | `eb_tcp`: `inet_tcp_dist` | `eb_tls`: `inet_tls_dist` | `eb_uds`: OTP's `erl_uds_dist` example |
//!
//! The sender `ra` (in this process) and every Rust receiver listen on all
//! three transports (127.0.0.1 for TCP and TLS, a private socket
//! directory for `uds`); the sender's [`RulePolicy`] picks the transport by
//! the peer's name (`*_tcp@*` → `inet_tcp`, `*_tls@*` → `inet_tls`,
//! `*_uds@*` → `uds`, anything else refused), and the run checks on both
//! ends that each connection uses the transport it should.
//!
//! - TLS: a development CA and certificates from
//!   [`erldist::transport::tls::generate_dev_certs`]; the Erlang node runs
//!   `-proto_dist inet_tls -ssl_dist_optfile <absolute path>` with mutual
//!   `verify_peer` and `{versions, ['tlsv1.3','tlsv1.2']}`.
//! - Unix socket to Erlang: `erl_uds_dist` (compiled with `erlc` from the
//!   installed `kernel` examples at run time) uses no EPMD and listens on
//!   the node-name head in its working directory; the benchmark registers a
//!   stand-in extended entry for `eb_uds` in epmdx carrying that socket's
//!   absolute path as a `uds` transport (as `crates/erldist/tests/
//!   otp_transports.rs` does), so the Rust sender finds it like any node.
//! - Throughput: as in the default mode (`{go, self(), N}`, N binaries, wait
//!   for `done`), but N is calibrated per (receiver, transport, payload)
//!   from two warm-ups so that one measurement takes about `--secs`
//!   seconds, within fixed bounds. Each is measured `--reps` times,
//!   interleaved, the order rotating every repetition.
//! - Handshake: `Node::connect` of a freshly started sender node (same
//!   listeners and policy as `ra`): EPMD lookup, `localhost` resolution,
//!   connect, TLS, distribution handshake. One cold sample per pair, left
//!   out of the median.
//! - References: raw TCP and raw Unix-socket streams to a child process,
//!   one `write()` per message, no encoding.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use erldist::policy::{Rule, RuleConfig, RulePolicy};
use erldist::transport::tls::{generate_dev_certs, TlsFiles};
use erldist::transport::{ListenSpec, Proto};
use erldist::{Node, NodeConfig};
use test_support::erl::{erl_bin, ErlNode, TempDir};
use test_support::{Daemon, Subject};

use crate::{
    compile_module, fmt_mb, fmt_rate, fmt_size, locate_epmdx, log_sample, med_range, raw_tcp,
    rust_side, stats, Sample, SinkChild,
};

/// Bound on one throughput measurement.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The certificate every Rust node presents, and the Erlang nodes'.
const RUST_CERT: &str = "rust";
const ERL_CERT: &str = "erl";

/// Options of `dist-bench transports`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Repetitions of each throughput measurement (interleaved).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Handshake samples per (receiver, transport), after one cold sample.
    #[arg(long, default_value_t = 7)]
    handshake_reps: usize,
    /// Size of the small payload, bytes.
    #[arg(long, default_value_t = 100)]
    small_size: usize,
    /// Size of the large payload, bytes.
    #[arg(long, default_value_t = 65_536)]
    large_size: usize,
    /// Target duration of one throughput measurement, seconds: N is
    /// calibrated from the warm-up to take about this long.
    #[arg(long, default_value_t = 1.5)]
    secs: f64,
    /// Smallest N for the small payload (also the first warm-up's N).
    #[arg(long, default_value_t = 20_000)]
    small_min_n: u64,
    /// Largest N for the small payload.
    #[arg(long, default_value_t = 2_000_000)]
    small_max_n: u64,
    /// Smallest N for the large payload (also the first warm-up's N).
    #[arg(long, default_value_t = 300)]
    large_min_n: u64,
    /// Largest N for the large payload.
    #[arg(long, default_value_t = 60_000)]
    large_max_n: u64,
    /// Transports to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp,tls,uds")]
    transports: Vec<Tr>,
    /// Receivers to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rust,erlang,raw"
    )]
    receivers: Vec<Kind>,
    /// Skip the handshake measurements.
    #[arg(long)]
    no_handshake: bool,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Tr {
    /// `inet_tcp`.
    Tcp,
    /// `inet_tls`.
    Tls,
    /// `uds`.
    Uds,
}

impl Tr {
    fn proto(self) -> Proto {
        match self {
            Self::Tcp => Proto::InetTcp,
            Self::Tls => Proto::InetTls,
            Self::Uds => Proto::Uds,
        }
    }
    fn short(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Uds => "uds",
        }
    }
    /// What `net_kernel:node_info/1` reports on the Erlang side.
    fn erl_address(self) -> &'static str {
        match self {
            Self::Tcp => "{tcp,inet}",
            Self::Tls => "{tls,inet}",
            Self::Uds => "{stream,local}",
        }
    }
}

/// A receiver kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Kind {
    /// erldist node in a child process.
    Rust,
    /// An `erl` node.
    Erlang,
    /// The raw stream reference (TCP and Unix socket only).
    Raw,
}

/// One measured path: a receiver kind over a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pair {
    kind: Kind,
    tr: Tr,
}

impl Pair {
    fn label(self) -> String {
        match self.kind {
            Kind::Rust => format!("Rust → Rust, {}", self.tr.proto()),
            Kind::Erlang => format!("Rust → Erlang, {}", self.tr.proto()),
            Kind::Raw => match self.tr {
                Tr::Uds => "raw Unix socket (reference)".to_owned(),
                _ => "raw TCP (reference)".to_owned(),
            },
        }
    }
    /// The receiving node's name.
    fn peer(self) -> String {
        match self.kind {
            Kind::Rust => format!("rb_{}@localhost", self.tr.short()),
            Kind::Erlang => format!("eb_{}@localhost", self.tr.short()),
            Kind::Raw => format!("raw_{}", self.tr.short()),
        }
    }
}

/// The sender's policy: the transport named by the peer's name suffix,
/// nothing else (no failover to another transport, no default).
fn policy() -> Result<RulePolicy> {
    let rule = |glob: &str, t: Tr| Rule {
        node: Some(glob.to_owned()),
        cidr: None,
        transports: vec![t.proto().name().to_owned()],
    };
    let cfg = RuleConfig {
        rules: vec![
            rule("*_tcp@*", Tr::Tcp),
            rule("*_tls@*", Tr::Tls),
            rule("*_uds@*", Tr::Uds),
        ],
        same_host: vec![],
        same_subnet: vec![],
        other: vec![],
    };
    RulePolicy::new(&cfg).map_err(|e| anyhow!("policy: {e}"))
}

/// A Rust node listening on TCP and TLS (127.0.0.1, any port) and a Unix
/// socket in `uds_dir`, with the benchmark's policy.
pub(crate) fn node_config(
    name: &str,
    cookie: &str,
    epmd_port: u16,
    certs: &Path,
    uds_dir: &Path,
) -> Result<NodeConfig> {
    let mut cfg = rust_side::config(name, cookie, epmd_port);
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    cfg.listen = [Proto::InetTcp, Proto::InetTls, Proto::Uds]
        .into_iter()
        .map(|proto| ListenSpec { proto, addr: lo })
        .collect();
    cfg.tls = Some(TlsFiles {
        cert: certs.join(format!("{RUST_CERT}.pem")),
        key: certs.join(format!("{RUST_CERT}-key.pem")),
        ca: certs.join("ca.pem"),
    });
    cfg.uds_dir = uds_dir.to_owned();
    cfg.failover = false;
    cfg.policy = Arc::new(policy()?);
    Ok(cfg)
}

/// `dist-bench transport-sink`: the Rust receivers, one node per name.
pub(crate) fn run_sink_process(
    names: &[String],
    cookie: &str,
    epmd_port: u16,
    certs: &Path,
    uds_dir: &Path,
) -> Result<()> {
    let cfgs = names
        .iter()
        .map(|n| node_config(n, cookie, epmd_port, certs, uds_dir))
        .collect::<Result<Vec<_>>>()?;
    rust_side::run_sink_nodes(cfgs)
}

/// This host's short name, as `erl -sname x` would use it.
fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    name.split('.').next().unwrap_or("localhost").to_owned()
}

/// The `-ssl_dist_optfile` of the Erlang TLS node: mutual `verify_peer`,
/// TLS 1.3 and 1.2; absolute paths throughout (OTP 25 rejects a relative
/// optfile path).
fn write_ssl_dist_optfile(dir: &Path, certs: &Path) -> Result<PathBuf> {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let common = format!(
        "{{certfile,{}}},{{keyfile,{}}},{{cacertfile,{}}},{{verify,verify_peer}},\
         {{versions,['tlsv1.3','tlsv1.2']}}",
        q(certs.join(format!("{ERL_CERT}.pem"))),
        q(certs.join(format!("{ERL_CERT}-key.pem"))),
        q(certs.join("ca.pem")),
    );
    let text = format!(
        "[{{server,[{common},{{fail_if_no_peer_cert,true}}]}},\n {{client,[{common}]}}].\n"
    );
    let path = std::path::absolute(dir.join("ssl_dist.conf"))?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Compiles OTP's `erl_uds_dist` example (from the installed
/// `kernel-*/examples`) into `out`.
fn compile_erl_uds_dist(out: &Path) -> Result<()> {
    let erl = erl_bin()?;
    let mut libs = Vec::new();
    if let Some(root) = std::fs::canonicalize(&erl)
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("lib")))
    {
        libs.push(root);
    }
    libs.push(PathBuf::from("/usr/lib/erlang/lib"));
    let src = libs
        .iter()
        .filter_map(|lib| std::fs::read_dir(lib).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("kernel-"))
        .map(|e| e.path().join("examples/erl_uds_dist/src/erl_uds_dist.erl"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!("kernel-*/examples/erl_uds_dist/src/erl_uds_dist.erl not found (Debian's erlang-base ships it)")
        })?;
    let erlc = erl
        .parent()
        .map(|d| d.join("erlc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("erlc"));
    let o = Command::new(&erlc)
        .arg("-o")
        .arg(out)
        .arg(&src)
        .output()
        .with_context(|| format!("run {}", erlc.display()))?;
    if !o.status.success() {
        bail!(
            "erlc {} failed: {}{}",
            src.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}

/// Registers `alive` in epmdx with one extended `uds` transport whose
/// Extra is `path` (ALIVE3, docs/protocol.md §3.1). The registration lives
/// as long as the returned connection.
fn register_uds_alias(epmd_port: u16, alive: &str, path: &Path) -> Result<TcpStream> {
    let path = path.as_os_str().as_encoded_bytes();
    let mut body = vec![88u8, 77];
    body.extend_from_slice(&6u16.to_be_bytes());
    body.extend_from_slice(&6u16.to_be_bytes());
    body.extend_from_slice(&u16::try_from(alive.len())?.to_be_bytes());
    body.extend_from_slice(alive.as_bytes());
    body.push(1);
    body.extend_from_slice(&0u16.to_be_bytes());
    body.push(3);
    body.extend_from_slice(b"uds");
    body.extend_from_slice(&u16::try_from(path.len())?.to_be_bytes());
    body.extend_from_slice(path);
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, epmd_port)).context("connect epmdx")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = u16::try_from(body.len())?.to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    s.write_all(&req)?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).context("ALIVE3 reply")?;
    if reply[2] != 118 || reply[3] != 0 {
        bail!("epmdx refused the uds entry for {alive}: reply {reply:?}");
    }
    Ok(s)
}

struct Bench {
    rt: tokio::runtime::Runtime,
    ra: Node,
    /// Template for the fresh handshake nodes.
    ra_cfg: NodeConfig,
    erl: BTreeMap<Tr, ErlNode>,
    rsink: Option<SinkChild>,
    raw: BTreeMap<Tr, (SinkChild, raw_tcp::RawTcp)>,
    // Drop order: the stand-in registration, nodes, then the daemon and
    // the directory.
    _uds_alias: Option<TcpStream>,
    _epmd: Daemon,
    _dir: TempDir,
}

impl Bench {
    fn receiver_pid(&self, p: Pair) -> u32 {
        match p.kind {
            Kind::Rust => self.rsink.as_ref().map_or(0, SinkChild::pid),
            Kind::Erlang => self.erl.get(&p.tr).and_then(ErlNode::pid).unwrap_or(0),
            Kind::Raw => self.raw.get(&p.tr).map_or(0, |r| r.0.pid()),
        }
    }

    fn throughput(&mut self, p: Pair, size: usize, n: u64) -> Result<Sample> {
        let (spid, rpid) = (std::process::id(), self.receiver_pid(p));
        let (s0, r0) = (stats::proc_stat(spid), stats::proc_stat(rpid));
        let secs = if p.kind == Kind::Raw {
            let r = self
                .raw
                .get_mut(&p.tr)
                .ok_or_else(|| anyhow!("no raw sink"))?;
            r.1.send(size, n)?.as_secs_f64()
        } else {
            let fut = rust_side::send(self.ra.clone(), p.peer(), size, n, SEND_TIMEOUT);
            let h = self.rt.spawn(fut);
            self.rt.block_on(h)??.as_secs_f64()
        };
        let (s1, r1) = (stats::proc_stat(spid), stats::proc_stat(rpid));
        Ok(Sample {
            secs,
            sender: s1.zip(s0).map(|(a, b)| a.since(b)),
            receiver: r1.zip(r0).map(|(a, b)| a.since(b)),
        })
    }

    /// One handshake sample (ms) with a fresh node.
    fn handshake(&mut self, p: Pair, tag: &str) -> Result<f64> {
        let mut cfg = self.ra_cfg.clone();
        cfg.name = format!("{tag}@localhost");
        let peer = p.peer();
        let h = self
            .rt
            .spawn(async move { rust_side::handshake_with(cfg, &peer).await });
        let (dt, transport) = self.rt.block_on(h)??;
        if transport != p.tr.proto().name() {
            bail!(
                "{tag} -> {}: connected over {transport:?}, expected {}",
                p.peer(),
                p.tr.proto()
            );
        }
        Ok(dt.as_secs_f64() * 1e3)
    }

    /// A fresh node's `connect` to a name nobody registered (ms): the EPMD
    /// connection and lookup, without any transport.
    fn lookup_only(&mut self, tag: &str) -> Result<f64> {
        let mut cfg = self.ra_cfg.clone();
        cfg.name = format!("{tag}@localhost");
        let h = self.rt.spawn(async move {
            let node = Node::start(cfg).await?;
            let t0 = Instant::now();
            let r = node.connect("nobody_tcp@localhost").await;
            let dt = t0.elapsed();
            node.stop();
            match r {
                Err(erldist::NodeError::NotRegistered(_)) => Ok(dt),
                other => Err(anyhow!("connect to an unregistered name: {other:?}")),
            }
        });
        Ok(self.rt.block_on(h)??.as_secs_f64() * 1e3)
    }

    /// Checks on both ends that `ra`'s connection to the pair's receiver
    /// uses the pair's transport; returns a one-line description.
    fn verify(&mut self, p: Pair) -> Result<String> {
        let peer = p.peer();
        let want = p.tr.proto().name();
        let got = self
            .ra
            .connections()
            .into_iter()
            .find(|c| c.peer == peer)
            .map(|c| c.transport.name())
            .ok_or_else(|| anyhow!("ra has no connection to {peer}"))?;
        if got != want {
            bail!("ra -> {peer} uses {got}, expected {want}");
        }
        if p.kind != Kind::Erlang {
            return Ok(format!("`ra` → `{peer}`: `{got}`"));
        }
        let e = self
            .erl
            .get_mut(&p.tr)
            .ok_or_else(|| anyhow!("no {peer}"))?;
        let ra = self.ra.name().to_owned();
        let addr = e.eval(&format!(
            "{{ok, I}} = net_kernel:node_info('{ra}'), \
             {{net_address, _, _, P, F}} = proplists:get_value(address, I), {{P, F}}."
        ))?;
        if addr != p.tr.erl_address() {
            bail!("{peer} sees its connection to {ra} as {addr}");
        }
        let mut line =
            format!("`ra` → `{peer}`: `{got}`; Erlang's `net_kernel:node_info` says `{addr}`");
        if p.tr == Tr::Tls {
            // inet_tls_dist's controller is the connection's tls_sender.
            if let Ok(v) = e.eval(&format!(
                "[{{_, Ctrl}}] = [X || {{N, _}} = X <- erlang:system_info(dist_ctrl), N =:= '{ra}'], \
                 {{ok, S}} = tls_sender:dist_tls_socket(Ctrl), \
                 {{ok, I}} = ssl:connection_information(S, [protocol, selected_cipher_suite]), \
                 {{proplists:get_value(protocol, I), \
                   maps:get(cipher, proplists:get_value(selected_cipher_suite, I))}}."
            )) {
                let _ = write!(line, "; negotiated `{v}`");
            }
        }
        Ok(line)
    }
}

/// Median of per-repetition ratios `num / den` of two sample vectors.
fn paired(a: &[f64], b: &[f64]) -> Option<(f64, f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let v: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    let (lo, hi) = stats::range(&v);
    Some((stats::median(&v), lo, hi))
}

pub(crate) fn run(a: &Args) -> Result<()> {
    if a.reps == 0 || a.transports.is_empty() || a.receivers.is_empty() {
        bail!("nothing to measure");
    }
    let t_start = Instant::now();
    let mut trs = a.transports.clone();
    trs.sort();
    trs.dedup();
    let mut kinds = a.receivers.clone();
    kinds.sort();
    kinds.dedup();
    let mut pairs = Vec::new();
    for &kind in &kinds {
        for &tr in &trs {
            if kind == Kind::Raw && tr == Tr::Tls {
                continue;
            }
            pairs.push(Pair { kind, tr });
        }
    }
    if pairs.is_empty() {
        bail!("nothing to measure");
    }

    // Set before any thread starts: test_support's Daemon reads it.
    let epmdx = locate_epmdx()?;
    std::env::set_var("EPMDX_BIN", &epmdx);
    let load_before = stats::loadavg();
    let epmd = Daemon::start(Subject::Epmdx, &[]).context("start epmdx")?;
    let epmd_port = epmd.port;
    eprintln!("epmdx {} on private port {epmd_port}", epmdx.display());
    let cookie = format!("distbench{}", std::process::id());

    let dir = TempDir::new("dist-bench-tr")?;
    let certs = dir.path().join("certs");
    let uds_dir = dir.path().join("uds");
    let beam = dir.path().join("beam");
    std::fs::create_dir_all(&beam)?;
    let hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        short_hostname(),
    ];
    generate_dev_certs(&certs, &[RUST_CERT.to_owned(), ERL_CERT.to_owned()], &hosts)?;

    // Erlang receivers.
    let mut erl = BTreeMap::new();
    let mut uds_alias = None;
    let mut otp = String::from("?");
    if kinds.contains(&Kind::Erlang) {
        compile_module(&beam)?;
        let pa = beam.to_string_lossy().into_owned();
        for &tr in &trs {
            let name = Pair {
                kind: Kind::Erlang,
                tr,
            }
            .peer();
            let mut args: Vec<String> = vec!["-pa".into(), pa.clone()];
            match tr {
                Tr::Tcp => {}
                Tr::Tls => {
                    let opt = write_ssl_dist_optfile(dir.path(), &certs)?;
                    args.extend([
                        "-proto_dist".into(),
                        "inet_tls".into(),
                        "-ssl_dist_optfile".into(),
                        opt.display().to_string(),
                    ]);
                }
                Tr::Uds => {
                    compile_erl_uds_dist(&beam)?;
                    args.extend(["-proto_dist".into(), "erl_uds".into(), "-no_epmd".into()]);
                }
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut e = ErlNode::start(&name, &cookie, epmd_port, &argv)?;
            e.eval("distbench:start_sink().")?;
            if tr == Tr::Uds {
                let sock = std::fs::canonicalize(e.dir())?.join(e.alive());
                if !sock.exists() {
                    bail!("erl_uds_dist socket {} missing", sock.display());
                }
                uds_alias = Some(register_uds_alias(epmd_port, e.alive(), &sock)?);
            }
            if otp == "?" {
                let rel = e.eval("erlang:system_info(otp_release).")?;
                let erts = e.eval("erlang:system_info(version).")?;
                let ssl =
                    e.eval("application:load(ssl), {ok, V} = application:get_key(ssl, vsn), V.")?;
                otp = format!(
                    "OTP {} (erts {}, ssl {})",
                    rel.trim_matches('"'),
                    erts.trim_matches('"'),
                    ssl.trim_matches('"')
                );
            }
            erl.insert(tr, e);
        }
    }

    // Rust receivers, in one child process.
    let port_arg = epmd_port.to_string();
    let rsink = if kinds.contains(&Kind::Rust) {
        let mut args: Vec<String> = vec![
            "transport-sink".into(),
            "--cookie".into(),
            cookie.clone(),
            "--epmd-port".into(),
            port_arg.clone(),
            "--certs".into(),
            certs.display().to_string(),
            "--uds-dir".into(),
            uds_dir.display().to_string(),
        ];
        for &tr in &trs {
            args.push("--name".into());
            args.push(
                Pair {
                    kind: Kind::Rust,
                    tr,
                }
                .peer(),
            );
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        Some(SinkChild::start(&argv)?.0)
    } else {
        None
    };

    // Raw references.
    let mut raw = BTreeMap::new();
    if kinds.contains(&Kind::Raw) {
        for &tr in &trs {
            match tr {
                Tr::Tcp => {
                    let (c, port) = SinkChild::start(&["tcp-sink"])?;
                    let conn = raw_tcp::RawTcp::connect(port.parse().context("tcp-sink port")?)?;
                    raw.insert(tr, (c, conn));
                }
                Tr::Uds => {
                    let path = dir.path().join("raw.sock");
                    let p = path.display().to_string();
                    let (c, _) = SinkChild::start(&["tcp-sink", "--uds", &p])?;
                    let conn = raw_tcp::RawTcp::connect_uds(&path)?;
                    raw.insert(tr, (c, conn));
                }
                Tr::Tls => {}
            }
        }
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ra_cfg = node_config("ra@localhost", &cookie, epmd_port, &certs, &uds_dir)?;
    let ra = rt.block_on(Node::start(ra_cfg.clone()))?;
    let mut b = Bench {
        rt,
        ra,
        ra_cfg,
        erl,
        rsink,
        raw,
        _uds_alias: uds_alias,
        _epmd: epmd,
        _dir: dir,
    };

    // Handshakes first, while `ra` has no connection yet.
    let node_pairs: Vec<Pair> = pairs
        .iter()
        .copied()
        .filter(|p| p.kind != Kind::Raw)
        .collect();
    let mut hs: BTreeMap<Pair, Vec<f64>> = BTreeMap::new();
    let mut hs_cold: BTreeMap<Pair, f64> = BTreeMap::new();
    let mut lookup_ms: Vec<f64> = Vec::new();
    if !a.no_handshake && !node_pairs.is_empty() {
        for rep in 0..=a.handshake_reps {
            for i in 0..node_pairs.len() {
                let p = node_pairs[(i + rep) % node_pairs.len()];
                let tag = format!("hs{rep}x{i}");
                let ms = b.handshake(p, &tag)?;
                eprintln!("handshake {:<28} rep {rep}: {ms:.3} ms", p.label());
                if rep == 0 {
                    hs_cold.insert(p, ms);
                } else {
                    hs.entry(p).or_default().push(ms);
                }
            }
        }
        // The part that is no transport's: a fresh node's `connect` to a
        // name nobody registered ends right after the EPMD lookup.
        for rep in 0..a.handshake_reps {
            let ms = b.lookup_only(&format!("lk{rep}"))?;
            eprintln!("lookup only rep {rep}: {ms:.3} ms");
            lookup_ms.push(ms);
        }
    }

    // Warm-up and calibration of N per (pair, payload).
    let payloads = [
        (a.small_size, a.small_min_n, a.small_max_n),
        (a.large_size, a.large_min_n, a.large_max_n),
    ];
    let mut ns: BTreeMap<(Pair, usize), u64> = BTreeMap::new();
    for &p in &pairs {
        for (pi, &(size, lo, hi)) in payloads.iter().enumerate() {
            let s0 = b.throughput(p, size, lo)?;
            let n1 = ((lo as f64 / s0.secs) * 0.4).clamp(lo as f64, hi as f64) as u64;
            let s1 = b.throughput(p, size, n1)?;
            let n = ((n1 as f64 / s1.secs) * a.secs).clamp(lo as f64, hi as f64) as u64;
            eprintln!(
                "warm-up {:<28} {:>8}: {lo} in {:.3} s, {n1} in {:.3} s -> N = {n}",
                p.label(),
                fmt_size(size),
                s0.secs,
                s1.secs
            );
            ns.insert((p, pi), n);
        }
    }
    let mut checks = Vec::new();
    for &p in &node_pairs {
        checks.push(b.verify(p)?);
    }
    for c in &checks {
        eprintln!("check: {c}");
    }

    let mut res: BTreeMap<(Pair, usize), Vec<Sample>> = BTreeMap::new();
    for rep in 0..a.reps {
        for (pi, &(size, _, _)) in payloads.iter().enumerate() {
            for i in 0..pairs.len() {
                let p = pairs[(i + rep + pi) % pairs.len()];
                let n = ns[&(p, pi)];
                std::thread::sleep(Duration::from_millis(100));
                let s = b.throughput(p, size, n)?;
                log_sample(rep, &p.label(), 28, size, n, &s);
                res.entry((p, pi)).or_default().push(s);
            }
        }
    }
    let load_after = stats::loadavg();
    let elapsed = t_start.elapsed();
    b.ra.stop();

    // Report.
    let (nproc, kernel, cpu) = stats::machine();
    let mut md = String::new();
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if cfg!(debug_assertions) {
        md.push_str(
            "**Debug build: the Rust figures below mean nothing; run with `--release`.**\n\n",
        );
    }
    let _ = writeln!(
        md,
        "Machine: {nproc} cores ({cpu}), Linux {kernel}; {otp}; dist-bench built `{build}`; \
         loadavg before {load_before}, after {load_after}; whole run {:.0} s.\n",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "N per measurement calibrated to ≈ {} s (100 B: {}–{}, 64 KiB: {}–{} messages); \
         {} interleaved repetitions; handshake {} samples after 1 cold one.\n",
        a.secs,
        a.small_min_n,
        a.small_max_n,
        a.large_min_n,
        a.large_max_n,
        a.reps,
        a.handshake_reps
    );

    let rates = |p: Pair, pi: usize| -> Vec<f64> {
        let n = ns.get(&(p, pi)).copied().unwrap_or(0) as f64;
        res.get(&(p, pi))
            .map(|v| v.iter().map(|s| n / s.secs).collect())
            .unwrap_or_default()
    };
    let cpu_per = |p: Pair, pi: usize, f: fn(&Sample) -> Option<stats::ProcStat>| -> Vec<f64> {
        let n = ns.get(&(p, pi)).copied().unwrap_or(1) as f64;
        res.get(&(p, pi))
            .map(|v| {
                v.iter()
                    .filter_map(|s| f(s).map(|c| c.cpu.as_secs_f64() * 1e6 / n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let cpu_total = |p: Pair, pi: usize| -> Vec<f64> {
        let n = ns.get(&(p, pi)).copied().unwrap_or(1) as f64;
        res.get(&(p, pi))
            .map(|v| {
                v.iter()
                    .filter_map(|s| Some((s.sender?.cpu + s.receiver?.cpu).as_secs_f64() * 1e6 / n))
                    .collect()
            })
            .unwrap_or_default()
    };

    if !hs.is_empty() {
        md.push_str(
            "Handshake, ms: `Node::connect` of a fresh node (EPMD lookup + connect + TLS + \
             distribution handshake), median (min–max)\n\n| Transport |",
        );
        let hs_kinds: Vec<Kind> = kinds.iter().copied().filter(|k| *k != Kind::Raw).collect();
        for k in &hs_kinds {
            let _ = write!(
                md,
                " {} |",
                if *k == Kind::Rust {
                    "Rust → Rust"
                } else {
                    "Rust → Erlang"
                }
            );
        }
        md.push_str("\n|---|");
        for _ in &hs_kinds {
            md.push_str("---|");
        }
        md.push('\n');
        for &tr in &trs {
            let _ = write!(md, "| `{}` |", tr.proto());
            for &kind in &hs_kinds {
                let p = Pair { kind, tr };
                let v = hs.get(&p).map(|v| med_range(v, |x| format!("{x:.2}")));
                let _ = write!(md, " {} |", v.unwrap_or_else(|| "–".into()));
            }
            md.push('\n');
        }
        let cold: Vec<String> = hs_cold
            .iter()
            .map(|(p, ms)| format!("{} {ms:.2} ms", p.label()))
            .collect();
        let _ = writeln!(
            md,
            "\nCold first handshakes (not in the medians): {}.\n",
            cold.join("; ")
        );
        if !lookup_ms.is_empty() {
            let _ = writeln!(
                md,
                "EPMD lookup alone (a fresh node's `connect` to an unregistered name, which \
                 fails right after the lookup): {} ms.\n",
                med_range(&lookup_ms, |x| format!("{x:.2}"))
            );
        }
    }

    md.push_str(
        "| Path | Payload | N | msgs/s median (min–max) | MB/s median (min–max) | \
         sender CPU µs/msg | receiver CPU µs/msg |\n|---|---|---|---|---|---|---|\n",
    );
    let med = |v: Vec<f64>| -> String {
        if v.is_empty() {
            "–".into()
        } else {
            format!("{:.2}", stats::median(&v))
        }
    };
    for &p in &pairs {
        for (pi, &(size, _, _)) in payloads.iter().enumerate() {
            let r = rates(p, pi);
            let mbs: Vec<f64> = r.iter().map(|x| x * size as f64 / 1e6).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.label(),
                fmt_size(size),
                ns.get(&(p, pi)).copied().unwrap_or(0),
                med_range(&r, fmt_rate),
                med_range(&mbs, fmt_mb),
                med(cpu_per(p, pi, |s| s.sender)),
                med(cpu_per(p, pi, |s| s.receiver)),
            );
        }
    }

    // Ratios against the targets (Rust → Rust), then the same
    // ratios for Rust → Erlang and the raw streams, for context.
    let mut rows = Vec::new();
    // (receiver, numerator, denominator, target, payload indexes)
    type Target = (Kind, Tr, Tr, Option<f64>, &'static [usize]);
    let targets: [Target; 6] = [
        (Kind::Rust, Tr::Uds, Tr::Tcp, Some(1.3), &[0, 1]),
        (Kind::Rust, Tr::Tls, Tr::Tcp, Some(0.6), &[1]),
        (Kind::Rust, Tr::Tls, Tr::Tcp, None, &[0]),
        (Kind::Erlang, Tr::Uds, Tr::Tcp, None, &[0, 1]),
        (Kind::Erlang, Tr::Tls, Tr::Tcp, None, &[0, 1]),
        (Kind::Raw, Tr::Uds, Tr::Tcp, None, &[0, 1]),
    ];
    for (kind, num, den, target, pis) in targets {
        let (pn, pd) = (Pair { kind, tr: num }, Pair { kind, tr: den });
        for &pi in pis {
            let Some((m, lo, hi)) = paired(&rates(pn, pi), &rates(pd, pi)) else {
                continue;
            };
            // CPU per message (sender + receiver), den ÷ num: > 1 means
            // `num` is cheaper.
            let eff = paired(&cpu_total(pd, pi), &cpu_total(pn, pi))
                .filter(|(m, _, _)| m.is_finite())
                .map_or_else(
                    || "–".to_owned(),
                    |(m, lo, hi)| format!("{m:.2}x ({lo:.2}–{hi:.2})"),
                );
            let (t, verdict) = match target {
                Some(t) => (
                    format!("≥ {t}x"),
                    if m >= t { "met" } else { "**not met**" }.to_owned(),
                ),
                None => ("–".to_owned(), "(context)".to_owned()),
            };
            let who = match kind {
                Kind::Rust => "Rust → Rust",
                Kind::Erlang => "Rust → Erlang",
                Kind::Raw => "raw stream",
            };
            rows.push(format!(
                "| {who}: `{}` ÷ `{}` | {} | {m:.2}x ({lo:.2}–{hi:.2}) | {t} | {verdict} | {eff} |",
                num.proto(),
                den.proto(),
                fmt_size(payloads[pi].0),
            ));
        }
    }
    if !rows.is_empty() {
        md.push_str(
            "\n| Ratio | Payload | msgs/s: median of per-repetition ratios (min–max) | target | \
             | CPU per message (sender + receiver), denominator ÷ numerator |\n\
             |---|---|---|---|---|---|\n",
        );
        for r in rows {
            md.push_str(&r);
            md.push('\n');
        }
    }
    if !checks.is_empty() {
        md.push_str("\nTransport in use, checked after the warm-up:\n\n");
        for c in &checks {
            let _ = writeln!(md, "* {c}");
        }
    }
    print!("{md}");
    if let Some(p) = &a.out {
        std::fs::write(p, &md).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}
