//! External Term Format encoder.
//!
//! Emits the forms OTP 25 emits towards a peer with the mandatory flags, so
//! that for the terms OTP can produce the bytes equal
//! `term_to_binary(T, [{minor_version, 2}])`:
//!
//! - atoms as SMALL_ATOM_UTF8_EXT, or ATOM_UTF8_EXT above 255 bytes;
//! - integers as SMALL_INTEGER_EXT (0..=255), INTEGER_EXT (`i32`), else
//!   SMALL_BIG_EXT / LARGE_BIG_EXT;
//! - floats as NEW_FLOAT_EXT;
//! - a proper list of at most 65535 integers in 0..=255 as STRING_EXT, as
//!   OTP does, whichever variant holds it; longer ones as LIST_EXT;
//! - tuples as SMALL_TUPLE_EXT up to 255 elements, else LARGE_TUPLE_EXT;
//! - pids as NEW_PID_EXT, references as NEWER_REFERENCE_EXT, ports as
//!   NEW_PORT_EXT or, for ids over 28 bits, V4_PORT_EXT (OTP's
//!   `ERTS_MAX_V3_PORT_NUMBER` rule);
//! - `fun M:F/A` as EXPORT_EXT and closures as NEW_FUN_EXT;
//! - native records as RECORD_EXT, as OTP 29 sends them: field count, flags
//!   byte, module, name, the field names, then the values, fields in the
//!   record's order.
//!
//! The output simply grows as it is written: measured with callgrind, an
//! exact sizing pass first (OTP's `erts_encode_ext_size` approach) costs
//! about 40% more instructions than the few reallocations it saves, since
//! it walks the whole term twice. [`encoded_len`] gives the exact size when
//! a caller needs it up front.
//!
//! # Panics
//!
//! The format cannot express a binary, list, tuple, map or bignum of more
//! than `u32::MAX` elements or bytes, nor a reference of more than 65535
//! id words; encoding one panics.

use bytes::Bytes;

use crate::tag;
use crate::term::{last_byte_mask, Atom, Fun, Pid, Term};

/// OTP's `ERTS_MAX_V3_PORT_NUMBER`: port ids above it need V4_PORT_EXT.
const MAX_V3_PORT_NUMBER: u64 = (1 << 28) - 1;

/// Longest list OTP sends as STRING_EXT.
const MAX_STRING_EXT: usize = u16::MAX as usize;

/// Encodes a standalone term: `131` followed by the term.
///
/// ```
/// use erl_term::Term;
/// let t = Term::tuple([Term::atom("ok"), Term::Integer(1)]);
/// assert_eq!(erl_term::encode(&t), [131, 104, 2, 119, 2, 111, 107, 97, 1]);
/// ```
pub fn encode(term: &Term) -> Vec<u8> {
    // Enough for most control messages without a reallocation.
    let mut out = Vec::with_capacity(64);
    out.push(tag::VERSION);
    write(term, &mut Out::flat(&mut out));
    out
}

/// Appends `term` without a version byte (the form that follows a
/// distribution header).
pub fn encode_to(term: &Term, out: &mut Vec<u8>) {
    write(term, &mut Out::flat(out));
}

/// Appends `term` without a version byte to `out`, binaries of
/// [`CHUNK_MIN`] bytes or more as references to their buffers instead of
/// copies: what a node's writer hands to a vectored write.
///
/// ```
/// use erl_term::{encode_chunks_to, Chunks, Term};
/// let t = Term::tuple([Term::atom("ok"), Term::binary(vec![1u8; 100_000])]);
/// let mut c = Chunks::new();
/// encode_chunks_to(&t, &mut c);
/// assert_eq!(c.slices().count(), 2, "the header, then the binary itself");
/// let mut flat = Vec::new();
/// erl_term::encode_to(&t, &mut flat);
/// assert_eq!(c.to_vec(), flat);
/// ```
pub fn encode_chunks_to(term: &Term, out: &mut Chunks) {
    write(
        term,
        &mut Out {
            buf: &mut out.flat,
            shared: Some(&mut out.shared),
        },
    );
}

