//! Helpers shared by the epmdx integration tests (`robustness.rs`,
//! `extension.rs`).
//!
//! Rules (see `test_support`): every daemon runs on a private port (never
//! 4369) and is killed by PID when its [`Daemon`] drops; waits poll a
//! condition against a generous deadline, because CI is a loaded 2-core box.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use epmd_client::{Client, Names3};
use epmd_proto::ext::{self, NodeRecord, Status, TransportRef};
use epmd_proto::legacy::Alive2Req;
use test_support::{Daemon, Subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline for one request that should be answered at once.
pub const ANSWER: Duration = Duration::from_secs(10);
/// Deadline for conditions that need the daemon to notice something.
pub const SETTLE: Duration = Duration::from_secs(20);

/// The epmdx binary under test: `$EPMDX_BIN` if set (as `test_support`
/// honours it too), else the one Cargo built for these tests.
pub fn epmdx_bin() -> PathBuf {
    std::env::var_os("EPMDX_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_epmdx")))
}

/// Starts epmdx on a private port with `args` and extra environment.
pub fn start_epmdx(args: &[&str], env: &[(&str, &str)]) -> Daemon {
    // test_support finds the binary next to the test executable; make sure
    // that is the one Cargo built for this package.
    let ours = std::fs::canonicalize(epmdx_bin()).expect("epmdx binary exists");
    let theirs = std::fs::canonicalize(Subject::Epmdx.bin()).expect("test_support epmdx");
    assert_eq!(
        ours, theirs,
        "test_support would start another epmdx binary; set EPMDX_BIN"
    );
    Daemon::start_with_env(Subject::Epmdx, args, env).expect("epmdx starts and answers NAMES")
}

/// A client for the daemon on IPv4 loopback, with a bounded timeout.
pub fn client(d: &Daemon) -> Client {
    Client::new(d.addr()).with_timeout(ANSWER)
}

/// An ALIVE2 request for a normal node speaking versions 5..=6.
pub fn alive2(name: &str, port: u16) -> Alive2Req<'_> {
    Alive2Req {
        port,
        node_type: 77,
        protocol: 0,
        high: 6,
        low: 5,
        name: name.as_bytes(),
        extra: b"",
    }
}

/// A transport for ALIVE3.
pub fn tr<'a>(proto: &'a str, port: u16, extra: &'a str) -> TransportRef<'a> {
    TransportRef {
        port,
        proto: proto.as_bytes(),
        extra: extra.as_bytes(),
    }
}

/// An ALIVE3 request for an OTP 25 style node (type 77, versions 6..=6).
pub fn alive3<'a>(name: &'a str, transports: &[TransportRef<'a>]) -> ext::Alive3Req<'a> {
    ext::Alive3Req {
        node_type: 77,
        high: 6,
        low: 6,
        name: name.as_bytes(),
        transports: transports.to_vec(),
        legacy_default: 0,
    }
}

/// `(proto, port, extra)` of each transport, for compact assertions.
pub fn triples(rec: &NodeRecord) -> Vec<(String, u16, String)> {
    rec.transports
        .iter()
        .map(|t| {
            (
                t.proto.clone(),
                t.port,
                String::from_utf8_lossy(&t.extra).into_owned(),
            )
        })
        .collect()
}

/// The NAMES3 record of `name`, if listed.
pub fn find<'a>(names: &'a Names3, name: &str) -> Option<&'a NodeRecord> {
    names.nodes.iter().find(|n| n.name == name.as_bytes())
}

/// Whether an I/O error means the peer closed or reset the connection.
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// One raw connection to the daemon, for requests the client library does
/// not send (malformed, or on someone else's behalf).
#[derive(Debug)]
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::time::timeout(ANSWER, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr} timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        Ok(Self { stream })
    }

    /// Writes bytes; a reset or broken pipe is not an error here (the
    /// daemon may already have closed on an earlier byte).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        match self.stream.write_all(bytes).await {
            Err(e) if !is_closed_error(&e) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Reads exactly `n` bytes within [`ANSWER`].
    pub async fn read_n(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(ANSWER, self.stream.read_exact(&mut buf))
            .await
            .map_err(|_| anyhow!("no {n}-byte reply within {ANSWER:?}"))?
            .with_context(|| format!("reading a {n}-byte reply"))?;
        Ok(buf)
    }

    /// Reads until the daemon closes (EOF or reset), within `within`, and
    /// returns what arrived before that.
    pub async fn until_closed(&mut self, within: Duration) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let fut = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if is_closed_error(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(within, fut).await {
            Err(_) => bail!("the daemon kept the connection open for {within:?} (got {out:?})"),
            Ok(r) => r?,
        }
        Ok(out)
    }

    /// Whether the daemon still keeps the connection open and silent: no
    /// byte and no EOF within `quiet`.
    pub async fn still_open(&mut self, quiet: Duration) -> bool {
        let mut b = [0u8; 1];
        tokio::time::timeout(quiet, self.stream.read(&mut b))
            .await
            .is_err()
    }

    /// Sends an ALIVE3 (first or follow-up) and decodes the 8-byte reply.
    pub async fn alive3(&mut self, req: &ext::Alive3Req<'_>) -> Result<(Status, u32)> {
        self.send(&req.encode()).await?;
        let buf = self.read_n(8).await?;
        ext::decode_alive3_reply(&buf)?.ok_or_else(|| anyhow!("short ALIVE3 reply"))
    }

    /// Sends an UNREG3 and decodes the 4-byte reply.
    pub async fn unreg3(&mut self, proto: &str) -> Result<Status> {
        let req = ext::Unreg3Req {
            proto: proto.as_bytes(),
        };
        self.send(&req.encode()).await?;
        let buf = self.read_n(4).await?;
        ext::decode_unreg3_reply(&buf)?.ok_or_else(|| anyhow!("short UNREG3 reply"))
    }
}

/// One request on its own connection: the bytes the daemon sent before it
/// closed (empty = closed without a reply).
pub async fn exchange(addr: SocketAddr, req: &[u8]) -> Result<Vec<u8>> {
    let mut c = Raw::connect(addr).await?;
    c.send(req).await?;
    c.until_closed(ANSWER).await
}

/// Polls `cond` until it holds; fails after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The NAMES listing as `(name, port)` pairs.
pub async fn names(c: &Client) -> Result<Vec<(String, u16)>> {
    Ok(c.names().await?)
}

/// The PORT_PLEASE2 port of `name`, if registered for legacy callers.
pub async fn port2(c: &Client, name: &str) -> Result<Option<u16>> {
    Ok(c.port_please(name).await?.map(|i| i.port))
}

/// Runs a command to completion within a deadline (killed by PID otherwise).
pub use test_support::run_with_timeout as run_cmd;

/// Runs the epmdx binary with `args` (off the async runtime's thread).
pub async fn run_epmdx(args: Vec<String>) -> Result<Output> {
    tokio::task::spawn_blocking(move || {
        run_cmd(
            Command::new(epmdx_bin()).args(&args),
            Duration::from_secs(30),
        )
    })
    .await?
}

/// A small deterministic PRNG (xorshift64*), so no extra dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Number of open descriptors of process `pid` (Linux).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}
