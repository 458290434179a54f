//! Inbound port specs, as passt writes them: `[ADDRESS][%DEVICE]/PORTS`, where PORTS is
//! `none`, `all`, or a comma-separated list of `22`, `8000-8080`, `8080:80` (to another
//! guest port), `8000-8009:9000-9009`, and `~9000` exclusions; exclusions alone mean
//! "all but these". `-t` may be given several times, one spec each (libvirt writes one
//! per `<portForward>`).
//!
//! How it works: a [`PortSpec`] is where to listen (an address, or every address of the
//! guest's families; optionally one device, `SO_BINDTODEVICE`), a [`PortSet`] — a
//! 65,536-bit map — of the ports to listen on, and the ranges whose guest port differs.
//! [`PortSpec::parse`] adds the included items (all ports when there are only
//! exclusions), then clears the excluded ones. Port 0 is never in a set. A set that starts
//! from all ports (`all`, or exclusions alone) is marked [`PortSet::every`]: forwarding it
//! means "whatever is free", as passt does — the listeners leave out the namespace's
//! ephemeral range and ports another socket holds (`forward.rs`), where a listed port that
//! cannot be had is an error.

use std::net::IpAddr;

use netbind_plan::model::PortForward;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error(
        "port spec {spec:?}: {item:?} is not a port, a range a-b, a mapping a:b, ~exclusion, all or none"
    )]
    Item { spec: String, item: String },
    #[error("port spec {spec:?}: range {item:?} runs backwards")]
    Backwards { spec: String, item: String },
    #[error("port spec {spec:?}: {item:?} maps a range onto one of another length")]
    MapLength { spec: String, item: String },
    #[error("port spec {spec:?}: an exclusion ({item:?}) has no target port")]
    MappedExclusion { spec: String, item: String },
    #[error("port spec {spec:?}: {addr:?} is not an IPv4 or IPv6 address (ADDRESS%DEVICE/PORTS)")]
    Address { spec: String, addr: String },
    #[error("port spec {spec:?}: device {dev:?} is not an interface name (1 to 15 bytes, no '/')")]
    Device { spec: String, dev: String },
}

/// One `-t`/`-u` spec: where to listen, on which ports, to which guest ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSpec {
    /// Listen on this address only; `None`: on every address of each guest family.
    pub addr: Option<IpAddr>,
    /// Listen on this device only.
    pub dev: Option<String>,
    pub ports: PortSet,
    /// `(first, last, guest_first)`: ports `first..=last` go to `guest_first..`.
    map: Vec<(u16, u16, u16)>,
}

impl PortSpec {
    pub fn none() -> PortSpec {
        PortSpec::default()
    }

    /// Every port, on every address.
    pub fn all() -> PortSpec {
        PortSpec {
            ports: PortSet::all(),
            ..PortSpec::default()
        }
    }

    /// Where a connection to local `port` goes in the guest.
    pub fn guest_port(&self, port: u16) -> u16 {
        self.map
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&port))
            .map_or(port, |(first, _, guest)| guest + (port - first))
    }

    /// Parses one passt-style spec.
    pub fn parse(spec: &str) -> Result<PortSpec, PortSpecError> {
        let trimmed = spec.trim();
        let (at, list) = match trimmed.rsplit_once('/') {
            Some((at, list)) => (Some(at), list),
            None => (None, trimmed),
        };
        let (addr, dev) = match at {
            None => (None, None),
            Some(at) => {
                let (addr, dev) = match at.split_once('%') {
                    Some((a, d)) => (a, Some(d)),
                    None => (at, None),
                };
                let addr = match addr.trim_start_matches('[').trim_end_matches(']') {
                    "" => None,
                    a => Some(a.parse::<IpAddr>().map_err(|_| PortSpecError::Address {
                        spec: spec.into(),
                        addr: addr.into(),
                    })?),
                };
                let dev = match dev {
                    None => None,
                    Some(d) if !d.is_empty() && d.len() <= 15 && !d.contains(['/', ' ']) => {
                        Some(d.to_string())
                    }
                    Some(d) => {
                        return Err(PortSpecError::Device {
                            spec: spec.into(),
                            dev: d.into(),
                        });
                    }
                };
                (addr, dev)
            }
        };
        let (ports, map) = parse_list(spec, list.trim())?;
        Ok(PortSpec {
            addr,
            dev,
            ports,
            map,
        })
    }

    /// The plan's form of the same thing (every address, no device, no mapping).
    pub fn from_forward(f: &PortForward) -> PortSpec {
        let ports = match f {
            PortForward::None => PortSet::none(),
            PortForward::All { exclude } => {
                let mut s = PortSet::all();
                for p in exclude {
                    s.remove_range(*p, *p);
                }
                s
            }
            PortForward::Ports { ports } => {
                let mut s = PortSet::none();
                for p in ports {
                    s.insert_range(*p, *p);
                }
                s
            }
        };
        PortSpec {
            ports,
            ..PortSpec::default()
        }
    }
}

