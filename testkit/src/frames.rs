//! Frames built on the packet model, and capture files written by
//! pcap-file (a writer independent of ours, so a test of our readers does
//! not read what our own writer made).
//!
//! ```ignore
//! let bytes = Frame::ether(dst, src).ipv4(a, b).udp(4000, 5000).payload(b"x").bytes();
//! ```
//! Lengths, protocols and checksums are the model's `<auto>` unless a
//! method sets them (`udp_no_checksum`, `bad_ip_checksum`).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use myinit_packet::layers::Packet;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::{DataLink, Endianness, TsResolution};
use serde_json::{json, Value};

/// A frame being built, outermost layer first.
#[derive(Clone, Debug)]
pub struct Frame {
    layers: Vec<Value>,
    /// Spoil the IPv4 header checksum after encoding.
    bad_ip_checksum: bool,
}

fn mac(m: [u8; 6]) -> String {
    myinit_packet::MacAddr(m).to_string()
}

impl Frame {
    /// An Ethernet header; its type follows the next layer.
    pub fn ether(dst: [u8; 6], src: [u8; 6]) -> Self {
        Frame::ether_type(dst, src, None)
    }

    /// An Ethernet header of this EtherType (None: the next layer's).
    pub fn ether_type(dst: [u8; 6], src: [u8; 6], etype: Option<u16>) -> Self {
        let etype = etype.map_or(json!("<auto>"), |t| json!(t));
        Frame {
            layers: vec![
                json!({"layertype": "ether", "dst": mac(dst), "src": mac(src), "etype": etype}),
            ],
            bad_ip_checksum: false,
        }
    }

    /// No link header: the frame starts with the IP header (link type RAW).
    pub fn raw() -> Self {
        Frame {
            layers: Vec::new(),
            bad_ip_checksum: false,
        }
    }

    /// Any layer of the model, as its JSON.
    pub fn layer(mut self, layer: Value) -> Self {
        self.layers.push(layer);
        self
    }

