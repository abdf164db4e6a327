//! Choosing a transport per peer.
//!
//! When a node connects, it asks the peer's EPMD for the peer's transports,
//! filtered by the ones it speaks itself (PORT_PLEASE3), and hands them to a
//! [`SelectionPolicy`]. The policy returns the candidates to try, in order,
//! or a refusal. This is the 2013 patch's `-proto_dist_mf Mod Fun` callback;
//! [`RulePolicy`] is the built-in "same host → Unix socket, same subnet →
//! TCP, everything else → TLS" policy, configured declaratively.
//!
//! Failover (trying the next candidate when one cannot be reached) is the
//! node's business and is configurable; it never follows a security failure
//! such as a certificate that does not verify.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

use crate::transport::Proto;

/// A transport the peer offers.
///
/// A legacy (ALIVE2) registration says nothing about its protocol: a stock
/// node running `inet_tls_dist` registers exactly like a TCP one. The node
/// therefore offers it once per IP transport it speaks itself (plain TCP
/// first, the stock default), all with `legacy` set and the same port, and
/// the policy picks the reading it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The transport.
    pub proto: Proto,
    /// The port (0 for a Unix socket).
    pub port: u16,
    /// Transport data (the socket path for `uds`).
    pub extra: Vec<u8>,
    /// From a legacy registration: `proto` is a guess.
    pub legacy: bool,
}

/// The peer being connected to.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// Its full node name.
    pub node: &'a str,
    /// The host part of the name.
    pub host: &'a str,
    /// The host's addresses.
    pub addrs: &'a [IpAddr],
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Indexes into the offers, most preferred first; later ones are
    /// failover candidates.
    Try(Vec<usize>),
    /// Do not connect, with the reason.
    Refuse(String),
}

/// Chooses the transport for a connection.
pub trait SelectionPolicy: Send + Sync + fmt::Debug {
    /// `local`: this node's transports; `offered`: the peer's transports
    /// that this node speaks (plus its legacy registration, if any).
    fn select(&self, local: &[Proto], peer: &Peer<'_>, offered: &[Offer]) -> Selection;
}

/// The default policy: the first offered transport, then the others.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstOffered;

impl SelectionPolicy for FirstOffered {
    fn select(&self, _local: &[Proto], _peer: &Peer<'_>, offered: &[Offer]) -> Selection {
        if offered.is_empty() {
            Selection::Refuse("the peer offers no transport this node speaks".into())
        } else {
            Selection::Try((0..offered.len()).collect())
        }
    }
}

/// A policy from a closure, like the seed's `Mod:Fun/4` callback.
pub struct FnPolicy<F>(pub F);

impl<F> fmt::Debug for FnPolicy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnPolicy")
    }
}

impl<F> SelectionPolicy for FnPolicy<F>
where
    F: Fn(&[Proto], &Peer<'_>, &[Offer]) -> Selection + Send + Sync,
{
    fn select(&self, local: &[Proto], peer: &Peer<'_>, offered: &[Offer]) -> Selection {
        (self.0)(local, peer, offered)
    }
}

/// Why a transport name, address, CIDR or policy configuration was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not one of the transport names.
    #[error("unknown transport {0:?} (inet_tcp, inet6_tcp, inet_tls, inet6_tls, uds)")]
    UnknownTransport(String),
    /// A listen address that does not parse.
    #[error("bad address {text:?}")]
    BadAddress {
        /// The text given.
        text: String,
        /// The parser's error.
        source: std::net::AddrParseError,
    },
    /// A CIDR whose address does not parse.
    #[error("bad CIDR {text:?}")]
    BadCidr {
        /// The text given.
        text: String,
        /// The parser's error.
        source: std::net::AddrParseError,
    },
    /// A CIDR prefix that is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("bad prefix in {0:?}")]
    BadPrefix(String),
    /// A rule with both or neither of `node` and `cidr`.
    #[error("a rule needs exactly one of `node` or `cidr`")]
    RuleMatcher,
}

