//! ping and netcat between two network namespaces joined by a veth pair.
//! Everything (namespaces, links, addresses) is made by the test and goes
//! away with the namespaces.

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{myinit_bin, MyinitIn, MyinitRun, Netns, TempDir};

/// Namespace `a` (10.0.0.1, fd00::1, fe80::1 on `va`) and `b` (10.0.0.2,
/// fd00::2, fe80::2 on `vb`), joined by a veth pair.
struct Pair {
    a: Netns,
    b: Netns,
}

fn pair() -> Pair {
    let a = Netns::new("nta");
    let b = Netns::new("ntb");
    a.veth("va", "vb", Some(&b));
    for (ns, dev, n) in [(&a, "va", 1), (&b, "vb", 2)] {
        // No automatic (tentative) link-local address: ours are set nodad.
        ns.ip(&["link", "set", dev, "addrgenmode", "none"]);
        ns.ip(&["addr", "add", &format!("10.0.0.{n}/24"), "dev", dev]);
        for v6 in [format!("fd00::{n}/64"), format!("fe80::{n}/64")] {
            ns.ip(&["-6", "addr", "add", &v6, "dev", dev, "nodad"]);
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
    Pair { a, b }
}

/// The ICMP "InEchos" counter of a namespace (/proc/net/snmp is per netns).
fn in_echos(ns: &Netns) -> u64 {
    let out = ns.exec("cat", &["/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
    let names: Vec<&str> = icmp.next().unwrap().split_whitespace().collect();
    let values: Vec<&str> = icmp.next().unwrap().split_whitespace().collect();
    let i = names.iter().position(|n| *n == "InEchos").unwrap();
    values[i].parse().unwrap()
}

/// stderr is one line: MESSAGE, after the shell's origin prefix (`-c:1: `).
fn assert_one_error(stderr: &str, message: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.trim_end().ends_with(message), "{stderr}");
}

/// Checks the statistics block; returns (transmitted, received).
fn check_summary(stdout: &str, dest: &str) -> (u32, u32) {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("--- {dest} ping statistics ---"))
        .unwrap_or_else(|| panic!("no statistics in {stdout}"));
    assert_eq!(lines[at - 1], "", "a blank line before the statistics");
    let counts = lines[at + 1];
    let fields: Vec<&str> = counts.split(", ").collect();
    let transmitted: u32 = fields[0]
        .strip_suffix(" packets transmitted")
        .unwrap()
        .parse()
        .unwrap();
    let received: u32 = fields[1]
        .strip_suffix(" received")
        .unwrap()
        .parse()
        .unwrap();
    let loss = fields
        .iter()
        .find_map(|f| f.strip_suffix("% packet loss"))
        .unwrap();
    let expected = (transmitted - received) as f64 * 100.0 / transmitted as f64;
    assert!(
        (loss.parse::<f64>().unwrap() - expected).abs() < 0.01,
        "{counts}"
    );
    let time = fields.last().unwrap();
    assert!(
        time.starts_with("time ") && time.ends_with("ms"),
        "{counts}"
    );
    if received > 0 {
        let rtt = lines[at + 2]
            .strip_prefix("rtt min/avg/max/mdev = ")
            .and_then(|r| r.strip_suffix(" ms"))
            .unwrap_or_else(|| panic!("bad rtt line: {}", lines[at + 2]));
        let v: Vec<f64> = rtt.split('/').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 4);
        assert!(v[0] <= v[1] && v[1] <= v[2] && v[3] >= 0.0, "{rtt}");
        assert!(v[2] < 1000.0, "a veth round trip under a second: {rtt}");
    } else {
        assert_eq!(lines.len(), at + 2, "no rtt line without replies");
    }
    (transmitted, received)
}

/// The reply lines' sequence numbers, checking their form on the way.
fn reply_seqs(stdout: &str, bytes: usize, from: &str) -> Vec<u32> {
    let prefix = format!("{bytes} bytes from {from}: icmp_seq=");
    stdout
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .map(|l| {
            let rest = l
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("unexpected reply line {l:?}"));
            let mut words = rest.split(' ');
            let seq = words.next().unwrap().parse().unwrap();
            assert_eq!(words.next(), Some("ttl=64"), "{l}");
            let time = words.next().unwrap().strip_prefix("time=").unwrap();
            assert!(time.parse::<f64>().unwrap() >= 0.0);
            assert_eq!(words.next(), Some("ms"), "{l}");
            seq
        })
        .collect()
}

