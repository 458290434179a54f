//! Renderings of a plan: the guest device as libvirt XML ([`libvirt`]) and as QEMU
//! arguments ([`qemu`]), the human table ([`table`]), and the wiring diagram as graphviz
//! DOT ([`dot`]) and SVG ([`svg`]) — both drawn from one [`picture`] of nodes and edges.
//! Pure string building; the same plan always renders to the same bytes.

pub mod dot;
pub mod libvirt;
pub mod picture;
pub mod qemu;
pub mod svg;
pub mod table;

use std::fmt;

/// A PCI address `dddd:bb:ss.f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddr {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// Parses `dddd:bb:ss.f` (hex; slot at most 0x1f, function at most 7).
pub fn parse_pci(text: &str) -> Option<PciAddr> {
    let (domain, rest) = text.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, function) = rest.split_once('.')?;
    let hex = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
    };
    let addr = PciAddr {
        domain: u16::try_from(hex(domain, 4)?).ok()?,
        bus: u8::try_from(hex(bus, 2)?).ok()?,
        slot: u8::try_from(hex(slot, 2)?).ok().filter(|s| *s <= 0x1f)?,
        function: u8::try_from(hex(function, 1)?).ok().filter(|f| *f <= 7)?,
    };
    Some(addr)
}

/// Escapes text for an XML attribute value (quoted with `'` or `"`) or element content.
/// Characters XML 1.0 cannot hold at all (control characters other than tab and line
/// breaks, U+FFFE, U+FFFF) are dropped.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_address_round_trips_in_lower_case() {
        assert_eq!(
            parse_pci("0000:81:1F.7").unwrap().to_string(),
            "0000:81:1f.7"
        );
    }

    #[test]
    fn pci_address_needs_all_four_parts_in_range() {
        assert_eq!(parse_pci("81:01.0"), None);
        assert_eq!(parse_pci("0000:81:20.0"), None);
        assert_eq!(parse_pci("0000:81:01.8"), None);
        assert_eq!(parse_pci("0000:81:01.0.1"), None);
    }

    #[test]
    fn xml_escape_covers_markup_and_quotes() {
        assert_eq!(xml_escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
    }

    #[test]
    fn xml_escape_drops_what_xml_cannot_hold() {
        assert_eq!(xml_escape("a\u{1}b\u{fffe}c\u{ffff}\td"), "abc\td");
    }
}
