//! `pcap2json` and `json2pcap`: real captures (tcpdump in namespaces, the
//! capture in the source tree) through JSONL and back, the original tool's
//! three JSONL dialects, and bad input that must leave nothing behind.
//! Cross-checked with tcpdump and tshark.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{myinit, run_ok, unique, Netns, TempDir};
use serde_json::Value;

const REAL_CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packet/src/layers/testdata/veth-capture.pcap"
);

/// Every packet with its full timestamp and all its bytes, as tcpdump
/// prints them: equal output means identical packets and timestamps.
fn tcpdump_dump(file: &str) -> String {
    run_ok(
        "tcpdump",
        &[
            "-r",
            file,
            "-nn",
            "-tt",
            "-xx",
            "--time-stamp-precision=nano",
        ],
    )
}

/// `tcpdump_dump`'s packets (a summary line and its hex lines each), but
/// neighbor solicitations: the original's dialect leaves out the nonce
/// option of DAD's, so those do not come back whole from it.
fn dump_but_solicitations(file: &str) -> Vec<String> {
    let mut packets: Vec<String> = Vec::new();
    for line in tcpdump_dump(file).lines() {
        match packets.last_mut() {
            Some(p) if line.starts_with('\t') => {
                p.push('\n');
                p.push_str(line);
            }
            _ => packets.push(line.to_string()),
        }
    }
    packets.retain(|p| !p.contains("neighbor solicitation"));
    packets
}

/// tshark's fields, one line per packet, `|` between fields.
fn tshark(file: &str, fields: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-r",
        file,
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ];
    for f in fields {
        args.extend(["-e", f]);
    }
    run_ok("tshark", &args)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts tshark finds every checksum it checks valid (status 1); the
/// number of packets that had checksums.
fn assert_checksums_valid(file: &str) -> usize {
    let fields = [
        "ip.checksum.status",
        "udp.checksum.status",
        "tcp.checksum.status",
        "icmp.checksum.status",
        "icmpv6.checksum.status",
    ];
    let lines = tshark(file, &fields);
    assert!(!lines.is_empty(), "{file}: no packets");
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let statuses: Vec<&str> = line.split('|').filter(|s| !s.is_empty()).collect();
        assert!(
            statuses.iter().all(|s| *s == "1"),
            "{file} packet {}: checksum statuses {line:?}",
            i + 1
        );
        checked += usize::from(!statuses.is_empty());
    }
    checked
}

/// The JSON objects of a JSONL file.
fn jsonl(file: &str) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
        .collect()
}

fn layertypes(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .flat_map(|r| r["layers"].as_array().unwrap())
        .map(|l| l["layertype"].as_str().unwrap().to_string())
        .collect()
}

/// tcpdump writing everything on `iface` in `ns` to `file`, until `stop`.
struct Tcpdump(Child);

impl Tcpdump {
    fn start(ns: &Netns, iface: &str, file: &str) -> Tcpdump {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tcpdump", "-i", iface])
            .args(["-w", file, "-U", "-nn", "-s", "0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let dump = Tcpdump(child);
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(_) => {}
                Err(e) => panic!("tcpdump did not start listening: {e}"),
            }
        }
        dump
    }

