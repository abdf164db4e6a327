//! Transports and selection policies between Rust nodes, end to end
//! through a real `epmdx`:
//!
//! 1. the 2013 `proto_dist` illustration (`s` with TCP + TLS + UDS, `k` with
//!    TCP only, `m` with TCP + TLS), checked through the listings, filtered
//!    lookups, both nodes' `connections()` and the `erldist connections`
//!    command;
//! 2. failures that must end in a clear result: certificates that do not
//!    verify (and never fall back to TCP), unreachable transports (failover
//!    on and off), a TLS listener that stalls, refusing policies;
//! 3. the `erldist` command line as `docs/transports.md` shows it
//!    (`gen-certs`, `serve --config`, the rule flags, `connect`,
//!    `connections`, where the Unix socket goes and that it is removed).
//!
//! Every test has its own `epmdx` on a private port, node names carry that
//! port, and sockets and certificates live in a per-test temp directory.

mod transport_support;

use std::path::Path;
use std::time::{Duration, Instant};

use epmd_client::{Client, NodeSpec};
use epmd_proto::ext::TransportRef;
use erldist::policy::{FnPolicy, Offer, Peer, Rule, RuleConfig, RulePolicy, Selection};
use erldist::transport::Proto;
use erldist::NodeError;
use test_support::Subject;
use transport_support::*;

/// The index of the first offer of `proto`, if any.
fn idx(offered: &[Offer], proto: Proto) -> Option<usize> {
    offered.iter().position(|o| o.proto == proto)
}

/// A policy trying `order` (transports) in that order, among the offers.
fn prefer(
    order: &'static [Proto],
) -> FnPolicy<impl Fn(&[Proto], &Peer<'_>, &[Offer]) -> Selection> {
    FnPolicy(move |_: &[Proto], _: &Peer<'_>, offered: &[Offer]| {
        Selection::Try(order.iter().filter_map(|p| idx(offered, *p)).collect())
    })
}

