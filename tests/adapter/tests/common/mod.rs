//! Helpers for the Erlang adapter tests.
//!
//! Every test owns a [`Fixture`]: a private epmdx daemon (never port 4369),
//! a fresh development CA with one certificate for every node (SAN
//! `localhost`, `127.0.0.1`, `::1`), an `ssl_dist` options file, and a Unix
//! socket directory. Erlang nodes are `test_support::erl::ErlNode`s
//! (`-start_epmd false`, `ERL_EPMD_PORT`, killed by PID on drop); Rust nodes
//! are `erldist serve` processes, killed by PID on drop.
//!
//! The adapter is compiled once per test binary with `erlang/build.sh` into
//! `target/<profile>/erlang/ebin` (the script locks and only rebuilds stale
//! modules, so concurrent test binaries are fine).
//!
//! Running: `cargo build --bins && cargo test -p epmdx-erlang-adapter`.
//! Needs Debian's `erlang-base`, `erlang-ssl`, `erlang-public-key` and
//! `erlang-crypto` (OTP 25), and `flock` (util-linux).

#![allow(dead_code, unused_imports, unreachable_pub)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
pub use test_support::erl::{ErlNode, TempDir};
pub use test_support::{epmdx_bin, free_port, is_registered, wait_until, Daemon, Subject};

/// Every node of these tests uses this cookie.
pub const COOKIE: &str = "epmdx_adapter_cookie";
/// Deadline for registrations, connections and log lines to show up.
pub const WAIT: Duration = Duration::from_secs(30);

/// `target/<profile>`, where cargo put the binaries and this test.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build(out: &Path, src: Option<&Path>) -> Result<PathBuf, String> {
    let script = repo_root().join("erlang/build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(out);
    if let Some(s) = src {
        cmd.arg(s);
    }
    let o = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !o.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(out.to_path_buf())
}

/// The compiled adapter (`erlang/src`).
pub fn ebin() -> &'static Path {
    static EBIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match EBIN.get_or_init(|| build(&target_dir().join("erlang/ebin"), None)) {
        Ok(p) => p,
        Err(e) => panic!("building the Erlang adapter: {e}"),
    }
}

/// The tests' own Erlang helpers (`tests/adapter/erlang`).
pub fn test_ebin() -> &'static Path {
    static EBIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let src = repo_root().join("tests/adapter/erlang");
    match EBIN.get_or_init(|| build(&target_dir().join("erlang/test-ebin"), Some(&src))) {
        Ok(p) => p,
        Err(e) => panic!("building the test selectors: {e}"),
    }
}

