//! `-daemon` (bind before fork) and `-systemd` (sockets passed by the
//! service manager, readiness notification).

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{free_port, names_answers, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_epmdx");

/// Sends KILL to a daemon we cannot reach by PID (it double-forked), so a
/// failing test does not leave it behind.
struct KillOnDrop(u16);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["-port", &self.0.to_string(), "-kill"])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn daemon_returns_only_once_the_port_answers() {
    let port = free_port();
    let status = Command::new(BIN)
        .args(["-port", &port.to_string(), "-daemon"])
        .env_remove("ERL_EPMD_PORT")
        .status()
        .unwrap();
    let _guard = KillOnDrop(port);
    assert!(status.success(), "epmdx -daemon exited with {status}");
    // No waiting: the port was bound before the fork, so it answers now.
    assert!(
        names_answers(port),
        "daemon did not answer right after -daemon returned"
    );
    let out = Command::new(BIN)
        .args(["-port", &port.to_string(), "-kill"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Killed\n");
    assert!(wait_until(Duration::from_secs(10), || !names_answers(port)));
}

#[test]
fn systemd_sockets_and_readiness() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("epmdx-notify-{}-{port}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let notify = UnixDatagram::bind(&dir).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    // LISTEN_PID must be the daemon's own PID: let the shell set it, then exec.
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" -systemd", BIN])
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &dir)
        .env_remove("ERL_EPMD_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; the child gets the listener as fd 3
    // without CLOEXEC, as systemd would pass it.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep CLOEXEC: clear it explicitly then.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(fd, 3) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let mut msg = [0u8; 512];
    let n = notify.recv(&mut msg).expect("no sd_notify message");
    let text = String::from_utf8_lossy(&msg[..n]).into_owned();
    assert!(text.contains("READY=1"), "{text}");
    assert!(text.contains(&format!("MAINPID={}", child.id())), "{text}");
    // It serves on the inherited socket, and reports that port in NAMES.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, &[0, 1, 110]).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, u32::from(port).to_be_bytes());
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn systemd_without_sockets_fails() {
    let out = Command::new(BIN)
        .args(["-port", &free_port().to_string(), "-systemd"])
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("systemd provides no sockets"));
}
