//! erldist against hostile peers and hostile neighbours (issue 8 items 2, 5
//! and 6; issue 11 items 7 and 8), with real OTP 25 nodes where a peer is
//! involved:
//!
//! - a flood of 1,000 half-open connections from rotating 127.0.0.0/8
//!   source addresses does not keep a real `erl` node or an erldist node
//!   from connecting (the figures are printed; run with `--nocapture`);
//! - wrong cookies from 127.0.0.1 never lock out the right cookie;
//! - the Unix-socket directory: pre-created by another user, made
//!   world-writable while the node runs, a socket planted by another user's
//!   process, a socket deleted while the node runs;
//! - logging: no message contents at info level; a 4 MiB bignum (near the largest
//!   integer OTP 25 allows, `1 bsl 33554000`) logged at
//!   debug level does not stall the echo loop, and SIGTERM is served;
//! - a malformed policy, rule, certificate path or TLS option stops
//!   `erldist serve` at start, naming the setting;
//! - `gen-certs` keeps an existing CA unless `--force`, and signs with an
//!   existing CA on request;
//! - a cookie mismatch inside TLS is reported as a cookie mismatch, against
//!   a real `inet_tls_dist` node and erldist to erldist.
//!
//! Every test has its own daemon on a private port; `erl` nodes get
//! `-start_epmd false`; the "other user" is `nobody` (the tests run as root
//! and chown to it, or start a process as it with `setpriv`).

mod transport_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use epmd_client::{Client, Lookup};
use erldist::policy::{RuleConfig, RulePolicy};
use erldist::transport::Proto;
use erldist::{Node, NodeConfig};
use test_support::erl::ErlNode;
use test_support::{Daemon, Subject};
use transport_support::*;

const NOBODY: u32 = 65534;

fn erl(d: &Daemon, name: &str, args: &[&str]) -> ErlNode {
    blocking(|| ErlNode::start(name, COOKIE, d.port, args))
        .unwrap_or_else(|e| panic!("start {name}: {e:#}"))
}

fn eval(e: &mut ErlNode, src: &str) -> String {
    blocking(|| e.eval(src)).unwrap_or_else(|err| panic!("{err:#}"))
}

fn need_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root to act as another user (nobody)"
    );
}

/// A client-only node (no listener, not registered) named `name`.
async fn client(name: &str, cookie: &str, epmd_port: u16) -> Node {
    let mut c = NodeConfig::new(name, cookie);
    c.epmd_port = epmd_port;
    c.listen = Vec::new();
    c.hidden = true;
    start(c).await
}

/// The transports `alive` has in the daemon on `port`, with their Extra.
async fn registered(port: u16, alive: &str) -> Vec<(String, Vec<u8>)> {
    match Client::local(port)
        .lookup(alive, &[])
        .await
        .expect("lookup")
    {
        Lookup::Found(rec) => rec
            .transports
            .into_iter()
            .map(|t| (t.proto, t.extra))
            .collect(),
        _ => Vec::new(),
    }
}

fn alive(name: &str) -> &str {
    name.split('@').next().unwrap()
}

// ---------------------------------------------------------------------------
// Handshake admission (issue 8 item 5)
// ---------------------------------------------------------------------------

/// Opens `n` TCP connections to 127.0.0.1:`port`, each from its own source
/// address in 127.0.0.0/8 (never 127.0.0.1), and sends nothing on them.
async fn half_open(port: u16, n: u32, first: u32) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = first + i;
        let [_, a, b, c] = k.to_be_bytes();
        let src = Ipv4Addr::new(127, a, b, c);
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind(SocketAddr::new(src.into(), 0)).expect("bind 127/8");
        if let Ok(c) = s.connect(SocketAddr::from(([127, 0, 0, 1], port))).await {
            v.push(c);
        }
    }
    v
}

