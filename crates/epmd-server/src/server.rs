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

use epmd_proto::ext::{self, Status};
use epmd_proto::frame;
use epmd_proto::legacy::{self, Alive2Resp};
use epmd_proto::limits::{MAX_PACKET, UNREG_LIST_CAP};
use epmd_proto::Request;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::{debug, trace, warn, Instrument};

use crate::registry::{ConnId, Filter, Registry};

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
        }
    }
}

/// The C epmd's unregistered-list cap under `-d`.
const DEBUG_UNREG_LIST_CAP: usize = 5;

/// Closes the connection of a node that STOP removed.
type Stopper = Arc<Notify>;

#[derive(Debug)]
struct Shared {
    cfg: Config,
    registry: Mutex<Registry<Stopper>>,
    /// Pending connections, oldest first (ids grow monotonically).
    pending: Mutex<BTreeMap<ConnId, Arc<Notify>>>,
    next_id: AtomicU64,
    killed: Notify,
    /// In-place upgrade: the gate, the re-exec recipe, the listeners.
    upgrade: crate::handover::Hooks,
}

impl Shared {
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
            }
        }
        p.insert(id, evict.clone());
        evict
    }

    /// Closes the oldest pending connection (used when accept hits EMFILE).
    /// Returns whether there was one.
    fn evict_oldest(&self) -> bool {
        let oldest = self.pending().pop_first();
        oldest.map(|(_, n)| n.notify_one()).is_some()
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
            upgrade,
            cfg,
        });
        Self { shared, listeners }
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
        let server = Self::build(cfg, listeners, registry, next);
        for (i, ((stream, stopper), node)) in streams
            .into_iter()
            .zip(stoppers)
            .zip(&incoming.snapshot.nodes)
            .enumerate()
        {
            stream.set_nonblocking(true)?;
            let stream = TcpStream::from_std(stream)?;
            let extended = matches!(node.kind, crate::registry::KindState::Ext { .. });
            let shared = server.shared.clone();
            let name: Box<[u8]> = node.name.as_slice().into();
            let id = i as ConnId + 1;
            let span = tracing::debug_span!("adopted", id);
            tokio::spawn(
                async move {
                    let mut stream = stream;
                    if extended {
                        serve_ext_registration(&shared, id, &name, &mut stream, &stopper).await;
                    } else {
                        hold_legacy(&shared, &mut stream, &stopper).await;
                    }
                    shared.registry().unregister(id, &name);
                    debug!("unregistering '{}'", String::from_utf8_lossy(&name));
                }
                .instrument(span),
            );
        }
        Ok(server)
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
        for l in self.listeners {
            tokio::spawn(accept_loop(self.shared.clone(), l));
        }
        crate::handover::spawn_signal_task(self.shared.clone());
        self.shared.killed.notified().await;
        debug!("killed by request");
        Ok(())
    }
}

