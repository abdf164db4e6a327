//! The Rust side: the sink (run in a child process, `dist-bench sink`), the
//! sender, and handshake timing with fresh nodes.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use erl_term::Term;
use erldist::{Mailbox, Node, NodeConfig};

/// Name of the receiving process on every node.
pub(crate) const SINK: &str = "sink";

/// A node config on the benchmark's private EPMD.
pub(crate) fn config(name: &str, cookie: &str, epmd_port: u16) -> NodeConfig {
    let mut cfg = NodeConfig::new(name, cookie);
    cfg.epmd_port = epmd_port;
    cfg
}

/// The sink protocol, as in `distbench.erl`: `{go, From, N}`, then count N
/// messages, then `From ! done`.
pub(crate) async fn sink_loop(mut mb: Mailbox) {
    let go = Term::atom("go");
    while let Some(m) = mb.recv().await {
        let Term::Tuple(t) = &m else { continue };
        let (3, Some(tag), Some(Term::Pid(from)), Some(Term::Integer(n))) =
            (t.len(), t.first(), t.get(1), t.get(2))
        else {
            continue;
        };
        if *tag != go {
            continue;
        }
        for _ in 0..*n {
            if mb.recv().await.is_none() {
                return;
            }
        }
        let _ = mb.send(from, Term::atom("done")).await;
    }
}

/// `dist-bench sink`: a Rust node with a registered `sink`, in its own
/// process (as each Erlang node has its own VM). Prints `ready` once
/// registered with EPMD; exits when stdin closes.
pub(crate) fn run_sink_process(name: &str, cookie: &str, epmd_port: u16) -> Result<()> {
    run_sink_nodes(vec![config(name, cookie, epmd_port)])
}

/// Starts one node per configuration, each with a registered `sink`, on
/// one runtime; prints `ready NAME...` once all are registered with EPMD;
/// stops them when stdin closes.
pub(crate) fn run_sink_nodes(cfgs: Vec<NodeConfig>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut nodes = Vec::new();
        for cfg in cfgs {
            let name = cfg.name.clone();
            let node = Node::start(cfg)
                .await
                .with_context(|| format!("start sink node {name}"))?;
            let mb = node.register_mailbox(SINK)?;
            tokio::spawn(sink_loop(mb));
            nodes.push(node);
        }
        // The parent waits for this line.
        let names: Vec<&str> = nodes.iter().map(Node::name).collect();
        let mut out = std::io::stdout();
        writeln!(out, "ready {}", names.join(" "))?;
        out.flush()?;
        // Stdin EOF (parent gone or done) ends the process.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            while matches!(lock.read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
            }
        })
        .await?;
        for n in &nodes {
            n.stop();
        }
        Ok(())
    })
}

/// Sends `{go, self(), n}` and `n` binaries of `size` bytes to
/// `{sink, peer}`, and waits for `done`. Returns the time from the first
/// send to `done`.
pub(crate) async fn send(
    node: Node,
    peer: String,
    size: usize,
    n: u64,
    timeout: Duration,
) -> Result<Duration> {
    let mut mb = node.mailbox();
    let payload = erl_term::Bytes::from(vec![0xabu8; size]);
    let go = Term::Tuple(vec![
        Term::atom("go"),
        Term::Pid(mb.pid().clone()),
        Term::Integer(i64::try_from(n)?),
    ]);
    let t0 = Instant::now();
    mb.send_named(SINK, &peer, go).await?;
    for _ in 0..n {
        // A clone of the payload is a reference count, not a copy: the
        // binary is written from this one buffer every time.
        mb.send_named(SINK, &peer, Term::Binary(payload.clone()))
            .await?;
    }
    let done = Term::atom("done");
    loop {
        match mb.recv_timeout(timeout).await {
            Some(m) if m == done => return Ok(t0.elapsed()),
            Some(_) => continue,
            None => bail!("no `done` from {peer} within {timeout:?}"),
        }
    }
}

/// Starts a fresh node `name` and times `node.connect(peer)` (EPMD lookup,
/// TCP connect, handshake); stops the node afterwards.
pub(crate) async fn handshake(
    name: &str,
    cookie: &str,
    epmd_port: u16,
    peer: &str,
) -> Result<Duration> {
    Ok(handshake_with(config(name, cookie, epmd_port), peer)
        .await?
        .0)
}

/// Starts a fresh node from `cfg` and times `node.connect(peer)` (EPMD
/// lookup, transport connect including TLS, distribution handshake);
/// returns the time and the transport the connection uses. Stops the node
/// afterwards.
pub(crate) async fn handshake_with(cfg: NodeConfig, peer: &str) -> Result<(Duration, String)> {
    let name = cfg.name.clone();
    let node = Node::start(cfg)
        .await
        .with_context(|| format!("start {name}"))?;
    let t0 = Instant::now();
    let r = node.connect(peer).await;
    let dt = t0.elapsed();
    let transport = node
        .connections()
        .into_iter()
        .find(|c| c.peer == peer)
        .map(|c| c.transport.name().to_owned())
        .unwrap_or_default();
    node.stop();
    r.map_err(|e| anyhow!("{name} -> {peer}: {e}"))?;
    Ok((dt, transport))
}
