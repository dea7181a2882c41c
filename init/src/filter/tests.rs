//! libpcap is the oracle: for every expression of the corpus and every
//! packet of a generated set, our program's verdict equals the verdict of
//! the program `tcpdump -ddd -y EN10MB|RAW EXPR` prints (both run in the
//! one interpreter of bpf.rs). An expression tcpdump refuses must be
//! refused here too.

use std::process::Command;

use myinit_testkit::Frame;
use serde_json::json;

use super::bpf::{self, Insn};
use super::*;

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BCAST: [u8; 6] = [0xff; 6];
const MCAST6: [u8; 6] = [0x33, 0x33, 0, 0, 0, 0x01];

fn v6(text: &str) -> std::net::Ipv6Addr {
    text.parse().unwrap()
}

fn dot1q(vlan: u16) -> serde_json::Value {
    json!({"layertype": "dot1Q", "prio": 3, "id": 0, "vlan": vlan, "etype": "<auto>"})
}

fn ipv4_raw(
    src: [u8; 4],
    dst: [u8; 4],
    ihl_words: usize,
    frag: (bool, u16),
    proto: serde_json::Value,
) -> serde_json::Value {
    let options: Vec<serde_json::Value> = if ihl_words > 5 {
        // Router alert, then padding to a 32-bit boundary.
        vec![json!({"Tlv": {"kind": 148, "data": [0, 0]}})]
    } else {
        vec![]
    };
    json!({"layertype": "Ip", "version": 4, "ihl": "<auto>", "tos": 0, "len": "<auto>", "id": 7,
           "flags": {"reserved": false, "dont_fragment": false, "more_fragments": frag.0,
                     "fragment_offset": frag.1},
           "ttl": 64, "proto": proto, "chksum": "<auto>",
           "src": std::net::Ipv4Addr::from(src).to_string(),
           "dst": std::net::Ipv4Addr::from(dst).to_string(), "options": options})
}

