//! The node: its name, creation and EPMD registration, its processes
//! (mailboxes), and its connections to other nodes, made lazily on first
//! send as BEAM does.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use dist_proto::{
    flags, Acceptor, Connector, Established, HandshakeConfig, HandshakeError, PeerCheck,
};
use epmd_client::{Client, ClientError, Lookup, NodeSpec};
use erl_term::{Atom, Pid, Reference, Term};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::conn::{self, ConnError, ConnHandle, Dispatch};
use crate::control::{build, Control};
use crate::mailbox::Mailbox;
use crate::policy::{FirstOffered, Offer, Peer, Selection, SelectionPolicy};
use crate::transport::tls::{Tls, TlsFiles};
use crate::transport::{tcp, uds, BoxStream, ListenSpec, Proto, TransportError};

/// Optional distribution flags this node offers: the traffic it decodes.
/// No atom cache and no fragments, so peers send pass-through messages.
pub const OFFERED_FLAGS: u64 = flags::DEFAULT_OPTIONAL;

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Full node name, `alive@host`.
    pub name: String,
    /// The shared secret.
    pub cookie: String,
    /// Hidden nodes do not join the peer's `nodes()` list.
    pub hidden: bool,
    /// The transports to listen on, each registered with EPMD. Empty makes
    /// a client-only node that neither listens nor registers.
    pub listen: Vec<ListenSpec>,
    /// Certificates, needed for `inet_tls` / `inet6_tls`.
    pub tls: Option<TlsFiles>,
    /// Directory of the Unix socket (see [`crate::transport::uds`]).
    pub uds_dir: std::path::PathBuf,
    /// Chooses the transport for each outgoing connection.
    pub policy: Arc<dyn SelectionPolicy>,
    /// Try the next candidate when the chosen transport cannot be reached.
    pub failover: bool,
    /// The EPMD port (`ERL_EPMD_PORT`, default 4369), for registration and
    /// lookups.
    pub epmd_port: u16,
    /// `net_ticktime`: a peer silent this long is down; ticks go out every
    /// quarter of it.
    pub net_ticktime: Duration,
    /// Bound on one connection set-up (lookup, connect, handshake).
    pub setup_time: Duration,
    /// Most handshakes in progress on the listener at once.
    pub max_pending_handshakes: usize,
    /// Failed handshakes allowed per peer address per minute before its
    /// connections are refused for the rest of that minute.
    pub max_failures_per_minute: u32,
}

impl NodeConfig {
    /// Defaults: visible, listening on all interfaces on a free port, EPMD
    /// from `ERL_EPMD_PORT` or 4369, tick time 60 s, set-up time 7 s.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cookie: cookie.into(),
            hidden: false,
            listen: vec![ListenSpec::any(Proto::InetTcp)],
            tls: None,
            uds_dir: uds::default_dir(),
            policy: Arc::new(FirstOffered),
            failover: true,
            epmd_port: epmd_port_from_env(),
            net_ticktime: Duration::from_secs(60),
            setup_time: Duration::from_secs(7),
            max_pending_handshakes: 64,
            max_failures_per_minute: 10,
        }
    }
}

/// `ERL_EPMD_PORT` if set and valid, else 4369.
pub fn epmd_port_from_env() -> u16 {
    std::env::var("ERL_EPMD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4369)
}

/// Errors of the node API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A node name that is not `alive@host`, or a bad atom.
    #[error("invalid name {0:?}")]
    BadName(String),
    /// EPMD failed or refused.
    #[error(transparent)]
    Epmd(#[from] ClientError),
    /// The peer is not registered with its host's EPMD.
    #[error("node {0} is not registered with epmd")]
    NotRegistered(String),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A transport could not be set up or reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The selection policy refused the peer.
    #[error("transport selection refused {peer}: {reason}")]
    Refused {
        /// The peer node.
        peer: String,
        /// The policy's reason.
        reason: String,
    },
    /// Connection set-up or connection failure.
    #[error("connection to {peer} failed: {cause}")]
    Connect {
        /// The peer node.
        peer: String,
        /// Why.
        cause: ConnError,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The called process went down (or its node did) before replying.
    #[error("process down: {0}")]
    Down(String),
    /// The name is already registered on this node.
    #[error("name {0} is already registered")]
    NameTaken(String),
}

/// A connection event, for [`Node::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A connection to the node came up.
    Up(String),
    /// The connection went down, with the reason.
    Down(String, String),
}

/// What [`Node::connections`] reports per peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The peer node.
    pub peer: String,
    /// The transport in use (`inet_tcp`, ...).
    pub transport: &'static str,
    /// Negotiated distribution flags.
    pub flags: u64,
}

#[derive(Debug)]
enum Slot {
    /// This node is dialling the peer.
    Connecting,
    /// The peer is dialling this node; its handshake is in progress.
    Accepting,
    Up(ConnHandle),
}

#[derive(Debug, Default)]
struct Proc {
    tx: Option<mpsc::UnboundedSender<Term>>,
    links: HashSet<Pid>,
    /// Processes monitoring this one, with the target as they named it (a
    /// pid, or a registered name, which the DOWN message reports back).
    monitored_by: Vec<(Pid, Reference, Term)>,
    /// Monitors this process holds: reference -> (node, target).
    monitors: HashMap<Reference, (String, Term)>,
    name: Option<Atom>,
}

/// Bounds failed handshakes per address (cookie guessing).
#[derive(Debug, Default)]
struct Failures {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
}

const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED_ADDRESSES: usize = 4096;

impl Failures {
    fn blocked(&mut self, ip: IpAddr, limit: u32, now: Instant) -> bool {
        match self.by_ip.get(&ip) {
            Some(&(n, since)) if now.duration_since(since) < FAILURE_WINDOW => n >= limit,
            Some(_) => {
                self.by_ip.remove(&ip);
                false
            }
            None => false,
        }
    }

