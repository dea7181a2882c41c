//! Real virtio-net NICs: `xtask vm --net loop` wires two of them back to
//! back inside one qemu. One end (eth2) goes into a network namespace, and
//! over the wire between them: a ping, a capture with both backends, a
//! fake host answering, and a droptrace of a drop made on purpose (UDP to a
//! closed port in the namespace, NO_SOCKET on eth2).

mod common;

use common::{vm, TempDir};

#[test]
fn ping_capture_fakehost_and_droptrace_work_over_two_real_virtio_nics() {
    let share = TempDir::new("netloop");
    share.write(
        "autoexec.run",
        "set -e\n\
         cat /sys/class/net/eth1/address /sys/class/net/eth2/address > /mnt/host/macs.txt\n\
         ip netns add peer\n\
         ip link set eth2 netns peer\n\
         ip netns exec peer ifconfig lo up\n\
         ip netns exec peer ifconfig eth2 10.0.5.2/24 up\n\
         ip netns > /mnt/host/netns.txt\n\
         ifconfig eth1 10.0.5.1/24 up\n\
         capture start eth1 /mnt/host/loop.pcap --backend ebpf > /mnt/host/capture.txt\n\
         capture start eth1 /mnt/host/loop.jsonl --backend packet >> /mnt/host/capture.txt\n\
         ping -c 3 -i 0.2 -W 2 10.0.5.2 > /mnt/host/ping.txt\n\
         capture stop eth1 >> /mnt/host/capture.txt\n\
         fakehost add eth1 10.0.5.3 icmp > /mnt/host/fakehost.txt\n\
         ping -c 2 -W 2 10.0.5.3 > /mnt/host/ping-fake.txt\n\
         fakehost del eth1 10.0.5.3\n\
         echo over-the-wire > /tmp/payload\n\
         droptrace start --backend ebpf --netns any > /mnt/host/droptrace.txt\n\
         set +e\n\
         netcat -u -w 1 10.0.5.2 9 < /tmp/payload\n\
         set -e\n\
         droptrace stop >> /mnt/host/droptrace.txt\n\
         droptrace save /mnt/host/drops.jsonl\n",
    );
    let run = vm(&[
        "--net",
        "loop",
        "--share",
        &share.dir().to_string_lossy(),
        "--append",
        "myinit.countdown=0 myinit.poweroff_countdown=0",
        "--timeout",
        "240",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(
        share.read("macs.txt"),
        "52:54:00:00:10:01\n52:54:00:00:10:02\n"
    );
    assert_eq!(share.read("netns.txt"), "peer\n");
    let ping = share.read("ping.txt");
    assert!(ping.contains("3 packets transmitted, 3 received"), "{ping}");
    // Both backends saw the three requests and the three replies.
    let capture = share.read("capture.txt");
    for target in ["eth1", "eth1#2"] {
        let line = capture
            .lines()
            .find(|l| l.starts_with(&format!("capture {target}: stopped: ")))
            .unwrap_or_else(|| panic!("{target}: {capture}"));
        assert!(line.ends_with(", 0 lost"), "{line}");
    }
    let jsonl = share.read("loop.jsonl");
    for (typ, direction) in [(8, "tx"), (0, "rx")] {
        let n = jsonl
            .lines()
            .filter(|l| {
                l.contains(&format!("\"typ\":{typ},"))
                    && l.contains(&format!("\"direction\":\"{direction}\""))
            })
            .count();
        assert_eq!(n, 3, "type {typ} {direction}: {jsonl}");
    }
    let out = std::process::Command::new("tcpdump")
        .args(["-nr"])
        .arg(share.dir().join("loop.pcap"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("10.0.5.1 > 10.0.5.2: ICMP echo request")
            .count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.matches("10.0.5.2 > 10.0.5.1: ICMP echo reply").count(),
        3,
        "{text}"
    );
    let fake = share.read("ping-fake.txt");
    assert!(fake.contains("2 packets transmitted, 2 received"), "{fake}");
    // The drop happened in the other namespace, on the real NIC.
    let drops = share.read("drops.jsonl");
    let drop: serde_json::Value = drops
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|d| d["reason"] == "NO_SOCKET" && d["packet"]["dport"] == 9)
        .unwrap_or_else(|| panic!("no NO_SOCKET drop of port 9: {drops}"));
    assert_eq!(drop["dev"], "eth2", "{drop}");
    assert_eq!(drop["packet"]["dst"], "10.0.5.2", "{drop}");
}
