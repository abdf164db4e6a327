//! `erldist`: run a Rust Erlang node, or talk to Erlang nodes from the shell.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use erl_term::Term;
use erldist::{Node, NodeConfig};
use tracing::info;

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
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a node: answers pings, echoes `{Pid, Msg}` sent to its `echo`
    /// mailbox back to Pid as Msg, and logs what it receives.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:0")]
        listen: SocketAddr,
        /// Do not appear in other nodes' `nodes()`.
        #[arg(long)]
        hidden: bool,
        /// net_ticktime in seconds.
        #[arg(long, default_value_t = 60)]
        net_ticktime: u64,
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
    cfg.hidden = true;
    cfg.listen = None;
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
        } => {
            let name = cli.name.clone().context("serve needs --name alive@host")?;
            let cookie = erldist::cookie::resolve(cli.cookie.as_deref())?;
            let mut cfg = NodeConfig::new(name, cookie);
            cfg.listen = Some(*listen);
            cfg.hidden = *hidden;
            cfg.net_ticktime = Duration::from_secs(*net_ticktime);
            if let Some(p) = cli.epmd_port {
                cfg.epmd_port = p;
            }
            let node = Node::start(cfg).await?;
            println!(
                "erldist: node {} listening on port {} (creation {}{})",
                node.name(),
                node.listen_port().unwrap_or(0),
                node.creation(),
                if node.registered_extended() {
                    ", registered with the epmdx extension"
                } else {
                    ", registered with ALIVE2"
                }
            );
            let mut echo = node.register_mailbox("echo")?;
            let mut events = node.events();
            loop {
                tokio::select! {
                    m = echo.recv() => {
                        let Some(m) = m else { break };
                        info!("echo received {m}");
                        if let Term::Tuple(e) = &m {
                            if let [Term::Pid(to), msg] = e.as_slice() {
                                if let Err(err) = echo.send(to, msg.clone()).await {
                                    info!("echo reply to {to:?} failed: {err}");
                                }
                            }
                        }
                    }
                    ev = events.recv() => {
                        if let Ok(ev) = ev { info!("{ev:?}"); }
                    }
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            node.stop();
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

fn main() {
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