/// The packets, Ethernet frames first; `raw` gives the IP packet of those
/// that have one, for the raw-IP variant.
fn packets() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>| out.push((name.to_string(), bytes));
    let e = || Frame::ether(B, A);
    let a4 = [10, 0, 0, 1];
    let b4 = [10, 0, 0, 2];
    let far4 = [192, 168, 7, 9];
    add(
        "tcp syn 80",
        e().ipv4(a4, b4).tcp(40000, 80, 1, 0x02).bytes(),
    );
    add(
        "tcp ack 443 rev",
        e().ipv4(b4, a4)
            .tcp(443, 40001, 9, 0x10)
            .payload(b"data")
            .bytes(),
    );
    add(
        "tcp syn 22 far",
        e().ipv4(far4, a4).tcp(5555, 22, 3, 0x02).bytes(),
    );
    add(
        "udp 53",
        e().ipv4(a4, b4).udp(5353, 53).payload(b"q").bytes(),
    );
    add(
        "udp 1-10",
        e().ipv4(a4, far4).udp(7, 2000).payload(b"x").bytes(),
    );
    add(
        "udp 5000",
        e().ipv4(far4, b4).udp(4000, 5000).payload(&[0; 40]).bytes(),
    );
    add(
        "icmp echo",
        e().ipv4(a4, b4).icmp_echo(1, 1).payload(b"ping").bytes(),
    );
    add(
        "icmp unreach quoting udp",
        e().ipv4(b4, a4)
            .layer(json!({"layertype": "Icmp", "typ": 3, "code": 3, "chksum": "<auto>"}))
            .payload(&[
                0, 0, 0, 0, 0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
                0x13, 0x88, 0, 53, 0, 8, 0, 0,
            ])
            .bytes(),
    );
    add(
        "ip multicast",
        e().ipv4(a4, [224, 0, 0, 251]).udp(5353, 5353).bytes(),
    );
    add(
        "ip broadcast mac",
        Frame::ether(BCAST, A)
            .ipv4(a4, [10, 0, 0, 255])
            .udp(68, 67)
            .bytes(),
    );
    add(
        "ipv4 options tcp",
        e().layer(ipv4_raw(a4, b4, 6, (false, 0), json!("<auto>")))
            .tcp(1234, 80, 5, 0x12)
            .bytes(),
    );
    add(
        "ipv4 first fragment udp 53",
        e().layer(ipv4_raw(a4, b4, 5, (true, 0), json!("<auto>")))
            .udp(53, 53)
            .payload(&[1; 16])
            .bytes(),
    );
    add(
        "ipv4 later fragment",
        e().layer(ipv4_raw(a4, b4, 5, (false, 3), json!(17)))
            .payload(&[0, 53, 0, 53, 0, 9, 0, 0, 1])
            .bytes(),
    );
    let (a6, b6) = (v6("fd00::1"), v6("fd00::2"));
    add("tcp6 80", e().ipv6(a6, b6).tcp(40000, 80, 1, 0x02).bytes());
    add(
        "udp6 53",
        e().ipv6(b6, a6).udp(53, 40000).payload(b"r").bytes(),
    );
    add(
        "icmp6 echo",
        e().ipv6(v6("fe80::1"), v6("fe80::2"))
            .layer(
                json!({"layertype": "Icmpv6", "type_": "<auto>", "code": 0, "checksum": "<auto>"}),
            )
            .layer(json!({"layertype": "icmpv6EchoRequest", "identifier": 1, "sequence": 2}))
            .bytes(),
    );
    add(
        "icmp6 ns multicast",
        Frame::ether(MCAST6, A)
            .ipv6(v6("fe80::1"), v6("ff02::1:ff00:2"))
            .layer(json!({"layertype": "Icmpv6", "type_": "<auto>", "code": 0, "checksum": "<auto>"}))
            .layer(json!({"layertype": "icmpv6NeighborSolicitation", "reserved": 0, "target_address": "fe80::2", "options": []}))
            .bytes(),
    );
    add(
        "udp6 behind hop-by-hop",
        e().ipv6(a6, b6)
            .layer(json!({"layertype": "Ipv6HopByHop", "next_header": "<auto>", "hdr_ext_len": "<auto>", "data": [5, 2, 0, 0, 1, 0]}))
            .udp(53, 53)
            .bytes(),
    );
    add(
        "udp6 behind a fragment header",
        e().ipv6(a6, b6)
            .layer(json!({"layertype": "Ipv6Fragment", "next_header": "<auto>", "reserved": 0, "fragment_offset": 0, "res": 0, "more_fragments": true, "identification": 9}))
            .udp(53, 53)
            .payload(&[0; 8])
            .bytes(),
    );
    add(
        "arp request",
        Frame::ether(BCAST, A)
            .layer(json!({"layertype": "Arp", "hwtype": 1, "ptype": 2048, "hwlen": 6, "plen": 4, "op": 1,
                          "hwsrc": "02:00:00:00:00:01", "psrc": "10.0.0.1", "hwdst": "00:00:00:00:00:00", "pdst": "10.0.0.2"}))
            .bytes(),
    );
    add(
        "rarp",
        Frame::ether_type(BCAST, A, Some(0x8035))
            .payload(&[
                0, 1, 8, 0, 6, 4, 0, 3, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 2, 0, 0, 0, 0, 1, 192, 168,
                7, 9,
            ])
            .bytes(),
    );
    add(
        "vlan 100 ipv4 tcp",
        e().layer(dot1q(100))
            .ipv4(a4, b4)
            .tcp(40000, 80, 1, 0x02)
            .bytes(),
    );
    add(
        "vlan 200 ipv6 udp",
        e().layer(dot1q(200)).ipv6(a6, b6).udp(53, 53).bytes(),
    );
    add(
        "qinq 10/100 ipv4 udp",
        Frame::ether_type(B, A, Some(0x88a8))
            .layer(json!({"layertype": "dot1Q", "prio": 0, "id": 0, "vlan": 10, "etype": 0x8100}))
            .layer(dot1q(100))
            .ipv4(a4, b4)
            .udp(53, 53)
            .bytes(),
    );
    add(
        "other ethertype",
        Frame::ether_type(B, A, Some(0x88b5))
            .payload(&[0; 46])
            .bytes(),
    );
    add(
        "multicast mac other",
        Frame::ether_type(MCAST6, B, Some(0x88b5))
            .payload(&[1; 46])
            .bytes(),
    );
    let full = e().ipv4(a4, b4).tcp(40000, 80, 1, 0x02).bytes();
    add("truncated in ip", full[..20].to_vec());
    add("truncated in tcp", full[..40].to_vec());
    add("ethernet header only", full[..14].to_vec());
    out
}

