//! A planned ruleset as nf_tables netlink messages: one batch, one transaction.
//!
//! How it works: [`Batch`] collects nfnetlink messages between an `NFNL_MSG_BATCH_BEGIN`
//! and an `NFNL_MSG_BATCH_END` (both addressed to the nf_tables subsystem), numbering them
//! with consecutive sequence numbers and remembering, per number, *what* the message adds
//! or deletes (`table ip nat`, `rule 3 of chain ip nat output (…)`), so that the kernel's
//! answer to a sequence number can be reported in words. Every message inside carries
//! `NLM_F_ACK`: the kernel then answers each one (0 or an errno) once the whole batch has
//! been committed — or aborted, in which case nothing of it is applied.
//!
//! [`ruleset`] compiles an [`NftRuleset`] into such a batch, in the order `nft -f` uses:
//! tables, then all chains, then rules. Each rule becomes the same bytecode that `nft`
//! generates for the same text, so `nft list ruleset` prints both identically (the
//! privileged test `nft_netlink` checks exactly that):
//! - `iifname "x"` / `oifname "x"`: `meta` load of the name into register 1, `cmp eq`
//!   against the name padded with NULs to IFNAMSIZ (16 bytes);
//! - `ip saddr A` (`daddr`, `ip6 …`): `payload` load from the network header (offset and
//!   length per family) and `cmp eq`;
//! - `tcp dport …`: first the implicit dependency `meta l4proto tcp` (`meta` + `cmp`), then a
//!   `payload` load of 2 bytes at transport header + 2 and `cmp eq` for one port, `cmp gte`
//!   + `cmp lte` for a range;
//! - a set of two or more values is an anonymous constant set (`NFT_MSG_NEWSET` named
//!   `__set%d`, which the kernel numbers, plus `NFT_MSG_NEWSETELEM`), created in the same
//!   batch just before its rule and referred to by a batch-local set id from a `lookup`;
//!   a set of one value is a plain `cmp`, as `nft` optimises it;
//! - `counter` is the `counter` expression without attributes (starts at zero);
//! - `masquerade` is `masq`; `dnat to A` / `snat to A` load A with `immediate` into
//!   register 1 and name that register as the `nat` expression's minimum address;
//! - `jump C` / `return` are `immediate` verdicts into the verdict register.
//!
//! Expressions that `netlink-packet-netfilter` has types for (meta, cmp, payload,
//! immediate, lookup) use them; `counter`, `masq` and `nat` are written as raw attributes
//! following the kernel's uapi (`linux/netfilter/nf_tables.h`). Adding a table or chain
//! that exists is not an error (no `NLM_F_EXCL`), and a table is added without flags so
//! an existing table's flags are never changed.

use std::collections::HashMap;
use std::net::IpAddr;

use netbind_plan::nftables::{
    AddrSet, L4Proto, NftAction, NftChain, NftFamily, NftMatch, NftRule, NftRuleset, PortSet,
};
use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook, HookNumber,
    Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator,
    Payload, Register, RuleAttribute, SetAttribute, SetDescription, SetElementAttribute,
    SetElementList, SetFlags, TableAttribute, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

/// `NFNL_SUBSYS_NFTABLES`: the batch header's resource id names the subsystem.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NF_ACCEPT`, a base chain's policy.
const NF_ACCEPT: u32 = 1;
/// `IFNAMSIZ`: `meta iifname` compares this many bytes.
const IFNAMSIZ: usize = 16;
/// `nft_payload_bases`.
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// `nft_nat_types` and `nft_nat_attributes`.
const NFT_NAT_SNAT: u32 = 0;
const NFT_NAT_DNAT: u32 = 1;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
/// nft's data types of set keys (they decide how `nft list` prints elements).
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
/// The name of an anonymous set; the kernel replaces `%d` with a free number.
const ANON_SET: &str = "__set%d";

/// The ruleset cannot be written as nf_tables messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct Unsupported {
    pub what: String,
    pub why: String,
}

/// nfnetlink messages of one transaction, and what each one does.
pub(crate) struct Batch {
    msgs: Vec<NetlinkMessage<NetfilterMessage>>,
    what: HashMap<u32, String>,
    next_seq: u32,
    next_set_id: u32,
}

impl Batch {
    /// An empty batch whose first message will carry sequence number `first_seq`.
    pub(crate) fn new(first_seq: u32) -> Batch {
        let mut b = Batch {
            msgs: Vec::new(),
            what: HashMap::new(),
            next_seq: first_seq,
            next_set_id: 1,
        };
        b.control(ControlMessage::BatchBegin);
        b
    }

