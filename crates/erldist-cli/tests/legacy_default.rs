//! `--legacy-default` / `legacy_default = "..."`: which listen transport
//! epmdx hands stock callers (PORT_PLEASE2, NAMES; docs/protocol.md §4).
//! The end-to-end case with a stock `-proto_dist inet_tls` node is
//! `otp_transports.rs::tls_erlang_to_rust_through_epmdx_legacy_answer`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::erl::TempDir;
use test_support::{names_text, wait_until, Daemon, Subject};

const BIN: &str = env!("CARGO_BIN_EXE_erldist");

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, port: u16, name: &str, extra: &[&str]) -> Serve {
    let c = dir.join("certs");
    let child = Command::new(BIN)
        .args([
            "serve",
            "--name",
            &format!("{name}@localhost"),
            "--cookie",
            "c",
        ])
        .args(["--epmd-port", &port.to_string()])
        .args(["--listen", "inet_tcp", "--listen", "inet_tls"])
        .arg("--tls-cert")
        .arg(c.join("n.pem"))
        .arg("--tls-key")
        .arg(c.join("n-key.pem"))
        .arg("--tls-ca")
        .arg(c.join("ca.pem"))
        .args(extra)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Serve(child)
}

/// The node's (TCP, TLS) ports from `epmdx nodes`-style NAMES3, and its
/// NAMES port.
fn ports(port: u16, name: &str) -> Option<(u16, u16, u16)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n3 = rt
        .block_on(epmd_client::Client::local(port).names3())
        .ok()?;
    let rec = n3.nodes.iter().find(|n| n.name == name.as_bytes())?;
    let by = |p: &str| rec.transports.iter().find(|t| t.proto == p).map(|t| t.port);
    let text = String::from_utf8(names_text(port)?).ok()?;
    let legacy = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("name {name} at port ")))?
        .parse()
        .ok()?;
    Some((by("inet_tcp")?, by("inet_tls")?, legacy))
}

#[test]
fn legacy_default_flag_and_config_key() {
    let d = Daemon::start(Subject::Epmdx, &[]).unwrap();
    let dir = TempDir::new("legacy-default").unwrap();
    let o = Command::new(BIN)
        .args(["gen-certs", "--dir"])
        .arg(dir.path().join("certs"))
        .args(["--node", "n", "--host", "localhost"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "legacy_default = \"inet_tls\"\n").unwrap();
    let wait = Duration::from_secs(30);

    let _plain = serve(dir.path(), d.port, "ld_plain", &[]);
    let _flag = serve(
        dir.path(),
        d.port,
        "ld_flag",
        &["--legacy-default", "inet_tls"],
    );
    let cfg_arg = cfg.display().to_string();
    let _file = serve(dir.path(), d.port, "ld_file", &["--config", &cfg_arg]);
    for (name, want_tls) in [("ld_plain", false), ("ld_flag", true), ("ld_file", true)] {
        let mut got = None;
        assert!(
            wait_until(wait, || {
                got = ports(d.port, name);
                got.is_some()
            }),
            "{name} never registered"
        );
        let (tcp, tls, legacy) = got.unwrap();
        assert_eq!(legacy, if want_tls { tls } else { tcp }, "{name}");
        let p2 = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(epmd_client::Client::local(d.port).port_please(name))
            .unwrap()
            .unwrap();
        assert_eq!(p2.port, legacy, "{name}: PORT_PLEASE2");
    }

    // A name that is not a transport is a clear error, not a silent default.
    let o = Command::new(BIN)
        .args(["serve", "--name", "ld_bad@localhost", "--cookie", "c"])
        .args([
            "--epmd-port",
            &d.port.to_string(),
            "--legacy-default",
            "inet_sctp",
        ])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("legacy_default \"inet_sctp\": not a transport name"),
        "{err}"
    );
}
