//! Which field names KubeVirt knows, for warning about the ones it does not.
//!
//! How it works: each object type of KubeVirt's API that netbind checks is an [`Object`]:
//! its field names (from KubeVirt's `core/v1` Go types, json tags) and, for each, what the
//! value holds: another object, a list or a map of objects, or something not looked into
//! ([`Field::Any`]: scalars and the parts of the spec netbind does not read, such as disks
//! or affinity). [`unknown_fields`] walks a document's position tree ([`Node`]) along
//! that schema and reports every key no type lists, with its path, its position and the
//! nearest known name by edit distance.
//!
//! What holds: a value of the wrong shape (a list where an object belongs) is not looked
//! into here — reading reports it as a type error; keys are reported in file order; a
//! warning never changes whether a manifest is valid (KubeVirt may have added the field
//! after this list was written).

use crate::source::{Node, Pos, Shape};

/// What a field's value holds.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// Not looked into.
    Any,
    Object(&'static Object),
    ListOf(&'static Object),
    /// A map from names the user picks to objects (`binding: {NAME: plugin}`).
    MapOf(&'static Object),
}

#[derive(Debug)]
pub struct Object {
    pub fields: &'static [(&'static str, Field)],
}

impl Object {
    fn field(&self, name: &str) -> Option<Field> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }
}

/// A key that no type lists where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Full path in KubeVirt notation, ending in the key.
    pub path: String,
    pub pos: Pos,
    /// The known field closest to it, when one is close enough to be a typo.
    pub suggestion: Option<&'static str>,
}

impl UnknownField {
    pub fn message(&self) -> String {
        match self.suggestion {
            Some(s) => format!("unknown field, ignored; did you mean `{s}`?"),
            None => "unknown field, ignored".into(),
        }
    }
}

use Field::{Any, ListOf, MapOf, Object as Obj};

const EMPTY: Object = Object { fields: &[] };

static OBJECT_META: Object = Object {
    fields: &[
        ("name", Any),
        ("generateName", Any),
        ("namespace", Any),
        ("selfLink", Any),
        ("uid", Any),
        ("resourceVersion", Any),
        ("generation", Any),
        ("creationTimestamp", Any),
        ("deletionTimestamp", Any),
        ("deletionGracePeriodSeconds", Any),
        ("labels", Any),
        ("annotations", Any),
        ("ownerReferences", Any),
        ("finalizers", Any),
        ("managedFields", Any),
    ],
};

static PORT: Object = Object {
    fields: &[("name", Any), ("protocol", Any), ("port", Any)],
};

static PORT_RANGE: Object = Object {
    fields: &[("protocol", Any), ("start", Any), ("end", Any)],
};

static DHCP_PRIVATE_OPTION: Object = Object {
    fields: &[("option", Any), ("value", Any)],
};

static DHCP_OPTIONS: Object = Object {
    fields: &[
        ("bootFileName", Any),
        ("tftpServerName", Any),
        ("ntpServers", Any),
        ("privateOptions", ListOf(&DHCP_PRIVATE_OPTION)),
    ],
};

static PLUGIN_BINDING: Object = Object {
    fields: &[("name", Any)],
};

static INTERFACE: Object = Object {
    fields: &[
        ("name", Any),
        ("model", Any),
        ("bridge", Obj(&EMPTY)),
        ("slirp", Obj(&EMPTY)),
        ("masquerade", Obj(&EMPTY)),
        ("sriov", Obj(&EMPTY)),
        ("macvtap", Obj(&EMPTY)),
        ("passt", Obj(&EMPTY)),
        ("passtBinding", Obj(&EMPTY)),
        ("binding", Obj(&PLUGIN_BINDING)),
        ("ports", ListOf(&PORT)),
        ("portRanges", ListOf(&PORT_RANGE)),
        ("macAddress", Any),
        ("bootOrder", Any),
        ("pciAddress", Any),
        ("dhcpOptions", Obj(&DHCP_OPTIONS)),
        ("tag", Any),
        ("acpiIndex", Any),
        ("state", Any),
    ],
};

static POD_NETWORK: Object = Object {
    fields: &[("vmNetworkCIDR", Any), ("vmIPv6NetworkCIDR", Any)],
};

static MULTUS_NETWORK: Object = Object {
    fields: &[("networkName", Any), ("default", Any)],
};

