//! Helpers shared by the interop test binaries.
//!
//! Every test runs its body once per subject of [`Subject::selected`]
//! (`EPMD_TEST_SUBJECT=otp|epmdx`, unset = both), the subjects in parallel,
//! each against its own daemon on a private port. Node names embed that
//! port, so concurrent tests never collide.
//!
//! Running: `EPMD_TEST_SUBJECT=otp cargo test -p epmd-interop` (reference
//! only), `cargo build --bins && cargo test -p epmd-interop` (both). Needs
//! the Debian packages `erlang-base` (erl, epmd, erl_call),
//! `erlang-jinterface` (OtpErlang.jar) and `default-jdk-headless` (javac,
//! java); a missing tool fails the test with the package name.

#![allow(dead_code, unused_imports, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use epmd_proto::legacy::{Alive2Req, Alive2Resp};
use epmd_proto::NodeType;
pub use test_support::erl::{ErlNode, TempDir};
pub use test_support::{names_text, wait_until, Daemon, Subject};

/// Deadline for registrations and unregistrations to show in NAMES.
pub const REG_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one external client command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `case` for every selected subject, in parallel, and fails with every
/// subject's error if any failed.
pub fn for_each_subject(case: impl Fn(Subject) -> Result<()> + Sync) {
    let subjects = Subject::selected();
    let results: Vec<(Subject, std::thread::Result<Result<()>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = subjects
            .iter()
            .map(|&subj| {
                let case = &case;
                (subj, s.spawn(move || case(subj)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(subj, h)| (subj, h.join()))
            .collect()
    });
    let mut failures = Vec::new();
    for (subj, r) in results {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("[{subj:?}] {e:#}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panic".to_owned());
                failures.push(format!("[{subj:?}] panicked: {msg}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// The cookie a test uses with the daemon on `port`.
pub fn cookie_for(port: u16) -> String {
    format!("interop_cookie_{port}")
}

/// Starts several nodes at once (erl start-up dominates test time).
pub fn start_nodes(names: &[String], cookie: &str, epmd_port: u16) -> Result<Vec<ErlNode>> {
    let results: Vec<Result<ErlNode>> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(move || ErlNode::start(n, cookie, epmd_port, &[])))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("start thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The NAMES listing on `port` as `(name, port)` pairs, in reply order.
pub fn names(port: u16) -> Option<Vec<(String, u16)>> {
    let text = names_text(port)?;
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("name ")?;
                let (n, p) = rest.rsplit_once(" at port ")?;
                Some((n.to_owned(), p.parse().ok()?))
            })
            .collect(),
    )
}

/// The port NAMES shows for `name`, if listed.
pub fn registered_port(port: u16, name: &str) -> Option<u16> {
    names(port)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
}

/// Waits until NAMES on `port` lists `name`; returns its port.
pub fn wait_registered(port: u16, name: &str) -> Result<u16> {
    let mut found = None;
    if wait_until(REG_TIMEOUT, || {
        found = registered_port(port, name);
        found.is_some()
    }) {
        return Ok(found.expect("found"));
    }
    bail!(
        "{name} not listed by NAMES on port {port} within {REG_TIMEOUT:?}; NAMES: {:?}",
        names(port)
    )
}

/// Waits until NAMES on `port` answers without `name`.
pub fn wait_unregistered(port: u16, name: &str) -> Result<()> {
    if wait_until(REG_TIMEOUT, || {
        names(port).is_some_and(|ns| ns.iter().all(|(n, _)| n != name))
    }) {
        return Ok(());
    }
    bail!(
        "{name} still listed (or NAMES not answering) on port {port} after {REG_TIMEOUT:?}; \
         NAMES: {:?}",
        names(port)
    )
}

/// An ALIVE2 registration held open by the test.
#[derive(Debug)]
pub struct RawRegistration {
    /// The registration connection; closing it unregisters.
    pub conn: TcpStream,
    /// The creation the daemon assigned.
    pub creation: u32,
}

/// Registers `name` on `epmd_port` with a raw ALIVE2_REQ (built with
/// `epmd_proto`), as a normal node (77) on TCP (0) with the given versions
/// and dist port, and checks that the reply says ok.
pub fn register_raw(
    epmd_port: u16,
    name: &str,
    node_port: u16,
    high: u16,
    low: u16,
) -> Result<RawRegistration> {
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, epmd_port))
        .with_context(|| format!("connect to epmd on {epmd_port}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = Alive2Req {
        port: node_port,
        node_type: NodeType::Normal.code(),
        protocol: 0,
        high,
        low,
        name: name.as_bytes(),
        extra: b"",
    };
    conn.write_all(&req.encode())?;
    let want = if req.wants_x_reply() { 6 } else { 4 };
    let mut buf = vec![0u8; want];
    conn.read_exact(&mut buf)
        .with_context(|| format!("read ALIVE2 reply for {name}"))?;
    let resp = Alive2Resp::decode(&buf)
        .map_err(|e| anyhow!("bad ALIVE2 reply {buf:?}: {e:?}"))?
        .ok_or_else(|| anyhow!("short ALIVE2 reply {buf:?}"))?;
    if resp.result() != 0 {
        bail!("ALIVE2 for {name} refused: {resp:?}");
    }
    conn.set_read_timeout(None)?;
    Ok(RawRegistration {
        conn,
        creation: resp.creation(),
    })
}

/// Runs `cmd` to completion with a deadline (killing it by PID when late)
/// and returns its output.
pub use test_support::run_with_timeout as run;
/// A long-running helper process with line-wise stdout, killed by PID on
/// drop.
pub use test_support::LineProcess as Proc;

/// Compiles `tests/interop/java/EpmdProbe.java` once per test process and
/// returns the class directory (cached under `CARGO_TARGET_TMPDIR`, keyed by
/// a hash of the source). Fails with the package to install when `javac` or
/// jinterface is missing.
pub fn java_probe_classes() -> Result<PathBuf> {
    static CLASSES: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    CLASSES
        .get_or_init(|| compile_probe().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn compile_probe() -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let javac = test_support::erl::require_on_path("javac", "default-jdk-headless")?;
    let jar = test_support::erl::jinterface_jar()?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/EpmdProbe.java");
    let text = std::fs::read(&src).with_context(|| format!("read {}", src.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    jar.hash(&mut h);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("epmd-probe-{:016x}", h.finish()));
    if dir.join("EpmdProbe.class").exists() {
        return Ok(dir);
    }
    let tmp = base.join(format!("epmd-probe-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let out = run(
        Command::new(&javac)
            .arg("-d")
            .arg(&tmp)
            .arg("-cp")
            .arg(&jar)
            .arg(&src),
        Duration::from_secs(120),
    )?;
    if !out.status.success() {
        bail!(
            "javac failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Atomic publish; a concurrent run that got there first is just as good.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join("EpmdProbe.class").exists() {
            bail!("could not publish compiled classes to {}", dir.display());
        }
    }
    Ok(dir)
}

/// A `java` command running `EpmdProbe EPMD_PORT ARGS...` against the daemon
/// on `epmd_port`, with `user.home` set to `home` (jinterface reads
/// `~/.erlang.cookie` from there) and `ERL_EPMD_PORT` set as well.
pub fn java_probe(epmd_port: u16, home: &Path, args: &[&str]) -> Result<Command> {
    let java = test_support::erl::require_on_path("java", "default-jre-headless")?;
    let jar = test_support::erl::jinterface_jar()?;
    let classes = java_probe_classes()?;
    let cp = std::env::join_paths([jar, classes])?;
    let mut cmd = Command::new(java);
    cmd.arg(format!("-Duser.home={}", home.display()))
        .args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(cp)
        .arg("EpmdProbe")
        .arg(epmd_port.to_string())
        .args(args)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("HOME", home)
        .current_dir(home);
    Ok(cmd)
}

/// Lossy text of a byte buffer, for assertions with readable diffs.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts an external command's exit code, stdout and stderr exactly.
pub fn expect_output(
    what: &str,
    out: &Output,
    code: i32,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<()> {
    if out.status.code() != Some(code) || out.stdout != stdout || out.stderr != stderr {
        bail!(
            "{what}: expected exit {code}, stdout {:?}, stderr {:?}; \
             got exit {:?}, stdout {:?}, stderr {:?}",
            text(stdout),
            text(stderr),
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    Ok(())
}

/// Elapsed-time helper for deadlines spelled as instants.
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}
