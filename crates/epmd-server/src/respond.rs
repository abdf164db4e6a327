//! What the daemon answers: one pure function, [`respond`], from a decoded
//! request and who sent it to an [`Outcome`] the connection handler carries
//! out. No I/O and no clock (the Unix time comes in [`PeerCtx`]); the
//! registry is the only state it changes. Both serving paths in
//! [`crate::server`] (the synchronous fast path in the accept loop and the
//! per-connection task) and the follow-up requests on an extended
//! registration's own connection go through it, so every protocol rule is
//! decided in one place and unit-tested without sockets.

use std::os::fd::RawFd;
use std::sync::Arc;

use bytes::Bytes;
use epmd_proto::ext::{self, Status};
use epmd_proto::legacy::{self, Alive2Resp, TextListing};
use epmd_proto::Request;
use tokio::sync::Notify;

use crate::metrics::Verdict;
use crate::registry::{ConnId, Filter, RegisterError, Registry};
use crate::server::Config;

/// Closes the connection of a node that STOP removed: the registration's
/// task waits on it.
pub type Stopper = Arc<Notify>;

/// Who sent a request, and what the handler knows about its connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerCtx<'a> {
    /// The connection's id (owner of anything it registers).
    pub conn: ConnId,
    /// Its descriptor, shown by DUMP.
    pub fd: RawFd,
    /// Whether the peer may use local-only commands (loopback, or the
    /// socket's own address).
    pub local: bool,
    /// The Unix time, for new creation counters.
    pub now_unix: u64,
    /// On an extended registration's own connection: the name it holds.
    /// Only ALIVE3 (more transports) and UNREG3 are served there.
    pub owns: Option<&'a [u8]>,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// One buffer, sent in one write (after one `-delay_write` pause).
    Whole(Bytes),
    /// A NAMES or DUMP listing under `-delay_write`: the header and each
    /// line are separate writes, each after its own pause, like the C
    /// server's.
    Paced(TextListing),
}

impl Reply {
    fn from_vec(v: Vec<u8>) -> Self {
        Self::Whole(Bytes::from(v))
    }

    fn from_static(b: &'static [u8]) -> Self {
        Self::Whole(Bytes::from_static(b))
    }

    /// The whole reply's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Whole(b) => b,
            Self::Paced(l) => l.as_bytes(),
        }
    }
}

/// Why a request is closed without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A local-only command from a peer that is not local.
    #[error("non-local peer refused a local-only request")]
    NotLocal,
    /// STOP without `-relaxed_command_check`.
    #[error("stop request refused: not in relaxed mode")]
    NotRelaxed,
    /// Anything but ALIVE3 or UNREG3 on a registration connection.
    #[error("unexpected request on a registration connection")]
    Unexpected,
}

/// What the handler must do with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Close without a reply.
    Close(Refusal),
    /// Send the reply, then close.
    Reply(Reply),
    /// The name is registered: send the reply, then hold the connection as
    /// the registration (it ends with the connection, or when `stopper`
    /// fires). The connection no longer counts as pending.
    Registered {
        /// ALIVE2_RESP / ALIVE2_X_RESP / the ALIVE3 reply.
        reply: Reply,
        /// The registered name.
        name: Box<[u8]>,
        /// ALIVE3 (follow-up requests served) rather than ALIVE2.
        extended: bool,
        /// Wakes the registration's task when STOP removes it.
        stopper: Stopper,
        /// Its creation counter.
        creation: u32,
    },
    /// The registration was refused: send the reply; a legacy client's
    /// socket is then kept open (still pending, evictable) until it closes,
    /// as the C epmd does, an extended one is closed.
    Refused {
        /// The failure reply.
        reply: Reply,
        /// Keep the connection open until the client closes it.
        hold: bool,
        /// The name asked for.
        name: Box<[u8]>,
        /// Why.
        error: RegisterError,
    },
    /// STOP: wake the stopped node's task, if any, send the reply, close.
    Stop {
        /// STOPPED or NOEXIST.
        reply: Reply,
        /// The stopped registration's handle.
        stopped: Option<Stopper>,
    },
    /// KILL accepted: send the reply, then stop the daemon.
    Kill(Reply),
    /// A follow-up on a registration connection: send the reply and keep
    /// serving it.
    Continue(Reply),
}

