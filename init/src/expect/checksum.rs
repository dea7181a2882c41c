//! Checksum validation as the nat46 harness's `validate-packet-checksums`
//! does it, on the frame's bytes: the IPv4 header checksum, then the
//! transport checksum (TCP, UDP over its own length, ICMP, ICMPv6; IPv6
//! fragments reassembled from the capture first), optionally the checksum
//! of the ICMP message an ICMP error quotes, and that a UDP checksum
//! leaves out the padding after the UDP length.
//!
//! Where it differs: bytes past the IP length (Ethernet padding) are not
//! an error, IPv4 options are allowed, and an IPv4 fragment's transport
//! checksum is not checked (it covers the whole datagram).

use std::fmt;

use myinit_packet::layers::{LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW};

use super::captured::Captured;

/// Which checks a spec asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checks {
    pub valid: bool,
    pub quoted_icmp: bool,
    pub udp_padding_excluded: bool,
}

/// Why a packet's checksums are not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumError(String);

impl fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, ChecksumError> {
    Err(ChecksumError(message.into()))
}

/// The Internet checksum of `data` (RFC 1071): 0 over data that holds a
/// right checksum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The harness's message: the field, the right value, the residual.
fn invalid(what: &str, checked: &[u8], field_at: usize, length: usize) -> ChecksumError {
    let field = u16::from_be_bytes([checked[field_at], checked[field_at + 1]]);
    let mut zeroed = checked.to_vec();
    zeroed[field_at] = 0;
    zeroed[field_at + 1] = 0;
    ChecksumError(format!(
        "invalid {what} checksum: field=0x{field:04x}, expected=0x{:04x}, residual=0x{:04x}, checked_length={length}",
        internet_checksum(&zeroed),
        internet_checksum(checked)
    ))
}

/// The IP packet in a frame: its bytes up to the length its header
/// declares.
struct Network<'a> {
    v6: bool,
    packet: &'a [u8],
    header_len: usize,
    /// The transport protocol (IPv4 proto, IPv6 next header).
    protocol: u8,
    src: &'a [u8],
    dst: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn network(packet: &Captured) -> Result<Network<'_>, ChecksumError> {
    let bytes = &packet.bytes;
    let start = match packet.linktype {
        LINKTYPE_ETHERNET => {
            let mut at = 12;
            while bytes.len() >= at + 2 && matches!(be16(bytes, at), 0x8100 | 0x88a8) {
                at += 4;
            }
            if bytes.len() < at + 2 || !matches!(be16(bytes, at), 0x0800 | 0x86dd) {
                return fail("no IP layer in the packet");
            }
            at + 2
        }
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => 0,
        other => return fail(format!("link type {other} has no IP layer to check")),
    };
    let net = &bytes[start.min(bytes.len())..];
    match net.first().map(|b| b >> 4) {
        Some(4) => {
            if net.len() < 20 {
                return fail("truncated IPv4 header");
            }
            let header_len = usize::from(net[0] & 0x0f) * 4;
            let total = usize::from(be16(net, 2));
            if header_len < 20 || total < header_len {
                return fail(format!(
                    "invalid IPv4 lengths: header {header_len}, total {total}"
                ));
            }
            if net.len() < total {
                return fail(format!(
                    "serialized length {} != {total} (Ip.len)",
                    net.len()
                ));
            }
            Ok(Network {
                v6: false,
                packet: &net[..total],
                header_len,
                protocol: net[9],
                src: &net[12..16],
                dst: &net[16..20],
            })
        }
        Some(6) => {
            if net.len() < 40 {
                return fail("truncated IPv6 header");
            }
            let total = 40 + usize::from(be16(net, 4));
            if net.len() < total {
                return fail(format!(
                    "serialized length {} != {total} (40 + Ipv6.payload_length)",
                    net.len()
                ));
            }
            Ok(Network {
                v6: true,
                packet: &net[..total],
                header_len: 40,
                protocol: net[6],
                src: &net[8..24],
                dst: &net[24..40],
            })
        }
        _ => fail("no IP layer in the packet"),
    }
}

