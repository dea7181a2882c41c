//! droptrace on Debian's 6.1 kernel in the VM (one boot): the same drops,
//! made on purpose, traced by the eBPF backend on `tp_btf` and on the
//! classic tracepoint (6.1 layout: protocol at 24, reason at 28) and by the
//! ftrace backend (6.1 prints `location` as `%p`: read through an event
//! probe). Reason names and numbers must be the running kernel's, locations
//! symbolized from its kallsyms, and `droptrace save` JSONL must parse here.
//! Frames this test writes into a pcap are injected into a TAP in the guest
//! (`inject`), so the kernel receives them and drops them in ip_rcv_core.

mod common;

use std::collections::BTreeMap;

use common::{vm, TempDir};
use myinit_testkit::{pcap, Frame};

/// The drops every backend sees: UDP to closed ports on loopback (v4 and
/// v6), TCP to a closed port, a ping queued on an ARP lookup nobody
/// answers behind tap0 (NEIGH_FAILED after the third probe, ~3 s), and the
/// two frames of frames.pcap received on tap1 (OTHERHOST, IP_CSUM).
const WORKLOAD: &str = "set +e\n\
ip neigh flush dev tap0\n\
netcat -u -w 1 127.0.0.1 9 < /tmp/payload\n\
netcat -u -w 1 ::1 9 < /tmp/payload\n\
netcat -w 1 127.0.0.1 9 < /tmp/payload\n\
ping -c 1 -W 1 192.168.77.2\n\
inject /mnt/host/frames.pcap tap1\n\
sleep 3.5\n";

/// tap1's MAC and addresses, and a MAC that is not tap1's.
const TAP1_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
const FOREIGN_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x99];
const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x02];
const TAP1_IP: [u8; 4] = [192, 168, 78, 1];
const PEER_IP: [u8; 4] = [192, 168, 78, 2];

/// An Ethernet frame holding IPv4/UDP (no UDP checksum) from
/// PEER_IP:sport to TAP1_IP:dport; `bad_checksum` spoils the IPv4 header
/// checksum.
fn udp_frame(dst_mac: [u8; 6], sport: u16, dport: u16, bad_checksum: bool) -> Vec<u8> {
    let f = Frame::ether(dst_mac, PEER_MAC)
        .ipv4(PEER_IP, TAP1_IP)
        .udp_no_checksum(sport, dport)
        .payload(b"inject");
    if bad_checksum { f.bad_ip_checksum() } else { f }.bytes()
}

/// Both eBPF hooks also take kernel stacks and packet bytes.
const BACKENDS: [(&str, &str); 3] = [
    ("btf", "--backend ebpf --hook tp-btf --stack --snaplen 256"),
    (
        "tp",
        "--backend ebpf --hook tracepoint --stack --snaplen 256",
    ),
    ("ftrace", "--backend ftrace"),
];

/// One saved drop, as Python's json module (an independent parser) read it.
#[derive(Debug, Clone)]
struct Drop {
    reason: String,
    reason_code: String,
    location: String,
    dev: String,
    ifindex: String,
    src: String,
    dst: String,
    l4: String,
    sport: String,
    dport: String,
    icmp_type: String,
}

impl Drop {
    fn function(&self) -> &str {
        self.location.split('+').next().unwrap()
    }
}

/// Parses a JSONL file: every line must be one JSON object.
fn parse_jsonl(path: &std::path::Path) -> Vec<Drop> {
    let text = std::fs::read_to_string(path).expect("read the saved JSONL");
    let field = |v: &serde_json::Value, key: &str| match v.get(key) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let e: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}:{}: not JSON: {err}", path.display(), n + 1));
            assert!(e.is_object(), "{}:{}: not an object", path.display(), n + 1);
            let p = e.get("packet").cloned().unwrap_or(serde_json::Value::Null);
            Drop {
                reason: field(&e, "reason"),
                reason_code: field(&e, "reason_code"),
                location: field(&e, "location"),
                dev: field(&e, "dev"),
                ifindex: field(&e, "ifindex"),
                src: field(&p, "src"),
                dst: field(&p, "dst"),
                l4: field(&p, "l4"),
                sport: field(&p, "sport"),
                dport: field(&p, "dport"),
                icmp_type: field(&p, "icmp_type"),
            }
        })
        .collect()
}

