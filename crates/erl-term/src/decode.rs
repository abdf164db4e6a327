//! External Term Format decoder.
//!
//! Check-then-parse: every length read from the input is compared with the
//! bytes that remain *before* anything is allocated for it, so a header that
//! claims four billion elements costs nothing.
//!
//! Element vectors are preallocated at their exact size, out of a budget of
//! one slot per input byte for the whole decode. Every element takes at
//! least one byte and elements of different containers take different
//! bytes, so valid input never exhausts the budget and never reallocates;
//! hostile input (nested containers that each claim the rest of the input)
//! cannot make the decoder reserve more than one slot per input byte in
//! total before it fails. Nesting deeper than [`DecodeOptions::max_depth`]
//! fails with [`DecodeError::TooDeep`] instead of exhausting the stack. No
//! input makes the decoder panic.

use std::fmt;

use bytes::Bytes;

use crate::tag;
use crate::term::{
    last_byte_mask, Atom, BigInt, Export, Fun, Pid, Port, Record, Reference, Term, MAX_ATOM_CHARS,
};

/// Default nesting limit: containers (tuples, lists, maps, fun
/// environments) nested more than this many levels deep are refused.
///
/// The decoder recurses once per level, using about 220 bytes of stack per
/// level in release builds (a few KiB in debug builds), so the default needs
/// roughly 256 KiB of stack; comparing, cloning or printing such a term
/// needs about as much again. Tokio's 2 MiB worker stacks have room.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// Default cap on the uncompressed size of a compressed (tag 80) term.
/// OTP never compresses distribution traffic, so this only matters for
/// terms that come from files or `term_to_binary(T, [compressed])`.
pub const DEFAULT_MAX_INFLATED: usize = 256 << 20;

/// zlib cannot expand data by more than about 1032:1, so a compressed term
/// claiming more than this ratio is refused before its buffer is allocated.
const MAX_ZLIB_RATIO: usize = 1032;

/// Default cap on a big integer's magnitude: 4 MiB of digits (2^25 bits),
/// the same bound erts enforces (`1 bsl 33554431` is already a
/// `system_limit` on OTP 25), so every bignum an OTP node can send is
/// accepted and nothing larger. Larger ones are refused with
/// [`DecodeError::BigTooLarge`]. Printing is bounded separately: callers
/// must not format big integers in decimal without a limit.
pub const DEFAULT_MAX_BIG_BYTES: usize = 4 << 20;

/// What one decoded term is charged against [`DecodeOptions::max_memory`]:
/// the size of a [`Term`] slot, plus the heap bytes it owns.
pub const TERM_COST: usize = size_of::<Term>();

/// Binaries of at least this many bytes, decoded from a [`Bytes`] input
/// (the `*_bytes` entry points), are slices of that input, not copies.
/// Shorter ones are copied, as the BEAM copies binaries up to 64 bytes
/// onto the process heap: a slice costs an atomic reference count and
/// keeps the whole input alive, which is not worth it for a few bytes.
pub const SHARE_MIN: usize = 64;

