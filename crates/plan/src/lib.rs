//! netbind-plan: from a validated spec and a pod view to a `NetworkPlan`, and its renderings.
//!
//! Second stage of the pipeline, and pure: every decision — link names, addresses,
//! sysctls, nftables rules, DHCP/RA options, user-mode engine settings, the guest device —
//! is made here as data. `apply` (crate `netbind-netns`) only carries it out.
//!
//! Where things are:
//! - [`model`]: the plan's types ([`NetworkPlan`], [`InterfacePlan`], [`LinkStep`]…);
//! - [`bindings`]: the planner ([`plan`]) and one module per method — `bridge` (also
//!   managedTap), `masquerade` (links and the NAT rules), `sriov`, `usernet`, `tap`;
//! - [`dhcp`]: DHCPv4/DHCPv6/RA settings; [`nftables`]: rulesets, as `nft` text and JSON;
//! - [`podview`]: the pod as found, and the typical pod assumed without one;
//! - [`render`]: libvirt XML, QEMU arguments, the table, the wiring diagram (DOT, SVG);
//!   [`mac`]: MAC addresses.
#![forbid(unsafe_code)]

pub mod bindings;
pub mod dhcp;
pub mod error;
pub mod mac;
pub mod model;
pub mod nftables;
pub mod podview;
pub mod render;

pub use bindings::plan;
pub use error::PlanError;
pub use model::*;
pub use nftables::NftRuleset;
pub use podview::PodView;

impl NetworkPlan {
    /// A readable table per interface.
    pub fn to_table(&self) -> String {
        render::table::render(self)
    }

    /// The table with the guest devices (QEMU arguments, libvirt XML) per interface.
    pub fn to_table_with_devices(&self) -> String {
        render::table::render_with(self, render::table::Options { show_device: true })
    }

    /// The wiring diagram as a graphviz DOT graph.
    pub fn to_dot(&self) -> String {
        render::dot::render(self)
    }

    /// The wiring diagram as a standalone SVG image.
    pub fn to_svg(&self) -> String {
        render::svg::render(self)
    }

    /// Every guest device's libvirt XML, in interface order (for under `<devices>`).
    pub fn libvirt_xml(&self) -> String {
        self.interfaces
            .iter()
            .map(|i| i.guest.libvirt_xml.as_str())
            .collect()
    }

    /// What the devices need of the domain itself, for directly under `<domain>`: the
    /// shared `<memoryBacking>` of vhost-user NICs; empty when they need nothing.
    pub fn libvirt_domain_xml(&self) -> String {
        self.shared_memory
            .as_ref()
            .map(|m| m.libvirt_xml.clone())
            .unwrap_or_default()
    }

    /// The QEMU arguments of the whole plan: the shared memory vhost-user NICs need
    /// (once), then every guest device's, in interface order.
    pub fn qemu_args(&self) -> Vec<String> {
        let memory = self.shared_memory.iter().flat_map(|m| m.qemu_args.iter());
        memory
            .chain(
                self.interfaces
                    .iter()
                    .flat_map(|i| i.guest.qemu_args.iter()),
            )
            .cloned()
            .collect()
    }

    /// All NAT rules of the plan as one `nft -f` script.
    pub fn nft_text(&self) -> String {
        self.interfaces
            .iter()
            .filter_map(|i| i.nftables.as_ref())
            .map(NftRuleset::to_nft_text)
            .collect()
    }
}
