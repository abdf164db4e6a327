//! The multi-transport extension end to end, through `epmd_client` and the
//! epmdx binary.
//!
//! - [`seed_illustration`] — nodes `s` (TCP + TLS + UDS over one connection),
//!   `k` (legacy ALIVE2) and `m` (TCP + TLS), as in the 2013 e-mail; legacy
//!   callers see the plain-TCP default, else TLS (docs/protocol.md §4).
//! - [`ownership`] — only the registering connection may change a node, and
//!   closing it removes every transport.
//! - [`bounds`] — each refusal gets its documented status and leaves the
//!   registration untouched.
//! - [`uds_hidden_from_remote_callers`] — a caller in another network
//!   namespace never sees `uds` transports and cannot use local-only
//!   commands (needs root; fails unless `EPMDX_SKIP_NETNS=1`).
//! - [`fallback_against_otp_epmd`] — Debian's C epmd.
//! - [`cli_json`] — `epmdx nodes` and `epmdx lookup` JSON output.
//!
//! Every daemon runs on a private port (never 4369) and is killed by PID
//! when its test ends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::*;
use epmd_client::{ClientError, Lookup, NodeSpec};
use epmd_proto::ext::{self, NodeRecord, Status};
use epmd_proto::legacy::{self, PortInfo};
use epmd_proto::{code, frame};
use serde_json::Value;
use test_support::{Daemon, Subject};

const S_TCP: u16 = 49645;
const S_TLS: u16 = 41477;
const K_PORT: u16 = 38558;

fn uds_path() -> String {
    format!("/tmp/epmdx-test-{}/s.sock", std::process::id())
}

fn t3(proto: &str, port: u16, extra: &str) -> (String, u16, String) {
    (proto.to_string(), port, extra.to_string())
}

/// `s`'s three transports as a local caller sees them.
fn s_all() -> Vec<(String, u16, String)> {
    vec![
        t3("inet_tcp", S_TCP, ""),
        t3("inet_tls", S_TLS, ""),
        t3("uds", 0, &uds_path()),
    ]
}

