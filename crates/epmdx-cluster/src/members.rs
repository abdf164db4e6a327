//! The member set a reader holds, and the changes between two of them.
//! Pure: the watcher feeds it etcd's puts, deletes and re-listings, and it
//! returns what a consumer must act on.

use std::collections::BTreeMap;

use tracing::warn;

use crate::record::{Record, RecordError};

/// One change of the member set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node appeared, or its record changed (new transports, new
    /// creation): connect to it, or keep connecting with these transports.
    Up(Record),
    /// A node left (unregistered, halted, or its host's lease expired):
    /// stop retrying it.
    Down(String),
}

/// The current members of one cluster, with the keys whose values were
/// ignored as invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    nodes: BTreeMap<String, Record>,
    invalid: BTreeMap<String, RecordError>,
}

impl Members {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from `(node part of the key, value)` pairs, as a prefix
    /// read returns them; invalid values are kept aside (see
    /// [`Members::invalid`]) and logged.
    pub fn from_kvs<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut m = Self::new();
        for (node, value) in kvs {
            m.put(node, value);
        }
        m
    }

    /// Applies a put of `value` under the key of `node`. An invalid value is
    /// ignored with a warning and counted; if the node had a valid record it
    /// is reported down, since its record can no longer be believed.
    pub fn put(&mut self, node: &str, value: &[u8]) -> Option<Change> {
        match Record::parse_for(node, value) {
            Ok(rec) => {
                self.invalid.remove(node);
                if self.nodes.get(node) == Some(&rec) {
                    return None;
                }
                self.nodes.insert(node.to_owned(), rec.clone());
                Some(Change::Up(rec))
            }
            Err(e) => {
                warn!(key_node = %node.escape_debug(), error = %e, "ignoring an invalid cluster record");
                self.invalid.insert(node.to_owned(), e);
                self.nodes
                    .remove(node)
                    .map(|_| Change::Down(node.to_owned()))
            }
        }
    }

    /// Applies a delete of the key of `node`.
    pub fn delete(&mut self, node: &str) -> Option<Change> {
        self.invalid.remove(node);
        self.nodes
            .remove(node)
            .map(|_| Change::Down(node.to_owned()))
    }

    /// Replaces the set by a fresh listing (after a reconnect or a
    /// compaction) and returns the changes between the two: what happened
    /// while the watch was not running.
    pub fn replace(&mut self, fresh: Self) -> Vec<Change> {
        let changes = diff(&self.nodes, &fresh.nodes);
        *self = fresh;
        changes
    }

    /// The valid records, by node name.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.nodes.values()
    }

    /// The record of `node`, if it is a member.
    pub fn get(&self, node: &str) -> Option<&Record> {
        self.nodes.get(node)
    }

    /// How many valid members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there is no valid member.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The keys (node part) currently holding an invalid value, and why.
    pub fn invalid(&self) -> &BTreeMap<String, RecordError> {
        &self.invalid
    }

    /// Takes the valid records out.
    pub fn into_records(self) -> Vec<Record> {
        self.nodes.into_values().collect()
    }
}

/// The changes that turn `old` into `new`: `Down` for nodes gone, `Up` for
/// nodes new or changed; nodes unchanged produce nothing.
pub fn diff(old: &BTreeMap<String, Record>, new: &BTreeMap<String, Record>) -> Vec<Change> {
    let gone = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| Change::Down(k.clone()));
    let up = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(_, v)| Change::Up(v.clone()));
    gone.chain(up).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Transport;
    use epmd_proto::NodeName;

    fn rec(node: &str, port: u16) -> Record {
        Record::new(
            NodeName::new(node).unwrap(),
            vec![],
            1,
            vec![Transport::new("inet_tcp", port).unwrap()],
            false,
        )
        .unwrap()
    }

    #[test]
    fn puts_and_deletes() {
        let mut m = Members::new();
        let a = rec("a@h1", 1000);
        assert_eq!(
            m.put("a@h1", a.to_json().as_bytes()),
            Some(Change::Up(a.clone()))
        );
        // The same value again (a lease renewal re-put) changes nothing.
        assert_eq!(m.put("a@h1", a.to_json().as_bytes()), None);
        let a2 = rec("a@h1", 1001);
        assert_eq!(m.put("a@h1", a2.to_json().as_bytes()), Some(Change::Up(a2)));
        assert_eq!(m.delete("a@h1"), Some(Change::Down("a@h1".into())));
        assert_eq!(m.delete("a@h1"), None);
        assert!(m.is_empty());
    }

    #[test]
    fn invalid_values_are_counted_and_never_members() {
        let mut m = Members::new();
        let a = rec("a@h1", 1000);
        m.put("a@h1", a.to_json().as_bytes());
        assert_eq!(m.put("a@h1", b"garbage"), Some(Change::Down("a@h1".into())));
        assert_eq!(m.put("b@h1", br#"{"node":"b@h1"}"#), None);
        // A valid record copied under another node's key is not believed.
        assert_eq!(m.put("c@h1", a.to_json().as_bytes()), None);
        assert_eq!(m.len(), 0);
        assert_eq!(m.invalid().len(), 3);
        assert!(matches!(
            m.invalid().get("c@h1"),
            Some(RecordError::KeyMismatch { .. })
        ));
        assert_eq!(m.delete("b@h1"), None);
        assert_eq!(m.invalid().len(), 2);
    }

    #[test]
    fn replacing_reports_what_changed_meanwhile() {
        let (a, b, c) = (rec("a@h1", 1), rec("b@h2", 2), rec("c@h3", 3));
        let b2 = rec("b@h2", 22);
        let mut m = Members::from_kvs([
            ("a@h1", a.to_json().as_bytes()),
            ("b@h2", b.to_json().as_bytes()),
        ]);
        let (bj, cj) = (b2.to_json(), c.to_json());
        let fresh = Members::from_kvs([("b@h2", bj.as_bytes()), ("c@h3", cj.as_bytes())]);
        let changes = m.replace(fresh);
        assert_eq!(
            changes,
            vec![
                Change::Down("a@h1".into()),
                Change::Up(b2),
                Change::Up(c.clone())
            ]
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("c@h3"), Some(&c));
    }
}