    /// Stops it (SIGINT: it writes what it has and exits).
    fn stop(mut self) {
        run_ok("kill", &["-INT", &self.0.id().to_string()]);
        self.0.wait().unwrap();
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn exec_ok(ns: &Netns, program: &str, args: &[&str]) -> String {
    let out = ns.exec(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Captures, on a veth in a namespace, ARP, ping (with IPv4 options and
/// fragments), ping -6 (ND, fragments), UDP (and its ICMP error), a TCP
/// handshake with options and data, an 802.1Q-tagged frame and an MLD
/// report (behind an IPv6 hop-by-hop header).
fn capture_every_layer(file: &str) {
    let a = Netns::new("cva");
    let b = Netns::new("cvb");
    let (va, vb) = (unique("cva"), unique("cvb"));
    a.veth(&va, &vb, Some(&b));
    for (ns, dev, v4, v6) in [
        (&a, &va, "10.77.0.1/24", "fd77::1/64"),
        (&b, &vb, "10.77.0.2/24", "fd77::2/64"),
    ] {
        ns.ip(&["addr", "add", v4, "dev", dev]);
        ns.ip(&["addr", "add", v6, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let dump = Tcpdump::start(&a, &va, file);
    exec_ok(&a, "ping", &["-c", "1", "-W", "5", "10.77.0.2"]);
    exec_ok(&a, "ping", &["-c", "1", "-W", "5", "-R", "10.77.0.2"]);
    exec_ok(
        &a,
        "ping",
        &["-c", "1", "-W", "5", "-s", "2000", "10.77.0.2"],
    );
    exec_ok(&a, "ping", &["-6", "-c", "1", "-W", "5", "fd77::2"]);
    exec_ok(
        &a,
        "ping",
        &["-6", "-c", "1", "-W", "5", "-s", "2000", "fd77::2"],
    );
    // No 8021q in this kernel: a tagged ARP request sent as it is.
    let tagged = format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('{va}', 0))\n\
         s.send(bytes.fromhex('ffffffffffff020000000001 8100 000a 0806 \
         0001 0800 06 04 0001 020000000001 0a4e0001 000000000000 0a4e0002'.replace(' ', '')))\n"
    );
    exec_ok(&a, "python3", &["-c", &tagged]);
    // Joining a group sends an MLD report behind a hop-by-hop header.
    let join = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
         mreq = socket.inet_pton(socket.AF_INET6, 'ff02::1:2345') + \
         struct.pack('@I', socket.if_nametoindex('{va}'))\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)\n"
    );
    exec_ok(&a, "python3", &["-c", &join]);
    exec_ok(
        &a,
        "python3",
        &[
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
             .sendto(b'hello udp', ('10.77.0.2', 5000))",
        ],
    );
    let mut server = Command::new("ip")
        .args(["netns", "exec", &b.name, "python3", "-c"])
        .arg(
            "import socket\n\
             s = socket.socket()\n\
             s.bind(('10.77.0.2', 5001))\n\
             s.listen()\n\
             print('ready', flush=True)\n\
             c, _ = s.accept()\n\
             c.recv(100)\n\
             c.sendall(b'bye')\n\
             c.close()\n",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    exec_ok(
        &a,
        "python3",
        &[
            "-c",
            "import socket\n\
             c = socket.create_connection(('10.77.0.2', 5001), timeout=5)\n\
             c.sendall(b'hello tcp')\n\
             c.recv(100)\n\
             c.close()\n",
        ],
    );
    assert!(server.wait().unwrap().success());
    // tcpdump drops what it has not read yet when stopped: wait until
    // it has written both FINs (it writes each packet at once, -U).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = common::run("tcpdump", &["-r", file, "-nn"]);
        let text = String::from_utf8_lossy(&text.stdout);
        if text.matches("Flags [F").count() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tcpdump did not write the TCP close:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(100));
    dump.stop();
}

#[test]
fn a_capture_with_every_layer_converts_to_jsonl_and_back_byte_for_byte() {
    let dir = TempDir::new("all");
    let (pcap, json, back, ng) = (
        dir.file("cap.pcap"),
        dir.file("cap.jsonl"),
        dir.file("back.pcap"),
        dir.file("back.pcapng"),
    );
    capture_every_layer(&pcap);
    let original_dialect = dir.file("original.jsonl");
    let run = myinit(&format!(
        "pcap2json {pcap} {json} jsonl+; json2pcap {json} {back}; json2pcap {json} {ng}; \
         pcap2json {pcap} {original_dialect}"
    ));
    run.assert_ok();
    let records = jsonl(&json);
    assert!(
        run.stdout.contains(&format!(
            "Converted {} packets from {pcap} to {json}\n",
            records.len()
        )),
        "{run:?}"
    );
    let types = layertypes(&records);
    for expected in [
        "ether",
        "dot1Q",
        "Arp",
        "Ip",
        "Ipv6",
        "Ipv6HopByHop",
        "Ipv6Fragment",
        "Icmp",
        "echo",
        "echoReply",
        "Icmpv6",
        "icmpv6EchoRequest",
        "icmpv6EchoReply",
        "icmpv6NeighborSolicitation",
        "icmpv6NeighborAdvertisement",
        "Udp",
        "Tcp",
        "raw",
    ] {
        assert!(
            types.contains(expected),
            "no {expected} layer in {types:?}; the capture:\n{}",
            run_ok("tcpdump", &["-r", &pcap, "-nn", "-e"])
        );
    }
    let layers = || {
        records
            .iter()
            .flat_map(|r| r["layers"].as_array().unwrap().iter())
    };
    assert!(
        layers().any(|l| l["layertype"] == "Ip" && l["options"].as_array().unwrap().len() > 1),
        "ping -R's record route option"
    );
    assert!(
        layers().any(|l| l["layertype"] == "Tcp"
            && l["options"].to_string().contains("Mss")
            && l["options"].to_string().contains("WindowScale")),
        "the SYN's TCP options"
    );
    // pcap2json jsonl+ of a classic pcap: the capture dialect plus
    // timestamp_ns, no direction (the file has none).
    for r in &records {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["layers", "timestamp_ns", "timestamp_us"], "{r}");
        assert_eq!(
            r["timestamp_ns"].as_u64().unwrap() / 1000,
            r["timestamp_us"].as_u64().unwrap()
        );
    }
    // By default: the original's dialect, its keys only, rx as it wrote
    // every packet of a pcap; its layers stop where its decoder stops.
    let plain = jsonl(&original_dialect);
    assert_eq!(plain.len(), records.len());
    for r in &plain {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["direction", "layers", "timestamp_us"], "{r}");
        assert_eq!(r["direction"], "rx");
    }
    let plain_types = layertypes(&plain);
    for ours in ["Ipv6HopByHop", "Ipv6Fragment"] {
        assert!(!plain_types.contains(ours), "{plain_types:?}");
    }
    assert!(plain
        .iter()
        .flat_map(|r| r["layers"].as_array().unwrap().iter())
        .all(|l| l["layertype"] != "Tcp" || l.get("options").is_none()));
    let original_back = dir.file("original_back.pcap");
    myinit(&format!("json2pcap {original_dialect} {original_back}")).assert_ok();
    let (expected, got) = (
        dump_but_solicitations(&pcap),
        dump_but_solicitations(&original_back),
    );
    let all = tcpdump_dump(&pcap);
    assert!(expected.len() + 2 <= all.lines().filter(|l| !l.starts_with('\t')).count());
    assert!(got == expected, "the original's dialect -> pcap");
    let original = tcpdump_dump(&pcap);
    assert!(original.lines().count() > records.len());
    assert_eq!(tcpdump_dump(&back), original, "pcap -> jsonl -> pcap");
    assert_eq!(tcpdump_dump(&ng), original, "pcap -> jsonl -> pcapng");
    // µs in, µs out.
    assert_eq!(
        std::fs::read(&back).unwrap()[..4],
        std::fs::read(&pcap).unwrap()[..4]
    );
}

#[test]
fn the_capture_in_the_source_tree_round_trips_through_pcap_and_pcapng() {
    let dir = TempDir::new("real");
    let (json, back, ng, json2) = (
        dir.file("a.jsonl"),
        dir.file("b.pcap"),
        dir.file("c.pcapng"),
        dir.file("d.jsonl"),
    );
    // Ours, jsonl+: lossless (the original's dialect leaves out DAD's nonce).
    let run = myinit(&format!(
        "pcap2json {REAL_CAPTURE} {json} jsonl+; json2pcap {json} {back}; \
         json2pcap {json} {ng}; pcap2json {ng} {json2} jsonl+"
    ));
    run.assert_ok();
    assert_eq!(
        run.stdout,
        format!(
            "Converted 62 packets from {REAL_CAPTURE} to {json}\n\
             Converted 62 packets from {json} to {back}\n\
             json2pcap: {back}: pcap, link type 1, µs timestamps\n\
             Converted 62 packets from {json} to {ng}\n\
             json2pcap: {ng}: pcapng, 1 interface\n\
             Converted 62 packets from {ng} to {json2}\n"
        )
    );
    let original = tcpdump_dump(REAL_CAPTURE);
    assert_eq!(tcpdump_dump(&back), original);
    assert_eq!(tcpdump_dump(&ng), original);
    // Through pcapng and back the lines are the same.
    assert_eq!(jsonl(&json2), jsonl(&json));
    assert_eq!(dir.files(), ["a.jsonl", "b.pcap", "c.pcapng", "d.jsonl"]);
}

#[test]
fn pcapng_from_wireshark_tools_converts_with_its_us_timestamps() {
    let dir = TempDir::new("editcap");
    let ng = dir.file("in.pcapng");
    run_ok("editcap", &["-F", "pcapng", REAL_CAPTURE, &ng]);
    let (a, b) = (dir.file("a.jsonl"), dir.file("b.jsonl"));
    myinit(&format!("pcap2json {REAL_CAPTURE} {a}; pcap2json {ng} {b}")).assert_ok();
    let strip = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("ifname");
                r
            })
            .collect()
    };
    assert_eq!(strip(jsonl(&b)), strip(jsonl(&a)));
}

