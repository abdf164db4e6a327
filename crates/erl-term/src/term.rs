//! The term model: [`Term`] and the identifiers it is built from.
//!
//! Equality follows Erlang's exact equality (`=:=`) rather than the shape of
//! the Rust value, because one Erlang term has several Rust spellings:
//!
//! - a list may be a [`Term::List`], a [`Term::String`] (STRING_EXT), or an
//!   [`Term::ImproperList`] whose tail is itself a list; `[]` may also be an
//!   empty `List` or `String`. `String(b"hi")` equals `List([104, 105])`.
//! - an integer may be a [`Term::Integer`] or a [`Term::BigInt`] that happens
//!   to fit in an `i64` (the decoder never produces the latter).
//! - a binary may be a [`Term::Binary`] or a [`Term::BitBinary`] whose last
//!   byte is complete.
//! - maps compare as sets of pairs, whatever their order.
//!
//! Floats compare by bit pattern, so `-0.0 != 0.0` (as in OTP 27's `=:=`)
//! and the relation is a true equivalence, which lets [`Term`] implement
//! [`Eq`] and [`Hash`] and serve as a `HashMap` key. `Hash` agrees with `==`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;

/// Most characters (not bytes) an atom may have. OTP refuses longer atoms in
/// `binary_to_term`, so the decoder refuses them too and [`Atom::new`] will
/// not build one.
pub const MAX_ATOM_CHARS: usize = 255;

/// An atom's name.
///
/// Atoms are plain reference-counted strings, never interned in a global
/// table: a node must not let a peer grow its memory without bound by sending
/// fresh atoms, which is exactly what a BEAM atom table allows. Cloning is
/// cheap (a reference count), which keeps atom-cache lookups cheap.
///
/// `Display` prints the bare name; [`Term`]'s `Display` prints Erlang syntax
/// (quoting when needed).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Arc<str>);

/// An atom name longer than [`MAX_ATOM_CHARS`] characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("atom has {chars} characters, more than the 255 Erlang allows")]
pub struct AtomTooLong {
    /// The number of characters in the rejected name.
    pub chars: usize,
}

impl Atom {
    /// Makes an atom, refusing names over [`MAX_ATOM_CHARS`] characters.
    pub fn new(name: &str) -> Result<Self, AtomTooLong> {
        // Byte length bounds the character count from above, so the count is
        // only needed for long names.
        if name.len() > MAX_ATOM_CHARS {
            let chars = name.chars().count();
            if chars > MAX_ATOM_CHARS {
                return Err(AtomTooLong { chars });
            }
        }
        Ok(Self(Arc::from(name)))
    }

