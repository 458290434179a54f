//! Calling Debian's real CNI plugins the way kubelet and Multus do.
//!
//! `ADD` and `DEL` run `/usr/lib/cni/<type>` with the CNI environment (`CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`, and kubelet's `CNI_ARGS`) and
//! the network configuration on stdin. The plugin process runs inside the *node* namespace
//! (`ip netns exec NODE …`), so whatever it builds on the "host" side lands there. A failing
//! plugin prints a CNI error object on stdout; it becomes [`Error::Cni`] with its code, msg
//! and details. [`CniAttachment`] calls `DEL` with the same arguments on drop.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde::Deserialize;

use crate::netns::{Netns, unique_suffix};
use crate::{Error, Result, cmd};

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";

/// A CNI result (spec 1.0.0; 0.4.0 has the same shape for what is read here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<CniInterface>,
    #[serde(default)]
    pub ips: Vec<CniIp>,
    #[serde(default)]
    pub routes: Vec<CniRoute>,
    #[serde(default)]
    pub dns: CniDns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CniInterface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The netns path for interfaces inside the container; absent for host-side ones.
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniIp {
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
    pub address: IpNet,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniRoute {
    pub dst: IpNet,
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CniDns {
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

impl CniResult {
    /// The interface inside the sandbox (the pod side).
    pub fn sandbox_interface(&self) -> Option<&CniInterface> {
        self.interfaces.iter().find(|i| i.sandbox.is_some())
    }

    /// Its MAC, as the plugin reported it.
    pub fn mac(&self) -> Option<&str> {
        self.sandbox_interface().map(|i| i.mac.as_str())
    }

    /// Every IP the result gives the interface inside the sandbox, in result order.
    pub fn sandbox_ips(&self) -> Vec<&CniIp> {
        let sandbox = self.interfaces.iter().position(|i| i.sandbox.is_some());
        self.ips
            .iter()
            .filter(|ip| sandbox.is_some() && ip.interface == sandbox)
            .collect()
    }

    /// The first IPv4 address with its prefix.
    pub fn ipv4(&self) -> Option<IpNet> {
        self.ips
            .iter()
            .map(|i| i.address)
            .find(|a| a.addr().is_ipv4())
    }

    /// The first IPv6 address with its prefix.
    pub fn ipv6(&self) -> Option<IpNet> {
        self.ips
            .iter()
            .map(|i| i.address)
            .find(|a| a.addr().is_ipv6())
    }

    /// The gateway of the first address of the family of `v6`.
    pub fn gateway(&self, v6: bool) -> Option<IpAddr> {
        self.ips
            .iter()
            .find(|i| i.address.addr().is_ipv6() == v6)
            .and_then(|i| i.gateway)
    }
}

/// Entry points for plugin calls.
pub struct Cni;

impl Cni {
    /// `ADD`: runs the plugin named by the configuration's `type` inside `node`, wiring
    /// `ifname` into `pod`. The returned attachment calls `DEL` on drop.
    pub fn add(
        node: &Netns,
        pod: &Netns,
        ifname: &str,
        config: &serde_json::Value,
    ) -> Result<CniAttachment> {
        let plugin = config
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::Fixture(format!("CNI config has no \"type\": {config}")))?
            .to_string();
        crate::require_privileges(&["ip", &format!("{CNI_PATH}/{plugin}")])?;
        let mut attachment = CniAttachment {
            result: CniResult::default(),
            plugin,
            node: node.name().to_string(),
            netns: pod.path().display().to_string(),
            pod_name: pod.name().to_string(),
            ifname: ifname.to_string(),
            container_id: format!("nbtestbed-{}", unique_suffix()),
            config: config.to_string(),
            deleted: false,
        };
        let stdout = match attachment.call("ADD") {
            Ok(out) => out,
            Err(e) => {
                // ADD may have half-built things; DEL is how CNI undoes that.
                let _ = attachment.call("DEL");
                attachment.deleted = true;
                return Err(e);
            }
        };
        attachment.result = serde_json::from_str(&stdout).map_err(|source| Error::CniResult {
            plugin: attachment.plugin.clone(),
            stdout: stdout.clone(),
            source,
        })?;
        Ok(attachment)
    }
}

/// One successful `ADD`; `DEL` on drop (or with [`CniAttachment::del`]).
#[derive(Debug)]
pub struct CniAttachment {
    pub result: CniResult,
    plugin: String,
    node: String,
    netns: String,
    pod_name: String,
    ifname: String,
    container_id: String,
    config: String,
    deleted: bool,
}

impl CniAttachment {
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The network configuration passed on stdin.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Calls `DEL` now and reports its failure.
    pub fn del(mut self) -> Result<()> {
        self.deleted = true;
        self.call("DEL").map(|_| ())
    }

    fn call(&self, command: &str) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node, &format!("{CNI_PATH}/{}", self.plugin)])
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_PATH", CNI_PATH)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                    self.pod_name, self.container_id
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("CNI_COMMAND={command} {}", cmd::display(&c));
        let mut child = c.spawn().map_err(|source| Error::Spawn {
            command: shown.clone(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(self.config.as_bytes())
                .map_err(|source| Error::Spawn {
                    command: shown.clone(),
                    source,
                })?;
        }
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            command: shown.clone(),
            source,
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        #[derive(Deserialize)]
        struct CniError {
            #[serde(default)]
            code: i64,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            details: String,
        }
        let err = serde_json::from_str::<CniError>(&stdout).unwrap_or(CniError {
            code: -1,
            msg: format!(
                "exit {}; stdout: {}; stderr: {}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            details: String::new(),
        });
        Err(Error::Cni(Box::new(crate::CniFailure {
            command: command.to_string(),
            plugin: self.plugin.clone(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
            code: err.code,
            msg: err.msg,
            details: err.details,
        })))
    }
}

impl Drop for CniAttachment {
    fn drop(&mut self) {
        if !self.deleted {
            self.deleted = true;
            let _ = self.call("DEL");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_plugin_result_parses_into_addresses_gateways_and_the_sandbox_link() {
        let text = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"nbr1","mac":"aa:bb:cc:00:00:01"},{"name":"veth1","mac":"aa:bb:cc:00:00:02"},{"name":"eth0","mac":"aa:bb:cc:00:00:03","sandbox":"/run/netns/p"}],"ips":[{"interface":2,"address":"10.88.0.2/24","gateway":"10.88.0.1"},{"interface":2,"address":"fd00:88::2/64","gateway":"fd00:88::1"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"fd00:88::1"}],"dns":{"nameservers":["10.88.0.10"]}}"#;
        let r: CniResult = serde_json::from_str(text).unwrap();
        assert_eq!(r.sandbox_interface().unwrap().name, "eth0");
        assert_eq!(r.mac(), Some("aa:bb:cc:00:00:03"));
        assert_eq!(r.ipv4().unwrap().to_string(), "10.88.0.2/24");
        assert_eq!(r.ipv6().unwrap().to_string(), "fd00:88::2/64");
        assert_eq!(r.gateway(false).unwrap().to_string(), "10.88.0.1");
        assert_eq!(r.routes[1].gw.unwrap().to_string(), "fd00:88::1");
        assert_eq!(r.dns.nameservers.len(), 1);
        let sandbox: Vec<String> = r
            .sandbox_ips()
            .iter()
            .map(|i| i.address.to_string())
            .collect();
        assert_eq!(sandbox, ["10.88.0.2/24", "fd00:88::2/64"]);
    }
}
