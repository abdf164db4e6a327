//! In-place upgrade (`-upgrade`, `SIGUSR2`; docs/operations.md): a stock
//! `erl` node, an Erlang node on the epmdx adapter and a Rust `erldist`
//! node stay registered, with the same ports and creations, while a lookup
//! loop runs through every upgrade without one failure; the new process
//! unregisters a node that halts and continues its creation counter; and
//! every way an upgrade can fail leaves the old daemon serving.
//!
//! Needs OTP 25 (`erl`, `erlc`) and `target/<profile>/erldist` (`cargo build
//! --bins`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use epmd_client::Client;
use epmd_proto::ext::TransportRef;
use test_support::erl::ErlNode;
use test_support::upgrade::{exited, kill_pid, pids_running, spawn_fresh, UpgradableDaemon};
use test_support::{is_registered, wait_until};

const COOKIE: &str = "upgrade_cookie";
const WAIT: Duration = Duration::from_secs(30);

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Erlang adapter, compiled by `erlang/build.sh`.
fn adapter_ebin() -> Result<PathBuf> {
    let out = target_dir().join("erlang/ebin");
    let o = Command::new("bash")
        .arg(repo_root().join("erlang/build.sh"))
        .arg(&out)
        .output()
        .context("erlang/build.sh")?;
    ensure!(o.status.success(), "erlang/build.sh: {o:?}");
    Ok(out)
}

