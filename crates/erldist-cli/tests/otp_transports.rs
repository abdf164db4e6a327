//! erldist's TLS and Unix-socket transports against real OTP 25 nodes:
//!
//! - TLS with `inet_tls_dist` (`-proto_dist inet_tls -ssl_dist_optfile F`),
//!   mutual `verify_peer`, both directions, TLS 1.3 and OTP's default
//!   (1.2 only), each side reporting the connection as TLS;
//! - Unix sockets with OTP's `erl_uds_dist` example module, compiled from
//!   the installed `kernel/examples`, both directions.
//!
//! How a stock TLS node and a Rust node find each other (the legacy-EPMD
//! question) is spelled out before each test and in `docs/transports.md`.
//!
//! Every test has its own daemon on a private port; `erl` nodes get
//! `-start_epmd false` and `ERL_EPMD_PORT`; sockets and certificates live in
//! per-test temporary directories.

mod transport_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use epmd_client::{Client, NodeSpec};
use epmd_proto::ext::TransportRef;
use erldist::policy::{FnPolicy, Offer, Peer, Rule, RuleConfig, RulePolicy, Selection};
use erldist::transport::Proto;
use test_support::erl::ErlNode;
use test_support::{Daemon, Subject};
use transport_support::*;

/// Starts `erl` with `args` on daemon `d`; panics with its output if it
/// does not come up.
fn erl(d: &Daemon, name: &str, args: &[&str]) -> ErlNode {
    blocking(|| ErlNode::start(name, COOKIE, d.port, args))
        .unwrap_or_else(|e| panic!("start {name}: {e:#}"))
}

/// Evaluates Erlang expressions in `e`.
fn eval(e: &mut ErlNode, src: &str) -> String {
    blocking(|| e.eval(src)).unwrap_or_else(|err| panic!("{err:#}"))
}