impl Outcome {
    /// How the request ended, for logs and metrics.
    pub fn result(&self) -> Verdict {
        match self {
            Self::Close(_) => Verdict::Closed,
            Self::Refused { .. } => Verdict::Refused,
            Self::Stop { stopped: None, .. } => Verdict::Miss,
            Self::Reply(r) | Self::Continue(r) => match r.as_bytes() {
                b if b == legacy::PORT2_MISS => Verdict::Miss,
                b if b == ext::encode_port3_status(Status::Refused) => Verdict::Miss,
                b if b == ext::encode_unreg3_reply(Status::NotRegistered) => Verdict::Miss,
                b if b == legacy::KILL_NO => Verdict::Refused,
                _ => Verdict::Ok,
            },
            _ => Verdict::Ok,
        }
    }
}

/// Decides the answer to `req` from `peer`, changing `reg` as the request
/// says (registrations, STOP, follow-up transports).
pub fn respond(
    reg: &mut Registry<Stopper>,
    req: Request<'_>,
    peer: &PeerCtx<'_>,
    cfg: &Config,
) -> Outcome {
    if let Some(name) = peer.owns {
        return follow_up(reg, req, peer.conn, name);
    }
    if req.is_local_only() && !peer.local {
        return Outcome::Close(Refusal::NotLocal);
    }
    let paced = !cfg.delay_write.is_zero();
    match req {
        Request::Alive2(a) => {
            let stopper = Stopper::default();
            let x_form = a.wants_x_reply();
            match reg.register_legacy(peer.conn, peer.fd, &a, peer.now_unix, stopper.clone()) {
                Ok(r) => {
                    let reply = if x_form {
                        Alive2Resp::X {
                            result: 0,
                            creation: r.creation,
                        }
                    } else {
                        Alive2Resp::Legacy {
                            result: 0,
                            creation: r.legacy_creation(),
                        }
                    };
                    Outcome::Registered {
                        reply: Reply::from_vec(reply.encode()),
                        name: a.name.into(),
                        extended: false,
                        stopper,
                        creation: r.creation,
                    }
                }
                Err(error) => Outcome::Refused {
                    reply: Reply::from_vec(Alive2Resp::failure(x_form).encode()),
                    hold: true,
                    name: a.name.into(),
                    error,
                },
            }
        }
        Request::Alive3(a) => {
            let stopper = Stopper::default();
            match reg.register_ext(peer.conn, peer.fd, &a, peer.now_unix, stopper.clone()) {
                Ok(r) => Outcome::Registered {
                    reply: Reply::from_vec(ext::encode_alive3_reply(Status::Ok, r.creation)),
                    name: a.name.into(),
                    extended: true,
                    stopper,
                    creation: r.creation,
                },
                Err(error) => Outcome::Refused {
                    reply: Reply::from_vec(ext::encode_alive3_reply(error.status(), 0)),
                    hold: false,
                    name: a.name.into(),
                    error,
                },
            }
        }
        Request::PortPlease2(name) => Outcome::Reply(match reg.port2_reply(name) {
            // The pre-encoded reply is shared; one copy for the write.
            Some(r) => Reply::Whole(Bytes::copy_from_slice(&r)),
            None => Reply::from_static(&legacy::PORT2_MISS),
        }),
        Request::PortPlease3(p) => Outcome::Reply(Reply::from_vec(match p.validate() {
            Err(s) => ext::encode_port3_status(s).to_vec(),
            Ok(()) => reg.port3_reply(
                p.name,
                &Filter {
                    protos: &p.protos,
                    local: peer.local,
                },
            ),
        })),
        Request::Names if paced => Outcome::Reply(Reply::Paced(reg.names_listing(cfg.port))),
        Request::Names => Outcome::Reply(Reply::Whole(reg.names(cfg.port))),
        Request::Dump if paced => Outcome::Reply(Reply::Paced(reg.dump_listing(cfg.port))),
        Request::Dump => Outcome::Reply(Reply::Whole(reg.dump(cfg.port))),
        Request::Names3 => Outcome::Reply(Reply::Whole(reg.names3(cfg.port, peer.local))),
        Request::Dump3 => Outcome::Reply(Reply::Whole(reg.dump3(cfg.port))),
        Request::Kill => {
            if !cfg.relaxed && !reg.is_empty() {
                Outcome::Reply(Reply::from_static(legacy::KILL_NO))
            } else {
                Outcome::Kill(Reply::from_static(legacy::KILL_OK))
            }
        }
        Request::Stop(name) => {
            if !cfg.relaxed {
                return Outcome::Close(Refusal::NotRelaxed);
            }
            match reg.stop(name) {
                Some(s) => Outcome::Stop {
                    reply: Reply::from_static(legacy::STOP_STOPPED),
                    stopped: Some(s),
                },
                None => Outcome::Stop {
                    reply: Reply::from_static(legacy::STOP_NOEXIST),
                    stopped: None,
                },
            }
        }
        // Not on the connection that registered: nothing of the caller's
        // to remove.
        Request::Unreg3(_) => Outcome::Reply(Reply::Whole(Bytes::copy_from_slice(
            &ext::encode_unreg3_reply(Status::NotRegistered),
        ))),
    }
}

