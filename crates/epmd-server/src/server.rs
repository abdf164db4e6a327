//! The daemon: a [`Server`] accepts on every listening socket (the Listener)
//! and runs one task per connection (the Handler), mini-redis style.
//!
//! Connection bounds, so no client can starve another or make a live
//! registration disappear:
//! - connections that have not registered ("pending": lookups, listings,
//!   half-sent requests, refused registrations) are capped at
//!   [`Config::max_pending`]; when the table is full the *oldest* pending
//!   connection is closed to make room, so a flood of idle or slow clients
//!   only ever delays itself, never a fresh lookup;
//! - live registrations are capped at [`Config::max_nodes`], derived from the
//!   open-file limit by the binary, and are never evicted;
//! - a pending connection idle for more than `packet_timeout` is closed.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::future::Future;

use bytes::Bytes;
use epmd_proto::frame;
use epmd_proto::limits::{MAX_PACKET, UNREG_LIST_CAP};
use epmd_proto::Request;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, trace, warn, Instrument};

use crate::metrics::{Command, Gauges, Metrics, RefusedReason, Verdict};
use crate::registry::{ConnId, RegisterError, Registry};
use crate::respond::{respond, Outcome, PeerCtx, Refusal, Reply, Stopper};

/// The C epmd's input buffer: one request frame always fits.
const INBUF_SIZE: usize = MAX_PACKET + 3;

/// The C epmd's first read asks for INBUF_SIZE − 1 bytes: a whole frame of
/// the largest size, plus nothing.
const FIRST_READ: usize = INBUF_SIZE - 1;

/// The frame length once the two header bytes are in.
fn header_len(buf: &[u8]) -> Option<usize> {
    buf.get(..2)
        .map(|h| usize::from(u16::from_be_bytes([h[0], h[1]])))
}

/// Daemon settings. [`Default`] gives the C epmd's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The port the daemon listens on, reported in NAMES replies.
    pub port: u16,
    /// `-relaxed_command_check`: allow STOP, and KILL with live nodes.
    pub relaxed: bool,
    /// `-packet_timeout`: idle limit for connections that did not register.
    pub packet_timeout: Duration,
    /// `-delay_accept`: test knob, sleep before each accept.
    pub delay_accept: Duration,
    /// `-delay_write`: test knob, sleep before each reply write.
    pub delay_write: Duration,
    /// `-d` count; above 0 the unregistered list is capped at 5.
    pub debug: u8,
    /// Most connections that hold no registration at once.
    pub max_pending: usize,
    /// Most live registrations at once.
    pub max_nodes: usize,
    /// `-allow`: networks non-local peers must come from (`None`: anyone).
    pub allow: Option<crate::access::AllowList>,
    /// `-rate_limit`: requests per second per non-local source (`None`: off).
    pub rate_limit: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 4369,
            relaxed: false,
            packet_timeout: Duration::from_secs(60),
            delay_accept: Duration::ZERO,
            delay_write: Duration::ZERO,
            debug: 0,
            max_pending: 1024,
            max_nodes: 1000,
            allow: None,
            rate_limit: None,
        }
    }
}

/// The C epmd's unregistered-list cap under `-d`.
const DEBUG_UNREG_LIST_CAP: usize = 5;

#[derive(Debug)]
struct Shared {
    cfg: Config,
    registry: Mutex<Registry<Stopper>>,
    /// Pending connections, oldest first (ids grow monotonically).
    pending: Mutex<BTreeMap<ConnId, Arc<Notify>>>,
    next_id: AtomicU64,
    killed: Notify,
    /// `-rate_limit` state, when set.
    limiter: Option<Mutex<crate::access::RateLimiter>>,
    /// In-place upgrade: the gate, the re-exec recipe, the listeners.
    upgrade: crate::handover::Hooks,
    /// What `-metrics` exposes; always counted (an atomic add a request).
    metrics: Metrics,
}

