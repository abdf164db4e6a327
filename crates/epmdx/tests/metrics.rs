//! `-metrics ADDR:PORT`: the Prometheus exposition at `GET /metrics`,
//! counted exactly against what real clients did (a stock `erl` node's
//! lookups, epmd-client's listings and registrations), accepted by
//! Prometheus's own `promtool check metrics`, carried through an in-place
//! upgrade, and refused with a clear message when the setting is wrong.
//!
//! Every daemon runs on a private port (never 4369) and is killed by PID
//! when its test ends.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use epmd_client::NodeSpec;
use test_support::erl::ErlNode;
use test_support::metrics::{get, promtool_check, sample, scrape, value};
use test_support::process::run_with_timeout;
use test_support::upgrade::UpgradableDaemon;
use test_support::{free_port, wait_until, Daemon, Subject};

/// A runtime for the async client; registrations live while their handles
/// (and this runtime) do.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn metrics_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// epmdx with `-metrics` on a free loopback port and `env`. Retried: the
/// port picked for the metrics may be taken (or be the one picked for
/// EPMD) by the time the daemon binds it, which it refuses with exit 1.
fn start_with_metrics(env: &[(&str, &str)]) -> Result<(Daemon, SocketAddr)> {
    let mut last = None;
    for _ in 0..5 {
        let maddr = metrics_addr();
        let m = maddr.to_string();
        match Daemon::start_with_env(Subject::Epmdx, &["-metrics", &m], env) {
            Ok(d) => return Ok((d, maddr)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.context("no attempt")?)
}

fn requests(command: &str, result: &str) -> String {
    format!(r#"epmdx_requests_total{{command="{command}",result="{result}"}}"#)
}

/// Waits until the endpoint answers and returns its first scrape.
fn first_scrape(addr: SocketAddr) -> Result<String> {
    let mut last = None;
    let up = wait_until(SETTLE, || match scrape(addr) {
        Ok(t) => {
            last = Some(t);
            true
        }
        Err(_) => false,
    });
    ensure!(up, "no metrics at {addr}");
    last.context("scrape")
}

/// Waits until `series` reads `want`.
fn wait_value(addr: SocketAddr, series: &str, want: f64) -> Result<()> {
    let mut seen = None;
    let ok = wait_until(SETTLE, || {
        seen = scrape(addr).ok().and_then(|t| sample(&t, series));
        seen == Some(want)
    });
    ensure!(ok, "{series}: {seen:?}, want {want}");
    Ok(())
}

#[test]
fn counts_are_exact_and_promtool_accepts_them() -> Result<()> {
    let (d, maddr) = start_with_metrics(&[])?;
    first_scrape(maddr)?;
    let rt = runtime();
    let c = client(&d);
    // A stock OTP node (ALIVE2) and an extended registration (ALIVE3).
    let mut erl = ErlNode::start("metr@localhost", "c00kie", d.port, &[])?;
    let _ext = rt.block_on(c.register_ext(
        NodeSpec::otp25("mext"),
        &[tr("inet_tcp", 40001, ""), tr("inet_tls", 40002, "")],
    ))?;
    let before = scrape(maddr)?;
    assert_eq!(
        value(&before, r#"epmdx_registrations{kind="legacy"}"#)?,
        1.0
    );
    assert_eq!(
        value(&before, r#"epmdx_registrations{kind="extended"}"#)?,
        1.0
    );

    // 20 hits and 20 misses as the OTP node asks (PORT_PLEASE2), 15
    // NAMES3 listings, one frame that is not a request.
    let got = erl.eval(
        r#"H = [erl_epmd:port_please("metr", "127.0.0.1") || _ <- lists:seq(1, 20)],
           M = [erl_epmd:port_please("nobody", "127.0.0.1") || _ <- lists:seq(1, 20)],
           {length([x || {port, _, _} <- H]), lists:usort(M)}."#,
    )?;
    assert_eq!(got, "{20,[noport]}");
    for _ in 0..15 {
        rt.block_on(c.names3())?;
    }
    let mut junk = TcpStream::connect(d.addr())?;
    junk.write_all(&[0, 1, 0xff])?;
    drop(junk);
    wait_value(
        maddr,
        &requests("invalid", "closed"),
        value(&before, &requests("invalid", "closed"))? + 1.0,
    )?;

    let after = scrape(maddr)?;
    for (series, delta) in [
        (requests("port_please2", "ok"), 20.0),
        (requests("port_please2", "miss"), 20.0),
        (requests("names3", "ok"), 15.0),
        (requests("alive2", "ok"), 0.0),
        (requests("alive3", "ok"), 0.0),
    ] {
        assert_eq!(
            value(&after, &series)? - value(&before, &series)?,
            delta,
            "{series}"
        );
    }
    // The registrations themselves were counted once each.
    assert_eq!(value(&after, &requests("alive2", "ok"))?, 1.0);
    assert_eq!(value(&after, &requests("alive3", "ok"))?, 1.0);
    promtool_check(&after)?;

    // Pending connections: three idle clients, then none.
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(d.addr()))
        .collect::<std::io::Result<_>>()?;
    wait_value(maddr, "epmdx_pending_connections", 3.0)?;
    drop(idle);
    wait_value(maddr, "epmdx_pending_connections", 0.0)?;

    // Only /metrics, only GET and HEAD.
    assert_eq!(get(maddr, "/")?.0, "HTTP/1.1 404 Not Found");
    let mut post = TcpStream::connect(maddr)?;
    post.write_all(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")?;
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut post, &mut reply)?;
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    // The EPMD port does not serve the exposition.
    let mut http = TcpStream::connect(d.addr())?;
    http.set_read_timeout(Some(ANSWER))?;
    http.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
    let mut none = Vec::new();
    let _ = std::io::Read::read_to_end(&mut http, &mut none);
    assert!(none.is_empty(), "the EPMD port answered HTTP: {none:?}");

    erl.kill();
    wait_value(maddr, r#"epmdx_registrations{kind="legacy"}"#, 0.0)?;
    Ok(())
}

#[test]
fn evictions_and_capacity_refusals_are_counted() -> Result<()> {
    let (d, maddr) = start_with_metrics(&[("EPMDX_MAX_PENDING", "2"), ("EPMDX_MAX_NODES", "1")])?;
    first_scrape(maddr)?;
    let rt = runtime();
    let c = client(&d);
    let _one = rt.block_on(c.register(&alive2("cap1", 40100)))?;
    let refused = rt.block_on(c.register(&alive2("cap2", 40101)));
    assert!(refused.is_err(), "the second registration is over capacity");
    drop(refused);
    wait_value(maddr, &requests("alive2", "refused"), 1.0)?;
    let t = scrape(maddr)?;
    assert_eq!(value(&t, r#"epmdx_refused_total{reason="capacity"}"#)?, 1.0);
    assert_eq!(value(&t, &requests("alive2", "ok"))?, 1.0);
    wait_value(maddr, "epmdx_pending_connections", 0.0)?;
    let evicted_before = value(&scrape(maddr)?, "epmdx_evictions_total")?;

    // Five idle clients against a pending table of two: three evictions,
    // each one as the next client arrives.
    let mut idle = Vec::new();
    for i in 1..=5u32 {
        idle.push(TcpStream::connect(d.addr())?);
        let want = evicted_before + f64::from(i.saturating_sub(2));
        wait_value(maddr, "epmdx_evictions_total", want)?;
    }
    wait_value(maddr, "epmdx_pending_connections", 2.0)?;
    promtool_check(&scrape(maddr)?)?;
    Ok(())
}

#[test]
fn the_upgrade_count_and_the_metrics_socket_survive_upgrades() -> Result<()> {
    let maddr = metrics_addr();
    let m = maddr.to_string();
    let mut d = UpgradableDaemon::start(&["-metrics", &m])?;
    let t = first_scrape(maddr)?;
    assert_eq!(value(&t, "epmdx_upgrades_total")?, 0.0);
    let rt = runtime();
    let c =
        epmd_client::Client::new(SocketAddr::from(([127, 0, 0, 1], d.port))).with_timeout(ANSWER);
    let _reg = rt.block_on(c.register(&alive2("upm", 40200)))?;

    // Scrapes keep coming while the daemon upgrades: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let scraper = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match scrape(maddr) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(format!("{e:#}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    for round in 1..=2u32 {
        let n = d.upgrade()?;
        assert_eq!(n, 1, "one registration handed over");
        let t = scrape(maddr)?;
        assert_eq!(value(&t, "epmdx_upgrades_total")?, f64::from(round));
        assert_eq!(value(&t, r#"epmdx_registrations{kind="legacy"}"#)?, 1.0);
    }
    stop.store(true, Ordering::Relaxed);
    let errors = scraper.join().expect("scraper thread");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "scrapes failed during upgrades: {errors:?}\nlog:\n{}",
        d.log()
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    promtool_check(&scrape(maddr)?)?;
    Ok(())
}

#[test]
fn bad_metrics_settings_stop_the_daemon_naming_them() -> Result<()> {
    let port = free_port();
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = taken.local_addr()?.to_string();
    let same = format!("127.0.0.1:{port}");
    // (arguments, environment, what the message must say)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["-metrics", "localhost"], vec![], "bad -metrics"),
        (vec!["-metrics", "127.0.0.1"], vec![], "bad -metrics"),
        (vec!["-metrics", "127.0.0.1:0"], vec![], "bad -metrics"),
        (vec!["-metrics", "::1:9000"], vec![], "bad -metrics"),
        (vec!["-metrics", &same], vec![], "is the EPMD port"),
        (vec![], vec![("EPMDX_METRICS", "9100")], "EPMDX_METRICS"),
        (
            vec!["-metrics", &taken_addr],
            vec![],
            "cannot listen for -metrics",
        ),
    ];
    for (args, env, says) in cases {
        let mut cmd = Command::new(epmdx_bin());
        cmd.args(["-port", &port.to_string()])
            .args(&args)
            .envs(env.iter().copied())
            .env_remove("ERL_EPMD_PORT")
            .stdin(Stdio::null());
        let out = run_with_timeout(&mut cmd, Duration::from_secs(10))?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {err}");
        assert!(err.contains(says), "{args:?} {env:?}: says {says:?}: {err}");
    }
    drop(taken);
    Ok(())
}
