//! `cargo xtask bench`: the drop tracer under a flood, side by side in one
//! run: no tracer, the eBPF backend and the ftrace backend. A raw socket in
//! one namespace sends IPv4 frames with a bad header checksum over a veth
//! pair; the peer drops each one (IP_CSUM). Reported per mode: how long the
//! flood took (its slowdown against no tracer), the drop rate, and what the
//! tracer captured and lost. Needs root and python3 (the sender).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Frames per flood.
    #[arg(long, default_value_t = 500_000)]
    frames: u64,
}

/// Sends N frames as fast as it can; prints the seconds it took.
const SENDER: &str = r#"
import socket, struct, sys, time
iface, dst_mac, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 32, 1, 0, 64, 17, 0x1234,
                 socket.inet_aton('10.99.0.1'), socket.inet_aton('10.99.0.2'))
udp = struct.pack('!HHHH', 4000, 5000, 12, 0) + b'drop'
frame = bytes(int(x, 16) for x in dst_mac.split(':')) + b'\x02\0\0\0\0\x01\x08\x00' + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
send = s.send
start = time.monotonic()
for _ in range(n):
    send(frame)
print(time.monotonic() - start)
"#;

fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes the namespaces even when the bench fails.
struct Namespaces;

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in ["xbench-a", "xbench-b"] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "myinit"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let myinit = root.join("target/release/myinit");
    let _guard = Namespaces;
    sh("ip", &["netns", "add", "xbench-a"])?;
    sh("ip", &["netns", "add", "xbench-b"])?;
    sh(
        "ip",
        &[
            "-n", "xbench-a", "link", "add", "xb0", "type", "veth", "peer", "name", "xb1", "netns",
            "xbench-b",
        ],
    )?;
    sh(
        "ip",
        &[
            "-n",
            "xbench-b",
            "addr",
            "add",
            "10.99.0.2/24",
            "dev",
            "xb1",
        ],
    )?;
    sh("ip", &["-n", "xbench-a", "link", "set", "xb0", "up"])?;
    sh("ip", &["-n", "xbench-b", "link", "set", "xb1", "up"])?;
    let link = sh("ip", &["-n", "xbench-b", "-o", "link", "show", "xb1"])?;
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no MAC on xb1")?
        .to_string();
    let sender = std::env::temp_dir().join("myinit-bench-sender.py");
    std::fs::write(&sender, SENDER)?;
    let frames = args.frames.to_string();
    let flood = format!(
        "/usr/sbin/ip netns exec xbench-a python3 {} xb0 {mac} {frames}",
        sender.display()
    );
    println!("flood: {frames} IPv4 frames with a bad checksum over veth, dropped as IP_CSUM");
    println!(
        "{:<8} {:>9} {:>12} {:>9} {:>12} {:>12} {:>10}",
        "MODE", "SECONDS", "DROPS/S", "SLOWDOWN", "CAPTURED", "LOST", "KERNEL"
    );
    let mut baseline = None;
    for mode in ["off", "ebpf", "ftrace", "off"] {
        let before = csum_errors()?;
        let (secs, report) = if mode == "off" {
            let out = sh("sh", &["-c", &flood])?;
            (out.trim().parse::<f64>().unwrap_or(0.0), String::new())
        } else {
            let script = format!(
                "droptrace start --backend {mode} --reason IP_CSUM --keep 1000; {flood}; droptrace stop"
            );
            let out = sh(myinit.to_str().context("non-UTF-8 path")?, &["-c", &script])?;
            let secs = out
                .lines()
                .find_map(|l| l.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            let report = out
                .lines()
                .find(|l| l.starts_with("droptrace: stopped"))
                .unwrap_or("")
                .to_string();
            (secs, report)
        };
        let kernel = csum_errors()? - before;
        let number = |label: &str| -> String {
            report
                .find(label)
                .and_then(|at| report[..at].split_whitespace().last())
                .unwrap_or("-")
                .to_string()
        };
        let base = *baseline.get_or_insert(secs);
        println!(
            "{:<8} {:>9.3} {:>12.0} {:>8.2}x {:>12} {:>12} {:>10}",
            mode,
            secs,
            kernel as f64 / secs.max(1e-9),
            secs / base.max(1e-9),
            number(" matched"),
            number(" lost"),
            kernel
        );
    }
    let _ = std::fs::remove_file(Path::new(&sender));
    Ok(())
}

/// IpExt InCsumErrors of the receiving namespace: the kernel's own count.
fn csum_errors() -> anyhow::Result<u64> {
    let text = sh(
        "ip",
        &["netns", "exec", "xbench-b", "cat", "/proc/net/netstat"],
    )?;
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        if let [names, values] = pair {
            if names.starts_with("IpExt:") {
                for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                    if n == "InCsumErrors" {
                        return Ok(v.parse()?);
                    }
                }
            }
        }
    }
    bail!("no IpExt InCsumErrors counter")
}