    fn record(&mut self, ip: IpAddr, now: Instant) {
        if self.by_ip.len() >= MAX_TRACKED_ADDRESSES && !self.by_ip.contains_key(&ip) {
            // Forget expired windows first; if none, the oldest one.
            self.by_ip
                .retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if self.by_ip.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(oldest) = self
                    .by_ip
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(k, _)| *k)
                {
                    self.by_ip.remove(&oldest);
                }
            }
        }
        let e = self.by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }
}

pub(crate) struct Inner {
    cfg: NodeConfig,
    name: Atom,
    creation: u32,
    procs: RwLock<HashMap<u32, Proc>>,
    names: RwLock<HashMap<Atom, Pid>>,
    conns: Mutex<HashMap<String, Slot>>,
    conn_changed: Notify,
    events: broadcast::Sender<NodeEvent>,
    next_id: AtomicU32,
    next_ref: AtomicU64,
    failures: Mutex<Failures>,
    listen_port: Option<u16>,
    /// What this node listens on: (transport, port, extra).
    transports: Vec<(Proto, u16, Vec<u8>)>,
    tls: Option<Tls>,
    /// Held for its side effect: the EPMD registration lives as long as
    /// this connection. `None` once stopped, or for a client-only node.
    registration: Mutex<Option<Registration>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// How the node is registered with EPMD.
#[derive(Debug)]
enum Registration {
    /// Through the epmdx extension (ALIVE3), on its own connection.
    Extended(#[allow(dead_code)] epmd_client::ExtRegistration),
    /// Plain ALIVE2 against a stock EPMD.
    Legacy(#[allow(dead_code)] epmd_client::Registration),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("creation", &self.creation)
            .finish_non_exhaustive()
    }
}

/// A Rust Erlang node. Cheap to clone; all clones are the same node.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // The OS RNG only fails on very old kernels; a zero challenge is still
    // a valid one, so fall back rather than fail the handshake.
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}

fn split_name(full: &str) -> Result<(&str, &str), NodeError> {
    match full.split_once('@') {
        Some((a, h))
            if !a.is_empty()
                && !h.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok((a, h))
        }
        _ => Err(NodeError::BadName(full.to_owned())),
    }
}

fn atom(s: &str) -> Result<Atom, NodeError> {
    Atom::new(s).map_err(|_| NodeError::BadName(s.to_owned()))
}

impl Node {
    /// Starts a node: binds its listener, registers it with EPMD (the
    /// epmdx extension if the daemon speaks it, else plain ALIVE2), and
    /// starts answering `net_adm:ping`.
    pub async fn start(cfg: NodeConfig) -> Result<Self, NodeError> {
        let (alive, _host) = split_name(&cfg.name)?;
        let name = atom(&cfg.name)?;
        let tls = cfg.tls.as_ref().map(Tls::load).transpose()?;
        let mut listeners = Vec::new();
        for spec in &cfg.listen {
            let l = match spec.proto {
                Proto::Uds => Listener::Uds(uds::bind(&cfg.uds_dir, alive).await?),
                p => {
                    if p.is_tls() && tls.is_none() {
                        return Err(TransportError::NoTls(p).into());
                    }
                    Listener::Tcp(tcp::bind(spec.addr)?, p)
                }
            };
            listeners.push(l);
        }
        let transports: Vec<(Proto, u16, Vec<u8>)> =
            listeners.iter().map(Listener::advertised).collect();
        let listen_port = transports
            .iter()
            .find(|(p, _, _)| *p != Proto::Uds)
            .map(|(_, port, _)| *port);
        let (creation, registration) = if transports.is_empty() {
            // Like `-dist_listen false`: a random creation of at least 4.
            (random_u32().max(4), None)
        } else {
            let (c, r) = register(alive, &transports, cfg.epmd_port, cfg.hidden).await?;
            (c, Some(r))
        };
        let inner = Arc::new(Inner {
            name,
            creation,
            procs: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            conn_changed: Notify::new(),
            events: broadcast::channel(256).0,
            next_id: AtomicU32::new(1),
            next_ref: AtomicU64::new(1),
            failures: Mutex::new(Failures::default()),
            listen_port,
            transports,
            tls,
            registration: Mutex::new(registration),
            tasks: Mutex::new(Vec::new()),
            cfg,
        });
        let node = Self { inner };
        let permits = Arc::new(Semaphore::new(node.inner.cfg.max_pending_handshakes));
        for l in listeners {
            let t = tokio::spawn(accept_loop(node.inner.clone(), l, permits.clone()));
            lock(&node.inner.tasks).push(t.abort_handle());
        }
        node.spawn_services()?;
        info!(
            "node {} started (creation {}, transports {:?})",
            node.name(),
            creation,
            node.inner.transports
        );
        Ok(node)
    }

    /// The transports this node listens on, with their ports (0 for a Unix
    /// socket).
    pub fn transports(&self) -> Vec<(Proto, u16)> {
        self.inner
            .transports
            .iter()
            .map(|(p, port, _)| (*p, *port))
            .collect()
    }

    /// The full node name.
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// The node's creation.
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// The first TCP or TLS listen port, if any.
    pub fn listen_port(&self) -> Option<u16> {
        self.inner.listen_port
    }

