//! The epmdx daemon as a library: an OTP-compatible EPMD server with the
//! multi-transport extension.
//!
//! # Layout
//! - [`registry`]: live nodes, the unregistered-names list and OTP's creation
//!   rules; pure data, no I/O, no clock.
//! - [`listen`]: binding the listening sockets exactly where the C epmd would,
//!   before the process daemonises.
//! - [`respond`]: what to answer: one pure function from a request and its
//!   peer to an outcome (reply, register, stop, kill, close).
//! - [`access`]: `-allow` and `-rate_limit` for non-local peers; pure data,
//!   time passed in.
//! - [`server`]: the tokio Listener/Handler pair, connection bounds and
//!   timeouts.
//! - [`handover`]: the in-place upgrade (re-exec, sockets and registry
//!   passed to the new process).
//! - [`metrics`]: what the daemon counts, and its Prometheus text form;
//!   [`exposition`]: `GET /metrics` on the `-metrics` address.
//!
//! The wire format lives in `epmd-proto`; this crate decides what to answer.

mod accept;
pub mod access;
pub mod exposition;
pub mod handover;
pub mod listen;
pub mod metrics;
pub mod registry;
pub mod respond;
pub mod server;

pub use server::{Config, Server, ServerError};