/// A request on an extended registration's own connection.
fn follow_up(reg: &mut Registry<Stopper>, req: Request<'_>, conn: ConnId, name: &[u8]) -> Outcome {
    match req {
        Request::Alive3(a) => {
            Outcome::Continue(Reply::from_vec(match reg.add_transports(conn, name, &a) {
                Ok(r) => ext::encode_alive3_reply(Status::Ok, r.creation),
                Err(e) => ext::encode_alive3_reply(e.status(), 0),
            }))
        }
        Request::Unreg3(u) => Outcome::Continue(Reply::Whole(Bytes::copy_from_slice(
            &ext::encode_unreg3_reply(reg.remove_transport(conn, name, u.proto)),
        ))),
        _ => Outcome::Close(Refusal::Unexpected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use epmd_proto::ext::{Alive3Req, TransportRef};
    use epmd_proto::legacy::Alive2Req;
    use std::time::Duration;

    fn peer(conn: ConnId, local: bool) -> PeerCtx<'static> {
        PeerCtx {
            conn,
            fd: 10 + conn as RawFd,
            local,
            now_unix: 1000,
            owns: None,
        }
    }

    fn alive2(name: &[u8]) -> Request<'_> {
        Request::Alive2(Alive2Req {
            port: 5000,
            node_type: 77,
            protocol: 0,
            high: 6,
            low: 5,
            name,
            extra: b"",
        })
    }

    fn bytes(o: &Outcome) -> &[u8] {
        match o {
            Outcome::Reply(r) | Outcome::Kill(r) | Outcome::Continue(r) => r.as_bytes(),
            Outcome::Registered { reply, .. } | Outcome::Refused { reply, .. } => reply.as_bytes(),
            Outcome::Stop { reply, .. } => reply.as_bytes(),
            Outcome::Close(_) => b"",
        }
    }

    #[test]
    fn registration_lookup_and_listings() {
        let cfg = Config::default();
        let mut reg = Registry::new(10, 1000);
        let o = respond(&mut reg, alive2(b"foo"), &peer(1, true), &cfg);
        let Outcome::Registered {
            creation, extended, ..
        } = &o
        else {
            panic!("{o:?}")
        };
        assert_eq!((*creation, *extended), (1001, false));
        assert_eq!(bytes(&o), [118, 0, 0, 0, 0x03, 0xe9]);
        // Same name again: refused, held open like the C epmd.
        let o = respond(&mut reg, alive2(b"foo"), &peer(2, true), &cfg);
        assert!(matches!(o, Outcome::Refused { hold: true, .. }));
        assert_eq!(bytes(&o), [118, 1, 0, 0, 0, 99]);
        assert_eq!(o.result(), Verdict::Refused);

        let o = respond(
            &mut reg,
            Request::PortPlease2(b"foo"),
            &peer(3, false),
            &cfg,
        );
        assert_eq!(bytes(&o), &reg.port2_reply(b"foo").unwrap()[..]);
        let o = respond(
            &mut reg,
            Request::PortPlease2(b"bar"),
            &peer(3, false),
            &cfg,
        );
        assert_eq!(bytes(&o), legacy::PORT2_MISS);
        assert_eq!(o.result(), Verdict::Miss);

        let o = respond(&mut reg, Request::Names, &peer(4, false), &cfg);
        assert_eq!(bytes(&o), b"\0\0\x11\x11name foo at port 5000\n");
        // The listing is shared: the second caller gets the same buffer.
        let (Outcome::Reply(Reply::Whole(a)), Outcome::Reply(Reply::Whole(b))) = (
            respond(&mut reg, Request::Names3, &peer(5, false), &cfg),
            respond(&mut reg, Request::Names3, &peer(6, false), &cfg),
        ) else {
            panic!("NAMES3 is one buffer")
        };
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(
            ext::decode_names3_body(ext::check_reply32(&a).unwrap())
                .unwrap()
                .nodes
                .len(),
            1
        );
    }

    #[test]
    fn local_only_commands_and_kill() {
        let mut cfg = Config::default();
        let mut reg = Registry::new(10, 1000);
        for req in [
            alive2(b"x"),
            Request::Dump,
            Request::Kill,
            Request::Stop(b"x"),
            Request::Dump3,
        ] {
            let o = respond(&mut reg, req, &peer(1, false), &cfg);
            assert!(matches!(o, Outcome::Close(Refusal::NotLocal)), "{o:?}");
        }
        assert!(reg.is_empty());
        let o = respond(&mut reg, Request::Stop(b"x"), &peer(1, true), &cfg);
        assert!(matches!(o, Outcome::Close(Refusal::NotRelaxed)));
        assert!(matches!(
            respond(&mut reg, Request::Kill, &peer(1, true), &cfg),
            Outcome::Kill(_)
        ));
        respond(&mut reg, alive2(b"x"), &peer(2, true), &cfg);
        let o = respond(&mut reg, Request::Kill, &peer(3, true), &cfg);
        assert_eq!(bytes(&o), legacy::KILL_NO);
        cfg.relaxed = true;
        let o = respond(&mut reg, Request::Stop(b"x"), &peer(3, true), &cfg);
        assert!(matches!(
            o,
            Outcome::Stop {
                stopped: Some(_),
                ..
            }
        ));
        assert_eq!(bytes(&o), legacy::STOP_STOPPED);
        let o = respond(&mut reg, Request::Stop(b"x"), &peer(3, true), &cfg);
        assert_eq!(bytes(&o), legacy::STOP_NOEXIST);
    }

    #[test]
    fn delay_write_paces_text_listings() {
        let cfg = Config {
            delay_write: Duration::from_secs(1),
            ..Config::default()
        };
        let mut reg = Registry::new(10, 1000);
        respond(&mut reg, alive2(b"a"), &peer(1, true), &cfg);
        respond(&mut reg, alive2(b"b"), &peer(2, true), &cfg);
        let Outcome::Reply(Reply::Paced(l)) =
            respond(&mut reg, Request::Dump, &peer(3, true), &cfg)
        else {
            panic!("DUMP is paced under -delay_write")
        };
        assert_eq!(l.parts().count(), 3);
        assert_eq!(l.as_bytes(), &reg.dump(cfg.port)[..]);
    }

    #[test]
    fn follow_ups_on_a_registration_connection() {
        let cfg = Config::default();
        let mut reg = Registry::new(10, 1000);
        let t = |proto: &'static [u8], port| TransportRef {
            port,
            proto,
            extra: b"",
        };
        let a = Alive3Req {
            node_type: 77,
            high: 6,
            low: 6,
            name: b"s",
            transports: vec![t(b"inet_tcp", 1)],
            legacy_default: 0,
        };
        let o = respond(&mut reg, Request::Alive3(a.clone()), &peer(1, true), &cfg);
        assert!(matches!(o, Outcome::Registered { extended: true, .. }));
        let owner = PeerCtx {
            owns: Some(b"s"),
            ..peer(1, true)
        };
        let more = Alive3Req {
            transports: vec![t(b"inet_tls", 2)],
            ..a
        };
        let o = respond(&mut reg, Request::Alive3(more), &owner, &cfg);
        assert!(matches!(o, Outcome::Continue(_)));
        assert_eq!(
            ext::decode_alive3_reply(bytes(&o)).unwrap().unwrap().0,
            Status::Ok
        );
        let o = respond(&mut reg, Request::Names, &owner, &cfg);
        assert!(matches!(o, Outcome::Close(Refusal::Unexpected)));
        // UNREG3 from another connection removes nothing.
        let o = respond(
            &mut reg,
            Request::Unreg3(ext::Unreg3Req { proto: b"inet_tls" }),
            &peer(2, true),
            &cfg,
        );
        assert_eq!(bytes(&o), ext::encode_unreg3_reply(Status::NotRegistered));
        let o = respond(
            &mut reg,
            Request::Unreg3(ext::Unreg3Req { proto: b"inet_tls" }),
            &owner,
            &cfg,
        );
        assert_eq!(bytes(&o), ext::encode_unreg3_reply(Status::Ok));
    }
}