    /// For callers that have already checked the length.
    pub(crate) fn new_unchecked(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Atom({:?})", &*self.0)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Atom {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// `Atom`'s Hash and Eq are those of the `str` inside, so borrowing as `str`
// is sound for `HashMap<Atom, _>::get("name")`.
impl Borrow<str> for Atom {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl TryFrom<&str> for Atom {
    type Error = AtomTooLong;
    fn try_from(name: &str) -> Result<Self, AtomTooLong> {
        Self::new(name)
    }
}

impl TryFrom<String> for Atom {
    type Error = AtomTooLong;
    fn try_from(name: String) -> Result<Self, AtomTooLong> {
        Self::new(&name)
    }
}

/// An integer outside the `i64` range, as sign and magnitude.
///
/// The magnitude is little-endian base-256 with no high zero bytes, which is
/// also how SMALL_BIG_EXT and LARGE_BIG_EXT carry it, so encoding and
/// decoding are copies. Arithmetic is out of scope; a node only moves these
/// values. Zero has an empty magnitude and is never negative.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BigInt {
    negative: bool,
    magnitude: Vec<u8>,
}

impl BigInt {
    /// Builds a value from a sign and a little-endian magnitude, dropping
    /// high zero bytes.
    pub fn from_sign_magnitude(negative: bool, magnitude_le: impl Into<Vec<u8>>) -> Self {
        let mut magnitude = magnitude_le.into();
        while magnitude.last() == Some(&0) {
            magnitude.pop();
        }
        let negative = negative && !magnitude.is_empty();
        Self {
            negative,
            magnitude,
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The little-endian magnitude, without high zero bytes (empty for zero).
    pub fn magnitude(&self) -> &[u8] {
        &self.magnitude
    }

    /// The value as an `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        if self.magnitude.len() > 16 {
            return None;
        }
        let mut le = [0u8; 16];
        le[..self.magnitude.len()].copy_from_slice(&self.magnitude);
        let m = u128::from_le_bytes(le);
        if self.negative {
            if m <= 1u128 << 127 {
                Some((m as i128).wrapping_neg())
            } else {
                None
            }
        } else {
            i128::try_from(m).ok()
        }
    }

    /// The value as an `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        if self.magnitude.len() > 8 {
            return None;
        }
        self.to_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// Parses an optionally signed string of digits in `radix` (2..=36).
    /// Returns `None` for an empty or malformed string or a bad radix.
    pub fn from_str_radix(s: &str, radix: u32) -> Option<Self> {
        if !(2..=36).contains(&radix) {
            return None;
        }
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if digits.is_empty() {
            return None;
        }
        let mut mag: Vec<u8> = Vec::with_capacity(digits.len() / 2 + 1);
        for c in digits.chars() {
            let d = c.to_digit(radix)?;
            // mag = mag * radix + d, in base 256.
            let mut carry = d;
            for byte in &mut mag {
                let v = u32::from(*byte) * radix + carry;
                *byte = v as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                mag.push(carry as u8);
                carry >>= 8;
            }
        }
        Some(Self::from_sign_magnitude(negative, mag))
    }

    /// Decimal digits, with a leading `-` when negative.
    pub fn to_decimal(&self) -> String {
        if self.magnitude.is_empty() {
            return "0".to_owned();
        }
        // Repeated division by 10^9 over 32-bit limbs: quadratic, but only
        // used for printing.
        let mut limbs: Vec<u32> = self
            .magnitude
            .chunks(4)
            .map(|c| {
                let mut le = [0u8; 4];
                le[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(le)
            })
            .collect();
        let mut groups: Vec<u32> = Vec::new();
        while !limbs.is_empty() {
            let mut rem: u64 = 0;
            for limb in limbs.iter_mut().rev() {
                let cur = (rem << 32) | u64::from(*limb);
                *limb = (cur / 1_000_000_000) as u32;
                rem = cur % 1_000_000_000;
            }
            groups.push(rem as u32);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        let mut out = String::with_capacity(groups.len() * 9 + 1);
        if self.negative {
            out.push('-');
        }
        let mut iter = groups.iter().rev();
        if let Some(first) = iter.next() {
            out.push_str(&first.to_string());
        }
        for g in iter {
            out.push_str(&format!("{g:09}"));
        }
        out
    }
}

impl From<i128> for BigInt {
    fn from(v: i128) -> Self {
        Self::from_sign_magnitude(v < 0, v.unsigned_abs().to_le_bytes().to_vec())
    }
}

impl From<i64> for BigInt {
    fn from(v: i64) -> Self {
        Self::from(i128::from(v))
    }
}

impl From<u64> for BigInt {
    fn from(v: u64) -> Self {
        Self::from(i128::from(v))
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

/// A process identifier (NEW_PID_EXT).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid {
    /// The node the process lives on.
    pub node: Atom,
    /// Process number (15 significant bits in classic OTP, 32 on the wire).
    pub id: u32,
    /// Serial (wrap counter of `id`).
    pub serial: u32,
    /// The node incarnation it belongs to.
    pub creation: u32,
}

/// A port identifier (NEW_PORT_EXT, or V4_PORT_EXT for 64-bit ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// The node the port lives on.
    pub node: Atom,
    /// Port number.
    pub id: u64,
    /// The node incarnation it belongs to.
    pub creation: u32,
}

/// A reference (NEWER_REFERENCE_EXT).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The node that made it.
    pub node: Atom,
    /// The node incarnation that made it.
    pub creation: u32,
    /// The id words, least significant first, as on the wire. OTP 25 sends
    /// 3 for plain refs and up to 5 for process-bound refs (aliases).
    pub ids: Vec<u32>,
}

/// An external fun, `fun Module:Function/Arity` (EXPORT_EXT).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Export {
    /// Module name.
    pub module: Atom,
    /// Function name.
    pub function: Atom,
    /// Arity.
    pub arity: u8,
}

/// A closure (NEW_FUN_EXT). Only meaningful to a node that has `module`
/// loaded with the same `uniq`; this crate carries it through unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fun {
    /// The module that defines the fun.
    pub module: Atom,
    /// Arity.
    pub arity: u8,
    /// MD5 of the module's significant parts (NEW_FUN_EXT `Uniq`).
    pub uniq: [u8; 16],
    /// Index into the module's fun table.
    pub index: u32,
    /// The old-style index (`OldIndex`).
    pub old_index: u32,
    /// The old-style hash (`OldUniq`).
    pub old_uniq: u32,
    /// The process that created the fun.
    pub pid: Pid,
    /// Captured variables.
    pub free_vars: Vec<Term>,
}