/// An IP network, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network from an address and prefix length (clamped to the family).
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            addr,
            prefix: prefix.min(max),
        }
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|source| PolicyError::BadCidr {
            text: s.to_owned(),
            source,
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| PolicyError::BadPrefix(s.to_owned()))?
        };
        Ok(Self { addr, prefix })
    }
}

/// This host's interface addresses with their networks.
pub fn local_networks() -> Vec<Cidr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we only read and then free with
    // freeifaddrs; each sockaddr is read according to its family.
    unsafe {
        if libc::getifaddrs(&mut ifa) != 0 {
            return out;
        }
        let mut cur = ifa;
        while !cur.is_null() {
            let i = &*cur;
            if let (Some(addr), Some(mask)) = (sockaddr_ip(i.ifa_addr), sockaddr_ip(i.ifa_netmask))
            {
                let prefix = match mask {
                    IpAddr::V4(m) => u32::from(m).count_ones(),
                    IpAddr::V6(m) => u128::from(m).count_ones(),
                };
                out.push(Cidr::new(addr, prefix as u8));
            }
            cur = i.ifa_next;
        }
        libc::freeifaddrs(ifa);
    }
    out
}

/// # Safety
/// `sa` must be null or point to a valid sockaddr of its declared family.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid sockaddr; the family selects the layout.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let a = &*sa.cast::<libc::sockaddr_in>();
                Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let a = &*sa.cast::<libc::sockaddr_in6>();
                Some(IpAddr::from(a.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// Where a peer is, as seen from this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// One of this host's own addresses (or loopback).
    SameHost,
    /// On a network one of this host's interfaces is on.
    SameSubnet,
    /// Anywhere else.
    Other,
}

/// Classifies `addrs` against `nets` (from [`local_networks`]).
pub fn locality(addrs: &[IpAddr], nets: &[Cidr]) -> Locality {
    if addrs
        .iter()
        .any(|a| a.is_loopback() || nets.iter().any(|n| n.addr == *a))
    {
        return Locality::SameHost;
    }
    if addrs
        .iter()
        .any(|a| nets.iter().any(|n| !n.addr.is_loopback() && n.contains(*a)))
    {
        return Locality::SameSubnet;
    }
    Locality::Other
}

/// One explicit rule of a [`RuleConfig`]: a node-name glob or a network,
/// and the transports to use (empty = refuse).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Node-name pattern; `*` matches any run of characters.
    #[serde(default)]
    pub node: Option<String>,
    /// A network, `addr/prefix`.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Transports in preference order; empty refuses the peer.
    #[serde(rename = "use")]
    pub transports: Vec<String>,
}

/// The declarative configuration of [`RulePolicy`] (the `[policy]` table of
/// a node's TOML file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Explicit rules, checked first; the first match decides.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// Transports for a peer on this host.
    #[serde(default = "default_same_host")]
    pub same_host: Vec<String>,
    /// Transports for a peer on a directly attached network.
    #[serde(default = "default_same_subnet")]
    pub same_subnet: Vec<String>,
    /// Transports for everyone else.
    #[serde(default = "default_other")]
    pub other: Vec<String>,
}

fn default_same_host() -> Vec<String> {
    vec!["uds".into(), "inet_tcp".into(), "inet6_tcp".into()]
}
fn default_same_subnet() -> Vec<String> {
    vec!["inet_tcp".into(), "inet6_tcp".into()]
}
fn default_other() -> Vec<String> {
    vec!["inet_tls".into(), "inet6_tls".into()]
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            same_host: default_same_host(),
            same_subnet: default_same_subnet(),
            other: default_other(),
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Node(String),
    Cidr(Cidr),
}

/// The rule policy: explicit node-name and network rules, then same host →
/// `same_host`, same subnet → `same_subnet`, else `other`. Each list is
/// tried in order (failover stays within the list, so a remote peer never
/// falls back to plain TCP).
#[derive(Debug, Clone)]
pub struct RulePolicy {
    rules: Vec<(Matcher, Vec<Proto>)>,
    same_host: Vec<Proto>,
    same_subnet: Vec<Proto>,
    other: Vec<Proto>,
    nets: Vec<Cidr>,
}

fn protos(names: &[String]) -> Result<Vec<Proto>, PolicyError> {
    names.iter().map(|n| n.parse()).collect()
}