/// Why bytes could not be decoded as a term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends inside a term, or a length runs past its end.
    #[error("input ends inside a term")]
    Truncated,
    /// A standalone term did not start with the version byte 131.
    #[error("expected version byte 131, found {0}")]
    BadVersion(u8),
    /// A tag this codec does not know (or does not support: FUN_EXT,
    /// LOCAL_EXT, or a compressed term where none may appear).
    #[error("unknown or unsupported tag {0}")]
    UnknownTag(u8),
    /// A tag of the wrong kind in a typed position, such as a non-atom
    /// where a pid's node name belongs.
    #[error("expected {expected}, found tag {found}")]
    UnexpectedTag {
        /// What the position requires.
        expected: &'static str,
        /// The tag found there.
        found: u8,
    },
    /// Containers nested deeper than the configured limit.
    #[error("terms nested deeper than {0} levels")]
    TooDeep(usize),
    /// Bytes left after a term that should end the input.
    #[error("{0} bytes after the term")]
    TrailingBytes(usize),
    /// A UTF-8 atom that is not valid UTF-8.
    #[error("atom is not valid UTF-8")]
    InvalidUtf8,
    /// An atom of more than 255 characters, which OTP refuses too.
    #[error("atom has {0} characters, more than 255")]
    AtomTooLong(usize),
    /// ATOM_CACHE_REF with no cache, or an index the cache does not hold.
    #[error("atom cache index {0} is not in the cache")]
    AtomCacheMiss(u8),
    /// A NaN or infinite float (OTP has neither), or unreadable FLOAT_EXT text.
    #[error("invalid float")]
    BadFloat,
    /// BIT_BINARY_EXT with no bytes, or 0 or more than 8 bits in the last.
    #[error("invalid bit binary ({len} bytes, {bits} bits in the last)")]
    BadBitBinary {
        /// Declared byte length.
        len: usize,
        /// Declared bits in the last byte.
        bits: u8,
    },
    /// An integer field (export arity, fun index) outside its range.
    #[error("integer out of range for {0}")]
    IntegerOutOfRange(&'static str),
    /// NEW_FUN_EXT whose Size field disagrees with its content.
    #[error("fun size field says {declared} bytes, content has {actual}")]
    BadFunSize {
        /// The Size field.
        declared: usize,
        /// The bytes actually used.
        actual: usize,
    },
    /// A compressed term that does not inflate to its declared size, is not
    /// valid zlib, or exceeds [`DecodeOptions::max_inflated`].
    #[error("bad compressed term: {0}")]
    Compressed(&'static str),
    /// The decoded term (inflated bytes, term slots, binaries, digits)
    /// would take more memory than [`DecodeOptions::max_memory`] allows.
    #[error("decoded term exceeds the memory budget of {0} bytes")]
    OverBudget(usize),
    /// A big integer with more digit bytes than
    /// [`DecodeOptions::max_big_bytes`] allows.
    #[error("big integer of {0} bytes exceeds the limit")]
    BigTooLarge(usize),
    /// A RECORD_EXT with reserved flag bits set or a field name twice,
    /// both of which erts refuses.
    #[error("bad native record: {0}")]
    BadRecord(&'static str),
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Decoding limits and the atom cache, for the `*_with` entry points.
///
/// ```
/// use erl_term::{Atom, DecodeOptions};
/// let cache = |i: u8| (i == 0).then(|| Atom::new("ok").unwrap());
/// let opts = DecodeOptions::new().max_depth(64).atom_cache(&cache);
/// let (t, used) = opts.decode_term(&[82, 0]).unwrap();
/// assert_eq!((t.as_atom(), used), (Some("ok"), 2));
/// ```
#[derive(Clone, Copy)]
pub struct DecodeOptions<'c> {
    max_depth: usize,
    max_inflated: usize,
    max_memory: usize,
    max_big_bytes: usize,
    atom_cache: Option<&'c dyn Fn(u8) -> Option<Atom>>,
}

impl fmt::Debug for DecodeOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeOptions")
            .field("max_depth", &self.max_depth)
            .field("max_inflated", &self.max_inflated)
            .field("atom_cache", &self.atom_cache.is_some())
            .finish()
    }
}

