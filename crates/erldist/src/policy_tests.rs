//! The selection policies' rules.

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
