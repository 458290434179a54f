//! MAC address syntax, as KubeVirt accepts it (Go's `net.ParseMAC`).
//!
//! Accepted spellings: hex pairs separated by `:` or by `-` (one separator kind per
//! address), or groups of four hex digits separated by `.`; 6, 8 or 20 bytes long.
//! Only 6 bytes fit an Ethernet NIC, so longer ones parse but are "too long" — KubeVirt
//! reports the two cases apart and so do we. Case does not matter.

/// Why a MAC address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("malformed MAC address {0:?}; write six hex pairs such as 02:aa:bb:cc:dd:ee")]
    Malformed(String),
    #[error("MAC address {0:?} is too long; an Ethernet MAC has six bytes")]
    TooLong(String),
}

/// Parses a MAC address into its six bytes.
pub fn parse_mac(s: &str) -> Result<[u8; 6], MacError> {
    let bytes = parse_any(s).ok_or_else(|| MacError::Malformed(s.to_string()))?;
    <[u8; 6]>::try_from(bytes.as_slice()).map_err(|_| MacError::TooLong(s.to_string()))
}

/// Go's `net.ParseMAC`: 6, 8 or 20 bytes in one of three spellings.
fn parse_any(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let valid_len = |n: usize| matches!(n, 6 | 8 | 20);
    match b.get(2).copied() {
        Some(sep @ (b':' | b'-')) => {
            if !(b.len() + 1).is_multiple_of(3) || !valid_len((b.len() + 1) / 3) {
                return None;
            }
            b.chunks(3)
                .map(|group| match group {
                    [h, l] | [h, l, _] if group.get(2).is_none_or(|c| *c == sep) => {
                        hex_pair(*h, *l)
                    }
                    _ => None,
                })
                .collect()
        }
        _ if b.get(4) == Some(&b'.') => {
            if !(b.len() + 1).is_multiple_of(5) || !valid_len(2 * (b.len() + 1) / 5) {
                return None;
            }
            let mut out = Vec::new();
            for group in b.chunks(5) {
                match group {
                    [a, b2, c, d] | [a, b2, c, d, b'.'] => {
                        out.push(hex_pair(*a, *b2)?);
                        out.push(hex_pair(*c, *d)?);
                    }
                    _ => return None,
                }
            }
            Some(out)
        }
        _ => None,
    }
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(high)? * 16 + digit(low)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_and_dash_and_dot_spellings_parse() {
        let want = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        assert_eq!(parse_mac("02:aa:bb:cc:dd:ee"), Ok(want));
        assert_eq!(parse_mac("02-AA-BB-CC-DD-EE"), Ok(want));
        assert_eq!(parse_mac("02aa.bbcc.ddee"), Ok(want));
    }

    #[test]
    fn mixed_separators_are_malformed() {
        assert!(matches!(
            parse_mac("02:aa-bb:cc:dd:ee"),
            Err(MacError::Malformed(_))
        ));
    }

    #[test]
    fn short_or_non_hex_is_malformed() {
        for bad in [
            "",
            "02:aa:bb:cc:dd",
            "02:aa:bb:cc:dd:eg",
            "0:aa:bb:cc:dd:ee:f",
            "02:aa:bb:cc:dd:ee:",
        ] {
            assert!(
                matches!(parse_mac(bad), Err(MacError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn eight_and_twenty_byte_addresses_are_too_long() {
        assert!(matches!(
            parse_mac("02:00:5e:10:00:00:00:01"),
            Err(MacError::TooLong(_))
        ));
        let twenty = vec!["00"; 20].join(":");
        assert!(matches!(parse_mac(&twenty), Err(MacError::TooLong(_))));
    }

    #[test]
    fn non_ascii_does_not_panic() {
        assert!(parse_mac("ü2:aa:bb:cc:dd:ee").is_err());
        assert!(parse_mac("02:aa:bb:cc:dd:éé").is_err());
    }
}
