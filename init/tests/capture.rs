//! `capture` for real, with both backends (eBPF TC programs and the
//! TPACKET_V3 ring): known traffic over a veth pair between two namespaces
//! this test creates, read back with tcpdump and tshark; a TUN gets link
//! type RAW; a flood is all counted (captured + lost = sent); stop during
//! a flood keeps everything it counted; a full disk ends the capture with
//! what was written kept; bad input is one line.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{run, unique, Background, MyinitIn, MyinitRun, Netns, TempDir};

const HERE_ADDR: &str = "10.78.0.1";
const PEER_ADDR: &str = "10.78.0.2";
const BACKENDS: [&str; 2] = ["ebpf", "packet"];

/// Two namespaces joined by a veth pair: `here` (`dev`, 10.78.0.1,
/// fd78::1) and `peer` (10.78.0.2, fd78::2).
struct Link {
    here: Netns,
    peer: Netns,
    dev: String,
}

fn link(ipv6: bool) -> Link {
    let here = Netns::new("cph");
    let peer = Netns::new("cpp");
    let dev = unique("cpa");
    let other = unique("cpb");
    here.veth(&dev, &other, Some(&peer));
    for (ns, name, v4, v6) in [
        (&here, &dev, HERE_ADDR, "fd78::1/64"),
        (&peer, &other, PEER_ADDR, "fd78::2/64"),
    ] {
        let sysctl = format!("net.ipv6.conf.{name}.disable_ipv6={}", u8::from(!ipv6));
        assert!(ns.exec("sysctl", &["-qw", &sysctl]).status.success());
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", name]);
        if ipv6 {
            ns.ip(&["addr", "add", v6, "dev", name, "nodad"]);
        }
        ns.ip(&["link", "set", name, "up"]);
    }
    Link { here, peer, dev }
}

/// Runs a reference tool; its stdout (stderr is checked by the caller).
fn tool(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tcpdump(file: &str) -> String {
    tool("tcpdump", &["-r", file, "-nn", "-t"])
}

/// tshark's fields of each packet, `|`-separated.
fn tshark(file: &str, fields: &[&str]) -> Vec<String> {
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|"];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    tool("tshark", &args).lines().map(str::to_string).collect()
}

/// The number before `label` in `text` ("… 12 packets …").
fn number_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    let digits: String = text[..at]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number before {label:?} in {text}"))
}

/// The stop report line of the capture on `target`.
fn report<'a>(r: &'a MyinitRun, target: &str) -> &'a str {
    let head = format!("capture {target}: ");
    r.stdout
        .lines()
        .find(|l| l.starts_with(&head) && l.contains("written to"))
        .unwrap_or_else(|| panic!("no report of {target}: {r:#?}"))
}

/// A trafgen configuration: 60-byte frames of an experimental EtherType,
/// broadcast, so nothing in the kernel answers them.
fn flood_config(dir: &TempDir) -> String {
    let path = dir.file("flood.cfg");
    std::fs::write(
        &path,
        "{ 0xff,0xff,0xff,0xff,0xff,0xff, 0x02,0x00,0x00,0x00,0x00,0x01, 0x88,0xb5, fill(0x00, 46) }\n",
    )
    .unwrap();
    path
}

/// trafgen's "N packets outgoing".
fn trafgen_sent(output: &str) -> u64 {
    number_before(output, "packets outgoing")
}

