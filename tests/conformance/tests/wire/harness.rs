//! The differential harness: run one case against every selected subject,
//! each on its own private-port daemon, and compare what they did.
//!
//! A case is a function that drives a daemon over raw TCP through a [`Ctx`]
//! and records an observable [`Transcript`]: the exact bytes received, how
//! each connection ended, and state probes such as the NAMES reply. Values
//! that legitimately differ between two daemons are masked when they are
//! recorded: creations derived from `time()`, DUMP's `fd = N`, and the
//! daemon's own port in the u32 header (each daemon's port is compared with
//! the port that daemon was started on). The case also checks the spec's
//! expected values itself, so a case fails even when only one subject runs.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use epmd_proto::legacy::{parse_names_text, Alive2Req, Alive2Resp};
use epmd_proto::NodeType;
use test_support::{Daemon, Subject};

use crate::probe::{self, End, Reply};

/// Daemon arguments every case gets unless it says otherwise.
pub(crate) const FAST_TIMEOUT: &[&str] = &["-packet_timeout", "1"];

/// Daemon arguments for cases that expect an immediate close: a long
/// `packet_timeout`, so a daemon that waits instead of closing is caught.
pub(crate) const PROMPT: &[&str] = &["-packet_timeout", "30"];

/// How long to wait for a close that should come promptly.
pub(crate) const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// How long a socket must stay quiet to count as "still open".
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// What a case observed, line by line, after masking.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    /// Records `label: value`.
    pub(crate) fn push(&mut self, label: impl fmt::Display, value: impl fmt::Display) {
        self.lines.push(format!("{label}: {value}"));
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}

