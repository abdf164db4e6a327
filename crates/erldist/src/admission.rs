//! Admission control for incoming handshakes, as a plain data structure
//! (time is passed in; no I/O, no tokio), so a flood of half-open
//! connections cannot starve the peers a node is meant to serve.
//!
//! - **Pending handshakes** are bounded per source and in total. A source
//!   is an IPv4 address, an IPv6 /64 (one host usually owns a whole /64),
//!   or "local" for a Unix socket. A source at its own limit is refused;
//!   the other sources are not affected.
//! - **When the total is full** a new connection is not refused: the oldest
//!   pending handshake that has not yet sent its name, from the source with
//!   the most such handshakes, is evicted (closed) instead. A real peer
//!   sends its name in its first message, within milliseconds, and is then
//!   marked [`Admission::progressed`]; silent half-open sockets, which are
//!   what a flood from rotating addresses is made of, go first. Only when
//!   every pending handshake has progressed is the oldest of the largest
//!   source evicted.
//! - **Each handshake has a short deadline** ([`AdmissionConfig::handshake_time`]),
//!   enforced by the caller.
//! - **Failed cookies** are counted per (address, claimed node name), so a
//!   local user sending wrong cookies through 127.0.0.1 under one name does
//!   not affect another peer on the same address. A locked-out pair is
//!   never refused outright: the handshake still runs and a correct digest
//!   is accepted (and clears the count). Only a wrong digest from a
//!   locked-out pair is answered slowly (the caller holds the socket until
//!   the handshake deadline), which bounds how fast one source can guess:
//!   at most `max_pending_per_source` guesses per `handshake_time`. So that
//!   rotating claimed names does not escape that, an address is also
//!   counted over all names (`max_failures_per_address`, 100 a minute).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Limits of [`Admission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Most handshakes pending at once, in total.
    pub max_pending: usize,
    /// Most handshakes pending at once from one source (IPv4 address, IPv6
    /// /64, or the Unix socket).
    pub max_pending_per_source: usize,
    /// Deadline of one incoming handshake (TLS included).
    pub handshake_time: Duration,
    /// Wrong cookies per (address, claimed name) within
    /// [`Self::failure_window`] before that pair is locked out.
    pub max_failures: u32,
    /// Wrong cookies from one address, under any names, within the window
    /// before every wrong digest from it is answered slowly (so rotating
    /// claimed names does not buy more fast guesses). A correct digest is
    /// never affected.
    pub max_failures_per_address: u32,
    /// The window failures are counted in.
    pub failure_window: Duration,
    /// Most (address, name) pairs tracked; the oldest go first.
    pub max_tracked: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_pending: 256,
            max_pending_per_source: 16,
            handshake_time: Duration::from_secs(5),
            max_failures: 10,
            max_failures_per_address: 100,
            failure_window: Duration::from_secs(60),
            max_tracked: 4096,
        }
    }
}

/// Where a connection comes from, for the per-source limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
    /// A Unix-domain socket (no address).
    Local,
}