#[test]
fn ping_v4_with_count_after_dest() {
    let p = pair();
    let before = in_echos(&p.b);
    let started = Instant::now();
    let r = p.a.myinit("ping 10.0.0.2 3");
    r.assert_ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.");
    assert_eq!(reply_seqs(&r.stdout, 64, "10.0.0.2"), vec![1, 2, 3]);
    assert_eq!(check_summary(&r.stdout, "10.0.0.2"), (3, 3));
    assert!(r
        .stdout
        .contains("3 packets transmitted, 3 received, 0% packet loss, time "));
    // Default interval 1 s: three requests span two seconds.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The peer's kernel saw exactly three echo requests.
    assert_eq!(in_echos(&p.b) - before, 3);
}

#[test]
fn ping_v4_dash_c_and_size() {
    let p = pair();
    let before = in_echos(&p.b);
    let r = p.a.myinit("ping -c 2 -i 0.2 10.0.0.2");
    r.assert_ok();
    assert_eq!(reply_seqs(&r.stdout, 64, "10.0.0.2"), vec![1, 2]);
    assert_eq!(check_summary(&r.stdout, "10.0.0.2"), (2, 2));
    assert_eq!(in_echos(&p.b) - before, 2);

    let r = p.a.myinit("ping -s 200 -c 1 10.0.0.2");
    r.assert_ok();
    assert!(
        r.stdout
            .starts_with("PING 10.0.0.2 (10.0.0.2) 200(228) bytes of data.\n"),
        "{}",
        r.stdout
    );
    assert_eq!(reply_seqs(&r.stdout, 208, "10.0.0.2"), vec![1]);
    assert_eq!(check_summary(&r.stdout, "10.0.0.2"), (1, 1));
}

#[test]
fn ping_without_count_sends_four() {
    let p = pair();
    let r = p.a.myinit("ping -i 0.1 10.0.0.2");
    r.assert_ok();
    assert_eq!(check_summary(&r.stdout, "10.0.0.2"), (4, 4));
}

#[test]
fn ping_v6_global_and_link_local() {
    let p = pair();
    let r = p.a.myinit("ping -c 2 -i 0.2 fd00::2");
    r.assert_ok();
    assert!(
        r.stdout
            .starts_with("PING fd00::2 (fd00::2) 56 data bytes\n"),
        "{}",
        r.stdout
    );
    assert_eq!(reply_seqs(&r.stdout, 64, "fd00::2"), vec![1, 2]);
    assert_eq!(check_summary(&r.stdout, "fd00::2"), (2, 2));

    let r = p.a.myinit("ping -c 2 -i 0.2 fe80::2%va");
    r.assert_ok();
    assert!(
        r.stdout
            .starts_with("PING fe80::2%va (fe80::2%va) 56 data bytes\n"),
        "{}",
        r.stdout
    );
    assert_eq!(reply_seqs(&r.stdout, 64, "fe80::2%va"), vec![1, 2]);
    assert_eq!(check_summary(&r.stdout, "fe80::2%va"), (2, 2));

    // The scope may also come from -I; without either it is an error.
    let r = p.a.myinit("ping -c 1 -I va fe80::2");
    r.assert_ok();
    assert_eq!(check_summary(&r.stdout, "fe80::2"), (1, 1));
    let r = p.a.myinit("ping -c 1 fe80::2");
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("needs an interface"), "{}", r.stderr);
}

#[test]
fn ping_unreachable_address_loses_everything() {
    let p = pair();
    let started = Instant::now();
    let r = p.a.myinit("ping -c 2 -i 0.2 -W 1 10.0.0.99");
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r
        .stdout
        .starts_with("PING 10.0.0.99 (10.0.0.99) 56(84) bytes of data.\n"));
    assert_eq!(check_summary(&r.stdout, "10.0.0.99"), (2, 0));
    assert!(r.stdout.contains(" 0 received, ") && r.stdout.contains(" 100% packet loss, "));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn ping_interface_option() {
    let p = pair();
    let r = p.a.myinit("ping -c 1 -I nosuch0 10.0.0.2");
    assert_eq!(r.status, 1, "{r:?}");
    assert_one_error(&r.stderr, "ping: nosuch0: no such interface");
    assert_eq!(r.stdout, "");
    // Bound to the veth it works; bound to lo, 10.0.0.2 is not reachable.
    p.a.myinit("ping -c 1 -I va 10.0.0.2").assert_ok();
    let r = p.a.myinit("ping -c 1 -W 0.5 -I lo 10.0.0.2");
    assert_eq!(r.status, 1, "{r:?}");
    // -I with a source address: a second one on va, and the peer's replies
    // to the first go nowhere, so only a ping really sent from 10.0.0.3 is
    // answered.
    p.a.ip(&["addr", "add", "10.0.0.3/24", "dev", "va"]);
    p.b.ip(&["route", "add", "blackhole", "10.0.0.1/32"]);
    let r = p.a.myinit("ping -c 1 -W 0.5 10.0.0.2");
    assert_eq!(r.status, 1, "the reply to 10.0.0.1 still arrives: {r:?}");
    p.a.myinit("ping -c 1 -W 2 -I 10.0.0.3 10.0.0.2")
        .assert_ok();
}

