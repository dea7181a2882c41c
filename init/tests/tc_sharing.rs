//! Our TC programs share a hook: capture attaches ahead of whatever is
//! there and records what the stack sent; the fake host passes every
//! packet that is not its own to the next program (`TC_ACT_UNSPEC`), so a
//! second fake-host owner, a capture or the user's own program after it
//! still runs. Each test runs on both TC paths: TCX and clsact + cls_bpf.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{myinit_bin, unique, Netns, TempDir};

const HERE: &str = "10.79.0.1";

/// The two TC paths: TCX (where the kernel has it) and clsact.
const PATHS: [&str; 2] = ["tcx", "clsact"];

/// A namespace with a veth pair (both ends here, the peer up without
/// addresses: the fake hosts are "behind" it) with 10.79.0.1/24 on the
/// first end.
fn bench(tag: &str) -> (Netns, String, String) {
    let ns = Netns::new(tag);
    let (dev, peer) = (unique("tsa"), unique("tsb"));
    ns.veth(&dev, &peer, None);
    ns.ip(&["addr", "add", &format!("{HERE}/24"), "dev", &dev]);
    for name in [&peer, &dev] {
        ns.ip(&["link", "set", name, "up"]);
    }
    (ns, dev, peer)
}

/// myinit running `commands` with the TC path forced.
fn myinit_on(ns: &Netns, path: &str, commands: &str) -> common::MyinitRun {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, myinit_bin(), "-c", commands])
        .env("MYINIT_TC", path)
        .output()
        .expect("myinit");
    common::MyinitRun::from(out)
}

fn tcpdump(file: &str) -> String {
    common::run_ok("tcpdump", &["-r", file, "-nn", "-t"])
}

#[test]
fn a_capture_records_the_requests_a_fake_host_answers_whichever_started_first() {
    for path in PATHS {
        for capture_first in [false, true] {
            let (ns, d, _) = bench("tsc");
            let dir = TempDir::new("myts");
            let file = dir.file("c.pcap");
            let fakehost = format!("fakehost add {d} 10.79.0.5 icmp --backend ebpf");
            let capture = format!("capture start {d} {file} --backend ebpf");
            let (first, second) = if capture_first {
                (&capture, &fakehost)
            } else {
                (&fakehost, &capture)
            };
            let r = myinit_on(
                &ns,
                path,
                &format!(
                    "{first}; {second}; /usr/bin/ping -c 2 -i 0.2 -W 1 10.79.0.5; \
                     capture stop {d}; fakehost del {d} 10.79.0.5"
                ),
            );
            let case = format!("{path}, capture first: {capture_first}");
            r.assert_ok();
            assert!(
                r.stdout.contains("2 packets transmitted, 2 received"),
                "{case}: {r:#?}"
            );
            // The fake host's redirect consumes each request: the capture
            // sees it only by running before it.
            let text = tcpdump(&file);
            for want in [
                "ARP, Request who-has 10.79.0.5 tell 10.79.0.1",
                "ARP, Reply 10.79.0.5 is-at",
            ] {
                assert!(text.contains(want), "{case}: no {want:?} in\n{text}");
            }
            for (want, n) in [("ICMP echo request", 2), ("ICMP echo reply", 2)] {
                assert_eq!(text.matches(want).count(), n, "{case}: {want}\n{text}");
            }
        }
    }
}

/// myinit running COMMANDS in the background until dropped.
struct Background(std::process::Child);

