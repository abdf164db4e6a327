//! Reading epmdx's `-metrics` endpoint as Prometheus would: a plain HTTP
//! GET, a sample looked up by its exact series, and Prometheus's own
//! `promtool check metrics` on the text.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

/// `GET /metrics` at `addr`: the status line and the body.
pub fn get(addr: SocketAddr, path: &str) -> Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).context("read the reply")?;
    let text = String::from_utf8(raw).context("reply is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no header end in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    let length: Option<usize> = head.lines().find_map(|l| {
        l.strip_prefix("Content-Length: ")
            .and_then(|v| v.trim().parse().ok())
    });
    ensure!(
        length == Some(body.len()),
        "Content-Length {length:?}, body {} bytes",
        body.len()
    );
    Ok((status, body.to_owned()))
}

/// The exposition at `addr`, which must answer 200.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, body) = get(addr, "/metrics")?;
    ensure!(status == "HTTP/1.1 200 OK", "status {status:?}");
    Ok(body)
}

/// The value of `series` (name and labels exactly as exposed, e.g.
/// `epmdx_requests_total{command="names",result="ok"}`), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok())?
    })
}

/// Like [`sample`], failing when the series is missing.
pub fn value(text: &str, series: &str) -> Result<f64> {
    sample(text, series).with_context(|| format!("no series {series} in:\n{text}"))
}

/// Runs `promtool check metrics` (Debian package `prometheus`) on `text`;
/// fails with promtool's own words when it finds a problem.
pub fn promtool_check(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run promtool (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
