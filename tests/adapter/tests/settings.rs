//! Security settings fail closed: a malformed policy, rule, selector,
//! certificate path, TLS option or cluster setting stops the node at start with a message
//! that names the setting (it used to be dropped with a warning, so a typo
//! in a TLS-only rule quietly meant plain TCP). And the EPMD module's two
//! spellings: `-epmd_module` works and is reported; on OTP 25, which does
//! not read `-kernel epmd_module` (OTP reads it from 27.2 on), a node that
//! sets only the parameter refuses to start with a message saying which
//! spelling to use, instead of registering as a stock node.

mod common;

use anyhow::{bail, ensure, Result};
use common::*;

/// Starts an adapted node (TCP and TLS) with `extra` and expects it not to
/// come up, with `want` in its output.
fn refuses(fx: &Fixture, name: &str, extra: &[&str], want: &str) -> Result<()> {
    match fx.adapted(name, &["epmdx_tcp", "epmdx_tls"], extra) {
        Ok(n) => bail!("{name}: started despite {extra:?}; output:\n{}", n.output()),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(text.contains(want), "{name}: no {want:?} in:\n{text}");
            Ok(())
        }
    }
}

#[test]
fn malformed_policy_and_selector_stop_the_node() -> Result<()> {
    let fx = Fixture::new()?;
    let cases: &[(&str, &str, &str)] = &[
        (
            "epmdx_policy",
            "[{same_host, [inet_tpc]}]",
            "-kernel epmdx_policy: same_host: unknown transport inet_tpc",
        ),
        (
            "epmdx_policy",
            "[{rules, [{node, \"backup*@*\", [inet_tls]}, {cidr, \"10.0.0.0/33\", [inet_tls]}]}]",
            "-kernel epmdx_policy: rule 2 {cidr,\"10.0.0.0/33\",[inet_tls]}: bad CIDR",
        ),
        (
            "epmdx_policy",
            "[{rules, [{nodes, \"x*\", [inet_tls]}]}]",
            "-kernel epmdx_policy: rule 1 {nodes,\"x*\",[inet_tls]}: expected {node, Glob",
        ),
        (
            "epmdx_policy",
            "[{other_network, [inet_tls]}]",
            "-kernel epmdx_policy: unknown key other_network",
        ),
        (
            "epmdx_policy",
            "[{other, inet_tls}]",
            "-kernel epmdx_policy: other: expected a list of transports",
        ),
        (
            "epmdx_selector",
            "{no_such_module, pick}",
            "-kernel epmdx_selector: no_such_module:pick/4 is not an exported function",
        ),
        (
            "epmdx_selector",
            "no_such_module",
            "-kernel epmdx_selector: expected {Module, Function}",
        ),
    ];
    for (i, (key, value, want)) in cases.iter().enumerate() {
        refuses(&fx, &format!("p{i}"), &["-kernel", key, value], want)?;
    }
    // A well-formed policy starts.
    let n = fx.adapted(
        "ok",
        &["epmdx_tcp", "epmdx_tls"],
        &["-kernel", "epmdx_policy", "[{same_host, [inet_tls]}]"],
    )?;
    drop(n);
    Ok(())
}

#[test]
fn malformed_cluster_setting_stops_the_node() -> Result<()> {
    let fx = Fixture::new()?;
    let cases: &[(&str, &str)] = &[
        (
            "[{etcd, \"http://127.0.0.1:2379\"}]",
            "-kernel epmdx_cluster: no {cluster, Name} entry",
        ),
        (
            "[{etcd, \"htp://127.0.0.1:2379\"}, {cluster, \"c\"}]",
            "-kernel epmdx_cluster: etcd: \"htp://127.0.0.1:2379\" is not an http://host:port URL",
        ),
        (
            "[{etcd, \"https://127.0.0.1:2379\"}, {cluster, \"c\"}]",
            "-kernel epmdx_cluster: etcd: https://127.0.0.1:2379: https is not supported",
        ),
        (
            "[{etcd, \"http://127.0.0.1:2379\"}, {cluster, \"a/b\"}]",
            "-kernel epmdx_cluster: cluster: expected a name of 1-64 letters",
        ),
        (
            "[{etcd, \"http://127.0.0.1:2379\"}, {cluster, \"c\"}, {interval, 5}]",
            "-kernel epmdx_cluster: interval: expected milliseconds between 100 and 60000, got 5",
        ),
        (
            "[{etcd, \"http://127.0.0.1:2379\"}, {cluster, \"c\"}, {clutser, \"d\"}]",
            "-kernel epmdx_cluster: unknown key clutser",
        ),
        ("etcd", "-kernel epmdx_cluster: expected [{etcd,"),
    ];
    for (i, (value, want)) in cases.iter().enumerate() {
        refuses(
            &fx,
            &format!("k{i}"),
            &["-kernel", "epmdx_cluster", value],
            want,
        )?;
    }
    Ok(())
}