/// How many of `socks` the node has closed (they read as end of stream).
fn closed_by_peer(socks: &[tokio::net::TcpStream]) -> usize {
    let mut buf = [0u8; 16];
    socks
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Ok(0)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_flood_from_rotating_addresses_does_not_starve_real_peers() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("flood");
    let target = start(config("flood", d.port, &[Proto::InetTcp], dir.path())).await;
    let port = target.listen_port().unwrap();
    let e_name = format!("legit_{}@localhost", d.port);
    let mut e = erl(&d, &e_name, &[]);
    let ping_cmd = format!("net_adm:ping('{}').", target.name());

    // Baseline, no flood.
    let t = Instant::now();
    assert_eq!(eval(&mut e, &ping_cmd), "pong");
    let erl_base = t.elapsed();
    let r = client(&format!("rusty_{}@localhost", d.port), COOKIE, d.port).await;
    let t = Instant::now();
    assert!(r.ping(target.name()).await);
    let rust_base = t.elapsed();
    eval(
        &mut e,
        &format!("erlang:disconnect_node('{}').", target.name()),
    );
    r.disconnect(target.name());
    let t0 = Instant::now();
    while !target.connections().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(LONG),
            "{:?}",
            conns(&target)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 1,000 half-open connections, held open ...
    let t = Instant::now();
    let held = half_open(port, 1000, 2).await;
    let opened = t.elapsed();
    assert_eq!(held.len(), 1000);
    // ... and a second wave of 1,000 arriving while the peers connect.
    let wave = tokio::spawn(half_open(port, 1000, 2 + 1000));
    let t = Instant::now();
    assert_eq!(eval(&mut e, &ping_cmd), "pong");
    let erl_flood = t.elapsed();
    let t = Instant::now();
    assert!(within(LONG, "rust ping under flood", r.ping(target.name())).await);
    let rust_flood = t.elapsed();
    let wave = within(LONG, "second wave", wave).await.unwrap();
    // Both peers are connected, over TCP, and the node still serves them.
    assert_eq!(wait_transport(&target, &e_name).await, "inet_tcp");
    assert_eq!(wait_transport(&target, r.name()).await, "inet_tcp");
    let ping_back = Instant::now();
    assert!(within(LONG, "target pings erl back", target.ping(&e_name)).await);
    let ping_back = ping_back.elapsed();
    let closed = closed_by_peer(&held) + closed_by_peer(&wave);
    eprintln!(
        "flood figures: 1000 half-open opened in {opened:?}; erl ping {erl_base:?} without flood, \
         {erl_flood:?} under flood; erldist ping {rust_base:?} without, {rust_flood:?} under; \
         target->erl ping {ping_back:?}; {closed} of {} flood sockets already closed by the node \
         (evicted to make room)",
        held.len() + wave.len()
    );
    // The node closed flood sockets to make room rather than refusing the
    // real peers (what it closes by eviction or by the 5 s deadline is
    // counted above, not asserted: it depends on how fast this machine
    // accepts).
    assert!(closed > 0, "no flood socket was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_cookies_from_loopback_never_lock_out_the_right_cookie() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("lockout");
    let target = start(config("lock", d.port, &[Proto::InetTcp], dir.path())).await;
    let e_name = format!("legit_ck_{}@localhost", d.port);
    let r_name = format!("rusty_ck_{}@localhost", d.port);
    // Ten wrong cookies from 127.0.0.1 under each legitimate peer's name
    // (the worst case: the same address and the same claimed name), then
    // two more each at once, past the limit.
    let t = Instant::now();
    for name in [&e_name, &r_name] {
        for _ in 0..10 {
            let m = client(name, "wrong-cookie", d.port).await;
            assert!(!m.ping(target.name()).await);
            m.stop();
        }
    }
    let ten = t.elapsed();
    let extra: Vec<_> = (0..2)
        .flat_map(|_| [e_name.clone(), r_name.clone()])
        .map(|name| {
            let port = d.port;
            let target = target.name().to_owned();
            tokio::spawn(async move {
                let m = client(&name, "wrong-cookie", port).await;
                let ok = m.ping(&target).await;
                m.stop();
                ok
            })
        })
        .collect();
    // While those are held, the right cookie gets in, from a real erl node
    // and from an erldist node, under the same names.
    let mut e = erl(&d, &e_name, &[]);
    let t = Instant::now();
    assert_eq!(
        eval(&mut e, &format!("net_adm:ping('{}').", target.name())),
        "pong"
    );
    let erl_ok = t.elapsed();
    let r = client(&r_name, COOKIE, d.port).await;
    let t = Instant::now();
    assert!(within(LONG, "right cookie", r.ping(target.name())).await);
    let rust_ok = t.elapsed();
    for h in extra {
        assert!(!within(LONG, "locked-out wrong cookie", h).await.unwrap());
    }
    eprintln!(
        "lockout figures: 20 wrong-cookie handshakes in {ten:?}; right cookie after them: \
         erl ping {erl_ok:?}, erldist ping {rust_ok:?}"
    );
}

// ---------------------------------------------------------------------------
// Unix-socket directory (issue 8 item 6)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uds_default_directory_precreated_by_another_user_falls_back() {
    need_root();
    let d = daemon(Subject::Epmdx);
    let dir = tmp("uds-pre");
    let tmpdir = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::set_permissions(&tmpdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let planted = tmpdir.join(format!("erldist-{uid}"));
    std::fs::create_dir(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&planted, Some(NOBODY), Some(NOBODY)).unwrap();
    let name = format!("pre_{}@localhost", d.port);
    let port = d.port.to_string();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
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
        dir.path(),
    );
    cmd.env("TMPDIR", &tmpdir).env_remove("XDG_RUNTIME_DIR");
    let (mut bg, first) = Bg::spawn(cmd);
    assert!(first.contains("listening on uds:0"), "{first}");
    let regs = registered(d.port, alive(&name)).await;
    assert_eq!(regs.len(), 1, "{regs:?}");
    let path = PathBuf::from(String::from_utf8(regs[0].1.clone()).unwrap());
    if run_user.is_dir() {
        // This machine has a /run/user/<uid>: the default is there, and the
        // planted directory never mattered.
        assert!(path.starts_with(&run_user), "{}", path.display());
    } else {
        let fresh = path.parent().unwrap();
        let fname = fresh.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(fresh.parent().unwrap(), tmpdir);
        assert!(fname.starts_with(&format!("erldist-{uid}-")), "{fname}");
        let m = std::fs::metadata(fresh).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), uid);
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        let log = bg.log();
        assert!(
            log.contains(&planted.display().to_string())
                && log.contains(&fresh.display().to_string()),
            "the fallback is not logged clearly:\n{log}"
        );
        // The planted directory was not touched.
        let pm = std::fs::metadata(&planted).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&pm), NOBODY);
    }
    // Reachable over the socket.
    let rc = RuleConfig {
        same_host: vec!["uds".into()],
        ..RuleConfig::default()
    };
    let mut cfg = NodeConfig::new(format!("pre_c_{}@localhost", d.port), COOKIE);
    cfg.epmd_port = d.port;
    cfg.listen = Vec::new();
    cfg.policy = std::sync::Arc::new(RulePolicy::new(&rc).unwrap());
    let c = start(cfg).await;
    assert!(within(LONG, "ping over uds", c.ping(&name)).await);
    assert_eq!(wait_transport(&c, &name).await, "uds");
    assert!(bg.terminate(LONG).is_some());
    assert!(!path.exists(), "socket left behind");
}

