//! In-place upgrade: the running daemon re-executes its binary and hands the
//! new process its listening sockets, every registration connection and the
//! whole registry, then exits. Nothing is closed on the way, so registered
//! nodes never notice and lookups are at most delayed (they wait in the
//! listen backlog), never refused.
//!
//! The exchange runs over a Unix stream socketpair whose child end is the
//! only descriptor the new process inherits (`EPMDX_HANDOVER_FD`); sockets
//! travel as `SCM_RIGHTS` ancillary data. docs/operations.md §"The hand-over
//! format" specifies the messages; in short, each is `u32 length | u8 type |
//! payload` (big-endian, the length covers type and payload):
//!
//! 1. old → new `O` OFFER: magic `EPMDXHO`, `u16` version, `u32` old pid,
//!    the binary path (`u16` length + bytes).
//! 2. new → old `A` ACCEPT (`u16` version, `u32` pid) or `R` REFUSE (reason
//!    text). A new binary that cannot read the offered version refuses, and
//!    the old daemon keeps running.
//! 3. The old daemon stops accepting, lets connections already accepted
//!    finish their request, and freezes every registration connection (no
//!    byte of theirs is consumed from now on).
//! 4. old → new `F` FDS (`u16` count, the descriptors attached), repeated;
//!    then `S` STATE: listener count, live nodes in registration order (each
//!    with its descriptor's index) and the unregistered-names list; from
//!    version 2 on, then the upgrade count and whether a `-metrics`
//!    listener follows the EPMD listeners among the descriptors. A build
//!    reads its own version and version 1 (answering with the version it
//!    read), so an upgrade from the previous release works.
//! 5. new → old `Y` READY (`u32` pid, `u32` registrations) once the new
//!    process serves; the old one then exits. Anything else (an error, EOF,
//!    a deadline) and the old daemon kills the new process, thaws and goes
//!    on serving.

use std::ffi::OsString;
use std::io::{self, Write};
use std::mem::size_of;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tracing::{debug, info, warn};

use crate::registry::{KindState, NodeState, OldState, Snapshot, TransportState};

/// The hand-over format this build writes and reads (it also reads
/// version 1, which had no upgrade count or metrics listener).
pub const VERSION: u16 = 2;

/// The environment variable naming the inherited socketpair descriptor.
pub const FD_ENV: &str = "EPMDX_HANDOVER_FD";

/// Test knob: make this binary speak another hand-over version, to prove
/// that two builds with different formats refuse each other cleanly.
pub const VERSION_ENV: &str = "EPMDX_HANDOVER_VERSION";

/// The request code of `epmdx -upgrade` (`G`), local peers only. Not an
/// OTP code: a stock epmd closes the connection without a reply.
pub const UPGRADE_REQ: u8 = b'G';

/// The whole UPGRADE request body: the code and a fixed word, so that a
/// stray one-byte `G` (garbage) is never taken for an upgrade.
pub const UPGRADE_BODY: &[u8] = b"Gepmdx-upgrade";

const MAGIC: &[u8; 7] = b"EPMDXHO";
const MSG_OFFER: u8 = b'O';
const MSG_ACCEPT: u8 = b'A';
const MSG_REFUSE: u8 = b'R';
const MSG_FDS: u8 = b'F';
const MSG_STATE: u8 = b'S';
const MSG_READY: u8 = b'Y';

/// Largest message either side accepts (a full registry is far smaller).
const MAX_MESSAGE: usize = 256 << 20;
/// Descriptors per FDS message (the kernel allows 253).
const FDS_PER_MESSAGE: usize = 128;
/// How long each side waits for the other's next message.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepted connections get to finish before the freeze.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The hand-over version this process speaks ([`VERSION`] unless the
/// [`VERSION_ENV`] test knob says otherwise).
pub fn version() -> u16 {
    std::env::var(VERSION_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VERSION)
}

