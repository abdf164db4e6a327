//! The examples of docs/erlang.md work as written: the `erl` command line,
//! the `ssl_dist.conf`, the `vm.args` snippet and the example selector are
//! read from the document (blocks after `<!-- tested: NAME`), their example
//! paths replaced by the test's own, and run.

mod common;

use std::process::Command;

use test_support::docs::shell_words;

use anyhow::{bail, ensure, Context, Result};
use common::*;

/// The fenced block of docs/erlang.md marked `tested: name`.
fn doc_block(name: &str) -> Result<String> {
    test_support::docs::block("docs/erlang.md", name)
}

/// Replaces the document's example paths with the fixture's.
fn localize(fx: &Fixture, text: &str) -> String {
    let certs = fx.dir.path().join("certs");
    text.replace("/opt/epmdx/ebin", &ebin().display().to_string())
        .replace(
            "/etc/myapp/ssl_dist.conf",
            &doc_optfile(fx).display().to_string(),
        )
        .replace("/etc/myapp/certs", &certs.display().to_string())
        .replace("/run/myapp/erldist", &fx.uds_dir().display().to_string())
}

fn doc_optfile(fx: &Fixture) -> std::path::PathBuf {
    fx.dir.path().join("doc_ssl_dist.conf")
}

/// Drops what ErlNode sets itself (-sname, -setcookie) from an argument list.
fn without_identity(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        if w == "-sname" || w == "-name" || w == "-setcookie" {
            it.next();
        } else {
            out.push(w);
        }
    }
    out
}

fn expect_three_transports(fx: &Fixture, alive: &str) -> Result<()> {
    let line = fx.wait_nodes_line(alive, |l| l.contains("#uds"))?;
    let tcp = port_of(&line, "inet_tcp").context("tcp")?;
    let tls = port_of(&line, "inet_tls").context("tls")?;
    let want = format!(
        "name {alive} at port {tcp}#inet_tcp {tls}#inet_tls 0#uds({})",
        fx.uds_dir().join(alive).display()
    );
    ensure!(line == want, "epmdx nodes: {line}, expected {want}");
    Ok(())
}

#[test]
fn documented_command_line_vm_args_and_selector_work() -> Result<()> {
    let fx = Fixture::new()?;
    let conf = localize(&fx, &doc_block("ssl_dist.conf")?);
    std::fs::write(doc_optfile(&fx), conf)?;

    // The command line, as a node "s".
    let words = shell_words(&doc_block("command-line")?)?;
    ensure!(
        words.first().map(String::as_str) == Some("erl"),
        "{words:?}"
    );
    let args: Vec<String> = without_identity(words[1..].to_vec())
        .iter()
        .map(|w| localize(&fx, w))
        .collect();
    let mut s = fx.erl("s", &args)?;
    expect_three_transports(&fx, "s")?;
    let pol = s.eval("application:get_env(kernel, epmdx_policy).")?;
    ensure!(
        pol == "{ok,[{rules,[{node,\"backup*@*\",[inet_tls]}]}]}",
        "policy from the command line: {pol}"
    );

    // vm.args, through -args_file, as a node "v".
    let vm: String = doc_block("vm.args")?
        .lines()
        .filter(|l| {
            !(l.starts_with("-sname") || l.starts_with("-name") || l.starts_with("-setcookie"))
        })
        .map(|l| localize(&fx, l) + "\n")
        .collect();
    let vm_file = fx.dir.path().join("vm.args");
    std::fs::write(&vm_file, vm)?;
    let mut v = fx.erl("v", &["-args_file".into(), vm_file.display().to_string()])?;
    expect_three_transports(&fx, "v")?;
    ping_until_pong(&mut v, "s@localhost")?;
    let c = conn(&mut v, "s@localhost")?;
    ensure!(c.transport == "uds", "v → s: {c:?}");
    // The documented rule: backup*@* goes over TLS.
    let _b = fx.adapted("backup1", &["epmdx_tcp", "epmdx_tls"], &[])?;
    ping_until_pong(&mut v, "backup1@localhost")?;
    let c = conn(&mut v, "backup1@localhost")?;
    ensure!(c.transport == "inet_tls", "v → backup1: {c:?}");

    // The example selector: the Unix socket on this host, else TLS.
    let src = fx.dir.path().join("sel");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("my_selector.erl"), doc_block("selector")?)?;
    let o = Command::new("erlc")
        .arg("-o")
        .arg(&src)
        .arg(src.join("my_selector.erl"))
        .output()
        .context("erlc")?;
    ensure!(o.status.success(), "erlc my_selector: {o:?}");
    let pa = src.display().to_string();
    let sel = "{my_selector, select}";
    let mut a = fx.adapted(
        "sel_all",
        &["epmdx_tcp", "epmdx_tls", "epmdx_uds"],
        &["-pa", &pa, "-kernel", "epmdx_selector", sel],
    )?;
    ping_until_pong(&mut a, "s@localhost")?;
    ensure!(conn(&mut a, "s@localhost")?.transport == "uds");
    let mut t = fx.adapted(
        "sel_ip",
        &["epmdx_tcp", "epmdx_tls"],
        &["-pa", &pa, "-kernel", "epmdx_selector", sel],
    )?;
    ping_until_pong(&mut t, "s@localhost")?;
    let c = conn(&mut t, "s@localhost")?;
    ensure!(c.transport == "inet_tls", "sel_ip → s: {c:?}");
    for n in [&a, &t] {
        ensure!(
            !n.output().contains("falling back"),
            "the example selector was rejected:\n{}",
            n.output()
        );
    }
    Ok(())
}

