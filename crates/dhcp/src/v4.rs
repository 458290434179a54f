//! DHCPv4 server core for one guest NIC.
//!
//! How it works: [`Server4::handle`] decodes one BOOTREQUEST (dhcproto), checks that it
//! comes from the planned client MAC, and answers by message type:
//! - DISCOVER → OFFER of the planned address;
//! - REQUEST for the planned address → ACK; for any other address (another subnet, a
//!   stale lease after the pod moved) → NAK, so the client restarts at DISCOVER at once.
//!   KubeVirt never NAKs and a Windows guest keeps its stale address (KubeVirt issue
//!   #13601). A REQUEST naming another server's identifier is not for us: ignored;
//! - INFORM → ACK with configuration but no address and no lease;
//! - RELEASE, DECLINE → no reply, counted (a DECLINE means the address is in use on the
//!   link: a planning error worth seeing in the counters).
//!
//! Every reply carries the planned options: 1, 3, 6, 12, 15, 26, 42, 51, 54, 66, 67,
//! 119, 121 and 224–254. When routes go in option 121 the router is sent in option 3 as
//! well, for clients that do not know 121 (RFC 3442 clients ignore 3 then). With a
//! fully qualified name set ([`Server4::set_fqdn`]), option 81 too (RFC 4702): the name,
//! in the encoding the client's own option 81 asked for (wire format by default), and
//! flags saying the server updates no DNS record (N; O when the client asked it to).
//!
//! Requests are read by [`Request::parse`], a small checked view written here rather
//! than with dhcproto's decoder: our property test found inputs on which that decoder
//! panics (a hardware length over 16, option lengths it only `debug_assert!`s), and a
//! guest must not be able to crash its server. Replies are built with dhcproto's encoder,
//! which only ever sees values from the plan.
//!
//! What holds: any byte string is either answered or dropped with a [`Drop`] reason;
//! nothing panics; state is only the counters.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    DhcpOption, DhcpOptions, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Encodable, Encoder, Name};
use netbind_plan::model::Dhcp4Config;

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    #[error("not a DHCPv4 message")]
    Malformed,
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("from a client other than the guest")]
    OtherClient,
    #[error("no message type option")]
    NoMessageType,
    #[error("message type not handled by a server")]
    Unsupported,
    #[error("addressed to another server")]
    OtherServer,
    #[error("client released its lease")]
    Released,
    #[error("client declined the address")]
    Declined,
}

/// An answer to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    /// The encoded DHCP message (UDP payload, to client port 68).
    pub payload: Vec<u8>,
    /// Where to send it: the limited broadcast, or the client's own address when it has
    /// one configured and did not ask for broadcast.
    pub destination: Ipv4Addr,
}

/// Counters, printed by runners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub dropped_malformed: u64,
    pub dropped_other: u64,
    pub releases: u64,
    pub declines: u64,
}

/// The DHCPv4 server of one interface.
#[derive(Debug, Clone)]
pub struct Server4 {
    config: Dhcp4Config,
    client_mac: [u8; 6],
    /// The client's fully qualified name (option 81), boxed: a `Name` is large and
    /// seldom set.
    fqdn: Option<Box<Name>>,
    pub counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DHCPv4 on {interface}: client MAC {mac:?} is not six hex bytes")]
    ClientMac { interface: String, mac: String },
}

impl Server4 {
    pub fn new(config: Dhcp4Config) -> Result<Server4, ConfigError> {
        let client_mac = parse_mac(&config.client_mac).ok_or_else(|| ConfigError::ClientMac {
            interface: config.interface.clone(),
            mac: config.client_mac.clone(),
        })?;
        Ok(Server4 {
            config,
            client_mac,
            fqdn: None,
            counters: Counters::default(),
        })
    }

    /// Tells the client `fqdn` as its fully qualified name (option 81); false, and
    /// nothing told, when it is not a domain name.
    pub fn set_fqdn(&mut self, fqdn: &str) -> bool {
        let rooted = format!("{}.", fqdn.trim_end_matches('.'));
        self.fqdn = crate::ra::encode_name(fqdn)
            .and_then(|_| Name::from_ascii(rooted).ok())
            .map(Box::new);
        self.fqdn.is_some()
    }

