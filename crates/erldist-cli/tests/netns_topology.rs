//! Transport selection across a real multi-host topology, built from
//! network namespaces: the rule policy (`--policy rules`) must pick a Unix
//! socket between nodes on one host, plain TCP across one subnet, and TLS
//! across a router, and both ends of each connection must report the same
//! transport.
//!
//! ```text
//!        subnet 10.231.1.0/24                 subnet 10.231.2.0/24
//!   h1 10.231.1.1 ──┐
//!     a, b          ├── br1 10.231.1.254 [router r] 10.231.2.254 ── h3 10.231.2.3
//!   h2 10.231.1.2 ──┘      (ip_forward=1 in r only)                     d (erldist serve)
//!     c
//! ```
//!
//! Every host runs its own `epmdx` on port 4371 (inside its namespace; never
//! 4369). `a`, `b` and `c` are this test binary re-run inside their host's
//! namespace with `ERLDIST_NETNS_ROLE=node` ([`netns_node_helper`]): an
//! `erldist::Node` with the rule policy that connects to peers on request
//! and reports its connections, because `erldist serve` cannot be told to
//! dial another node. `d` is a real `erldist serve`. Every node listens on
//! `inet_tcp`, `inet_tls` and `uds` (its own `--uds-dir`), with certificates
//! from `erldist gen-certs` carrying every host's IP as a SAN, and is named
//! after its host's IP so no name needs DNS.
//!
//! Connections made: a→b, a→c, a→d, c→b, c→d. Each node's view is read
//! twice: from the node itself (helpers only) and with
//! `erldist connections NODE` run in the node's namespace.
//!
//! Needs root and iproute2; without them the test fails with a clear
//! message. `ERLDIST_SKIP_NETNS=1` skips it explicitly. Namespaces are named
//! `edt<pid><role>`; they, the processes in them and the temp directory are
//! removed even when the test panics, and leftovers of an earlier run that
//! was killed (its pid gone) are removed first. Nothing is added to the
//! host's own namespace: every veth is created directly between the test's
//! namespaces.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};

const SKIP_ENV: &str = "ERLDIST_SKIP_NETNS";
const ROLE_ENV: &str = "ERLDIST_NETNS_ROLE";
/// The EPMD port inside every namespace.
const EPMD_PORT: u16 = 4371;
const COOKIE: &str = "netns-topology-cookie";
/// Namespace names: `edt<pid><role>`.
const NS_PREFIX: &str = "edt";
/// Temp directories: `<tmp>/erldist-netns-<pid>`.
const DIR_PREFIX: &str = "erldist-netns-";
/// Marks the helper's protocol lines in its stdout (libtest prints its own
/// lines around them, sometimes on the same line).
const MARK: &str = "@@ ";

const IP_H1: &str = "10.231.1.1";
const IP_H2: &str = "10.231.1.2";
const IP_H3: &str = "10.231.2.3";
const GW_1: &str = "10.231.1.254";
const GW_2: &str = "10.231.2.254";

const A: &str = "a@10.231.1.1";
const B: &str = "b@10.231.1.1";
const C: &str = "c@10.231.1.2";
const D: &str = "d@10.231.2.3";
const NODES: [&str; 4] = [A, B, C, D];

// ---------------------------------------------------------------------------
// The helper node, run inside a namespace
// ---------------------------------------------------------------------------

