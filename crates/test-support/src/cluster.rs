//! A cluster lab for the etcd discovery tests: hosts in network namespaces
//! (one subnet behind a router), an etcd member on each host forming one
//! 3-member (or n-member) cluster, and an `epmdx -etcd ... -cluster ...` per
//! host on a private port. Everything is killed by PID and deleted on drop.
//! Hosts can be partitioned (their router port taken down) and healed.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::etcd::EtcdCluster;
use crate::netns::{Host, Namespace, Subnet, Topology};
use crate::{epmdx_bin, names_answers_at, run_with_timeout, Background};

/// The EPMD port every lab host's epmdx listens on (private: inside the
/// host's namespace; never 4369).
pub const LAB_EPMD_PORT: u16 = 14369;

/// The cluster name the lab's daemons publish under.
pub const LAB_CLUSTER: &str = "lab";

/// How long an epmdx may take to answer NAMES after its start.
const EPMDX_START: Duration = Duration::from_secs(10);

/// One host: its role (`h1`...), address and running epmdx.
#[derive(Debug)]
struct LabHost {
    role: String,
    v4: String,
    epmdx: Option<Background>,
}

/// Hosts `h1..hN` on `10.{net}.1.0/24`, each with an etcd member and an
/// epmdx publishing to the cluster.
#[derive(Debug)]
pub struct ClusterLab {
    hosts: Vec<LabHost>,
    /// The etcd cluster (members on the hosts, in host order).
    pub etcd: EtcdCluster,
    ttl_secs: u64,
    // Dropped last: deleting the namespaces kills anything left inside.
    topo: Topology,
}