/// Renders bytes for a transcript: printable ASCII as is, `\n`, `\0` and
/// `\\` escaped, anything else as `\xNN`.
pub(crate) fn render(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// Replaces every `fd = N` with `fd = {fd}`.
pub(crate) fn mask_fds(text: &[u8]) -> Vec<u8> {
    const PAT: &[u8] = b"fd = ";
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with(PAT) {
            out.extend_from_slice(b"fd = {fd}");
            i += PAT.len();
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// How far `time(NULL)` may lag the precise clock: glibc's `time()` reads
/// the coarse clock, which is a tick behind, so right after a second
/// boundary a daemon can still see the previous second.
const COARSE_SLACK: Duration = Duration::from_millis(100);

/// A lower bound for what `time(NULL)` says now (use before a request).
pub(crate) fn unix_before() -> u64 {
    (SystemTime::now() - COARSE_SLACK)
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Waits until even the coarse `time(NULL)` has moved past `secs` (a
/// condition wait on the wall clock, at most about a second per second).
pub(crate) fn wait_for_second_after(secs: u64) {
    let ok = test_support::wait_until(Duration::from_secs(5), || unix_before() > secs);
    assert!(ok, "wall clock did not pass {secs}");
}

/// An ALIVE2 registration the case asked for.
#[derive(Debug, Clone)]
pub(crate) struct Reg {
    pub(crate) name: Vec<u8>,
    pub(crate) port: u16,
    pub(crate) node_type: u8,
    pub(crate) protocol: u8,
    pub(crate) high: u16,
    pub(crate) low: u16,
    pub(crate) extra: Vec<u8>,
}

impl Reg {
    /// A normal node `name` on port 5000 with hi = lo = 6 (what OTP 25+ sends
    /// apart from lo) and no Extra.
    pub(crate) fn v6(name: impl AsRef<[u8]>) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            port: 5000,
            node_type: NodeType::Normal.code(),
            protocol: 0,
            high: 6,
            low: 6,
            extra: Vec::new(),
        }
    }

    /// The same with hi = lo = 5 (the 121 reply form).
    pub(crate) fn v5(name: impl AsRef<[u8]>) -> Self {
        Self {
            high: 5,
            low: 5,
            ..Self::v6(name)
        }
    }

    pub(crate) fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub(crate) fn extra(mut self, extra: impl AsRef<[u8]>) -> Self {
        self.extra = extra.as_ref().to_vec();
        self
    }

    pub(crate) fn versions(mut self, high: u16, low: u16) -> Self {
        self.high = high;
        self.low = low;
        self
    }

    pub(crate) fn kind(mut self, node_type: u8, protocol: u8) -> Self {
        self.node_type = node_type;
        self.protocol = protocol;
        self
    }

    /// The framed request.
    pub(crate) fn frame(&self) -> Vec<u8> {
        Alive2Req {
            port: self.port,
            node_type: self.node_type,
            protocol: self.protocol,
            high: self.high,
            low: self.low,
            name: &self.name,
            extra: &self.extra,
        }
        .encode()
    }

    /// Size of the reply this request asks for.
    pub(crate) fn reply_len(&self) -> usize {
        if self.high >= 6 {
            6
        } else {
            4
        }
    }
}

/// A registration socket and the reply it got. Dropping it closes the
/// socket, which unregisters the node.
#[derive(Debug)]
#[must_use = "dropping a Node closes its socket and unregisters it"]
pub(crate) struct Node {
    pub(crate) stream: TcpStream,
    pub(crate) reply: Reply,
}

impl Node {
    /// The decoded ALIVE2 reply, if one complete reply arrived.
    pub(crate) fn resp(&self) -> Option<Alive2Resp> {
        Alive2Resp::decode(&self.reply.bytes).ok().flatten()
    }

    /// Whether the registration succeeded.
    pub(crate) fn ok(&self) -> bool {
        self.resp().is_some_and(|r| r.result() == 0)
    }
}

/// Per-name creation counters as far as the replies revealed them, used to
/// mask time-derived creations by their relation to earlier values.
#[derive(Debug, Default)]
struct Creations {
    known: HashMap<Vec<u8>, u32>,
}

impl Creations {
    /// Masks the creation of a successful reply for `name`, given the wall
    /// clock window `[t0, t1]` around the request.
    fn mask(&mut self, name: &[u8], resp: Alive2Resp, t0: u64, t1: u64) -> String {
        let in_window = |c: u64| (t0 + 1..=t1 + 1).contains(&c);
        match resp {
            Alive2Resp::X { creation: c, .. } => {
                let prev = self.known.get(name).copied();
                let tag = if prev.is_some_and(|p| p.wrapping_add(1) == c) {
                    "{prev+1}".to_owned()
                } else if in_window(u64::from(c)) {
                    "{now+1}".to_owned()
                } else if let Some((other, _)) = self
                    .known
                    .iter()
                    .filter(|(n, v)| n.as_slice() != name && **v == c)
                    .min_by(|a, b| a.0.cmp(b.0))
                {
                    format!("{{creation of {}}}", render(other))
                } else {
                    format!("{{unexplained {c}}}")
                };
                self.known.insert(name.to_vec(), c);
                tag
            }
            Alive2Resp::Legacy { creation: v, .. } => {
                let v = u32::from(v);
                if let Some(p) = self.known.get(name).copied() {
                    let next = p.wrapping_add(1);
                    if next % 3 + 1 == v {
                        self.known.insert(name.to_vec(), next);
                        return "{(prev+1)%3+1}".to_owned();
                    }
                }
                for t in t0..=t1 {
                    let c = (t + 1) as u32;
                    if c % 3 + 1 == v {
                        self.known.insert(name.to_vec(), c);
                        return "{(now+1)%3+1}".to_owned();
                    }
                }
                format!("{{unexplained {v}}}")
            }
        }
    }
}

/// What a case works with: one subject, one daemon, one transcript.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) subject: Subject,
    pub(crate) daemon: Daemon,
    pub(crate) t: Transcript,
    creations: Creations,
    last_creation_tag: Option<String>,
}

impl Ctx {
    pub(crate) fn port(&self) -> u16 {
        self.daemon.port
    }

    /// Records `label: value`.
    pub(crate) fn note(&mut self, label: impl fmt::Display, value: impl fmt::Display) {
        self.t.push(label, value);
    }

    /// A fresh connection to the daemon on 127.0.0.1.
    pub(crate) fn connect(&self) -> Result<TcpStream> {
        probe::connect(self.port())
    }

    /// Renders a reply whose first 4 bytes are the daemon's port.
    fn render_with_port_header(&self, bytes: &[u8], fds: bool) -> String {
        let (head, rest) = bytes.split_at(bytes.len().min(4));
        let head = if head == u32::from(self.port()).to_be_bytes() {
            "{port}".to_owned()
        } else {
            format!("<header {}>", render(head))
        };
        let rest = if fds { mask_fds(rest) } else { rest.to_vec() };
        format!("{head}{}", render(&rest))
    }

    /// Sends raw bytes on a fresh connection, reads until the server closes
    /// (or `CLOSE_DEADLINE` passes) and records the reply and the ending.
    pub(crate) fn raw(&mut self, label: &str, bytes: &[u8]) -> Result<Reply> {
        let mut s = self.connect()?;
        probe::send(&mut s, bytes);
        let r = probe::read_to_close(&mut s, CLOSE_DEADLINE);
        let shown = self.show_masked(&r);
        self.note(label, shown);
        Ok(r)
    }

    /// `bytes | end`, with a leading port header (NAMES, DUMP) masked as
    /// `{port}` and, after it, DUMP's fds. No other reply starts `00 00`.
    pub(crate) fn show_masked(&self, r: &Reply) -> String {
        if r.bytes.get(..4) == Some(&u32::from(self.port()).to_be_bytes()[..]) {
            format!(
                "{} | {}",
                self.render_with_port_header(&r.bytes, true),
                r.end
            )
        } else {
            r.show()
        }
    }

    /// Like [`Ctx::raw`] with a framed body (command byte first).
    pub(crate) fn request(&mut self, label: &str, body: &[u8]) -> Result<Reply> {
        self.raw(label, &epmd_proto::frame::encode(body))
    }

    /// Sends NAMES and records the masked reply; returns the parsed entries.
    pub(crate) fn names(&mut self, label: &str) -> Result<Vec<(Vec<u8>, u16)>> {
        let r = self.names_quiet()?;
        let shown = format!(
            "{} | {}",
            self.render_with_port_header(&r.bytes, false),
            r.end
        );
        self.note(label, shown);
        Ok(parse_names_text(r.bytes.get(4..).unwrap_or_default()))
    }

    /// Sends NAMES without recording; checks the header is our port.
    pub(crate) fn names_quiet(&self) -> Result<Reply> {
        let mut s = self.connect()?;
        probe::send(&mut s, &[0, 1, 110]);
        let r = probe::read_to_close(&mut s, Duration::from_secs(20));
        anyhow::ensure!(
            r.bytes.get(..4) == Some(&u32::from(self.port()).to_be_bytes()[..]),
            "NAMES header is not the daemon's port {}: {}",
            self.port(),
            r.show()
        );
        anyhow::ensure!(r.end == End::Closed, "NAMES not closed: {}", r.show());
        Ok(r)
    }

    /// The registered names, newest first, without recording.
    pub(crate) fn name_list(&self) -> Result<Vec<Vec<u8>>> {
        let r = self.names_quiet()?;
        Ok(parse_names_text(&r.bytes[4..])
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Waits (condition wait) until `name` is or is not listed by NAMES.
    pub(crate) fn wait_listed(&self, name: &[u8], listed: bool) -> Result<()> {
        let mut last = Ok(Vec::new());
        let ok = test_support::wait_until(Duration::from_secs(10), || {
            last = self.name_list();
            matches!(&last, Ok(l) if l.iter().any(|n| n == name) == listed)
        });
        if !ok {
            bail!(
                "{} never became {} (last NAMES: {:?})",
                render(name),
                if listed { "listed" } else { "unlisted" },
                last.map(|l| l.iter().map(|n| render(n)).collect::<Vec<_>>())
            );
        }
        Ok(())
    }

    /// Sends DUMP and records the reply with the header and fds masked.
    pub(crate) fn dump(&mut self, label: &str) -> Result<Reply> {
        let mut s = self.connect()?;
        probe::send(&mut s, &[0, 1, 100]);
        let r = probe::read_to_close(&mut s, Duration::from_secs(20));
        let shown = format!(
            "{} | {}",
            self.render_with_port_header(&r.bytes, true),
            r.end
        );
        self.note(label, shown);
        Ok(r)
    }

    /// DUMP without recording: the bytes after the header.
    pub(crate) fn dump_quiet(&self) -> Result<Vec<u8>> {
        let mut s = self.connect()?;
        probe::send(&mut s, &[0, 1, 100]);
        let r = probe::read_to_close(&mut s, Duration::from_secs(20));
        anyhow::ensure!(
            r.end == End::Closed && r.bytes.len() >= 4,
            "DUMP: {}",
            r.show()
        );
        Ok(r.bytes[4..].to_vec())
    }

    /// Registers with ALIVE2, reads the reply (4 or 6 bytes), then watches
    /// the socket for `QUIET` and records the reply (creation masked) and
    /// whether the socket stayed open.
    pub(crate) fn alive(&mut self, label: &str, reg: &Reg) -> Result<Node> {
        let node = self.alive_quiet(reg, QUIET)?;
        let shown = self.show_alive(reg, &node);
        self.note(label, shown);
        Ok(node)
    }

    /// Registers without recording. `linger` is how long to watch for more
    /// bytes or a close after the reply (zero: do not watch).
    pub(crate) fn alive_quiet(&mut self, reg: &Reg, linger: Duration) -> Result<Node> {
        let t0 = unix_before();
        let mut stream = self.connect()?;
        probe::send(&mut stream, &reg.frame());
        let reply = probe::read_reply(&mut stream, reg.reply_len(), CLOSE_DEADLINE, linger);
        let t1 = unix_now();
        let node = Node { stream, reply };
        if let Some(resp) = node.resp().filter(|r| r.result() == 0) {
            let tag = self.creations.mask(&reg.name, resp, t0, t1);
            self.last_creation_tag = Some(tag);
        } else {
            self.last_creation_tag = None;
        }
        Ok(node)
    }

    fn show_alive(&self, _reg: &Reg, node: &Node) -> String {
        let b = &node.reply.bytes;
        let body = match (&self.last_creation_tag, node.resp()) {
            (Some(tag), Some(Alive2Resp::X { result, .. })) => {
                format!(
                    "v\\x{result:02x}{tag}{}",
                    render(b.get(6..).unwrap_or_default())
                )
            }
            (Some(tag), Some(Alive2Resp::Legacy { result, .. })) => {
                format!(
                    "y\\x{result:02x}{tag}{}",
                    render(b.get(4..).unwrap_or_default())
                )
            }
            _ => render(b),
        };
        format!(
            "{body} | {} | first read {} bytes",
            node.reply.end, node.reply.first_read
        )
    }

    /// Registers `reg` and fails unless it succeeded.
    pub(crate) fn alive_ok(&mut self, label: &str, reg: &Reg) -> Result<Node> {
        let n = self.alive(label, reg)?;
        anyhow::ensure!(
            n.ok() && n.reply.end == End::Open,
            "registration of {} failed: {}",
            render(&reg.name),
            n.reply.show()
        );
        Ok(n)
    }

    /// The last creation counter the daemon revealed for `name`.
    pub(crate) fn creation_of(&self, name: &[u8]) -> Option<u32> {
        self.creations.known.get(name).copied()
    }
}

/// Runs `case` against every selected subject, each with its own daemon
/// started with `args` (after `-port P`) and `env`, in parallel, then
/// compares the transcripts.
pub(crate) fn differential<F>(name: &str, args: &[&str], env: &[(&str, &str)], case: F)
where
    F: Fn(&mut Ctx) -> Result<()> + Sync,
{
    let results = run_subjects(|subject| {
        let daemon = Daemon::start_with_env(subject, args, env)
            .with_context(|| format!("starting {subject:?} {args:?}"))?;
        let mut ctx = Ctx {
            subject,
            daemon,
            t: Transcript::default(),
            creations: Creations::default(),
            last_creation_tag: None,
        };
        let r = case(&mut ctx);
        Ok((r, ctx.t))
    });
    finish(name, results);
}

/// Runs a case that manages its own processes (CLI, listen addresses).
pub(crate) fn differential_plain<F>(name: &str, case: F)
where
    F: Fn(Subject, &mut Transcript) -> Result<()> + Sync,
{
    let results = run_subjects(|subject| {
        let mut t = Transcript::default();
        let r = case(subject, &mut t);
        Ok((r, t))
    });
    finish(name, results);
}

type SubjectOutcome = Result<(Result<()>, Transcript)>;

fn run_subjects<F>(f: F) -> Vec<(Subject, SubjectOutcome)>
where
    F: Fn(Subject) -> SubjectOutcome + Sync,
{
    let subjects = Subject::selected();
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = subjects
            .iter()
            .map(|&subject| (subject, s.spawn(move || f(subject))))
            .collect();
        handles
            .into_iter()
            .map(|(subject, h)| {
                let r = h.join().unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    Err(anyhow::anyhow!("panicked: {msg}"))
                });
                (subject, r)
            })
            .collect()
    })
}

