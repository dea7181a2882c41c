//! `expect` and named tests, for real: packets injected into a router
//! namespace (a translator stand-in: the kernel rewrites TTL, MACs and
//! the header checksum), judged live on the far veth and on a capture of
//! it, with the harness's
//! specs, exact files, checksum checks (an ICMP error quoting a packet
//! whose checksum is broken), `--none`, `--only` with ND and ARP around,
//! and KTAP from a script of named tests, one failing on a kernel WARNING.

mod common;

use common::{MyinitIn, Netns, TempDir};
use serde_json::{json, Value};

const SRC_MAC: &str = "02:00:00:00:00:01";

/// A router, the translator stand-in: a namespace forwarding from veth
/// a0 (packets injected into its peer a1 arrive there) to b0, whose peer
/// b1 receives them with the TTL one less and the header checksum
/// recomputed, as the kernel rewrites them. Returns a0's MAC, the one
/// injected frames go to.
fn router(tag: &str) -> (Netns, String) {
    let ns = Netns::new(tag);
    // No MLD or router solicitations of the namespace's own in the counts.
    ns.no_ipv6();
    ns.veth("a0", "a1", None);
    ns.veth("b0", "b1", None);
    for dev in ["a0", "a1", "b0", "b1"] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    ns.ip(&["addr", "add", "192.0.2.254/24", "dev", "a0"]);
    ns.ip(&["addr", "add", "198.51.100.254/24", "dev", "b0"]);
    ns.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    ns.ip(&[
        "neigh",
        "add",
        "198.51.100.1",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "b0",
        "nud",
        "permanent",
    ]);
    let out = ns.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    assert!(out.status.success(), "{out:?}");
    let mac = ns.mac("a0").unwrap();
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    (ns, mac)
}

fn ether(dst: &str) -> Value {
    json!({"layertype":"ether","dst":dst,"src":SRC_MAC,"etype":"<auto>"})
}

fn ipv4(src: &str, dst: &str) -> Value {
    json!({"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":7,
        "flags":{"reserved":false,"dont_fragment":false,"more_fragments":false,"fragment_offset":0},
        "ttl":64,"proto":"<auto>","chksum":"<auto>","src":src,"dst":dst,"options":[]})
}

fn udp(dport: u16) -> Value {
    json!({"layertype":"Udp","sport":5000,"dport":dport,"len":"<auto>","chksum":"<auto>"})
}

fn line(i: u64, layers: Vec<Value>) -> String {
    json!({"timestamp_us": 1_700_000_000_000_000u64 + i * 1000, "layers": layers}).to_string()
}

/// An ICMP "fragmentation needed" error quoting an ICMP echo request,
/// every length and checksum `<auto>` unless `inner_checksum` is given.
fn icmp_error(mac: &str, inner_checksum: Value) -> Vec<Value> {
    vec![
        ether(mac),
        ipv4("192.0.2.9", "203.0.113.2"),
        json!({"layertype":"Icmp","typ":3,"code":4,"chksum":"<auto>"}),
        json!({"layertype":"raw","data":[0,0,5,220]}),
        ipv4("203.0.113.2", "198.51.100.1"),
        json!({"layertype":"Icmp","typ":8,"code":0,"chksum":inner_checksum}),
        json!({"layertype":"echo","identifier":7,"sequence":1}),
    ]
}

#[test]
fn expect_waits_for_the_rewritten_packet_and_shows_each_differing_field() {
    let (ns, mac) = router("xlive");
    let dir = TempDir::new("xlive");
    let input = dir.write(
        "in.jsonl",
        line(
            0,
            vec![
                ether(&mac),
                ipv4("192.0.2.1", "203.0.113.2"),
                udp(9999),
                json!({"layertype":"raw","data":[104,105]}),
            ],
        ) + "\n",
    );
    // Armed first, so the packet injected before `expect` counts; the
    // second expect sees nothing new and times out.
    let run = ns.myinit(&format!(
        "expect arm b1\ninject {input} a1\n\
         expect b1 rx --within 10 --layers '[{{\"layertype\":\"Ip\",\"ttl\":63,\"src\":\"192.0.2.1\"}},{{\"layertype\":\"Udp\",\"dport\":9999}}]' udp port 9999\n\
         inject {input} a1\n\
         expect b1 rx --within 2 --layers '[{{\"layertype\":\"Ip\",\"ttl\":64}}]' udp\n\
         expect b1 rx --within 0.5 udp port 1\n"
    ));
    assert_eq!(run.status, 1, "{run:#?}");
    let ok = run
        .stdout
        .lines()
        .find(|l| l.starts_with("expect: ok b1: 1 packet matching rx `udp port 9999` Ip{src=192.0.2.1 ttl=63} Udp{dport=9999} in "))
        .unwrap_or_else(|| panic!("{run:#?}"));
    // It returned when the packet came, not at the end of its 10 s.
    let ms: u64 = ok.rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(ms < 5000, "{ok}");
    // The rewritten field, per packet, in Jool's words.
    assert!(
        run.stdout.contains("rx #1 Ip.ttl: expected 64, got 63\n"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "expect: FAIL b1: expected 1 packet matching rx `udp` Ip{ttl=64}, got 0 within "
        ),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "expect: FAIL b1: expected 1 packet matching rx `udp port 1`, got 0 within 0."
        ),
        "{run:#?}"
    );
    // The packet list: one line per packet seen.
    assert!(run.stdout.contains("rx     1 "), "{run:#?}");
}

