//! Why a plan could not be made. Each variant names the interface (and network, link or
//! field) involved and says what to do. Planning stops at the first error: a spec that
//! passed validation and a pod view that matches it never produce one, so these point at
//! an unvalidated spec or at a pod that does not look like the spec says.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "interface {interface}: no network of that name in spec.networks; add one or rename the interface"
    )]
    NoNetwork { interface: String },

    #[error("network {network}: needs exactly one source, pod or multus")]
    NoSource { network: String },

    #[error("interface {interface}: needs exactly one binding, found {found}")]
    Binding { interface: String, found: usize },

    #[error(
        "interface {interface}: binding {binding} is discontinued; use passtBinding or a binding plugin"
    )]
    Discontinued { interface: String, binding: String },

    #[error(
        "interface {interface}: binding plugin {plugin} is not registered in the cluster configuration"
    )]
    UnknownPlugin { interface: String, plugin: String },

    #[error(
        "interface {interface}: binding plugin {plugin} has domainAttachmentType {kind}; netbind knows tap and managedTap"
    )]
    UnknownAttachment {
        interface: String,
        plugin: String,
        kind: String,
    },

    #[error("interface {interface}: state {state} is not one of up, down, absent")]
    BadState { interface: String, state: String },

    #[error(
        "interface {interface} (network {network}): pod link {link} not found in the pod view; check that the pod has that network attached"
    )]
    MissingPodLink {
        interface: String,
        network: String,
        link: String,
    },

    #[error("interface {interface}: macAddress {mac} is not a MAC address like 02:00:00:aa:bb:cc")]
    BadMac { interface: String, mac: String },

    #[error("network {network}: {field} {cidr} {reason}")]
    BadCidr {
        network: String,
        field: &'static str,
        cidr: String,
        reason: &'static str,
    },

    #[error("interface {interface}: pciAddress {address} is not a PCI address like 0000:81:01.0")]
    BadPciAddress { interface: String, address: String },

    #[error("interface {interface}: dhcpOptions.ntpServers {server} is not an IPv4 address")]
    BadNtpServer { interface: String, server: String },

    #[error("interface {interface}: {field} {value} is out of range")]
    OutOfRange {
        interface: String,
        field: &'static str,
        value: i64,
    },

    #[error("interface {interface}: no fake bridge address left for interface number {index}")]
    FakeAddressExhausted { interface: String, index: usize },

    #[error("interface {interface} (network {network}): no SR-IOV VF found; looked in {looked}")]
    MissingVf {
        interface: String,
        network: String,
        looked: String,
    },

    #[error(
        "interface {interface}: annotation {annotation}: {value:?} is not one of vhostUser, stream"
    )]
    BadAttachment {
        interface: String,
        annotation: &'static str,
        value: String,
    },

    #[error("pod view: network-status cannot be read: {reason}")]
    NetworkStatus { reason: String },
}
