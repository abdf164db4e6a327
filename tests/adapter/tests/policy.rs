//! The adapter's built-in policy (`epmdx_policy`) and the Rust node's
//! `RulePolicy` give the same answer: for a table of configurations, peers
//! (node name and addresses) and offers, against the same local networks,
//! both return the same offers in the same order, or both refuse.

mod common;

use std::net::IpAddr;

use anyhow::{ensure, Result};
use common::*;
use erldist::policy::{
    Cidr, Offer, Peer, Rule, RuleConfig, RulePolicy, Selection, SelectionPolicy,
};
use erldist::transport::Proto;

const NETS: &[(&str, u8)] = &[
    ("127.0.0.1", 8),
    ("10.1.0.1", 24),
    ("fd00::1", 64),
    ("::1", 128),
];

struct Cfg {
    /// (node glob or CIDR, is_cidr, transports)
    rules: Vec<(&'static str, bool, Vec<&'static str>)>,
    same_host: Option<Vec<&'static str>>,
    same_subnet: Option<Vec<&'static str>>,
    other: Option<Vec<&'static str>>,
}

fn configs() -> Vec<Cfg> {
    vec![
        Cfg {
            rules: vec![],
            same_host: None,
            same_subnet: None,
            other: None,
        },
        Cfg {
            rules: vec![
                ("backup*@*", false, vec!["inet_tls"]),
                ("192.168.5.0/24", true, vec![]),
                ("fd00:5::/32", true, vec!["inet6_tls", "inet_tls"]),
                ("*@db*", false, vec!["inet_tcp", "uds"]),
            ],
            same_host: None,
            same_subnet: None,
            other: None,
        },
        Cfg {
            rules: vec![("10.1.0.0/16", true, vec!["inet_tls", "inet_tcp"])],
            same_host: Some(vec!["inet6_tcp", "uds"]),
            same_subnet: Some(vec!["inet_tls"]),
            other: Some(vec!["inet6_tls", "inet_tcp"]),
        },
    ]
}

const PEERS: &[(&str, &[&str])] = &[
    ("a@h", &["10.1.0.1"]),
    ("a@h", &["127.0.0.1"]),
    ("a@h", &["127.0.1.1"]),
    ("a@h", &["::1"]),
    ("a@h", &["10.1.0.9"]),
    ("a@h", &["fd00::9"]),
    ("a@h", &["172.16.0.9"]),
    ("a@h", &["172.16.0.9", "10.1.0.7"]),
    ("a@h", &["2001:db8::1"]),
    ("backup1@h", &["10.1.0.9"]),
    ("a@h", &["192.168.5.5"]),
    ("a@h", &["fd00:5::1"]),
    ("x@db1", &["172.16.0.9"]),
    ("a@h", &[]),
];

/// (transport, legacy)
fn offer_sets() -> Vec<Vec<(Proto, bool)>> {
    use Proto::*;
    vec![
        vec![(InetTcp, false), (InetTls, false), (Uds, false)],
        vec![(InetTcp, false)],
        vec![
            (InetTcp, true),
            (Inet6Tcp, true),
            (InetTls, true),
            (Inet6Tls, true),
        ],
        vec![
            (Inet6Tls, false),
            (Inet6Tcp, false),
            (Uds, false),
            (InetTcp, false),
            (InetTls, false),
        ],
        vec![],
    ]
}

fn erl_list(items: &[&str]) -> String {
    format!("[{}]", items.join(","))
}

fn erl_config(c: &Cfg) -> String {
    let rules: Vec<String> = c
        .rules
        .iter()
        .map(|(m, cidr, ts)| {
            format!(
                "{{{},\"{m}\",{}}}",
                if *cidr { "cidr" } else { "node" },
                erl_list(ts)
            )
        })
        .collect();
    let mut kv = vec![format!("{{rules,[{}]}}", rules.join(","))];
    for (k, v) in [
        ("same_host", &c.same_host),
        ("same_subnet", &c.same_subnet),
        ("other", &c.other),
    ] {
        if let Some(v) = v {
            kv.push(format!("{{{k},{}}}", erl_list(v)));
        }
    }
    format!("[{}]", kv.join(","))
}