impl ClusterLab {
    /// Builds `n` hosts under namespace prefix `prefix` on subnet
    /// `10.{net}.1.0/24`, starts etcd (one member per host) and an epmdx per
    /// host with `-etcd_ttl ttl_secs` plus `epmdx_args`.
    pub fn start(
        prefix: &str,
        net: u8,
        n: usize,
        ttl_secs: u64,
        epmdx_args: &[&str],
    ) -> Result<Self> {
        let subnets = [Subnet {
            gw4: format!("10.{net}.1.254"),
            gw6: None,
        }];
        let hosts: Vec<Host> = (1..=n)
            .map(|i| Host {
                role: format!("h{i}"),
                subnet: 0,
                v4: format!("10.{net}.1.{i}"),
                v6: None,
            })
            .collect();
        let topo = Topology::build(prefix, &subnets, &hosts)?;
        let members: Vec<(&Namespace, &str)> = hosts
            .iter()
            .map(|h| (topo.host(&h.role).expect("built"), h.v4.as_str()))
            .collect();
        let etcd = EtcdCluster::start_in(&members)?;
        let mut lab = Self {
            hosts: hosts
                .iter()
                .map(|h| LabHost {
                    role: h.role.clone(),
                    v4: h.v4.clone(),
                    epmdx: None,
                })
                .collect(),
            etcd,
            ttl_secs,
            topo,
        };
        for i in 0..n {
            lab.start_epmdx(i, epmdx_args)?;
        }
        Ok(lab)
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the lab has no host.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s role (`h1` for 0), the host part of its node names.
    pub fn role(&self, i: usize) -> &str {
        &self.hosts[i].role
    }

    /// Host `i`'s IPv4 address.
    pub fn addr(&self, i: usize) -> &str {
        &self.hosts[i].v4
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &Namespace {
        self.topo.host(&self.hosts[i].role).expect("lab host")
    }

    /// The lease TTL the daemons run with.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// Starts host `i`'s epmdx (`-port LAB_EPMD_PORT -etcd <all members>
    /// -cluster lab -advertise hN,ADDR -etcd_ttl T`, then `extra`) and waits
    /// until it answers NAMES.
    pub fn start_epmdx(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let eps = self.etcd.endpoints();
        let advertise = format!("{},{}", self.hosts[i].role, self.hosts[i].v4);
        let ttl = self.ttl_secs.to_string();
        let port = LAB_EPMD_PORT.to_string();
        let mut cmd = self.ns(i).command(epmdx_bin());
        cmd.args(["-port", &port, "-etcd", &eps, "-cluster", LAB_CLUSTER])
            .args(["-advertise", &advertise, "-etcd_ttl", &ttl])
            .args(extra)
            .env("RUST_LOG", "epmdx=debug,epmdx_cluster=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let bg = Background::spawn(&mut cmd).context("spawn epmdx")?;
        self.hosts[i].epmdx = Some(bg);
        let addr: SocketAddr = format!("127.0.0.1:{LAB_EPMD_PORT}").parse()?;
        let up = self.in_ns(i, || {
            crate::wait_until(EPMDX_START, || names_answers_at(addr))
        })?;
        if !up {
            let log = self.kill_epmdx(i);
            bail!(
                "epmdx on {} did not answer NAMES: {log}",
                self.hosts[i].role
            );
        }
        Ok(())
    }

    /// Kills host `i`'s epmdx by PID (SIGKILL: no withdrawal, so its records
    /// stay until the lease expires) and returns its output.
    pub fn kill_epmdx(&mut self, i: usize) -> String {
        match self.hosts[i].epmdx.take() {
            Some(bg) => {
                if let Some(pid) = bg.pid() {
                    crate::upgrade::kill_pid(pid);
                }
                let f = bg.finish(Duration::from_secs(5));
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&f.stdout),
                    String::from_utf8_lossy(&f.stderr)
                )
            }
            None => String::new(),
        }
    }

    /// Host `i`'s epmdx PID, while it runs.
    pub fn epmdx_pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].epmdx.as_ref().and_then(Background::pid)
    }

    /// Runs `f` on a thread inside host `i`'s namespace.
    pub fn in_ns<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.ns(i).run_in(f)
    }

    /// Whether host `i`'s epmdx, asked over its loopback, lists `alive`.
    pub fn registered(&self, i: usize, alive: &str) -> bool {
        self.in_ns(i, || crate::is_registered(LAB_EPMD_PORT, alive))
            .unwrap_or(false)
    }

    /// `epmdx cluster nodes --etcd <endpoints> --cluster lab ARGS`, run on
    /// host `i` (etcd is reachable only from the hosts); returns (exit code,
    /// stdout, stderr).
    pub fn cluster_nodes(
        &self,
        i: usize,
        eps: &str,
        args: &[&str],
    ) -> Result<(i32, String, String)> {
        let mut cmd: Command = self.ns(i).command(epmdx_bin());
        cmd.args(["cluster", "nodes", "--etcd", eps, "--cluster", LAB_CLUSTER])
            .args(args);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(20))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The node names `epmdx cluster nodes` lists from host `i` (asking
    /// every etcd member), sorted; `None` if the command failed.
    pub fn members_seen_from(&self, i: usize) -> Option<Vec<String>> {
        let (code, out, _) = self.cluster_nodes(i, &self.etcd.endpoints(), &[]).ok()?;
        if code != 0 {
            return None;
        }
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| {
                l.strip_prefix("name ")?
                    .split(' ')
                    .next()
                    .map(str::to_owned)
            })
            .collect();
        v.sort();
        Some(v)
    }

    /// Cuts host `i` off the network (its router port down): it keeps its
    /// own etcd member (now a minority) and its local EPMD service.
    pub fn partition(&self, i: usize) -> Result<()> {
        let port = format!("p{}", self.hosts[i].role);
        self.topo
            .router()
            .ip(&["link", "set", &port, "down"])
            .map(drop)
    }

    /// Reconnects host `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        let port = format!("p{}", self.hosts[i].role);
        self.topo
            .router()
            .ip(&["link", "set", &port, "up"])
            .map(drop)
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill_epmdx(i);
        }
    }
}

/// Polls `cond` every `every` until it holds or `timeout` passes; returns
/// how long it took, or `None` on timeout. For conditions too costly to
/// poll every few milliseconds (a subprocess per check).
pub fn wait_every(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}
