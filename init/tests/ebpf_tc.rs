//! The shared TC attach (init/src/ebpf/tc.rs) with the capture programs,
//! driven by the hidden `debug-tc` command over a veth pair between two
//! namespaces this test creates: TCX and forced clsact both see the
//! packets sent over the link; a SIGKILLed myinit leaves nothing behind on
//! TCX, leaves its filter on clsact, and the next attach removes it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{myinit_bin, unique, MyinitRun, Netns};

/// Two namespaces joined by a veth pair: `here` (10.77.0.1, `dev`) and
/// `peer` (10.77.0.2, `peer_dev`). Each test has its own namespaces, so
/// the same addresses do not collide.
struct Link {
    here: Netns,
    peer: Netns,
    dev: String,
    peer_dev: String,
}

const PEER_ADDR: &str = "10.77.0.2";

fn link() -> Link {
    let here = Netns::new("tch");
    let peer = Netns::new("tcp");
    let dev = unique("tca");
    let other = unique("tcb");
    here.veth(&dev, &other, Some(&peer));
    here.ip(&["addr", "add", "10.77.0.1/24", "dev", &dev]);
    here.ip(&["link", "set", &dev, "up"]);
    peer.ip(&["addr", "add", "10.77.0.2/24", "dev", &other]);
    peer.ip(&["link", "set", &other, "up"]);
    Link {
        here,
        peer,
        dev,
        peer_dev: other,
    }
}

/// `myinit -c COMMANDS` in `ns`, with `MYINIT_TC` set when `path` is Some.
fn spawn(ns: &Netns, path: Option<&str>, commands: &str) -> Child {
    // nsenter execs myinit in place (`ip netns exec` may fork), so the
    // child's pid is myinit's.
    let mut cmd = Command::new("nsenter");
    let net = format!("--net=/run/netns/{}", ns.name);
    cmd.args([net.as_str(), myinit_bin(), "-c", commands])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match path {
        Some(p) => cmd.env("MYINIT_TC", p),
        None => cmd.env_remove("MYINIT_TC"),
    };
    cmd.spawn().expect("cannot start myinit")
}

fn run(ns: &Netns, path: Option<&str>, commands: &str) -> (u32, MyinitRun) {
    let child = spawn(ns, path, commands);
    let pid = child.id();
    (pid, MyinitRun::from(child.wait_with_output().unwrap()))
}

/// The number before `label` on the line that starts with `prefix`.
fn count(text: &str, prefix: &str, label: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with '{prefix}' in {text}"));
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("no '{label}' in {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before '{label}' in {line}"))
}

