//! Unit tests of the packet model: real frames round-trip, `<auto>` agrees
//! with etherparse, malformed and random bytes never panic.

use super::*;
use etherparse::{
    Icmpv6Type, IpNumber, Ipv4Header, PacketBuilder, SlicedPacket, TcpOptionElement,
    TransportSlice, VlanId,
};
use Dialect::{Full, Original};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const V6_A: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn names(p: &Packet) -> Vec<&'static str> {
    p.layers.iter().map(Layer::name).collect()
}

/// Decodes in `dialect`, checks the layer names, and checks the bytes come
/// back.
fn round_trip(dialect: Dialect, linktype: u32, bytes: &[u8], expected: &[&str]) -> Packet {
    let packet = decode(dialect, linktype, bytes);
    assert_eq!(names(&packet), expected, "{packet:?}");
    assert_eq!(packet.encode().unwrap(), bytes, "{packet:?}");
    // And through JSON, as a JSONL file holds it.
    let json = serde_json::to_string(&packet).unwrap();
    let back: Packet = serde_json::from_str(&json).unwrap();
    assert_eq!(back, packet, "{json}");
    for layer in &packet.layers {
        let value = serde_json::to_value(layer).unwrap();
        assert_eq!(value["layertype"], layer.name());
    }
    packet
}

fn arp_frame(op: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op as u8]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[10, 0, 0, 1]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 0, 2]);
    f.resize(60, 0); // Ethernet minimum: padding
    f
}

fn udp4_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5353, 53)
        .write(&mut f, payload)
        .unwrap();
    f
}

fn tcp_syn_frame() -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 0x1234_5678, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(0xdead_beef, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    f
}

fn ndp_frame(typ: Icmpv6Type, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(V6_A, V6_B, 255)
        .icmpv6(typ)
        .write(&mut f, body)
        .unwrap();
    f
}

/// `round_trip` of an IP packet without a link header.
fn raw_ip(dialect: Dialect, packet: &[u8], layers: &[&str]) -> Packet {
    round_trip(dialect, LINKTYPE_RAW, packet, layers)
}

/// `round_trip` of an Ethernet frame in the original's dialect.
fn original_ethernet(frame: &[u8], layers: &[&str]) -> Packet {
    round_trip(Original, LINKTYPE_ETHERNET, frame, layers)
}

/// `round_trip` of an Ethernet frame in the full dialect.
fn full_ethernet(frame: &[u8], layers: &[&str]) -> Packet {
    round_trip(Full, LINKTYPE_ETHERNET, frame, layers)
}

/// Whether a UDP or TCP segment's checksum is right over its pseudo
/// header (RFC 768/793, RFC 8200 8.1): the one's complement sum of both is
/// all ones. Summed here over the bytes, not by the model's encoder.
fn transport_checksum_ok(
    v4: &Option<Ipv4Header>,
    v6: &Option<etherparse::Ipv6Header>,
    protocol: u8,
    segment: &[u8],
) -> bool {
    let mut bytes = Vec::new();
    match (v4, v6) {
        (Some(ip), _) => {
            bytes.extend(ip.source);
            bytes.extend(ip.destination);
            bytes.extend([0, protocol]);
            bytes.extend((segment.len() as u16).to_be_bytes());
        }
        (_, Some(ip)) => {
            bytes.extend(ip.source);
            bytes.extend(ip.destination);
            bytes.extend((segment.len() as u32).to_be_bytes());
            bytes.extend([0, 0, 0, protocol]);
        }
        _ => unreachable!("a transport layer over IP"),
    }
    bytes.extend(segment);
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(&bytes)
        .ones_complement()
        == 0
}

/// Checks every checksum of an Ethernet frame with etherparse's own
/// functions (an independent computation).
fn assert_checksums_valid(frame: &[u8]) {
    let sliced = SlicedPacket::from_ethernet(frame).unwrap();
    let (v4, v6) = match &sliced.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            (Some(h), None)
        }
        Some(etherparse::NetSlice::Ipv6(ip)) => (None, Some(ip.header().to_header())),
        other => panic!("no IP layer: {other:?}"),
    };
    match sliced.transport.expect("a transport layer") {
        TransportSlice::Udp(u) => {
            assert!(
                transport_checksum_ok(&v4, &v6, 17, u.slice()),
                "UDP checksum"
            );
        }
        TransportSlice::Tcp(t) => {
            assert!(
                transport_checksum_ok(&v4, &v6, 6, t.slice()),
                "TCP checksum"
            );
        }
        TransportSlice::Icmpv4(i) => {
            let h = i.header();
            assert_eq!(
                h.checksum,
                h.icmp_type.calc_checksum(i.payload()),
                "ICMP checksum"
            );
        }
        TransportSlice::Icmpv6(i) => {
            let ip = v6.expect("ICMPv6 over IPv6");
            assert!(
                i.is_checksum_valid(ip.source, ip.destination),
                "ICMPv6 checksum"
            );
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

#[test]
fn arp_request_and_reply_round_trip_with_padding() {
    for op in [1, 2] {
        let p = full_ethernet(&arp_frame(op), &["ether", "Arp", "raw"]);
        let Layer::Arp(arp) = &p.layers[1] else {
            panic!()
        };
        assert_eq!(arp.op, Field::Value(op));
        assert_eq!(arp.psrc, Field::Value(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(arp.hwsrc, Field::Value(Mac(MAC_B)));
        assert_eq!(p.layers[2], Layer::Raw(Raw { data: vec![0; 18] }));
    }
}

#[test]
fn ipv4_with_options_and_icmp_echo_round_trip() {
    let mut ip = Ipv4Header::new(8, 64, IpNumber::ICMP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
    // Router alert, then NOP + EOL padding to a 32-bit boundary.
    ip.options = [148, 4, 0, 0, 1, 0, 0, 0].into();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4_echo_request(0x4242, 7)
        .write(&mut f, b"pingpong")
        .unwrap();
    let p = full_ethernet(&f, &["ether", "Ip", "Icmp", "echo", "raw"]);
    let Layer::Ip(ip) = &p.layers[1] else {
        panic!()
    };
    assert_eq!(ip.ihl, Field::Value(7));
    assert_eq!(
        ip.options,
        vec![
            Ipv4Option::Tlv {
                kind: 148,
                data: vec![0, 0]
            },
            Ipv4Option::Nop,
            Ipv4Option::Eol,
            Ipv4Option::Eol,
            Ipv4Option::Eol
        ]
    );
    let Layer::Echo(echo) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(
        (echo.identifier, echo.sequence),
        (Field::Value(0x4242), Field::Value(7))
    );
    // An echo reply is its own layertype.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4_echo_reply(0x4242, 7)
        .write(&mut f, b"pingpong")
        .unwrap();
    full_ethernet(&f, &["ether", "Ip", "Icmp", "echoReply", "raw"]);
}

#[test]
fn udp_round_trip_and_icmp_error_body_stays_raw() {
    let p = full_ethernet(&udp4_frame(b"hello"), &["ether", "Ip", "Udp", "raw"]);
    let Layer::Udp(udp) = &p.layers[2] else {
        panic!()
    };
    assert_eq!((udp.sport, udp.dport, udp.len), (v(5353), v(53), v(13)));
    // Port unreachable quoting the UDP packet: the quote is raw.
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut f, &udp4_frame(b"hello")[14..])
        .unwrap();
    full_ethernet(&f, &["ether", "Ip", "Icmp", "raw"]);
}

#[test]
fn tcp_syn_keeps_its_options() {
    let p = full_ethernet(&tcp_syn_frame(), &["ether", "Ip", "Tcp"]);
    let Layer::Tcp(tcp) = &p.layers[2] else {
        panic!()
    };
    assert_eq!(tcp.flags, Field::Value(0x02));
    assert_eq!(tcp.dataofs, Field::Value(10));
    assert_eq!(
        tcp.options.clone().unwrap(),
        vec![
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamp {
                tsval: 0xdead_beef,
                tsecr: 0
            },
            TcpOption::Nop,
            TcpOption::WindowScale(7),
        ]
    );
    let json = serde_json::to_string(&p.layers[2]).unwrap();
    assert!(
        json.ends_with(r#""urgptr":0,"options":[{"Mss":1460},"SackPermitted",{"Timestamp":{"tsval":3735928559,"tsecr":0}},"Nop",{"WindowScale":7}]}"#),
        "{json}"
    );
}

#[test]
fn ipv6_hop_by_hop_and_mld_report_round_trip() {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 0x16]);
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 36, 0, 1]);
    f.extend_from_slice(&V6_A);
    f.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16]);
    // Hop-by-hop: next ICMPv6, router alert (MLD), PadN.
    f.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    // MLDv2 report with one record (checksum arbitrary: kept as is).
    f.extend_from_slice(&[143, 0, 0x12, 0x34, 0, 0, 0, 1, 4, 0, 0, 0]);
    f.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1]);
    let p = full_ethernet(&f, &["ether", "Ipv6", "Ipv6HopByHop", "Icmpv6", "raw"]);
    let Layer::Ipv6HopByHop(h) = &p.layers[2] else {
        panic!()
    };
    assert_eq!(h.next_header, Field::Value(58));
    assert_eq!(h.data, vec![5, 2, 0, 0, 1, 0]);
}

