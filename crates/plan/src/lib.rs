//! netbind-plan: from a validated spec and a pod view to a `NetworkPlan`, and its renderings.
//!
//! Second stage of the pipeline, and pure: every decision — link names, addresses,
//! sysctls, nftables rules, DHCP/RA options, user-mode engine settings, the guest device —
//! is made here as data. `apply` (crate `netbind-netns`) only carries it out.
#![forbid(unsafe_code)]

pub mod podview;

pub use podview::PodView;

use netbind_spec::{ClusterConfig, VmObject};
use serde::{Deserialize, Serialize};

/// What netbind will build for one VM. (Skeleton: filled in by the planner.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPlan {
    /// `Kind/namespace/name` of the planned object.
    pub object: String,
    /// Where the pod view came from (`default`, `file:…`, `netns:…`).
    pub pod_view: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: {message}")]
    Interface { path: String, message: String },
}

/// Plans a defaulted, validated object against a pod view.
pub fn plan(obj: &VmObject, cluster: &ClusterConfig, pod: &PodView) -> Result<NetworkPlan, PlanError> {
    let _ = cluster;
    Ok(NetworkPlan { object: obj.display_name(), pod_view: pod.source.clone() })
}

impl NetworkPlan {
    /// A readable table per interface.
    pub fn to_table(&self) -> String {
        format!("{}\n", self.object)
    }
}
