//! Adapted Erlang nodes (and a stock node and a Rust node) on a real
//! multi-host topology built from network namespaces: the built-in policy
//! must pick the Unix socket between nodes of one host, plain TCP across a
//! subnet and TLS across a router, and both ends of every connection must
//! see the same transport.
//!
//! ```text
//!        subnet 10.232.1.0/24                 subnet 10.232.2.0/24
//!   h1 10.232.1.1 ──┐
//!     a, b, f       ├── br1 10.232.1.254 [router r] 10.232.2.254 ── h3 10.232.2.3
//!   h2 10.232.1.2 ──┘      (forwarding in r only)                      d, k, e (Rust)
//!     c, g, st (stock)
//! ```
//!
//! The same again over IPv6 (fd32:1::/64 and fd32:2::/64): `f`, `g` and
//! `k` speak only `inet6_tcp` and `inet6_tls`.
//!
//! Every host runs its own epmdx on port 4372 inside its namespace (never
//! 4369). The nodes use short names on hosts `h1`, `h2`, `h3`, which every
//! namespace resolves through `/etc/netns/<ns>/hosts` (bind-mounted over
//! `/etc/hosts` by `ip netns exec`). Erlang nodes are
//! `test_support::erl::ErlNode`s: `ERL_BIN` points at a wrapper that runs
//! `erl` under `ip netns exec`, in the namespace given by the node's
//! `-epmdx_test_netns` flag (a plain user flag to erl). This file holds a
//! single test, because `ERL_BIN` is process-wide.
//!
//! Needs root and iproute2; without them the test fails with a clear
//! message. `EPMDX_SKIP_NETNS=1` skips it explicitly. Namespaces are named
//! `eat<pid><role>`; they, the processes in them, their `/etc/netns`
//! entries and the temp directory are removed even when the test fails, and
//! leftovers of a killed earlier run (its pid gone) are removed first.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use common::*;

const SKIP_ENV: &str = "EPMDX_SKIP_NETNS";
const EPMD_PORT: u16 = 4372;
const NS_PREFIX: &str = "eat";
const ROLES: [&str; 4] = ["r", "h1", "h2", "h3"];

const IP_H1: &str = "10.232.1.1";
const IP_H2: &str = "10.232.1.2";
const IP_H3: &str = "10.232.2.3";
const GW_1: &str = "10.232.1.254";
const GW_2: &str = "10.232.2.254";
const IP6_H1: &str = "fd32:1::1";
const IP6_H2: &str = "fd32:1::2";
const IP6_H3: &str = "fd32:2::3";
const GW6_1: &str = "fd32:1::fe";
const GW6_2: &str = "fd32:2::fe";

fn run_cmd(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    Ok(out)
}

use test_support::netns::ip;