#[test]
fn known_traffic_is_captured_with_directions_to_pcap_pcapng_and_jsonl() {
    for backend in BACKENDS {
        let l = link(true);
        let dir = TempDir::new("cap");
        let (pcap, ng, jsonl) = (
            dir.file("c.pcap"),
            dir.file("c.pcapng"),
            dir.file("c.jsonl"),
        );
        // A TCP listener on the peer, for a handshake with options.
        let listener = l.peer.python_ready(
            "import socket\n\
             s = socket.socket(); s.bind(('10.78.0.2', 5000)); s.listen()\n\
             print('ready', flush=True)\n\
             c, _ = s.accept(); c.close()",
        );
        let d = &l.dev;
        // Three captures on one interface at once: IF, IF#2, IF#3; with
        // Neighbor Discovery, which the original's default leaves out.
        let r = l.here.myinit(&format!(
            "capture start {d} {pcap} --backend {backend} include=nd; \
             capture start {d} {ng} --backend {backend} --include nd; \
             capture start {d} {jsonl} include=nd --backend {backend}; \
             /usr/bin/ping -c 2 -i 0.2 {PEER_ADDR}; \
             /usr/bin/ping -6 -c 1 fd78::2; \
             /usr/bin/python3 -c \"import socket; socket.create_connection(('{PEER_ADDR}', 5000)).close()\"; \
             capture show; capture stop {d}"
        ));
        r.assert_ok();
        drop(listener);
        assert!(
            r.stdout.contains(&format!(
                "Started capture on {d} -> {pcap} (format: pcap) (unlimited)\n"
            )) && r.stdout.contains(&format!(
                "Started capture on {d}#3 -> {jsonl} (format: jsonl) (unlimited)\n"
            )),
            "{backend}: {r:#?}"
        );
        for target in [d.clone(), format!("{d}#2"), format!("{d}#3")] {
            let line = report(&r, &target);
            assert!(line.contains(": stopped: "), "{backend}: {line}");
        }
        assert!(
            r.stdout.contains(&format!("{d}#2 ")) && r.stdout.contains("EN10MB"),
            "{backend}: show lists every capture: {}",
            r.stdout
        );

        // pcap: tcpdump reads ARP, both ICMP echoes, ND and the handshake.
        let text = tcpdump(&pcap);
        for want in [
            format!("ARP, Request who-has {PEER_ADDR} tell {HERE_ADDR}"),
            format!("ARP, Reply {PEER_ADDR} is-at"),
            format!("IP {HERE_ADDR} > {PEER_ADDR}: ICMP echo request"),
            format!("IP {PEER_ADDR} > {HERE_ADDR}: ICMP echo reply"),
            "ICMP6, neighbor solicitation, who has fd78::2".to_string(),
            "ICMP6, neighbor advertisement, tgt is fd78::2".to_string(),
            "ICMP6, echo request".to_string(),
            format!("> {PEER_ADDR}.5000: Flags [S], seq"),
            format!("IP {PEER_ADDR}.5000 > {HERE_ADDR}."),
        ] {
            assert!(text.contains(&want), "{backend}: no {want:?} in\n{text}");
        }
        assert!(
            text.contains("options [mss 1460,sackOK,TS"),
            "{backend}: SYN options kept\n{text}"
        );
        assert_eq!(
            text.matches("ICMP echo request").count(),
            2,
            "{backend}: {text}"
        );

        // pcapng: tshark shows the interface, directions and the sender.
        let rows = tshark(
            &ng,
            &[
                "frame.interface_name",
                "frame.packet_flags_direction",
                "frame.comment",
                "icmp.type",
                "tcp.flags.syn",
                "tcp.flags.ack",
            ],
        );
        let icmp = |kind: &str| -> Vec<&String> {
            rows.iter()
                .filter(|r| r.split('|').nth(3) == Some(kind))
                .collect()
        };
        assert_eq!(icmp("8").len(), 2, "{backend}: {rows:?}");
        for row in icmp("8") {
            let f: Vec<&str> = row.split('|').collect();
            assert_eq!((f[0], f[1]), (d.as_str(), "0x00000002"), "{backend}: {row}");
            if backend == "ebpf" {
                assert!(f[2].starts_with("ping (pid "), "{backend}: {row}");
            }
        }
        for row in icmp("0") {
            let f: Vec<&str> = row.split('|').collect();
            assert_eq!((f[0], f[1], f[2]), (d.as_str(), "0x00000001", ""), "{row}");
        }
        let syn_ack = rows
            .iter()
            .find(|r| r.ends_with("|1|1"))
            .unwrap_or_else(|| panic!("{backend}: no SYN-ACK in {rows:?}"));
        assert!(syn_ack.contains("|0x00000001|"), "{backend}: {syn_ack}");

        // JSONL: one JSON object a line, with direction and interface name.
        let text = std::fs::read_to_string(&jsonl).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(
            lines.len() as u64,
            number_before(report(&r, &format!("{d}#3")), "packets"),
            "{backend}"
        );
        let requests: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|v| {
                v["layers"]
                    .as_array()
                    .is_some_and(|ls| ls.iter().any(|l| l["layertype"] == "Icmp" && l["typ"] == 8))
            })
            .collect();
        assert_eq!(requests.len(), 2, "{backend}: {text}");
        for v in requests {
            assert_eq!(v["direction"], "tx", "{backend}: {v}");
        }
        // The original's dialect: these keys in this order, nothing else.
        for line in text.lines() {
            assert_original_keys(line);
        }
    }
}

/// A JSONL line of the original's capture dialect: `timestamp_us`,
/// `direction`, `layers`, in that order, and no other key.
fn assert_original_keys(line: &str) {
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["direction", "layers", "timestamp_us"], "{line}");
    let start = format!(
        "{{\"timestamp_us\":{},\"direction\":{},\"layers\":[",
        v["timestamp_us"], v["direction"]
    );
    assert!(line.starts_with(&start), "{line}");
}

/// Runs a python3 script in `ns` until it prints "ready"; killed when dropped.
/// Opens a TUN named `name` in `ns` and keeps it open (so it has carrier)
/// until dropped.
fn tun(ns: &Netns, name: &str) -> Background {
    ns.python_ready(&format!(
        "import fcntl, os, struct, time\n\
             fd = os.open('/dev/net/tun', os.O_RDWR)\n\
             fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'{name}', 0x0001 | 0x1000))\n\
             print('ready', flush=True)\n\
             time.sleep(60)"
    ))
}