/// Why an upgrade or a hand-over failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// This daemon was started without an upgrade path.
    #[error("this daemon cannot upgrade (no binary path)")]
    Unsupported,
    /// Another upgrade is running.
    #[error("an upgrade is already in progress")]
    Busy,
    /// The binary to re-execute is missing or not executable.
    #[error("cannot execute {}: {source}", path.display())]
    Binary {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The new process could not be started.
    #[error("cannot start {}: {source}", path.display())]
    Spawn {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The new process refused the hand-over.
    #[error("the new process refused the hand-over: {0}")]
    Refused(String),
    /// The new process ended before it was ready.
    #[error("the new process exited ({status}) before it was ready")]
    Exited {
        /// Its exit status, as text.
        status: String,
    },
    /// The other side took too long.
    #[error("the other process did not answer within {0:?}")]
    Timeout(Duration),
    /// A message broke the format.
    #[error("malformed hand-over message: {0}")]
    Malformed(&'static str),
    /// The other side speaks another version.
    #[error("hand-over version {offered} offered, this binary reads version {ours}")]
    Version {
        /// The version in the offer.
        offered: u16,
        /// The version this binary reads.
        ours: u16,
    },
    /// A system call failed.
    #[error("hand-over I/O: {0}")]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------
// The gate: pausing accepts and freezing registration connections.

/// Coordinates connection tasks with an upgrade: accept loops pause,
/// accepted connections are counted until they finish their request, and
/// registration tasks consume bytes only under a read guard that a freeze
/// (the write side) waits for and then withholds.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    paused: AtomicBool,
    frozen: AtomicBool,
    lock: RwLock<()>,
    thaw: Notify,
    inflight: AtomicUsize,
    idle: Notify,
    running: AtomicBool,
}

/// An accepted connection that has not finished its request yet; the drain
/// before a freeze waits for all of these.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Gate>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Gate {
    /// Counts a newly accepted connection.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Whether accept loops must stop accepting.
    pub(crate) fn accept_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Waits until accepting is allowed.
    pub(crate) async fn wait_accepting(&self) {
        loop {
            let thawed = self.thaw.notified();
            tokio::pin!(thawed);
            thawed.as_mut().enable();
            if !self.accept_paused() {
                return;
            }
            thawed.await;
        }
    }

    /// Waits until a registration connection may consume bytes; keep the
    /// guard until what was read has been acted on.
    pub(crate) async fn enter(&self) -> RwLockReadGuard<'_, ()> {
        loop {
            let thawed = self.thaw.notified();
            tokio::pin!(thawed);
            thawed.as_mut().enable();
            let g = self.lock.read().await;
            if !self.frozen.load(Ordering::Acquire) {
                return g;
            }
            drop(g);
            thawed.await;
        }
    }

    async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return false;
            }
        }
    }

    async fn freeze(&self) -> RwLockWriteGuard<'_, ()> {
        self.frozen.store(true, Ordering::Release);
        self.lock.write().await
    }

    fn resume(&self) {
        self.frozen.store(false, Ordering::Release);
        self.paused.store(false, Ordering::Release);
        self.thaw.notify_waiters();
    }
}

// ---------------------------------------------------------------------------
// Messages.

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) -> Result<(), HandoverError> {
    let len = u16::try_from(b.len()).map_err(|_| HandoverError::Malformed("field too long"))?;
    put_u16(out, len);
    out.extend_from_slice(b);
    Ok(())
}
fn count32(n: usize) -> Result<u32, HandoverError> {
    u32::try_from(n).map_err(|_| HandoverError::Malformed("count too large"))
}

/// Bounds-checked reading of a message payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HandoverError> {
        if self.0.len() < n {
            return Err(HandoverError::Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, HandoverError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HandoverError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, HandoverError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, HandoverError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], HandoverError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    /// A count of items that each take at least `min` bytes, checked against
    /// what is left so a corrupt count cannot make us allocate.
    fn count(&mut self, min: usize) -> Result<usize, HandoverError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(HandoverError::Malformed("count exceeds the message"));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), HandoverError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(HandoverError::Malformed("trailing bytes"))
        }
    }
}

/// What the STATE message carries besides the descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// EPMD listening sockets, first among the descriptors.
    pub listeners: usize,
    /// Whether the `-metrics` listener follows them (version 2).
    pub metrics: bool,
    /// Upgrades the old process went through (version 2).
    pub upgrades: u64,
    /// The registry; node descriptors follow the listeners in this order.
    pub snapshot: Snapshot,
}

impl State {
    /// Descriptors the FDS messages must have carried.
    pub fn descriptors(&self) -> usize {
        self.listeners + usize::from(self.metrics) + self.snapshot.nodes.len()
    }
}

