//! Running the daemon: limits, binding (before daemonising), `-daemon`,
//! `-systemd`, logging, and the runtime.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::FromRawFd;

use epmd_server::access::AllowList;
use epmd_server::listen::{self, BindError};
use epmd_server::{Config, Server};
use tracing::{debug, error, warn};

use crate::args::Args;
use crate::log;

/// Descriptors kept aside for listeners, stdio, the runtime and logging.
const FD_RESERVE: u64 = 32;

/// Raises the soft open-file limit to the hard limit and returns it.
fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
    }
    rl.rlim_cur
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// Splits the descriptor budget between pending connections and
/// registrations (each registration holds one socket).
fn connection_bounds(nofile: u64) -> (usize, usize) {
    let budget = usize::try_from(nofile.saturating_sub(FD_RESERVE).max(8)).unwrap_or(usize::MAX);
    let mut pending = env_usize("EPMDX_MAX_PENDING").unwrap_or((budget / 4).clamp(4, 1024));
    if pending >= budget {
        // An override larger than the whole budget would leave no room for
        // registrations; keep half for them and say so.
        warn!(
            "EPMDX_MAX_PENDING={pending} exceeds the descriptor budget {budget}; using {}",
            budget / 2
        );
        pending = (budget / 2).max(1);
    }
    let nodes = env_usize("EPMDX_MAX_NODES").unwrap_or(budget.saturating_sub(pending).max(1));
    (pending, nodes)
}

/// Takes the listening sockets systemd passed (`LISTEN_PID`/`LISTEN_FDS`).
fn systemd_listeners() -> Result<Vec<TcpListener>, String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n: i32 = if pid_ok {
        std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    if n <= 0 {
        return Err("systemd provides no sockets".into());
    }
    if n as usize > listen::MAX_LISTEN_SOCKETS {
        return Err(format!(
            "cannot listen on more than {} IP addresses",
            listen::MAX_LISTEN_SOCKETS
        ));
    }
    // SAFETY: systemd hands these descriptors (3.. 3+n) to this process,
    // which owns them from now on; nothing else in the process uses them.
    Ok((0..n)
        .map(|i| {
            // systemd leaves them inheritable; an upgrade passes them on
            // explicitly, so nothing else we start should get them.
            // SAFETY: fcntl on a descriptor this process owns.
            unsafe { libc::fcntl(3 + i, libc::F_SETFD, libc::FD_CLOEXEC) };
            unsafe { TcpListener::from_raw_fd(3 + i) }
        })
        .collect())
}

/// Tells systemd the daemon is ready (`sd_notify` without libsystemd).
fn systemd_notify(port: u16) {
    sd_notify(&format!(
        "READY=1\nSTATUS=Processing port mapping requests...\nMAINPID={}",
        std::process::id()
    ));
    debug!("notified systemd, port {port}");
}

/// Sends one `sd_notify` message, if systemd asked for them.
pub(crate) fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = if let Some(abs) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abs)
            .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = sent {
        warn!("sd_notify failed: {e}");
    }
}

/// Detaches like the C epmd: fork, setsid, ignore SIGHUP, fork, chdir /,
/// umask 0, stdio to /dev/null. Listening sockets stay open.
fn daemonize() -> std::io::Result<()> {
    // SAFETY: called before any thread exists (the runtime starts later),
    // so fork duplicates a single-threaded process.
    unsafe {
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        match libc::fork() {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::chdir(c"/".as_ptr());
        libc::umask(0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// The most `-rate_limit` accepts: far above any honest EPMD client, low
/// enough that a typo with extra digits is caught.
const MAX_RATE_LIMIT: u32 = 1_000_000;

/// `-allow`/`EPMDX_ALLOW` and `-rate_limit`/`EPMDX_RATE_LIMIT`, validated:
/// these are security settings, so anything malformed stops the daemon
/// with a message naming the setting instead of falling back to "open".
fn access_config(args: &Args) -> Result<Access, String> {
    let allow = match args.allow.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<AllowList>()
                .map_err(|e| format!("bad -allow (EPMDX_ALLOW) setting: {e}"))?,
        ),
    };
    let rate = match args.rate_limit.as_deref() {
        None => None,
        Some(s) => match s.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_RATE_LIMIT).contains(&n) => Some(n),
            _ => {
                return Err(format!(
                    "bad -rate_limit (EPMDX_RATE_LIMIT) setting {:?}: want requests per second, 1 to {MAX_RATE_LIMIT}",
                    s.chars().take(40).collect::<String>()
                ))
            }
        },
    };
    let metrics = match args.metrics.as_deref() {
        None => None,
        Some(s) => Some(metrics_addr(s, args.port)?),
    };
    Ok(Access {
        allow,
        rate_limit: rate,
        metrics,
    })
}

