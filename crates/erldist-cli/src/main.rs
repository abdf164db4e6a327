//! `erldist`: run a Rust Erlang node, or talk to Erlang nodes from the shell.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use erl_term::Term;
use erldist::logfmt::Truncated;
use erldist::policy::PolicyError;
use erldist::policy::{FirstOffered, Rule, RuleConfig, RulePolicy, SelectionPolicy};
use erldist::transport::tls::{CaSource, TlsFiles};
use erldist::transport::{ListenSpec, Proto, TransportError};
use erldist::{DecodeLimits, Node, NodeConfig};
use serde::Deserialize;
use tracing::{debug, enabled, info, Level};

/// A Rust Erlang-distribution node.
///
/// Examples:
///
///   erldist serve --name rust@localhost --cookie secret
///
///   erldist ping erl@localhost --cookie secret
///
///   erldist send erl@localhost shell '{hello, [1,2,3], <<"bin">>}' --cookie secret
///
///   erldist rpc erl@localhost erlang system_info '[otp_release]' --cookie secret
///
///   erldist names localhost
///
///   erldist serve --name s@localhost --cookie c --listen inet_tcp --listen inet_tls --listen uds \
///       --tls-cert certs/s.pem --tls-key certs/s-key.pem --tls-ca certs/ca.pem --policy rules
///
///   erldist connect s@localhost k@localhost --cookie c   # make s dial k
///
///   erldist connections s@localhost --cookie c      # which transport each peer uses
///
///   erldist gen-certs --dir certs --node s --node k --host localhost --host 127.0.0.1
///
///   erldist gen-certs --dir certs --node n2 --ca certs/ca.pem --ca-key certs/ca-key.pem
///
/// The cookie comes from --cookie, else ERLANG_COOKIE, else ~/.erlang.cookie
/// (which must be readable by its owner only). EPMD is found on
/// ERL_EPMD_PORT (default 4369) unless --epmd-port is given.
#[derive(Debug, Parser)]
#[command(name = "erldist", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// This node's cookie.
    #[arg(long, global = true)]
    cookie: Option<String>,
    /// EPMD port (default: ERL_EPMD_PORT, else 4369).
    #[arg(long, global = true)]
    epmd_port: Option<u16>,
    /// This node's name, `alive@host` (client commands default to a
    /// hidden `erldist_<pid>@<this host>`).
    #[arg(long, global = true)]
    name: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(flatten)]
    transport: TransportOpts,
}

/// How this node reaches others (and, for `serve`, is reached).
#[derive(Debug, Args)]
struct TransportOpts {
    /// A TOML file with `listen`, `uds_dir`, `failover`, `[tls]` and
    /// `[policy]` (see docs/transports.md); flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// This node's certificate (PEM), for inet_tls / inet6_tls.
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
    /// The CA that signs every node's certificate (PEM).
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// Directory for the Unix socket (default $ERLDIST_UDS_DIR, else
    /// $XDG_RUNTIME_DIR/erldist, else /run/user/<uid>/erldist, else
    /// $TMPDIR/erldist-<uid>; see docs/transports.md section 2).
    #[arg(long, global = true)]
    uds_dir: Option<PathBuf>,
    /// Transport selection: `first` (the first offered) or `rules` (same
    /// host → uds, same subnet → tcp, else tls, plus --rule).
    #[arg(long, global = true)]
    policy: Option<String>,
    /// Rule-policy transports for a peer on this host (comma-separated).
    #[arg(long, global = true, value_delimiter = ',')]
    same_host: Vec<String>,
    /// Rule-policy transports for a peer on an attached network.
    #[arg(long, global = true, value_delimiter = ',')]
    same_subnet: Vec<String>,
    /// Rule-policy transports for any other peer.
    #[arg(long, global = true, value_delimiter = ',')]
    other: Vec<String>,
    /// An explicit rule, checked first: `node=GLOB:t1,t2` or
    /// `cidr=NET/LEN:t1,t2` (no transports = refuse). Repeatable.
    #[arg(long, global = true)]
    rule: Vec<String>,
    /// Do not try the next transport when the chosen one is unreachable.
    #[arg(long, global = true)]
    no_failover: bool,
    /// The listen transport stock callers (PORT_PLEASE2, NAMES) are given
    /// by epmdx, e.g. `inet_tls` for a stock TLS cluster (default: plain
    /// TCP, else TLS).
    #[arg(long, global = true)]
    legacy_default: Option<String>,
}

