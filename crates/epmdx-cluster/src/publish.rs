//! Publishing a daemon's registrations: the [`Publisher`] trait a backend
//! implements (etcd here; a DNS SRV or Kubernetes backend would implement
//! the same three operations), the pure bookkeeping of what is published
//! ([`Desired`]), the non-blocking hand-off from the EPMD side ([`Updates`])
//! and the task that reconciles them ([`drive`]).
//!
//! The EPMD side only ever calls [`Updates::set`], which takes a short
//! mutex and wakes the task: a registration is never delayed or refused
//! because the backend is slow or down. The hand-off keeps only the latest
//! state per node, so it is bounded by the number of registrations however
//! long the backend is away.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::record::Record;
use crate::ClusterError;

/// Whether the backend session survived since the last call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The same session: everything published before is still there.
    Continued,
    /// A new session (first contact, or the old one expired or was lost):
    /// nothing published before can be relied on; publish everything again.
    New,
}

/// A place records are published to, under a session that keeps them alive
/// (an etcd lease; a DNS record's TTL; a Kubernetes object's owner).
///
/// Implementations bound every call with their own timeout and return an
/// error rather than hang; the caller retries.
pub trait Publisher: Send {
    /// Makes sure a live session exists and renews it; called at least
    /// every third of the TTL and before any publish after an error.
    fn keepalive(&mut self) -> impl Future<Output = Result<Session, ClusterError>> + Send;
    /// Writes (or overwrites) `record` under the current session.
    fn publish(&mut self, record: &Record)
        -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Removes the record of `node` (the `alive@host` string).
    fn withdraw(&mut self, node: &str) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// One thing to do to make the backend match what is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write this record.
    Publish(Record),
    /// Remove this node's record.
    Withdraw(String),
}

/// What should be published and what is known to be. Pure.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    want: BTreeMap<String, Record>,
    published: BTreeMap<String, Record>,
}

impl Desired {
    /// Nothing wanted, nothing published.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what `node` should have: a record, or none.
    pub fn set(&mut self, node: String, record: Option<Record>) {
        match record {
            Some(r) => {
                self.want.insert(node, r);
            }
            None => {
                self.want.remove(&node);
            }
        }
    }

    /// A new session: nothing published can be relied on. Keys of the old
    /// session that are no longer wanted go with it (its lease expires or
    /// is revoked), so no withdrawal is owed for them.
    pub fn reset(&mut self) {
        self.published.clear();
    }

    /// What remains to do, withdrawals first.
    pub fn pending(&self) -> Vec<Op> {
        let withdraw = self
            .published
            .keys()
            .filter(|k| !self.want.contains_key(*k))
            .map(|k| Op::Withdraw(k.clone()));
        let publish = self
            .want
            .iter()
            .filter(|(k, v)| self.published.get(*k) != Some(v))
            .map(|(_, v)| Op::Publish(v.clone()));
        withdraw.chain(publish).collect()
    }

    /// Records that `op` succeeded.
    pub fn done(&mut self, op: &Op) {
        match op {
            Op::Publish(r) => {
                self.published.insert(r.node().to_string(), r.clone());
            }
            Op::Withdraw(n) => {
                self.published.remove(n);
            }
        }
    }

    /// Whether the backend is known to match.
    pub fn settled(&self) -> bool {
        self.pending().is_empty()
    }

    /// How many records are wanted.
    pub fn wanted(&self) -> usize {
        self.want.len()
    }
}

#[derive(Debug, Default)]
struct Shared {
    latest: Mutex<HashMap<String, Option<Record>>>,
    notify: Notify,
}

/// The EPMD side's handle: cheap to clone, never blocks on the backend.
#[derive(Debug, Clone, Default)]
pub struct Updates {
    shared: Arc<Shared>,
}

impl Updates {
    /// A new hand-off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Says what `node` should now have published (`None`: nothing).
    /// Overwrites any state the task has not taken yet.
    pub fn set(&self, node: String, record: Option<Record>) {
        self.shared
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, record);
        self.shared.notify.notify_one();
    }

    fn drain_into(&self, desired: &mut Desired) {
        let taken =
            std::mem::take(&mut *self.shared.latest.lock().unwrap_or_else(|e| e.into_inner()));
        for (node, rec) in taken {
            desired.set(node, rec);
        }
    }
}

/// Timing of [`drive`].
#[derive(Debug, Clone, Copy)]
pub struct DriveConfig {
    /// The session TTL; renewed every third of it.
    pub ttl: Duration,
    /// First retry delay after a failure; doubles up to [`DriveConfig::max_backoff`].
    pub min_backoff: Duration,
    /// Longest retry delay, so records are back within about this long
    /// after the backend returns.
    pub max_backoff: Duration,
}