/// `-metrics ADDR:PORT`: an IP address (IPv6 in brackets) and a port that
/// is not the EPMD port, so the exposition never answers EPMD clients.
fn metrics_addr(s: &str, epmd_port: u16) -> Result<SocketAddr, String> {
    let shown = s.chars().take(60).collect::<String>();
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        format!("bad -metrics (EPMDX_METRICS) setting {shown:?}: want ADDR:PORT, e.g. 127.0.0.1:9369 or [::1]:9369")
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "bad -metrics (EPMDX_METRICS) setting {shown:?}: the port must not be 0"
        ));
    }
    if addr.port() == epmd_port {
        return Err(format!(
            "bad -metrics (EPMDX_METRICS) setting {shown:?}: port {epmd_port} is the EPMD port"
        ));
    }
    Ok(addr)
}

/// Binds the `-metrics` listener.
fn bind_metrics(addr: SocketAddr) -> Result<TcpListener, String> {
    listen::bind(addr).map_err(|e| format!("cannot listen for -metrics on {addr}: {e}"))
}

/// The validated access and metrics settings, carried from the checks
/// before binding to the server's configuration.
struct Access {
    allow: Option<AllowList>,
    rate_limit: Option<u32>,
    metrics: Option<SocketAddr>,
}

/// Runs the daemon; returns the process exit code.
pub(crate) fn run(args: &Args) -> i32 {
    // Resolved first: once the file is replaced this still names the path.
    let exe = crate::upgrade::own_exe();
    if let Some(fd) = epmd_server::handover::inherited() {
        // Started by an upgrade: take over instead of binding. The old
        // daemon already detached, so do not daemonise again.
        log::init(args.debug, args.daemon);
        let access = match access_config(args) {
            Ok(a) => a,
            Err(msg) => {
                error!("{msg}");
                return 1;
            }
        };
        let cluster = match crate::cluster::config(args) {
            Ok(c) => c,
            Err(msg) => {
                error!("{msg}");
                return 1;
            }
        };
        return match fd.and_then(epmd_server::handover::Incoming::receive) {
            Ok(incoming) => serve(
                args,
                Some(incoming),
                Vec::new(),
                None,
                None,
                cluster,
                access,
            ),
            Err(e) => {
                error!("cannot take over from the previous daemon: {e}");
                1
            }
        };
    }
    log::init(args.debug, false);
    // Checked before binding, so a bad option fails like a bad -address.
    let access = match access_config(args) {
        Ok(a) => a,
        Err(msg) => {
            error!("{msg}");
            return 1;
        }
    };
    let cluster = match crate::cluster::config(args) {
        Ok(c) => c,
        Err(msg) => {
            error!("{msg}");
            return 1;
        }
    };
    let addresses = match args.address.as_deref().map(listen::parse_address_list) {
        None => Vec::new(),
        Some(Ok(a)) => a,
        Some(Err(tok)) => {
            error!("cannot parse IP address \"{tok}\"");
            return 1;
        }
    };
    let listeners = if args.systemd {
        match systemd_listeners() {
            Ok(l) => l,
            Err(msg) => {
                error!("{msg}");
                return 1;
            }
        }
    } else {
        match listen::bind_all(args.port, &addresses) {
            Ok(l) => l,
            Err(e @ BindError::InUse { .. }) => {
                // `erl` runs `epmd -daemon` at every start and relies on this.
                debug!("{e}");
                return 0;
            }
            Err(e) => {
                error!("{e}");
                return 1;
            }
        }
    };
    let metrics = match access.metrics.map(bind_metrics).transpose() {
        Ok(m) => m,
        Err(msg) => {
            error!("{msg}");
            return 1;
        }
    };
    if args.daemon {
        if let Err(e) = daemonize() {
            error!("cannot daemonize: {e}");
            return 1;
        }
        log::init(args.debug, true);
    }
    serve(args, None, listeners, metrics, exe, cluster, access)
}

