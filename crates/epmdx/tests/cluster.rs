//! Cluster publishing against a real 3-member etcd (Debian's etcd-server),
//! with three hosts in network namespaces, each running an etcd member, an
//! `epmdx -etcd ... -cluster lab` and a stock `erl` node (docs/cluster.md,
//! "Failure behaviour"). Needs root and iproute2, like the other netns
//! tests. Every wait is a condition with a deadline; figures are printed.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use test_support::cluster::{wait_every, ClusterLab, LAB_CLUSTER, LAB_EPMD_PORT};
use test_support::erl::ErlNode;

const COOKIE: &str = "clustercookie";
const POLL: Duration = Duration::from_millis(100);

fn node_names(lab: &ClusterLab) -> Vec<String> {
    let mut v: Vec<String> = (0..lab.len())
        .map(|i| format!("n{}@{}", i + 1, lab.role(i)))
        .collect();
    v.sort();
    v
}

fn start_nodes(lab: &ClusterLab) -> Result<Vec<ErlNode>> {
    (0..lab.len())
        .map(|i| {
            let name = format!("n{}@{}", i + 1, lab.role(i));
            ErlNode::start_in(lab.ns(i), &name, COOKIE, LAB_EPMD_PORT, &[])
        })
        .collect()
}

/// Waits until host `from` sees exactly `want` as the cluster's members.
fn wait_members(
    lab: &ClusterLab,
    from: usize,
    want: &[String],
    timeout: Duration,
) -> Result<Duration> {
    let mut last = None;
    wait_every(timeout, POLL, || {
        last = lab.members_seen_from(from);
        last.as_deref() == Some(want)
    })
    .with_context(|| {
        format!(
            "members seen from {}: {last:?}, want {want:?}",
            lab.role(from)
        )
    })
}

fn without(all: &[String], gone: &str) -> Vec<String> {
    all.iter().filter(|n| *n != gone).cloned().collect()
}