impl DriveConfig {
    /// Renewal every `ttl / 3`, retries from 200 ms up to 2 s.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Reconciles `publisher` with what `updates` says, forever: renews the
/// session every third of the TTL, publishes and withdraws as registrations
/// change, and after any failure retries with a bounded backoff, publishing
/// everything again once a new session is up. Logs each outage once when it
/// starts and once when it ends.
pub async fn drive<P: Publisher>(mut publisher: P, updates: Updates, cfg: DriveConfig) {
    let mut desired = Desired::new();
    let renew_every = (cfg.ttl / 3).max(Duration::from_millis(100));
    let mut healthy = false;
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut backoff = cfg.min_backoff;
    let mut next_renew = tokio::time::Instant::now();
    loop {
        updates.drain_into(&mut desired);
        let now = tokio::time::Instant::now();
        let mut failed: Option<ClusterError> = None;
        if !healthy || now >= next_renew {
            match publisher.keepalive().await {
                Ok(session) => {
                    if session == Session::New {
                        desired.reset();
                    }
                    healthy = true;
                    next_renew = tokio::time::Instant::now() + renew_every;
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() {
            for op in desired.pending() {
                let r = match &op {
                    Op::Publish(rec) => publisher.publish(rec).await,
                    Op::Withdraw(node) => publisher.withdraw(node).await,
                };
                match r {
                    Ok(()) => {
                        debug!(?op, "cluster record updated");
                        desired.done(&op);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let wait = match failed {
            Some(e) => {
                if down_since.is_none() {
                    warn!(error = %e, "cluster backend unavailable; EPMD service continues, records will be re-published");
                    down_since = Some(tokio::time::Instant::now());
                }
                healthy = false;
                let w = backoff;
                backoff = (backoff * 2).min(cfg.max_backoff);
                w
            }
            None => {
                if let Some(t) = down_since.take() {
                    info!(
                        outage_ms = t.elapsed().as_millis() as u64,
                        records = desired.wanted(),
                        "cluster backend back; records re-published"
                    );
                }
                backoff = cfg.min_backoff;
                next_renew.saturating_duration_since(tokio::time::Instant::now())
            }
        };
        // Wake early for a registration change; a failure still waits out
        // its backoff first so a dead backend is not hammered.
        if healthy {
            tokio::select! {
                () = updates.shared.notify.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Transport;
    use epmd_proto::NodeName;

    fn rec(node: &str, port: u16) -> Record {
        Record::new(
            NodeName::new(node).unwrap(),
            vec![],
            1,
            vec![Transport::new("inet_tcp", port).unwrap()],
            false,
        )
        .unwrap()
    }

    #[test]
    fn desired_reconciles_and_republishes_after_reset() {
        let mut d = Desired::new();
        d.set("a@h".into(), Some(rec("a@h", 1)));
        d.set("b@h".into(), Some(rec("b@h", 2)));
        let ops = d.pending();
        assert_eq!(ops.len(), 2);
        for op in &ops {
            d.done(op);
        }
        assert!(d.settled());
        d.set("a@h".into(), None);
        d.set("b@h".into(), Some(rec("b@h", 3)));
        assert_eq!(
            d.pending(),
            vec![Op::Withdraw("a@h".into()), Op::Publish(rec("b@h", 3))]
        );
        for op in d.pending() {
            d.done(&op);
        }
        // An outage: nothing is known any more, everything wanted goes again,
        // and nothing is owed for keys of the old session.
        d.set("c@h".into(), Some(rec("c@h", 4)));
        d.reset();
        assert_eq!(
            d.pending(),
            vec![Op::Publish(rec("b@h", 3)), Op::Publish(rec("c@h", 4))]
        );
    }

    #[test]
    fn updates_keep_only_the_latest_state() {
        let u = Updates::new();
        for port in 1..=100 {
            u.set("a@h".into(), Some(rec("a@h", port)));
        }
        u.set("b@h".into(), Some(rec("b@h", 1)));
        u.set("b@h".into(), None);
        assert_eq!(u.shared.latest.lock().unwrap().len(), 2);
        let mut d = Desired::new();
        u.drain_into(&mut d);
        assert_eq!(d.pending(), vec![Op::Publish(rec("a@h", 100))]);
        assert!(u.shared.latest.lock().unwrap().is_empty());
    }
}