/// Runs the server on fresh listeners, or on what a previous daemon handed
/// over; returns the exit code.
fn serve(
    args: &Args,
    mut incoming: Option<epmd_server::handover::Incoming>,
    listeners: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    exe: Option<std::path::PathBuf>,
    cluster: Option<crate::cluster::ClusterConfig>,
    access: Access,
) -> i32 {
    let first = incoming
        .as_ref()
        .map_or(listeners.first(), |i| i.listeners.first());
    let port = first
        .and_then(|l| l.local_addr().ok())
        .map_or(args.port, |a| a.port());
    let exe = incoming.as_ref().map(|i| i.exe.clone()).or(exe);
    let nofile = raise_nofile();
    let (max_pending, max_nodes) = connection_bounds(nofile);
    debug!("epmd running - daemon = {}", u8::from(args.daemon));
    debug!("open-file limit {nofile}: up to {max_nodes} registrations, {max_pending} pending connections");
    let metrics_addr_wanted = access.metrics;
    let cfg = Config {
        port,
        relaxed: args.relaxed,
        packet_timeout: args.packet_timeout,
        delay_accept: args.delay_accept,
        delay_write: args.delay_write,
        debug: args.debug,
        max_pending,
        max_nodes,
        allow: access.allow,
        rate_limit: access.rate_limit,
    };
    // One thread by default: a lookup is a few microseconds of work, and
    // parking and waking worker threads cost more than it (measured: 31 µs
    // of daemon CPU per lookup with 2 workers, 19-21 µs with one). More
    // workers only pay off with many cores and heavy listing traffic.
    let threads = env_usize("EPMDX_THREADS").unwrap_or(1);
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            if let Some(i) = incoming {
                i.refuse(&format!("cannot start the runtime: {e}"));
            }
            return 1;
        }
    };
    let systemd = args.systemd;
    let result = rt.block_on(async {
        let server = match incoming.as_mut() {
            Some(i) => Server::adopt(cfg, i),
            None => Server::new(cfg, listeners),
        };
        let mut server = match server {
            Ok(s) => s,
            Err(e) => {
                if let Some(i) = incoming.take() {
                    i.refuse(&e.to_string());
                }
                return Err(e);
            }
        };
        // Fresh: the listener bound before daemonising. Taking over from a
        // build that had no metrics listener to hand on: bind it now, and
        // give up (the old daemon serves on) if that fails.
        let metrics = match (metrics, metrics_addr_wanted) {
            (Some(l), _) => Some(Ok(l)),
            (None, Some(addr)) if !server.has_metrics() => Some(bind_metrics(addr)),
            _ => None,
        };
        match metrics {
            Some(Ok(l)) => server.serve_metrics(l)?,
            Some(Err(msg)) => {
                if let Some(i) = incoming.take() {
                    i.refuse(&msg);
                }
                error!("{msg}");
                std::process::exit(1);
            }
            None => {}
        }
        if let Some(c) = cluster {
            // From here every registration change is handed to the
            // publisher thread; nothing on the EPMD path waits for etcd.
            server.set_observer(c.start());
        }
        if let Some(exe) = exe {
            server.set_upgrader(epmd_server::handover::Upgrader {
                exe,
                args: std::env::args_os().skip(1).collect(),
                on_commit: Box::new(move |pid| {
                    // The old main process hands the unit to the new one
                    // (allowed with the default NotifyAccess=main).
                    if systemd {
                        sd_notify(&format!("MAINPID={pid}"));
                    }
                }),
            });
        }
        match incoming.take() {
            Some(i) => {
                let (old, n) = (i.old_pid, server.registrations());
                if let Err(e) = i.ready(n) {
                    // The old daemon gave up on us (and serves on); so do we.
                    error!("the previous daemon did not take our readiness: {e}");
                    std::process::exit(1);
                }
                debug!("took over from pid {old}: {n} registrations");
            }
            None if systemd => systemd_notify(port),
            None => {}
        }
        server.run().await
    });
    match result {
        Ok(()) => {
            warn!("got KILL_REQ - terminates normal");
            // Do not wait for connection tasks: like the C epmd, exit now.
            std::process::exit(0)
        }
        Err(e) => {
            error!("{e}");
            1
        }
    }
}