impl Shared {
    /// `-allow` and `-rate_limit`, before a byte is read: a refused peer's
    /// socket is closed without a reply, as if nothing listened.
    fn admitted(&self, stream: &std::net::TcpStream, peer: SocketAddr) -> bool {
        use crate::access::{admit, Admission};
        if self.cfg.allow.is_none() && self.limiter.is_none() {
            return true;
        }
        let local = is_local_peer(peer.ip(), || stream.local_addr());
        let mut limiter = self
            .limiter
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        let verdict = admit(
            self.cfg.allow.as_ref(),
            limiter.as_deref_mut(),
            peer.ip(),
            local,
            tokio::time::Instant::now(),
        );
        match verdict {
            Admission::Serve => true,
            Admission::NotAllowed => {
                self.metrics.refused(RefusedReason::Allow);
                debug!(%peer, "peer outside -allow: closed without a reply");
                false
            }
            Admission::OverRate => {
                self.metrics.refused(RefusedReason::Rate);
                debug!(%peer, "peer over -rate_limit: closed without a reply");
                false
            }
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry<Stopper>> {
        // A panic while holding the lock cannot leave the registry half
        // updated in a way later requests could not handle, so keep serving.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, BTreeMap<ConnId, Arc<Notify>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a pending connection, evicting the oldest when full.
    fn admit(&self, id: ConnId) -> Arc<Notify> {
        let evict = Arc::new(Notify::new());
        let mut p = self.pending();
        while p.len() >= self.cfg.max_pending.max(1) {
            if let Some((old, n)) = p.pop_first() {
                debug!(
                    conn = old,
                    "pending table full: closing the oldest connection"
                );
                n.notify_one();
                self.metrics.eviction();
            }
        }
        p.insert(id, evict.clone());
        evict
    }

    /// Closes the oldest pending connection (used when accept hits EMFILE).
    /// Returns whether there was one.
    fn evict_oldest(&self) -> bool {
        let oldest = self.pending().pop_first();
        let evicted = oldest.map(|(_, n)| n.notify_one()).is_some();
        if evicted {
            self.metrics.eviction();
        }
        evicted
    }

    /// Counts a request by how it ended.
    fn count(&self, command: Command, outcome: &Outcome) {
        self.metrics.request(command, outcome.result());
        if let Outcome::Refused {
            error: RegisterError::Capacity,
            ..
        } = outcome
        {
            self.metrics.refused(RefusedReason::Capacity);
        }
    }

    /// The exposition, with the gauges read now.
    fn scrape(&self) -> Vec<u8> {
        let (legacy, extended) = self.registry().kinds();
        let pending = self.pending().len();
        self.metrics.encode(Gauges {
            legacy,
            extended,
            pending,
        })
    }

    fn release(&self, id: ConnId) {
        self.pending().remove(&id);
    }
}

impl crate::handover::Source for Shared {
    fn gate(&self) -> &Arc<crate::handover::Gate> {
        self.upgrade.gate()
    }
    fn upgrader(&self) -> Option<&crate::handover::Upgrader> {
        self.upgrade.upgrader()
    }
    fn listener_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.upgrade.listener_fds()
    }
    fn snapshot(&self) -> crate::registry::Snapshot {
        self.registry().export()
    }
    fn metrics_fd(&self) -> Option<std::os::fd::RawFd> {
        self.upgrade.metrics_fd()
    }
    fn upgrades(&self) -> u64 {
        self.metrics.upgrades()
    }
}

/// Removes a connection from the pending table however its task ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: ConnId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.release(self.id);
    }
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening socket could not be handed to the runtime.
    #[error("listener setup failed: {0}")]
    Listener(#[from] io::Error),
}

/// A running daemon: its listeners and shared state.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<AsyncFd<std::net::TcpListener>>,
    /// The `-metrics` listener, when set.
    metrics: Option<AsyncFd<std::net::TcpListener>>,
}