#[test]
fn none_passes_only_when_nothing_matches_and_only_ignores_neighbour_noise() {
    let (ns, mac) = router("xnone");
    let dir = TempDir::new("xnone");
    let arp = json!({"layertype":"Arp","hwtype":1,"ptype":2048,"hwlen":6,"plen":4,"op":1,
        "hwsrc":SRC_MAC,"psrc":"192.0.2.1","hwdst":"00:00:00:00:00:00","pdst":"192.0.2.2"});
    let ns_solicit = vec![
        json!({"layertype":"ether","dst":"33:33:ff:00:00:02","src":SRC_MAC,"etype":"<auto>"}),
        json!({"layertype":"Ipv6","version_class":1610612736,"payload_length":"<auto>","next_header":"<auto>","hop_limit":255,"src":"fe80::1","dst":"ff02::1:ff00:2"}),
        json!({"layertype":"Icmpv6","type_":135,"code":0,"checksum":"<auto>"}),
        json!({"layertype":"icmpv6NeighborSolicitation","reserved":0,"target_address":"fe80::2","options":[]}),
    ];
    let udp_packet = |port| vec![ether(&mac), ipv4("192.0.2.1", "203.0.113.2"), udp(port)];
    let noisy = dir.write(
        "noisy.jsonl",
        [
            line(0, vec![json!({"layertype":"ether","dst":"ff:ff:ff:ff:ff:ff","src":SRC_MAC,"etype":"<auto>"}), arp]),
            line(1, ns_solicit),
            line(2, udp_packet(9999)),
        ]
        .join("\n"),
    );
    let extra = dir.write("extra.jsonl", line(0, udp_packet(7777)));
    let run = ns.myinit(&format!(
        "expect arm b1\ninject {noisy} a1\n\
         expect b1 rx --only --within 5 udp port 9999\n\
         expect b1 rx --none --within 0.3 udp port 9999\n\
         inject {extra} a1\n\
         expect b1 rx --none --within 5 udp port 7777\n"
    ));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains("expect: ok b1: 1 packet matching rx `udp port 9999` in "),
        "--only with ARP and ND around: {run:#?}"
    );
    assert!(
        run.stdout
            .contains("expect: ok b1: 0 packets matching rx `udp port 9999` in "),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "expect: FAIL b1: expected 0 packets matching rx `udp port 7777`, got 1 within "
        ),
        "{run:#?}"
    );
    // --only fails on a packet that is not noise.
    let run = ns.myinit(&format!(
        "expect arm b1\ninject {extra} a1\ninject {noisy} a1\nexpect b1 rx --only --within 5 udp port 9999"
    ));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stderr.contains(
            "expect: FAIL b1: 1 other packet besides those matching rx `udp port 9999`: rx #1"
        ),
        "{run:#?}"
    );
}

/// Captures what b1 receives of `packets` (layer lists) injected into a1.
fn capture(ns: &Netns, dir: &TempDir, name: &str, packets: Vec<Vec<Value>>) -> String {
    let text: Vec<String> = packets
        .into_iter()
        .enumerate()
        .map(|(i, p)| line(i as u64, p))
        .collect();
    let input = dir.write(&format!("{name}-in.jsonl"), text.join("\n") + "\n");
    let out = dir.file(&format!("{name}.jsonl"));
    ns.myinit(&format!(
        "capture start b1 {out}\nexpect arm b1\ninject {input} a1\nexpect b1 rx --within 5 --count {}\ncapture stop all",
        text.len()
    ))
    .assert_ok();
    out
}