/// Not a test of its own: the node that [`three_hosts_two_subnets`] runs
/// inside a namespace (`ip netns exec NS <this binary> netns_node_helper
/// --exact`). Without `ERLDIST_NETNS_ROLE=node` it does nothing.
///
/// Environment: `NETNS_NODE_NAME`, `NETNS_CERT_DIR` (with `<alive>.pem`,
/// `<alive>-key.pem`, `ca.pem`), `NETNS_UDS_DIR`, `ERL_EPMD_PORT`,
/// `NETNS_COOKIE`. It prints `@@ READY <name>` (or `@@ FAILED <why>`), then
/// answers lines on stdin:
/// - `CONNECT <peer>`: connects and pings; `@@ CONNECT <peer> ok` or
///   `@@ CONNECT <peer> err <why>`;
/// - `CONNS`: `@@ CONN <peer> <transport>` per live connection, then
///   `@@ END`.
///
/// It stops when stdin closes.
#[test]
fn netns_node_helper() {
    if std::env::var(ROLE_ENV).as_deref() != Ok("node") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(helper_main()) {
        println!("{MARK}FAILED {e:#}");
    }
}

async fn helper_main() -> Result<()> {
    use erldist::policy::{RuleConfig, RulePolicy};
    use erldist::transport::tls::TlsFiles;
    use erldist::transport::{ListenSpec, Proto};
    use erldist::{Node, NodeConfig};

    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    let name = var("NETNS_NODE_NAME")?;
    let alive = name.split('@').next().unwrap_or_default().to_owned();
    let certs = PathBuf::from(var("NETNS_CERT_DIR")?);
    let mut cfg = NodeConfig::new(name.clone(), var("NETNS_COOKIE")?);
    cfg.listen = vec![
        ListenSpec::any(Proto::InetTcp),
        ListenSpec::any(Proto::InetTls),
        ListenSpec::any(Proto::Uds),
    ];
    cfg.tls = Some(TlsFiles {
        cert: certs.join(format!("{alive}.pem")),
        key: certs.join(format!("{alive}-key.pem")),
        ca: certs.join("ca.pem"),
    });
    cfg.uds_dir = PathBuf::from(var("NETNS_UDS_DIR")?);
    cfg.policy = Arc::new(RulePolicy::new(&RuleConfig::default())?);
    cfg.epmd_port = var("ERL_EPMD_PORT")?.parse()?;
    // Generous: two shared cores, several nodes and TLS handshakes at once.
    cfg.setup_time = Duration::from_secs(15);
    let node = Node::start(cfg).await.context("start the node")?;
    ensure!(
        node.registered_extended(),
        "{name} registered with ALIVE2, not the epmdx extension"
    );
    println!("{MARK}READY {} {:?}", node.name(), node.transports());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line.trim();
        match line.split_once(' ') {
            Some(("CONNECT", peer)) => {
                let r = match node.connect(peer).await {
                    Ok(()) if node.ping(peer).await => "ok".to_owned(),
                    Ok(()) => "err connected, but the ping was not answered".to_owned(),
                    Err(e) => format!("err {e}"),
                };
                println!("{MARK}CONNECT {peer} {r}");
            }
            None if line == "CONNS" => {
                for c in node.connections() {
                    println!("{MARK}CONN {} {}", c.peer, c.transport);
                }
                println!("{MARK}END");
            }
            _ => println!("{MARK}UNKNOWN {line}"),
        }
    }
    node.stop();
    // Let the listeners drop their sockets (and the Unix socket file).
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Commands and processes
// ---------------------------------------------------------------------------