/// The network-layer part of a frame, for the raw-IP runs: past the MAC
/// header and any VLAN tags; None when the frame carries no IP.
fn ip_part(frame: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    loop {
        let t = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match t {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            0x0800 | 0x86dd => return frame.get(at + 2..),
            _ => return None,
        }
    }
}

/// libpcap's program for `expr` on `dlt`; Err(tcpdump's message) when it
/// refuses, Ok(empty) when it says the expression rejects everything.
fn libpcap(expr: &str, dlt: &str) -> Result<Vec<Insn>, String> {
    let out = Command::new("tcpdump")
        .args(["-ddd", "-y", dlt, expr])
        .output()
        .expect("tcpdump (apt install tcpdump)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        if stderr.contains("rejects all packets") {
            return Ok(vec![Insn::stmt(bpf::BPF_RET, 0)]);
        }
        return Err(stderr.trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let n: usize = lines.next().unwrap().trim().parse().unwrap();
    let program: Vec<Insn> = lines
        .map(|l| {
            let f: Vec<u32> = l.split_whitespace().map(|w| w.parse().unwrap()).collect();
            Insn {
                code: f[0] as u16,
                jt: f[1] as u8,
                jf: f[2] as u8,
                k: f[3],
            }
        })
        .collect();
    assert_eq!(program.len(), n);
    Ok(program)
}

const CORPUS: &[&str] = &[
    "ip",
    "ip6",
    "arp",
    "rarp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "host 192.168.7.9",
    "ip host 10.0.0.1",
    "arp host 10.0.0.2",
    "rarp src host 10.0.0.1",
    "host fd00::1",
    "ip6 dst host fd00::2",
    "src host fe80::1",
    "net 10.0.0.0/8",
    "src net 10.0.0.0/24",
    "dst net 192.168.0.0/16",
    "net 10.0.0.0 mask 255.255.255.0",
    "net fd00::/16",
    "dst net ff02::/16",
    "net 224.0.0.0/4",
    "port 53",
    "port 80",
    "src port 53",
    "dst port 80",
    "tcp port 80",
    "udp port 53",
    "tcp dst port 80",
    "udp src port 5353",
    "sctp port 9",
    "portrange 1-10",
    "tcp portrange 20-100",
    "src portrange 5000-6000",
    "port 53 or port 80",
    "not port 53",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:01",
    "ether dst 02:00:00:00:00:02",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x88b5",
    "ether proto 0x0800",
    "ether proto arp",
    "ip multicast",
    "ip6 multicast",
    "vlan",
    "vlan 100",
    "vlan 200",
    "vlan and ip",
    "vlan 100 and tcp port 80",
    "vlan and vlan and udp",
    "vlan 10 and vlan 100",
    "not vlan",
    "proto 17",
    "ip proto 6",
    "ip6 proto 17",
    "ip proto 1",
    "ip6 proto 58",
    "greater 100",
    "less 60",
    "len > 60",
    "len <= 54",
    "len == 60",
    "ip[6:2] & 0x1fff != 0",
    "ip[0] & 0xf > 5",
    "ip[8] == 64",
    "ip[9] = 6",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[13] & 2 != 0",
    "tcp[0:2] = 443",
    "udp[2:2] = 53",
    "udp[4:2] > 20",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] != icmp-echo",
    "icmp[0] = 3",
    "icmp6[icmp6type] == icmp6-echo",
    "icmp6[0] = 135",
    "ether[0] & 1 != 0",
    "ether[12:2] = 0x86dd",
    "ip6[6] = 17",
    "ip6[40] = 0x11",
    "len - 14 > 40",
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 20",
    "ip[2:2] > len",
    "2 + 2 == 4",
    "tcp and (port 80 or port 443)",
    "host 10.0.0.1 and not arp",
    "ip or ip6 and udp",
    "not ip and not ip6",
    "! tcp && ! udp",
    "(tcp or udp) and not port 53",
    "host 10.0.0.1 or 10.0.0.2",
    "tcp port 80 or 443",
    "src host 10.0.0.1 and dst host 10.0.0.2",
    "src or dst host 10.0.0.2",
    "src and dst net 10.0.0.0/8",
    "icmp or icmp6",
    "arp or rarp",
    "ip and udp[8:2] = 0x0101",
];

