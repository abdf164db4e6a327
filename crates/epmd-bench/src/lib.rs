//! Bounded EPMD load generator: compares epmdx with OTP's C `epmd`.
//! Usage and results: `docs/benchmarks.md`.
//!
//! The binary is `epmd-loadgen` (`src/main.rs`); this library holds its parts
//! so they can be tested and reused:
//!
//! - [`sys`]: `/proc` readings (daemon CPU time and RSS) and `RLIMIT_NOFILE`;
//! - [`net`]: blocking client sockets bound to a chosen 127/8 source address,
//!   so tens of thousands of connections to one daemon port stay cheap;
//! - [`register`]: holding N registrations as N open ALIVE2 connections;
//! - [`lookup`]: the closed-loop PORT_PLEASE2 workload, one connection per
//!   lookup, latencies in an HDR histogram (OS-thread or tokio engine);
//! - [`compare`]: subjects side by side, rounds interleaved, medians;
//! - [`capacity`]: registrations until refusal, RSS per registration;
//! - [`stats`]: medians, formatting, a minimal JSON writer.
//!
//! Everything is bounded: windows have a duration and a request cap, every
//! lookup and registration has a timeout, connection counts are capped by an
//! explicit file-descriptor budget, and only 127.0.0.0/8 is used. Daemons run
//! on private ports (never 4369) and are killed by PID when dropped.

pub mod capacity;
pub mod compare;
pub mod lookup;
pub mod net;
pub mod register;
pub mod stats;
pub mod sys;
