//! erldist against a C node built on OTP's own libei (Debian's erlang-dev
//! `erl_interface`): `erldist ping`, `send` and `rpc` to it succeed, a
//! monitor of it fires `noconnection` when it goes, and it never receives
//! a control message its handshake did not offer.
//!
//! The C node (`tests/cnode/cnode.c`) is compiled with gcc into a
//! temporary directory, registers with a private-port epmdx through
//! `ei_publish`, and reports every control op it reads from the wire
//! (before libei parses it), so an op libei would reject is seen too.

mod transport_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use erl_term::Term;
use erldist::op_flags;
use erldist::{Node, NodeConfig};
use test_support::{wait_until, Subject};
use transport_support::*;

/// erl_interface's directory, from the installed OTP itself.
fn erl_interface_dir() -> PathBuf {
    let out = Command::new("erl")
        .args([
            "-noshell",
            "-eval",
            "io:format(\"~s\", [code:lib_dir(erl_interface)]), halt().",
        ])
        .env_remove("ERL_EPMD_PORT")
        .stdin(Stdio::null())
        .output()
        .expect("run erl to find erl_interface");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        dir.join("include/ei.h").exists(),
        "erl_interface not found at {} (Debian package erlang-dev)",
        dir.display()
    );
    dir
}

/// Compiles the C node into `dir`.
fn build_cnode(dir: &Path) -> PathBuf {
    let ei = erl_interface_dir();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cnode/cnode.c");
    let bin = dir.join("cnode");
    let mut cmd = Command::new("gcc");
    cmd.args(["-Wall", "-O1", "-D_REENTRANT", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg(format!("-I{}", ei.join("include").display()))
        .arg(format!("-L{}", ei.join("lib").display()))
        .arg("-lei");
    let o = run_cmd(cmd, 60);
    assert!(
        o.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

/// The running C node and every line it printed; killed by PID on drop
/// (its per-connection children follow through PR_SET_PDEATHSIG).
struct CNode {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl CNode {
    fn start(bin: &Path, alive: &str, epmd_port: u16) -> Self {
        let mut child = Command::new(bin)
            .args([alive, COOKIE])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the C node");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let c = Self { child, lines };
        assert!(
            c.wait_line(|l| l.starts_with("ready ")),
            "the C node did not publish: {:?}",
            c.lines()
        );
        c
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn wait_line(&self, f: impl Fn(&str) -> bool) -> bool {
        wait_until(Duration::from_secs(LONG), || {
            self.lines().iter().any(|l| f(l))
        })
    }

    /// Every op the C node read.
    fn ops(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("op ").map(str::to_owned))
            .collect()
    }
}

impl Drop for CNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libei_cnode_ping_send_rpc_and_only_negotiated_ops() {
    let d = daemon(Subject::Epmdx);
    let tmp = tmp("cnode");
    let bin = blocking(|| build_cnode(tmp.path()));
    let alive = format!("c_{}", d.port);
    let peer = format!("{alive}@localhost");
    let mut cnode = blocking(|| CNode::start(&bin, &alive, d.port));
    let port = d.port.to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--cookie", COOKIE, "--epmd-port", &port]);
        erldist(&all, tmp.path())
    };

    // The CLI: ping (net_kernel's is_auth), send, rpc (rex's $gen_call).
    assert_eq!(expect_code(cli(&["ping", &peer]), 0).trim(), "pong");
    expect_code(cli(&["send", &peer, "inbox", "{hello, [a, b], 42}"]), 0);
    assert!(
        cnode.wait_line(|l| l == "got inbox {hello, [a, b], 42}"),
        "the message did not arrive: {:?}",
        cnode.lines()
    );
    let out = expect_code(cli(&["rpc", &peer, "erlang", "node", "[]"]), 0);
    assert_eq!(out.trim(), "{cnode_rpc,erlang,node}");

    // The library: the flags libei offered, a monitor of a name on the C
    // node, and its DOWN when the C node goes.
    let mut cfg = NodeConfig::new(format!("rs_{}@localhost", d.port), COOKIE);
    cfg.listen = Vec::new();
    cfg.epmd_port = d.port;
    let node = within(LONG, "start", Node::start(cfg))
        .await
        .expect("start");
    within(LONG, "connect", node.connect(&peer))
        .await
        .expect("connect to the C node");
    let flags = node.connections()[0].flags;
    let mut mb = node.mailbox();
    let mref = within(LONG, "monitor", mb.monitor_named("inbox", &peer))
        .await
        .expect("monitor");
    within(
        LONG,
        "send",
        mb.send_named("inbox", &peer, Term::atom("after_monitor")),
    )
    .await
    .expect("send after the monitor");
    assert!(
        cnode.wait_line(|l| l == "got inbox after_monitor"),
        "the connection did not survive the monitor: {:?}",
        cnode.lines()
    );

    // Every op the C node saw, from the CLI's connections and the
    // library's (both offer the same flags, and libei's are fixed), is one
    // its handshake allowed.
    let ops = cnode.ops();
    assert!(!ops.is_empty());
    for op in &ops {
        let n: i64 = op
            .parse()
            .unwrap_or_else(|_| panic!("an op the C node could not parse: {op}"));
        assert!(
            op_flags::permits(flags, n),
            "the C node got op {n}, which flags {flags:#x} do not allow; all: {ops:?}"
        );
    }

    // The C node goes: the monitor (kept locally when the flags do not
    // allow MONITOR_P) fires with noconnection.
    let _ = cnode.child.kill();
    let down = within(LONG, "DOWN", async {
        loop {
            match mb.recv().await {
                Some(Term::Tuple(e)) if e.len() == 5 && e[1] == Term::Reference(mref.clone()) => {
                    break e
                }
                Some(_) => continue,
                None => panic!("mailbox closed"),
            }
        }
    })
    .await;
    assert_eq!(down[0], Term::atom("DOWN"));
    assert_eq!(down[4], Term::atom("noconnection"));
}