    fn control(&mut self, msg: ControlMessage) {
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.msgs.push(message(
            NetfilterMessage::new(header, msg),
            NLM_F_REQUEST,
            seq,
        ));
    }

    /// Appends one nf_tables message (acknowledged), described as `what` for errors.
    pub(crate) fn push(&mut self, family: u8, flags: u16, msg: NfTablesMessage, what: String) {
        let header = NetfilterHeader::new(NetfilterProtoFamily::from(family), 0, 0);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.msgs.push(message(
            NetfilterMessage::new(header, msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
        ));
        self.what.insert(seq, what);
    }

    /// How many messages (besides BEGIN and END) the batch holds.
    pub(crate) fn len(&self) -> usize {
        self.what.len()
    }

    /// The sequence number the next message after this batch may use.
    pub(crate) fn next_seq(&self) -> u32 {
        self.next_seq + 1
    }

    /// What the message with sequence number `seq` does, if it is one of the batch's.
    pub(crate) fn what(&self, seq: u32) -> Option<&str> {
        self.what.get(&seq).map(String::as_str)
    }

    /// The batch, closed with `NFNL_MSG_BATCH_END`, as one buffer for one `send`.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.control(ControlMessage::BatchEnd);
        let len = self.msgs.iter().map(NetlinkMessage::buffer_len).sum();
        let mut buf = vec![0u8; len];
        let mut at = 0;
        for m in &self.msgs {
            let n = m.buffer_len();
            m.serialize(&mut buf[at..at + n]);
            at += n;
        }
        buf
    }
}

/// One finalized netlink message.
pub(crate) fn message(
    inner: NetfilterMessage,
    flags: u16,
    seq: u32,
) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
    m.finalize();
    m
}

/// `NFPROTO_*` of a planned family.
pub(crate) fn family_number(f: NftFamily) -> u8 {
    match f {
        NftFamily::Ip => 2,
        NftFamily::Ip6 => 10,
    }
}

/// `NFPROTO_*` ↔ nft's family keyword, for the families nft knows.
const FAMILIES: [(u8, &str); 6] = [
    (1, "inet"),
    (2, "ip"),
    (3, "arp"),
    (5, "netdev"),
    (7, "bridge"),
    (10, "ip6"),
];

pub(crate) fn family_name(n: u8) -> String {
    FAMILIES
        .iter()
        .find(|(k, _)| *k == n)
        .map(|(_, s)| (*s).to_string())
        .unwrap_or_else(|| format!("family{n}"))
}

pub(crate) fn family_from_name(s: &str) -> Option<u8> {
    FAMILIES.iter().find(|(_, n)| *n == s).map(|(k, _)| *k)
}

/// Adds every table, chain and rule of `ruleset` to `batch`.
pub(crate) fn ruleset(batch: &mut Batch, ruleset: &NftRuleset) -> Result<(), Unsupported> {
    for table in &ruleset.tables {
        let fam = family_number(table.family);
        let fname = table.family.as_str();
        let t = &table.name;
        batch.push(
            fam,
            NLM_F_CREATE,
            NfTablesMessage::NewTable(netlink_packet_netfilter::nftables::TableMessage {
                attributes: vec![TableAttribute::Name(t.clone())],
            }),
            format!("table {fname} {t}"),
        );
        for chain in &table.chains {
            batch.push(
                fam,
                NLM_F_CREATE,
                NfTablesMessage::NewChain(netlink_packet_netfilter::nftables::ChainMessage {
                    attributes: chain_attributes(t, chain).map_err(|why| Unsupported {
                        what: format!("chain {fname} {t} {}", chain.name),
                        why,
                    })?,
                }),
                format!("chain {fname} {t} {}", chain.name),
            );
        }
        for chain in &table.chains {
            for (i, rule) in chain.rules.iter().enumerate() {
                let what = format!(
                    "rule {} of chain {fname} {t} {} ({})",
                    i + 1,
                    chain.name,
                    rule.text(table.family)
                );
                let exprs =
                    rule_expressions(batch, table.family, t, rule, &what).map_err(|why| {
                        Unsupported {
                            what: what.clone(),
                            why,
                        }
                    })?;
                batch.push(
                    fam,
                    NLM_F_CREATE | NLM_F_APPEND,
                    NfTablesMessage::NewRule(netlink_packet_netfilter::nftables::RuleMessage {
                        attributes: vec![
                            RuleAttribute::Table(t.clone()),
                            RuleAttribute::Chain(chain.name.clone()),
                            RuleAttribute::Expressions(exprs),
                        ],
                    }),
                    what,
                );
            }
        }
    }
    Ok(())
}

