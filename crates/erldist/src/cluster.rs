//! Cluster membership: a node that follows a member list (kept in etcd by
//! epmdx daemons, docs/cluster.md) connects to every member through its
//! selection policy, keeps connecting to members that appear, and stops
//! retrying members that leave.
//!
//! - [`Member`]: what the cluster says about a node: its addresses and its
//!   transports, so dialling it needs neither DNS nor its host's EPMD.
//! - [`Membership`]: the pure core. Fed membership changes, connection
//!   results and the clock, it returns [`Effect`]s (learn or forget a
//!   member's transports, dial a member); no I/O, no clock of its own.
//! - [`Discovery`] / [`MemberSource`]: where changes come from. With the
//!   `etcd` feature, [`etcd::EtcdDiscovery`] follows `/epmdx/NAME/nodes/`
//!   through `epmdx-cluster`'s watch.
//!
//! The node's side (the task that carries the effects out, the directory
//! `connect` consults) is in `node::cluster`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::transport::Proto;

#[cfg(feature = "etcd")]
pub mod etcd;

/// First wait before redialling a member whose connection failed or went
/// down; doubled per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait between two dials of one member.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One member of the cluster, as its record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `alive@host`.
    pub node: String,
    /// Where its host can be reached (empty: resolve the host name).
    pub addresses: Vec<IpAddr>,
    /// Its transports with their ports, in its registration order.
    pub transports: Vec<(Proto, u16)>,
    /// Registered the legacy way (ALIVE2): what it speaks is a guess.
    pub legacy: bool,
}

/// A change of the member set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A member appeared, or its record changed.
    Up(Member),
    /// A member left.
    Down(String),
}

/// What the node must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Remember (or replace) how to reach this member.
    Learn(Member),
    /// The member left: forget it.
    Forget(String),
    /// Dial this member now, and report the result with
    /// [`Membership::connected`] or [`Membership::failed`].
    Connect(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Connected (dialled by us or by the peer).
    Up,
    /// A dial is under way; `backoff` is the wait if it fails.
    Dialling { backoff: Duration },
    /// Waiting until `at` to dial again.
    Waiting { at: Instant, backoff: Duration },
}

/// The pure core: members and, for each one but this node, its connection
/// state.
#[derive(Debug)]
pub struct Membership {
    me: String,
    members: BTreeMap<String, Member>,
    conns: HashMap<String, Conn>,
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).min(BACKOFF_MAX)
}

impl Membership {
    /// The membership of node `me` (listed among the members when it is
    /// published, never dialled).
    pub fn new(me: impl Into<String>) -> Self {
        Self {
            me: me.into(),
            members: BTreeMap::new(),
            conns: HashMap::new(),
        }
    }

    /// The current members, by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether `node` is a member now.
    pub fn is_member(&self, node: &str) -> bool {
        self.members.contains_key(node)
    }

    /// Members this node is dialling or waiting to dial again.
    pub fn retrying(&self) -> impl Iterator<Item = &str> {
        self.conns
            .iter()
            .filter(|(_, c)| !matches!(c, Conn::Up))
            .map(|(n, _)| n.as_str())
    }

    /// A change of the member set.
    pub fn change(&mut self, change: MemberChange) -> Vec<Effect> {
        match change {
            MemberChange::Up(m) => {
                let mut out = Vec::new();
                if self.members.get(&m.node) != Some(&m) {
                    out.push(Effect::Learn(m.clone()));
                    self.members.insert(m.node.clone(), m.clone());
                }
                if m.node != self.me && !self.conns.contains_key(&m.node) {
                    self.conns.insert(
                        m.node.clone(),
                        Conn::Dialling {
                            backoff: BACKOFF_MIN,
                        },
                    );
                    out.push(Effect::Connect(m.node));
                }
                out
            }
            MemberChange::Down(node) => {
                // An in-flight dial finishes; its result is then ignored.
                self.conns.remove(&node);
                match self.members.remove(&node) {
                    Some(_) => vec![Effect::Forget(node)],
                    None => Vec::new(),
                }
            }
        }
    }

    /// A connection to `node` is up (our dial succeeded, or the peer
    /// dialled us).
    pub fn connected(&mut self, node: &str) {
        if self.members.contains_key(node) && node != self.me {
            self.conns.insert(node.to_owned(), Conn::Up);
        }
    }

    /// Our dial of `node` failed: wait, then try again while it is a
    /// member.
    pub fn failed(&mut self, node: &str, now: Instant) {
        if let Some(c) = self.conns.get_mut(node) {
            if let Conn::Dialling { backoff } = *c {
                *c = Conn::Waiting {
                    at: now + backoff,
                    backoff: next_backoff(backoff),
                };
            }
        }
    }

    /// The connection to `node` went down: dial it again soon while it is
    /// a member (if it halted, its record goes too and so do the retries).
    pub fn down(&mut self, node: &str, now: Instant) {
        if let Some(c) = self.conns.get_mut(node) {
            if matches!(c, Conn::Up) {
                *c = Conn::Waiting {
                    at: now + BACKOFF_MIN,
                    backoff: next_backoff(BACKOFF_MIN),
                };
            }
        }
    }

