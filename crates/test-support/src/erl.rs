//! Real Erlang/OTP nodes and clients for interop tests.
//!
//! [`ErlNode::start`] runs
//!
//! ```text
//! erl -sname NAME -setcookie COOKIE -start_epmd false -noshell
//!     +sbwt none +sbwtdcpu none +sbwtdio none
//!     -eval 'spawn(fun() -> <eval loop> end).' EXTRA_ARGS...
//! ```
//!
//! with `ERL_EPMD_PORT` set to the test daemon's private port, so the node
//! registers with (and looks peers up through) that daemon and never starts or
//! touches an epmd on 4369. `HOME` and the working directory are a fresh
//! temporary directory, so no `~/.erlang.cookie` is read or written and crash
//! dumps land somewhere disposable. `ERL_FLAGS`, `ERL_AFLAGS`, `ERL_ZFLAGS`
//! and `ERL_EPMD_ADDRESS` are removed from the node's environment.
//!
//! # Evaluating expressions
//!
//! The node runs a small read-eval-print loop on its stdin (this is why
//! `-noinput` is *not* passed: `-noshell` alone keeps stdin readable). The
//! loop is spawned from `-eval`, so boot completes normally
//! (`init:get_status()` is `{started, started}`). [`ErlNode::eval`] writes
//! one line `ID EXPRS` (`EXPRS` is ordinary Erlang, ending in `.`), and the
//! loop answers with one stdout line
//!
//! ```text
//! @@epmdx-eval@@ ID ok <value printed with ~0tp>
//! @@epmdx-eval@@ ID error <{Class, Reason} printed with ~0tp>
//! ```
//!
//! `~0tp` never breaks lines, so a value is always exactly one line and reads
//! the way the Erlang shell prints it (`{ok,[{"a",4242}]}`, `pong`, ...).
//! Other stdout and stderr output (logger reports, boot errors) is kept and
//! shown by [`ErlNode::output`] in failure messages.
//!
//! Why this design: it is fast (one `erl` start per node, then each eval is a
//! pipe round trip of well under a millisecond), it needs no second
//! distributed node or C node (so it cannot perturb what the daemon under
//! test sees), and it does not depend on distribution working at all, so it
//! also works to inspect a node whose registration failed.
//!
//! # Lifetime
//!
//! `erl` execs `erlexec`, which execs `beam.smp`, so the child's PID *is* the
//! emulator. Dropping an [`ErlNode`] sends SIGKILL to that PID only (never by
//! name) and reaps it. If the test process dies without running destructors,
//! the node's stdin reaches EOF and the loop calls `erlang:halt(0)`, so no
//! node outlives the test run.
//!
//! # Other OTP tools
//!
//! [`erl_bin`], [`erl_call_bin`] and [`jinterface_jar`] locate the OTP
//! programs the interop tests drive; each returns an error naming the Debian
//! package to install when the tool is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

use crate::wait_until;

/// Stdout prefix of the line the node prints once its eval loop runs.
pub const READY_MARK: &str = "@@epmdx-ready@@";
/// Stdout prefix of every eval reply.
pub const EVAL_MARK: &str = "@@epmdx-eval@@";
/// How long [`ErlNode::start`] waits for the node to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`ErlNode::eval`] waits for a reply.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The read-eval-print loop run inside the node (see the module docs).
const EVAL_LOOP: &str = r#"spawn(fun() ->
    Loop = fun Loop() ->
        case io:get_line("") of
            eof -> erlang:halt(0);
            {error, _} -> erlang:halt(0);
            Line ->
                {Id, Src} = lists:splitwith(fun(C) -> C =/= $\s end,
                                            string:trim(Line, trailing)),
                Reply = try
                            {ok, Toks, _} = erl_scan:string(Src),
                            {ok, Exprs} = erl_parse:parse_exprs(Toks),
                            {value, V, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
                            io_lib:format("ok ~0tp", [V])
                        catch Class:Reason ->
                            io_lib:format("error ~0tp", [{Class, Reason}])
                        end,
                io:format("@@epmdx-eval@@ ~ts ~ts~n", [Id, Reply]),
                Loop()
        end
    end,
    io:format("@@epmdx-ready@@ ~ts~n", [atom_to_list(node())]),
    Loop()
end)."#;

