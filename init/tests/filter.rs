//! Filters end to end: `pcap2json --filter` and `json2pcap --filter`
//! select exactly the packets `tcpdump -r FILE EXPR` selects, `filter
//! check` points at what is wrong, and a bad expression writes nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{myinit, run_ok, MyinitIn, TempDir};
use myinit_testkit::{pcap_timed, Frame};

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Frames of many kinds, packet N at N seconds.
fn corpus(dir: &TempDir) -> String {
    let e = || Frame::ether(B, A);
    let frames = [
        e().ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(40000, 80, 1, 0x02)
            .bytes(),
        e().ipv4([10, 0, 0, 2], [10, 0, 0, 1])
            .tcp(80, 40000, 9, 0x12)
            .bytes(),
        e().ipv4([10, 0, 0, 1], [8, 8, 8, 8])
            .udp(5353, 53)
            .payload(b"q")
            .bytes(),
        e().ipv4([8, 8, 8, 8], [10, 0, 0, 1])
            .udp(53, 5353)
            .payload(b"answer")
            .bytes(),
        e().ipv4([10, 0, 0, 1], [10, 0, 0, 9])
            .icmp_echo(1, 1)
            .bytes(),
        e().ipv6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
            .tcp(1, 443, 1, 0x02)
            .bytes(),
        e().ipv6("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap())
            .udp(53, 2)
            .bytes(),
        Frame::ether_type([0xff; 6], A, Some(0x0806))
            .payload(&[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0,
                2,
            ])
            .bytes(),
        Frame::ether_type(B, A, Some(0x88b5))
            .payload(&[0; 46])
            .bytes(),
    ];
    let timed: Vec<(Duration, &[u8])> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (Duration::from_secs(1_700_000_000 + i as u64), &f[..]))
        .collect();
    dir.write("corpus.pcap", pcap_timed(1, false, false, &timed))
}

/// The seconds of the packets tcpdump selects from `file` with `expr`.
fn tcpdump_selects(file: &str, expr: &str) -> BTreeSet<u64> {
    let out = run_ok("tcpdump", &["-tt", "-n", "-r", file, expr]);
    // Packet lines start with the time; unknown EtherTypes add hex lines.
    out.lines()
        .filter(|l| l.starts_with("17"))
        .map(|l| l.split('.').next().unwrap().parse().unwrap())
        .collect()
}

/// The seconds of the packets of a JSONL file.
fn jsonl_seconds(file: &str) -> BTreeSet<u64> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["timestamp_us"].as_u64().unwrap() / 1_000_000
        })
        .collect()
}

const EXPRESSIONS: &[&str] = &[
    "tcp",
    "udp port 53",
    "host 10.0.0.1",
    "ip6",
    "arp",
    "not ip and not ip6",
    "tcp[tcpflags] & tcp-syn != 0",
    "port 53 or icmp",
    "ether proto 0x88b5",
    "src net 10.0.0.0/24 and not icmp",
];

#[test]
fn pcap2json_and_json2pcap_select_what_tcpdump_selects() {
    let dir = TempDir::new("flt");
    let pcap = corpus(&dir);
    let all = dir.file("all.jsonl");
    myinit(&format!("pcap2json {pcap} {all}")).assert_ok();
    for (i, expr) in EXPRESSIONS.iter().enumerate() {
        let want = tcpdump_selects(&pcap, expr);
        assert!(!want.is_empty() && want.len() < 9, "{expr}: {want:?}");
        let out = dir.file(&format!("f{i}.jsonl"));
        let r = myinit(&format!("pcap2json {pcap} {out} --filter '{expr}'"));
        r.assert_ok();
        assert_eq!(jsonl_seconds(&out), want, "pcap2json --filter '{expr}'");
        assert!(
            r.stdout
                .starts_with(&format!("Converted {} packets", want.len())),
            "{r:?}"
        );
        // And back: json2pcap keeps the same packets.
        let back = dir.file(&format!("f{i}.pcap"));
        myinit(&format!("json2pcap {all} {back} --filter '{expr}'")).assert_ok();
        assert_eq!(
            tcpdump_selects(&back, ""),
            want,
            "json2pcap --filter '{expr}'"
        );
    }
}