    /// IPv4, TTL 64, id 1, don't fragment.
    pub fn ipv4(self, src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Self {
        self.ipv4_with(src, dst, 64, true)
    }

    /// IPv4 with this TTL and DF bit, id 1.
    pub fn ipv4_with(
        self,
        src: impl Into<Ipv4Addr>,
        dst: impl Into<Ipv4Addr>,
        ttl: u8,
        dont_fragment: bool,
    ) -> Self {
        self.layer(json!({
            "layertype": "Ip", "version": 4, "ihl": "<auto>", "tos": 0, "len": "<auto>", "id": 1,
            "flags": {"reserved": false, "dont_fragment": dont_fragment, "more_fragments": false,
                      "fragment_offset": 0},
            "ttl": ttl, "proto": "<auto>", "chksum": "<auto>",
            "src": src.into().to_string(), "dst": dst.into().to_string(), "options": []
        }))
    }

    /// IPv6, hop limit 64.
    pub fn ipv6(self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.layer(json!({
            "layertype": "Ipv6", "version_class": "<auto>", "payload_length": "<auto>",
            "next_header": "<auto>", "hop_limit": 64, "src": src.to_string(), "dst": dst.to_string()
        }))
    }

    /// The IPv4 header checksum made wrong (the receiver drops it as IP_CSUM).
    pub fn bad_ip_checksum(mut self) -> Self {
        self.bad_ip_checksum = true;
        self
    }

    /// UDP with its checksum.
    pub fn udp(self, sport: u16, dport: u16) -> Self {
        self.layer(json!({"layertype": "Udp", "sport": sport, "dport": dport,
                          "len": "<auto>", "chksum": "<auto>"}))
    }

    /// UDP without a checksum (0, allowed over IPv4).
    pub fn udp_no_checksum(self, sport: u16, dport: u16) -> Self {
        self.layer(json!({"layertype": "Udp", "sport": sport, "dport": dport,
                          "len": "<auto>", "chksum": 0}))
    }

    /// TCP with these flags (0x02: SYN), no options.
    pub fn tcp(self, sport: u16, dport: u16, seq: u32, flags: u16) -> Self {
        self.layer(
            json!({"layertype": "Tcp", "sport": sport, "dport": dport, "seq": seq,
                          "ack": 0, "dataofs": "<auto>", "reserved": 0, "flags": flags,
                          "window": 65535, "chksum": "<auto>", "urgptr": 0}),
        )
    }

    /// An ICMP echo request.
    pub fn icmp_echo(self, id: u16, seq: u16) -> Self {
        self.layer(json!({"layertype": "Icmp", "typ": "<auto>", "code": 0, "chksum": "<auto>"}))
            .layer(json!({"layertype": "echo", "identifier": id, "sequence": seq}))
    }

    /// The payload.
    pub fn payload(self, bytes: &[u8]) -> Self {
        self.layer(json!({"layertype": "raw", "data": bytes}))
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let packet: Packet = serde_json::from_value(json!({"layers": self.layers}))
            .unwrap_or_else(|e| panic!("not a frame of the model: {e}: {:?}", self.layers));
        let (mut bytes, offsets) = packet
            .encode_layout()
            .unwrap_or_else(|e| panic!("cannot encode {:?}: {e}", self.layers));
        if self.bad_ip_checksum {
            let ip = self
                .layers
                .iter()
                .position(|l| l["layertype"] == "Ip")
                .expect("bad_ip_checksum needs an IPv4 layer");
            bytes[offsets[ip] + 10] ^= 0x5a;
            bytes[offsets[ip] + 11] ^= 0x5a;
        }
        bytes
    }

    /// The frame padded with zeros to `len` bytes (no shorter than it is).
    pub fn padded(&self, len: usize) -> Vec<u8> {
        let mut bytes = self.bytes();
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
        bytes
    }
}

/// The RFC 1071 checksum of `bytes` (0 over a header whose checksum is
/// right).
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A classic pcap of `frames` written by pcap-file, one second apart from
/// 1,760,000,000 s: `nanos` picks the ns magic, `big` the byte order.
pub fn pcap(linktype: u32, nanos: bool, big: bool, frames: &[Vec<u8>]) -> Vec<u8> {
    let timed: Vec<(Duration, &[u8])> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (Duration::new(1_760_000_000 + i as u64, 123_000), &f[..]))
        .collect();
    pcap_timed(linktype, nanos, big, &timed)
}

/// A classic pcap of frames at the given times (since the epoch).
pub fn pcap_timed(linktype: u32, nanos: bool, big: bool, frames: &[(Duration, &[u8])]) -> Vec<u8> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let header = PcapHeader {
        datalink: DataLink::from(linktype),
        ts_resolution: if nanos {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        },
        endianness: if big {
            Endianness::Big
        } else {
            Endianness::Little
        },
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (ts, f) in frames {
        w.write_packet(&PcapPacket::new(*ts, f.len() as u32, f))
            .unwrap();
    }
    w.into_writer()
}

/// A pcapng of `frames` written by pcap-file: a section, one interface,
/// enhanced packet blocks at time 0.
pub fn pcapng(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = pcap_file::pcapng::PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::from(linktype), 0))
        .unwrap();
    for f in frames {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::ZERO,
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        })
        .unwrap();
    }
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_frame_has_the_model_s_checksums_and_a_spoilt_one_differs() {
        let f = Frame::ether([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp_no_checksum(4000, 5000)
            .payload(b"drop");
        let good = f.bytes();
        assert_eq!(good.len(), 14 + 20 + 8 + 4);
        assert_eq!(internet_checksum(&good[14..34]), 0);
        assert_eq!(&good[12..14], &[0x08, 0x00]);
        assert_eq!(&good[40..42], &[0, 0]);
        let bad = f.clone().bad_ip_checksum().bytes();
        assert_ne!(internet_checksum(&bad[14..34]), 0);
        assert_eq!(f.padded(64).len(), 64);
    }
}
