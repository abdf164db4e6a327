//! One distribution connection, the I/O edge of `dist_proto`: it drives
//! a [`Handshake`] over a stream, then runs a reader task (socket bytes
//! into a [`Framer`], frames through [`Control::decode_packet`],
//! [`Liveness`] for the tick deadline) and a
//! writer task (batched writes, a [`Ticker`] for ticks out). Every rule
//! about bytes and time lives in `dist_proto::packet`; this file only
//! moves bytes and reads the clock.
//!
//! The stream type is generic, so TCP, TLS and Unix sockets share this
//! code; only the handshake framing differs (`u32` inside TLS).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dist_proto::packet::{DecodeLimits, Frame, Framer, Liveness, PacketError, Ticker};
use dist_proto::{ConfigError, Established, Event, Handshake, HandshakeError, PeerCheck};
use erl_term::{Bytes, Chunks};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, trace, warn};

use crate::control::Control;
use crate::op_flags;

/// Every outgoing packet is encoded in pieces: a large binary in a
/// message is written from the term's own buffer.
pub(crate) use dist_proto::packet::encode_chunks as encode_packet;

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
    /// The handshake configuration was refused before any byte was sent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A frame or packet was refused, or the peer fell silent
    /// ([`PacketError::TickTimeout`], shown as `net_tick_timeout`).
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
}

/// Drives a handshake to its end over `stream`. `check` answers the
/// acceptor's question about the peer (simultaneous connect, `alive`).
async fn drive<S, H>(
    stream: &mut S,
    m: &mut H,
    mut check: impl FnMut(&str) -> PeerCheck,
) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handshake,
{
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(out) = m.poll_transmit() {
            stream.write_all(&out).await?;
        }
        let mut progressed = false;
        while let Some(ev) = m.poll_event() {
            match ev {
                Event::Established(est) => {
                    stream.flush().await?;
                    return Ok(est);
                }
                Event::Failed(e) => {
                    while let Some(out) = m.poll_transmit() {
                        let _ = stream.write_all(&out).await;
                    }
                    let _ = stream.flush().await;
                    return Err(e.into());
                }
                Event::PeerNamed { name, .. } => {
                    m.resolve(check(&name));
                    progressed = true;
                }
                _ => {}
            }
        }
        if progressed {
            continue;
        }
        stream.flush().await?;
        let read = match m.poll_timeout() {
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
            None => m.handle_timeout(Instant::now()),
            Some(0) => m.handle_eof(),
            Some(n) => m.handle_input(&buf[..n], Instant::now()),
        }
    }
}

/// Runs the initiator's handshake.
pub(crate) async fn connect<S, H>(stream: &mut S, mut c: H) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handshake,
{
    drive(stream, &mut c, |_| PeerCheck::Free).await
}

/// Runs the acceptor's handshake.
pub(crate) async fn accept<S, H>(
    stream: &mut S,
    mut a: H,
    check: impl FnMut(&str) -> PeerCheck,
) -> Result<Established, ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handshake,
{
    drive(stream, &mut a, check).await
}

