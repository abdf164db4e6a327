//! Listening sockets: `-address`, its parse and bind errors, the socket
//! limit, and a port that is already taken (docs/protocol.md §8.13).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Result;
use test_support::{free_port, Daemon, Subject};

use crate::harness::{differential_plain, Transcript};
use crate::probe;
use crate::procs::{self, accepts, have_ipv6_loopback, mask_log, names_answers_at, Proc};

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Which of loopback v4, loopback v6 and the external address answer.
fn reachability(t: &mut Transcript, label: &str, port: u16) -> (bool, Option<bool>, Option<bool>) {
    let lo4 = names_answers_at(v4(port));
    let lo6 = have_ipv6_loopback()
        .then(|| names_answers_at(SocketAddr::from((Ipv6Addr::LOCALHOST, port))));
    let ext = probe::external_addr(false).map(|ip| accepts(SocketAddr::new(ip, port)));
    t.push(
        label,
        format!("127.0.0.1 {lo4}, ::1 {lo6:?}, external v4 {ext:?}"),
    );
    (lo4, lo6, ext)
}

#[test]
fn address_loopback_only() {
    differential_plain("address_loopback_only", |subject, t| {
        let d = Daemon::start(subject, &["-packet_timeout", "1", "-address", "127.0.0.1"])?;
        let (lo4, lo6, ext) = reachability(t, "-address 127.0.0.1", d.port);
        anyhow::ensure!(lo4, "loopback v4 does not answer");
        anyhow::ensure!(lo6 != Some(false), "::1 is always bound with -address");
        anyhow::ensure!(
            ext != Some(true),
            "external address answers with -address 127.0.0.1"
        );
        drop(d);
        let d = Daemon::start(subject, &["-packet_timeout", "1"])?;
        let (_, _, ext) = reachability(t, "no -address", d.port);
        anyhow::ensure!(ext != Some(false), "default must listen on every interface");
        drop(d);
        let d = Daemon::start(subject, &["-packet_timeout", "1", "-address", ",, ,"])?;
        let (_, _, ext) = reachability(t, "-address of separators only", d.port);
        anyhow::ensure!(ext != Some(false), "a separator-only list is no list");
        Ok(())
    })
}

