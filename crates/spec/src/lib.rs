//! netbind-spec: KubeVirt-compatible network specs, read, defaulted and validated.
//!
//! First stage of the pipeline (`manifest → spec → plan → apply/serve/render`), and pure:
//! it turns text into [`model::VmObject`]s ([`read`]), applies KubeVirt's defaults
//! ([`defaults`]), checks every rule KubeVirt's admission applies to networks and
//! interfaces and more ([`validate`]), and knows the pod-side names ([`naming`]) and the
//! Multus annotations ([`multus`]). No I/O beyond parsing bytes handed in.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod defaults;
pub mod model;
pub mod multus;
pub mod naming;
pub mod read;
pub mod schema;
pub mod source;
pub mod validate;

pub use cluster::ClusterConfig;
pub use model::{Interface, Kind, Network, VmObject};
pub use read::{Document, ReadError, parse_documents};
pub use validate::{Report, Violation, validate};