impl Default for DecodeOptions<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'c> DecodeOptions<'c> {
    /// The defaults: [`DEFAULT_MAX_DEPTH`], [`DEFAULT_MAX_INFLATED`], no
    /// atom cache.
    pub fn new() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_inflated: DEFAULT_MAX_INFLATED,
            max_memory: usize::MAX,
            max_big_bytes: DEFAULT_MAX_BIG_BYTES,
            atom_cache: None,
        }
    }

    /// Sets how many container levels may nest.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets the largest uncompressed size accepted for a compressed term.
    pub fn max_inflated(mut self, bytes: usize) -> Self {
        self.max_inflated = bytes;
        self
    }

    /// Sets the memory budget of one decode, in bytes: every term costs
    /// [`TERM_COST`] plus the bytes of its binary, string, atom or digits,
    /// and a compressed term's inflated buffer counts too. Over it the
    /// decode fails with [`DecodeError::OverBudget`] before allocating more.
    /// Unlimited by default.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Sets the largest big-integer magnitude accepted, in bytes.
    pub fn max_big_bytes(mut self, bytes: usize) -> Self {
        self.max_big_bytes = bytes;
        self
    }

    /// Resolves ATOM_CACHE_REF indexes. The cache belongs to the
    /// distribution connection (its header maps the one-byte indexes used
    /// in the message to atoms), so the caller supplies the lookup.
    pub fn atom_cache(mut self, lookup: &'c dyn Fn(u8) -> Option<Atom>) -> Self {
        self.atom_cache = Some(lookup);
        self
    }

    /// Decodes a standalone term (`131`, then the term or a compressed
    /// term) that must fill `buf` exactly.
    pub fn decode(&self, buf: &[u8]) -> Result<Term> {
        let (term, used) = self.decode_used(buf)?;
        if used != buf.len() {
            return Err(DecodeError::TrailingBytes(buf.len() - used));
        }
        Ok(term)
    }

    /// Like [`decode`](Self::decode), but binaries of [`SHARE_MIN`] bytes
    /// or more are slices of `buf` (no copy): the form a node's reader
    /// uses on the frames it receives.
    pub fn decode_bytes(&self, buf: &Bytes) -> Result<Term> {
        let (term, used) = self.standalone(buf, Some(buf))?;
        if used != buf.len() {
            return Err(DecodeError::TrailingBytes(buf.len() - used));
        }
        Ok(term)
    }

    /// Like [`decode_used`](Self::decode_used), with binaries sliced from
    /// `buf` as [`decode_bytes`](Self::decode_bytes) does.
    pub fn decode_used_bytes(&self, buf: &Bytes) -> Result<(Term, usize)> {
        self.standalone(buf, Some(buf))
    }

    /// Decodes a standalone term at the start of `buf` and returns it with
    /// the number of bytes it used, for inputs that hold several
    /// (a pass-through distribution message is `112`, then the control
    /// message, then the payload, each with its own `131`).
    pub fn decode_used(&self, buf: &[u8]) -> Result<(Term, usize)> {
        self.standalone(buf, None)
    }

    /// `buf` is `owner`'s contents when there is an owner.
    fn standalone(&self, buf: &[u8], owner: Option<&Bytes>) -> Result<(Term, usize)> {
        let first = *buf.first().ok_or(DecodeError::Truncated)?;
        if first != tag::VERSION {
            return Err(DecodeError::BadVersion(first));
        }
        if buf.get(1) == Some(&tag::COMPRESSED) {
            return self.decode_compressed(buf);
        }
        let mut d = Decoder::new(buf, 1, self, owner);
        let term = d.term(0)?;
        Ok((term, d.pos))
    }

    /// Decodes one term with no version byte (the form terms take after a
    /// distribution header) and returns it with the bytes it used.
    pub fn decode_term(&self, buf: &[u8]) -> Result<(Term, usize)> {
        let mut d = Decoder::new(buf, 0, self, None);
        let term = d.term(0)?;
        Ok((term, d.pos))
    }

    /// `buf` starts `131, 80`.
    fn decode_compressed(&self, buf: &[u8]) -> Result<(Term, usize)> {
        let size_bytes: [u8; 4] = buf
            .get(2..6)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::Truncated)?;
        let size = u32::from_be_bytes(size_bytes) as usize;
        let stream = &buf[6..];
        if size > self.max_inflated {
            return Err(DecodeError::Compressed("uncompressed size over the limit"));
        }
        if size > self.max_memory {
            return Err(DecodeError::OverBudget(self.max_memory));
        }
        if size
            > stream
                .len()
                .saturating_mul(MAX_ZLIB_RATIO)
                .saturating_add(64)
        {
            return Err(DecodeError::Compressed(
                "uncompressed size impossible for its input",
            ));
        }
        let mut inflated = Vec::with_capacity(size);
        let mut z = flate2::Decompress::new(true);
        // decompress_vec never grows the vector, so output is capped at
        // `size` whatever the stream says.
        let status = z
            .decompress_vec(stream, &mut inflated, flate2::FlushDecompress::Finish)
            .map_err(|_| DecodeError::Compressed("invalid zlib stream"))?;
        if status != flate2::Status::StreamEnd || inflated.len() != size {
            return Err(DecodeError::Compressed(
                "stream does not inflate to the declared size",
            ));
        }
        let used = 6 + usize::try_from(z.total_in()).map_err(|_| DecodeError::Truncated)?;
        // Binaries inside are slices of the inflated buffer: it is already
        // charged in full, so copying them out would only double the cost.
        let inflated = Bytes::from(inflated);
        let mut d = Decoder::new(&inflated, 0, self, Some(&inflated));
        // The inflated buffer lives as long as the decode: charge it.
        d.mem = self.max_memory - size;
        let term = d.term(0)?;
        if d.pos != inflated.len() {
            return Err(DecodeError::Compressed(
                "bytes left after the inflated term",
            ));
        }
        Ok((term, used))
    }
}