#[test]
fn ndp_messages_round_trip_with_their_options() {
    let sll = [1, 1, 2, 0, 0, 0, 0, 1];
    let tll = [2, 1, 2, 0, 0, 0, 0, 1];
    let mut ns = V6_B.to_vec();
    ns.extend_from_slice(&sll);
    let p = full_ethernet(
        &ndp_frame(Icmpv6Type::NeighborSolicitation, &ns),
        &["ether", "Ipv6", "Icmpv6", "icmpv6NeighborSolicitation"],
    );
    let Layer::NeighborSolicitation(l) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(l.target_address, Field::Value(Ipv6Addr::from(V6_B)));
    assert_eq!(
        l.options,
        vec![NdpOption::SourceLinkLayerAddress(Mac(MAC_B))]
    );
    assert!(
        serde_json::to_string(&l.options).unwrap()
            == r#"[{"SourceLinkLayerAddress":"02:00:00:00:00:01"}]"#
    );

    let mut na = V6_B.to_vec();
    na.extend_from_slice(&tll);
    let header = etherparse::icmpv6::NeighborAdvertisementHeader {
        router: false,
        solicited: true,
        r#override: true,
    };
    let p = round_trip(
        Full,
        LINKTYPE_ETHERNET,
        &ndp_frame(Icmpv6Type::NeighborAdvertisement(header), &na),
        &["ether", "Ipv6", "Icmpv6", "icmpv6NeighborAdvertisement"],
    );
    let Layer::NeighborAdvertisement(l) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(l.flags, Field::Value(0x6000_0000));
    assert_eq!(
        l.options,
        vec![NdpOption::TargetLinkLayerAddress(Mac(MAC_B))]
    );

    let p = full_ethernet(
        &ndp_frame(Icmpv6Type::RouterSolicitation, &sll),
        &["ether", "Ipv6", "Icmpv6", "icmpv6RouterSolicitation"],
    );
    let Layer::RouterSolicitation(l) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(
        l.options,
        vec![NdpOption::SourceLinkLayerAddress(Mac(MAC_B))]
    );

    // RA: SLLA, MTU, prefix information, and an option type nobody names.
    let p = full_ethernet(
        &ra_with_an_unnamed_option(),
        &["ether", "Ipv6", "Icmpv6", "icmpv6RouterAdvertisement"],
    );
    let Layer::RouterAdvertisement(l) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(l.cur_hop_limit, Field::Value(64));
    assert_eq!(l.router_lifetime, Field::Value(1800));
    assert_eq!(
        l.options,
        vec![
            NdpOption::SourceLinkLayerAddress(Mac(MAC_B)),
            NdpOption::Mtu(1500),
            NdpOption::PrefixInformation {
                prefix_length: 64,
                flags: 0xc0,
                valid_lifetime: 3600,
                preferred_lifetime: 1800,
                prefix: "2001:db8:1::".parse().unwrap(),
            },
            NdpOption::Unknown {
                type_: 200,
                data: vec![9; 6]
            },
        ]
    );
}

/// An RA with SLLA, MTU, prefix information, and an option of a type
/// nobody names (200).
fn ra_with_an_unnamed_option() -> Vec<u8> {
    let mut ra = vec![0, 0, 0, 0, 0, 0, 0, 0];
    ra.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
    ra.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    ra.extend_from_slice(&[
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0, 0, 0,
    ]);
    ra.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ra.extend_from_slice(&[200, 1, 9, 9, 9, 9, 9, 9]);
    let header = etherparse::icmpv6::RouterAdvertisementHeader {
        cur_hop_limit: 64,
        managed_address_config: false,
        other_config: true,
        router_lifetime: 1800,
    };
    ndp_frame(Icmpv6Type::RouterAdvertisement(header), &ra)
}

#[test]
fn malformed_ndp_options_leave_a_raw_tail() {
    // A zero-length option cannot be walked past: it and what follows are raw.
    let mut ns = V6_B.to_vec();
    ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1, 1, 0, 7, 7]);
    let p = full_ethernet(
        &ndp_frame(Icmpv6Type::NeighborSolicitation, &ns),
        &[
            "ether",
            "Ipv6",
            "Icmpv6",
            "icmpv6NeighborSolicitation",
            "raw",
        ],
    );
    assert_eq!(
        p.layers[4],
        Layer::Raw(Raw {
            data: vec![1, 0, 7, 7]
        })
    );
}

