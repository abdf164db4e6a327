//! One distribution connection: driving the handshake over a stream, then
//! a reader task (frames in, ticks, dispatch) and a writer task (batched
//! writes, ticks out).
//!
//! The stream type is generic, so TCP, TLS and Unix sockets share this
//! code; only the handshake framing differs (`u32` inside TLS).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dist_proto::{Acceptor, Connector, Established, Event, HandshakeError, PeerCheck};
use erl_term::Term;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, trace, warn};

use crate::control::{BadControl, Control};

/// Pass-through message tag: a packet that is `112`, then the control
/// message and the payload, each a standalone term.
const PASS_THROUGH: u8 = 112;

/// Largest packet accepted after authentication. OTP itself has no limit;
/// this bound keeps one peer from making the node allocate without end.
pub(crate) const MAX_PACKET: usize = 256 << 20;

/// Memory budget of one received message, per byte of its frame: the
/// decoded terms (each [`erl_term::TERM_COST`] bytes plus what it owns) and
/// any inflated compressed term may take this many bytes per frame byte.
/// An uncompressed term can hold one term per wire byte (a list of `[]`),
/// so anything below `TERM_COST` would refuse honest messages; 64 covers
/// that and leaves compression a 64x ratio.
const BUDGET_PER_FRAME_BYTE: usize = 64;
const _: () = assert!(BUDGET_PER_FRAME_BYTE >= erl_term::TERM_COST);

/// The budget of a small message is never below this.
const MIN_MESSAGE_BUDGET: usize = 1 << 20;

/// The memory budget for decoding a frame of `len` bytes.
pub(crate) fn message_budget(len: usize) -> usize {
    len.saturating_mul(BUDGET_PER_FRAME_BYTE)
        .max(MIN_MESSAGE_BUDGET)
}

/// Most queued outgoing packets per connection before senders wait.
const SEND_QUEUE: usize = 4096;

/// Writes are coalesced up to this many bytes.
const WRITE_BATCH: usize = 256 << 10;

/// Why a connection could not be set up or went down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A packet could not be decoded.
    #[error("bad packet: {0}")]
    Decode(String),
    /// A packet larger than [`MAX_PACKET`].
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Nothing arrived for a whole tick time.
    #[error("net_tick_timeout")]
    TickTimeout,
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
}

impl From<BadControl> for ConnError {
    fn from(e: BadControl) -> Self {
        Self::Decode(e.to_string())
    }
}

/// The shared surface of the two handshake machines.
trait Machine {
    fn input(&mut self, bytes: &[u8], now: Instant);
    fn eof(&mut self);
    fn transmit(&mut self) -> Option<Vec<u8>>;
    fn timeout_at(&self) -> Option<Instant>;
    fn timeout(&mut self, now: Instant);
    fn event(&mut self) -> Option<Event>;
    fn peer_check(&mut self, _check: PeerCheck) {}
}

macro_rules! machine {
    ($t:ty $(, $resolve:item)?) => {
        impl Machine for $t {
            fn input(&mut self, bytes: &[u8], now: Instant) {
                self.handle_input(bytes, now)
            }
            fn eof(&mut self) {
                self.handle_eof()
            }
            fn transmit(&mut self) -> Option<Vec<u8>> {
                self.poll_transmit()
            }
            fn timeout_at(&self) -> Option<Instant> {
                self.poll_timeout()
            }
            fn timeout(&mut self, now: Instant) {
                self.handle_timeout(now)
            }
            fn event(&mut self) -> Option<Event> {
                self.poll_event()
            }
            $($resolve)?
        }
    };
}

machine!(Connector);
machine!(
    Acceptor,
    fn peer_check(&mut self, check: PeerCheck) {
        self.resolve(check);
    }
);

/// Drives a handshake to its end over `stream`. `check` answers the
/// acceptor's question about the peer (simultaneous connect, `alive`).
async fn drive<S, M>(
    stream: &mut S,
    m: &mut M,
    mut check: impl FnMut(&str) -> PeerCheck,
) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Machine,
{
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(out) = m.transmit() {
            stream.write_all(&out).await?;
        }
        let mut progressed = false;
        while let Some(ev) = m.event() {
            match ev {
                Event::Established(est) => {
                    stream.flush().await?;
                    return Ok(est);
                }
                Event::Failed(e) => {
                    while let Some(out) = m.transmit() {
                        let _ = stream.write_all(&out).await;
                    }
                    let _ = stream.flush().await;
                    return Err(e.into());
                }
                Event::PeerNamed { name, .. } => {
                    m.peer_check(check(&name));
                    progressed = true;
                }
                _ => {}
            }
        }
        if progressed {
            continue;
        }
        stream.flush().await?;
        let read = match m.timeout_at() {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, stream.read(&mut buf)).await {
                    Ok(r) => Some(r?),
                    Err(_) => None,
                }
            }
            None => Some(stream.read(&mut buf).await?),
        };
        match read {
            None => m.timeout(Instant::now()),
            Some(0) => m.eof(),
            Some(n) => m.input(&buf[..n], Instant::now()),
        }
    }
}

