//! `cargo xtask lab LAB.toml`: several VMs from one description, booted in
//! parallel, each a `cargo xtask vm` of its own. Links join `NODE.NIC`
//! pairs through qemu's `-netdev dgram` on Unix datagram sockets in a
//! private directory, so nodes see each other only through their links and
//! nothing leaves the host (no user-network NIC either). Each console line
//! is prefixed with its node's name and kept in `target/lab/NAME.log`;
//! each node's share (`target/lab/NAME/`, /mnt/host in the guest) holds
//! its scripts and what it writes. The lab ends when every node has
//! powered off, or at the timeout; its status is the worst node's.
//!
//! ```toml
//! timeout = 300            # seconds, for the whole lab
//! [[node]]
//! name = "router"
//! kernel = "6.12"          # 6.1 (default) or 6.12
//! startup = "router-startup.run"    # paths relative to this file
//! autoexec = "router.run"
//! nics = ["left", "right"] # eth0, eth1 in the guest, in this order
//! shares = ["out=results:ro"]  # more 9p shares, mounted by its scripts
//! [[link]]
//! a = "client.wan"
//! b = "router.left"
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde::Deserialize;

use crate::kernel::SERIES;
use crate::target_dir;

#[derive(clap::Args, Debug)]
pub struct LabArgs {
    /// The lab description (TOML).
    file: PathBuf,
    /// End the lab after this many seconds (default: the file's, else 300).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    timeout: Option<u64>,
    #[serde(default)]
    node: Vec<NodeSpec>,
    #[serde(default)]
    link: Vec<LinkSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    name: String,
    kernel: Option<String>,
    startup: Option<PathBuf>,
    autoexec: Option<PathBuf>,
    #[serde(default)]
    nics: Vec<String>,
    /// More 9p shares, `TAG=DIR[:ro]` (DIR relative to the lab file).
    #[serde(default)]
    shares: Vec<String>,
    /// More kernel command line.
    append: Option<String>,
    mem: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkSpec {
    a: String,
    b: String,
}

/// A checked lab: each node's NICs with the wire each is on.
#[derive(Debug)]
struct Lab {
    timeout: u64,
    nodes: Vec<Node>,
}

#[derive(Debug)]
struct Node {
    name: String,
    series: String,
    startup: Option<PathBuf>,
    autoexec: Option<PathBuf>,
    /// Per NIC: (local socket, remote socket) of its link, or none.
    wires: Vec<Option<(PathBuf, PathBuf)>>,
    /// `TAG=DIR[:ro]`, DIR made absolute.
    shares: Vec<String>,
    append: String,
    mem: Option<u32>,
}

const DEFAULT_TIMEOUT: u64 = 300;

/// Reads and checks a lab file; sockets go under `sockets`.
fn load(path: &Path, sockets: &Path, timeout: Option<u64>) -> anyhow::Result<Lab> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let file: LabFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    ensure!(!file.node.is_empty(), "{}: no [[node]]", path.display());
    let mut names = Vec::new();
    for node in &file.node {
        ensure!(
            !node.name.is_empty()
                && node
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "node {:?}: a name is letters, digits, '-' and '_'",
            node.name
        );
        ensure!(
            !names.contains(&node.name.as_str()),
            "node {}: named twice",
            node.name
        );
        names.push(node.name.as_str());
        let mut nics = Vec::new();
        for nic in &node.nics {
            ensure!(
                !nics.contains(&nic.as_str()),
                "node {}: NIC {nic} named twice",
                node.name
            );
            nics.push(nic.as_str());
        }
        if let Some(series) = &node.kernel {
            ensure!(
                SERIES.iter().any(|(s, _)| s == series),
                "node {}: kernel {series}: Debian's kernels here are {}",
                node.name,
                SERIES.map(|s| s.0).join(" and ")
            );
        }
    }
    // NODE.NIC -> (node index, NIC index).
    let endpoint = |link: usize, text: &str| -> anyhow::Result<(usize, usize)> {
        let (node, nic) = text
            .split_once('.')
            .with_context(|| format!("link {link}: `{text}` is not NODE.NIC"))?;
        let n = names.iter().position(|x| *x == node).with_context(|| {
            format!(
                "link {link}: unknown node `{node}` in `{text}` (nodes: {})",
                names.join(", ")
            )
        })?;
        let k = file.node[n]
            .nics
            .iter()
            .position(|x| x == nic)
            .with_context(|| {
                format!(
                    "link {link}: node {node} has no NIC `{nic}` (its NICs: {})",
                    if file.node[n].nics.is_empty() {
                        "none".to_string()
                    } else {
                        file.node[n].nics.join(", ")
                    }
                )
            })?;
        Ok((n, k))
    };
    let mut wires: Vec<Vec<Option<(PathBuf, PathBuf)>>> =
        file.node.iter().map(|n| vec![None; n.nics.len()]).collect();
    let mut used: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (i, link) in file.link.iter().enumerate() {
        let number = i + 1;
        let a = endpoint(number, &link.a)?;
        let b = endpoint(number, &link.b)?;
        ensure!(
            a != b,
            "link {number} joins {} to itself: a link needs two NICs",
            link.a
        );
        for (end, text) in [(a, &link.a), (b, &link.b)] {
            if let Some(other) = used.insert(end, number) {
                bail!("NIC {text} is in links {other} and {number}: a NIC has one wire");
            }
        }
        let sa = sockets.join(format!("l{number}a.sock"));
        let sb = sockets.join(format!("l{number}b.sock"));
        wires[a.0][a.1] = Some((sa.clone(), sb.clone()));
        wires[b.0][b.1] = Some((sb, sa));
    }
    let mut nodes = Vec::new();
    for (spec, wires) in file.node.into_iter().zip(wires) {
        let script = |p: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
            match p {
                None => Ok(None),
                Some(p) => {
                    let full = base.join(p);
                    ensure!(
                        full.is_file(),
                        "node {}: {}: no such file",
                        spec.name,
                        full.display()
                    );
                    Ok(Some(full))
                }
            }
        };
        let mut shares = Vec::new();
        for share in &spec.shares {
            let (tag, dir) = share.split_once('=').with_context(|| {
                format!("node {}: share {share}: expected TAG=DIR[:ro]", spec.name)
            })?;
            ensure!(
                tag != crate::vm::HOST_CODE,
                "node {}: share {share}: host-code is the node's own share (target/lab/{})",
                spec.name,
                spec.name
            );
            let (path, ro) = match dir.strip_suffix(":ro") {
                Some(path) => (path, ":ro"),
                None => (dir, ""),
            };
            let full = base.join(path);
            ensure!(
                full.is_dir(),
                "node {}: share {share}: {} is not a directory",
                spec.name,
                full.display()
            );
            shares.push(format!("{tag}={}{ro}", full.display()));
        }
        nodes.push(Node {
            shares,
            startup: script(&spec.startup)?,
            autoexec: script(&spec.autoexec)?,
            series: spec
                .kernel
                .clone()
                .unwrap_or_else(|| SERIES[0].0.to_string()),
            name: spec.name,
            wires,
            append: spec.append.unwrap_or_default(),
            mem: spec.mem,
        });
    }
    Ok(Lab {
        timeout: timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT),
        nodes,
    })
}