/// `$ERLDIST_BIN`, else `target/<profile>/erldist`.
pub fn erldist_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ERLDIST_BIN") {
        return PathBuf::from(p);
    }
    let p = target_dir().join("erldist");
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bins` first or set ERLDIST_BIN",
        p.display()
    );
    p
}

/// A private daemon, certificates and a socket directory for one test.
#[derive(Debug)]
pub struct Fixture {
    /// The epmdx daemon (or OTP's epmd) on a private port.
    pub daemon: Daemon,
    /// Certificates, the ssl_dist options file and the sockets' directory
    /// live in here.
    pub dir: TempDir,
}

impl Fixture {
    /// An epmdx daemon and fresh certificates.
    pub fn new() -> Result<Self> {
        Self::with_subject(Subject::Epmdx)
    }

    /// The given daemon and fresh certificates.
    pub fn with_subject(subject: Subject) -> Result<Self> {
        let daemon = Daemon::start(subject, &[])?;
        let dir = TempDir::new("adapter")?;
        let certs = dir.path().join("certs");
        let o = Command::new(erldist_bin())
            .args(["gen-certs", "--dir"])
            .arg(&certs)
            .args(["--node", "node", "--host", "localhost"])
            .args(["--host", "127.0.0.1", "--host", "::1"])
            .output()
            .context("erldist gen-certs")?;
        ensure!(o.status.success(), "erldist gen-certs: {o:?}");
        let c = |f: &str| certs.join(f).display().to_string();
        let (cert, key, ca) = (c("node.pem"), c("node-key.pem"), c("ca.pem"));
        let opts = format!(
            "[{{server, [{{certfile, \"{cert}\"}}, {{keyfile, \"{key}\"}}, \
             {{cacertfile, \"{ca}\"}}, {{verify, verify_peer}}, \
             {{fail_if_no_peer_cert, true}}]}},\n \
             {{client, [{{certfile, \"{cert}\"}}, {{keyfile, \"{key}\"}}, \
             {{cacertfile, \"{ca}\"}}, {{verify, verify_peer}}]}}].\n"
        );
        std::fs::write(dir.path().join("ssl_dist.conf"), opts)?;
        Ok(Self { daemon, dir })
    }

    /// The daemon's port.
    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// The `ssl_dist` options file for `-ssl_dist_optfile`.
    pub fn ssl_optfile(&self) -> PathBuf {
        self.dir.path().join("ssl_dist.conf")
    }

    /// Certificate, key and CA, for `erldist --tls-cert/--tls-key/--tls-ca`.
    pub fn tls_files(&self) -> [PathBuf; 3] {
        let c = self.dir.path().join("certs");
        [c.join("node.pem"), c.join("node-key.pem"), c.join("ca.pem")]
    }

    /// The Unix sockets' directory (created by the nodes, mode 0700).
    pub fn uds_dir(&self) -> PathBuf {
        self.dir.path().join("uds")
    }

    /// The flags that make a stock node use the adapter with the given
    /// `-proto_dist` modules (`epmdx_tcp`, `epmdx_tls`, `epmdx_uds`, ...),
    /// then `extra`.
    pub fn adapter_args(&self, protos: &[&str], extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "-pa".into(),
            ebin().display().to_string(),
            "-epmd_module".into(),
            "epmdx_epmd".into(),
            "-proto_dist".into(),
        ];
        a.extend(protos.iter().map(|p| p.to_string()));
        a.extend(self.tls_args());
        a.extend([
            "-kernel".into(),
            "epmdx_uds_dir".into(),
            format!("\"{}\"", self.uds_dir().display()),
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// `-ssl_dist_optfile` for the fixture's certificates.
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "-ssl_dist_optfile".into(),
            self.ssl_optfile().display().to_string(),
        ]
    }

    /// Starts `erl -sname name@localhost` against the fixture's daemon.
    pub fn erl(&self, name: &str, args: &[String]) -> Result<ErlNode> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ErlNode::start(&format!("{name}@localhost"), COOKIE, self.port(), &refs)
    }

    /// Starts an Erlang node with the adapter.
    pub fn adapted(&self, name: &str, protos: &[&str], extra: &[&str]) -> Result<ErlNode> {
        self.erl(name, &self.adapter_args(protos, extra))
    }

    /// `epmdx nodes --port P` (NAMES3), one line per node.
    pub fn epmdx_nodes(&self) -> Result<String> {
        let o = Command::new(epmdx_bin())
            .args(["nodes", "--port", &self.port().to_string()])
            .output()
            .context("epmdx nodes")?;
        ensure!(o.status.success(), "epmdx nodes: {o:?}");
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The `epmdx nodes` line of `alive`, once it shows `want`.
    pub fn wait_nodes_line(&self, alive: &str, want: impl Fn(&str) -> bool) -> Result<String> {
        let prefix = format!("name {alive} at port");
        let mut last = String::new();
        let ok = wait_until(WAIT, || {
            last = self.epmdx_nodes().unwrap_or_else(|e| format!("{e:#}"));
            last.lines().any(|l| l.starts_with(&prefix) && want(l))
        });
        ensure!(
            ok,
            "epmdx nodes never showed the expected line for {alive}:\n{last}"
        );
        Ok(last
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_default()
            .to_owned())
    }

    /// Starts `erldist serve --name name@localhost` with `args`.
    pub fn rust_node(&self, name: &str, args: &[&str]) -> Result<RustNode> {
        RustNode::start(self, name, args)
    }

    /// Runs an `erldist` client command against the fixture's daemon.
    pub fn erldist(&self, args: &[&str]) -> Result<Output> {
        Command::new(erldist_bin())
            .args(args)
            .args(["--cookie", COOKIE, "--epmd-port", &self.port().to_string()])
            .env("HOME", self.dir.path())
            .output()
            .context("erldist")
    }
}

/// A running `erldist serve` node, killed by PID on drop.
#[derive(Debug)]
pub struct RustNode {
    child: Option<Child>,
    log: PathBuf,
    /// The full node name.
    pub node: String,
}

impl RustNode {
    fn start(fx: &Fixture, name: &str, args: &[&str]) -> Result<Self> {
        let node = format!("{name}@localhost");
        let log = fx.dir.path().join(format!("{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(erldist_bin())
            .args(["serve", "--name", &node, "--cookie", COOKIE])
            .args(["--epmd-port", &fx.port().to_string()])
            .args(args)
            .env("HOME", fx.dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawn erldist serve")?;
        let mut me = Self {
            child: Some(child),
            log,
            node,
        };
        let mut exited = false;
        let up = wait_until(WAIT, || {
            if let Some(c) = me.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    exited = true;
                    return true;
                }
            }
            me.output().contains("listening on")
        });
        ensure!(
            up && !exited,
            "erldist serve {name} did not come up:\n{}",
            me.output()
        );
        Ok(me)
    }

    /// What the node logged so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RustNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a node says about its live connection to a peer, read from the
/// connection itself: the distribution controller
/// (`erlang:system_info(dist_ctrl)`) is a socket port for TCP and Unix
/// sockets (its own address tells which) and a `tls_sender` process for
/// TLS; `net_kernel:node_info/2` gives the recorded address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    /// `inet_tcp`, `inet6_tcp`, `inet_tls`, `inet6_tls` or `uds`.
    pub transport: String,
    /// The peer's port (its listen port when this node dialled), 0 for a
    /// Unix socket.
    pub peer_port: u16,
    /// `#net_address.protocol` (`tcp`, `tls`).
    pub protocol: String,
    /// `#net_address.family` (`inet`, `inet6`, `local`).
    pub family: String,
}

