//! The Elixir example (`examples/elixir`): `MIX_ENV=prod mix release` with
//! Debian's Elixir, offline (no hex packages), the adapter's modules
//! compiled into the application and `rel/vm.args.eex` as in
//! docs/erlang.md. The release's node then connects to a Rust (erldist)
//! node over TLS (the example's rule `tls*@*` → TLS) and is reached by a
//! stock Erlang node over TCP. Needs Debian's `elixir` (Elixir 1.14+).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::*;

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with its output in `log`, killed by PID after `timeout`.
fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<String> {
    let out = File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(text),
        Some(s) => bail!("{cmd:?}: {s}:\n{text}"),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{cmd:?} did not finish in {timeout:?}:\n{text}")
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            if e.file_name() != "_build" && e.file_name() != "deps" {
                copy_dir(&e.path(), &dst)?;
            }
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// The fenced block of docs/erlang.md marked `tested: NAME`.
fn doc_block(name: &str) -> Result<String> {
    test_support::docs::block("docs/erlang.md", name)
}

/// One command of examples/elixir/README.md (block `mix release`): its
/// leading `KEY=VALUE` assignments and its words.
struct ExampleCommand {
    env: Vec<(String, String)>,
    words: Vec<String>,
}

fn example_commands() -> Result<Vec<ExampleCommand>> {
    let body = test_support::docs::block("examples/elixir/README.md", "mix release")?;
    test_support::docs::commands(&body)?
        .into_iter()
        .map(|c| {
            let mut env = Vec::new();
            let mut words = c.words.into_iter().peekable();
            while let Some((k, v)) = words.peek().and_then(|w| w.split_once('=')) {
                if k.is_empty() || !k.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_') {
                    break;
                }
                env.push((k.to_owned(), v.to_owned()));
                words.next();
            }
            Ok(ExampleCommand {
                env,
                words: words.collect(),
            })
        })
        .collect()
}