static NETWORK: Object = Object {
    fields: &[
        ("name", Any),
        ("pod", Obj(&POD_NETWORK)),
        ("multus", Obj(&MULTUS_NETWORK)),
        ("resourceClaim", Any),
    ],
};

static DEVICES: Object = Object {
    fields: &[
        ("useVirtioTransitional", Any),
        ("disableHotplug", Any),
        ("disks", Any),
        ("watchdog", Any),
        ("interfaces", ListOf(&INTERFACE)),
        ("inputs", Any),
        ("autoattachPodInterface", Any),
        ("autoattachGraphicsDevice", Any),
        ("autoattachSerialConsole", Any),
        ("logSerialConsole", Any),
        ("autoattachMemBalloon", Any),
        ("autoattachInputDevice", Any),
        ("autoattachVSOCK", Any),
        ("rng", Any),
        ("blockMultiQueue", Any),
        ("networkInterfaceMultiqueue", Any),
        ("gpus", Any),
        ("downwardMetrics", Any),
        ("panicDevices", Any),
        ("filesystems", Any),
        ("hostDevices", Any),
        ("clientPassthrough", Any),
        ("sound", Any),
        ("tpm", Any),
        ("video", Any),
    ],
};

static CPU: Object = Object {
    fields: &[
        ("cores", Any),
        ("sockets", Any),
        ("maxSockets", Any),
        ("threads", Any),
        ("model", Any),
        ("features", Any),
        ("dedicatedCpuPlacement", Any),
        ("numa", Any),
        ("isolateEmulatorThread", Any),
        ("realtime", Any),
    ],
};

static RESOURCES: Object = Object {
    fields: &[
        ("requests", Any),
        ("limits", Any),
        ("overcommitGuestOverhead", Any),
    ],
};

static DOMAIN: Object = Object {
    fields: &[
        ("resources", Obj(&RESOURCES)),
        ("cpu", Obj(&CPU)),
        ("memory", Any),
        ("machine", Any),
        ("firmware", Any),
        ("clock", Any),
        ("features", Any),
        ("devices", Obj(&DEVICES)),
        ("ioThreadsPolicy", Any),
        ("ioThreads", Any),
        ("chassis", Any),
        ("launchSecurity", Any),
        ("rebootPolicy", Any),
    ],
};

/// KubeVirt's `VirtualMachineInstanceSpec`.
static VMI_SPEC: Object = Object {
    fields: &[
        ("priorityClassName", Any),
        ("domain", Obj(&DOMAIN)),
        ("nodeSelector", Any),
        ("affinity", Any),
        ("schedulerName", Any),
        ("serviceAccountName", Any),
        ("tolerations", Any),
        ("topologySpreadConstraints", Any),
        ("evictionStrategy", Any),
        ("startStrategy", Any),
        ("terminationGracePeriodSeconds", Any),
        ("volumes", Any),
        ("livenessProbe", Any),
        ("readinessProbe", Any),
        ("hostname", Any),
        ("subdomain", Any),
        ("networks", ListOf(&NETWORK)),
        ("dnsPolicy", Any),
        ("dnsConfig", Any),
        ("accessCredentials", Any),
        ("architecture", Any),
        ("resourceClaims", Any),
        ("utilityVolumes", Any),
    ],
};

static VMI_TEMPLATE: Object = Object {
    fields: &[("metadata", Obj(&OBJECT_META)), ("spec", Obj(&VMI_SPEC))],
};

static VM_SPEC: Object = Object {
    fields: &[
        ("running", Any),
        ("runStrategy", Any),
        ("instancetype", Any),
        ("preference", Any),
        ("template", Obj(&VMI_TEMPLATE)),
        ("dataVolumeTemplates", Any),
        ("updateVolumesStrategy", Any),
    ],
};

/// A `VirtualMachineInstance` document.
pub static VMI: Object = Object {
    fields: &[
        ("apiVersion", Any),
        ("kind", Any),
        ("metadata", Obj(&OBJECT_META)),
        ("spec", Obj(&VMI_SPEC)),
        ("status", Any),
    ],
};

/// A `VirtualMachine` document.
pub static VM: Object = Object {
    fields: &[
        ("apiVersion", Any),
        ("kind", Any),
        ("metadata", Obj(&OBJECT_META)),
        ("spec", Obj(&VM_SPEC)),
        ("status", Any),
    ],
};

static BINDING_MIGRATION: Object = Object {
    fields: &[("method", Any)],
};

