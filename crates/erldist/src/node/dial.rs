//! Dialling: EPMD lookup, transport selection, failover and the
//! outgoing handshake.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use dist_proto::{Connector, HandshakeError, Stage};
use epmd_client::{Client, Lookup};
use tracing::{debug, warn};

use super::{split_name, Inner, NodeError};

/// The host's addresses from DNS (empty if it does not resolve).
async fn resolve(peer: &str, host: &str) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = match tokio::net::lookup_host((host, 0)).await {
        Ok(it) => it.map(|a| a.ip()).collect(),
        Err(e) => {
            debug!(peer, "cannot resolve {host}: {e}");
            Vec::new()
        }
    };
    addrs.dedup();
    addrs
}
use crate::conn::{self, ConnError, ConnHandle};
use crate::policy::{Offer, Peer, Selection};
use crate::transport::{tcp, uds, BoxStream, Proto, TransportError};

impl Inner {
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

    /// The peer's offers and addresses: from its cluster record when it is
    /// a member (no EPMD, no DNS unless the record has no address), else
    /// from its host's EPMD and DNS.
    async fn offers_of(
        &self,
        peer: &str,
        alive: &str,
        host: &str,
        speaks: &[Proto],
    ) -> Result<(Vec<Offer>, Vec<IpAddr>), NodeError> {
        let member = super::read(&self.directory).get(peer).cloned();
        if let Some(m) = member {
            debug!(peer, "cluster member: transports from its record");
            let offers = if m.legacy {
                self.legacy_offers(m.transports.first().map(|t| t.1), Vec::new(), speaks)
            } else {
                m.transports
                    .iter()
                    .map(|&(proto, port)| Offer {
                        proto,
                        port,
                        extra: Vec::new(),
                        legacy: false,
                    })
                    .collect()
            };
            let addrs = if m.addresses.is_empty() {
                resolve(peer, host).await
            } else {
                m.addresses
            };
            return Ok((offers, addrs));
        }
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
            let t = rec.transports.first();
            self.legacy_offers(
                t.map(|t| t.port),
                t.map(|t| t.extra.clone()).unwrap_or_default(),
                speaks,
            )
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
        Ok((offers, resolve(peer, host).await))
    }

    /// EPMD cannot tell what a legacy registration speaks: offer every IP
    /// transport this node speaks on its port, plain TCP first, or this
    /// node's legacy default first (a stock TLS cluster).
    fn legacy_offers(&self, port: Option<u16>, extra: Vec<u8>, speaks: &[Proto]) -> Vec<Offer> {
        let Some(port) = port else {
            return Vec::new();
        };
        let mut order = [
            Proto::InetTcp,
            Proto::Inet6Tcp,
            Proto::InetTls,
            Proto::Inet6Tls,
        ];
        order.sort_by_key(|p| Some(*p) != self.cfg.legacy_default);
        order
            .into_iter()
            .filter(|p| speaks.contains(p))
            .map(|proto| Offer {
                proto,
                port,
                extra: extra.clone(),
                legacy: true,
            })
            .collect()
    }

    /// Looks the peer up (its cluster record, else its host's EPMD), lets
    /// the policy choose a transport, dials it (failing over if
    /// configured) and runs the handshake.
    pub(super) async fn connect_out(self: &Arc<Self>, peer: &str) -> Result<ConnHandle, NodeError> {
        let (alive, host) = split_name(peer)?;
        let speaks = self.speaks();
        let (offers, addrs) = self.offers_of(peer, alive, host, &speaks).await?;
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
                        // A node that rejects our digest closes without a
                        // word (OTP and erldist alike; inside TLS without
                        // close_notify, which the TLS stream reads as the
                        // end): a cookie mismatch, whatever the transport.
                        Err(ConnError::Handshake(HandshakeError::Closed {
                            stage: Stage::ChallengeAck,
                        })) => {
                            return Err(NodeError::CookieMismatch {
                                peer: peer.to_owned(),
                            })
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
}
