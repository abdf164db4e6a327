//! `-names`, `-started`, `-dump`, `-kill` and `-stop`: OTP's client modes,
//! (and `-upgrade`, see [`crate::upgrade`]),
//! with its exact output strings and exit codes (scripts grep them).

use std::io::Write;

use epmd_client::{Client, ClientError};
use epmd_proto::limits::MAX_STOP_NAME;

use crate::args::Mode;

fn out(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes);
    let _ = o.flush();
}

fn err(msg: &str) {
    let _ = std::io::stderr().write_all(msg.as_bytes());
}

/// Runs one client mode against the local daemon on `port`; returns the
/// process exit code.
pub(crate) async fn run(mode: &Mode, port: u16) -> i32 {
    if matches!(mode, Mode::Upgrade) {
        return crate::upgrade::client(port).await;
    }
    let client = Client::local(port);
    let silent = matches!(mode, Mode::Started);
    if let Mode::Stop(name) = mode {
        if name.len() > MAX_STOP_NAME {
            out(b"epmd: Name too long!");
            return 1;
        }
    }
    let framed = match mode {
        Mode::Names | Mode::Started => epmd_proto::frame::encode(&[epmd_proto::code::NAMES_REQ]),
        Mode::Dump => epmd_proto::frame::encode(&[epmd_proto::code::DUMP_REQ]),
        Mode::Kill => epmd_proto::frame::encode(&[epmd_proto::code::KILL_REQ]),
        Mode::Stop(name) => {
            let mut body = vec![epmd_proto::code::STOP_REQ];
            body.extend_from_slice(name);
            epmd_proto::frame::encode(&body)
        }
        Mode::Daemon | Mode::Upgrade => unreachable!("not a request of this module"),
    };
    let reply = match client.request_raw(&framed).await {
        Ok(r) => r,
        Err(ClientError::Connect { .. }) => {
            if !silent {
                err("epmd: Cannot connect to local epmd\n");
            }
            return 1;
        }
        Err(_) if matches!(mode, Mode::Kill) => {
            out(b"epmd: failed to read answer from local epmd\n");
            return 1;
        }
        Err(_) => Vec::new(),
    };
    match mode {
        Mode::Started => i32::from(reply.len() < 4),
        Mode::Names | Mode::Dump => {
            if reply.len() < 4 {
                out(b"epmd: no response from local epmd\n");
                return 1;
            }
            let p = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
            let mut text = format!("epmd: up and running on port {p} with data:\n").into_bytes();
            text.extend_from_slice(&reply[4..]);
            out(&text);
            0
        }
        Mode::Kill => match reply.as_slice() {
            b"OK" => {
                out(b"Killed\n");
                0
            }
            b"NO" => {
                out(b"Killing not allowed - living nodes in database.\n");
                1
            }
            other => {
                let shown = &other[..other.len().min(2)];
                let mut msg = b"epmd: local epmd responded with <".to_vec();
                msg.extend_from_slice(shown);
                msg.extend_from_slice(b">\n");
                out(&msg);
                1
            }
        },
        Mode::Stop(_) => {
            if reply.len() >= 7 {
                let mut msg = reply[..7].to_vec();
                msg.push(b'\n');
                out(&msg);
                0
            } else {
                let mut msg = b"epmd: local epmd responded with <".to_vec();
                msg.extend_from_slice(&reply);
                msg.extend_from_slice(b">\n");
                out(&msg);
                1
            }
        }
        Mode::Daemon | Mode::Upgrade => unreachable!("not a request of this module"),
    }
}