/// Lines with what only pcapng keeps: interface names, directions, a
/// comment, an L3 interface.
const PCAPNG_LINES: &str = concat!(
    r#"{"timestamp_us":1761596197426295,"direction":"tx","layers":[{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":"<auto>"},{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":0,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]},{"layertype":"Udp","sport":5353,"dport":5555,"len":"<auto>","chksum":"<auto>"},{"layertype":"raw","data":[104,101,108,108,111]}],"timestamp_ns":1761596197426295123,"ifname":"veth0","comment":"sent by ping (pid 42)"}"#,
    "\n",
    r#"{"timestamp_us":1761596197426296,"direction":"rx","layers":[{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":0,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.2","dst":"10.0.0.1","options":[]},{"layertype":"Udp","sport":5555,"dport":5353,"len":"<auto>","chksum":"<auto>"}],"timestamp_ns":1761596197426296000,"ifname":"tun0","linktype":101}"#,
    "\n",
    r#"{"timestamp_us":1761596197426297,"layers":[{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":2},{"layertype":"raw","data":[1,2]}],"ifname":"veth0"}"#,
    "\n",
);

#[test]
fn interface_names_directions_and_comments_go_to_pcapng_and_come_back() {
    let dir = TempDir::new("ng");
    let (input, ng, back, pcap) = (
        dir.file("in.jsonl"),
        dir.file("out.pcapng"),
        dir.file("back.jsonl"),
        dir.file("forced"),
    );
    std::fs::write(&input, PCAPNG_LINES).unwrap();
    let run = myinit(&format!(
        "json2pcap {input} {ng}; pcap2json {ng} {back} jsonl+; json2pcap --pcapng {input} {pcap}"
    ));
    run.assert_ok();
    assert!(
        run.stdout.contains(&format!(
            "Converted 3 packets from {input} to {ng}\njson2pcap: {ng}: pcapng, 2 interfaces\n"
        )),
        "{run:?}"
    );
    let fields = [
        "frame.time_epoch",
        "frame.interface_name",
        "frame.packet_flags_direction",
        "frame.comment",
        "frame.encap_type",
        "udp.srcport",
    ];
    // tx is outbound (2 in epb_flags), rx inbound (1).
    let want = [
        "1761596197.426295123|veth0|0x00000002|sent by ping (pid 42)|1|5353",
        "1761596197.426296000|tun0|0x00000001||7|5555",
        "1761596197.426297000|veth0|||1|",
    ];
    assert_eq!(tshark(&ng, &fields), want);
    assert_eq!(tshark(&pcap, &fields), want, "--pcapng");
    assert_eq!(assert_checksums_valid(&ng), 2);
    // Back: the same keys, "<auto>" now computed.
    let records = jsonl(&back);
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["direction"], "tx");
    assert_eq!(records[0]["ifname"], "veth0");
    assert_eq!(records[0]["comment"], "sent by ping (pid 42)");
    assert_eq!(records[0]["timestamp_ns"], 1761596197426295123u64);
    assert_eq!(records[0]["layers"][2]["len"], 13);
    assert_eq!(records[1]["direction"], "rx");
    assert_eq!(
        (&records[1]["ifname"], &records[1]["linktype"]),
        (&"tun0".into(), &101.into())
    );
    assert!(records[2].get("direction").is_none() && records[2].get("comment").is_none());
    assert_eq!(records[2]["layers"][0]["etype"], 2);
}