/// A node's MAC for NIC `k`: locally administered, node and NIC in it.
fn mac(node: usize, nic: usize) -> String {
    format!("52:54:00:1a:{:02x}:{:02x}", node + 1, nic + 1)
}

/// Removes the socket directory (and with it every wire) when dropped.
struct Sockets(PathBuf);

impl Drop for Sockets {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the nodes still running when dropped (an error, Ctrl-C).
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

pub fn run(args: &LabArgs) -> anyhow::Result<i32> {
    let sockets = Sockets(std::env::temp_dir().join(format!("myinit-lab-{}", std::process::id())));
    let lab = load(&args.file, &sockets.0, args.timeout)?;
    let _ = std::fs::remove_dir_all(&sockets.0);
    std::fs::create_dir_all(&sockets.0)?;
    let root = target_dir().join("lab");
    std::fs::create_dir_all(&root)?;
    // Kernels and initrds first, one at a time (they share caches).
    let mut initrds = BTreeMap::new();
    for node in &lab.nodes {
        if initrds.contains_key(&node.series) {
            continue;
        }
        let path = root.join(format!("initrd-{}.img", node.series));
        let status = Command::new(std::env::current_exe()?)
            .args(["initrd", "--kernel-version", &node.series, "--output"])
            .arg(&path)
            .stdin(Stdio::null())
            .status()
            .context("running xtask initrd")?;
        ensure!(
            status.success(),
            "the initrd for kernel {} failed",
            node.series
        );
        initrds.insert(node.series.clone(), path);
    }
    let started = Instant::now();
    let print = Arc::new(Mutex::new(()));
    let mut running = Running(Vec::new());
    let mut readers = Vec::new();
    let width = lab.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (i, node) in lab.nodes.iter().enumerate() {
        let share = root.join(&node.name);
        let _ = std::fs::remove_dir_all(&share);
        std::fs::create_dir_all(&share)?;
        for (script, name) in [
            (&node.startup, "startup.run"),
            (&node.autoexec, "autoexec.run"),
        ] {
            if let Some(script) = script {
                std::fs::copy(script, share.join(name))
                    .with_context(|| format!("copying {}", script.display()))?;
            }
        }
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "vm",
            "--kernel-version",
            &node.series,
            "--kvm",
            "off",
            "--net",
            "none",
        ])
        .arg("--initrd")
        .arg(&initrds[&node.series])
        .arg("--share")
        .arg(&share)
        .args([
            "--append",
            format!(
                "myinit.countdown=0 myinit.poweroff_countdown=0 {}",
                node.append
            )
            .trim_end(),
        ])
        .args(["--timeout", &lab.timeout.to_string()]);
        if let Some(mem) = node.mem {
            cmd.args(["--mem", &mem.to_string()]);
        }
        for share in &node.shares {
            cmd.args(["--share", share]);
        }
        for (k, wire) in node.wires.iter().enumerate() {
            let spec = match wire {
                Some((local, remote)) => {
                    format!("unix:{}={}", local.display(), remote.display())
                }
                None => "none".into(),
            };
            cmd.args(["--nic", &format!("{spec},mac={}", mac(i, k))]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("node {}: running xtask vm", node.name))?;
        let log_path = root.join(format!("{}.log", node.name));
        let log = Arc::new(Mutex::new(
            std::fs::File::create(&log_path).with_context(|| format!("{}", log_path.display()))?,
        ));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, print, name) = (log.clone(), print.clone(), node.name.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches('\r');
                    let _guard = print.lock().unwrap_or_else(|e| e.into_inner());
                    println!("{name:>width$} | {text}");
                    let _ = writeln!(log.lock().unwrap_or_else(|e| e.into_inner()), "{text}");
                }
            }));
        }
        running.0.push(child);
    }
    // Each node's xtask vm kills its guest at the timeout; this is the
    // backstop for a node that would not end even then.
    let deadline = started + Duration::from_secs(lab.timeout + 60);
    let mut statuses: Vec<Option<i32>> = vec![None; lab.nodes.len()];
    while statuses.iter().any(Option::is_none) {
        for (i, child) in running.0.iter_mut().enumerate() {
            if statuses[i].is_none() {
                if let Some(status) = child.try_wait()? {
                    statuses[i] = Some(status.code().unwrap_or(crate::vm::STATUS_NO_STATUS));
                }
            }
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(running);
    for reader in readers {
        let _ = reader.join();
    }
    let statuses: Vec<i32> = statuses
        .into_iter()
        .map(|s| s.unwrap_or(crate::vm::STATUS_TIMEOUT))
        .collect();
    eprintln!(
        "xtask lab: {} node(s) in {:.1} s; logs and shares under {}",
        lab.nodes.len(),
        started.elapsed().as_secs_f64(),
        root.display()
    );
    for (node, status) in lab.nodes.iter().zip(&statuses) {
        let what = match *status {
            crate::vm::STATUS_TIMEOUT => "timed out (killed)".to_string(),
            crate::vm::STATUS_NO_STATUS => {
                "stopped without a status (panic, reboot, qemu failed)".to_string()
            }
            s => format!("powered off with status {s}"),
        };
        let files: Vec<String> = std::fs::read_dir(root.join(&node.name))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".run") && !n.starts_with('.'))
            .collect();
        eprintln!(
            "xtask lab: {}: {what}; results: {}",
            node.name,
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            }
        );
    }
    let worst = statuses
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| **s)
        .map(|(i, s)| (i, *s))
        .unwrap_or((0, 0));
    if worst.1 != 0 {
        eprintln!(
            "xtask lab: status {} (the worst node's: {})",
            worst.1, lab.nodes[worst.0].name
        );
    }
    Ok(worst.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> anyhow::Result<Lab> {
        // A directory of its own per call (the tests run in parallel),
        // removed afterwards.
        let dir = myinit_testkit::TempDir::new("labtest");
        let file = dir.write("lab.toml", text);
        load(Path::new(&file), Path::new("/tmp/sockets"), None)
    }

    const TWO: &str = "[[node]]\nname = \"a\"\nnics = [\"x\", \"y\"]\n[[node]]\nname = \"b\"\nkernel = \"6.12\"\nnics = [\"x\"]\n";

    #[test]
    fn links_become_wires_in_both_directions() {
        let lab = check(&format!("{TWO}[[link]]\na = \"a.y\"\nb = \"b.x\"\n")).unwrap();
        assert_eq!(lab.timeout, DEFAULT_TIMEOUT);
        assert_eq!(lab.nodes[0].wires[0], None);
        let (l, r) = lab.nodes[0].wires[1].clone().unwrap();
        assert_eq!(lab.nodes[1].wires[0], Some((r, l)));
        assert_eq!(lab.nodes[1].series, "6.12");
    }

    #[test]
    fn bad_labs_are_refused_in_one_line() {
        let cases = [
            (
                format!("{TWO}[[link]]\na = \"c.x\"\nb = \"b.x\"\n"),
                "link 1: unknown node `c` in `c.x` (nodes: a, b)",
            ),
            (
                format!("{TWO}[[link]]\na = \"a.z\"\nb = \"b.x\"\n"),
                "link 1: node a has no NIC `z` (its NICs: x, y)",
            ),
            (
                format!(
                    "{TWO}[[link]]\na = \"a.x\"\nb = \"b.x\"\n[[link]]\na = \"a.y\"\nb = \"b.x\"\n"
                ),
                "NIC b.x is in links 1 and 2: a NIC has one wire",
            ),
            (
                format!("{TWO}[[link]]\na = \"a.x\"\nb = \"a.x\"\n"),
                "link 1 joins a.x to itself",
            ),
            (
                "[[node]]\nname = \"a\"\nkernel = \"5.10\"\n".into(),
                "node a: kernel 5.10: Debian's kernels here are 6.1 and 6.12",
            ),
            (
                "[[node]]\nname = \"a\"\nautoexec = \"nope.run\"\n".into(),
                "nope.run: no such file",
            ),
            (
                "[[node]]\nname = \"a\"\ncolour = 1\n".into(),
                "unknown field `colour`",
            ),
        ];
        for (text, message) in cases {
            let e = check(&text).unwrap_err().to_string();
            assert!(e.contains(message), "{e}");
        }
    }
}