#[test]
fn an_l3_tun_capture_gets_link_type_raw() {
    for backend in BACKENDS {
        let ns = Netns::new("cpt");
        let name = unique("cpt");
        let _tun = tun(&ns, &name);
        ns.ip(&["addr", "add", "10.79.0.1/24", "dev", &name]);
        ns.ip(&["link", "set", &name, "up"]);
        let dir = TempDir::new("cap");
        let file = dir.file("tun.pcap");
        let r = ns.myinit(&format!(
            "capture start {name} {file} --backend {backend} --ns; capture show; \
             ping -c 2 -i 0.2 -W 0.2 10.79.0.2; capture stop {name}"
        ));
        assert!(r.stdout.contains("RAW"), "{backend}: {r:#?}");
        assert!(report(&r, &name).contains("stopped: 2 packets"), "{r:#?}");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(
            u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
            101,
            "{backend}: link type RAW in the file header"
        );
        // --ns: the nanosecond magic.
        assert_eq!(&bytes[..4], &[0x4d, 0x3c, 0xb2, 0xa1], "{backend}");
        let text = tcpdump(&file);
        assert_eq!(
            text.matches("IP 10.79.0.1 > 10.79.0.2: ICMP echo request")
                .count(),
            2,
            "{backend}: {text}"
        );
    }
}

/// Opens a TUN named `name` in `ns` and, once `go` exists, writes IPv4/UDP
/// packets of the given total lengths into it: the kernel receives them
/// (TC ingress), those above a page in a non-linear skb.
fn tun_sending(ns: &Netns, name: &str, go: &str, lengths: &[usize]) -> Background {
    let lengths: Vec<String> = lengths.iter().map(usize::to_string).collect();
    ns.python_ready(
        &format!(
            "import fcntl, os, struct, time\n\
             fd = os.open('/dev/net/tun', os.O_RDWR)\n\
             fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'{name}', 0x0001 | 0x1000))\n\
             print('ready', flush=True)\n\
             def checksum(b):\n\
             \x20   s = sum(struct.unpack('!10H', b))\n\
             \x20   s = (s >> 16) + (s & 0xffff)\n\
             \x20   return ~(s + (s >> 16)) & 0xffff\n\
             while not os.path.exists('{go}'): time.sleep(0.01)\n\
             for n in [{}]:\n\
             \x20   h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, n, 1, 0, 64, 17, 0, bytes([10, 79, 0, 2]), bytes([10, 79, 0, 1]))\n\
             \x20   h = h[:10] + struct.pack('!H', checksum(h)) + h[12:]\n\
             \x20   u = struct.pack('!HHHH', 4000, 4001, n - 20, 0)\n\
             \x20   os.write(fd, h + u + bytes(i % 251 for i in range(n - 28)))\n\
             time.sleep(60)",
            lengths.join(", ")
        ),
    )
}

/// Captures what a new TUN receives (`--dir rx`, then `args`): the
/// packets `tun_sending` writes into it once the capture runs. The run, the
/// TUN's name, the directory (kept while the file is read) and the file.
fn capture_tun_rx(
    tag: &str,
    backend: &str,
    args: &str,
    lengths: &[usize],
) -> (MyinitRun, String, TempDir, String) {
    let ns = Netns::new(tag);
    let name = unique(tag);
    let dir = TempDir::new("cap");
    let go = dir.file("go");
    let _tun = tun_sending(&ns, &name, &go, lengths);
    ns.ip(&["addr", "add", "10.79.0.1/24", "dev", &name]);
    ns.ip(&["link", "set", &name, "up"]);
    let file = dir.file("rx.pcap");
    let r = ns.myinit(&format!(
        "capture start {name} {file} --backend {backend} --dir rx {args}; echo > {go}; \
         sleep 1; capture stop {name}"
    ));
    (r, name, dir, file)
}

#[test]
fn an_l3_device_s_received_packets_are_captured_whole() {
    // Up to 64 KiB, whatever the backend: the eBPF programs find the
    // network header (see capture.rs) and read past the linear data.
    let lengths = [100, 9000, 60000];
    for backend in BACKENDS {
        let (r, name, _dir, file) = capture_tun_rx("cpr", backend, "", &lengths);
        r.assert_ok();
        assert!(
            report(&r, &name).contains("stopped: 3 packets"),
            "{backend}: {r:#?}"
        );
        let rows = tshark(
            &file,
            &["frame.len", "frame.cap_len", "ip.src", "udp.length"],
        );
        let want: Vec<String> = lengths
            .iter()
            .map(|n| format!("{n}|{n}|10.79.0.2|{}", n - 20))
            .collect();
        assert_eq!(rows, want, "{backend}: {r:#?}");
        // The last byte of each: the payload is whole, not only its length.
        let bytes = std::fs::read(&file).unwrap();
        let mut at = 24;
        for n in lengths {
            let cap = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            assert_eq!(cap, n, "{backend}");
            assert_eq!(bytes[at + 16 + n - 1], ((n - 29) % 251) as u8, "{backend}");
            at += 16 + cap;
        }
    }
}