fn erldist_bin() -> PathBuf {
    let p = target_dir().join("erldist");
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bins` first",
        p.display()
    );
    p
}

/// An `erldist serve` node, killed by PID on drop.
struct RustNode(Child, PathBuf);

impl RustNode {
    fn start(dir: &Path, name: &str, port: u16) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log)?;
        let child = Command::new(erldist_bin())
            .args(["serve", "--name", &format!("{name}@localhost")])
            .args(["--cookie", COOKIE, "--epmd-port", &port.to_string()])
            .env("HOME", dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        let me = Self(child, log);
        ensure!(
            wait_until(WAIT, || std::fs::read_to_string(&me.1)
                .unwrap_or_default()
                .contains("listening on")),
            "erldist serve did not come up"
        );
        Ok(me)
    }
}

impl Drop for RustNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// PORT_PLEASE2 on a fresh connection: the port, or why not.
fn port_please2(port: u16, name: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = vec![0, (name.len() + 1) as u8, 122];
    req.extend_from_slice(name.as_bytes());
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    match reply.as_slice() {
        [119, 0, hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
        other => Err(format!("reply {other:?}")),
    }
}

/// Looks every name up in a loop until stopped; counts lookups and
/// failures (errors, misses, a port that changed).
struct LookupLoop {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<(u64, Vec<String>)>,
}

impl LookupLoop {
    fn start(port: u16, expect: Vec<(String, u16)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let (mut n, mut failures) = (0u64, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                for (name, want) in &expect {
                    n += 1;
                    match port_please2(port, name) {
                        Ok(p) if p == *want => {}
                        Ok(p) => failures.push(format!("{name}: port {p}, expected {want}")),
                        Err(e) => failures.push(format!("{name}: {e}")),
                    }
                }
            }
            (n, failures)
        });
        Self { stop, handle }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("lookup loop")
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (name, port, creation) of every live node, sorted.
fn live(port: u16) -> Result<Vec<(String, Vec<u16>, u32)>> {
    let d = rt().block_on(Client::local(port).dump3())?;
    let mut v: Vec<_> = d
        .live
        .iter()
        .map(|(c, r)| {
            (
                String::from_utf8_lossy(&r.name).into_owned(),
                r.transports.iter().map(|t| t.port).collect(),
                *c,
            )
        })
        .collect();
    v.sort();
    Ok(v)
}

fn old_counter(port: u16, name: &str) -> Result<Option<u32>> {
    let d = rt().block_on(Client::local(port).dump3())?;
    Ok(d.old
        .iter()
        .find(|o| o.name == name.as_bytes())
        .map(|o| o.creation))
}

#[test]
fn upgrade_keeps_nodes_lookups_and_creations() -> Result<()> {
    let ebin = adapter_ebin()?;
    let mut d = UpgradableDaemon::start(&[])?;
    let port = d.port;
    let ebin_s = ebin.display().to_string();
    let mut stock = ErlNode::start("upstock@localhost", COOKIE, port, &[])?;
    let adapted = ErlNode::start(
        "upadapt@localhost",
        COOKIE,
        port,
        &["-pa", &ebin_s, "-epmd_module", "epmdx_epmd"],
    )?;
    let rust = RustNode::start(d.dir.path(), "uprust", port)?;
    // A raw extended registration, to prove the new process serves
    // follow-up ALIVE3 requests on an adopted connection.
    let rt = rt();
    let client = Client::local(port);
    let mut raw = rt.block_on(client.register_ext(
        epmd_client::NodeSpec::otp25("upraw"),
        &[TransportRef {
            port: 40001,
            proto: b"inet_tcp",
            extra: b"",
        }],
    ))?;
    let before = live(port)?;
    ensure!(before.len() == 4, "before: {before:?}");
    let expect: Vec<(String, u16)> = before.iter().map(|(n, p, _)| (n.clone(), p[0])).collect();
    let lookups = LookupLoop::start(port, expect);

    // 1. The file is replaced by a new build (here a wrapper that marks its
    //    run): the path is re-executed, not the running inode.
    let real = std::fs::read(&d.exe)?;
    let real_copy = d.dir.path().join("epmdx.real");
    std::fs::write(&real_copy, &real)?;
    std::fs::set_permissions(
        &real_copy,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let marker = d.dir.path().join("ran");
    let script = format!(
        "#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n",
        marker.display(),
        real_copy.display()
    );
    d.replace_binary(script.as_bytes(), 0o755)?;
    let n = d.upgrade()?;
    ensure!(n == 4, "{n} registrations handed over");
    ensure!(std::fs::read_to_string(&marker)?.lines().count() == 1);

    // 2. SIGUSR2 does the same.
    let old = d.pid;
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(old as i32, libc::SIGUSR2) };
    let mut new = None;
    ensure!(
        wait_until(WAIT, || {
            new = pids_running(&real_copy).into_iter().find(|&p| p != old);
            exited(old) && new.is_some()
        }),
        "SIGUSR2 did not upgrade:\n{}",
        d.log()
    );
    d.pid = new.expect("new pid");
    ensure!(std::fs::read_to_string(&marker)?.lines().count() == 2);

    // 3. Back to a plain copy of the binary, by -upgrade again.
    d.replace_binary(&real, 0o755)?;
    ensure!(d.upgrade()? == 4);

    let (n_lookups, failures) = lookups.finish();
    ensure!(
        failures.is_empty(),
        "{} of {n_lookups} lookups failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    ensure!(n_lookups > 0);
    eprintln!("{n_lookups} lookups across 3 upgrades, 0 failures");
    ensure!(live(port)? == before, "registry changed across upgrades");

    // The adopted extended connection still takes follow-up requests.
    rt.block_on(raw.add(&[TransportRef {
        port: 40002,
        proto: b"inet_tls",
        extra: b"",
    }]))?;
    let rec = rt
        .block_on(client.port_please3("upraw", &["inet_tls"]))?
        .context("upraw")?;
    ensure!(rec.transports[0].port == 40002);

    // Fresh distribution connections need lookups through the new process.
    for peer in ["upadapt@localhost", "uprust@localhost"] {
        let r = stock.eval(&format!("net_adm:ping('{peer}')."))?;
        ensure!(r == "pong", "ping {peer}: {r}");
    }

    // A node that halts now is unregistered by the new process, and its
    // counter continues at the next registration.
    let creation = before
        .iter()
        .find(|(n, _, _)| n == "upstock")
        .map(|(_, _, c)| *c)
        .context("upstock")?;
    stock.kill();
    ensure!(
        wait_until(WAIT, || !is_registered(port, "upstock")),
        "halted node still registered"
    );
    ensure!(old_counter(port, "upstock")? == Some(creation));
    let _again = ErlNode::start("upstock@localhost", COOKIE, port, &[])?;
    let now = live(port)?;
    let c2 = now
        .iter()
        .find(|(n, _, _)| n == "upstock")
        .map(|(_, _, c)| *c)
        .context("upstock again")?;
    ensure!(c2 == creation + 1, "creation {c2} after {creation}");
    drop((adapted, rust));
    Ok(())
}

#[test]
fn failed_upgrades_leave_the_old_daemon_serving() -> Result<()> {
    let mut d = UpgradableDaemon::start(&[])?;
    let port = d.port;
    let node = ErlNode::start("upfail@localhost", COOKIE, port, &[])?;
    let real = std::fs::read(&d.exe)?;
    let before = live(port)?;
    let check = |d: &UpgradableDaemon, out: &std::process::Output, want: &str| -> Result<()> {
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "upgrade succeeded: {err}");
        ensure!(out.stdout.is_empty(), "stdout {:?}", out.stdout);
        ensure!(
            err.starts_with("epmdx: upgrade failed: ") && err.contains(want),
            "stderr {err:?}, want {want:?}"
        );
        ensure!(!exited(d.pid), "old daemon died");
        ensure!(live(d.port)? == before, "registrations changed");
        ensure!(port_please2(d.port, "upfail").is_ok());
        Ok(())
    };

    std::fs::remove_file(&d.exe)?;
    let out = d.upgrade_cmd()?;
    check(
        &d,
        &out,
        &format!("cannot execute {}: No such file", d.exe.display()),
    )?;

    d.replace_binary(&real, 0o000)?;
    check(&d, &d.upgrade_cmd()?, "Permission denied")?;

    // A build speaking another hand-over version refuses; the old one says so.
    let script = format!(
        "#!/bin/sh\nEPMDX_HANDOVER_VERSION=99 exec '{}' \"$@\"\n",
        test_support::epmdx_bin().display()
    );
    d.replace_binary(script.as_bytes(), 0o755)?;
    check(
        &d,
        &d.upgrade_cmd()?,
        "the new process refused the hand-over: hand-over version 2 offered, \
         this binary reads version 99",
    )?;

    d.replace_binary(b"#!/bin/sh\nexit 3\n", 0o755)?;
    check(&d, &d.upgrade_cmd()?, "exited (exit status: 3)")?;

    // A broken hand-over: garbage instead of an answer.
    d.replace_binary(
        b"#!/bin/bash\nprintf 'garbage!' >&\"$EPMDX_HANDOVER_FD\"\nsleep 1\n",
        0o755,
    )?;
    check(&d, &d.upgrade_cmd()?, "malformed hand-over message")?;

    // Nothing was left paused or frozen: a real upgrade still works, and
    // the node halting afterwards is noticed.
    d.replace_binary(&real, 0o755)?;
    ensure!(d.upgrade()? == 1);
    drop(node);
    ensure!(wait_until(WAIT, || !is_registered(port, "upfail")));
    Ok(())
}

#[test]
fn upgrade_from_a_build_writing_hand_over_version_1() -> Result<()> {
    // The previous release wrote version 1 (no upgrade count, no metrics
    // listener); this build must take over from it.
    let mut d = UpgradableDaemon::start_with_env(&[], &[("EPMDX_HANDOVER_VERSION", "1")])?;
    let rt = rt();
    let client = Client::local(d.port);
    let node = rt.block_on(client.register(&epmd_proto::legacy::Alive2Req {
        port: 40300,
        node_type: 77,
        protocol: 0,
        high: 6,
        low: 5,
        name: b"fromv1",
        extra: b"",
    }))?;
    let before = live(d.port)?;
    // The new binary: this build, without the knob.
    let script = format!(
        "#!/bin/sh\nunset EPMDX_HANDOVER_VERSION\nexec '{}' \"$@\"\n",
        test_support::epmdx_bin().display()
    );
    d.replace_binary(script.as_bytes(), 0o755)?;
    ensure!(d.upgrade()? == 1, "log:\n{}", d.log());
    ensure!(live(d.port)? == before, "registrations changed");
    ensure!(port_please2(d.port, "fromv1") == Ok(40300));
    drop(node);
    ensure!(wait_until(WAIT, || !is_registered(d.port, "fromv1")));
    Ok(())
}

#[test]
fn upgrade_of_a_detached_daemon() -> Result<()> {
    // -daemon forks twice; as subreaper this test adopts the daemon.
    test_support::upgrade::become_subreaper();
    let dir = test_support::erl::TempDir::new("upgrade-daemon")?;
    let exe = dir.path().join("epmdx");
    std::fs::copy(test_support::epmdx_bin(), &exe)?;
    let port = test_support::free_port();
    let st = spawn_fresh(
        Command::new(&exe)
            .args(["-port", &port.to_string(), "-daemon"])
            .env_remove("ERL_EPMD_PORT"),
    )?
    .wait()?;
    ensure!(st.success());
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            kill_pid(self.0);
        }
    }
    let session = |pid: u32| -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
        Some(f.get(3)?.to_string())
    };
    // The daemon is the grandchild: in the session its parent (the
    // intermediate of the double fork, which may still be exiting) leads.
    // Before its setsid the intermediate is still in our session.
    let ours = session(std::process::id()).context("own session")?;
    let mut pids = Vec::new();
    ensure!(
        wait_until(WAIT, || {
            pids = pids_running(&exe)
                .into_iter()
                .filter(|&p| session(p).is_some_and(|s| s != p.to_string() && s != ours))
                .collect();
            pids.len() == 1
        }),
        "daemon pids {pids:?}"
    );
    let mut guard = Kill(pids[0]);
    let old_session = session(pids[0]).context("session")?;
    let node = ErlNode::start("updaemon@localhost", COOKIE, port, &[])?;
    let out = Command::new(&exe)
        .args(["-port", &port.to_string(), "-upgrade"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (old, new, n) =
        test_support::upgrade::parse_upgraded(&text).with_context(|| format!("{out:?}"))?;
    guard.0 = new;
    ensure!(old == pids[0] && n == 1, "{old} {n} {pids:?}");
    ensure!(wait_until(WAIT, || exited(old)));
    ensure!(is_registered(port, "updaemon"));
    // Still detached: the new process stays in the daemon's own session.
    ensure!(session(new) == Some(old_session));
    drop(node);
    ensure!(wait_until(WAIT, || !is_registered(port, "updaemon")));
    Ok(())
}

#[test]
fn upgrade_under_systemd_hands_over_mainpid() -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::process::CommandExt;
    test_support::upgrade::become_subreaper();
    let dir = test_support::erl::TempDir::new("upgrade-systemd")?;
    let exe = dir.path().join("epmdx");
    std::fs::copy(test_support::epmdx_bin(), &exe)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let sock = dir.path().join("notify");
    let notify = UnixDatagram::bind(&sock)?;
    notify.set_read_timeout(Some(WAIT))?;
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    // As systemd starts a socket-activated service: the socket as fd 3,
    // LISTEN_PID the daemon's own PID, a notification socket.
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" -systemd"])
        .arg(&exe)
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &sock)
        .env_remove("ERL_EPMD_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: dup2/fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = spawn_fresh(&mut cmd)?;
    let first = child.id();
    std::mem::forget(child);
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            kill_pid(self.0);
        }
    }
    let mut guard = Kill(first);
    drop(listener);
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    ensure!(text.contains(&format!("MAINPID={first}")), "{text}");
    let node = ErlNode::start("upsysd@localhost", COOKIE, port, &[])?;
    let out = Command::new(test_support::epmdx_bin())
        .args(["-port", &port.to_string(), "-upgrade"])
        .output()?;
    let (old, new, reg) =
        test_support::upgrade::parse_upgraded(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("{out:?}"))?;
    guard.0 = new;
    ensure!(old == first && reg == 1);
    // The old main process tells systemd who the main process is now.
    let n = notify.recv(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    ensure!(text == format!("MAINPID={new}"), "{text}");
    ensure!(wait_until(WAIT, || exited(old)));
    ensure!(is_registered(port, "upsysd"));
    drop(node);
    ensure!(wait_until(WAIT, || !is_registered(port, "upsysd")));
    Ok(())
}

#[test]
fn upgrade_against_a_stock_epmd_says_it_is_unsupported() -> Result<()> {
    let d = test_support::Daemon::start(test_support::Subject::Otp, &[])?;
    let out = Command::new(test_support::epmdx_bin())
        .args(["-port", &d.port.to_string(), "-upgrade"])
        .env_remove("ERL_EPMD_PORT")
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{out:?}");
    ensure!(err.contains("does not support -upgrade"), "{err}");
    ensure!(test_support::names_answers(d.port), "stock epmd hurt");
    Ok(())
}
