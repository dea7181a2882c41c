//! fakehost: the kernel of a namespace reaches fake hosts on the far side
//! of a veth or TAP, with the eBPF backend and the packet backend, checked
//! with the tools a user would use (iputils ping, ip neigh, tcpdump and
//! tshark, rdisc6) and with myinit's own ping.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{myinit_bin, run, MyinitIn, Netns};

/// A namespace with a veth pair v0/v1 (both here: the packet backend sends
/// its answers on the peer), v0 with 10.77.0.1/24 and 2001:db8:77::1/64.
fn veth_ns() -> Netns {
    let ns = Netns::new("fh");
    ns.veth("v0", "v1", None);
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "v0"]);
    ns.ip(&["addr", "add", "2001:db8:77::1/64", "dev", "v0", "nodad"]);
    ns.ip(&["link", "set", "v1", "up"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns
}

/// myinit running COMMANDS in the background until dropped (SIGTERM, which
/// stops its jobs): the fake hosts answer while other tools run.
struct Server {
    child: Child,
    stdout: String,
}

impl Server {
    /// Starts `myinit -c "COMMANDS; echo READY; sleep 60"` and waits for READY.
    fn start(ns: &Netns, commands: &str, clsact: bool) -> Server {
        Self::start_with_stderr(ns, commands, clsact, Stdio::null())
    }

    /// `start`, its stderr (the log lines) going to `stderr`.
    fn start_with_stderr(ns: &Netns, commands: &str, clsact: bool, stderr: Stdio) -> Server {
        let script = format!("{commands}; echo READY; sleep 60");
        let net = format!("--net=/run/netns/{}", ns.name);
        let mut cmd = Command::new("nsenter");
        cmd.args([net.as_str(), myinit_bin(), "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if clsact {
            cmd.env("MYINIT_TC", "clsact");
        } else {
            cmd.env_remove("MYINIT_TC");
        }
        let mut child = cmd.spawn().expect("cannot start myinit");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut stdout = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("myinit ended before READY: {stdout}");
            }
            if line.trim() == "READY" {
                break;
            }
            stdout.push_str(&line);
        }
        Server { child, stdout }
    }

    /// The MAC `fakehost add` printed for IP.
    fn mac_of(&self, ip: &str) -> String {
        let line = self
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {ip} mac ")))
            .unwrap_or_else(|| panic!("no add line for {ip} in {}", self.stdout));
        line.split(" mac ").nth(1).unwrap()[..17].to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = run("kill", &["-TERM", &self.child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits (at most 15 s) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kernel_pings_fake_hosts(backend: &str) {
    let ns = veth_ns();
    let pcap = std::env::temp_dir().join(format!("{}.pcap", ns.name));
    let pcap = pcap.to_str().unwrap().to_string();
    let server = Server::start(
        &ns,
        &format!(
            "fakehost add v0 10.77.0.2 icmp --backend {backend}; \
             fakehost add v0 2001:db8:77::2 icmp --backend {backend}"
        ),
        false,
    );
    assert!(
        server.stdout.contains(&format!("backend {backend}")),
        "{}",
        server.stdout
    );
    let mut tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "tcpdump",
            "-i",
            "v0",
            "-U",
            "-w",
            &pcap,
            "icmp or icmp6 or arp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));

    // Replies carry the host's own TTL / hop limit, not the request's.
    let v4 = ns.exec(
        "ping",
        &["-c", "3", "-i", "0.2", "-W", "2", "-t", "3", "10.77.0.2"],
    );
    assert!(v4.status.success(), "ping 10.77.0.2: {}", text(&v4));
    assert!(text(&v4).contains("3 received"), "{}", text(&v4));
    assert_eq!(text(&v4).matches(" ttl=64 ").count(), 3, "{}", text(&v4));
    let v6 = ns.exec(
        "ping",
        &[
            "-6",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-t",
            "5",
            "2001:db8:77::2",
        ],
    );
    assert!(v6.status.success(), "ping -6: {}", text(&v6));
    assert_eq!(text(&v6).matches(" ttl=64 ").count(), 3, "{}", text(&v6));
    // myinit's own ping, from another process: the answers are the kernel's
    // (or the server's), not tied to who asks.
    let own = ns.myinit("ping -c 2 10.77.0.2; ping -c 2 2001:db8:77::2");
    own.assert_ok();
    assert_eq!(own.stdout.matches("2 received").count(), 2, "{own:#?}");

    // The kernel learned the fake MACs, and no router flag without `router`.
    let neigh4 = ns.ip(&["neigh", "show", "10.77.0.2", "dev", "v0"]);
    assert!(
        neigh4.contains(&format!("lladdr {}", server.mac_of("10.77.0.2"))),
        "{neigh4}"
    );
    assert_eq!(server.mac_of("10.77.0.2"), "02:00:0a:4d:00:02");
    let neigh6 = ns.ip(&["-6", "neigh", "show", "2001:db8:77::2", "dev", "v0"]);
    assert!(
        neigh6.contains(&format!("lladdr {}", server.mac_of("2001:db8:77::2"))),
        "{neigh6}"
    );
    assert!(!neigh6.contains("router"), "{neigh6}");

    // The answers as tcpdump saw them, checked by tshark with checksum
    // validation on: every reply and NA well-formed with a good checksum.
    std::thread::sleep(Duration::from_millis(500));
    let _ = run("kill", &["-INT", &tcpdump.id().to_string()]);
    let _ = tcpdump.wait();
    let fields = run(
        "tshark",
        &[
            "-r",
            &pcap,
            "-o",
            "ip.check_checksum:TRUE",
            "-Y",
            "icmp.type == 0 || icmpv6.type == 129 || icmpv6.type == 136 || arp.opcode == 2",
            "-T",
            "fields",
            "-e",
            "frame.protocols",
            "-e",
            "ip.checksum.status",
            "-e",
            "icmp.checksum.status",
            "-e",
            "icmpv6.checksum.status",
            "-e",
            "_ws.expert.severity",
        ],
    );
    let _ = std::fs::remove_file(&pcap);
    let lines = String::from_utf8_lossy(&fields.stdout).into_owned();
    let count = |what: &str| lines.lines().filter(|l| l.contains(what)).count();
    assert!(count(":arp") >= 1, "no ARP reply seen: {lines}");
    assert!(
        count(":icmp\t") + count(":icmp:") >= 5,
        "echo replies: {lines}"
    );
    assert!(count(":icmpv6") >= 6, "ICMPv6 replies and NA: {lines}");
    for line in lines.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        for status in &cols[1..4] {
            assert!(status.is_empty() || *status == "1", "bad checksum: {line}");
        }
        // An expert warning or error: a malformed frame.
        assert!(
            cols.get(4).is_none_or(|s| s.is_empty()
                || s.split(',')
                    .all(|v| v.parse::<u32>().unwrap_or(0) < 0x0060_0000)),
            "{line}"
        );
    }
    drop(server);
}

#[test]
fn the_kernel_pings_fake_v4_and_v6_hosts_answered_by_ebpf() {
    kernel_pings_fake_hosts("ebpf");
}

#[test]
fn the_kernel_pings_fake_v4_and_v6_hosts_answered_by_the_packet_backend() {
    kernel_pings_fake_hosts("packet");
}

fn without_icmp_and_after_del_nothing_is_answered(backend: &str) {
    let ns = veth_ns();
    let r = ns.myinit(&format!(
        "fakehost add v0 10.77.0.2 icmp --backend {backend}; fakehost add v0 10.77.0.3 --backend {backend}; \
         ping -c 2 10.77.0.2; ping -c 1 -W 1 10.77.0.3; \
         /usr/bin/ping -c 1 -W 1 -s 3000 10.77.0.2; fakehost show; \
         fakehost del v0 10.77.0.2; fakehost del v0 10.77.0.3; debug-tc show v0 egress; \
         ping -c 1 -W 1 10.77.0.2"
    ));
    let out = &r.stdout;
    // Answered while it was there; no echo reply without `icmp`.
    assert!(out.contains("2 packets transmitted, 2 received"), "{r:#?}");
    assert!(out.contains("1 packets transmitted, 0 received"), "{r:#?}");
    // 10.77.0.3 answered ARP (ping sent its request), not the echo.
    let row = out
        .lines()
        .find(|l| l.starts_with("v0 ") && l.contains(" 10.77.0.3 "))
        .expect("show row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[5..10], &["1", "0", "0", "0", "0"], "{row}");
    // A fragmented request (3000 bytes over MTU 1500) is not answered,
    // nor counted: only whole datagrams are.
    let row = out
        .lines()
        .find(|l| l.starts_with("v0 ") && l.contains(" 10.77.0.2 "))
        .expect("show row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[8], "2", "ECHO: {row}");
    // The last del detached at once: no program left, no more answers.
    assert!(
        out.contains("program detached") || backend == "packet",
        "{r:#?}"
    );
    assert!(
        out.contains("v0 egress: 0 BPF program(s) attached"),
        "{r:#?}"
    );
    assert_eq!(
        out.matches("1 packets transmitted, 0 received").count(),
        3,
        "{r:#?}"
    );
    let filters = text(&ns.exec("tc", &["filter", "show", "dev", "v0", "egress"]));
    assert!(!filters.contains("fakehost"), "{filters}");
}

#[test]
fn without_icmp_and_after_del_nothing_is_answered_by_ebpf() {
    without_icmp_and_after_del_nothing_is_answered("ebpf");
}

#[test]
fn without_icmp_and_after_del_nothing_is_answered_by_the_packet_backend() {
    without_icmp_and_after_del_nothing_is_answered("packet");
}

fn routers_advertise_and_the_kernel_autoconfigures(backend: &str) {
    let ns = veth_ns();
    let server = Server::start(
        &ns,
        &format!(
            "fakehost add v0 2001:db8:77::2 router prefix 2001:db8:99::/64 --backend {backend}; \
             fakehost add v0 2001:db8:77::3 --backend {backend}"
        ),
        false,
    );
    // Resolve both (no icmp: the pings fail, the NDP happens).
    for ip in ["2001:db8:77::2", "2001:db8:77::3"] {
        ns.exec("ping", &["-6", "-c", "1", "-W", "1", ip]);
    }
    let router = ns.ip(&["-6", "neigh", "show", "2001:db8:77::2", "dev", "v0"]);
    assert!(router.contains("router"), "NA without R: {router}");
    let host = ns.ip(&["-6", "neigh", "show", "2001:db8:77::3", "dev", "v0"]);
    assert!(
        host.contains("lladdr") && !host.contains("router"),
        "{host}"
    );

    // rdisc6 sends a Router Solicitation and prints the advertisement.
    let rdisc = ns.exec("rdisc6", &["-1", "-w", "2000", "v0"]);
    let said = text(&rdisc);
    assert!(said.contains("2001:db8:99::/64"), "rdisc6: {said}");
    assert!(
        said.contains(&server.mac_of("2001:db8:77::2").to_uppercase())
            || said
                .to_lowercase()
                .contains(&server.mac_of("2001:db8:77::2")),
        "{said}"
    );

    // The kernel's own RS at link up: it autoconfigures an address in the
    // prefix (link down flushed the static one; not needed here).
    ns.ip(&["link", "set", "v0", "down"]);
    ns.ip(&["link", "set", "v0", "up"]);
    wait_for("an address in 2001:db8:99::/64", || {
        ns.ip(&["-6", "addr", "show", "dev", "v0"])
            .contains("inet6 2001:db8:99:")
    });
    let routes = ns.ip(&["-6", "route", "show", "default"]);
    assert!(
        routes.contains("via fe80::"),
        "no default route from the RA: {routes}"
    );
    // As myinit ends (SIGTERM), the router says it goes (an RA of lifetime
    // 0) and the kernel drops the default route through it at once.
    drop(server);
    wait_for("the default route withdrawn", || {
        !ns.ip(&["-6", "route", "show", "default"])
            .contains("via fe80::")
    });
    // So does `del`: the route is there before it and gone after.
    let r = ns.myinit(&format!(
        "fakehost add v0 2001:db8:77::2 router prefix 2001:db8:99::/64 --backend {backend}; \
         /usr/sbin/ip link set v0 down; /usr/sbin/ip link set v0 up; sleep 4; \
         /usr/sbin/ip -6 route show default; fakehost del v0 2001:db8:77::2; sleep 0.5; \
         echo after-del; /usr/sbin/ip -6 route show default"
    ));
    let (before, after) = r.stdout.split_once("after-del").expect("after-del");
    assert!(before.contains("via fe80::"), "{r:#?}");
    assert!(!after.contains("via fe80::"), "{r:#?}");
}

#[test]
fn a_fake_router_advertises_its_prefix_with_ebpf() {
    routers_advertise_and_the_kernel_autoconfigures("ebpf");
}

#[test]
fn a_fake_router_advertises_its_prefix_with_the_packet_backend() {
    routers_advertise_and_the_kernel_autoconfigures("packet");
}

fn dad_probe_fails_for_a_fake_address(backend: &str) {
    let ns = veth_ns();
    let _server = Server::start(
        &ns,
        &format!("fakehost add v0 2001:db8:77::5 --backend {backend}"),
        false,
    );
    ns.ip(&["addr", "add", "2001:db8:77::5/64", "dev", "v0"]);
    wait_for("dadfailed", || {
        ns.ip(&["-6", "addr", "show", "dev", "v0"])
            .contains("dadfailed")
    });
}

#[test]
fn a_dad_probe_for_a_fake_address_gets_it_marked_dadfailed_with_ebpf() {
    dad_probe_fails_for_a_fake_address("ebpf");
}

#[test]
fn a_dad_probe_for_a_fake_address_gets_it_marked_dadfailed_with_the_packet_backend() {
    dad_probe_fails_for_a_fake_address("packet");
}

fn fake_hosts_on_a_tap(backend: &str) {
    let ns = Netns::new("fht");
    let r = ns.myinit(&format!(
        "tap add t0; ip link set t0 up; ip addr add 10.78.0.1/24 dev t0; ip addr add 2001:db8:78::1/64 dev t0; \
         fakehost add t0 10.78.0.2 icmp --backend {backend}; fakehost add t0 2001:db8:78::2 icmp --backend {backend}; \
         sleep 2.5; ping -c 2 10.78.0.2; ping -c 2 2001:db8:78::2; fakehost show"
    ));
    r.assert_ok();
    assert_eq!(r.stdout.matches("2 received").count(), 2, "{r:#?}");
    let expected = if backend == "ebpf" {
        "ebpf ("
    } else {
        "packet (tap)"
    };
    assert!(r.stdout.contains(expected), "{r:#?}");
}

#[test]
fn fake_hosts_answer_on_a_tap_with_no_reader_with_ebpf() {
    fake_hosts_on_a_tap("ebpf");
}

#[test]
fn fake_hosts_answer_on_a_tap_through_the_tap_registry_with_the_packet_backend() {
    fake_hosts_on_a_tap("packet");
}

#[test]
fn several_hosts_on_several_interfaces_and_the_end_detaches_every_clsact_filter() {
    let ns = veth_ns();
    ns.veth("w0", "w1", None);
    ns.ip(&["addr", "add", "10.79.0.1/24", "dev", "w0"]);
    ns.ip(&["link", "set", "w1", "up"]);
    ns.ip(&["link", "set", "w0", "up"]);
    let server = Server::start(
        &ns,
        "fakehost add v0 10.77.0.2 icmp; fakehost add v0 10.77.0.3 icmp; \
         fakehost add w0 10.79.0.2 icmp; fakehost add w0 10.79.0.3 icmp --backend ebpf",
        true,
    );
    for ip in ["10.77.0.2", "10.77.0.3", "10.79.0.2", "10.79.0.3"] {
        let out = ns.exec("ping", &["-c", "1", "-W", "2", ip]);
        assert!(out.status.success(), "ping {ip}: {}", text(&out));
    }
    for dev in ["v0", "w0"] {
        let filters = text(&ns.exec("tc", &["filter", "show", "dev", dev, "egress"]));
        assert!(filters.contains("fakehost_egress"), "{dev}: {filters}");
    }
    // Ending myinit (as poweroff does: every job stopped) removes them all.
    drop(server);
    for dev in ["v0", "w0"] {
        let filters = text(&ns.exec("tc", &["filter", "show", "dev", dev, "egress"]));
        assert!(!filters.contains("fakehost"), "{dev} still has: {filters}");
    }
}

#[test]
fn bad_fakehost_input_gets_one_line_errors_and_changes_nothing() {
    let ns = veth_ns();
    // An L3 device: no link-layer addresses to answer for.
    let tun = ns.exec("ip", &["tuntap", "add", "rvtun0", "mode", "tun"]);
    assert!(tun.status.success(), "{}", text(&tun));
    let r = ns.myinit(
        "fakehost add v0 1.2.3; fakehost add nosuch0 10.77.0.2; fakehost add v0 10.77.0.2 mac zz; \
         fakehost add v0 10.77.0.2 router; fakehost add v0 2001:db8:77::9 prefix 2001:db8::/64; \
         fakehost add v0 10.77.0.2; fakehost add v0 10.77.0.2 icmp; fakehost del v0 10.77.0.9; \
         fakehost del v0 nope; fakehost add rvtun0 10.78.0.2; fakehost show",
    );
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("fakehost"))
        .collect();
    let expect = [
        "1.2.3: not an IPv4 or IPv6 address",
        "nosuch0: no such interface",
        "mac zz: not a MAC address",
        "router is for IPv6 fake hosts",
        "prefix is announced in Router Advertisements: it needs router",
        "v0 10.77.0.2: exists already",
        "v0 10.77.0.9: no such fake host",
        "nope: not an IPv4 or IPv6 address",
        "rvtun0: fake hosts need an Ethernet interface (veth, TAP, bridge…); this one is of ARPHRD type 65534",
    ];
    for e in expect {
        assert_eq!(
            errors.iter().filter(|l| l.contains(e)).count(),
            1,
            "{e}: {r:#?}"
        );
    }
    let rows: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("v0 ")).collect();
    assert_eq!(rows.len(), 1, "{r:#?}");
    assert!(
        rows[0].contains("10.77.0.2") && rows[0].ends_with(" -"),
        "the second add changed it: {r:#?}"
    );
}

fn a_flood_gets_rate_limited_log_lines_with_a_suppressed_count(backend: &str) {
    let ns = veth_ns();
    let log = std::env::temp_dir().join(format!("{}.log", ns.name));
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with_stderr(
        &ns,
        &format!("fakehost add v0 10.77.0.2 icmp --backend {backend}"),
        false,
        Stdio::from(file),
    );
    let flood = ns.exec("ping", &["-f", "-c", "2000", "-W", "2", "10.77.0.2"]);
    assert!(text(&flood).contains("2000 received"), "{}", text(&flood));
    drop(server);
    let lines = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let logged = lines
        .lines()
        .filter(|l| l.starts_with("ICMP: Echo request"))
        .count();
    // 2000 answers in well under 10 s: at most a burst and 20 lines a second.
    assert!(
        (1..300).contains(&logged),
        "{logged} echo lines logged: {lines}"
    );
    let suppressed: u64 = lines
        .lines()
        .filter(|l| l.ends_with(" log lines suppressed") && !l.contains("stopped"))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(suppressed + logged as u64, 2000, "{lines}");
}

#[test]
fn a_flood_gets_rate_limited_log_lines_with_ebpf() {
    a_flood_gets_rate_limited_log_lines_with_a_suppressed_count("ebpf");
}

#[test]
fn a_flood_gets_rate_limited_log_lines_with_the_packet_backend() {
    a_flood_gets_rate_limited_log_lines_with_a_suppressed_count("packet");
}

#[test]
fn the_ebpf_answerer_ends_when_its_interface_goes() {
    let ns = veth_ns();
    let r = ns.myinit(
        "fakehost add v0 10.77.0.2 icmp --backend ebpf; /usr/sbin/ip link del v0; sleep 0.5; \
         fakehost show; echo end",
    );
    assert!(
        r.stderr
            .contains("fakehost: v0: the interface went away (ebpf"),
        "{r:#?}"
    );
    // No host is listed for an interface that is gone.
    assert!(!r.stdout.lines().any(|l| l.starts_with("v0 ")), "{r:#?}");
    assert!(r.stdout.contains("end"));
}

/// The original's users declare several routers on one interface (its
/// harness: `fakehost add tap1 fe80::1 icmp router`, then `… 2001:db8::2
/// icmp router`); advertising ones each answer a solicitation with their
/// own advertisement, from their own link-local address, and the kernel
/// takes both.
fn several_routers_on_one_interface(backend: &str) {
    let ns = veth_ns();
    let server = Server::start(
        &ns,
        &format!(
            "fakehost add v0 fe80::1 icmp router ra --backend {backend}; \
             fakehost add v0 2001:db8:77::2 icmp router prefix 2001:db8:99::/64 --backend {backend}"
        ),
        false,
    );
    let second_ll = {
        let mac = server.mac_of("2001:db8:77::2");
        let b: Vec<u8> = mac
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect();
        std::net::Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            b[0] ^ 2,
            b[1],
            b[2],
            0xff,
            0xfe,
            b[3],
            b[4],
            b[5],
        ])
    };
    // A solicitation gets an advertisement from each router.
    let rdisc = ns.exec("rdisc6", &["-m", "-r", "1", "-w", "1500", "v0"]);
    let said = text(&rdisc);
    assert!(said.contains("from fe80::1\n"), "{backend}: rdisc6: {said}");
    assert!(
        said.contains(&format!("from {second_ll}\n")),
        "{backend}: rdisc6: {said}"
    );
    // rdisc6 also sees the answers to the kernel's own solicitations:
    // each solicitation gets one from each router. rdisc6's window may
    // end between the two answers to the last one (seen once in a full
    // run), so the counts may differ by that one.
    let (first, second) = (
        said.matches("from fe80::1\n").count(),
        said.matches(&format!("from {second_ll}\n")).count(),
    );
    assert!(first.abs_diff(second) <= 1, "{backend}: {said}");
    // Both answer pings; the harness's own lines work.
    let r = ns.myinit(
        "ping fe80::1%v0 1; ping 2001:db8:77::2 1; ip -6 route add 2001:db8:5::/64 via fe80::1 dev v0",
    );
    r.assert_ok();
    assert_eq!(
        r.stdout
            .matches("1 packets transmitted, 1 received")
            .count(),
        2,
        "{backend}: {r:#?}"
    );
    // The kernel's own RS at link up: a default route through each.
    ns.ip(&["link", "set", "v0", "down"]);
    ns.ip(&["link", "set", "v0", "up"]);
    wait_for("a default route through both routers", || {
        let routes = ns.ip(&["-6", "route", "show", "default"]);
        routes.contains("via fe80::1 ") && routes.contains(&format!("via {second_ll} "))
    });
    drop(server);
    wait_for("both default routes withdrawn", || {
        !ns.ip(&["-6", "route", "show", "default"])
            .contains("via fe80::")
    });
}

#[test]
fn several_routers_on_one_interface_advertise_each_with_ebpf() {
    several_routers_on_one_interface("ebpf");
}

#[test]
fn several_routers_on_one_interface_advertise_each_with_the_packet_backend() {
    several_routers_on_one_interface("packet");
}

/// `router` alone is the original's: the R flag in the NA, no
/// advertisement (so no default route the kernel learns behind a script's
/// back, which `ip -6 route add ::/0 via fe80::1` would then collide with).
#[test]
fn a_router_without_ra_sets_the_r_flag_and_advertises_nothing() {
    for backend in ["ebpf", "packet"] {
        let ns = veth_ns();
        let _server = Server::start(
            &ns,
            &format!("fakehost add v0 fe80::1 icmp router --backend {backend}"),
            false,
        );
        let rdisc = ns.exec("rdisc6", &["-1", "-r", "1", "-w", "1000", "v0"]);
        assert!(
            !text(&rdisc).contains("from fe80::1"),
            "{backend}: {}",
            text(&rdisc)
        );
        // The kernel's own solicitations at link up get no answer either.
        ns.ip(&["link", "set", "v0", "down"]);
        ns.ip(&["link", "set", "v0", "up"]);
        wait_for("the link-local address", || {
            let addrs = ns.ip(&["-6", "addr", "show", "dev", "v0", "scope", "link"]);
            addrs.contains("inet6 fe80") && !addrs.contains("tentative")
        });
        std::thread::sleep(Duration::from_secs(1));
        let r = ns.myinit("ping fe80::1%v0 1; ip -6 route add ::/0 via fe80::1 dev v0");
        r.assert_ok();
        let neigh = ns.ip(&["-6", "neigh", "show", "fe80::1", "dev", "v0"]);
        assert!(neigh.contains("router"), "{backend}: {neigh}");
        let routes = ns.ip(&["-6", "route", "show", "default"]);
        assert!(
            routes.contains("via fe80::1") && !routes.contains("proto ra"),
            "{backend}: {routes}"
        );
    }
}