impl RulePolicy {
    /// Builds the policy, reading this host's interfaces now.
    pub fn new(cfg: &RuleConfig) -> Result<Self, PolicyError> {
        Self::with_networks(cfg, local_networks())
    }

    /// Builds the policy against given local networks (for tests).
    pub fn with_networks(cfg: &RuleConfig, nets: Vec<Cidr>) -> Result<Self, PolicyError> {
        let rules = cfg
            .rules
            .iter()
            .map(|r| {
                let m = match (&r.node, &r.cidr) {
                    (Some(n), None) => Matcher::Node(n.clone()),
                    (None, Some(c)) => Matcher::Cidr(c.parse()?),
                    _ => return Err(PolicyError::RuleMatcher),
                };
                Ok((m, protos(&r.transports)?))
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(Self {
            rules,
            same_host: protos(&cfg.same_host)?,
            same_subnet: protos(&cfg.same_subnet)?,
            other: protos(&cfg.other)?,
            nets,
        })
    }

    /// The transports allowed for `peer`, in order, and why.
    pub fn allowed(&self, peer: &Peer<'_>) -> (&[Proto], String) {
        for (m, list) in &self.rules {
            let hit = match m {
                Matcher::Node(g) => glob(g, peer.node),
                Matcher::Cidr(c) => peer.addrs.iter().any(|a| c.contains(*a)),
            };
            if hit {
                let why = match m {
                    Matcher::Node(g) => format!("rule node = {g:?}"),
                    Matcher::Cidr(c) => format!("rule cidr = {}/{}", c.addr, c.prefix),
                };
                return (list, why);
            }
        }
        match locality(peer.addrs, &self.nets) {
            Locality::SameHost => (&self.same_host, "same host".into()),
            Locality::SameSubnet => (&self.same_subnet, "same subnet".into()),
            Locality::Other => (&self.other, "other network".into()),
        }
    }
}

impl SelectionPolicy for RulePolicy {
    fn select(&self, _local: &[Proto], peer: &Peer<'_>, offered: &[Offer]) -> Selection {
        let (allowed, why) = self.allowed(peer);
        let order: Vec<usize> = allowed
            .iter()
            .flat_map(|p| {
                offered
                    .iter()
                    .enumerate()
                    .filter(move |(_, o)| o.proto == *p)
                    .map(|(i, _)| i)
            })
            .collect();
        if order.is_empty() {
            let offered: Vec<String> = offered
                .iter()
                .map(|o| {
                    if o.legacy {
                        format!("{} (legacy)", o.proto)
                    } else {
                        o.proto.to_string()
                    }
                })
                .collect();
            let allowed: Vec<&str> = allowed.iter().map(|p| p.name()).collect();
            Selection::Refuse(format!(
                "{why}: policy allows [{}], peer offers [{}]",
                allowed.join(", "),
                offered.join(", ")
            ))
        } else {
            Selection::Try(order)
        }
    }
}

/// `*`-only glob match.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(p: Option<Proto>) -> Offer {
        Offer {
            proto: p.unwrap_or(Proto::InetTcp),
            port: 1,
            extra: vec![],
            legacy: p.is_none(),
        }
    }

    fn nets() -> Vec<Cidr> {
        vec![
            "127.0.0.1/8".parse().unwrap(),
            "10.1.0.1/24".parse().unwrap(),
            "fd00::1/64".parse().unwrap(),
        ]
    }

