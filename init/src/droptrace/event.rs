//! A drop as users see it (`show`, `watch`, `save`): decoded from either
//! backend, with names from the running kernel, and the filters over it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use std::sync::Arc;

use myinit_common::droptrace::{
    DropEvent, DropSummaryKey, DROP_HAS_DEV, DROP_HAS_L3, DROP_HAS_NETNS, DROP_HAS_SKB_OFFSETS,
};

use crate::kernel::btf::Btf;
use crate::kernel::kallsyms::Kallsyms;

/// Drop-reason names of the running kernel, never a built-in table: from
/// BTF `enum skb_drop_reason`, or from the `__print_symbolic` table of the
/// tracepoint's format file.
#[derive(Debug, Default, Clone)]
pub struct ReasonNames {
    core: HashMap<u32, String>,
    /// `enum skb_drop_reason_subsys`: names of the top-16-bit subsystems.
    subsystems: HashMap<u32, String>,
}

impl ReasonNames {
    pub fn from_btf(btf: &Btf) -> Option<Self> {
        let core = btf
            .enum_values("skb_drop_reason")?
            .into_iter()
            .filter_map(|(name, v)| {
                let short = name.strip_prefix("SKB_DROP_REASON_")?;
                Some((v as u32, short.to_string()))
            })
            .collect();
        let subsystems = btf
            .enum_values("skb_drop_reason_subsys")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, v)| {
                let short = name.strip_prefix("SKB_DROP_REASON_SUBSYS_")?;
                Some((v as u32, short.to_string()))
            })
            .collect();
        Some(ReasonNames { core, subsystems })
    }

    /// Parses `__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, …)`
    /// from a tracepoint's `print fmt` line.
    pub fn from_format(format: &str) -> Self {
        let mut core = HashMap::new();
        if let Some(start) = format.find("__print_symbolic(REC->reason") {
            let mut rest = &format[start..];
            while let Some(open) = rest.find('{') {
                rest = &rest[open + 1..];
                let Some(close) = rest.find('}') else { break };
                let entry = &rest[..close];
                if let Some((num, name)) = entry.split_once(',') {
                    let name = name.trim().trim_matches('"');
                    let num = num.trim();
                    let value = match num.strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse().ok(),
                    };
                    if let Some(value) = value {
                        core.insert(value, name.to_string());
                    }
                }
                rest = &rest[close + 1..];
            }
        }
        ReasonNames {
            core,
            subsystems: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }

    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// The name of a reason value; subsystem reasons (top 16 bits set) as
    /// `SUBSYSTEM:0xNNNN` since their names live in the subsystems' modules.
    pub fn name(&self, value: u32) -> String {
        if let Some(name) = self.core.get(&value) {
            return name.clone();
        }
        let subsys = value >> 16;
        if subsys != 0 {
            let sub = self
                .subsystems
                .get(&subsys)
                .cloned()
                .unwrap_or_else(|| format!("SUBSYS_{subsys}"));
            return format!("{sub}:{:#x}", value & 0xffff);
        }
        format!("reason {value}")
    }

    /// Every core reason name, closest to `typed` first (for the error
    /// that a name does not exist).
    pub fn closest(&self, typed: &str) -> Vec<&str> {
        let mut names: Vec<(f64, &str)> = self
            .core
            .values()
            // Enum bounds, not reasons a drop can have.
            .filter(|n| !matches!(n.as_str(), "MAX" | "SUBSYS_MASK"))
            .map(|n| (strsim::normalized_damerau_levenshtein(typed, n), n.as_str()))
            .collect();
        names.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        names.into_iter().map(|(_, n)| n).collect()
    }

    /// The value of a reason name (for the JSON `reason_code` on ftrace).
    pub fn value(&self, name: &str) -> Option<u32> {
        self.core
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(v, _)| *v)
    }
}

/// What is known of the dropped packet. Fields the backend could not read
/// are absent, never guessed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PacketSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    /// "tcp", "udp", "icmp", "icmpv6", … or the protocol number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// With `--snaplen`: the kept bytes decoded with the packet model, as
    /// the `layers` of a capture JSONL line (`droptrace save FILE.jsonl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<crate::packet::layers::Layer>>,
    /// The pcap link type of `layers` (1 Ethernet, 101 raw IP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linktype: Option<u32>,
    /// Bytes kept, and the packet's length from the same start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caplen: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_len: Option<u32>,
}