/// The STATE message body of `version`: the listener count and the
/// registry, then (version 2) the upgrade count and the metrics-listener
/// flag. Version 1 cannot carry a metrics listener: the caller sends none.
pub fn encode_state(state: &State, version: u16) -> Result<Vec<u8>, HandoverError> {
    let snap = &state.snapshot;
    let mut out = Vec::with_capacity(64 + snap.nodes.len() * 64);
    put_u32(&mut out, count32(state.listeners)?);
    put_u32(&mut out, count32(snap.nodes.len())?);
    for n in &snap.nodes {
        put_u32(&mut out, n.counter);
        out.push(n.node_type);
        put_u16(&mut out, n.high);
        put_u16(&mut out, n.low);
        put_bytes16(&mut out, &n.name)?;
        match &n.kind {
            KindState::Legacy {
                port,
                protocol,
                extra,
            } => {
                out.push(0);
                put_u16(&mut out, *port);
                out.push(*protocol);
                put_bytes16(&mut out, extra)?;
            }
            KindState::Ext { transports } => {
                out.push(1);
                let count = u8::try_from(transports.len())
                    .map_err(|_| HandoverError::Malformed("too many transports"))?;
                out.push(count);
                for t in transports {
                    put_u16(&mut out, t.port);
                    out.push(t.flags);
                    put_bytes16(&mut out, t.proto.as_bytes())?;
                    put_bytes16(&mut out, &t.extra)?;
                }
            }
        }
    }
    put_u32(&mut out, count32(snap.old.len())?);
    for o in &snap.old {
        put_bytes16(&mut out, &o.name)?;
        put_u16(&mut out, o.port);
        put_u32(&mut out, o.counter);
        out.extend_from_slice(&o.fd.to_be_bytes());
    }
    if version >= 2 {
        put_u64(&mut out, state.upgrades);
        out.push(u8::from(state.metrics));
    }
    Ok(out)
}

/// Decodes a STATE body of `version` (1 or 2). Node descriptors are left
/// as -1; the caller assigns the received ones.
pub fn decode_state(body: &[u8], version: u16) -> Result<State, HandoverError> {
    let mut c = Cursor(body);
    let listeners = c.u32()? as usize;
    let n_nodes = c.count(14)?;
    let mut nodes = Vec::with_capacity(n_nodes);
    for _ in 0..n_nodes {
        let counter = c.u32()?;
        let node_type = c.u8()?;
        let high = c.u16()?;
        let low = c.u16()?;
        let name = c.bytes16()?.to_vec();
        let kind = match c.u8()? {
            0 => KindState::Legacy {
                port: c.u16()?,
                protocol: c.u8()?,
                extra: c.bytes16()?.to_vec(),
            },
            1 => {
                let count = c.u8()?;
                let mut transports = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let port = c.u16()?;
                    let flags = c.u8()?;
                    let proto = std::str::from_utf8(c.bytes16()?)
                        .map_err(|_| HandoverError::Malformed("protocol name not UTF-8"))?
                        .to_owned();
                    let extra = c.bytes16()?.to_vec();
                    transports.push(TransportState {
                        port,
                        flags,
                        proto,
                        extra,
                    });
                }
                KindState::Ext { transports }
            }
            _ => return Err(HandoverError::Malformed("unknown node kind")),
        };
        nodes.push(NodeState {
            name,
            counter,
            fd: -1,
            node_type,
            high,
            low,
            kind,
        });
    }
    let n_old = c.count(12)?;
    let mut old = Vec::with_capacity(n_old);
    for _ in 0..n_old {
        let name = c.bytes16()?.to_vec();
        let port = c.u16()?;
        let counter = c.u32()?;
        let fd = c.u32()? as i32;
        old.push(OldState {
            name,
            port,
            counter,
            fd,
        });
    }
    let (upgrades, metrics) = if version >= 2 {
        let upgrades = c.u64()?;
        let metrics = match c.u8()? {
            0 => false,
            1 => true,
            _ => return Err(HandoverError::Malformed("bad metrics-listener flag")),
        };
        (upgrades, metrics)
    } else {
        (0, false)
    };
    c.end()?;
    Ok(State {
        listeners,
        metrics,
        upgrades,
        snapshot: Snapshot { nodes, old },
    })
}

/// Whether this build reads an offer of `offered`.
fn readable(offered: u16) -> bool {
    let ours = version();
    offered == ours || (ours == VERSION && offered == 1)
}

/// One side of the socketpair, with the framing and descriptor passing.
#[derive(Debug)]
pub struct Channel {
    sock: UnixStream,
    fds: Vec<OwnedFd>,
}