impl Server {
    /// Wraps already-bound listeners. Must be called inside a tokio runtime.
    pub fn new(cfg: Config, listeners: Vec<std::net::TcpListener>) -> Result<Self, ServerError> {
        let old_cap = if cfg.debug > 0 {
            DEBUG_UNREG_LIST_CAP
        } else {
            UNREG_LIST_CAP
        };
        let listeners = listeners
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true)?;
                // SAFETY: a std TcpListener owns its descriptor for its whole
                // life and always reports the same one, as `register` requires.
                Ok(unsafe { AsyncFd::register(l) }?)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let registry = Registry::new(cfg.max_nodes, old_cap);
        Ok(Self::build(cfg, listeners, registry, 1))
    }

    fn build(
        cfg: Config,
        listeners: Vec<AsyncFd<std::net::TcpListener>>,
        registry: Registry<Stopper>,
        next_id: ConnId,
    ) -> Self {
        let upgrade = crate::handover::Hooks::new(listeners.iter().map(|l| l.as_raw_fd()));
        let shared = Arc::new(Shared {
            registry: Mutex::new(registry),
            pending: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(next_id),
            killed: Notify::new(),
            limiter: cfg
                .rate_limit
                .map(|n| Mutex::new(crate::access::RateLimiter::new(n))),
            upgrade,
            metrics: Metrics::new(),
            cfg,
        });
        Self {
            shared,
            listeners,
            metrics: None,
        }
    }

    /// Takes over from a previous process (see [`crate::handover`]): its
    /// listeners, registrations and registry. Must be called inside a tokio
    /// runtime; the registrations are served from here on.
    pub fn adopt(
        cfg: Config,
        incoming: &mut crate::handover::Incoming,
    ) -> Result<Self, ServerError> {
        let old_cap = if cfg.debug > 0 {
            DEBUG_UNREG_LIST_CAP
        } else {
            UNREG_LIST_CAP
        };
        let listeners = std::mem::take(&mut incoming.listeners)
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true)?;
                // SAFETY: as in `new`.
                Ok(unsafe { AsyncFd::register(l) }?)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let streams = std::mem::take(&mut incoming.streams);
        let mut stoppers = Vec::with_capacity(streams.len());
        let registry = Registry::import(cfg.max_nodes, old_cap, &incoming.snapshot, |i, n| {
            let stopper = Stopper::default();
            stoppers.push(stopper.clone());
            (i as ConnId + 1, n.fd, stopper)
        });
        let next = streams.len() as ConnId + 1;
        let mut server = Self::build(cfg, listeners, registry, next);
        server.shared.metrics.continue_upgrades(incoming.upgrades);
        if let Some(m) = incoming.metrics.take() {
            server.serve_metrics(m)?;
        }
        for (i, ((stream, stopper), node)) in streams
            .into_iter()
            .zip(stoppers)
            .zip(&incoming.snapshot.nodes)
            .enumerate()
        {
            stream.set_nonblocking(true)?;
            let stream = TcpStream::from_std(stream)?;
            let extended = matches!(node.kind, crate::registry::KindState::Ext { .. });
            let name: Box<[u8]> = node.name.as_slice().into();
            let id = i as ConnId + 1;
            let span = tracing::debug_span!("adopted", id);
            let held = hold_registered(server.shared.clone(), id, name, stream, stopper, extended);
            tokio::spawn(held.instrument(span));
        }
        Ok(server)
    }

    /// Serves `GET /metrics` on `listener` (`-metrics`) once running; the
    /// socket is handed over by an upgrade like the EPMD listeners.
    pub fn serve_metrics(&mut self, listener: std::net::TcpListener) -> Result<(), ServerError> {
        listener.set_nonblocking(true)?;
        // SAFETY: as in `new`.
        let listener = unsafe { AsyncFd::register(listener) }.map_err(io::Error::from)?;
        self.shared.upgrade.set_metrics_fd(listener.as_raw_fd());
        self.metrics = Some(listener);
        Ok(())
    }

    /// Whether `-metrics` is served (set here or handed over).
    pub fn has_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// The exposition `GET /metrics` would answer now.
    pub fn scrape(&self) -> Vec<u8> {
        self.shared.scrape()
    }

    /// Lets the daemon upgrade in place (`-upgrade`, `SIGUSR2`).
    pub fn set_upgrader(&self, up: crate::handover::Upgrader) {
        self.shared.upgrade.set_upgrader(up);
    }

    /// Reports every registration change to `observer` (the cluster
    /// publisher), starting with the nodes already registered. See
    /// [`crate::registry::Observer`]: it runs under the registry lock and
    /// must not block.
    pub fn set_observer(&self, observer: crate::registry::Observer) {
        self.shared.registry().set_observer(observer);
    }

    /// Number of live registrations.
    pub fn registrations(&self) -> usize {
        self.shared.registry().len()
    }

    /// Serves until a KILL request is accepted.
    pub async fn run(self) -> Result<(), ServerError> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until a KILL request is accepted or `shutdown` completes,
    /// whichever comes first. Then the accept loops stop and the listening
    /// sockets close; connections already accepted finish on their own
    /// (or end with the runtime).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let mut accepting: Vec<_> = self
            .listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(self.shared.clone(), l)))
            .collect();
        if let Some(l) = self.metrics {
            let shared = self.shared.clone();
            let render: Arc<dyn Fn() -> Vec<u8> + Send + Sync> = Arc::new(move || shared.scrape());
            accepting.push(tokio::spawn(crate::exposition::serve(
                l,
                self.shared.upgrade.gate().clone(),
                render,
            )));
        }
        crate::handover::spawn_signal_task(self.shared.clone());
        tokio::select! {
            () = self.shared.killed.notified() => debug!("killed by request"),
            () = shutdown => debug!("shut down"),
        }
        for task in &accepting {
            task.abort();
        }
        for task in accepting {
            // Aborted: the listener is dropped (closed) once this returns.
            let _ = task.await;
        }
        Ok(())
    }
}

