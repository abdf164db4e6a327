//! Distribution capability flags (`DFLAG_*`).
//!
//! Values are taken from OTP's code (`erts/emulator/beam/dist.h` and
//! `lib/kernel/include/dist.hrl`), not from its documentation, which gives
//! [`MANDATORY_25_DIGEST`] the wrong bit (`1 bsl 36`). The unit tests pin
//! every value so a typo cannot slip in; other Rust implementations have
//! shipped wrong FRAGMENTS, SPAWN and NAME_ME values.
//!
//! Every flag a node sends is a promise to decode what the peer will then
//! send (SEND_SENDER makes OTP use control op 22 instead of 2, FRAGMENTS makes
//! it fragment, ...). That is why the optional part of [`node_flags`] is a
//! parameter chosen by the node layer, and why [`DEFAULT_OPTIONAL`] leaves out
//! [`DIST_HDR_ATOM_CACHE`] and [`FRAGMENTS`]: the node layer turns those on
//! only once it decodes distribution headers and reassembles fragments.

/// Bit 0: the node is visible (not hidden). Set unless the node is hidden.
pub const PUBLISHED: u64 = 0x1;
/// Bit 1: the old atom cache. Obsolete; never set.
pub const ATOM_CACHE: u64 = 0x2;
/// Bit 2: extended (multi-word) references. Mandatory.
pub const EXTENDED_REFERENCES: u64 = 0x4;
/// Bit 3: process monitors across the distribution.
pub const DIST_MONITOR: u64 = 0x8;
/// Bit 4: `FUN_EXT`. Mandatory.
pub const FUN_TAGS: u64 = 0x10;
/// Bit 5: monitors by registered name.
pub const DIST_MONITOR_NAME: u64 = 0x20;
/// Bit 6: the hidden-node atom cache. Obsolete; never set.
pub const HIDDEN_ATOM_CACHE: u64 = 0x40;
/// Bit 7: `NEW_FUN_EXT`. Mandatory.
pub const NEW_FUN_TAGS: u64 = 0x80;
/// Bit 8: extended pids and ports. Mandatory.
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
/// Bit 9: `EXPORT_EXT`. Mandatory since OTP 25.
pub const EXPORT_PTR_TAG: u64 = 0x200;
/// Bit 10: `BIT_BINARY_EXT`. Mandatory since OTP 25.
pub const BIT_BINARIES: u64 = 0x400;
/// Bit 11: `NEW_FLOAT_EXT`. Mandatory since OTP 25.
pub const NEW_FLOATS: u64 = 0x800;
/// Bit 12: unicode in the I/O protocol.
pub const UNICODE_IO: u64 = 0x1000;
/// Bit 13: the distribution header and atom cache (`131, 68` packets).
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
/// Bit 14: `SMALL_ATOM_EXT`.
pub const SMALL_ATOM_TAGS: u64 = 0x4000;
/// Bit 15: ETS compression. Internal to the emulator; never on the wire.
pub const ETS_COMPRESSED: u64 = 0x8000;
/// Bit 16: UTF-8 atoms. Mandatory.
pub const UTF8_ATOMS: u64 = 0x10000;
/// Bit 17: `MAP_EXT`. Mandatory since OTP 25.
pub const MAP_TAG: u64 = 0x20000;
/// Bit 18: 32-bit creations (`NEW_PID_EXT`, ...). Mandatory since OTP 23.
pub const BIG_CREATION: u64 = 0x40000;
/// Bit 19: `SEND_SENDER` (op 22) replaces `SEND` (op 2).
pub const SEND_SENDER: u64 = 0x80000;
/// Bit 20: sequential-trace labels may be any term.
pub const BIG_SEQTRACE_LABELS: u64 = 0x100000;
/// Bit 21: a pending connection. Internal to the emulator; never on the wire.
pub const PENDING_CONNECT: u64 = 0x200000;
/// Bit 22: exit signals carry a payload (ops 24–28).
pub const EXIT_PAYLOAD: u64 = 0x400000;
/// Bit 23: fragmented messages (`131, 69` / `131, 70`). Not 0x8000000.
pub const FRAGMENTS: u64 = 0x800000;
/// Bit 24: the version 6 (`'N'`) handshake. Mandatory since OTP 25.
pub const HANDSHAKE_23: u64 = 0x1000000;
/// Bit 25: the new link protocol (`UNLINK_ID`). Mandatory from OTP 26.
pub const UNLINK_ID: u64 = 0x2000000;
/// Bit 26: shorthand for "all OTP 25 mandatory flags". **Not** `1 << 36`,
/// whatever OTP's documentation says.
pub const MANDATORY_25_DIGEST: u64 = 0x4000000;
/// Bits 27–31: reserved; never set.
pub const RESERVED: u64 = 0xf800_0000;
/// Bit 32: `SPAWN_REQUEST` / `SPAWN_REPLY` (ops 29–32).
pub const SPAWN: u64 = 1 << 32;
/// Bit 33: a request for a dynamic name (the `named:` status), not a
/// capability.
pub const NAME_ME: u64 = 1 << 33;
/// Bit 34: version 4 node containers (pid/port/ref). Mandatory from OTP 26.
pub const V4_NC: u64 = 1 << 34;
/// Bit 35: process aliases (`ALIAS_SEND`, ops 33–34). OTP 24+.
pub const ALIAS: u64 = 1 << 35;
/// Bit 36: local external format. Internal to the emulator; never on the
/// wire. (This is the bit the documentation wrongly gives to the digest.)
pub const LOCAL_EXT: u64 = 1 << 36;
/// Bit 37: alternate-activity signals. OTP 28+; never advertise it without
/// implementing it.
pub const ALTACT_SIG: u64 = 1 << 37;