fn uds_only_client(tag: &str, port: u16) -> NodeConfig {
    let rc = RuleConfig {
        same_host: vec!["uds".into()],
        ..RuleConfig::default()
    };
    let mut cfg = NodeConfig::new(format!("{tag}_{port}@localhost"), COOKIE);
    cfg.epmd_port = port;
    cfg.listen = Vec::new();
    cfg.failover = false;
    cfg.policy = std::sync::Arc::new(RulePolicy::new(&rc).unwrap());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uds_socket_deleted_while_running_is_unregistered() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("uds-gone");
    let n = start(config(
        "gone",
        d.port,
        &[Proto::Uds, Proto::InetTcp],
        &dir.path().join("s"),
    ))
    .await;
    let regs = registered(d.port, alive(n.name())).await;
    let uds: Vec<_> = regs.iter().filter(|(p, _)| p == "uds").collect();
    assert_eq!(uds.len(), 1, "{regs:?}");
    let path = PathBuf::from(String::from_utf8(uds[0].1.clone()).unwrap());
    std::fs::remove_file(&path).unwrap();
    let t0 = Instant::now();
    loop {
        let regs = registered(d.port, alive(n.name())).await;
        if !regs.iter().any(|(p, _)| p == "uds") {
            assert!(regs.iter().any(|(p, _)| p == "inet_tcp"), "{regs:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(LONG),
            "uds still registered: {regs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "uds unregistered {:?} after its socket was deleted",
        t0.elapsed()
    );
    // The node is still reachable over TCP.
    let c = client(&format!("gone_c_{}@localhost", d.port), COOKIE, d.port).await;
    assert!(within(LONG, "ping over tcp", c.ping(n.name())).await);
    assert_eq!(wait_transport(&c, n.name()).await, "inet_tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uds_directory_made_world_writable_while_running_is_refused() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("uds-open");
    let sdir = dir.path().join("s");
    let n = start(config("open", d.port, &[Proto::Uds], &sdir)).await;
    let c = start(uds_only_client("open_c", d.port)).await;
    assert!(within(LONG, "ping while safe", c.ping(n.name())).await);
    c.disconnect(n.name());
    std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let c2 = start(uds_only_client("open_c2", d.port)).await;
    let e = within(LONG, "connect while unsafe", c2.connect(n.name()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("writable by other users"), "{e}");
    // Safe again: served again.
    std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(within(LONG, "ping when safe again", c2.ping(n.name())).await);
}

/// Another user's process listens on a socket which then looks like ours
/// (its file and directory chowned to us) and is registered in epmdx: the
/// listener's credentials (`SO_PEERCRED`) still give it away. The other
/// user's listener is a plain `erl` (no distribution) run as `nobody`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uds_socket_of_another_users_process_is_refused() {
    need_root();
    let d = daemon(Subject::Epmdx);
    let dir = tmp("uds-planted");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sdir = dir.path().join("evil");
    std::fs::create_dir(&sdir).unwrap();
    std::os::unix::fs::chown(&sdir, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let alive_name = format!("evil_{}", d.port);
    let sock = sdir.join(&alive_name);
    let erl_bin = test_support::erl::erl_bin().unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&erl_bin)
        .args(["-noshell", "-start_epmd", "false", "-eval"])
        .arg(format!(
            "{{ok, L}} = gen_tcp:listen(0, [{{ifaddr, {{local, {:?}}}}}]), \
             io:format(\"ready~n\"), \
             F = fun G() -> {{ok, _}} = gen_tcp:accept(L), G() end, F().",
            sock.display().to_string()
        ))
        .env("HOME", "/tmp");
    let (_bg, first) = Bg::spawn(cmd);
    assert_eq!(first, "ready");
    // Disguise: directory and socket now belong to us; and the socket is
    // registered in epmdx as a node's uds transport.
    std::os::unix::fs::chown(&sdir, Some(0), Some(0)).unwrap();
    std::os::unix::fs::lchown(&sock, Some(0), Some(0)).unwrap();
    let path = sock.as_os_str().as_encoded_bytes().to_vec();
    let _entry = Client::local(d.port)
        .register_ext(
            epmd_client::NodeSpec::otp25(&alive_name),
            &[epmd_proto::ext::TransportRef {
                port: 0,
                proto: b"uds",
                extra: &path,
            }],
        )
        .await
        .expect("register the planted socket");
    let c = start(uds_only_client("victim", d.port)).await;
    let e = within(
        LONG,
        "connect to the planted socket",
        c.connect(&format!("{alive_name}@localhost")),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("runs as uid 65534"), "{e}");
}

// ---------------------------------------------------------------------------
// Logging (issue 8 item 2)
// ---------------------------------------------------------------------------

fn serve_cmd(d: &Daemon, name: &str, home: &Path, rust_log: &str) -> Command {
    let port = d.port.to_string();
    let mut cmd = erldist(
        &[
            "serve",
            "--name",
            name,
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
        ],
        home,
    );
    cmd.env("RUST_LOG", rust_log);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_logs_no_contents_at_info_and_a_bounded_term_at_debug() {
    let d = daemon(Subject::Epmdx);
    let home = tmp("log");
    let e_name = format!("log_e_{}@localhost", d.port);
    let mut e = erl(&d, &e_name, &[]);
    for level in ["info", "debug"] {
        let name = format!("log_{level}_{}@localhost", d.port);
        let (mut bg, _) = Bg::spawn(serve_cmd(&d, &name, home.path(), level));
        let reply = eval(
            &mut e,
            &format!(
                "{{echo, '{name}'}} ! {{self(), {{secret_marker, lists:duplicate(10000, $x)}}}}, \
                 receive {{secret_marker, L}} -> length(L) after 20000 -> timeout end."
            ),
        );
        assert_eq!(reply, "10000");
        assert!(bg.terminate(LONG).is_some());
        let log = bg.log();
        if level == "info" {
            assert!(!log.contains("secret_marker"), "contents at info:\n{log}");
        } else {
            let line = log
                .lines()
                .find(|l| l.contains("secret_marker"))
                .unwrap_or_else(|| panic!("no debug line:\n{log}"));
            assert!(line.len() < 400, "unbounded line of {} bytes", line.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4_mib_bignum_at_debug_level_does_not_stall_echo_or_sigterm() {
    let d = daemon(Subject::Epmdx);
    let home = tmp("bignum");
    let name = format!("big_{}@localhost", d.port);
    let (mut bg, _) = Bg::spawn(serve_cmd(&d, &name, home.path(), "debug"));
    let mut e = erl(&d, &format!("big_e_{}@localhost", d.port), &[]);
    let t = Instant::now();
    let reply = eval(
        &mut e,
        &format!(
            "B = 1 bsl 33554000, {{echo, '{name}'}} ! {{self(), B}}, \
             receive B -> ok after 30000 -> timeout end."
        ),
    );
    let echoed = t.elapsed();
    assert_eq!(reply, "ok");
    let log = bg.log();
    assert!(log.contains("bignum of 33554001 bits"), "{log}");
    // Another big one in flight, then SIGTERM at once.
    blocking(|| e.eval_nowait(&format!("{{echo, '{name}'}} ! {{self(), 1 bsl 33554000}}.")))
        .unwrap();
    let t = Instant::now();
    let st = bg
        .terminate(LONG)
        .expect("erldist serve did not exit on SIGTERM");
    let exited = t.elapsed();
    assert!(st.success(), "{st}");
    eprintln!("bignum figures: 4 MiB bignum echoed in {echoed:?} at debug level; exit {exited:?} after SIGTERM");
}

// ---------------------------------------------------------------------------
// Fail closed (issue 11 item 7)
// ---------------------------------------------------------------------------

/// `erldist serve` with `args` must exit 2 at start, saying `needle`.
fn refuses(home: &Path, args: &[&str], needles: &[&str]) {
    let mut all = vec![
        "serve",
        "--name",
        "fc@localhost",
        "--cookie",
        "c",
        "--epmd-port",
        "1",
    ];
    all.extend_from_slice(args);
    let cmd = erldist(&all, home);
    let what = format!("{cmd:?}");
    let o = blocking(|| run_cmd(cmd, 30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{what}: {}\n{err}", o.status);
    for n in needles {
        assert!(
            err.contains(n),
            "{what}: stderr does not name {n:?}:\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_security_settings_stop_the_node_naming_the_setting() {
    let home = tmp("failclosed");
    let h = home.path();
    let certs = Certs::generate(&h.join("certs"), &["n"], None);
    let (cert, key, ca) = (certs.cert("n"), certs.key("n"), certs.ca());
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );
    let missing = h.join("missing.pem");
    let missing = missing.to_str().unwrap();
    // Policy and rules on the command line.
    refuses(h, &["--policy", "rulez"], &["--policy", "rulez"]);
    refuses(h, &["--rule", "node=db*"], &["--rule", "node=db*"]);
    refuses(
        h,
        &["--rule", "cidr=10.0.0.0/33:inet_tls"],
        &["--rule", "10.0.0.0/33"],
    );
    refuses(h, &["--rule", "node=db*:tls"], &["--rule", "\"tls\""]);
    refuses(
        h,
        &["--same-host", "inet_tpc"],
        &["--same-host", "inet_tpc"],
    );
    refuses(
        h,
        &["--same-subnet", "uds,uds"],
        &["--same-subnet", "twice"],
    );
    refuses(h, &["--other", "tls"], &["--other", "\"tls\""]);
    // Certificates.
    fn tls<'a>(c: &'a str, k: &'a str, a: &'a str) -> [&'a str; 6] {
        ["--tls-cert", c, "--tls-key", k, "--tls-ca", a]
    }
    refuses(h, &tls(missing, key, ca), &["--tls-cert", missing]);
    refuses(h, &tls(cert, missing, ca), &["--tls-key", missing]);
    refuses(h, &tls(cert, key, missing), &["--tls-ca", missing]);
    refuses(h, &tls(cert, cert, ca), &["--tls-key"]);
    refuses(
        h,
        &["--tls-cert", cert],
        &["--tls-cert", "--tls-key", "--tls-ca"],
    );
    refuses(h, &["--listen", "inet_tls"], &["inet_tls", "--tls-cert"]);
    // The same in a configuration file.
    let file = |tag: &str, text: &str| -> String {
        let p = h.join(format!("{tag}.toml"));
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let f = file("pol", "[policy]\nsame_host = [\"inet_tpc\"]\n");
    refuses(h, &["--config", &f], &[&f, "same_host", "inet_tpc"]);
    let f = file(
        "rule",
        "[policy]\n[[policy.rule]]\ncidr = \"300.0.0.0/8\"\nuse = []\n",
    );
    refuses(h, &["--config", &f], &[&f, "rule[1].cidr"]);
    let f = file(
        "tlsopt",
        &format!("[tls]\ncert = {cert:?}\nkey = {key:?}\nca = {ca:?}\nverify = false\n"),
    );
    refuses(h, &["--config", &f], &[&f, "verify"]);
    let f = file(
        "tlspath",
        &format!("[tls]\ncert = {cert:?}\nkey = {key:?}\nca = {missing:?}\n"),
    );
    refuses(h, &["--config", &f], &[&f, "ca", missing]);
}

// ---------------------------------------------------------------------------
// gen-certs (issue 11 item 8)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_certs_keeps_the_ca_unless_forced_and_adds_certificates_from_it() {
    let home = tmp("gencerts");
    let h = home.path();
    let dir = h.join("certs");
    let dir_s = dir.to_str().unwrap();
    let out = expect_code(erldist(&["gen-certs", "--dir", dir_s, "--node", "a"], h), 0);
    assert!(out.contains("ca.pem"), "{out}");
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    // A second run into the same directory keeps everything.
    let o = blocking(|| {
        run_cmd(
            erldist(&["gen-certs", "--dir", dir_s, "--node", "b"], h),
            30,
        )
    });
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ca.pem") && err.contains("--force") && err.contains("--ca"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    assert!(!dir.join("b.pem").exists());
    // Add b, signed by the existing CA.
    let ca_s = dir.join("ca.pem").display().to_string();
    let cakey_s = dir.join("ca-key.pem").display().to_string();
    let out = expect_code(
        erldist(
            &[
                "gen-certs",
                "--dir",
                dir_s,
                "--node",
                "b",
                "--ca",
                &ca_s,
                "--ca-key",
                &cakey_s,
            ],
            h,
        ),
        0,
    );
    assert!(out.contains("b.pem") && !out.contains("ca.pem"), "{out}");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
    // a and b talk TLS to each other.
    let d = daemon(Subject::Epmdx);
    let certs = Certs { dir: dir.clone() };
    let mut ac = config("gca", d.port, &[Proto::InetTls], &h.join("u"));
    ac.tls = Some(certs.files("a"));
    let mut bc = config("gcb", d.port, &[Proto::InetTls], &h.join("u"));
    bc.tls = Some(certs.files("b"));
    let a = start(ac).await;
    let b = start(bc).await;
    within(LONG, "a connects to b over TLS", a.connect(b.name()))
        .await
        .unwrap();
    assert_eq!(wait_transport(&a, b.name()).await, "inet_tls");
    // --force replaces the CA.
    expect_code(
        erldist(&["gen-certs", "--dir", dir_s, "--node", "c", "--force"], h),
        0,
    );
    assert_ne!(std::fs::read(dir.join("ca.pem")).unwrap(), ca);
}

// ---------------------------------------------------------------------------
// A cookie mismatch inside TLS (issue 11 item 8)
// ---------------------------------------------------------------------------

fn ssl_dist_optfile(dir: &Path, certs: &Certs, name: &str) -> PathBuf {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let common = format!(
        "{{certfile,{}}},{{keyfile,{}}},{{cacertfile,{}}},{{verify,verify_peer}},{{versions,['tlsv1.3','tlsv1.2']}}",
        q(certs.cert(name)),
        q(certs.key(name)),
        q(certs.ca()),
    );
    let text = format!(
        "[{{server,[{common},{{fail_if_no_peer_cert,true}}]}},\n {{client,[{common}]}}].\n"
    );
    let path = dir.join(format!("{name}-ssl_dist.conf"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cookie_mismatch_inside_tls_is_reported_as_such() {
    let d = daemon(Subject::Epmdx);
    let dir = tmp("tls-cookie");
    let certs = Certs::generate(&dir.path().join("certs"), &["e", "r", "s"], None);
    let opt = ssl_dist_optfile(dir.path(), &certs, "e");
    let e_name = format!("e_tlsck_{}@localhost", d.port);
    let opt_s = opt.display().to_string();
    let mut e = erl(
        &d,
        &e_name,
        &["-proto_dist", "inet_tls", "-ssl_dist_optfile", &opt_s],
    );
    let rc = RuleConfig {
        same_host: vec!["inet_tls".into()],
        ..RuleConfig::default()
    };
    // Rust -> a real inet_tls_dist node, wrong cookie.
    let mut c = config("r_tlsck", d.port, &[Proto::InetTls], &dir.path().join("u"));
    c.cookie = "not-the-cookie".into();
    c.tls = Some(certs.files("r"));
    c.policy = std::sync::Arc::new(RulePolicy::new(&rc).unwrap());
    let r = start(c).await;
    let err = within(LONG, "wrong cookie to erl", r.connect(&e_name))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cookie"), "{err}");
    assert!(!err.contains("close_notify"), "{err}");
    // erldist -> erldist over TLS, wrong cookie.
    let mut sc = config("s_tlsck", d.port, &[Proto::InetTls], &dir.path().join("u"));
    sc.tls = Some(certs.files("s"));
    let s = start(sc).await;
    let err = within(LONG, "wrong cookie to erldist", r.connect(s.name()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cookie"), "{err}");
    assert!(!err.contains("close_notify"), "{err}");
    // With the right cookie both work (so it was the cookie).
    let mut c = config("r2_tlsck", d.port, &[Proto::InetTls], &dir.path().join("u"));
    c.tls = Some(certs.files("r"));
    c.policy = std::sync::Arc::new(RulePolicy::new(&rc).unwrap());
    let r2 = start(c).await;
    within(LONG, "right cookie to erl", r2.connect(&e_name))
        .await
        .unwrap();
    within(LONG, "right cookie to erldist", r2.connect(s.name()))
        .await
        .unwrap();
    assert_eq!(wait_transport(&r2, &e_name).await, "inet_tls");
    let _ = eval(&mut e, "ok.");
}
