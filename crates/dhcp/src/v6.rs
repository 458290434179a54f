//! DHCPv6 server core for one guest NIC (stateful: one IA_NA address; and stateless).
//!
//! How it works: [`Server6::handle`] reads one client message with a checked view
//! ([`Request::parse`], written here for the same reason as in `v4`: a guest must not be
//! able to crash its server through a third-party decoder) and answers:
//! - SOLICIT → ADVERTISE with the planned address, or REPLY at once when the client
//!   asked for Rapid Commit;
//! - REQUEST, RENEW, REBIND → REPLY with the address (REQUEST/RENEW naming another
//!   server's DUID are ignored);
//! - CONFIRM → REPLY Success when every address the client holds is the planned one,
//!   NotOnLink otherwise (the guest moved: it must start over);
//! - RELEASE, DECLINE → REPLY Success (counted);
//! - INFORMATION-REQUEST → REPLY with DNS servers and search list only.
//!
//! Every reply echoes the client's DUID, carries the server DUID and the DNS options
//! (23, 24), and the client's fully qualified name when one is set
//! ([`Server6::set_fqdn`]: option 39, RFC 4704, with flags saying the server updates
//! no DNS record: N, and O when the client asked it to). The server's DUID is DUID-LL of the masquerade bridge MAC
//! 02:00:00:00:00:00, the same in every pod, as a DUID must only be unique per link.
//!
//! When the runner knows the sender's MAC (packet socket, user-mode engine) it passes it
//! and requests from other MACs are dropped; over a plain UDP socket it cannot, and the
//! link is the guest's own point-to-point tap anyway.
//!
//! What holds: any byte string is answered or dropped with a [`Drop6`] reason; no panics.

use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, IAAddr, IANA, Message, MessageType, OptionCode, Status, StatusCode, UnknownOption,
};
use dhcproto::{Encodable, Encoder, Name};
use netbind_plan::model::Dhcp6Config;