#[test]
fn classic_pcap_takes_ns_only_when_a_timestamp_needs_it() {
    let dir = TempDir::new("ns");
    let line = |ns: u64| {
        format!(
            r#"{{"timestamp_us":{},"timestamp_ns":{ns},"data":"02000000000a02000000000108004500"}}"#,
            ns / 1000
        )
    };
    let us_only = dir.file("us.jsonl");
    std::fs::write(&us_only, line(1_761_596_197_426_295_000) + "\n").unwrap();
    let with_ns = dir.file("ns.jsonl");
    std::fs::write(
        &with_ns,
        line(1_761_596_197_426_295_000) + "\n" + &line(1_761_596_197_426_295_123) + "\n",
    )
    .unwrap();
    let (a, b, c) = (dir.file("a.pcap"), dir.file("b.pcap"), dir.file("c.pcap"));
    let run = myinit(&format!(
        "json2pcap {us_only} {a}; json2pcap {with_ns} {b}; json2pcap --ns {us_only} {c}"
    ));
    run.assert_ok();
    assert!(run
        .stdout
        .contains(&format!("{a}: pcap, link type 1, µs timestamps")));
    assert!(run
        .stdout
        .contains(&format!("{b}: pcap, link type 1, ns timestamps")));
    let magic = |f: &str| std::fs::read(f).unwrap()[..4].to_vec();
    assert_eq!(magic(&a), [0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(magic(&b), [0x4d, 0x3c, 0xb2, 0xa1]);
    assert_eq!(magic(&c), [0x4d, 0x3c, 0xb2, 0xa1]);
    let times = tshark(&b, &["frame.time_epoch"]);
    assert_eq!(times, ["1761596197.426295000", "1761596197.426295123"]);
}

/// The original tool's capture dialect: its key order, `direction`, every
/// value written out (checksums included).
const CAPTURE_DIALECT: &str = concat!(
    r#"{"timestamp_us":1761596197426295,"direction":"tx","layers":[{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":2048},{"layertype":"Ip","version":4,"ihl":5,"tos":0,"len":33,"id":0,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":17,"chksum":9930,"src":"10.0.0.1","dst":"10.0.0.2","options":[]},{"layertype":"Udp","sport":4000,"dport":5555,"len":13,"chksum":33452},{"layertype":"raw","data":[104,101,108,108,111]}]}"#,
    "\n",
    r#"{"timestamp_us":1761596197426400,"direction":"tx","layers":[{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":2048},{"layertype":"Ip","version":4,"ihl":5,"tos":0,"len":40,"id":7,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":6,"chksum":9927,"src":"10.0.0.1","dst":"10.0.0.2","options":[]},{"layertype":"Tcp","sport":40000,"dport":80,"seq":1000,"ack":0,"dataofs":5,"reserved":0,"flags":2,"window":64240,"chksum":119,"urgptr":0}]}"#,
    "\n",
    r#"{"timestamp_us":1761596197426700,"direction":"rx","layers":[{"layertype":"ether","dst":"FF:FF:FF:FF:FF:FF","src":"02:00:00:00:00:01","etype":2054},{"layertype":"Arp","hwtype":1,"ptype":2048,"hwlen":6,"plen":4,"op":1,"hwsrc":"02:00:00:00:00:01","psrc":"10.0.0.1","hwdst":"00:00:00:00:00:00","pdst":"10.0.0.2"}]}"#,
    "\n",
);

/// Its pcap2json: every object's keys sorted, `direction` always "rx".
const PCAP2JSON_DIALECT: &str = concat!(
    r#"{"direction":"rx","layers":[{"dst":"02:00:00:00:00:0A","etype":2048,"layertype":"ether","src":"02:00:00:00:00:01"},{"chksum":26319,"dst":"10.0.0.2","flags":{"dont_fragment":false,"fragment_offset":0,"more_fragments":false,"reserved":false},"id":8,"ihl":5,"layertype":"Ip","len":36,"options":[],"proto":1,"src":"10.0.0.1","tos":0,"ttl":64,"version":4},{"chksum":54710,"code":0,"layertype":"Icmp","typ":8},{"identifier":4660,"layertype":"echo","sequence":1},{"data":[1,2,3,4,5,6,7,8],"layertype":"raw"}],"timestamp_us":1761596197426500}"#,
    "\n",
    r#"{"direction":"rx","layers":[{"dst":"33:33:FF:00:00:02","etype":34525,"layertype":"ether","src":"02:00:00:00:00:01"},{"dst":"ff02::1:ff00:2","hop_limit":255,"layertype":"Ipv6","next_header":58,"payload_length":32,"src":"fd00::1","version_class":1610612736},{"checksum":32151,"code":0,"layertype":"Icmpv6","type_":135},{"layertype":"icmpv6NeighborSolicitation","options":[{"SourceLinkLayerAddress":"02:00:00:00:00:01"}],"reserved":0,"target_address":"fd00::2"}],"timestamp_us":1761596197426600}"#,
    "\n",
);

/// Its editor: no `direction`, `"<auto>"` fields, lower-case MACs, blank
/// lines, a `data` line, no newline after the last line.
const EDITOR_DIALECT: &str = concat!(
    "\n",
    r#"{"timestamp_us":1761596197426800,"layers":[{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"02:00:00:00:00:01","etype":"<auto>"},{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":9,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]},{"layertype":"Tcp","sport":40000,"dport":80,"seq":1001,"ack":1,"dataofs":"<auto>","reserved":0,"flags":24,"window":502,"chksum":"<auto>","urgptr":0},{"layertype":"raw","data":[104,105]}]}"#,
    "\n  \n\n",
    r#"{"timestamp_us":1761596197426900,"layers":[{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"02:00:00:00:00:01","etype":"<auto>"},{"layertype":"Ipv6","version_class":1610612736,"payload_length":"<auto>","next_header":"<auto>","hop_limit":64,"src":"fd00::1","dst":"fd00::2"},{"layertype":"Icmpv6","type_":"<auto>","code":0,"checksum":"<auto>"},{"layertype":"icmpv6EchoRequest","identifier":1,"sequence":2}]}"#,
    "\n",
    r#"{"timestamp_us":1761596197427000,"data":"02000000000A0200000000010806"}"#,
);

#[test]
fn the_original_tools_three_dialects_convert_to_valid_pcap() {
    let dir = TempDir::new("dialects");
    let mut commands = String::new();
    for (name, text) in [
        ("capture", CAPTURE_DIALECT),
        ("pcap2json", PCAP2JSON_DIALECT),
        ("editor", EDITOR_DIALECT),
    ] {
        std::fs::write(dir.file(&format!("{name}.jsonl")), text).unwrap();
        commands += &format!(
            "json2pcap {} {}\n",
            dir.file(&format!("{name}.jsonl")),
            dir.file(&format!("{name}.pcap"))
        );
    }
    myinit(&commands).assert_ok();
    let info = |name: &str| tshark(&dir.file(&format!("{name}.pcap")), &["_ws.col.Info"]);
    assert_eq!(
        info("capture"),
        [
            "4000 → 5555 Len=5",
            "40000 → 80 [SYN] Seq=0 Win=64240 Len=0",
            "Who has 10.0.0.2? Tell 10.0.0.1"
        ]
    );
    assert_eq!(
        info("pcap2json"),
        [
            "Echo (ping) request  id=0x1234, seq=1/256, ttl=64",
            "Neighbor Solicitation for fd00::2 from 02:00:00:00:00:01"
        ]
    );
    let editor = info("editor");
    assert_eq!(editor.len(), 3, "{editor:?}");
    assert!(
        editor[0].contains("[PSH, ACK]") && editor[0].contains("Len=2"),
        "{editor:?}"
    );
    assert!(editor[1].starts_with("Echo (ping) request"), "{editor:?}");
    assert_eq!(assert_checksums_valid(&dir.file("capture.pcap")), 2);
    assert_eq!(assert_checksums_valid(&dir.file("pcap2json.pcap")), 2);
    // The editor's "<auto>" checksums (its last line has none: ARP-typed
    // bytes without a body).
    let statuses = tshark(
        &dir.file("editor.pcap"),
        &[
            "ip.checksum.status",
            "tcp.checksum.status",
            "icmpv6.checksum.status",
        ],
    );
    assert_eq!(statuses, ["1|1|", "||1", "||"]);
    let tcpdump = run_ok("tcpdump", &["-r", &dir.file("capture.pcap"), "-nn"]);
    assert_eq!(tcpdump.lines().count(), 3, "{tcpdump}");
}

#[test]
fn the_originals_capture_dialect_comes_back_byte_for_byte() {
    // Through pcapng (which keeps directions) and back with the defaults:
    // the same bytes, as a harness that diffs whole files needs.
    let dir = TempDir::new("same");
    let (input, ng, back) = (
        dir.file("in.jsonl"),
        dir.file("mid.pcapng"),
        dir.file("back.jsonl"),
    );
    std::fs::write(&input, CAPTURE_DIALECT).unwrap();
    myinit(&format!("json2pcap {input} {ng}; pcap2json {ng} {back}")).assert_ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), CAPTURE_DIALECT);
}

