//! A node's end: `shutdown` returns once the node is unregistered and its
//! connections are closed, and dropping the last handle stops it.

mod common;

use std::time::Duration;

use common::*;
use erldist::NodeEvent;
use test_support::{is_registered, wait_until};

fn alive(node: &erldist::Node) -> String {
    node.name().split('@').next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unregisters_and_closes_before_it_returns() {
    let d = daemon();
    let node = start(config(&d, "shut", COOKIE)).await;
    let peer = client(&d, "shut_peer", COOKIE).await;
    let mut events = peer.events();
    within(LONG, "connect", peer.connect(node.name()))
        .await
        .expect("connect");
    let name = alive(&node);
    assert!(blocking(|| is_registered(d.port, &name)));

    within(LONG, "shutdown", node.shutdown()).await;
    // The registration connection is closed when shutdown returns; EPMD
    // drops the name when it reads the EOF, on its own schedule.
    assert!(
        blocking(|| wait_until(Duration::from_secs(5), || !is_registered(d.port, &name))),
        "still registered after shutdown"
    );
    assert!(node.connections().is_empty(), "connections closed");
    within(LONG, "peer sees the connection go", async {
        loop {
            if let Ok(NodeEvent::Down { peer: p, .. }) = events.recv().await {
                if p == node.name() {
                    break;
                }
            }
        }
    })
    .await;
    assert!(!within(LONG, "ping", peer.ping(node.name())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_node() {
    let d = daemon();
    let node = start(config(&d, "dropped", COOKIE)).await;
    let name = alive(&node);
    let full = node.name().to_owned();
    let port = node.listen_port().expect("a TCP listener");
    let mb = node.mailbox();
    let second = node.clone();
    drop(node);
    drop(second);
    // A mailbox is a handle too: the node still serves.
    let peer = client(&d, "dropped_peer", COOKIE).await;
    assert!(within(LONG, "ping while a mailbox lives", peer.ping(&full)).await);
    drop(mb);
    assert!(
        blocking(|| wait_until(Duration::from_secs(LONG), || {
            !is_registered(d.port, &name)
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        })),
        "the node still runs after its last handle was dropped"
    );
}
