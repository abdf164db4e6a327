//! `-allow` and `-rate_limit` from real non-local peers: epmdx runs in one
//! network namespace, clients in two others on the same subnet; local
//! peers (inside the daemon's namespace) are never refused. Needs root and
//! iproute2, like the other netns tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use test_support::metrics::{scrape, value};
use test_support::netns::{Host, Namespace, Subnet, Topology};
use test_support::process::{run_with_timeout, Background};
use test_support::{epmdx_bin, wait_until};

const PORT: u16 = 4471;
/// `-metrics` on the server's loopback (its own namespace: no clash).
const METRICS: &str = "127.0.0.1:4472";

/// What a NAMES request got: the reply's length, or closed without a byte.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reply(usize),
    ClosedSilently,
    Failed(String),
}

fn ask_names(ns: &Namespace, addr: SocketAddr) -> Answer {
    let r = ns.run_in(|| -> std::io::Result<usize> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(&[0, 1, 110])?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf.len())
    });
    match r {
        Ok(Ok(0)) => Answer::ClosedSilently,
        Ok(Ok(n)) => Answer::Reply(n),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Answer::ClosedSilently,
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(e) => Answer::Failed(format!("{e:#}")),
    }
}

struct Lab {
    topo: Topology,
    server: SocketAddr,
}

impl Lab {
    fn build(prefix: &str, net: u8) -> Result<Self> {
        let subnets = [Subnet {
            gw4: format!("10.{net}.1.254"),
            gw6: None,
        }];
        let hosts: Vec<Host> = ["srv", "ok", "bad"]
            .iter()
            .zip(1..)
            .map(|(role, i)| Host {
                role: (*role).to_owned(),
                subnet: 0,
                v4: format!("10.{net}.1.{i}"),
                v6: None,
            })
            .collect();
        Ok(Self {
            topo: Topology::build(prefix, &subnets, &hosts)?,
            server: format!("10.{net}.1.1:{PORT}").parse()?,
        })
    }

    /// `epmdx_refused_total{reason}` as the daemon's own host scrapes it.
    fn refused(&self, reason: &str) -> Result<f64> {
        let addr: SocketAddr = METRICS.parse()?;
        let text = self.ns("srv").run_in(|| scrape(addr))??;
        value(
            &text,
            &format!(r#"epmdx_refused_total{{reason="{reason}"}}"#),
        )
    }

    fn ns(&self, role: &str) -> &Namespace {
        self.topo.host(role).expect("lab host")
    }

    /// epmdx in the server's namespace with `args` and `env`, answering.
    fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Background> {
        let port = PORT.to_string();
        let mut cmd = self.ns("srv").command(epmdx_bin());
        cmd.args(["-port", &port])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let daemon = Background::spawn(&mut cmd).context("spawn epmdx")?;
        let local: SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
        ensure!(
            wait_until(Duration::from_secs(10), || {
                matches!(ask_names(self.ns("srv"), local), Answer::Reply(_))
            }),
            "epmdx never answered locally"
        );
        Ok(daemon)
    }
}

#[test]
fn allow_list_refuses_outsiders_silently_and_never_locals() -> Result<()> {
    let lab = Lab::build("eal", 78)?;
    for (args, env) in [
        (
            vec!["-allow", "10.78.1.2/32, 192.0.2.0/24", "-metrics", METRICS],
            vec![],
        ),
        (
            vec!["-metrics", METRICS],
            vec![("EPMDX_ALLOW", "10.78.1.2,2001:db8::/32")],
        ),
    ] {
        let _daemon = lab.start(&args, &env)?;
        let inside = ask_names(lab.ns("ok"), lab.server);
        assert!(matches!(inside, Answer::Reply(n) if n >= 4), "{inside:?}");
        for _ in 0..3 {
            assert_eq!(
                ask_names(lab.ns("bad"), lab.server),
                Answer::ClosedSilently,
                "a peer outside the list gets no reply ({args:?} {env:?})"
            );
        }
        assert_eq!(lab.refused("allow")?, 3.0, "each refusal counted");
        // Local peers: loopback, and the host's own address.
        for addr in [format!("127.0.0.1:{PORT}").parse()?, lab.server] {
            let a = ask_names(lab.ns("srv"), addr);
            assert!(matches!(a, Answer::Reply(_)), "local via {addr}: {a:?}");
        }
    }
    // No list: everyone, as the C epmd.
    let _daemon = lab.start(&[], &[])?;
    let a = ask_names(lab.ns("bad"), lab.server);
    assert!(matches!(a, Answer::Reply(_)), "{a:?}");
    Ok(())
}

#[test]
fn rate_limit_is_per_source_and_spares_locals() -> Result<()> {
    let lab = Lab::build("ear", 79)?;
    let _daemon = lab.start(&["-rate_limit", "5", "-metrics", METRICS], &[])?;
    let t = Instant::now();
    let answers: Vec<Answer> = (0..12)
        .map(|_| ask_names(lab.ns("ok"), lab.server))
        .collect();
    let took = t.elapsed().as_secs_f64();
    let served = answers
        .iter()
        .filter(|a| matches!(a, Answer::Reply(_)))
        .count();
    let refused = answers
        .iter()
        .filter(|a| **a == Answer::ClosedSilently)
        .count();
    assert_eq!(served + refused, 12, "{answers:?}");
    assert!(
        answers[..5].iter().all(|a| matches!(a, Answer::Reply(_))),
        "the burst of 5 is served: {answers:?}"
    );
    // Burst 5, plus 5 tokens per second of the time the loop took.
    let allowed = 5 + (took * 5.0).ceil() as usize;
    assert!(
        served <= allowed && refused > 0,
        "served {served} of 12 in {took:.2}s (at most {allowed}): {answers:?}"
    );
    assert_eq!(lab.refused("rate")?, refused as f64, "each refusal counted");
    assert_eq!(lab.refused("allow")?, 0.0);
    // Another source has its own bucket; locals are never limited.
    let other = ask_names(lab.ns("bad"), lab.server);
    assert!(matches!(other, Answer::Reply(_)), "{other:?}");
    for _ in 0..20 {
        let a = ask_names(lab.ns("srv"), lab.server);
        assert!(matches!(a, Answer::Reply(_)), "local: {a:?}");
    }
    // The limited source is served again once tokens refill.
    ensure!(
        wait_until(Duration::from_secs(5), || matches!(
            ask_names(lab.ns("ok"), lab.server),
            Answer::Reply(_)
        )),
        "the limited source was never served again"
    );
    Ok(())
}

#[test]
fn malformed_access_settings_stop_the_daemon_naming_them() -> Result<()> {
    let port = test_support::free_port().to_string();
    // (arguments, environment, the setting the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 6] = [
        (&["-allow", "10.0.0.0/33"], &[], "-allow"),
        (&["-allow", "10.0.0.0/8,"], &[], "-allow"),
        (&["-allow", "example.com"], &[], "-allow"),
        (&[], &[("EPMDX_ALLOW", "::/129")], "EPMDX_ALLOW"),
        (&["-rate_limit", "0"], &[], "-rate_limit"),
        (&[], &[("EPMDX_RATE_LIMIT", "ten")], "EPMDX_RATE_LIMIT"),
    ];
    for (args, env, name) in cases {
        let mut cmd = Command::new(epmdx_bin());
        cmd.args(["-port", &port])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let out = run_with_timeout(&mut cmd, Duration::from_secs(10))?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {err}");
        assert!(
            err.contains(name),
            "{args:?} {env:?}: message names {name}: {err}"
        );
    }
    Ok(())
}