#[test]
fn ipv6_routing_destination_options_and_fragments_round_trip() {
    let ipv6 = |next: u8, payload: &[u8]| {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&V6_A);
        p.extend_from_slice(&V6_B);
        p.extend_from_slice(payload);
        p
    };
    let udp = [0x30, 0x39, 0, 9, 0, 9, 0, 0, b'x'];
    // Routing (type 4, segments left 0, one address) then destination options then UDP.
    let mut payload = vec![60, 2, 4, 0, 0, 0, 0, 0];
    payload.extend_from_slice(&V6_B);
    payload.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    payload.extend_from_slice(&udp);
    let p = round_trip(
        Full,
        LINKTYPE_IPV6,
        &ipv6(43, &payload),
        &["Ipv6", "Ipv6Routing", "Ipv6DestOptions", "Udp", "raw"],
    );
    let Layer::Ipv6Routing(r) = &p.layers[1] else {
        panic!()
    };
    assert_eq!(
        (r.next_header, r.hdr_ext_len, r.data.len()),
        (v(60), v(2), 22)
    );
    // First fragment: UDP follows; a later fragment is raw.
    let mut first = vec![17, 0, 0, 1, 0xca, 0xfe, 0xba, 0xbe];
    first.extend_from_slice(&udp);
    let p = round_trip(
        Full,
        LINKTYPE_IPV6,
        &ipv6(44, &first),
        &["Ipv6", "Ipv6Fragment", "Udp", "raw"],
    );
    let Layer::Ipv6Fragment(f) = &p.layers[1] else {
        panic!()
    };
    assert_eq!(
        (f.fragment_offset, f.more_fragments, f.identification),
        (v(0), v(Flag(true)), v(0xcafe_babe))
    );
    let later = [17, 0, 0, 0x10, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3];
    let p = round_trip(
        Full,
        LINKTYPE_IPV6,
        &ipv6(44, &later),
        &["Ipv6", "Ipv6Fragment", "raw"],
    );
    let Layer::Ipv6Fragment(f) = &p.layers[1] else {
        panic!()
    };
    assert_eq!(
        (f.fragment_offset, f.more_fragments),
        (v(2), v(Flag(false)))
    );
}

#[test]
fn vlan_tagged_frames_round_trip() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2)
        .write(&mut f, b"x")
        .unwrap();
    let p = full_ethernet(&f, &["ether", "dot1Q", "Ip", "Udp", "raw"]);
    let Layer::Dot1Q(tag) = &p.layers[1] else {
        panic!()
    };
    assert_eq!((tag.vlan, tag.etype), (v(42), v(0x0800)));
}

#[test]
fn wrong_checksums_and_lengths_are_kept_as_they_were() {
    let mut f = udp4_frame(b"hello");
    f[14 + 10] ^= 0xff; // IPv4 header checksum
    f[14 + 2] = 0x01; // IPv4 total length: far more than there is
    f[14 + 20 + 4] = 0; // UDP length 5 (< 8)
    f[14 + 20 + 5] = 5;
    f[14 + 20 + 6] ^= 0x55; // UDP checksum
    let p = full_ethernet(&f, &["ether", "Ip", "Udp", "raw"]);
    let Layer::Udp(udp) = &p.layers[2] else {
        panic!()
    };
    assert_eq!(udp.len, Field::Value(5));
    // A truncated capture (snaplen) keeps what there is.
    round_trip(
        Full,
        LINKTYPE_ETHERNET,
        &tcp_syn_frame()[..40],
        &["ether", "Ip", "raw"],
    );
    round_trip(Full, LINKTYPE_ETHERNET, &tcp_syn_frame()[..10], &["raw"]);
}

#[test]
fn l3_link_types_decode_from_the_ip_header() {
    let v4 = udp4_frame(b"abc")[14..].to_vec();
    raw_ip(Full, &v4, &["Ip", "Udp", "raw"]);
    round_trip(Full, LINKTYPE_IPV4, &v4, &["Ip", "Udp", "raw"]);
    let v6 = ndp_frame(Icmpv6Type::RouterSolicitation, &[])[14..].to_vec();
    raw_ip(Full, &v6, &["Ipv6", "Icmpv6", "icmpv6RouterSolicitation"]);
    round_trip(
        Full,
        LINKTYPE_IPV6,
        &v6,
        &["Ipv6", "Icmpv6", "icmpv6RouterSolicitation"],
    );
    round_trip(Full, LINKTYPE_RAW, &[0x10, 1, 2], &["raw"]);
    round_trip(Full, 147, &v4, &["raw"]);
}

fn layers_json(json: &str) -> Packet {
    serde_json::from_str(&format!(r#"{{"layers":{json}}}"#)).unwrap()
}

#[test]
fn auto_fields_give_the_same_bytes_as_etherparse() {
    let ether = r#"{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"02:00:00:00:00:01","etype":"<auto>"}"#;
    let ip = r#"{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":0,
        "flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},
        "ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]}"#;
    let udp = r#"{"layertype":"Udp","sport":5353,"dport":53,"len":"<auto>","chksum":"<auto>"}"#;
    let raw = r#"{"layertype":"raw","data":[104,101,108,108,111]}"#;
    let frame = layers_json(&format!("[{ether},{ip},{udp},{raw}]"))
        .encode()
        .unwrap();
    assert_eq!(frame, udp4_frame(b"hello"));
    assert_checksums_valid(&frame);

    let tcp = r#"{"layertype":"Tcp","sport":40000,"dport":80,"seq":305419896,"ack":0,"dataofs":"<auto>",
        "reserved":0,"flags":2,"window":64240,"chksum":"<auto>","urgptr":0,
        "options":[{"Mss":1460},"SackPermitted",{"Timestamp":{"tsval":3735928559,"tsecr":0}},"Nop",{"WindowScale":7}]}"#;
    let frame = layers_json(&format!("[{ether},{ip},{tcp}]"))
        .encode()
        .unwrap();
    assert_eq!(frame, tcp_syn_frame());
    assert_checksums_valid(&frame);

    let icmp = r#"{"layertype":"Icmp","typ":"<auto>","code":0,"chksum":"<auto>"},
        {"layertype":"echo","identifier":1,"sequence":2},{"layertype":"raw","data":[1,2,3]}"#;
    let frame = layers_json(&format!("[{ether},{ip},{icmp}]"))
        .encode()
        .unwrap();
    assert_checksums_valid(&frame);

    let ether6 = r#"{"layertype":"ether","dst":"33:33:00:00:00:01","src":"02:00:00:00:00:01","etype":"<auto>"}"#;
    let ip6 = r#"{"layertype":"Ipv6","version_class":1610612736,"payload_length":"<auto>",
        "next_header":"<auto>","hop_limit":255,"src":"fe80::1","dst":"fe80::2"}"#;
    let ns = r#"{"layertype":"Icmpv6","type_":"<auto>","code":0,"checksum":"<auto>"},
        {"layertype":"icmpv6NeighborSolicitation","reserved":0,"target_address":"fe80::2",
         "options":[{"SourceLinkLayerAddress":"02:00:00:00:00:01"}]}"#;
    let frame = layers_json(&format!("[{ether6},{ip6},{ns}]"))
        .encode()
        .unwrap();
    let mut body = V6_B.to_vec();
    body.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(frame, ndp_frame(Icmpv6Type::NeighborSolicitation, &body));
    assert_checksums_valid(&frame);

    let udp6 = format!("[{ether6},{ip6},{udp},{raw}]");
    let frame = layers_json(&udp6).encode().unwrap();
    assert_checksums_valid(&frame);

    // Options that do not fill a 32-bit word are padded when ihl is <auto>.
    let ip_opt = ip.replace(
        r#""options":[]"#,
        r#""options":[{"Tlv":{"kind":148,"data":[0,0]}},"Nop"]"#,
    );
    let frame = layers_json(&format!("[{ether},{ip_opt},{udp},{raw}]"))
        .encode()
        .unwrap();
    assert_eq!(frame[14] & 0x0f, 7);
    assert_checksums_valid(&frame);
}

