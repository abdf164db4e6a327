//! Who may ask at all: `-allow` (an allow-list of networks) and
//! `-rate_limit` (requests per second per source), both for non-local peers
//! only. Pure data with the time passed in; the server consults them once
//! per accepted connection, which for EPMD is once per request: every
//! request but a registration gets its own connection, and a registration
//! connection carries exactly one request.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use tokio::time::Instant;

/// An IPv4 or IPv6 network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network or an allow-list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// An entry is not `ADDR` or `ADDR/LEN`.
    #[error("{0:?} is not an address or a network (ADDR or ADDR/LEN)")]
    BadNetwork(String),
    /// The prefix length is larger than the address.
    #[error("{0:?}: prefix length above {1}")]
    BadPrefix(String, u8),
    /// The list is empty or has an empty entry.
    #[error("empty entry in the network list {0:?}")]
    Empty(String),
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

impl FromStr for Cidr {
    type Err = AccessError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| AccessError::BadNetwork(clip(s)))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                let n: u8 = p
                    .parse()
                    .map_err(|_| AccessError::BadPrefix(clip(s), max))?;
                if n > max {
                    return Err(AccessError::BadPrefix(clip(s), max));
                }
                n
            }
            Some(_) => return Err(AccessError::BadNetwork(clip(s))),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The top `prefix` bits of a 128-bit value.
fn mask(v: u128, prefix: u8, width: u8) -> u128 {
    let shift = u32::from(width - prefix);
    if shift >= 128 {
        0
    } else {
        v >> shift
    }
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 peer
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 clients) is
    /// matched as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u128::from(u32::from(n)), self.prefix, 32)
                    == mask(u128::from(u32::from(a)), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                mask(u128::from(n), self.prefix, 128) == mask(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `-allow NETS`: the networks non-local peers must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<Cidr>);

impl FromStr for AllowList {
    type Err = AccessError;

    /// Comma-separated networks; spaces around entries are ignored; an
    /// empty list or entry is an error (an empty allow-list would lock
    /// every remote node out, which is never what a typo meant).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nets = s
            .split(',')
            .map(|e| {
                let e = e.trim();
                if e.is_empty() {
                    Err(AccessError::Empty(clip(s)))
                } else {
                    e.parse()
                }
            })
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(Self(nets))
    }
}

impl AllowList {
    /// Whether a peer at `ip` is in one of the networks.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }
}

/// Most sources a [`RateLimiter`] remembers; the least recently seen is
/// forgotten first, so address churn cannot grow the table.
pub const RATE_LIMIT_SOURCES: usize = 4096;

/// The key a source is limited under: its IPv4 address, or the /64 of its
/// IPv6 address (one host usually owns a whole /64).
fn source_key(ip: IpAddr) -> u128 {
    match canonical(ip) {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        // Tagged so no /64 collides with an IPv4 key.
        IpAddr::V6(a) => (u128::from(a) >> 64) | (1 << 100),
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Recency stamp for the eviction.
    seen: u64,
}

/// `-rate_limit N`: a token bucket per source (rate N per second, burst N)
/// in a table of at most [`RATE_LIMIT_SOURCES`] sources.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<u128, Bucket>,
    clock: u64,
    cap: usize,
}

impl RateLimiter {
    /// A limiter of `per_second` requests per second per source (at least 1).
    pub fn new(per_second: u32) -> Self {
        Self::with_capacity(per_second, RATE_LIMIT_SOURCES)
    }

    /// As [`RateLimiter::new`], remembering at most `cap` sources.
    pub fn with_capacity(per_second: u32, cap: usize) -> Self {
        Self {
            rate: f64::from(per_second.max(1)),
            buckets: HashMap::with_capacity(cap.min(RATE_LIMIT_SOURCES)),
            clock: 0,
            cap: cap.max(1),
        }
    }

    /// Sources currently remembered.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one request's token for `ip` at `now`; `false` if the source is
    /// over its rate.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.clock += 1;
        let key = source_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.cap {
            self.evict_oldest();
        }
        let rate = self.rate;
        let clock = self.clock;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            at: now,
            seen: clock,
        });
        let elapsed = now.saturating_duration_since(b.at);
        b.tokens = (b.tokens + elapsed.as_secs_f64() * rate).min(rate);
        b.at = now;
        b.seen = clock;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets the least recently seen source. A linear scan: it runs only
    /// when a new source arrives at a full table, and a full bucket of a
    /// forgotten source is what it would have refilled to anyway after
    /// `1 / rate` seconds of silence.
    fn evict_oldest(&mut self) {
        if let Some((&k, _)) = self.buckets.iter().min_by_key(|(_, b)| b.seen) {
            self.buckets.remove(&k);
        }
    }
}