/// The node's TOML configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: Option<String>,
    listen: Option<Vec<String>>,
    uds_dir: Option<PathBuf>,
    failover: Option<bool>,
    legacy_default: Option<String>,
    tls: Option<TlsFile>,
    policy: Option<RuleConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn parse_rule(text: &str) -> Result<Rule> {
    let (lhs, uses) = text
        .rsplit_once(':')
        .filter(|(l, _)| l.starts_with("node=") || l.starts_with("cidr="))
        .with_context(|| {
            format!("--rule {text:?}: expected node=GLOB:t1,t2 or cidr=NET/LEN:t1,t2")
        })?;
    let transports = uses
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let (node, cidr) = match lhs.split_once('=') {
        Some(("node", g)) => (Some(g.to_owned()), None),
        Some(("cidr", c)) => (None, Some(c.to_owned())),
        _ => bail!("--rule {text:?}: expected node= or cidr="),
    };
    Ok(Rule {
        node,
        cidr,
        transports,
    })
}

/// Applies the config file and the transport flags to `cfg`; returns the
/// listen list from the file, if any.
fn apply_transport_opts(cli: &Cli, cfg: &mut NodeConfig) -> Result<Option<Vec<ListenSpec>>> {
    let o = &cli.transport;
    let file: NodeFile = match &o.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        )
        .with_context(|| format!("parse {}", p.display()))?,
        None => NodeFile::default(),
    };
    if let Some(d) = o.uds_dir.clone().or(file.uds_dir.clone()) {
        cfg.uds_dir = d;
    }
    cfg.failover = !o.no_failover && file.failover.unwrap_or(true);
    if let Some(p) = o.legacy_default.as_ref().or(file.legacy_default.as_ref()) {
        let proto = Proto::from_name(p)
            .with_context(|| format!("legacy_default {p:?}: not a transport name"))?;
        cfg.legacy_default = Some(proto);
    }
    let file_name = o
        .config
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    let (tls, from_flags) = match (&o.tls_cert, &o.tls_key, &o.tls_ca, &file.tls) {
        (Some(cert), Some(key), Some(ca), _) => (
            Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            true,
        ),
        (None, None, None, Some(t)) => (
            Some(TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                ca: t.ca.clone(),
            }),
            false,
        ),
        (None, None, None, None) => (None, false),
        _ => bail!("--tls-cert, --tls-key and --tls-ca go together"),
    };
    // Fail closed, naming the setting: an unusable certificate, key or CA
    // stops the node here rather than at the first TLS connection.
    if let Some(t) = &tls {
        if let Err(e) = t.validate() {
            match e {
                TransportError::TlsFile {
                    setting,
                    path,
                    source: reason,
                } => {
                    let what = if from_flags {
                        format!("--tls-{setting}")
                    } else {
                        format!("[tls] {setting} in {file_name}")
                    };
                    bail!("{what} {}: {reason}", path.display());
                }
                other => bail!("TLS settings: {other}"),
            }
        }
    }
    cfg.tls = tls;
    // Any rule-policy flag selects the rule policy (and contradicts `first`).
    let rule_flags = !o.rule.is_empty()
        || !o.same_host.is_empty()
        || !o.same_subnet.is_empty()
        || !o.other.is_empty();
    let rules_wanted = o.policy.as_deref() == Some("rules")
        || (o.policy.is_none() && file.policy.is_some())
        || rule_flags;
    let policy: Arc<dyn SelectionPolicy> = match o.policy.as_deref() {
        Some("first") if !rule_flags => Arc::new(FirstOffered),
        Some("first") => {
            bail!("--rule, --same-host, --same-subnet and --other need --policy rules")
        }
        None | Some("rules") if rules_wanted => {
            let mut rc = file.policy.unwrap_or_default();
            if !o.same_host.is_empty() {
                rc.same_host = o.same_host.clone();
            }
            if !o.same_subnet.is_empty() {
                rc.same_subnet = o.same_subnet.clone();
            }
            if !o.other.is_empty() {
                rc.other = o.other.clone();
            }
            let file_rules = rc.rules.len();
            for r in &o.rule {
                rc.rules.push(parse_rule(r)?);
            }
            let policy = RulePolicy::new(&rc)
                .map_err(|e| anyhow::anyhow!(policy_setting(&e, o, file_rules, &file_name)))?;
            Arc::new(policy)
        }
        None => Arc::new(FirstOffered),
        Some(other) => bail!("--policy {other:?}: unknown policy (first or rules)"),
    };
    cfg.policy = policy;
    let listen = file
        .listen
        .map(|l| {
            l.iter()
                .map(|s| Ok(s.parse::<ListenSpec>()?))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    if cfg.name.is_empty() {
        if let Some(n) = file.name {
            cfg.name = n;
        }
    }
    Ok(listen)
}

/// Names the flag or file setting a [`PolicyError`] is about.
fn policy_setting(e: &PolicyError, o: &TransportOpts, file_rules: usize, file: &str) -> String {
    let PolicyError::Setting { setting, cause } = e else {
        return format!("policy: {e}");
    };
    let flag = match setting.as_str() {
        "same_host" if !o.same_host.is_empty() => Some("--same-host".to_owned()),
        "same_subnet" if !o.same_subnet.is_empty() => Some("--same-subnet".to_owned()),
        "other" if !o.other.is_empty() => Some("--other".to_owned()),
        s => s
            .strip_prefix("rule[")
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > file_rules)
            .and_then(|n| o.rule.get(n - file_rules - 1))
            .map(|text| format!("--rule {text:?}")),
    };
    match flag {
        Some(f) => format!("{f}: {cause}"),
        None if file.is_empty() => format!("policy {setting}: {cause}"),
        None => format!("[policy] {setting} in {file}: {cause}"),
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a node: answers pings, echoes `{Pid, Msg}` sent to its `echo`
    /// mailbox back to Pid as Msg, and logs what it receives.
    Serve {
        /// A transport to listen on, `proto` or `proto@addr:port`
        /// (inet_tcp, inet6_tcp, inet_tls, inet6_tls, uds). Repeatable;
        /// default inet_tcp.
        #[arg(long)]
        listen: Vec<ListenSpec>,
        /// Do not appear in other nodes' `nodes()`.
        #[arg(long)]
        hidden: bool,
        /// net_ticktime in seconds.
        #[arg(long, default_value_t = 60)]
        net_ticktime: u64,
        /// Memory budget of each received message, in bytes per byte of
        /// its frame. A message over it is dropped with a warning; the
        /// connection stays up. Below 48 some honest messages (long lists
        /// of small terms) are refused.
        #[arg(long, value_name = "BYTES", default_value_t = DecodeLimits::new().budget_per_byte)]
        decode_budget_per_byte: usize,
        /// The smallest memory budget of any received message, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DecodeLimits::new().min_budget)]
        decode_budget_min: usize,
    },
    /// Ping a node: prints `pong` (exit 0) or `pang` (exit 1).
    Ping {
        /// Target node, `alive@host`.
        node: String,
    },
    /// Send a term, written in Erlang syntax, to a registered process.
    Send {
        /// Target node.
        node: String,
        /// Registered name on the target.
        // Its own id: with the default id `name`, clap gives this value to
        // the global `--name` option too, i.e. as this node's name.
        #[arg(id = "registered_name", value_name = "NAME")]
        name: String,
        /// The message, e.g. '{hello, 42}'.
        term: String,
    },
    /// Call Module:Function(Args) on a node and print the result.
    Rpc {
        /// Target node.
        node: String,
        /// Module.
        module: String,
        /// Function.
        function: String,
        /// Argument list in Erlang syntax, e.g. '[1, two]' (default []).
        args: Option<String>,
    },
    /// List the nodes registered with a host's EPMD.
    Names {
        /// Host (default localhost).
        host: Option<String>,
    },
    /// Ask a running erldist node which transport each of its connections
    /// uses.
    Connections {
        /// The node to ask.
        node: String,
    },
    /// Ask a running erldist node to connect to another node (through its
    /// selection policy), e.g. to see which transport it picks.
    Connect {
        /// The running node to ask.
        node: String,
        /// The node it should connect to.
        peer: String,
    },
    /// Write a development CA and node certificates, to try TLS quickly.
    GenCerts {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// A node name to make a certificate for (file `<node>.pem`).
        /// Repeatable.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// A host name or IP address for the certificates' SAN.
        /// Repeatable; default localhost, 127.0.0.1, ::1 and this host.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Replace existing files (a new CA makes every certificate the
        /// old one signed stop verifying).
        #[arg(long)]
        force: bool,
        /// Sign with this existing CA certificate instead of making a new
        /// CA (needs --ca-key).
        #[arg(long, requires = "ca_key")]
        ca: Option<PathBuf>,
        /// The existing CA's private key.
        #[arg(long, requires = "ca")]
        ca_key: Option<PathBuf>,
    },
}

fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    name.split('.').next().unwrap_or("localhost").to_owned()
}