/// One IPv6 fragment: (protocol, identification, more fragments, offset,
/// payload).
type Fragment<'a> = (u8, u32, bool, usize, &'a [u8]);

fn ipv6_fragment<'a>(net: &Network<'a>) -> Result<Option<Fragment<'a>>, ChecksumError> {
    if !net.v6 || net.protocol != 44 {
        return Ok(None);
    }
    let payload = &net.packet[40..];
    if payload.len() < 8 {
        return fail("truncated IPv6 fragment header");
    }
    let field = be16(payload, 2);
    if payload[1] != 0 || field & 0x6 != 0 {
        return fail("nonzero reserved IPv6 fragment bits");
    }
    let id = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    Ok(Some((
        payload[0],
        id,
        field & 1 == 1,
        usize::from(field & 0xfff8),
        &payload[8..],
    )))
}

/// The transport segment of the datagram packet `index` is a fragment of,
/// from every fragment of the capture with its direction, addresses,
/// protocol and identification.
fn reassemble(
    packets: &[Captured],
    index: usize,
    net: &Network<'_>,
    protocol: u8,
    id: u32,
) -> Result<Vec<u8>, ChecksumError> {
    let mut fragments = Vec::new();
    for candidate in packets {
        if candidate.direction != packets[index].direction {
            continue;
        }
        let Ok(other) = network(candidate) else {
            continue;
        };
        let Some((p, i, more, offset, payload)) = ipv6_fragment(&other)? else {
            continue;
        };
        if other.src != net.src || other.dst != net.dst || p != protocol || i != id {
            continue;
        }
        if more && payload.len() % 8 != 0 {
            return fail("non-final IPv6 fragment payload is not 8-byte aligned");
        }
        fragments.push((offset, more, payload.to_vec()));
    }
    fragments.sort_by_key(|f| f.0);
    let mut cursor = 0;
    let mut final_seen = false;
    let mut segment = Vec::new();
    for (offset, more, payload) in &fragments {
        if final_seen {
            return fail("IPv6 fragment follows the final fragment");
        }
        if *offset != cursor {
            return fail(format!(
                "IPv6 fragment gap or overlap at offset {cursor}: got {offset}"
            ));
        }
        segment.extend_from_slice(payload);
        cursor += payload.len();
        final_seen = !more;
    }
    if fragments.is_empty() || !final_seen {
        return fail("incomplete IPv6 fragment set");
    }
    Ok(segment)
}

fn pseudo_header(net: &Network<'_>, protocol: u8, length: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(net.src);
    p.extend_from_slice(net.dst);
    if net.v6 {
        p.extend_from_slice(&(length as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, protocol]);
    } else {
        p.extend_from_slice(&[0, protocol]);
        p.extend_from_slice(&(length as u16).to_be_bytes());
    }
    p
}