#[test]
fn a_filter_on_an_l3_device_reads_from_the_network_header() {
    // The packet starts at the network header and `len`/`greater` count
    // from it: on the eBPF backend the entry program hands the filter
    // where that is (see CAPTURE_PACKET).
    let lengths = [100, 9000, 60000];
    for backend in BACKENDS {
        for (expr, want) in [
            ("udp dst port 4001 and greater 5000", "9000|60000"),
            ("ip[9] = 17 and less 200", "100"),
            ("udp port 4002", ""),
        ] {
            let (r, _, _dir, file) = capture_tun_rx("cpf", backend, expr, &lengths);
            r.assert_ok();
            let rows = tshark(&file, &["frame.len"]).join("|");
            assert_eq!(rows, want, "{backend} `{expr}`: {r:#?}");
        }
        // `ether` means nothing without an Ethernet header: one line, no
        // capture, no file.
        let (r, _, _dir, file) = capture_tun_rx("cpf", backend, "ether broadcast", &lengths);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(
                "filter: column 1: `ether` on a link without an Ethernet header (raw IP)"
            ),
            "{backend}: {r:#?}"
        );
        assert!(!Path::new(&file).exists(), "{backend}");
    }
}

#[test]
fn a_flood_is_counted_in_full_captured_plus_lost_equals_sent() {
    for backend in BACKENDS {
        let l = link(false);
        let dir = TempDir::new("cap");
        let cfg = flood_config(&dir);
        let file = dir.file("flood.pcap");
        let d = &l.dev;
        // The sender's own egress: every frame trafgen sends passes it
        // (-q: through the qdisc path, where TC and taps see it).
        let r = l.here.myinit(&format!(
            "capture start {d} {file} --backend {backend} --dir tx; \
             /usr/sbin/trafgen --dev {d} --conf {cfg} -n 200000 -q; capture stop {d}"
        ));
        r.assert_ok();
        let sent = trafgen_sent(&format!("{}{}", r.stdout, r.stderr));
        assert_eq!(sent, 200_000, "{r:#?}");
        let line = report(&r, d);
        let captured = number_before(line, "packets");
        let lost = number_before(line, "lost");
        assert_eq!(captured + lost, sent, "{backend}: {line}");
        // What the report counts is in the file.
        let out = run("tcpdump", &["-r", &file, "-nn", "-q"]);
        let in_file = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
        assert_eq!(in_file, captured, "{backend}: {line}");
    }
}

