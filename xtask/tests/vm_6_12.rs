//! The kernel matrix's second kernel: bookworm-backports' 6.12, one boot.
//! What differs from 6.1 is asserted, not only survived: TC programs go
//! on TCX links (6.6+) where 6.1 takes clsact + cls_bpf, and the
//! `kfree_skb` tracepoint has the `rx_sk` argument (6.11+), which moves
//! `protocol` and `reason`; droptrace reads them from tracefs and BTF, so
//! every backend still names the reason with the number the format file
//! gives. Capture on a TAP with both backends, a fake host answering
//! ping, droptrace of a drop made on purpose, as on 6.1 (vm.rs,
//! vm_droptrace.rs).

mod common;

use common::{vm_autoexec_on, TempDir};

/// The offset of a field in a tracepoint format file.
fn offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|l| {
        let (decl, rest) = l.trim().strip_prefix("field:")?.split_once(';')?;
        decl.ends_with(&format!(" {field}")).then(|| {
            rest.trim()
                .strip_prefix("offset:")?
                .split(';')
                .next()?
                .parse()
                .ok()
        })?
    })
}

#[test]
fn capture_fakehost_and_droptrace_run_on_6_12_with_tcx_and_the_rx_sk_tracepoint() {
    let share = TempDir::new("k612");
    let mut script = String::from(
        "set -e\n\
         cat /proc/sys/kernel/osrelease > /mnt/host/uname.txt\n\
         tap add tap0\n\
         ifconfig tap0 10.0.9.1/24 up\n\
         ip neigh add 10.0.9.3 lladdr 02:00:00:00:09:03 dev tap0\n\
         capture start tap0 /mnt/host/tap.pcap --backend ebpf --dir tx icmp > /mnt/host/start.txt\n\
         capture start tap0 /mnt/host/tap.jsonl --backend packet --dir tx >> /mnt/host/start.txt\n\
         set +e\n\
         ping -c 3 -i 0.2 -W 0.2 10.0.9.3 > /dev/null\n\
         set -e\n\
         capture stop tap0 > /mnt/host/stop.txt\n\
         fakehost add tap0 10.0.9.2 icmp > /mnt/host/fakehost.txt\n\
         ping -c 2 10.0.9.2 > /mnt/host/ping.txt\n\
         fakehost del tap0 10.0.9.2\n\
         echo k612 > /tmp/payload\n",
    );
    for (name, args) in [
        // The filter in the kernel: the tail call from the tracer (tp_btf
        // and the classic tracepoint) into the generated program.
        ("btf", "--backend ebpf --hook tp-btf udp port 9"),
        ("tp", "--backend ebpf --hook tracepoint udp port 9"),
        ("ftrace", "--backend ftrace"),
    ] {
        script.push_str(&format!(
            "droptrace start {args} > /mnt/host/start-{name}.txt\n\
             set +e\n\
             netcat -u -w 1 127.0.0.1 9 < /tmp/payload\n\
             set -e\n\
             droptrace stop > /mnt/host/stop-{name}.txt\n\
             droptrace save /mnt/host/{name}.jsonl\n"
        ));
    }
    // tracefs is mounted by then (droptrace mounts it).
    script.push_str("cat /sys/kernel/tracing/events/skb/kfree_skb/format > /mnt/host/format.txt\n");
    share.write("autoexec.run", &script);
    let run = vm_autoexec_on("6.12", &share, "", 300);
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(share.read("uname.txt").starts_with("6.12."));

    // TCX, not clsact: both capture's and fakehost's programs.
    let start = share.read("start.txt");
    assert!(
        start.contains("capture tap0: ebpf (tcx), EN10MB tx")
            && start.contains("capture tap0#2: packet (tpacket_v3), EN10MB tx"),
        "{start}"
    );
    let stop = share.read("stop.txt");
    for target in ["tap0", "tap0#2"] {
        let line = stop
            .lines()
            .find(|l| l.starts_with(&format!("capture {target}: stopped: ")))
            .unwrap_or_else(|| panic!("{target}: {stop}"));
        assert!(line.ends_with(", 0 lost"), "{line}");
    }
    // The eBPF capture's filter (`icmp`) ran at TCX: echo requests only.
    let pcap = std::process::Command::new("tcpdump")
        .arg("-nr")
        .arg(share.dir().join("tap.pcap"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&pcap.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(text.matches("ICMP echo request").count(), 3, "{text}");
    let jsonl = share.read("tap.jsonl");
    assert_eq!(
        jsonl.lines().filter(|l| l.contains("\"typ\":8")).count(),
        3,
        "{jsonl}"
    );
    let fakehost = share.read("fakehost.txt");
    assert!(fakehost.contains("(backend ebpf (tcx))"), "{fakehost}");
    let ping = share.read("ping.txt");
    assert!(ping.contains("2 packets transmitted, 2 received"), "{ping}");

    // The 6.11+ layout: rx_sk before protocol and reason (6.1: protocol
    // at 24, reason at 28, no rx_sk).
    let format = share.read("format.txt");
    assert_eq!(offset(&format, "rx_sk"), Some(24), "{format}");
    assert_eq!(offset(&format, "protocol"), Some(32), "{format}");
    assert_eq!(offset(&format, "reason"), Some(36), "{format}");
    let no_socket = format
        .split("__print_symbolic(REC->reason")
        .nth(1)
        .and_then(|t| {
            t.split('{')
                .find(|e| e.contains("\"NO_SOCKET\""))
                .and_then(|e| e.split(',').next())
                .map(|n| n.trim().to_string())
        })
        .expect("NO_SOCKET in the format's reason table");
    for name in ["btf", "tp", "ftrace"] {
        let saved = share.read(&format!("{name}.jsonl"));
        let drop: serde_json::Value = saved
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|d| {
                d["location"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("__udp4_lib_rcv+"))
            })
            .unwrap_or_else(|| panic!("{name}: no drop in __udp4_lib_rcv: {saved}"));
        assert_eq!(drop["reason"], "NO_SOCKET", "{name}: {drop}");
        assert_eq!(drop["reason_code"].to_string(), no_socket, "{name}: {drop}");
        // ftrace's text has no packet; the eBPF runs kept port 9 only.
        if name != "ftrace" {
            assert_eq!(drop["packet"]["dport"], 9, "{name}: {drop}");
            assert!(
                saved.lines().all(|l| l.contains("\"dport\":9")),
                "{name}: {saved}"
            );
        }
    }
}