    /// Connection up/down events.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// Every live connection and the transport it uses.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let conns = lock(&self.inner.conns);
        let mut v: Vec<ConnInfo> = conns
            .iter()
            .filter_map(|(peer, s)| match s {
                Slot::Up(h) => Some(ConnInfo {
                    peer: peer.clone(),
                    transport: h.transport,
                    flags: h.flags,
                }),
                Slot::Connecting | Slot::Accepting => None,
            })
            .collect();
        v.sort_by(|a, b| a.peer.cmp(&b.peer));
        v
    }

    /// Creates an unnamed mailbox.
    pub fn mailbox(&self) -> Mailbox {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Classic pids carry 15 bits of number and 13 of serial.
        let pid = Pid {
            node: self.inner.name.clone(),
            id: id & 0x7fff,
            serial: (id >> 15) & 0x1fff,
            creation: self.inner.creation,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .procs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key(&pid),
                Proc {
                    tx: Some(tx),
                    ..Proc::default()
                },
            );
        Mailbox {
            node: self.clone(),
            pid,
            rx,
        }
    }

    /// Creates a mailbox registered under `name`.
    pub fn register_mailbox(&self, name: &str) -> Result<Mailbox, NodeError> {
        let a = atom(name)?;
        let mb = self.mailbox();
        {
            let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
            if names.contains_key(&a) {
                return Err(NodeError::NameTaken(name.to_owned()));
            }
            names.insert(a.clone(), mb.pid.clone());
        }
        if let Some(p) = self
            .inner
            .procs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key(&mb.pid))
        {
            p.name = Some(a);
        }
        Ok(mb)
    }

    /// A fresh reference of this node.
    pub fn make_ref(&self) -> Reference {
        let n = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        Reference {
            node: self.inner.name.clone(),
            creation: self.inner.creation,
            ids: vec![(n & 0x3ffff) as u32, (n >> 18) as u32, random_u32()],
        }
    }

    /// Connects to `peer` now (otherwise the first send does).
    pub async fn connect(&self, peer: &str) -> Result<(), NodeError> {
        self.inner.conn(peer).await.map(|_| ())
    }

    /// Closes the connection to `peer`, if any.
    pub fn disconnect(&self, peer: &str) {
        if let Some(Slot::Up(h)) = lock(&self.inner.conns).get(peer) {
            h.close();
        }
    }

    /// `net_adm:ping/1`: connects and asks the peer's `net_kernel`.
    pub async fn ping(&self, peer: &str) -> bool {
        let me = Term::Atom(self.inner.name.clone());
        let req = Term::Tuple(vec![Term::atom("is_auth"), me]);
        let timeout = self.inner.cfg.setup_time * 2;
        matches!(
            self.call(peer, "net_kernel", |_| req, timeout).await,
            Ok(Term::Atom(a)) if a.as_str() == "yes"
        )
    }

    /// `rpc:call(Node, M, F, A)` through the peer's `rex` server. Returns
    /// the result term (`{badrpc, Reason}` on a remote failure).
    pub async fn rpc(
        &self,
        peer: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, NodeError> {
        let m = Term::Atom(atom(module)?);
        let f = Term::Atom(atom(function)?);
        self.call(
            peer,
            "rex",
            |me| {
                // This mailbox is the call's group leader: io requests the
                // function makes are answered by `call`.
                Term::Tuple(vec![
                    Term::atom("call"),
                    m,
                    f,
                    Term::List(args),
                    Term::Pid(me.clone()),
                ])
            },
            timeout,
        )
        .await
    }

    /// A `gen_server:call` to the process registered as `name` on `peer`.
    pub async fn call(
        &self,
        peer: &str,
        name: &str,
        request: impl FnOnce(&Pid) -> Term,
        timeout: Duration,
    ) -> Result<Term, NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut mb = self.mailbox();
        let mref = tokio::time::timeout_at(deadline, mb.monitor_named(name, peer))
            .await
            .map_err(|_| NodeError::Timeout)??;
        let tag = Term::Reference(mref.clone());
        let msg = Term::Tuple(vec![
            Term::atom("$gen_call"),
            Term::Tuple(vec![Term::Pid(mb.pid.clone()), tag.clone()]),
            request(&mb.pid),
        ]);
        mb.send_named(name, peer, msg).await?;
        loop {
            let Ok(Some(m)) = tokio::time::timeout_at(deadline, mb.recv()).await else {
                mb.demonitor(&mref).await;
                return Err(NodeError::Timeout);
            };
            match m {
                Term::Tuple(ref e) if e.len() == 2 && e[0] == tag => {
                    mb.demonitor(&mref).await;
                    return Ok(e[1].clone());
                }
                Term::Tuple(ref e)
                    if e.len() == 5
                        && e[0] == Term::atom("DOWN")
                        && e[1] == Term::Reference(mref.clone()) =>
                {
                    return Err(NodeError::Down(e[4].to_string()));
                }
                Term::Tuple(ref e) if e.len() == 4 && e[0] == Term::atom("io_request") => {
                    answer_io_request(&mb, e).await;
                }
                _ => {}
            }
        }
    }

    /// Sends from `from` to `to`.
    pub(crate) async fn send_from(&self, from: &Pid, to: &Pid, msg: Term) -> Result<(), NodeError> {
        if to.node == self.inner.name {
            self.inner.deliver(to, msg);
            return Ok(());
        }
        let peer = to.node.as_str();
        let h = self.inner.conn(peer).await?;
        let packet = conn::encode_packet(&build::send(h.flags, from, to), Some(&msg));
        h.send(packet).await.map_err(|cause| NodeError::Connect {
            peer: peer.to_owned(),
            cause,
        })
    }

    /// Sends from `from` to `{name, node}`.
    pub(crate) async fn send_named_from(
        &self,
        from: &Pid,
        name: &str,
        node: &str,
        msg: Term,
    ) -> Result<(), NodeError> {
        let a = atom(name)?;
        if node == self.name() {
            let to = self.inner.whereis(&a);
            if let Some(to) = to {
                self.inner.deliver(&to, msg);
            }
            return Ok(());
        }
        let h = self.inner.conn(node).await?;
        let packet = conn::encode_packet(&build::reg_send(from, &a), Some(&msg));
        h.send(packet).await.map_err(|cause| NodeError::Connect {
            peer: node.to_owned(),
            cause,
        })
    }

    pub(crate) async fn monitor_from(
        &self,
        from: &Pid,
        target: Term,
        node: &str,
    ) -> Result<Reference, NodeError> {
        let r = self.make_ref();
        if node == self.name() {
            self.inner.with_proc(from, |p| {
                p.monitors
                    .insert(r.clone(), (node.to_owned(), target.clone()));
            });
            let local = match &target {
                Term::Pid(p) => Some(p.clone()),
                Term::Atom(a) => self.inner.whereis(a),
                _ => None,
            };
            let exists = local
                .as_ref()
                .map(|p| {
                    self.inner.with_proc(p, |pr| {
                        pr.monitored_by
                            .push((from.clone(), r.clone(), target.clone()))
                    })
                })
                .unwrap_or(false);
            if !exists {
                let t = down_target(target, node);
                self.inner.fire_down(from, &r, t, Term::atom("noproc"));
            }
            return Ok(r);
        }
        // Connect first: a monitor recorded before the connection exists
        // would be fired by the failure of a connection it never used.
        let h = self.inner.conn(node).await?;
        self.inner.with_proc(from, |p| {
            p.monitors
                .insert(r.clone(), (node.to_owned(), target.clone()));
        });
        let packet = conn::encode_packet(&build::monitor(from, target, &r), None);
        h.send(packet).await.map_err(|cause| NodeError::Connect {
            peer: node.to_owned(),
            cause,
        })?;
        Ok(r)
    }

    pub(crate) async fn demonitor_from(&self, from: &Pid, r: &Reference) {
        let mut removed = None;
        self.inner
            .with_proc(from, |p| removed = p.monitors.remove(r));
        let Some((node, target)) = removed else {
            return;
        };
        if node == self.name() {
            if let Some(t) = match &target {
                Term::Pid(p) => Some(p.clone()),
                Term::Atom(a) => self.inner.whereis(a),
                _ => None,
            } {
                self.inner
                    .with_proc(&t, |p| p.monitored_by.retain(|(_, x, _)| x != r));
            }
            return;
        }
        if let Some(h) = self.inner.up(&node) {
            let _ = h
                .send(conn::encode_packet(
                    &build::demonitor(from, target, r),
                    None,
                ))
                .await;
        }
    }

    pub(crate) async fn link_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        self.inner.with_proc(from, |p| {
            p.links.insert(to.clone());
        });
        if to.node == self.inner.name {
            let ok = self.inner.with_proc(to, |p| {
                p.links.insert(from.clone());
            });
            if !ok {
                self.inner.deliver_exit(from, to, Term::atom("noproc"));
            }
            return Ok(());
        }
        let h = self.inner.conn(to.node.as_str()).await?;
        h.send(conn::encode_packet(&build::link(from, to), None))
            .await
            .map_err(|cause| NodeError::Connect {
                peer: to.node.to_string(),
                cause,
            })
    }

    pub(crate) async fn unlink_from(&self, from: &Pid, to: &Pid) -> Result<(), NodeError> {
        self.inner.with_proc(from, |p| {
            p.links.remove(to);
        });
        if to.node == self.inner.name {
            self.inner.with_proc(to, |p| {
                p.links.remove(from);
            });
            return Ok(());
        }
        if let Some(h) = self.inner.up(to.node.as_str()) {
            let id = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
            let _ = h
                .send(conn::encode_packet(&build::unlink_id(id, from, to), None))
                .await;
        }
        Ok(())
    }

    /// A mailbox ended: free its name, signal links and monitors.
    pub(crate) fn process_exit(&self, pid: &Pid, reason: Term) {
        let removed = self
            .inner
            .procs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(pid));
        let Some(p) = removed else { return };
        if let Some(n) = &p.name {
            let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
            if names.get(n) == Some(pid) {
                names.remove(n);
            }
        }
        for l in &p.links {
            if l.node == self.inner.name {
                self.inner.with_proc(l, |o| {
                    o.links.remove(pid);
                });
                self.inner.deliver_exit(l, pid, reason.clone());
            } else if let Some(h) = self.inner.up(l.node.as_str()) {
                let (c, pl) = build::exit(h.flags, pid, l, reason.clone());
                self.inner.send_packet(&h, &c, pl.as_ref());
            }
        }
        for (watcher, r, named) in &p.monitored_by {
            if watcher.node == self.inner.name {
                let t = down_target(named.clone(), self.name());
                self.inner.fire_down(watcher, r, t, reason.clone());
            } else if let Some(h) = self.inner.up(watcher.node.as_str()) {
                // The peer turns a name into {Name, ThisNode} itself.
                let (c, pl) =
                    build::monitor_exit(h.flags, named.clone(), watcher, r, reason.clone());
                self.inner.send_packet(&h, &c, pl.as_ref());
            }
        }
    }

    /// Whether the node registered through the epmdx extension (else
    /// plain ALIVE2, or not at all for a client-only node).
    pub fn registered_extended(&self) -> bool {
        matches!(
            *lock(&self.inner.registration),
            Some(Registration::Extended(_))
        )
    }

    /// Stops the node: unregisters from EPMD, stops listening and closes
    /// every connection. Mailboxes stay usable for local traffic.
    pub fn stop(&self) {
        lock(&self.inner.registration).take();
        for t in lock(&self.inner.tasks).drain(..) {
            t.abort();
        }
        for slot in lock(&self.inner.conns).values() {
            if let Slot::Up(h) = slot {
                h.close();
            }
        }
    }

    /// Starts the built-in services: `net_kernel`, which answers `is_auth`
    /// (ping), and `erldist`, which answers `connections` with
    /// `[{Peer, Transport}]` and `{connect, Peer}` with `ok` or
    /// `{error, Reason}` after connecting this node to `Peer`.
    fn spawn_services(&self) -> Result<(), NodeError> {
        for service in ["net_kernel", "erldist"] {
            let mut mb = self.register_mailbox(service)?;
            let node = self.clone();
            let t = tokio::spawn(async move {
                while let Some(m) = mb.recv().await {
                    let Term::Tuple(e) = &m else { continue };
                    if e.len() != 3 || e[0] != Term::atom("$gen_call") {
                        continue;
                    }
                    let Term::Tuple(from) = &e[1] else { continue };
                    let (Some(Term::Pid(to)), Some(tag)) = (from.first(), from.get(1)) else {
                        continue;
                    };
                    if let (Term::Tuple(req), "erldist") = (&e[2], service) {
                        if let [op, Term::Atom(peer)] = req.as_slice() {
                            if *op == Term::atom("connect") {
                                // Connecting can take the whole set-up time:
                                // answer from a task, keep serving.
                                let (node, peer, to, tag) =
                                    (node.clone(), peer.clone(), to.clone(), tag.clone());
                                tokio::spawn(async move {
                                    let reply = match node.connect(peer.as_str()).await {
                                        Ok(()) => Term::atom("ok"),
                                        Err(e) => Term::Tuple(vec![
                                            Term::atom("error"),
                                            Term::Binary(e.to_string().into_bytes()),
                                        ]),
                                    };
                                    let mb = node.mailbox();
                                    let _ = mb.send(&to, Term::Tuple(vec![tag, reply])).await;
                                });
                                continue;
                            }
                        }
                    }
                    let reply = match (service, &e[2]) {
                        ("net_kernel", Term::Tuple(r))
                            if r.first() == Some(&Term::atom("is_auth")) =>
                        {
                            Term::atom("yes")
                        }
                        ("erldist", req) if *req == Term::atom("connections") => Term::List(
                            node.connections()
                                .into_iter()
                                .filter_map(|c| {
                                    let peer = Atom::new(&c.peer).ok()?;
                                    Some(Term::Tuple(vec![
                                        Term::Atom(peer),
                                        Term::atom(c.transport),
                                    ]))
                                })
                                .collect(),
                        ),
                        _ => Term::Tuple(vec![Term::atom("error"), Term::atom("not_supported")]),
                    };
                    let _ = mb.send(to, Term::Tuple(vec![tag.clone(), reply])).await;
                }
            });
            lock(&self.inner.tasks).push(t.abort_handle());
        }
        Ok(())
    }
}

