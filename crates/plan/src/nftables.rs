//! nftables rulesets as typed data, rendered as `nft -f` text and as libnftables JSON.
//!
//! A ruleset is a list of tables; a table has a family (`ip`, `ip6`) and chains; a base
//! chain carries its type, hook and priority; a rule is a list of matches, an optional
//! counter and one action. Both renderings express the same single transaction: every
//! table, chain and rule is *added* (`add table …` / `{"add": …}`), in order, so loading
//! either one with `nft -f` / `nft -j -f` applies all of it or nothing. Adding a table or
//! chain that exists is not an error in nftables, so the text merges into a pod that
//! already has a `nat` table (as KubeVirt's own `nft add` commands do).
//!
//! Matches render in the order they are stored, which keeps the text identical to the
//! commands KubeVirt runs. A match on an address uses the table's family keyword.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct NftRuleset {
    pub tables: Vec<NftTable>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NftFamily {
    Ip,
    Ip6,
}

impl NftFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NftTable {
    pub family: NftFamily,
    pub name: String,
    pub chains: Vec<NftChain>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NftChain {
    pub name: String,
    /// Set for base chains (hooked into the stack); regular chains are jump targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseChain>,
    #[serde(default)]
    pub rules: Vec<NftRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BaseChain {
    /// `nat`, `filter`…
    #[serde(rename = "type")]
    pub kind: String,
    /// `prerouting`, `input`, `output`, `postrouting`…
    pub hook: String,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NftRule {
    pub matches: Vec<NftMatch>,
    pub counter: bool,
    pub action: NftAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "match", rename_all = "camelCase")]
pub enum NftMatch {
    Iifname { name: String },
    Oifname { name: String },
    Saddr { addrs: AddrSet },
    Daddr { addrs: AddrSet },
    Dport { protocol: L4Proto, ports: PortSet },
}

/// One address (`ip saddr 10.0.2.2`) or an anonymous set (`ip saddr { 127.0.0.1 }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AddrSet {
    One(IpAddr),
    Set(Vec<IpAddr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
        }
    }
}

/// `80`, `{ 80, 443 }` or `1000-2000`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PortSet {
    One(u16),
    Set(Vec<u16>),
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum NftAction {
    Jump { chain: String },
    Masquerade,
    Dnat { to: IpAddr },
    Snat { to: IpAddr },
    Return,
}