/// DUID-LL (type 3), hardware type Ethernet (1), MAC 02:00:00:00:00:00.
pub const SERVER_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop6 {
    #[error("not a DHCPv6 client message")]
    Malformed,
    #[error("from a client other than the guest")]
    OtherClient,
    #[error("no client identifier")]
    NoClientId,
    #[error("addressed to another server")]
    OtherServer,
    #[error("message type not handled by a server")]
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply6 {
    pub kind: MessageType,
    /// UDP payload, to the client's link-local address, port 546.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters6 {
    pub advertises: u64,
    pub replies: u64,
    pub releases: u64,
    pub declines: u64,
    pub dropped_malformed: u64,
    pub dropped_other: u64,
}

#[derive(Debug, Clone)]
pub struct Server6 {
    config: Dhcp6Config,
    client_mac: Option<[u8; 6]>,
    /// The client's fully qualified name, in DNS wire format (option 39).
    fqdn: Option<Vec<u8>>,
    pub counters: Counters6,
}

impl Server6 {
    pub fn new(config: Dhcp6Config) -> Server6 {
        let client_mac = crate::v4::parse_mac(&config.client_mac);
        Server6 {
            config,
            client_mac,
            fqdn: None,
            counters: Counters6::default(),
        }
    }

    /// Tells the client `fqdn` as its fully qualified name (option 39); false, and
    /// nothing told, when it is not a domain name.
    pub fn set_fqdn(&mut self, fqdn: &str) -> bool {
        self.fqdn = crate::ra::encode_name(fqdn).filter(|w| w.len() <= 255);
        self.fqdn.is_some()
    }

    pub fn config(&self) -> &Dhcp6Config {
        &self.config
    }

    /// Answers one client message. `sender_mac` is the Ethernet source when known.
    pub fn handle(&mut self, sender_mac: Option<[u8; 6]>, payload: &[u8]) -> Result<Reply6, Drop6> {
        let result = self.answer(sender_mac, payload);
        match &result {
            Ok(r) if r.kind == MessageType::Advertise => self.counters.advertises += 1,
            Ok(_) => self.counters.replies += 1,
            Err(Drop6::Malformed) => self.counters.dropped_malformed += 1,
            Err(_) => self.counters.dropped_other += 1,
        }
        result
    }

    fn answer(&mut self, sender_mac: Option<[u8; 6]>, payload: &[u8]) -> Result<Reply6, Drop6> {
        if let (Some(sender), Some(guest)) = (sender_mac, self.client_mac)
            && sender != guest
        {
            return Err(Drop6::OtherClient);
        }
        let req = Request::parse(payload)?;
        let client_id = req.client_id.clone().ok_or(Drop6::NoClientId)?;
        if req.server_id.as_deref().is_some_and(|id| id != SERVER_DUID) {
            return Err(Drop6::OtherServer);
        }
        let kind = MessageType::from(req.kind);
        let (reply_kind, ia, status) = match kind {
            MessageType::Solicit if req.rapid_commit => (MessageType::Reply, true, None),
            MessageType::Solicit => (MessageType::Advertise, true, None),
            MessageType::Request | MessageType::Renew | MessageType::Rebind => {
                (MessageType::Reply, true, None)
            }
            MessageType::Confirm => {
                let on_link = req.addresses.iter().all(|a| *a == self.config.address);
                let status = if on_link {
                    Status::Success
                } else {
                    Status::NotOnLink
                };
                (MessageType::Reply, false, Some(status))
            }
            MessageType::Release => {
                self.counters.releases += 1;
                (MessageType::Reply, false, Some(Status::Success))
            }
            MessageType::Decline => {
                self.counters.declines += 1;
                (MessageType::Reply, false, Some(Status::Success))
            }
            MessageType::InformationRequest => (MessageType::Reply, false, None),
            _ => return Err(Drop6::Unsupported),
        };
        let mut m = Message::new_with_id(reply_kind, req.xid);
        let opts = m.opts_mut();
        opts.insert(DhcpOption::ServerId(SERVER_DUID.to_vec()));
        opts.insert(DhcpOption::ClientId(client_id));
        if kind == MessageType::Solicit && req.rapid_commit {
            opts.insert(DhcpOption::RapidCommit);
        }
        if let Some(status) = status {
            opts.insert(DhcpOption::StatusCode(StatusCode {
                status,
                msg: String::new(),
            }));
        }
        if ia && let Some(iaid) = req.iaid {
            opts.insert(DhcpOption::IANA(self.ia_na(iaid)));
        }
        if !self.config.dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServers(self.config.dns.clone()));
        }
        let search: Vec<Name> = self
            .config
            .search
            .iter()
            .filter_map(|d| Name::from_ascii(d).ok())
            .collect();
        if !search.is_empty() {
            opts.insert(DhcpOption::DomainSearchList(search));
        }
        if let Some(name) = &self.fqdn {
            // RFC 4704 §4.1 flags: N (0x04), the server updates nothing; O (0x02) when
            // that overrides the client's S (0x01).
            let overridden = req.fqdn_flags.is_some_and(|f| f & 0x01 != 0);
            let mut data = vec![0x04 | if overridden { 0x02 } else { 0 }];
            data.extend_from_slice(name);
            let code = OptionCode::ClientFqdn;
            opts.insert(DhcpOption::Unknown(UnknownOption::new(code, data)));
        }
        let mut payload = Vec::with_capacity(256);
        // Values come from the plan; encoding into a Vec does not fail for them.
        if m.encode(&mut Encoder::new(&mut payload)).is_err() {
            payload.clear();
        }
        Ok(Reply6 {
            kind: reply_kind,
            payload,
        })
    }

    fn ia_na(&self, iaid: u32) -> IANA {
        let lease = self.config.lease_seconds;
        let mut ia = IANA {
            id: iaid,
            t1: lease / 2,
            t2: lease / 5 * 4,
            opts: Default::default(),
        };
        ia.opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: self.config.address,
            preferred_life: lease,
            valid_life: lease,
            opts: Default::default(),
        }));
        ia
    }
}