#[test]
fn a_file_that_is_not_a_capture_is_one_line_and_leaves_nothing() {
    let dir = TempDir::new("bad");
    let text = dir.file("notes.txt");
    std::fs::write(&text, "hello, not a capture\n").unwrap();
    let out = dir.file("out.jsonl");
    let run = myinit(&format!("pcap2json {text} {out}; echo alive"));
    assert_eq!(run.stdout, "alive\n");
    assert_eq!(
        run.stderr,
        format!("-c:1: pcap2json: {text}: not a pcap or pcapng file (starts with 68 65 6c 6c)\n")
    );
    assert_eq!(dir.files(), ["notes.txt"]);
    // JSONL given to pcap2json, a capture given to json2pcap: the hint.
    let json = dir.file("good.jsonl");
    std::fs::write(&json, CAPTURE_DIALECT).unwrap();
    let run = myinit(&format!(
        "pcap2json {json} {out}; json2pcap {REAL_CAPTURE} {out}"
    ));
    assert_eq!(run.status, 1);
    assert_eq!(
        run.stderr,
        format!(
            "-c:1: pcap2json: {json}: not a pcap or pcapng file (starts with 7b 22 74 69) \
             (JSONL? json2pcap converts that)\n\
             -c:1: json2pcap: {REAL_CAPTURE}: a pcap or pcapng file, not JSONL \
             (pcap2json converts that)\n"
        )
    );
    assert_eq!(dir.files(), ["good.jsonl", "notes.txt"]);
}

