//! Interfaces, addresses, routes and neighbours as plain data, plus the
//! parsing and formatting helpers that `ifconfig`, `ip` and `tap` share.

use std::net::{IpAddr, Ipv4Addr};

/// An interface name that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: no such interface")]
pub struct NoSuchInterface(pub String);

/// The one interface lookup: name → index, with the error users read.
pub fn ifindex(name: &str) -> Result<u32, NoSuchInterface> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
        return Err(NoSuchInterface(name.to_string()));
    }
    nix::net::if_::if_nametoindex(name).map_err(|_| NoSuchInterface(name.to_string()))
}

/// Whether an interface of that name exists (in this namespace).
pub fn exists(name: &str) -> bool {
    ifindex(name).is_ok()
}

/// Whether the interface of that index still exists (in this namespace):
/// a job on it ends when it is gone. By index, as a new interface of the
/// same name is another one.
pub fn index_exists(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes the call may write.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}

// IFF_* bits of the kernel's `net_device_flags` (stable UAPI).
pub const IFF_UP: u32 = 1 << 0;
pub const IFF_BROADCAST: u32 = 1 << 1;
pub const IFF_DEBUG: u32 = 1 << 2;
pub const IFF_LOOPBACK: u32 = 1 << 3;
pub const IFF_POINTOPOINT: u32 = 1 << 4;
pub const IFF_NOTRAILERS: u32 = 1 << 5;
pub const IFF_RUNNING: u32 = 1 << 6;
pub const IFF_NOARP: u32 = 1 << 7;
pub const IFF_PROMISC: u32 = 1 << 8;
pub const IFF_ALLMULTI: u32 = 1 << 9;
pub const IFF_MASTER: u32 = 1 << 10;
pub const IFF_SLAVE: u32 = 1 << 11;
pub const IFF_MULTICAST: u32 = 1 << 12;
pub const IFF_LOWER_UP: u32 = 1 << 16;
pub const IFF_DORMANT: u32 = 1 << 17;

pub use crate::packet::linktype::{ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One network interface (RTM_NEWLINK).
#[derive(Clone, Debug, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFF_* bits.
    pub flags: u32,
    pub mtu: u32,
    /// ARPHRD_* type.
    pub link_type: u16,
    pub mac: Option<Vec<u8>>,
    pub broadcast: Option<Vec<u8>>,
    /// Operational state as iproute2 prints it (UP, DOWN, UNKNOWN, …).
    pub oper: String,
    pub qdisc: Option<String>,
    pub txqlen: Option<u32>,
    pub stats: Counters,
}

/// One interface address (RTM_NEWADDR).
#[derive(Clone, Debug)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    pub broadcast: Option<Ipv4Addr>,
    /// RT_SCOPE_* value.
    pub scope: u8,
    /// IFA_F_* bits.
    pub flags: u32,
    pub label: Option<String>,
}

pub const IFA_F_SECONDARY: u32 = 0x01;
pub const IFA_F_NODAD: u32 = 0x02;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_DEPRECATED: u32 = 0x20;
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// One route (RTM_NEWROUTE).
#[derive(Clone, Debug)]
pub struct Route {
    pub v6: bool,
    /// None for the default route.
    pub dst: Option<IpAddr>,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub table: u32,
    /// RTPROT_* value.
    pub protocol: u8,
    /// RT_SCOPE_* value.
    pub scope: u8,
    /// RTN_* value.
    pub kind: u8,
    pub prefsrc: Option<IpAddr>,
    pub metric: Option<u32>,
    /// The route's path MTU and advertised MSS (RTAX_MTU, RTAX_ADVMSS).
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// RTNH_F_ONLINK: the gateway is taken as on the link.
    pub onlink: bool,
}

pub const RT_TABLE_MAIN: u32 = 254;
pub const RTN_UNICAST: u8 = 1;
pub const RTPROT_BOOT: u8 = 3;

