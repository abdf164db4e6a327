//! Cluster-wide, transport-aware node discovery for epmdx (docs/cluster.md).
//!
//! Every epmdx daemon started with `-etcd URLS -cluster NAME` publishes each
//! live registration as one JSON [`Record`] under
//! `/epmdx/NAME/nodes/<alive@host>`, attached to a lease the daemon keeps
//! alive; readers (`epmdx cluster nodes`, erldist, the Erlang adapter) list
//! and watch that prefix and learn, for every node of the cluster, which
//! transports it offers, without asking the remote host's EPMD.
//!
//! # Layout
//! - [`record`]: the record, its JSON form and the validating parser
//!   (pure).
//! - [`key`]: the cluster name and the key layout (pure).
//! - [`members`]: a reader's member set and the changes between two of
//!   them (pure).
//! - [`publish`]: the [`Publisher`] trait any backend implements, the
//!   bookkeeping of what is published, the non-blocking hand-off from the
//!   EPMD side and the task that reconciles them.
//! - [`etcd`]: the etcd v3 backend (`etcd-client`): publisher, reader,
//!   watch with reconnect.

pub mod etcd;
pub mod key;
pub mod members;
pub mod publish;
pub mod record;

pub use etcd::{parse_endpoints, EtcdPublisher, EtcdReader, MemberWatch};
pub use key::{ClusterName, ClusterNameError};
pub use members::{Change, Members};
pub use publish::{drive, DriveConfig, Publisher, Session, Updates};
pub use record::{Record, RecordError, Transport, KNOWN_PROTOCOLS};

use std::time::Duration;

/// Why a cluster operation failed. Every failure is transient from the
/// daemon's point of view: it is retried, and never affects EPMD service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The etcd client reported an error (unreachable, no leader, refused).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A request did not complete in time.
    #[error("etcd request timed out after {0:?}")]
    Timeout(Duration),
    /// A publish was attempted with no live session.
    #[error("no live etcd lease")]
    NoSession,
    /// The endpoint list is empty or has an empty entry.
    #[error("bad etcd endpoint list {0:?}")]
    Endpoints(String),
}