#[test]
fn specs_are_judged_as_the_harness_judges_them_checksums_and_quoted_packets_included() {
    let (ns, mac) = router("xspec");
    let dir = TempDir::new("xspec");
    let good = capture(
        &ns,
        &dir,
        "good",
        vec![
            vec![
                ether(&mac),
                ipv4("192.0.2.1", "203.0.113.2"),
                udp(9999),
                json!({"layertype":"raw","data":[104,105,33]}),
            ],
            icmp_error(&mac, json!("<auto>")),
        ],
    );
    let spec = |checks: Value| -> String {
        let body = json!({"expected_rx_count": 2, "checks": checks}).to_string();
        dir.write("spec.jsonl", format!("# packet assertion\n{body}\n"))
    };
    let udp_check = json!({"count":1,"packet":{"direction":"rx","valid_checksums":true,"layers":[
        {"layertype":"Ip","ttl":63,"proto":17,"nonzero_fields":["chksum"]},
        {"layertype":"Udp","dport":9999,"nonzero_fields":["chksum"]},
        {"layertype":"raw","data_prefix":[104,105]}]}});
    let icmp_check = json!({"count":1,"packet":{"direction":"rx","valid_checksums":true,
        "valid_quoted_icmp_checksum":true,"layers":[
        {"layertype":"Icmp","typ":3,"code":4}]}});
    let s = spec(json!([udp_check, icmp_check]));
    let run = ns.myinit(&format!("expect {good} --spec {s}"));
    run.assert_ok();
    assert!(
        run.stdout.contains(&format!(
            "expect: ok {good}: 2 packets, 2 received, 2 checks hold"
        )),
        "{run:#?}"
    );

    // A wrong field: the check fails with the field's diff.
    let wrong = json!({"count":1,"packet":{"direction":"rx","layers":[
        {"layertype":"Ip","ttl":64,"proto":17},{"layertype":"raw","data_prefix":[104,106]}]}});
    let s = spec(json!([wrong]));
    let run = ns.myinit(&format!("expect {good} --spec {s}"));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(run.stdout.contains("check 1: expected 1 packet matching rx Ip{proto=17 ttl=64} raw{data_prefix=2 bytes}, got 0\n"), "{run:#?}");
    assert!(
        run.stdout.contains("  rx #1 Ip.ttl: expected 64, got 63\n"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("  rx #1 raw.data: expected to start with [104,106], got [104,105,33] (differs at byte 1)\n"), "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "expect: FAIL {good}: check 1: expected 1 packet, got 0\n"
        )),
        "{run:#?}"
    );

    // The quoted echo request's checksum broken on purpose: only the
    // quoted-checksum check sees it.
    let broken = capture(&ns, &dir, "broken", vec![icmp_error(&mac, json!(4660))]);
    let body = json!({"expected_rx_count": 1, "checks": [icmp_check]}).to_string();
    let s = dir.write("quoted.jsonl", format!("# packet assertion\n{body}\n"));
    let run = ns.myinit(&format!("expect {broken} --spec {s}"));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stdout.contains(
            "check 1: rx #1 checksum: invalid quoted ICMPv4 checksum: field=0x1234, expected=0x"
        ),
        "{run:#?}"
    );
    let lenient = json!({"count":1,"packet":{"direction":"rx","valid_checksums":true,"layers":[
        {"layertype":"Icmp","typ":3}]}});
    let body = json!({"expected_rx_count": 1, "checks": [lenient]}).to_string();
    let s = dir.write("outer.jsonl", format!("# packet assertion\n{body}\n"));
    ns.myinit(&format!("expect {broken} --spec {s}"))
        .assert_ok();

    // A UDP checksum broken on purpose passes the router untouched.
    let stale = capture(
        &ns,
        &dir,
        "stale",
        vec![vec![
            ether(&mac),
            ipv4("192.0.2.1", "203.0.113.2"),
            json!({"layertype":"Udp","sport":5000,"dport":9999,"len":"<auto>","chksum":4660}),
        ]],
    );
    let body = json!({"expected_rx_count": 1, "checks": [{"count":1,"packet":{"valid_checksums":true,"layers":[{"layertype":"Udp"}]}}]}).to_string();
    let s = dir.write("stale-spec.jsonl", format!("# packet assertion\n{body}\n"));
    let run = ns.myinit(&format!("expect {stale} --spec {s}"));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stdout
            .contains("check 1: rx #1 checksum: invalid Udp checksum: field=0x1234, expected=0x"),
        "{run:#?}"
    );

    // Exact: equal to itself, timestamps aside; a changed field is named.
    let twin = dir.write(
        "twin.jsonl",
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("\"timestamp_us\":1", "\"timestamp_us\":2"),
    );
    ns.myinit(&format!("expect {good} --exact {twin}"))
        .assert_ok();
    let changed = dir.write(
        "changed.jsonl",
        std::fs::read_to_string(&good)
            .unwrap()
            .replacen("\"ttl\":63", "\"ttl\":62", 1),
    );
    let run = ns.myinit(&format!("expect {good} --exact {changed}"));
    assert_eq!(run.status, 1, "{run:#?}");
    assert!(
        run.stdout.contains("rx #1 Ip.ttl: expected 62, got 63\n"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "expect: FAIL {good}: rx #1 Ip.ttl: expected 62, got 63\n"
        )),
        "{run:#?}"
    );
}