fn chain_attributes(table: &str, chain: &NftChain) -> Result<Vec<ChainAttribute>, String> {
    let mut attrs = vec![
        ChainAttribute::Table(table.to_string()),
        ChainAttribute::Name(chain.name.clone()),
    ];
    if let Some(b) = &chain.base {
        let hook = match b.hook.as_str() {
            "prerouting" => InetHookNumber::PreRouting,
            "input" => InetHookNumber::LocalIn,
            "forward" => InetHookNumber::Forward,
            "output" => InetHookNumber::LocalOut,
            "postrouting" => InetHookNumber::PostRouting,
            other => return Err(format!("unknown hook {other:?}")),
        };
        attrs.push(ChainAttribute::Type(b.kind.clone()));
        attrs.push(ChainAttribute::Hook(vec![
            Hook::Number(HookNumber::Inet(hook)),
            Hook::Priority(b.priority as u32),
        ]));
        attrs.push(ChainAttribute::Policy(NF_ACCEPT));
    }
    Ok(attrs)
}

type Expr = ListAttribute<ExpressionAttribute>;

fn expr(e: Expressions) -> Expr {
    e.into()
}

fn raw(name: &str, attributes: Vec<DefaultNla>) -> Expr {
    expr(Expressions::Other {
        expression_type: name.to_string(),
        attributes,
    })
}

fn u32_attr(kind: u16, v: u32) -> DefaultNla {
    DefaultNla::new(kind, v.to_be_bytes().to_vec())
}

fn meta(key: MetaKey) -> Expr {
    expr(Expressions::Meta(vec![
        Meta::Key(key),
        Meta::DestinationRegister(Register::Reg1),
    ]))
}

fn cmp(op: Operator, data: Vec<u8>) -> Expr {
    expr(Expressions::Cmp(vec![
        Cmp::SourceRegister(Register::Reg1),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ]))
}

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    expr(Expressions::Payload(vec![
        Payload::DestinationRegister(Register::Reg1),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ]))
}

fn verdict(code: Verdict, chain: Option<&str>) -> Expr {
    let mut v = vec![VerdictAttribute::Code(code)];
    if let Some(c) = chain {
        v.push(VerdictAttribute::Chain(c.to_string()));
    }
    expr(Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(v)),
    ]))
}

fn addr_bytes(family: NftFamily, a: &IpAddr) -> Result<Vec<u8>, String> {
    match (family, a) {
        (NftFamily::Ip, IpAddr::V4(v4)) => Ok(v4.octets().to_vec()),
        (NftFamily::Ip6, IpAddr::V6(v6)) => Ok(v6.octets().to_vec()),
        _ => Err(format!(
            "address {a} does not belong in a table of family {}",
            family.as_str()
        )),
    }
}

/// Distinct values, first occurrence first.
fn distinct<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// An anonymous constant set of `keys` (all `key_len` bytes), added to the batch; the
/// lookup expression that matches register 1 against it.
fn anon_set(
    batch: &mut Batch,
    family: NftFamily,
    table: &str,
    key_type: u32,
    key_len: u32,
    keys: Vec<Vec<u8>>,
    what: &str,
) -> Expr {
    let id = batch.next_set_id;
    batch.next_set_id += 1;
    let fam = family_number(family);
    batch.push(
        fam,
        NLM_F_CREATE,
        NfTablesMessage::NewSet(netlink_packet_netfilter::nftables::SetMessage {
            attributes: vec![
                SetAttribute::Table(table.to_string()),
                SetAttribute::Name(ANON_SET.to_string()),
                SetAttribute::Flags(SetFlags::Anonymous | SetFlags::Constant),
                SetAttribute::KeyType(key_type),
                SetAttribute::KeyLen(key_len),
                SetAttribute::Id(id),
                SetAttribute::Description(vec![SetDescription::Size(keys.len() as u32)]),
            ],
        }),
        format!("the anonymous set of {what}"),
    );
    let elements = keys
        .into_iter()
        .map(|k| ListAttribute::Element(vec![SetElementAttribute::Key(DataAttribute::Value(k))]))
        .collect();
    batch.push(
        fam,
        NLM_F_CREATE,
        NfTablesMessage::NewSetElement(netlink_packet_netfilter::nftables::SetElementMessage {
            attributes: vec![
                SetElementList::Table(table.to_string()),
                SetElementList::Set(ANON_SET.to_string()),
                SetElementList::SetId(id),
                SetElementList::Elements(elements),
            ],
        }),
        format!("the elements of the anonymous set of {what}"),
    );
    expr(Expressions::Lookup(vec![
        Lookup::Set(ANON_SET.to_string()),
        Lookup::SourceRegister(Register::Reg1),
        Lookup::SetId(id),
    ]))
}