fn finish(name: &str, results: Vec<(Subject, SubjectOutcome)>) {
    let mut failures = String::new();
    let mut transcripts = Vec::new();
    for (subject, r) in &results {
        match r {
            Err(e) => {
                let _ = writeln!(failures, "[{name}] {subject:?}: setup failed: {e:#}");
            }
            Ok((Err(e), t)) => {
                let _ = writeln!(
                    failures,
                    "[{name}] {subject:?}: spec check failed: {e:#}\n  transcript so far:\n{t}"
                );
                transcripts.push((*subject, t.clone()));
            }
            Ok((Ok(()), t)) => transcripts.push((*subject, t.clone())),
        }
    }
    if let [(sa, ta), (sb, tb)] = transcripts.as_slice() {
        if ta != tb {
            let _ = writeln!(
                failures,
                "[{name}] transcripts differ:\n{}",
                diff(*sa, ta, *sb, tb)
            );
        }
    }
    if !failures.is_empty() {
        panic!("{failures}");
    }
    if std::env::var_os("CONFORMANCE_SHOW").is_some() {
        for (s, t) in &transcripts {
            eprintln!("[{name}] {s:?}:\n{t}");
        }
    }
}

fn diff(sa: Subject, a: &Transcript, sb: Subject, b: &Transcript) -> String {
    let mut out = String::new();
    let n = a.lines.len().max(b.lines.len());
    for i in 0..n {
        let la = a.lines.get(i).map_or("<missing>", String::as_str);
        let lb = b.lines.get(i).map_or("<missing>", String::as_str);
        if la == lb {
            let _ = writeln!(out, "    = {la}");
        } else {
            let _ = writeln!(out, "    - {sa:?}: {la}\n    + {sb:?}: {lb}");
        }
    }
    out
}