/// The packet set as `link` carries it: whole frames, or their IP part
/// (frames without IP are left out).
fn packets_on(link: Link) -> Vec<(String, Vec<u8>)> {
    packets()
        .into_iter()
        .filter_map(|(name, frame)| match link {
            Link::Ethernet => Some((name, frame)),
            Link::RawIp => ip_part(&frame).map(|ip| (name, ip.to_vec())),
        })
        .collect()
}

fn assert_no_differences(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_corpus(link: Link, dlt: &str) -> usize {
    let packets = packets_on(link);
    let mut checked = 0;
    let mut failures = Vec::new();
    for expr in CORPUS {
        let ours = Filter::compile(expr, link);
        let theirs = libpcap(expr, dlt);
        let (ours, theirs) = match (ours, theirs) {
            (Ok(o), Ok(t)) => (o, t),
            (Err(_), Err(_)) => continue,
            (Ok(_), Err(e)) => {
                failures.push(format!("{dlt} `{expr}`: libpcap refuses ({e}), we accept"));
                continue;
            }
            (Err(e), Ok(_)) => {
                failures.push(format!("{dlt} `{expr}`: we refuse ({e}), libpcap accepts"));
                continue;
            }
        };
        for (name, data) in &packets {
            let want = bpf::run(&theirs, data, data.len() as u32) != 0;
            let got = ours.matches(data, data.len() as u32);
            checked += 1;
            if want != got {
                failures.push(format!(
                    "{dlt} `{expr}` on {name}: libpcap {want}, ours {got}\n{}",
                    ours.listing()
                ));
            }
        }
    }
    assert_no_differences(&failures);
    checked
}

#[test]
fn every_verdict_is_libpcaps_on_ethernet() {
    assert!(CORPUS.len() >= 60);
    let checked = run_corpus(Link::Ethernet, "EN10MB");
    assert!(checked > 3000, "{checked}");
}

#[test]
fn every_verdict_is_libpcaps_on_raw_ip() {
    let checked = run_corpus(Link::RawIp, "RAW");
    assert!(checked > 1000, "{checked}");
}

#[test]
fn errors_point_at_the_column() {
    let err = |e: &str| Filter::compile(e, Link::Ethernet).unwrap_err().to_string();
    assert_eq!(err("tcp and (port 80"), "column 9: `(` without its `)`");
    assert_eq!(
        err("host www.example.com"),
        "column 6: `www.example.com`: not an IP address (host names are not supported)"
    );
    assert_eq!(
        err("port http"),
        "column 6: `http`: not a port number (service names are not supported)"
    );
    assert_eq!(err("tcp gateway"), "column 5: unexpected `gateway`");
    assert_eq!(
        err("protochain 6"),
        "column 1: `protochain` is not supported"
    );
    assert_eq!(
        err("frobnicate"),
        "column 1: `frobnicate`: unknown word (names that need a lookup are not supported)"
    );
    assert_eq!(err("ip[1:3] = 0"), "column 6: size 3: 1, 2 or 4");
    assert_eq!(err(""), "column 1: empty expression");
    let raw = Filter::compile("ether host 02:00:00:00:00:01", Link::RawIp).unwrap_err();
    assert!(raw.to_string().contains("raw IP"), "{raw}");
}

#[test]
fn the_listing_is_tcpdumps() {
    for expr in [
        "tcp",
        "port 53",
        "vlan 100",
        "greater 100",
        "icmp[icmptype] == icmp-echo",
    ] {
        let ours = Filter::compile(expr, Link::Ethernet).unwrap();
        let theirs = Command::new("tcpdump")
            .args(["-d", "-y", "EN10MB", expr])
            .output()
            .unwrap();
        let theirs = String::from_utf8_lossy(&theirs.stdout);
        // Same shape of listing: every line `(NNN) op args`.
        for line in ours.listing().lines() {
            assert!(line.starts_with('('), "{line}");
        }
        assert!(theirs.lines().all(|l| l.starts_with('(')));
        assert!(
            ours.listing().ends_with("ret      #0\n"),
            "{}",
            ours.listing()
        );
    }
}

/// The eBPF translation, run by the kernel (`BPF_PROG_TEST_RUN` on a
/// SCHED_CLS program), gives every packet the verdict of libpcap's program,
/// for our program and for libpcap's own translated (its code shapes too).
fn run_corpus_in_kernel(link: Link, dlt: &str) -> usize {
    use crate::ebpf::raw;
    use std::os::fd::AsFd as _;
    let packets = packets_on(link);
    let kind = raw::ProgramKind::SCHED_CLS;
    let mut checked = 0;
    let mut failures = Vec::new();
    for expr in CORPUS {
        let (Ok(ours), Ok(theirs)) = (Filter::compile(expr, link), libpcap(expr, dlt)) else {
            continue;
        };
        let mut programs = Vec::new();
        for (who, program) in [("ours", &ours.program), ("libpcap's", &theirs)] {
            if program.is_empty() {
                continue;
            }
            let insns = ebpf::translate(
                program,
                None,
                ebpf::Hook::Tc { base_map: None },
                ebpf::Verdict::Return,
            )
            .unwrap_or_else(|e| panic!("`{expr}` ({who}): {e}"));
            let fd = raw::load("filter_test", kind, &insns)
                .unwrap_or_else(|e| panic!("`{expr}` ({who}): {e}"));
            programs.push((who, fd));
        }
        for (name, data) in &packets {
            // The test run builds an skb from an Ethernet header at least,
            // in one page.
            if data.len() < 14 || data.len() > 3000 {
                continue;
            }
            let want = bpf::run(&theirs, data, data.len() as u32) != 0;
            for (who, fd) in &programs {
                // The kernel refuses to build an skb of an IP packet cut
                // inside its header: such frames are the interpreter's.
                let Ok((got, _)) = raw::test_run(&fd.as_fd(), data, 1) else {
                    continue;
                };
                checked += 1;
                if want != (got != 0) {
                    failures.push(format!(
                        "{dlt} `{expr}` on {name}: libpcap {want}, kernel running {who} {got}"
                    ));
                }
            }
        }
    }
    assert_no_differences(&failures);
    checked
}

#[test]
fn the_kernel_gives_libpcaps_verdicts_on_ethernet() {
    let checked = run_corpus_in_kernel(Link::Ethernet, "EN10MB");
    assert!(checked > 5000, "{checked}");
}

#[test]
fn the_kernel_gives_libpcaps_verdicts_on_raw_ip() {
    let checked = run_corpus_in_kernel(Link::RawIp, "RAW");
    assert!(checked > 1000, "{checked}");
}

/// A program the verifier refuses comes back with the end of its log, so
/// a user sees why (here: r0 is returned unset).
#[test]
fn a_refused_program_brings_the_verifiers_log() {
    use crate::ebpf::raw;
    let kind = raw::ProgramKind::SCHED_CLS;
    let exit = raw::Insn {
        code: 0x95,
        ..Default::default()
    };
    let error = raw::load("refused", kind, &[exit]).unwrap_err().to_string();
    assert!(
        error.starts_with("refused: the kernel's verifier refused the program"),
        "{error}"
    );
    assert!(error.contains("R0 !read_ok"), "{error}");
}

/// Long expressions: one over the classic cap is refused by the compiler;
/// one under it translates and loads at TC.
#[test]
fn a_long_expression_translates_and_one_over_the_cap_is_refused() {
    let hosts = |n: usize| {
        (0..n)
            .map(|i| format!("host 10.0.{}.{}", i / 250, i % 250 + 1))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let error = Filter::compile(&hosts(1000), Link::Ethernet).unwrap_err();
    assert!(error.to_string().contains("more than the 4096"), "{error}");
    let filter = Filter::compile(&hosts(120), Link::Ethernet).unwrap();
    assert!(filter.program.len() > 1000, "{}", filter.program.len());
    let insns = ebpf::translate(
        &filter.program,
        None,
        ebpf::Hook::Tc { base_map: None },
        ebpf::Verdict::Return,
    )
    .unwrap();
    let kind = crate::ebpf::raw::ProgramKind::SCHED_CLS;
    crate::ebpf::raw::load("long", kind, &insns).unwrap();
}