fn rule_expressions(
    batch: &mut Batch,
    family: NftFamily,
    table: &str,
    rule: &NftRule,
    what: &str,
) -> Result<Vec<Expr>, String> {
    let mut out = Vec::new();
    for m in &rule.matches {
        match m {
            NftMatch::Iifname { name } | NftMatch::Oifname { name } => {
                let key = if matches!(m, NftMatch::Iifname { .. }) {
                    MetaKey::Iifname
                } else {
                    MetaKey::Oifname
                };
                if name.len() >= IFNAMSIZ {
                    return Err(format!("interface name {name:?} is too long"));
                }
                let mut data = name.as_bytes().to_vec();
                data.resize(IFNAMSIZ, 0);
                out.push(meta(key));
                out.push(cmp(Operator::Equal, data));
            }
            NftMatch::Saddr { addrs } | NftMatch::Daddr { addrs } => {
                let src = matches!(m, NftMatch::Saddr { .. });
                let (offset, len, key_type) = match (family, src) {
                    (NftFamily::Ip, true) => (12, 4, TYPE_IPV4_ADDR),
                    (NftFamily::Ip, false) => (16, 4, TYPE_IPV4_ADDR),
                    (NftFamily::Ip6, true) => (8, 16, TYPE_IPV6_ADDR),
                    (NftFamily::Ip6, false) => (24, 16, TYPE_IPV6_ADDR),
                };
                let values = match addrs {
                    AddrSet::One(a) => vec![*a],
                    AddrSet::Set(v) => distinct(v),
                };
                let keys = values
                    .iter()
                    .map(|a| addr_bytes(family, a))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len));
                out.push(match_keys(batch, family, table, key_type, len, keys, what)?);
            }
            NftMatch::Dport { protocol, ports } => {
                let proto: u8 = match protocol {
                    L4Proto::Tcp => 6,
                    L4Proto::Udp => 17,
                };
                out.push(meta(MetaKey::L4Proto));
                out.push(cmp(Operator::Equal, vec![proto]));
                out.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
                match ports {
                    PortSet::Range(lo, hi) => {
                        out.push(cmp(Operator::GreatherThanEqual, lo.to_be_bytes().to_vec()));
                        out.push(cmp(Operator::LessThanEqual, hi.to_be_bytes().to_vec()));
                    }
                    PortSet::One(p) => out.push(cmp(Operator::Equal, p.to_be_bytes().to_vec())),
                    PortSet::Set(v) => {
                        let keys = distinct(v)
                            .iter()
                            .map(|p| p.to_be_bytes().to_vec())
                            .collect();
                        out.push(match_keys(
                            batch,
                            family,
                            table,
                            TYPE_INET_SERVICE,
                            2,
                            keys,
                            what,
                        )?);
                    }
                }
            }
        }
    }
    if rule.counter {
        out.push(raw("counter", vec![]));
    }
    match &rule.action {
        NftAction::Jump { chain } => out.push(verdict(Verdict::Jump, Some(chain))),
        NftAction::Return => out.push(verdict(Verdict::Return, None)),
        NftAction::Masquerade => out.push(raw("masq", vec![])),
        NftAction::Dnat { to } | NftAction::Snat { to } => {
            let kind = if matches!(rule.action, NftAction::Dnat { .. }) {
                NFT_NAT_DNAT
            } else {
                NFT_NAT_SNAT
            };
            out.push(expr(Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg1),
                Immediate::Data(DataAttribute::Value(addr_bytes(family, to)?)),
            ])));
            out.push(raw(
                "nat",
                vec![
                    u32_attr(NFTA_NAT_TYPE, kind),
                    u32_attr(NFTA_NAT_FAMILY, u32::from(family_number(family))),
                    u32_attr(NFTA_NAT_REG_ADDR_MIN, 1),
                ],
            ));
        }
    }
    Ok(out)
}