/// The parts of a client message the server uses, read with bounds checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Request {
    kind: u8,
    xid: [u8; 3],
    client_id: Option<Vec<u8>>,
    server_id: Option<Vec<u8>>,
    rapid_commit: bool,
    /// IAID of the first IA_NA.
    iaid: Option<u32>,
    /// Addresses inside the IA_NA options.
    addresses: Vec<Ipv6Addr>,
    /// The flags of the client's FQDN option, when it sent one.
    fqdn_flags: Option<u8>,
}

/// Iterates over DHCPv6 options (code u16, length u16, value), failing on truncation.
fn options(mut b: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Drop6>> {
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        let item = (|| {
            let head = b.get(..4).ok_or(Drop6::Malformed)?;
            let code = u16::from_be_bytes([head[0], head[1]]);
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let value = b.get(4..4 + len).ok_or(Drop6::Malformed)?;
            b = &b[4 + len..];
            Ok((code, value))
        })();
        if item.is_err() {
            b = &[];
        }
        Some(item)
    })
}

impl Request {
    fn parse(b: &[u8]) -> Result<Request, Drop6> {
        let (&kind, rest) = b.split_first().ok_or(Drop6::Malformed)?;
        let xid: [u8; 3] = rest
            .get(..3)
            .and_then(|x| x.try_into().ok())
            .ok_or(Drop6::Malformed)?;
        let mut req = Request {
            kind,
            xid,
            ..Request::default()
        };
        for opt in options(&rest[3..]) {
            let (code, value) = opt?;
            match code {
                1 => req.client_id = Some(value.to_vec()),
                2 => req.server_id = Some(value.to_vec()),
                14 => req.rapid_commit = true,
                39 => req.fqdn_flags = value.first().copied(),
                3 if req.iaid.is_none() => {
                    let head = value.get(..12).ok_or(Drop6::Malformed)?;
                    req.iaid = Some(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
                    for sub in options(&value[12..]) {
                        let (sub_code, sub_value) = sub?;
                        if sub_code == 5
                            && let Some(addr) = sub_value
                                .get(..16)
                                .and_then(|a| <[u8; 16]>::try_from(a).ok())
                        {
                            req.addresses.push(Ipv6Addr::from(addr));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Decoder};

    const GUEST: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];

    fn config() -> Dhcp6Config {
        Dhcp6Config {
            interface: "k6t-eth0".into(),
            client_mac: "02:00:00:00:00:0a".into(),
            address: "fd10:0:2::2".parse().unwrap(),
            dns: vec!["fd00:10:96::a".parse().unwrap()],
            search: vec!["ns.svc.cluster.local".into()],
            lease_seconds: 999 * 86400,
        }
    }

    fn client(kind: MessageType, extra: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::new_with_id(kind, [1, 2, 3]);
        m.opts_mut()
            .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0x0a]));
        for o in extra {
            m.opts_mut().insert(o);
        }
        let mut out = Vec::new();
        m.encode(&mut Encoder::new(&mut out)).unwrap();
        out
    }

    fn ia(addr: Option<Ipv6Addr>) -> DhcpOption {
        let mut ia = IANA {
            id: 7,
            t1: 0,
            t2: 0,
            opts: Default::default(),
        };
        if let Some(addr) = addr {
            ia.opts.insert(DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life: 0,
                valid_life: 0,
                opts: Default::default(),
            }));
        }
        DhcpOption::IANA(ia)
    }

    fn decode(r: &Reply6) -> Message {
        Message::decode(&mut Decoder::new(&r.payload)).unwrap()
    }