/// Accepts connections. Sockets are accepted with `accept4` straight from
/// the listener and first served synchronously (see [`serve_fast`]): a
/// lookup or listing whose request is already in the socket buffer is
/// answered without registering the socket with the reactor or spawning a
/// task. Everything else continues in its own task.
async fn accept_loop(shared: Arc<Shared>, listener: AsyncFd<std::net::TcpListener>) {
    loop {
        shared.upgrade.gate().wait_accepting().await;
        if !shared.cfg.delay_accept.is_zero() {
            tokio::time::sleep(shared.cfg.delay_accept).await;
        }
        let mut guard = match listener.readable().await {
            Ok(g) => g,
            Err(e) => {
                warn!("listener failed: {e}");
                return;
            }
        };
        // Bound the work done per wake-up so other tasks on this worker run.
        for _ in 0..ACCEPT_BATCH {
            if shared.upgrade.gate().accept_paused() {
                break;
            }
            match crate::accept::accept4(guard.get_inner()) {
                Ok((stream, peer)) => {
                    if !shared.admitted(&stream, peer) {
                        continue;
                    }
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    if let Some(start) = serve_fast(&shared, id, &stream, peer) {
                        spawn_conn(&shared, id, stream, peer, start);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) => {
                    // Out of descriptors: make room by closing the oldest
                    // pending connection and let its task run so the socket
                    // is really closed; back off only when there is nothing
                    // to evict (every descriptor is a registration).
                    let out_of_fds =
                        matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                    if out_of_fds && shared.evict_oldest() {
                        debug!("accept: {e}; closed the oldest pending connection");
                    } else {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    break;
                }
            }
            if !shared.cfg.delay_accept.is_zero() {
                break;
            }
        }
        drop(guard);
        tokio::task::yield_now().await;
    }
}

/// Accepts handled per listener wake-up before yielding.
const ACCEPT_BATCH: usize = 64;

/// How a connection's task starts.
#[derive(Debug)]
enum Start {
    /// Read the request; these bytes of it already arrived.
    Read(Vec<u8>),
    /// The fast path answered, but the socket took only part of the reply:
    /// the rest, still bound by the pending cap and the reply deadline.
    Finish(Bytes),
}

fn spawn_conn(
    shared: &Arc<Shared>,
    id: ConnId,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    start: Start,
) {
    let span = tracing::debug_span!("conn", id, %peer);
    let shared = shared.clone();
    let busy = shared.upgrade.gate().busy();
    tokio::spawn(
        async move {
            match TcpStream::from_std(stream) {
                Ok(s) => serve_conn(shared, id, s, peer, start, busy).await,
                Err(e) => warn!("cannot register connection: {e}"),
            }
        }
        .instrument(span),
    );
}

/// Requests the fast path answers: lookups and listings, which change
/// nothing (so an upgrade's snapshot can never miss their effect).
fn is_fast(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::PortPlease2(_)
            | Request::PortPlease3(_)
            | Request::Names
            | Request::Names3
            | Request::Dump
            | Request::Dump3
    )
}

/// Tries to answer a request synchronously from what already arrived.
/// Returns `None` when the connection is finished (answered or refused),
/// or how its task must go on.
fn serve_fast(
    shared: &Shared,
    id: ConnId,
    stream: &std::net::TcpStream,
    peer: SocketAddr,
) -> Option<Start> {
    use std::io::{Read, Write};
    if !shared.cfg.delay_write.is_zero() {
        return Some(Start::Read(Vec::new()));
    }
    let mut buf = [0u8; FIRST_READ];
    let n = match (&*stream).read(&mut buf) {
        Ok(0) => return None,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(Start::Read(Vec::new())),
        Err(_) => return None,
    };
    let bytes = &buf[..n];
    let len = match frame::check(bytes) {
        Ok(Some(len)) if n == len + 2 => len,
        // Bad framing, pipelining and partial frames get the full
        // treatment (and its logging) in the handler.
        _ => return Some(Start::Read(bytes.to_vec())),
    };
    let req = match Request::decode(&bytes[2..2 + len]) {
        Ok(r) if is_fast(&r) => r,
        _ => return Some(Start::Read(bytes.to_vec())),
    };
    let command = Command::of(&req);
    let ctx = PeerCtx {
        conn: id,
        fd: stream.as_raw_fd(),
        local: is_local_peer(peer.ip(), || stream.local_addr()),
        now_unix: 0,
        owns: None,
    };
    let outcome = respond(&mut shared.registry(), req, &ctx, &shared.cfg);
    shared.count(command, &outcome);
    let reply = match outcome {
        Outcome::Reply(Reply::Whole(b)) => b,
        Outcome::Close(why) => {
            log_refusal(why, peer);
            return None;
        }
        // Lookups and listings without -delay_write are one buffer.
        other => {
            debug_assert!(false, "unexpected fast-path outcome {other:?}");
            return None;
        }
    };
    match (&*stream).write(&reply) {
        Ok(w) if w == reply.len() => None,
        // The socket buffer is full (a big listing, or a peer that does not
        // read): the rest goes out from a task that counts as pending.
        Ok(w) => Some(Start::Finish(reply.slice(w..))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Start::Finish(reply)),
        Err(_) => None,
    }
}

/// Whether the peer may use local-only commands: 127.0.0.0/8, `::1`, or the
/// same address as the socket's own end (asked for only when needed).
fn is_local_peer(peer: IpAddr, local: impl FnOnce() -> io::Result<SocketAddr>) -> bool {
    peer.is_loopback() || local().is_ok_and(|a| a.ip() == peer)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn log_refusal(why: Refusal, peer: SocketAddr) {
    match why {
        Refusal::NotLocal => warn!("non-local peer {peer} refused a local-only request"),
        other => warn!("{other}"),
    }
}

/// Why reading the first request ended without one.
#[derive(Debug)]
enum NoRequest {
    Eof,
    Timeout,
    Bad(frame::FrameError),
    Pipelined,
    Io(io::Error),
}

thread_local! {
    /// Where each read of a pending connection lands before its bytes are
    /// appended to the connection's own buffer: a connection waiting for
    /// (the rest of) its request holds only the bytes it sent, not a
    /// 3 KiB buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8; FIRST_READ]>> =
        std::cell::RefCell::new(Box::new([0; FIRST_READ]));
}

/// Reads exactly one request frame, refreshing the idle deadline on every
/// read. Extra bytes beyond the frame mean a pipelined request: close.
async fn read_request(
    stream: &mut TcpStream,
    idle: Duration,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, NoRequest> {
    loop {
        match frame::check(&buf) {
            Err(e) => return Err(NoRequest::Bad(e)),
            Ok(None) => {}
            Ok(Some(len)) if buf.len() > len + 2 => return Err(NoRequest::Pipelined),
            Ok(Some(_)) => return Ok(buf),
        }
        // Like the C server: once the length is known, read only up to the
        // end of the frame, so bytes beyond it stay unread (and the close
        // after the reply resets the connection) instead of counting as a
        // pipelined request. The first read asks for a whole frame's worth.
        let want = header_len(&buf).map_or(FIRST_READ, |len| len + 2) - buf.len();
        match tokio::time::timeout(idle, stream.readable()).await {
            Err(_) => return Err(NoRequest::Timeout),
            Ok(Err(e)) => return Err(NoRequest::Io(e)),
            Ok(Ok(())) => {}
        }
        let got = SCRATCH.with_borrow_mut(|scratch| {
            let n = stream.try_read(&mut scratch[..want])?;
            buf.extend_from_slice(&scratch[..n]);
            Ok::<_, io::Error>(n)
        });
        match got {
            Ok(0) => return Err(NoRequest::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(NoRequest::Io(e)),
        }
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    id: ConnId,
    mut stream: TcpStream,
    peer: SocketAddr,
    start: Start,
    busy: crate::handover::Busy,
) {
    trace!("accepted");
    let evict = shared.admit(id);
    let guard = PendingGuard {
        shared: &shared,
        id,
    };
    let cfg = &shared.cfg;
    let initial = match start {
        Start::Read(initial) => initial,
        Start::Finish(rest) => {
            let _ = send(&mut stream, cfg, &Reply::Whole(rest), &evict).await;
            return;
        }
    };
    // Registrations never time out; everything else must finish its request
    // within the idle limit. The C epmd compares whole seconds, so a client
    // idle for exactly `packet_timeout` survives; allow one more second.
    let frame = tokio::select! {
        r = read_request(&mut stream, idle_limit(cfg), initial) => r,
        () = evict.notified() => return,
    };
    let frame = match frame {
        Ok(f) => f,
        Err(NoRequest::Bad(e)) => {
            shared.metrics.request(Command::Invalid, Verdict::Closed);
            warn!("invalid packet: {e}");
            return;
        }
        Err(NoRequest::Pipelined) => {
            shared.metrics.request(Command::Invalid, Verdict::Closed);
            warn!("more than one request in a packet: closing");
            return;
        }
        Err(NoRequest::Io(e)) => {
            trace!("read error: {e}");
            return;
        }
        Err(e) => {
            trace!("closed without a request: {e:?}");
            return;
        }
    };
    let local = is_local_peer(peer.ip(), || stream.local_addr());
    if frame.get(2..) == Some(crate::handover::UPGRADE_BODY) {
        drop(busy);
        if local {
            // Returns only when the upgrade failed (on success this
            // process exits; the new one counts epmdx_upgrades_total).
            crate::handover::serve_request(shared.clone(), stream).await;
            shared.metrics.request(Command::Upgrade, Verdict::Refused);
        } else {
            shared.metrics.request(Command::Upgrade, Verdict::Closed);
            warn!("non-local peer {peer} refused a local-only request");
        }
        return;
    }
    let req = match Request::decode(&frame[2..]) {
        Ok(r) => r,
        Err(e) => {
            shared.metrics.request(Command::Invalid, Verdict::Closed);
            warn!("got garbage: {e}");
            return;
        }
    };
    let command = Command::of(&req);
    let ctx = PeerCtx {
        conn: id,
        fd: stream.as_raw_fd(),
        local,
        now_unix: now_unix(),
        owns: None,
    };
    let outcome = respond(&mut shared.registry(), req, &ctx, cfg);
    shared.count(command, &outcome);
    drop(frame);
    match outcome {
        Outcome::Close(why) => log_refusal(why, peer),
        Outcome::Reply(reply) => {
            let _ = send(&mut stream, cfg, &reply, &evict).await;
        }
        Outcome::Stop { reply, stopped } => {
            if let Some(stopper) = stopped {
                stopper.notify_one();
            }
            let _ = send(&mut stream, cfg, &reply, &evict).await;
        }
        Outcome::Kill(reply) => {
            let _ = send(&mut stream, cfg, &reply, &evict).await;
            drop(stream);
            shared.killed.notify_one();
        }
        Outcome::Continue(_) => unreachable!("only on a registration connection"),
        Outcome::Registered {
            reply,
            name,
            extended,
            stopper,
            creation,
        } => {
            drop(guard);
            drop(busy);
            debug!(
                "registering '{}:{creation}'{}",
                String::from_utf8_lossy(&name),
                if extended { " (extended)" } else { "" }
            );
            if write_reply(&mut stream, cfg, &reply, None).await.is_ok() {
                // The holding phase in its own, small task: this one (with
                // its request-reading state) ends and frees its memory.
                let held = hold_registered(shared.clone(), id, name, stream, stopper, extended);
                tokio::spawn(held.in_current_span());
            } else {
                shared.registry().unregister(id, &name);
                debug!("unregistering '{}'", String::from_utf8_lossy(&name));
            }
        }
        Outcome::Refused {
            reply,
            hold,
            name,
            error,
        } => {
            warn!(
                "registration of '{}' refused: {error}",
                String::from_utf8_lossy(&name)
            );
            if hold {
                drop(busy);
            }
            if write_reply(&mut stream, cfg, &reply, None).await.is_ok() && hold {
                // Like the C epmd, keep a refused registration's socket
                // open until the client closes it, without a timeout; it
                // stays evictable in the pending table.
                tokio::select! {
                    () = hold_registration(&mut stream, &evict) => {}
                    () = evict.notified() => {}
                }
            }
        }
    }
}

/// The idle limit of a connection that has not registered: the C epmd
/// compares whole seconds, so a client idle for exactly `packet_timeout`
/// survives; allow one more second. A reply must be taken within it too.
fn idle_limit(cfg: &Config) -> Duration {
    cfg.packet_timeout + Duration::from_secs(1)
}

/// Sends a reply to a connection that has not registered: every write
/// must be taken within the idle limit, and an eviction (pending table
/// full) closes the connection mid-reply too, so a peer that does not read
/// holds its descriptor and its share of the reply for a bounded time.
async fn send(
    stream: &mut TcpStream,
    cfg: &Config,
    reply: &Reply,
    evict: &Notify,
) -> io::Result<()> {
    tokio::select! {
        r = write_reply(stream, cfg, reply, Some(idle_limit(cfg))) => {
            if let Err(e) = &r {
                debug!("reply not sent: {e}");
            }
            r
        }
        () = evict.notified() => {
            debug!("evicted while its reply was being sent");
            Err(io::ErrorKind::ConnectionAborted.into())
        }
    }
}

/// Holds a registration until its connection ends or STOP removes it, then
/// unregisters it.
async fn hold_registered(
    shared: Arc<Shared>,
    id: ConnId,
    name: Box<[u8]>,
    mut stream: TcpStream,
    stopper: Stopper,
    extended: bool,
) {
    if extended {
        serve_ext_registration(&shared, id, &name, &mut stream, &stopper).await;
    } else {
        hold_legacy(&shared, &mut stream, &stopper).await;
    }
    shared.registry().unregister(id, &name);
    debug!("unregistering '{}'", String::from_utf8_lossy(&name));
}

/// Waits until a refused registration's client closes: any byte, EOF or
/// error on its socket (the C epmd's rule), or a notification.
async fn hold_registration(stream: &mut TcpStream, stop: &Notify) {
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = stream.read(&mut byte) => {}
        () = stop.notified() => {}
    }
}

/// Waits until a live legacy registration must end: any byte, EOF or error
/// on its socket, or a STOP for its name. The byte that ends it is consumed
/// only while no upgrade freezes the connection (the new process must see
/// it instead).
async fn hold_legacy(shared: &Shared, stream: &mut TcpStream, stop: &Notify) {
    loop {
        tokio::select! {
            r = stream.readable() => if r.is_err() { return },
            () = stop.notified() => return,
        }
        let _entered = shared.upgrade.gate().enter().await;
        let mut byte = [0u8; 1];
        match stream.try_read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            _ => return,
        }
    }
}

/// Serves follow-up ALIVE3 and UNREG3 requests on a node's own connection
/// until it closes, sends anything else, or is stopped. Requests may be
/// pipelined here; they are answered in order.
async fn serve_ext_registration(
    shared: &Shared,
    id: ConnId,
    name: &[u8],
    stream: &mut TcpStream,
    stop: &Notify,
) {
    // Allocated only while a request is partially received, so an idle
    // registration costs no buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            r = stream.readable() => if r.is_err() { return },
            () = stop.notified() => return,
        }
        // Held until the requests read now are answered, so an upgrade
        // never hands over a connection with a request half served.
        let _entered = shared.upgrade.gate().enter().await;
        buf.reserve(INBUF_SIZE);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        while let Ok(Some(len)) = frame::check(&buf) {
            let outcome = match Request::decode(&buf[2..2 + len]) {
                Ok(req) => {
                    let command = Command::of(&req);
                    let ctx = PeerCtx {
                        conn: id,
                        fd: stream.as_raw_fd(),
                        local: true,
                        now_unix: now_unix(),
                        owns: Some(name),
                    };
                    let outcome = respond(&mut shared.registry(), req, &ctx, &shared.cfg);
                    shared.count(command, &outcome);
                    outcome
                }
                Err(_) => {
                    shared.metrics.request(Command::Invalid, Verdict::Closed);
                    Outcome::Close(Refusal::Unexpected)
                }
            };
            let Outcome::Continue(reply) = outcome else {
                warn!("unexpected request on a registration connection: closing");
                return;
            };
            buf.drain(..2 + len);
            if write_reply(stream, &shared.cfg, &reply, None)
                .await
                .is_err()
            {
                return;
            }
        }
        if frame::check(&buf).is_err() {
            warn!("invalid packet on a registration connection: closing");
            return;
        }
        if buf.is_empty() {
            buf = Vec::new();
        }
    }
}

/// Writes a reply: one write after the `-delay_write` pause, or for a
/// paced listing the header and each line separately, each after its own
/// pause like the C server's. Each write must complete within `limit`.
async fn write_reply(
    stream: &mut TcpStream,
    cfg: &Config,
    reply: &Reply,
    limit: Option<Duration>,
) -> io::Result<()> {
    match reply {
        Reply::Whole(b) => write_part(stream, cfg, b, limit).await,
        Reply::Paced(listing) => {
            for part in listing.parts() {
                write_part(stream, cfg, part, limit).await?;
            }
            Ok(())
        }
    }
}

async fn write_part(
    stream: &mut TcpStream,
    cfg: &Config,
    bytes: &[u8],
    limit: Option<Duration>,
) -> io::Result<()> {
    if !cfg.delay_write.is_zero() {
        tokio::time::sleep(cfg.delay_write).await;
    }
    let write = stream.write_all(bytes);
    match limit {
        None => write.await,
        Some(limit) => tokio::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
    }
}
