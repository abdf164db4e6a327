//! The reference: plain TCP over loopback between this process and a child
//! (`dist-bench tcp-sink`), one `write()` per message, no framing or
//! encoding. For large payloads it approximates what the kernel allows on
//! this machine at the moment; for small ones it shows the cost of a system
//! call per message that the distribution senders avoid by batching.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// `dist-bench tcp-sink`: accepts connections; on each, reads an 8-byte
/// byte count, swallows that many bytes and answers one byte; repeats.
/// Prints `ready PORT`; exits when stdin closes.
pub(crate) fn run_sink_process() -> Result<()> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind")?;
    let port = l.local_addr()?.port();
    println!("ready {port}");
    std::io::stdout().flush()?;
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let mut buf = vec![0u8; 1 << 20];
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let _ = s.set_nodelay(true);
        loop {
            let mut hdr = [0u8; 8];
            if s.read_exact(&mut hdr).is_err() {
                break;
            }
            let mut left = u64::from_be_bytes(hdr);
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                match s.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(n) => left -= n as u64,
                }
            }
            if s.write_all(&[1]).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// The sending end, connected to the child.
#[derive(Debug)]
pub(crate) struct RawTcp {
    stream: TcpStream,
}

impl RawTcp {
    pub(crate) fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).context("connect tcp-sink")?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(Self { stream })
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
