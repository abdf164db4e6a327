//! The reference: a plain byte stream between this process and a child
//! (`dist-bench tcp-sink`, or `dist-bench tcp-sink --uds PATH` for a
//! Unix-domain socket), one `write()` per message, no framing or encoding.
//! For large payloads it approximates what the kernel allows on this
//! machine at the moment; for small ones it shows the cost of a system call
//! per message that the distribution senders avoid by batching.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Reads an 8-byte byte count, swallows that many bytes and answers one
/// byte; repeats until the peer closes.
fn serve<S: Read + Write>(mut s: S, buf: &mut [u8]) {
    loop {
        let mut hdr = [0u8; 8];
        if s.read_exact(&mut hdr).is_err() {
            return;
        }
        let mut left = u64::from_be_bytes(hdr);
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            match s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
        if s.write_all(&[1]).is_err() {
            return;
        }
    }
}

/// `dist-bench tcp-sink [--uds PATH]`: accepts connections (TCP on
/// 127.0.0.1, or a Unix socket at `PATH`) and serves each in turn. Prints
/// `ready PORT` (`ready PATH` for a Unix socket); exits when stdin closes.
pub(crate) fn run_sink_process(uds: Option<&Path>) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let watch_stdin = || {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            if let Some(p) = UDS_PATH.get() {
                let _ = std::fs::remove_file(p);
            }
            std::process::exit(0);
        });
    };
    if let Some(path) = uds {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
        let _ = UDS_PATH.set(path.to_owned());
        println!("ready {}", path.display());
        std::io::stdout().flush()?;
        watch_stdin();
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            serve(s, &mut buf);
        }
        return Ok(());
    }
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind")?;
    let port = l.local_addr()?.port();
    println!("ready {port}");
    std::io::stdout().flush()?;
    watch_stdin();
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let _ = s.set_nodelay(true);
        serve(s, &mut buf);
    }
    Ok(())
}

/// The sink's Unix socket, removed when the sink exits.
static UDS_PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The sending end, connected to the child.
pub(crate) struct RawTcp {
    stream: Box<dyn Stream>,
}

impl std::fmt::Debug for RawTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawTcp")
    }
}

impl RawTcp {
    pub(crate) fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("connect tcp-sink")?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Self {
            stream: Box::new(stream),
        })
    }

    /// Connects to a `tcp-sink --uds PATH`.
    pub(crate) fn connect_uds(path: &Path) -> Result<Self> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connect unix sink {}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Self {
            stream: Box::new(stream),
        })
    }

    /// Writes `n` messages of `size` bytes, one `write_all` each, and waits
    /// for the receiver's acknowledgement.
    pub(crate) fn send(&mut self, size: usize, n: u64) -> Result<Duration> {
        let payload = vec![0xabu8; size];
        let total = (size as u64).saturating_mul(n);
        let t0 = Instant::now();
        self.stream.write_all(&total.to_be_bytes())?;
        for _ in 0..n {
            self.stream.write_all(&payload)?;
        }
        let mut ack = [0u8; 1];
        self.stream.read_exact(&mut ack).context("tcp-sink ack")?;
        Ok(t0.elapsed())
    }
}