    pub fn config(&self) -> &Dhcp4Config {
        &self.config
    }

    /// Answers one request (the UDP payload received on port 67).
    pub fn handle(&mut self, payload: &[u8]) -> Result<Reply, Drop> {
        let result = self.answer(payload);
        match &result {
            Ok(r) if r.kind == MessageType::Offer => self.counters.offers += 1,
            Ok(r) if r.kind == MessageType::Ack => self.counters.acks += 1,
            Ok(r) if r.kind == MessageType::Nak => self.counters.naks += 1,
            Ok(_) => {}
            Err(Drop::Malformed) => self.counters.dropped_malformed += 1,
            Err(Drop::Released) => self.counters.releases += 1,
            Err(Drop::Declined) => self.counters.declines += 1,
            Err(_) => self.counters.dropped_other += 1,
        }
        result
    }

    fn answer(&self, payload: &[u8]) -> Result<Reply, Drop> {
        let request = Request::parse(payload)?;
        if request.chaddr != self.client_mac {
            return Err(Drop::OtherClient);
        }
        let kind = MessageType::from(request.message_type.ok_or(Drop::NoMessageType)?);
        match kind {
            MessageType::Discover => Ok(self.reply(&request, MessageType::Offer)),
            MessageType::Request => {
                if request
                    .server_id
                    .is_some_and(|id| id != self.config.server_address)
                {
                    return Err(Drop::OtherServer);
                }
                if request.requested.unwrap_or(request.ciaddr) == self.config.address.addr() {
                    Ok(self.reply(&request, MessageType::Ack))
                } else {
                    Ok(self.nak(&request))
                }
            }
            MessageType::Inform => Ok(self.reply(&request, MessageType::Ack)),
            MessageType::Release => Err(Drop::Released),
            MessageType::Decline => Err(Drop::Declined),
            _ => Err(Drop::Unsupported),
        }
    }

    fn header(&self, request: &Request) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_xid(request.xid)
            .set_flags(Flags::new(request.flags))
            .set_giaddr(request.giaddr)
            .set_chaddr(&self.client_mac);
        m
    }

    fn reply(&self, request: &Request, kind: MessageType) -> Reply {
        let inform = request.message_type == Some(u8::from(MessageType::Inform));
        let c = &self.config;
        let mut m = self.header(request);
        if inform {
            m.set_ciaddr(request.ciaddr);
        } else {
            m.set_yiaddr(c.address.addr());
        }
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(c.server_address));
        if !inform {
            opts.insert(DhcpOption::AddressLeaseTime(c.lease_seconds));
        }
        self.insert_configuration(opts);
        if let Some(name) = &self.fqdn {
            opts.insert(DhcpOption::ClientFQDN(fqdn_reply(name, request.fqdn_flags)));
        }
        let broadcast_flag = request.flags & 0x8000 != 0;
        let destination = if request.ciaddr.is_unspecified() || (broadcast_flag && !inform) {
            Ipv4Addr::BROADCAST
        } else {
            request.ciaddr
        };
        Reply {
            kind,
            payload: encode(&m),
            destination,
        }
    }

    fn nak(&self, request: &Request) -> Reply {
        let mut m = self.header(request);
        m.set_flags(Flags::default().set_broadcast());
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Nak));
        opts.insert(DhcpOption::ServerIdentifier(self.config.server_address));
        opts.insert(DhcpOption::Message(
            "requested address is not this client's; start over".into(),
        ));
        Reply {
            kind: MessageType::Nak,
            payload: encode(&m),
            destination: Ipv4Addr::BROADCAST,
        }
    }

    fn insert_configuration(&self, opts: &mut DhcpOptions) {
        let c = &self.config;
        opts.insert(DhcpOption::SubnetMask(c.address.netmask()));
        if let Some(router) = c.router {
            opts.insert(DhcpOption::Router(vec![router]));
        }
        if !c.classless_routes.is_empty() {
            let routes = c
                .classless_routes
                .iter()
                .map(|r| (r.destination, r.gateway))
                .collect();
            opts.insert(DhcpOption::ClasslessStaticRoute(routes));
        }
        if !c.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(c.dns.clone()));
        }
        if !c.hostname.is_empty() {
            opts.insert(DhcpOption::Hostname(c.hostname.clone()));
        }
        if let Some(domain) = &c.domain_name {
            opts.insert(DhcpOption::DomainName(domain.clone()));
        }
        let search: Vec<Name> = c
            .search
            .iter()
            .filter_map(|d| Name::from_ascii(d).ok())
            .collect();
        if !search.is_empty() {
            opts.insert(DhcpOption::DomainSearch(search));
        }
        opts.insert(DhcpOption::InterfaceMtu(c.mtu));
        if !c.ntp.is_empty() {
            opts.insert(DhcpOption::NtpServers(c.ntp.clone()));
        }
        if let Some(tftp) = &c.tftp_server {
            opts.insert(DhcpOption::TFTPServerName(tftp.as_bytes().to_vec()));
        }
        if let Some(file) = &c.boot_file {
            opts.insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
        }
        for p in &c.private_options {
            let data = p.value.as_bytes().to_vec();
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(p.code),
                data,
            )));
        }
    }
}