/// A native record (OTP 29, EEP 79), as RECORD_EXT carries it.
///
/// erts sends one whenever a message holds a native record, whatever the
/// peer's distribution flags say, so a node that cannot decode it loses the
/// message. The wire form keeps the fields in the definition's order, and
/// so does this type; equality compares module, name, the `exported` flag
/// and the fields in that order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// The module that defines the record.
    pub module: Atom,
    /// The record's name.
    pub name: Atom,
    /// Whether the definition is exported (`-export_record`); the wire's
    /// flags byte, 0 or 1.
    pub exported: bool,
    /// Field names and values, in definition order. Names are distinct: the
    /// decoder refuses duplicates, as erts does.
    pub fields: Vec<(Atom, Term)>,
}

/// An Erlang term.
///
/// See the [module docs](self) for how equality treats the several Rust
/// spellings of one Erlang term.
#[derive(Clone, Debug)]
pub enum Term {
    /// An atom.
    Atom(Atom),
    /// An integer that fits in an `i64`. The decoder always uses this
    /// variant for such values, whatever tag carried them.
    Integer(i64),
    /// An integer outside the `i64` range.
    BigInt(BigInt),
    /// A float. Erlang has no NaN or infinities; encoding one produces bytes
    /// OTP refuses.
    Float(f64),
    /// A binary (whole bytes). [`Bytes`] so that a binary decoded from a
    /// received frame is a slice of it, and one sent on is written from
    /// the same buffer: cloning a term never copies its binaries.
    Binary(Bytes),
    /// A bitstring whose last byte holds only `bits` bits (1..=7 when
    /// decoded), in its most significant positions; the decoder clears the
    /// unused low bits. `bits` of 0 or 8+ is encoded as a whole byte.
    BitBinary {
        /// The bytes; the last one is partial.
        bytes: Bytes,
        /// How many bits of the last byte belong to the bitstring.
        bits: u8,
    },
    /// The empty list `[]`.
    Nil,
    /// A list of bytes as STRING_EXT carries it: `"hi"` is `[104,105]`.
    String(Vec<u8>),
    /// A proper list.
    List(Vec<Self>),
    /// A list whose last tail is not `[]`: `[a, b | c]` is
    /// `ImproperList(vec![a, b], Box::new(c))`. The decoder always produces
    /// a non-empty head and a tail that is not itself a list.
    ImproperList(Vec<Self>, Box<Self>),
    /// A tuple.
    Tuple(Vec<Self>),
    /// A map, in wire order. The decoder does not reject duplicate keys.
    Map(Vec<(Self, Self)>),
    /// A process identifier.
    Pid(Pid),
    /// A port identifier.
    Port(Port),
    /// A reference.
    Reference(Reference),
    /// `fun M:F/A`.
    Export(Box<Export>),
    /// A closure.
    Fun(Box<Fun>),
    /// A native record (OTP 29's RECORD_EXT).
    Record(Box<Record>),
}

