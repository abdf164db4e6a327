//! `epmdx`: a drop-in replacement for OTP's `epmd`, with multi-transport
//! registration.
//!
//! `epmdx [OTP epmd options]` behaves like `epmd` (same flags, environment,
//! output strings and exit codes); `epmdx nodes`, `epmdx lookup` and
//! `epmdx cluster nodes` are the extended commands (see `epmdx help`).
//!
//! # Layout
//! - [`args`]: OTP's order-sensitive command line.
//! - [`client_modes`]: `-names`, `-started`, `-dump`, `-kill`, `-stop`.
//! - [`cluster`]: `-etcd`/`-cluster`: publishing registrations to etcd.
//! - [`daemon`]: binding, `-daemon`, `-systemd`, limits and the runtime.
//! - [`ext_cli`]: the extended subcommands, with JSON output.
//! - [`log`]: the C epmd's log line format and syslog.
//! - [`upgrade`]: `-upgrade` and starting from a hand-over.

mod args;
mod client_modes;
mod cluster;
mod daemon;
mod ext_cli;
mod log;
mod upgrade;

use std::io::Write;

use clap::Parser;

const USAGE: &str = include_str!("usage.txt");

fn usage() -> ! {
    let _ = std::io::stderr().write_all(USAGE.as_bytes());
    std::process::exit(1)
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv
        .first()
        .is_some_and(|a| ext_cli::SUBCOMMANDS.contains(&a.as_str()))
    {
        let cli = ext_cli::Cli::parse();
        let code = match client_runtime().block_on(ext_cli::run(cli)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("epmdx: {e:#}");
                1
            }
        };
        std::process::exit(code);
    }
    let port = epmd_proto::port_from_env();
    let relaxed = std::env::var_os("ERL_EPMD_RELAXED_COMMAND_CHECK").is_some();
    let mut parsed = match args::parse(&argv, port, relaxed) {
        Ok(a) => a,
        Err(args::Usage) => usage(),
    };
    if parsed.address.is_none() {
        parsed.address = std::env::var("ERL_EPMD_ADDRESS").ok();
    }
    if parsed.allow.is_none() {
        parsed.allow = std::env::var("EPMDX_ALLOW").ok();
    }
    if parsed.rate_limit.is_none() {
        parsed.rate_limit = std::env::var("EPMDX_RATE_LIMIT").ok();
    }
    if parsed.metrics.is_none() {
        parsed.metrics = std::env::var("EPMDX_METRICS").ok();
    }
    let code = match &parsed.mode {
        args::Mode::Daemon => daemon::run(&parsed),
        mode => client_runtime().block_on(client_modes::run(mode, parsed.port)),
    };
    std::process::exit(code);
}