/// Needs no adapter module, so it works on stock nodes too.
const CONN_EXPR: &str = "N = 'PEER', \
    {N, C} = lists:keyfind(N, 1, erlang:system_info(dist_ctrl)), \
    {ok, {net_address, Addr, _, Proto, Fam}} = net_kernel:node_info(N, address), \
    Kind = if is_port(C) -> case inet:sockname(C) of \
                {ok, {local, _}} -> uds; \
                {ok, {{_, _, _, _}, _}} -> inet_tcp; \
                {ok, {{_, _, _, _, _, _, _, _}, _}} -> inet6_tcp end; \
              is_pid(C) -> {tls_sender, _, _} = proc_lib:translate_initial_call(C), \
                case Addr of {{_, _, _, _}, _} -> inet_tls; _ -> inet6_tls end end, \
    Port = if is_port(C) -> case inet:peername(C) of \
                {ok, {_, P}} when is_integer(P) -> P; _ -> 0 end; \
              true -> case Addr of {_, P} when is_integer(P) -> P; _ -> 0 end end, \
    {Kind, Port, Proto, Fam}.";

/// The connection from `node` to `peer`, once it is up (the accepting side
/// marks it up a moment after the dialling side).
pub fn conn(node: &mut ErlNode, peer: &str) -> Result<Conn> {
    let expr = CONN_EXPR.replace("PEER", peer);
    let mut last = String::new();
    let mut got = None;
    let up = wait_until(WAIT, || match node.eval(&expr) {
        Ok(v) => {
            got = Some(v);
            true
        }
        Err(e) => {
            last = format!("{e:#}");
            false
        }
    });
    let v = match (up, got) {
        (true, Some(v)) => v,
        _ => bail!("{}: no connection to {peer}: {last}", node.node()),
    };
    let inner = v
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| anyhow!("unexpected connection info {v}"))?;
    let f: Vec<&str> = inner.split(',').collect();
    ensure!(f.len() == 4, "unexpected connection info {v}");
    Ok(Conn {
        transport: f[0].to_owned(),
        peer_port: f[1].parse().context("peer port")?,
        protocol: f[2].to_owned(),
        family: f[3].to_owned(),
    })
}

/// `net_adm:ping(Peer)` on `node`.
pub fn ping(node: &mut ErlNode, peer: &str) -> Result<String> {
    node.eval(&format!("net_adm:ping('{peer}')."))
}

/// Pings until `pong` (the peer may still be registering).
pub fn ping_until_pong(node: &mut ErlNode, peer: &str) -> Result<()> {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        last = ping(node, peer).unwrap_or_else(|e| format!("{e:#}"));
        last == "pong"
    });
    ensure!(
        ok,
        "{} could not reach {peer}: {last}; output:\n{}",
        node.node(),
        node.output()
    );
    Ok(())
}

/// The port a node registered for `proto`, from its `epmdx nodes` line
/// (`name s at port 40731#inet_tcp 46045#inet_tls 0#uds(/path)`).
pub fn port_of(line: &str, proto: &str) -> Option<u16> {
    line.split_whitespace().find_map(|w| {
        let (port, rest) = w.split_once('#')?;
        let p = rest.split('(').next()?;
        (p == proto).then(|| port.parse().ok()).flatten()
    })
}

/// Waits until `node`'s output contains `text`.
pub fn wait_output(node: &ErlNode, text: &str) -> Result<()> {
    let ok = wait_until(WAIT, || node.output().contains(text));
    ensure!(
        ok,
        "{} never logged {text:?}; output:\n{}",
        node.node(),
        node.output()
    );
    Ok(())
}