#[test]
fn auto_next_header_chains_through_extension_headers() {
    let json = r#"[{"layertype":"Ipv6","version_class":"<auto>","payload_length":"<auto>","next_header":"<auto>",
        "hop_limit":1,"src":"fe80::1","dst":"ff02::16"},
        {"layertype":"Ipv6HopByHop","next_header":"<auto>","hdr_ext_len":"<auto>","data":[5,2,0,0,1,0]},
        {"layertype":"Udp","sport":1,"dport":2,"len":"<auto>","chksum":0}]"#;
    let bytes = layers_json(json).encode().unwrap();
    assert_eq!(bytes[0], 0x60);
    assert_eq!(u16::from_be_bytes([bytes[4], bytes[5]]), 16);
    assert_eq!(bytes[6], 0); // hop-by-hop
    assert_eq!(&bytes[40..42], &[17, 0]); // then UDP, 8 bytes long
    assert_eq!(
        names(&decode(Full, LINKTYPE_RAW, &bytes)),
        ["Ipv6", "Ipv6HopByHop", "Udp"]
    );
}

#[test]
fn random_fields_are_filled_and_checksums_follow_them() {
    let json = r#"[{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"<random>","etype":"<auto>"},
        {"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":"<random>",
         "flags":{"reserved":0,"dont_fragment":1,"more_fragments":0,"fragment_offset":0},
         "ttl":64,"proto":"<auto>","chksum":"<auto>","src":"<random>","dst":"10.0.0.2","options":[]},
        {"layertype":"Udp","sport":"<random>","dport":53,"len":"<auto>","chksum":"<auto>"}]"#;
    let packet = layers_json(json);
    let a = packet.encode().unwrap();
    let b = packet.encode().unwrap();
    // 48 random bits of MAC + 32 of address: equal only by a broken source.
    assert_ne!(&a[6..12], &b[6..12]);
    assert_ne!(&a[26..30], &b[26..30]);
    assert_eq!(a[6] & 0x03, 0x02, "locally administered unicast");
    assert_checksums_valid(&a);
    assert_checksums_valid(&b);
}

#[test]
fn encode_errors_name_the_layer_and_field() {
    let err = layers_json(
        r#"[{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"02:00:00:00:00:01","etype":"<auto>"},
           {"layertype":"raw","data":[1]}]"#,
    )
    .encode()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 1 (ether): etype <auto> needs an Ip, Ipv6, Arp or Dot1Q layer after it, found raw"
    );
    let err =
        layers_json(r#"[{"layertype":"Udp","sport":"<auto>","dport":53,"len":8,"chksum":0}]"#)
            .encode()
            .unwrap_err();
    assert_eq!(err.to_string(), "layer 1 (Udp): sport cannot be <auto>");
    let err =
        layers_json(r#"[{"layertype":"Udp","sport":1,"dport":53,"len":8,"chksum":"<auto>"}]"#)
            .encode()
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 1 (Udp): chksum <auto> needs an Ip or Ipv6 layer before it"
    );
    let long_option = format!(
        r#"[{{"layertype":"Tcp","sport":1,"dport":2,"seq":0,"ack":0,"dataofs":"<auto>","reserved":0,
            "flags":2,"window":0,"chksum":0,"urgptr":0,"options":[{{"Unknown":{{"kind":99,"data":{:?}}}}}]}}]"#,
        vec![0u8; 254]
    );
    assert_eq!(
        layers_json(&long_option).encode().unwrap_err().to_string(),
        "layer 1 (Tcp): options: option kind 99: 254 data bytes are more than 253"
    );
}

