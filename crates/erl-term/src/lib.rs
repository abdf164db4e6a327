//! Erlang's External Term Format (ETF), with no I/O: bytes to [`Term`] and
//! back, plus reading and printing terms in Erlang syntax.
//!
//! The codec covers every term an OTP 25 node sends: UTF-8 atoms, small and
//! big integers, floats, binaries and bitstrings, proper and improper lists,
//! strings, tuples, maps, pids (NEW_PID_EXT), ports (NEW_PORT_EXT and
//! V4_PORT_EXT), references (NEWER_REFERENCE_EXT), `fun M:F/A` and closures
//! (NEW_FUN_EXT, carried through opaquely). It also decodes the legacy forms
//! that `binary_to_term` still reads (Latin-1 atoms, FLOAT_EXT, PID_EXT,
//! PORT_EXT, REFERENCE_EXT, NEW_REFERENCE_EXT), ATOM_CACHE_REF through a
//! caller-supplied lookup, and zlib-compressed terms (tag 80). OTP 29's
//! native records (RECORD_EXT, tag 67) are decoded and re-encoded byte for
//! byte ([`Record`]).
//!
//! ```
//! use erl_term::{decode, encode, parse, Term};
//! let t = parse("{echo, [1, 2, <<\"hi\">>], #{a => 1.5}}").unwrap();
//! let bytes = encode(&t);
//! assert_eq!(decode(&bytes).unwrap(), t);
//! assert_eq!(t.to_string(), "{echo,[1,2,<<\"hi\">>],#{a => 1.5}}");
//! ```
//!
//! # Design
//!
//! - **No global atom table.** [`Atom`] is a reference-counted string made
//!   per decode, so a peer cannot grow the node's memory forever by sending
//!   new atoms (a BEAM node's atom table never shrinks).
//! - **Integers**: `i64` on the fast path; anything larger is a [`BigInt`]
//!   kept as sign and little-endian magnitude, exactly as the wire carries
//!   it. The node moves big integers but does no arithmetic on them, so a
//!   bignum crate would add a dependency for nothing; decimal conversion for
//!   printing and parsing is a few lines here.
//! - **Hostile input**: decoding is check-then-parse. Lengths are checked
//!   against the bytes left before any allocation, preallocation is drawn
//!   from a budget of one element per input byte, nesting is capped
//!   ([`DEFAULT_MAX_DEPTH`], then [`DecodeError::TooDeep`]), compressed
//!   terms are capped ([`DEFAULT_MAX_INFLATED`]), and no input panics
//!   (property-tested).
//! - **Speed**: no per-byte pushes where a slice copy works, vectors
//!   reserved at their exact size while decoding, and a per-decode memo so
//!   an atom repeated in one message is allocated once. Roughly 25
//!   instructions per byte to decode a list of integers, 14 to encode it;
//!   strings are a single copy, binaries decoded from a [`Bytes`] input
//!   ([`decode_bytes`]) none when larger than [`SHARE_MIN`], and
//!   [`encode_chunks_to`] leaves binaries of [`CHUNK_MIN`] bytes or more
//!   in their own buffers.
//! - **Byte-exact encoding**: for terms OTP can produce, [`encode()`] gives the
//!   bytes of OTP 25's `term_to_binary(T, [{minor_version, 2}])`, which are
//!   also what it sends over distribution; the interop tests check this
//!   against a real `erl`.
//! - **Equality is Erlang's `=:=`** over the several Rust spellings of one
//!   term (a STRING_EXT list equals the same list of integers, map order
//!   does not matter); see [`term`].
//!
//! Not supported: FUN_EXT (removed in OTP 23), LOCAL_EXT (OTP 26's
//! node-local form, never sent between nodes), and encoding atoms with
//! ATOM_CACHE_REF (the distribution layer owns the cache).
//!
//! # Layout
//!
//! - [`term`]: [`Term`], [`Atom`], [`BigInt`], [`Pid`], [`Port`],
//!   [`Reference`], [`Export`], [`Fun`], [`Record`], and their equality and
//!   hashing.
//! - [`tag`]: the tag bytes.
//! - [`decode`](mod@decode): [`decode()`], [`decode_used`], [`decode_term`],
//!   [`decode_with_cache`], [`DecodeOptions`] and [`DecodeError`].
//! - [`encode`](mod@encode): [`encode()`], [`encode_to`], [`encoded_len`],
//!   [`encode_compressed`].
//! - [`format`](mod@format): `Display` for [`Term`] in Erlang syntax (like
//!   `~tp`), and [`format_float`].
//! - [`parse`](mod@parse): [`parse()`], Erlang term syntax to [`Term`].

#![warn(missing_docs)]

pub mod decode;
pub mod encode;
pub mod format;
pub mod parse;
pub mod tag;
pub mod term;

/// The buffer type of binaries ([`Term::Binary`]), re-exported so callers
/// need not depend on `bytes` themselves.
pub use bytes::Bytes;
pub use decode::{
    decode, decode_bytes, decode_term, decode_used, decode_with_cache, DecodeError, DecodeOptions,
    DEFAULT_MAX_BIG_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_INFLATED, SHARE_MIN, TERM_COST,
};
pub use encode::{
    encode, encode_chunks_to, encode_compressed, encode_to, encoded_len, Chunks, CHUNK_MIN,
};
pub use format::{format, format_float};
pub use parse::{parse, ParseError};
pub use term::{
    Atom, AtomTooLong, BigInt, Export, Fun, Pid, Port, Record, Reference, Term, MAX_ATOM_CHARS,
};