/// Decodes a standalone term (`131` first) that fills `buf` exactly.
///
/// ```
/// let t = erl_term::decode(&[131, 104, 2, 119, 2, 111, 107, 97, 1]).unwrap();
/// assert_eq!(t.to_string(), "{ok,1}");
/// ```
pub fn decode(buf: &[u8]) -> Result<Term> {
    DecodeOptions::new().decode(buf)
}

/// Decodes a standalone term (`131` first) that fills `buf` exactly, with
/// binaries of [`SHARE_MIN`] bytes or more sliced from `buf` (no copy).
///
/// ```
/// use erl_term::{Bytes, Term};
/// let big = Term::binary(vec![7u8; 1000]);
/// let wire = Bytes::from(erl_term::encode(&big));
/// let Term::Binary(b) = erl_term::decode_bytes(&wire).unwrap() else { panic!() };
/// assert_eq!(b.as_ptr(), wire[6..].as_ptr(), "a slice of the input");
/// ```
pub fn decode_bytes(buf: &Bytes) -> Result<Term> {
    DecodeOptions::new().decode_bytes(buf)
}

/// Decodes a standalone term at the start of `buf`; returns the bytes used.
pub fn decode_used(buf: &[u8]) -> Result<(Term, usize)> {
    DecodeOptions::new().decode_used(buf)
}

/// Decodes one term without a version byte; returns the bytes used.
pub fn decode_term(buf: &[u8]) -> Result<(Term, usize)> {
    DecodeOptions::new().decode_term(buf)
}

/// Like [`decode_term`] (no version byte, as after a distribution header),
/// resolving ATOM_CACHE_REF through `cache`.
pub fn decode_with_cache(buf: &[u8], cache: &dyn Fn(u8) -> Option<Atom>) -> Result<(Term, usize)> {
    DecodeOptions::new().atom_cache(cache).decode_term(buf)
}

struct Decoder<'a, 'c> {
    buf: &'a [u8],
    /// The shared buffer `buf` is the contents of, if the caller has one:
    /// large binaries are sliced from it.
    owner: Option<&'a Bytes>,
    pos: usize,
    /// Element slots that may still be reserved ahead of decoding them.
    budget: usize,
    /// Atoms seen earlier in this decode. Messages repeat atoms (record
    /// tags, `ok`, the node name in every pid), and a hit costs a reference
    /// count instead of an allocation. Direct-mapped and dropped with the
    /// decoder, so it holds nothing across messages.
    memo: [Option<Atom>; MEMO_SLOTS],
    max_depth: usize,
    /// Bytes of decoded-term memory left in this decode's budget.
    mem: usize,
    max_memory: usize,
    max_big_bytes: usize,
    atom_cache: Option<&'c dyn Fn(u8) -> Option<Atom>>,
}

impl<'a, 'c> Decoder<'a, 'c> {
    fn new(buf: &'a [u8], pos: usize, opts: &DecodeOptions<'c>, owner: Option<&'a Bytes>) -> Self {
        debug_assert!(owner.is_none_or(|o| o.len() == buf.len()));
        Self {
            buf,
            owner,
            pos,
            budget: buf.len().saturating_sub(pos),
            memo: Default::default(),
            max_depth: opts.max_depth,
            mem: opts.max_memory,
            max_memory: opts.max_memory,
            max_big_bytes: opts.max_big_bytes,
            atom_cache: opts.atom_cache,
        }
    }

