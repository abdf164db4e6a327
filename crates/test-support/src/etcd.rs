//! A single etcd member (Debian's `etcd-server`, `/usr/bin/etcd`) on
//! private loopback ports, with its data in a temp directory, killed by
//! PID when dropped; and `etcdctl` against it.
//!
//! For tests that need etcd as a store and nothing about its clustering
//! (the Erlang adapter's and erldist's cluster membership). Never uses
//! etcd's default ports 2379/2380.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::erl::TempDir;
use crate::process::{run_with_timeout, Background};
use crate::{free_port, wait_until};

/// How long etcd gets to come up (it fsyncs its WAL on a shared disk).
const START: Duration = Duration::from_secs(30);

/// One etcd member; killed by PID on drop, its data directory removed.
#[derive(Debug)]
pub struct Etcd {
    /// Client URL, `http://127.0.0.1:PORT`.
    pub url: String,
    proc: Option<Background>,
    _dir: TempDir,
}

/// `$ETCD_BIN`, else `etcd` on the `PATH` (Debian's `etcd-server`).
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// `$ETCDCTL_BIN`, else `etcdctl` (Debian's `etcd-client`).
pub fn etcdctl_bin() -> PathBuf {
    std::env::var_os("ETCDCTL_BIN").map_or_else(|| PathBuf::from("etcdctl"), PathBuf::from)
}

impl Etcd {
    /// Starts a one-member cluster on free loopback ports and waits until
    /// it answers `etcdctl endpoint health`.
    pub fn single() -> Result<Self> {
        let dir = TempDir::new("etcd")?;
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(etcd_bin());
        cmd.arg("--name")
            .arg("m0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m0={peer_url}")])
            .args(["--log-level", "warn", "--logger", "zap"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let proc = Background::spawn(&mut cmd).with_context(|| {
            format!(
                "start {} (Debian package etcd-server)",
                etcd_bin().display()
            )
        })?;
        let mut me = Self {
            url,
            proc: Some(proc),
            _dir: dir,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, client));
        let mut exited = false;
        let up = wait_until(START, || {
            if me.proc.as_mut().and_then(Background::try_status).is_some() {
                exited = true;
                return true;
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && me
                    .ctl(&["endpoint", "health"])
                    .map(|o| o.status.success())
                    .unwrap_or(false)
        });
        if !up || exited {
            let out = me
                .proc
                .take()
                .map(|p| p.finish(Duration::from_secs(1)))
                .map(|f| String::from_utf8_lossy(&f.stderr).into_owned())
                .unwrap_or_default();
            anyhow::bail!("etcd did not come up on {}:\n{out}", me.url);
        }
        Ok(me)
    }

    /// Runs `etcdctl --endpoints URL args...` (API v3), with a deadline.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        run_with_timeout(
            Command::new(etcdctl_bin())
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.url, "--dial-timeout", "2s"])
                .args(args),
            Duration::from_secs(15),
        )
    }

    /// `etcdctl put KEY VALUE`, which must succeed.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        // `--` so that a value starting with '-' is not an option.
        let o = self.ctl(&["put", "--", key, value])?;
        ensure!(o.status.success(), "etcdctl put {key}: {o:?}");
        Ok(())
    }

    /// `etcdctl del KEY`, which must succeed.
    pub fn del(&self, key: &str) -> Result<()> {
        let o = self.ctl(&["del", "--", key])?;
        ensure!(o.status.success(), "etcdctl del {key}: {o:?}");
        Ok(())
    }

    /// The member's PID.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Background::pid)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Background kills by PID on drop.
        self.proc.take();
    }
}