async fn client_node(cli: &Cli) -> Result<Node> {
    let name = cli
        .name
        .clone()
        .unwrap_or_else(|| format!("erldist_{}@{}", std::process::id(), short_hostname()));
    let cookie = erldist::cookie::resolve(cli.cookie.as_deref())?;
    let mut cfg = NodeConfig::new(name, cookie);
    apply_transport_opts(cli, &mut cfg)?;
    cfg.hidden = true;
    cfg.listen = Vec::new();
    if let Some(p) = cli.epmd_port {
        cfg.epmd_port = p;
    }
    Ok(Node::start(cfg).await?)
}

async fn run(cli: Cli) -> Result<i32> {
    let timeout = Duration::from_secs(cli.timeout);
    match &cli.cmd {
        Cmd::Serve {
            listen,
            hidden,
            net_ticktime,
            decode_budget_per_byte,
            decode_budget_min,
        } => {
            if *decode_budget_per_byte == 0 && *decode_budget_min == 0 {
                bail!("--decode-budget-per-byte 0 with --decode-budget-min 0 would refuse every message");
            }
            let cookie = erldist::cookie::resolve(cli.cookie.as_deref())?;
            let mut cfg = NodeConfig::new(cli.name.clone().unwrap_or_default(), cookie);
            let file_listen = apply_transport_opts(&cli, &mut cfg)?;
            if cfg.name.is_empty() {
                bail!("serve needs --name alive@host (or name in the config file)");
            }
            cfg.listen = if !listen.is_empty() {
                listen.clone()
            } else {
                file_listen.unwrap_or_else(|| cfg.listen.clone())
            };
            cfg.hidden = *hidden;
            cfg.net_ticktime = Duration::from_secs(*net_ticktime);
            cfg.decode_limits = DecodeLimits::new()
                .with_budget_per_byte(*decode_budget_per_byte)
                .with_min_budget(*decode_budget_min);
            if let Some(p) = cli.epmd_port {
                cfg.epmd_port = p;
            }
            let node = Node::start(cfg).await?;
            // Ready for `echo` and signals before saying so: a SIGTERM right
            // after the line below must still be a clean exit.
            let mut echo = node.register_mailbox("echo")?;
            let mut events = node.events();
            let mut int =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let ts: Vec<String> = node
                .transports()
                .iter()
                .map(|(p, port)| format!("{p}:{port}"))
                .collect();
            println!(
                "erldist: node {} listening on {} (creation {}{})",
                node.name(),
                ts.join(" "),
                node.creation(),
                if node.registered_extended() {
                    ", registered with the epmdx extension"
                } else {
                    ", registered with ALIVE2"
                }
            );
            // The echo loop runs in its own task, so however long a send
            // waits (a slow peer) signals are still served here.
            let echo_task = tokio::spawn(async move {
                while let Some(m) = echo.recv().await {
                    // Contents only at debug level, and bounded: a term from
                    // a peer can be any size (see erldist::logfmt).
                    if enabled!(Level::DEBUG) {
                        debug!("echo received {}", Truncated::new(&m));
                    }
                    if let Term::Tuple(mut e) = m {
                        if e.len() == 2 {
                            let msg = e.pop().unwrap_or(Term::Nil);
                            if let Some(Term::Pid(to)) = e.pop() {
                                if let Err(err) = echo.send(&to, msg).await {
                                    info!("echo reply to {to:?} failed: {err}");
                                }
                            }
                        }
                    }
                }
            });
            loop {
                tokio::select! {
                    ev = events.recv() => {
                        match ev {
                            Ok(ev) => info!("{ev:?}"),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                info!("{n} connection events not shown");
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                // No more events: wait for a signal only.
                                tokio::select! {
                                    _ = int.recv() => {},
                                    _ = term.recv() => {},
                                }
                                break;
                            }
                        }
                    }
                    _ = int.recv() => break,
                    _ = term.recv() => break,
                }
            }
            echo_task.abort();
            // Returns once the listener tasks have dropped their sockets
            // (the Unix socket file goes with them) and EPMD's
            // registration connection is closed.
            node.shutdown().await;
            Ok(0)
        }
        Cmd::Ping { node: target } => {
            let node = client_node(&cli).await?;
            let ok = tokio::time::timeout(timeout, node.ping(target))
                .await
                .unwrap_or(false);
            println!("{}", if ok { "pong" } else { "pang" });
            Ok(if ok { 0 } else { 1 })
        }
        Cmd::Send {
            node: target,
            name,
            term,
        } => {
            let msg = erl_term::parse(term).with_context(|| format!("cannot parse {term:?}"))?;
            let node = client_node(&cli).await?;
            let mb = node.mailbox();
            mb.send_named(name, target, msg).await?;
            // A round trip on the same connection: once it is answered, the
            // message before it has been written and read.
            if !node.ping(target).await {
                bail!("sent, but {target} did not answer afterwards");
            }
            Ok(0)
        }
        Cmd::Rpc {
            node: target,
            module,
            function,
            args,
        } => {
            let args = match args {
                None => Vec::new(),
                Some(a) => {
                    match erl_term::parse(a).with_context(|| format!("cannot parse {a:?}"))? {
                        Term::List(v) => v,
                        Term::Nil => Vec::new(),
                        Term::String(bytes) => bytes
                            .into_iter()
                            .map(|b| Term::Integer(i64::from(b)))
                            .collect(),
                        other => bail!("arguments must be a list, got {other}"),
                    }
                }
            };
            let node = client_node(&cli).await?;
            let result = node.rpc(target, module, function, args, timeout).await?;
            println!("{result}");
            Ok(0)
        }
        Cmd::Connections { node: target } => {
            let node = client_node(&cli).await?;
            let reply = node
                .call(target, "erldist", |_| Term::atom("connections"), timeout)
                .await?;
            let Term::List(items) = reply else {
                if reply == Term::Nil {
                    return Ok(0);
                }
                bail!("unexpected reply {reply}");
            };
            for item in items {
                if let Term::Tuple(e) = item {
                    if let [peer, transport] = e.as_slice() {
                        println!("{peer} {transport}");
                    }
                }
            }
            Ok(0)
        }
        Cmd::Connect { node: target, peer } => {
            let node = client_node(&cli).await?;
            let peer_atom =
                erl_term::Atom::new(peer).map_err(|_| anyhow::anyhow!("bad node name {peer:?}"))?;
            let reply = node
                .call(
                    target,
                    "erldist",
                    |_| Term::Tuple(vec![Term::atom("connect"), Term::Atom(peer_atom)]),
                    timeout,
                )
                .await?;
            if reply == Term::atom("ok") {
                println!("ok");
                Ok(0)
            } else {
                println!("{reply}");
                Ok(1)
            }
        }
        Cmd::GenCerts {
            dir,
            nodes,
            hosts,
            force,
            ca,
            ca_key,
        } => {
            let hosts = if hosts.is_empty() {
                vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                    "::1".to_owned(),
                    short_hostname(),
                ]
            } else {
                hosts.clone()
            };
            let source = match (ca, ca_key) {
                (Some(cert), Some(key)) => CaSource::Existing {
                    cert: cert.clone(),
                    key: key.clone(),
                    force: *force,
                },
                _ => CaSource::New { force: *force },
            };
            for p in erldist::transport::tls::generate_certs(dir, nodes, &hosts, &source)? {
                println!("{}", p.display());
            }
            Ok(0)
        }
        Cmd::Names { host } => {
            let host = host.as_deref().unwrap_or("localhost");
            let port = cli
                .epmd_port
                .unwrap_or_else(erldist::node::epmd_port_from_env);
            let client = epmd_client::Client::for_host(host, port).await?;
            match client.names3().await {
                Ok(n) => {
                    for rec in n.nodes {
                        let ts: Vec<String> = rec
                            .transports
                            .iter()
                            .map(|t| {
                                let p = if rec.legacy { "legacy" } else { &t.proto };
                                format!("{}#{p}", t.port)
                            })
                            .collect();
                        println!(
                            "name {} at port {}",
                            String::from_utf8_lossy(&rec.name),
                            ts.join(" ")
                        );
                    }
                }
                Err(epmd_client::ClientError::Unsupported) => {
                    for (name, port) in client.names().await? {
                        println!("name {name} at port {port}");
                    }
                }
                Err(e) => return Err(e.into()),
            }
            Ok(0)
        }
    }
}

/// Raises the soft limit on open files to the hard limit: a node may hold
/// 256 pending handshakes (see `erldist::admission`) besides its
/// connections and files, and Debian's default soft limit is 1,024.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    erldist::tune_allocator();
    raise_fd_limit();
    let cli = Cli::parse();
    let default = if matches!(cli.cmd, Cmd::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("erldist: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
