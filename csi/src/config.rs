//! What the node service needs to know about its node, apart from the
//! engine's own paths.

/// The node plugin's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's id as the controller and the appliance know it
    /// (`NodeGetInfo`); for now a configured value.
    pub node_id: String,
    /// How many volumes Kubernetes may place on this node (0: no limit).
    pub max_volumes_per_node: i64,
}
