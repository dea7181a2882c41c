//! Link types (pcap LINKTYPE_*) and interface types (ARPHRD_*) in one place:
//! which link type an interface's packets have, and which packets an
//! interface can take.

/// LINKTYPE_ETHERNET (DLT_EN10MB).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// LINKTYPE_RAW: an IPv4 or IPv6 packet, no link header.
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;

pub use libc::{
    ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, ARPHRD_SIT, ARPHRD_TUNNEL, ARPHRD_TUNNEL6,
};
/// Not in libc: RAWIP devices (e.g. qmi_wwan, rmnet).
pub const ARPHRD_RAWIP: u16 = 519;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_802_3: u16 = 0x0001;

/// What an interface of ARPHRD type `arphrd` carries, as a pcap link
/// type: Ethernet for Ethernet devices and loopback (lo has an all-zero
/// Ethernet header), raw IP for devices without a link header (TUN,
/// WireGuard, IPIP/SIT tunnels, RAWIP modems); None for anything else
/// (GRE devices may build a link header of their own, so they are left out).
pub fn linktype_of_interface(arphrd: u16) -> Option<u32> {
    match arphrd {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(LINKTYPE_ETHERNET),
        ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT => {
            Some(LINKTYPE_RAW)
        }
        _ => None,
    }
}

/// Why packets cannot be sent as they are, or not to an interface.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkTypeError {
    #[error("an Ethernet frame of {0} bytes (at least 14)")]
    ShortFrame(usize),
    #[error(
        "link type {linktype} but not an IP packet of that version ({len} bytes{})",
        .version.map(|v| format!(", version {v}")).unwrap_or_default()
    )]
    NotIp {
        linktype: u32,
        len: usize,
        version: Option<u8>,
    },
    #[error("link type {0} is not supported (1 Ethernet, 101 raw IP, 228 IPv4, 229 IPv6)")]
    Unsupported(u32),
    #[error(
        "{name} is an Ethernet interface but {file} holds raw IP packets (link type {linktype}): \
         they need an interface without a link header (e.g. a TUN)"
    )]
    NeedsNoLinkHeader {
        name: String,
        file: String,
        linktype: u32,
    },
    #[error(
        "{name} has no Ethernet header (ARPHRD type {arphrd}) but {file} holds Ethernet frames"
    )]
    NoEthernetHeader {
        name: String,
        arphrd: u16,
        file: String,
    },
    #[error(
        "{name}: interfaces of ARPHRD type {arphrd} are not supported (Ethernet or no link header)"
    )]
    UnsupportedInterface { name: String, arphrd: u16 },
}

/// Whether `data` is a packet of `linktype` that can be sent as it is:
/// an Ethernet frame with its header, or an IP packet of the right version.
pub fn check_packet(linktype: u32, data: &[u8]) -> Result<(), LinkTypeError> {
    match linktype {
        LINKTYPE_ETHERNET if data.len() < 14 => Err(LinkTypeError::ShortFrame(data.len())),
        LINKTYPE_ETHERNET => Ok(()),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            let version = data.first().map(|b| b >> 4);
            let fits = match linktype {
                LINKTYPE_IPV4 => version == Some(4),
                LINKTYPE_IPV6 => version == Some(6),
                _ => matches!(version, Some(4 | 6)),
            };
            if fits {
                Ok(())
            } else {
                Err(LinkTypeError::NotIp {
                    linktype,
                    len: data.len(),
                    version,
                })
            }
        }
        other => Err(LinkTypeError::Unsupported(other)),
    }
}

/// The protocol (ETH_P_*) of a packet that `check_packet` accepted, for
/// sockaddr_ll (the kernel sets skb->protocol from it).
pub fn protocol_of(linktype: u32, data: &[u8]) -> u16 {
    if linktype == LINKTYPE_ETHERNET {
        let etype = u16::from_be_bytes([data[12], data[13]]);
        // Below 0x0600 the field is an 802.3 length, not a type.
        if etype >= 0x0600 {
            etype
        } else {
            ETH_P_802_3
        }
    } else if data.first().map(|b| b >> 4) == Some(6) {
        ETH_P_IPV6
    } else {
        ETH_P_IP
    }
}

/// Whether packets of `linktype` can go to the interface `name` of ARPHRD
/// type `arphrd`; the error names both and says what would fit.
pub fn check_fits(name: &str, arphrd: u16, linktype: u32, file: &str) -> Result<(), LinkTypeError> {
    let ethernet_packet = linktype == LINKTYPE_ETHERNET;
    match (ethernet_packet, linktype_of_interface(arphrd)) {
        (true, Some(LINKTYPE_ETHERNET)) | (false, Some(LINKTYPE_RAW)) => Ok(()),
        (false, Some(LINKTYPE_ETHERNET)) => Err(LinkTypeError::NeedsNoLinkHeader {
            name: name.to_string(),
            file: file.to_string(),
            linktype,
        }),
        (true, Some(_)) => Err(LinkTypeError::NoEthernetHeader {
            name: name.to_string(),
            arphrd,
            file: file.to_string(),
        }),
        _ => Err(LinkTypeError::UnsupportedInterface {
            name: name.to_string(),
            arphrd,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH: &[u8] = &[
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, 0, 20,
    ];

    #[test]
    fn ethernet_and_loopback_are_en10mb_and_l3_devices_raw() {
        assert_eq!(linktype_of_interface(ARPHRD_ETHER), Some(LINKTYPE_ETHERNET));
        assert_eq!(
            linktype_of_interface(ARPHRD_LOOPBACK),
            Some(LINKTYPE_ETHERNET)
        );
        for l3 in [
            ARPHRD_NONE,
            ARPHRD_TUNNEL,
            ARPHRD_TUNNEL6,
            ARPHRD_SIT,
            ARPHRD_RAWIP,
        ] {
            assert_eq!(linktype_of_interface(l3), Some(LINKTYPE_RAW), "{l3}");
        }
        assert_eq!(linktype_of_interface(libc::ARPHRD_INFINIBAND), None);
    }

    #[test]
    fn fit_check_names_the_mismatch() {
        assert!(check_fits("lo", ARPHRD_LOOPBACK, LINKTYPE_ETHERNET, "f").is_ok());
        assert!(check_fits("tun0", ARPHRD_NONE, LINKTYPE_IPV6, "f").is_ok());
        let e = check_fits("veth0", ARPHRD_ETHER, LINKTYPE_RAW, "f.pcap")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("veth0 is an Ethernet interface but f.pcap holds raw IP"),
            "{e}"
        );
        let e = check_fits("tun0", ARPHRD_NONE, LINKTYPE_ETHERNET, "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no Ethernet header (ARPHRD type 65534)"),
            "{e}"
        );
        let e = check_fits("ib0", 32, LINKTYPE_ETHERNET, "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ARPHRD type 32 are not supported"), "{e}");
    }

    #[test]
    fn protocols_come_from_the_header() {
        assert_eq!(protocol_of(LINKTYPE_ETHERNET, ETH), ETH_P_IP);
        let mut short_len = ETH.to_vec();
        short_len[12..14].copy_from_slice(&46u16.to_be_bytes());
        assert_eq!(protocol_of(LINKTYPE_ETHERNET, &short_len), ETH_P_802_3);
        assert_eq!(protocol_of(LINKTYPE_RAW, &[0x60, 0, 0, 0]), ETH_P_IPV6);
        assert_eq!(protocol_of(LINKTYPE_IPV4, &[0x45, 0, 0, 20]), ETH_P_IP);
    }
}