impl Term {
    /// An atom term.
    ///
    /// # Panics
    ///
    /// If `name` has more than [`MAX_ATOM_CHARS`] characters. Use
    /// [`Atom::new`] for names that come from outside the program.
    pub fn atom(name: &str) -> Self {
        match Atom::new(name) {
            Ok(a) => Self::Atom(a),
            Err(e) => panic!("Term::atom: {e}"),
        }
    }

    /// A binary term. Takes anything [`Bytes`] is made from without a
    /// copy (`Vec<u8>`, `String`, `&'static [u8]`); copy a borrowed slice
    /// with [`Bytes::copy_from_slice`].
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::Binary(bytes.into())
    }

    /// A tuple term.
    pub fn tuple(elements: impl Into<Vec<Self>>) -> Self {
        Self::Tuple(elements.into())
    }

    /// A proper list term (`[]` when empty).
    pub fn list(elements: impl Into<Vec<Self>>) -> Self {
        let v = elements.into();
        if v.is_empty() {
            Self::Nil
        } else {
            Self::List(v)
        }
    }

    /// The atom's name, if this is an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Self::Atom(a) => Some(a.as_str()),
            _ => None,
        }
    }

    /// The value, if this is an integer that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Integer(i) => Some(*i),
            Self::BigInt(b) => b.to_i64(),
            _ => None,
        }
    }

    /// The elements, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&[Self]> {
        match self {
            Self::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// The bytes, if this is a binary (whole bytes).
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Self::Binary(b) => Some(b),
            Self::BitBinary { bytes, bits } if bytes.is_empty() || *bits == 0 || *bits >= 8 => {
                Some(bytes)
            }
            _ => None,
        }
    }

    /// Whether this is a list of any spelling: `[]`, a string, a proper or
    /// an improper list.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Self::Nil | Self::String(_) | Self::List(_) | Self::ImproperList(..)
        )
    }

    /// The elements of a proper list, with STRING_EXT bytes turned into
    /// integers. `None` if this is not a proper list.
    pub fn to_list(&self) -> Option<Vec<Self>> {
        if !self.is_list() {
            return None;
        }
        let mut it = ListIter::new(self);
        let mut out = Vec::new();
        for e in &mut it {
            out.push(match e {
                Elem::Term(t) => t.clone(),
                Elem::Byte(b) => Self::Integer(i64::from(b)),
            });
        }
        if it.tail.is_some() {
            None
        } else {
            Some(out)
        }
    }

    fn int_value(&self) -> Option<IntRef<'_>> {
        match self {
            Self::Integer(i) => Some(IntRef::Small(*i)),
            Self::BigInt(b) => Some(match b.to_i64() {
                Some(i) => IntRef::Small(i),
                None => IntRef::Big(b),
            }),
            _ => None,
        }
    }

    /// `(bytes, bits in the last byte)` for binaries and bitstrings, in the
    /// canonical form used by equality and hashing.
    fn bits_value(&self) -> Option<(&[u8], u8)> {
        match self {
            Self::Binary(b) => Some((b, 8)),
            Self::BitBinary { bytes, bits } => {
                if bytes.is_empty() || *bits == 0 || *bits >= 8 {
                    Some((bytes, 8))
                } else {
                    Some((bytes, *bits))
                }
            }
            _ => None,
        }
    }
}

impl From<i64> for Term {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}

impl From<i32> for Term {
    fn from(v: i32) -> Self {
        Self::Integer(i64::from(v))
    }
}

impl From<u32> for Term {
    fn from(v: u32) -> Self {
        Self::Integer(i64::from(v))
    }
}

impl From<u64> for Term {
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(i) => Self::Integer(i),
            Err(_) => Self::BigInt(BigInt::from(v)),
        }
    }
}

