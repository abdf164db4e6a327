//! Cluster membership from etcd (feature `etcd`): the records epmdx
//! daemons publish under `/epmdx/NAME/nodes/<node>` (docs/cluster.md),
//! followed with `epmdx-cluster`'s [`MemberWatch`] (one prefix watch, which
//! re-lists after a reconnect or a compaction, so no change is lost). Bad
//! records are left out and counted by the watch's reader; a record
//! protocol this node has no transport for is dropped here, never
//! interned.

use epmdx_cluster::{Change, ClusterName, ClusterNameError, MemberWatch, Record};

use super::{BoxFuture, Discovery, Member, MemberChange, MemberSource};
use crate::transport::Proto;

/// Follows cluster `NAME` on etcd endpoints (tried in turn).
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    endpoints: Vec<String>,
    cluster: ClusterName,
}

impl EtcdDiscovery {
    /// A discovery of `cluster` (`[A-Za-z0-9_.-]{1,64}`) on `endpoints`
    /// (`http://host:2379`, ...). Connects when the node starts, and keeps
    /// reconnecting while etcd is away (the last member set stays).
    pub fn new(endpoints: Vec<String>, cluster: &str) -> Result<Self, ClusterNameError> {
        Ok(Self {
            endpoints,
            cluster: ClusterName::new(cluster)?,
        })
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        self.cluster.as_str()
    }
}

impl Discovery for EtcdDiscovery {
    fn open(&self) -> Box<dyn MemberSource> {
        Box::new(Watch(MemberWatch::new(
            self.endpoints.clone(),
            self.cluster.clone(),
        )))
    }
}

struct Watch(MemberWatch);

impl MemberSource for Watch {
    fn next(&mut self) -> BoxFuture<'_, MemberChange> {
        Box::pin(async move {
            match self.0.next().await {
                Change::Up(r) => MemberChange::Up(member_of(&r)),
                Change::Down(n) => MemberChange::Down(n),
            }
        })
    }
}

/// A checked record as a [`Member`]. Every protocol a record may name
/// (`epmdx_cluster::KNOWN_PROTOCOLS`) is one of [`Proto`]'s.
pub fn member_of(r: &Record) -> Member {
    Member {
        node: r.node().as_str().to_owned(),
        addresses: r.addresses().to_vec(),
        transports: r
            .transports()
            .iter()
            .filter_map(|t| Some((Proto::from_name(t.proto().as_str())?, t.port())))
            .collect(),
        legacy: r.legacy(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_a_member() {
        let r = Record::parse(
            br#"{"node":"a@h1","host":"h1","addresses":["10.0.0.1","fd00::1"],"creation":7,
                "transports":[{"proto":"inet_tls","port":4001},{"proto":"inet_tcp","port":4000}],
                "legacy":false}"#,
        )
        .expect("valid record");
        let m = member_of(&r);
        assert_eq!(m.node, "a@h1");
        assert_eq!(
            m.addresses,
            vec![
                "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(
            m.transports,
            vec![(Proto::InetTls, 4001), (Proto::InetTcp, 4000)]
        );
        assert!(!m.legacy);
    }

    #[test]
    fn cluster_names_are_checked() {
        assert!(EtcdDiscovery::new(vec!["http://127.0.0.1:2379".into()], "a/b").is_err());
        let d = EtcdDiscovery::new(vec!["http://127.0.0.1:2379".into()], "prod-1").unwrap();
        assert_eq!(d.cluster(), "prod-1");
    }
}
