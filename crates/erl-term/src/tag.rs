//! Tag bytes of the External Term Format (`erts/emulator/beam/external.h`).
//!
//! Tags marked *decode only* are legacy forms that OTP 25 no longer emits
//! towards a peer with the mandatory distribution flags, but which
//! `binary_to_term` still reads and old files may contain.

/// The version byte that starts a standalone term.
pub const VERSION: u8 = 131;
/// zlib-compressed term: `u32` uncompressed size, then a zlib stream.
pub const COMPRESSED: u8 = 80;
/// Index into the distribution header's atom cache.
pub const ATOM_CACHE_REF: u8 = 82;
/// IEEE 754 double, big-endian.
pub const NEW_FLOAT_EXT: u8 = 70;
/// `u32` length, `u8` bits used in the last byte, bytes.
pub const BIT_BINARY_EXT: u8 = 77;
/// Node atom, `u32` id, `u32` serial, `u32` creation.
pub const NEW_PID_EXT: u8 = 88;
/// Node atom, `u32` id, `u32` creation.
pub const NEW_PORT_EXT: u8 = 89;
/// `u16` id count, node atom, `u32` creation, `u32` ids.
pub const NEWER_REFERENCE_EXT: u8 = 90;
/// `u8` integer.
pub const SMALL_INTEGER_EXT: u8 = 97;
/// `i32` integer.
pub const INTEGER_EXT: u8 = 98;
/// Float as 31 bytes of `%.20e` text (*decode only*).
pub const FLOAT_EXT: u8 = 99;
/// `u16` length, Latin-1 name (*decode only*).
pub const ATOM_EXT: u8 = 100;
/// Node atom, `u32` id, `u8` creation (*decode only*).
pub const REFERENCE_EXT: u8 = 101;
/// Node atom, `u32` id, `u8` creation (*decode only*).
pub const PORT_EXT: u8 = 102;
/// Node atom, `u32` id, `u32` serial, `u8` creation (*decode only*).
pub const PID_EXT: u8 = 103;
/// `u8` arity, elements.
pub const SMALL_TUPLE_EXT: u8 = 104;
/// `u32` arity, elements.
pub const LARGE_TUPLE_EXT: u8 = 105;
/// `[]`.
pub const NIL_EXT: u8 = 106;
/// `u16` length, bytes: a list of small integers.
pub const STRING_EXT: u8 = 107;
/// `u32` length, elements, tail.
pub const LIST_EXT: u8 = 108;
/// `u32` length, bytes.
pub const BINARY_EXT: u8 = 109;
/// `u8` digit count, `u8` sign, little-endian digits.
pub const SMALL_BIG_EXT: u8 = 110;
/// `u32` digit count, `u8` sign, little-endian digits.
pub const LARGE_BIG_EXT: u8 = 111;
/// A closure.
pub const NEW_FUN_EXT: u8 = 112;
/// `fun M:F/A`: module atom, function atom, arity as SMALL_INTEGER_EXT.
pub const EXPORT_EXT: u8 = 113;
/// `u16` id count, node atom, `u8` creation, `u32` ids (*decode only*).
pub const NEW_REFERENCE_EXT: u8 = 114;
/// `u8` length, Latin-1 name (*decode only*).
pub const SMALL_ATOM_EXT: u8 = 115;
/// `u32` pair count, keys and values interleaved.
pub const MAP_EXT: u8 = 116;
/// The pre-R8 closure; OTP 23 removed it. Not supported.
pub const FUN_EXT: u8 = 117;
/// `u16` length, UTF-8 name.
pub const ATOM_UTF8_EXT: u8 = 118;
/// `u8` length, UTF-8 name.
pub const SMALL_ATOM_UTF8_EXT: u8 = 119;
/// Node atom, `u64` id, `u32` creation.
pub const V4_PORT_EXT: u8 = 120;
/// OTP 26's node-local encoding (`term_to_binary(T, [local])`); never sent
/// between nodes. Not supported.
pub const LOCAL_EXT: u8 = 121;
/// OTP 29's native record (EEP 79): `u32` field count N, a flags byte
/// (bit 0: the definition is exported; the other bits must be 0), module
/// atom, record-name atom, N field-name atoms, then N values in the same
/// order. Layout from `erts/emulator/beam/external.c` (`enc_term_int`'s
/// `RECORD_DEF` case, `dec_term`'s `RECORD_EXT` case) at
/// garazdawi/otp@40b45c1359afcb09d4757029cb07fc8b559ddb4d and the tag
/// (`'C'`) from `erts/emulator/beam/external.h` at
/// garazdawi/otp@bbc057bbd1a3a6603819c61f45ea53f1edda478e: a fork of
/// erlang/otp carrying its native-record code (erlang/otp#10617) with the
/// atom-cache fix (#10676) and the duplicate-field check (#11410).
pub const RECORD_EXT: u8 = 67;
