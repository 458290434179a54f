//! The steps of a plan: [`steps`] flattens a plan into numbered steps — per interface, in
//! plan order, its [`LinkStep`]s, then its sysctls, then its nftables ruleset (one step).
//! The numbers are what the journal records ([`crate::journal::Entry::step`]) and what the
//! test hooks count; [`StepError`] is what one step's check, act or undo can fail with.

use netbind_plan::NetworkPlan;
use netbind_plan::model::{InterfacePlan, LinkStep, Sysctl};
use netbind_plan::nftables::NftRuleset;

use super::options::FAIL_AFTER_STEP;
use crate::journal::JournalError;
use crate::link::LinkError;
use crate::nft::NftError;
use crate::sys::TapError;
use crate::sysctl::SysctlError;

/// What went wrong in one step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(
        "link {link} already exists ({kind}) and netbind did not create it; remove it or pick another pod"
    )]
    Exists { link: String, kind: String },
    #[error("link {link} is not a bridge port (set its master first)")]
    NotAPort { link: String },
    #[error("failure injected after step {after} ({FAIL_AFTER_STEP})")]
    Injected { after: usize },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// One step of a plan.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    Link(&'a LinkStep),
    Sysctl(&'a Sysctl),
    Nft(&'a NftRuleset),
}

#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// 1-based.
    pub number: usize,
    pub interface: &'a str,
    pub kind: StepKind<'a>,
}

/// The plan's steps in the order `apply` runs them.
pub fn steps(plan: &NetworkPlan) -> Vec<Step<'_>> {
    plan.interfaces
        .iter()
        .flat_map(|iface| kinds(iface).map(move |kind| (iface.name.as_str(), kind)))
        .enumerate()
        .map(|(i, (interface, kind))| Step {
            number: i + 1,
            interface,
            kind,
        })
        .collect()
}

/// One interface's steps: its link steps, then its sysctls, then its nftables ruleset.
fn kinds(iface: &InterfacePlan) -> impl Iterator<Item = StepKind<'_>> {
    let links = iface.links.iter().map(StepKind::Link);
    let sysctls = iface.sysctls.iter().map(StepKind::Sysctl);
    let nft = iface.nftables.as_ref().filter(|n| !n.is_empty());
    links.chain(sysctls).chain(nft.map(StepKind::Nft))
}

impl Step<'_> {
    /// The step in words: `create bridge k6t-eth0`, `set eth0 down`…
    pub fn describe(&self) -> String {
        match self.kind {
            StepKind::Link(l) => l.to_string(),
            StepKind::Sysctl(s) => format!("sysctl {}={}", s.key, s.value),
            StepKind::Nft(n) => format!("load nftables ({})", n.summary()),
        }
    }

    /// The link the step works on, if any.
    pub fn link(&self) -> Option<&str> {
        match self.kind {
            StepKind::Link(l) => Some(l.link()),
            StepKind::Sysctl(_) | StepKind::Nft(_) => None,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use netbind_plan::model::*;

    /// An interface of the bridge binding with these steps (for tests of plans).
    pub(crate) fn iface(name: &str, links: Vec<LinkStep>, sysctls: Vec<Sysctl>) -> InterfacePlan {
        InterfacePlan {
            name: name.into(),
            network: name.into(),
            source: Source::Pod,
            method: Method::Bridge,
            binding: "bridge".into(),
            state: netbind_plan::model::LinkState::Up,
            pod_link: PodLinkInfo {
                name: "eth0".into(),
                present: true,
                mac: None,
                mtu: 1500,
                addresses: vec![],
            },
            links,
            sysctls,
            nftables: None,
            dhcp4: None,
            dhcp6: None,
            ra: None,
            usernet: None,
            guest: GuestDevice {
                alias: "ua-x".into(),
                model: "virtio".into(),
                qemu_driver: "virtio-net-pci".into(),
                mac: None,
                mtu: None,
                queues: 1,
                pci_address: None,
                boot_order: None,
                acpi_index: None,
                link_down: false,
                backend: GuestBackend::Tap {
                    device: "tap0".into(),
                },
                libvirt_xml: String::new(),
                qemu_args: vec![],
            },
            notes: vec![],
        }
    }

    #[test]
    fn steps_run_links_then_sysctls_per_interface_numbered_from_one() {
        let plan = NetworkPlan {
            interfaces: vec![
                iface(
                    "a",
                    vec![
                        LinkStep::SetUp { link: "x".into() },
                        LinkStep::SetDown { link: "y".into() },
                    ],
                    vec![Sysctl::new("net.ipv4.ip_forward", "1")],
                ),
                iface(
                    "b",
                    vec![LinkStep::RenameLink {
                        from: "p".into(),
                        to: "q".into(),
                    }],
                    vec![],
                ),
            ],
            ..NetworkPlan::default()
        };
        let s = steps(&plan);
        let words: Vec<_> = s
            .iter()
            .map(|s| (s.number, s.interface, s.describe()))
            .collect();
        assert_eq!(
            words,
            [
                (1, "a", "set x up".to_string()),
                (2, "a", "set y down".to_string()),
                (3, "a", "sysctl net.ipv4.ip_forward=1".to_string()),
                (4, "b", "rename p to q".to_string()),
            ]
        );
        assert_eq!(s[3].link(), Some("p"));
        assert_eq!(s[2].link(), None);
    }
}