#[test]
fn json_field_errors_name_the_field() {
    let err = |json: &str| {
        Layer::from_json(&serde_json::from_str(json).unwrap())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(r#"{"layertype":"Udp","sport":70000,"dport":53,"len":8,"chksum":0}"#),
        "Udp: sport: invalid value: integer `70000`, expected u16"
    );
    assert_eq!(
        err(r#"{"layertype":"Udp","dport":53,"len":8,"chksum":0}"#),
        "Udp: missing field `sport`"
    );
    assert_eq!(
        err(r#"{"layertype":"dot1Q","prio":0,"id":0,"vlan":4096,"etype":2048}"#),
        "dot1Q: vlan: 4096 does not fit (at most 4095)"
    );
    assert_eq!(
        err(r#"{"layertype":"dot1Q","prio":0,"id":2,"vlan":1,"etype":2048}"#),
        "dot1Q: id: 2 does not fit (at most 1)"
    );
    assert_eq!(
        err(r#"{"layertype":"ether","dst":"02:00:00:00:00","src":"02:00:00:00:00:01","etype":1}"#),
        "ether: dst: 02:00:00:00:00: not a MAC address"
    );
    assert_eq!(err(r#"{"layertype":"Foo"}"#), "unknown layertype `Foo`");
}

/// Real traffic over a veth pair, captured by tcpdump: ping and ping -6
/// (also fragmented), ARP, NS/NA/RS, MLDv2 behind hop-by-hop, a TCP
/// connection with options, UDP, ICMP and ICMPv6 port unreachable.
const VETH_CAPTURE: &[u8] = include_bytes!("testdata/veth-capture.pcap");

#[test]
fn real_captured_frames_round_trip_byte_for_byte() {
    let mut reader = pcap_file::pcap::PcapReader::new(VETH_CAPTURE).unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    let mut slla_seen = 0;
    while let Some(frame) = reader.next_packet() {
        let frame = frame.unwrap();
        let packet = decode(Full, LINKTYPE_ETHERNET, &frame.data);
        assert_eq!(packet.encode().unwrap(), &frame.data[..], "{packet:?}");
        if let [_, Layer::Ip(_), Layer::Tcp(tcp)] = &packet.layers[..] {
            if tcp.flags == v(0x02) {
                let [TcpOption::Mss(1460), TcpOption::SackPermitted, TcpOption::Timestamp { .. }, TcpOption::Nop, TcpOption::WindowScale(_)] =
                    tcp.options.as_deref().unwrap_or_default()
                else {
                    panic!("SYN options: {:?}", tcp.options)
                };
            }
        }
        // A solicitation's source link-layer address is the sender's MAC.
        if let [Layer::Ether(ether), _, _, Layer::NeighborSolicitation(NeighborSolicitation { options, .. })
        | Layer::RouterSolicitation(RouterSolicitation { options, .. })] = &packet.layers[..]
        {
            if let [NdpOption::SourceLinkLayerAddress(mac)] = &options[..] {
                assert_eq!(ether.src, v(*mac));
                slla_seen += 1;
            }
        }
        *kinds.entry(names(&packet).join(" ")).or_insert(0) += 1;
    }
    assert!(slla_seen > 0);
    // What tcpdump -r shows for the same file, layer by layer.
    let expected = [
        ("ether Arp", 4),
        ("ether Ip Icmp echo raw", 4),
        ("ether Ip Icmp echoReply raw", 4),
        ("ether Ip Icmp raw", 1),
        ("ether Ip Tcp", 8),
        ("ether Ip Tcp raw", 2),
        ("ether Ip Udp raw", 1),
        ("ether Ip raw", 8),
        ("ether Ipv6 Icmpv6 icmpv6EchoReply raw", 2),
        ("ether Ipv6 Icmpv6 icmpv6EchoRequest raw", 2),
        ("ether Ipv6 Icmpv6 icmpv6NeighborAdvertisement", 2),
        ("ether Ipv6 Icmpv6 icmpv6NeighborSolicitation", 8),
        ("ether Ipv6 Icmpv6 icmpv6RouterSolicitation", 4),
        ("ether Ipv6 Icmpv6 icmpv6DestUnreach", 1),
        ("ether Ipv6 Ipv6HopByHop Icmpv6 raw", 10),
        ("ether Ipv6 Udp raw", 1),
    ];
    let expected: std::collections::BTreeMap<String, i32> =
        expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    assert_eq!(kinds, expected);
}

fn has_ndp_options(layer: &Layer) -> bool {
    matches!(
        layer,
        Layer::NeighborSolicitation(_)
            | Layer::NeighborAdvertisement(_)
            | Layer::RouterSolicitation(_)
            | Layer::RouterAdvertisement(_)
            | Layer::Redirect(_)
    )
}

/// xorshift64*: deterministic, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_truncated_bytes_decode_without_panic_and_round_trip() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut seeds = vec![
        arp_frame(1),
        udp4_frame(b"hello"),
        tcp_syn_frame(),
        ndp_frame(Icmpv6Type::RouterSolicitation, &[1, 1, 2, 0, 0, 0, 0, 1]),
    ];
    let mut ra = vec![0; 8];
    ra.extend_from_slice(&[3, 4, 64, 0xc0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    ra.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    seeds.push(ndp_frame(
        Icmpv6Type::RouterAdvertisement(etherparse::icmpv6::RouterAdvertisementHeader {
            cur_hop_limit: 64,
            managed_address_config: false,
            other_config: false,
            router_lifetime: 0,
        }),
        &ra,
    ));
    for round in 0..20_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = rng.below(120);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..rng.below(4) {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            b.truncate(rng.below(b.len() + 1));
            b
        };
        let linktype = [1, 1, 101, 228, 229, 0][rng.below(6)];
        let packet = decode(Full, linktype, &bytes);
        assert_eq!(
            packet.encode().unwrap(),
            bytes,
            "linktype {linktype} {packet:?}"
        );
        // The original's dialect keeps every byte too, but for the NDP
        // options it reads its own way.
        let packet = decode(Original, linktype, &bytes);
        let encoded = packet.encode().unwrap();
        if !packet.layers.iter().any(has_ndp_options) {
            assert_eq!(encoded, bytes, "linktype {linktype} {packet:?}");
        }
    }
}

// The original's dialect (the default of every writer): layer lists and
// JSON exactly as the original writes them.

fn json_of(layer: &Layer) -> String {
    serde_json::to_string(layer).unwrap()
}

fn ipv6_packet(next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hop_limit]);
    p.extend_from_slice(&V6_A);
    p.extend_from_slice(&V6_B);
    p.extend_from_slice(payload);
    p
}

#[test]
fn original_dialect_leaves_ipv6_extension_headers_in_the_raw_after_ipv6() {
    // A fragment header in front of TCP, as a translator's fragment has it.
    let mut tcp = Vec::new();
    PacketBuilder::ipv6(V6_A, V6_B, 64)
        .tcp(1, 2, 3, 4)
        .write(&mut tcp, b"")
        .unwrap();
    let mut payload = vec![6, 0, 0, 1, 0, 0, 0x12, 0x34];
    payload.extend_from_slice(&tcp[40..]);
    let bytes = ipv6_packet(44, 64, &payload);
    let p = raw_ip(Original, &bytes, &["Ipv6", "raw"]);
    assert_eq!(p.layers[1], Layer::Raw(Raw { data: payload }));
    assert_eq!(
        json_of(&p.layers[0]),
        r#"{"layertype":"Ipv6","version_class":1610612736,"payload_length":28,"next_header":44,"hop_limit":64,"src":"fe80::1","dst":"fe80::2"}"#
    );
    raw_ip(Full, &bytes, &["Ipv6", "Ipv6Fragment", "Tcp"]);
    // Hop-by-hop in front of an MLD report: Ipv6, then raw.
    let hbh = [58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0x12, 0x34, 0, 0, 0, 0];
    raw_ip(Original, &ipv6_packet(0, 1, &hbh), &["Ipv6", "raw"]);
    raw_ip(
        Full,
        &ipv6_packet(0, 1, &hbh),
        &["Ipv6", "Ipv6HopByHop", "Icmpv6", "raw"],
    );
}

#[test]
fn original_dialect_keeps_udp_padding_with_the_payload_in_one_raw() {
    let mut f = udp4_frame(b"hi");
    f.resize(60, 0);
    let p = original_ethernet(&f, &["ether", "Ip", "Udp", "raw"]);
    let mut data = b"hi".to_vec();
    data.resize(60 - 42, 0);
    assert_eq!(p.layers[3], Layer::Raw(Raw { data }));
    // Ours splits the padding off, where the lengths say.
    full_ethernet(&f, &["ether", "Ip", "Udp", "raw", "raw"]);
    // ARP padding follows the ARP body, in both.
    for dialect in [Original, Full] {
        round_trip(
            dialect,
            LINKTYPE_ETHERNET,
            &arp_frame(1),
            &["ether", "Arp", "raw"],
        );
    }
}

#[test]
fn original_dialect_tcp_has_no_options_key_they_stay_in_the_raw() {
    let f = tcp_syn_frame();
    let p = original_ethernet(&f, &["ether", "Ip", "Tcp", "raw"]);
    assert_eq!(
        json_of(&p.layers[2]),
        r#"{"layertype":"Tcp","sport":40000,"dport":80,"seq":305419896,"ack":0,"dataofs":10,"reserved":0,"flags":2,"window":64240,"chksum":"#
            .to_string()
            + &u16::from_be_bytes([f[50], f[51]]).to_string()
            + r#","urgptr":0}"#
    );
    assert_eq!(
        p.layers[3],
        Layer::Raw(Raw {
            data: f[54..].to_vec()
        })
    );
    assert_eq!(&f[54..56], &[2, 4], "the MSS option starts the raw");
    // Without options: the payload is the raw.
    let mut g = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([192, 168, 1, 100], [8, 8, 8, 8], 254)
        .tcp(12345, 81, 0, 8192)
        .syn()
        .write(&mut g, &[42; 44])
        .unwrap();
    let p = round_trip(Original, LINKTYPE_RAW, &g[14..], &["Ip", "Tcp", "raw"]);
    assert_eq!(p.layers[2], Layer::Raw(Raw { data: vec![42; 44] }));
    // A whole line as the original's capture writes it (ours: the same).
    let Layer::Ip(ip) = &p.layers[0] else {
        panic!()
    };
    let Layer::Tcp(tcp) = &p.layers[1] else {
        panic!()
    };
    let (Field::Value(ip_sum), Field::Value(tcp_sum)) = (ip.chksum, tcp.chksum) else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&p.layers).unwrap(),
        format!(
            concat!(
                r#"[{{"layertype":"Ip","version":4,"ihl":5,"tos":0,"len":84,"id":0,"#,
                r#""flags":{{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0}},"#,
                r#""ttl":254,"proto":6,"chksum":{},"src":"192.168.1.100","dst":"8.8.8.8","options":[]}},"#,
                r#"{{"layertype":"Tcp","sport":12345,"dport":81,"seq":0,"ack":0,"dataofs":5,"reserved":0,"#,
                r#""flags":2,"window":8192,"chksum":{},"urgptr":0}},{{"layertype":"raw","data":[{}]}}]"#
            ),
            ip_sum,
            tcp_sum,
            ["42"; 44].join(",")
        )
    );
    // Ours reads the options.
    full_ethernet(&f, &["ether", "Ip", "Tcp"]);
}

#[test]
fn original_dialect_reads_the_fixed_ipv4_header_only() {
    // Router alert: the original hands the option bytes to the next layer
    // (ICMP here, read from them); options stay [] and no byte is lost.
    let mut ip = Ipv4Header::new(8, 64, IpNumber::ICMP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
    ip.options = [148, 4, 0, 0].into();
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4_echo_request(0x4242, 7)
        .write(&mut f, b"pingpong")
        .unwrap();
    let p = original_ethernet(&f, &["ether", "Ip", "Icmp", "raw"]);
    let Layer::Ip(ip) = &p.layers[1] else {
        panic!()
    };
    assert_eq!((ip.ihl, ip.options.len()), (v(6), 0));
    let Layer::Icmp(icmp) = &p.layers[2] else {
        panic!()
    };
    assert_eq!(icmp.typ, v(148), "the option's first byte");
    // A later IPv4 fragment: the original reads a header from its payload.
    let mut g = udp4_frame(b"0123456789");
    g[14 + 6] = 0x00;
    g[14 + 7] = 0x02;
    original_ethernet(&g, &["ether", "Ip", "Udp", "raw"]);
    full_ethernet(&g, &["ether", "Ip", "raw"]);
}

#[test]
fn vlan_tags_are_dot1q_with_prio_id_vlan_etype() {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&MAC_B);
    // 802.1Q, PCP 5, DEI 1, VID 42, then ARP.
    f.extend_from_slice(&[0x81, 0x00, 0xb0, 42, 0x08, 0x06]);
    f.extend_from_slice(&arp_frame(1)[14..42]);
    let p = original_ethernet(&f, &["ether", "dot1Q", "Arp"]);
    assert_eq!(
        json_of(&p.layers[1]),
        r#"{"layertype":"dot1Q","prio":5,"id":1,"vlan":42,"etype":2054}"#
    );
    // 802.1ad: the original has no S-tag; ours reads it as a tag.
    f[12] = 0x88;
    f[13] = 0xa8;
    original_ethernet(&f, &["ether", "raw"]);
    full_ethernet(&f, &["ether", "dot1Q", "Arp"]);
}

#[test]
fn icmpv4_errors_are_icmp_then_raw_with_the_quote() {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1260 },
        ))
        .write(&mut f, &udp4_frame(b"hello")[14..])
        .unwrap();
    for dialect in [Original, Full] {
        let p = round_trip(
            dialect,
            LINKTYPE_ETHERNET,
            &f,
            &["ether", "Ip", "Icmp", "raw"],
        );
        let Layer::Raw(raw) = &p.layers[3] else {
            panic!()
        };
        assert_eq!(&raw.data[..4], &[0, 0, 4, 236], "unused, then the MTU");
        assert_eq!(&raw.data[4..], &udp4_frame(b"hello")[14..]);
    }
}

