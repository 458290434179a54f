//! Netlink requests for the data plane: read one link's state, change it, put it back.
//!
//! How it works: [`Links`] wraps an rtnetlink [`Handle`] whose socket was opened inside the
//! pod's namespace (see [`crate::apply`]); every method is one or two request/ack round
//! trips addressed by link *name*, looked up right before use, so a rename between two
//! steps can never make a request hit the wrong link. [`Links::state`] returns what a
//! step needs to decide whether it has anything left to do (check-then-act): kind, up,
//! MAC, MTU, controller, bridge-port learning.
//!
//! Saving and restoring: addresses and routes a step is about to destroy (setting a link
//! down drops its IPv6 addresses and every route through it; a flush drops all addresses)
//! are kept as the kernel's own netlink messages ([`Saved`]: a one-line summary plus the
//! message bytes in hex), so restoring re-adds exactly what was there — lifetimes, flags,
//! metrics, preference, table — without netbind modelling each field. Kernel-made entries
//! (routes with protocol `kernel`/`ra`/`redirect`, the local table, IPv6 link-local
//! addresses) are not saved: the kernel makes them again when the link comes back up.
//!
//! What holds: every method is safe to repeat; "not found" and "already there" answers
//! are reported as values, never as failures, so callers can converge.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoBridgePort, InfoKind, InfoPortData, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteProtocol, RouteType};
use rtnetlink::packet_core::{Emitable, Parseable};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkDummy, LinkUnspec};
use serde::{Deserialize, Serialize};

/// The kernel's "no such device" and friends.
const ENODEV: i32 = 19;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;
const EOPNOTSUPP: i32 = 95;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("link {link} not found in the pod's namespace")]
    NotFound { link: String },
    #[error("cannot {op} {link}")]
    Netlink {
        op: &'static str,
        link: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what} {value:?} of {link} is not valid")]
    Invalid {
        what: &'static str,
        value: String,
        link: String,
    },
    #[error("saved netlink message for {link} is damaged ({what})")]
    Damaged { link: String, what: String },
}

/// What a step looks at before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `tun`, `veth`, `dummy`…); `None` for kindless links.
    pub kind: Option<String>,
    pub up: bool,
    pub mac: Option<String>,
    pub mtu: u32,
    pub controller: Option<u32>,
    /// `IFLA_BRPORT_LEARNING` when the link is a bridge port.
    pub learning: Option<bool>,
}

/// A kernel message kept to be replayed: a summary for people, the bytes for the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Saved {
    pub summary: String,
    pub netlink: String,
}

/// The addresses and routes of one link that a step may destroy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LinkConfig {
    #[serde(default)]
    pub addresses: Vec<Saved>,
    #[serde(default)]
    pub routes: Vec<Saved>,
}

pub struct Links {
    handle: Handle,
}

/// The errno inside a netlink error answer, if any.
pub fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

pub fn parse_mac(link: &str, mac: &str) -> Result<Vec<u8>, LinkError> {
    let bytes: Option<Vec<u8>> = mac
        .split(':')
        .map(|h| {
            (h.len() == 2)
                .then(|| u8::from_str_radix(h, 16).ok())
                .flatten()
        })
        .collect();
    match bytes {
        Some(b) if b.len() == 6 => Ok(b),
        _ => Err(LinkError::Invalid {
            what: "MAC address",
            value: mac.to_string(),
            link: link.to_string(),
        }),
    }
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A kernel link name: 1 to 15 bytes, no `/`, no whitespace, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), LinkError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(LinkError::Invalid {
            what: "link name (1-15 bytes, no '/', ':' or spaces)",
            value: name.to_string(),
            link: name.to_string(),
        })
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