impl Source {
    /// The source of a peer address (`None` for a Unix socket).
    pub fn of(addr: Option<IpAddr>) -> Self {
        match addr {
            None => Self::Local,
            Some(IpAddr::V4(a)) => Self::V4(a),
            Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

/// A pending handshake's handle, given back to [`Admission::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// The answer to [`Admission::admit`].
#[derive(Debug)]
pub enum Admit<T> {
    /// Go ahead; if the total was full, `evicted` is the payload of the
    /// handshake that made room (the caller closes it).
    Accepted {
        /// The new handshake's ticket.
        ticket: Ticket,
        /// The handshake evicted to make room, if any.
        evicted: Option<T>,
    },
    /// The source already has its limit of pending handshakes.
    SourceFull {
        /// The source.
        source: Source,
        /// Its limit.
        limit: usize,
    },
}

#[derive(Debug)]
struct Entry<T> {
    source: Source,
    since: Instant,
    progressed: bool,
    payload: T,
}

/// Pending-handshake permits and the failed-cookie lockout. `T` is what
/// the caller needs to close an evicted handshake (e.g. an abort handle).
#[derive(Debug)]
pub struct Admission<T> {
    cfg: AdmissionConfig,
    next: u64,
    pending: HashMap<u64, Entry<T>>,
    per_source: HashMap<Source, usize>,
    failures: HashMap<(IpAddr, String), (u32, Instant)>,
    by_address: HashMap<IpAddr, (u32, Instant)>,
}

impl<T> Admission<T> {
    /// An empty table with these limits.
    pub fn new(cfg: AdmissionConfig) -> Self {
        Self {
            cfg,
            next: 0,
            pending: HashMap::new(),
            per_source: HashMap::new(),
            failures: HashMap::new(),
            by_address: HashMap::new(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    /// Handshakes pending now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Handshakes pending now from `source`.
    pub fn pending_from(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// Admits a new connection from `addr` (or refuses it, see [`Admit`]).
    pub fn admit(&mut self, addr: Option<IpAddr>, now: Instant, payload: T) -> Admit<T> {
        let source = Source::of(addr);
        let limit = self.cfg.max_pending_per_source.max(1);
        if self.pending_from(source) >= limit {
            return Admit::SourceFull { source, limit };
        }
        let evicted = if self.pending.len() >= self.cfg.max_pending.max(1) {
            self.victim().and_then(|id| self.remove(id))
        } else {
            None
        };
        self.next += 1;
        let id = self.next;
        self.pending.insert(
            id,
            Entry {
                source,
                since: now,
                progressed: false,
                payload,
            },
        );
        *self.per_source.entry(source).or_insert(0) += 1;
        Admit::Accepted {
            ticket: Ticket(id),
            evicted,
        }
    }

    /// Marks a handshake as past its first message (the peer named
    /// itself): it is evicted only after every silent one.
    pub fn progressed(&mut self, ticket: Ticket) {
        if let Some(e) = self.pending.get_mut(&ticket.0) {
            e.progressed = true;
        }
    }

    /// Ends a pending handshake (done, failed or timed out). A ticket that
    /// was evicted meanwhile is ignored.
    pub fn finish(&mut self, ticket: Ticket) {
        let _ = self.remove(ticket.0);
    }

    /// Whether `ticket` is still pending (false once finished or evicted).
    pub fn is_pending(&self, ticket: Ticket) -> bool {
        self.pending.contains_key(&ticket.0)
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let e = self.pending.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        Some(e.payload)
    }

    /// The handshake to evict: among those that have not progressed (or,
    /// if all have, among all), the oldest of the source with the most.
    /// Linear in the pending count, which is bounded by `max_pending`.
    fn victim(&self) -> Option<u64> {
        let silent = self.pending.values().any(|e| !e.progressed);
        // Per eligible source: how many, and its oldest (time, id).
        let mut by_source: HashMap<Source, (usize, (Instant, u64))> = HashMap::new();
        for (&id, e) in &self.pending {
            if silent && e.progressed {
                continue;
            }
            let slot = by_source.entry(e.source).or_insert((0, (e.since, id)));
            slot.0 += 1;
            slot.1 = slot.1.min((e.since, id));
        }
        // The most pending; among equals, the one holding the oldest
        // handshake (never a tie-break on the address itself, which would
        // always pick the same peers, e.g. 127.0.0.1).
        by_source
            .into_values()
            .max_by_key(|&(n, oldest)| (n, std::cmp::Reverse(oldest)))
            .map(|(_, (_, id))| id)
    }

    /// Whether (address, claimed name) is locked out: too many wrong
    /// cookies within the window from the pair, or from the address under
    /// any names. A locked-out pair still gets its digest checked (a
    /// correct one is accepted); see the module documentation.
    pub fn locked_out(&mut self, ip: IpAddr, name: &str, now: Instant) -> bool {
        let window = self.cfg.failure_window;
        count(&mut self.failures, &(ip, name.to_owned()), now, window) >= self.cfg.max_failures
            || count(&mut self.by_address, &ip, now, window) >= self.cfg.max_failures_per_address
    }

    /// Counts a wrong cookie from (address, claimed name); returns whether
    /// the pair is now locked out.
    pub fn record_failure(&mut self, ip: IpAddr, name: &str, now: Instant) -> bool {
        let (window, max) = (self.cfg.failure_window, self.cfg.max_tracked.max(1));
        bump(&mut self.failures, (ip, name.to_owned()), now, window, max);
        bump(&mut self.by_address, ip, now, window, max);
        self.locked_out(ip, name, now)
    }

    /// A correct digest from (address, name): its failures are forgotten.
    pub fn record_success(&mut self, ip: IpAddr, name: &str) {
        self.failures.remove(&(ip, name.to_owned()));
    }

    /// (address, name) pairs tracked now.
    pub fn tracked_failures(&self) -> usize {
        self.failures.len()
    }
}

/// The count of `key` in its window (an expired entry is dropped).
fn count<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, (u32, Instant)>,
    key: &K,
    now: Instant,
    window: Duration,
) -> u32 {
    match map.get(key) {
        Some(&(n, since)) if now.duration_since(since) < window => n,
        Some(_) => {
            map.remove(key);
            0
        }
        None => 0,
    }
}

/// Adds one to `key`'s count, starting a new window if the old one has
/// passed; keeps at most `max` keys (expired ones go first, then the
/// oldest).
fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, (u32, Instant)>,
    key: K,
    now: Instant,
    window: Duration,
    max: usize,
) {
    if map.len() >= max && !map.contains_key(&key) {
        map.retain(|_, (_, since)| now.duration_since(*since) < window);
        if map.len() >= max {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
    }
    let e = map.entry(key).or_insert((0, now));
    if now.duration_since(e.1) >= window {
        *e = (0, now);
    }
    e.0 = e.0.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn cfg(total: usize, per: usize) -> AdmissionConfig {
        AdmissionConfig {
            max_pending: total,
            max_pending_per_source: per,
            ..AdmissionConfig::default()
        }
    }

    fn v4(a: u8, b: u8, c: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, a, b, c)))
    }

    fn accepted<T>(a: Admit<T>) -> (Ticket, Option<T>) {
        match a {
            Admit::Accepted { ticket, evicted } => (ticket, evicted),
            Admit::SourceFull { source, .. } => panic!("refused {source:?}"),
        }
    }

    #[test]
    fn sources() {
        assert_eq!(
            Source::of(v4(0, 0, 1)),
            Source::V4(Ipv4Addr::new(127, 0, 0, 1))
        );
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(
            Source::of(Some(mapped.into())),
            Source::V4(Ipv4Addr::new(10, 1, 2, 3))
        );
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(Some(a.into())), Source::of(Some(b.into())));
        assert_ne!(Source::of(Some(a.into())), Source::of(Some(c.into())));
        assert_eq!(Source::of(None), Source::Local);
    }

    #[test]
    fn per_source_limit_refuses_only_that_source() {
        let now = Instant::now();
        let mut adm = Admission::new(cfg(100, 3));
        for _ in 0..3 {
            accepted(adm.admit(v4(0, 0, 9), now, ()));
        }
        assert!(matches!(
            adm.admit(v4(0, 0, 9), now, ()),
            Admit::SourceFull { limit: 3, .. }
        ));
        // Another address is unaffected.
        accepted(adm.admit(v4(0, 0, 1), now, ()));
        assert_eq!(adm.pending(), 4);
    }

    #[test]
    fn ipv6_slash64_shares_one_allowance() {
        let now = Instant::now();
        let mut adm = Admission::new(cfg(100, 2));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        accepted(adm.admit(ip("2001:db8::1"), now, ()));
        accepted(adm.admit(ip("2001:db8::2:3"), now, ()));
        assert!(matches!(
            adm.admit(ip("2001:db8::ffff"), now, ()),
            Admit::SourceFull { .. }
        ));
        accepted(adm.admit(ip("2001:db8:0:1::1"), now, ()));
    }

    #[test]
    fn rotating_flood_cannot_starve_a_peer_that_names_itself() {
        let t0 = Instant::now();
        let mut adm = Admission::new(cfg(64, 4));
        // A legitimate peer connects and sends its name ...
        let (legit, _) = accepted(adm.admit(v4(0, 0, 1), t0, 0u32));
        adm.progressed(legit);
        // ... while 1,000 silent sockets arrive from rotating addresses.
        let mut evicted = 0;
        for i in 0..1000u32 {
            let [_, a, b, c] = (i + 0x0001_0000).to_be_bytes();
            let now = t0 + Duration::from_micros(u64::from(i));
            let (_, ev) = accepted(adm.admit(v4(a, b, c), now, i + 1));
            if let Some(ev) = ev {
                assert_ne!(ev, 0, "the peer that named itself was evicted");
                evicted += 1;
            }
        }
        assert!(adm.is_pending(legit));
        assert_eq!(adm.pending(), 64);
        assert_eq!(evicted, 1000 - 63);
        // And a peer arriving after the flood is admitted too.
        let (late, ev) = accepted(adm.admit(v4(0, 0, 2), t0 + Duration::from_secs(1), 5000));
        assert!(ev.is_some());
        assert!(adm.is_pending(late));
    }

    #[test]
    fn eviction_takes_the_oldest_of_the_biggest_source() {
        let t0 = Instant::now();
        let mut adm = Admission::new(cfg(4, 10));
        let at = |ms| t0 + Duration::from_millis(ms);
        accepted(adm.admit(v4(0, 0, 1), at(0), "a1"));
        accepted(adm.admit(v4(0, 0, 2), at(1), "b1"));
        accepted(adm.admit(v4(0, 0, 2), at(2), "b2"));
        accepted(adm.admit(v4(0, 0, 2), at(3), "b3"));
        let (_, ev) = accepted(adm.admit(v4(0, 0, 3), at(4), "c1"));
        assert_eq!(ev, Some("b1"));
        assert_eq!(adm.pending_from(Source::of(v4(0, 0, 2))), 2);
        assert_eq!(adm.pending(), 4);
    }

    #[test]
    fn ties_go_to_the_oldest_not_the_lowest_address() {
        let t0 = Instant::now();
        let mut adm = Admission::new(cfg(3, 10));
        let at = |ms| t0 + Duration::from_millis(ms);
        accepted(adm.admit(v4(0, 0, 9), at(0), "old"));
        accepted(adm.admit(v4(0, 0, 8), at(1), "mid"));
        // The lowest address, newest: not the victim.
        accepted(adm.admit(v4(0, 0, 1), at(2), "new"));
        let (_, ev) = accepted(adm.admit(v4(0, 0, 7), at(3), "next"));
        assert_eq!(ev, Some("old"));
        let (_, ev) = accepted(adm.admit(v4(0, 0, 6), at(4), "next2"));
        assert_eq!(ev, Some("mid"));
    }

    #[test]
    fn when_all_progressed_the_oldest_goes() {
        let t0 = Instant::now();
        let mut adm = Admission::new(cfg(2, 10));
        let (a, _) = accepted(adm.admit(v4(0, 0, 1), t0, "a"));
        let (b, _) = accepted(adm.admit(v4(0, 0, 2), t0 + Duration::from_millis(1), "b"));
        adm.progressed(a);
        adm.progressed(b);
        let (_, ev) = accepted(adm.admit(v4(0, 0, 3), t0 + Duration::from_millis(2), "c"));
        assert_eq!(ev, Some("a"));
    }

    #[test]
    fn finish_releases_and_ignores_evicted() {
        let now = Instant::now();
        let mut adm = Admission::new(cfg(1, 1));
        let (a, _) = accepted(adm.admit(v4(0, 0, 1), now, ()));
        let (b, ev) = accepted(adm.admit(v4(0, 0, 2), now, ()));
        assert!(ev.is_some());
        adm.finish(a); // already evicted: no effect
        assert_eq!(adm.pending(), 1);
        adm.finish(b);
        assert_eq!(adm.pending(), 0);
        assert_eq!(adm.pending_from(Source::of(v4(0, 0, 2))), 0);
        accepted(adm.admit(v4(0, 0, 2), now, ()));
    }

    #[test]
    fn lockout_is_per_address_and_name_and_expires() {
        let t0 = Instant::now();
        let mut adm: Admission<()> = Admission::new(AdmissionConfig::default());
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        for i in 0..9 {
            assert!(!adm.record_failure(lo, "mallory@h", t0), "locked after {i}");
        }
        assert!(!adm.locked_out(lo, "mallory@h", t0));
        assert!(adm.record_failure(lo, "mallory@h", t0));
        assert!(adm.locked_out(lo, "mallory@h", t0));
        // Another name on the same address, and the same name elsewhere:
        // not locked.
        assert!(!adm.locked_out(lo, "alice@h", t0));
        assert!(!adm.locked_out("127.0.0.2".parse().unwrap(), "mallory@h", t0));
        // The window passes.
        assert!(!adm.locked_out(lo, "mallory@h", t0 + Duration::from_secs(61)));
        // A correct digest clears the count.
        for _ in 0..10 {
            adm.record_failure(lo, "bob@h", t0);
        }
        assert!(adm.locked_out(lo, "bob@h", t0));
        adm.record_success(lo, "bob@h");
        assert!(!adm.locked_out(lo, "bob@h", t0));
    }

    #[test]
    fn rotating_names_from_one_address_are_slowed_too() {
        let t0 = Instant::now();
        let mut adm: Admission<()> = Admission::new(AdmissionConfig::default());
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        for i in 0..99 {
            adm.record_failure(lo, &format!("n{i}@h"), t0);
        }
        assert!(!adm.locked_out(lo, "fresh@h", t0));
        adm.record_failure(lo, "n99@h", t0);
        // Every name from this address is slowed now; another address not.
        assert!(adm.locked_out(lo, "fresh@h", t0));
        assert!(!adm.locked_out("127.0.0.2".parse().unwrap(), "fresh@h", t0));
        assert!(!adm.locked_out(lo, "fresh@h", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn failure_table_is_bounded() {
        let t0 = Instant::now();
        let mut adm: Admission<()> = Admission::new(AdmissionConfig {
            max_tracked: 100,
            ..AdmissionConfig::default()
        });
        let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
        for i in 0..10_000u32 {
            adm.record_failure(
                lo,
                &format!("n{i}@h"),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(adm.tracked_failures(), 100);
    }
}