impl From<i128> for Term {
    fn from(v: i128) -> Self {
        match i64::try_from(v) {
            Ok(i) => Self::Integer(i),
            Err(_) => Self::BigInt(BigInt::from(v)),
        }
    }
}

/// Keeps the invariant that values in the `i64` range are `Integer`.
impl From<BigInt> for Term {
    fn from(v: BigInt) -> Self {
        match v.to_i64() {
            Some(i) => Self::Integer(i),
            None => Self::BigInt(v),
        }
    }
}

impl From<f64> for Term {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// `true` and `false` are atoms in Erlang.
impl From<bool> for Term {
    fn from(v: bool) -> Self {
        Self::Atom(Atom::new_unchecked(if v { "true" } else { "false" }))
    }
}

impl From<Atom> for Term {
    fn from(v: Atom) -> Self {
        Self::Atom(v)
    }
}

impl From<Pid> for Term {
    fn from(v: Pid) -> Self {
        Self::Pid(v)
    }
}

impl From<Port> for Term {
    fn from(v: Port) -> Self {
        Self::Port(v)
    }
}

impl From<Reference> for Term {
    fn from(v: Reference) -> Self {
        Self::Reference(v)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IntRef<'a> {
    Small(i64),
    Big(&'a BigInt),
}

/// One element of a list walk: STRING_EXT bytes are yielded unboxed so that
/// comparing `"abc"` with `[97, 98, 99]` allocates nothing.
#[derive(Clone, Copy)]
pub(crate) enum Elem<'a> {
    Term(&'a Term),
    Byte(u8),
}

/// Walks the cons cells of a list term, following tails that are
/// themselves lists. After it returns `None`, `tail` holds the non-list tail
/// of an improper list (or `None` for a proper list).
pub(crate) struct ListIter<'a> {
    terms: std::slice::Iter<'a, Term>,
    bytes: std::slice::Iter<'a, u8>,
    rest: Option<&'a Term>,
    pub(crate) tail: Option<&'a Term>,
}

impl<'a> ListIter<'a> {
    /// `list` must satisfy [`Term::is_list`].
    pub(crate) fn new(list: &'a Term) -> Self {
        let mut it = Self {
            terms: [].iter(),
            bytes: [].iter(),
            rest: None,
            tail: None,
        };
        it.load(list);
        it
    }

    fn load(&mut self, t: &'a Term) {
        match t {
            Term::String(s) => self.bytes = s.iter(),
            Term::List(v) => self.terms = v.iter(),
            Term::ImproperList(v, tail) => {
                self.terms = v.iter();
                self.rest = Some(tail);
            }
            _ => {}
        }
    }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Elem<'a>;