/// The release's `start`, killed by PID on drop (the scripts exec down to
/// the emulator, so the PID is the node).
struct Release {
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn release_env(cmd: &mut Command, fx: &Fixture, home: &Path) {
    cmd.env("ERL_EPMD_PORT", fx.port().to_string())
        .env("RELEASE_NODE", "rel@localhost")
        .env("RELEASE_DISTRIBUTION", "sname")
        .env("RELEASE_COOKIE", COOKIE)
        .env("HOME", home)
        .env_remove("ERL_FLAGS")
        .env_remove("ERL_AFLAGS")
        .env_remove("ELIXIR_ERL_OPTIONS");
}

#[test]
fn mix_release_talks_tls_to_rust_and_tcp_to_stock() -> Result<()> {
    let elixir = test_support::erl::require_on_path("mix", "elixir")?;
    let fx = Fixture::new()?;
    let home = fx.dir.path().join("home");
    std::fs::create_dir_all(&home)?;

    // The example, with this repository's adapter and the fixture's TLS
    // options file in place of the example paths.
    let app = fx.dir.path().join("app");
    copy_dir(&repo_root().join("examples/elixir"), &app)?;
    let adapter = repo_root().join("erlang/src").canonicalize()?;
    let mix = std::fs::read_to_string(app.join("mix.exs"))?;
    let from = "Path.expand(\"../../erlang/src\", __DIR__)";
    ensure!(mix.contains(from), "mix.exs no longer says {from}");
    std::fs::write(
        app.join("mix.exs"),
        mix.replace(from, &format!("{:?}", adapter.display().to_string())),
    )?;
    let vm = std::fs::read_to_string(app.join("rel/vm.args.eex"))?;
    std::fs::write(
        app.join("rel/vm.args.eex"),
        vm.replace(
            "/etc/myapp/ssl_dist.conf",
            &fx.ssl_optfile().display().to_string(),
        ),
    )?;

    // The example README's two commands, as written, with the test's
    // private EPMD port for 4369 and `rel@localhost` for the node `app`
    // (release_env), so the node's host is one every test can resolve.
    let example = example_commands()?;
    ensure!(example.len() == 2, "the example's block changed");
    let (build_doc, start_doc) = (&example[0], &example[1]);
    ensure!(
        build_doc.words == ["mix", "release"]
            && build_doc.env == [("MIX_ENV".to_owned(), "prod".to_owned())],
        "the build command changed: {:?} {:?}",
        build_doc.env,
        build_doc.words
    );
    let start_env: Vec<(&str, &str)> = start_doc
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ensure!(
        start_env
            == [
                ("ERL_EPMD_PORT", "4369"),
                ("RELEASE_NODE", "app"),
                ("RELEASE_DISTRIBUTION", "sname")
            ]
            && start_doc.words.len() == 2
            && start_doc.words[1] == "start",
        "the start command changed: {start_env:?} {:?}",
        start_doc.words
    );

    let mut build = Command::new(&elixir);
    build.args(&build_doc.words[1..]).current_dir(&app);
    for (k, v) in &build_doc.env {
        build.env(k, v);
    }
    build
        .env("HOME", &home)
        .env("MIX_HOME", home.join(".mix"))
        .env("HEX_OFFLINE", "1");
    run_logged(build, &fx.dir.path().join("build.log"), BUILD_TIMEOUT)?;
    let bin = app.join(&start_doc.words[0]);
    ensure!(bin.exists(), "no {}", bin.display());

    let log = fx.dir.path().join("release.log");
    let mut start = Command::new(&bin);
    start.args(&start_doc.words[1..]);
    release_env(&mut start, &fx, &home);
    let out = File::create(&log)?;
    start
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let rel = Release {
        child: Some(start.spawn().context("start the release")?),
        log,
    };
    let line = fx
        .wait_nodes_line("rel", |l| {
            l.contains("#inet_tcp") && l.contains("#inet_tls")
        })
        .with_context(|| std::fs::read_to_string(&rel.log).unwrap_or_default())?;
    ensure!(
        port_of(&line, "inet_tls").is_some(),
        "release registration: {line}"
    );

    // The release dials a TLS-only Rust node: the example's rule sends
    // tls*@* over TLS.
    let [cert, key, ca] = fx.tls_files().map(|p| p.display().to_string());
    let r = fx.rust_node(
        "tls_r",
        &[
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
    let rpc = |expr: &str| -> Result<String> {
        let mut c = Command::new(&bin);
        c.args(["rpc", expr]);
        release_env(&mut c, &fx, &home);
        run_logged(c, &fx.dir.path().join("rpc.log"), RPC_TIMEOUT)
    };
    let mut pong = String::new();
    let ok = wait_until(WAIT, || {
        pong = rpc(&format!("IO.inspect(Node.ping(:\"{}\"))", r.node))
            .unwrap_or_else(|e| format!("{e:#}"));
        pong.contains(":pong")
    });
    ensure!(
        ok,
        "the release could not reach {}: {pong}\n{}",
        r.node,
        std::fs::read_to_string(&rel.log).unwrap_or_default()
    );
    let conns = rpc("IO.inspect(EpmdxExample.connections())")?;
    ensure!(
        conns.contains(&format!("{}: :inet_tls", r.node)),
        "release connections: {conns}"
    );

    // A stock node reaches the release over TCP (PORT_PLEASE2 → its first
    // plain-TCP transport).
    let mut s = fx.erl("stock", &[])?;
    ping_until_pong(&mut s, "rel@localhost")?;
    let c = conn(&mut s, "rel@localhost")?;
    ensure!(c.transport == "inet_tcp", "stock → release: {c:?}");
    drop(rel);
    Ok(())
}

/// docs/erlang.md's development vm.args, through `elixir --vm-args`: the
/// node registers every transport with epmdx and reaches an adapted node.
#[test]
fn elixir_vm_args_from_the_docs() -> Result<()> {
    let elixir = test_support::erl::require_on_path("elixir", "elixir")?;
    let fx = Fixture::new()?;
    let vm = doc_block("elixir vm.args")?
        .replace("/opt/epmdx/ebin", &ebin().display().to_string())
        .replace(
            "/etc/myapp/ssl_dist.conf",
            &fx.ssl_optfile().display().to_string(),
        );
    let vm_file = fx.dir.path().join("dev.vm.args");
    std::fs::write(&vm_file, vm)?;
    let _s = fx.adapted("s", &["epmdx_tcp", "epmdx_tls"], &[])?;
    let home = fx.dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let mut cmd = Command::new(elixir);
    cmd.args(["--sname", "dev@localhost", "--cookie", COOKIE, "--vm-args"])
        .arg(&vm_file)
        .args([
            "-e",
            "IO.inspect(:epmdx_epmd.registered()); IO.inspect(Node.ping(:\"s@localhost\"))",
        ])
        .env("ERL_EPMD_PORT", fx.port().to_string())
        .env("HOME", &home)
        .env_remove("ERL_FLAGS")
        .env_remove("ELIXIR_ERL_OPTIONS");
    let out = run_logged(cmd, &fx.dir.path().join("dev.log"), RPC_TIMEOUT)?;
    ensure!(
        out.contains("{:extended,") && out.contains(":inet_tcp") && out.contains(":inet_tls"),
        "registration: {out}"
    );
    ensure!(out.contains(":pong"), "ping: {out}");
    Ok(())
}

/// docs/erlang.md's development commands, `elixir ... -S mix run` and
/// `iex ... -S mix`, in the example project with the documented vm.args:
/// `mix run`'s `--no-halt` is replaced by an expression that prints the
/// registration, and iex reads the same expression from its stdin.
#[test]
fn elixir_and_iex_commands_from_the_docs() -> Result<()> {
    test_support::erl::require_on_path("iex", "elixir")?;
    let fx = Fixture::new()?;
    let home = fx.dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let app = fx.dir.path().join("app");
    copy_dir(&repo_root().join("examples/elixir"), &app)?;
    let adapter = repo_root().join("erlang/src").canonicalize()?;
    let mix = std::fs::read_to_string(app.join("mix.exs"))?;
    std::fs::write(
        app.join("mix.exs"),
        mix.replace(
            "Path.expand(\"../../erlang/src\", __DIR__)",
            &format!("{:?}", adapter.display().to_string()),
        ),
    )?;
    let vm = doc_block("elixir vm.args")?
        .replace("/opt/epmdx/ebin", &ebin().display().to_string())
        .replace(
            "/etc/myapp/ssl_dist.conf",
            &fx.ssl_optfile().display().to_string(),
        );
    let vm_file = app.join("dev.vm.args");
    std::fs::write(&vm_file, vm)?;
    let show = "IO.inspect(:epmdx_epmd.registered())";
    let cmds = doc_block("elixir commands")?;
    let lines: Vec<&str> = cmds.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 2,
        "expected the elixir and iex lines: {cmds}"
    );
    for (i, line) in lines.iter().enumerate() {
        let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        for w in words.iter_mut() {
            if w == "dev" {
                *w = format!("dev{i}@localhost");
            } else if w == "secret" {
                *w = COOKIE.to_owned();
            }
        }
        let iex = words[0] == "iex";
        if let Some(p) = words.iter().position(|w| w == "--no-halt") {
            words.splice(p..=p, ["-e".to_owned(), show.to_owned()]);
        }
        let log = fx.dir.path().join(format!("cmd{i}.log"));
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .current_dir(&app)
            .env("ERL_EPMD_PORT", fx.port().to_string())
            .env("HOME", &home)
            .env("MIX_HOME", home.join(".mix"))
            .env("HEX_OFFLINE", "1")
            .env_remove("ERL_FLAGS")
            .env_remove("ELIXIR_ERL_OPTIONS");
        let out = if iex {
            let input = app.join("iex.in");
            std::fs::write(&input, format!("{show}\n:init.stop()\n"))?;
            let f = File::create(&log)?;
            cmd.stdin(File::open(&input)?)
                .stdout(f.try_clone()?)
                .stderr(f);
            let mut child = cmd.spawn().context("iex")?;
            let mut done = false;
            wait_until(RPC_TIMEOUT, || {
                done = child.try_wait().ok().flatten().is_some();
                done
            });
            if !done {
                let _ = child.kill();
                let _ = child.wait();
            }
            std::fs::read_to_string(&log)?
        } else {
            run_logged(cmd, &log, BUILD_TIMEOUT)?
        };
        ensure!(
            out.contains("{:extended,") && out.contains(":inet_tcp") && out.contains(":inet_tls"),
            "{line}: {out}"
        );
    }
    Ok(())
}