/// One drop, decoded. Serialized as one JSONL line by `droptrace save`.
#[derive(Debug, Clone, Serialize)]
pub struct DropRecord {
    /// CLOCK_MONOTONIC nanoseconds (eBPF: bpf_ktime_get_ns; ftrace: trace clock).
    pub time_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub comm: String,
    /// `function+0xoff/0xsize`.
    pub location: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<u32>,
    /// `skb->protocol` (EtherType).
    pub protocol: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// Inode of the device's network namespace (as `lsns` shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// None: the backend cannot read the packet (ftrace, or no BTF offsets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<PacketSummary>,
    pub skb: String,
}

/// L4 protocol numbers to names.
pub fn l4_name(proto: u8) -> String {
    match proto {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// EtherType names for the protocol column.
pub fn ethertype_name(protocol: u16) -> String {
    match protocol {
        0x0800 => "ipv4".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        0x8100 => "vlan".into(),
        0 => "-".into(),
        p => format!("{p:#06x}"),
    }
}

impl DropRecord {
    /// The function part of the location.
    #[cfg(test)]
    pub fn function(&self) -> &str {
        self.location.split('+').next().unwrap_or(&self.location)
    }

    /// The PACKET column: `udp 10.0.0.1:5000 > 10.0.0.2:9`, `icmp 10.0.0.1 >
    /// 10.0.0.2 type 8 code 0`, the EtherType alone when nothing more is
    /// known, `?` when the packet could not be read at all.
    pub fn packet_text(&self) -> String {
        let Some(p) = &self.packet else {
            return match self.protocol {
                0 => "?".into(),
                p => format!("{} ?", ethertype_name(p)),
            };
        };
        let (Some(src), Some(dst)) = (p.src, p.dst) else {
            return ethertype_name(self.protocol);
        };
        let l4 =
            p.l4.clone()
                .unwrap_or_else(|| ethertype_name(self.protocol));
        let host = |ip: IpAddr, port: Option<u16>| match (ip, port) {
            (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
            (ip, Some(port)) => format!("{ip}:{port}"),
            (ip, None) => ip.to_string(),
        };
        let mut text = format!("{l4} {} > {}", host(src, p.sport), host(dst, p.dport));
        if let (Some(t), Some(c)) = (p.icmp_type, p.icmp_code) {
            let _ = write!(text, " type {t} code {c}");
        }
        text
    }
}

/// Builds the packet summary of an eBPF event.
pub fn packet_from_event(e: &myinit_common::droptrace::DropEvent) -> Option<PacketSummary> {
    use myinit_common::droptrace::DROP_HAS_L4;
    if e.flags & DROP_HAS_SKB_OFFSETS == 0 {
        return None;
    }
    let mut p = PacketSummary::default();
    if e.flags & DROP_HAS_L3 != 0 {
        let (src, dst) = match e.ip_version {
            4 => (
                IpAddr::V4(Ipv4Addr::new(
                    e.saddr[0], e.saddr[1], e.saddr[2], e.saddr[3],
                )),
                IpAddr::V4(Ipv4Addr::new(
                    e.daddr[0], e.daddr[1], e.daddr[2], e.daddr[3],
                )),
            ),
            _ => (
                IpAddr::V6(Ipv6Addr::from(e.saddr)),
                IpAddr::V6(Ipv6Addr::from(e.daddr)),
            ),
        };
        p.src = Some(src);
        p.dst = Some(dst);
        p.l4 = Some(l4_name(e.l4_proto));
        if e.flags & DROP_HAS_L4 != 0 {
            if matches!(e.l4_proto, 1 | 58) {
                p.icmp_type = Some(e.sport as u8);
                p.icmp_code = Some(e.dport as u8);
            } else {
                p.sport = Some(e.sport);
                p.dport = Some(e.dport);
            }
        }
    }
    Some(p)
}

/// `--reason`, `--dev`, `--proto`, `--netns`: which drops to keep or show.
#[derive(Debug, Clone, Default)]
pub struct DropFilter {
    pub reason: Option<String>,
    pub dev: Option<String>,
    pub proto: Option<String>,
    /// Only drops on devices of this namespace (inode): `--netns`, or the
    /// tracer's own namespace when `--dev` is given without it.
    pub netns: Option<u32>,
}

/// Protocol names `--proto` accepts (besides a number).
pub const PROTO_NAMES: &[&str] = &[
    "ipv4", "ipv6", "arp", "tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "igmp", "udplite",
];

/// The inode of this process's network namespace.
pub fn own_netns() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| m.ino() as u32)
}

/// `--netns INODE|NAME|any`: a namespace inode, a name from `ip netns`
/// (/run/netns/NAME), or any namespace (None).
fn parse_netns(value: &str) -> Result<Option<u32>, String> {
    use std::os::unix::fs::MetadataExt;
    if value == "any" {
        return Ok(None);
    }
    if let Ok(inode) = value.parse::<u32>() {
        return Ok(Some(inode));
    }
    if value.contains('/') || value.is_empty() {
        return Err(format!(
            "--netns {value}: expected an inode number, a name from `ip netns` or any"
        ));
    }
    std::fs::metadata(std::path::Path::new("/run/netns").join(value))
        .map(|m| Some(m.ino() as u32))
        .map_err(|_| {
            format!("--netns {value}: no such namespace in /run/netns (an inode number, a name from `ip netns` or any)")
        })
}

impl DropFilter {
    /// Normalizes and checks the values (reason names are upper case,
    /// without the SKB_DROP_REASON_ prefix, and must exist in `names` when
    /// the kernel's list is known).
    pub fn new(
        reason: Option<String>,
        dev: Option<String>,
        proto: Option<String>,
        netns: Option<String>,
        names: &ReasonNames,
    ) -> Result<Self, String> {
        let reason = match reason {
            Some(r) => {
                let upper = r.to_ascii_uppercase();
                let name = upper
                    .strip_prefix("SKB_DROP_REASON_")
                    .unwrap_or(&upper)
                    .to_string();
                // Subsystem reasons (`SUBSYS:0xN`) have no names to check.
                if !names.is_empty() && !name.contains(':') && names.value(&name).is_none() {
                    let closest = names.closest(&name);
                    return Err(format!(
                        "--reason {r}: this kernel has no such drop reason; closest first: {}",
                        closest.join(", ")
                    ));
                }
                Some(name)
            }
            None => None,
        };
        if let Some(d) = &dev {
            if d.is_empty() || d.len() > 15 {
                return Err(format!("--dev {d}: interface names are 1 to 15 bytes long"));
            }
        }
        let proto = match proto {
            Some(p) => {
                let lower = p.to_ascii_lowercase();
                if !PROTO_NAMES.contains(&lower.as_str()) && lower.parse::<u8>().is_err() {
                    return Err(format!(
                        "--proto {p}: expected one of {} or a protocol number",
                        PROTO_NAMES.join(", ")
                    ));
                }
                Some(lower)
            }
            None => None,
        };
        let netns = match netns {
            Some(n) => parse_netns(&n)?,
            None if dev.is_some() => own_netns(),
            None => None,
        };
        Ok(DropFilter {
            reason,
            dev,
            proto,
            netns,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.reason.is_none() && self.dev.is_none() && self.proto.is_none() && self.netns.is_none()
    }

    /// Whether the filter needs fields only the eBPF backend reads.
    pub fn needs_packet(&self) -> bool {
        self.dev.is_some()
            || self.netns.is_some()
            || self
                .proto
                .as_deref()
                .is_some_and(|p| !matches!(p, "ipv4" | "ipv6" | "arp"))
    }

    pub fn matches(&self, r: &DropRecord) -> bool {
        if let Some(reason) = &self.reason {
            if !r.reason.eq_ignore_ascii_case(reason) {
                return false;
            }
        }
        if let Some(dev) = &self.dev {
            if r.dev.as_deref() != Some(dev.as_str()) {
                return false;
            }
        }
        if let Some(netns) = self.netns {
            if r.netns != Some(netns) {
                return false;
            }
        }
        if let Some(proto) = &self.proto {
            let l3 = ethertype_name(r.protocol);
            let l4 = r.packet.as_ref().and_then(|p| p.l4.clone());
            let numbered = proto.parse::<u8>().ok().map(l4_name);
            if l3 != *proto
                && l4.as_deref() != Some(proto.as_str())
                && (numbered.is_none() || l4 != numbered)
            {
                return false;
            }
        }
        true
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.reason {
            parts.push(format!("reason {r}"));
        }
        if let Some(d) = &self.dev {
            parts.push(format!("dev {d}"));
        }
        if let Some(p) = &self.proto {
            parts.push(format!("proto {p}"));
        }
        if let Some(n) = self.netns {
            parts.push(format!("netns {n}"));
        }
        parts.join(", ")
    }
}

/// An interface name as `net_device.name` holds it: NUL-padded 16 bytes.
pub fn dev_bytes(name: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    bytes
}

/// `--proto` in a raw record's terms.
#[derive(Debug, Clone, Copy)]
enum ProtoSel {
    EtherType(u16),
    L4(u8),
}

/// A `DropFilter` over raw eBPF records: integer compares only, so that
/// filtering at line rate costs no decoding.
#[derive(Debug, Clone, Default)]
pub struct RawFilter {
    /// The reason's number; `reason_name` when the names do not know it.
    reason: Option<u32>,
    reason_name: Option<String>,
    dev: Option<[u8; 16]>,
    /// `--dev` as an ifindex in our own namespace (summary keys have no names).
    dev_ifindex: Option<u32>,
    netns: Option<u32>,
    proto: Option<ProtoSel>,
}

impl RawFilter {
    pub fn new(filter: &DropFilter, decoder: Option<&Decoder>) -> Self {
        let reason = filter
            .reason
            .as_deref()
            .and_then(|r| decoder.and_then(|d| d.reasons.value(r)));
        let dev = filter.dev.as_deref().map(dev_bytes);
        let dev_ifindex = filter
            .dev
            .as_deref()
            .filter(|_| filter.netns.is_none() || filter.netns == own_netns())
            .and_then(|d| nix::net::if_::if_nametoindex(d).ok());
        let proto = filter.proto.as_deref().map(|p| match p {
            "ipv4" => ProtoSel::EtherType(0x0800),
            "ipv6" => ProtoSel::EtherType(0x86dd),
            "arp" => ProtoSel::EtherType(0x0806),
            name => ProtoSel::L4(
                name.parse()
                    .ok()
                    .or_else(|| (0..=255u8).find(|n| l4_name(*n) == name))
                    .unwrap_or(255),
            ),
        });
        RawFilter {
            reason_name: filter.reason.clone().filter(|_| reason.is_none()),
            reason,
            dev,
            dev_ifindex,
            netns: filter.netns,
            proto,
        }
    }

    pub fn matches(&self, e: &DropEvent, decoder: Option<&mut Decoder>) -> bool {
        if let Some(reason) = self.reason {
            if e.reason != reason {
                return false;
            }
        } else if let Some(name) = &self.reason_name {
            // A name the list did not have (a subsystem's): compare names.
            let decoded = decoder.map(|d| d.reason(e.reason));
            if !decoded.is_some_and(|d| d.eq_ignore_ascii_case(name)) {
                return false;
            }
        }
        if let Some(dev) = &self.dev {
            if e.flags & DROP_HAS_DEV == 0 || e.dev != *dev {
                return false;
            }
        }
        if let Some(netns) = self.netns {
            if e.flags & DROP_HAS_NETNS == 0 || e.netns != netns {
                return false;
            }
        }
        match self.proto {
            Some(ProtoSel::EtherType(t)) if e.protocol != t => false,
            Some(ProtoSel::L4(p)) if e.flags & DROP_HAS_L3 == 0 || e.l4_proto != p => false,
            _ => true,
        }
    }

    /// Whether a summary-mode key passes (it knows no L4 protocol nor
    /// device names: `--dev` is matched by ifindex in our namespace).
    pub fn matches_key(&self, k: &DropSummaryKey) -> bool {
        if self.reason.is_some_and(|r| k.reason != r) {
            return false;
        }
        if self.dev.is_some() && self.dev_ifindex != Some(k.ifindex) {
            return false;
        }
        if self.netns.is_some_and(|n| k.netns != n) {
            return false;
        }
        match self.proto {
            Some(ProtoSel::EtherType(t)) => k.protocol == t,
            Some(ProtoSel::L4(_)) => false,
            None => true,
        }
    }
}

/// Raw addresses and reason numbers to names, each location resolved once.
pub struct Decoder {
    kallsyms: Arc<Kallsyms>,
    pub reasons: ReasonNames,
    locations: HashMap<u64, String>,
}

/// A NUL-terminated kernel string.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Decoder {
    pub fn new(reasons: ReasonNames) -> Self {
        Decoder {
            kallsyms: Kallsyms::get(),
            reasons,
            locations: HashMap::new(),
        }
    }

    pub fn without_names() -> Self {
        Decoder::new(ReasonNames::default())
    }

    pub fn reason(&self, code: u32) -> String {
        self.reasons.name(code)
    }

    /// `function+0xoff/0xsize`, symbolized once per address.
    pub fn location(&mut self, addr: u64) -> String {
        let kallsyms = &self.kallsyms;
        self.locations
            .entry(addr)
            .or_insert_with(|| kallsyms.symbolize(addr))
            .clone()
    }

    pub fn ebpf(&mut self, e: &DropEvent) -> DropRecord {
        let location = self.location(e.location);
        let has_dev = e.flags & DROP_HAS_DEV != 0;
        DropRecord {
            time_ns: e.timestamp_ns,
            cpu: e.cpu,
            pid: e.pid,
            comm: c_string(&e.comm),
            location,
            reason: self.reasons.name(e.reason),
            reason_code: Some(e.reason),
            protocol: e.protocol,
            dev: has_dev.then(|| c_string(&e.dev)),
            ifindex: has_dev.then_some(e.ifindex),
            netns: (e.flags & DROP_HAS_NETNS != 0).then_some(e.netns),
            len: (e.flags & DROP_HAS_SKB_OFFSETS != 0).then_some(e.len),
            packet: packet_from_event(e),
            skb: format!("{:#x}", e.skb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_table_from_print_symbolic() {
        let fmt = r#"print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 0x10, "OTHERHOST" })"#;
        let names = ReasonNames::from_format(fmt);
        assert_eq!(names.name(3), "NO_SOCKET");
        assert_eq!(names.name(16), "OTHERHOST");
        assert_eq!(names.value("NOT_SPECIFIED"), Some(2));
        assert_eq!(names.name(99), "reason 99");
        assert_eq!(names.name(0x0003_0001), "SUBSYS_3:0x1");
    }

    #[test]
    fn filter_matches_reason_dev_and_proto() {
        let rec = DropRecord {
            time_ns: 0,
            cpu: 0,
            pid: 0,
            comm: "x".into(),
            location: "ip_rcv_core+0x1/0x2".into(),
            reason: "OTHERHOST".into(),
            reason_code: None,
            protocol: 0x0800,
            dev: Some("veth0".into()),
            ifindex: Some(3),
            netns: Some(7),
            len: None,
            packet: Some(PacketSummary {
                l4: Some("udp".into()),
                ..Default::default()
            }),
            skb: "0".into(),
        };
        let names = ReasonNames::from_format(
            r#"__print_symbolic(REC->reason, { 3, "NO_SOCKET" }, { 16, "OTHERHOST" })"#,
        );
        let f = |r: Option<&str>, d: Option<&str>, p: Option<&str>| {
            DropFilter::new(
                r.map(Into::into),
                d.map(Into::into),
                p.map(Into::into),
                Some("7".into()),
                &names,
            )
            .unwrap()
        };
        assert!(f(Some("otherhost"), None, None).matches(&rec));
        assert!(f(
            Some("SKB_DROP_REASON_OTHERHOST"),
            Some("veth0"),
            Some("udp")
        )
        .matches(&rec));
        assert!(f(None, None, Some("ipv4")).matches(&rec));
        assert!(!f(Some("NO_SOCKET"), None, None).matches(&rec));
        assert!(!f(None, Some("veth1"), None).matches(&rec));
        assert!(!f(None, None, Some("tcp")).matches(&rec));
        assert!(f(None, None, Some("17")).matches(&rec));
        let other_ns = DropFilter::new(None, Some("veth0".into()), None, Some("8".into()), &names);
        assert!(!other_ns.unwrap().matches(&rec));
        assert!(DropFilter::new(None, None, Some("bogus".into()), None, &names).is_err());
        let typo = DropFilter::new(Some("NO_SOCKETS".into()), None, None, None, &names);
        assert_eq!(
            typo.unwrap_err(),
            "--reason NO_SOCKETS: this kernel has no such drop reason; closest first: NO_SOCKET, OTHERHOST"
        );
        assert_eq!(rec.function(), "ip_rcv_core");
    }
}