type Map = Vec<(u16, u16, u16)>;

fn parse_list(spec: &str, list: &str) -> Result<(PortSet, Map), PortSpecError> {
    match list {
        "none" | "" => return Ok((PortSet::none(), Vec::new())),
        "all" => return Ok((PortSet::all(), Vec::new())),
        _ => {}
    }
    let mut include = PortSet::none();
    let mut exclude = PortSet::none();
    let mut any_include = false;
    let mut map = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let err = |make: fn(String, String) -> PortSpecError| make(spec.into(), item.into());
        let item_err = || err(|spec, item| PortSpecError::Item { spec, item });
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(item_err)
        };
        let range = |s: &str| -> Result<(u16, u16), PortSpecError> {
            let (from, to) = match s.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(s)?;
                    (p, p)
                }
            };
            if from > to {
                return Err(err(|spec, item| PortSpecError::Backwards { spec, item }));
            }
            Ok((from, to))
        };
        let (excluded, body) = match item.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        let (local, target) = match body.split_once(':') {
            Some((l, t)) => (l, Some(t)),
            None => (body, None),
        };
        let (from, to) = range(local)?;
        if excluded {
            if target.is_some() {
                return Err(err(|spec, item| PortSpecError::MappedExclusion {
                    spec,
                    item,
                }));
            }
            exclude.insert_range(from, to);
            continue;
        }
        any_include = true;
        include.insert_range(from, to);
        if let Some(target) = target {
            let (guest_from, guest_to) = range(target)?;
            let single = !target.contains('-');
            let fits = u32::from(guest_from) + u32::from(to - from) <= 65535;
            if !fits || (!single && guest_to - guest_from != to - from) {
                return Err(err(|spec, item| PortSpecError::MapLength { spec, item }));
            }
            if guest_from != from {
                map.push((from, to, guest_from));
            }
        }
    }
    let mut set = if any_include { include } else { PortSet::all() };
    for p in exclude.iter() {
        set.remove_range(p, p);
    }
    Ok((set, map))
}

/// A set of ports.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    /// Started from all ports: listen where free, not on each port or fail.
    pub every: bool,
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortSet({} ports)", self.len())
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
            every: false,
        }
    }
}

impl PortSet {
    pub fn none() -> PortSet {
        PortSet::default()
    }

    pub fn all() -> PortSet {
        let mut s = PortSet::default();
        s.insert_range(1, 65535);
        s.every = true;
        s
    }