/// An Erlang expression's outcome inside the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalResult {
    /// The value, printed with `~0tp`.
    Ok(String),
    /// The exception as `{Class,Reason}`, printed with `~0tp`.
    Error(String),
}

/// A running `erl` node attached to a test daemon; killed by PID on drop.
#[derive(Debug)]
pub struct ErlNode {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    node: String,
    alive: String,
    next_id: u64,
    tmp: TempDir,
}

impl ErlNode {
    /// Starts `erl -sname name -setcookie cookie -start_epmd false -noshell`
    /// with `ERL_EPMD_PORT=epmd_port`, plus `extra_args` (after `-eval`, so
    /// they may be emulator flags, `-kernel ...`, `-hidden`, ...), and waits
    /// until the eval loop runs. By then the node has registered with the
    /// daemon: `net_kernel` registers during boot, before `-eval` runs, and a
    /// failed registration aborts the boot (reported here with the node's
    /// output).
    ///
    /// `name` is passed to `-sname` verbatim: `a` gets erl's own short
    /// host name, `a@localhost` pins the host (what the interop tests use,
    /// since `localhost` resolves on any machine).
    pub fn start(name: &str, cookie: &str, epmd_port: u16, extra_args: &[&str]) -> Result<Self> {
        Self::start_impl(None, name, cookie, epmd_port, extra_args)
    }

    /// Like [`ErlNode::start`], inside network namespace `ns` (`ip netns
    /// exec`, so the emulator's PID is the child's and it sees the
    /// namespace's `/etc/hosts`). Give `name` a host part that resolves
    /// there (`a@h1` for a [`crate::netns::Topology`] host `h1`).
    pub fn start_in(
        ns: &crate::netns::Namespace,
        name: &str,
        cookie: &str,
        epmd_port: u16,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_impl(Some(ns), name, cookie, epmd_port, extra_args)
    }