/// Binaries of at least this many bytes are not copied by
/// [`encode_chunks_to`]: below it, copying costs less than one more
/// segment in a vectored write.
pub const CHUNK_MIN: usize = 4096;

/// An encoding in pieces: bytes written by the encoder and, between them,
/// large binaries shared with the terms they came from ([`Bytes`]), in
/// order. Built by [`encode_chunks_to`] (or from a `Vec<u8>`, one piece);
/// read with [`slices`](Self::slices).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunks {
    flat: Vec<u8>,
    /// `(at, binary)`: the binary comes before `flat[at..]`.
    shared: Vec<(usize, Bytes)>,
}

impl Chunks {
    /// No bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// No bytes, with room for `n` copied ones.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            flat: Vec::with_capacity(n),
            shared: Vec::new(),
        }
    }

    /// The copied bytes, to append to (a header) or patch (a length
    /// prefix written before anything was shared: offsets below the first
    /// shared binary are those of the whole encoding).
    pub fn flat_mut(&mut self) -> &mut Vec<u8> {
        &mut self.flat
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.flat.len() + self.shared.iter().map(|(_, b)| b.len()).sum::<usize>()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the whole encoding is one copied buffer.
    pub fn is_flat(&self) -> bool {
        self.shared.is_empty()
    }

    /// The pieces in order (empty pieces left out).
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut from = 0;
        self.shared
            .iter()
            .flat_map(move |(at, b)| {
                let head = &self.flat[from..*at];
                from = *at;
                [head, &b[..]]
            })
            .chain(std::iter::once(()).map(move |()| {
                let last = self.shared.last().map_or(0, |(at, _)| *at);
                &self.flat[last..]
            }))
            .filter(|s| !s.is_empty())
    }

    /// All the bytes in one buffer (a copy, for tests and logs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.slices() {
            v.extend_from_slice(s);
        }
        v
    }
}

impl From<Vec<u8>> for Chunks {
    fn from(flat: Vec<u8>) -> Self {
        Self {
            flat,
            shared: Vec::new(),
        }
    }
}

/// Where the encoder writes: a byte vector, plus, for [`Chunks`], the list
/// large binaries are shared into.
struct Out<'a> {
    buf: &'a mut Vec<u8>,
    shared: Option<&'a mut Vec<(usize, Bytes)>>,
}

impl<'a> Out<'a> {
    fn flat(buf: &'a mut Vec<u8>) -> Self {
        Self { buf, shared: None }
    }
}

impl std::ops::Deref for Out<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        self.buf
    }
}

impl std::ops::DerefMut for Out<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        self.buf
    }
}

/// The number of bytes [`encode_to`] appends for `term`.
pub fn encoded_len(term: &Term) -> usize {
    match term {
        Term::Atom(a) => atom_len(a),
        Term::Integer(i) => int_len(*i),
        Term::BigInt(b) => match b.to_i64() {
            Some(i) => int_len(i),
            None => big_len(b.magnitude().len()),
        },
        Term::Float(_) => 9,
        Term::Binary(b) => 5 + b.len(),
        Term::BitBinary { bytes, bits } => {
            if is_partial(bytes, *bits) {
                6 + bytes.len()
            } else {
                5 + bytes.len()
            }
        }
        Term::Nil => 1,
        Term::String(s) => bytes_list_len(s.len()),
        Term::List(items) => {
            if items.is_empty() {
                1
            } else if is_byte_list(items) {
                3 + items.len()
            } else {
                // Header, elements, NIL tail.
                5 + items.iter().map(encoded_len).sum::<usize>() + 1
            }
        }
        Term::ImproperList(items, tail) => {
            if items.is_empty() {
                encoded_len(tail)
            } else {
                5 + items.iter().map(encoded_len).sum::<usize>() + encoded_len(tail)
            }
        }
        Term::Tuple(items) => {
            let header = if items.len() <= 255 { 2 } else { 5 };
            header + items.iter().map(encoded_len).sum::<usize>()
        }
        Term::Map(pairs) => {
            5 + pairs
                .iter()
                .map(|(k, v)| encoded_len(k) + encoded_len(v))
                .sum::<usize>()
        }
        Term::Pid(p) => pid_len(p),
        Term::Port(p) => {
            let id = if p.id > MAX_V3_PORT_NUMBER { 8 } else { 4 };
            1 + atom_len(&p.node) + id + 4
        }
        Term::Reference(r) => 1 + 2 + atom_len(&r.node) + 4 + 4 * r.ids.len(),
        Term::Export(e) => 1 + atom_len(&e.module) + atom_len(&e.function) + 2,
        Term::Fun(f) => 1 + fun_size(f),
        Term::Record(r) => {
            1 + 4
                + 1
                + atom_len(&r.module)
                + atom_len(&r.name)
                + r.fields
                    .iter()
                    .map(|(k, v)| atom_len(k) + encoded_len(v))
                    .sum::<usize>()
        }
    }
}