    /// Takes `bytes` from the memory budget, or fails before they are
    /// allocated.
    #[inline(always)]
    fn charge(&mut self, bytes: usize) -> Result<()> {
        match self.mem.checked_sub(bytes) {
            Some(left) => {
                self.mem = left;
                Ok(())
            }
            None => Err(DecodeError::OverBudget(self.max_memory)),
        }
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `n` bytes as a binary: a slice of the owner when there is one and
    /// the binary is not tiny, else a copy.
    #[inline]
    fn binary(&mut self, n: usize) -> Result<Bytes> {
        let start = self.pos;
        let s = self.take(n)?;
        Ok(match self.owner {
            Some(o) if n >= SHARE_MIN => o.slice(start..start + n),
            _ => Bytes::copy_from_slice(s),
        })
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// A count of items of at least `min_bytes` each, refused if they
    /// cannot fit in what remains.
    #[inline]
    fn count(&mut self, n: usize, min_bytes: usize) -> Result<usize> {
        if n > self.remaining() / min_bytes {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    /// Capacity to reserve for `n` elements, taken from the budget.
    #[inline]
    fn reserve(&mut self, n: usize) -> usize {
        let r = n.min(self.budget);
        self.budget -= r;
        r
    }

    #[inline]
    fn enter(&self, depth: usize) -> Result<usize> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep(self.max_depth));
        }
        Ok(depth + 1)
    }

    /// Decodes one term; `depth` is the number of containers around it.
    fn term(&mut self, depth: usize) -> Result<Term> {
        self.charge(TERM_COST)?;
        let t = self.u8()?;
        match t {
            tag::SMALL_INTEGER_EXT => Ok(Term::Integer(i64::from(self.u8()?))),
            tag::INTEGER_EXT => Ok(Term::Integer(i64::from(i32::from_be_bytes(self.array()?)))),
            tag::SMALL_ATOM_UTF8_EXT
            | tag::ATOM_UTF8_EXT
            | tag::ATOM_EXT
            | tag::SMALL_ATOM_EXT
            | tag::ATOM_CACHE_REF => self.atom_body(t).map(Term::Atom),
            tag::SMALL_TUPLE_EXT => {
                let n = usize::from(self.u8()?);
                self.tuple(n, depth)
            }
            tag::LARGE_TUPLE_EXT => {
                let n = self.u32()? as usize;
                self.tuple(n, depth)
            }
            tag::NIL_EXT => Ok(Term::Nil),
            tag::STRING_EXT => {
                let n = usize::from(self.u16()?);
                self.charge(n)?;
                Ok(Term::String(self.take(n)?.to_vec()))
            }
            tag::LIST_EXT => self.list(depth),
            tag::BINARY_EXT => {
                let n = self.u32()? as usize;
                self.charge(n)?;
                Ok(Term::Binary(self.binary(n)?))
            }
            tag::MAP_EXT => self.map(depth),
            tag::NEW_FLOAT_EXT => {
                let f = f64::from_bits(u64::from_be_bytes(self.array()?));
                if f.is_finite() {
                    Ok(Term::Float(f))
                } else {
                    Err(DecodeError::BadFloat)
                }
            }
            tag::SMALL_BIG_EXT => {
                let n = usize::from(self.u8()?);
                self.big(n)
            }
            tag::LARGE_BIG_EXT => {
                let n = self.u32()? as usize;
                self.big(n)
            }
            tag::NEW_PID_EXT | tag::PID_EXT => self.pid_body(t).map(Term::Pid),
            tag::NEW_PORT_EXT | tag::V4_PORT_EXT | tag::PORT_EXT => self.port_body(t),
            tag::NEWER_REFERENCE_EXT | tag::NEW_REFERENCE_EXT | tag::REFERENCE_EXT => {
                self.reference_body(t)
            }
            tag::BIT_BINARY_EXT => self.bit_binary(),
            tag::EXPORT_EXT => self.export(),
            tag::NEW_FUN_EXT => self.fun(depth),
            tag::FLOAT_EXT => self.old_float(),
            tag::RECORD_EXT => self.record(depth),
            _ => Err(DecodeError::UnknownTag(t)),
        }
    }

    fn tuple(&mut self, n: usize, depth: usize) -> Result<Term> {
        let depth = self.enter(depth)?;
        let n = self.count(n, 1)?;
        let mut items = Vec::with_capacity(self.reserve(n));
        for _ in 0..n {
            items.push(self.term(depth)?);
        }
        Ok(Term::Tuple(items))
    }

    fn list(&mut self, depth: usize) -> Result<Term> {
        let depth = self.enter(depth)?;
        let n = self.u32()? as usize;
        // n elements and a tail, one byte each at least.
        let n = self.count(n.saturating_add(1), 1)? - 1;
        let mut items = Vec::with_capacity(self.reserve(n));
        for _ in 0..n {
            items.push(self.term(depth)?);
        }
        let tail = self.term(depth)?;
        // Normalise so that an improper list's tail is never itself a list;
        // OTP never sends such chains, but a hand-built one is valid.
        Ok(match tail {
            Term::Nil if items.is_empty() => Term::Nil,
            Term::Nil => Term::List(items),
            tail if items.is_empty() => tail,
            Term::List(more) => {
                items.extend(more);
                Term::List(items)
            }
            Term::String(s) => {
                items.extend(s.iter().map(|&b| Term::Integer(i64::from(b))));
                Term::List(items)
            }
            Term::ImproperList(more, tail) => {
                items.extend(more);
                Term::ImproperList(items, tail)
            }
            tail => Term::ImproperList(items, Box::new(tail)),
        })
    }

    fn map(&mut self, depth: usize) -> Result<Term> {
        let depth = self.enter(depth)?;
        let n = self.u32()? as usize;
        let n = self.count(n, 2)?;
        let mut pairs = Vec::with_capacity(self.reserve(n));
        for _ in 0..n {
            let k = self.term(depth)?;
            let v = self.term(depth)?;
            pairs.push((k, v));
        }
        Ok(Term::Map(pairs))
    }

    fn big(&mut self, n: usize) -> Result<Term> {
        // Any non-zero sign byte means negative, as in OTP.
        let negative = self.u8()? != 0;
        // A slice of the input: nothing is allocated before the checks.
        let digits = self.take(n)?;
        if n > self.max_big_bytes {
            return Err(DecodeError::BigTooLarge(n));
        }
        self.charge(n)?;
        if n <= 8 {
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(digits);
            let m = u64::from_le_bytes(le);
            if !negative {
                if let Ok(i) = i64::try_from(m) {
                    return Ok(Term::Integer(i));
                }
            } else if m <= 1u64 << 63 {
                return Ok(Term::Integer((m as i64).wrapping_neg()));
            }
        }
        Ok(Term::from(BigInt::from_sign_magnitude(
            negative,
            digits.to_vec(),
        )))
    }

    fn atom(&mut self) -> Result<Atom> {
        let t = self.u8()?;
        self.atom_body(t)
    }

    fn atom_body(&mut self, t: u8) -> Result<Atom> {
        match t {
            tag::SMALL_ATOM_UTF8_EXT => {
                let n = usize::from(self.u8()?);
                let bytes = self.take(n)?;
                self.memo_atom(bytes, utf8_atom)
            }
            tag::ATOM_UTF8_EXT => {
                let n = usize::from(self.u16()?);
                let bytes = self.take(n)?;
                self.memo_atom(bytes, utf8_atom)
            }
            tag::SMALL_ATOM_EXT => {
                let n = usize::from(self.u8()?);
                Ok(latin1_atom(self.take(n)?))
            }
            tag::ATOM_EXT => {
                let n = usize::from(self.u16()?);
                if n > MAX_ATOM_CHARS {
                    return Err(DecodeError::AtomTooLong(n));
                }
                Ok(latin1_atom(self.take(n)?))
            }
            tag::ATOM_CACHE_REF => {
                let i = self.u8()?;
                self.atom_cache
                    .and_then(|lookup| lookup(i))
                    .ok_or(DecodeError::AtomCacheMiss(i))
            }
            found => Err(DecodeError::UnexpectedTag {
                expected: "atom",
                found,
            }),
        }
    }

    /// Returns the memoised atom spelled `bytes` (UTF-8), or makes one.
    #[inline]
    fn memo_atom(&mut self, bytes: &[u8], make: fn(&[u8]) -> Result<Atom>) -> Result<Atom> {
        let slot = memo_slot(bytes);
        if let Some(a) = &self.memo[slot] {
            if a.as_str().as_bytes() == bytes {
                return Ok(a.clone());
            }
        }
        let a = make(bytes)?;
        self.memo[slot] = Some(a.clone());
        Ok(a)
    }

    fn pid_body(&mut self, t: u8) -> Result<Pid> {
        let node = self.atom()?;
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = if t == tag::NEW_PID_EXT {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        Ok(Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    fn port_body(&mut self, t: u8) -> Result<Term> {
        let node = self.atom()?;
        let (id, creation) = match t {
            tag::V4_PORT_EXT => (u64::from_be_bytes(self.array()?), self.u32()?),
            tag::NEW_PORT_EXT => (u64::from(self.u32()?), self.u32()?),
            _ => (u64::from(self.u32()?), u32::from(self.u8()?)),
        };
        Ok(Term::Port(Port { node, id, creation }))
    }

    fn reference_body(&mut self, t: u8) -> Result<Term> {
        if t == tag::REFERENCE_EXT {
            let node = self.atom()?;
            let id = self.u32()?;
            let creation = u32::from(self.u8()?);
            return Ok(Term::Reference(Reference {
                node,
                creation,
                ids: vec![id],
            }));
        }
        let n = usize::from(self.u16()?);
        let node = self.atom()?;
        let creation = if t == tag::NEWER_REFERENCE_EXT {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        let words = self.take(n.checked_mul(4).ok_or(DecodeError::Truncated)?)?;
        let ids = words
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        Ok(Term::Reference(Reference {
            node,
            creation,
            ids,
        }))
    }

    fn bit_binary(&mut self) -> Result<Term> {
        let len = self.u32()? as usize;
        let bits = self.u8()?;
        if len == 0 || bits == 0 || bits > 8 {
            return Err(DecodeError::BadBitBinary { len, bits });
        }
        self.charge(len)?;
        let bytes = self.binary(len)?;
        if bits == 8 {
            return Ok(Term::Binary(bytes));
        }
        // Clear the unused low bits so equal bitstrings have equal bytes;
        // only then is a copy needed (OTP sends them cleared).
        let mask = last_byte_mask(bits);
        let bytes = match bytes.last() {
            Some(&last) if last & mask != last => {
                let mut v = bytes.to_vec();
                if let Some(l) = v.last_mut() {
                    *l &= mask;
                }
                Bytes::from(v)
            }
            _ => bytes,
        };
        Ok(Term::BitBinary { bytes, bits })
    }

    fn export(&mut self) -> Result<Term> {
        let module = self.atom()?;
        let function = self.atom()?;
        // OTP writes SMALL_INTEGER_EXT and accepts INTEGER_EXT too.
        let arity = match self.u8()? {
            tag::SMALL_INTEGER_EXT => self.u8()?,
            tag::INTEGER_EXT => u8::try_from(i32::from_be_bytes(self.array()?))
                .map_err(|_| DecodeError::IntegerOutOfRange("export arity"))?,
            found => {
                return Err(DecodeError::UnexpectedTag {
                    expected: "integer arity",
                    found,
                })
            }
        };
        Ok(Term::Export(Box::new(Export {
            module,
            function,
            arity,
        })))
    }

    /// An integer term that must fit in 32 bits. Negative `i32` values are
    /// kept as their two's-complement bits.
    fn u32_term(&mut self, depth: usize, what: &'static str) -> Result<u32> {
        let found = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        match self.term(depth)? {
            Term::Integer(i) if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&i) => {
                Ok(i as u32)
            }
            Term::Integer(_) | Term::BigInt(_) => Err(DecodeError::IntegerOutOfRange(what)),
            _ => Err(DecodeError::UnexpectedTag {
                expected: "integer",
                found,
            }),
        }
    }

    fn fun(&mut self, depth: usize) -> Result<Term> {
        let depth = self.enter(depth)?;
        let start = self.pos;
        let declared = self.u32()? as usize;
        let arity = self.u8()?;
        let uniq: [u8; 16] = self.array()?;
        let index = self.u32()?;
        let num_free = self.u32()? as usize;
        let module = self.atom()?;
        let old_index = self.u32_term(depth, "fun old index")?;
        let old_uniq = self.u32_term(depth, "fun old uniq")?;
        let pid = match self.u8()? {
            t @ (tag::NEW_PID_EXT | tag::PID_EXT) => self.pid_body(t)?,
            found => {
                return Err(DecodeError::UnexpectedTag {
                    expected: "pid",
                    found,
                })
            }
        };
        let num_free = self.count(num_free, 1)?;
        let mut free_vars = Vec::with_capacity(self.reserve(num_free));
        for _ in 0..num_free {
            free_vars.push(self.term(depth)?);
        }
        let actual = self.pos - start;
        if actual != declared {
            return Err(DecodeError::BadFunSize { declared, actual });
        }
        Ok(Term::Fun(Box::new(Fun {
            module,
            arity,
            uniq,
            index,
            old_index,
            old_uniq,
            pid,
            free_vars,
        })))
    }

    /// RECORD_EXT (see [`tag::RECORD_EXT`] for the layout and its source).
    /// As erts: the flags byte must be 0 or 1, field names may be atom
    /// cache references, and a name given twice fails the decode.
    fn record(&mut self, depth: usize) -> Result<Term> {
        let depth = self.enter(depth)?;
        let n = self.u32()? as usize;
        let exported = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::BadRecord("reserved flag bits set")),
        };
        let module = self.atom()?;
        let name = self.atom()?;
        // A field takes at least a 2-byte name and a 1-byte value.
        let n = self.count(n, 3)?;
        let mut names = Vec::with_capacity(self.reserve(n));
        for _ in 0..n {
            // The name's slot in the field pair, beyond the value's TERM_COST.
            self.charge(size_of::<Atom>())?;
            names.push(self.atom()?);
        }
        if has_duplicate(&names) {
            return Err(DecodeError::BadRecord("a field name appears twice"));
        }
        let mut fields = Vec::with_capacity(names.len());
        for field in names {
            fields.push((field, self.term(depth)?));
        }
        Ok(Term::Record(Box::new(Record {
            module,
            name,
            exported,
            fields,
        })))
    }

    /// FLOAT_EXT: 31 bytes of `printf("%.20e")` text, NUL-padded.
    #[cold]
    fn old_float(&mut self) -> Result<Term> {
        let raw = self.take(31)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = std::str::from_utf8(&raw[..end]).map_err(|_| DecodeError::BadFloat)?;
        match text.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Term::Float(f)),
            _ => Err(DecodeError::BadFloat),
        }
    }
}