#[test]
fn a_bad_expression_is_one_line_and_writes_nothing() {
    let dir = TempDir::new("fltbad");
    let pcap = corpus(&dir);
    let out = dir.file("out.jsonl");
    let r = myinit(&format!(
        "pcap2json {pcap} {out} --filter 'tcp and (port 80'"
    ));
    assert_eq!(r.status, 2, "{r:?}");
    assert_eq!(
        r.stderr.lines().next().unwrap(),
        "-c:1: pcap2json: --filter: column 9: `(` without its `)`"
    );
    assert!(!std::path::Path::new(&out).exists());
    let r = myinit("filter check 'host www.example.com'");
    assert_eq!(r.status, 1, "{r:?}");
    assert_eq!(
        r.stderr.trim_end(),
        "-c:1: filter: column 6: `www.example.com`: not an IP address (host names are not supported)"
    );
    let r = myinit("filter check udp port 53");
    r.assert_ok();
    assert!(r.stdout.starts_with("filter: ok ("), "{r:?}");
    // The listing has tcpdump -d's shape, ending in the two returns.
    let r = myinit("filter -d -y RAW udp");
    r.assert_ok();
    assert!(r.stdout.starts_with("(000) ldb      [0]\n"), "{}", r.stdout);
    let last: Vec<&str> = r.stdout.lines().rev().take(2).collect();
    assert!(last[0].ends_with(") ret      #0"), "{}", r.stdout);
    assert!(last[1].ends_with(") ret      #262144"), "{}", r.stdout);
}

#[test]
fn inject_sends_only_what_the_filter_selects() {
    let dir = TempDir::new("fltinj");
    let pcap = corpus(&dir);
    let ns = common::Netns::new("fli");
    ns.no_ipv6();
    ns.veth("fia", "fib", None);
    ns.ip(&["link", "set", "fia", "up"]);
    ns.ip(&["link", "set", "fib", "up"]);
    let rx = || -> u64 {
        let v = ns.ip_json(&["-s", "link", "show", "dev", "fib"]);
        v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
    };
    for expr in ["udp port 53", "ip6", "arp or ether proto 0x88b5"] {
        let want = tcpdump_selects(&pcap, expr).len() as u64;
        let before = rx();
        let r = ns.myinit(&format!("inject {pcap} fia --topspeed --filter '{expr}'"));
        r.assert_ok();
        assert!(
            r.stdout
                .ends_with(&format!("Injection complete: {want} packets sent\n")),
            "{expr}: {r:?}"
        );
        assert_eq!(rx() - before, want, "{expr}");
    }
    let r = ns.myinit(&format!("inject {pcap} fia --filter 'port http'"));
    assert_eq!(r.status, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("inject: --filter: column 6: `http`: not a port number"),
        "{r:?}"
    );
}