fn cvt(r: isize) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Channel {
    fn new(sock: UnixStream) -> io::Result<Self> {
        sock.set_read_timeout(Some(STEP_TIMEOUT))?;
        sock.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(Self {
            sock,
            fds: Vec::new(),
        })
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), HandoverError> {
        self.send_with_fds(kind, payload, &[])
    }

    fn send_with_fds(
        &mut self,
        kind: u8,
        payload: &[u8],
        fds: &[RawFd],
    ) -> Result<(), HandoverError> {
        let len = u32::try_from(payload.len() + 1)
            .map_err(|_| HandoverError::Malformed("message too long"))?;
        let mut msg = Vec::with_capacity(payload.len() + 5);
        put_u32(&mut msg, len);
        msg.push(kind);
        msg.extend_from_slice(payload);
        let mut sent = 0;
        if !fds.is_empty() {
            sent = self.sendmsg_fds(&msg, fds)?;
        }
        self.sock.write_all(&msg[sent..]).map_err(|e| {
            if timed_out(&e) {
                HandoverError::Timeout(STEP_TIMEOUT)
            } else {
                HandoverError::Io(e)
            }
        })
    }

    /// Sends the start of `msg` with `fds` attached; returns bytes sent.
    fn sendmsg_fds(&self, msg: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        let fd_bytes = size_of_val(fds);
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        // SAFETY: msghdr is plain data; every pointer set below points at a
        // live buffer of the stated length for the duration of sendmsg.
        unsafe {
            let mut mh: libc::msghdr = std::mem::zeroed();
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = space;
            let cm = libc::CMSG_FIRSTHDR(&mh);
            (*cm).cmsg_level = libc::SOL_SOCKET;
            (*cm).cmsg_type = libc::SCM_RIGHTS;
            (*cm).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cm), fd_bytes);
            loop {
                let r = libc::sendmsg(self.sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL);
                match cvt(r) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            }
        }
    }

    /// Reads exactly `buf.len()` bytes, keeping any descriptors that arrive.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), HandoverError> {
        let mut filled = 0;
        let space =
            unsafe { libc::CMSG_SPACE((size_of::<RawFd>() * FDS_PER_MESSAGE) as u32) } as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        while filled < buf.len() {
            let mut iov = libc::iovec {
                iov_base: buf[filled..].as_mut_ptr().cast(),
                iov_len: buf.len() - filled,
            };
            // SAFETY: as in sendmsg_fds; the kernel writes at most the
            // stated lengths, and we only read back complete cmsg headers.
            let n = unsafe {
                let mut mh: libc::msghdr = std::mem::zeroed();
                mh.msg_iov = &mut iov;
                mh.msg_iovlen = 1;
                mh.msg_control = cbuf.as_mut_ptr().cast();
                mh.msg_controllen = space;
                let r = libc::recvmsg(self.sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC);
                let n = match cvt(r) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if timed_out(&e) => return Err(HandoverError::Timeout(STEP_TIMEOUT)),
                    Err(e) => return Err(HandoverError::Io(e)),
                };
                let mut cm = libc::CMSG_FIRSTHDR(&mh);
                while !cm.is_null() {
                    if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(cm);
                        let bytes = (*cm).cmsg_len as usize - (data as usize - cm as usize);
                        for i in 0..bytes / size_of::<RawFd>() {
                            let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                            // The kernel installed this descriptor for us.
                            self.fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    cm = libc::CMSG_NXTHDR(&mh, cm);
                }
                if mh.msg_flags & libc::MSG_CTRUNC != 0 {
                    return Err(HandoverError::Malformed("descriptors truncated"));
                }
                n
            };
            if n == 0 {
                return Err(HandoverError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            filled += n;
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<(u8, Vec<u8>), HandoverError> {
        let mut head = [0u8; 5];
        self.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return Err(HandoverError::Malformed("bad message length"));
        }
        let mut body = vec![0u8; len - 1];
        self.read_exact(&mut body)?;
        Ok((head[4], body))
    }
}

// ---------------------------------------------------------------------------
// The old side.

/// How the daemon re-executes itself.
pub struct Upgrader {
    /// The binary path (as the daemon was started from; a file replaced
    /// there is the new version).
    pub exe: PathBuf,
    /// The daemon's own arguments, passed on unchanged.
    pub args: Vec<OsString>,
    /// Called once the new process is ready, just before this one exits
    /// (the binary tells systemd the new main PID here).
    pub on_commit: Box<dyn Fn(u32) + Send + Sync>,
}

impl std::fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrader")
            .field("exe", &self.exe)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// A finished upgrade: the new process serves; this one must exit.
#[derive(Debug, Clone, Copy)]
pub struct Upgraded {
    /// This process.
    pub old_pid: u32,
    /// The new process.
    pub new_pid: u32,
    /// Registrations handed over.
    pub registrations: u32,
}

/// Kills and reaps the new process unless the upgrade commits.
struct ChildGuard(Option<std::process::Child>);

impl ChildGuard {
    fn status(&mut self) -> String {
        let Some(c) = self.0.as_mut() else {
            return "unknown".into();
        };
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match c.try_wait() {
                Ok(Some(st)) => return st.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => return "still running".into(),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn check_binary(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))?;
    // SAFETY: access only reads the NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn spawn(up: &Upgrader) -> Result<(Channel, ChildGuard), HandoverError> {
    check_binary(&up.exe).map_err(|source| HandoverError::Binary {
        path: up.exe.clone(),
        source,
    })?;
    let (ours, theirs) = UnixStream::pair()?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(&up.exe);
    cmd.args(&up.args).env(FD_ENV, child_fd.to_string());
    // SAFETY: the closure runs in the forked child before exec and only
    // calls fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(child_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A file just written may still be open for writing in a process that
    // is about to exec (ETXTBSY); that clears within moments.
    let deadline = Instant::now() + Duration::from_secs(2);
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => {
                break r.map_err(|source| HandoverError::Spawn {
                    path: up.exe.clone(),
                    source,
                })?
            }
        }
    };
    drop(theirs);
    Ok((Channel::new(ours)?, ChildGuard(Some(child))))
}

