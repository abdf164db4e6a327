//! EPMD registration: the epmdx extension (ALIVE3) when the daemon speaks
//! it, else plain ALIVE2 for one transport.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use epmd_client::{Client, ClientError, NodeSpec};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use super::{lock, NodeError, NodeEvent};
use crate::transport::{Proto, TransportError};

/// How the node is registered with EPMD.
#[derive(Debug)]
pub(super) enum Registration {
    /// Through the epmdx extension (ALIVE3), on its own connection.
    Extended(epmd_client::ExtRegistration),
    /// Plain ALIVE2 against a stock EPMD.
    Legacy(epmd_client::Registration),
}

impl Registration {
    /// Waits until EPMD closes the registration connection.
    async fn closed(&mut self) {
        match self {
            Self::Extended(r) => r.closed().await,
            Self::Legacy(r) => r.closed().await,
        }
    }

    pub(super) fn extended(&self) -> bool {
        matches!(self, Self::Extended(_))
    }
}

/// First and longest wait between re-registration attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What re-registering needs, copied out of the node so the task holds no
/// reference to it.
#[derive(Debug)]
pub(super) struct Registrar {
    pub(super) alive: String,
    pub(super) transports: Vec<(Proto, u16, Vec<u8>)>,
    pub(super) epmd_port: u16,
    pub(super) hidden: bool,
    pub(super) legacy_default: Option<Proto>,
    pub(super) events: broadcast::Sender<NodeEvent>,
    /// Whether the current registration uses the extension; `None` while
    /// unregistered.
    pub(super) extended: Arc<Mutex<Option<bool>>>,
    /// Transports to withdraw (see `Inner::unregister_transport`).
    pub(super) withdraw: mpsc::UnboundedReceiver<Proto>,
}

impl Registrar {
    /// Stays registered: whenever EPMD closes the registration connection
    /// (a restart, a `kill -9`), registers every transport again, with
    /// exponential backoff, as stock OTP nodes and the adapter do. The
    /// node keeps its creation (its pids carry it); EPMD's new one is not
    /// used. Runs until aborted (`Node::stop`), which drops the
    /// registration and so unregisters.
    pub(super) async fn supervise(mut self, mut reg: Registration) {
        loop {
            tokio::select! {
                () = reg.closed() => {}
                Some(p) = self.withdraw.recv() => {
                    self.transports.retain(|(q, _, _)| *q != p);
                    // ALIVE2 never carries a Unix socket; only the
                    // extension has something to withdraw.
                    if let Registration::Extended(r) = &mut reg {
                        match r.remove(p.name()).await {
                            Ok(()) => info!("unregistered transport {p} from EPMD"),
                            Err(e) => warn!("could not unregister transport {p} from EPMD: {e}"),
                        }
                    }
                    continue;
                }
            }
            *lock(&self.extended) = None;
            warn!(
                "the EPMD registration connection closed; re-registering {} transport(s)",
                self.transports.len()
            );
            let _ = self.events.send(NodeEvent::RegistrationLost);
            let mut delay = BACKOFF_MIN;
            let mut attempt = 1u32;
            reg = loop {
                let r = register(
                    &self.alive,
                    &self.transports,
                    self.epmd_port,
                    self.hidden,
                    self.legacy_default,
                )
                .await;
                match r {
                    Ok((creation, r)) => {
                        info!(
                            attempt,
                            "registered with EPMD again (EPMD's creation {creation} is not used)"
                        );
                        break r;
                    }
                    Err(e) => {
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            warn!(
                                attempt,
                                "re-registering with EPMD failed: {e}; retrying in {delay:?}"
                            );
                        } else {
                            debug!(attempt, "re-registering with EPMD failed: {e}");
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(BACKOFF_MAX);
                        attempt = attempt.saturating_add(1);
                    }
                }
            };
            let extended = reg.extended();
            *lock(&self.extended) = Some(extended);
            let _ = self.events.send(NodeEvent::Reregistered { extended });
        }
    }
}

/// Registers with EPMD: every transport through the extension; against a
/// stock daemon, plain ALIVE2 for the first plain-TCP transport (else the
/// first TLS one), saying what is not advertised.
pub(super) async fn register(
    alive: &str,
    transports: &[(Proto, u16, Vec<u8>)],
    epmd_port: u16,
    hidden: bool,
    legacy_default: Option<Proto>,
) -> Result<(u32, Registration), NodeError> {
    let client = Client::local(epmd_port);
    let spec = NodeSpec {
        name: alive,
        node_type: epmd_proto::NodeType::hidden(hidden).code(),
        high: 6,
        low: 6,
        legacy_default: legacy_default.map(Proto::name),
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
                .find(|(p, _, _)| Some(*p) == legacy_default)
                .or_else(|| transports.iter().find(|(p, _, _)| p.is_plain_tcp()))
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

impl super::Inner {
    /// Withdraws one transport from the EPMD registration (the others stay
    /// registered, and re-registration leaves it out too), e.g. the `uds`
    /// one when its socket file is gone. The registrar task does it.
    pub(super) fn unregister_transport(&self, proto: Proto) {
        let _ = self.withdraw.send(proto);
    }
}