/// The flags OTP 25 requires of every peer: 0x0107_0F94.
pub const MANDATORY_25: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | NEW_FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23;

/// The flags OTP 26 and later require of every peer: the OTP 25 set plus
/// UNLINK_ID and V4_NC, 0x4_0307_0F94.
pub const MANDATORY_26: u64 = MANDATORY_25 | UNLINK_ID | V4_NC;

/// The flags this crate requires of a peer by default: what current OTP
/// enforces (the OTP 26 set). OTP 25 nodes send all of them.
pub const MANDATORY: u64 = MANDATORY_26;

/// The optional flags a node advertises by default. Each is a promise to
/// decode the corresponding traffic (monitors, SEND_SENDER, payload exits,
/// small atoms, unicode I/O).
///
/// Off by default, until the node layer enables them:
/// - [`DIST_HDR_ATOM_CACHE`]: the peer would send `131, 68` headers with an
///   atom cache instead of pass-through `112` packets;
/// - [`FRAGMENTS`]: the peer would split large messages into fragments;
/// - [`SPAWN`] and [`ALIAS`]: the peer would send spawn requests and alias
///   sends, which the node must then answer.
pub const DEFAULT_OPTIONAL: u64 =
    DIST_MONITOR | DIST_MONITOR_NAME | SEND_SENDER | EXIT_PAYLOAD | SMALL_ATOM_TAGS | UNICODE_IO;

/// Flags that must never appear in what this node sends: emulator-internal
/// bits, reserved bits and the OTP 28 alternate-activity flag.
pub const NEVER_SENT: u64 = ETS_COMPRESSED | PENDING_CONNECT | RESERVED | LOCAL_EXT | ALTACT_SIG;

/// The full flag set this node sends: every OTP 25 and OTP 26 mandatory bit
/// individually, plus [`MANDATORY_25_DIGEST`] (for peers that look only at
/// the digest), plus [`PUBLISHED`] unless hidden, plus `optional`.
///
/// Bits of [`NEVER_SENT`] are removed from `optional`.
pub const fn node_flags(optional: u64, published: bool) -> u64 {
    let base = MANDATORY_25 | MANDATORY_26 | MANDATORY_25_DIGEST;
    let visible = if published { PUBLISHED } else { 0 };
    base | visible | (optional & !NEVER_SENT)
}