/// Runs a command to completion, killing it after `limit`.
fn run_cmd(cmd: &mut Command, limit: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn ip(args: &[&str]) -> Result<String> {
    let out = run_cmd(Command::new("ip").args(args), Duration::from_secs(20))
        .with_context(|| format!("running `ip {}`", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec NS program args`, to completion.
fn ns_run(ns: &str, program: &Path, args: &[&str], limit: Duration) -> Result<Output> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .env("ERL_EPMD_PORT", EPMD_PORT.to_string());
    run_cmd(&mut cmd, limit)
}

fn kill_pid(pid: i32) {
    if pid > 1 {
        // SAFETY: kill(2) on a pid that belongs to a process this test (or a
        // killed earlier run of it) started inside its own namespace.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// A long-running process inside a namespace. `ip netns exec` execs the
/// program in place, so the child's pid is the program's; it is killed by
/// that pid when dropped.
struct Proc {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout_seen: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
    /// Closing stdin stops it (helper nodes): give it a moment first.
    graceful: bool,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("label", &self.label)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Proc {
    fn spawn(
        label: &str,
        ns: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: PathBuf,
        with_stdin: bool,
    ) -> Result<Self> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .env("ERL_EPMD_PORT", EPMD_PORT.to_string())
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            File::create(&log).with_context(|| format!("create {}", log.display()))?,
        ));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {label}: {cmd:?}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                seen2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            label: label.to_owned(),
            child,
            stdin,
            lines: rx,
            stdout_seen: seen,
            log,
            graceful: with_stdin,
        })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The next stdout line `pick` accepts (earlier ones are skipped), or an
    /// error if the process exits or `limit` passes first.
    fn expect<T>(&mut self, limit: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    if let Some(t) = pick(&line) {
                        return Ok(t);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().ok();
                    bail!("{} closed its stdout (exit status {st:?})", self.label);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        bail!("{} gave no expected answer within {limit:?}", self.label);
                    }
                }
            }
        }
    }

    /// The helper's protocol line after the marker, if `line` has one.
    fn marked(line: &str) -> Option<&str> {
        line.split_once(MARK).map(|(_, rest)| rest.trim_end())
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("write to {}", self.label))
    }

    /// Stdout seen so far and the end of the stderr log, for failures.
    fn diagnostics(&self) -> String {
        let out = self
            .stdout_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {} (pid {}) stdout:\n{out}\n--- {} stderr (last 40 lines of {}):\n{}\n",
            self.label,
            self.child.id(),
            self.label,
            self.log.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.graceful {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(2) {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The topology
// ---------------------------------------------------------------------------

/// The four namespaces and the temp directory; deleted on drop, with any
/// process still inside them.
#[derive(Debug)]
struct Topology {
    router: String,
    h1: String,
    h2: String,
    h3: String,
    dir: PathBuf,
}

impl Topology {
    fn create() -> Result<Self> {
        Self::remove_stale();
        let pid = std::process::id();
        let ns = |role: &str| format!("{NS_PREFIX}{pid}{role}");
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        // From here on, drop cleans up whatever was built.
        let t = Self {
            router: ns("r"),
            h1: ns("h1"),
            h2: ns("h2"),
            h3: ns("h3"),
            dir,
        };
        for n in t.all() {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        let r = t.router.as_str();
        // Subnet 1: a bridge in the router, one port per host.
        ip(&["-n", r, "link", "add", "br1", "type", "bridge"])?;
        ip(&["-n", r, "addr", "add", &format!("{GW_1}/24"), "dev", "br1"])?;
        ip(&["-n", r, "link", "set", "br1", "up"])?;
        for (port, host, addr, gw) in [
            ("ph1", &t.h1, IP_H1, GW_1),
            ("ph2", &t.h2, IP_H2, GW_1),
            ("ph3", &t.h3, IP_H3, GW_2),
        ] {
            ip(&[
                "-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host,
            ])?;
            if port == "ph3" {
                // Subnet 2: a routed link from the router to h3.
                ip(&["-n", r, "addr", "add", &format!("{GW_2}/24"), "dev", port])?;
            } else {
                ip(&["-n", r, "link", "set", port, "master", "br1"])?;
            }
            ip(&["-n", r, "link", "set", port, "up"])?;
            ip(&[
                "-n",
                host,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", host, "link", "set", "eth0", "up"])?;
            ip(&["-n", host, "route", "add", "default", "via", gw])?;
        }
        // Forwarding in the router's namespace only (the host's setting is
        // its own and untouched).
        let out = run_cmd(
            Command::new("ip").args([
                "netns",
                "exec",
                r,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward",
            ]),
            Duration::from_secs(20),
        )?;
        ensure!(
            out.status.success(),
            "cannot enable ip_forward in {r}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t)
    }

    fn all(&self) -> [&str; 4] {
        [&self.router, &self.h1, &self.h2, &self.h3]
    }

    /// Kills what runs inside `ns` and deletes it.
    fn destroy(ns: &str) {
        if let Ok(pids) = ip(&["netns", "pids", ns]) {
            for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                kill_pid(p);
            }
        }
        let _ = ip(&["netns", "del", ns]);
    }

    /// Removes namespaces and temp directories that an earlier run left
    /// behind when it was killed before its cleanup ran: only names this
    /// test creates, for pids that no longer exist.
    fn remove_stale() {
        let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
        if let Ok(list) = ip(&["netns", "list"]) {
            for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
                let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                    continue;
                };
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let role = &rest[digits.len()..];
                if digits.is_empty() || !["r", "h1", "h2", "h3"].contains(&role) || alive(&digits) {
                    continue;
                }
                Self::destroy(name);
            }
        }
        if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(DIR_PREFIX) {
                    if pid.parse::<u32>().is_ok() && !alive(pid) {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in self.all() {
            Self::destroy(n);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// The processes of one run, so a failure can show their output.
#[derive(Debug, Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn diagnostics(&self) -> String {
        self.0.iter().map(Proc::diagnostics).collect()
    }
}

/// peer -> transport, as one node sees it.
type View = BTreeMap<String, String>;

fn view(pairs: &[(&str, &str)]) -> View {
    pairs
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect()
}

fn expected() -> BTreeMap<&'static str, View> {
    BTreeMap::from([
        (A, view(&[(B, "uds"), (C, "inet_tcp"), (D, "inet_tls")])),
        (B, view(&[(A, "uds"), (C, "inet_tcp")])),
        (
            C,
            view(&[(A, "inet_tcp"), (B, "inet_tcp"), (D, "inet_tls")]),
        ),
        (D, view(&[(A, "inet_tls"), (C, "inet_tls")])),
    ])
}

#[test]
fn three_hosts_two_subnets() {
    if std::env::var(ROLE_ENV).is_ok() {
        // Inside a helper run: only `netns_node_helper` has work to do.
        return;
    }
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("{SKIP_ENV}=1: skipping the network-namespace topology test");
        return;
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (euid is {euid}) to create network namespaces and veth \
         pairs with `ip netns`; run it as root (CI does) or set {SKIP_ENV}=1 to skip it"
    );
    let ip_ok = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ip_ok,
        "this test needs iproute2's `ip` on PATH (apt-get install iproute2), \
         or {SKIP_ENV}=1 to skip it"
    );
    let erldist = PathBuf::from(env!("CARGO_BIN_EXE_erldist"));
    let epmdx = test_support::epmdx_bin();
    assert!(
        epmdx.exists(),
        "{} not found: run `cargo build --bins` first or set EPMDX_BIN",
        epmdx.display()
    );

    let t0 = Instant::now();
    let topo = Topology::create().unwrap_or_else(|e| {
        panic!(
            "cannot build the namespaces (root and iproute2 with veth and bridge support \
             are needed; {SKIP_ENV}=1 skips this test): {e:#}"
        )
    });
    let mut procs = Procs::default();
    if let Err(e) = run(&topo, &mut procs, &erldist, &epmdx) {
        let diag = procs.diagnostics();
        // Stop the processes before the namespaces go.
        drop(procs);
        drop(topo);
        panic!("{e:#}\n\n{diag}");
    }
    drop(procs);
    drop(topo);
    eprintln!("netns topology test done in {:?}", t0.elapsed());
}

fn run(topo: &Topology, procs: &mut Procs, erldist: &Path, epmdx: &Path) -> Result<()> {
    let dir = &topo.dir;
    let hosts = [(&topo.h1, IP_H1), (&topo.h2, IP_H2), (&topo.h3, IP_H3)];

    // Certificates for every node, valid for every host IP.
    let certs = dir.join("certs");
    let out = run_cmd(
        Command::new(erldist)
            .arg("gen-certs")
            .arg("--dir")
            .arg(&certs)
            .args([
                "--node", "a", "--node", "b", "--node", "c", "--node", "d", "--host", IP_H1,
                "--host", IP_H2, "--host", IP_H3,
            ]),
        Duration::from_secs(60),
    )?;
    ensure!(
        out.status.success(),
        "erldist gen-certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One epmdx per host.
    let port = EPMD_PORT.to_string();
    for (ns, _) in hosts {
        let p = Proc::spawn(
            &format!("epmdx in {ns}"),
            ns,
            epmdx,
            &["-port", &port],
            &[],
            dir.join(format!("epmdx-{ns}.log")),
            false,
        )?;
        procs.0.push(p);
    }
    for (ns, _) in hosts {
        let mut last = String::new();
        let up = test_support::wait_until(Duration::from_secs(20), || {
            match ns_run(
                ns,
                epmdx,
                &["-port", &port, "-names"],
                Duration::from_secs(10),
            ) {
                Ok(o) if o.status.success() => true,
                Ok(o) => {
                    last = String::from_utf8_lossy(&o.stderr).into_owned();
                    false
                }
                Err(e) => {
                    last = format!("{e:#}");
                    false
                }
            }
        });
        ensure!(up, "epmdx in {ns} does not answer on port {port}: {last}");
    }
    // Routing: h1 reaches h2 (bridge) and h3 (router), h3 reaches h1.
    for (from, to) in [(&topo.h1, IP_H2), (&topo.h1, IP_H3), (&topo.h3, IP_H1)] {
        let mut last = String::new();
        let ok = test_support::wait_until(Duration::from_secs(20), || {
            match ns_run(from, erldist, &["names", to], Duration::from_secs(10)) {
                Ok(o) if o.status.success() => true,
                Ok(o) => {
                    last = String::from_utf8_lossy(&o.stderr).into_owned();
                    false
                }
                Err(e) => {
                    last = format!("{e:#}");
                    false
                }
            }
        });
        ensure!(ok, "{from} cannot reach the epmdx on {to}: {last}");
    }

    // The nodes: helpers a, b (h1) and c (h2); `erldist serve` d (h3).
    let exe = std::env::current_exe()?;
    let mut helper = |name: &str, ns: &str| -> Result<usize> {
        let alive = name.split('@').next().unwrap_or_default();
        let env = [
            (ROLE_ENV, "node".to_owned()),
            ("NETNS_NODE_NAME", name.to_owned()),
            ("NETNS_COOKIE", COOKIE.to_owned()),
            ("NETNS_CERT_DIR", certs.display().to_string()),
            (
                "NETNS_UDS_DIR",
                dir.join(ns)
                    .join(format!("uds-{alive}"))
                    .display()
                    .to_string(),
            ),
        ];
        let p = Proc::spawn(
            name,
            ns,
            &exe,
            &[
                "netns_node_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ],
            &env,
            dir.join(format!("node-{alive}.log")),
            true,
        )?;
        procs.0.push(p);
        Ok(procs.0.len() - 1)
    };
    let ia = helper(A, &topo.h1)?;
    let ib = helper(B, &topo.h1)?;
    let ic = helper(C, &topo.h2)?;
    let d_uds = dir.join(&topo.h3).join("uds-d");
    let cert = |f: &str| certs.join(f).display().to_string();
    let d = Proc::spawn(
        D,
        &topo.h3,
        erldist,
        &[
            "serve",
            "--name",
            D,
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
            "--listen",
            "inet_tcp",
            "--listen",
            "inet_tls",
            "--listen",
            "uds",
            "--tls-cert",
            &cert("d.pem"),
            "--tls-key",
            &cert("d-key.pem"),
            "--tls-ca",
            &cert("ca.pem"),
            "--uds-dir",
            &d_uds.display().to_string(),
            "--policy",
            "rules",
        ],
        &[],
        dir.join("node-d.log"),
        false,
    )?;
    procs.0.push(d);
    let id = procs.0.len() - 1;

    let ready = Duration::from_secs(30);
    for i in [ia, ib, ic] {
        let p = &mut procs.0[i];
        let label = p.label.clone();
        p.expect(ready, |l| match Proc::marked(l) {
            Some(r) if r.starts_with("READY ") => Some(Ok(())),
            Some(r) if r.starts_with("FAILED ") => Some(Err(anyhow!("{label}: {r}"))),
            _ => None,
        })??;
    }
    let line = procs.0[id].expect(ready, |l| {
        l.starts_with("erldist: node ").then(|| l.to_owned())
    })?;
    ensure!(
        line.contains("uds:") && line.contains("inet_tls:") && line.contains("inet_tcp:"),
        "d does not listen on every transport: {line}"
    );
    ensure!(
        line.contains("registered with the epmdx extension"),
        "d did not register through the extension: {line}"
    );

    // The connections, each dialled by the first node.
    let connect = Duration::from_secs(40);
    for (from, to) in [(ia, B), (ia, C), (ia, D), (ic, B), (ic, D)] {
        let p = &mut procs.0[from];
        p.send(&format!("CONNECT {to}"))?;
        let label = p.label.clone();
        let r = p.expect(connect, |l| {
            let r = Proc::marked(l)?;
            let rest = r.strip_prefix("CONNECT ")?.strip_prefix(to)?.trim();
            Some(rest.to_owned())
        })?;
        ensure!(r == "ok", "{label} → {to}: {r}");
    }

    let want = expected();
    let mut report = String::new();
    // 1. Each helper's own report.
    for (i, name) in [(ia, A), (ib, B), (ic, C)] {
        let p = &mut procs.0[i];
        p.send("CONNS")?;
        let mut got = View::new();
        p.expect(connect, |l| {
            let r = Proc::marked(l)?;
            if r == "END" {
                return Some(());
            }
            if let Some((peer, tr)) = r.strip_prefix("CONN ").and_then(|c| c.split_once(' ')) {
                if NODES.contains(&peer) {
                    got.insert(peer.to_owned(), tr.to_owned());
                }
            }
            None
        })?;
        report += &format!("{name} (own report): {got:?}\n");
        ensure!(
            got == want[name],
            "{name}'s own report of its connections: got {got:?}, want {:?}",
            want[name]
        );
    }
    // 2. Every node asked with `erldist connections`, from its own host.
    for (q, (name, ns)) in [(A, &topo.h1), (B, &topo.h1), (C, &topo.h2), (D, &topo.h3)]
        .into_iter()
        .enumerate()
    {
        let host = name.split_once('@').map(|(_, h)| h).unwrap_or_default();
        let qname = format!("query{q}@{host}");
        let out = ns_run(
            ns,
            erldist,
            &[
                "connections",
                name,
                "--name",
                &qname,
                "--cookie",
                COOKIE,
                "--epmd-port",
                &port,
                "--policy",
                "rules",
                "--timeout",
                "30",
            ],
            Duration::from_secs(60),
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "erldist connections {name} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: View = stdout
            .lines()
            .filter_map(|l| {
                let (peer, tr) = l.trim().split_once(' ')?;
                let peer = peer.trim_matches('\'');
                NODES
                    .contains(&peer)
                    .then(|| (peer.to_owned(), tr.trim_matches('\'').to_owned()))
            })
            .collect();
        report += &format!("{name} (erldist connections): {got:?}\n");
        ensure!(
            got == want[name],
            "`erldist connections {name}`: got {got:?}, want {:?}\n(full output: {stdout})",
            want[name]
        );
    }
    eprintln!("{report}");
    Ok(())
}