#[test]
fn malformed_tls_settings_stop_the_node() -> Result<()> {
    let fx = Fixture::new()?;
    let [cert, key, ca] = fx.tls_files().map(|p| p.display().to_string());
    let write = |name: &str, server: &str| -> Result<String> {
        let p = fx.dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[{{server, [{server}]}},\n {{client, [{{certfile, \"{cert}\"}}, \
                 {{keyfile, \"{key}\"}}, {{cacertfile, \"{ca}\"}}, {{verify, verify_peer}}]}}].\n"
            ),
        )?;
        Ok(p.display().to_string())
    };
    let good = format!(
        "{{certfile, \"{cert}\"}}, {{keyfile, \"{key}\"}}, {{cacertfile, \"{ca}\"}}, \
         {{verify, verify_peer}}, {{fail_if_no_peer_cert, true}}"
    );
    let missing = write(
        "missing.conf",
        &good.replace(&format!("\"{cert}\""), "\"/nonexistent/node.pem\""),
    )?;
    let not_pem = write("notpem.conf", &good.replace(&cert, &missing))?;
    let bad_value = write(
        "badvalue.conf",
        &good.replace("verify_peer", "verify_peeer"),
    )?;
    let unknown = write(
        "unknown.conf",
        &good.replace("fail_if_no_peer_cert", "fail_if_no_peer_crt"),
    )?;
    let cases = [
        (
            missing.clone(),
            format!("-ssl_dist_optfile {missing}: server: certfile \"/nonexistent/node.pem\": no such file"),
        ),
        (
            not_pem.clone(),
            format!("-ssl_dist_optfile {not_pem}: server: certfile \"{missing}\": no PEM entry"),
        ),
        (
            bad_value.clone(),
            format!("-ssl_dist_optfile {bad_value}: server: TLS option rejected by ssl: {{verify,verify_peeer}}"),
        ),
        (
            unknown.clone(),
            format!("-ssl_dist_optfile {unknown}: server: fail_if_no_peer_crt is not a TLS option ssl knows"),
        ),
    ];
    // adapter_args passes the fixture's good optfile; a second one would be
    // OTP's own error, so these nodes are started with their own arguments.
    for (i, (file, want)) in cases.iter().enumerate() {
        let args = tls_node_args(&["-ssl_dist_optfile", file]);
        expect_refusal(&fx, &format!("t{i}"), &args, want)?;
    }
    let args = tls_node_args(&[
        "-ssl_dist_optfile",
        &fx.ssl_optfile().display().to_string(),
        "-ssl_dist_opt",
        "server_cacertfile",
        "/nonexistent/ca.pem",
    ]);
    expect_refusal(
        &fx,
        "t_opt",
        &args,
        "-ssl_dist_opt server_cacertfile: cacertfile \"/nonexistent/ca.pem\": no such file",
    )?;
    Ok(())
}

fn tls_node_args(tls: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-pa".into(),
        ebin().display().to_string(),
        "-epmd_module".into(),
        "epmdx_epmd".into(),
        "-proto_dist".into(),
        "epmdx_tcp".into(),
        "epmdx_tls".into(),
    ];
    a.extend(tls.iter().map(|s| s.to_string()));
    a
}

fn expect_refusal(fx: &Fixture, name: &str, args: &[String], want: &str) -> Result<()> {
    match fx.erl(name, args) {
        Ok(n) => bail!("{name}: started with {args:?}; output:\n{}", n.output()),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(text.contains(want), "{name}: no {want:?} in:\n{text}");
            Ok(())
        }
    }
}

/// OTP 25 reads only `-epmd_module`: the adapter says so at start (info
/// level), and a node with only `-kernel epmd_module epmdx_epmd` (which OTP
/// 25 ignores, running erl_epmd) refuses to start, naming the flag to use.
#[test]
fn epmd_module_spellings_on_otp_25() -> Result<()> {
    let fx = Fixture::new()?;
    let mut n = fx.adapted("flag", &["epmdx_tcp"], &["-kernel", "logger_level", "info"])?;
    wait_output(&n, "epmdx_epmd: the EPMD module, set with -epmd_module")?;
    let m = n.eval("epmdx_config:epmd_module_setting().")?;
    ensure!(m == "{flag,epmdx_epmd}", "setting: {m}");
    drop(n);
    let args: Vec<String> = [
        "-pa",
        &ebin().display().to_string(),
        "-kernel",
        "epmd_module",
        "epmdx_epmd",
        "-proto_dist",
        "epmdx_tcp",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expect_refusal(
        &fx,
        "param",
        &args,
        "-kernel epmd_module epmdx_epmd is ignored by OTP 25",
    )?;
    ensure!(
        !fx.epmdx_nodes()?.contains("name param "),
        "the refused node registered:\n{}",
        fx.epmdx_nodes()?
    );
    Ok(())
}
