//! Differential wire conformance: the same probes against OTP's C `epmd`
//! and `epmdx`, on private ports.
//!
//! Every test runs one case against each subject selected by
//! `EPMD_TEST_SUBJECT` (`otp`, `epmdx`, unset = both), in parallel, each
//! with its own daemon (`-port P -packet_timeout 1` plus the case's flags).
//! The case records a transcript (bytes received, how each connection
//! ended, state probes) and checks the values the spec and the measured C
//! epmd give; when both subjects ran, their masked transcripts must be
//! equal. `CONFORMANCE_SHOW=1` prints every transcript.
//!
//! Running:
//! - `EPMD_TEST_SUBJECT=otp cargo test -p epmd-conformance`: the reference
//!   alone (every case still checks the measured values);
//! - `cargo build -p epmdx && cargo test -p epmd-conformance`: both, compared;
//! - `EPMDX_BIN=/usr/bin/epmd cargo test -p epmd-conformance`: OTP against
//!   itself, a self-test of the masking and of the timing assumptions.
//!
//! Nothing here touches port 4369, runs a daemon without `-port`, or kills
//! anything but its own children (by PID, on drop).
//!
//! Case files, by section of docs/protocol.md (§8, OTP's protocol as the C epmd speaks it):
//! - `alive`: ALIVE2 replies, creations, name and Extra rules (§8.2, §8.8, §8.9, §8.12)
//! - `lookup`: PORT_PLEASE2 (§8.3, §8.11)
//! - `listing`: NAMES and DUMP (§8.4, §8.12)
//! - `framing`: request framing, garbage, pipelining, trickling (§8.1, §8.6)
//! - `timeouts`: `packet_timeout` and `delay_write` (§8.7)
//! - `admin`: KILL and STOP, relaxed mode (§8.5, §8.15)
//! - `lifecycle`: registration lifetime at scale, resets (§8.9)
//! - `local_peer`: the local-peer rule (§8.10)
//! - `listen`: `-address`, socket limits, port already taken (§8.13)
//! - `cli`: the client modes and usage errors (§8.14)

/// Fails the case with both values rendered when they differ.
macro_rules! expect_eq {
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let got = &$got;
        let want = &$want;
        if got != want {
            anyhow::bail!(
                "{}: got {:?}, want {:?}",
                format!($($what)+),
                got,
                want
            );
        }
    }};
}

/// Fails the case when two byte strings differ, rendering both.
macro_rules! expect_bytes {
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let got: &[u8] = &$got;
        let want: &[u8] = &$want;
        if got != want {
            anyhow::bail!(
                "{}: got `{}`, want `{}`",
                format!($($what)+),
                $crate::harness::render(got),
                $crate::harness::render(want)
            );
        }
    }};
}

mod harness;
mod probe;
mod procs;

mod admin;
mod alive;
mod cli;
mod framing;
mod lifecycle;
mod listen;
mod listing;
mod local_peer;
mod lookup;
mod timeouts;