/// The reason table of the kernel's own format file: name -> number.
fn format_reasons(format: &str) -> BTreeMap<String, String> {
    let table = &format[format
        .find("__print_symbolic(REC->reason")
        .expect("no reason table in the format file")..];
    table
        .split('{')
        .skip(1)
        .filter_map(|entry| {
            let (num, rest) = entry.split_once(',')?;
            let name = rest.split('"').nth(1)?;
            Some((name.to_string(), num.trim().to_string()))
        })
        .collect()
}

/// The drops this workload makes, as (reason, location) counts.
fn ours(drops: &[Drop]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for d in drops.iter().filter(|d| {
        matches!(
            d.function(),
            "__udp4_lib_rcv" | "__udp6_lib_rcv" | "tcp_v4_rcv" | "neigh_invalidate" | "ip_rcv_core"
        )
    }) {
        *counts
            .entry((d.reason.clone(), d.location.clone()))
            .or_default() += 1;
    }
    counts
}

#[test]
fn droptrace_on_debian_6_1_names_reasons_locations_and_packets_with_every_backend() {
    let share = TempDir::new("droptrace");
    share.write("workload.run", WORKLOAD);
    // OTHERHOST: not tap1's MAC. IP_CSUM: tap1's MAC, a bad header checksum.
    let frames = [
        udp_frame(FOREIGN_MAC, 4000, 5000, false),
        udp_frame(TAP1_MAC, 4001, 5001, true),
    ];
    std::fs::write(
        share.dir().join("frames.pcap"),
        pcap(1, false, false, &frames),
    )
    .unwrap();
    let mut script = String::from(
        "set -e\n\
         ifconfig eth0 down\n\
         tap add tap0\n\
         ifconfig tap0 192.168.77.1/24 up\n\
         tap add tap1\n\
         ifconfig tap1 192.168.78.1/24 hw ether 02:00:00:00:01:01 up\n\
         echo droptrace-vm-test > /tmp/payload\n\
         kconfig tracing /boot/config > /mnt/host/kconfig.txt\n\
         # What a tracer killed mid-run leaves (pid 999999 does not exist):\n\
         # the next start removes both.\n\
         echo 'e:myinit/kfree_skb_999999_0 skb.kfree_skb skbaddr=$skbaddr:x64' >> /sys/kernel/tracing/dynamic_events\n\
         mkdir /sys/kernel/tracing/instances/myinit-droptrace-999999_0\n",
    );
    for (name, args) in BACKENDS {
        script.push_str(&format!(
            "droptrace start {args} > /mnt/host/start-{name}.txt\n\
             run /mnt/host/workload.run > /mnt/host/workload-{name}.txt\n\
             set -e\n\
             droptrace stop > /mnt/host/stop-{name}.txt\n\
             droptrace show > /mnt/host/show-{name}.txt\n\
             droptrace save /mnt/host/{name}.jsonl\n"
        ));
        if name != "ftrace" {
            script.push_str(&format!(
                "droptrace show --stack > /mnt/host/show-stack-{name}.txt\n\
                 droptrace summary --stack > /mnt/host/summary-stack-{name}.txt\n\
                 droptrace save /mnt/host/{name}.pcapng > /mnt/host/save-{name}.txt\n"
            ));
        }
    }
    script.push_str(
        "cat /sys/kernel/tracing/events/skb/kfree_skb/format > /mnt/host/format.txt\n\
         cat /sys/kernel/tracing/dynamic_events > /mnt/host/dynamic_events.txt\n\
         ls /sys/kernel/tracing/instances > /mnt/host/instances.txt\n\
         poweroff 0\n",
    );
    share.write("autoexec.run", &script);
    let run = vm(&[
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        "myinit.countdown=0 myinit.poweroff_countdown=0",
        "--timeout",
        "200",
    ]);
    assert_eq!(run.status, 0, "the script failed");

    // `kconfig tracing` names both backends as working here, and how.
    let kconfig = share.read("kconfig.txt");
    assert!(
        kconfig.contains("droptrace: eBPF backend: yes: tp_btf/kfree_skb (3 arguments)"),
        "{kconfig}"
    );
    assert!(
        kconfig.contains("packet summary from BTF offsets"),
        "{kconfig}"
    );
    assert!(
        kconfig.contains("droptrace: ftrace backend: yes") && kconfig.contains("event probe"),
        "{kconfig}"
    );
    assert!(share
        .read("start-btf.txt")
        .contains("backend ebpf (tp_btf/kfree_skb)"));
    assert!(share
        .read("start-tp.txt")
        .contains("backend ebpf (tracepoint skb:kfree_skb)"));
    assert!(share.read("start-ftrace.txt").contains("event probe"));
    // The probe and the instances are gone after stop.
    assert_eq!(share.read("dynamic_events.txt").trim(), "");
    assert_eq!(share.read("instances.txt").trim(), "");

    // 6.1's own numbering (the format file's table), not a built-in one.
    let format = share.read("format.txt");
    assert!(format.contains("field:enum skb_drop_reason reason;\toffset:28;"));
    let numbers = format_reasons(&format);
    assert!(numbers.len() > 50, "{numbers:?}");

    let mut per_backend = Vec::new();
    for (name, _) in BACKENDS {
        let drops = parse_jsonl(&share.dir().join(format!("{name}.jsonl")));
        // `save` wrote what `show` shows.
        let show = share.read(&format!("show-{name}.txt"));
        assert!(
            show.contains(&format!("\n{} shown; ", drops.len())),
            "{name}: {} saved, but: {show}",
            drops.len()
        );
        for d in &drops {
            assert_eq!(
                numbers.get(&d.reason),
                Some(&d.reason_code),
                "{name}: reason number not this kernel's: {d:?}"
            );
            // Symbolized from kallsyms: func+0xoff/0xsize.
            assert!(
                d.location.contains("+0x") && d.location.contains("/0x"),
                "{name}: {d:?}"
            );
        }
        let find = |function: &str, dst: &str| {
            drops
                .iter()
                .find(|d| d.function() == function && (d.dst == dst || d.dst.is_empty()))
                .unwrap_or_else(|| panic!("{name}: no drop in {function}: {drops:?}"))
                .clone()
        };
        let udp4 = find("__udp4_lib_rcv", "127.0.0.1");
        let udp6 = find("__udp6_lib_rcv", "::1");
        let tcp = find("tcp_v4_rcv", "127.0.0.1");
        let neigh = find("neigh_invalidate", "192.168.77.2");
        for d in [&udp4, &udp6, &tcp] {
            assert_eq!(d.reason, "NO_SOCKET", "{name}: {d:?}");
        }
        assert_eq!(neigh.reason, "NEIGH_FAILED", "{name}: {neigh:?}");
        // The injected frames, received on tap1 and dropped in ip_rcv_core.
        assert!(
            share
                .read(&format!("workload-{name}.txt"))
                .contains("inject: 2 packets from /mnt/host/frames.pcap to tap1"),
            "{name}"
        );
        let received = |reason: &str| {
            let found: Vec<&Drop> = drops
                .iter()
                .filter(|d| d.function() == "ip_rcv_core" && d.reason == reason)
                .collect();
            assert_eq!(found.len(), 1, "{name}: {reason}: {drops:?}");
            found[0].clone()
        };
        let otherhost = received("OTHERHOST");
        let csum = received("IP_CSUM");
        if name == "ftrace" {
            // Text events carry no device or packet: absent, not guessed.
            assert!(drops.iter().all(|d| d.dev.is_empty() && d.src.is_empty()));
        } else {
            for (d, l4) in [(&udp4, "udp"), (&udp6, "udp"), (&tcp, "tcp")] {
                assert_eq!(
                    (
                        d.dev.as_str(),
                        d.ifindex.as_str(),
                        d.l4.as_str(),
                        d.dport.as_str()
                    ),
                    ("lo", "1", l4, "9"),
                    "{name}: {d:?}"
                );
                assert_eq!(d.src, d.dst, "{name}: {d:?}");
            }
            assert_eq!(
                (
                    neigh.dev.as_str(),
                    neigh.src.as_str(),
                    neigh.l4.as_str(),
                    neigh.icmp_type.as_str()
                ),
                ("tap0", "192.168.77.1", "icmp", "8"),
                "{name}: {neigh:?}"
            );
            for (d, sport, dport) in [(&otherhost, "4000", "5000"), (&csum, "4001", "5001")] {
                assert_eq!(
                    (
                        d.dev.as_str(),
                        d.src.as_str(),
                        d.dst.as_str(),
                        d.l4.as_str(),
                        d.sport.as_str(),
                        d.dport.as_str()
                    ),
                    ("tap1", "192.168.78.2", "192.168.78.1", "udp", sport, dport),
                    "{name}: {d:?}"
                );
            }
        }
        per_backend.push((name, ours(&drops)));
    }
    // --stack and --snaplen on 6.1, with both hooks.
    for name in ["btf", "tp"] {
        check_stacks_and_packets(&share, name, &frames);
    }
    // All three saw the same drops at the same locations.
    let (first, expected) = &per_backend[0];
    assert_eq!(expected.values().sum::<usize>(), 6, "{expected:?}");
    for (name, counts) in &per_backend[1..] {
        assert_eq!(counts, expected, "{name} differs from {first}");
    }
}