fn rust_policy(c: &Cfg, nets: Vec<Cidr>) -> RulePolicy {
    let mut rc = RuleConfig::default();
    let own = |v: &Vec<&str>| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    for (m, cidr, ts) in &c.rules {
        rc.rules.push(Rule {
            node: (!cidr).then(|| (*m).to_owned()),
            cidr: cidr.then(|| (*m).to_owned()),
            transports: own(ts),
        });
    }
    if let Some(v) = &c.same_host {
        rc.same_host = own(v);
    }
    if let Some(v) = &c.same_subnet {
        rc.same_subnet = own(v);
    }
    if let Some(v) = &c.other {
        rc.other = own(v);
    }
    RulePolicy::with_networks(&rc, nets).expect("valid config")
}

#[test]
fn builtin_policy_agrees_with_the_rust_rule_policy() -> Result<()> {
    let nets: Vec<Cidr> = NETS
        .iter()
        .map(|(a, p)| Cidr::new(a.parse().expect("ip"), *p))
        .collect();
    let mut expected = Vec::new();
    for c in configs() {
        let pol = rust_policy(&c, nets.clone());
        for (node, addrs) in PEERS {
            let addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().expect("ip")).collect();
            let peer = Peer {
                node,
                host: node.split('@').nth(1).unwrap_or(""),
                addrs: &addrs,
            };
            for set in offer_sets() {
                let offers: Vec<Offer> = set
                    .iter()
                    .map(|&(proto, legacy)| Offer {
                        proto,
                        port: 1,
                        extra: Vec::new(),
                        legacy,
                    })
                    .collect();
                expected.push(match pol.select(&[], &peer, &offers) {
                    Selection::Try(v) => format!(
                        "[{}]",
                        v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
                    ),
                    Selection::Refuse(_) => "refuse".to_owned(),
                });
            }
        }
    }
    let expected = format!("[{}]", expected.join(","));

    let cfgs: Vec<String> = configs().iter().map(erl_config).collect();
    let peers: Vec<String> = PEERS
        .iter()
        .map(|(n, a)| {
            let a: Vec<String> = a.iter().map(|s| format!("\"{s}\"")).collect();
            format!("{{\"{n}\",[{}]}}", a.join(","))
        })
        .collect();
    let sets: Vec<String> = offer_sets()
        .iter()
        .map(|set| {
            let os: Vec<String> = set
                .iter()
                .enumerate()
                .map(|(i, (p, l))| format!("#{{proto=>{},idx=>{i},legacy=>{l}}}", p.name()))
                .collect();
            format!("[{}]", os.join(","))
        })
        .collect();
    let nets_erl: Vec<String> = NETS
        .iter()
        .map(|(a, p)| format!("{{element(2, inet:parse_address(\"{a}\")),{p}}}"))
        .collect();
    let expr = format!(
        "Nets = [{nets}], \
         Ip = fun(S) -> {{ok, A}} = inet:parse_address(S), A end, \
         [case epmdx_policy:select(epmdx_policy:from_config(C), \
                                   #{{node => N, addrs => [Ip(A) || A <- As]}}, Os, Nets) of \
              {{ok, L}} -> [I || #{{idx := I}} <- L]; \
              {{refuse, _}} -> refuse \
          end || C <- [{cfgs}], {{N, As}} <- [{peers}], Os <- [{sets}]].",
        nets = nets_erl.join(","),
        cfgs = cfgs.join(","),
        peers = peers.join(","),
        sets = sets.join(","),
    );
    let fx = Fixture::new()?;
    let pa = ebin().display().to_string();
    let mut n = fx.erl("policy", &["-pa".to_owned(), pa])?;
    let got = n.eval(&expr)?;
    if got != expected {
        let g: Vec<&str> = got.split("],").collect();
        let e: Vec<&str> = expected.split("],").collect();
        let first = g.iter().zip(&e).position(|(a, b)| a != b);
        ensure!(
            false,
            "Erlang and Rust policies disagree (first difference at item {first:?}):\n\
             erlang: {got}\nrust:   {expected}"
        );
    }
    // The table is not trivial: it has refusals and every transport.
    for w in ["refuse", "[2,0]", "[0]", "[1]", "[2]", "[4]", "[1,0]"] {
        ensure!(expected.contains(w), "table lacks {w}: {expected}");
    }
    Ok(())
}