impl Background {
    /// Starts `myinit -c "COMMANDS; echo READY; sleep 60"` and waits for READY.
    fn start(ns: &Netns, path: &str, commands: &str) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args([
                myinit_bin(),
                "-c",
                &format!("{commands}; echo READY; sleep 60"),
            ])
            .env("MYINIT_TC", path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match lines.next() {
                Some(Ok(line)) if line == "READY" => break,
                Some(Ok(_)) if Instant::now() < deadline => {}
                _ => {
                    let _ = child.kill();
                    panic!("myinit ({commands}) ended before READY");
                }
            }
        }
        Background(child)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_fake_host_owners_on_one_link_both_answer() {
    for path in PATHS {
        let (ns, d, _) = bench("tso");
        // Two processes, each with its own program on the same hook.
        let first = Background::start(
            &ns,
            path,
            &format!("fakehost add {d} 10.79.0.6 icmp --backend ebpf"),
        );
        let second = Background::start(
            &ns,
            path,
            &format!(
                "fakehost add {d} 10.79.0.7 icmp --backend ebpf; \
                 fakehost add {d} 2001:db8:79::7 --backend ebpf"
            ),
        );
        for target in ["10.79.0.6", "10.79.0.7"] {
            let out = ns.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", target]);
            assert!(
                out.status.success(),
                "{path}: {target} unanswered: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        // The later owner's DAD answer too: its NA marks the address taken.
        ns.ip(&["addr", "add", "2001:db8:79::7/64", "dev", &d]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ns
            .ip(&["-6", "addr", "show", "dev", &d])
            .contains("dadfailed")
        {
            assert!(Instant::now() < deadline, "{path}: DAD was not answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(second);
        drop(first);
    }
}

#[test]
fn what_the_fake_host_does_not_answer_reaches_the_next_program() {
    for path in PATHS {
        let (ns, d, _) = bench("tsn");
        // The next program: debug-tc's counting program, after the fake
        // host (TCX appends it; clsact puts a new filter first, so it is
        // attached before the fake host there).
        let counter = format!("debug-tc attach {d} egress --seconds 0");
        let fakehost = format!("fakehost add {d} 10.79.0.5 icmp --backend ebpf");
        let (first, second) = match path {
            "tcx" => (&fakehost, &counter),
            _ => (&counter, &fakehost),
        };
        // Nobody answers ARP for .9: three requests, none the fake host's.
        let r = myinit_on(
            &ns,
            path,
            &format!(
                "{first}; {second}; /usr/bin/ping -c 1 -W 3 10.79.0.9; \
                 debug-tc detach {d} egress"
            ),
        );
        let seen = r
            .stdout
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix(&format!("{d} egress: detached; "))?;
                rest.split(" packet(s) seen").next()?.parse::<u64>().ok()
            })
            .unwrap_or_else(|| panic!("{path}: no count: {r:#?}"));
        // The echo request (queued) never leaves: at least the ARP requests.
        assert!(seen >= 3, "{path}: the next program saw {seen}: {r:#?}");
    }
}

#[test]
fn a_capture_records_what_a_foreign_program_attached_before_it_drops() {
    for path in PATHS {
        let (ns, d, peer) = bench("tsf");
        let dir = TempDir::new("myts");
        let file = dir.file("f.jsonl");
        // The user's own program, first on the hook: a classic BPF
        // direct-action filter that drops everything (TC_ACT_SHOT).
        assert!(ns
            .exec("tc", &["qdisc", "add", "dev", &d, "clsact"])
            .status
            .success());
        let added = ns.exec(
            "tc",
            &[
                "filter",
                "add",
                "dev",
                &d,
                "egress",
                "bpf",
                "bytecode",
                "1,6 0 0 2,",
                "da",
            ],
        );
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        let rx_before = rx_packets(&ns, &peer);
        let r = myinit_on(
            &ns,
            path,
            &format!(
                "capture start {d} {file} --backend ebpf; \
                 /usr/bin/ping -c 1 -W 2 10.79.0.9; capture stop {d}"
            ),
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let requests = text
            .lines()
            .filter(|l| l.contains(r#""layertype":"Arp""#) && l.contains(r#""direction":"tx""#))
            .count();
        assert!(requests >= 1, "{path}: {r:#?}\n{text}");
        // Dropped: nothing reached the peer.
        assert_eq!(rx_packets(&ns, &peer), rx_before, "{path}");
    }
}

fn rx_packets(ns: &Netns, dev: &str) -> u64 {
    let v = ns.ip_json(&["-s", "link", "show", "dev", dev]);
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}