/// Accepts connections. Sockets are accepted with `accept4` straight from
/// the listener and first served synchronously (see [`serve_fast`]): a
/// lookup whose request is already in the socket buffer is answered without
/// registering the socket with the reactor or spawning a task. Everything
/// else continues in its own task.
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
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    if let Some(initial) = serve_fast(&shared, &stream, peer) {
                        spawn_conn(&shared, id, stream, peer, initial);
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

fn spawn_conn(
    shared: &Arc<Shared>,
    id: ConnId,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    initial: Vec<u8>,
) {
    let span = tracing::debug_span!("conn", id, %peer);
    let shared = shared.clone();
    let busy = shared.upgrade.gate().busy();
    tokio::spawn(
        async move {
            match TcpStream::from_std(stream) {
                Ok(s) => serve_conn(shared, id, s, peer, initial, busy).await,
                Err(e) => warn!("cannot register connection: {e}"),
            }
        }
        .instrument(span),
    );
}

/// Tries to answer a lookup synchronously from what already arrived.
/// Returns `None` when the connection is finished (answered or refused),
/// or the bytes read so far when it needs the asynchronous handler.
fn serve_fast(shared: &Shared, stream: &std::net::TcpStream, peer: SocketAddr) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    if !shared.cfg.delay_write.is_zero() {
        return Some(Vec::new());
    }
    let mut buf = [0u8; FIRST_READ];
    let n = match (&*stream).read(&mut buf) {
        Ok(0) => return None,
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(Vec::new()),
        Err(_) => return None,
    };
    let bytes = &buf[..n];
    let len = match frame::check(bytes) {
        Ok(Some(len)) if n == len + 2 => len,
        // Bad framing, pipelining and partial frames get the full
        // treatment (and its logging) in the handler.
        _ => return Some(bytes.to_vec()),
    };
    let reply: Vec<u8> = match Request::decode(&bytes[2..2 + len]) {
        Ok(Request::PortPlease2(name)) => match shared.registry().port2_reply(name) {
            Some(r) => r.to_vec(),
            None => legacy::PORT2_MISS.to_vec(),
        },
        Ok(Request::PortPlease3(p)) => match p.validate() {
            Err(st) => ext::encode_port3_status(st).to_vec(),
            Ok(()) => {
                let local_ip = stream.local_addr().ok().map(|a| a.ip());
                let filter = Filter {
                    protos: &p.protos,
                    local: is_local_peer(peer.ip(), local_ip),
                };
                shared.registry().port3_reply(p.name, &filter)
            }
        },
        _ => return Some(bytes.to_vec()),
    };
    match (&*stream).write(&reply) {
        Ok(w) if w == reply.len() => None,
        // A full socket buffer on a fresh connection is unexpected; finish
        // the write asynchronously rather than drop the reply.
        Ok(w) => {
            let rest = reply[w..].to_vec();
            let dup = stream.try_clone().ok()?;
            tokio::spawn(async move {
                if let Ok(mut s) = TcpStream::from_std(dup) {
                    let _ = s.write_all(&rest).await;
                }
            });
            None
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let dup = stream.try_clone().ok()?;
            tokio::spawn(async move {
                if let Ok(mut s) = TcpStream::from_std(dup) {
                    let _ = s.write_all(&reply).await;
                }
            });
            None
        }
        Err(_) => None,
    }
}