/// Answers an `io_request` sent to a call's mailbox acting as group
/// leader: output is logged, input is refused.
async fn answer_io_request(mb: &Mailbox, e: &[Term]) {
    let (Term::Pid(from), reply_as) = (&e[1], e[2].clone()) else {
        return;
    };
    let reply = match &e[3] {
        Term::Tuple(r) if r.first() == Some(&Term::atom("put_chars")) => {
            if let Some(chars) = r.last() {
                info!("remote output: {chars}");
            }
            Term::atom("ok")
        }
        _ => Term::Tuple(vec![Term::atom("error"), Term::atom("enotsup")]),
    };
    let _ = mb
        .send(
            from,
            Term::Tuple(vec![Term::atom("io_reply"), reply_as, reply]),
        )
        .await;
}

/// What a DOWN message names: the pid, or `{Name, Node}` for a monitor by
/// registered name, as Erlang reports it.
fn down_target(target: Term, node: &str) -> Term {
    match (target, Atom::new(node)) {
        (Term::Atom(a), Ok(n)) => Term::Tuple(vec![Term::Atom(a), Term::Atom(n)]),
        (t, _) => t,
    }
}

/// The key of a local pid in the process table.
fn key(p: &Pid) -> u32 {
    p.id | (p.serial << 15)
}