/// One neighbour (ARP/NDP) entry (RTM_NEWNEIGH).
#[derive(Clone, Debug)]
pub struct Neigh {
    pub index: u32,
    pub dst: IpAddr,
    pub lladdr: Option<Vec<u8>>,
    /// NUD_* bits.
    pub state: u16,
    pub router: bool,
}

pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;

/// A word that is not the address, prefix or MTU it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("{0}: bad mtu")]
    Mtu(String),
    #[error("{0}: not an IP address")]
    Address(String),
    #[error("{text}: bad prefix length (0-{max})")]
    PrefixLength { text: String, max: u8 },
}

/// An MTU word of `ifconfig … mtu N` and `ip link set … mtu N`.
pub fn parse_mtu(word: &str) -> Result<u32, WordError> {
    match word.parse::<u32>() {
        Ok(mtu) if mtu > 0 => Ok(mtu),
        _ => Err(WordError::Mtu(word.to_string())),
    }
}

/// The prefix length of a contiguous netmask (255.255.255.0 → 24).
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

pub fn prefix_to_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// Parses `ADDR[/LEN]`; a missing LEN takes the family's default.
pub fn parse_prefix(text: &str, default_v4: u8, default_v6: u8) -> Result<(IpAddr, u8), WordError> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| WordError::Address(text.to_string()))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => {
            if addr.is_ipv4() {
                default_v4
            } else {
                default_v6
            }
        }
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && l.chars().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return Err(WordError::PrefixLength {
                    text: text.to_string(),
                    max,
                })
            }
        },
    };
    Ok((addr, prefix))
}

/// Zeroes the host bits, for route destinations (10.1.2.3/24 → 10.1.2.0).
pub fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
            u32::from(a) & u32::from(prefix_to_mask(prefix)),
        )),
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// Link flags as iproute2 prints them: `<BROADCAST,MULTICAST,UP,LOWER_UP>`.
pub fn ip_flag_names(flags: u32) -> String {
    const NAMES: &[(u32, &str)] = &[
        (IFF_LOOPBACK, "LOOPBACK"),
        (IFF_BROADCAST, "BROADCAST"),
        (IFF_POINTOPOINT, "POINTOPOINT"),
        (IFF_MULTICAST, "MULTICAST"),
        (IFF_NOARP, "NOARP"),
        (IFF_ALLMULTI, "ALLMULTI"),
        (IFF_PROMISC, "PROMISC"),
        (IFF_MASTER, "MASTER"),
        (IFF_SLAVE, "SLAVE"),
        (IFF_DEBUG, "DEBUG"),
        (IFF_NOTRAILERS, "NOTRAILERS"),
        (IFF_UP, "UP"),
        (IFF_LOWER_UP, "LOWER_UP"),
        (IFF_DORMANT, "DORMANT"),
    ];
    let mut names = Vec::new();
    if flags & IFF_UP != 0 && flags & IFF_RUNNING == 0 {
        names.push("NO-CARRIER");
    }
    names.extend(
        NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, n)| *n),
    );
    format!("<{}>", names.join(","))
}

/// Link flags as ifconfig prints them: `flags=4163<UP,BROADCAST,RUNNING,MULTICAST>`.
pub fn ifconfig_flag_names(flags: u32) -> String {
    const NAMES: &[(u32, &str)] = &[
        (IFF_UP, "UP"),
        (IFF_BROADCAST, "BROADCAST"),
        (IFF_DEBUG, "DEBUG"),
        (IFF_LOOPBACK, "LOOPBACK"),
        (IFF_POINTOPOINT, "POINTOPOINT"),
        (IFF_NOTRAILERS, "NOTRAILERS"),
        (IFF_RUNNING, "RUNNING"),
        (IFF_NOARP, "NOARP"),
        (IFF_PROMISC, "PROMISC"),
        (IFF_ALLMULTI, "ALLMULTI"),
        (IFF_MASTER, "MASTER"),
        (IFF_SLAVE, "SLAVE"),
        (IFF_MULTICAST, "MULTICAST"),
    ];
    let shown = flags & 0xffff;
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("flags={shown}<{}>", names.join(","))
}