#[test]
fn stop_during_a_flood_keeps_everything_it_counted() {
    for backend in BACKENDS {
        let l = link(false);
        let dir = TempDir::new("cap");
        let cfg = flood_config(&dir);
        let file = dir.file("mid.pcapng");
        let d = &l.dev;
        let _flood = Background(
            Command::new("ip")
                .args(["netns", "exec", &l.here.name, "trafgen", "--dev", d])
                .args(["--conf", &cfg, "-q", "--cpus", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let r = l.here.myinit(&format!(
            "capture start {d} {file} --backend {backend} --dir tx; sleep 1; capture stop {d}"
        ));
        r.assert_ok();
        let line = report(&r, d);
        let captured = number_before(line, "packets");
        assert!(captured > 1000, "{backend}: the flood ran: {line}");
        let rows = tshark(&file, &["frame.number"]);
        assert_eq!(rows.len() as u64, captured, "{backend}: {line}");
    }
}

#[test]
fn count_stops_a_capture_by_itself_and_says_so() {
    for backend in BACKENDS {
        let l = link(false);
        let dir = TempDir::new("cap");
        let file = dir.file("three.dump");
        let d = &l.dev;
        let r = l.here.myinit(&format!(
            "capture start {d} {file} pcap 3 --backend {backend} --dir tx; \
             ping -c 6 -i 0.1 {PEER_ADDR}; sleep 0.2; capture show; capture stop {d}"
        ));
        r.assert_ok();
        assert!(
            r.stderr.contains(&format!(
                "[capture {d}] finished by itself: capture {d}: COUNT reached: 3 packets"
            )),
            "{backend}: {r:#?}"
        );
        assert!(r.stdout.contains(&format!("{d} (ended)")), "{r:#?}");
        assert_eq!(tcpdump(&file).lines().count(), 3, "{backend}");
    }
}

#[test]
fn a_full_disk_stops_the_capture_and_keeps_what_was_written() {
    for backend in BACKENDS {
        let l = link(false);
        let dir = TempDir::new("cap");
        let cfg = flood_config(&dir);
        let small = TempDir::new("capsm");
        assert!(run(
            "mount",
            &["-t", "tmpfs", "-o", "size=64k", "none", &small.file("")]
        )
        .status
        .success());
        let file = small.file("full.pcap");
        let d = &l.dev;
        let r = l.here.myinit(&format!(
            "capture start {d} {file} --backend {backend} --dir tx; \
             /usr/sbin/trafgen --dev {d} --conf {cfg} -n 5000 -q; sleep 0.2; capture stop {d}; \
             echo shell goes on"
        ));
        let want = format!("capture {d}: stopped: {file}: write error: No space left on device");
        assert!(r.stderr.contains(&want), "{backend}: {r:#?}");
        assert!(r.stdout.contains("shell goes on"), "{r:#?}");
        let written = number_before(report(&r, d), "packets");
        assert!(written > 100 && written < 5000, "{backend}: {written}");
        // What the report says was written is in the file, whole, and the
        // file ends there (no part of a packet after it).
        let out = run("tcpdump", &["-r", &file, "-nn", "-q"]);
        let read = String::from_utf8_lossy(&out.stdout).lines().count() as u64;
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(read, written, "{backend}");
    }
}

#[test]
fn bad_input_is_one_line_and_starts_nothing() {
    let ns = Netns::new("cpb");
    let dir = TempDir::new("cap");
    let ok = dir.file("x.pcap");
    for (command, want) in [
        (
            format!("capture start nosuch0 {ok}"),
            "capture: nosuch0: no such interface".to_string(),
        ),
        (
            format!("capture start lo {ok} tiff"),
            "capture: expected jsonl, jsonl+, pcap, pcapng, a COUNT, include=… or ignore=…, not tiff".to_string(),
        ),
        (
            "capture start lo /nonexistent/dir/x.pcap".to_string(),
            "capture: /nonexistent/dir/x.pcap: No such file or directory".to_string(),
        ),
        (
            format!("capture start lo {ok} --backend ebpf --snaplen 70000"),
            "capture: --snaplen 70000: the eBPF backend copies at most 65600 bytes (--backend packet copies more)".to_string(),
        ),
        (
            "capture stop lo".to_string(),
            "capture: No capture running on interface lo".to_string(),
        ),
        (
            format!("capture start lo {ok} ignore=dns"),
            "capture: unknown capture ignore class \"dns\"".to_string(),
        ),
    ] {
        let r = ns.myinit(&format!("{command}; capture show"));
        let first = r.stderr.lines().next().unwrap_or_default();
        let first = first.strip_prefix("-c:1: ").unwrap_or(first);
        assert_eq!(first, want, "{command}: {r:#?}");
        assert!(r.stdout.contains("no capture running"), "{command}: {r:#?}");
    }
    assert!(!Path::new(&ok).exists(), "a refused start leaves no file");
    let r = common::myinit("help capture");
    assert!(
        r.stdout
            .contains("usage: capture start IF FILE [jsonl|jsonl+|pcap|pcapng] [COUNT] [include=nd] [ignore=arp]"),
        "{r:#?}"
    );
}

#[test]
fn the_end_of_myinit_closes_a_running_capture_with_everything_it_took() {
    for backend in BACKENDS {
        let l = link(false);
        let dir = TempDir::new("cap");
        let file = dir.file("left.pcapng");
        let d = &l.dev;
        // No `capture stop`: the end of the program stops every job, and a
        // job's file is flushed and closed before the process exits.
        let r = l.here.myinit(&format!(
            "capture start {d} {file} --backend {backend} --dir tx; ping -c 3 -i 0.1 {PEER_ADDR}"
        ));
        r.assert_ok();
        let line = report(&r, d);
        assert!(line.contains("stopped: 4 packets"), "{backend}: {r:#?}");
        let rows = tshark(&file, &["icmp.type"]);
        assert_eq!(rows, ["", "8", "8", "8"], "{backend}: ARP, then 3 requests");
    }
}

/// The capture programs' cls_bpf filters on `dev` (both hooks).
fn clsact_filters(ns: &Netns, dev: &str) -> usize {
    ["ingress", "egress"]
        .iter()
        .map(|hook| {
            let out = ns.exec("tc", &["filter", "show", "dev", dev, hook]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("capture_"))
                .count()
        })
        .sum()
}

#[test]
fn on_clsact_stop_removes_the_filters_and_a_killed_captures_are_removed_by_the_next() {
    let l = link(false);
    let dir = TempDir::new("cap");
    let d = &l.dev;
    let (first, second) = (dir.file("first.pcap"), dir.file("second.pcap"));
    // nsenter execs myinit in place (`ip netns exec` may fork), so the
    // child killed below is myinit itself.
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", l.here.name))
        .arg(common::myinit_bin())
        .args(["-c", &format!("capture start {d} {first}; sleep 30")])
        .env("MYINIT_TC", "clsact")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while clsact_filters(&l.here, d) < 2 {
        assert!(std::time::Instant::now() < end, "no filters attached");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        clsact_filters(&l.here, d),
        2,
        "a killed myinit leaves its filters"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &l.here.name])
        .arg(common::myinit_bin())
        .args([
            "-c",
            &format!("capture start {d} {second}; ping -c 2 -i 0.1 {PEER_ADDR}; capture stop {d}"),
        ])
        .env("MYINIT_TC", "clsact")
        .output()
        .unwrap();
    let r = MyinitRun::from(out);
    r.assert_ok();
    assert!(
        r.stdout.contains(&format!(
            "capture {d}: ebpf (clsact), EN10MB rx+tx, snaplen 65600; removed 2 filter(s) a killed myinit left"
        )),
        "{r:#?}"
    );
    // ARP request and reply, two echo requests and their replies.
    assert!(report(&r, d).contains("stopped: 6 packets"), "{r:#?}");
    assert_eq!(clsact_filters(&l.here, d), 0, "stop removes its filters");
}

#[test]
fn the_ebpf_backend_keeps_whole_packets_and_cuts_at_the_snap_length_asked() {
    let ns = Netns::new("cpg");
    let dir = TempDir::new("cap");
    // lo's MTU (65536) carries a 3042-byte and a 60042-byte frame whole:
    // the original captured whole packets, and its users' tests compare
    // 65 kB ones byte for byte.
    let whole = dir.file("whole.pcap");
    let r = ns.myinit(&format!(
        "capture start lo {whole} --backend ebpf --dir rx; \
         /usr/bin/ping -c 1 -s 3000 127.0.0.1; /usr/bin/ping -c 1 -s 60000 127.0.0.1; \
         capture stop lo"
    ));
    r.assert_ok();
    assert!(
        r.stdout.contains("ebpf") && r.stdout.contains("snaplen 65600"),
        "{r:#?}"
    );
    let rows = tshark(&whole, &["frame.len", "frame.cap_len", "icmp.type"]);
    assert_eq!(
        rows,
        [
            "3042|3042|8",
            "3042|3042|0",
            "60042|60042|8",
            "60042|60042|0"
        ],
        "{r:#?}"
    );
    let cut = dir.file("cut.pcap");
    let r = ns.myinit(&format!(
        "capture start lo {cut} --backend ebpf --dir rx --snaplen 1514; \
         /usr/bin/ping -c 1 -s 3000 127.0.0.1; capture stop lo"
    ));
    r.assert_ok();
    assert!(r.stdout.contains("snaplen 1514"), "{r:#?}");
    let rows = tshark(&cut, &["frame.len", "frame.cap_len"]);
    assert_eq!(rows, ["3042|1514", "3042|1514"], "{r:#?}");
}

#[test]
fn a_vlan_tag_the_kernel_took_out_on_receive_is_put_back() {
    for backend in BACKENDS {
        let here = Netns::new("cpv");
        let peer = Netns::new("cpw");
        let (dev, other) = (unique("cpv"), unique("cpw"));
        // No IPv6: its own frames (router solicitations) would come in too.
        here.no_ipv6();
        peer.no_ipv6();
        here.veth(&dev, &other, Some(&peer));
        here.ip(&["link", "set", &dev, "up"]);
        peer.ip(&["link", "set", &other, "up"]);
        // Three frames tagged VLAN 100 (priority 3), as a switch port would
        // send them. The receive path takes the tag into the sk_buff
        // before any tap or TC program sees the frame.
        let frame = "ffffffffffff02000000000181006064080045000020000100004011000000000000000000000000000000000000000000";
        let dir = TempDir::new("cap");
        let file = dir.file("vlan.pcap");
        let server = format!(
            "capture start {dev} {file} --backend {backend} --dir rx; echo started; sleep 1.5; capture stop {dev}"
        );
        let mut capture = Command::new("ip")
            .args([
                "netns",
                "exec",
                &here.name,
                common::myinit_bin(),
                "-c",
                &server,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(capture.stdout.take().unwrap());
        while !line.contains("started") {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0);
        }
        let send = peer.exec(
            "python3",
            &[
                "-c",
                &format!(
                    "import socket\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(('{other}', 0))\nfor _ in range(3): s.send(bytes.fromhex('{frame}'))"
                ),
            ],
        );
        assert!(
            send.status.success(),
            "{}",
            String::from_utf8_lossy(&send.stderr)
        );
        assert!(capture.wait().unwrap().success());
        let rows = tshark(&file, &["vlan.id", "vlan.priority", "frame.len"]);
        assert_eq!(rows, ["100|3|49", "100|3|49", "100|3|49"], "{backend}");
        // Byte for byte what was sent: the records of the classic pcap.
        let bytes = std::fs::read(&file).unwrap();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let data: String = bytes[at + 16..at + 16 + len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(data, frame, "{backend}");
            at += 16 + len;
        }
        assert_eq!(at, bytes.len());
    }
}

#[test]
fn a_capture_ends_when_its_interface_goes_and_one_file_takes_one_capture() {
    let ns = Netns::new("cpd");
    ns.ip(&[
        "link", "add", "cpd0", "type", "veth", "peer", "name", "cpd1",
    ]);
    ns.ip(&["link", "set", "cpd0", "up"]);
    let dir = TempDir::new("cap");
    let (a, b) = (dir.file("a.pcap"), dir.file("b.pcap"));
    let r = ns.myinit(&format!(
        "capture start cpd0 {a}; capture start cpd0 {a} --backend packet; \
         capture start cpd0 {b} --backend packet; capture start lo {} --snaplen 100000; \
         capture stop lo; /usr/sbin/ip link del cpd0; sleep 0.5; capture show; echo end",
        dir.file("lo.pcap")
    ));
    assert!(
        r.stderr
            .contains(&format!("capture: {a}: capture cpd0 writes it already")),
        "{r:#?}"
    );
    assert!(
        r.stdout.contains(
            "--snaplen 100000 is more than the eBPF backend copies (65600), so AF_PACKET"
        ),
        "{r:#?}"
    );
    // The header announces the snap length asked for, as tcpdump -s does.
    let lo = std::fs::read(dir.file("lo.pcap")).unwrap();
    assert_eq!(u32::from_le_bytes(lo[16..20].try_into().unwrap()), 100_000);
    // Both captures on the deleted interface ended by themselves and said why.
    assert_eq!(
        r.stderr.matches("stopped: the interface went away").count(),
        2,
        "{r:#?}"
    );
    assert!(r.stdout.contains("end"));
}

#[test]
fn a_file_of_no_known_extension_is_jsonl_as_the_original_wrote() {
    let ns = Netns::new("cpj");
    let dir = TempDir::new("cap");
    let file = dir.file("capture.dat");
    let r = ns.myinit(&format!(
        "capture start lo {file} --dir rx; ping -c 1 127.0.0.1; capture stop lo"
    ));
    r.assert_ok();
    assert!(
        r.stdout.contains(&format!(
            "Started capture on lo -> {file} (format: jsonl) (unlimited) (ignoring: nd)\n"
        )),
        "{r:#?}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        assert_original_keys(line);
    }
}

#[test]
fn lo_is_captured_as_ethernet() {
    for backend in BACKENDS {
        let ns = Netns::new("cpl");
        let dir = TempDir::new("cap");
        let file = dir.file("lo.pcap");
        let r = ns.myinit(&format!(
            "capture start lo {file} --backend {backend} --dir rx; ping -c 1 127.0.0.1; capture stop lo"
        ));
        r.assert_ok();
        assert!(r.stdout.contains("EN10MB rx"), "{backend}: {r:#?}");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
        let text = tool("tcpdump", &["-r", &file, "-nn", "-t", "-e"]);
        // lo's all-zero Ethernet header, then the echo and its reply.
        assert_eq!(
            text.matches("00:00:00:00:00:00 > 00:00:00:00:00:00, ethertype IPv4")
                .count(),
            2,
            "{backend}: {text}"
        );
        assert!(
            text.contains("127.0.0.1 > 127.0.0.1: ICMP echo request"),
            "{text}"
        );
        assert!(
            text.contains("127.0.0.1 > 127.0.0.1: ICMP echo reply"),
            "{text}"
        );
    }
}

#[test]
fn lo_in_both_directions_records_each_packet_once_as_tcpdump_does() {
    for backend in BACKENDS {
        let ns = Netns::new("cpo");
        let dir = TempDir::new("cap");
        let (ours, theirs) = (dir.file("lo.pcapng"), dir.file("tcpdump.pcap"));
        // tcpdump on the same lo at the same time: the reference count.
        let mut tcpdump = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tcpdump", "-i", "lo", "-n"])
            .args(["--immediate-mode", "-w", &theirs, "icmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
        let mut line = String::new();
        use std::io::BufRead as _;
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump ended");
        }
        let tcpdump = Background(tcpdump);
        let r = ns.myinit(&format!(
            "capture start lo {ours} --backend {backend}; ping -c 2 -i 0.2 127.0.0.1; capture stop lo"
        ));
        r.assert_ok();
        assert!(
            r.stdout
                .contains("EN10MB rx+tx (lo: each packet once, as received)"),
            "{backend}: {r:#?}"
        );
        // Two echo requests and their replies, each once.
        assert!(
            report(&r, "lo").contains("stopped: 4 packets"),
            "{backend}: {r:#?}"
        );
        let rows = tshark(&ours, &["icmp.type", "frame.interface_name"]);
        assert_eq!(rows, ["8|lo", "0|lo", "8|lo", "0|lo"], "{backend}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        // SIGINT: tcpdump writes what it has and ends.
        unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(tcpdump);
        assert_eq!(tcpdump_count(&theirs), 4, "{backend}: tcpdump's own count");
        // --dir tx still gives the sent copies.
        let r = ns.myinit(&format!(
            "capture start lo {ours} --backend {backend} --dir tx; ping -c 1 127.0.0.1; capture stop lo"
        ));
        r.assert_ok();
        assert!(
            report(&r, "lo").contains("stopped: 2 packets"),
            "{backend}: {r:#?}"
        );
    }
}

fn tcpdump_count(file: &str) -> usize {
    tcpdump(file).lines().count()
}

/// The JSONL lines of `file`, with their ICMPv6 types (if any) and whether
/// they are ARP.
fn jsonl_kinds(file: &str) -> Vec<(Option<u64>, bool)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| {
            assert_original_keys(line);
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let layers = v["layers"].as_array().unwrap();
            let icmpv6 = layers
                .iter()
                .find(|l| l["layertype"] == "Icmpv6")
                .map(|l| l["type_"].as_u64().unwrap());
            let arp = layers.iter().any(|l| l["layertype"] == "Arp");
            (icmpv6, arp)
        })
        .collect()
}

#[test]
fn neighbor_discovery_is_left_out_by_default_in_the_kernel_and_arp_kept() {
    for backend in BACKENDS {
        let l = link(true);
        let dir = TempDir::new("cap");
        let (plain, with_nd, no_arp) = (
            dir.file("plain.jsonl"),
            dir.file("nd.pcap"),
            dir.file("noarp.jsonl"),
        );
        let d = &l.dev;
        // DAD of a new address, the solicitations a first ping -6 needs,
        // ARP for a first ping, and echo requests with hop limit 255 (not
        // ND: only types 133-137 are).
        let r = l.here.myinit(&format!(
            "capture start {d} {plain} --backend {backend}; \
             capture start {d} {with_nd} pcap include=nd --backend {backend}; \
             capture start {d} {no_arp} ignore=arp --backend {backend}; \
             capture show; \
             ip addr add fd78::9/64 dev {d}; \
             /usr/bin/ping -6 -c 2 -i 0.2 -t 255 fd78::2; \
             /usr/bin/ping -c 2 -i 0.2 {PEER_ADDR}; \
             sleep 2; \
             capture stop all"
        ));
        r.assert_ok();
        assert!(
            r.stdout.contains(&format!(
                "Started capture on {d} -> {plain} (format: jsonl) (unlimited) (ignoring: nd)\n"
            )) && r.stdout.contains(&format!(
                "Started capture on {d}#2 -> {with_nd} (format: pcap) (unlimited)\n"
            )) && r.stdout.contains(&format!(
                "Started capture on {d}#3 -> {no_arp} (format: jsonl) (unlimited) (ignoring: nd,arp)\n"
            )) && r.stdout.contains("Stopping 3 capture(s)...\n"),
            "{backend}: {r:#?}"
        );
        let show: Vec<&str> = r
            .stdout
            .lines()
            .filter(|l| l.starts_with(d.as_str()))
            .collect();
        assert!(show[0].contains(" nd "), "{backend}: {show:?}");
        assert!(show[1].contains(" - "), "{backend}: {show:?}");
        assert!(show[2].contains(" nd,arp "), "{backend}: {show:?}");

        // With ND: the DAD probe, the solicitations and advertisements.
        let text = tcpdump(&with_nd);
        for want in [
            "IP6 :: > ff02::1:ff00:9: ICMP6, neighbor solicitation, who has fd78::9",
            "ICMP6, neighbor solicitation, who has fd78::2",
            "ICMP6, neighbor advertisement, tgt is fd78::2",
            "ARP, Request who-has",
            "ICMP6, echo request",
        ] {
            assert!(text.contains(want), "{backend}: no {want:?} in\n{text}");
        }
        let nd_seen = tool(
            "tshark",
            &[
                "-r",
                &with_nd,
                "-Y",
                "icmpv6.type >= 133 and icmpv6.type <= 137",
            ],
        )
        .lines()
        .count();
        assert!(nd_seen >= 3, "{backend}: {text}");
        // By default: the same traffic without a single ND message, and
        // the count is of what was written.
        let plain_kinds = jsonl_kinds(&plain);
        assert!(
            plain_kinds
                .iter()
                .all(|(t, _)| !matches!(t, Some(133..=137))),
            "{backend}: ND in {plain_kinds:?}"
        );
        assert!(
            plain_kinds.iter().any(|(_, arp)| *arp),
            "{backend}: ARP kept"
        );
        assert_eq!(
            plain_kinds.iter().filter(|(t, _)| *t == Some(128)).count(),
            2,
            "{backend}: the echo requests (hop limit 255) are kept"
        );
        assert_eq!(
            number_before(
                r.stdout
                    .lines()
                    .find(|l| l.starts_with(&format!("Stopped capture on {d} (")))
                    .unwrap(),
                "packets captured"
            ),
            plain_kinds.len() as u64
        );
        // ignore=arp: neither ARP nor ND.
        let no_arp_kinds = jsonl_kinds(&no_arp);
        assert!(no_arp_kinds
            .iter()
            .all(|(t, arp)| !arp && !matches!(t, Some(133..=137))));
        assert_eq!(
            no_arp_kinds.iter().filter(|(t, _)| *t == Some(128)).count(),
            2,
            "{backend}: {no_arp_kinds:?}"
        );
    }
}