/// Registers with EPMD: every transport through the extension; against a
/// stock daemon, plain ALIVE2 for the first plain-TCP transport (else the
/// first TLS one), saying what is not advertised.
async fn register(
    alive: &str,
    transports: &[(Proto, u16, Vec<u8>)],
    epmd_port: u16,
    hidden: bool,
) -> Result<(u32, Registration), NodeError> {
    let client = Client::local(epmd_port);
    let spec = NodeSpec {
        name: alive,
        node_type: if hidden { 72 } else { 77 },
        high: 6,
        low: 6,
    };
    let refs: Vec<epmd_proto::ext::TransportRef<'_>> = transports
        .iter()
        .map(|(p, port, extra)| epmd_proto::ext::TransportRef {
            port: *port,
            proto: p.name().as_bytes(),
            extra,
        })
        .collect();
    match client.register_ext(spec, &refs).await {
        Ok(reg) => Ok((reg.creation(), Registration::Extended(reg))),
        Err(ClientError::Unsupported) => {
            let (proto, port) = transports
                .iter()
                .find(|(p, _, _)| p.is_plain_tcp())
                .or_else(|| transports.iter().find(|(p, _, _)| p.is_tls()))
                .map(|(p, port, _)| (*p, *port))
                .ok_or_else(|| {
                    NodeError::Transport(TransportError::io(
                        "register with epmd",
                        std::io::Error::other(
                            "this EPMD does not speak the epmdx extension, and a Unix socket cannot be registered with ALIVE2",
                        ),
                    ))
                })?;
            warn!(
                "epmd does not speak the epmdx extension: registered only {proto} (port {port}) with ALIVE2; other transports are not advertised"
            );
            let req = epmd_proto::legacy::Alive2Req {
                port,
                node_type: spec.node_type,
                protocol: 0,
                high: 6,
                low: 5,
                name: alive.as_bytes(),
                extra: b"",
            };
            let reg = client.register(&req).await?;
            Ok((reg.creation(), Registration::Legacy(reg)))
        }
        Err(e) => Err(e.into()),
    }
}

/// A bound listener of one transport.
#[derive(Debug)]
enum Listener {
    /// TCP or TLS (the TLS handshake runs in the connection's task).
    Tcp(TcpListener, Proto),
    /// A Unix socket (the file goes with it).
    Uds(uds::UdsListener),
}

impl Listener {
    fn advertised(&self) -> (Proto, u16, Vec<u8>) {
        match self {
            Self::Tcp(l, p) => (*p, l.local_addr().map_or(0, |a| a.port()), Vec::new()),
            Self::Uds(u) => (
                Proto::Uds,
                0,
                u.path.as_os_str().as_encoded_bytes().to_vec(),
            ),
        }
    }

    fn proto(&self) -> Proto {
        match self {
            Self::Tcp(_, p) => *p,
            Self::Uds(_) => Proto::Uds,
        }
    }

    /// Accepts one connection; returns it with the peer's address (none for
    /// a Unix socket).
    async fn accept(&self) -> std::io::Result<(BoxStream, Option<SocketAddr>)> {
        match self {
            Self::Tcp(l, _) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), Some(peer)))
            }
            Self::Uds(u) => {
                let (s, _) = u.listener.accept().await?;
                Ok((Box::new(s), None))
            }
        }
    }
}

impl Inner {
    fn handshake_config(&self, proto: Proto) -> HandshakeConfig {
        HandshakeConfig::new(
            self.name.as_str(),
            self.cfg.cookie.as_bytes(),
            self.creation,
            random_u32(),
        )
        .with_optional_flags(OFFERED_FLAGS, !self.cfg.hidden)
        .with_framing(proto.framing())
        .with_timeout(self.cfg.setup_time)
    }