/// Validates the checksums of `packets[index]` as `checks` asks.
pub fn validate(packets: &[Captured], index: usize, checks: &Checks) -> Result<(), ChecksumError> {
    let net = network(&packets[index])?;
    if !net.v6 {
        let header = &net.packet[..net.header_len];
        if internet_checksum(header) != 0 {
            return Err(invalid("IPv4 header", header, 10, header.len()));
        }
    }
    let (protocol, segment) = match ipv6_fragment(&net)? {
        Some((protocol, id, ..)) => (protocol, reassemble(packets, index, &net, protocol, id)?),
        None => {
            let fragment = !net.v6 && be16(net.packet, 6) & 0x3fff != 0;
            if fragment {
                // The checksum covers the whole datagram, not this piece.
                return Ok(());
            }
            (net.protocol, net.packet[net.header_len..].to_vec())
        }
    };
    let (name, field_at) = match (protocol, net.v6) {
        (6, _) => ("Tcp", 16),
        (17, _) => ("Udp", 6),
        (1, false) => ("Icmp", 2),
        (58, true) => ("Icmpv6", 2),
        _ => {
            if checks.quoted_icmp || checks.udp_padding_excluded {
                return fail(format!("no transport layer to check (protocol {protocol})"));
            }
            return Ok(());
        }
    };
    if segment.len() < field_at + 2 {
        return fail(format!("truncated {name} checksum field"));
    }
    let mut length = segment.len();
    if name == "Udp" {
        length = usize::from(be16(&segment, 4));
        if length < 8 || length > segment.len() {
            return fail(format!("invalid UDP length {length}"));
        }
    }
    let covered = &segment[..length];
    let checked = if name == "Icmp" {
        covered.to_vec()
    } else {
        let mut c = pseudo_header(&net, protocol, length);
        c.extend_from_slice(covered);
        c
    };
    if internet_checksum(&checked) != 0 {
        let at = checked.len() - covered.len() + field_at;
        let mut error = invalid(name, &checked, at, length);
        if name == "Udp" && !net.v6 && be16(covered, 6) == 0 {
            error.0.push_str(" (0: no checksum computed)");
        }
        return Err(error);
    }
    if checks.quoted_icmp {
        quoted_icmp(&net, protocol, covered)?;
    }
    if checks.udp_padding_excluded {
        if name != "Udp" {
            return fail("trailing-padding checksum assertion requires UDP");
        }
        if segment.len() == length {
            return fail("trailing-padding checksum assertion requires bytes after UDP");
        }
        let mut declared = pseudo_header(&net, protocol, length);
        declared.extend_from_slice(&segment);
        if internet_checksum(&declared) == 0 {
            return fail("UDP checksum also validates with trailing padding included");
        }
        let mut padded = pseudo_header(&net, protocol, segment.len());
        padded.extend_from_slice(&segment);
        if internet_checksum(&padded) == 0 {
            return fail("UDP checksum also validates with padded pseudo-header length");
        }
    }
    Ok(())
}

/// The checksum of the ICMP or ICMPv6 message an ICMP error quotes.
fn quoted_icmp(net: &Network<'_>, protocol: u8, outer: &[u8]) -> Result<(), ChecksumError> {
    match (net.v6, protocol) {
        (true, 58) | (false, 1) => {}
        (true, _) => return fail("outer IPv6 packet is not ICMPv6"),
        (false, _) => return fail("outer IPv4 packet is not ICMP"),
    }
    if outer.len() < 8 {
        return fail("outer ICMP error is too short for a quote");
    }
    let quoted = &outer[8..];
    match quoted.first().map(|b| b >> 4) {
        None => fail("outer ICMP error has no quoted packet"),
        Some(4) => {
            if quoted.len() < 20 {
                return fail("quoted IPv4 header is truncated");
            }
            let header_len = usize::from(quoted[0] & 0x0f) * 4;
            let total = usize::from(be16(quoted, 2));
            if header_len < 20 || total < header_len || total > quoted.len() {
                return fail("quoted IPv4 length fields are invalid");
            }
            if quoted[9] != 1 {
                return fail("quoted IPv4 packet is not ICMP");
            }
            let inner = &quoted[header_len..total];
            if inner.len() < 4 {
                return fail("quoted ICMPv4 checksum field is truncated");
            }
            if internet_checksum(inner) != 0 {
                return Err(invalid("quoted ICMPv4", inner, 2, inner.len()));
            }
            Ok(())
        }
        Some(6) => {
            if quoted.len() < 40 {
                return fail("quoted IPv6 header is truncated");
            }
            let total = 40 + usize::from(be16(quoted, 4));
            if total > quoted.len() {
                return fail("quoted IPv6 payload is truncated");
            }
            if quoted[6] != 58 {
                return fail("quoted IPv6 packet is not ICMPv6");
            }
            let inner = &quoted[40..total];
            if inner.len() < 4 {
                return fail("quoted ICMPv6 checksum field is truncated");
            }
            let mut checked = quoted[8..40].to_vec();
            checked.extend_from_slice(&(inner.len() as u32).to_be_bytes());
            checked.extend_from_slice(&[0, 0, 0, 58]);
            let pseudo = checked.len();
            checked.extend_from_slice(inner);
            if internet_checksum(&checked) != 0 {
                return Err(invalid("quoted ICMPv6", &checked, pseudo + 2, inner.len()));
            }
            Ok(())
        }
        Some(v) => fail(format!("quoted packet has unsupported IP version {v}")),
    }
}