/// The fields of a BOOTREQUEST the server looks at, read with bounds checks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 6],
    message_type: Option<u8>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    /// The flags of the client's option 81, when it sent one.
    fqdn_flags: Option<u8>,
}

const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const OPTIONS_START: usize = 240;

impl Request {
    /// RFC 2131 layout: op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr,
    /// giaddr, chaddr[16], sname[64], file[128], magic cookie, options (code, length,
    /// value; 0 pads, 255 ends).
    fn parse(b: &[u8]) -> Result<Request, Drop> {
        let header = b.get(..OPTIONS_START).ok_or(Drop::Malformed)?;
        if header[236..240] != MAGIC_COOKIE {
            return Err(Drop::Malformed);
        }
        if header[0] != 1 {
            return Err(Drop::NotRequest);
        }
        // Ethernet only: htype 1, hlen 6.
        if header[1] != 1 || header[2] != 6 {
            return Err(Drop::OtherClient);
        }
        let ip =
            |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&header[28..34]);
        let mut req = Request {
            xid: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            flags: u16::from_be_bytes([header[10], header[11]]),
            ciaddr: ip(12),
            giaddr: ip(24),
            chaddr,
            message_type: None,
            requested: None,
            server_id: None,
            fqdn_flags: None,
        };
        let mut rest = &b[OPTIONS_START..];
        while let [code, tail @ ..] = rest {
            match code {
                0 => rest = tail,
                255 => break,
                _ => {
                    let (&len, tail) = tail.split_first().ok_or(Drop::Malformed)?;
                    let value = tail.get(..usize::from(len)).ok_or(Drop::Malformed)?;
                    let addr = <[u8; 4]>::try_from(value).ok().map(Ipv4Addr::from);
                    match code {
                        53 => req.message_type = value.first().copied().filter(|_| len == 1),
                        50 => req.requested = addr,
                        54 => req.server_id = addr,
                        81 => req.fqdn_flags = value.first().copied(),
                        _ => {}
                    }
                    rest = &tail[usize::from(len)..];
                }
            }
        }
        Ok(req)
    }
}

/// Option 81 of a reply (RFC 4702 §3.1): `name`, wire format unless the client's flags
/// (`client`) asked for ASCII (E clear); N set, as the server updates no DNS record, and
/// O when that overrides the client's request for an update (its S).
fn fqdn_reply(name: &Name, client: Option<u8>) -> dhcproto::v4::fqdn::ClientFQDN {
    use dhcproto::v4::fqdn::{ClientFQDN, FqdnFlags};
    let asked = client.map(FqdnFlags::new);
    let flags = FqdnFlags::default()
        .set_e(asked.is_none_or(|f| f.e()))
        .set_o(asked.is_some_and(|f| f.s()))
        .set_n(true);
    ClientFQDN::new(flags, name.clone())
}

fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(576);
    // Encoding into a Vec fails only for option values over 255 bytes, which the plan
    // and validation rule out; an empty payload is then dropped by the runner.
    match m.encode(&mut Encoder::new(&mut out)) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in &mut out {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Decoder};
    use netbind_plan::model::{ClasslessRoute, PrivateOption};

    const GUEST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    fn config() -> Dhcp4Config {
        Dhcp4Config {
            interface: "k6t-eth0".into(),
            server_address: Ipv4Addr::new(10, 0, 2, 1),
            client_mac: "02:00:00:00:00:0a".into(),
            address: "10.0.2.2/24".parse().unwrap(),
            router: Some(Ipv4Addr::new(10, 0, 2, 1)),
            classless_routes: vec![ClasslessRoute {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 2, 1),
            }],
            dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
            search: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            domain_name: Some("ns.svc.cluster.local".into()),
            hostname: "vm1".into(),
            mtu: 1450,
            ntp: vec![Ipv4Addr::new(10, 0, 0, 123)],
            tftp_server: Some("tftp.example".into()),
            boot_file: Some("pxelinux.0".into()),
            private_options: vec![PrivateOption {
                code: 240,
                value: "hello".into(),
            }],
            lease_seconds: 999 * 86400,
        }
    }

    fn request(kind: MessageType, mac: [u8; 6], extra: &[DhcpOption]) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(0x1234_5678)
            .set_chaddr(&mac);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        encode(&m)
    }

    fn decode(reply: &Reply) -> Message {
        Message::decode(&mut Decoder::new(&reply.payload)).unwrap()
    }

    #[test]
    fn discover_gets_an_offer_of_the_planned_address_with_every_option() {
        let mut s = Server4::new(config()).unwrap();
        let reply = s
            .handle(&request(MessageType::Discover, GUEST, &[]))
            .unwrap();
        let m = decode(&reply);
        assert_eq!(reply.kind, MessageType::Offer);
        assert_eq!(reply.destination, Ipv4Addr::BROADCAST);
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 2, 2));
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("vm1".into()))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(999 * 86400))
        );
        assert!(o.get(OptionCode::ClasslessStaticRoute).is_some());
        assert!(o.get(OptionCode::DomainSearch).is_some());
        assert_eq!(
            o.get(OptionCode::NtpServers),
            Some(&DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 0, 0, 123)]))
        );
        assert_eq!(
            o.get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::Unknown(240)),
            Some(&DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(240),
                b"hello".to_vec()
            )))
        );
    }

    #[test]
    fn a_set_fqdn_goes_in_option_81_in_wire_format_with_no_server_update() {
        let mut s = Server4::new(config()).unwrap();
        assert!(s.set_fqdn("vm1.example.test"));
        let reply = s
            .handle(&request(MessageType::Discover, GUEST, &[]))
            .unwrap();
        let raw = &reply.payload;
        let at = raw
            .windows(3)
            .position(|w| w == [81, 3 + 18, 0x0c])
            .expect("option 81 with flags E and N");
        assert_eq!(&raw[at + 3..at + 5], &[255, 255], "RCODE1, RCODE2");
        assert_eq!(&raw[at + 5..at + 23], b"\x03vm1\x07example\x04test\x00");
        assert!(!Server4::new(config()).unwrap().set_fqdn("a..b"));
    }

    #[test]
    fn a_client_asking_for_an_ascii_name_and_a_server_update_is_answered_in_kind() {
        use dhcproto::v4::fqdn::{ClientFQDN, FqdnFlags};
        let mut s = Server4::new(config()).unwrap();
        s.set_fqdn("vm1.example.test");
        let asked = ClientFQDN::new(
            FqdnFlags::default().set_s(true),
            Name::from_ascii("vm1").unwrap(),
        );
        let reply = s
            .handle(&request(
                MessageType::Discover,
                GUEST,
                &[DhcpOption::ClientFQDN(asked)],
            ))
            .unwrap();
        let mut want = vec![81, 3 + 17, 0x0a, 255, 255];
        want.extend(b"vm1.example.test.");
        assert!(
            reply.payload.windows(want.len()).any(|w| w == want),
            "option 81: ASCII (E clear), N and O set, S clear"
        );
    }

    #[test]
    fn request_for_the_planned_address_is_acked() {
        let mut s = Server4::new(config()).unwrap();
        let req = request(
            MessageType::Request,
            GUEST,
            &[
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 2)),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 1)),
            ],
        );
        assert_eq!(s.handle(&req).unwrap().kind, MessageType::Ack);
        assert_eq!(s.counters.acks, 1);
    }

    #[test]
    fn request_for_another_address_is_naked() {
        let mut s = Server4::new(config()).unwrap();
        let req = request(
            MessageType::Request,
            GUEST,
            &[DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                192, 168, 7, 9,
            ))],
        );
        let reply = s.handle(&req).unwrap();
        assert_eq!(reply.kind, MessageType::Nak);
        assert_eq!(decode(&reply).yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.counters.naks, 1);
    }

    #[test]
    fn renewal_by_ciaddr_is_acked_by_unicast() {
        let mut s = Server4::new(config()).unwrap();
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_chaddr(&GUEST)
            .set_ciaddr(Ipv4Addr::new(10, 0, 2, 2));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Request));
        let reply = s.handle(&encode(&m)).unwrap();
        assert_eq!(reply.kind, MessageType::Ack);
        assert_eq!(reply.destination, Ipv4Addr::new(10, 0, 2, 2));
    }

    #[test]
    fn request_naming_another_server_is_ignored() {
        let mut s = Server4::new(config()).unwrap();
        let req = request(
            MessageType::Request,
            GUEST,
            &[
                DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 2, 2)),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 99)),
            ],
        );
        assert_eq!(s.handle(&req), Err(Drop::OtherServer));
    }

    #[test]
    fn inform_gets_configuration_without_address_or_lease() {
        let mut s = Server4::new(config()).unwrap();
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_chaddr(&GUEST)
            .set_ciaddr(Ipv4Addr::new(10, 0, 2, 2));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Inform));
        let reply = s.handle(&encode(&m)).unwrap();
        let r = decode(&reply);
        assert_eq!(reply.kind, MessageType::Ack);
        assert_eq!(r.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(r.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(r.opts().get(OptionCode::DomainNameServer).is_some());
    }

    #[test]
    fn other_clients_are_not_answered() {
        let mut s = Server4::new(config()).unwrap();
        assert_eq!(
            s.handle(&request(MessageType::Discover, [2, 0, 0, 0, 0, 0xbb], &[])),
            Err(Drop::OtherClient)
        );
    }

    #[test]
    fn release_and_decline_are_counted_without_reply() {
        let mut s = Server4::new(config()).unwrap();
        assert_eq!(
            s.handle(&request(MessageType::Release, GUEST, &[])),
            Err(Drop::Released)
        );
        assert_eq!(
            s.handle(&request(MessageType::Decline, GUEST, &[])),
            Err(Drop::Declined)
        );
        assert_eq!((s.counters.releases, s.counters.declines), (1, 1));
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut s = Server4::new(config()).unwrap();
        assert_eq!(s.handle(&[1, 2, 3]), Err(Drop::Malformed));
        assert_eq!(s.counters.dropped_malformed, 1);
    }

    #[test]
    fn bad_client_mac_in_config_is_an_error() {
        let mut c = config();
        c.client_mac = "02:00:00".into();
        assert!(Server4::new(c).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_answered_or_dropped(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut s = Server4::new(config()).unwrap();
            let _ = s.handle(&bytes);
        }

        #[test]
        fn mutated_discovers_never_panic(flips in proptest::collection::vec((0usize..300, proptest::num::u8::ANY), 1..8)) {
            let mut bytes = request(MessageType::Discover, GUEST, &[]);
            for (i, b) in flips {
                if let Some(slot) = bytes.get_mut(i) { *slot = b; }
            }
            let mut s = Server4::new(config()).unwrap();
            let _ = s.handle(&bytes);
        }
    }
}