/// Whether an atom occurs twice: a scan for the few fields records have,
/// a sort above that, so a hostile field count stays `n log n`.
fn has_duplicate(names: &[Atom]) -> bool {
    if names.len() <= 16 {
        return names
            .iter()
            .enumerate()
            .any(|(i, a)| names[..i].contains(a));
    }
    let mut sorted: Vec<&str> = names.iter().map(Atom::as_str).collect();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[0] == w[1])
}

const MEMO_SLOTS: usize = 16;

/// A cheap hash of an atom's spelling: length and the bytes at both ends.
#[inline]
fn memo_slot(bytes: &[u8]) -> usize {
    let first = bytes.first().copied().unwrap_or(0) as usize;
    let last = bytes.last().copied().unwrap_or(0) as usize;
    (bytes.len() ^ first.wrapping_mul(31) ^ last.wrapping_mul(7)) % MEMO_SLOTS
}

fn utf8_atom(bytes: &[u8]) -> Result<Atom> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    // Bytes bound characters from above; count only when it can matter.
    if s.len() > MAX_ATOM_CHARS {
        let chars = s.chars().count();
        if chars > MAX_ATOM_CHARS {
            return Err(DecodeError::AtomTooLong(chars));
        }
    }
    Ok(Atom::new_unchecked(s))
}

/// Latin-1 maps each byte to the code point of the same value.
fn latin1_atom(bytes: &[u8]) -> Atom {
    if bytes.is_ascii() {
        // ASCII is valid UTF-8 as is.
        Atom::new_unchecked(std::str::from_utf8(bytes).unwrap_or_default())
    } else {
        let s: String = bytes.iter().map(|&b| char::from(b)).collect();
        Atom::new_unchecked(&s)
    }
}