fn kill_pid(pid: i32) {
    if pid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The namespaces, their hosts files and a temp directory; all removed on
/// drop.
struct Topology {
    pid: u32,
    dir: TempDir,
}

impl Topology {
    fn ns(&self, role: &str) -> String {
        format!("{NS_PREFIX}{}{role}", self.pid)
    }

    fn create() -> Result<Self> {
        Self::remove_stale();
        let t = Self {
            pid: std::process::id(),
            dir: TempDir::new("netns")?,
        };
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost\n{IP_H1} h1\n{IP_H2} h2\n{IP_H3} h3\n\
                 {IP6_H1} h1\n{IP6_H2} h2\n{IP6_H3} h3\n"
        );
        for role in ROLES {
            let n = t.ns(role);
            ip(&["netns", "add", &n])?;
            ip(&["-n", &n, "link", "set", "lo", "up"])?;
            let etc = Path::new("/etc/netns").join(&n);
            std::fs::create_dir_all(&etc).with_context(|| format!("mkdir {}", etc.display()))?;
            std::fs::write(etc.join("hosts"), &hosts)?;
        }
        let r = t.ns("r");
        ip(&["-n", &r, "link", "add", "br1", "type", "bridge"])?;
        ip(&["-n", &r, "addr", "add", &format!("{GW_1}/24"), "dev", "br1"])?;
        ip(&[
            "-n",
            &r,
            "addr",
            "add",
            &format!("{GW6_1}/64"),
            "dev",
            "br1",
            "nodad",
        ])?;
        ip(&["-n", &r, "link", "set", "br1", "up"])?;
        for (port, host, addr, gw, addr6, gw6) in [
            ("ph1", t.ns("h1"), IP_H1, GW_1, IP6_H1, GW6_1),
            ("ph2", t.ns("h2"), IP_H2, GW_1, IP6_H2, GW6_1),
            ("ph3", t.ns("h3"), IP_H3, GW_2, IP6_H3, GW6_2),
        ] {
            ip(&[
                "-n", &r, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ])?;
            if port == "ph3" {
                ip(&["-n", &r, "addr", "add", &format!("{GW_2}/24"), "dev", port])?;
                ip(&[
                    "-n",
                    &r,
                    "addr",
                    "add",
                    &format!("{GW6_2}/64"),
                    "dev",
                    port,
                    "nodad",
                ])?;
            } else {
                ip(&["-n", &r, "link", "set", port, "master", "br1"])?;
            }
            ip(&["-n", &r, "link", "set", port, "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{addr6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "route", "add", "default", "via", gw])?;
            ip(&["-n", &host, "-6", "route", "add", "default", "via", gw6])?;
        }
        let out = run_cmd(Command::new("ip").args([
            "netns",
            "exec",
            &r,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward && \
             echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
        ]))?;
        ensure!(
            out.status.success(),
            "cannot enable ip_forward in {r}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t)
    }

    fn destroy(ns: &str) {
        if let Ok(pids) = ip(&["netns", "pids", ns]) {
            for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                kill_pid(p);
            }
        }
        let _ = ip(&["netns", "del", ns]);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        // Only if nothing else uses it.
        let _ = std::fs::remove_dir("/etc/netns");
    }

    /// Namespaces (and /etc/netns entries) of earlier runs whose process is
    /// gone.
    fn remove_stale() {
        test_support::netns::remove_stale(NS_PREFIX);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for role in ROLES {
            Self::destroy(&self.ns(role));
        }
    }
}

/// A process started under `ip netns exec` (which execs in place, so the
/// pid is the program's), killed by pid on drop.
struct NsProc {
    child: Child,
    log: PathBuf,
}

impl NsProc {
    fn start(ns: &str, program: &Path, args: &[&str], log: PathBuf, home: &Path) -> Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .env("HOME", home)
            .env_remove("ERL_EPMD_PORT")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {} in {ns}", program.display()))?;
        Ok(Self { child, log })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ip netns exec NS program args`, to completion.
fn ns_run(ns: &str, program: &Path, args: &[&str], home: &Path) -> Result<Output> {
    run_cmd(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .env("HOME", home),
    )
}

#[test]
fn three_hosts_two_subnets_with_erlang_nodes() -> Result<()> {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("{SKIP_ENV}=1: skipping the network-namespace topology test");
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    ensure!(
        root,
        "this test needs root to create network namespaces with `ip netns`; \
         run it as root (CI does) or set {SKIP_ENV}=1 to skip it"
    );
    ensure!(
        Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "this test needs iproute2's `ip` (apt-get install iproute2), or {SKIP_ENV}=1"
    );
    let t0 = Instant::now();
    let topo = Topology::create().context(
        "cannot build the namespaces (root and iproute2 with veth and bridge support \
         are needed; EPMDX_SKIP_NETNS=1 skips this test)",
    )?;
    let r = run(&topo);
    eprintln!("netns topology test took {:?}", t0.elapsed());
    r
}

fn run(topo: &Topology) -> Result<()> {
    let dir = topo.dir.path();
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;

    // erl inside a namespace: ERL_BIN → a wrapper around `ip netns exec`.
    let real_erl = test_support::erl::erl_bin()?;
    let wrapper = dir.join("erl-in-netns");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             ns=; prev=\n\
             for a in \"$@\"; do\n\
             \x20 [ \"$prev\" = -epmdx_test_netns ] && ns=$a\n\
             \x20 prev=$a\n\
             done\n\
             [ -n \"$ns\" ] || {{ echo 'erl-in-netns: no -epmdx_test_netns' >&2; exit 2; }}\n\
             exec ip netns exec \"$ns\" {} \"$@\"\n",
            real_erl.display()
        ),
    )?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    // The only test of this binary, and no thread has started nodes yet.
    std::env::set_var("ERL_BIN", &wrapper);

    // Certificates for every host name.
    let certs = dir.join("certs");
    let o = Command::new(erldist_bin())
        .args(["gen-certs", "--dir"])
        .arg(&certs)
        .args([
            "--node", "node", "--host", "h1", "--host", "h2", "--host", "h3",
        ])
        .output()?;
    ensure!(o.status.success(), "gen-certs: {o:?}");
    let c = |f: &str| certs.join(f).display().to_string();
    let (cert, key, ca) = (c("node.pem"), c("node-key.pem"), c("ca.pem"));
    let optfile = dir.join("ssl_dist.conf");
    std::fs::write(
        &optfile,
        format!(
            "[{{server, [{{certfile, \"{cert}\"}}, {{keyfile, \"{key}\"}}, \
             {{cacertfile, \"{ca}\"}}, {{verify, verify_peer}}, \
             {{fail_if_no_peer_cert, true}}]}},\n \
             {{client, [{{certfile, \"{cert}\"}}, {{keyfile, \"{key}\"}}, \
             {{cacertfile, \"{ca}\"}}, {{verify, verify_peer}}]}}].\n"
        ),
    )?;

    // One epmdx per host.
    let port = EPMD_PORT.to_string();
    let mut daemons = Vec::new();
    for h in ["h1", "h2", "h3"] {
        let ns = topo.ns(h);
        daemons.push(NsProc::start(
            &ns,
            &epmdx_bin(),
            &["-port", &port],
            dir.join(format!("epmdx-{h}.log")),
            &home,
        )?);
        let up = wait_until(WAIT, || {
            ns_run(&ns, &epmdx_bin(), &["nodes", "--port", &port], &home)
                .is_ok_and(|o| o.status.success())
        });
        ensure!(up, "epmdx did not come up in {ns}");
    }

    let erl = |name: &str, host: &str, protos: &[&str]| -> Result<ErlNode> {
        let uds = dir.join(format!("uds-{host}"));
        // Only the connections the test makes (no transitive connects by
        // global), so every node's view is exact.
        let mut args: Vec<String> = vec![
            "-epmdx_test_netns".into(),
            topo.ns(host),
            "-connect_all".into(),
            "false".into(),
        ];
        if !protos.is_empty() {
            args.extend([
                "-pa".into(),
                ebin().display().to_string(),
                "-epmd_module".into(),
                "epmdx_epmd".into(),
                "-proto_dist".into(),
            ]);
            args.extend(protos.iter().map(|p| p.to_string()));
            args.extend([
                "-ssl_dist_optfile".into(),
                optfile.display().to_string(),
                "-kernel".into(),
                "epmdx_uds_dir".into(),
                format!("\"{}\"", uds.display()),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ErlNode::start(&format!("{name}@{host}"), COOKIE, EPMD_PORT, &refs)
    };
    let all = ["epmdx_tcp", "epmdx_tls", "epmdx_uds"];
    let mut a = erl("a", "h1", &all)?;
    let mut b = erl("b", "h1", &all)?;
    let mut c = erl("c", "h2", &all)?;
    let mut st = erl("st", "h2", &[])?;
    let mut d = erl("d", "h3", &all)?;
    // IPv6 only: TCP and TLS over IPv6.
    let v6 = ["epmdx_tcp6", "epmdx_tls6"];
    let mut f = erl("f", "h1", &v6)?;
    let mut g = erl("g", "h2", &v6)?;
    let mut k = erl("k", "h3", &v6)?;
    let uds3 = dir.join("uds-h3").display().to_string();
    let e = NsProc::start(
        &topo.ns("h3"),
        &erldist_bin(),
        &[
            "serve",
            "--name",
            "e@h3",
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
            "--listen",
            "inet_tcp",
            "--listen",
            "inet_tls",
            "--listen",
            "uds",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--uds-dir",
            &uds3,
            "--policy",
            "rules",
        ],
        dir.join("e.log"),
        &home,
    )?;
    ensure!(
        wait_until(WAIT, || e.output().contains("listening on")),
        "erldist serve e@h3 did not come up:\n{}",
        e.output()
    );

    // The Unix socket is shown to local callers only.
    let local = b.eval("lists:keyfind(\"a\", 1, element(2, epmdx_epmd:names3(\"h1\"))).")?;
    ensure!(local.contains(",uds}"), "names3 on h1 from h1: {local}");
    let remote = c.eval("lists:keyfind(\"a\", 1, element(2, epmdx_epmd:names3(\"h1\"))).")?;
    ensure!(
        remote.contains("inet_tls") && !remote.contains("uds"),
        "names3 on h1 from h2: {remote}"
    );

    let diag = |what: &str, n: &ErlNode| format!("{what}:\n{}", n.output());
    let check = |from: &mut ErlNode, to: &mut ErlNode, want: &str| -> Result<()> {
        let (fname, tname) = (from.node().to_owned(), to.node().to_owned());
        ping_until_pong(from, &tname)?;
        let cf = conn(from, &tname)?;
        let ct = conn(to, &fname)?;
        ensure!(
            cf.transport == want && ct.transport == want,
            "{fname} → {tname}: expected {want}, the dialler sees {cf:?}, the acceptor {ct:?}\n{}\n{}",
            diag(&fname, from),
            diag(&tname, to)
        );
        Ok(())
    };
    check(&mut a, &mut b, "uds")?;
    check(&mut a, &mut c, "inet_tcp")?;
    check(&mut a, &mut d, "inet_tls")?;
    check(&mut c, &mut d, "inet_tls")?;
    check(&mut b, &mut c, "inet_tcp")?;
    // A stock node across the subnet: its ALIVE2 registration is read as TCP.
    check(&mut a, &mut st, "inet_tcp")?;
    // The same policy over IPv6.
    check(&mut f, &mut g, "inet6_tcp")?;
    check(&mut f, &mut k, "inet6_tls")?;
    check(&mut g, &mut k, "inet6_tls")?;

    // The Rust node across the router, both ways.
    let rust_conns = || -> Result<Vec<(String, String)>> {
        let o = ns_run(
            &topo.ns("h3"),
            &erldist_bin(),
            &[
                "connections",
                "e@h3",
                "--cookie",
                COOKIE,
                "--epmd-port",
                &port,
            ],
            &home,
        )?;
        ensure!(o.status.success(), "erldist connections: {o:?}");
        Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (p, t) = l.split_once(' ')?;
                Some((p.trim_matches('\'').to_owned(), t.trim().to_owned()))
            })
            .collect())
    };
    ping_until_pong(&mut c, "e@h3")?;
    let cc = conn(&mut c, "e@h3")?;
    ensure!(cc.transport == "inet_tls", "c → e: {cc:?}");
    let mut seen = Vec::new();
    let ok = wait_until(WAIT, || {
        seen = rust_conns().unwrap_or_default();
        seen.iter().any(|(p, t)| p == "c@h2" && t == "inet_tls")
    });
    ensure!(ok, "e's connections: {seen:?}\n{}", e.output());
    let o = ns_run(
        &topo.ns("h3"),
        &erldist_bin(),
        &[
            "connect",
            "e@h3",
            "a@h1",
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
        ],
        &home,
    )?;
    if !o.status.success() {
        bail!("erldist connect e@h3 a@h1: {o:?}\n{}", e.output());
    }
    let ca_ = conn(&mut a, "e@h3")?;
    ensure!(ca_.transport == "inet_tls", "a accepted e on {ca_:?}");
    let ok = wait_until(WAIT, || {
        seen = rust_conns().unwrap_or_default();
        seen.iter().any(|(p, t)| p == "a@h1" && t == "inet_tls")
    });
    ensure!(ok, "e's connections after dialling a: {seen:?}");

    // Every adapted node's own summary, exactly.
    for (n, want) in [
        (
            &mut a,
            "[{b@h1,uds},{c@h2,inet_tcp},{d@h3,inet_tls},{e@h3,inet_tls},{st@h2,inet_tcp}]",
        ),
        (&mut b, "[{a@h1,uds},{c@h2,inet_tcp}]"),
        (
            &mut c,
            "[{a@h1,inet_tcp},{b@h1,inet_tcp},{d@h3,inet_tls},{e@h3,inet_tls}]",
        ),
        (&mut d, "[{a@h1,inet_tls},{c@h2,inet_tls}]"),
        (&mut f, "[{g@h2,inet6_tcp},{k@h3,inet6_tls}]"),
        (&mut k, "[{f@h1,inet6_tls},{g@h2,inet6_tls}]"),
    ] {
        let v = n.eval("lists:sort(epmdx_select:connections()).")?;
        ensure!(v == want, "{}'s connections: {v}\n{}", n.node(), n.output());
    }
    let v = st.eval("nodes().")?;
    ensure!(v == "[a@h1]", "st's nodes(): {v}");
    drop(e);
    drop(daemons);
    Ok(())
}
