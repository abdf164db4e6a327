//! Commands beyond OTP's epmd, as clap subcommands (`epmdx nodes`,
//! `epmdx lookup`). OTP's single-dash options stay in [`crate::args`].

use clap::{Parser, Subcommand};
use epmd_client::{Client, ClientError, Lookup};
use epmd_proto::ext::NodeRecord;
use serde::Serialize;

/// Extended epmdx commands. OTP's options (`-names`, `-port N`, ...) work
/// as in epmd; these are the additions.
#[derive(Debug, Parser)]
#[command(name = "epmdx", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List every node with all its transports (NAMES3).
    ///
    /// Example: `epmdx nodes --json`
    Nodes {
        /// Host whose daemon to ask.
        #[arg(long, default_value = "localhost")]
        host: String,
        /// Daemon port (default: ERL_EPMD_PORT, else 4369).
        #[arg(long)]
        port: Option<u16>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look one node up, filtered by the protocols you speak (PORT_PLEASE3,
    /// falling back to PORT_PLEASE2 against a stock epmd).
    ///
    /// Example: `epmdx lookup s@myhost --proto inet_tls,inet_tcp`
    Lookup {
        /// Node name, `name` or `name@host`.
        node: String,
        /// Protocols in preference order, comma-separated; empty = all.
        /// Each must match `[a-z][a-z0-9_]{0,31}` (refused before asking).
        #[arg(long, value_delimiter = ',')]
        proto: Vec<epmd_proto::ProtoName>,
        /// Host whose daemon to ask (default: the node's host, else localhost).
        #[arg(long)]
        host: Option<String>,
        /// Daemon port (default: ERL_EPMD_PORT, else 4369).
        #[arg(long)]
        port: Option<u16>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cluster-wide discovery through etcd (docs/cluster.md).
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// List every node of the cluster with its transports, as published by
    /// each host's `epmdx -etcd URLS -cluster NAME`. Records that are not
    /// valid (bad JSON, unknown protocol, port 0) are ignored, counted and
    /// reported on stderr.
    ///
    /// Example: `epmdx cluster nodes --etcd http://10.0.0.1:2379 --cluster prod`
    Nodes {
        /// etcd client URLs, comma-separated (failover between them).
        #[arg(long)]
        etcd: String,
        /// Cluster name (`[A-Za-z0-9_.-]{1,64}`).
        #[arg(long)]
        cluster: epmdx_cluster::ClusterName,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The subcommand words that select this CLI instead of OTP's options.
pub(crate) const SUBCOMMANDS: &[&str] = &["nodes", "lookup", "cluster", "help"];

#[derive(Debug, Serialize)]
struct JsonTransport {
    proto: Option<String>,
    port: u16,
    extra: Option<String>,
    extra_hex: String,
}

#[derive(Debug, Serialize)]
struct JsonNode {
    name: String,
    hidden: bool,
    high_version: u16,
    low_version: u16,
    legacy: bool,
    transports: Vec<JsonTransport>,
}

fn to_json(rec: &NodeRecord) -> JsonNode {
    JsonNode {
        name: String::from_utf8_lossy(&rec.name).into_owned(),
        hidden: rec.node_type == epmd_proto::NodeType::Hidden.code(),
        high_version: rec.high,
        low_version: rec.low,
        legacy: rec.legacy,
        transports: rec
            .transports
            .iter()
            .map(|t| JsonTransport {
                proto: (!t.proto.is_empty()).then(|| t.proto.clone()),
                port: t.port,
                extra: String::from_utf8(t.extra.clone()).ok(),
                extra_hex: t.extra.iter().map(|b| format!("{b:02x}")).collect(),
            })
            .collect(),
    }
}

/// `name s at port 49645#inet_tcp 41477#inet_tls`, the 2013 patch's NAMES3
/// line; a legacy registration shows `#legacy`.
fn text_line(rec: &NodeRecord) -> String {
    let mut line = format!("name {} at port", String::from_utf8_lossy(&rec.name));
    for t in &rec.transports {
        let proto = if rec.legacy { "legacy" } else { &t.proto };
        line.push_str(&format!(" {}#{proto}", t.port));
        if !t.extra.is_empty() {
            line.push_str(&format!("({})", String::from_utf8_lossy(&t.extra)));
        }
    }
    line
}

fn default_port() -> u16 {
    epmd_proto::port_from_env()
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `epmdx cluster nodes`: the text lines (or JSON) on stdout, one warning
/// per ignored record and their count on stderr.
async fn cluster_nodes(
    etcd: &str,
    cluster: &epmdx_cluster::ClusterName,
    json: bool,
) -> anyhow::Result<i32> {
    let endpoints = epmdx_cluster::parse_endpoints(etcd)?;
    let mut reader = epmdx_cluster::EtcdReader::connect(&endpoints).await?;
    let (members, _rev) = reader.snapshot(cluster).await?;
    for (node, err) in members.invalid() {
        eprintln!(
            "epmdx: warning: ignoring the record of {}: {err}",
            node.escape_debug()
        );
    }
    let ignored = members.invalid().len();
    if json {
        let nodes: Vec<serde_json::Value> = members
            .records()
            .map(|r| serde_json::from_str(&r.to_json()))
            .collect::<Result<_, _>>()?;
        let invalid: Vec<serde_json::Value> = members
            .invalid()
            .iter()
            .map(|(n, e)| serde_json::json!({ "node": n, "error": e.to_string() }))
            .collect();
        print_json(&serde_json::json!({
            "cluster": cluster.as_str(),
            "nodes": nodes,
            "ignored": ignored,
            "invalid": invalid,
        }))?;
    } else {
        for r in members.records() {
            println!("{}", r.text_line());
        }
    }
    if ignored > 0 {
        eprintln!("epmdx: ignored {ignored} invalid record(s)");
    }
    Ok(0)
}

/// Runs an extended command; returns the exit code.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Cmd::Cluster {
            cmd:
                ClusterCmd::Nodes {
                    etcd,
                    cluster,
                    json,
                },
        } => cluster_nodes(&etcd, &cluster, json).await,
        Cmd::Nodes { host, port, json } => {
            let client = Client::for_host(&host, port.unwrap_or_else(default_port)).await?;
            let names = match client.names3().await {
                Err(ClientError::Unsupported) => {
                    anyhow::bail!(
                        "the epmd at {host} does not support the epmdx extension; use -names"
                    )
                }
                r => r?,
            };
            if json {
                let nodes: Vec<JsonNode> = names.nodes.iter().map(to_json).collect();
                print_json(&serde_json::json!({ "epmd_port": names.epmd_port, "nodes": nodes }))?;
            } else {
                for n in &names.nodes {
                    println!("{}", text_line(n));
                }
            }
            Ok(0)
        }
        Cmd::Lookup {
            node,
            proto,
            host,
            port,
            json,
        } => {
            let (name, node_host) = match node.split_once('@') {
                Some((n, h)) => (n.to_owned(), Some(h.to_owned())),
                None => (node.clone(), None),
            };
            let host = host.or(node_host).unwrap_or_else(|| "localhost".into());
            let client = Client::for_host(&host, port.unwrap_or_else(default_port)).await?;
            let protos: Vec<&str> = proto.iter().map(epmd_proto::ProtoName::as_str).collect();
            let (rec, via_legacy) = match client.lookup(&name, &protos).await? {
                Lookup::Found(r) => (Some(r), false),
                Lookup::NotFound => (None, false),
                Lookup::Legacy(r) => (r, true),
            };
            if via_legacy {
                eprintln!(
                    "epmdx: the epmd at {host} does not support the extension; used PORT_PLEASE2"
                );
            }
            let Some(rec) = rec else {
                if json {
                    print_json(&serde_json::json!({ "name": name, "found": false }))?;
                } else {
                    eprintln!("epmdx: no node {name} registered at {host}");
                }
                return Ok(1);
            };
            if json {
                print_json(&to_json(&rec))?;
            } else {
                println!("{}", text_line(&rec));
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_protocols_are_checked_before_asking() {
        let cli = Cli::try_parse_from(["epmdx", "lookup", "s", "--proto", "inet_tls,inet_tcp"])
            .expect("valid protocol names parse");
        let Cmd::Lookup { proto, .. } = cli.cmd else {
            panic!("not a lookup: {cli:?}");
        };
        let names: Vec<&str> = proto.iter().map(epmd_proto::ProtoName::as_str).collect();
        assert_eq!(names, ["inet_tls", "inet_tcp"]);
        for bad in ["Inet", "1tcp", "in-et", ""] {
            assert!(
                Cli::try_parse_from(["epmdx", "lookup", "s", "--proto", bad]).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