/// Runs the initiator's handshake.
pub(crate) async fn connect<S>(stream: &mut S, mut c: Connector) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive(stream, &mut c, |_| PeerCheck::Free).await
}

/// Runs the acceptor's handshake.
pub(crate) async fn accept<S>(
    stream: &mut S,
    mut a: Acceptor,
    check: impl FnMut(&str) -> PeerCheck,
) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive(stream, &mut a, check).await
}

/// Encodes a pass-through packet, `u32` length included.
pub(crate) fn encode_packet(ctrl: &Term, payload: Option<&Term>) -> Vec<u8> {
    let size = erl_term::encoded_len(ctrl) + payload.map_or(0, erl_term::encoded_len) + 8;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[0, 0, 0, 0, PASS_THROUGH, 131]);
    erl_term::encode_to(ctrl, &mut out);
    if let Some(p) = payload {
        out.push(131);
        erl_term::encode_to(p, &mut out);
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes one non-empty packet body.
pub(crate) fn decode_packet(body: &[u8]) -> Result<Control, ConnError> {
    match body.first() {
        Some(&PASS_THROUGH) => {}
        // 131 68/69/70: distribution header or fragments, which this node
        // does not offer, so a peer must not send them.
        Some(&131) => {
            return Err(ConnError::Decode(
                "distribution header or fragment without the flag".into(),
            ))
        }
        _ => return Err(ConnError::Decode("unknown packet type".into())),
    }
    let rest = &body[1..];
    // One budget for control and payload together.
    let opts = erl_term::DecodeOptions::new().max_memory(message_budget(body.len()));
    let (ctrl, used) = opts
        .decode_used(rest)
        .map_err(|e| ConnError::Decode(e.to_string()))?;
    let payload = if used < rest.len() {
        let p = opts
            .decode(&rest[used..])
            .map_err(|e| ConnError::Decode(e.to_string()))?;
        Some(p)
    } else {
        None
    };
    Ok(Control::from_terms(ctrl, payload)?)
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// What a node keeps of a live connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) flags: u64,
    pub(crate) transport: &'static str,
    tx: mpsc::Sender<Vec<u8>>,
    close: Arc<Notify>,
}

impl ConnHandle {
    /// Queues an encoded packet; waits when the queue is full.
    pub(crate) async fn send(&self, packet: Vec<u8>) -> Result<(), ConnError> {
        self.tx.send(packet).await.map_err(|_| ConnError::Closed)
    }

    /// Queues a packet without waiting (for signals sent from `Drop`).
    pub(crate) fn try_send(&self, packet: Vec<u8>) {
        let _ = self.tx.try_send(packet);
    }

    /// Asks the connection to close.
    pub(crate) fn close(&self) {
        self.close.notify_one();
    }
}

/// Receives what a connection's reader decodes.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// A control message arrived on connection `conn`.
    fn dispatch(&self, conn: &ConnHandle, peer: &str, msg: Control);
    /// The connection ended.
    fn closed(&self, conn: &ConnHandle, peer: &str, why: &ConnError);
}

/// Starts the reader and writer tasks of an established connection.
pub(crate) fn spawn<S, D>(
    stream: S,
    est: Established,
    transport: &'static str,
    tick_time: Duration,
    dispatch: Arc<D>,
) -> ConnHandle
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    D: Dispatch,
{
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let handle = ConnHandle {
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        flags: est.flags,
        transport,
        tx,
        close: Arc::new(Notify::new()),
    };
    let (rd, wr) = tokio::io::split(stream);
    let peer = est.peer_name.clone();
    let h = handle.clone();
    tokio::spawn(async move {
        let span = tracing::debug_span!("dist", peer = %peer, conn = h.id);
        let _e = span.enter();
        drop(_e);
        let writer = tokio::spawn(write_loop(wr, rx, tick_time / 4));
        let why = tokio::select! {
            r = read_loop(rd, est.leftover, tick_time, &h, &peer, &*dispatch) => r,
            () = h.close.notified() => ConnError::Closed,
        };
        writer.abort();
        debug!(peer = %peer, "connection down: {why}");
        dispatch.closed(&h, &peer, &why);
    });
    handle
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    tick_every: Duration,
) {
    let mut segs: Vec<Vec<u8>> = Vec::new();
    loop {
        let first = match tokio::time::timeout(tick_every, rx.recv()).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(_) => {
                trace!("tick");
                if wr.write_all(&[0, 0, 0, 0]).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                continue;
            }
        };
        if rx.is_empty() {
            // One packet: write it directly, no copy.
            if wr.write_all(&first).await.is_err() {
                return;
            }
        } else {
            // Several: small packets are copied together, large ones go out
            // as they are, all in vectored writes, so a 64 KiB message is
            // never copied again on its way to the socket.
            segs.clear();
            let mut total = first.len();
            gather(&mut segs, first);
            while total < WRITE_BATCH && segs.len() < MAX_SEGMENTS {
                match rx.try_recv() {
                    Ok(p) => {
                        total += p.len();
                        gather(&mut segs, p);
                    }
                    Err(_) => break,
                }
            }
            if write_all_vectored(&mut wr, &segs).await.is_err() {
                return;
            }
        }
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
}