// ---------------------------------------------------------------------------
// 1. The seed's illustration
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_illustration() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("seed");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["s", "m"], None);

    // s: TCP, TLS and a Unix socket.
    let mut sc = config(
        "s",
        d.port,
        &[Proto::InetTcp, Proto::InetTls, Proto::Uds],
        &uds_dir,
    );
    sc.tls = Some(certs.files("s"));
    let s = start(sc).await;
    assert!(s.registered_extended());
    let ts = s.transports();
    let port_of = |p: Proto| ts.iter().find(|t| t.0 == p).unwrap().1;
    let (s_tcp, s_tls) = (port_of(Proto::InetTcp), port_of(Proto::InetTls));
    let s_sock = std::fs::canonicalize(&uds_dir)
        .unwrap()
        .join(s.name().split('@').next().unwrap());
    assert!(s_sock.exists(), "{} missing", s_sock.display());

    // k: TCP only.
    let k = start(config("k", d.port, &[Proto::InetTcp], &uds_dir)).await;
    let k_tcp = k.listen_port().unwrap();
    let s_alive = format!("s_{}", d.port);
    let k_alive = format!("k_{}", d.port);

    // `epmdx nodes`: s with its three transports (the 2013 NAMES3 line),
    // k with one.
    let mut cmd = std::process::Command::new(test_support::epmdx_bin());
    cmd.args(["nodes", "--port", &d.port.to_string()]);
    let out = expect_code(cmd, 0);
    let want_s = format!(
        "name {s_alive} at port {s_tcp}#inet_tcp {s_tls}#inet_tls 0#uds({})",
        s_sock.display()
    );
    assert!(
        out.lines().any(|l| l == want_s),
        "want {want_s:?} in:\n{out}"
    );
    let want_k = format!("name {k_alive} at port {k_tcp}#inet_tcp");
    assert!(
        out.lines().any(|l| l == want_k),
        "want {want_k:?} in:\n{out}"
    );

    // NAMES3 through the client library: the same.
    let client = Client::local(d.port);
    let names = client.names3().await.unwrap();
    let rec = names
        .nodes
        .iter()
        .find(|n| n.name == s_alive.as_bytes())
        .expect("s in NAMES3");
    let got: Vec<(&str, u16)> = rec
        .transports
        .iter()
        .map(|t| (t.proto.as_str(), t.port))
        .collect();
    assert_eq!(got, [("inet_tcp", s_tcp), ("inet_tls", s_tls), ("uds", 0)]);
    assert_eq!(
        rec.transports[2].extra,
        s_sock.as_os_str().as_encoded_bytes()
    );
    assert!(!rec.legacy);

    // A lookup filtered by what k speaks: TCP only.
    let only_tcp = client
        .port_please3(&s_alive, &["inet_tcp"])
        .await
        .unwrap()
        .unwrap();
    let got: Vec<(&str, u16)> = only_tcp
        .transports
        .iter()
        .map(|t| (t.proto.as_str(), t.port))
        .collect();
    assert_eq!(got, [("inet_tcp", s_tcp)]);
    // ... and what m speaks, in m's order.
    let tls_first = client
        .port_please3(&s_alive, &["inet_tls", "inet_tcp"])
        .await
        .unwrap()
        .unwrap();
    let got: Vec<&str> = tls_first
        .transports
        .iter()
        .map(|t| t.proto.as_str())
        .collect();
    assert_eq!(got, ["inet_tls", "inet_tcp"]);
    // A stock caller (PORT_PLEASE2) gets the plain-TCP port.
    let legacy = client.port_please(&s_alive).await.unwrap().unwrap();
    assert_eq!(legacy.port, s_tcp);

    // k connects to s: TCP, seen from both sides.
    within(LONG, "k connects to s", k.connect(s.name()))
        .await
        .unwrap();
    assert_eq!(conns(&k), [(s.name().to_owned(), "inet_tcp".to_owned())]);
    assert_eq!(wait_transport(&s, k.name()).await, "inet_tcp");
    // s's `erldist` service says the same to anyone who asks (here k).
    let reply = within(
        LONG,
        "erldist connections",
        k.call(
            s.name(),
            "erldist",
            |_| erl_term::Term::atom("connections"),
            Duration::from_secs(LONG),
        ),
    )
    .await
    .unwrap();
    let want = erl_term::Term::List(vec![erl_term::Term::Tuple(vec![
        erl_term::Term::atom(k.name()),
        erl_term::Term::atom("inet_tcp"),
    ])]);
    assert_eq!(reply, want);

    // m, TCP + TLS, default policy (FirstOffered): the lookup lists s's
    // transports in m's order, so m gets its first choice.
    let mut mc = config(
        "m_tcpfirst",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    );
    mc.tls = Some(certs.files("m"));
    let m1 = start(mc).await;
    assert!(within(LONG, "m_tcpfirst pings s", m1.ping(s.name())).await);
    assert_eq!(conns(&m1), [(s.name().to_owned(), "inet_tcp".to_owned())]);
    assert_eq!(wait_transport(&s, m1.name()).await, "inet_tcp");

    let mut mc = config(
        "m_tlsfirst",
        d.port,
        &[Proto::InetTls, Proto::InetTcp],
        &uds_dir,
    );
    mc.tls = Some(certs.files("m"));
    let m2 = start(mc).await;
    assert!(within(LONG, "m_tlsfirst pings s", m2.ping(s.name())).await);
    assert_eq!(conns(&m2), [(s.name().to_owned(), "inet_tls".to_owned())]);
    assert_eq!(wait_transport(&s, m2.name()).await, "inet_tls");

    // m with the rule policy, told to use TLS even on this host.
    let rules = RuleConfig {
        same_host: vec!["inet_tls".into()],
        ..RuleConfig::default()
    };
    let mut mc = config(
        "m_rules",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    );
    mc.tls = Some(certs.files("m"));
    let m3 = start(with_policy(mc, RulePolicy::new(&rules).unwrap())).await;
    assert!(within(LONG, "m_rules pings s", m3.ping(s.name())).await);
    assert_eq!(conns(&m3), [(s.name().to_owned(), "inet_tls".to_owned())]);
    assert_eq!(wait_transport(&s, m3.name()).await, "inet_tls");

    // The default rule policy on a node with a Unix socket: same host -> uds.
    let mut uc = config("u", d.port, &[Proto::Uds, Proto::InetTcp], &uds_dir);
    uc.policy = std::sync::Arc::new(RulePolicy::new(&RuleConfig::default()).unwrap());
    let u = start(uc).await;
    assert!(within(LONG, "u pings s", u.ping(s.name())).await);
    assert_eq!(conns(&u), [(s.name().to_owned(), "uds".to_owned())]);
    assert_eq!(wait_transport(&s, u.name()).await, "uds");

    // The `erldist connections` command asks s's service. Its own client
    // node is hidden and connects too (over whatever it picks first: the
    // Unix socket, which it may use because it runs on this host).
    let home = tmp("seed-home");
    let out = expect_code(
        erldist(
            &[
                "connections",
                s.name(),
                "--cookie",
                COOKIE,
                "--epmd-port",
                &d.port.to_string(),
                "--uds-dir",
                uds_dir.to_str().unwrap(),
            ],
            home.path(),
        ),
        0,
    );
    for (peer, t) in [
        (k.name(), "inet_tcp"),
        (m1.name(), "inet_tcp"),
        (m2.name(), "inet_tls"),
        (m3.name(), "inet_tls"),
        (u.name(), "uds"),
    ] {
        let line = format!("{peer} {t}");
        assert!(out.lines().any(|l| l == line), "want {line:?} in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("erldist_") && l.ends_with(" uds")),
        "the CLI's own connection:\n{out}"
    );

    for n in [&s, &k, &m1, &m2, &m3, &u] {
        n.stop();
    }
    // A stopped node removes its socket.
    let t0 = Instant::now();
    while s_sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(LONG),
            "{} left behind",
            s_sock.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// 2. Failures end in clear results
// ---------------------------------------------------------------------------

/// Connects `from` to `to`, expecting an error within `secs` seconds.
async fn connect_err(from: &erldist::Node, to: &str, secs: u64) -> (NodeError, Duration) {
    let t0 = Instant::now();
    let r = within(
        secs,
        &format!("{} connects to {to}", from.name()),
        from.connect(to),
    )
    .await;
    match r {
        Ok(()) => panic!("{} connected to {to}: {:?}", from.name(), conns(from)),
        Err(e) => (e, t0.elapsed()),
    }
}

/// Whether `e` is a TLS failure that names the certificate problem.
fn is_cert_error(e: &NodeError, what: &str) -> bool {
    let text = e.to_string();
    matches!(
        e,
        NodeError::Transport(erldist::transport::TransportError::TlsHandshake { .. })
    ) && text.contains("TLS")
        && text.contains(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_certificates_fail_without_falling_back_to_tcp() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("badcert");
    let uds_dir = dir.path().join("uds");
    let good = Certs::generate(&dir.path().join("ca1"), &["s", "x"], None);
    let other = Certs::generate(&dir.path().join("ca2"), &["x"], None);
    // A certificate from the right CA, for a host that is not this one.
    let wrong_host = Certs::generate(
        &dir.path().join("ca3"),
        &["w"],
        Some(&["elsewhere.invalid"]),
    );

    let mut sc = config("s", d.port, &[Proto::InetTcp, Proto::InetTls], &uds_dir);
    sc.tls = Some(good.files("s"));
    let s = start(sc).await;
    let mut s_events = s.events();

    // Every dialler below prefers TLS, offers TCP as a failover candidate,
    // and has failover on.
    let tls_then_tcp = &[Proto::InetTls, Proto::InetTcp];
    let dialler = |tag: &str, tls: erldist::transport::tls::TlsFiles| {
        let mut c = config(tag, d.port, tls_then_tcp, &uds_dir);
        c.tls = Some(tls);
        c.failover = true;
        with_policy(c, prefer(tls_then_tcp))
    };

    // (1) The server's certificate is signed by a CA the dialler does not
    // trust: a CA with another name, and another development CA (same
    // generator, other key: each `erldist gen-certs` run names its CA
    // uniquely, so this too is an unknown issuer).
    let foreign = distinct_ca(&dir.path().join("foreign"), "Some other CA", "x");
    for (tag, files, says) in [
        ("x_foreignca", foreign.files("x"), "UnknownIssuer"),
        ("x_otherdevca", other.files("x"), "UnknownIssuer"),
    ] {
        let x = start(dialler(tag, files)).await;
        let (e, took) = connect_err(&x, s.name(), LONG).await;
        eprintln!("{tag}: {e} (after {took:?})");
        assert!(is_cert_error(&e, "invalid peer certificate"), "{e}");
        assert!(e.to_string().contains(says), "{e}");
        assert!(took < Duration::from_secs(5), "{e} after {took:?}");
        assert!(!within(LONG, "ping", x.ping(s.name())).await);
        assert!(conns(&x).is_empty(), "{:?}", conns(&x));
        x.stop();
    }

    // (2) The server's certificate does not name the host in its node name.
    let mut wc = config("w", d.port, &[Proto::InetTcp, Proto::InetTls], &uds_dir);
    // w's own CA file is the one that signed its certificate; the dialler
    // trusts that CA too (a bundle of both), so only the name is wrong.
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(
        &bundle,
        [
            std::fs::read_to_string(good.ca()).unwrap(),
            std::fs::read_to_string(wrong_host.ca()).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    wc.tls = Some(erldist::transport::tls::TlsFiles {
        cert: wrong_host.cert("w"),
        key: wrong_host.key("w"),
        ca: bundle.clone(),
    });
    let w = start(wc).await;
    let mut yc_files = good.files("x");
    yc_files.ca = bundle.clone();
    let y = start(dialler("y_wronghost", yc_files)).await;
    let (e, took) = connect_err(&y, w.name(), LONG).await;
    eprintln!("SAN mismatch: {e} (after {took:?})");
    assert!(
        is_cert_error(&e, "certificate not valid for name \"localhost\""),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "{e} after {took:?}");
    assert!(conns(&y).is_empty() && conns(&w).is_empty());

    // (3) The dialler's own certificate is signed by a CA the server does
    // not trust (it trusts the server's CA, so it gets past its own check).
    let z_files = erldist::transport::tls::TlsFiles {
        cert: other.cert("x"),
        key: other.key("x"),
        ca: good.ca(),
    };
    let z = start(dialler("z_clientcert", z_files)).await;
    let (e, took) = connect_err(&z, s.name(), LONG).await;
    eprintln!("client certificate refused by the server: {e} (after {took:?})");
    // With TLS 1.3 the client finishes its side of the TLS handshake before
    // the server checks the client's certificate, so the refusal arrives
    // as a TLS alert during the distribution handshake; the node reports it
    // as a TLS handshake failure carrying the alert.
    assert!(
        matches!(
            &e,
            NodeError::Transport(erldist::transport::TransportError::TlsHandshake { .. })
        ) && e.to_string().contains("alert"),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "{e} after {took:?}");
    assert!(conns(&z).is_empty(), "{:?}", conns(&z));

    // None of this produced a connection on s, over TLS or TCP.
    assert!(conns(&s).is_empty(), "{:?}", conns(&s));
    assert!(
        matches!(
            s_events.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "s saw a connection come up"
    );

    // Control: a dialler with a good certificate does get TLS.
    let ok = start(dialler("x_good", good.files("x"))).await;
    assert!(within(LONG, "good ping", ok.ping(s.name())).await);
    assert_eq!(conns(&ok), [(s.name().to_owned(), "inet_tls".to_owned())]);
    for n in [&s, &w, &y, &z, &ok] {
        n.stop();
    }
}

/// A port nothing listens on (bound, then closed).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_transport_fails_over_or_fails_clearly() {
    // The real node s (TCP only) registers with d1. In d2, the test
    // registers the same name with a dead TLS port, a dead Unix socket and
    // s's real TCP port: what a node whose TLS listener and socket died
    // would look like. The diallers look s up in d2.
    let d1 = daemon(Subject::Epmdx);
    let d2 = daemon(Subject::Epmdx);
    let dir = tmp("unreach");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["x"], None);
    let mut sc = config("s", d1.port, &[Proto::InetTcp], &uds_dir);
    // Same name in both daemons: name it after d2, where it is looked up.
    sc.name = format!("s_{}@localhost", d2.port);
    let s = start(sc).await;
    let s_alive = format!("s_{}", d2.port);
    let dead_tls = dead_port();
    let dead_sock = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("no-such-socket");
    let sock = dead_sock.as_os_str().as_encoded_bytes().to_vec();
    let tcp = s.listen_port().unwrap();
    let _fake = Client::local(d2.port)
        .register_ext(
            NodeSpec::otp25(&s_alive),
            &[
                TransportRef {
                    port: dead_tls,
                    proto: b"inet_tls",
                    extra: b"",
                },
                TransportRef {
                    port: 0,
                    proto: b"uds",
                    extra: &sock,
                },
                TransportRef {
                    port: tcp,
                    proto: b"inet_tcp",
                    extra: b"",
                },
            ],
        )
        .await
        .expect("register the stand-in entry");

    const ORDER: &[Proto] = &[Proto::InetTls, Proto::Uds, Proto::InetTcp];
    let dialler = |tag: &str, failover: bool| {
        let mut c = config(tag, d2.port, ORDER, &uds_dir);
        c.tls = Some(certs.files("x"));
        c.failover = failover;
        with_policy(c, prefer(ORDER))
    };

    // Failover on: TLS and the socket are unreachable, TCP works.
    let x = start(dialler("x_failover", true)).await;
    let t0 = Instant::now();
    assert!(within(LONG, "ping with failover", x.ping(s.name())).await);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(conns(&x), [(s.name().to_owned(), "inet_tcp".to_owned())]);
    assert_eq!(wait_transport(&s, x.name()).await, "inet_tcp");

    // Failover off: the first choice's error, at once.
    let y = start(dialler("y_nofailover", false)).await;
    let (e, took) = connect_err(&y, s.name(), LONG).await;
    eprintln!("no failover: {e} (after {took:?})");
    let text = e.to_string();
    assert!(
        matches!(
            e,
            NodeError::Transport(erldist::transport::TransportError::Io { .. })
        ),
        "{e}"
    );
    assert!(
        text.contains(&format!("127.0.0.1:{dead_tls}")) && text.contains("refused"),
        "{text}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!within(LONG, "ping without failover", y.ping(s.name())).await);
    assert!(conns(&y).is_empty());

    // Failover on, but only unreachable candidates: the last error.
    let mut zc = dialler("z_allbad", true);
    zc.policy = std::sync::Arc::new(prefer(&[Proto::InetTls, Proto::Uds]));
    let z = start(zc).await;
    let (e, took) = connect_err(&z, s.name(), LONG).await;
    eprintln!("all candidates unreachable: {e} (after {took:?})");
    assert!(e.to_string().contains("no-such-socket"), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    for n in [&s, &x, &y, &z] {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusing_policies_refuse_quickly() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("refuse");
    let uds_dir = dir.path().join("uds");
    let s = start(config("s", d.port, &[Proto::InetTcp], &uds_dir)).await;
    let mut s_events = s.events();

    // A closure policy that refuses everyone.
    let fc = with_policy(
        config("f", d.port, &[Proto::InetTcp], &uds_dir),
        FnPolicy(|_: &[Proto], p: &Peer<'_>, _: &[Offer]| {
            Selection::Refuse(format!("{} is off limits", p.node))
        }),
    );
    let f = start(fc).await;
    let (e, took) = connect_err(&f, s.name(), LONG).await;
    eprintln!("FnPolicy: {e} (after {took:?})");
    match &e {
        NodeError::Refused { peer, reason } => {
            assert_eq!(peer, s.name());
            assert_eq!(reason, &format!("{} is off limits", s.name()));
        }
        other => panic!("expected Refused, got {other}"),
    }
    assert!(took < Duration::from_secs(5), "{took:?}");
    let t0 = Instant::now();
    assert!(!within(LONG, "ping", f.ping(s.name())).await);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

    // A rule with `use = []` for this peer.
    let rules = RuleConfig {
        rules: vec![Rule {
            node: Some("s_*@*".into()),
            cidr: None,
            transports: vec![],
        }],
        ..RuleConfig::default()
    };
    let r = start(with_policy(
        config("r", d.port, &[Proto::InetTcp], &uds_dir),
        RulePolicy::new(&rules).unwrap(),
    ))
    .await;
    let (e, took) = connect_err(&r, s.name(), LONG).await;
    eprintln!("RulePolicy: {e} (after {took:?})");
    assert!(matches!(e, NodeError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("rule node = \"s_*@*\""), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!within(LONG, "ping", r.ping(s.name())).await);

    // The same through the CLI: `--rule 'node=GLOB:'` refuses, ping says pang.
    let home = tmp("refuse-home");
    let t0 = Instant::now();
    let out = expect_code(
        erldist(
            &[
                "ping",
                s.name(),
                "--cookie",
                COOKIE,
                "--epmd-port",
                &d.port.to_string(),
                "--rule",
                "node=s_*:",
            ],
            home.path(),
        ),
        1,
    );
    assert_eq!(out.trim(), "pang");
    // Quick (a whole CLI process, so a generous bound), not a set-up timeout.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // A refusal never reached s.
    assert!(conns(&s).is_empty(), "{:?}", conns(&s));
    assert!(matches!(
        s_events.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
    for n in [&s, &f, &r] {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_tls_listener_times_out_without_falling_back() {
    // A TLS port that accepts and then says nothing: not "unreachable"
    // (the TCP connect worked), and not safe to treat as such (an attacker
    // who can stall TLS must not get plain TCP). The attempt ends with a
    // timeout after twice the set-up time, and TCP is never tried.
    let d1 = daemon(Subject::Epmdx);
    let d2 = daemon(Subject::Epmdx);
    let dir = tmp("stall");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["x"], None);
    let mut sc = config("s", d1.port, &[Proto::InetTcp], &uds_dir);
    sc.name = format!("s_{}@localhost", d2.port);
    let s = start(sc).await;
    let mut s_events = s.events();
    let s_alive = format!("s_{}", d2.port);
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((sock, _)) = hole.accept().await {
            kept.push(sock);
        }
    });
    let tcp = s.listen_port().unwrap();
    let _fake = Client::local(d2.port)
        .register_ext(
            NodeSpec::otp25(&s_alive),
            &[
                TransportRef {
                    port: hole_port,
                    proto: b"inet_tls",
                    extra: b"",
                },
                TransportRef {
                    port: tcp,
                    proto: b"inet_tcp",
                    extra: b"",
                },
            ],
        )
        .await
        .unwrap();
    let mut xc = config("x", d2.port, &[Proto::InetTls, Proto::InetTcp], &uds_dir);
    xc.tls = Some(certs.files("x"));
    xc.setup_time = Duration::from_secs(1);
    let x = start(with_policy(xc, prefer(&[Proto::InetTls, Proto::InetTcp]))).await;
    let (e, took) = connect_err(&x, s.name(), LONG).await;
    eprintln!("stalled TLS: {e} (after {took:?})");
    assert!(matches!(e, NodeError::Timeout), "{e}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(conns(&x).is_empty() && conns(&s).is_empty());
    assert!(matches!(
        s_events.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
    held.abort();
    s.stop();
    x.stop();
}

// ---------------------------------------------------------------------------
// 3. The command line, as docs/transports.md shows it
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_gen_certs_serve_config_and_connections() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("cli");
    let home = tmp("cli-home");
    let p = |x: &Path| x.to_str().unwrap().to_owned();
    let port = d.port.to_string();
    let certs = dir.path().join("certs");
    let uds = dir.path().join("uds");

    // gen-certs: a CA and one certificate per node.
    let out = expect_code(
        erldist(
            &[
                "gen-certs",
                "--dir",
                &p(&certs),
                "--node",
                "s",
                "--node",
                "c",
            ],
            home.path(),
        ),
        0,
    );
    for f in [
        "ca.pem",
        "ca-key.pem",
        "s.pem",
        "s-key.pem",
        "c.pem",
        "c-key.pem",
    ] {
        assert!(
            out.lines().any(|l| l == p(&certs.join(f))),
            "{f} not in:\n{out}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("s-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A stale socket where s's will go: replaced at start.
    std::fs::create_dir_all(&uds).unwrap();
    let s_alive = format!("s_{port}");
    drop(std::os::unix::net::UnixListener::bind(uds.join(&s_alive)).unwrap());
    assert!(uds.join(&s_alive).exists());

    // serve --config: TCP, TLS and a Unix socket, from a TOML file.
    let s_toml = dir.path().join("s.toml");
    std::fs::write(
        &s_toml,
        format!(
            r#"name = "s_{port}@localhost"
listen = ["inet_tcp@127.0.0.1:0", "inet_tls@127.0.0.1:0", "uds"]
uds_dir = "{uds}"
failover = true

[tls]
cert = "{certs}/s.pem"
key = "{certs}/s-key.pem"
ca = "{certs}/ca.pem"

[policy]
same_host = ["uds", "inet_tcp"]
same_subnet = ["inet_tcp"]
other = ["inet_tls"]

[[policy.rule]]
node = "backup*@*"
use = ["inet_tls"]

[[policy.rule]]
node = "blocked*@*"
use = []

[[policy.rule]]
cidr = "192.0.2.0/24"
use = []
"#,
            uds = p(&uds),
            certs = p(&certs),
        ),
    )
    .unwrap();
    let s_name = format!("s_{port}@localhost");
    let (mut srv, first) = Bg::spawn(erldist(
        &[
            "serve",
            "--config",
            &p(&s_toml),
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
        ],
        home.path(),
    ));
    assert!(
        first.starts_with(&format!("erldist: node {s_name} listening on inet_tcp:"))
            && first.contains(" inet_tls:")
            && first.contains(" uds:0 ")
            && first.ends_with("registered with the epmdx extension)"),
        "{first}"
    );
    let mode = std::fs::metadata(&uds).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "socket directory mode");
    let mut cmd = std::process::Command::new(test_support::epmdx_bin());
    cmd.args(["nodes", "--port", &port]);
    let nodes = expect_code(cmd, 0);
    let sock = std::fs::canonicalize(&uds).unwrap().join(&s_alive);
    assert!(
        nodes.contains("#inet_tcp ")
            && nodes.contains("#inet_tls ")
            && nodes.contains(&format!("0#uds({})", sock.display())),
        "{nodes}"
    );

    // Clients: the CLI's own node connects with the flags' policy, and
    // `connections` shows what it got.
    let c_tls = [
        "--tls-cert".to_owned(),
        p(&certs.join("c.pem")),
        "--tls-key".to_owned(),
        p(&certs.join("c-key.pem")),
        "--tls-ca".to_owned(),
        p(&certs.join("ca.pem")),
    ];
    let client = |extra: &[&str]| {
        let mut args = vec![
            "connections",
            s_name.as_str(),
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
        ];
        args.extend_from_slice(extra);
        let out = expect_code(erldist(&args, home.path()), 0);
        let mine: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with("erldist_"))
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .collect();
        assert_eq!(mine.len(), 1, "{extra:?}: {out}");
        mine[0].clone()
    };
    let tls: Vec<&str> = c_tls.iter().map(String::as_str).collect();
    // Default policy (first offered): the socket comes first in the
    // client's own order.
    assert_eq!(client(&[]), "uds");
    // The rule policy's defaults: same host -> uds.
    assert_eq!(client(&["--policy", "rules"]), "uds");
    // --same-host overrides the list for this host.
    let mut a = vec!["--policy", "rules", "--same-host", "inet_tls"];
    a.extend_from_slice(&tls);
    assert_eq!(client(&a), "inet_tls");
    // ... and implies the rule policy on its own.
    assert_eq!(client(&["--same-host", "inet_tcp"]), "inet_tcp");
    let out = blocking(|| {
        run_cmd(
            erldist(
                &[
                    "connections",
                    &s_name,
                    "--cookie",
                    COOKIE,
                    "--epmd-port",
                    &port,
                    "--policy",
                    "first",
                    "--same-host",
                    "inet_tcp",
                ],
                home.path(),
            ),
            30,
        )
    });
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("need --policy rules"),
        "{out:?}"
    );
    // A CIDR rule (checked before the locality lists).
    assert_eq!(client(&["--rule", "cidr=127.0.0.0/8:inet_tcp"]), "inet_tcp");
    // A node rule.
    let mut a = vec!["--rule", "node=s_*:inet_tls,inet_tcp"];
    a.extend_from_slice(&tls);
    assert_eq!(client(&a), "inet_tls");
    // A config file with [tls] and [policy].
    let c_toml = dir.path().join("c.toml");
    std::fs::write(
        &c_toml,
        format!(
            "[tls]\ncert = \"{0}/c.pem\"\nkey = \"{0}/c-key.pem\"\nca = \"{0}/ca.pem\"\n\n\
             [policy]\nsame_host = [\"inet_tls\"]\n",
            p(&certs)
        ),
    )
    .unwrap();
    assert_eq!(client(&["--config", &p(&c_toml)]), "inet_tls");
    // ping with the same flags.
    let mut a = vec![
        "ping",
        s_name.as_str(),
        "--cookie",
        COOKIE,
        "--epmd-port",
        &port,
    ];
    a.extend_from_slice(&["--policy", "rules", "--same-host", "inet_tls"]);
    a.extend_from_slice(&tls);
    assert_eq!(expect_code(erldist(&a, home.path()), 0).trim(), "pong");
    // TLS asked for, no certificates given: a clear error, exit 1 (pang).
    let out = blocking(|| {
        run_cmd(
            erldist(
                &[
                    "ping",
                    &s_name,
                    "--cookie",
                    COOKIE,
                    "--epmd-port",
                    &port,
                    "--policy",
                    "rules",
                    "--same-host",
                    "inet_tls",
                ],
                home.path(),
            ),
            30,
        )
    });
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // `erldist connect` makes s dial other nodes through its own policy
    // (the [policy] of s.toml): same host -> uds, then inet_tcp; the node
    // rules send backup* over TLS and refuse blocked*.
    let uds_other = dir.path().join("uds-other");
    let k = start(config("k", d.port, &[Proto::InetTcp], &uds_other)).await;
    let mut bc = config(
        "backup",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_other,
    );
    bc.tls = Some(erldist::transport::tls::TlsFiles {
        cert: certs.join("c.pem"),
        key: certs.join("c-key.pem"),
        ca: certs.join("ca.pem"),
    });
    let b = start(bc).await;
    let blocked = start(config("blocked", d.port, &[Proto::InetTcp], &uds_other)).await;
    let ask = |args: &[&str], code: i32| {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--cookie", COOKIE, "--epmd-port", &port]);
        expect_code(erldist(&a, home.path()), code)
    };
    assert_eq!(ask(&["connect", &s_name, k.name()], 0).trim(), "ok");
    assert_eq!(ask(&["connect", &s_name, b.name()], 0).trim(), "ok");
    let out = ask(&["connect", &s_name, blocked.name()], 1);
    assert!(
        out.contains("refused") && out.contains("blocked*@*"),
        "{out}"
    );
    let nobody = format!("nobody_{port}@localhost");
    let out = ask(&["connect", &s_name, &nobody], 1);
    assert!(out.contains("not registered"), "{out}");
    let out = ask(&["connections", &s_name], 0);
    for line in [
        format!("{} inet_tcp", k.name()),
        format!("{} inet_tls", b.name()),
    ] {
        assert!(out.lines().any(|l| l == line), "want {line:?} in:\n{out}");
    }
    assert_eq!(wait_transport(&k, &s_name).await, "inet_tcp");
    assert_eq!(wait_transport(&b, &s_name).await, "inet_tls");
    assert!(conns(&blocked).is_empty());
    for n in [&k, &b, &blocked] {
        n.stop();
    }

    // A clean exit removes the socket.
    assert!(sock.exists());
    let st = blocking(|| srv.terminate(LONG)).expect("serve exits on SIGTERM");
    assert!(st.success(), "{st}\n{}", srv.log());
    assert!(!sock.exists(), "socket left behind");

    // Where the socket goes without --uds-dir: $ERLDIST_UDS_DIR, else
    // $XDG_RUNTIME_DIR/erldist.
    let env_dir = dir.path().join("env-uds");
    let xdg = dir.path().join("xdg");
    for (tag, var, val, want) in [
        ("k_env", "ERLDIST_UDS_DIR", &env_dir, env_dir.clone()),
        ("k_xdg", "XDG_RUNTIME_DIR", &xdg, xdg.join("erldist")),
    ] {
        let name = format!("{tag}_{port}@localhost");
        let mut cmd = erldist(
            &[
                "serve",
                "--name",
                &name,
                "--cookie",
                COOKIE,
                "--epmd-port",
                &port,
                "--listen",
                "uds",
            ],
            home.path(),
        );
        cmd.env_remove("XDG_RUNTIME_DIR").env(var, val);
        let (mut k, first) = Bg::spawn(cmd);
        assert!(first.contains(" uds:0 "), "{first}");
        let path = want.join(format!("{tag}_{port}"));
        assert!(path.exists(), "{tag}: {} missing", path.display());
        let mode = std::fs::metadata(&want).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let st = blocking(|| k.terminate(LONG));
        assert!(
            st.is_some_and(|s| s.success()),
            "{tag}: {st:?}\n{}",
            k.log()
        );
        assert!(!path.exists());
    }
}
