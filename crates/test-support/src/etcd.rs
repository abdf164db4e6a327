//! A real etcd cluster for tests (Debian's `etcd-server` 3.4, `etcdctl`
//! from `etcd-client`): members on private ports, on the loopback or one
//! per network namespace, each killed by PID on drop with its data
//! directory removed. Members can be killed and restarted (same data
//! directory) to exercise outages; every wait is a deadline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::erl::TempDir;
use crate::netns::Namespace;
use crate::{free_port, run_with_timeout, wait_until};

/// Client port of members in their own namespace (nothing else listens
/// there, so a fixed port is private; not etcd's default 2379).
pub const NS_CLIENT_PORT: u16 = 12379;
/// Peer port of members in their own namespace.
pub const NS_PEER_PORT: u16 = 12380;

/// How long a member or the cluster may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline of one `etcdctl` call.
const CTL_TIMEOUT: Duration = Duration::from_secs(10);

/// `$ETCD_BIN`, else `/usr/bin/etcd` (Debian's `etcd-server`).
pub fn etcd_bin() -> Result<PathBuf> {
    tool("ETCD_BIN", "etcd", "etcd-server")
}

/// `$ETCDCTL_BIN`, else `etcdctl` (Debian's `etcd-client`).
pub fn etcdctl_bin() -> Result<PathBuf> {
    tool("ETCDCTL_BIN", "etcdctl", "etcd-client")
}

fn tool(env: &str, program: &str, package: &str) -> Result<PathBuf> {
    match std::env::var_os(env) {
        Some(p) => {
            let p = PathBuf::from(p);
            ensure!(p.is_file(), "${env} = {} is not a file", p.display());
            Ok(p)
        }
        None => crate::erl::require_on_path(program, package),
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    ip: String,
    ns: Option<String>,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://{}:{}", host_part(&self.ip), self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", host_part(&self.ip), self.peer_port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn host_part(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// A command running `program` in namespace `ns`, or here.
fn command_in(ns: Option<&str>, program: &Path) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// An etcd cluster started by the test.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts `n` members on 127.0.0.1 with free ports and waits until the
    /// cluster is healthy.
    pub fn start_local(n: usize) -> Result<Self> {
        let specs: Vec<(Option<String>, String, u16, u16)> = (0..n)
            .map(|_| (None, "127.0.0.1".to_owned(), free_port(), free_port()))
            .collect();
        Self::start(specs)
    }

    /// Starts one member in each namespace, listening on `ip` (an address
    /// of that namespace) at [`NS_CLIENT_PORT`]/[`NS_PEER_PORT`], and waits
    /// until the cluster is healthy.
    pub fn start_in(members: &[(&Namespace, &str)]) -> Result<Self> {
        let specs = members
            .iter()
            .map(|(ns, ip)| {
                (
                    Some(ns.name().to_owned()),
                    (*ip).to_owned(),
                    NS_CLIENT_PORT,
                    NS_PEER_PORT,
                )
            })
            .collect();
        Self::start(specs)
    }

    fn start(specs: Vec<(Option<String>, String, u16, u16)>) -> Result<Self> {
        ensure!(!specs.is_empty(), "an etcd cluster needs a member");
        etcd_bin()?;
        let dir = TempDir::new("etcd")?;
        let members: Vec<Member> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (ns, ip, client_port, peer_port))| Member {
                name: format!("m{i}"),
                ip,
                ns,
                client_port,
                peer_port,
                data: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            initial_cluster,
            token: format!("epmdx-test-{}", std::process::id()),
            dir,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy(START_TIMEOUT)?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let etcd = etcd_bin()?;
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let m = &mut self.members[i];
        ensure!(m.child.is_none(), "etcd member {} already runs", m.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("open {}", m.log.display()))?;
        let mut cmd = command_in(m.ns.as_deref(), &etcd);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", "new"])
            // Quick elections, so an outage test is not dominated by them.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        m.child = Some(
            cmd.spawn()
                .with_context(|| format!("spawn etcd member {}", m.name))?,
        );
        Ok(())
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL, comma-separated: what `-etcd` takes.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// Member `i`'s PID, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Kills member `i` (SIGKILL, by PID) and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data directory (it rejoins the
    /// cluster it was part of).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.spawn(i)
    }

    /// Member `i`'s log so far, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Every member's log, labelled.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| format!("--- etcd {} ---\n{}", self.members[i].name, self.log(i)))
            .collect()
    }

    /// The namespace (if any) and endpoints of the running members, for
    /// `etcdctl`.
    fn running(&self) -> Result<(Option<String>, String)> {
        let up: Vec<&Member> = self.members.iter().filter(|m| m.child.is_some()).collect();
        let Some(first) = up.first() else {
            bail!("no etcd member is running");
        };
        let eps = up
            .iter()
            .map(|m| m.client_url())
            .collect::<Vec<_>>()
            .join(",");
        Ok((first.ns.clone(), eps))
    }

    /// Runs `etcdctl --endpoints=<running members> ARGS` (inside the first
    /// running member's namespace) and returns its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let (ns, eps) = self.running()?;
        self.etcdctl_at(ns.as_deref(), &eps, args)
    }

    fn etcdctl_at(&self, ns: Option<&str>, eps: &str, args: &[&str]) -> Result<String> {
        let ctl = etcdctl_bin()?;
        let mut cmd = command_in(ns, &ctl);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={eps}"))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args);
        let out = run_with_timeout(&mut cmd, CTL_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every running member reports healthy (a leader exists
    /// and it serves reads).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            let Ok((ns, _)) = self.running() else {
                return false;
            };
            self.members.iter().filter(|m| m.child.is_some()).all(|m| {
                match self.etcdctl_at(ns.as_deref(), &m.client_url(), &["endpoint", "health"]) {
                    Ok(_) => true,
                    Err(e) => {
                        last = e.to_string();
                        false
                    }
                }
            })
        });
        if !ok {
            bail!(
                "etcd not healthy within {timeout:?}: {last}\n{}",
                self.logs()
            );
        }
        Ok(())
    }

    /// Writes `value` under `key`.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        // `--` so a value starting with '-' is not an option.
        self.etcdctl(&["put", "--", key, value]).map(drop)
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.etcdctl(&["del", "--", key]).map(drop)
    }

    /// The keys and values under `prefix`, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let out = self.etcdctl(&["get", "--prefix", "--", prefix])?;
        let lines: Vec<&str> = out.lines().collect();
        Ok(lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect())
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three members on the loopback elect a leader, replicate a write,
    /// survive one member's loss, and a restarted member rejoins.
    #[test]
    fn three_local_members_replicate_and_survive_one_loss() {
        let mut c = EtcdCluster::start_local(3).expect("etcd-server installed");
        c.put("/t/a", "1").unwrap();
        c.kill(0);
        assert_eq!(c.get_prefix("/t/").unwrap(), [("/t/a".into(), "1".into())]);
        c.put("/t/b", "2").unwrap();
        c.restart(0).unwrap();
        c.wait_healthy(START_TIMEOUT).unwrap();
        let out = c
            .etcdctl_at(None, &c.endpoint(0), &["get", "--prefix", "/t/"])
            .unwrap();
        assert!(out.contains("/t/b"), "{out}");
        let pids: Vec<u32> = (0..3).filter_map(|i| c.pid(i)).collect();
        assert_eq!(pids.len(), 3);
        drop(c);
        for pid in pids {
            assert!(crate::upgrade::exited(pid), "etcd {pid} left running");
        }
    }
}