/// Publishing, the JSON listing, a halted node, a dead daemon and a dead
/// etcd member.
#[test]
fn three_hosts_publish_and_follow_registrations() -> Result<()> {
    let ttl = 3;
    let mut lab = ClusterLab::start("ecp", 233, 3, ttl, &[])?;
    let mut nodes = start_nodes(&lab)?;
    let all = node_names(&lab);

    // Every stock node appears, within a second of its registration.
    let took = wait_members(&lab, 0, &all, Duration::from_secs(10))?;
    eprintln!("all 3 nodes listed {took:?} after the last registered");

    // The record in etcd is the documented JSON, with the node's real port.
    let port1 = nodes[0].dist_port()?;
    let kvs = lab
        .etcd
        .get_prefix(&format!("/epmdx/{LAB_CLUSTER}/nodes/"))?;
    let (_, v) = kvs
        .iter()
        .find(|(k, _)| k == "/epmdx/lab/nodes/n1@h1")
        .with_context(|| format!("no key for n1@h1 in {kvs:?}"))?;
    let json: serde_json::Value = serde_json::from_str(v)?;
    assert_eq!(json["node"], "n1@h1");
    assert_eq!(json["host"], "h1");
    assert_eq!(json["addresses"], serde_json::json!([lab.addr(0)]));
    assert_eq!(json["legacy"], true);
    assert_eq!(
        json["transports"],
        serde_json::json!([{ "proto": "inet_tcp", "port": port1 }])
    );
    assert!(json["creation"].as_u64().is_some_and(|c| c > 0), "{json}");
    assert!(!v.contains("uds"), "{v}");

    // Same line format as `epmdx nodes`; JSON has the records.
    let (code, out, err) = lab.cluster_nodes(1, &lab.etcd.endpoints(), &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l == format!("name n1@h1 at port {port1}#legacy")),
        "{out}"
    );
    let (code, out, err) = lab.cluster_nodes(2, &lab.etcd.endpoints(), &["--json"])?;
    assert_eq!(code, 0, "{err}");
    let listing: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(listing["nodes"].as_array().map(Vec::len), Some(3), "{out}");
    assert_eq!(listing["ignored"], 0);

    // A node that halts drops out at once (its daemon withdraws it), well
    // before the lease could have expired.
    nodes[1].eval_nowait("halt().")?;
    let t = Instant::now();
    let halted = nodes[1].node().to_owned();
    let after_halt = without(&all, &halted);
    wait_members(&lab, 0, &after_halt, Duration::from_secs(10))?;
    let dropped = t.elapsed();
    eprintln!("halted node gone from etcd after {dropped:?} (TTL {ttl} s)");
    ensure!(
        dropped < lab.ttl(),
        "a halted node took {dropped:?}, not less than the TTL"
    );

    // One etcd member killed: nothing changes. The listing stays whole for
    // two TTLs, and a new registration is still published.
    lab.etcd.kill(1);
    let watch_until = Instant::now() + lab.ttl() * 2;
    while Instant::now() < watch_until {
        let seen = lab.members_seen_from(0);
        assert_eq!(
            seen.as_deref(),
            Some(&after_halt[..]),
            "with one member down"
        );
    }
    let extra = ErlNode::start_in(lab.ns(0), "x1@h1", COOKIE, LAB_EPMD_PORT, &[])?;
    let mut with_extra = after_halt.clone();
    with_extra.push(extra.node().to_owned());
    with_extra.sort();
    let took = wait_members(&lab, 2, &with_extra, Duration::from_secs(10))?;
    eprintln!("with one etcd member down, a new node listed after {took:?}");
    lab.etcd.restart(1)?;
    lab.etcd.wait_healthy(Duration::from_secs(30))?;

    // A host whose epmdx dies (SIGKILL: nothing withdrawn) drops out once
    // its lease expires: after the TTL, not before half of it.
    let t = Instant::now();
    lab.kill_epmdx(2);
    let gone = nodes[2].node().to_owned();
    let after_kill = without(&with_extra, &gone);
    wait_members(&lab, 0, &after_kill, lab.ttl() + Duration::from_secs(10))?;
    let expired = t.elapsed();
    eprintln!("dead daemon's node gone after {expired:?} (TTL {ttl} s)");
    ensure!(
        expired >= lab.ttl() / 2,
        "records of a dead daemon went after {expired:?}: not the lease"
    );
    drop(extra);
    Ok(())
}

/// All etcd members down, then a partitioned host: EPMD keeps serving,
/// records come back when etcd does.
#[test]
fn epmd_service_survives_etcd_outages_and_partitions() -> Result<()> {
    let ttl = 2;
    let mut lab = ClusterLab::start("eco", 234, 3, ttl, &[])?;
    let nodes = start_nodes(&lab)?;
    let all = node_names(&lab);
    wait_members(&lab, 0, &all, Duration::from_secs(10))?;

    // Every member down for longer than the TTL.
    for i in 0..lab.etcd.len() {
        lab.etcd.kill(i);
    }
    let down_at = Instant::now();
    // EPMD service on every host goes on: lookups are answered...
    for (i, n) in nodes.iter().enumerate() {
        let t = Instant::now();
        assert!(
            lab.registered(i, n.alive()),
            "{} not served on {}",
            n.alive(),
            lab.role(i)
        );
        eprintln!(
            "lookup on {} during the outage: {:?}",
            lab.role(i),
            t.elapsed()
        );
    }
    // ...and new registrations are accepted at once.
    let t = Instant::now();
    let late = ErlNode::start_in(lab.ns(0), "late@h1", COOKIE, LAB_EPMD_PORT, &[])?;
    eprintln!(
        "a node registered during the outage in {:?} (erl boot included)",
        t.elapsed()
    );
    assert!(lab.registered(0, "late"));
    // Keep etcd away past the TTL, checking service meanwhile.
    while down_at.elapsed() < lab.ttl() * 2 {
        for (i, n) in nodes.iter().enumerate() {
            assert!(lab.registered(i, n.alive()));
        }
    }
    for i in 0..lab.etcd.len() {
        lab.etcd.restart(i)?;
    }
    lab.etcd.wait_healthy(Duration::from_secs(30))?;
    let back_at = Instant::now();
    let mut with_late = all.clone();
    with_late.push(late.node().to_owned());
    with_late.sort();
    let took = wait_members(&lab, 1, &with_late, Duration::from_secs(20))?;
    eprintln!(
        "records back {:?} after etcd was healthy again ({:?} since the wait began)",
        back_at.elapsed(),
        took
    );
    ensure!(
        back_at.elapsed() < Duration::from_secs(10),
        "records took {:?} to come back",
        back_at.elapsed()
    );

    // A partitioned host keeps serving its local nodes; the others see it
    // drop after the TTL; healed, it is published again.
    lab.partition(2)?;
    let cut = Instant::now();
    let isolated = nodes[2].node().to_owned();
    let rest = without(&with_late, &isolated);
    wait_members(&lab, 0, &rest, lab.ttl() + Duration::from_secs(15))?;
    eprintln!("partitioned host's node dropped after {:?}", cut.elapsed());
    assert!(
        lab.registered(2, nodes[2].alive()),
        "partitioned host stopped serving"
    );
    lab.heal(2)?;
    let healed = Instant::now();
    wait_members(&lab, 0, &with_late, Duration::from_secs(20))?;
    eprintln!("healed host republished after {:?}", healed.elapsed());
    assert!(lab.registered(2, nodes[2].alive()));
    Ok(())
}

