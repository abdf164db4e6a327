//! `epmdx -upgrade` (the client command) and the daemon's side of an
//! in-place upgrade: which binary to re-execute, and starting up from a
//! hand-over instead of binding. The protocol is in
//! `epmd_server::handover`; docs/operations.md describes the procedure.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use epmd_client::{Client, ClientError};
use epmd_server::handover::{self, UPGRADE_BODY};

/// Longer than the daemon's own deadlines (two 10 s steps and a 2 s drain).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// Runs `-upgrade` against the local daemon on `port`; returns the exit code.
pub(crate) async fn client(port: u16) -> i32 {
    let client = Client::local(port).with_timeout(CLIENT_TIMEOUT);
    let framed = epmd_proto::frame::encode(UPGRADE_BODY);
    let reply = match client.request_raw(&framed).await {
        Ok(r) => r,
        Err(ClientError::Connect { .. }) => {
            eprintln!("epmd: Cannot connect to local epmd");
            return 1;
        }
        Err(e) => {
            eprintln!("epmdx: upgrade failed: {e}");
            return 1;
        }
    };
    match handover::decode_reply(&reply) {
        Some(Ok((old, new, n))) => {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "upgraded: pid {old} -> {new}, {n} registrations");
            let _ = o.flush();
            0
        }
        Some(Err(reason)) => {
            eprintln!("epmdx: upgrade failed: {reason}");
            1
        }
        None if reply.is_empty() => {
            eprintln!(
                "epmdx: upgrade failed: the daemon on port {port} closed the connection \
                 (it does not support -upgrade)"
            );
            1
        }
        None => {
            eprintln!("epmdx: upgrade failed: unexpected reply from the daemon");
            1
        }
    }
}

/// The path this binary was started from, resolved at start-up: after the
/// file is replaced, `/proc/self/exe` names a deleted inode, while the path
/// names the new version.
pub(crate) fn own_exe() -> Option<PathBuf> {
    let p = std::fs::read_link("/proc/self/exe").ok()?;
    let s = p.to_string_lossy();
    // Already replaced before we looked: the path is still what we want.
    Some(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => p,
    })
}
