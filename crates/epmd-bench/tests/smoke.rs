//! A short end-to-end run against OTP's C epmd (skipped when it is absent):
//! registration, both engines, reply checks, capacity bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use epmd_bench::lookup::{queries, run_window, Engine, Workload};
use epmd_bench::net::lookup_sources;
use epmd_bench::register::{loopback, Registrations};
use test_support::{otp_epmd_bin, Daemon, Subject};

fn have_otp() -> bool {
    let ok = otp_epmd_bin().exists();
    if !ok {
        eprintln!("skipped: no C epmd");
    }
    ok
}

#[test]
fn lookups_hit_and_miss_without_errors() {
    if !have_otp() {
        return;
    }
    let d = Daemon::start(Subject::Otp, &[]).unwrap();
    let (regs, fill) = Registrations::fill(loopback(d.port), 20, 1000, Duration::from_secs(2));
    assert_eq!(fill.held, 20, "{:?}", fill.failure);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (n, engine, sources) in [
        (20, Engine::Threads, 2),
        (20, Engine::Tokio, 0),
        (0, Engine::Threads, 0),
    ] {
        let w = Workload {
            addr: loopback(d.port),
            clients: 4,
            duration: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
            max_requests: 500,
            sources: Arc::new(lookup_sources(sources)),
            queries: queries(n),
        };
        let r = run_window(&rt, engine, &w);
        assert!(r.ok > 0, "{engine:?}: no lookups");
        assert_eq!(r.error_total(), 0, "{engine:?}: {:?}", r.error_samples);
        assert!(r.ok <= 500, "request bound ignored");
    }
    assert_eq!(regs.count_dead(), 0);
}

#[test]
fn wrong_expectation_is_a_bad_reply() {
    if !have_otp() {
        return;
    }
    let d = Daemon::start(Subject::Otp, &[]).unwrap();
    // Names are not registered, so the hits the queries expect are misses.
    let w = Workload {
        addr: loopback(d.port),
        clients: 1,
        duration: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        max_requests: 20,
        sources: Arc::new(Vec::new()),
        queries: queries(5),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = run_window(&rt, Engine::Threads, &w);
    assert_eq!(r.ok, 0);
    assert!(r.errors[3] > 0, "{:?}", r.errors);
}