    /// The transports this node speaks when connecting: its listeners', or
    /// for a client-only node every transport it has what it needs for.
    fn speaks(&self) -> Vec<Proto> {
        if !self.transports.is_empty() {
            let mut v: Vec<Proto> = self.transports.iter().map(|t| t.0).collect();
            v.dedup();
            return v;
        }
        Proto::ALL
            .into_iter()
            .filter(|p| !p.is_tls() || self.tls.is_some())
            .collect()
    }

    /// Opens a transport stream to an offer.
    async fn dial(
        &self,
        proto: Proto,
        host: &str,
        addrs: &[IpAddr],
        offer: &Offer,
    ) -> Result<BoxStream, TransportError> {
        let family: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv6() == proto.is_v6())
            .collect();
        match proto {
            Proto::Uds => Ok(Box::new(uds::connect(&offer.extra).await?)),
            p if p.is_tls() => {
                let tls = self.tls.as_ref().ok_or(TransportError::NoTls(p))?;
                let tcp = tcp::connect(&family, offer.port, self.cfg.setup_time).await?;
                tls.connect(tcp, host).await
            }
            _ => Ok(Box::new(
                tcp::connect(&family, offer.port, self.cfg.setup_time).await?,
            )),
        }
    }

    fn whereis(&self, name: &Atom) -> Option<Pid> {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Runs `f` on a local process; returns whether it exists.
    fn with_proc(&self, pid: &Pid, f: impl FnOnce(&mut Proc)) -> bool {
        if pid.node != self.name {
            return false;
        }
        match self
            .procs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key(pid))
        {
            Some(p) => {
                f(p);
                true
            }
            None => false,
        }
    }

    fn deliver(&self, to: &Pid, msg: Term) {
        if to.node != self.name || to.creation != self.creation {
            return;
        }
        let procs = self.procs.read().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = procs.get(&key(to)).and_then(|p| p.tx.as_ref()) {
            let _ = tx.send(msg);
        }
    }

    fn deliver_exit(&self, to: &Pid, from: &Pid, reason: Term) {
        self.deliver(
            to,
            Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(from.clone()), reason]),
        );
    }

    fn fire_down(&self, to: &Pid, r: &Reference, target: Term, reason: Term) {
        self.with_proc(to, |p| {
            p.monitors.remove(r);
        });
        self.deliver(
            to,
            Term::Tuple(vec![
                Term::atom("DOWN"),
                Term::Reference(r.clone()),
                Term::atom("process"),
                target,
                reason,
            ]),
        );
    }

    fn up(&self, peer: &str) -> Option<ConnHandle> {
        match lock(&self.conns).get(peer) {
            Some(Slot::Up(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// The connection to `peer`, set up on first use. Concurrent callers
    /// share one attempt.
    async fn conn(self: &Arc<Self>, peer: &str) -> Result<ConnHandle, NodeError> {
        // The hot path of every send: one lock, one lookup.
        if let Some(h) = self.up(peer) {
            return Ok(h);
        }
        split_name(peer)?;
        let deadline = tokio::time::Instant::now() + self.cfg.setup_time * 2;
        loop {
            let notified = self.conn_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mine = {
                let mut conns = lock(&self.conns);
                match conns.get(peer) {
                    Some(Slot::Up(h)) => return Ok(h.clone()),
                    // Someone is already setting this connection up; wait.
                    Some(Slot::Connecting | Slot::Accepting) => false,
                    None => {
                        conns.insert(peer.to_owned(), Slot::Connecting);
                        true
                    }
                }
            };
            if !mine {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Err(NodeError::Timeout);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.connect_out(peer)).await {
                Ok(Ok(h)) => return Ok(h),
                Ok(Err(NodeError::Connect {
                    cause: ConnError::Handshake(HandshakeError::Nok),
                    ..
                })) => {
                    // Simultaneous connect, and the peer's attempt won: it
                    // is being installed by the acceptor; wait for it.
                    debug!(
                        peer,
                        "simultaneous connect: waiting for the peer's connection"
                    );
                    let notified = self.conn_changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(h) = self.up(peer) {
                        return Ok(h);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        self.clear_connecting(peer);
                        return Err(NodeError::Timeout);
                    }
                }
                Ok(Err(e)) => {
                    self.clear_connecting(peer);
                    return Err(e);
                }
                Err(_) => {
                    self.clear_connecting(peer);
                    return Err(NodeError::Timeout);
                }
            }
        }
    }

    fn clear_connecting(&self, peer: &str) {
        let mut conns = lock(&self.conns);
        if matches!(conns.get(peer), Some(Slot::Connecting)) {
            conns.remove(peer);
        }
        drop(conns);
        self.conn_changed.notify_waiters();
    }

    /// Looks the peer up with its host's EPMD, lets the policy choose a
    /// transport, dials it (failing over if configured) and runs the
    /// handshake.
    async fn connect_out(self: &Arc<Self>, peer: &str) -> Result<ConnHandle, NodeError> {
        let (alive, host) = split_name(peer)?;
        let speaks = self.speaks();
        let names: Vec<&str> = speaks.iter().map(|p| p.name()).collect();
        let client = Client::for_host(host, self.cfg.epmd_port)
            .await?
            .with_timeout(self.cfg.setup_time);
        let rec = match client.lookup(alive, &names).await? {
            Lookup::Found(rec) => rec,
            Lookup::Legacy(Some(rec)) => {
                debug!(
                    peer,
                    "{host}'s EPMD does not speak the extension: legacy lookup"
                );
                rec
            }
            Lookup::NotFound | Lookup::Legacy(None) => {
                return Err(NodeError::NotRegistered(peer.to_owned()))
            }
        };
        let offers: Vec<Offer> = if rec.legacy {
            // EPMD cannot tell what a legacy registration speaks: offer every
            // IP transport this node speaks on its port, plain TCP first.
            let t = rec.transports.first();
            [
                Proto::InetTcp,
                Proto::Inet6Tcp,
                Proto::InetTls,
                Proto::Inet6Tls,
            ]
            .into_iter()
            .filter(|p| speaks.contains(p))
            .filter_map(|proto| {
                Some(Offer {
                    proto,
                    port: t?.port,
                    extra: t?.extra.clone(),
                    legacy: true,
                })
            })
            .collect()
        } else {
            rec.transports
                .iter()
                .filter_map(|t| {
                    Some(Offer {
                        // Names outside the fixed table are ignored, never interned.
                        proto: Proto::from_name(&t.proto)?,
                        port: t.port,
                        extra: t.extra.clone(),
                        legacy: false,
                    })
                })
                .collect()
        };
        let mut addrs: Vec<IpAddr> = match tokio::net::lookup_host((host, 0)).await {
            Ok(it) => it.map(|a| a.ip()).collect(),
            Err(e) => {
                debug!(peer, "cannot resolve {host}: {e}");
                Vec::new()
            }
        };
        addrs.dedup();
        let ctx = Peer {
            node: peer,
            host,
            addrs: &addrs,
        };
        let order = match self.cfg.policy.select(&speaks, &ctx, &offers) {
            Selection::Try(order) => order,
            Selection::Refuse(reason) => {
                return Err(NodeError::Refused {
                    peer: peer.to_owned(),
                    reason,
                })
            }
        };
        let mut last = None;
        for (n, &i) in order.iter().enumerate() {
            let Some(offer) = offers.get(i) else { continue };
            let proto = offer.proto;
            if !speaks.contains(&proto) {
                continue;
            }
            match self.dial(proto, host, &addrs, offer).await {
                Ok(mut stream) => {
                    let c = Connector::new(self.handshake_config(proto), peer, Instant::now())
                        .map_err(|e| NodeError::BadName(e.to_string()))?;
                    let est = match conn::connect(&mut stream, c).await {
                        Ok(est) => est,
                        // With TLS 1.3 the server checks our certificate
                        // after the client side of the TLS handshake is
                        // done: its refusal arrives as an I/O error here.
                        Err(ConnError::Io(e)) if proto.is_tls() => {
                            return Err(TransportError::TlsHandshake {
                                peer: host.to_owned(),
                                reason: e.to_string(),
                            }
                            .into())
                        }
                        Err(cause) => {
                            return Err(NodeError::Connect {
                                peer: peer.to_owned(),
                                cause,
                            })
                        }
                    };
                    return Ok(self.install(stream, est, proto.name()));
                }
                Err(e) if e.allows_failover() && self.cfg.failover && n + 1 < order.len() => {
                    warn!(peer, "{proto} unreachable ({e}); trying the next transport");
                    last = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || NodeError::Refused {
                peer: peer.to_owned(),
                reason: "no offered transport is usable".into(),
            },
            NodeError::Transport,
        ))
    }

    /// Makes an established connection the one for its peer.
    fn install<S>(
        self: &Arc<Self>,
        stream: S,
        est: Established,
        transport: &'static str,
    ) -> ConnHandle
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let peer = est.peer_name.clone();
        let h = conn::spawn(stream, est, transport, self.cfg.net_ticktime, self.clone());
        let old = lock(&self.conns).insert(peer.clone(), Slot::Up(h.clone()));
        if let Some(Slot::Up(old)) = old {
            // `alive` answered true: the old connection is stale.
            old.close();
        }
        self.conn_changed.notify_waiters();
        let _ = self.events.send(NodeEvent::Up(peer.clone()));
        info!(peer, transport, "connection up");
        h
    }

    /// What the acceptor tells the handshake about an incoming peer. A
    /// free slot is reserved, so a local send waits for this connection
    /// instead of dialling a second one.
    fn peer_check(&self, peer: &str) -> PeerCheck {
        let mut conns = lock(&self.conns);
        match conns.get(peer) {
            None => {
                conns.insert(peer.to_owned(), Slot::Accepting);
                PeerCheck::Free
            }
            Some(Slot::Connecting) => PeerCheck::PendingConnect,
            // A second incoming attempt while the first is in progress (a
            // peer retrying quickly): let both run; the later one installed
            // replaces the earlier.
            Some(Slot::Accepting) => PeerCheck::Free,
            Some(Slot::Up(_)) => PeerCheck::Connected,
        }
    }

    /// Drops the reservation `peer_check` made, if the handshake failed.
    fn clear_accepting(&self, peer: &str) {
        let mut conns = lock(&self.conns);
        if matches!(conns.get(peer), Some(Slot::Accepting)) {
            conns.remove(peer);
        }
        drop(conns);
        self.conn_changed.notify_waiters();
    }

    fn send_packet(&self, h: &ConnHandle, ctrl: &Term, payload: Option<&Term>) {
        h.try_send(conn::encode_packet(ctrl, payload));
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: Listener, permits: Arc<Semaphore>) {
    let proto = listener.proto();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed on {proto}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.map(|p| p.ip());
        if let Some(ip) = ip {
            if lock(&inner.failures).blocked(ip, inner.cfg.max_failures_per_minute, Instant::now())
            {
                debug!(%ip, "refused: too many failed handshakes from this address");
                continue;
            }
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(?peer, "refused: too many handshakes in progress");
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let who = peer.map_or_else(|| "local socket".to_owned(), |p| p.to_string());
            let reserved: Mutex<Option<String>> = Mutex::new(None);
            let setup = async {
                let mut stream = if proto.is_tls() {
                    let tls = inner.tls.as_ref().ok_or(ConnError::Closed)?;
                    tls.accept(stream, &who).await.map_err(|e| {
                        ConnError::Io(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            e.to_string(),
                        ))
                    })?
                } else {
                    stream
                };
                let a = Acceptor::new(inner.handshake_config(proto), Instant::now())
                    .map_err(|e| ConnError::Decode(e.to_string()))?;
                let check = |name: &str| {
                    let c = inner.peer_check(name);
                    if c == PeerCheck::Free {
                        *lock(&reserved) = Some(name.to_owned());
                    }
                    c
                };
                match conn::accept(&mut stream, a, check).await {
                    Ok(est) => Ok::<_, ConnError>((stream, est)),
                    Err(e) => {
                        // Drop the reservation while the socket is still
                        // open: a peer retrying at once must find it gone.
                        if let Some(name) = lock(&reserved).take() {
                            inner.clear_accepting(&name);
                        }
                        Err(e)
                    }
                }
            };
            let result = tokio::time::timeout(inner.cfg.setup_time, setup).await;
            if !matches!(result, Ok(Ok(_))) {
                if let Some(name) = lock(&reserved).take() {
                    inner.clear_accepting(&name);
                }
            }
            match result {
                Ok(Ok((stream, est))) => {
                    inner.install(stream, est, proto.name());
                }
                Ok(Err(e)) => {
                    let counts = matches!(
                        e,
                        ConnError::Handshake(
                            HandshakeError::WrongCookie
                                | HandshakeError::BadMessage(_)
                                | HandshakeError::FrameTooLarge { .. }
                                | HandshakeError::Timeout { .. }
                        ) | ConnError::Io(_)
                    );
                    if let (true, Some(ip)) = (counts, ip) {
                        lock(&inner.failures).record(ip, Instant::now());
                    }
                    info!(peer = %who, transport = %proto, "incoming handshake failed: {e}");
                }
                Err(_) => {
                    if let Some(ip) = ip {
                        lock(&inner.failures).record(ip, Instant::now());
                    }
                    info!(peer = %who, transport = %proto, "incoming handshake timed out");
                }
            }
        });
    }
}

impl Dispatch for Inner {
    fn dispatch(&self, h: &ConnHandle, peer: &str, msg: Control) {
        match msg {
            Control::Send { to, msg, .. } => self.deliver(&to, msg),
            Control::RegSend { to, msg, .. } => {
                if let Some(pid) = self.whereis(&to) {
                    self.deliver(&pid, msg);
                }
            }
            Control::Link { from, to } => {
                let ok = self.with_proc(&to, |p| {
                    p.links.insert(from.clone());
                });
                if !ok {
                    let (c, pl) = build::exit(h.flags, &to, &from, Term::atom("noproc"));
                    self.send_packet(h, &c, pl.as_ref());
                }
            }
            Control::UnlinkId { id, from, to } => {
                self.with_proc(&to, |p| {
                    p.links.remove(&from);
                });
                self.send_packet(h, &build::unlink_id_ack(id, &to, &from), None);
            }
            Control::UnlinkIdAck { .. } | Control::Other(_) => {}
            Control::Exit {
                from, to, reason, ..
            } => {
                self.with_proc(&to, |p| {
                    p.links.remove(&from);
                });
                self.deliver_exit(&to, &from, reason);
            }
            Control::MonitorP {
                from,
                to,
                reference,
            } => {
                let local = match &to {
                    Term::Pid(p) => Some(p.clone()),
                    Term::Atom(a) => self.whereis(a),
                    _ => None,
                };
                let ok = local
                    .map(|p| {
                        self.with_proc(&p, |pr| {
                            pr.monitored_by
                                .push((from.clone(), reference.clone(), to.clone()))
                        })
                    })
                    .unwrap_or(false);
                if !ok {
                    let (c, pl) =
                        build::monitor_exit(h.flags, to, &from, &reference, Term::atom("noproc"));
                    self.send_packet(h, &c, pl.as_ref());
                }
            }
            Control::DemonitorP { to, reference, .. } => {
                let local = match &to {
                    Term::Pid(p) => Some(p.clone()),
                    Term::Atom(a) => self.whereis(a),
                    _ => None,
                };
                if let Some(p) = local {
                    self.with_proc(&p, |pr| pr.monitored_by.retain(|(_, r, _)| *r != reference));
                }
            }
            Control::MonitorPExit {
                from,
                to,
                reference,
                reason,
            } => self.fire_down(&to, &reference, down_target(from, peer), reason),
        }
    }

    fn closed(&self, h: &ConnHandle, peer: &str, why: &ConnError) {
        {
            let mut conns = lock(&self.conns);
            if matches!(conns.get(peer), Some(Slot::Up(c)) if c.id == h.id) {
                conns.remove(peer);
            } else {
                // A newer connection replaced this one; nothing went down.
                return;
            }
        }
        self.conn_changed.notify_waiters();
        let _ = self
            .events
            .send(NodeEvent::Down(peer.to_owned(), why.to_string()));
        info!(peer, "connection down: {why}");
        let reason = Term::atom("noconnection");
        let mut exits = Vec::new();
        let mut downs = Vec::new();
        {
            let mut procs = self.procs.write().unwrap_or_else(|e| e.into_inner());
            for p in procs.values_mut() {
                let owner_pid = |links: &HashSet<Pid>| -> Vec<Pid> {
                    links
                        .iter()
                        .filter(|l| l.node.as_str() == peer)
                        .cloned()
                        .collect()
                };
                let gone = owner_pid(&p.links);
                for l in &gone {
                    p.links.remove(l);
                }
                p.monitored_by.retain(|(w, _, _)| w.node.as_str() != peer);
                let lost: Vec<Reference> = p
                    .monitors
                    .iter()
                    .filter(|(_, (n, _))| n == peer)
                    .map(|(r, _)| r.clone())
                    .collect();
                let tx = p.tx.clone();
                for r in lost {
                    if let Some((_, target)) = p.monitors.remove(&r) {
                        downs.push((tx.clone(), r, down_target(target, peer)));
                    }
                }
                for l in gone {
                    exits.push((tx.clone(), l));
                }
            }
        }
        for (tx, from) in exits {
            if let Some(tx) = tx {
                let _ = tx.send(Term::Tuple(vec![
                    Term::atom("EXIT"),
                    Term::Pid(from),
                    reason.clone(),
                ]));
            }
        }
        for (tx, r, target) in downs {
            if let Some(tx) = tx {
                let _ = tx.send(Term::Tuple(vec![
                    Term::atom("DOWN"),
                    Term::Reference(r),
                    Term::atom("process"),
                    target,
                    reason.clone(),
                ]));
            }
        }
    }
}