#[test]
fn a_capture_keeps_only_what_its_filter_selects_in_the_kernel() {
    let dir = TempDir::new("fltcap");
    let pcap = corpus(&dir);
    let ns = common::Netns::new("flc");
    ns.no_ipv6();
    ns.veth("fca", "fcb", None);
    ns.ip(&["link", "set", "fca", "up"]);
    ns.ip(&["link", "set", "fcb", "up"]);
    // Received on fcb, sent on fca; both backends (auto takes eBPF).
    let runs = [
        ("packet", "fcb", "rx", "udp port 53"),
        ("packet", "fca", "tx", "tcp or arp"),
        ("ebpf", "fcb", "rx", "tcp or arp"),
        ("ebpf", "fca", "tx", "udp port 53"),
        ("auto", "fcb", "rx", "ip6 and (icmp6 or udp)"),
    ];
    for (backend, side, dir_word, expr) in runs {
        let out = dir.file(&format!("{backend}-{side}.pcap"));
        let r = ns.myinit(&format!(
            "capture start {side} {out} --backend {backend} --dir {dir_word} {expr}; \
             inject {pcap} fca --topspeed; sleep 0.3; capture show; capture stop {side}"
        ));
        r.assert_ok();
        assert!(
            r.stdout.contains(&format!(
                "Started capture on {side} -> {out} (format: pcap) (unlimited) (ignoring: nd)\n"
            )),
            "{r:?}"
        );
        assert!(
            r.stdout.contains(expr),
            "capture show names the filter: {r:?}"
        );
        let backend_shown = if backend == "packet" {
            "packet"
        } else {
            "ebpf"
        };
        assert!(
            r.stdout.contains(&format!("{backend_shown} (")),
            "{backend}: {r:?}"
        );
        let want = tcpdump_selects(&pcap, expr).len();
        assert!(want > 0, "{expr}");
        // Captured now, so not one second apart: count the packet lines.
        let text = run_ok("tcpdump", &["-tt", "-n", "-r", &out]);
        let got = text.lines().filter(|l| l.starts_with("17")).count();
        assert_eq!(got, want, "{backend} {side} `{expr}`: {r:?}\n{text}");
        assert!(
            r.stdout.contains(&format!("({want} packets captured)")),
            "{r:?}"
        );
    }
    // Refused in one line, nothing started, no file.
    let out = dir.file("bad.pcap");
    for (args, message) in [
        ("tcp and (port 80", "filter: column 9: `(` without its `)`"),
        (
            "udp and vlan",
            "in a live capture's filter, `vlan` is only taken first",
        ),
    ] {
        let r = ns.myinit(&format!("capture start fcb {out} {args}; capture show"));
        assert_eq!(r.status, 0, "{r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
        assert!(r.stderr.contains(message), "{args}: {r:?}");
        assert!(r.stdout.contains("no capture running"), "{r:?}");
        assert!(!std::path::Path::new(&out).exists(), "{args}");
    }
}

#[test]
fn a_live_vlan_filter_finds_the_tag_in_the_metadata_and_in_the_bytes() {
    let dir = TempDir::new("fltvl");
    let tagged = |vlan: u16| {
        Frame::ether(B, A).layer(serde_json::json!(
            {"layertype": "dot1Q", "prio": 0, "id": 0, "vlan": vlan, "etype": "<auto>"}
        ))
    };
    let frames = [
        tagged(100)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(5353, 53)
            .payload(b"a")
            .bytes(),
        tagged(200)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(5353, 53)
            .payload(b"b")
            .bytes(),
        Frame::ether(B, A)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .udp(5353, 53)
            .payload(b"c")
            .bytes(),
        tagged(100)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
            .tcp(1, 80, 1, 2)
            .bytes(),
    ];
    let timed: Vec<(Duration, &[u8])> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (Duration::from_secs(1_700_000_000 + i as u64), &f[..]))
        .collect();
    let pcap = dir.write("tagged.pcap", pcap_timed(1, false, false, &timed));
    let ns = common::Netns::new("flv");
    ns.no_ipv6();
    ns.veth("fva", "fvb", None);
    ns.ip(&["link", "set", "fva", "up"]);
    ns.ip(&["link", "set", "fvb", "up"]);
    // Received on fvb, the kernel takes the tag out into the skb; sent on
    // fva, the frames carry it in their bytes.
    for backend in ["packet", "ebpf"] {
        for (side, dir_word) in [("fvb", "rx"), ("fva", "tx")] {
            for (expr, want) in [
                ("vlan 100 and udp port 53", 1),
                ("vlan and udp", 2),
                ("vlan 100", 2),
                ("vlan 300", 0),
            ] {
                let out = dir.file(&format!("{side}-{}.pcap", expr.replace(' ', "_")));
                let r = ns.myinit(&format!(
                    "capture start {side} {out} --backend {backend} --dir {dir_word} {expr}; \
                     inject {pcap} fva --topspeed; sleep 0.3; capture stop {side}"
                ));
                r.assert_ok();
                assert!(
                    r.stdout.contains(&format!("({want} packets captured)")),
                    "{backend} {side} {dir_word} `{expr}`: {r:?}"
                );
            }
        }
    }
}