/// Turns an end of the channel into the error the operator should see.
fn eof_as_exit(e: HandoverError, child: &mut ChildGuard) -> HandoverError {
    match e {
        HandoverError::Io(ref io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            HandoverError::Exited {
                status: child.status(),
            }
        }
        HandoverError::Io(ref io)
            if matches!(
                io.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            HandoverError::Exited {
                status: child.status(),
            }
        }
        other => other,
    }
}

fn offer(ch: &mut Channel, exe: &Path) -> Result<u32, HandoverError> {
    let mut p = MAGIC.to_vec();
    put_u16(&mut p, version());
    put_u32(&mut p, std::process::id());
    put_bytes16(&mut p, exe.as_os_str().as_encoded_bytes())?;
    ch.send(MSG_OFFER, &p)?;
    let (kind, body) = ch.recv()?;
    let mut c = Cursor(&body);
    match kind {
        MSG_ACCEPT => {
            let v = c.u16()?;
            let pid = c.u32()?;
            c.end()?;
            if v != version() {
                return Err(HandoverError::Version {
                    offered: version(),
                    ours: v,
                });
            }
            Ok(pid)
        }
        MSG_REFUSE => Err(HandoverError::Refused(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        _ => Err(HandoverError::Malformed("unexpected reply to the offer")),
    }
}

fn transfer(
    ch: &mut Channel,
    listeners: &[RawFd],
    nodes: &[RawFd],
    state: &[u8],
) -> Result<(u32, u32), HandoverError> {
    let all: Vec<RawFd> = listeners.iter().chain(nodes).copied().collect();
    for chunk in all.chunks(FDS_PER_MESSAGE) {
        let mut p = Vec::with_capacity(2);
        put_u16(&mut p, chunk.len() as u16);
        ch.send_with_fds(MSG_FDS, &p, chunk)?;
    }
    ch.send(MSG_STATE, state)?;
    let (kind, body) = ch.recv()?;
    let mut c = Cursor(&body);
    match kind {
        MSG_READY => {
            let pid = c.u32()?;
            let n = c.u32()?;
            c.end()?;
            Ok((pid, n))
        }
        MSG_REFUSE => Err(HandoverError::Refused(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        _ => Err(HandoverError::Malformed("unexpected reply to the state")),
    }
}

/// Runs one blocking step off the runtime's thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HandoverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HandoverError::Io(io::Error::other(e.to_string())))
}

/// What the old side needs from the server.
pub(crate) trait Source: Send + Sync {
    fn gate(&self) -> &Arc<Gate>;
    fn upgrader(&self) -> Option<&Upgrader>;
    fn listener_fds(&self) -> Vec<RawFd>;
    fn snapshot(&self) -> Snapshot;
    fn metrics_fd(&self) -> Option<RawFd>;
    fn upgrades(&self) -> u64;
}

/// The server's upgrade state: the gate, how to re-execute, and the
/// listening descriptors to pass on.
#[derive(Debug)]
pub(crate) struct Hooks {
    gate: Arc<Gate>,
    upgrader: std::sync::OnceLock<Upgrader>,
    listeners: Vec<RawFd>,
    metrics: std::sync::OnceLock<RawFd>,
}

impl Hooks {
    pub(crate) fn new(listeners: impl Iterator<Item = RawFd>) -> Self {
        Self {
            gate: Arc::default(),
            upgrader: std::sync::OnceLock::new(),
            listeners: listeners.collect(),
            metrics: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    pub(crate) fn set_upgrader(&self, up: Upgrader) {
        let _ = self.upgrader.set(up);
    }

    pub(crate) fn upgrader(&self) -> Option<&Upgrader> {
        self.upgrader.get()
    }

    pub(crate) fn listener_fds(&self) -> Vec<RawFd> {
        self.listeners.clone()
    }

    pub(crate) fn set_metrics_fd(&self, fd: RawFd) {
        let _ = self.metrics.set(fd);
    }

    pub(crate) fn metrics_fd(&self) -> Option<RawFd> {
        self.metrics.get().copied()
    }
}

/// Serves an UPGRADE request: upgrades, replies, and exits on success.
pub(crate) async fn serve_request<S: Source + 'static>(
    src: Arc<S>,
    mut stream: tokio::net::TcpStream,
) {
    use tokio::io::AsyncWriteExt;
    let r = upgrade(src).await;
    let _ = stream.write_all(&encode_reply(&r)).await;
    let _ = stream.shutdown().await;
    if r.is_ok() {
        std::process::exit(0);
    }
}

/// `SIGUSR2` upgrades like `-upgrade` (the outcome is logged).
pub(crate) fn spawn_signal_task<S: Source + 'static>(src: Arc<S>) {
    use tokio::signal::unix::{signal, SignalKind};
    if src.upgrader().is_none() {
        return;
    }
    let mut sig = match signal(SignalKind::user_defined2()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch SIGUSR2: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while sig.recv().await.is_some() {
            info!("SIGUSR2: upgrading");
            if upgrade(src.clone()).await.is_ok() {
                std::process::exit(0);
            }
        }
    });
}

/// Performs an upgrade. On success the new process serves every listener
/// and registration, this process's registration tasks stay frozen, and
/// the caller must exit; on failure everything runs on as before.
pub(crate) async fn upgrade<S: Source + 'static>(src: Arc<S>) -> Result<Upgraded, HandoverError> {
    let gate = src.gate().clone();
    if gate.running.swap(true, Ordering::AcqRel) {
        return Err(HandoverError::Busy);
    }
    struct Running(Arc<Gate>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.running.store(false, Ordering::Release);
        }
    }
    let _running = Running(gate.clone());
    let up = src.upgrader().ok_or(HandoverError::Unsupported)?;
    let exe = up.exe.clone();
    info!("upgrade: starting {}", exe.display());
    let (mut ch, mut child) = spawn(up)?;
    let (ch_back, child_back, accepted) = blocking(move || {
        let r = offer(&mut ch, &exe);
        let r = r.map_err(|e| eof_as_exit(e, &mut child));
        (ch, child, r)
    })
    .await?;
    let (mut ch, mut child) = (ch_back, child_back);
    let new_pid = accepted?;
    debug!("upgrade: pid {new_pid} accepted the offer");

    // From here on, a failure must thaw.
    gate.paused.store(true, Ordering::Release);
    if !gate.drain(DRAIN_TIMEOUT).await {
        warn!("upgrade: connections still unfinished after {DRAIN_TIMEOUT:?}; they are closed");
    }
    let freeze = gate.freeze().await;
    let mut listeners = src.listener_fds();
    // Version 1 (a test knob here) has no place for the metrics listener.
    let metrics = src.metrics_fd().filter(|_| version() >= 2);
    let state = State {
        listeners: listeners.len(),
        metrics: metrics.is_some(),
        upgrades: src.upgrades(),
        snapshot: src.snapshot(),
    };
    listeners.extend(metrics);
    let node_fds: Vec<RawFd> = state.snapshot.nodes.iter().map(|n| n.fd).collect();
    let result = match encode_state(&state, version()) {
        Err(e) => Err(e),
        Ok(state) => {
            let r = blocking(move || {
                let r = transfer(&mut ch, &listeners, &node_fds, &state)
                    .map_err(|e| eof_as_exit(e, &mut child));
                (child, r)
            })
            .await;
            match r {
                Ok((c, r)) => {
                    child = c;
                    r
                }
                Err(e) => {
                    // The blocking task died and took the new process's
                    // guard (which killed it) with it: thaw and go on.
                    drop(freeze);
                    gate.resume();
                    warn!("upgrade failed: {e}");
                    return Err(e);
                }
            }
        }
    };
    match result {
        Ok((pid, n)) => {
            // Committed: the new process owns everything; keep this one's
            // registration tasks frozen until it exits.
            std::mem::forget(freeze);
            if let Some(c) = child.0.take() {
                // Not reaped: it outlives us and is re-parented.
                std::mem::forget(c);
            }
            (up.on_commit)(pid);
            info!(
                "upgraded: pid {} -> {pid}, {n} registrations",
                std::process::id()
            );
            Ok(Upgraded {
                old_pid: std::process::id(),
                new_pid: pid,
                registrations: n,
            })
        }
        Err(e) => {
            drop(child);
            drop(freeze);
            gate.resume();
            warn!("upgrade failed: {e}");
            Err(e)
        }
    }
}

