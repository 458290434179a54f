//! Cluster configuration: what KubeVirt keeps in its CR under `spec.configuration.network`
//! plus the feature gates that change network validation.
//!
//! Accepted shapes (YAML or JSON), `--cluster-config FILE`:
//! - netbind's own: `{network: {...}, featureGates: [...]}`;
//! - a whole `kind: KubeVirt` CR: `spec.configuration.network` and
//!   `spec.configuration.developerConfiguration.featureGates` are read from it.
//!
//! Defaults without a file are KubeVirt's own: `defaultNetworkInterface: bridge`,
//! `permitBridgeInterfaceOnPodNetwork: true`, no binding plugins; feature gates
//! `PasstBinding` and `PortRangesSpec` on (netbind implements both).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::read::{self, ReadError};
use crate::schema::{self, UnknownField};
use crate::source::{self, Entry, Node, Shape};

pub const GATE_PASST_BINDING: &str = "PasstBinding";
pub const GATE_PORT_RANGES: &str = "PortRangesSpec";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default = "default_gates")]
    pub feature_gates: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            network: NetworkConfig::default(),
            feature_gates: default_gates(),
        }
    }
}

fn default_gates() -> Vec<String> {
    vec![GATE_PASST_BINDING.into(), GATE_PORT_RANGES.into()]
}

/// KubeVirt's `spec.configuration.network`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Binding given to the automatically added pod interface: `bridge`, `masquerade`
    /// or `passtBinding` (or the name of a registered binding plugin).
    #[serde(default = "default_interface")]
    pub default_network_interface: String,
    #[serde(default = "yes")]
    pub permit_bridge_interface_on_pod_network: bool,
    /// Registered network binding plugins, by name.
    #[serde(default)]
    pub binding: BTreeMap<String, BindingPlugin>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            default_network_interface: default_interface(),
            permit_bridge_interface_on_pod_network: true,
            binding: BTreeMap::new(),
        }
    }
}

fn default_interface() -> String {
    "bridge".into()
}

fn yes() -> bool {
    true
}

/// A network binding plugin, as registered in KubeVirt's CR.
///
/// How netbind connects an interface using it: `domainAttachmentType: tap` → the plugin's
/// CNI made a tap or macvtap device named like the pod link, and the guest uses it
/// directly; `managedTap` → netbind builds bridge and tap, without DHCP; no
/// `domainAttachmentType` (sidecar plugins such as passt and slirp) → netbind's own
/// user-mode engine serves the interface in place of the sidecar.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingPlugin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_attachment_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_attachment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_resource_overhead: Option<Value>,
}

impl ClusterConfig {
    pub fn gate(&self, name: &str) -> bool {
        self.feature_gates.iter().any(|g| g == name)
    }

    /// Reads a cluster configuration file (netbind's shape or a KubeVirt CR).
    pub fn parse(bytes: &[u8]) -> Result<ClusterConfig, ClusterConfigError> {
        Ok(Self::read(bytes)?.0)
    }

    /// As [`ClusterConfig::parse`], with the keys KubeVirt does not know (file order).
    pub fn read(bytes: &[u8]) -> Result<(ClusterConfig, Vec<UnknownField>), ClusterConfigError> {
        let (value, node) = read::parse_single(bytes).map_err(ClusterConfigError::Read)?;
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        if value.get("kind").and_then(Value::as_str) != Some("KubeVirt") {
            let unknown = schema::unknown_fields(&node, &schema::CLUSTER_CONFIG, "");
            let config = read::typed(text, 1, value, &node).map_err(ClusterConfigError::Read)?;
            return Ok((config, unknown));
        }
        let unknown = schema::unknown_fields(&node, &schema::KUBEVIRT_CR, "");
        // netbind's shape cut out of the CR; positions and paths stay the CR's.
        let mut out = serde_json::Map::new();
        let mut entries = Vec::new();
        for (field, path) in [
            ("network", "spec.configuration.network"),
            (
                "featureGates",
                "spec.configuration.developerConfiguration.featureGates",
            ),
        ] {
            if let Some(v) = source::value_at(&value, path) {
                out.insert(field.into(), v.clone());
                entries.push(Entry {
                    key: field.into(),
                    key_pos: node.locate(path),
                    value: subtree(&node, path),
                });
            }
        }
        let cut = Node {
            pos: node.pos,
            shape: Shape::Map(entries),
        };
        let config = read::typed(text, 1, Value::Object(out), &cut).map_err(|e| match e {
            ReadError::Field {
                doc,
                path,
                message,
                line,
                column,
                snippet,
            } => ReadError::Field {
                doc,
                path: cr_path(&path),
                message,
                line,
                column,
                snippet,
            },
            other => other,
        });
        Ok((config.map_err(ClusterConfigError::Read)?, unknown))
    }
}

/// The node at `path`, if it exists (else an empty one at the document's start).
fn subtree(node: &Node, path: &str) -> Node {
    let mut n = node;
    for key in path.split('.') {
        match n.get(key) {
            Some(e) => n = &e.value,
            None => {
                return Node {
                    pos: node.pos,
                    shape: Shape::Scalar,
                };
            }
        }
    }
    n.clone()
}

/// A path in netbind's shape, as the path in the KubeVirt CR it was cut from.
fn cr_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("featureGates") {
        format!("spec.configuration.developerConfiguration.featureGates{rest}")
    } else {
        format!("spec.configuration.{path}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error(transparent)]
    Read(ReadError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubevirts() {
        let c = ClusterConfig::parse(b"{}").unwrap();
        assert_eq!(c.network.default_network_interface, "bridge");
        assert!(c.network.permit_bridge_interface_on_pod_network);
        assert!(c.gate(GATE_PASST_BINDING));
    }

    #[test]
    fn kubevirt_cr_is_understood() {
        let c = ClusterConfig::parse(
            b"kind: KubeVirt\nspec:\n  configuration:\n    developerConfiguration:\n      featureGates: [Foo]\n    network:\n      binding:\n        slirp:\n          sidecarImage: quay.io/x\n",
        )
        .unwrap();
        assert!(c.gate("Foo"));
        assert!(!c.gate(GATE_PASST_BINDING));
        assert!(c.network.binding.contains_key("slirp"));
    }

    #[test]
    fn unknown_keys_and_type_errors_are_located_in_the_cr() {
        let text = b"kind: KubeVirt\nspec:\n  configuration:\n    networkz: {}\n    network:\n      permitBridgeInterfaceOnPodNetwork: maybe\n";
        let err = ClusterConfig::read(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "6:42: spec.configuration.network.permitBridgeInterfaceOnPodNetwork: expected a boolean, got string \"maybe\"\n     6 |       permitBridgeInterfaceOnPodNetwork: maybe\n       |                                          ^"
        );
        let text = b"kind: KubeVirt\nspec:\n  configuration:\n    networkz: {}\n";
        let (_, unknown) = ClusterConfig::read(text).unwrap();
        assert_eq!(unknown[0].path, "spec.configuration.networkz");
        assert_eq!(unknown[0].suggestion, Some("network"));
        assert_eq!((unknown[0].pos.line, unknown[0].pos.column), (4, 5));
    }
}
