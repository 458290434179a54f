//! Inbound port specs, as passt writes them: `none`, `all`, `22`, `8000-8080`, `~9000`,
//! comma-separated; exclusions alone mean "all but these".
//!
//! How it works: a [`PortSet`] is a 65,536-bit map; [`PortSet::parse`] adds the included
//! items (all ports when there are only exclusions), then clears the excluded ones. Port 0
//! is never in a set. A set that starts from all ports (`all`, or exclusions alone) is
//! marked [`PortSet::every`]: forwarding it means "whatever is free", as passt does — the
//! listeners leave out the namespace's ephemeral range and ports another socket holds
//! (`forward.rs`), where a listed port that cannot be had is an error.

use netbind_plan::model::PortForward;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error("port spec {spec:?}: {item:?} is not a port, a range a-b, ~exclusion, all or none")]
    Item { spec: String, item: String },
    #[error("port spec {spec:?}: range {item:?} runs backwards")]
    Backwards { spec: String, item: String },
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

    /// Parses a passt-style spec.
    pub fn parse(spec: &str) -> Result<PortSet, PortSpecError> {
        let spec_trim = spec.trim();
        match spec_trim {
            "none" | "" => return Ok(PortSet::none()),
            "all" => return Ok(PortSet::all()),
            _ => {}
        }
        let mut include = PortSet::none();
        let mut exclude = PortSet::none();
        let mut any_include = false;
        for item in spec_trim.split(',') {
            let item = item.trim();
            let (target, body) = match item.strip_prefix('~') {
                Some(rest) => (&mut exclude, rest),
                None => {
                    any_include = true;
                    (&mut include, item)
                }
            };
            let bad = || PortSpecError::Item {
                spec: spec.into(),
                item: item.into(),
            };
            let port = |s: &str| {
                s.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(bad)
            };
            let (from, to) = match body.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(body)?;
                    (p, p)
                }
            };
            if from > to {
                return Err(PortSpecError::Backwards {
                    spec: spec.into(),
                    item: item.into(),
                });
            }
            target.insert_range(from, to);
        }
        let mut set = if any_include { include } else { PortSet::all() };
        for p in 1..=65535u16 {
            if exclude.contains(p) {
                set.remove_range(p, p);
            }
        }
        Ok(set)
    }

    /// The plan's form of the same thing.
    pub fn from_forward(f: &PortForward) -> PortSet {
        match f {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_all() {
        assert!(PortSet::parse("none").unwrap().is_empty());
        assert_eq!(PortSet::parse("all").unwrap().len(), 65535);
    }

    #[test]
    fn all_and_exclusions_alone_mean_whatever_is_free_and_lists_do_not() {
        assert!(PortSet::parse("all").unwrap().every);
        assert!(PortSet::parse("~22").unwrap().every);
        assert!(!PortSet::parse("22,80").unwrap().every);
        assert!(!PortSet::parse("none").unwrap().every);
    }

    #[test]
    fn singles_ranges_and_exclusions() {
        let s = PortSet::parse("22,8000-8002,~8001").unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![22, 8000, 8002]);
    }

    #[test]
    fn exclusions_alone_mean_all_but() {
        let s = PortSet::parse("~15000,~15001-15002").unwrap();
        assert_eq!(s.len(), 65535 - 3);
        assert!(!s.contains(15001) && s.contains(80));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(PortSet::parse("0").is_err());
        assert!(PortSet::parse("70000").is_err());
        assert!(PortSet::parse("9-3").is_err());
        assert!(PortSet::parse("x").is_err());
    }

    #[test]
    fn plan_forward_converts() {
        let s = PortSet::from_forward(&PortForward::All {
            exclude: vec![15000],
        });
        assert!(!s.contains(15000) && s.contains(1));
        assert_eq!(
            PortSet::from_forward(&PortForward::Ports { ports: vec![80] }).len(),
            1
        );
    }
}