/// The reply to an UPGRADE request: `0, u32 old pid, u32 new pid, u32
/// registrations` on success, `1` and the reason (UTF-8) on failure.
pub fn encode_reply(r: &Result<Upgraded, HandoverError>) -> Vec<u8> {
    let mut out = Vec::new();
    match r {
        Ok(u) => {
            out.push(0);
            put_u32(&mut out, u.old_pid);
            put_u32(&mut out, u.new_pid);
            put_u32(&mut out, u.registrations);
        }
        Err(e) => {
            out.push(1);
            out.extend_from_slice(e.to_string().as_bytes());
        }
    }
    out
}

/// Decodes an UPGRADE reply: `Ok((old, new, n))` or `Err(reason)`.
pub fn decode_reply(b: &[u8]) -> Option<Result<(u32, u32, u32), String>> {
    let (&st, rest) = b.split_first()?;
    match st {
        0 => {
            let mut c = Cursor(rest);
            let r = (c.u32().ok()?, c.u32().ok()?, c.u32().ok()?);
            c.end().ok()?;
            Some(Ok(r))
        }
        1 => Some(Err(String::from_utf8_lossy(rest).into_owned())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The new side.

/// What a new process received from the old one.
#[derive(Debug)]
pub struct Incoming {
    /// The old process's pid.
    pub old_pid: u32,
    /// The binary path the old process was started from (kept for the
    /// next upgrade: the path, not whatever it pointed at then).
    pub exe: PathBuf,
    /// Listening sockets.
    pub listeners: Vec<TcpListener>,
    /// The `-metrics` listener, if the old process served one.
    pub metrics: Option<TcpListener>,
    /// Upgrades the old process went through.
    pub upgrades: u64,
    /// Registration connections, in `snapshot.nodes` order.
    pub streams: Vec<TcpStream>,
    /// The registry.
    pub snapshot: Snapshot,
    ch: Channel,
}

/// The inherited channel, if this process was started by an upgrade.
/// Removes the variable so it is not passed on.
pub fn inherited() -> Option<Result<OwnedFd, HandoverError>> {
    let v = std::env::var_os(FD_ENV)?;
    // SAFETY: removing a variable while no other thread runs (called first
    // thing in main, before the runtime starts).
    unsafe { std::env::remove_var(FD_ENV) };
    let fd: RawFd = match v.to_str().and_then(|s| s.parse().ok()) {
        Some(fd) if fd > 2 => fd,
        _ => return Some(Err(HandoverError::Malformed("bad EPMDX_HANDOVER_FD"))),
    };
    // SAFETY: the old process passed exactly this descriptor for us to own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Do not leak it into anything we start later.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(Ok(owned))
}

impl Incoming {
    /// Receives the offer and the state (blocking, with deadlines). A
    /// version this build cannot read is refused on the channel, so the old
    /// daemon reports why and keeps running.
    pub fn receive(fd: OwnedFd) -> Result<Self, HandoverError> {
        let mut ch = Channel::new(UnixStream::from(fd))?;
        match Self::receive_on(&mut ch) {
            Ok(r) => Ok(Self {
                old_pid: r.old_pid,
                exe: r.exe,
                listeners: r.listeners,
                metrics: r.metrics,
                upgrades: r.upgrades,
                streams: r.streams,
                snapshot: r.snapshot,
                ch,
            }),
            Err(e) => {
                // Say why, so the old daemon can report it; it may be gone.
                let _ = ch.send(MSG_REFUSE, e.to_string().as_bytes());
                Err(e)
            }
        }
    }

    fn receive_on(ch: &mut Channel) -> Result<Received, HandoverError> {
        let (kind, body) = ch.recv()?;
        if kind != MSG_OFFER {
            return Err(HandoverError::Malformed("expected an offer"));
        }
        let mut c = Cursor(&body);
        if c.take(MAGIC.len())? != MAGIC {
            return Err(HandoverError::Malformed("bad magic"));
        }
        let offered = c.u16()?;
        if !readable(offered) {
            return Err(HandoverError::Version {
                offered,
                ours: version(),
            });
        }
        let old_pid = c.u32()?;
        let exe = PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(c.bytes16()?),
        );
        c.end()?;
        let mut p = Vec::new();
        // The version read, which the old side checks against its own.
        put_u16(&mut p, offered);
        put_u32(&mut p, std::process::id());
        ch.send(MSG_ACCEPT, &p)?;

        let mut expected = 0usize;
        let state = loop {
            let (kind, body) = ch.recv()?;
            match kind {
                MSG_FDS => {
                    let mut c = Cursor(&body);
                    expected += usize::from(c.u16()?);
                    c.end()?;
                }
                MSG_STATE => break body,
                _ => return Err(HandoverError::Malformed("unexpected message")),
            }
        };
        let state = decode_state(&state, offered)?;
        let fds = std::mem::take(&mut ch.fds);
        if fds.len() != expected || fds.len() != state.descriptors() {
            return Err(HandoverError::Malformed(
                "descriptor count does not match the state",
            ));
        }
        let mut fds = fds.into_iter();
        let listeners: Vec<TcpListener> = fds
            .by_ref()
            .take(state.listeners)
            .map(TcpListener::from)
            .collect();
        let metrics = if state.metrics {
            fds.next().map(TcpListener::from)
        } else {
            None
        };
        let streams: Vec<TcpStream> = fds.map(TcpStream::from).collect();
        let mut snapshot = state.snapshot;
        for (n, s) in snapshot.nodes.iter_mut().zip(&streams) {
            n.fd = s.as_raw_fd();
        }
        Ok(Received {
            old_pid,
            exe,
            listeners,
            metrics,
            upgrades: state.upgrades,
            streams,
            snapshot,
        })
    }

    /// Tells the old process that this one serves; it exits on this.
    pub fn ready(mut self, registrations: usize) -> Result<(), HandoverError> {
        let mut p = Vec::new();
        put_u32(&mut p, std::process::id());
        put_u32(&mut p, count32(registrations)?);
        self.ch.send(MSG_READY, &p)
    }

    /// Tells the old process why this one gives up (it then keeps running).
    pub fn refuse(mut self, reason: &str) {
        let _ = self.ch.send(MSG_REFUSE, reason.as_bytes());
    }
}

/// What [`Incoming::receive_on`] got, before the channel joins it.
struct Received {
    old_pid: u32,
    exe: PathBuf,
    listeners: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    upgrades: u64,
    streams: Vec<TcpStream>,
    snapshot: Snapshot,
}

/// Refuses on a channel that never became an [`Incoming`] (best effort).
pub fn refuse_raw(fd: OwnedFd, reason: &str) {
    if let Ok(mut ch) = Channel::new(UnixStream::from(fd)) {
        let _ = ch.send(MSG_REFUSE, reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip_and_bounds() {
        let snap = Snapshot {
            nodes: vec![
                NodeState {
                    name: b"a".to_vec(),
                    counter: 7,
                    fd: -1,
                    node_type: 77,
                    high: 6,
                    low: 5,
                    kind: KindState::Legacy {
                        port: 1,
                        protocol: 0,
                        extra: b"e".to_vec(),
                    },
                },
                NodeState {
                    name: b"b".to_vec(),
                    counter: 9,
                    fd: -1,
                    node_type: 72,
                    high: 6,
                    low: 6,
                    kind: KindState::Ext {
                        transports: vec![TransportState {
                            port: 2,
                            flags: 1,
                            proto: "inet_tls".into(),
                            extra: vec![],
                        }],
                    },
                },
            ],
            old: vec![OldState {
                name: b"c".to_vec(),
                port: 3,
                counter: 11,
                fd: 12,
            }],
        };
        let state = State {
            listeners: 2,
            metrics: true,
            upgrades: 3,
            snapshot: snap,
        };
        let body = encode_state(&state, VERSION).unwrap();
        assert_eq!(decode_state(&body, VERSION).unwrap(), state);
        assert_eq!(state.descriptors(), 5);
        for cut in 0..body.len() {
            assert!(decode_state(&body[..cut], VERSION).is_err(), "cut at {cut}");
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode_state(&long, VERSION).is_err());
        // Version 1 ends after the unregistered list: no upgrade count,
        // no metrics listener.
        let v1 = encode_state(&state, 1).unwrap();
        assert_eq!(v1, body[..body.len() - 9]);
        assert_eq!(
            decode_state(&v1, 1).unwrap(),
            State {
                metrics: false,
                upgrades: 0,
                ..state.clone()
            }
        );
        let mut flag = body.clone();
        *flag.last_mut().unwrap() = 2;
        assert!(decode_state(&flag, VERSION).is_err());
        // A huge count is refused before any allocation.
        let mut bad = body;
        bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_state(&bad, VERSION).is_err());
    }

    #[test]
    fn descriptors_cross_the_channel() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Channel::new(a).unwrap();
        let mut rx = Channel::new(b).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let fds = vec![l.as_raw_fd(); 3];
        tx.send_with_fds(MSG_FDS, &[0, 3], &fds).unwrap();
        tx.send(MSG_READY, b"x").unwrap();
        assert_eq!(rx.recv().unwrap(), (MSG_FDS, vec![0, 3]));
        assert_eq!(rx.recv().unwrap(), (MSG_READY, b"x".to_vec()));
        assert_eq!(rx.fds.len(), 3);
        let got = TcpListener::from(rx.fds.pop().unwrap());
        assert_eq!(got.local_addr().unwrap(), l.local_addr().unwrap());
    }

    #[test]
    fn reply_codec() {
        let ok = encode_reply(&Ok(Upgraded {
            old_pid: 1,
            new_pid: 2,
            registrations: 3,
        }));
        assert_eq!(decode_reply(&ok), Some(Ok((1, 2, 3))));
        let err = encode_reply(&Err(HandoverError::Busy));
        assert_eq!(
            decode_reply(&err),
            Some(Err("an upgrade is already in progress".into()))
        );
        assert_eq!(decode_reply(&[]), None);
    }
}