    pub fn contains(&self, port: u16) -> bool {
        port != 0 && self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    pub fn insert_range(&mut self, from: u16, to: u16) {
        for p in from.max(1)..=to {
            self.bits[usize::from(p >> 6)] |= 1 << (p & 63);
        }
    }

    pub fn remove_range(&mut self, from: u16, to: u16) {
        for p in from..=to {
            self.bits[usize::from(p >> 6)] &= !(1 << (p & 63));
        }
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=65535u16).filter(|p| self.contains(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap()
    }

    #[test]
    fn none_and_all() {
        assert!(parse("none").ports.is_empty());
        assert_eq!(parse("all").ports.len(), 65535);
    }

    #[test]
    fn all_and_exclusions_alone_mean_whatever_is_free_and_lists_do_not() {
        assert!(parse("all").ports.every);
        assert!(parse("~22").ports.every);
        assert!(!parse("22,80").ports.every);
        assert!(!parse("none").ports.every);
    }

    #[test]
    fn singles_ranges_and_exclusions() {
        let s = parse("22,8000-8002,~8001");
        assert_eq!(s.ports.iter().collect::<Vec<_>>(), vec![22, 8000, 8002]);
    }

    #[test]
    fn exclusions_alone_mean_all_but() {
        let s = parse("~15000,~15001-15002");
        assert_eq!(s.ports.len(), 65535 - 3);
        assert!(!s.ports.contains(15001) && s.ports.contains(80));
    }

    #[test]
    fn a_spec_without_address_listens_everywhere() {
        let s = parse("22");
        assert_eq!((s.addr, s.dev), (None, None));
    }

    #[test]
    fn address_and_device_come_before_the_slash() {
        let s = parse("192.0.2.1%eth0/22");
        assert_eq!(s.addr, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(s.dev.as_deref(), Some("eth0"));
        assert_eq!(s.ports.iter().collect::<Vec<_>>(), vec![22]);
    }

    #[test]
    fn an_ipv6_address_may_be_bare_or_bracketed() {
        assert_eq!(parse("2001:db8::1/80").addr, parse("[2001:db8::1]/80").addr);
        assert!(parse("::1/80").addr.unwrap().is_ipv6());
    }

    #[test]
    fn a_device_alone_and_all_with_an_address() {
        let s = parse("%eth0/all");
        assert_eq!((s.addr, s.dev.as_deref()), (None, Some("eth0")));
        assert!(parse("10.0.0.1/all").ports.every);
    }

    #[test]
    fn an_address_with_exclusions_keeps_the_rest_of_its_range() {
        let s = parse("192.0.2.1/20-30,~25");
        assert_eq!(s.ports.len(), 10);
        assert!(!s.ports.contains(25) && s.ports.contains(30));
    }

    #[test]
    fn a_target_after_the_colon_is_the_guest_port() {
        let s = parse("22:23,80");
        assert_eq!((s.guest_port(22), s.guest_port(80)), (23, 80));
        assert!(!s.ports.contains(23));
    }

    #[test]
    fn a_range_maps_onto_a_range_of_the_same_length() {
        let s = parse("22-80:32-90");
        assert_eq!((s.guest_port(22), s.guest_port(80)), (32, 90));
        assert_eq!(parse("8000-8009:9000").guest_port(8009), 9009);
        assert!(matches!(
            PortSpec::parse("22-80:32-40"),
            Err(PortSpecError::MapLength { .. })
        ));
        assert!(matches!(
            PortSpec::parse("100-200:65500"),
            Err(PortSpecError::MapLength { .. })
        ));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "0",
            "70000",
            "9-3",
            "x",
            "~22:23",
            "1.2.3/22",
            "%/22",
            "10.0.0.1%averyveryverylongname/22",
        ] {
            assert!(PortSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_spec_and_the_item() {
        let e = PortSpec::parse("22,x").unwrap_err().to_string();
        assert!(e.contains("\"22,x\"") && e.contains("\"x\""), "{e}");
    }

    #[test]
    fn plan_forward_converts() {
        let s = PortSpec::from_forward(&PortForward::All {
            exclude: vec![15000],
        });
        assert!(!s.ports.contains(15000) && s.ports.contains(1));
        assert_eq!(
            PortSpec::from_forward(&PortForward::Ports { ports: vec![80] })
                .ports
                .len(),
            1
        );
    }
}