    fn start_impl(
        ns: Option<&crate::netns::Namespace>,
        name: &str,
        cookie: &str,
        epmd_port: u16,
        extra_args: &[&str],
    ) -> Result<Self> {
        assert_ne!(
            epmd_port,
            epmd_proto::DEFAULT_PORT,
            "tests must not use the system epmd port"
        );
        let erl = erl_bin()?;
        let tmp = TempDir::new(&format!("erl-{}", alive_of(name)))?;
        let mut cmd = match ns {
            Some(ns) => ns.command(&erl),
            None => Command::new(&erl),
        };
        cmd.args(["-sname", name, "-setcookie", cookie, "-start_epmd", "false"])
            .arg("-noshell")
            .args(["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"])
            .args(["-eval", EVAL_LOOP])
            .args(extra_args)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("HOME", tmp.path())
            .env_remove("ERL_EPMD_ADDRESS")
            .env_remove("ERL_FLAGS")
            .env_remove("ERL_AFLAGS")
            .env_remove("ERL_ZFLAGS")
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", erl.display()))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(stdout, Some(tx), Arc::clone(&log), "");
        spawn_reader(stderr, None, Arc::clone(&log), "stderr: ");
        let stdin = child.stdin.take();
        let mut me = Self {
            child: Some(child),
            stdin,
            lines,
            log,
            node: String::new(),
            alive: alive_of(name).to_owned(),
            next_id: 1,
            tmp,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match me.next_line(deadline) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(READY_MARK) {
                        me.node = rest.trim().to_owned();
                        return Ok(me);
                    }
                }
                Err(e) => {
                    let status = me.wait_exit(Duration::from_secs(2));
                    bail!(
                        "erl node {name} (ERL_EPMD_PORT={epmd_port}) did not come up: {e}; \
                         exit status {status:?}; output:\n{}",
                        me.output()
                    );
                }
            }
        }
    }

    /// The full node name, as `node()` returns it (`a@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The name part before `@`: what NAMES lists.
    pub fn alive(&self) -> &str {
        &self.alive
    }

    /// The emulator's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's private HOME and working directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Everything the node printed so far (stdout, and stderr lines prefixed
    /// `stderr: `), for failure messages.
    pub fn output(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Evaluates `exprs` (Erlang expressions ending in `.`) in the node and
    /// returns the value printed with `~0tp`. An Erlang exception, a dead
    /// node or no reply within [`EVAL_TIMEOUT`] is an error.
    pub fn eval(&mut self, exprs: &str) -> Result<String> {
        match self.eval_result(exprs, EVAL_TIMEOUT)? {
            EvalResult::Ok(v) => Ok(v),
            EvalResult::Error(e) => Err(anyhow!(
                "{}: `{exprs}` raised {e}; output:\n{}",
                self.node,
                self.output()
            )),
        }
    }

    /// Evaluates `exprs` and reports the value or the exception.
    pub fn eval_result(&mut self, exprs: &str, timeout: Duration) -> Result<EvalResult> {
        let id = self.send(exprs)?;
        let deadline = Instant::now() + timeout;
        let prefix = format!("{EVAL_MARK} {id} ");
        loop {
            let line = self.next_line(deadline).with_context(|| {
                format!(
                    "{}: no reply to `{exprs}`; output:\n{}",
                    self.node,
                    self.output()
                )
            })?;
            if let Some(rest) = line.strip_prefix(&prefix) {
                if let Some(v) = rest.strip_prefix("ok ") {
                    return Ok(EvalResult::Ok(v.to_owned()));
                }
                if let Some(e) = rest.strip_prefix("error ") {
                    return Ok(EvalResult::Error(e.to_owned()));
                }
                bail!("{}: malformed reply line {line:?}", self.node);
            }
        }
    }

    /// Sends `exprs` for evaluation without waiting for the reply; for
    /// expressions that end the node (`init:stop().`, `erlang:halt().`).
    pub fn eval_nowait(&mut self, exprs: &str) -> Result<()> {
        self.send(exprs).map(|_| ())
    }

    /// The node's distribution listen port, read from its own sockets (the
    /// TCP socket that has no peer), not from epmd.
    pub fn dist_port(&mut self) -> Result<u16> {
        let v = self.eval(
            "[P || S <- erlang:ports(), erlang:port_info(S, name) =:= {name, \"tcp_inet\"}, \
             {error, _} <- [inet:peername(S)], {ok, {_, P}} <- [inet:sockname(S)]].",
        )?;
        let inner = v
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| anyhow!("{}: unexpected listen-port list {v}", self.node))?;
        inner
            .parse()
            .map_err(|_| anyhow!("{}: expected one listen port, got {v}", self.node))
    }

    /// Waits up to `timeout` for the node to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(timeout, || match child.try_wait() {
            Ok(Some(st)) => {
                status = Some(st);
                true
            }
            Ok(None) => false,
            Err(_) => true,
        });
        status
    }

    /// Whether the node has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Closes the node's stdin; its eval loop then calls `erlang:halt(0)`.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGKILL to the node's PID and reaps it.
    pub fn kill(&mut self) {
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn send(&mut self, exprs: &str) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        // One request per line: the loop reads lines.
        let line = format!("{id} {}\n", exprs.replace(['\n', '\r'], " "));
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin already closed", self.node))?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{}: write to node stdin", self.node))?;
        Ok(id)
    }

    fn next_line(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(anyhow!("timed out")),
            Err(RecvTimeoutError::Disconnected) => Err(anyhow!("node stdout closed")),
        }
    }
}

