//! `cargo xtask lab`: two VMs on different kernels joined by one link. The
//! client (6.12) pings across the router (6.1), which forwards to a fake
//! host beyond its second NIC; both capture. A node that never powers off
//! ends the lab at its timeout, and nothing is left running: no qemu, no
//! socket directory.

mod common;

use std::process::{Command, Stdio};

use common::{xtask, TempDir};

/// One lab at a time: each boots several guests.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A lab's outcome: its status, stdout, stderr, and whether its socket
/// directory (`$TMPDIR/myinit-lab-PID`, the wires) was seen while it ran.
struct LabRun {
    status: i32,
    stdout: String,
    stderr: String,
    wires_seen: bool,
}

fn lab(file: &std::path::Path) -> LabRun {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let _slot = common::guest_slot();
    let mut child = xtask()
        .arg("lab")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xtask lab");
    let wires = std::env::temp_dir().join(format!("myinit-lab-{}", child.id()));
    // Pipes drained by threads, so the lab never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut wires_seen = false;
    let status = loop {
        wires_seen |= wires.exists();
        if let Some(status) = child.try_wait().expect("wait for xtask lab") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let run = LabRun {
        status: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        wires_seen,
    };
    eprintln!(
        "--- lab stdout\n{}\n--- lab stderr\n{}",
        run.stdout, run.stderr
    );
    // Every way out removes the wires.
    assert!(!wires.exists(), "{} left behind", wires.display());
    run
}

#[test]
fn a_client_pings_across_a_router_to_a_fake_host_and_both_sides_capture() {
    let dir = TempDir::new("lab");
    dir.write(
        "client.run",
        "ifconfig eth0 10.0.1.2/24 up\n\
         ip route add 10.0.2.0/24 via 10.0.1.1\n\
         capture start eth0 /mnt/host/client.jsonl --backend packet\n\
         ping -c 40 -i 0.5 -W 1 10.0.2.9 > /mnt/host/ping.txt\n\
         capture stop all\n",
    );
    dir.write(
        "router.run",
        "ifconfig eth0 10.0.1.1/24 up\n\
         ifconfig eth1 10.0.2.1/24 up\n\
         echo 1 > /proc/sys/net/ipv4/ip_forward\n\
         fakehost add eth1 10.0.2.9 icmp\n\
         capture start eth1 /mnt/host/router.jsonl --backend packet\n\
         sleep 30\n\
         capture stop all\n",
    );
    let file = dir.write(
        "lab.toml",
        "timeout = 200\n\
         [[node]]\nname = \"client\"\nkernel = \"6.12\"\nautoexec = \"client.run\"\nnics = [\"wan\"]\n\
         [[node]]\nname = \"router\"\nautoexec = \"router.run\"\nnics = [\"inside\", \"outside\"]\n\
         [[link]]\na = \"client.wan\"\nb = \"router.inside\"\n",
    );
    let LabRun {
        status,
        stdout,
        stderr,
        wires_seen,
    } = lab(std::path::Path::new(&file));
    assert_eq!(status, 0, "{stderr}");
    assert!(wires_seen, "the link's sockets were never made");
    // Every console line carries its node's name.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("client | ") && l.contains("6.12.")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("router | ") && l.contains("6.1.")),
        "{stdout}"
    );
    let root = common::target_dir().join("lab");
    let ping = std::fs::read_to_string(root.join("client/ping.txt")).unwrap();
    let received: u32 = ping
        .lines()
        .find_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix(" received")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{ping}"));
    assert!(received >= 1, "{ping}");
    // The replies came from beyond the router, on both sides of it.
    let client = std::fs::read_to_string(root.join("client/client.jsonl")).unwrap();
    let router = std::fs::read_to_string(root.join("router/router.jsonl")).unwrap();
    for (side, text) in [("client", &client), ("router", &router)] {
        assert!(
            text.lines()
                .any(|l| l.contains("\"typ\":0,") && l.contains("\"src\":\"10.0.2.9\"")),
            "{side}: {text}"
        );
    }
    for node in ["client", "router"] {
        assert!(root.join(format!("{node}.log")).is_file());
        assert!(
            stderr.contains(&format!(
                "xtask lab: {node}: powered off with status 0; results: "
            )),
            "{stderr}"
        );
    }
}

#[test]
fn a_node_that_never_powers_off_ends_the_lab_at_its_timeout_and_nothing_stays() {
    let dir = TempDir::new("labhang");
    dir.write("hang.run", "sleep 1000\n");
    dir.write("quick.run", "echo done\n");
    let file = dir.write(
        "lab.toml",
        "timeout = 90\n\
         [[node]]\nname = \"neverends\"\nautoexec = \"hang.run\"\n\
         [[node]]\nname = \"quick\"\nautoexec = \"quick.run\"\n",
    );
    let LabRun {
        status,
        stderr,
        wires_seen,
        ..
    } = lab(std::path::Path::new(&file));
    assert_eq!(status, 124, "{stderr}");
    assert!(wires_seen, "the lab's socket directory was never made");
    assert!(
        stderr.contains("xtask lab: neverends: timed out (killed)")
            && stderr.contains("xtask lab: quick: powered off with status 0")
            && stderr.contains("xtask lab: status 124 (the worst node's: neverends)"),
        "{stderr}"
    );
    let left = Command::new("pgrep")
        .args(["-f", "lab/neverends"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "still running: {:?}", left);
}

#[test]
fn a_bad_lab_is_one_line_and_boots_nothing() {
    let dir = TempDir::new("labbad");
    let file = dir.write(
        "lab.toml",
        "[[node]]\nname = \"a\"\nnics = [\"x\"]\n[[link]]\na = \"a.x\"\nb = \"b.x\"\n",
    );
    let run = lab(std::path::Path::new(&file));
    assert_eq!(run.status, 1);
    assert!(!run.wires_seen, "a bad lab makes no wires");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("link 1: unknown node `b` in `b.x` (nodes: a)"),
        "{}",
        run.stderr
    );
}
