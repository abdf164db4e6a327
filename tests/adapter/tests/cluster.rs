//! A stock OTP node with the adapter joins a cluster kept in etcd
//! (`-kernel epmdx_cluster`, docs/cluster.md): it reads the members'
//! records through etcd's JSON gateway, connects to each through the
//! selection policy, follows a member that appears and one that leaves,
//! and ignores bad records.
//!
//! The Rust members register with a *second* epmdx daemon, one the
//! adapter node never asks: the adapter can only reach them through the
//! transports and addresses of their etcd records. The records (written
//! here with `etcdctl`, in the format epmdx publishes) give `c_tcp`
//! the address 127.0.0.1 and `c_tls` 127.0.0.2; the adapter's policy sends
//! 127.0.0.2/32 over TLS and leaves the rest to the defaults (this host:
//! TCP), so the transport each connection uses shows that the policy
//! classified the peer by the record's address (DNS says 127.0.0.1 for
//! both).
//!
//! Needs `/usr/bin/etcd` and `etcdctl` (Debian's `etcd-server`,
//! `etcd-client`).

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use test_support::etcd::EtcdCluster;

/// The record epmdx publishes for a node (docs/cluster.md).
fn record(node: &str, addr: &str, transports: &[(&str, u16)]) -> String {
    let ts: Vec<String> = transports
        .iter()
        .map(|(p, port)| format!("{{\"proto\":\"{p}\",\"port\":{port}}}"))
        .collect();
    format!(
        "{{\"node\":\"{node}\",\"host\":\"localhost\",\"addresses\":[\"{addr}\"],\
         \"creation\":1,\"transports\":[{}],\"legacy\":false}}",
        ts.join(",")
    )
}