/// Records that are not valid JSON, name an unknown protocol or claim port
/// 0 are ignored with a warning and counted, next to valid ones.
#[test]
fn bad_records_are_ignored_and_counted() -> Result<()> {
    let lab = ClusterLab::start("ecb", 235, 3, 10, &[])?;
    let node = ErlNode::start_in(lab.ns(0), "good@h1", COOKIE, LAB_EPMD_PORT, &[])?;
    wait_members(&lab, 1, &[node.node().to_owned()], Duration::from_secs(10))?;
    let p = "/epmdx/lab/nodes/";
    lab.etcd.put(&format!("{p}j@h9"), "{not json")?;
    lab.etcd.put(
        &format!("{p}q@h9"),
        r#"{"node":"q@h9","host":"h9","addresses":[],"creation":1,"transports":[{"proto":"quic","port":5}],"legacy":false}"#,
    )?;
    lab.etcd.put(
        &format!("{p}z@h9"),
        r#"{"node":"z@h9","host":"h9","addresses":[],"creation":1,"transports":[{"proto":"inet_tcp","port":0}],"legacy":false}"#,
    )?;
    lab.etcd.put(
        &format!("{p}u@h9"),
        r#"{"node":"u@h9","host":"h9","addresses":[],"creation":1,"transports":[{"proto":"uds","port":1}],"legacy":false}"#,
    )?;
    let (code, out, err) = lab.cluster_nodes(1, &lab.etcd.endpoints(), &[])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("name good@h1 at port "), "{out}");
    assert!(err.contains("ignored 4 invalid record(s)"), "{err}");
    for (n, why) in [
        ("j@h9", "not a valid record"),
        ("q@h9", "unknown protocol \"quic\""),
        ("z@h9", "port 0"),
        ("u@h9", "unknown protocol \"uds\""),
    ] {
        assert!(
            err.lines().any(|l| l.contains(n) && l.contains(why)),
            "no warning for {n}: {err}"
        );
    }
    let (code, out, _) = lab.cluster_nodes(2, &lab.etcd.endpoints(), &["--json"])?;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["ignored"], 4, "{out}");
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(1));
    // The daemons that read nothing are unaffected, and still serve.
    assert!(lab.registered(0, "good"));
    // etcd unreachable: a clear error and exit 1, within the deadline.
    let t = Instant::now();
    let (code, _, err) = lab.cluster_nodes(1, "http://10.235.1.77:12379", &[])?;
    assert_eq!(code, 1);
    assert!(err.starts_with("epmdx: "), "{err}");
    eprintln!(
        "unreachable etcd reported in {:?}: {}",
        t.elapsed(),
        err.trim()
    );
    Ok(())
}
