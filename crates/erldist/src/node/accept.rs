//! The listeners: accepting connections, the pending-handshake bound and
//! the failed-handshake limiter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dist_proto::{Acceptor, HandshakeError, PeerCheck};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{lock, Inner};
use crate::conn::{self, ConnError};
use crate::transport::{uds, BoxStream, Proto};

/// Bounds failed handshakes per address (cookie guessing).
#[derive(Debug, Default)]
pub(super) struct Failures {
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
            Self::Uds(u) => {
                let (s, _) = u.listener.accept().await?;
                Ok((Box::new(s), None))
            }
        }
    }
}

pub(super) async fn accept_loop(inner: Arc<Inner>, listener: Listener, permits: Arc<Semaphore>) {
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