    fn offered(m: &Message) -> Option<Ipv6Addr> {
        match m.opts().get(dhcproto::v6::OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => match ia.opts.get(dhcproto::v6::OptionCode::IAAddr) {
                Some(DhcpOption::IAAddr(a)) => Some(a.addr),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn solicit_gets_an_advertise_with_the_planned_address() {
        let mut s = Server6::new(config());
        let r = s
            .handle(Some(GUEST), &client(MessageType::Solicit, vec![ia(None)]))
            .unwrap();
        assert_eq!(r.kind, MessageType::Advertise);
        let m = decode(&r);
        assert_eq!(m.xid(), [1, 2, 3]);
        assert_eq!(offered(&m), Some("fd10:0:2::2".parse().unwrap()));
        assert!(
            m.opts()
                .get(dhcproto::v6::OptionCode::DomainNameServers)
                .is_some()
        );
    }

    #[test]
    fn a_set_fqdn_goes_in_option_39_in_wire_format_with_no_server_update() {
        let mut s = Server6::new(config());
        assert!(s.set_fqdn("vm1.example.test."));
        let r = s
            .handle(None, &client(MessageType::Solicit, vec![ia(None)]))
            .unwrap();
        let mut want = vec![0, 39, 0, 19, 0x04];
        want.extend(b"\x03vm1\x07example\x04test\x00");
        assert!(r.payload.windows(want.len()).any(|w| w == want), "{r:?}");
        let asked = DhcpOption::Unknown(UnknownOption::new(
            OptionCode::ClientFqdn,
            b"\x01\x03vm1\x00".to_vec(),
        ));
        let r = s
            .handle(None, &client(MessageType::Solicit, vec![ia(None), asked]))
            .unwrap();
        want[4] = 0x06;
        assert!(
            r.payload.windows(want.len()).any(|w| w == want),
            "O set: the client asked for an update"
        );
        assert!(!Server6::new(config()).set_fqdn("a..b"));
    }

    #[test]
    fn rapid_commit_solicit_gets_a_reply_at_once() {
        let mut s = Server6::new(config());
        let r = s
            .handle(
                None,
                &client(
                    MessageType::Solicit,
                    vec![ia(None), DhcpOption::RapidCommit],
                ),
            )
            .unwrap();
        assert_eq!(r.kind, MessageType::Reply);
        assert!(
            decode(&r)
                .opts()
                .get(dhcproto::v6::OptionCode::RapidCommit)
                .is_some()
        );
    }

    #[test]
    fn request_naming_another_server_is_ignored() {
        let mut s = Server6::new(config());
        let req = client(
            MessageType::Request,
            vec![
                ia(None),
                DhcpOption::ServerId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]),
            ],
        );
        assert_eq!(s.handle(None, &req), Err(Drop6::OtherServer));
    }

    #[test]
    fn confirm_of_a_foreign_address_is_not_on_link() {
        let mut s = Server6::new(config());
        let r = s
            .handle(
                None,
                &client(
                    MessageType::Confirm,
                    vec![ia(Some("2001:db8::5".parse().unwrap()))],
                ),
            )
            .unwrap();
        match decode(&r).opts().get(dhcproto::v6::OptionCode::StatusCode) {
            Some(DhcpOption::StatusCode(c)) => assert_eq!(c.status, Status::NotOnLink),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn information_request_gets_dns_without_address() {
        let mut s = Server6::new(config());
        let r = s
            .handle(None, &client(MessageType::InformationRequest, vec![]))
            .unwrap();
        let m = decode(&r);
        assert_eq!(offered(&m), None);
        assert!(
            m.opts()
                .get(dhcproto::v6::OptionCode::DomainSearchList)
                .is_some()
        );
    }

    #[test]
    fn other_macs_are_not_answered() {
        let mut s = Server6::new(config());
        assert_eq!(
            s.handle(
                Some([2, 0, 0, 0, 0, 0xbb]),
                &client(MessageType::Solicit, vec![])
            ),
            Err(Drop6::OtherClient)
        );
    }

    #[test]
    fn truncated_option_is_malformed() {
        let mut s = Server6::new(config());
        assert_eq!(
            s.handle(None, &[1, 0, 0, 1, 0, 1, 0, 200, 1]),
            Err(Drop6::Malformed)
        );
        assert_eq!(s.counters.dropped_malformed, 1);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_answered_or_dropped(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut s = Server6::new(config());
            let _ = s.handle(None, &bytes);
        }
    }
}