/// A Rust member listening on TCP and TLS (the adapter fixture's
/// certificates), registered with `reg`'s daemon; returns it and its
/// record's transports.
fn member(fx: &Fixture, reg: &Fixture, name: &str) -> Result<(RustNode, Vec<(&'static str, u16)>)> {
    let [cert, key, ca] = fx.tls_files().map(|p| p.display().to_string());
    let node = reg.rust_node(
        name,
        &[
            "--listen",
            "inet_tcp",
            "--listen",
            "inet_tls",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ],
    )?;
    let line = reg.wait_nodes_line(name, |l| l.contains("#inet_tcp") && l.contains("#inet_tls"))?;
    let tcp = port_of(&line, "inet_tcp").context("tcp port")?;
    let tls = port_of(&line, "inet_tls").context("tls port")?;
    Ok((node, vec![("inet_tcp", tcp), ("inet_tls", tls)]))
}

/// Evaluates `expr` on `node` until it prints `want`.
fn eval_until(node: &mut ErlNode, expr: &str, want: &str) -> Result<()> {
    let mut last = String::new();
    let ok = wait_until(WAIT, || {
        last = node.eval(expr).unwrap_or_else(|e| format!("{e:#}"));
        last == want
    });
    ensure!(
        ok,
        "`{expr}` never gave {want} (last: {last}); output:\n{}",
        node.output()
    );
    Ok(())
}

#[test]
fn adapter_node_joins_the_etcd_cluster() -> Result<()> {
    let etcd = EtcdCluster::start_local(1)?;
    let fx = Fixture::new()?;
    let reg = Fixture::new()?;
    let cluster = format!("cj{}", std::process::id());
    let key = |n: &str| format!("/epmdx/{cluster}/nodes/{n}");

    let (_tcp, tcp_ts) = member(&fx, &reg, "c_tcp")?;
    let (_tls, tls_ts) = member(&fx, &reg, "c_tls")?;
    etcd.put(
        &key("c_tcp@localhost"),
        &record("c_tcp@localhost", "127.0.0.1", &tcp_ts),
    )?;
    etcd.put(
        &key("c_tls@localhost"),
        &record("c_tls@localhost", "127.0.0.2", &tls_ts),
    )?;
    // Bad records: each ignored with a warning and counted, none an atom.
    let bad = [
        (
            "cbad1@localhost",
            "{\"node\": \"cbad1@localhost\", ".to_owned(),
        ),
        (
            "cbad2@localhost",
            record("cbad2@localhost", "127.0.0.1", &[("quic", 4000)]),
        ),
        (
            "cbad3@localhost",
            record("cbad3@localhost", "127.0.0.1", &[("inet_tcp", 0)]),
        ),
        (
            "cbad4@localhost",
            record("cbad4@localhost", "127.0.0.1", &[("uds", 1)]),
        ),
        (
            "cbad5@localhost",
            record("cbad6@localhost", "127.0.0.1", &[("inet_tcp", 1)]),
        ),
    ];
    for (n, v) in &bad {
        etcd.put(&key(n), v)?;
    }

    let setting = format!(
        "[{{etcd, \"{}\"}}, {{cluster, \"{cluster}\"}}, {{interval, 200}}]",
        etcd.endpoints()
    );
    let mut e = fx.adapted(
        "c_erl",
        &["epmdx_tcp", "epmdx_tls"],
        &[
            "-kernel",
            "epmdx_cluster",
            &setting,
            "-kernel",
            "epmdx_policy",
            "[{rules, [{cidr, \"127.0.0.2/32\", [inet_tls]}]}]",
        ],
    )?;
    // Connected to both members without being asked, each over the
    // transport the policy gives its record's address.
    let conns = "lists:sort([{N, T} || {N, T} <- epmdx_select:connections(), \
                 N =:= 'c_tcp@localhost' orelse N =:= 'c_tls@localhost']).";
    eval_until(
        &mut e,
        conns,
        "[{c_tcp@localhost,inet_tcp},{c_tls@localhost,inet_tls}]",
    )?;
    let c = conn(&mut e, "c_tls@localhost")?;
    ensure!(
        c.transport == "inet_tls" && c.peer_port == tls_ts[1].1,
        "{c:?}"
    );
    let c = conn(&mut e, "c_tcp@localhost")?;
    ensure!(
        c.transport == "inet_tcp" && c.peer_port == tcp_ts[0].1,
        "{c:?}"
    );
    // Their EPMD was never the adapter's: the adapter's daemon does not
    // know them.
    let local = fx.epmdx_nodes()?;
    ensure!(
        !local.contains("c_tcp") && !local.contains("c_tls"),
        "{local}"
    );

    // The bad records: counted once each, no atom made for any of them.
    eval_until(&mut e, "maps:get(bad_records, epmdx_cluster:info()).", "5")?;
    let atoms = "[catch list_to_existing_atom(\"cbad\" ++ integer_to_list(I) ++ \"@localhost\") \
                 || I <- lists:seq(1, 6)].";
    let v = e.eval(atoms)?;
    ensure!(
        v.matches("badarg").count() == 6,
        "a bad record's node became an atom: {v}"
    );
    ensure!(
        e.output().contains("unknown protocol <<\"quic\">>")
            && e.output().contains("inet_tcp port 0 is not in 1..65535")
            && e.output().contains("a uds transport")
            && e.output().contains("not valid JSON")
            && e.output().contains("does not match its key"),
        "missing warnings:\n{}",
        e.output()
    );
    eval_until(
        &mut e,
        "epmdx_cluster:members().",
        "[\"c_tcp@localhost\",\"c_tls@localhost\"]",
    )?;

    // A member that appears is connected.
    let (late, late_ts) = member(&fx, &reg, "c_late")?;
    etcd.put(
        &key("c_late@localhost"),
        &record("c_late@localhost", "127.0.0.1", &late_ts),
    )?;
    eval_until(
        &mut e,
        "lists:keyfind('c_late@localhost', 1, epmdx_select:connections()).",
        "{c_late@localhost,inet_tcp}",
    )?;

    // A member that goes down is retried while it is a member ...
    drop(late);
    eval_until(
        &mut e,
        "lists:member(\"c_late@localhost\", maps:get(retrying, epmdx_cluster:info())).",
        "true",
    )?;
    // ... and no longer once its record is gone.
    etcd.delete(&key("c_late@localhost"))?;
    eval_until(
        &mut e,
        "I = epmdx_cluster:info(), {lists:member(\"c_late@localhost\", maps:get(members, I)), \
         lists:member(\"c_late@localhost\", maps:get(retrying, I))}.",
        "{false,false}",
    )?;
    // The others stay connected.
    eval_until(
        &mut e,
        conns,
        "[{c_tcp@localhost,inet_tcp},{c_tls@localhost,inet_tls}]",
    )?;
    Ok(())
}

/// The adapter's JSON decoder (OTP 25 has none) on what etcd sends and on
/// hostile input: errors, never a crash, an atom or unbounded work.
#[test]
fn json_decoder_refuses_bad_input_without_crashing() -> Result<()> {
    let fx = Fixture::new()?;
    let ebin = ebin().display().to_string();
    let mut n = fx.erl("c_json", &["-pa".to_owned(), ebin])?;
    let cases: &[(&str, &str)] = &[
        (
            r#"<<"{\"a\":[1,-2.5e1,true,null,\"x\\u00e9\\ud83d\\ude00\"],\"b\":{}}">>"#,
            // x, é (C3 A9) and U+1F600 from its surrogate pair (F0 9F 98 80).
            "{ok,#{<<\"a\">> => [1,-25.0,true,null,<<120,195,169,240,159,152,128>>],<<\"b\">> => #{}}}",
        ),
        (r#"<<"{\"a\":1} x">>"#, "{error,trailing_data}"),
        (r#"<<"{\"a\":">>"#, "{error,unexpected_end}"),
        (r#"<<"[01]">>"#, "{error,bad_array}"),
        (r#"<<"\"\\ud800\"">>"#, "{error,bad_surrogate}"),
        (r#"<<"\"\\x\"">>"#, "{error,bad_escape}"),
        (r#"<<"1e99999">>"#, "{error,bad_number}"),
        (r#"<<"1e400">>"#, "{error,bad_number}"),
        (r#"<<"\"a", 255, "\"">>"#, "{error,invalid_utf8}"),
        (r#"<<"\"a", 1, "\"">>"#, "{error,bad_string}"),
        (
            r#"list_to_binary(lists:duplicate(100000, $[))"#,
            "{error,too_deep}",
        ),
        (
            r#"list_to_binary(lists:duplicate(50, $9))"#,
            "{error,number_too_long}",
        ),
    ];
    for (input, want) in cases {
        let got = n.eval(&format!("epmdx_json:decode({input})."))?;
        ensure!(&got == want, "decode({input}) = {got}, want {want}");
    }
    Ok(())
}