/// An ICMPv6 error (built by etherparse) quoting `quoted`.
fn icmpv6_error(typ: Icmpv6Type, quoted: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv6(V6_A, V6_B, 64)
        .icmpv6(typ)
        .write(&mut f, quoted)
        .unwrap();
    f
}

#[test]
fn icmpv6_errors_decode_to_their_layers_and_encode_with_auto_checksums() {
    let mut udp6 = Vec::new();
    PacketBuilder::ipv6(V6_B, V6_A, 64)
        .udp(5353, 53)
        .write(&mut udp6, b"query")
        .unwrap();
    let mut echo6 = Vec::new();
    PacketBuilder::ipv6(V6_B, V6_A, 1)
        .icmpv6_echo_request(7, 1)
        .write(&mut echo6, b"ping")
        .unwrap();
    let cases = [
        (
            Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port),
            &udp6,
            "icmpv6DestUnreach",
            r#"{"layertype":"icmpv6DestUnreach","unused":0,"invoking_packet":["#,
        ),
        (
            Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded),
            &echo6,
            "icmpv6TimeExceeded",
            r#"{"layertype":"icmpv6TimeExceeded","unused":0,"invoking_packet":["#,
        ),
        (
            Icmpv6Type::PacketTooBig { mtu: 1280 },
            &udp6,
            "icmpv6PacketTooBig",
            r#"{"layertype":"icmpv6PacketTooBig","mtu":1280,"invoking_packet":["#,
        ),
        (
            Icmpv6Type::ParameterProblem(etherparse::icmpv6::ParameterProblemHeader {
                code: etherparse::icmpv6::ParameterProblemCode::UnrecognizedNextHeader,
                pointer: 40,
            }),
            &udp6,
            "icmpv6ParameterProblem",
            r#"{"layertype":"icmpv6ParameterProblem","pointer":40,"invoking_packet":["#,
        ),
    ];
    for (typ, quoted, name, json_start) in cases {
        let f = icmpv6_error(typ, quoted);
        assert_checksums_valid(&f);
        for dialect in [Original, Full] {
            let p = round_trip(
                dialect,
                LINKTYPE_ETHERNET,
                &f,
                &["ether", "Ipv6", "Icmpv6", name],
            );
            let json = json_of(&p.layers[3]);
            let quote: Vec<String> = quoted.iter().map(u8::to_string).collect();
            assert_eq!(json, format!("{json_start}{}]}}", quote.join(",")));
        }
        // Built from JSON with <auto> type, checksum and length: the same
        // bytes as etherparse's.
        let p = decode(Original, LINKTYPE_ETHERNET, &f);
        let mut json: Vec<Value> = p
            .layers
            .iter()
            .map(|l| serde_json::to_value(l).unwrap())
            .collect();
        json[1]["payload_length"] = "<auto>".into();
        json[1]["next_header"] = "<auto>".into();
        json[2]["type_"] = "<auto>".into();
        json[2]["checksum"] = "<auto>".into();
        let packet = layers_json(&serde_json::to_string(&json).unwrap());
        assert_eq!(packet.encode().unwrap(), f, "{name}");
    }
}