/// What the reader does with one frame body: a message the node acts on is
/// dispatched; one that cannot be decoded, or whose operation no OTP
/// release defines, is dropped with a warning that names the peer and the
/// size, never the contents. The frame boundary is intact either way, so
/// the connection stays up.
fn receive<D: Dispatch>(body: &Bytes, limits: &DecodeLimits, h: &ConnHandle, peer: &str, d: &D) {
    match Control::decode_packet(body, limits) {
        Ok(Control::Other(op)) if op_flags::required(op).is_none() => {
            warn!(
                peer,
                bytes = body.len(),
                op,
                "ignoring a message: unknown control operation"
            );
        }
        Ok(msg) => d.dispatch(h, peer, msg),
        Err(e) => warn!(peer, bytes = body.len(), "dropping a message: {e}"),
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// What a node keeps of a live connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) flags: u64,
    pub(crate) transport: &'static str,
    tx: mpsc::Sender<Chunks>,
    close: Arc<Notify>,
}

impl ConnHandle {
    /// Queues an encoded packet; waits when the queue is full.
    pub(crate) async fn send(&self, packet: Chunks) -> Result<(), ConnError> {
        self.tx.send(packet).await.map_err(|_| ConnError::Closed)
    }

    /// Queues a packet without waiting (for signals sent from `Drop`).
    pub(crate) fn try_send(&self, packet: Chunks) {
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
    limits: DecodeLimits,
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
        let writer = tokio::spawn(write_loop(wr, rx, tick_time));
        let framer = Framer::new(est.leftover);
        let why = tokio::select! {
            r = read_loop(rd, framer, tick_time, &limits, &h, &peer, &*dispatch) => r,
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
    mut rx: mpsc::Receiver<Chunks>,
    tick_time: Duration,
) {
    let mut ticker = Ticker::new(tick_time, Instant::now());
    let mut segs: Vec<Seg> = Vec::new();
    loop {
        let at = tokio::time::Instant::from_std(ticker.poll_timeout());
        let first = match tokio::time::timeout_at(at, rx.recv()).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(_) => {
                if let Some(tick) = ticker.handle_timeout(Instant::now()) {
                    trace!("tick");
                    if wr.write_all(tick).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        // Small packets are copied together, large ones (and the large
        // binaries inside them) go out as they are, all in vectored writes,
        // so a 64 KiB binary is never copied on its way to the socket.
        segs.clear();
        let mut batch = Batch::default();
        batch.add(&mut segs, first);
        while batch.bytes < WRITE_BATCH && batch.slices < MAX_SEGMENTS {
            match rx.try_recv() {
                Ok(p) => batch.add(&mut segs, p),
                Err(_) => break,
            }
        }
        if write_all_vectored(&mut wr, &segs).await.is_err() {
            return;
        }
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
        ticker.on_send(Instant::now());
    }
}

/// Packets below this size are coalesced by copying.
const SMALL_PACKET: usize = 8 << 10;

/// Size of the buffers small packets are copied into.
const MERGE_BUF: usize = 64 << 10;

/// At most about this many buffers per vectored write (well under IOV_MAX).
const MAX_SEGMENTS: usize = 64;

/// One buffer of a write batch.
#[derive(Debug)]
enum Seg {
    /// Small packets copied together.
    Merged(Vec<u8>),
    /// A packet written from its own pieces.
    Packet(Chunks),
}

/// The size of the batch being gathered, in bytes and in I/O slices.
#[derive(Debug, Default)]
struct Batch {
    bytes: usize,
    slices: usize,
}

impl Batch {
    /// Adds a packet: appended to the last merge buffer when it is small,
    /// else kept as its own pieces.
    fn add(&mut self, segs: &mut Vec<Seg>, p: Chunks) {
        let len = p.len();
        self.bytes += len;
        if len >= SMALL_PACKET {
            self.slices += p.slices().count();
            segs.push(Seg::Packet(p));
            return;
        }
        if let Some(Seg::Merged(last)) = segs.last_mut() {
            if last.len() + len <= last.capacity() {
                p.slices().for_each(|s| last.extend_from_slice(s));
                return;
            }
        }
        // A lone small packet goes out as it is, without a copy; a second
        // one turns it into a merge buffer.
        if let Some(Seg::Packet(prev)) = segs.last() {
            if prev.len() < SMALL_PACKET {
                let mut merged = Vec::with_capacity(MERGE_BUF);
                prev.slices().for_each(|s| merged.extend_from_slice(s));
                p.slices().for_each(|s| merged.extend_from_slice(s));
                *segs.last_mut().expect("just matched") = Seg::Merged(merged);
                return;
            }
        }
        self.slices += p.slices().count();
        segs.push(Seg::Packet(p));
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    segs: &[Seg],
) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = Vec::with_capacity(segs.len() + 2);
    for seg in segs {
        match seg {
            Seg::Merged(b) => slices.push(std::io::IoSlice::new(b)),
            Seg::Packet(p) => slices.extend(p.slices().map(std::io::IoSlice::new)),
        }
    }
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
    mut framer: Framer,
    tick_time: Duration,
    limits: &DecodeLimits,
    h: &ConnHandle,
    peer: &str,
    dispatch: &D,
) -> ConnError {
    let mut alive = Liveness::new(tick_time, Instant::now());
    loop {
        // Take every complete frame in the buffer.
        loop {
            match framer.poll_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Tick)) => {}
                Ok(Some(Frame::Packet(body))) => receive(&body, limits, h, peer, dispatch),
                Err(e) => return e.into(),
            }
        }
        let at = tokio::time::Instant::from_std(alive.poll_timeout());
        match tokio::time::timeout_at(at, rd.read_buf(framer.read_buf())).await {
            Err(_) => {
                if let Err(e) = alive.handle_timeout(Instant::now()) {
                    return e.into();
                }
            }
            // A TLS peer that closes without close_notify has still closed.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return ConnError::Closed
            }
            Ok(Err(e)) => return ConnError::Io(e),
            Ok(Ok(0)) => return ConnError::Closed,
            Ok(Ok(_)) => alive.on_input(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use erl_term::{Atom, Pid, Term};

    use super::*;
    use crate::control::BadPacket;

    fn pid() -> Term {
        Term::Pid(Pid {
            node: Atom::new("a@h").unwrap(),
            id: 1,
            serial: 0,
            creation: 1,
        })
    }

    #[test]
    fn packets_decode_to_control_messages_or_typed_errors() {
        let l = DecodeLimits::new();
        let send = Term::Tuple(vec![Term::Integer(2), Term::atom(""), pid()]);
        let framed = Bytes::from(encode_packet(&send, Some(&Term::Nil)).to_vec());
        let msg = Control::decode_packet(&framed.slice(4..), &l).unwrap();
        assert!(
            matches!(msg, Control::Send { msg: Term::Nil, .. }),
            "{msg:?}"
        );
        // SEND without its payload: the terms decode, the message does not.
        let framed = Bytes::from(encode_packet(&send, None).to_vec());
        let err = Control::decode_packet(&framed.slice(4..), &l).unwrap_err();
        assert!(matches!(err, BadPacket::Control(_)), "{err:?}");
        let err = Control::decode_packet(&Bytes::from_static(&[131, 68]), &l).unwrap_err();
        assert_eq!(err, BadPacket::Packet(PacketError::DistHeader));
        // An operation no release defines decodes as Other, which the
        // reader drops with a warning instead of dispatching.
        let framed =
            Bytes::from(encode_packet(&Term::Tuple(vec![Term::Integer(99)]), None).to_vec());
        let msg = Control::decode_packet(&framed.slice(4..), &l).unwrap();
        assert_eq!(msg, Control::Other(99));
        assert!(op_flags::required(99).is_none());
        assert!(op_flags::required(29).is_some(), "SPAWN_REQUEST is known");
    }

    #[test]
    fn tick_timeout_reads_as_otp_says_it() {
        let e = ConnError::from(PacketError::TickTimeout);
        assert_eq!(e.to_string(), "net_tick_timeout");
    }
}
