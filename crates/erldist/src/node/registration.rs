//! EPMD registration: the epmdx extension (ALIVE3) when the daemon speaks
//! it, else plain ALIVE2 for one transport.

use epmd_client::{Client, ClientError, NodeSpec};
use tracing::warn;

use super::NodeError;
use crate::transport::{Proto, TransportError};

/// How the node is registered with EPMD.
#[derive(Debug)]
pub(super) enum Registration {
    /// Through the epmdx extension (ALIVE3), on its own connection.
    Extended(#[allow(dead_code)] epmd_client::ExtRegistration),
    /// Plain ALIVE2 against a stock EPMD.
    Legacy(#[allow(dead_code)] epmd_client::Registration),
}

/// Registers with EPMD: every transport through the extension; against a
/// stock daemon, plain ALIVE2 for the first plain-TCP transport (else the
/// first TLS one), saying what is not advertised.
pub(super) async fn register(
    alive: &str,
    transports: &[(Proto, u16, Vec<u8>)],
    epmd_port: u16,
    hidden: bool,
) -> Result<(u32, Registration), NodeError> {
    let client = Client::local(epmd_port);
    let spec = NodeSpec {
        name: alive,
        node_type: epmd_proto::NodeType::hidden(hidden).code(),
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
