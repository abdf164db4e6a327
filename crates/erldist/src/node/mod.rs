//! The node: its name, creation and EPMD registration, its processes
//! (mailboxes), and its connections to other nodes, made lazily on first
//! send as BEAM does.
//!
//! - `config`: [`NodeConfig`], [`NodeError`], [`NodeEvent`], [`ConnInfo`].
//! - `procs`: the process table (names, links, monitors) as plain data
//!   returning effects; `signals` carries them out and handles incoming
//!   control messages.
//! - `slots`: the connection-slot table as plain data; `conns` drives it,
//!   `dial` and `accept` set connections up.
//! - `registration`: EPMD registration.
//! - `cluster`: following a cluster's members ([`crate::cluster`]) and
//!   the directory of their transports that `dial` uses instead of EPMD.
//! - `services`: `net_kernel` / `erldist` services, `ping`, `rpc`, `call`.

mod accept;
mod cluster;
mod config;
mod conns;
mod dial;
mod procs;
mod registration;
mod services;
mod signals;
mod slots;

pub use config::{epmd_port_from_env, ConnInfo, NodeConfig, NodeError, NodeEvent, OFFERED_FLAGS};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use dist_proto::HandshakeConfig;
use erl_term::{Atom, Reference, Term};
use tokio::sync::{broadcast, mpsc, Notify};
use tracing::info;

use crate::conn::ConnHandle;
use crate::mailbox::Mailbox;
use crate::transport::tls::Tls;
use crate::transport::{tcp, uds, Proto, TransportError};

use accept::{accept_loop, Listener, SharedAdmission};
use procs::ProcTable;
use registration::{register, Registrar};
use slots::SlotTable;

pub(crate) struct Inner {
    cfg: NodeConfig,
    name: Atom,
    creation: u32,
    procs: RwLock<ProcTable<mpsc::UnboundedSender<Term>>>,
    conns: Mutex<SlotTable<ConnHandle>>,
    conn_changed: Notify,
    events: broadcast::Sender<NodeEvent>,
    next_ref: AtomicU64,
    listen_port: Option<u16>,
    /// What this node listens on: (transport, port, extra).
    transports: Vec<(Proto, u16, Vec<u8>)>,
    tls: Option<Tls>,
    /// Whether the EPMD registration uses the extension; `None` while not
    /// registered (stopped, client-only, or re-registering). The
    /// registration itself lives in its supervising task.
    registered: Arc<Mutex<Option<bool>>>,
    /// Tells the registrar task to withdraw a transport.
    withdraw: mpsc::UnboundedSender<Proto>,
    /// The node's own tasks (listeners, services, registration).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Cluster members' transports and addresses (empty without
    /// discovery).
    directory: cluster::Directory,
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
///
/// The node runs until [`Node::stop`] or [`Node::shutdown`], or until the
/// last `Node` and [`Mailbox`] of it are dropped: then it unregisters,
/// stops listening and closes its connections.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
    /// Shared by the handles the user holds (not by the node's own tasks):
    /// its drop stops the node.
    _keep: Option<Arc<Keep>>,
}

/// Stops the node when the last user handle goes.
#[derive(Debug)]
struct Keep(Arc<Inner>);

impl Drop for Keep {
    fn drop(&mut self) {
        self.0.stop();
    }
}

// A poisoned lock only means some thread panicked while holding it; every
// table here is consistent between statements, so the node carries on.
// These three are the only places that recover from poisoning.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // The OS RNG only fails on very old kernels; a zero challenge is still
    // a valid one, so fall back rather than fail the handshake.
    let _ = getrandom::fill(&mut b);
    u32::from_ne_bytes(b)
}