/// What the server does with a new connection before reading from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it.
    Serve,
    /// Close it without a reply: the peer is outside `-allow`.
    NotAllowed,
    /// Close it without a reply: the peer is over `-rate_limit`.
    OverRate,
}

/// Decides admission for a peer; local peers are always served.
pub fn admit(
    allow: Option<&AllowList>,
    limiter: Option<&mut RateLimiter>,
    peer: IpAddr,
    local: bool,
    now: Instant,
) -> Admission {
    if local {
        return Admission::Serve;
    }
    if allow.is_some_and(|a| !a.allows(peer)) {
        return Admission::NotAllowed;
    }
    match limiter.map(|l| l.check(peer, now)) {
        Some(false) => Admission::OverRate,
        _ => Admission::Serve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let l: AllowList = "10.0.0.0/8, 192.168.1.7,2001:db8::/32".parse().unwrap();
        assert!(l.allows(ip("10.200.3.4")));
        assert!(l.allows(ip("192.168.1.7")));
        assert!(!l.allows(ip("192.168.1.8")));
        assert!(l.allows(ip("2001:db8:1::5")));
        assert!(!l.allows(ip("2001:db9::5")));
        assert!(
            l.allows(ip("::ffff:10.1.1.1")),
            "IPv4-mapped peers match as IPv4"
        );
        assert!(!l.allows(ip("11.0.0.1")));
        let any: AllowList = "0.0.0.0/0,::/0".parse().unwrap();
        assert!(any.allows(ip("8.8.8.8")) && any.allows(ip("2a00::1")));
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "",
            "10.0.0.0/8,",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "host.example",
            "10.0.0.0/8/8",
            "10.0.0.0/ 8",
            "::1/0x10",
        ] {
            assert!(bad.parse::<AllowList>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rate_is_per_source_with_a_burst_and_a_refill() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(3);
        let a = ip("192.0.2.1");
        assert!((0..3).all(|_| l.check(a, t0)), "burst of N");
        assert!(!l.check(a, t0), "N+1th in the same instant");
        assert!(
            l.check(ip("192.0.2.2"), t0),
            "another source is not affected"
        );
        assert!(l.check(a, t0 + SECOND / 2), "a token back after 1/N s");
        assert!(!l.check(a, t0 + SECOND / 2), "and only one");
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1);
        assert!(l.check(ip("2001:db8:0:1::1"), t0));
        assert!(!l.check(ip("2001:db8:0:1::ffff"), t0), "same /64");
        assert!(l.check(ip("2001:db8:0:2::1"), t0), "next /64");
    }

    #[test]
    fn churn_cannot_grow_the_table() {
        let t0 = Instant::now();
        let mut l = RateLimiter::with_capacity(1, 64);
        let busy = ip("198.51.100.1");
        for i in 0..10_000u32 {
            let _ = l.check(busy, t0);
            let _ = l.check(IpAddr::from(i.to_be_bytes()), t0);
            assert!(l.sources() <= 64);
        }
        // The busy source was seen every other request: it was never the
        // least recent, so it stayed limited.
        assert!(!l.check(busy, t0));
    }

    #[test]
    fn local_peers_are_always_served() {
        let deny: AllowList = "203.0.113.0/24".parse().unwrap();
        let mut l = RateLimiter::new(1);
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                admit(Some(&deny), Some(&mut l), ip("127.0.0.1"), true, now),
                Admission::Serve
            );
        }
        assert_eq!(
            admit(Some(&deny), Some(&mut l), ip("198.51.100.9"), false, now),
            Admission::NotAllowed
        );
        assert_eq!(
            admit(Some(&deny), Some(&mut l), ip("203.0.113.9"), false, now),
            Admission::Serve
        );
        assert_eq!(
            admit(Some(&deny), Some(&mut l), ip("203.0.113.9"), false, now),
            Admission::OverRate
        );
    }
}