#[test]
fn icmpv6_redirect_round_trips() {
    let mut body = vec![0; 4];
    body.extend_from_slice(&V6_B);
    body.extend_from_slice(&V6_A);
    body.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv6(V6_A, V6_B, 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 137,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut f, &body[4..])
        .unwrap();
    let p = original_ethernet(&f, &["ether", "Ipv6", "Icmpv6", "icmpv6Redirect"]);
    assert_eq!(
        json_of(&p.layers[3]),
        r#"{"layertype":"icmpv6Redirect","reserved":0,"target_address":"fe80::2","destination_address":"fe80::1","options":[{"TargetLinkLayerAddress":"02:00:00:00:00:01"}]}"#
    );
}

#[test]
fn original_dialect_ndp_options_are_the_originals() {
    let f = ra_with_an_unnamed_option();
    let p = decode(Original, LINKTYPE_ETHERNET, &f);
    assert_eq!(
        names(&p),
        ["ether", "Ipv6", "Icmpv6", "icmpv6RouterAdvertisement"]
    );
    assert_eq!(
        json_of(&p.layers[3]),
        concat!(
            r#"{"layertype":"icmpv6RouterAdvertisement","cur_hop_limit":64,"flags":64,"router_lifetime":1800,"#,
            r#""reachable_time":0,"retrans_timer":0,"options":[{"SourceLinkLayerAddress":"02:00:00:00:00:01"},"#,
            r#"{"MTU":1500},{"PrefixInformation":{"prefix_length":64,"flags":192,"valid_lifetime":3600,"#,
            r#""preferred_lifetime":1800,"prefix":"2001:db8:1::"}}]}"#
        )
    );
    // The unnamed option is left out, as the original leaves it out: the
    // packet encodes without it.
    assert_eq!(p.encode().unwrap().len(), f.len() - 8);
    // Ours keeps it.
    let p = full_ethernet(
        &f,
        &["ether", "Ipv6", "Icmpv6", "icmpv6RouterAdvertisement"],
    );
    let Layer::RouterAdvertisement(l) = &p.layers[3] else {
        panic!()
    };
    assert_eq!(
        l.options[3],
        NdpOption::Unknown {
            type_: 200,
            data: vec![9; 6]
        }
    );
    // A zero-length option ends the options (the original would loop).
    let mut ns = V6_B.to_vec();
    ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1, 1, 0, 7, 7]);
    original_ethernet(
        &ndp_frame(Icmpv6Type::NeighborSolicitation, &ns),
        &[
            "ether",
            "Ipv6",
            "Icmpv6",
            "icmpv6NeighborSolicitation",
            "raw",
        ],
    );
    // A router solicitation: reserved, then options.
    let p = decode(
        Original,
        LINKTYPE_ETHERNET,
        &ndp_frame(Icmpv6Type::RouterSolicitation, &[]),
    );
    assert_eq!(
        json_of(&p.layers[3]),
        r#"{"layertype":"icmpv6RouterSolicitation","reserved":0,"options":[]}"#
    );
}

#[test]
fn our_older_spellings_are_still_read() {
    let p = layers_json(concat!(
        r#"[{"layertype":"Dot1Q","prio":1,"dei":true,"vlan":7,"etype":34525},"#,
        r#"{"layertype":"icmpv6RouterAdvertisement","cur_hop_limit":64,"flags":0,"router_lifetime":0,"#,
        r#""reachable_time":0,"retrans_timer":0,"options":[{"Mtu":1400},{"PrefixInformation":{"#,
        r#""prefix_length":64,"on_link":true,"autonomous":false,"valid_lifetime":1,"preferred_lifetime":1,"#,
        r#""prefix":"2001:db8::"}}]},{"layertype":"icmpv6RouterSolicitation","options":[]}]"#
    ));
    let Layer::Dot1Q(tag) = &p.layers[0] else {
        panic!()
    };
    assert_eq!((tag.prio, tag.id, tag.vlan), (v(1), v(1), v(7)));
    let Layer::RouterAdvertisement(ra) = &p.layers[1] else {
        panic!()
    };
    assert_eq!(ra.options[0], NdpOption::Mtu(1400));
    let NdpOption::PrefixInformation { flags, .. } = ra.options[1] else {
        panic!()
    };
    assert_eq!(flags, 0x80);
    let Layer::RouterSolicitation(rs) = &p.layers[2] else {
        panic!()
    };
    assert_eq!(rs.reserved, v(0));
}