#[test]
fn ping_without_raw_sockets_uses_icmp_datagram_sockets() {
    let p = pair();
    let unprivileged = |commands: &str| {
        MyinitRun::from(p.a.exec(
            "setpriv",
            &["--bounding-set", "-net_raw", myinit_bin(), "-c", commands],
        ))
    };
    // Without CAP_NET_RAW and outside ping_group_range: a clear error.
    let r = unprivileged("ping -c 1 10.0.0.2");
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("ping_group_range"), "{}", r.stderr);
    // The sysctl is per namespace: allow root's group here only.
    p.a.exec("sysctl", &["-qw", "net.ipv4.ping_group_range=0 0"]);
    let r = unprivileged("ping -c 2 -i 0.2 10.0.0.2");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(reply_seqs(&r.stdout, 64, "10.0.0.2"), vec![1, 2]);
    assert_eq!(check_summary(&r.stdout, "10.0.0.2"), (2, 2));
    let r = unprivileged("ping -c 2 -i 0.2 fd00::2");
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(reply_seqs(&r.stdout, 64, "fd00::2"), vec![1, 2]);
}

/// A child process killed (and reaped) when dropped, so a failing test
/// leaves nothing running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// `ip netns exec NS myinit -c COMMANDS`, its output captured. `ip netns
    /// exec` execs the program, so the child's pid is myinit's.
    fn spawn(ns: &Netns, commands: &str) -> Self {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &ns.name, myinit_bin(), "-c", commands]);
        Self::start(command)
    }

    /// Any command, stdin empty and the output captured.
    fn start(mut command: Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ChildGuard(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child().try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits (at most `limit`) and collects the output.
    fn finish(mut self, limit: Duration) -> MyinitRun {
        let status = self.wait_for(limit);
        assert!(status.is_some(), "did not end within {limit:?}");
        let child = self.0.take().unwrap();
        MyinitRun::from(child.wait_with_output().unwrap())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn ping_ctrl_c_prints_statistics() {
    let p = pair();
    let mut child = ChildGuard::spawn(&p.a, "ping -c 100 -i 0.2 10.0.0.2");
    std::thread::sleep(Duration::from_millis(1100));
    let pid = child.child().id().to_string();
    common::run_ok("kill", &["-INT", &pid]);
    let stopped = Instant::now();
    let r = child.finish(Duration::from_secs(3));
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(r.status, 0, "{r:?}");
    let (transmitted, received) = check_summary(&r.stdout, "10.0.0.2");
    assert!((3..20).contains(&transmitted), "{}", r.stdout);
    assert!(received >= 3, "{}", r.stdout);
}

/// Bytes that are not text and do not end in a newline.
fn test_data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Waits until something listens on PORT (`ss`, TCP or UDP) in NS.
fn wait_listening(ns: &Netns, udp: bool, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let filter = format!("sport = :{port}");
    let kind = if udp { "-Hlun" } else { "-Hltn" };
    while Instant::now() < deadline {
        let out = ns.exec("ss", &[kind, &filter]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port} in {}", ns.name);
}

#[test]
fn netcat_tcp_both_directions() {
    let p = pair();
    let dir = TempDir::new("ncTcp");
    let path = |name: &str| dir.join(name).display().to_string();
    let to_b = test_data(300_000, 1);
    let to_a = test_data(70_000, 2);
    std::fs::write(path("to_b"), &to_b).unwrap();
    std::fs::write(path("to_a"), &to_a).unwrap();
    let listener = ChildGuard::spawn(
        &p.b,
        &format!("netcat -l 5000 < {} > {}", path("to_a"), path("got_b")),
    );
    wait_listening(&p.b, false, 5000);
    let sender = ChildGuard::spawn(
        &p.a,
        &format!(
            "netcat -v 10.0.0.2 5000 < {} > {}",
            path("to_b"),
            path("got_a")
        ),
    );
    let s = sender.finish(Duration::from_secs(10));
    assert_eq!(s.status, 0, "{s:?}");
    assert!(
        s.stderr.contains("connected to 10.0.0.2 port 5000"),
        "{}",
        s.stderr
    );
    let l = listener.finish(Duration::from_secs(10));
    assert_eq!(l.status, 0, "{l:?}");
    assert!(
        std::fs::read(path("got_b")).unwrap() == to_b,
        "listener got other bytes"
    );
    assert!(
        std::fs::read(path("got_a")).unwrap() == to_a,
        "connector got other bytes"
    );
}

#[test]
fn netcat_tcp_listener_with_console_stdin_ends_when_peer_closes() {
    let p = pair();
    let dir = TempDir::new("ncCon");
    let path = |name: &str| dir.join(name).display().to_string();
    let data = test_data(5000, 3);
    std::fs::write(path("in"), &data).unwrap();
    // Stdin of the listener is the (null) console: its end half-closes.
    let listener = ChildGuard::spawn(&p.b, &format!("netcat -l 10.0.0.2 5002 > {}", path("out")));
    wait_listening(&p.b, false, 5002);
    p.a.myinit(&format!("netcat 10.0.0.2 5002 < {}", path("in")))
        .assert_ok();
    let l = listener.finish(Duration::from_secs(5));
    assert_eq!(l.status, 0, "{l:?}");
    assert!(std::fs::read(path("out")).unwrap() == data);
}

#[test]
fn netcat_udp_both_directions() {
    let p = pair();
    let dir = TempDir::new("ncUdp");
    let path = |name: &str| dir.join(name).display().to_string();
    let to_b = test_data(6000, 4);
    let to_a = test_data(3000, 5);
    std::fs::write(path("to_b"), &to_b).unwrap();
    std::fs::write(path("to_a"), &to_a).unwrap();
    let listener = ChildGuard::spawn(
        &p.b,
        &format!(
            "netcat -l -u -w 2 5001 < {} > {}",
            path("to_a"),
            path("got_b")
        ),
    );
    wait_listening(&p.b, true, 5001);
    let started = Instant::now();
    let s = ChildGuard::spawn(
        &p.a,
        &format!(
            "netcat -u -w 1 10.0.0.2 5001 < {} > {}",
            path("to_b"),
            path("got_a")
        ),
    )
    .finish(Duration::from_secs(5));
    assert_eq!(s.status, 0, "{s:?}");
    // UDP has no end: -w 1 ends it after a second of silence.
    assert!(started.elapsed() >= Duration::from_millis(900));
    let l = listener.finish(Duration::from_secs(5));
    assert_eq!(l.status, 0, "{l:?}");
    assert!(
        std::fs::read(path("got_b")).unwrap() == to_b,
        "listener got other bytes"
    );
    assert!(
        std::fs::read(path("got_a")).unwrap() == to_a,
        "sender got other bytes"
    );
}

#[test]
fn netcat_errors() {
    let p = pair();
    let r = p.a.myinit("netcat 10.0.0.2 5999");
    assert_eq!(r.status, 1, "{r:?}");
    assert_one_error(
        &r.stderr,
        "netcat: connect to 10.0.0.2 port 5999 (tcp): Connection refused",
    );
    let r = p.a.myinit("netcat 10.0.0.2 99999");
    assert_eq!(r.status, 2, "{r:?}");
    assert!(
        r.stderr.contains("netcat: bad port: 99999\nusage: "),
        "{}",
        r.stderr
    );
    // No DNS server is reachable from the namespace: resolution fails fast.
    let r = p.a.myinit("netcat no-such-host.invalid 80");
    assert_eq!(r.status, 1, "{r:?}");
    assert_one_error(&r.stderr, "netcat: no-such-host.invalid: unknown host");
}

#[test]
fn netcat_connect_timeout() {
    let p = pair();
    // A neighbour that never answers: SYNs go out and vanish.
    p.a.ip(&[
        "neigh",
        "add",
        "10.0.0.99",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "va",
        "nud",
        "permanent",
    ]);
    let started = Instant::now();
    let r = p.a.myinit("netcat -w 1 10.0.0.99 80");
    let took = started.elapsed();
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn netcat_listener_with_w_and_no_peer_ends_after_w() {
    let ns = Netns::new("ntw");
    for (udp, what) in [(false, "connection"), (true, "datagram")] {
        let flags = if udp { "-l -u" } else { "-l" };
        let started = Instant::now();
        // Bounded here too: before -w covered the first peer, this hung.
        let r = ChildGuard::spawn(&ns, &format!("netcat {flags} -w 1 5050"))
            .finish(Duration::from_secs(10));
        let took = started.elapsed();
        assert_eq!(r.status, 1, "{r:?}");
        assert_one_error(
            &r.stderr,
            &format!("netcat: no {what} on port 5050 within 1s (-w)"),
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{flags}: {took:?}"
        );
    }
}

/// A DNS server on 127.0.0.1:53 of NS that never answers: what the C
/// library asks when /etc/resolv.conf names no nameserver, and what makes
/// a lookup there wait out the whole resolver timeout.
struct SilentDns {
    _server: ChildGuard,
}

impl SilentDns {
    fn start(ns: &Netns) -> Self {
        let mut command = Command::new("ip");
        command.args([
            "netns",
            "exec",
            &ns.name,
            "python3",
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1', 53))\n\
             print('ready', flush=True)\n\
             time.sleep(120)",
        ]);
        let mut guard = ChildGuard::start(command);
        let stdout = guard.child().stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert_eq!(line, "ready\n", "the silent DNS server did not start");
        SilentDns { _server: guard }
    }
}

/// `myinit -c COMMANDS` in NS with the test's own /etc/resolv.conf and
/// /etc/hosts, bind-mounted in a private mount namespace: the host's files
/// stay as they are.
fn myinit_with_resolver_files(
    ns: &Netns,
    resolv: &Path,
    hosts: &Path,
    commands: &str,
) -> MyinitRun {
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        &ns.name,
        "unshare",
        "--mount",
        "--propagation",
        "private",
    ]);
    command.args([
        "sh",
        "-c",
        "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts && exec \"$3\" -c \"$4\"",
        "sh",
    ]);
    command
        .arg(resolv)
        .arg(hosts)
        .arg(myinit_bin())
        .arg(commands);
    ChildGuard::start(command).finish(Duration::from_secs(30))
}

#[test]
fn names_that_cannot_resolve_fail_at_once_and_hosts_still_answers() {
    let ns = Netns::new("ntr");
    ns.ip(&["addr", "add", "10.9.9.9/32", "dev", "lo"]);
    let _dns = SilentDns::start(&ns);
    let dir = TempDir::new("ntr");
    let (resolv, hosts) = (dir.join("resolv.conf"), dir.join("hosts"));
    std::fs::write(&resolv, "# no nameserver here\nsearch example\n").unwrap();
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.9.9.9 boxname box # test\n").unwrap();
    let not_v4 = "not an IPv4 address (four numbers 0-255 separated by dots)";
    let unknown = "unknown host (not in /etc/hosts, and /etc/resolv.conf names no nameserver)";
    for (commands, error) in [
        ("ping 300.1.1.1", format!("ping: 300.1.1.1: {not_v4}")),
        ("netcat 300.1.1.1 1", format!("netcat: 300.1.1.1: {not_v4}")),
        (
            "netcat d/x 1",
            "netcat: d/x: not a host name or address".to_string(),
        ),
        ("ping nosuchname", format!("ping: nosuchname: {unknown}")),
        (
            "netcat -w 1 nosuchname 1",
            format!("netcat: nosuchname: {unknown}"),
        ),
    ] {
        let started = Instant::now();
        let r = myinit_with_resolver_files(&ns, &resolv, &hosts, commands);
        let took = started.elapsed();
        assert_eq!(r.status, 1, "{commands}: {r:?}");
        assert_one_error(&r.stderr, &error);
        assert!(took < Duration::from_secs(1), "{commands}: took {took:?}");
    }
    // /etc/hosts still answers without a nameserver.
    let r = myinit_with_resolver_files(&ns, &resolv, &hosts, "ping -c 1 boxname");
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("PING boxname (10.9.9.9) 56(84) bytes of data.\n"),
        "{}",
        r.stdout
    );
    assert_eq!(check_summary(&r.stdout, "boxname"), (1, 1));
}