/// Packets below this size are coalesced by copying.
const SMALL_PACKET: usize = 8 << 10;

/// At most this many buffers per vectored write (well under IOV_MAX).
const MAX_SEGMENTS: usize = 64;

/// Adds a packet to a write batch: appended to the last buffer when both
/// are small, else kept as its own buffer.
fn gather(segs: &mut Vec<Vec<u8>>, p: Vec<u8>) {
    if p.len() < SMALL_PACKET {
        if let Some(last) = segs.last_mut() {
            if last.len() < 64 << 10 && last.capacity() >= 64 << 10 {
                last.extend_from_slice(&p);
                return;
            }
        }
        let mut merged = Vec::with_capacity(64 << 10);
        merged.extend_from_slice(&p);
        segs.push(merged);
    } else {
        segs.push(p);
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bufs: &[Vec<u8>],
) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = wr.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

async fn read_loop<R: AsyncRead + Unpin, D: Dispatch>(
    mut rd: R,
    leftover: Vec<u8>,
    tick_time: Duration,
    h: &ConnHandle,
    peer: &str,
    dispatch: &D,
) -> ConnError {
    let mut buf = leftover;
    let mut start = 0usize;
    loop {
        // Take every complete frame in the buffer.
        loop {
            let avail = &buf[start..];
            let Some(hdr) = avail.get(..4) else { break };
            let len = u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
            if len > MAX_PACKET {
                return ConnError::TooLarge(len);
            }
            if avail.len() < 4 + len {
                // Make room for the whole frame at once.
                buf.reserve(4 + len - avail.len());
                break;
            }
            if len > 0 {
                match decode_packet(&avail[4..4 + len]) {
                    Ok(msg) => dispatch.dispatch(h, peer, msg),
                    // The frame boundary is intact, so a message that
                    // cannot be decoded (unknown tag, over its memory
                    // budget) is lost alone; the connection stays up.
                    Err(e) => warn!(peer, bytes = len, "dropping a message: {e}"),
                }
            }
            start += 4 + len;
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        match tokio::time::timeout(tick_time, rd.read_buf(&mut buf)).await {
            Err(_) => return ConnError::TickTimeout,
            // A TLS peer that closes without close_notify has still closed.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return ConnError::Closed
            }
            Ok(Err(e)) => return ConnError::Io(e),
            Ok(Ok(0)) => return ConnError::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// A pass-through SEND packet body carrying `payload` bytes as the message.
    fn body(payload: &[u8]) -> Vec<u8> {
        let node = erl_term::Atom::new("a@h").unwrap();
        let pid = Term::Pid(erl_term::Pid {
            node,
            id: 1,
            serial: 0,
            creation: 1,
        });
        let ctrl = Term::Tuple(vec![
            Term::Integer(2),
            Term::Atom(erl_term::Atom::new("").unwrap()),
            pid,
        ]);
        let mut b = vec![PASS_THROUGH];
        b.extend_from_slice(&erl_term::encode(&ctrl));
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn compressed_bomb_is_over_budget() {
        let bomb = erl_term::encode_compressed(&Term::List(vec![Term::Nil; 16 << 20]), 6);
        let err = decode_packet(&body(&bomb)).unwrap_err();
        assert!(err.to_string().contains("memory budget"), "{err}");
    }

    #[test]
    fn unknown_tag_is_an_error_for_that_message_only() {
        // Tag 66 is unassigned: the packet fails, and read_loop drops just
        // that frame.
        let err = decode_packet(&body(&[131, 66, 0])).unwrap_err();
        assert!(err.to_string().contains("tag 66"), "{err}");
        assert!(decode_packet(&body(&erl_term::encode(&Term::Nil))).is_ok());
    }

    #[test]
    fn native_records_are_decoded() {
        // OTP 29 sends RECORD_EXT (tag 67) whatever the flags say:
        // #m:r{a = 1}.
        let rec = [
            131, 67, 0, 0, 0, 1, 0, 119, 1, b'm', 119, 1, b'r', 119, 1, b'a', 97, 1,
        ];
        match decode_packet(&body(&rec)) {
            Ok(Control::Send { msg, .. }) => {
                assert_eq!(msg.to_string(), "#m:r{a = 1}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn budget_scales_with_the_frame() {
        assert_eq!(message_budget(10), MIN_MESSAGE_BUDGET);
        assert_eq!(message_budget(1 << 20), 64 << 20);
    }
}
