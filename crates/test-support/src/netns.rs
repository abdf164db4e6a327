//! Network namespaces for topology tests: a [`Namespace`] that is deleted
//! (with every process inside it) when dropped, and a [`Topology`] of hosts
//! on subnets joined by a router namespace.
//!
//! Needs root and iproute2 (`ip`). Names are `<prefix><pid><role>`, unique
//! to the test process; [`remove_stale`] deletes what an earlier, killed run
//! of the same test left behind (its pid gone). Nothing outside the
//! namespaces it creates is touched, except `/etc/netns/<name>/hosts`
//! (which `ip netns exec` bind-mounts over `/etc/hosts`), removed with them.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::run_with_timeout;

/// Deadline of one `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `ip ARGS` and returns its stdout; a failure carries its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = run_with_timeout(Command::new("ip").args(args), IP_TIMEOUT)
        .with_context(|| format!("running `ip {}` (iproute2 installed?)", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace of this test, deleted on drop with every process
/// still inside it (killed by PID) and its `/etc/netns` entry.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])?;
        // From here on, drop cleans up.
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`,
    /// which execs in place: the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Writes the `/etc/hosts` that programs started by [`Namespace::command`] see.
    pub fn set_hosts(&self, text: &str) -> Result<()> {
        let dir = etc_dir(&self.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        std::fs::write(dir.join("hosts"), text)
            .with_context(|| format!("write {}/hosts", dir.display()))
    }

    /// Writes `value` to the `/proc/sys` file `key` (e.g.
    /// `net/ipv4/ip_forward`) inside the namespace only.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        ensure!(
            !key.contains("..") && !key.starts_with('/'),
            "bad sysctl key {key:?}"
        );
        let script = format!("echo {value} > /proc/sys/{key}");
        let out = run_with_timeout(self.command("sh").args(["-c", &script]), IP_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "cannot set {key} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Runs `f` on a thread that has joined this namespace, so sockets it
    /// opens live there; the thread ends with `f`.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = Path::new("/run/netns").join(&self.name);
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                // SAFETY: `file` is an open namespace file for the call's
                // duration; setns changes only the calling thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| bail!("thread in {} panicked", self.name))
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        destroy(&self.name);
    }
}

fn etc_dir(name: &str) -> PathBuf {
    Path::new("/etc/netns").join(name)
}

/// Kills every process in namespace `name` by PID, deletes it and its
/// `/etc/netns` entry.
fn destroy(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if pid > 1 {
                // SAFETY: kill has no memory preconditions; the PID was
                // listed as inside our own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = ip(&["netns", "del", name]);
    let _ = std::fs::remove_dir_all(etc_dir(name));
    // Only succeeds when nothing else uses it.
    let _ = std::fs::remove_dir("/etc/netns");
}

/// Deletes namespaces (and `/etc/netns` entries) named `<prefix><pid>...`
/// whose process no longer exists: leftovers of a run that was killed
/// before its cleanup ran.
pub fn remove_stale(prefix: &str) {
    let mut names: Vec<String> = ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    if let Ok(rd) = std::fs::read_dir("/etc/netns") {
        names.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    for name in names {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !Path::new("/proc").join(&pid).exists() {
            destroy(&name);
        }
    }
}

/// One subnet of a [`Topology`]: a bridge in the router, which is its
/// gateway.
#[derive(Debug, Clone)]
pub struct Subnet {
    /// The router's IPv4 address on it (a /24).
    pub gw4: String,
    /// The router's IPv6 address on it (a /64), if the subnet has IPv6.
    pub gw6: Option<String>,
}

/// One host of a [`Topology`].
#[derive(Debug, Clone)]
pub struct Host {
    /// Its role: the end of its namespace name and its name in every
    /// namespace's `/etc/hosts` (keep it short: it also names a veth).
    pub role: String,
    /// Index of its subnet.
    pub subnet: usize,
    /// Its IPv4 address (in the subnet's /24).
    pub v4: String,
    /// Its IPv6 address (in the subnet's /64), if any.
    pub v6: Option<String>,
}

/// Hosts in their own namespaces on subnets joined by a router namespace
/// that forwards between them. Every namespace's `/etc/hosts` names every
/// host. Deleted, with everything running inside, on drop.
#[derive(Debug)]
pub struct Topology {
    hosts: Vec<(String, Namespace)>,
    router: Namespace,
}

impl Topology {
    /// Builds the topology under names `<prefix><pid>r` (the router) and
    /// `<prefix><pid><role>`, first removing stale ones of `prefix`.
    pub fn build(prefix: &str, subnets: &[Subnet], hosts: &[Host]) -> Result<Self> {
        remove_stale(prefix);
        let pid = std::process::id();
        let router = Namespace::create(&format!("{prefix}{pid}r"))?;
        let mut topo = Self {
            hosts: Vec::new(),
            router,
        };
        let r = &topo.router;
        for (i, net) in subnets.iter().enumerate() {
            let br = format!("br{i}");
            r.ip(&["link", "add", &br, "type", "bridge"])?;
            r.ip(&["addr", "add", &format!("{}/24", net.gw4), "dev", &br])?;
            if let Some(gw6) = &net.gw6 {
                r.ip(&["addr", "add", &format!("{gw6}/64"), "dev", &br, "nodad"])?;
            }
            r.ip(&["link", "set", &br, "up"])?;
        }
        let mut names = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for h in hosts {
            let net = subnets.get(h.subnet).with_context(|| {
                format!(
                    "host {} on subnet {} of {}",
                    h.role,
                    h.subnet,
                    subnets.len()
                )
            })?;
            let ns = Namespace::create(&format!("{prefix}{pid}{}", h.role))?;
            let port = format!("p{}", h.role);
            topo.router.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ])?;
            topo.router
                .ip(&["link", "set", &port, "master", &format!("br{}", h.subnet)])?;
            topo.router.ip(&["link", "set", &port, "up"])?;
            ns.ip(&["addr", "add", &format!("{}/24", h.v4), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            ns.ip(&["route", "add", "default", "via", &net.gw4])?;
            names.push_str(&format!("{} {}\n", h.v4, h.role));
            if let (Some(v6), Some(gw6)) = (&h.v6, &net.gw6) {
                ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])?;
                ns.ip(&["-6", "route", "add", "default", "via", gw6])?;
                names.push_str(&format!("{v6} {}\n", h.role));
            }
            topo.hosts.push((h.role.clone(), ns));
        }
        topo.router.sysctl("net/ipv4/ip_forward", "1")?;
        if subnets.iter().any(|s| s.gw6.is_some()) {
            topo.router.sysctl("net/ipv6/conf/all/forwarding", "1")?;
        }
        for ns in topo.namespaces() {
            ns.set_hosts(&names)?;
        }
        Ok(topo)
    }

    /// The router's namespace.
    pub fn router(&self) -> &Namespace {
        &self.router
    }

    /// The namespace of the host with `role`.
    pub fn host(&self, role: &str) -> Option<&Namespace> {
        self.hosts.iter().find(|(r, _)| r == role).map(|(_, ns)| ns)
    }

    /// Every namespace: the router first, then the hosts in order.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        std::iter::once(&self.router).chain(self.hosts.iter().map(|(_, ns)| ns))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// Two subnets, three hosts: h1 reaches h3 through the router, by the
    /// address and by the name in its hosts file; everything is gone after
    /// the drop.
    #[test]
    fn two_subnets_route_through_the_router() {
        let subnets = [
            Subnet {
                gw4: "10.231.1.254".into(),
                gw6: Some("fd31:1::fe".into()),
            },
            Subnet {
                gw4: "10.231.2.254".into(),
                gw6: Some("fd31:2::fe".into()),
            },
        ];
        let host = |role: &str, subnet, v4: &str, v6: &str| Host {
            role: role.into(),
            subnet,
            v4: v4.into(),
            v6: Some(v6.into()),
        };
        let hosts = [
            host("h1", 0, "10.231.1.1", "fd31:1::1"),
            host("h2", 0, "10.231.1.2", "fd31:1::2"),
            host("h3", 1, "10.231.2.3", "fd31:2::3"),
        ];
        let topo = Topology::build("tsn", &subnets, &hosts).expect("root and iproute2 needed");
        let names: Vec<String> = topo.namespaces().map(|n| n.name().to_owned()).collect();
        assert_eq!(names.len(), 4);
        let (h1, h3) = (topo.host("h1").unwrap(), topo.host("h3").unwrap());
        for target in ["10.231.2.3:4370", "[fd31:2::3]:4370"] {
            let listener = h3.run_in(|| TcpListener::bind(target)).unwrap().unwrap();
            let sent = h1
                .run_in(|| -> std::io::Result<()> {
                    let addr = target.parse().expect("socket address");
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
                    s.write_all(b"hi")
                })
                .unwrap();
            sent.unwrap();
            let (mut conn, peer) = listener.accept().unwrap();
            let mut buf = [0u8; 2];
            conn.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi");
            let h1_addr = if target.starts_with('[') {
                "fd31:1::1"
            } else {
                "10.231.1.1"
            };
            assert_eq!(peer.ip().to_string(), h1_addr);
        }
        let out = run_with_timeout(
            h1.command("getent").args(["ahostsv4", "h3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("10.231.2.3"),
            "{out:?}"
        );
        drop(topo);
        let left = ip(&["netns", "list"]).unwrap();
        for n in names {
            assert!(!left.contains(&n), "{n} left behind: {left}");
            assert!(!etc_dir(&n).exists());
        }
    }
}