impl Drop for ErlNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The part of a node name before `@`.
pub fn alive_of(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn spawn_reader(
    src: impl Read + Send + 'static,
    tx: Option<mpsc::Sender<String>>,
    log: Arc<Mutex<String>>,
    tag: &'static str,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            if let Ok(mut l) = log.lock() {
                l.push_str(tag);
                l.push_str(&line);
                l.push('\n');
            }
            if let Some(tx) = &tx {
                // The receiver is gone once the node is dropped.
                let _ = tx.send(line);
            }
        }
    });
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/epmdx-{tag}-{pid}-{n}-{nanos}`.
    pub fn new(tag: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("epmdx-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The `erl` launcher: `$ERL_BIN`, else `/usr/bin/erl`, else
/// `/usr/lib/erlang/bin/erl`. Missing: install Debian's `erlang-base`.
pub fn erl_bin() -> Result<PathBuf> {
    find_tool(
        "ERL_BIN",
        &["/usr/bin/erl", "/usr/lib/erlang/bin/erl"],
        None,
        "erl",
        "erlang-base",
    )
}

/// `erlc` next to [`erl_bin`], else `erlc` on `PATH`.
pub fn erlc_bin() -> Result<PathBuf> {
    Ok(erl_bin()?
        .parent()
        .map(|d| d.join("erlc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("erlc")))
}

/// Compiles the Erlang module `src` into `outdir` with `erlc` (at most two
/// minutes); a failure carries erlc's output.
pub fn erlc(src: &Path, outdir: &Path) -> Result<()> {
    let erlc = erlc_bin()?;
    let out = crate::run_with_timeout(
        Command::new(&erlc).arg("-o").arg(outdir).arg(src),
        Duration::from_secs(120),
    )
    .with_context(|| format!("run {}", erlc.display()))?;
    if !out.status.success() {
        bail!(
            "erlc {} failed: {}{}",
            src.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `erl_call` (from erl_interface): `$ERL_CALL_BIN`, else
/// `/usr/lib/erlang/lib/erl_interface-*/bin/erl_call`, else
/// `/usr/bin/erl_call`. Missing: install Debian's `erlang-base`
/// (`erlang-dev` on older releases).
pub fn erl_call_bin() -> Result<PathBuf> {
    find_tool(
        "ERL_CALL_BIN",
        &["/usr/bin/erl_call"],
        Some(("/usr/lib/erlang/lib", "erl_interface-", "bin/erl_call")),
        "erl_call",
        "erlang-base (erlang-dev on older Debian releases)",
    )
}

/// jinterface's jar: `$OTP_ERLANG_JAR`, else
/// `/usr/lib/erlang/lib/jinterface-*/priv/OtpErlang.jar`, else
/// `/usr/share/java/OtpErlang.jar`. Missing: install Debian's
/// `erlang-jinterface`.
pub fn jinterface_jar() -> Result<PathBuf> {
    find_tool(
        "OTP_ERLANG_JAR",
        &["/usr/share/java/OtpErlang.jar"],
        Some(("/usr/lib/erlang/lib", "jinterface-", "priv/OtpErlang.jar")),
        "OtpErlang.jar",
        "erlang-jinterface",
    )
}

/// A program on `PATH`, or an error naming the package that provides it.
pub fn require_on_path(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("`{program}` not found on PATH: install the Debian package `{package}`")
        })
}

fn find_tool(
    env: &str,
    fixed: &[&str],
    versioned: Option<(&str, &str, &str)>,
    what: &str,
    package: &str,
) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
        bail!("${env} = {} does not exist", p.display());
    }
    if let Some((dir, prefix, rel)) = versioned {
        if let Ok(rd) = std::fs::read_dir(dir) {
            let mut hits: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path().join(rel))
                .filter(|p| p.exists())
                .collect();
            hits.sort();
            if let Some(p) = hits.pop() {
                return Ok(p);
            }
        }
    }
    for f in fixed {
        let p = PathBuf::from(f);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{what} not found (set ${env}, or install the Debian package {package})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlc_compiles_and_reports_failure() {
        let dir = TempDir::new("erlc").unwrap();
        let ok = dir.path().join("hello_m.erl");
        std::fs::write(&ok, "-module(hello_m).\n-export([f/0]).\nf() -> ok.\n").unwrap();
        erlc(&ok, dir.path()).unwrap();
        assert!(dir.path().join("hello_m.beam").exists());
        let bad = dir.path().join("bad_m.erl");
        std::fs::write(&bad, "-module(bad_m).\nf( -> .\n").unwrap();
        let err = erlc(&bad, dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("bad_m.erl"), "{err:#}");
    }
}