/// `(alive, host)` of a node name checked by the one rule,
/// [`epmd_proto::NodeName`] (OTP's `net_kernel` rule).
fn split_name(full: &str) -> Result<(&str, &str), NodeError> {
    let at = epmd_proto::NodeName::check(full).map_err(|_| NodeError::BadName(full.to_owned()))?;
    Ok((&full[..at], &full[at + 1..]))
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
        let alive = alive.to_owned();
        let name = atom(&cfg.name)?;
        let tls = match (&cfg.tls_config, &cfg.tls) {
            (Some(c), _) => Some(Tls::from_config(c)),
            (None, Some(files)) => Some(Tls::load(files)?),
            (None, None) => None,
        };
        let mut listeners = Vec::new();
        for spec in &cfg.listen {
            let l = match spec.proto {
                Proto::Uds => Listener::Uds(uds::bind(&cfg.uds_dir, &alive).await?),
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
            let (c, r) = register(
                &alive,
                &transports,
                cfg.epmd_port,
                cfg.hidden,
                cfg.legacy_default,
            )
            .await?;
            (c, Some(r))
        };
        let (withdraw_tx, withdraw_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            creation,
            procs: RwLock::new(ProcTable::new(name.clone(), creation)),
            name,
            conns: Mutex::new(SlotTable::new()),
            conn_changed: Notify::new(),
            events: broadcast::channel(256).0,
            next_ref: AtomicU64::new(1),
            listen_port,
            transports,
            tls,
            registered: Arc::new(Mutex::new(registration.as_ref().map(|r| r.extended()))),
            withdraw: withdraw_tx,
            tasks: Mutex::new(Vec::new()),
            directory: Default::default(),
            cfg,
        });
        let node = Self {
            _keep: Some(Arc::new(Keep(inner.clone()))),
            inner,
        };
        if let Some(reg) = registration {
            let registrar = Registrar {
                alive,
                transports: node.inner.transports.clone(),
                epmd_port: node.inner.cfg.epmd_port,
                hidden: node.inner.cfg.hidden,
                legacy_default: node.inner.cfg.legacy_default,
                events: node.inner.events.clone(),
                extended: node.inner.registered.clone(),
                withdraw: withdraw_rx,
            };
            let t = tokio::spawn(registrar.supervise(reg));
            lock(&node.inner.tasks).push(t);
        }
        let admission: SharedAdmission = Arc::new(Mutex::new(crate::admission::Admission::new(
            node.inner.cfg.admission.clone(),
        )));
        for l in listeners {
            let t = tokio::spawn(accept_loop(node.inner.clone(), l, admission.clone()));
            lock(&node.inner.tasks).push(t);
        }
        node.spawn_services()?;
        node.spawn_cluster();
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

    /// Creates an unnamed mailbox.
    pub fn mailbox(&self) -> Mailbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let pid = write(&self.inner.procs).spawn(tx);
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
        if !write(&self.inner.procs).register(a, &mb.pid) {
            return Err(NodeError::NameTaken(name.to_owned()));
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

    /// Whether the node is registered through the epmdx extension (else
    /// plain ALIVE2, or not at all: a client-only node, a stopped one, or
    /// one re-registering after EPMD went away).
    pub fn registered_extended(&self) -> bool {
        *lock(&self.inner.registered) == Some(true)
    }

    /// Whether the node is registered with EPMD now.
    pub fn registered(&self) -> bool {
        lock(&self.inner.registered).is_some()
    }

    /// Stops the node: unregisters from EPMD, stops listening and closes
    /// every connection. Mailboxes stay usable for local traffic.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Stops the node as [`Node::stop`] does, and returns once it is
    /// done: unregistered from EPMD, its listeners and services ended and
    /// its connections closed (or after the set-up time, if a peer is slow
    /// to let go).
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = lock(&self.inner.tasks).drain(..).collect();
        lock(&self.inner.registered).take();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            // Cancelled (or finished): either way the task is gone, and
            // with the registration task its EPMD connection.
            let _ = t.await;
        }
        let deadline = tokio::time::Instant::now() + self.inner.cfg.setup_time;
        loop {
            let notified = self.inner.conn_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let live: Vec<_> = lock(&self.inner.conns)
                .live()
                .map(|(_, h)| h.clone())
                .collect();
            if live.is_empty() {
                return;
            }
            for h in &live {
                h.close();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// A handle for the node's own tasks: it does not keep the node
    /// running.
    pub(super) fn internal(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _keep: None,
        }
    }
}

impl Inner {
    /// Unregisters (the registration task owns the registration: aborting
    /// it closes the EPMD connection), stops listening and the services,
    /// and closes every connection.
    fn stop(&self) {
        lock(&self.registered).take();
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
        for (_, h) in lock(&self.conns).live() {
            h.close();
        }
    }

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
}