/// `epmdx -port P -names` output.
async fn legacy_names_cli(port: u16) -> Result<String> {
    let out = run_epmdx(vec!["-port".into(), port.to_string(), "-names".into()]).await?;
    ensure!(out.status.success(), "epmdx -names: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// 1. The seed's illustration
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_illustration() -> Result<()> {
    let d = start_epmdx(&[], &[]);
    let c = client(&d);
    let path = uds_path();

    // s: TCP first, then TLS and UDS over the same connection.
    let mut s = c
        .register_ext(NodeSpec::otp25("s"), &[tr("inet_tcp", S_TCP, "")])
        .await?;
    s.add(&[tr("inet_tls", S_TLS, ""), tr("uds", 0, &path)])
        .await?;
    // k: the legacy way.
    let _k = c.register(&alive2("k", K_PORT)).await?;
    // m: TCP and TLS at once.
    let _m = c
        .register_ext(
            NodeSpec::otp25("m"),
            &[tr("inet_tcp", 50001, ""), tr("inet_tls", 50002, "")],
        )
        .await?;
    // t: TLS registered before TCP; tlsonly: no TCP at all.
    let mut t = c
        .register_ext(NodeSpec::otp25("t"), &[tr("inet_tls", 50011, "")])
        .await?;
    t.add(&[tr("inet_tcp", 50012, "")]).await?;
    let _tlsonly = c
        .register_ext(NodeSpec::otp25("tlsonly"), &[tr("inet_tls", 50021, "")])
        .await?;

    // NAMES3: every node, newest first, with all transports (we are local).
    let n3 = c.names3().await?;
    ensure!(
        n3.epmd_port == u32::from(d.port),
        "NAMES3 port {}",
        n3.epmd_port
    );
    let order: Vec<String> = n3
        .nodes
        .iter()
        .map(|n| String::from_utf8_lossy(&n.name).into_owned())
        .collect();
    ensure!(
        order == ["tlsonly", "t", "m", "k", "s"],
        "NAMES3 order {order:?}"
    );
    let rs = find(&n3, "s").context("NAMES3 lacks s")?;
    ensure!(!rs.legacy && triples(rs) == s_all(), "NAMES3 s: {rs:?}");
    ensure!((rs.node_type, rs.high, rs.low) == (77, 6, 6), "{rs:?}");
    let rk = find(&n3, "k").context("NAMES3 lacks k")?;
    ensure!(
        rk.legacy && triples(rk) == [t3("", K_PORT, "")],
        "NAMES3 k: {rk:?}"
    );
    let rm = find(&n3, "m").context("NAMES3 lacks m")?;
    ensure!(
        triples(rm) == [t3("inet_tcp", 50001, ""), t3("inet_tls", 50002, "")],
        "NAMES3 m: {rm:?}"
    );

    // Legacy NAMES (the OTP client mode): the plain-TCP default, else TLS
    // (docs/protocol.md §4).
    let text = legacy_names_cli(d.port).await?;
    ensure!(
        text.starts_with(&format!(
            "epmd: up and running on port {} with data:\n",
            d.port
        )),
        "-names: {text}"
    );
    for line in [
        format!("name s at port {S_TCP}\n"),
        format!("name k at port {K_PORT}\n"),
        "name m at port 50001\n".into(),
        "name t at port 50012\n".into(),
        "name tlsonly at port 50021\n".into(),
    ] {
        ensure!(text.contains(&line), "-names lacks {line:?}: {text}");
    }
    for p in [S_TLS, 50002, 50011] {
        ensure!(
            !text.contains(&format!("port {p}\n")),
            "-names shows TLS port {p}: {text}"
        );
    }
    let listed = names(&c).await?;
    ensure!(
        listed
            == [
                ("tlsonly".into(), 50021),
                ("t".into(), 50012),
                ("m".into(), 50001),
                ("k".into(), K_PORT),
                ("s".into(), S_TCP)
            ],
        "NAMES {listed:?}"
    );

    // PORT_PLEASE3: filtered, in the caller's order.
    let only_tcp = c.port_please3("s", &["inet_tcp"]).await?.context("s")?;
    ensure!(
        triples(&only_tcp) == [t3("inet_tcp", S_TCP, "")],
        "{only_tcp:?}"
    );
    let both = c
        .port_please3("s", &["inet_tls", "inet_tcp"])
        .await?
        .context("s")?;
    ensure!(
        triples(&both) == [t3("inet_tls", S_TLS, ""), t3("inet_tcp", S_TCP, "")],
        "[inet_tls, inet_tcp]: {both:?}"
    );
    let all = c.port_please3("s", &[]).await?.context("s")?;
    ensure!(triples(&all) == s_all(), "[]: {all:?}");
    let uds = c.port_please3("s", &["uds"]).await?.context("s")?;
    ensure!(triples(&uds) == [t3("uds", 0, &path)], "[uds]: {uds:?}");
    let none = c
        .port_please3("s", &["inet6_tls", "sctp"])
        .await?
        .context("s")?;
    ensure!(
        none.transports.is_empty(),
        "unregistered protocols returned transports: {none:?}"
    );
    ensure!(c.port_please3("nobody", &[]).await?.is_none());

    // PORT_PLEASE2: the TCP port, never TLS or UDS, whatever came first.
    let p2 = c.port_please("s").await?.context("PORT_PLEASE2 s missed")?;
    ensure!(
        p2 == PortInfo {
            port: S_TCP,
            node_type: 77,
            protocol: 0,
            high: 6,
            low: 6,
            name: b"s".to_vec(),
            extra: Vec::new(),
        },
        "PORT_PLEASE2 s: {p2:?}"
    );
    ensure!(port2(&c, "t").await? == Some(50012), "t: TLS was first");
    ensure!(port2(&c, "m").await? == Some(50001));
    ensure!(
        port2(&c, "tlsonly").await? == Some(50021),
        "a TLS-only node is its TLS port to a legacy caller"
    );
    ensure!(port2(&c, "k").await? == Some(K_PORT));

    // An extended lookup finds the legacy node, marked as such.
    for protos in [&["inet_tls"][..], &["inet_tcp", "inet_tls"][..], &[][..]] {
        match c.lookup("k", protos).await? {
            Lookup::Found(NodeRecord {
                legacy: true,
                ref transports,
                ref name,
                ..
            }) if name == b"k"
                && transports.len() == 1
                && transports[0].proto.is_empty()
                && transports[0].port == K_PORT => {}
            other => bail!("lookup k {protos:?}: {other:?}"),
        }
    }
    match c.lookup("s", &["inet_tls"]).await? {
        Lookup::Found(r) if triples(&r) == [t3("inet_tls", S_TLS, "")] => {}
        other => bail!("lookup s [inet_tls]: {other:?}"),
    }
    ensure!(c.lookup("nobody", &[]).await? == Lookup::NotFound);
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Ownership
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership() -> Result<()> {
    let d = start_epmdx(&[], &[]);
    let addr = d.addr();
    let c = client(&d);
    let s = c
        .register_ext(
            NodeSpec::otp25("s"),
            &[tr("inet_tcp", S_TCP, ""), tr("inet_tls", S_TLS, "")],
        )
        .await?;
    let first_creation = s.creation();
    let baseline = c.port_please3("s", &[]).await?.context("s")?;

    // A second connection cannot register s, in either protocol version.
    match c
        .register_ext(NodeSpec::otp25("s"), &[tr("uds", 0, "/tmp/evil.sock")])
        .await
    {
        Err(ClientError::Refused(Status::NameInUse)) => {}
        other => bail!("second ALIVE3 for s: {other:?}"),
    }
    match c.register(&alive2("s", 40000)).await {
        Err(ClientError::Refused(_)) => {}
        other => bail!("ALIVE2 for s from another connection: {other:?}"),
    }
    // Nor add to it from its own registration of another node...
    let mut c2 = Raw::connect(addr).await?;
    let (st, _) = c2
        .alive3(&alive3("c2", &[tr("inet_tcp", 40001, "")]))
        .await?;
    ensure!(st == Status::Ok);
    let (st, _) = c2
        .alive3(&alive3("s", &[tr("uds", 0, "/tmp/evil.sock")]))
        .await?;
    ensure!(
        st == Status::NodeMismatch,
        "follow-up ALIVE3 naming s: {st:?}"
    );
    // ... nor remove from it.
    let r = exchange(addr, &ext::Unreg3Req { proto: b"inet_tls" }.encode()).await?;
    ensure!(
        r == ext::encode_unreg3_reply(Status::NotRegistered),
        "{r:?}"
    );
    ensure!(c2.unreg3("inet_tls").await? == Status::NoSuchTransport);
    let now = c.port_please3("s", &[]).await?.context("s")?;
    ensure!(now == baseline, "s changed: {now:?}");

    // Closing s's connection removes all its transports.
    s.close();
    eventually("s gone from NAMES3", SETTLE, || {
        let c = c.clone();
        async move { c.names3().await.is_ok_and(|n| find(&n, "s").is_none()) }
    })
    .await?;
    ensure!(
        c.port_please3("s", &[]).await?.is_none(),
        "PORT_PLEASE3 s hit"
    );
    ensure!(
        c.port_please3("s", &["inet_tls"]).await?.is_none(),
        "PORT_PLEASE3 s [inet_tls] hit"
    );
    ensure!(port2(&c, "s").await?.is_none(), "PORT_PLEASE2 s hit");
    ensure!(c.lookup("s", &[]).await? == Lookup::NotFound);
    // c2 is untouched, and the name is free again, with the next creation.
    ensure!(port2(&c, "c2").await? == Some(40001));
    let again = c
        .register_ext(NodeSpec::otp25("s"), &[tr("inet_tls", 40002, "")])
        .await?;
    ensure!(
        again.creation() == first_creation.wrapping_add(1).max(4),
        "creation {} after {first_creation}",
        again.creation()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Bounds
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds() -> Result<()> {
    let d = start_epmdx(&[], &[]);
    let addr = d.addr();
    let c = client(&d);
    let mut s = c
        .register_ext(
            NodeSpec::otp25("s"),
            &[tr("inet_tcp", S_TCP, ""), tr("inet_tls", S_TLS, "")],
        )
        .await?;
    let baseline = c.port_please3("s", &[]).await?.context("s")?;
    let untouched = |why: String| {
        let (c, baseline) = (c.clone(), baseline.clone());
        async move {
            let now = c.port_please3("s", &[]).await?.context("s vanished")?;
            ensure!(now == baseline, "after {why}: s is {now:?}");
            ensure!(
                port2(&c, "s").await? == Some(S_TCP),
                "after {why}: PORT_PLEASE2"
            );
            Ok::<_, anyhow::Error>(())
        }
    };

    let long = "a".repeat(33);
    let max_ok = "a".repeat(32);
    let seventeen: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
    let big_extra = "x".repeat(1021);
    type Case<'a> = (&'a str, Vec<(&'a str, u16, &'a str)>, Status);
    let cases: Vec<Case<'_>> = vec![
        ("uppercase", vec![("INET_SCTP", 1, "")], Status::BadProtocol),
        ("33 bytes", vec![(&long, 1, "")], Status::BadProtocol),
        ("empty", vec![("", 1, "")], Status::BadProtocol),
        ("digit first", vec![("6tcp", 1, "")], Status::BadProtocol),
        ("dash", vec![("in-et", 1, "")], Status::BadProtocol),
        (
            "repeated in one request",
            vec![("sctp", 1, ""), ("sctp", 2, "")],
            Status::BadProtocol,
        ),
        (
            "one bad among good",
            vec![("sctp", 1, ""), ("Bad", 2, "")],
            Status::BadProtocol,
        ),
        (
            "already registered",
            vec![("inet_tcp", 9, "")],
            Status::ProtoInUse,
        ),
        (
            "17 in one request",
            seventeen.iter().map(|p| (p.as_str(), 1, "")).collect(),
            Status::TooManyTransports,
        ),
        (
            "15 more (17 in all)",
            seventeen[..15]
                .iter()
                .map(|p| (p.as_str(), 1, ""))
                .collect(),
            Status::TooManyTransports,
        ),
        (
            "extra over 1020 bytes",
            vec![("sctp", 1, &big_extra)],
            Status::Refused,
        ),
    ];
    for (why, ts, want) in &cases {
        let ts: Vec<_> = ts.iter().map(|&(p, port, e)| tr(p, port, e)).collect();
        match s.add(&ts).await {
            Err(ClientError::Refused(st)) if st == *want => {}
            other => bail!("add {why}: {other:?}, want {want:?}"),
        }
        untouched(format!("add {why}")).await?;
    }
    // PORT_PLEASE3's protocol list is bounded the same way.
    let pp3_cases: Vec<(&str, Vec<&str>, Status)> = vec![
        ("uppercase", vec!["INET_TCP"], Status::BadProtocol),
        ("33 bytes", vec![long.as_str()], Status::BadProtocol),
        ("empty", vec![""], Status::BadProtocol),
        (
            "repeated",
            vec!["inet_tcp", "inet_tcp"],
            Status::BadProtocol,
        ),
        (
            "17 protocols",
            seventeen.iter().map(String::as_str).collect(),
            Status::TooManyTransports,
        ),
    ];
    for (why, protos, want) in &pp3_cases {
        match c.port_please3("s", protos).await {
            Err(ClientError::Refused(st)) if st == *want => {}
            other => bail!("PORT_PLEASE3 with {why}: {other:?}, want {want:?}"),
        }
    }
    let ok16: Vec<&str> = seventeen[..15]
        .iter()
        .map(String::as_str)
        .chain([max_ok.as_str()])
        .collect();
    let rec = c.port_please3("s", &ok16).await?.context("s")?;
    ensure!(rec.transports.is_empty(), "16 unknown protocols: {rec:?}");

    // UNREG3 of a protocol s does not have.
    match s.remove("sctp").await {
        Err(ClientError::Refused(Status::NoSuchTransport)) => {}
        other => bail!("UNREG3 sctp: {other:?}"),
    }
    untouched("UNREG3 sctp".into()).await?;

    // Follow-ups that describe another node: NodeMismatch. These need a raw
    // connection (the client always sends its own node's fields).
    let mut raw = Raw::connect(addr).await?;
    let (st, _) = raw
        .alive3(&alive3("r", &[tr("inet_tcp", 40100, "")]))
        .await?;
    ensure!(st == Status::Ok);
    let r_base = c.port_please3("r", &[]).await?.context("r")?;
    let mut other_name = alive3("other", &[tr("sctp", 1, "")]);
    let mut hidden = alive3("r", &[tr("sctp", 1, "")]);
    hidden.node_type = 72;
    let mut versions = alive3("r", &[tr("sctp", 1, "")]);
    versions.low = 5;
    for (why, req) in [
        ("another name", &mut other_name),
        ("another node type", &mut hidden),
        ("another version range", &mut versions),
    ] {
        let (st, _) = raw.alive3(req).await?;
        ensure!(st == Status::NodeMismatch, "follow-up with {why}: {st:?}");
        let now = c.port_please3("r", &[]).await?.context("r vanished")?;
        ensure!(now == r_base, "r changed after {why}: {now:?}");
    }
    ensure!(c.port_please3("other", &[]).await?.is_none());
    untouched("raw follow-ups".into()).await?;

    // Refused first registrations leave nothing behind.
    let name_1021 = "n".repeat(1021);
    type FirstCase<'a> = (String, Vec<(&'a str, u16, &'a str)>, Status);
    let first_cases: Vec<FirstCase<'_>> = vec![
        ("b1".into(), vec![("Bad", 1, "")], Status::BadProtocol),
        ("b2".into(), vec![], Status::Refused),
        (
            "b3".into(),
            seventeen.iter().map(|p| (p.as_str(), 1, "")).collect(),
            Status::TooManyTransports,
        ),
        (
            name_1021.clone(),
            vec![("inet_tcp", 1, "")],
            Status::Refused,
        ),
        ("s".into(), vec![("sctp", 1, "")], Status::NameInUse),
    ];
    for (name, ts, want) in &first_cases {
        let ts: Vec<_> = ts.iter().map(|&(p, port, e)| tr(p, port, e)).collect();
        match c.register_ext(NodeSpec::otp25(name), &ts).await {
            Err(ClientError::Refused(st)) if st == *want => {}
            other => bail!(
                "first ALIVE3 {}: {other:?}, want {want:?}",
                &name[..name.len().min(8)]
            ),
        }
    }
    let n3 = c.names3().await?;
    ensure!(n3.nodes.len() == 2, "refused registrations left {n3:?}");
    untouched("refused first registrations".into()).await?;

    // Up to 16 transports is fine; the 17th is refused.
    let fourteen: Vec<String> = (0..13)
        .map(|i| format!("q{i}"))
        .chain([max_ok.clone()])
        .collect();
    s.add(
        &fourteen
            .iter()
            .enumerate()
            .map(|(i, p)| tr(p, 1000 + i as u16, ""))
            .collect::<Vec<_>>(),
    )
    .await?;
    let full = c.port_please3("s", &[]).await?.context("s")?;
    ensure!(full.transports.len() == 16, "{full:?}");
    match s.add(&[tr("sctp", 1, "")]).await {
        Err(ClientError::Refused(Status::TooManyTransports)) => {}
        other => bail!("17th transport: {other:?}"),
    }
    ensure!(c.port_please3("s", &[]).await?.context("s")? == full);

    // UNREG3 of TCP leaves legacy callers the TLS port; adding TCP back
    // restores it.
    s.remove("inet_tcp").await?;
    ensure!(
        port2(&c, "s").await? == Some(S_TLS),
        "PORT_PLEASE2 after UNREG3 inet_tcp"
    );
    ensure!(
        names(&c)
            .await?
            .iter()
            .any(|(n, p)| n == "s" && *p == S_TLS),
        "NAMES without TCP"
    );
    let rec = c.port_please3("s", &["inet_tls"]).await?.context("s")?;
    ensure!(triples(&rec) == [t3("inet_tls", S_TLS, "")]);
    s.add(&[tr("inet_tcp", 40200, "")]).await?;
    ensure!(port2(&c, "s").await? == Some(40200));
    match s.remove("inet_tcp").await {
        Ok(()) => {}
        other => bail!("UNREG3 inet_tcp: {other:?}"),
    }
    match s.remove("inet_tcp").await {
        Err(ClientError::Refused(Status::NoSuchTransport)) => {}
        other => bail!("second UNREG3 inet_tcp: {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. UDS visibility and local-only commands, from another network namespace
// ---------------------------------------------------------------------------

const PROBE_ENV: &str = "EPMDX_NETNS_PROBE";

/// Not a test of its own: the entry point that [`uds_hidden_from_remote_callers`]
/// runs inside the network namespace (`ip netns exec NS <this binary>
/// netns_probe_helper --exact`). Without `EPMDX_NETNS_PROBE` it does nothing.
///
/// The variable holds `ADDR;HEX,HEX,...`: one request per hex string, each
/// on its own connection. For each it prints `PROBE <i> OK <hex reply>` (the
/// bytes before the daemon closed, possibly none) or `PROBE <i> ERR <why>`.
#[test]
fn netns_probe_helper() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (addr, reqs) = spec.split_once(';').expect("ADDR;REQS");
    let addr: SocketAddr = addr.parse().expect("probe address");
    for (i, hex) in reqs.split(',').enumerate() {
        let req = unhex(hex);
        match probe_once(addr, &req) {
            Ok(reply) => println!("PROBE {i} OK {}", to_hex(&reply)),
            Err(e) => println!("PROBE {i} ERR {e}"),
        }
    }
}

fn probe_once(addr: SocketAddr, req: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(req)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if is_closed_error(&e) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

use test_support::netns::ip;

/// A network namespace joined to this one by a veth pair on a private /30
/// of 10.213.0.0/16. Deleted on drop, even when the test fails.
#[derive(Debug)]
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create() -> Result<Self> {
        let pid = std::process::id();
        Self::remove_stale();
        let in_use = format!(
            "{}\n{}",
            ip(&["-4", "-o", "addr", "show"])?,
            ip(&["-4", "route"])?
        );
        let third = (0..200u32)
            .map(|i| (pid + i) % 200 + 20)
            .find(|x| !in_use.contains(&format!("10.213.{x}.")))
            .context("no free 10.213.x.0/30 subnet")?;
        let ns = Self {
            name: format!("epmdxt{pid}"),
            host_if: format!("exh{pid}"),
            host_ip: format!("10.213.{third}.1"),
            ns_ip: format!("10.213.{third}.2"),
        };
        let peer = format!("exn{pid}");
        let (n, h) = (ns.name.as_str(), ns.host_if.as_str());
        ip(&["netns", "add", n])?;
        ip(&["link", "add", h, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", n])?;
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", h])?;
        ip(&["link", "set", h, "up"])?;
        ip(&[
            "netns",
            "exec",
            n,
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &peer,
        ])?;
        ip(&["netns", "exec", n, "ip", "link", "set", &peer, "up"])?;
        ip(&["netns", "exec", n, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Deletes namespaces (and host veth ends) that an earlier run of this
    /// test left behind when it was killed before its cleanup ran: only
    /// names this test creates, for processes that no longer exist.
    fn remove_stale() {
        let Ok(list) = ip(&["netns", "list"]) else {
            return;
        };
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(pid) = name.strip_prefix("epmdxt") else {
                continue;
            };
            if pid.parse::<u32>().is_err() || std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                continue;
            }
            let _ = ip(&["netns", "del", name]);
            let _ = ip(&["link", "del", &format!("exh{pid}")]);
        }
    }

    /// Runs `program args` inside the namespace.
    fn exec(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<std::process::Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_cmd(&mut cmd, Duration::from_secs(60))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and so the pair; the
        // explicit link delete covers a half-built setup.
        for args in [
            vec!["netns", "del", self.name.as_str()],
            vec!["link", "del", self.host_if.as_str()],
        ] {
            let _ = run_cmd(Command::new("ip").args(&args), Duration::from_secs(20));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uds_hidden_from_remote_callers() -> Result<()> {
    if std::env::var("EPMDX_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("EPMDX_SKIP_NETNS=1: skipping the network-namespace test");
        return Ok(());
    }
    let ns = tokio::task::spawn_blocking(Netns::create).await?.context(
        "this test needs root and iproute2 (`ip netns`) to create a network namespace \
         and a veth pair; set EPMDX_SKIP_NETNS=1 to skip it explicitly",
    )?;
    // Relaxed mode, so STOP and KILL would act if a remote peer were allowed.
    let mut d = start_epmdx(&["-relaxed_command_check", "-address", &ns.host_ip], &[]);
    let c = client(&d);
    let path = uds_path();
    let _s = c
        .register_ext(
            NodeSpec::otp25("s"),
            &[
                tr("inet_tcp", S_TCP, ""),
                tr("inet_tls", S_TLS, ""),
                tr("uds", 0, &path),
            ],
        )
        .await?;
    let udsonly_path = format!("{path}.only");
    let _u = c
        .register_ext(NodeSpec::otp25("u"), &[tr("uds", 0, &udsonly_path)])
        .await?;
    let _k = c.register(&alive2("k", K_PORT)).await?;

    let remote: SocketAddr = format!("{}:{}", ns.host_ip, d.port).parse()?;
    let pp3 = |protos: &[&[u8]]| {
        ext::PortPlease3Req {
            protos: protos.to_vec(),
            name: b"s",
        }
        .encode()
    };
    let requests: Vec<(&str, Vec<u8>)> = vec![
        ("NAMES", frame::encode(&[code::NAMES_REQ])),
        ("PORT_PLEASE2 s", legacy::encode_port_please2(b"s")),
        ("PORT_PLEASE3 s []", pp3(&[])),
        (
            "PORT_PLEASE3 s [uds, inet_tls]",
            pp3(&[b"uds", b"inet_tls"]),
        ),
        ("PORT_PLEASE3 s [uds]", pp3(&[b"uds"])),
        ("NAMES3", ext::encode_names3()),
        ("ALIVE2", alive2("intruder", 40300).encode()),
        (
            "ALIVE3",
            alive3("intruder3", &[tr("inet_tcp", 40301, "")]).encode(),
        ),
        ("DUMP", frame::encode(&[code::DUMP_REQ])),
        ("KILL", frame::encode(&[code::KILL_REQ])),
        ("STOP", frame::encode(b"ss")),
        ("DUMP3", ext::encode_dump3()),
        ("UNREG3", ext::Unreg3Req { proto: b"uds" }.encode()),
    ];
    let spec = format!(
        "{remote};{}",
        requests
            .iter()
            .map(|(_, r)| to_hex(r))
            .collect::<Vec<_>>()
            .join(",")
    );
    let exe = std::env::current_exe()?;
    let exe = exe.to_string_lossy().into_owned();
    let out = {
        let ns_name = ns.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns_name, &exe])
                .args([
                    "netns_probe_helper",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(PROBE_ENV, spec);
            run_cmd(&mut cmd, Duration::from_secs(120))
        })
        .await??
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "probe in the namespace failed: {out:?}"
    );
    let mut replies = vec![None; requests.len()];
    for line in stdout.lines() {
        // libtest may print "test netns_probe_helper ... " on the same line.
        let Some((_, rest)) = line.split_once("PROBE ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let i: usize = parts.next().context("index")?.parse()?;
        let kind = parts.next().context("kind")?;
        let body = parts.next().unwrap_or("");
        ensure!(
            kind == "OK",
            "{} from the namespace: {body} (is {remote} reachable?)",
            requests[i].0
        );
        replies[i] = Some(unhex(body));
    }
    let reply = |i: usize| -> Result<&Vec<u8>> {
        replies[i]
            .as_ref()
            .ok_or_else(|| anyhow!("no probe result for {}: {stdout}", requests[i].0))
    };
    // Nothing the remote caller got mentions a UDS path.
    for (i, (what, _)) in requests.iter().enumerate() {
        let r = reply(i)?;
        ensure!(
            !r.windows(path.len()).any(|w| w == path.as_bytes()),
            "{what} showed the UDS path to a remote caller"
        );
    }
    // NAMES and PORT_PLEASE2 are answered, with the TCP default.
    let r = reply(0)?;
    ensure!(
        r.len() > 4
            && String::from_utf8_lossy(&r[4..]).contains(&format!("name s at port {S_TCP}\n")),
        "remote NAMES: {r:?}"
    );
    let info = PortInfo::decode_reply(reply(1)?)?.context("remote PORT_PLEASE2 s missed")?;
    ensure!(info.port == S_TCP, "remote PORT_PLEASE2: {info:?}");
    // PORT_PLEASE3 and NAMES3 are answered, without uds.
    let port3 = |i: usize| -> Result<NodeRecord> {
        let r = reply(i)?;
        let body = ext::check_reply16(r).with_context(|| format!("{}: {r:?}", requests[i].0))?;
        ext::decode_port3_body(body)?.map_err(|s| anyhow!("{}: status {s:?}", requests[i].0))
    };
    let all = port3(2)?;
    ensure!(
        triples(&all) == [t3("inet_tcp", S_TCP, ""), t3("inet_tls", S_TLS, "")],
        "remote PORT_PLEASE3 s []: {all:?}"
    );
    let pref = port3(3)?;
    ensure!(
        triples(&pref) == [t3("inet_tls", S_TLS, "")],
        "remote PORT_PLEASE3 s [uds, inet_tls]: {pref:?}"
    );
    let only_uds = port3(4)?;
    ensure!(
        only_uds.transports.is_empty(),
        "remote PORT_PLEASE3 s [uds]: {only_uds:?}"
    );
    let r = reply(5)?;
    let n3 = ext::decode_names3_body(ext::check_reply32(r).context("remote NAMES3 reply")?)?;
    for n in &n3.nodes {
        ensure!(
            n.transports.iter().all(|t| t.proto != "uds"),
            "remote NAMES3 shows uds: {n:?}"
        );
    }
    let rs = find(&n3, "s").context("remote NAMES3 lacks s")?;
    ensure!(triples(rs) == [t3("inet_tcp", S_TCP, ""), t3("inet_tls", S_TLS, "")]);
    ensure!(find(&n3, "k").is_some_and(|k| k.legacy));
    // Local-only commands are closed without a reply.
    for (i, (what, _)) in requests.iter().enumerate().skip(6) {
        let r = reply(i)?;
        ensure!(r.is_empty(), "remote {what} got a reply: {r:?}");
    }
    // ... and had no effect.
    ensure!(!d.has_exited(), "a remote KILL stopped the daemon");
    ensure!(
        port2(&c, "intruder").await?.is_none(),
        "remote ALIVE2 registered"
    );
    ensure!(
        c.port_please3("intruder3", &[]).await?.is_none(),
        "remote ALIVE3 registered"
    );
    let local = c
        .port_please3("s", &[])
        .await?
        .context("s stopped remotely")?;
    ensure!(triples(&local) == s_all(), "local view of s: {local:?}");
    let local_u = c.port_please3("u", &[]).await?.context("u")?;
    ensure!(triples(&local_u) == [t3("uds", 0, &udsonly_path)]);

    // The CLI, run inside the namespace, agrees.
    let bin = epmdx_bin().to_string_lossy().into_owned();
    let port = d.port.to_string();
    let ns_ref = &ns;
    let (lookup, nodes) = tokio::task::block_in_place(|| {
        let lookup = ns_ref.exec(
            &bin,
            &[
                "lookup",
                "s",
                "--host",
                &ns_ref.host_ip,
                "--port",
                &port,
                "--json",
            ],
            &[],
        );
        let nodes = ns_ref.exec(
            &bin,
            &[
                "nodes",
                "--host",
                &ns_ref.host_ip,
                "--port",
                &port,
                "--json",
            ],
            &[],
        );
        (lookup, nodes)
    });
    let (lookup, nodes) = (lookup?, nodes?);
    ensure!(lookup.status.success(), "remote epmdx lookup: {lookup:?}");
    ensure!(nodes.status.success(), "remote epmdx nodes: {nodes:?}");
    let lookup: Value = serde_json::from_slice(&lookup.stdout)?;
    ensure!(
        json_protos(&lookup) == ["inet_tcp", "inet_tls"],
        "remote epmdx lookup: {lookup}"
    );
    let nodes: Value = serde_json::from_slice(&nodes.stdout)?;
    ensure!(
        !nodes.to_string().contains("uds") && !nodes.to_string().contains(&path),
        "remote epmdx nodes shows uds: {nodes}"
    );
    drop(ns);
    Ok(())
}

/// The `proto` of each transport of a JSON node (`null` as "").
fn json_protos(node: &Value) -> Vec<String> {
    node["transports"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["proto"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// 5. Fallback against the C epmd
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_against_otp_epmd() -> Result<()> {
    let d = Daemon::start(Subject::Otp, &[]).with_context(|| {
        format!(
            "Debian's epmd ({}) must be installed for this test",
            Subject::Otp.bin().display()
        )
    })?;
    let c = client(&d);
    let _k = c.register(&alive2("k", K_PORT)).await?;
    match c.lookup("k", &["inet_tls", "inet_tcp"]).await? {
        Lookup::Legacy(Some(rec)) => {
            ensure!(rec.legacy && rec.name == b"k", "{rec:?}");
            ensure!(triples(&rec) == [t3("", K_PORT, "")], "{rec:?}");
            ensure!((rec.node_type, rec.high, rec.low) == (77, 6, 5), "{rec:?}");
        }
        other => bail!("lookup k against OTP epmd: {other:?}"),
    }
    ensure!(
        c.lookup("nobody", &[]).await? == Lookup::Legacy(None),
        "lookup of an unknown node against OTP epmd"
    );
    match c
        .register_ext(NodeSpec::otp25("s"), &[tr("inet_tcp", S_TCP, "")])
        .await
    {
        Err(ClientError::Unsupported) => {}
        other => bail!("register_ext against OTP epmd: {other:?}"),
    }
    ensure!(matches!(c.names3().await, Err(ClientError::Unsupported)));
    ensure!(matches!(
        c.port_please3("k", &[]).await,
        Err(ClientError::Unsupported)
    ));
    // The refused extended registration left nothing behind.
    ensure!(port2(&c, "s").await?.is_none());
    ensure!(port2(&c, "k").await? == Some(K_PORT));

    // The CLI falls back too, and says so.
    let out = run_epmdx(
        ["lookup", "k", "--port", &d.port.to_string(), "--json"]
            .map(String::from)
            .to_vec(),
    )
    .await?;
    ensure!(
        out.status.success(),
        "epmdx lookup against OTP epmd: {out:?}"
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        v["legacy"] == true
            && v["transports"][0]["port"] == K_PORT
            && v["transports"][0]["proto"].is_null(),
        "{v}"
    );
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("does not support the extension"),
        "no fallback notice: {out:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. CLI JSON
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json() -> Result<()> {
    let started = Instant::now();
    let d = start_epmdx(&[], &[]);
    let c = client(&d);
    let path = uds_path();
    let port = d.port.to_string();
    let _s = c
        .register_ext(
            NodeSpec::otp25("s"),
            &[
                tr("inet_tcp", S_TCP, ""),
                tr("inet_tls", S_TLS, ""),
                tr("uds", 0, &path),
            ],
        )
        .await?;
    let _k = c.register(&alive2("k", K_PORT)).await?;
    let cli = |args: &[&str]| run_epmdx(args.iter().map(|s| s.to_string()).collect());

    let out = cli(&["nodes", "--port", &port, "--json"]).await?;
    ensure!(out.status.success(), "epmdx nodes: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).context("epmdx nodes --json")?;
    ensure!(v["epmd_port"] == d.port, "{v}");
    let nodes = v["nodes"].as_array().context("nodes array")?;
    let node = |name: &str| nodes.iter().find(|n| n["name"] == name).cloned();
    let s = node("s").context("no s in epmdx nodes")?;
    ensure!(
        s["legacy"] == false && s["hidden"] == false && s["high_version"] == 6,
        "{s}"
    );
    ensure!(json_protos(&s) == ["inet_tcp", "inet_tls", "uds"], "{s}");
    let ts = &s["transports"];
    ensure!(
        ts[0]["port"] == S_TCP && ts[1]["port"] == S_TLS && ts[2]["port"] == 0,
        "{s}"
    );
    ensure!(ts[2]["extra"] == path.as_str(), "uds extra: {s}");
    let k = node("k").context("no k in epmdx nodes")?;
    ensure!(
        k["legacy"] == true
            && k["transports"][0]["port"] == K_PORT
            && k["transports"][0]["proto"].is_null(),
        "{k}"
    );

    let out = cli(&[
        "lookup", "s", "--port", &port, "--proto", "inet_tls", "--json",
    ])
    .await?;
    ensure!(out.status.success(), "epmdx lookup: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).context("epmdx lookup --json")?;
    ensure!(v["name"] == "s" && json_protos(&v) == ["inet_tls"], "{v}");
    ensure!(v["transports"][0]["port"] == S_TLS, "{v}");

    let out = cli(&[
        "lookup",
        "s",
        "--port",
        &port,
        "--proto",
        "uds,inet_tcp",
        "--json",
    ])
    .await?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(json_protos(&v) == ["uds", "inet_tcp"], "{v}");

    let out = cli(&["lookup", "nobody", "--port", &port, "--json"]).await?;
    ensure!(out.status.code() == Some(1), "lookup nobody: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout)?;
    ensure!(v["found"] == false && v["name"] == "nobody", "{v}");

    // The text form: the 2013 patch's NAMES3 line.
    let out = cli(&["nodes", "--port", &port]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        text.contains(&format!(
            "name s at port {S_TCP}#inet_tcp {S_TLS}#inet_tls 0#uds({path})"
        )),
        "epmdx nodes: {text}"
    );
    ensure!(
        text.contains(&format!("name k at port {K_PORT}#legacy")),
        "{text}"
    );
    eprintln!("cli_json: {:?}", started.elapsed());
    Ok(())
}