/// `tc filter show dev DEV ingress` lines naming capture_ingress.
fn tc_filters(ns: &Netns, dev: &str) -> Vec<String> {
    let out = ns.exec("tc", &["filter", "show", "dev", dev, "ingress"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("capture_ingress"))
        .map(str::to_string)
        .collect()
}

/// Whether the kernel lists a TCX program on DEV's ingress, asked by a
/// fresh myinit (the kernel's TCX query: bpftool 7.1 here does not know
/// TCX links, and tc shows only cls_bpf filters).
fn tcx_attached(ns: &Netns, dev: &str) -> bool {
    let (_, r) = run(ns, None, &format!("debug-tc show {dev}"));
    r.assert_ok();
    r.stdout.contains("tcx program capture_ingress")
}

/// Waits (at most 20 s) until `done` holds.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Attaches both hooks, pings the peer 3 times, and checks what each hook
/// saw: at least the 3 requests going out (sent by this myinit) and the 3
/// replies coming in, every record well-formed.
fn packets_over_the_veth_are_seen(path: Option<&str>, expected_path: &str) {
    let l = link();
    let d = &l.dev;
    let (pid, r) = run(
        &l.here,
        path,
        &format!(
            "debug-tc attach {d} egress --seconds 0.1; debug-tc attach {d} ingress --seconds 0.1; \
             ping -c 3 -i 0.2 {PEER_ADDR}; debug-tc show {d} ingress; \
             debug-tc detach {d} egress; debug-tc detach {d} ingress; debug-tc show {d} ingress"
        ),
    );
    r.assert_ok();
    let out = &r.stdout;
    assert!(
        out.contains(&format!(
            "{d} ingress: attached capture_ingress via {expected_path}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{d} egress: attached capture_egress via {expected_path}"
        )),
        "{out}"
    );
    for hook in ["egress", "ingress"] {
        let prefix = format!("{d} {hook}: detached;");
        assert!(count(out, &prefix, "IPv4") >= 3, "{hook}: {out}");
        assert_eq!(count(out, &prefix, "malformed"), 0, "{hook}: {out}");
        assert_eq!(count(out, &prefix, "lost"), 0, "{hook}: {out}");
    }
    // Echo requests are sent from this myinit's own socket: the egress hook
    // names it as the sender.
    let egress = out
        .lines()
        .find(|l| l.starts_with(&format!("{d} egress: detached;")))
        .unwrap();
    assert!(egress.contains(&format!(" {pid} (myinit)")), "{egress}");
    // While attached, `show` saw exactly this program; after detach, none.
    let shows: Vec<_> = out
        .lines()
        .filter(|l| l.contains("BPF program(s) attached"))
        .collect();
    assert_eq!(
        shows,
        [
            format!("{d} ingress: 1 BPF program(s) attached"),
            format!("{d} ingress: 0 BPF program(s) attached"),
        ],
        "{out}"
    );
}

#[test]
fn tcx_attach_sees_the_packets_sent_over_a_veth() {
    packets_over_the_veth_are_seen(None, "tcx");
}

#[test]
fn forced_clsact_attach_sees_the_packets_sent_over_a_veth() {
    packets_over_the_veth_are_seen(Some("clsact"), "clsact");
}

#[test]
fn a_killed_myinit_leaves_no_tcx_link_behind() {
    let l = link();
    let d = &l.dev;
    let mut child = spawn(&l.here, None, &format!("debug-tc attach {d}; sleep 30"));
    wait_for("the TCX program to be attached", || {
        tcx_attached(&l.here, d)
    });
    assert!(
        tc_filters(&l.here, d).is_empty(),
        "TCX attach made a cls_bpf filter"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("the TCX link to go with its process", || {
        !tcx_attached(&l.here, d)
    });
}

#[test]
fn a_killed_myinit_leaves_its_clsact_filter_and_the_next_attach_removes_it() {
    let l = link();
    let d = &l.dev;
    let mut child = spawn(
        &l.here,
        Some("clsact"),
        &format!("debug-tc attach {d}; sleep 30"),
    );
    wait_for("the cls_bpf filter to be attached", || {
        tc_filters(&l.here, d).len() == 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        tc_filters(&l.here, d).len(),
        1,
        "the orphaned filter is gone"
    );

    let (_, r) = run(
        &l.here,
        Some("clsact"),
        &format!("debug-tc attach {d} --seconds 0.1; debug-tc show {d}"),
    );
    r.assert_ok();
    assert!(
        r.stdout.contains(&format!(
            "{d} ingress: attached capture_ingress via clsact, removed 1 old filter(s) named capture_ingress"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("{d} ingress: 1 BPF program(s) attached")),
        "{}",
        r.stdout
    );
    let filters = tc_filters(&l.here, d);
    assert_eq!(filters.len(), 1, "{filters:?}");

    // That run ended without detaching too; `detach` in a process that
    // attached nothing removes what is left.
    let (_, r) = run(&l.here, Some("clsact"), &format!("debug-tc detach {d}"));
    r.assert_ok();
    assert_eq!(
        r.stdout,
        format!("{d} ingress: removed 1 old filter(s) named capture_ingress\n")
    );
    assert!(tc_filters(&l.here, d).is_empty());
}

#[test]
fn packets_longer_than_the_snap_length_are_cut_to_it() {
    let l = link();
    let d = &l.dev;
    // Jumbo frames on both ends: 4000-byte pings cross unfragmented.
    l.here.ip(&["link", "set", d, "mtu", "9000"]);
    l.peer.ip(&["link", "set", &l.peer_dev, "mtu", "9000"]);
    let (_, r) = run(
        &l.here,
        None,
        &format!(
            "debug-tc attach {d} --seconds 0.1 --snaplen 1514; \
             ping -c 3 -i 0.2 -s 4000 {PEER_ADDR}; debug-tc detach {d}"
        ),
    );
    r.assert_ok();
    let prefix = format!("{d} ingress: detached;");
    assert!(
        count(&r.stdout, &prefix, "cut at 1514 bytes") >= 3,
        "{}",
        r.stdout
    );
    assert_eq!(count(&r.stdout, &prefix, "malformed"), 0, "{}", r.stdout);
}

#[test]
fn whole_packets_up_to_64_kib_are_copied_by_default() {
    let l = link();
    let d = &l.dev;
    // The largest MTU a veth takes: one ping of each record size class
    // above 1514 crosses unfragmented (4 KiB, 16 KiB, 64 KiB).
    l.here.ip(&["link", "set", d, "mtu", "65535"]);
    l.peer.ip(&["link", "set", &l.peer_dev, "mtu", "65535"]);
    let (_, r) = run(
        &l.here,
        None,
        &format!(
            "debug-tc attach {d} --seconds 0.1; \
             ping -c 1 -s 4000 {PEER_ADDR}; ping -c 1 -s 16000 {PEER_ADDR}; \
             ping -c 1 -s 65000 {PEER_ADDR}; debug-tc detach {d}"
        ),
    );
    r.assert_ok();
    let prefix = format!("{d} ingress: detached;");
    // Each record's captured length is checked against the packet's:
    // a cut one would count as malformed.
    assert_eq!(r.stdout.matches(" 1 received").count(), 3, "{}", r.stdout);
    assert!(count(&r.stdout, &prefix, "IPv4") >= 3, "{}", r.stdout);
    assert_eq!(
        count(&r.stdout, &prefix, "cut at 65600 bytes"),
        0,
        "{}",
        r.stdout
    );
    assert_eq!(count(&r.stdout, &prefix, "malformed"), 0, "{}", r.stdout);
}

#[test]
fn debug_tc_refuses_bad_input_on_one_line() {
    let ns = Netns::new("tcx");
    for (commands, path, error) in [
        (
            "debug-tc attach nosuch0",
            None,
            "debug-tc: nosuch0: no such interface",
        ),
        (
            "debug-tc attach lo",
            Some("bogus"),
            "debug-tc: MYINIT_TC=bogus: expected tcx or clsact",
        ),
        (
            "debug-tc attach lo sideways",
            None,
            "debug-tc: expected ingress or egress, not sideways",
        ),
        (
            "debug-tc detach lo",
            None,
            "debug-tc: lo ingress: nothing attached",
        ),
    ] {
        let (_, r) = run(&ns, path, commands);
        assert_ne!(r.status, 0, "{commands}: {r:?}");
        assert!(
            // The message on one line (usage errors add the usage after it).
            r.stderr.lines().next().is_some_and(|l| l.ends_with(error)),
            "{commands}: {:?}",
            r.stderr
        );
    }
    let out = ns.exec("tc", &["qdisc", "show", "dev", "lo"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("clsact"),
        "a refused attach added a qdisc"
    );
}

#[test]
fn debug_tc_without_privileges_says_it_needs_root() {
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["--inh-caps=-all", myinit_bin(), "-c", "debug-tc attach lo"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run setpriv");
    let r = MyinitRun::from(out);
    assert_ne!(r.status, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.trim_end().ends_with(
            "debug-tc: lo: attaching a TC program needs root (CAP_NET_ADMIN and CAP_BPF)"
        ),
        "{r:?}"
    );
}

#[test]
fn debug_tc_is_hidden_from_help_but_has_its_own_help() {
    let list = common::myinit("help");
    list.assert_ok();
    assert!(!list.stdout.contains("debug-tc"), "{}", list.stdout);
    let own = common::myinit("help debug-tc");
    own.assert_ok();
    assert!(
        own.stdout.contains("usage: debug-tc attach IF"),
        "{}",
        own.stdout
    );
}