#[test]
fn truncated_or_bad_input_names_the_position_and_keeps_the_old_output() {
    let dir = TempDir::new("cut");
    let capture = std::fs::read(REAL_CAPTURE).unwrap();
    let cut = dir.file("cut.pcap");
    std::fs::write(&cut, &capture[..capture.len() - 10]).unwrap();
    let out = dir.file("out.jsonl");
    std::fs::write(&out, "the old file\n").unwrap();
    let run = myinit(&format!("pcap2json {cut} {out}"));
    assert_eq!(run.status, 1);
    let line = run.stderr.trim_end();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with(&format!("-c:1: pcap2json: {cut}: record 62 at byte "))
            && line.contains(": truncated"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "the old file\n");
    // JSONL with a bad third line (blank lines count).
    let bad = dir.file("bad.jsonl");
    let first = CAPTURE_DIALECT.lines().next().unwrap();
    std::fs::write(
        &bad,
        format!(
            "{first}\n\n{{\"timestamp_us\":1,\"layers\":[{{\"layertype\":\"Foo\"}}]}}\n{first}\n"
        ),
    )
    .unwrap();
    let pcap = dir.file("out.pcap");
    for target in [&pcap, &dir.file("out.pcapng")] {
        let run = myinit(&format!("json2pcap {bad} {target}"));
        assert_eq!(run.status, 1);
        assert_eq!(
            run.stderr,
            format!("-c:1: json2pcap: {bad}: line 3: layer 1: unknown layertype `Foo`\n")
        );
    }
    // "<auto>" that cannot be computed: the line and the layer.
    let auto = dir.file("auto.jsonl");
    std::fs::write(&auto, format!("{first}\n{}\n", r#"{"timestamp_us":1,"layers":[{"layertype":"Udp","sport":1,"dport":2,"len":"<auto>","chksum":"<auto>"}]}"#)).unwrap();
    let run = myinit(&format!("json2pcap {auto} {pcap}"));
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .starts_with(&format!("-c:1: json2pcap: {auto}: line 2: layer 1 (Udp): ")),
        "{run:?}"
    );
    // Two link types do not fit one classic pcap; pcapng takes them.
    let mixed = dir.file("mixed.jsonl");
    std::fs::write(&mixed, PCAPNG_LINES).unwrap();
    let run = myinit(&format!(
        "json2pcap {mixed} {pcap}; json2pcap {mixed} {pcap}ng"
    ));
    assert_eq!(
        run.stderr,
        format!(
            "-c:1: json2pcap: {mixed}: line 2: link type 101 after 1: a classic pcap has one \
             (write pcapng: --pcapng or OUT.pcapng)\n"
        )
    );
    assert_eq!(
        dir.files(),
        [
            "auto.jsonl",
            "bad.jsonl",
            "cut.pcap",
            "mixed.jsonl",
            "out.jsonl",
            "out.pcapng"
        ]
    );
}

#[test]
fn in_and_out_the_same_file_is_refused_and_the_input_kept() {
    let dir = TempDir::new("same");
    let pcap = dir.file("same.pcap");
    std::fs::copy(REAL_CAPTURE, &pcap).unwrap();
    let before = std::fs::read(&pcap).unwrap();
    // Also through another name of the same file.
    let other = format!("{}/./same.pcap", dir.dir().display());
    let run = myinit(&format!(
        "pcap2json {pcap} {pcap}; json2pcap {pcap} {other}; echo after"
    ));
    assert_eq!(
        run.stderr.matches("itself: write to another file").count(),
        2,
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("pcap2json: {pcap} is {pcap} itself")),
        "{run:?}"
    );
    assert!(run.stdout.contains("after"));
    assert_eq!(std::fs::read(&pcap).unwrap(), before);
}

