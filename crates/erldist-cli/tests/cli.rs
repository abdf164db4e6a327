//! The `erldist` command line against a real `erl` node: `ping`, `send`,
//! `rpc`, `names` and `serve`.
//!
//! Every invocation gets `--cookie` and the daemon's port (as
//! `--epmd-port` or `ERL_EPMD_PORT`) explicitly, a private `HOME`, and a
//! deadline; a `serve` process is stopped by PID.

// The library suites' helpers, shared rather than copied.
#[path = "../../erldist/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use test_support::erl::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_erldist");

/// Deadline for one CLI invocation.
const CLI_DEADLINE: Duration = Duration::from_secs(30);

fn command(args: &[&str], env: &[(&str, &str)], home: &TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("ERL_EPMD_PORT")
        .env_remove("ERLANG_COOKIE")
        .env("HOME", home.path())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the CLI to completion; kills it (by PID) after [`CLI_DEADLINE`].
fn run(args: &[&str], env: &[(&str, &str)], home: &TempDir) -> Output {
    let mut child = command(args, env, home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn erldist");
    let t0 = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if t0.elapsed() > CLI_DEADLINE => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "erldist {args:?} did not finish in {CLI_DEADLINE:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn show(args: &[&str], o: &Output) -> String {
    format!(
        "erldist {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs and expects exit code `code`; returns stdout, trimmed.
fn expect(code: i32, args: &[&str], env: &[(&str, &str)], home: &TempDir) -> String {
    let o = run(args, env, home);
    assert_eq!(o.status.code(), Some(code), "{}", show(args, &o));
    stdout(&o)
}

#[test]
fn client_commands() {
    let d = daemon();
    let mut e = erl(&d, "cli", COOKIE);
    let node = e.node().to_owned();
    let home = TempDir::new("erldist-cli").unwrap();
    let port = d.port.to_string();
    let p = ["--cookie", COOKIE, "--epmd-port", port.as_str()];
    let with =
        |a: &[&str]| -> Vec<String> { a.iter().chain(p.iter()).map(|s| (*s).to_owned()).collect() };
    let run_ok = |a: &[&str], code: i32| -> String {
        let v = with(a);
        let args: Vec<&str> = v.iter().map(String::as_str).collect();
        expect(code, &args, &[], &home)
    };

    // ping: pong / 0 (with --epmd-port, and with ERL_EPMD_PORT).
    assert_eq!(run_ok(&["ping", &node], 0), "pong");
    assert_eq!(
        expect(
            0,
            &["ping", &node, "--cookie", COOKIE],
            &[("ERL_EPMD_PORT", &port)],
            &home
        ),
        "pong"
    );
    // pang / 1: nobody of that name, or the wrong cookie.
    let nobody = format!("nobody_{}@localhost", d.port);
    assert_eq!(run_ok(&["ping", &nobody, "--timeout", "5"], 1), "pang");
    assert_eq!(
        expect(
            1,
            &[
                "ping",
                &node,
                "--cookie",
                "wrong-cookie",
                "--epmd-port",
                &port,
                "--timeout",
                "5"
            ],
            &[],
            &home
        ),
        "pang"
    );

    // send: the parsed term reaches the registered process.
    assert_eq!(eval(&mut e, "register(inbox, self())."), "true");
    let term = "{hello, [1, 2, 3], <<\"bin\">>, #{a => 1.5}, \"str\", 'Quoted atom', \
                -123456789012345678901234567890, {}, [a | b]}";
    assert_eq!(run_ok(&["send", &node, "inbox", term], 0), "");
    assert_eq!(
        eval(
            &mut e,
            &format!("receive M -> M =:= {term} after 10000 -> timeout end.")
        ),
        "true"
    );
    // A term that does not parse is an error, not a panic.
    let o = run(
        &with(&["send", &node, "inbox", "{unclosed"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
        &home,
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&["send ..."], &o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot parse"),
        "{}",
        show(&["send ..."], &o)
    );

    // rpc: prints the result.
    let printed = run_ok(&["rpc", &node, "erlang", "node"], 0);
    assert!(
        printed == node || printed == format!("'{node}'"),
        "rpc erlang node printed {printed:?}, expected {node}"
    );
    assert_eq!(
        run_ok(&["rpc", &node, "lists", "seq", "[1, 5]"], 0),
        "[1,2,3,4,5]"
    );
    assert_eq!(
        run_ok(&["rpc", &node, "erlang", "atom_to_list", "[hello]"], 0),
        "\"hello\""
    );

    // names: lists the node, with its port.
    let dist_port = blocking(|| e.dist_port()).unwrap();
    let names = run_ok(&["names"], 0);
    let line = names
        .lines()
        .find(|l| l.starts_with(&format!("name {} at port", e.alive())))
        .unwrap_or_else(|| panic!("{} not in names output:\n{names}", e.alive()));
    assert!(line.contains(&dist_port.to_string()), "{line}");
    let names_env = expect(0, &["names"], &[("ERL_EPMD_PORT", &port)], &home);
    assert_eq!(names_env, names);
}

/// A `serve` process, stopped by PID when dropped.
struct Serve {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Serve {
    fn start(args: &[&str], home: &TempDir) -> (Self, String) {
        let mut child = command(args, &[], home)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn erldist serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if let Ok(mut l) = l2.lock() {
                    l.clone_from(&s);
                }
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let me = Self { child, log };
        let first = rx
            .recv_timeout(Duration::from_secs(LONG))
            .unwrap_or_else(|_| panic!("serve did not start; stderr:\n{}", me.log()));
        (me, first)
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_answers_erlang() {
    let d = daemon();
    let mut e = erl(&d, "serve", COOKIE);
    let home = TempDir::new("erldist-serve").unwrap();
    let port = d.port.to_string();
    let name = format!("srv_{}@localhost", d.port);
    let (mut srv, first) = Serve::start(
        &[
            "serve",
            "--name",
            &name,
            "--cookie",
            COOKIE,
            "--epmd-port",
            &port,
            "--listen",
            "inet_tcp@127.0.0.1:0",
        ],
        &home,
    );
    assert!(
        first.starts_with(&format!("erldist: node {name} listening")),
        "first line: {first}"
    );

    // Erlang pings it and uses its echo.
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{name}').")), "pong");
    assert_eq!(
        eval(
            &mut e,
            &format!(
                "{{echo, '{name}'}} ! {{self(), {{hi, [1, 2.5, <<\"x\">>]}}}}, \
                 receive {{hi, _}} = M -> M after 10000 -> timeout end."
            )
        ),
        "{hi,[1,2.5,<<\"x\">>]}",
        "serve log:\n{}",
        srv.log()
    );

    // The CLI reaches it too, and names lists both nodes.
    assert_eq!(
        expect(
            0,
            &["ping", &name, "--cookie", COOKIE, "--epmd-port", &port],
            &[],
            &home
        ),
        "pong"
    );
    let names = expect(0, &["names", "--epmd-port", &port], &[], &home);
    let alive = name.split('@').next().unwrap();
    assert!(names.contains(&format!("name {alive} at port")), "{names}");
    assert!(
        names.contains(&format!("name {} at port", e.alive())),
        "{names}"
    );

    // SIGTERM stops it cleanly: exit 0, and Erlang sees the node go down.
    assert_eq!(
        eval(&mut e, &format!("monitor_node('{name}', true).")),
        "true"
    );
    // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(srv.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(LONG),
            "serve ignored SIGTERM; log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "serve exited {status}; log:\n{}",
        srv.log()
    );
    assert_eq!(
        eval(
            &mut e,
            "receive {nodedown, N} -> N after 15000 -> timeout end."
        ),
        name
    );
}
