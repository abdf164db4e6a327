//! `erldist`: a Rust Erlang-distribution node that talks to real OTP nodes.
//!
//! A [`Node`] has a name, a cookie and a listener; it registers with EPMD
//! (the epmdx extension when the daemon speaks it, plain ALIVE2 otherwise),
//! answers `net_adm:ping`, and connects to other nodes lazily on first send,
//! as BEAM does. [`Mailbox`]es are its processes: real pids that Erlang can
//! send to, link to and monitor.
//!
//! ```no_run
//! # async fn demo() -> Result<(), erldist::NodeError> {
//! use erldist::{Node, NodeConfig};
//! use erl_term::Term;
//! let node = Node::start(NodeConfig::new("rust@localhost", "secret")).await?;
//! let mut echo = node.register_mailbox("echo")?;
//! assert!(node.ping("erl@localhost").await);
//! let mb = node.mailbox();
//! mb.send_named("shell", "erl@localhost", Term::atom("hello")).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`node`]: [`Node`], its configuration, connection management, EPMD
//!   registration, `ping`, `rpc` and `call`.
//! - [`mailbox`]: [`Mailbox`], send / receive / link / monitor.
//! - [`control`]: distribution control messages (no I/O).
//! - [`op_flags`]: which control message needs which distribution flag;
//!   every signal sent goes through it.
//! - `conn`: handshake driving, framing, ticks, the reader and writer tasks.
//! - [`cluster`]: following a cluster's members (etcd with the `etcd`
//!   feature): the pure membership core and the source traits.
//! - [`admission`]: pending-handshake permits and the failed-cookie
//!   lockout (no I/O).
//! - [`logfmt`]: terms printed for logs, bounded in size and work.
//! - [`cookie`]: the cookie from an option, `ERLANG_COOKIE` or
//!   `~/.erlang.cookie`.
//!
//! Terms are [`erl_term::Term`]; the handshake and the packet layer
//! (framing, ticks, decoding within [`DecodeLimits`]) are `dist-proto`'s.

pub mod admission;
pub mod cluster;
mod conn;
pub mod control;
pub mod cookie;
pub mod logfmt;
pub mod mailbox;
pub mod node;
pub mod op_flags;
pub mod policy;
pub mod transport;

pub use conn::ConnError;
pub use dist_proto::packet::DecodeLimits;

/// Tunes glibc's allocator for a process that moves large messages: keep
/// freed memory instead of returning it to the kernel after each one, so a
/// stream of 64 KiB binaries does not page-fault every buffer in again
/// (measured: 14 faults per 64 KiB message before, none after). Process-wide,
/// so it is for binaries to call at start, not something the library does
/// behind their back. The Erlang VM gets the same effect from its own
/// allocators.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; both values are
    // valid for glibc.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}
pub use mailbox::Mailbox;
pub use node::{ConnInfo, Node, NodeConfig, NodeError, NodeEvent};
