//! The key layout: `/epmdx/NAME/nodes/<node>`, one key per node, so a
//! prefix read lists a cluster and a prefix watch follows it. Pure.

use epmd_proto::NodeName;

/// The root every epmdx key lives under.
pub const ROOT: &str = "/epmdx/";

/// The longest cluster name accepted.
pub const MAX_CLUSTER_NAME: usize = 64;

/// Why a string is not a [`ClusterName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterNameError {
    /// Empty or longer than [`MAX_CLUSTER_NAME`].
    #[error("cluster name must be 1 to {MAX_CLUSTER_NAME} characters")]
    Length,
    /// A character outside `[A-Za-z0-9_.-]` (a `/` would change the layout).
    #[error("cluster name may only contain [A-Za-z0-9_.-]")]
    BadChar,
}

/// A cluster name: `[A-Za-z0-9_.-]{1,64}`, never `.` or `..`, so it is one
/// path segment of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

impl ClusterName {
    /// Checks and wraps `name`.
    pub fn new(name: &str) -> Result<Self, ClusterNameError> {
        if name.is_empty() || name.len() > MAX_CLUSTER_NAME {
            return Err(ClusterNameError::Length);
        }
        if name == "." || name == ".." {
            return Err(ClusterNameError::BadChar);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(ClusterNameError::BadChar);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `/epmdx/NAME/nodes/`: the prefix of every member key.
    pub fn nodes_prefix(&self) -> String {
        format!("{ROOT}{}/nodes/", self.0)
    }

    /// `/epmdx/NAME/nodes/<node>`.
    pub fn node_key(&self, node: &NodeName) -> String {
        format!("{}{}", self.nodes_prefix(), node.as_str())
    }

    /// The node part of a member key, if `key` is one of this cluster's
    /// (not checked as a node name: [`crate::Record::parse_for`] does).
    pub fn node_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(ROOT)?.strip_prefix(self.0.as_str())?;
        let node = rest.strip_prefix("/nodes/")?;
        (!node.is_empty() && !node.contains('/')).then_some(node)
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClusterName {
    type Err = ClusterNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let c = ClusterName::new("prod-eu.1").unwrap();
        let n = NodeName::new("a@h1").unwrap();
        assert_eq!(c.nodes_prefix(), "/epmdx/prod-eu.1/nodes/");
        assert_eq!(c.node_key(&n), "/epmdx/prod-eu.1/nodes/a@h1");
        assert_eq!(c.node_of_key("/epmdx/prod-eu.1/nodes/a@h1"), Some("a@h1"));
        assert_eq!(c.node_of_key("/epmdx/prod-eu.1/nodes/"), None);
        assert_eq!(c.node_of_key("/epmdx/prod-eu.1/nodes/a/b"), None);
        assert_eq!(c.node_of_key("/epmdx/prod-eu.12/nodes/a@h1"), None);
        assert_eq!(c.node_of_key("/epmdx/other/nodes/a@h1"), None);
    }

    #[test]
    fn names_are_one_segment() {
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(ClusterName::new(bad).is_err(), "{bad:?}");
        }
        for ok in ["a", "A_b-c.d", &"x".repeat(64)] {
            assert!(ClusterName::new(ok).is_ok(), "{ok:?}");
        }
    }
}
