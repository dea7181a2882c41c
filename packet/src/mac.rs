//! `MacAddr`: the one MAC address type. It parses either case (`:` or `-`
//! between the bytes) and prints upper case, as the JSONL packet format
//! writes it; `lower()` prints the lower case that ifconfig and iproute2
//! show.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet (EUI-48) address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Lower-case form, as ifconfig and iproute2 print it.
    pub fn lower(&self) -> impl fmt::Display + '_ {
        HwAddrLower(&self.0)
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

/// Lower-case colon-separated hex of a link-layer address of any length
/// (tunnels and InfiniBand have other lengths than 6), as iproute2 prints it.
pub fn hw_addr_lower(bytes: &[u8]) -> String {
    HwAddrLower(bytes).to_string()
}

struct HwAddrLower<'a>(&'a [u8]);

impl fmt::Display for HwAddrLower<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The error of a word that is not a MAC address; says which word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: not a MAC address")]
pub struct NotAMac(pub String);

impl FromStr for MacAddr {
    type Err = NotAMac;

    /// `aa:bb:cc:dd:ee:ff` in either case; `-` also separates, and a byte
    /// may be one digit (`2:0:0:0:0:1`), as net-tools accepts.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || NotAMac(text.to_string());
        let mut mac = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut mac {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            None => Ok(MacAddr(mac)),
            Some(_) => Err(bad()),
        }
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_either_case_and_prints_upper_or_lower() {
        let mac: MacAddr = "02:00:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0, 0xab, 0xcd, 0x0f]));
        assert_eq!(mac.to_string(), "02:00:00:AB:CD:0F");
        assert_eq!(mac.lower().to_string(), "02:00:00:ab:cd:0f");
        assert_eq!("2-0-0-0-0-1".parse(), Ok(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(hw_addr_lower(&[10, 0, 0, 0xfe]), "0a:00:00:fe");
    }

    #[test]
    fn bad_words_name_themselves() {
        for word in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:xyz",
            "02::00:00:00:00",
            "02:00:00:00:00:+f",
            "",
        ] {
            assert_eq!(
                word.parse::<MacAddr>(),
                Err(NotAMac(word.to_string())),
                "{word}"
            );
        }
        assert_eq!(
            "zz".parse::<MacAddr>().unwrap_err().to_string(),
            "zz: not a MAC address"
        );
    }

    #[test]
    fn json_holds_the_upper_case_string() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x0a]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:00:00:00:00:0A\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
