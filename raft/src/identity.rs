//! Which cluster a data directory belongs to, and as which node.
//!
//! `<data>/cluster` holds two lines, `node_id=N` and `cluster_id=HEX`. It is written atomically
//! (temporary file, fsync, rename) when a node first forms a cluster or first hears from one, and
//! checked at every start: a data directory is never served under another node id, and a node
//! never accepts peer traffic from another cluster.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unreadable cluster identity file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data directory {data_dir} belongs to node {stored}, not node {configured}; start it with --node-id {stored} or use another data directory")]
    WrongNode { data_dir: PathBuf, stored: NodeId, configured: NodeId },
    #[error("this node belongs to cluster {ours}; refusing traffic from cluster {theirs}")]
    OtherCluster { ours: String, theirs: String },
}

/// The node's identity: fixed node id, and the cluster id once known.
#[derive(Debug)]
pub struct ClusterIdentity {
    node_id: NodeId,
    cluster_id: RwLock<Option<String>>,
    path: PathBuf,
}

impl ClusterIdentity {
    /// Read `<data_dir>/cluster`, or start a new identity for `node_id` if there is none.
    pub fn load(data_dir: &Path, node_id: NodeId) -> Result<ClusterIdentity, IdentityError> {
        let path = data_dir.join("cluster");
        let mut cluster_id = None;
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (stored, id) =
                    parse(&text).map_err(|reason| IdentityError::Corrupt { path: path.clone(), reason })?;
                if stored != node_id {
                    return Err(IdentityError::WrongNode {
                        data_dir: data_dir.to_path_buf(),
                        stored,
                        configured: node_id,
                    });
                }
                cluster_id = id;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(IdentityError::Io { path, source }),
        }
        let me = ClusterIdentity { node_id, cluster_id: RwLock::new(cluster_id), path };
        me.save()?;
        Ok(me)
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Give this node a new, random cluster id (when it forms a cluster). Keeps an existing one.
    pub fn ensure_new_cluster(&self) -> Result<String, IdentityError> {
        if let Some(id) = self.cluster_id() {
            return Ok(id);
        }
        let id = format!("{:032x}", rand::random::<u128>());
        self.adopt(&id)?;
        Ok(id)
    }

    /// Accept `theirs` as this node's cluster: stored on first contact, compared afterwards.
    pub fn adopt(&self, theirs: &str) -> Result<(), IdentityError> {
        let mut g = self.cluster_id.write().unwrap_or_else(|p| p.into_inner());
        match g.as_deref() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(IdentityError::OtherCluster { ours: ours.to_string(), theirs: theirs.to_string() }),
            None => {
                let previous = g.replace(theirs.to_string());
                if let Err(e) = write_atomically(&self.path, &render(self.node_id, g.as_deref())) {
                    *g = previous;
                    return Err(e);
                }
                tracing::info!(cluster_id = theirs, "joined cluster");
                Ok(())
            }
        }
    }

    fn save(&self) -> Result<(), IdentityError> {
        write_atomically(&self.path, &render(self.node_id, self.cluster_id().as_deref()))
    }
}

fn render(node_id: NodeId, cluster_id: Option<&str>) -> String {
    match cluster_id {
        Some(c) => format!("node_id={node_id}\ncluster_id={c}\n"),
        None => format!("node_id={node_id}\n"),
    }
}

fn parse(text: &str) -> Result<(NodeId, Option<String>), String> {
    let mut node_id = None;
    let mut cluster_id = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some(("node_id", v)) => node_id = Some(v.parse::<NodeId>().map_err(|e| format!("node_id {v:?}: {e}"))?),
            Some(("cluster_id", v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                cluster_id = Some(v.to_string())
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Ok((node_id.ok_or("no node_id line")?, cluster_id))
}

fn write_atomically(path: &Path, text: &str) -> Result<(), IdentityError> {
    minion_storage::vfs::write_atomic(&minion_storage::vfs::RealFs, path, text.as_bytes())
        .map_err(|source| IdentityError::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_kept_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = ClusterIdentity::load(dir.path(), 2).expect("new");
        assert_eq!(id.cluster_id(), None);
        id.adopt("abc123").expect("first contact");
        id.adopt("abc123").expect("same cluster");
        assert!(matches!(id.adopt("ffff"), Err(IdentityError::OtherCluster { .. })));
        drop(id);
        let again = ClusterIdentity::load(dir.path(), 2).expect("reload");
        assert_eq!(again.cluster_id().as_deref(), Some("abc123"));
        assert_eq!(again.ensure_new_cluster().expect("kept"), "abc123");
        let err = ClusterIdentity::load(dir.path(), 3).expect_err("other node id");
        assert!(err.to_string().contains("belongs to node 2"), "{err}");
        std::fs::write(dir.path().join("cluster"), "garbage\n").expect("write");
        assert!(matches!(ClusterIdentity::load(dir.path(), 2), Err(IdentityError::Corrupt { .. })));
    }
}