static BINDING_PLUGIN: Object = Object {
    fields: &[
        ("sidecarImage", Any),
        ("networkAttachmentDefinition", Any),
        ("domainAttachmentType", Any),
        ("migration", Obj(&BINDING_MIGRATION)),
        ("downwardAPI", Any),
        ("computeResourceOverhead", Any),
    ],
};

/// KubeVirt's `NetworkConfiguration`.
static NETWORK_CONFIG: Object = Object {
    fields: &[
        ("defaultNetworkInterface", Any),
        ("permitSlirpInterface", Any),
        ("permitBridgeInterfaceOnPodNetwork", Any),
        ("binding", MapOf(&BINDING_PLUGIN)),
    ],
};

/// netbind's own cluster configuration: `{network, featureGates}`.
pub static CLUSTER_CONFIG: Object = Object {
    fields: &[("network", Obj(&NETWORK_CONFIG)), ("featureGates", Any)],
};

static DEVELOPER_CONFIG: Object = Object {
    fields: &[
        ("featureGates", Any),
        ("disabledFeatureGates", Any),
        ("pvcTolerateLessSpaceUpToPercent", Any),
        ("minimumReservePVCBytes", Any),
        ("memoryOvercommit", Any),
        ("nodeSelectors", Any),
        ("useEmulation", Any),
        ("cpuAllocationRatio", Any),
        ("minimumClusterTSCFrequency", Any),
        ("diskVerification", Any),
        ("logVerbosity", Any),
        ("clusterProfiler", Any),
    ],
};

/// KubeVirt's `KubeVirtConfiguration`: only `network` and `developerConfiguration` are
/// looked into.
static KUBEVIRT_CONFIG: Object = Object {
    fields: &[
        ("cpuModel", Any),
        ("cpuRequest", Any),
        ("developerConfiguration", Obj(&DEVELOPER_CONFIG)),
        ("emulatedMachines", Any),
        ("imagePullPolicy", Any),
        ("migrations", Any),
        ("machineType", Any),
        ("network", Obj(&NETWORK_CONFIG)),
        ("ovmfPath", Any),
        ("selinuxLauncherType", Any),
        ("defaultRuntimeClass", Any),
        ("smbios", Any),
        ("architectureConfiguration", Any),
        ("evictionStrategy", Any),
        ("additionalGuestMemoryOverheadRatio", Any),
        ("supportContainerResources", Any),
        ("supportedGuestAgentVersions", Any),
        ("memBalloonStatsPeriod", Any),
        ("permittedHostDevices", Any),
        ("mediatedDevicesConfiguration", Any),
        ("minCPUModel", Any),
        ("obsoleteCPUModels", Any),
        ("virtualMachineInstancesPerNode", Any),
        ("apiConfiguration", Any),
        ("webhookConfiguration", Any),
        ("controllerConfiguration", Any),
        ("handlerConfiguration", Any),
        ("tlsConfiguration", Any),
        ("seccompConfiguration", Any),
        ("vmStateStorageClass", Any),
        ("virtualMachineOptions", Any),
        ("ksmConfiguration", Any),
        ("autoCPULimitNamespaceLabelSelector", Any),
        ("liveUpdateConfiguration", Any),
        ("vmRolloutStrategy", Any),
        ("commonInstancetypesDeployment", Any),
        ("virtTemplateDeployment", Any),
        ("instancetype", Any),
        ("hypervisors", Any),
        ("changedBlockTrackingLabelSelectors", Any),
        ("persistentReservationConfiguration", Any),
        ("confidentialCompute", Any),
        ("roleAggregationStrategy", Any),
    ],
};

static KUBEVIRT_SPEC: Object = Object {
    fields: &[
        ("imageTag", Any),
        ("imageRegistry", Any),
        ("imagePullPolicy", Any),
        ("imagePullSecrets", Any),
        ("monitorNamespace", Any),
        ("serviceMonitorNamespace", Any),
        ("monitorAccount", Any),
        ("workloadUpdateStrategy", Any),
        ("uninstallStrategy", Any),
        ("certificateRotateStrategy", Any),
        ("productVersion", Any),
        ("productName", Any),
        ("productComponent", Any),
        ("synchronizationPort", Any),
        ("configuration", Obj(&KUBEVIRT_CONFIG)),
        ("infra", Any),
        ("workloads", Any),
        ("customizeComponents", Any),
    ],
};