/// Whether the peer may use local-only commands: 127.0.0.0/8, `::1`, or the
/// same address as the socket's own end.
fn is_local_peer(peer: IpAddr, local: Option<IpAddr>) -> bool {
    peer.is_loopback() || Some(peer) == local
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// Reads exactly one request frame, refreshing the idle deadline on every
/// read. Extra bytes beyond the frame mean a pipelined request: close.
async fn read_request(
    stream: &mut TcpStream,
    idle: Duration,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, NoRequest> {
    let mut filled = buf.len();
    buf.resize(FIRST_READ, 0);
    loop {
        match frame::check(&buf[..filled]) {
            Err(e) => return Err(NoRequest::Bad(e)),
            Ok(None) => {}
            Ok(Some(len)) if filled > len + 2 => return Err(NoRequest::Pipelined),
            Ok(Some(_)) => {
                buf.truncate(filled);
                return Ok(buf);
            }
        }
        // Like the C server: once the length is known, read only up to the
        // end of the frame, so bytes beyond it stay unread (and the close
        // after the reply resets the connection) instead of counting as a
        // pipelined request.
        let want = header_len(&buf[..filled]).map_or(FIRST_READ, |len| len + 2);
        let n = match tokio::time::timeout(idle, stream.read(&mut buf[filled..want])).await {
            Err(_) => return Err(NoRequest::Timeout),
            Ok(Err(e)) => return Err(NoRequest::Io(e)),
            Ok(Ok(0)) => return Err(NoRequest::Eof),
            Ok(Ok(n)) => n,
        };
        filled += n;
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    id: ConnId,
    mut stream: TcpStream,
    peer: SocketAddr,
    initial: Vec<u8>,
    busy: crate::handover::Busy,
) {
    trace!("accepted");
    let local_ip = stream.local_addr().ok().map(|a| a.ip());
    let local = is_local_peer(peer.ip(), local_ip);
    let evict = shared.admit(id);
    let guard = PendingGuard {
        shared: &shared,
        id,
    };
    // Registrations never time out; everything else must finish its request
    // within the idle limit. The C epmd compares whole seconds, so a client
    // idle for exactly `packet_timeout` survives; allow one more second.
    let idle = shared.cfg.packet_timeout + Duration::from_secs(1);
    let frame = tokio::select! {
        r = read_request(&mut stream, idle, initial) => r,
        () = evict.notified() => return,
    };
    let frame = match frame {
        Ok(f) => f,
        Err(NoRequest::Bad(e)) => {
            warn!("invalid packet: {e}");
            return;
        }
        Err(NoRequest::Pipelined) => {
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
    if frame.get(2..) == Some(crate::handover::UPGRADE_BODY) {
        drop(busy);
        if local {
            crate::handover::serve_request(shared.clone(), stream).await;
        } else {
            warn!("non-local peer {peer} refused a local-only request");
        }
        return;
    }
    let req = match Request::decode(&frame[2..]) {
        Ok(r) => r,
        Err(e) => {
            warn!("got garbage: {e}");
            return;
        }
    };
    if req.is_local_only() && !local {
        warn!("non-local peer {peer} refused a local-only request");
        return;
    }
    let cfg = &shared.cfg;
    match req {
        Request::Alive2(a) => {
            let name: Box<[u8]> = a.name.into();
            let (x_form, port) = (a.wants_x_reply(), a.port);
            let stopper = Stopper::default();
            let fd = stream.as_raw_fd();
            let res = shared
                .registry()
                .register_legacy(id, fd, &a, now_unix(), stopper.clone());
            drop(frame);
            match res {
                Ok(reg) => {
                    drop(guard);
                    drop(busy);
                    debug!(
                        "registering '{}:{}', port {}",
                        String::from_utf8_lossy(&name),
                        reg.creation,
                        port
                    );
                    let reply = if x_form {
                        Alive2Resp::X {
                            result: 0,
                            creation: reg.creation,
                        }
                    } else {
                        Alive2Resp::Legacy {
                            result: 0,
                            creation: reg.legacy_creation(),
                        }
                    };
                    if write_reply(&mut stream, cfg, &reply.encode()).await.is_ok() {
                        hold_legacy(&shared, &mut stream, &stopper).await;
                    }
                    shared.registry().unregister(id, &name);
                    debug!("unregistering '{}'", String::from_utf8_lossy(&name));
                }
                Err(e) => {
                    warn!(
                        "registration of '{}' refused: {e}",
                        String::from_utf8_lossy(&name)
                    );
                    let reply = Alive2Resp::failure(x_form).encode();
                    drop(busy);
                    if write_reply(&mut stream, cfg, &reply).await.is_ok() {
                        // Like the C epmd, keep a refused registration's socket
                        // open until the client closes it, without a timeout;
                        // it stays evictable in the pending table.
                        tokio::select! {
                            () = hold_registration(&mut stream, &evict) => {}
                            () = evict.notified() => {}
                        }
                    }
                }
            }
        }
        Request::PortPlease2(name) => {
            let reply = shared.registry().port2_reply(name);
            let reply: &[u8] = reply.as_deref().unwrap_or(&legacy::PORT2_MISS);
            let _ = write_reply(&mut stream, cfg, reply).await;
        }
        Request::Names => {
            let lines = shared.registry().names_lines();
            let _ = write_listing(&mut stream, cfg, lines).await;
        }
        Request::Dump => {
            let lines = shared.registry().dump_lines();
            let _ = write_listing(&mut stream, cfg, lines).await;
        }
        Request::Kill => {
            let refuse = !cfg.relaxed && !shared.registry().is_empty();
            if refuse {
                let _ = write_reply(&mut stream, cfg, legacy::KILL_NO).await;
            } else {
                let _ = write_reply(&mut stream, cfg, legacy::KILL_OK).await;
                drop(stream);
                shared.killed.notify_one();
            }
        }
        Request::Stop(name) => {
            if !cfg.relaxed {
                warn!("stop request refused: not in relaxed mode");
                return;
            }
            let stopped = shared.registry().stop(name);
            let reply = match stopped {
                Some(stopper) => {
                    stopper.notify_one();
                    legacy::STOP_STOPPED
                }
                None => legacy::STOP_NOEXIST,
            };
            let _ = write_reply(&mut stream, cfg, reply).await;
        }
        Request::Alive3(a) => {
            let name: Box<[u8]> = a.name.into();
            let stopper = Stopper::default();
            let fd = stream.as_raw_fd();
            let res = shared
                .registry()
                .register_ext(id, fd, &a, now_unix(), stopper.clone());
            drop(frame);
            match res {
                Ok(reg) => {
                    drop(guard);
                    drop(busy);
                    debug!(
                        "registering '{}:{}' (extended)",
                        String::from_utf8_lossy(&name),
                        reg.creation
                    );
                    let reply = ext::encode_alive3_reply(Status::Ok, reg.creation);
                    if write_reply(&mut stream, cfg, &reply).await.is_ok() {
                        serve_ext_registration(&shared, id, &name, &mut stream, &stopper).await;
                    }
                    shared.registry().unregister(id, &name);
                    debug!("unregistering '{}'", String::from_utf8_lossy(&name));
                }
                Err(e) => {
                    warn!(
                        "registration of '{}' refused: {e}",
                        String::from_utf8_lossy(&name)
                    );
                    let _ = write_reply(&mut stream, cfg, &ext::encode_alive3_reply(e.status(), 0))
                        .await;
                }
            }
        }
        Request::PortPlease3(p) => {
            let reply = match p.validate() {
                Err(s) => ext::encode_port3_status(s).to_vec(),
                Ok(()) => shared.registry().port3_reply(
                    p.name,
                    &Filter {
                        protos: &p.protos,
                        local,
                    },
                ),
            };
            let _ = write_reply(&mut stream, cfg, &reply).await;
        }
        Request::Names3 => {
            let reply = shared.registry().names3_reply(cfg.port, local);
            let _ = write_reply(&mut stream, cfg, &reply).await;
        }
        Request::Dump3 => {
            let reply = shared.registry().dump3_reply(cfg.port);
            let _ = write_reply(&mut stream, cfg, &reply).await;
        }
        Request::Unreg3(_) => {
            let reply = ext::encode_unreg3_reply(Status::NotRegistered);
            let _ = write_reply(&mut stream, cfg, &reply).await;
        }
    }
}

/// Waits until a legacy registration must end: any byte, EOF or error on
/// its socket (the C epmd's rule), or a STOP for its name.
async fn hold_registration(stream: &mut TcpStream, stop: &Notify) {
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = stream.read(&mut byte) => {}
        () = stop.notified() => {}
    }
}

/// [`hold_registration`] for a live legacy registration: the byte that ends
/// it is consumed only while no upgrade freezes the connection (the new
/// process must see it instead).
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
            let reply = {
                let body = &buf[2..2 + len];
                let mut reg = shared.registry();
                match Request::decode(body) {
                    Ok(Request::Alive3(a)) => match reg.add_transports(id, name, &a) {
                        Ok(r) => ext::encode_alive3_reply(Status::Ok, r.creation),
                        Err(e) => ext::encode_alive3_reply(e.status(), 0),
                    },
                    Ok(Request::Unreg3(u)) => {
                        ext::encode_unreg3_reply(reg.remove_transport(id, name, u.proto)).to_vec()
                    }
                    _ => {
                        warn!("unexpected request on a registration connection: closing");
                        return;
                    }
                }
            };
            buf.drain(..2 + len);
            if write_reply(stream, &shared.cfg, &reply).await.is_err() {
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

/// Writes one reply in one write, after the `-delay_write` pause.
async fn write_reply(stream: &mut TcpStream, cfg: &Config, bytes: &[u8]) -> io::Result<()> {
    if !cfg.delay_write.is_zero() {
        tokio::time::sleep(cfg.delay_write).await;
    }
    stream.write_all(bytes).await
}

/// Writes a NAMES or DUMP listing: the u32 port header, then the lines. With
/// `-delay_write` each part is paced like the C server's separate writes;
/// otherwise the whole listing goes in one write.
async fn write_listing(
    stream: &mut TcpStream,
    cfg: &Config,
    lines: Vec<Vec<u8>>,
) -> io::Result<()> {
    let header = u32::from(cfg.port).to_be_bytes();
    if cfg.delay_write.is_zero() {
        let mut all = Vec::with_capacity(4 + lines.iter().map(Vec::len).sum::<usize>());
        all.extend_from_slice(&header);
        lines.iter().for_each(|l| all.extend_from_slice(l));
        return stream.write_all(&all).await;
    }
    write_reply(stream, cfg, &header).await?;
    for line in &lines {
        write_reply(stream, cfg, line).await?;
    }
    Ok(())
}