fn state_of(msg: &LinkMessage) -> LinkState {
    let mut s = LinkState {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        mac: None,
        mtu: 0,
        controller: None,
        learning: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Address(b) if b.len() == 6 => s.mac = Some(format_mac(b)),
            LinkAttribute::Mtu(m) => s.mtu = *m,
            LinkAttribute::Controller(c) if *c != 0 => s.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => s.kind = Some(k.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            s.learning = port.iter().find_map(|p| match p {
                                InfoBridgePort::Learning(l) => Some(*l),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    s
}

fn ip_of(a: &netlink_packet_route::route::RouteAddress) -> Option<IpAddr> {
    use netlink_packet_route::route::RouteAddress;
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn address_of(msg: &AddressMessage) -> Option<IpNet> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(addr)?, msg.header.prefix_len).ok()
}

fn is_link_local_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(n) if (n.addr().segments()[0] & 0xffc0) == 0xfe80)
}

/// Asks the kernel to leave the counters out of a link's answer (`RTEXT_FILTER_SKIP_STATS`):
/// no step looks at them, and filling and parsing them was most of a lookup's cost.
fn without_stats(mut req: rtnetlink::LinkGetRequest) -> rtnetlink::LinkGetRequest {
    req.message_mut()
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    req
}

impl Links {
    pub fn new(handle: Handle) -> Links {
        Links { handle }
    }

    fn failed(op: &'static str, link: &str) -> impl FnOnce(rtnetlink::Error) -> LinkError {
        let link = link.to_string();
        move |source| LinkError::Netlink { op, link, source }
    }

    /// The link's state, or `None` when no link has that name.
    pub async fn state(&self, name: &str) -> Result<Option<LinkState>, LinkError> {
        check_name(name)?;
        let found: Result<Vec<LinkMessage>, _> =
            without_stats(self.handle.link().get().match_name(name))
                .execute()
                .try_collect()
                .await;
        match found {
            Ok(msgs) => Ok(msgs.first().map(state_of)),
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(None),
            Err(source) => Err(LinkError::Netlink {
                op: "look up",
                link: name.to_string(),
                source,
            }),
        }
    }

    /// Every link of the namespace (one dump).
    pub async fn all(&self) -> Result<Vec<LinkState>, LinkError> {
        let msgs: Vec<LinkMessage> = without_stats(self.handle.link().get())
            .execute()
            .try_collect()
            .await
            .map_err(|source| LinkError::Netlink {
                op: "list",
                link: "the links of the namespace".into(),
                source,
            })?;
        Ok(msgs.iter().map(state_of).collect())
    }

    pub async fn require(&self, name: &str) -> Result<LinkState, LinkError> {
        self.state(name).await?.ok_or_else(|| LinkError::NotFound {
            link: name.to_string(),
        })
    }

    pub async fn name_of(&self, index: u32) -> Result<Option<String>, LinkError> {
        let found: Result<Vec<LinkMessage>, _> =
            without_stats(self.handle.link().get().match_index(index))
                .execute()
                .try_collect()
                .await;
        match found {
            Ok(msgs) => Ok(msgs.first().map(|m| state_of(m).name)),
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(None),
            Err(source) => Err(LinkError::Netlink {
                op: "look up",
                link: format!("ifindex {index}"),
                source,
            }),
        }
    }

    pub async fn create_bridge(
        &self,
        name: &str,
        mac: Option<&str>,
        mtu: u32,
    ) -> Result<(), LinkError> {
        check_name(name)?;
        // Down, as the plan has it (`LinkBridge::new` would make it up): a step of its
        // own sets it up.
        let mut b = rtnetlink::LinkMessageBuilder::<LinkBridge>::new(name).mtu(mtu);
        if let Some(mac) = mac {
            b = b.address(parse_mac(name, mac)?);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(Self::failed("create bridge", name))
    }

    /// Creates a dummy link; on kernels built without the dummy driver (EOPNOTSUPP) an
    /// `ifb` link — also a link that carries no traffic while down — takes its place.
    /// Returns the kind created.
    pub async fn create_placeholder(
        &self,
        name: &str,
        mac: Option<&str>,
        mtu: u32,
    ) -> Result<&'static str, LinkError> {
        check_name(name)?;
        let mac = mac.map(|m| parse_mac(name, m)).transpose()?;
        let mut d = LinkDummy::new(name).mtu(mtu);
        if let Some(m) = &mac {
            d = d.address(m.clone());
        }
        match self.handle.link().add(d.build()).execute().await {
            Ok(()) => Ok("dummy"),
            Err(e) if errno(&e) == Some(EOPNOTSUPP) => {
                let mut b = LinkUnspec::new_with_name(name);
                b = LinkMessageBuilderExt::kind(b, InfoKind::Other("ifb".into())).mtu(mtu);
                if let Some(m) = mac {
                    b = b.address(m);
                }
                self.handle
                    .link()
                    .add(b.build())
                    .execute()
                    .await
                    .map_err(Self::failed("create dummy (ifb fallback)", name))?;
                Ok("ifb")
            }
            Err(source) => Err(LinkError::Netlink {
                op: "create dummy",
                link: name.to_string(),
                source,
            }),
        }
    }

    pub async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(s) = self.state(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(s.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(false),
            Err(source) => Err(LinkError::Netlink {
                op: "delete",
                link: name.to_string(),
                source,
            }),
        }
    }

    /// Deletes several links with one kernel call where possible: they join a link group
    /// no other link is in, and one `RTM_DELLINK` for that group unregisters them all
    /// (one RCU grace period instead of one per link, which dominates deletion time).
    /// Falls back to one request per link. Returns how many were deleted.
    pub async fn delete_many(&self, names: &[String]) -> Result<usize, LinkError> {
        const GROUP: u32 = 0x6e62_7464; // "nbtd"
        let mut targets = Vec::new();
        for name in names {
            if let Some(s) = self.state(name).await? {
                targets.push(s);
            }
        }
        if targets.is_empty() {
            return Ok(0);
        }
        let all: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(Self::failed("list links for", "a batch delete"))?;
        let group_in_use = all.iter().any(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Group(g) if *g == GROUP))
        });
        if !group_in_use && targets.len() > 1 {
            for s in &targets {
                self.set(
                    "put into the delete group",
                    &s.name,
                    LinkUnspec::new_with_index(s.index)
                        .link_group(GROUP)
                        .build(),
                )
                .await?;
            }
            let mut msg = LinkMessage::default();
            msg.attributes.push(LinkAttribute::Group(GROUP));
            if self
                .handle
                .link()
                .del_with_message(msg)
                .execute()
                .await
                .is_ok()
            {
                return Ok(targets.len());
            }
        }
        let mut n = 0;
        for s in &targets {
            if self.delete(&s.name).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn set(&self, op: &'static str, name: &str, msg: LinkMessage) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(Self::failed(op, name))
    }

    pub async fn set_up(&self, s: &LinkState, up: bool) -> Result<(), LinkError> {
        let b = LinkUnspec::new_with_index(s.index);
        let (op, msg) = if up {
            ("set up", b.up().build())
        } else {
            ("set down", b.down().build())
        };
        self.set(op, &s.name, msg).await
    }

    pub async fn rename(&self, s: &LinkState, to: &str) -> Result<(), LinkError> {
        check_name(to)?;
        self.set(
            "rename",
            &s.name,
            LinkUnspec::new_with_index(s.index).name(to).build(),
        )
        .await
    }

    pub async fn set_mac(&self, s: &LinkState, mac: &str) -> Result<(), LinkError> {
        let bytes = parse_mac(&s.name, mac)?;
        self.set(
            "set the MAC of",
            &s.name,
            LinkUnspec::new_with_index(s.index).address(bytes).build(),
        )
        .await
    }

    pub async fn set_mtu(&self, s: &LinkState, mtu: u32) -> Result<(), LinkError> {
        self.set(
            "set the MTU of",
            &s.name,
            LinkUnspec::new_with_index(s.index).mtu(mtu).build(),
        )
        .await
    }

    pub async fn set_controller(
        &self,
        s: &LinkState,
        controller: Option<u32>,
    ) -> Result<(), LinkError> {
        let b = LinkUnspec::new_with_index(s.index);
        let msg = match controller {
            Some(c) => b.controller(c).build(),
            None => b.nocontroller().build(),
        };
        self.set("set the master of", &s.name, msg).await
    }

    pub async fn set_learning(&self, s: &LinkState, learning: bool) -> Result<(), LinkError> {
        let msg = LinkBridgePort::new(s.index).learning(learning).build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(Self::failed("set bridge-port learning on", &s.name))
    }

    /// Every address of the link, as the kernel dumps them.
    async fn address_messages(&self, s: &LinkState) -> Result<Vec<AddressMessage>, LinkError> {
        let mut get = self.handle.address().get().set_link_index_filter(s.index);
        // Filtered by the kernel too where the socket has strict checking.
        get.message_mut().header.index = s.index;
        get.execute()
            .try_collect()
            .await
            .map_err(Self::failed("list the addresses of", &s.name))
    }

    pub async fn addresses(&self, s: &LinkState) -> Result<Vec<IpNet>, LinkError> {
        Ok(self
            .address_messages(s)
            .await?
            .iter()
            .filter(|m| m.header.index == s.index)
            .filter_map(address_of)
            .collect())
    }

    pub async fn add_address(&self, s: &LinkState, net: IpNet) -> Result<bool, LinkError> {
        match self
            .handle
            .address()
            .add(s.index, net.addr(), net.prefix_len())
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(false),
            Err(source) => Err(LinkError::Netlink {
                op: "add an address to",
                link: s.name.clone(),
                source,
            }),
        }
    }

    /// Deletes one address, or all of them (`None`). Missing addresses are fine.
    pub async fn delete_addresses(
        &self,
        s: &LinkState,
        only: Option<IpNet>,
    ) -> Result<usize, LinkError> {
        let mut n = 0;
        for msg in self.address_messages(s).await? {
            if msg.header.index != s.index {
                continue;
            }
            if only.is_some() && address_of(&msg) != only {
                continue;
            }
            match self.handle.address().del(msg).execute().await {
                Ok(()) => n += 1,
                Err(e)
                    if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(ENOENT) | Some(ENODEV)) => {}
                Err(source) => {
                    return Err(LinkError::Netlink {
                        op: "remove an address from",
                        link: s.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(n)
    }

    /// The addresses and routes of the link that the kernel would not make again itself.
    pub async fn config(&self, s: &LinkState) -> Result<LinkConfig, LinkError> {
        let mut out = LinkConfig::default();
        for mut msg in self.address_messages(s).await? {
            let Some(net) = address_of(&msg) else {
                continue;
            };
            if msg.header.index != s.index || is_link_local_v6(&net) {
                continue;
            }
            let keep = AddressFlags::Nodad
                | AddressFlags::Homeaddress
                | AddressFlags::Managetempaddr
                | AddressFlags::Noprefixroute
                | AddressFlags::Mcautojoin
                | AddressFlags::Optimistic;
            let mut flags = AddressFlags::empty();
            msg.attributes.retain_mut(|a| match a {
                AddressAttribute::Flags(f) => {
                    flags = *f & keep;
                    false
                }
                AddressAttribute::Label(_) => false,
                _ => true,
            });
            msg.header.flags = AddressHeaderFlags::from_bits_truncate((flags.bits() & 0xff) as u8);
            msg.attributes.push(AddressAttribute::Flags(flags));
            let mut buf = vec![0u8; msg.buffer_len()];
            msg.emit(&mut buf);
            out.addresses.push(Saved {
                summary: net.to_string(),
                netlink: hex(&buf),
            });
        }
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            // All tables, every protocol and type; only routes out of this link where the
            // socket has strict checking (see `crate::ns::in_netns`): else the kernel dumps
            // every route of the namespace and the filter below does the work.
            let mut filter = RouteMessage::default();
            filter.header.address_family = family;
            filter.attributes.push(RouteAttribute::Oif(s.index));
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(filter)
                .execute()
                .try_collect()
                .await
                .map_err(Self::failed("list the routes of", &s.name))?;
            for mut msg in routes {
                let oif = msg.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let table = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(msg.header.table));
                if oif != Some(s.index)
                    || table == 255
                    || matches!(
                        msg.header.protocol,
                        RouteProtocol::Kernel | RouteProtocol::Ra | RouteProtocol::IcmpRedirect
                    )
                    || msg.header.kind != RouteType::Unicast
                {
                    continue;
                }
                msg.attributes.retain(|a| {
                    !matches!(
                        a,
                        RouteAttribute::CacheInfo(_)
                            | RouteAttribute::MfcStats(_)
                            | RouteAttribute::MulticastExpires(_)
                            | RouteAttribute::Expires(_)
                    )
                });
                msg.header.flags = Default::default();
                let dst = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Destination(d) => ip_of(d),
                        _ => None,
                    })
                    .map(|d| format!("{d}/{}", msg.header.destination_prefix_length))
                    .unwrap_or_else(|| "default".into());
                let via = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip_of(g),
                        _ => None,
                    })
                    .map(|g| format!(" via {g}"))
                    .unwrap_or_default();
                let mut buf = vec![0u8; msg.buffer_len()];
                msg.emit(&mut buf);
                out.routes.push(Saved {
                    summary: format!("{dst}{via} table {table}"),
                    netlink: hex(&buf),
                });
            }
        }
        Ok(out)
    }

    /// Puts back saved addresses, then saved routes, on the link (by its current index);
    /// what is already there stays as it is.
    pub async fn restore(&self, s: &LinkState, config: &LinkConfig) -> Result<(), LinkError> {
        let damaged = |what: &str| LinkError::Damaged {
            link: s.name.clone(),
            what: what.to_string(),
        };
        for saved in &config.addresses {
            let bytes = unhex(&saved.netlink).ok_or_else(|| damaged(&saved.summary))?;
            let mut msg = <AddressMessage as Parseable<[u8]>>::parse(&bytes[..])
                .map_err(|_| damaged(&saved.summary))?;
            msg.header.index = s.index;
            let Some(net) = address_of(&msg) else {
                continue;
            };
            let mut req = self
                .handle
                .address()
                .add(s.index, net.addr(), net.prefix_len());
            *req.message_mut() = msg;
            match req.execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(source) => {
                    return Err(LinkError::Netlink {
                        op: "restore an address on",
                        link: s.name.clone(),
                        source,
                    });
                }
            }
        }
        for saved in &config.routes {
            let bytes = unhex(&saved.netlink).ok_or_else(|| damaged(&saved.summary))?;
            let mut msg = <RouteMessage as Parseable<[u8]>>::parse(&bytes[..])
                .map_err(|_| damaged(&saved.summary))?;
            for a in msg.attributes.iter_mut() {
                if let RouteAttribute::Oif(i) = a {
                    *i = s.index;
                }
            }
            match self.handle.route().add(msg).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(source) => {
                    return Err(LinkError::Netlink {
                        op: "restore a route on",
                        link: s.name.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// `LinkUnspec` builders with a kind, for kinds rtnetlink has no builder for (`ifb`).
trait LinkMessageBuilderExt {
    fn kind(self, kind: InfoKind) -> Self;
}

impl LinkMessageBuilderExt for rtnetlink::LinkMessageBuilder<LinkUnspec> {
    fn kind(self, kind: InfoKind) -> Self {
        self.append_extra_attribute(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_only_as_six_hex_bytes() {
        assert_eq!(
            parse_mac("x", "02:00:00:00:00:0a").unwrap(),
            [2, 0, 0, 0, 0, 10]
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:0g",
            "2:0:0:0:0:0",
            "02-00-00-00-00-00",
        ] {
            assert!(parse_mac("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_names_follow_the_kernel_rules() {
        for good in ["eth0", "k6t-eth0", "tap1a2b3c4d5e6", "a.b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "sixteen-bytes-xx", "a b", "a:b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])).unwrap(), [0, 1, 254, 255]);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