/// A whole `kind: KubeVirt` CR used as cluster configuration.
pub static KUBEVIRT_CR: Object = Object {
    fields: &[
        ("apiVersion", Any),
        ("kind", Any),
        ("metadata", Obj(&OBJECT_META)),
        ("spec", Obj(&KUBEVIRT_SPEC)),
        ("status", Any),
    ],
};

/// Every key under `node` that `schema` does not list, in file order; paths start with
/// `prefix` (empty at a document's root).
pub fn unknown_fields(node: &Node, schema: &'static Object, prefix: &str) -> Vec<UnknownField> {
    let mut out = Vec::new();
    // Iterative walk, children pushed in reverse so they come out in file order.
    let mut todo: Vec<(&Node, &'static Object, String)> = vec![(node, schema, prefix.into())];
    while let Some((node, schema, path)) = todo.pop() {
        let Shape::Map(entries) = &node.shape else {
            continue;
        };
        let mut children = Vec::new();
        for e in entries {
            let here = if path.is_empty() {
                e.key.clone()
            } else {
                format!("{path}.{}", e.key)
            };
            match schema.field(&e.key) {
                None => out.push(UnknownField {
                    suggestion: nearest(&e.key, schema),
                    path: here,
                    pos: e.key_pos,
                }),
                Some(Any) => {}
                Some(Obj(o)) => children.push((&e.value, o, here)),
                Some(ListOf(o)) => {
                    if let Shape::Seq(items) = &e.value.shape {
                        for (i, item) in items.iter().enumerate() {
                            children.push((item, o, format!("{here}[{i}]")));
                        }
                    }
                }
                Some(MapOf(o)) => {
                    if let Shape::Map(named) = &e.value.shape {
                        for n in named {
                            children.push((&n.value, o, format!("{here}.{}", n.key)));
                        }
                    }
                }
            }
        }
        todo.extend(children.into_iter().rev());
    }
    // Nested keys were visited after their siblings: put everything in file order.
    out.sort_by_key(|u| u.pos);
    out
}

/// The known field closest to `key` by edit distance (case-insensitive; a swap of two
/// neighbouring letters is one edit), if it is close
/// enough to be a typo: at most a third of the key's length, and at most 3 edits.
fn nearest(key: &str, schema: &Object) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).clamp(1, 3);
    schema
        .fields
        .iter()
        .map(|(name, _)| {
            (
                strsim::osa_distance(&lower, &name.to_ascii_lowercase()),
                *name,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::split;

    fn node(yaml: &str) -> Node {
        split(serde_saphyr::from_str(yaml).unwrap()).1
    }

    #[test]
    fn typos_anywhere_are_found_in_file_order_with_a_suggestion() {
        let n = node(
            "kind: VirtualMachine\nspec:\n  template:\n    spec:\n      domain:\n        devices:\n          interfacs: []\n      networks:\n      - {name: a, pod: {}, multis: {}}\n  runing: true\n",
        );
        let found = unknown_fields(&n, &VM, "");
        let summary: Vec<_> = found
            .iter()
            .map(|u| (u.path.as_str(), u.pos.line, u.pos.column, u.suggestion))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "spec.template.spec.domain.devices.interfacs",
                    7,
                    11,
                    Some("interfaces")
                ),
                (
                    "spec.template.spec.networks[0].multis",
                    9,
                    28,
                    Some("multus")
                ),
                ("spec.runing", 10, 3, Some("running")),
            ]
        );
    }

    #[test]
    fn far_names_get_no_suggestion_and_open_parts_are_not_checked() {
        let n = node(
            "kind: VirtualMachineInstance\nspec:\n  volumes: [{whatever: 1}]\n  domain:\n    devices:\n      interfaces: [{name: a, colour: red}]\n",
        );
        let found = unknown_fields(&n, &VMI, "");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.domain.devices.interfaces[0].colour");
        assert_eq!(found[0].suggestion, None);
        assert_eq!(found[0].message(), "unknown field, ignored");
    }

    #[test]
    fn cluster_config_plugins_are_checked_by_name() {
        let n = node("networkz: {}\nnetwork:\n  binding:\n    passt: {sidecarImag: x}\n");
        let found = unknown_fields(&n, &CLUSTER_CONFIG, "");
        let paths: Vec<_> = found
            .iter()
            .map(|u| (u.path.as_str(), u.suggestion))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("networkz", Some("network")),
                ("network.binding.passt.sidecarImag", Some("sidecarImage")),
            ]
        );
    }
}