#[test]
fn bad_specs_and_missing_files_get_one_line() {
    let dir = TempDir::new("expect-bad");
    let capture = dir.write("c.jsonl", "");
    let cases = [
        ("{\"expected_rx_count\":1,\"checks\":[{\"count\":1,\"packet\":{\"layers\":[{\"layertype\":\"Ipv7\"}]}}]}",
         "checks[0]: packet: layers[0]: unknown layertype `Ipv7` (known: ether, dot1Q, Arp, Ip, Ipv6,"),
        ("{\"expected_rx_count\":1,\"checks\":[{\"count\":1,\"packet\":{\"layers\":[{\"layertype\":\"Ipv6\",\"hoplimit\":1}]}}]}",
         "checks[0]: packet: layers[0]: Ipv6 has no field `hoplimit` (its fields: version_class, payload_length, next_header, hop_limit, src, dst; and data_prefix, nonzero_fields)"),
        ("{\"expected_rx_count\":1,\"checks\":[", "not valid JSON: EOF while parsing"),
    ];
    for (text, message) in cases {
        let spec = dir.write("spec.json", text);
        let run = common::myinit(&format!("expect {capture} --spec {spec}"));
        assert_eq!(run.status, 1, "{run:#?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(run.stderr.contains(message), "{run:#?}");
    }
    let run = common::myinit(&format!(
        "expect {}/nothing.jsonl --exact {capture}",
        dir.dir().display()
    ));
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .contains("nothing.jsonl: No such file or directory"),
        "{run:#?}"
    );
    let run = common::myinit("expect nosuchif0 rx udp");
    assert!(
        run.stderr.contains("nosuchif0: no such interface or file"),
        "{run:#?}"
    );
}

#[test]
fn named_tests_report_ktap_and_a_kernel_warning_fails_its_test() {
    let ns = Netns::new("xktap");
    let script = "test first\necho one\n\
                  test second\nexpect nothing-here.jsonl --count 1\necho still-running\n\
                  test warned\necho '<4>WARNING: CPU: 0 PID: 1 at expect_test.c:1 myinit_expect_selftest+0x0/0x10' > /dev/kmsg\n\
                  test skipped-one\necho never\n";
    let run = ns.exec(
        "env",
        &[
            "MYINIT_TEST_FILTER=first,second,warn*",
            common::myinit_bin(),
            "-c",
            script,
        ],
    );
    let run = common::MyinitRun::from(run);
    assert_eq!(run.status, 1, "{run:#?}");
    let ktap: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("# ") && *l != "one" && *l != "still-running")
        .collect();
    assert_eq!(
        ktap,
        [
            "KTAP version 1",
            "ok 1 - first",
            "not ok 2 - second # expect: nothing-here.jsonl: no such interface or file",
            "not ok 3 - warned # kernel WARNING in myinit_expect_selftest+0x0/0x10",
            "ok 4 - skipped-one # SKIP not selected by MYINIT_TEST_FILTER",
            "1..4",
        ],
        "{run:#?}"
    );
    // A failed step fails its test, not the script; the totals close the run.
    assert!(run.stdout.contains("still-running\n"), "{run:#?}");
    assert!(!run.stdout.contains("never"), "{run:#?}");
    assert!(run.stdout.contains("# test 3: warned\n"), "{run:#?}");
    assert!(
        run.stdout
            .ends_with("# Totals: pass:1 fail:2 xfail:0 xpass:0 skip:1 error:0\n"),
        "{run:#?}"
    );
}

#[test]
fn an_interface_that_goes_away_mid_wait_ends_the_wait_in_one_line() {
    let (ns, _) = router("xgone");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, common::myinit_bin(), "-c"])
        .arg("expect arm b1\necho armed\nexpect b1 rx --within 30 udp")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    ns.ip(&["link", "del", "b0"]);
    let started = std::time::Instant::now();
    let run = common::MyinitRun::from(child.wait_with_output().unwrap());
    assert!(started.elapsed().as_secs() < 10, "{run:#?}");
    assert_eq!(run.status, 1, "{run:#?}");
    assert_eq!(
        run.stderr, "-c:3: expect: b1: the interface went away while waiting\n",
        "{run:#?}"
    );
}
