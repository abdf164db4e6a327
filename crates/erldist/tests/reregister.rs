//! Staying registered: after EPMD is killed (`kill -9`) and restarted on
//! the same private port, the node registers every transport again on its
//! own, reports it as node events, and a new OTP peer can ping it.

mod common;

use common::*;
use erldist::NodeEvent;
use test_support::{is_registered, Daemon, Subject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reregisters_after_epmd_is_killed_and_restarted() {
    let mut d = daemon();
    let port = d.port;
    let node = start(config(&d, "rereg", COOKIE)).await;
    let alive = node.name().split('@').next().unwrap_or_default().to_owned();
    assert!(node.registered_extended());
    let mut events = node.events();

    d.kill();
    let lost = within(LONG, "RegistrationLost", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::RegistrationLost) => break,
                Ok(_) => continue,
                Err(e) => panic!("events: {e}"),
            }
        }
    });
    lost.await;
    assert!(!node.registered());

    let d2 = blocking(|| Daemon::start_on(Subject::Epmdx, port, &[]))
        .unwrap_or_else(|e| panic!("restart epmdx on {port}: {e:#}"));
    let extended = within(LONG, "Reregistered", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Reregistered { extended }) => break extended,
                Ok(_) => continue,
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await;
    assert!(extended, "epmdx speaks the extension");
    assert!(node.registered_extended());
    assert!(blocking(|| is_registered(port, &alive)));

    // A peer that was never connected finds the node through the new EPMD.
    let mut erl = erl(&d2, "rereg", COOKIE);
    let pong = eval(&mut erl, &format!("net_adm:ping('{}').", node.name()));
    assert_eq!(pong, "pong");
    node.stop();
}
