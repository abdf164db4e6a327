//! The listeners: accepting connections and admitting handshakes through
//! [`crate::admission`] (pending-handshake permits per source and in total,
//! a short deadline, the failed-cookie lockout per address and claimed
//! name), and watching the Unix socket file.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dist_proto::{Acceptor, HandshakeError, PeerCheck};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{lock, Inner};
use crate::admission::{Admission, Admit};
use crate::conn::{self, ConnError};
use crate::transport::{uds, BoxStream, Proto};

/// The admission table shared by a node's listeners; an evicted handshake
/// is told through its sender.
pub(super) type SharedAdmission = Arc<Mutex<Admission<oneshot::Sender<()>>>>;

/// How often a Unix listener checks that its socket file is still there.
const UDS_WATCH: Duration = Duration::from_millis(500);

/// A bound listener of one transport.
#[derive(Debug)]
pub(super) enum Listener {
    /// TCP or TLS (the TLS handshake runs in the connection's task).
    Tcp(TcpListener, Proto),
    /// A Unix socket (the file goes with it).
    Uds(uds::UdsListener),
}

impl Listener {
    pub(super) fn advertised(&self) -> (Proto, u16, Vec<u8>) {
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
            // Checks the directory and the client's credentials first.
            Self::Uds(u) => Ok((Box::new(u.accept().await?), None)),
        }
    }
}

/// Accepts connections until the node stops (or, for a Unix socket, until
/// its file is gone: then the `uds` transport is unregistered).
pub(super) async fn accept_loop(inner: Arc<Inner>, listener: Listener, admission: SharedAdmission) {
    let proto = listener.proto();
    let mut watch = tokio::time::interval(UDS_WATCH);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = watch.tick(), if matches!(listener, Listener::Uds(_)) => {
                if let Listener::Uds(u) = &listener {
                    if !u.still_ours() {
                        warn!(
                            "Unix socket {} was deleted or replaced: unregistering the uds transport",
                            u.path.display()
                        );
                        inner.unregister_transport(Proto::Uds);
                        return;
                    }
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!("accept failed on {proto}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.map(|p| p.ip());
        let (cancel_tx, mut cancel_rx) = oneshot::channel();
        let now = Instant::now();
        let admitted = lock(&admission).admit(ip, now, cancel_tx);
        let ticket = match admitted {
            Admit::Accepted { ticket, evicted } => {
                if let Some(ev) = evicted {
                    debug!("pending handshakes full: closed the oldest silent one");
                    let _ = ev.send(());
                    // Under a flood, let the handshake tasks run before
                    // taking the next socket: a real peer's first message
                    // then marks it as progressed before it could become
                    // the oldest silent one.
                    tokio::task::yield_now().await;
                }
                ticket
            }
            Admit::SourceFull { source, limit } => {
                debug!(
                    ?peer,
                    "refused: {source:?} already has {limit} handshakes pending"
                );
                continue;
            }
        };
        let inner = inner.clone();
        let admission = admission.clone();
        tokio::spawn(async move {
            let deadline = inner.cfg.admission.handshake_time.min(inner.cfg.setup_time);
            let who = peer.map_or_else(|| "local socket".to_owned(), |p| p.to_string());
            let reserved: Mutex<Option<String>> = Mutex::new(None);
            let claimed: Mutex<Option<String>> = Mutex::new(None);
            let setup = async {
                let mut stream = if proto.is_tls() {
                    let tls = inner.tls.as_ref().ok_or((ConnError::Closed, None))?;
                    // The TransportError stays the io::Error's source.
                    tls.accept(stream, &who).await.map_err(|e| {
                        (
                            ConnError::Io(std::io::Error::new(
                                std::io::ErrorKind::PermissionDenied,
                                e,
                            )),
                            None,
                        )
                    })?
                } else {
                    stream
                };
                let a = Acceptor::new(inner.handshake_config(proto), Instant::now())
                    .map_err(|e| (ConnError::Config(e), None))?;
                let check = |name: &str| {
                    // The peer named itself: no longer a silent socket.
                    lock(&admission).progressed(ticket);
                    *lock(&claimed) = Some(name.to_owned());
                    let c = inner.peer_check(name);
                    if c == PeerCheck::Free {
                        *lock(&reserved) = Some(name.to_owned());
                    }
                    c
                };
                match conn::accept(&mut stream, a, check).await {
                    Ok(est) => Ok((stream, est)),
                    Err(e) => {
                        // Drop the reservation while the socket is still
                        // open: a peer retrying at once must find it gone.
                        if let Some(name) = lock(&reserved).take() {
                            inner.clear_accepting(&name);
                        }
                        Err((e, Some(stream)))
                    }
                }
            };
            let result = tokio::select! {
                r = tokio::time::timeout(deadline, setup) => Some(r),
                _ = &mut cancel_rx => None,
            };
            if !matches!(result, Some(Ok(Ok(_)))) {
                if let Some(name) = lock(&reserved).take() {
                    inner.clear_accepting(&name);
                }
            }
            let claimed = lock(&claimed).take();
            match result {
                Some(Ok(Ok((stream, est)))) => {
                    if let Some(ip) = ip {
                        lock(&admission).record_success(ip, &est.peer_name);
                    }
                    inner.install(stream, est, proto.name());
                }
                Some(Ok(Err((ConnError::Handshake(HandshakeError::WrongCookie), stream)))) => {
                    let name = claimed.unwrap_or_default();
                    // Held only if the pair was already locked out before
                    // this attempt: the first `max_failures` are answered
                    // at once.
                    let locked = ip.is_some_and(|ip| {
                        let mut a = lock(&admission);
                        let was = a.locked_out(ip, &name, Instant::now());
                        a.record_failure(ip, &name, Instant::now());
                        was
                    });
                    warn!(peer = %who, transport = %proto, claimed = %name, "incoming handshake failed: wrong cookie");
                    if locked {
                        // Too many wrong cookies from this address under
                        // this name: answer slowly (hold the socket until
                        // the deadline), which bounds the guessing rate.
                        // A correct digest is never delayed.
                        debug!(peer = %who, claimed = %name, "locked out: holding the socket");
                        // It keeps its permit meanwhile, so one source holds
                        // at most its share of sockets this way.
                        let rest = deadline.saturating_sub(now.elapsed());
                        tokio::select! {
                            () = tokio::time::sleep(rest) => {}
                            _ = &mut cancel_rx => {}
                        }
                    }
                    drop(stream);
                }
                Some(Ok(Err((e, _)))) => match claimed {
                    Some(name) => {
                        info!(peer = %who, transport = %proto, claimed = %name, "incoming handshake failed: {e}");
                    }
                    None => {
                        debug!(peer = %who, transport = %proto, "incoming handshake failed: {e}")
                    }
                },
                Some(Err(_)) => {
                    debug!(peer = %who, transport = %proto, "incoming handshake timed out");
                }
                None => debug!(peer = %who, transport = %proto, "incoming handshake evicted"),
            }
            lock(&admission).finish(ticket);
        });
    }
}