impl NftRuleset {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The ruleset as an `nft -f` script: one `add` command a line.
    pub fn to_nft_text(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let fam = table.family.as_str();
            let t = &table.name;
            out.push_str(&format!("add table {fam} {t}\n"));
            for chain in &table.chains {
                match &chain.base {
                    Some(b) => out.push_str(&format!(
                        "add chain {fam} {t} {} {{ type {} hook {} priority {}; }}\n",
                        chain.name, b.kind, b.hook, b.priority
                    )),
                    None => out.push_str(&format!("add chain {fam} {t} {}\n", chain.name)),
                }
            }
            for chain in &table.chains {
                for rule in &chain.rules {
                    out.push_str(&format!(
                        "add rule {fam} {t} {} {}\n",
                        chain.name,
                        rule.text(table.family)
                    ));
                }
            }
        }
        out
    }

    /// The ruleset in libnftables' JSON schema (`nft -j -f -`).
    pub fn to_json(&self) -> Value {
        let mut cmds = Vec::new();
        for table in &self.tables {
            let fam = table.family.as_str();
            cmds.push(json!({"add": {"table": {"family": fam, "name": table.name}}}));
            for chain in &table.chains {
                let mut c = serde_json::Map::new();
                c.insert("family".into(), json!(fam));
                c.insert("table".into(), json!(table.name));
                c.insert("name".into(), json!(chain.name));
                if let Some(b) = &chain.base {
                    c.insert("type".into(), json!(b.kind));
                    c.insert("hook".into(), json!(b.hook));
                    c.insert("prio".into(), json!(b.priority));
                    c.insert("policy".into(), json!("accept"));
                }
                cmds.push(json!({"add": {"chain": Value::Object(c)}}));
            }
            for chain in &table.chains {
                for rule in &chain.rules {
                    cmds.push(json!({"add": {"rule": {
                        "family": fam,
                        "table": table.name,
                        "chain": chain.name,
                        "expr": rule.json(table.family),
                    }}}));
                }
            }
        }
        json!({ "nftables": cmds })
    }

    /// How many rules, per table: `ip nat: 6 rules` (for summaries).
    pub fn summary(&self) -> String {
        self.tables
            .iter()
            .map(|t| {
                let n: usize = t.chains.iter().map(|c| c.rules.len()).sum();
                format!("{} {}: {} rules", t.family.as_str(), t.name, n)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl NftRule {
    pub fn new(matches: Vec<NftMatch>, action: NftAction) -> NftRule {
        NftRule {
            matches,
            counter: true,
            action,
        }
    }

    /// The rule body as nft syntax, e.g. `ip saddr 10.0.2.2 counter masquerade`.
    pub fn text(&self, family: NftFamily) -> String {
        let mut words: Vec<String> = self.matches.iter().map(|m| m.text(family)).collect();
        if self.counter {
            words.push("counter".into());
        }
        words.push(self.action.text());
        words.join(" ")
    }

    fn json(&self, family: NftFamily) -> Value {
        let mut expr: Vec<Value> = self.matches.iter().map(|m| m.json(family)).collect();
        if self.counter {
            expr.push(json!({"counter": {"packets": 0, "bytes": 0}}));
        }
        expr.push(self.action.json());
        Value::Array(expr)
    }
}

impl NftMatch {
    fn text(&self, family: NftFamily) -> String {
        match self {
            NftMatch::Iifname { name } => format!("iifname {}", quote(name)),
            NftMatch::Oifname { name } => format!("oifname {}", quote(name)),
            NftMatch::Saddr { addrs } => format!("{} saddr {}", family.as_str(), addrs.text()),
            NftMatch::Daddr { addrs } => format!("{} daddr {}", family.as_str(), addrs.text()),
            NftMatch::Dport { protocol, ports } => {
                format!("{} dport {}", protocol.as_str(), ports.text())
            }
        }
    }

    fn json(&self, family: NftFamily) -> Value {
        let (left, right) = match self {
            NftMatch::Iifname { name } => (json!({"meta": {"key": "iifname"}}), json!(name)),
            NftMatch::Oifname { name } => (json!({"meta": {"key": "oifname"}}), json!(name)),
            NftMatch::Saddr { addrs } => (
                json!({"payload": {"protocol": family.as_str(), "field": "saddr"}}),
                addrs.json(),
            ),
            NftMatch::Daddr { addrs } => (
                json!({"payload": {"protocol": family.as_str(), "field": "daddr"}}),
                addrs.json(),
            ),
            NftMatch::Dport { protocol, ports } => (
                json!({"payload": {"protocol": protocol.as_str(), "field": "dport"}}),
                ports.json(),
            ),
        };
        json!({"match": {"op": "==", "left": left, "right": right}})
    }
}

impl AddrSet {
    fn text(&self) -> String {
        match self {
            AddrSet::One(a) => a.to_string(),
            AddrSet::Set(v) => {
                format!(
                    "{{ {} }}",
                    v.iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    }

    fn json(&self) -> Value {
        match self {
            AddrSet::One(a) => json!(a.to_string()),
            AddrSet::Set(v) => json!({"set": v.iter().map(IpAddr::to_string).collect::<Vec<_>>()}),
        }
    }
}

impl PortSet {
    fn text(&self) -> String {
        match self {
            PortSet::One(p) => p.to_string(),
            PortSet::Set(v) => {
                format!(
                    "{{ {} }}",
                    v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                )
            }
            PortSet::Range(a, b) => format!("{a}-{b}"),
        }
    }

    fn json(&self) -> Value {
        match self {
            PortSet::One(p) => json!(p),
            PortSet::Set(v) => json!({"set": v}),
            PortSet::Range(a, b) => json!({"range": [a, b]}),
        }
    }
}

impl NftAction {
    fn text(&self) -> String {
        match self {
            NftAction::Jump { chain } => format!("jump {chain}"),
            NftAction::Masquerade => "masquerade".into(),
            NftAction::Dnat { to } => format!("dnat to {to}"),
            NftAction::Snat { to } => format!("snat to {to}"),
            NftAction::Return => "return".into(),
        }
    }

    fn json(&self) -> Value {
        match self {
            NftAction::Jump { chain } => json!({"jump": {"target": chain}}),
            NftAction::Masquerade => json!({"masquerade": null}),
            NftAction::Dnat { to } => json!({"dnat": {"addr": to.to_string()}}),
            NftAction::Snat { to } => json!({"snat": {"addr": to.to_string()}}),
            NftAction::Return => json!({"return": null}),
        }
    }
}

/// An interface name as an nft string literal. Names are at most 15 bytes of printable
/// ASCII without `/`; a `"` or `\` (impossible in a kernel link name) is dropped.
fn quote(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("\"{clean}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_rule_table() -> NftRuleset {
        NftRuleset {
            tables: vec![NftTable {
                family: NftFamily::Ip,
                name: "nat".into(),
                chains: vec![
                    NftChain {
                        name: "postrouting".into(),
                        base: Some(BaseChain {
                            kind: "nat".into(),
                            hook: "postrouting".into(),
                            priority: 100,
                        }),
                        rules: vec![NftRule::new(
                            vec![NftMatch::Saddr {
                                addrs: AddrSet::One("10.0.2.2".parse().unwrap()),
                            }],
                            NftAction::Masquerade,
                        )],
                    },
                    NftChain {
                        name: "KUBEVIRT_PREINBOUND".into(),
                        base: None,
                        rules: vec![],
                    },
                ],
            }],
        }
    }

    #[test]
    fn text_adds_table_then_chains_then_rules() {
        assert_eq!(
            one_rule_table().to_nft_text(),
            "add table ip nat\n\
             add chain ip nat postrouting { type nat hook postrouting priority 100; }\n\
             add chain ip nat KUBEVIRT_PREINBOUND\n\
             add rule ip nat postrouting ip saddr 10.0.2.2 counter masquerade\n"
        );
    }

    #[test]
    fn json_uses_libnftables_schema() {
        let expected = json!({"nftables": [
            {"add": {"table": {"family": "ip", "name": "nat"}}},
            {"add": {"chain": {"family": "ip", "table": "nat", "name": "postrouting",
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}},
            {"add": {"chain": {"family": "ip", "table": "nat", "name": "KUBEVIRT_PREINBOUND"}}},
            {"add": {"rule": {"family": "ip", "table": "nat", "chain": "postrouting", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.2.2"}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"masquerade": null}
            ]}}}
        ]});
        assert_eq!(one_rule_table().to_json(), expected);
    }

    #[test]
    fn port_sets_and_ranges_render_in_both_forms() {
        let rule = NftRule::new(
            vec![NftMatch::Dport {
                protocol: L4Proto::Udp,
                ports: PortSet::Range(1000, 2000),
            }],
            NftAction::Dnat {
                to: "fd10:0:2::2".parse().unwrap(),
            },
        );
        assert_eq!(
            rule.text(NftFamily::Ip6),
            "udp dport 1000-2000 counter dnat to fd10:0:2::2"
        );
        assert_eq!(
            rule.json(NftFamily::Ip6)[0],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": {"range": [1000, 2000]}}})
        );
        let set = NftRule::new(
            vec![NftMatch::Dport {
                protocol: L4Proto::Tcp,
                ports: PortSet::Set(vec![22, 80]),
            }],
            NftAction::Return,
        );
        assert_eq!(
            set.text(NftFamily::Ip),
            "tcp dport { 22, 80 } counter return"
        );
    }

    #[test]
    fn interface_names_are_quoted() {
        let rule = NftRule::new(
            vec![NftMatch::Iifname {
                name: "eth0".into(),
            }],
            NftAction::Jump {
                chain: "KUBEVIRT_PREINBOUND".into(),
            },
        );
        assert_eq!(
            rule.text(NftFamily::Ip),
            "iifname \"eth0\" counter jump KUBEVIRT_PREINBOUND"
        );
    }
}