/// The flags a peer is treated as having: a peer that sets
/// [`MANDATORY_25_DIGEST`] has every OTP 25 mandatory flag, as OTP expands it
/// on receive.
pub const fn expand_digest(flags: u64) -> u64 {
    if flags & MANDATORY_25_DIGEST != 0 {
        flags | MANDATORY_25
    } else {
        flags
    }
}

/// The bits of `required` that a peer sending `flags` lacks, after digest
/// expansion. Zero means the peer is acceptable.
pub const fn missing_required(flags: u64, required: u64) -> u64 {
    required & !expand_digest(flags)
}

/// The [`MANDATORY`] bits a peer sending `flags` lacks, after digest
/// expansion. Zero means the peer is acceptable.
pub const fn missing_mandatory(flags: u64) -> u64 {
    missing_required(flags, MANDATORY)
}

/// The names of the flags set in `flags`, lowest bit first, for error
/// messages and logs. Unknown bits are shown as `bit N`.
pub fn names(flags: u64) -> Vec<String> {
    (0..64)
        .filter(|b| flags & (1u64 << b) != 0)
        .map(|b| match name_of(1u64 << b) {
            Some(n) => n.to_owned(),
            None => format!("bit {b}"),
        })
        .collect()
}

/// The name of a single flag bit, as in `dist.h` without the `DFLAG_` prefix.
pub fn name_of(flag: u64) -> Option<&'static str> {
    Some(match flag {
        PUBLISHED => "PUBLISHED",
        ATOM_CACHE => "ATOM_CACHE",
        EXTENDED_REFERENCES => "EXTENDED_REFERENCES",
        DIST_MONITOR => "DIST_MONITOR",
        FUN_TAGS => "FUN_TAGS",
        DIST_MONITOR_NAME => "DIST_MONITOR_NAME",
        HIDDEN_ATOM_CACHE => "HIDDEN_ATOM_CACHE",
        NEW_FUN_TAGS => "NEW_FUN_TAGS",
        EXTENDED_PIDS_PORTS => "EXTENDED_PIDS_PORTS",
        EXPORT_PTR_TAG => "EXPORT_PTR_TAG",
        BIT_BINARIES => "BIT_BINARIES",
        NEW_FLOATS => "NEW_FLOATS",
        UNICODE_IO => "UNICODE_IO",
        DIST_HDR_ATOM_CACHE => "DIST_HDR_ATOM_CACHE",
        SMALL_ATOM_TAGS => "SMALL_ATOM_TAGS",
        ETS_COMPRESSED => "ETS_COMPRESSED",
        UTF8_ATOMS => "UTF8_ATOMS",
        MAP_TAG => "MAP_TAG",
        BIG_CREATION => "BIG_CREATION",
        SEND_SENDER => "SEND_SENDER",
        BIG_SEQTRACE_LABELS => "BIG_SEQTRACE_LABELS",
        PENDING_CONNECT => "PENDING_CONNECT",
        EXIT_PAYLOAD => "EXIT_PAYLOAD",
        FRAGMENTS => "FRAGMENTS",
        HANDSHAKE_23 => "HANDSHAKE_23",
        UNLINK_ID => "UNLINK_ID",
        MANDATORY_25_DIGEST => "MANDATORY_25_DIGEST",
        SPAWN => "SPAWN",
        NAME_ME => "NAME_ME",
        V4_NC => "V4_NC",
        ALIAS => "ALIAS",
        LOCAL_EXT => "LOCAL_EXT",
        ALTACT_SIG => "ALTACT_SIG",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_dist_h() {
        let table: [(u64, u32); 33] = [
            (PUBLISHED, 0),
            (ATOM_CACHE, 1),
            (EXTENDED_REFERENCES, 2),
            (DIST_MONITOR, 3),
            (FUN_TAGS, 4),
            (DIST_MONITOR_NAME, 5),
            (HIDDEN_ATOM_CACHE, 6),
            (NEW_FUN_TAGS, 7),
            (EXTENDED_PIDS_PORTS, 8),
            (EXPORT_PTR_TAG, 9),
            (BIT_BINARIES, 10),
            (NEW_FLOATS, 11),
            (UNICODE_IO, 12),
            (DIST_HDR_ATOM_CACHE, 13),
            (SMALL_ATOM_TAGS, 14),
            (ETS_COMPRESSED, 15),
            (UTF8_ATOMS, 16),
            (MAP_TAG, 17),
            (BIG_CREATION, 18),
            (SEND_SENDER, 19),
            (BIG_SEQTRACE_LABELS, 20),
            (PENDING_CONNECT, 21),
            (EXIT_PAYLOAD, 22),
            (FRAGMENTS, 23),
            (HANDSHAKE_23, 24),
            (UNLINK_ID, 25),
            (MANDATORY_25_DIGEST, 26),
            (SPAWN, 32),
            (NAME_ME, 33),
            (V4_NC, 34),
            (ALIAS, 35),
            (LOCAL_EXT, 36),
            (ALTACT_SIG, 37),
        ];
        for (flag, bit) in table {
            assert_eq!(flag, 1u64 << bit, "{:?} is bit {bit}", name_of(flag));
            assert!(name_of(flag).is_some());
        }
        // The documented traps, spelled out.
        assert_eq!(MANDATORY_25_DIGEST, 0x400_0000);
        assert_ne!(MANDATORY_25_DIGEST, 1 << 36);
        assert_eq!(FRAGMENTS, 0x80_0000);
        assert_eq!(SPAWN, 0x1_0000_0000);
        assert_eq!(NAME_ME, 0x2_0000_0000);
        assert_eq!(V4_NC, 0x4_0000_0000);
        assert_eq!(ALIAS, 0x8_0000_0000);
        assert_eq!(RESERVED, 0xf800_0000);
        assert_eq!((27..32).map(|b| 1u64 << b).sum::<u64>(), RESERVED);
    }

    #[test]
    fn mandatory_sets() {
        assert_eq!(MANDATORY_25, 0x0107_0F94);
        assert_eq!(MANDATORY_26, 0x4_0307_0F94);
        assert_eq!(MANDATORY, MANDATORY_26);
    }

    #[test]
    fn default_node_flags() {
        let f = node_flags(DEFAULT_OPTIONAL, true);
        assert_eq!(f & MANDATORY_26, MANDATORY_26);
        assert_ne!(f & MANDATORY_25_DIGEST, 0);
        assert_ne!(f & PUBLISHED, 0);
        assert_eq!(f & (DIST_HDR_ATOM_CACHE | FRAGMENTS | SPAWN | ALIAS), 0);
        assert_eq!(f & NEVER_SENT, 0);
        assert_eq!(f & NAME_ME, 0);
        assert_eq!(node_flags(DEFAULT_OPTIONAL, false) & PUBLISHED, 0);
        assert_eq!(
            node_flags(LOCAL_EXT | RESERVED | FRAGMENTS, true) & NEVER_SENT,
            0
        );
        assert_eq!(missing_mandatory(f), 0);
    }

    #[test]
    fn digest_expansion() {
        assert_eq!(
            expand_digest(MANDATORY_25_DIGEST),
            MANDATORY_25_DIGEST | MANDATORY_25
        );
        assert_eq!(expand_digest(PUBLISHED), PUBLISHED);
        // The digest covers OTP 25 only: UNLINK_ID and V4_NC stay missing.
        assert_eq!(missing_mandatory(MANDATORY_25_DIGEST), UNLINK_ID | V4_NC);
        assert_eq!(
            missing_mandatory(MANDATORY_25_DIGEST | UNLINK_ID | V4_NC),
            0
        );
        assert_eq!(missing_required(MANDATORY_25_DIGEST, MANDATORY_25), 0);
        assert_eq!(
            missing_mandatory(MANDATORY_26 & !BIG_CREATION & !HANDSHAKE_23),
            BIG_CREATION | HANDSHAKE_23
        );
        assert_eq!(missing_mandatory(0), MANDATORY_26);
    }

    #[test]
    fn flag_names() {
        assert_eq!(
            names(PUBLISHED | MANDATORY_25_DIGEST | (1 << 40)),
            ["PUBLISHED", "MANDATORY_25_DIGEST", "bit 40"]
        );
    }
}