    /// The dials that are due at `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Effect> {
        let mut due = Vec::new();
        for (node, c) in &mut self.conns {
            if let Conn::Waiting { at, backoff } = *c {
                if at <= now {
                    *c = Conn::Dialling { backoff };
                    due.push(node.clone());
                }
            }
        }
        due.sort();
        due.into_iter().map(Effect::Connect).collect()
    }

    /// When [`Membership::tick`] has something to do next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| match c {
                Conn::Waiting { at, .. } => Some(*at),
                _ => None,
            })
            .min()
    }
}

/// A boxed future, for object-safe sources.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of membership changes. It reconnects to its backend by itself:
/// `next` only returns a change (a source that cannot reach its backend
/// keeps the last member set by returning nothing until it can).
pub trait MemberSource: Send {
    /// The next change.
    fn next(&mut self) -> BoxFuture<'_, MemberChange>;
}

/// Where a node's cluster membership comes from: opens a
/// [`MemberSource`] when the node starts. Set with
/// [`crate::NodeConfig::with_discovery`].
pub trait Discovery: Send + Sync + fmt::Debug {
    /// Opens the source (it connects lazily, on its first `next`).
    fn open(&self) -> Box<dyn MemberSource>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, port: u16) -> Member {
        Member {
            node: node.into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            transports: vec![(Proto::InetTcp, port)],
            legacy: false,
        }
    }

    #[test]
    fn members_that_appear_are_learnt_and_dialled_once() {
        let mut m = Membership::new("me@h");
        let a = member("a@h", 1);
        assert_eq!(
            m.change(MemberChange::Up(a.clone())),
            vec![Effect::Learn(a.clone()), Effect::Connect("a@h".into())]
        );
        // The same record again: nothing to do.
        assert_eq!(m.change(MemberChange::Up(a.clone())), vec![]);
        // A changed record is learnt; no second dial while one runs.
        let a2 = member("a@h", 2);
        assert_eq!(
            m.change(MemberChange::Up(a2.clone())),
            vec![Effect::Learn(a2)]
        );
        assert_eq!(m.retrying().collect::<Vec<_>>(), vec!["a@h"]);
    }

    #[test]
    fn this_node_is_a_member_but_never_dialled() {
        let mut m = Membership::new("me@h");
        let me = member("me@h", 1);
        assert_eq!(
            m.change(MemberChange::Up(me.clone())),
            vec![Effect::Learn(me)]
        );
        assert!(m.is_member("me@h"));
        m.connected("me@h");
        assert_eq!(m.retrying().count(), 0);
        assert_eq!(m.next_wakeup(), None);
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap() {
        let mut m = Membership::new("me@h");
        let t0 = Instant::now();
        m.change(MemberChange::Up(member("a@h", 1)));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            m.failed("a@h", now);
            let at = m.next_wakeup().expect("a retry is scheduled");
            waits.push(at - now);
            // Nothing is due before the wait is over.
            assert_eq!(m.tick(at - Duration::from_millis(1)), vec![]);
            assert_eq!(m.tick(at), vec![Effect::Connect("a@h".into())]);
            now = at;
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
        // Success resets: a later down waits the minimum again.
        m.connected("a@h");
        assert_eq!(m.next_wakeup(), None);
        m.down("a@h", now);
        assert_eq!(m.next_wakeup(), Some(now + BACKOFF_MIN));
    }

    #[test]
    fn members_that_leave_are_forgotten_and_not_retried() {
        let mut m = Membership::new("me@h");
        let t0 = Instant::now();
        m.change(MemberChange::Up(member("a@h", 1)));
        m.failed("a@h", t0);
        assert!(m.next_wakeup().is_some());
        assert_eq!(
            m.change(MemberChange::Down("a@h".into())),
            vec![Effect::Forget("a@h".into())]
        );
        assert_eq!(m.next_wakeup(), None);
        assert_eq!(m.tick(t0 + BACKOFF_MAX), vec![]);
        // A dial that was in flight when it left reports late: ignored.
        m.change(MemberChange::Up(member("b@h", 1)));
        m.change(MemberChange::Down("b@h".into()));
        m.failed("b@h", t0);
        m.connected("b@h");
        assert_eq!(m.retrying().count(), 0);
        assert_eq!(m.members().count(), 0);
        // Leaving twice, or a node never seen: nothing.
        assert_eq!(m.change(MemberChange::Down("b@h".into())), vec![]);
    }

    #[test]
    fn a_connection_that_goes_down_is_redialled_while_a_member() {
        let mut m = Membership::new("me@h");
        let t0 = Instant::now();
        m.change(MemberChange::Up(member("a@h", 1)));
        m.connected("a@h");
        assert_eq!(m.retrying().count(), 0);
        m.down("a@h", t0);
        assert_eq!(
            m.tick(t0 + BACKOFF_MIN),
            vec![Effect::Connect("a@h".into())]
        );
        // A peer that dials us first counts as connected.
        m.connected("a@h");
        assert_eq!(m.next_wakeup(), None);
        // A down of a node that is not a member does nothing.
        m.down("zz@h", t0);
        assert_eq!(m.next_wakeup(), None);
    }

    #[test]
    fn many_members_each_get_one_dial() {
        let mut m = Membership::new("n0@h");
        let mut dials = 0;
        for i in 0..100 {
            for e in m.change(MemberChange::Up(member(&format!("n{i}@h"), 1))) {
                if matches!(e, Effect::Connect(_)) {
                    dials += 1;
                }
            }
        }
        assert_eq!(dials, 99);
        assert_eq!(m.members().count(), 100);
    }
}