/// The frame lines under the first `show --stack` row whose LOCATION is in
/// `function` and whose DEV is `dev`.
fn frames_under<'a>(show: &'a str, function: &str, dev: &str) -> Vec<&'a str> {
    show.lines()
        .skip_while(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            !(words.len() > 6 && words[4].starts_with(function) && words[6] == dev)
        })
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect()
}

/// Kernel stacks and packet bytes on 6.1: the OTHERHOST drop's stack runs
/// from the receive path to ip_rcv_core; the pcapng, read by the host's
/// tshark, holds the two injected frames byte for byte, each with its
/// reason in its comment; the JSONL has them decoded.
fn check_stacks_and_packets(share: &TempDir, name: &str, frames: &[Vec<u8>]) {
    let stop = share.read(&format!("stop-{name}.txt"));
    assert!(stop.contains(" 0 stacks lost"), "{name}: {stop}");
    let start = share.read(&format!("start-{name}.txt"));
    assert!(
        start.contains("kernel stacks into a map of") && start.contains("first 256 bytes"),
        "{name}: {start}"
    );
    let show = share.read(&format!("show-stack-{name}.txt"));
    let stack = frames_under(&show, "ip_rcv_core", "tap1");
    assert!(
        stack.iter().any(|f| f.starts_with("ip_rcv_core+0x"))
            && stack.iter().any(|f| f.starts_with("__netif_receive_skb")
                || f.starts_with("netif_receive_skb")),
        "{name}: {stack:#?}\n{show}"
    );
    let summary = share.read(&format!("summary-stack-{name}.txt"));
    assert!(summary.contains("  STACK\n"), "{name}: {summary}");
    assert!(
        share
            .read(&format!("save-{name}.txt"))
            .starts_with("droptrace: saved "),
        "{name}"
    );
    let pcapng = share.dir().join(format!("{name}.pcapng"));
    let tshark = |args: &[&str]| -> String {
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&pcapng)
            .args(args)
            .output()
            .expect("tshark on the host (apt-get install tshark)");
        assert!(
            out.status.success(),
            "{name}: tshark: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let comments = tshark(&["-T", "fields", "-e", "frame.comment"]);
    let json: serde_json::Value = serde_json::from_str(&tshark(&["-T", "json", "-x"])).unwrap();
    let packets = json.as_array().unwrap();
    let comments: Vec<&str> = comments.lines().collect();
    assert_eq!(comments.len(), packets.len(), "{name}");
    for (reason, frame) in [("OTHERHOST", &frames[0]), ("IP_CSUM", &frames[1])] {
        let found: Vec<usize> = comments
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.starts_with(&format!("reason={reason} location=ip_rcv_core+0x"))
                    && c.contains(" dev=tap1 ")
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "{name}: {reason}: {comments:#?}");
        let raw = packets[found[0]]["_source"]["layers"]["frame_raw"][0]
            .as_str()
            .unwrap();
        let want: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(raw, want, "{name}: {reason}: the bytes injected");
    }
    let jsonl = std::fs::read_to_string(share.dir().join(format!("{name}.jsonl"))).unwrap();
    let decoded = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["dev"] == "tap1" && e["reason"] == "OTHERHOST")
        .unwrap_or_else(|| panic!("{name}: no OTHERHOST drop in {jsonl}"));
    let layers = decoded["packet"]["layers"].as_array().expect("layers");
    assert_eq!(layers[0]["layertype"], "ether", "{name}: {decoded}");
    assert_eq!(layers[2]["dport"], 5000, "{name}: {decoded}");
}
