//! The built-in services (`net_kernel`, `erldist`) and the calls this node
//! makes to other nodes' services (`ping`, `rpc`, `gen_server:call`).

use std::time::Duration;

use erl_term::{Atom, Pid, Term};
use tracing::debug;

use super::{atom, lock, Node, NodeError};
use crate::mailbox::Mailbox;

impl Node {
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
                    return Err(NodeError::Down(e[4].clone()));
                }
                Term::Tuple(ref e) if e.len() == 4 && e[0] == Term::atom("io_request") => {
                    answer_io_request(&mb, e).await;
                }
                _ => {}
            }
        }
    }

    /// Starts the built-in services: `net_kernel`, which answers `is_auth`
    /// (ping), and `erldist`, which answers `connections` with
    /// `[{Peer, Transport}]` and `{connect, Peer}` with `ok` or
    /// `{error, Reason}` after connecting this node to `Peer`.
    pub(super) fn spawn_services(&self) -> Result<(), NodeError> {
        for service in ["net_kernel", "erldist"] {
            // Internal handles: the services must not keep the node alive.
            let node = self.internal();
            let mut mb = node.register_mailbox(service)?;
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
                                            Term::binary(e.to_string()),
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
                                        Term::atom(c.transport.name()),
                                    ]))
                                })
                                .collect(),
                        ),
                        _ => Term::Tuple(vec![Term::atom("error"), Term::atom("not_supported")]),
                    };
                    let _ = mb.send(to, Term::Tuple(vec![tag.clone(), reply])).await;
                }
            });
            lock(&self.inner.tasks).push(t);
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
            // Output is message contents: debug level only, bounded.
            if let Some(chars) = r.last() {
                debug!("remote output: {}", crate::logfmt::Truncated::new(chars));
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