    fn next(&mut self) -> Option<Elem<'a>> {
        loop {
            if let Some(&b) = self.bytes.next() {
                return Some(Elem::Byte(b));
            }
            if let Some(t) = self.terms.next() {
                return Some(Elem::Term(t));
            }
            let r = self.rest.take()?;
            if r.is_list() {
                self.load(r);
            } else {
                self.tail = Some(r);
                return None;
            }
        }
    }
}

fn elem_eq(a: Elem<'_>, b: Elem<'_>) -> bool {
    match (a, b) {
        (Elem::Byte(x), Elem::Byte(y)) => x == y,
        (Elem::Term(t), Elem::Byte(y)) | (Elem::Byte(y), Elem::Term(t)) => {
            t.int_value() == Some(IntRef::Small(i64::from(y)))
        }
        (Elem::Term(x), Elem::Term(y)) => x == y,
    }
}

fn lists_eq(a: &Term, b: &Term) -> bool {
    // Fast paths for the common same-spelling cases.
    match (a, b) {
        (Term::String(x), Term::String(y)) => return x == y,
        (Term::List(x), Term::List(y)) => return x == y,
        _ => {}
    }
    let mut ia = ListIter::new(a);
    let mut ib = ListIter::new(b);
    loop {
        match (ia.next(), ib.next()) {
            (Some(x), Some(y)) => {
                if !elem_eq(x, y) {
                    return false;
                }
            }
            (None, None) => break,
            _ => return false,
        }
    }
    ia.tail == ib.tail
}

fn bits_eq((a, abits): (&[u8], u8), (b, bbits): (&[u8], u8)) -> bool {
    if abits != bbits || a.len() != b.len() {
        return false;
    }
    match (a.split_last(), b.split_last()) {
        (Some((la, ra)), Some((lb, rb))) => {
            let mask = last_byte_mask(abits);
            ra == rb && (la & mask) == (lb & mask)
        }
        _ => true,
    }
}

/// The bits of a partial last byte that belong to the bitstring.
pub(crate) fn last_byte_mask(bits: u8) -> u8 {
    if bits == 0 || bits >= 8 {
        0xff
    } else {
        0xffu8 << (8 - bits)
    }
}

/// Above this size map equality builds a hash index instead of scanning.
const MAP_SCAN_LIMIT: usize = 32;

fn maps_eq(a: &[(Term, Term)], b: &[(Term, Term)]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Same order is the common case (both sides came from one OTP map).
    if a == b {
        return true;
    }
    if a.len() <= MAP_SCAN_LIMIT {
        a.iter()
            .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            && b.iter()
                .all(|(k, v)| a.iter().any(|(k2, v2)| k == k2 && v == v2))
    } else {
        let ib: std::collections::HashMap<&Term, &Term> = b.iter().map(|(k, v)| (k, v)).collect();
        let ia: std::collections::HashMap<&Term, &Term> = a.iter().map(|(k, v)| (k, v)).collect();
        ia.len() == ib.len() && ia.iter().all(|(k, v)| ib.get(k) == Some(v))
    }
}

impl PartialEq for Term {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Atom(a), Self::Atom(b)) => a == b,
            (Self::Integer(a), Self::Integer(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a.to_bits() == b.to_bits(),
            (Self::Binary(a), Self::Binary(b)) => a == b,
            (Self::Tuple(a), Self::Tuple(b)) => a == b,
            (Self::Map(a), Self::Map(b)) => maps_eq(a, b),
            (Self::Pid(a), Self::Pid(b)) => a == b,
            (Self::Port(a), Self::Port(b)) => a == b,
            (Self::Reference(a), Self::Reference(b)) => a == b,
            (Self::Export(a), Self::Export(b)) => a == b,
            (Self::Fun(a), Self::Fun(b)) => a == b,
            (Self::Record(a), Self::Record(b)) => a == b,
            _ => {
                if self.is_list() && other.is_list() {
                    return lists_eq(self, other);
                }
                if let (Some(a), Some(b)) = (self.int_value(), other.int_value()) {
                    return a == b;
                }
                if let (Some(a), Some(b)) = (self.bits_value(), other.bits_value()) {
                    return bits_eq(a, b);
                }
                false
            }
        }
    }
}

impl Eq for Term {}

// Discriminators for Hash, one per equality class.
const H_ATOM: u8 = 1;
const H_INT: u8 = 2;
const H_FLOAT: u8 = 3;
const H_BITS: u8 = 4;
const H_LIST: u8 = 5;
const H_TUPLE: u8 = 6;
const H_MAP: u8 = 7;
const H_PID: u8 = 8;
const H_PORT: u8 = 9;
const H_REF: u8 = 10;
const H_EXPORT: u8 = 11;
const H_FUN: u8 = 12;
const H_RECORD: u8 = 13;

fn hash_int<H: Hasher>(v: IntRef<'_>, state: &mut H) {
    state.write_u8(H_INT);
    match v {
        IntRef::Small(i) => {
            state.write_u8(0);
            state.write_i64(i);
        }
        IntRef::Big(b) => {
            state.write_u8(1);
            b.hash(state);
        }
    }
}

