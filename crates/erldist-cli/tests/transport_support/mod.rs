//! Helpers for the transport suites (`transports.rs`, `otp_transports.rs`).
//!
//! - Every test starts its own daemon on a private port (never 4369) and
//!   names its nodes `<tag>_<port>@localhost`, so parallel tests never meet.
//! - Unix sockets and certificates live in a per-test temporary directory
//!   (removed on drop); no node uses the default socket directory.
//! - Waits are bounded by generous deadlines; daemons, `erl` nodes and CLI
//!   processes are stopped by PID when their handles drop.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erldist::policy::SelectionPolicy;
use erldist::transport::tls::{generate_dev_certs, TlsFiles};
use erldist::transport::{ListenSpec, Proto};
use erldist::{Node, NodeConfig};
use test_support::erl::TempDir;
use test_support::{Daemon, Subject};

/// The cookie every node of these suites shares.
pub const COOKIE: &str = "erldist-transport-cookie";

/// Seconds allowed for anything that crosses a node boundary.
pub const LONG: u64 = 20;

/// The `erldist` binary of this build.
pub const ERLDIST: &str = env!("CARGO_BIN_EXE_erldist");

/// Runs blocking code (a process start, an `erl` eval) without stalling the
/// tokio worker.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

/// A fresh daemon of `subject` on a private port.
pub fn daemon(subject: Subject) -> Daemon {
    blocking(|| Daemon::start(subject, &[]))
        .unwrap_or_else(|e| panic!("start {subject:?} on a private port: {e:#}"))
}

/// Awaits `f`, panicking if it takes more than `secs` seconds.
pub async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s: {what}"),
    }
}

/// This host's short name, as `erl -sname x` would use it.
pub fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    name.split('.').next().unwrap_or("localhost").to_owned()
}

/// A development CA with one certificate per name in `dir`, each valid for
/// `hosts` (default: localhost, 127.0.0.1 and the short host name).
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path, names: &[&str], hosts: Option<&[&str]>) -> Self {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let hosts: Vec<String> = match hosts {
            Some(h) => h.iter().map(|s| (*s).to_owned()).collect(),
            None => vec!["localhost".into(), "127.0.0.1".into(), short_hostname()],
        };
        generate_dev_certs(dir, &names, &hosts).expect("generate_dev_certs");
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The files for node `name`.
    pub fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.cert(name),
            key: self.key(name),
            ca: self.ca(),
        }
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// A listener on 127.0.0.1 (any port) for TCP/TLS, or the Unix socket.
pub fn lo(proto: Proto) -> ListenSpec {
    ListenSpec {
        proto,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// A node configuration `<tag>_<port>@localhost` on daemon port
/// `epmd_port`, listening on `listen` (loopback), with its Unix socket (if
/// any) in `uds_dir`.
pub fn config(tag: &str, epmd_port: u16, listen: &[Proto], uds_dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::new(format!("{tag}_{epmd_port}@localhost"), COOKIE);
    c.epmd_port = epmd_port;
    c.listen = listen.iter().map(|p| lo(*p)).collect();
    c.uds_dir = uds_dir.to_owned();
    c
}

/// Sets a policy.
pub fn with_policy(mut c: NodeConfig, p: impl SelectionPolicy + 'static) -> NodeConfig {
    c.policy = Arc::new(p);
    c
}

/// Starts a node, panicking on failure or after [`LONG`] seconds.
pub async fn start(cfg: NodeConfig) -> Node {
    let name = cfg.name.clone();
    within(LONG, &format!("start {name}"), Node::start(cfg))
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

/// `(peer, transport)` pairs of a node's live connections.
pub fn conns(n: &Node) -> Vec<(String, String)> {
    n.connections()
        .into_iter()
        .map(|c| (c.peer, c.transport.name().to_owned()))
        .collect()
}

/// The transport `n` uses to `peer`, once the connection is installed
/// (the accepting side installs it a moment after the dialler returns).
pub async fn wait_transport(n: &Node, peer: &str) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(c) = n.connections().into_iter().find(|c| c.peer == peer) {
            return c.transport.name().to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(LONG),
            "{} has no connection to {peer}: {:?}",
            n.name(),
            conns(n)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a command to completion, killing it (by PID) after `secs` seconds.
pub fn run_cmd(mut cmd: Command, secs: u64) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let t0 = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if t0.elapsed() > Duration::from_secs(secs) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "{what} did not finish in {secs} s; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// An `erldist` command with a private HOME and no inherited EPMD port or
/// cookie.
pub fn erldist(args: &[&str], home: &Path) -> Command {
    let mut cmd = Command::new(ERLDIST);
    cmd.args(args)
        .env_remove("ERL_EPMD_PORT")
        .env_remove("ERLANG_COOKIE")
        .env_remove("ERLDIST_UDS_DIR")
        .env("HOME", home);
    cmd
}

/// Runs `cmd` (blocking the worker as little as possible) and expects exit
/// code `code`; returns stdout.
pub fn expect_code(cmd: Command, code: i32) -> String {
    let what = format!("{cmd:?}");
    let o = blocking(|| run_cmd(cmd, 30));
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A background process (e.g. `erldist serve`), killed by PID on drop.
pub struct Bg {
    pub child: Child,
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Bg {
    /// Spawns `cmd` and returns once its first stdout line appears.
    pub fn spawn(mut cmd: Command) -> (Self, String) {
        use std::io::{BufRead, BufReader, Read};
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn background process");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log.lock() {
                    l.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let me = Self { child, stderr };
        let first = blocking(|| rx.recv_timeout(Duration::from_secs(LONG)))
            .unwrap_or_else(|_| panic!("no first line; stderr:\n{}", me.log()));
        (me, first)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM by PID (a clean exit), then waits up to `secs` seconds.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A per-test temporary directory.
pub fn tmp(tag: &str) -> TempDir {
    TempDir::new(tag).expect("temp dir")
}

/// A CA with its own name (unlike every `generate_dev_certs` CA, which is
/// "erldist development CA") and one certificate `<name>.pem` signed by it,
/// valid for localhost and 127.0.0.1; written to `dir` as `Certs` expects.
pub fn distinct_ca(dir: &Path, ca_name: &str, name: &str) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    Certs {
        dir: dir.to_owned(),
    }
}