#[test]
fn a_full_disk_is_an_error_that_leaves_no_half_written_file() {
    let dir = TempDir::new("full");
    let mnt = dir.dir().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.to_str().unwrap().to_string();
    run_ok("mount", &["-t", "tmpfs", "-o", "size=16k", "tmpfs", &mnt]);
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).output();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // The JSONL of the real capture is about 77 KB.
    let out = format!("{mnt}/out.jsonl");
    let run = myinit(&format!("pcap2json {REAL_CAPTURE} {out}; echo status $?"));
    assert!(run.stdout.starts_with("status 1\n"), "{run:?}");
    let first = run.stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "-c:1: pcap2json: {out}: write error: No space left on device; {out} left as it was"
        )
    );
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
}

#[test]
fn ctrl_c_stops_a_conversion_from_a_stalled_pipe_and_leaves_nothing() {
    use std::io::Write;
    let dir = TempDir::new("intr");
    let fifo = dir.file("in.fifo");
    run_ok("mkfifo", &[&fifo]);
    for (command, start) in [
        (
            "pcap2json",
            std::fs::read(REAL_CAPTURE).unwrap()[..2000].to_vec(),
        ),
        ("json2pcap", CAPTURE_DIALECT.as_bytes().to_vec()),
    ] {
        let out = dir.file("out");
        let mut child = Command::new(common::myinit_bin())
            .args(["-c", &format!("{command} {fifo} {out}; echo after")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Some packets, then the writer stays open without writing more.
        let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writer.write_all(&start).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        assert!(child.try_wait().unwrap().is_none(), "{command} ended early");
        run_ok("kill", &["-INT", &child.id().to_string()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{command} did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = common::MyinitRun::from(child.wait_with_output().unwrap());
        drop(writer);
        assert_eq!(run.status, 130, "{run:?}");
        assert_eq!(run.stdout, "", "{run:?}");
        assert_eq!(run.stderr, format!("-c:1: {command}: interrupted\n"));
        assert_eq!(dir.files(), ["in.fifo"], "{command}");
    }
}