/// Runs a daemon that is expected to fail at start-up.
fn start_fails(subject: Subject, args: &[&str], env: &[(&str, &str)]) -> Result<procs::Out> {
    let port = free_port();
    let mut full = vec!["-port".to_owned(), port.to_string()];
    full.extend(args.iter().map(|s| (*s).to_owned()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let p = Proc::spawn(&subject.bin(), &full, env, port)?;
    Ok(p.finish(Duration::from_secs(10)))
}

fn record_out(t: &mut Transcript, label: &str, out: &procs::Out) {
    t.push(
        label,
        format!(
            "exit {} | stdout `{}` | stderr `{}`",
            out.code_str(),
            crate::harness::render(&out.stdout),
            mask_log(&out.stderr)
        ),
    );
}

#[test]
fn address_parse_error() {
    differential_plain("address_parse_error", |subject, t| {
        for (label, args, env) in [
            ("-address 999.1.1.1", vec!["-address", "999.1.1.1"], vec![]),
            ("-address foo", vec!["-address", "foo"], vec![]),
            (
                "-address 127.0.0.1,999.1.1.1",
                vec!["-address", "127.0.0.1,999.1.1.1"],
                vec![],
            ),
            (
                "ERL_EPMD_ADDRESS=999.1.1.1",
                vec![],
                vec![("ERL_EPMD_ADDRESS", "999.1.1.1")],
            ),
        ] {
            let out = start_fails(subject, &args, &env)?;
            record_out(t, label, &out);
            expect_eq!(out.code, Some(1), "{label}: exit code");
            let bad = if label.contains("foo") {
                "foo"
            } else {
                "999.1.1.1"
            };
            let want = format!("cannot parse IP address \"{bad}\"");
            anyhow::ensure!(
                String::from_utf8_lossy(&out.stderr).contains(&want),
                "{label}: stderr lacks {want}: {}",
                mask_log(&out.stderr)
            );
        }
        Ok(())
    })
}

#[test]
fn address_bind_failure() {
    differential_plain("address_bind_failure", |subject, t| {
        // TEST-NET-2: never an address of this host.
        let out = start_fails(subject, &["-address", "198.51.100.254"], &[])?;
        record_out(t, "-address 198.51.100.254", &out);
        expect_eq!(out.code, Some(1), "exit code");
        Ok(())
    })
}

/// Starts `-port P args` and waits until NAMES answers at `probe(P)`.
fn start_running(
    subject: Subject,
    args: &[&str],
    probe_at: impl Fn(u16) -> SocketAddr,
) -> Result<(Proc, u16)> {
    for _ in 0..10 {
        let port = free_port();
        let mut full = vec!["-port".to_owned(), port.to_string()];
        full.extend(args.iter().map(|s| (*s).to_owned()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let mut p = Proc::spawn(&subject.bin(), &full, &[], port)?;
        let mut exited = None;
        test_support::wait_until(Duration::from_secs(5), || {
            if let Some(c) = p.exited() {
                exited = Some(c);
                return true;
            }
            names_answers_at(probe_at(port))
        });
        match exited {
            Some(Some(0)) => continue,
            Some(_) => {
                let out = p.finish(Duration::from_secs(1));
                anyhow::bail!("exited: {} {}", out.code_str(), mask_log(&out.stderr));
            }
            None if names_answers_at(probe_at(port)) => return Ok((p, port)),
            None => anyhow::bail!("does not answer at {}", probe_at(port)),
        }
    }
    anyhow::bail!("no free port")
}

/// MAX_LISTEN_SOCKETS = 16, and the two implicit loopbacks count: 13
/// listed addresses work, 14 are refused (measured with 127.0.0.x).
#[test]
fn address_socket_limit() {
    differential_plain("address_socket_limit", |subject, t| {
        let list = |n: u8| {
            (2..2 + n)
                .map(|i| format!("127.0.0.{i}"))
                .collect::<Vec<_>>()
        };
        let at_14 = |port| SocketAddr::from(([127, 0, 0, 14], port));
        let thirteen = list(13).join(",");
        let with_loopbacks = format!("127.0.0.1,::1,{thirteen}");
        let mut bad = Vec::new();
        for (label, arg) in [
            ("13 listed addresses (127.0.0.2..14)", &thirteen),
            ("127.0.0.1, ::1 and 13 listed", &with_loopbacks),
        ] {
            let r = start_running(subject, &["-address", arg], at_14);
            t.push(
                label,
                match &r {
                    Ok(_) => "running, answers on 127.0.0.14".to_owned(),
                    Err(e) => format!("{e:#}"),
                },
            );
            if let Err(e) = r {
                bad.push(format!("{label}: {e:#}"));
            }
        }
        let fourteen = list(14).join(" ");
        let out = start_fails(subject, &["-address", &fourteen], &[])?;
        record_out(t, "14 listed addresses", &out);
        if out.code != Some(1) {
            bad.push(format!("14 addresses: exit {}", out.code_str()));
        }
        anyhow::ensure!(bad.is_empty(), "{bad:?}");
        Ok(())
    })
}

/// EADDRINUSE means "already running": exit 0, whoever holds the port.
#[test]
fn port_taken_exits_0() {
    differential_plain("port_taken_exits_0", |subject, t| {
        let d = Daemon::start(subject, &["-packet_timeout", "1"])?;
        let p = Proc::spawn(&subject.bin(), &["-port", &d.port.to_string()], &[], d.port)?;
        let out = p.finish(Duration::from_secs(10));
        record_out(t, "second daemon on a daemon's port", &out);
        expect_eq!(out.code, Some(0), "exit code");
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        let port = l.local_addr()?.port();
        let p = Proc::spawn(&subject.bin(), &["-port", &port.to_string()], &[], port)?;
        let out = p.finish(Duration::from_secs(10));
        record_out(t, "daemon on a port held by a plain listener", &out);
        expect_eq!(out.code, Some(0), "exit code");
        anyhow::ensure!(names_answers_at(v4(d.port)), "first daemon disturbed");
        Ok(())
    })
}

/// `-address 0.0.0.0`, `-address ::` and both. OTP 25's epmd binds
/// `127.0.0.1` and `::1` first, then fails on the any-address with
/// EADDRINUSE and exits 0 saying "there is already a epmd running"; the
/// epmd fixed for GHSA-h6f3-hx58-xhj6 (erlang/otp#11402, #11409), and
/// epmdx with it, listens: the listed any-address covers the loopback of
/// its family. A documented difference, so each subject is held to its own
/// behaviour (docs/compatibility.md).
#[test]
fn address_any_listens_as_the_fixed_epmd() {
    for subject in Subject::selected() {
        for arg in ["0.0.0.0", "::", "0.0.0.0,::", "127.0.0.1,0.0.0.0"] {
            let r = (|| -> Result<()> {
                match subject {
                    Subject::Otp => {
                        // -d: the C epmd says why it exits only when debugging.
                        let out = start_fails(subject, &["-d", "-address", arg], &[])?;
                        anyhow::ensure!(out.code == Some(0), "exit {}", out.code_str());
                        anyhow::ensure!(
                            String::from_utf8_lossy(&out.stderr)
                                .contains("there is already a epmd running"),
                            "stderr: {}",
                            mask_log(&out.stderr)
                        );
                    }
                    Subject::Epmdx => {
                        let (p, port) = start_running(subject, &["-address", arg], v4)?;
                        if have_ipv6_loopback() {
                            let lo6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                            anyhow::ensure!(names_answers_at(lo6), "::1 does not answer");
                        }
                        if arg.contains("0.0.0.0") {
                            if let Some(ip) = probe::external_addr(false) {
                                anyhow::ensure!(
                                    accepts(SocketAddr::new(ip, port)),
                                    "the any-address does not answer at {ip}"
                                );
                            }
                        }
                        drop(p);
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                panic!("{subject:?} -address {arg}: {e:#}");
            }
        }
    }
}

/// A host with IPv6 disabled (erlang/otp#11402, the case that the first
/// GHSA-h6f3-hx58-xhj6 fix broke and #11409 repaired): with
/// `-address 127.0.0.1` the implicit `::1` cannot be bound, which is logged
/// and not fatal, so the daemon serves on 127.0.0.1. OTP 25's epmd already
/// behaves so (erlang/otp#5762); the fixed epmd again does, and so must
/// epmdx. Run in a network namespace whose IPv6 stack the test disables.
#[test]
fn ipv4_only_host_with_address_loopback_serves() {
    let ns = match test_support::netns::Namespace::create(&format!(
        "epmdx-v4only-{}",
        std::process::id()
    )) {
        Ok(ns) => ns,
        Err(e) => panic!("network namespace (needs root and iproute2): {e:#}"),
    };
    ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1")
        .expect("disable IPv6 in the namespace");
    ns.sysctl("net/ipv6/conf/lo/disable_ipv6", "1")
        .expect("disable IPv6 on lo");
    ns.run_in(|| {
        differential_plain(
            "ipv4_only_host_with_address_loopback_serves",
            |subject, t| {
                anyhow::ensure!(
                    !have_ipv6_loopback(),
                    "::1 still bindable inside the namespace"
                );
                for arg in ["127.0.0.1", "127.0.0.1,127.0.0.2"] {
                    let (p, port) = start_running(subject, &["-address", arg], v4)?;
                    t.push(format!("-address {arg}"), "serves on 127.0.0.1".to_owned());
                    anyhow::ensure!(names_answers_at(v4(port)));
                    drop(p);
                }
                Ok(())
            },
        );
    })
    .expect("run in the namespace");
}