#[inline]
fn atom_len(a: &Atom) -> usize {
    let n = a.as_str().len();
    if n <= 255 {
        2 + n
    } else {
        3 + n
    }
}

#[inline]
fn int_len(i: i64) -> usize {
    if (0..=255).contains(&i) {
        2
    } else if i32::try_from(i).is_ok() {
        5
    } else {
        let m = i.unsigned_abs();
        3 + (8 - m.leading_zeros() as usize / 8)
    }
}

fn big_len(n: usize) -> usize {
    if n <= 255 {
        3 + n
    } else {
        6 + n
    }
}

/// Encoded size of a list of `n` bytes (STRING_EXT, or LIST_EXT of small
/// integers when too long, or NIL when empty).
fn bytes_list_len(n: usize) -> usize {
    if n == 0 {
        1
    } else if n <= MAX_STRING_EXT {
        3 + n
    } else {
        5 + 2 * n + 1
    }
}

fn pid_len(p: &Pid) -> usize {
    1 + atom_len(&p.node) + 12
}

/// NEW_FUN_EXT's Size field: everything after the tag.
fn fun_size(f: &Fun) -> usize {
    4 + 1
        + 16
        + 4
        + 4
        + atom_len(&f.module)
        + int_len(i64::from(f.old_index))
        + int_len(i64::from(f.old_uniq))
        + pid_len(&f.pid)
        + f.free_vars.iter().map(encoded_len).sum::<usize>()
}

fn is_partial(bytes: &[u8], bits: u8) -> bool {
    !bytes.is_empty() && bits != 0 && bits < 8
}

/// OTP sends a proper list of small non-negative integers as STRING_EXT.
fn is_byte_list(items: &[Term]) -> bool {
    items.len() <= MAX_STRING_EXT && items.iter().all(|t| matches!(t, Term::Integer(0..=255)))
}

fn len32(n: usize) -> [u8; 4] {
    match u32::try_from(n) {
        Ok(n) => n.to_be_bytes(),
        Err(_) => panic!("{n} elements or bytes do not fit the External Term Format"),
    }
}