/// RT_SCOPE_* as iproute2 names it.
pub fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        n => n.to_string(),
    }
}

/// RTPROT_* as iproute2 names it.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        0 => "unspec".into(),
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        9 => "ra".into(),
        16 => "dhcp".into(),
        n => n.to_string(),
    }
}

/// RTN_* route types other than unicast, as iproute2 names them.
pub fn route_type_name(kind: u8) -> String {
    match kind {
        1 => "unicast".into(),
        2 => "local".into(),
        3 => "broadcast".into(),
        4 => "anycast".into(),
        5 => "multicast".into(),
        6 => "blackhole".into(),
        7 => "unreachable".into(),
        8 => "prohibit".into(),
        9 => "throw".into(),
        10 => "nat".into(),
        n => n.to_string(),
    }
}

/// NUD_* bits as iproute2 prints them (REACHABLE, PERMANENT, …).
pub fn nud_names(state: u16) -> String {
    const NAMES: &[(u16, &str)] = &[
        (NUD_INCOMPLETE, "INCOMPLETE"),
        (NUD_REACHABLE, "REACHABLE"),
        (NUD_STALE, "STALE"),
        (NUD_DELAY, "DELAY"),
        (NUD_PROBE, "PROBE"),
        (NUD_FAILED, "FAILED"),
        (NUD_NOARP, "NOARP"),
        (NUD_PERMANENT, "PERMANENT"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "NONE".into()
    } else {
        names.join(",")
    }
}

/// `nud STATE` words of `ip neigh add`.
pub fn parse_nud(word: &str) -> Option<u16> {
    Some(match word.to_ascii_lowercase().as_str() {
        "permanent" => NUD_PERMANENT,
        "reachable" => NUD_REACHABLE,
        "stale" => NUD_STALE,
        "noarp" => NUD_NOARP,
        "delay" => NUD_DELAY,
        "probe" => NUD_PROBE,
        "failed" => NUD_FAILED,
        "incomplete" => NUD_INCOMPLETE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_convert_both_ways() {
        assert_eq!(mask_to_prefix("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(mask_to_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(mask_to_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(mask_to_prefix("255.0.255.0".parse().unwrap()), None);
        assert_eq!(
            prefix_to_mask(20),
            "255.255.240.0".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(prefix_to_mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(prefix_to_mask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn prefixes_parse_with_family_defaults() {
        assert_eq!(
            parse_prefix("10.0.0.1", 24, 64).unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert_eq!(parse_prefix("2001:db8::1", 24, 64).unwrap().1, 64);
        assert_eq!(parse_prefix("2001:db8::1/120", 24, 64).unwrap().1, 120);
        assert!(parse_prefix("10.0.0.1/33", 24, 64).is_err());
        assert!(parse_prefix("10.0.0.1/+3", 24, 64).is_err());
        assert!(parse_prefix("2001:db8::1/129", 24, 64).is_err());
        assert!(parse_prefix("nope/3", 24, 64).is_err());
        assert_eq!(
            network_of("10.1.2.3".parse().unwrap(), 24),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("2001:db8::1".parse().unwrap(), 64),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network_of("10.1.2.3".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn flags_print_like_the_originals() {
        let flags = IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST;
        assert_eq!(
            ifconfig_flag_names(flags),
            "flags=4163<UP,BROADCAST,RUNNING,MULTICAST>"
        );
        assert_eq!(
            ip_flag_names(flags | IFF_LOWER_UP),
            "<BROADCAST,MULTICAST,UP,LOWER_UP>"
        );
        assert_eq!(
            ip_flag_names(IFF_UP | IFF_BROADCAST),
            "<NO-CARRIER,BROADCAST,UP>"
        );
        assert_eq!(nud_names(NUD_PERMANENT), "PERMANENT");
        assert_eq!(nud_names(0), "NONE");
    }
}