/// Writes an `-ssl_dist_optfile` for node `name` of `certs`: mutual
/// `verify_peer`; `versions` as given (`None`: OTP's default, TLS 1.2 only).
fn ssl_dist_optfile(dir: &Path, certs: &Certs, name: &str, versions: Option<&str>) -> PathBuf {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let common = format!(
        "{{certfile,{}}},{{keyfile,{}}},{{cacertfile,{}}},{{verify,verify_peer}}{}",
        q(certs.cert(name)),
        q(certs.key(name)),
        q(certs.ca()),
        versions
            .map(|v| format!(",{{versions,{v}}}"))
            .unwrap_or_default()
    );
    let text = format!(
        "[{{server,[{common},{{fail_if_no_peer_cert,true}}]}},\n {{client,[{common}]}}].\n"
    );
    let path = dir.join(format!("{name}-ssl_dist.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `inet_tls_dist` arguments for `erl`.
fn tls_args(optfile: &Path) -> Vec<String> {
    vec![
        "-proto_dist".into(),
        "inet_tls".into(),
        "-ssl_dist_optfile".into(),
        optfile.display().to_string(),
    ]
}

/// The protocol of Erlang's connection to `peer`, from
/// `net_kernel:node_info/1` (`tls` for `inet_tls_dist`).
fn erl_conn_protocol(e: &mut ErlNode, peer: &str) -> String {
    eval(
        e,
        &format!(
            "{{ok, I}} = net_kernel:node_info('{peer}'), \
             {{net_address, _, _, P, F}} = proplists:get_value(address, I), {{P, F}}."
        ),
    )
}

/// Whether Erlang's dist controller for `peer` is an `ssl` connection
/// (`inet_tls_dist` controllers are processes owning an `sslsocket`).
fn erl_tls_ctrl(e: &mut ErlNode, peer: &str) -> String {
    eval(
        e,
        &format!(
            "[{{_, Ctrl}}] = [X || {{N, _}} = X <- erlang:system_info(dist_ctrl), N =:= '{peer}'], \
             is_pid(Ctrl)."
        ),
    )
}

/// A policy that reads a legacy (ALIVE2) registration as TLS: erldist
/// offers a legacy entry once per IP transport this node speaks, all with
/// `legacy` set; this policy takes the `inet_tls` reading, and nothing else.
fn legacy_as_tls() -> FnPolicy<impl Fn(&[Proto], &Peer<'_>, &[Offer]) -> Selection> {
    FnPolicy(|_: &[Proto], _: &Peer<'_>, offered: &[Offer]| {
        assert!(offered.iter().all(|o| o.legacy), "{offered:?}");
        match offered.iter().position(|o| o.proto == Proto::InetTls) {
            Some(i) => Selection::Try(vec![i]),
            None => Selection::Refuse("no TLS reading of this peer".into()),
        }
    })
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// Rust dials a stock `inet_tls_dist` node registered in epmdx. The Erlang
/// node registers with ALIVE2, so epmdx returns a legacy entry (protocol
/// unknown); erldist offers it to the policy once per IP transport the Rust
/// node speaks, and the policy picks the TLS reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_rust_dials_erlang_through_epmdx() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("tls-r2e");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["e", "e12", "r"], None);
    let opt13 = ssl_dist_optfile(dir.path(), &certs, "e", Some("['tlsv1.3','tlsv1.2']"));
    let opt12 = ssl_dist_optfile(dir.path(), &certs, "e12", None);
    let e_name = format!("e_tls_{}@localhost", d.port);
    let e12_name = format!("e12_tls_{}@localhost", d.port);
    let args13 = tls_args(&opt13);
    let args12 = tls_args(&opt12);
    let mut e = erl(
        &d,
        &e_name,
        &args13.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut e12 = erl(
        &d,
        &e12_name,
        &args12.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // No `-boot start_ssl` on OTP 25: `inet_tls_dist` starts its own
    // supervisor under kernel, without the ssl application.
    assert_eq!(
        eval(&mut e, "{is_pid(whereis(ssl_dist_sup)), lists:keymember(ssl, 1, application:which_applications())}."),
        "{true,false}"
    );

    // The Erlang nodes are legacy entries: epmdx cannot know they speak TLS.
    let rec = Client::local(d.port)
        .port_please3(&format!("e_tls_{}", d.port), &["inet_tls"])
        .await
        .unwrap()
        .expect("e registered");
    assert!(rec.legacy && rec.transports.len() == 1 && rec.transports[0].proto.is_empty());

    // (1) A TCP + TLS node with a closure policy taking the TLS reading.
    let mut rc = config("r_fn", d.port, &[Proto::InetTcp, Proto::InetTls], &uds_dir);
    rc.tls = Some(certs.files("r"));
    let r = start(with_policy(rc, legacy_as_tls())).await;
    assert!(within(LONG, "r_fn pings e", r.ping(&e_name)).await);
    assert_eq!(conns(&r), [(e_name.clone(), "inet_tls".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, r.name()), "{tls,inet}");
    assert_eq!(erl_tls_ctrl(&mut e, r.name()), "true");

    // (2) The rule policy with a node rule: `e_*` nodes speak TLS.
    let rules = RuleConfig {
        rules: vec![Rule {
            node: Some("e*_tls_*@*".into()),
            cidr: None,
            transports: vec!["inet_tls".into()],
        }],
        ..RuleConfig::default()
    };
    let mut rc = config(
        "r_rules",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    );
    rc.tls = Some(certs.files("r"));
    let rr = start(with_policy(rc, RulePolicy::new(&rules).unwrap())).await;
    assert!(within(LONG, "r_rules pings e", rr.ping(&e_name)).await);
    assert_eq!(conns(&rr), [(e_name.clone(), "inet_tls".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, rr.name()), "{tls,inet}");

    // (3) A TLS-only node needs no policy at all: the only reading of the
    // legacy entry it can offer is TLS. Against OTP's default (TLS 1.2
    // only), too.
    let mut rc = config("r_tlsonly", d.port, &[Proto::InetTls], &uds_dir);
    rc.tls = Some(certs.files("r"));
    let rt = start(rc).await;
    assert!(within(LONG, "r_tlsonly pings e", rt.ping(&e_name)).await);
    assert!(within(LONG, "r_tlsonly pings e12", rt.ping(&e12_name)).await);
    assert_eq!(
        conns(&rt),
        [
            (e12_name.clone(), "inet_tls".to_owned()),
            (e_name.clone(), "inet_tls".to_owned())
        ]
    );
    assert_eq!(erl_conn_protocol(&mut e12, rt.name()), "{tls,inet}");

    // (4) The default policy on a TCP + TLS node reads the legacy entry as
    // plain TCP first and sends a plain handshake to a TLS port: a quick,
    // clean failure (the TLS server drops it), not a hang.
    let mut rc = config(
        "r_first",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    );
    rc.tls = Some(certs.files("r"));
    rc.failover = false;
    let rf = start(rc).await;
    let t0 = Instant::now();
    let err = within(LONG, "r_first connects", rf.connect(&e_name))
        .await
        .unwrap_err();
    eprintln!("plain TCP to a TLS port: {err} (after {:?})", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(conns(&rf).is_empty());

    // Messages flow over the TLS connection too (Erlang rpc round trip).
    let v = within(
        LONG,
        "rpc over TLS",
        r.rpc(&e_name, "erlang", "node", vec![], Duration::from_secs(LONG)),
    )
    .await
    .unwrap();
    assert_eq!(v, erl_term::Term::atom(&e_name));

    for n in [&r, &rr, &rt, &rf] {
        n.stop();
    }
}

/// Erlang dials Rust over TLS. A stock node asks EPMD with PORT_PLEASE2,
/// which carries no protocol; epmdx answers legacy callers with a node's
/// plain-TCP transport by default (docs/protocol.md §4), so a TCP + TLS
/// Rust node registered in epmdx hands a stock TLS node the TCP port unless
/// it marks TLS as its legacy default. Against OTP's own epmd, the Rust node falls
/// back to ALIVE2 with its TLS port, which is exactly what a stock TLS node
/// expects: that is the set-up used here for Erlang -> Rust (and Rust ->
/// Erlang through the same daemon). The epmdx half below pins down the
/// current legacy answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_erlang_dials_rust_through_otp_epmd() {
    let d = daemon(Subject::Otp);
    let dir = tmp("tls-e2r");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["e", "r"], None);
    let opt = ssl_dist_optfile(dir.path(), &certs, "e", Some("['tlsv1.3','tlsv1.2']"));
    let e_name = format!("e_tls_{}@localhost", d.port);
    let args = tls_args(&opt);
    let mut e = erl(
        &d,
        &e_name,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // A TLS-only Rust node: registered with ALIVE2 (the stock epmd does not
    // speak the extension) under its TLS port.
    let mut rc = config("r_a", d.port, &[Proto::InetTls], &uds_dir);
    rc.tls = Some(certs.files("r"));
    let r = start(rc).await;
    assert!(!r.registered_extended());
    let tls_port = r.listen_port().unwrap();
    let info = Client::local(d.port)
        .port_please(&format!("r_a_{}", d.port))
        .await
        .unwrap()
        .expect("r registered");
    assert_eq!(info.port, tls_port);

    // Erlang -> Rust.
    let mut events = r.events();
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", r.name())),
        "pong"
    );
    let ev = within(LONG, "Up event", events.recv()).await.unwrap();
    assert_eq!(ev, erldist::NodeEvent::Up(e_name.clone()));
    assert_eq!(conns(&r), [(e_name.clone(), "inet_tls".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, r.name()), "{tls,inet}");
    assert_eq!(erl_tls_ctrl(&mut e, r.name()), "true");
    // ... and traffic on that connection both ways.
    assert!(within(LONG, "ping back", r.ping(&e_name)).await);

    // Rust -> Erlang through the stock epmd (PORT_PLEASE3 is not understood,
    // the lookup falls back to PORT_PLEASE2).
    let mut rc = config("r_b", d.port, &[Proto::InetTls], &uds_dir);
    rc.tls = Some(certs.files("r"));
    let r2 = start(rc).await;
    assert!(within(LONG, "r_b pings e", r2.ping(&e_name)).await);
    assert_eq!(conns(&r2), [(e_name.clone(), "inet_tls".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, r2.name()), "{tls,inet}");
    let nodes = eval(&mut e, "lists:sort(nodes()).");
    assert!(
        nodes.contains(r.name()) && nodes.contains(r2.name()),
        "{nodes}"
    );
    r.stop();
    r2.stop();
}

/// The epmdx half of the question above: what a stock TLS node gets for a
/// Rust node registered through the extension (docs/protocol.md §4): a
/// TLS-only node's TLS port; for TCP + TLS the TCP port unless the node
/// marks TLS as its legacy default (`legacy_default`), which is what a
/// stock TLS cluster needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_erlang_to_rust_through_epmdx_legacy_answer() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("tls-e2r-x");
    let uds_dir = dir.path().join("uds");
    let certs = Certs::generate(&dir.path().join("certs"), &["e", "r"], None);
    let opt = ssl_dist_optfile(dir.path(), &certs, "e", Some("['tlsv1.3','tlsv1.2']"));
    let e_name = format!("e_tls_{}@localhost", d.port);
    let args = tls_args(&opt);
    let mut e = erl(
        &d,
        &e_name,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let client = Client::local(d.port);
    let port_of = |n: &erldist::Node, p: Proto| n.transports().iter().find(|t| t.0 == p).unwrap().1;

    // TLS only: legacy callers get the TLS port, so the stock node reaches it.
    let mut rc = config("r_tls", d.port, &[Proto::InetTls], &uds_dir);
    rc.tls = Some(certs.files("r"));
    let r = start(rc).await;
    assert!(r.registered_extended());
    let info = client
        .port_please(&format!("r_tls_{}", d.port))
        .await
        .unwrap()
        .expect("a TLS-only node is visible to legacy callers");
    assert_eq!(info.port, port_of(&r, Proto::InetTls));
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", r.name())),
        "pong"
    );

    // TCP + TLS: the stock node gets the TCP port and starts TLS on it; the
    // Rust TCP listener sees a TLS ClientHello and drops it (pang, quickly).
    let mut rc = config(
        "r_both",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    );
    rc.tls = Some(certs.files("r"));
    let r2 = start(rc).await;
    let info = client
        .port_please(&format!("r_both_{}", d.port))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.port, port_of(&r2, Proto::InetTcp));
    let t0 = Instant::now();
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", r2.name())),
        "pang"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(conns(&r2).is_empty());

    // TCP + TLS with TLS marked as the legacy default: both directions work.
    let mut rc = config(
        "r_mark",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    )
    .with_legacy_default(Some(Proto::InetTls));
    rc.tls = Some(certs.files("r"));
    let r3 = start(rc).await;
    let info = client
        .port_please(&format!("r_mark_{}", d.port))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.port, port_of(&r3, Proto::InetTls));
    let names = client.names().await.unwrap();
    assert!(names.contains(&(format!("r_mark_{}", d.port), port_of(&r3, Proto::InetTls))));
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", r3.name())),
        "pong"
    );
    assert_eq!(erl_conn_protocol(&mut e, r3.name()), "{tls,inet}");
    assert_eq!(conns(&r3), [(e_name.clone(), "inet_tls".to_owned())]);
    assert!(within(LONG, "ping back", r3.ping(&e_name)).await);
    // Rust -> Erlang on a fresh connection, looked up through epmdx.
    let mut rc = config(
        "r_mark2",
        d.port,
        &[Proto::InetTcp, Proto::InetTls],
        &uds_dir,
    )
    .with_legacy_default(Some(Proto::InetTls));
    rc.tls = Some(certs.files("r"));
    let r4 = start(rc).await;
    assert!(within(LONG, "r_mark2 pings e", r4.ping(&e_name)).await);
    assert_eq!(conns(&r4), [(e_name.clone(), "inet_tls".to_owned())]);
    for n in [&r, &r2, &r3, &r4] {
        n.stop();
    }
}

// ---------------------------------------------------------------------------
// Unix-domain sockets with OTP's erl_uds_dist example
// ---------------------------------------------------------------------------

/// Compiles OTP's `erl_uds_dist` example (from the installed
/// `kernel-*/examples`) into `out`.
fn compile_erl_uds_dist(out: &Path) {
    let lib = Path::new("/usr/lib/erlang/lib");
    let src = std::fs::read_dir(lib)
        .expect("/usr/lib/erlang/lib (install erlang-base)")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("kernel-"))
        .map(|e| e.path().join("examples/erl_uds_dist/src/erl_uds_dist.erl"))
        .find(|p| p.exists())
        .expect(
            "kernel-*/examples/erl_uds_dist/src/erl_uds_dist.erl (Debian's erlang-base ships it)",
        );
    let erlc = test_support::erl::erl_bin().unwrap().with_file_name("erlc");
    let mut cmd = std::process::Command::new(&erlc);
    cmd.arg("-o").arg(out).arg(&src);
    expect_code(cmd, 0);
    assert!(out.join("erl_uds_dist.beam").exists());
}

/// `erl_uds_dist` names its socket after the node-name head, relative to
/// its working directory. ErlNode runs `erl` in a fresh temp directory, so
/// the Rust node puts its socket there (`uds_dir`), and the Erlang node
/// reaches it by name alone. For Rust -> Erlang, the test registers the
/// Erlang node's socket in epmdx as a `uds` transport (erl_uds_dist itself
/// uses no EPMD).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uds_with_erl_uds_dist_both_ways() {
    let d = daemon(Subject::Epmdx);
    let beams = tmp("uds-beam");
    compile_erl_uds_dist(beams.path());
    let e_name = format!("e_uds_{}@localhost", d.port);
    let mut e = erl(
        &d,
        &e_name,
        &[
            "-proto_dist",
            "erl_uds",
            "-no_epmd",
            "-pa",
            beams.path().to_str().unwrap(),
        ],
    );
    let cwd = std::fs::canonicalize(e.dir()).unwrap();
    let e_alive = format!("e_uds_{}", d.port);
    let e_sock = cwd.join(&e_alive);
    assert!(
        e_sock.exists(),
        "erl_uds_dist socket {} missing",
        e_sock.display()
    );

    // Erlang -> Rust: the Rust node's socket sits in Erlang's cwd.
    let r = start(config("r_uds", d.port, &[Proto::Uds], &cwd)).await;
    assert!(cwd.join(format!("r_uds_{}", d.port)).exists());
    let mut events = r.events();
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", r.name())),
        "pong"
    );
    let ev = within(LONG, "Up event", events.recv()).await.unwrap();
    assert_eq!(ev, erldist::NodeEvent::Up(e_name.clone()));
    assert_eq!(conns(&r), [(e_name.clone(), "uds".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, r.name()), "{stream,local}");
    // Erlang asks the Rust node's `erldist` service which transport it sees.
    assert_eq!(
        eval(
            &mut e,
            &format!("gen_server:call({{erldist, '{}'}}, connections).", r.name())
        ),
        format!("[{{{e_name},uds}}]")
    );
    assert!(within(LONG, "ping back", r.ping(&e_name)).await);

    // Rust -> Erlang: a stand-in epmdx entry for the Erlang node, carrying
    // its socket path as a `uds` transport.
    let path = e_sock.as_os_str().as_encoded_bytes().to_vec();
    let _entry = Client::local(d.port)
        .register_ext(
            NodeSpec::otp25(&e_alive),
            &[TransportRef {
                port: 0,
                proto: b"uds",
                extra: &path,
            }],
        )
        .await
        .expect("register the erl_uds_dist node's socket");
    let sock_dir = tmp("uds-r2");
    let r2 = start(config("r2_uds", d.port, &[Proto::Uds], sock_dir.path())).await;
    assert!(within(LONG, "r2 pings e", r2.ping(&e_name)).await);
    assert_eq!(conns(&r2), [(e_name.clone(), "uds".to_owned())]);
    assert_eq!(erl_conn_protocol(&mut e, r2.name()), "{stream,local}");
    // A message and an rpc over the socket.
    let v = within(
        LONG,
        "rpc over uds",
        r2.rpc(&e_name, "erlang", "node", vec![], Duration::from_secs(LONG)),
    )
    .await
    .unwrap();
    assert_eq!(v, erl_term::Term::atom(&e_name));
    let nodes = eval(&mut e, "lists:sort(nodes()).");
    assert!(
        nodes.contains(r.name()) && nodes.contains(r2.name()),
        "{nodes}"
    );
    r.stop();
    r2.stop();
}