fn rebar3() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("rebar3"))
        .find(|p| p.is_file())
}

/// A rebar3 release with the adapter as an application (no `-pa`) and the
/// documented vm.args starts in embedded mode and registers its three
/// transports. Needs `rebar3` (Debian package `rebar3`, which
/// `scripts/test.sh` installs).
#[test]
fn rebar3_release_with_the_documented_vm_args() -> Result<()> {
    let rebar3 = rebar3().context("rebar3 not on PATH: install the Debian package rebar3")?;
    let fx = Fixture::new()?;
    std::fs::write(
        doc_optfile(&fx),
        localize(&fx, &doc_block("ssl_dist.conf")?),
    )?;
    let proj = fx.dir.path().join("myapp");
    for d in ["src", "config", "_checkouts"] {
        std::fs::create_dir_all(proj.join(d))?;
    }
    std::os::unix::fs::symlink(
        repo_root().join("erlang").canonicalize()?,
        proj.join("_checkouts/epmdx_adapter"),
    )?;
    std::fs::write(proj.join("rebar.config"), doc_block("rebar.config")?)?;
    std::fs::write(
        proj.join("src/myapp.app.src"),
        "{application, myapp, [{description, \"test\"}, {vsn, \"0.1.0\"}, \
         {applications, [kernel, stdlib]}, {modules, []}, {registered, []}]}.\n",
    )?;
    let vm: String = doc_block("vm.args")?
        .lines()
        .filter(|l| !l.starts_with("-pa"))
        .map(|l| {
            let l = if l.starts_with("-sname") {
                "-sname rel@localhost".to_owned()
            } else if l.starts_with("-setcookie") {
                format!("-setcookie {COOKIE}")
            } else {
                localize(&fx, l)
            };
            l + "\n"
        })
        .chain(std::iter::once("-start_epmd false\n".to_owned()))
        .collect();
    std::fs::write(proj.join("config/vm.args"), vm)?;
    let o = Command::new(&rebar3)
        .arg("release")
        .current_dir(&proj)
        .env("HOME", fx.dir.path())
        .env("REBAR_CACHE_DIR", fx.dir.path().join("rebar3-cache"))
        .output()
        .context("rebar3 release")?;
    ensure!(o.status.success(), "rebar3 release: {o:?}");
    let bin = proj.join("_build/default/rel/myapp/bin/myapp");
    let mut child = Command::new(&bin)
        .arg("foreground")
        .env("ERL_EPMD_PORT", fx.port().to_string())
        .env("HOME", fx.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let r = (|| {
        expect_three_transports(&fx, "rel")?;
        let mut m = fx.adapted("m", &["epmdx_tcp", "epmdx_uds"], &[])?;
        ping_until_pong(&mut m, "rel@localhost")?;
        let mode = m.eval("rpc:call('rel@localhost', init, get_argument, [mode]).")?;
        ensure!(mode == "{ok,[[\"embedded\"]]}", "mode: {mode}");
        let c = conn(&mut m, "rel@localhost")?;
        ensure!(c.transport == "uds", "m → rel: {c:?}");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// The OTP 27.2+ `vm.args` (`-kernel epmd_module`) on OTP 25, which
/// ignores that parameter: the node refuses to start with the documented
/// message instead of registering as a stock node.
#[test]
fn documented_otp_27_2_vm_args_is_refused_on_otp_25() -> Result<()> {
    let fx = Fixture::new()?;
    std::fs::write(
        doc_optfile(&fx),
        localize(&fx, &doc_block("ssl_dist.conf")?),
    )?;
    let vm: String = doc_block("vm.args OTP 27.2+")?
        .lines()
        .filter(|l| {
            !(l.starts_with("-sname") || l.starts_with("-name") || l.starts_with("-setcookie"))
        })
        .map(|l| localize(&fx, l) + "\n")
        .collect();
    ensure!(vm.contains("-kernel epmd_module epmdx_epmd"), "{vm}");
    let vm_file = fx.dir.path().join("vm27.args");
    std::fs::write(&vm_file, vm)?;
    match fx.erl("v27", &["-args_file".into(), vm_file.display().to_string()]) {
        Ok(n) => bail!(
            "started on OTP 25 with -kernel epmd_module only:\n{}",
            n.output()
        ),
        Err(e) => {
            let text = format!("{e:#}");
            let want = "-kernel epmd_module epmdx_epmd is ignored by OTP 25";
            ensure!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }
    Ok(())
}

/// The `names3` example, the `build` commands, the policy fragment and
/// both selector spellings, as written.
#[test]
fn documented_names3_build_policy_and_selector_flags() -> Result<()> {
    // build: both lines, the second into a directory of the test's own.
    let fx = Fixture::new()?;
    let out_dir = fx.dir.path().join("ebin");
    for line in doc_block("build")?.lines() {
        let cmd = line.split('#').next().unwrap_or_default().trim();
        let words = shell_words(&cmd.replace("/opt/epmdx/ebin", &out_dir.display().to_string()))?;
        let o = Command::new(repo_root().join(&words[0]))
            .args(&words[1..])
            .current_dir(repo_root())
            .output()?;
        ensure!(o.status.success(), "{cmd}: {o:?}");
    }
    ensure!(
        out_dir.join("epmdx_epmd.beam").exists(),
        "build.sh DIR wrote nothing"
    );

    // names3: the shape of the example answer for a node on TCP, TLS and uds.
    let mut s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls", "epmdx_uds"], &[])?;
    fx.wait_nodes_line("s", |l| l.contains("#uds"))?;
    let ex = doc_block("names3")?;
    let call = ex
        .lines()
        .find_map(|l| l.strip_prefix("1> "))
        .context("no 1> line")?;
    let got = s.eval(call)?;
    let want = ex.lines().nth(1).context("no answer line")?;
    let shape = |t: &str| -> String {
        t.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .split(|c: char| c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("N")
    };
    ensure!(
        shape(&got) == shape(want),
        "names3: {got}, documented {want}"
    );

    // The policy fragment: a well-formed policy, so the node starts with it.
    let words = shell_words(&doc_block("policy")?)?;
    ensure!(words.len() == 3 && words[1] == "epmdx_policy", "{words:?}");
    let mut p = fx.adapted(
        "pol",
        &["epmdx_tcp", "epmdx_tls"],
        &[&words[0], &words[1], &words[2]],
    )?;
    let v = p.eval("element(1, epmdx_policy:config()).")?;
    ensure!(v == "ok", "policy: {v}");

    // Both selector spellings, with the documented selector compiled.
    let src = fx.dir.path().join("sel");
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("my_selector.erl"), doc_block("selector")?)?;
    let o = Command::new("erlc")
        .arg("-o")
        .arg(&src)
        .arg(src.join("my_selector.erl"))
        .output()?;
    ensure!(o.status.success(), "erlc: {o:?}");
    let flags = doc_block("selector-flags")?;
    let line = flags.lines().next().context("empty")?;
    let (first, second) = line.split_once('#').context("no second spelling")?;
    let second = second.trim().strip_prefix("or:").context("or:")?;
    for (i, spelling) in [first, second].iter().enumerate() {
        let mut args = vec!["-pa".to_owned(), src.display().to_string()];
        args.extend(shell_words(spelling)?);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut n = fx.adapted(
            &format!("sel{i}"),
            &["epmdx_tcp", "epmdx_tls", "epmdx_uds"],
            &refs,
        )?;
        ping_until_pong(&mut n, "s@localhost")?;
        let c = conn(&mut n, "s@localhost")?;
        ensure!(c.transport == "uds", "{spelling}: {c:?}");
    }
    Ok(())
}

/// README.md's adapter command line, with the test's paths: the node
/// registers TCP, TLS and the Unix socket.
#[test]
fn readme_adapter_command_line() -> Result<()> {
    let fx = Fixture::new()?;
    let text = test_support::docs::block("README.md", "adapter")?
        .replace("target/erlang/ebin", &ebin().display().to_string())
        .replace(
            "/abs/path/ssl_dist.conf",
            &fx.ssl_optfile().display().to_string(),
        );
    let words = without_identity(shell_words(&text)?);
    ensure!(
        words.first().map(String::as_str) == Some("erl"),
        "{words:?}"
    );
    let mut args = words[1..].to_vec();
    args.extend([
        "-kernel".to_owned(),
        "epmdx_uds_dir".to_owned(),
        format!("\"{}\"", fx.uds_dir().display()),
    ]);
    let _s = fx.erl("s", &args)?;
    expect_three_transports(&fx, "s")?;
    Ok(())
}

#[test]
fn shell_words_splits_like_sh() -> Result<()> {
    let w = shell_words("erl -a '\"x y\"' \\\n  -b \"q\\\"z\" c\\ d")?;
    ensure!(w == ["erl", "-a", "\"x y\"", "-b", "q\"z", "c d"], "{w:?}");
    Ok(())
}