#[test]
fn gre_is_decoded_with_every_field_and_encodes_its_auto_fields() {
    // GRE with checksum, key and sequence number, carrying IPv4/UDP.
    let inner = udp4_frame(b"tunnelled")[14..].to_vec();
    let mut gre = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0];
    gre.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    gre.extend_from_slice(&9u32.to_be_bytes());
    gre.extend_from_slice(&inner);
    let sum = Sum16BitWords::new()
        .add_slice(&gre)
        .ones_complement()
        .to_be();
    gre[4..6].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut f, IpNumber(47), &gre)
        .unwrap();
    for dialect in [Original, Full] {
        let p = round_trip(
            dialect,
            LINKTYPE_ETHERNET,
            &f,
            &["ether", "Ip", "Gre", "Ip", "Udp", "raw"],
        );
        assert_eq!(
            json_of(&p.layers[2]),
            format!(
                concat!(
                    r#"{{"layertype":"Gre","chksum_present":true,"routing_present":false,"key_present":true,"#,
                    r#""seqnum_present":true,"strict_source_route":false,"recursion_control":0,"acknum_present":false,"#,
                    r#""flags":0,"version":0,"proto":2048,"chksum":{},"ignored_chksum":0,"reserved1":0,"#,
                    r#""routing_offset":0,"key":16909060,"sequence_number":9,"ack_number":0,"routing":[]}}"#
                ),
                sum
            )
        );
    }
    // <auto> protocol and checksum give the same bytes.
    let p = decode(Original, LINKTYPE_ETHERNET, &f);
    let mut json: Vec<Value> = p
        .layers
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .collect();
    json[2]["proto"] = "<auto>".into();
    json[2]["chksum"] = "<auto>".into();
    let packet = layers_json(&serde_json::to_string(&json).unwrap());
    assert_eq!(packet.encode().unwrap(), f);
    // Transparent Ethernet bridging: a frame inside.
    let mut teb = vec![0x00, 0x00, 0x65, 0x58];
    teb.extend_from_slice(&arp_frame(1));
    let mut f = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut f, IpNumber(47), &teb)
        .unwrap();
    raw_ip(Original, &f, &["Ip", "Gre", "ether", "Arp", "raw"]);
}

#[test]
fn ip_in_ip_follows_the_original_ipv4_in_both_ipv6_only_in_ours() {
    let inner4 = udp4_frame(b"x")[14..].to_vec();
    let mut f = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut f, IpNumber(4), &inner4)
        .unwrap();
    for dialect in [Original, Full] {
        round_trip(dialect, LINKTYPE_RAW, &f, &["Ip", "Ip", "Udp", "raw"]);
    }
    let inner6 = ipv6_packet(59, 64, &[]);
    let mut f = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut f, IpNumber(41), &inner6)
        .unwrap();
    raw_ip(Original, &f, &["Ip", "raw"]);
    raw_ip(Full, &f, &["Ip", "Ipv6"]);
    raw_ip(
        Original,
        &ipv6_packet(4, 64, &inner4),
        &["Ipv6", "Ip", "Udp", "raw"],
    );
}

#[test]
fn real_captured_frames_in_the_original_dialect() {
    let mut reader = pcap_file::pcap::PcapReader::new(VETH_CAPTURE).unwrap();
    let mut kinds = std::collections::BTreeMap::new();
    let mut nonces = 0;
    while let Some(frame) = reader.next_packet() {
        let frame = frame.unwrap();
        let packet = decode(Original, LINKTYPE_ETHERNET, &frame.data);
        assert_eq!(packet.dialect(), Original);
        let encoded = packet.encode().unwrap();
        if encoded[..] != frame.data[..] {
            // DAD's solicitations carry a nonce option (type 14), which
            // the original leaves out: all else is there.
            assert_eq!(&frame.data[encoded.len()..][..2], &[14, 1], "{packet:?}");
            assert_eq!(&frame.data[..encoded.len()], &encoded[..]);
            nonces += 1;
        }
        *kinds.entry(names(&packet).join(" ")).or_insert(0) += 1;
    }
    let expected = [
        ("ether Arp", 4),
        ("ether Ip Icmp echo raw", 4),
        ("ether Ip Icmp echoReply raw", 4),
        // A port unreachable, and the later fragments of a big ping:
        // the original reads an ICMP header from their payload.
        ("ether Ip Icmp raw", 1 + 8),
        // SYNs and SYN-ACKs: their options are the raw.
        ("ether Ip Tcp raw", 10),
        ("ether Ip Udp raw", 1),
        ("ether Ipv6 Icmpv6 icmpv6DestUnreach", 1),
        ("ether Ipv6 Icmpv6 icmpv6EchoReply raw", 2),
        ("ether Ipv6 Icmpv6 icmpv6EchoRequest raw", 2),
        ("ether Ipv6 Icmpv6 icmpv6NeighborAdvertisement", 2),
        ("ether Ipv6 Icmpv6 icmpv6NeighborSolicitation", 8),
        ("ether Ipv6 Icmpv6 icmpv6RouterSolicitation", 4),
        // MLD reports behind a hop-by-hop header.
        ("ether Ipv6 raw", 10),
        ("ether Ipv6 Udp raw", 1),
    ];
    let mut want = std::collections::BTreeMap::new();
    for (k, n) in expected {
        *want.entry(k.to_string()).or_insert(0) += n;
    }
    want.retain(|_, n| *n > 0);
    assert_eq!(kinds, want);
    assert!(nonces > 0);
}

#[test]
fn field_spans_of_the_newer_layers_point_at_their_bytes() {
    let check = |bytes: &[u8], layer: usize, field: &str, want: &[u8]| {
        let packet = decode(Original, LINKTYPE_ETHERNET, bytes);
        let (encoded, starts) = packet.encode_layout().unwrap();
        let start = starts[layer];
        let end = starts.get(layer + 1).copied().unwrap_or(encoded.len());
        let span = packet.layers[layer]
            .field_span(field, end - start)
            .unwrap_or_else(|| panic!("no span for {field}"));
        assert_eq!(
            &encoded[start + span.start..start + span.end],
            want,
            "{field}"
        );
    };
    let too_big = icmpv6_error(Icmpv6Type::PacketTooBig { mtu: 1280 }, &[0x60; 48]);
    check(&too_big, 3, "mtu", &1280u32.to_be_bytes());
    check(&too_big, 3, "invoking_packet", &[0x60; 48]);
    let problem = icmpv6_error(
        Icmpv6Type::ParameterProblem(etherparse::icmpv6::ParameterProblemHeader {
            code: etherparse::icmpv6::ParameterProblemCode::ErroneousHeaderField,
            pointer: 6,
        }),
        &[0x60; 48],
    );
    check(&problem, 3, "pointer", &6u32.to_be_bytes());
    // GRE with a key: the key where the K flag puts it.
    let inner = udp4_frame(b"x")[14..].to_vec();
    let mut gre = vec![0x20, 0x00, 0x08, 0x00];
    gre.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
    gre.extend_from_slice(&inner);
    let mut f = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut f, IpNumber(47), &gre)
        .unwrap();
    check(&f, 2, "key", &0xcafe_f00du32.to_be_bytes());
    check(&f, 2, "proto", &[0x08, 0x00]);
}

#[test]
fn every_layer_type_names_its_fields_as_its_json_writes_them() {
    for name in Layer::NAMES {
        assert!(Layer::field_names(name).is_some(), "{name}");
    }
    assert_eq!(Layer::field_names("Ipv7"), None);
    for (_, objects) in crate::edit::NEW_LAYERS {
        for object in *objects {
            let layer: Layer = serde_json::from_str(object).unwrap();
            let value = serde_json::to_value(&layer).unwrap();
            let keys: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "layertype")
                .collect();
            let fields = Layer::field_names(layer.name()).unwrap();
            for key in keys {
                assert!(fields.contains(&key), "{}: {key}", layer.name());
            }
        }
    }
}
