//! netbind-plan: from a validated spec and a pod view to a `NetworkPlan`, and its renderings.
//!
//! Second stage of the pipeline, and pure: every decision — link names, addresses,
//! sysctls, nftables rules, DHCP/RA options, user-mode engine settings, the guest device —
//! is made here as data. `apply` (crate `netbind-netns`) only carries it out.
#![forbid(unsafe_code)]

pub mod podview;

pub use podview::PodView;