impl Hash for Term {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if let Some(v) = self.int_value() {
            return hash_int(v, state);
        }
        if let Some((bytes, bits)) = self.bits_value() {
            state.write_u8(H_BITS);
            state.write_u8(bits);
            state.write_usize(bytes.len());
            if let Some((last, rest)) = bytes.split_last() {
                state.write(rest);
                state.write_u8(last & last_byte_mask(bits));
            }
            return;
        }
        if self.is_list() {
            state.write_u8(H_LIST);
            let mut it = ListIter::new(self);
            for e in &mut it {
                match e {
                    Elem::Term(t) => t.hash(state),
                    Elem::Byte(b) => hash_int(IntRef::Small(i64::from(b)), state),
                }
            }
            // Separates the elements from the tail.
            state.write_u8(0xff);
            if let Some(t) = it.tail {
                t.hash(state);
            }
            return;
        }
        match self {
            Self::Atom(a) => {
                state.write_u8(H_ATOM);
                a.hash(state);
            }
            Self::Float(f) => {
                state.write_u8(H_FLOAT);
                state.write_u64(f.to_bits());
            }
            Self::Tuple(t) => {
                state.write_u8(H_TUPLE);
                t.hash(state);
            }
            Self::Map(m) => {
                // Order-independent: sum of per-pair hashes from a fixed-key
                // hasher, so that equal maps in different orders agree.
                state.write_u8(H_MAP);
                state.write_usize(m.len());
                let mut sum: u64 = 0;
                for (k, v) in m {
                    #[allow(deprecated)]
                    let mut h = std::hash::SipHasher::new();
                    k.hash(&mut h);
                    v.hash(&mut h);
                    sum = sum.wrapping_add(h.finish());
                }
                state.write_u64(sum);
            }
            Self::Pid(p) => {
                state.write_u8(H_PID);
                p.hash(state);
            }
            Self::Port(p) => {
                state.write_u8(H_PORT);
                p.hash(state);
            }
            Self::Reference(r) => {
                state.write_u8(H_REF);
                r.hash(state);
            }
            Self::Export(e) => {
                state.write_u8(H_EXPORT);
                e.hash(state);
            }
            Self::Fun(f) => {
                state.write_u8(H_FUN);
                f.hash(state);
            }
            Self::Record(r) => {
                state.write_u8(H_RECORD);
                r.hash(state);
            }
            // Handled above.
            Self::Integer(_)
            | Self::BigInt(_)
            | Self::Binary(_)
            | Self::BitBinary { .. }
            | Self::Nil
            | Self::String(_)
            | Self::List(_)
            | Self::ImproperList(..) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn h(t: &Term) -> u64 {
        let mut s = DefaultHasher::new();
        t.hash(&mut s);
        s.finish()
    }

    fn same(a: &Term, b: &Term) {
        assert_eq!(a, b);
        assert_eq!(b, a);
        assert_eq!(h(a), h(b), "{a:?} vs {b:?}");
    }

    #[test]
    fn list_spellings_are_equal() {
        let s = Term::String(b"hi".to_vec());
        let l = Term::List(vec![Term::Integer(104), Term::Integer(105)]);
        same(&s, &l);
        same(&Term::Nil, &Term::List(vec![]));
        same(&Term::Nil, &Term::String(vec![]));
        let chained = Term::ImproperList(
            vec![Term::Integer(104)],
            Box::new(Term::String(b"i".to_vec())),
        );
        same(&s, &chained);
        let imp1 = Term::ImproperList(
            vec![Term::Integer(1), Term::Integer(2)],
            Box::new(Term::atom("x")),
        );
        let imp2 = Term::ImproperList(
            vec![Term::Integer(1)],
            Box::new(Term::ImproperList(
                vec![Term::Integer(2)],
                Box::new(Term::atom("x")),
            )),
        );
        same(&imp1, &imp2);
        assert_ne!(imp1, Term::List(vec![Term::Integer(1), Term::Integer(2)]));
        assert_ne!(s, Term::String(b"ho".to_vec()));
        assert_ne!(s, Term::String(b"h".to_vec()));
    }

    #[test]
    fn integer_spellings_are_equal() {
        same(&Term::Integer(5), &Term::BigInt(BigInt::from(5i64)));
        assert_ne!(Term::Integer(5), Term::Float(5.0));
        let big = Term::from(1i128 << 70);
        assert!(matches!(big, Term::BigInt(_)));
        same(&big, &Term::from(BigInt::from(1i128 << 70)));
    }

    #[test]
    fn floats_compare_by_bits() {
        assert_ne!(Term::Float(0.0), Term::Float(-0.0));
        same(&Term::Float(1.5), &Term::Float(1.5));
    }

    #[test]
    fn maps_ignore_order() {
        let a = Term::Map(vec![
            (Term::atom("a"), Term::Integer(1)),
            (Term::atom("b"), Term::Integer(2)),
        ]);
        let b = Term::Map(vec![
            (Term::atom("b"), Term::Integer(2)),
            (Term::atom("a"), Term::Integer(1)),
        ]);
        same(&a, &b);
        let big_a = Term::Map((0..100).map(|i| (Term::Integer(i), Term::Nil)).collect());
        let big_b = Term::Map(
            (0..100)
                .rev()
                .map(|i| (Term::Integer(i), Term::Nil))
                .collect(),
        );
        same(&big_a, &big_b);
        let big_c = Term::Map((1..101).map(|i| (Term::Integer(i), Term::Nil)).collect());
        assert_ne!(big_a, big_c);
    }

    #[test]
    fn bitstrings() {
        let a = Term::BitBinary {
            bytes: vec![1, 0b1010_0000].into(),
            bits: 3,
        };
        let b = Term::BitBinary {
            bytes: vec![1, 0b1011_1111].into(),
            bits: 3,
        };
        same(&a, &b);
        same(
            &Term::binary(vec![1, 2]),
            &Term::BitBinary {
                bytes: vec![1, 2].into(),
                bits: 8,
            },
        );
        assert_ne!(
            a,
            Term::BitBinary {
                bytes: vec![1, 0b1010_0000].into(),
                bits: 4
            }
        );
    }

    #[test]
    fn bigint_conversions() {
        for v in [
            0i128,
            1,
            -1,
            255,
            256,
            i64::MAX as i128 + 1,
            i64::MIN as i128 - 1,
            i128::MAX,
            i128::MIN,
        ] {
            let b = BigInt::from(v);
            assert_eq!(b.to_i128(), Some(v));
            assert_eq!(b.to_decimal(), v.to_string());
            assert_eq!(BigInt::from_str_radix(&v.to_string(), 10), Some(b));
        }
        let p = BigInt::from_str_radix("1267650600228229401496703205376", 10).unwrap();
        assert_eq!(p.magnitude().len(), 13);
        assert_eq!(p.to_decimal(), "1267650600228229401496703205376");
        assert_eq!(BigInt::from_str_radix("ff", 16), Some(BigInt::from(255i64)));
        assert_eq!(BigInt::from_str_radix("", 10), None);
        assert_eq!(BigInt::from_str_radix("12a", 10), None);
        assert!(!BigInt::from_sign_magnitude(true, vec![0, 0]).is_negative());
    }

    #[test]
    fn atoms() {
        assert!(Atom::new(&"a".repeat(255)).is_ok());
        assert_eq!(Atom::new(&"a".repeat(256)), Err(AtomTooLong { chars: 256 }));
        // 255 two-byte characters: 510 bytes, still allowed.
        assert!(Atom::new(&"ж".repeat(255)).is_ok());
        let a = Atom::new("ok").unwrap();
        assert_eq!(a, "ok");
        let mut m = std::collections::HashMap::new();
        m.insert(a, 1);
        assert_eq!(m.get("ok"), Some(&1));
    }

    #[test]
    fn to_list() {
        assert_eq!(
            Term::String(b"ab".to_vec()).to_list(),
            Some(vec![Term::Integer(97), Term::Integer(98)])
        );
        assert_eq!(Term::Nil.to_list(), Some(vec![]));
        assert_eq!(
            Term::ImproperList(vec![Term::Nil], Box::new(Term::Integer(1))).to_list(),
            None
        );
        assert_eq!(Term::Integer(1).to_list(), None);
    }
}