/// Register 1 equals one of `keys`: a `cmp` for one, a lookup in an anonymous set for more.
fn match_keys(
    batch: &mut Batch,
    family: NftFamily,
    table: &str,
    key_type: u32,
    key_len: u32,
    mut keys: Vec<Vec<u8>>,
    what: &str,
) -> Result<Expr, String> {
    match keys.len() {
        0 => Err("an empty set matches nothing".into()),
        1 => Ok(cmp(Operator::Equal, keys.remove(0))),
        _ => Ok(anon_set(
            batch, family, table, key_type, key_len, keys, what,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbind_plan::nftables::{BaseChain, NftTable};

    fn table(rules: Vec<NftRule>) -> NftRuleset {
        NftRuleset {
            tables: vec![NftTable {
                family: NftFamily::Ip,
                name: "nat".into(),
                chains: vec![NftChain {
                    name: "output".into(),
                    base: Some(BaseChain {
                        kind: "nat".into(),
                        hook: "output".into(),
                        priority: -100,
                    }),
                    rules,
                }],
            }],
        }
    }

    /// (type, flags, seq) of every message in a serialized batch.
    fn headers(buf: &[u8]) -> Vec<(u16, u16, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            let fl = u16::from_ne_bytes(buf[at + 6..at + 8].try_into().unwrap());
            let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
            out.push((ty, fl, seq));
            at += (len + 3) & !3;
        }
        out
    }

    #[test]
    fn a_batch_is_begin_acked_messages_end_and_names_each_message() {
        let rs = table(vec![NftRule::new(
            vec![NftMatch::Dport {
                protocol: L4Proto::Tcp,
                ports: PortSet::Set(vec![80, 443, 80]),
            }],
            NftAction::Masquerade,
        )]);
        let mut b = Batch::new(100);
        ruleset(&mut b, &rs).unwrap();
        let buf = b.finish();
        let h = headers(&buf);
        // BEGIN, table, chain, set, set elements, rule, END.
        let types: Vec<u16> = h.iter().map(|(t, _, _)| *t).collect();
        assert_eq!(
            types,
            vec![0x10, 0xa00, 0xa03, 0xa09, 0xa0c, 0xa06, 0x11],
            "{h:?}"
        );
        assert_eq!(h[0].1, NLM_F_REQUEST);
        assert_eq!(h[6].1, NLM_F_REQUEST);
        for (_, flags, _) in &h[1..6] {
            assert_ne!(flags & NLM_F_ACK, 0);
            assert_ne!(flags & NLM_F_CREATE, 0);
        }
        assert_ne!(h[5].1 & NLM_F_APPEND, 0);
        // The batch header addresses the nf_tables subsystem (res_id, big endian).
        assert_eq!(&buf[16..20], &[0, 0, 0, 10]);
        assert_eq!(b.what(h[1].2), Some("table ip nat"));
        assert_eq!(b.what(h[2].2), Some("chain ip nat output"));
        assert_eq!(
            b.what(h[5].2),
            Some("rule 1 of chain ip nat output (tcp dport { 80, 443, 80 } counter masquerade)")
        );
        assert!(
            b.what(h[3].2)
                .unwrap()
                .starts_with("the anonymous set of rule 1")
        );
        assert_eq!(b.len(), 5);
    }

    #[test]
    fn one_element_sets_need_no_set_and_misfits_are_refused() {
        let rs = table(vec![NftRule::new(
            vec![NftMatch::Daddr {
                addrs: AddrSet::Set(vec!["127.0.0.1".parse().unwrap()]),
            }],
            NftAction::Dnat {
                to: "10.0.2.2".parse().unwrap(),
            },
        )]);
        let mut b = Batch::new(1);
        ruleset(&mut b, &rs).unwrap();
        assert_eq!(b.len(), 3, "table, chain, rule");

        let v6_in_ip = table(vec![NftRule::new(
            vec![],
            NftAction::Snat {
                to: "fd10::1".parse().unwrap(),
            },
        )]);
        let err = ruleset(&mut Batch::new(1), &v6_in_ip).unwrap_err();
        assert!(
            err.what.starts_with("rule 1 of chain ip nat output"),
            "{err}"
        );
        assert!(err.why.contains("fd10::1"), "{err}");

        let long = table(vec![NftRule::new(
            vec![NftMatch::Oifname {
                name: "a-very-long-name".into(),
            }],
            NftAction::Return,
        )]);
        assert!(ruleset(&mut Batch::new(1), &long).is_err());
    }
}