    #[test]
    fn cidr_and_locality() {
        let c: Cidr = "10.1.0.0/24".parse().unwrap();
        assert!(c.contains("10.1.0.200".parse().unwrap()));
        assert!(!c.contains("10.1.1.1".parse().unwrap()));
        let n = nets();
        let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
        assert_eq!(locality(&ip("10.1.0.1"), &n), Locality::SameHost);
        assert_eq!(locality(&ip("127.0.0.1"), &n), Locality::SameHost);
        assert_eq!(locality(&ip("10.1.0.7"), &n), Locality::SameSubnet);
        assert_eq!(locality(&ip("fd00::9"), &n), Locality::SameSubnet);
        assert_eq!(locality(&ip("10.2.0.7"), &n), Locality::Other);
        assert!("1.2.3.4/33".parse::<Cidr>().is_err());
        assert_eq!(
            "1.2.3.4/33".parse::<Cidr>(),
            Err(PolicyError::BadPrefix("1.2.3.4/33".into()))
        );
        let e = "nope/8".parse::<Cidr>().unwrap_err();
        assert!(matches!(e, PolicyError::BadCidr { .. }));
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parser's error is kept"
        );
        let e = "inet_tcp@nowhere"
            .parse::<crate::transport::ListenSpec>()
            .unwrap_err();
        assert!(matches!(e, PolicyError::BadAddress { .. }));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            "tcp".parse::<Proto>(),
            Err(PolicyError::UnknownTransport("tcp".into()))
        );
    }

    #[test]
    fn rule_policy_picks_by_locality_and_rules() {
        let mut cfg = RuleConfig::default();
        cfg.rules.push(Rule {
            node: Some("backup*@*".into()),
            cidr: None,
            transports: vec!["inet_tls".into()],
        });
        cfg.rules.push(Rule {
            node: None,
            cidr: Some("192.168.5.0/24".into()),
            transports: vec![],
        });
        let p = RulePolicy::with_networks(&cfg, nets()).unwrap();
        let offered = [
            offer(Some(Proto::InetTcp)),
            offer(Some(Proto::InetTls)),
            offer(Some(Proto::Uds)),
        ];
        let at = |node: &'static str, ip: &str| {
            let addrs = vec![ip.parse().unwrap()];
            p.select(
                &[],
                &Peer {
                    node,
                    host: "h",
                    addrs: &addrs,
                },
                &offered,
            )
        };
        assert_eq!(at("a@h", "10.1.0.1"), Selection::Try(vec![2, 0]));
        assert_eq!(at("a@h", "10.1.0.9"), Selection::Try(vec![0]));
        assert_eq!(at("a@h", "172.16.0.9"), Selection::Try(vec![1]));
        assert_eq!(at("backup1@h", "10.1.0.9"), Selection::Try(vec![1]));
        assert!(matches!(at("a@h", "192.168.5.5"), Selection::Refuse(_)));
        // A remote peer offering only TCP is refused, not downgraded.
        let tcp_only = [offer(Some(Proto::InetTcp))];
        let addrs = vec!["172.16.0.9".parse().unwrap()];
        let peer = Peer {
            node: "x@h",
            host: "h",
            addrs: &addrs,
        };
        assert!(matches!(
            p.select(&[], &peer, &tcp_only),
            Selection::Refuse(_)
        ));
        // A legacy registration read as inet_tcp.
        let legacy = [offer(None)];
        let addrs = vec!["10.1.0.9".parse().unwrap()];
        let peer = Peer {
            node: "x@h",
            host: "h",
            addrs: &addrs,
        };
        assert_eq!(p.select(&[], &peer, &legacy), Selection::Try(vec![0]));
    }

    #[test]
    fn config_from_toml_and_globs() {
        let cfg: RuleConfig = toml::from_str(
            r#"
            same_subnet = ["inet_tls"]
            [[rule]]
            node = "db@*"
            use = ["inet_tcp"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.same_subnet, ["inet_tls"]);
        assert_eq!(cfg.other, default_other());
        assert!(RulePolicy::with_networks(&cfg, vec![]).is_ok());
        let bad: RuleConfig = toml::from_str("other = [\"carrier_pigeon\"]").unwrap();
        assert!(RulePolicy::with_networks(&bad, vec![]).is_err());
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("*", "anything"));
        assert!(glob("n@h", "n@h"));
    }

    #[test]
    fn first_offered() {
        let addrs = [];
        let peer = Peer {
            node: "a@h",
            host: "h",
            addrs: &addrs,
        };
        assert_eq!(
            FirstOffered.select(&[], &peer, &[offer(None), offer(None)]),
            Selection::Try(vec![0, 1])
        );
        assert!(matches!(
            FirstOffered.select(&[], &peer, &[]),
            Selection::Refuse(_)
        ));
    }
}