fn write(term: &Term, out: &mut Out<'_>) {
    match term {
        Term::Atom(a) => write_atom(a, out),
        Term::Integer(i) => write_int(*i, out),
        Term::BigInt(b) => match b.to_i64() {
            Some(i) => write_int(i, out),
            None => write_big(b.is_negative(), b.magnitude(), out),
        },
        Term::Float(f) => {
            out.push(tag::NEW_FLOAT_EXT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::Binary(b) => write_binary(b, out),
        Term::BitBinary { bytes, bits } => {
            if is_partial(bytes, *bits) {
                out.push(tag::BIT_BINARY_EXT);
                out.extend_from_slice(&len32(bytes.len()));
                out.push(*bits);
                let (last, rest) = bytes.split_last().unwrap_or((&0, &[]));
                out.extend_from_slice(rest);
                out.push(last & last_byte_mask(*bits));
            } else {
                write_binary(bytes, out);
            }
        }
        Term::Nil => out.push(tag::NIL_EXT),
        Term::String(s) => write_bytes_list(s, out),
        Term::List(items) => {
            if items.is_empty() {
                out.push(tag::NIL_EXT);
            } else if is_byte_list(items) {
                out.push(tag::STRING_EXT);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                out.extend(items.iter().map(|t| match t {
                    Term::Integer(i) => *i as u8,
                    _ => 0,
                }));
            } else {
                out.push(tag::LIST_EXT);
                out.extend_from_slice(&len32(items.len()));
                for t in items {
                    write(t, out);
                }
                out.push(tag::NIL_EXT);
            }
        }
        Term::ImproperList(items, tail) => {
            if !items.is_empty() {
                out.push(tag::LIST_EXT);
                out.extend_from_slice(&len32(items.len()));
                for t in items {
                    write(t, out);
                }
            }
            write(tail, out);
        }
        Term::Tuple(items) => {
            if let Ok(n) = u8::try_from(items.len()) {
                out.push(tag::SMALL_TUPLE_EXT);
                out.push(n);
            } else {
                out.push(tag::LARGE_TUPLE_EXT);
                out.extend_from_slice(&len32(items.len()));
            }
            for t in items {
                write(t, out);
            }
        }
        Term::Map(pairs) => {
            out.push(tag::MAP_EXT);
            out.extend_from_slice(&len32(pairs.len()));
            for (k, v) in pairs {
                write(k, out);
                write(v, out);
            }
        }
        Term::Pid(p) => write_pid(p, out),
        Term::Port(p) => {
            if p.id > MAX_V3_PORT_NUMBER {
                out.push(tag::V4_PORT_EXT);
                write_atom(&p.node, out);
                out.extend_from_slice(&p.id.to_be_bytes());
            } else {
                out.push(tag::NEW_PORT_EXT);
                write_atom(&p.node, out);
                out.extend_from_slice(&(p.id as u32).to_be_bytes());
            }
            out.extend_from_slice(&p.creation.to_be_bytes());
        }
        Term::Reference(r) => {
            let n = match u16::try_from(r.ids.len()) {
                Ok(n) => n,
                Err(_) => panic!(
                    "a reference of {} words does not fit the format",
                    r.ids.len()
                ),
            };
            out.push(tag::NEWER_REFERENCE_EXT);
            out.extend_from_slice(&n.to_be_bytes());
            write_atom(&r.node, out);
            out.extend_from_slice(&r.creation.to_be_bytes());
            for id in &r.ids {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        Term::Export(e) => {
            out.push(tag::EXPORT_EXT);
            write_atom(&e.module, out);
            write_atom(&e.function, out);
            out.push(tag::SMALL_INTEGER_EXT);
            out.push(e.arity);
        }
        Term::Fun(f) => write_fun(f, out),
        Term::Record(r) => {
            out.push(tag::RECORD_EXT);
            out.extend_from_slice(&len32(r.fields.len()));
            out.push(u8::from(r.exported));
            write_atom(&r.module, out);
            write_atom(&r.name, out);
            for (k, _) in &r.fields {
                write_atom(k, out);
            }
            for (_, v) in &r.fields {
                write(v, out);
            }
        }
    }
}

fn write_atom(a: &Atom, out: &mut Out<'_>) {
    let name = a.as_str().as_bytes();
    if let Ok(n) = u8::try_from(name.len()) {
        out.push(tag::SMALL_ATOM_UTF8_EXT);
        out.push(n);
    } else {
        // An Atom holds at most 255 characters, so at most 1020 bytes.
        out.push(tag::ATOM_UTF8_EXT);
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(name);
}

#[inline]
fn write_int(i: i64, out: &mut Out<'_>) {
    // One bounds check per integer: each form is built whole, then copied.
    if let Ok(b) = u8::try_from(i) {
        out.extend_from_slice(&[tag::SMALL_INTEGER_EXT, b]);
    } else if let Ok(v) = i32::try_from(i) {
        let [a, b, c, d] = v.to_be_bytes();
        out.extend_from_slice(&[tag::INTEGER_EXT, a, b, c, d]);
    } else {
        let m = i.unsigned_abs();
        let n = 8 - m.leading_zeros() as usize / 8;
        out.push(tag::SMALL_BIG_EXT);
        out.push(n as u8);
        out.push(u8::from(i < 0));
        out.extend_from_slice(&m.to_le_bytes()[..n]);
    }
}

fn write_big(negative: bool, magnitude: &[u8], out: &mut Out<'_>) {
    if let Ok(n) = u8::try_from(magnitude.len()) {
        out.push(tag::SMALL_BIG_EXT);
        out.push(n);
    } else {
        out.push(tag::LARGE_BIG_EXT);
        out.extend_from_slice(&len32(magnitude.len()));
    }
    out.push(u8::from(negative));
    out.extend_from_slice(magnitude);
}

fn write_binary(b: &Bytes, out: &mut Out<'_>) {
    out.push(tag::BINARY_EXT);
    out.extend_from_slice(&len32(b.len()));
    match &mut out.shared {
        Some(shared) if b.len() >= CHUNK_MIN => shared.push((out.buf.len(), b.clone())),
        _ => out.buf.extend_from_slice(b),
    }
}

fn write_bytes_list(s: &[u8], out: &mut Out<'_>) {
    if s.is_empty() {
        out.push(tag::NIL_EXT);
    } else if s.len() <= MAX_STRING_EXT {
        out.push(tag::STRING_EXT);
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    } else {
        out.push(tag::LIST_EXT);
        out.extend_from_slice(&len32(s.len()));
        for &b in s {
            out.extend_from_slice(&[tag::SMALL_INTEGER_EXT, b]);
        }
        out.push(tag::NIL_EXT);
    }
}

fn write_pid(p: &Pid, out: &mut Out<'_>) {
    out.push(tag::NEW_PID_EXT);
    write_atom(&p.node, out);
    out.extend_from_slice(&p.id.to_be_bytes());
    out.extend_from_slice(&p.serial.to_be_bytes());
    out.extend_from_slice(&p.creation.to_be_bytes());
}

fn write_fun(f: &Fun, out: &mut Out<'_>) {
    out.push(tag::NEW_FUN_EXT);
    out.extend_from_slice(&len32(fun_size(f)));
    out.push(f.arity);
    out.extend_from_slice(&f.uniq);
    out.extend_from_slice(&f.index.to_be_bytes());
    out.extend_from_slice(&len32(f.free_vars.len()));
    write_atom(&f.module, out);
    write_int(i64::from(f.old_index), out);
    write_int(i64::from(f.old_uniq), out);
    write_pid(&f.pid, out);
    for t in &f.free_vars {
        write(t, out);
    }
}

/// Encodes a standalone term compressed with zlib at `level` (0..=9), as
/// `term_to_binary(T, [{compressed, Level}])` does: `131, 80`, the
/// uncompressed size, the zlib stream. Like OTP, returns the plain encoding
/// when compression would not make it smaller.
pub fn encode_compressed(term: &Term, level: u32) -> Vec<u8> {
    let plain = encode(term);
    let body = &plain[1..];
    let mut z = flate2::Compress::new(flate2::Compression::new(level.min(9)), true);
    // Anything not shorter than the plain form is useless, so the output
    // buffer is capped there and an overflow means "keep the plain form".
    let mut packed = Vec::with_capacity(plain.len());
    match z.compress_vec(body, &mut packed, flate2::FlushCompress::Finish) {
        Ok(flate2::Status::StreamEnd) if 6 + packed.len() < plain.len() => {}
        _ => return plain,
    }
    let mut out = Vec::with_capacity(6 + packed.len());
    out.push(tag::VERSION);
    out.push(tag::COMPRESSED);
    out.extend_from_slice(&len32(body.len()));
    out.extend_from_slice(&packed);
    out
}
