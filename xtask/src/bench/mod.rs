//! `cargo xtask bench [PART] [--quick] [--rounds N]`: myinit's fast paths
//! measured against the tools users would otherwise pick, on the same
//! workload in the same run (../shared/docs/BENCH.md describes the frame).
//!
//! This module is the frame: the parts' table, the network namespaces and
//! veth pairs, the trafgen generator, the myinit binary that ships, CPU time
//! from /proc, medians, and the tables written as markdown and JSON under
//! `target/bench/`. A part is one file with `pub fn run(&Bench) ->
//! anyhow::Result<Vec<Table>>` and one line in `PARTS`.

mod boot;
mod capture;
mod droptrace;
mod fakehost;
mod filters;
mod inject;

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
pub use myinit_testkit::{sh, unique, TempDir as Scratch};
use myinit_testkit::{Frame, Netns};
use serde_json::{json, Value};

/// What a part runs: its tables, or an error that ends this part only.
type PartFn = fn(&Bench) -> anyhow::Result<Vec<Table>>;

/// Every part, in the order `all` runs them.
const PARTS: &[(&str, PartFn)] = &[
    ("droptrace", droptrace::run),
    ("capture", capture::run),
    ("inject", inject::run),
    ("fakehost", fakehost::run),
    ("filters", filters::run),
    ("boot", boot::run),
];

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The part to run: droptrace, capture, inject, fakehost, filters, boot or all.
    #[arg(default_value = "all", value_parser = part_name)]
    part: String,
    /// A short run (the test suite's): few frames, one round; asserts nothing about speed.
    #[arg(long)]
    quick: bool,
    /// Rounds per contender (default: 3, or 1 with --quick); medians are reported.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: Option<u32>,
    /// Where the markdown and JSON go (default: target/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn part_name(name: &str) -> Result<String, String> {
    if name == "all" || PARTS.iter().any(|(n, _)| *n == name) {
        return Ok(name.to_string());
    }
    let names: Vec<&str> = PARTS.iter().map(|(n, _)| *n).collect();
    Err(format!("expected one of {} or all", names.join(", ")))
}

/// What every part gets: the run's settings and the binary under test.
pub struct Bench {
    pub quick: bool,
    pub rounds: u32,
    pub out: PathBuf,
    /// The static musl release build: the binary the initrd ships as /init.
    pub myinit: PathBuf,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let wanted: Vec<&(&str, PartFn)> = PARTS
        .iter()
        .filter(|(name, _)| args.part == "all" || *name == args.part)
        .collect();
    ensure!(
        is_root(),
        "bench: needs root (network namespaces, eBPF, tracefs)"
    );
    let bench = Bench {
        quick: args.quick,
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 3 }),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| crate::target_dir().join("bench")),
        myinit: crate::initrd::build_myinit()?,
    };
    std::fs::create_dir_all(&bench.out)
        .with_context(|| format!("creating {}", bench.out.display()))?;
    let mut failed = Vec::new();
    for (name, part) in wanted {
        eprintln!(
            "bench: {name} ({} round(s){})",
            bench.rounds,
            if bench.quick { ", quick" } else { "" }
        );
        match part(&bench).and_then(|tables| bench.write(name, &tables)) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("bench {name}: {e:#}");
                failed.push(*name);
            }
        }
    }
    ensure!(failed.is_empty(), "bench: failed: {}", failed.join(", "));
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Bench {
    /// Frames or packets per run: `full` normally, a tenth with --quick.
    pub fn scaled(&self, full: u64) -> u64 {
        if self.quick {
            full / 10
        } else {
            full
        }
    }

    /// Prints the tables and writes PART.md and PART.json.
    fn write(&self, part: &str, tables: &[Table]) -> anyhow::Result<()> {
        let mut markdown = format!("## bench {part}\n\n");
        for table in tables {
            markdown.push_str(&table.markdown());
        }
        print!("{markdown}");
        let md = self.out.join(format!("{part}.md"));
        std::fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
        let doc = json!({
            "part": part,
            "quick": self.quick,
            "rounds": self.rounds,
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim(),
            "myinit": self.myinit.display().to_string(),
            "tables": tables.iter().map(Table::json).collect::<Vec<_>>(),
        });
        let path = self.out.join(format!("{part}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {} and {}", md.display(), path.display());
        Ok(())
    }
}

/// One cell: a number (kept as a number in JSON) or text.
#[derive(Debug, Clone)]
pub enum Cell {
    Num(f64, usize),
    Int(u64),
    Text(String),
    /// Not applicable or not measured.
    None,
}

impl Cell {
    pub fn num(value: f64, decimals: usize) -> Self {
        if value.is_finite() {
            Cell::Num(value, decimals)
        } else {
            Cell::None
        }
    }

    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    fn shown(&self) -> String {
        match self {
            Cell::Num(v, d) => format!("{v:.d$}"),
            Cell::Int(v) => v.to_string(),
            Cell::Text(s) => s.clone(),
            Cell::None => "–".into(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Num(v, _) => json!(v),
            Cell::Int(v) => json!(v),
            Cell::Text(s) => json!(s),
            Cell::None => Value::Null,
        }
    }
}

/// A result table: rows of cells under named columns, then the ratios
/// against the reference and notes.
#[derive(Debug, Default)]
pub struct Table {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    /// (what, ratio, target if the issue set one): lower is better (a
    /// cost), the target is a ceiling.
    pub ratios: Vec<(String, f64, Option<f64>)>,
    /// (what, ratio, target): higher is better (a speed-up), the target is
    /// a floor.
    pub speedups: Vec<(String, f64, f64)>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: impl Into<String>, columns: &[&'static str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.to_vec(),
            ..Table::default()
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        s.push_str(&format!("| {} |\n", self.columns.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(self.columns.len())));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(Cell::shown).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s.push('\n');
        for (what, ratio, target) in &self.ratios {
            let target = target
                .map(|t| {
                    // A cost at or below zero (the sender ran faster than
                    // alone) says the difference is within the noise.
                    let verdict = if *ratio <= 0.0 {
                        "no verdict: a figure ≤ 0 is within the run-to-run noise"
                    } else if *ratio <= t {
                        "met"
                    } else {
                        "missed"
                    };
                    format!(" (target ≤ {t:.2}×: {verdict})")
                })
                .unwrap_or_default();
            s.push_str(&format!("- {what}: **{ratio:.2}×**{target}\n"));
        }
        for (what, ratio, floor) in &self.speedups {
            let verdict = if *ratio >= *floor { "met" } else { "missed" };
            s.push_str(&format!(
                "- {what}: **{ratio:.2}×** (target ≥ {floor:.2}×: {verdict})\n"
            ));
        }
        for note in &self.notes {
            s.push_str(&format!("- {note}\n"));
        }
        s.push('\n');
        s
    }

    fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                let fields = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.to_string(), v.json()));
                Value::Object(fields.collect())
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios
            .iter()
            .map(|(what, ratio, target)| {
                json!({"what": what, "ratio": ratio, "target": target, "better": "lower"})
            })
            .chain(self.speedups.iter().map(|(what, ratio, floor)| {
                json!({"what": what, "ratio": ratio, "target": floor, "better": "higher"})
            }))
            .collect();
        json!({
            "title": self.title,
            "columns": self.columns,
            "rows": rows,
            "ratios": ratios,
            "notes": self.notes,
        })
    }
}

/// The median of the finite values (NaN when there are none).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Fails with a clear line when a reference tool is missing (`cargo xtask
/// setup`, which every bench run calls first, installs them).
pub fn need(program: &str, package: &str) -> anyhow::Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    ensure!(
        found,
        "{program} is missing (Debian package {package}; `cargo xtask setup` installs it)"
    );
    Ok(())
}

/// Two network namespaces joined by a veth pair: `tx` (in `ns_tx`) sends,
/// `rx` (in `ns_rx`, address 10.99.0.2/24) receives. Removed on drop (the
/// test kit's namespaces), even when the bench fails.
pub struct VethPair {
    pub ns_tx: String,
    pub ns_rx: String,
    pub tx: String,
    pub rx: String,
    pub rx_mac: [u8; 6],
    pub tx_mac: [u8; 6],
    _namespaces: [Netns; 2],
}

pub const RX_IP: [u8; 4] = [10, 99, 0, 2];
pub const TX_IP: [u8; 4] = [10, 99, 0, 1];

impl VethPair {
    pub fn new() -> anyhow::Result<Self> {
        let tag = unique("");
        let (tx, rx) = (format!("{tag}t"), format!("{tag}r"));
        let ns_tx = Netns::named(format!("{tag}-tx"))?;
        let ns_rx = Netns::named(format!("{tag}-rx"))?;
        ns_tx.try_ip(&[
            "link",
            "add",
            &tx,
            "type",
            "veth",
            "peer",
            "name",
            &rx,
            "netns",
            &ns_rx.name,
        ])?;
        ns_tx.try_ip(&["addr", "add", "10.99.0.1/24", "dev", &tx])?;
        ns_rx.try_ip(&["addr", "add", "10.99.0.2/24", "dev", &rx])?;
        // No IPv6 on the pair: its router solicitations and DAD would add
        // to the receiver's counters.
        ns_tx.try_no_ipv6()?;
        ns_rx.try_no_ipv6()?;
        ns_tx.try_ip(&["link", "set", &tx, "up"])?;
        ns_rx.try_ip(&["link", "set", &rx, "up"])?;
        let tx_mac = ns_tx.mac(&tx)?;
        let rx_mac = ns_rx.mac(&rx)?;
        // Fixed neighbours: the receiver's ICMP replies then need no ARP,
        // whose answers would add to the receiver's counters.
        let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
        for (ns, ip, lladdr, dev) in [
            (&ns_rx, "10.99.0.1", mac(tx_mac), &rx),
            (&ns_tx, "10.99.0.2", mac(rx_mac), &tx),
        ] {
            ns.try_ip(&[
                "neigh",
                "replace",
                ip,
                "lladdr",
                &lladdr,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        Ok(VethPair {
            ns_tx: ns_tx.name.clone(),
            ns_rx: ns_rx.name.clone(),
            tx,
            rx,
            rx_mac,
            tx_mac,
            _namespaces: [ns_tx, ns_rx],
        })
    }

    /// A counter of `/proc/net/netstat` or `/proc/net/snmp` in the receiving
    /// namespace, e.g. ("IpExt", "InCsumErrors"), ("Udp", "NoPorts").
    pub fn rx_netstat(&self, group: &str, name: &str) -> anyhow::Result<u64> {
        for file in ["/proc/net/netstat", "/proc/net/snmp"] {
            let text = sh("ip", &["netns", "exec", &self.ns_rx, "cat", file])?;
            if let Some(v) = netstat_value(&text, group, name) {
                return Ok(v);
            }
        }
        bail!("no {group} {name} counter in the receiving namespace")
    }

    /// The receiving interface's counter (`rx_packets`, `rx_dropped`, …).
    pub fn rx_counter(&self, name: &str) -> anyhow::Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.rx);
        let text = sh("ip", &["netns", "exec", &self.ns_rx, "cat", &path])?;
        text.trim()
            .parse()
            .with_context(|| format!("{path}: {text:?}"))
    }
}

/// `Group: names…` / `Group: values…` line pairs, as /proc/net/netstat has them.
fn netstat_value(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if n == name {
                return v.parse().ok();
            }
        }
    }
    None
}

/// A trafgen flood: one frame, sent `count` times from one CPU through
/// PACKET_TX_RING.
pub struct Flood {
    config: PathBuf,
    count: u64,
}

impl Flood {
    pub fn new(frame: &[u8], count: u64) -> anyhow::Result<Self> {
        Self::cycle(&[frame], count)
    }

    /// `count` frames, the given ones in turn (trafgen sends the packets
    /// of its configuration round-robin).
    pub fn cycle(frames: &[&[u8]], count: u64) -> anyhow::Result<Self> {
        need("trafgen", "netsniff-ng")?;
        let mut text = String::new();
        for frame in frames {
            let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
            text.push_str(&format!("{{ {} }}\n", bytes.join(", ")));
        }
        let config = std::env::temp_dir().join(format!("{}.trafgen", unique("")));
        std::fs::write(&config, text)?;
        Ok(Flood { config, count })
    }

    /// Sends the flood from `pair.tx`; returns the seconds it took.
    pub fn run(&self, pair: &VethPair) -> anyhow::Result<f64> {
        let started = Instant::now();
        let count = self.count.to_string();
        let config = self.config.display().to_string();
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &pair.ns_tx,
                "trafgen",
                "--dev",
                &pair.tx,
                "--conf",
                &config,
                "--num",
                &count,
                "--cpus",
                "1",
                "--no-sock-mem",
            ],
        )
        .context("trafgen")?;
        Ok(started.elapsed().as_secs_f64())
    }
}

impl Flood {
    /// Sends the flood from `dev` in `netns` through the qdisc layer
    /// (`--qdisc-path`; trafgen bypasses it by default, and with it the TC
    /// egress hook), so programs at `dev`'s egress see every frame; at
    /// `pps` frames/s (`--rate`: trafgen then sends with sendto(2) instead
    /// of its ring) or as fast as it goes. Returns the seconds it took.
    pub fn run_egress(&self, netns: &str, dev: &str, pps: Option<u64>) -> anyhow::Result<f64> {
        let started = Instant::now();
        let count = self.count.to_string();
        let config = self.config.display().to_string();
        let mut args = vec![
            "netns",
            "exec",
            netns,
            "trafgen",
            "--dev",
            dev,
            "--conf",
            &config,
            "--num",
            &count,
            "--cpus",
            "1",
            "--no-sock-mem",
            "--qdisc-path",
        ];
        let rate = pps.map(|r| format!("{}pps", r.max(1)));
        if let Some(rate) = &rate {
            args.extend(["--rate", rate.as_str()]);
        }
        sh("ip", &args).context("trafgen")?;
        Ok(started.elapsed().as_secs_f64())
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// An IPv4/UDP frame of `len` bytes (at least 42) from tx to rx; `ip_csum`
/// false gives a wrong header checksum (the receiver drops it as IP_CSUM).
/// Runs `measure` once per contender per round, a different order each
/// round (a drift of the machine's load then does not always favour the
/// same contender); prints each sample (`describe`) as it comes. The
/// samples, per contender in `contenders`' order.
pub fn rounds<C: Copy, S>(
    bench: &Bench,
    what: &str,
    contenders: &[C],
    label: impl Fn(C) -> String,
    mut measure: impl FnMut(C) -> anyhow::Result<S>,
    describe: impl Fn(&S) -> String,
) -> anyhow::Result<Vec<Vec<S>>> {
    let mut samples: Vec<Vec<S>> = contenders.iter().map(|_| Vec::new()).collect();
    for round in 0..bench.rounds as usize {
        for k in 0..contenders.len() {
            let i = (k + round) % contenders.len();
            let c = contenders[i];
            let s =
                measure(c).with_context(|| format!("{what}, round {}: {}", round + 1, label(c)))?;
            eprintln!(
                "bench {what}: round {} {}: {}",
                round + 1,
                label(c),
                describe(&s)
            );
            samples[i].push(s);
        }
    }
    Ok(samples)
}

/// The generator's own spread over the rounds (its CPU seconds alone), per
/// unit of `per` things, scaled by `scale` (1e6: µs, 1e9: ns): how far the
/// sender's part of a cost can be trusted.
pub fn noise_note(alone: &[f64], per: u64, scale: f64, unit: &str, what: &str) -> Option<String> {
    let (lo, hi) = alone
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    lo.is_finite().then(|| {
        format!(
            "noise: the generator alone used {lo:.3}–{hi:.3} CPU s over the rounds, ±{:.3} {unit} per {what}",
            (hi - lo) / 2.0 / per as f64 * scale
        )
    })
}

pub fn udp_frame(pair: &VethPair, len: usize, port: u16, ip_csum: bool) -> Vec<u8> {
    let f = Frame::ether(pair.rx_mac, pair.tx_mac)
        .ipv4(TX_IP, RX_IP)
        .udp_no_checksum(4000, port)
        .payload(&vec![0; len.max(42) - 42]);
    if ip_csum { f } else { f.bad_ip_checksum() }.bytes()
}

/// A process's own CPU time (user + system, all its threads, not its
/// children) from `/proc/PID/stat`, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("/proc/{pid}/stat: {text:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

/// A child whose output lines arrive on a channel (stdout and stderr
/// together), killed on drop.
pub struct Watched {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Watched {
    pub fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
        let (tx, lines) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().context("stdout")?),
            Box::new(child.stderr.take().context("stderr")?),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Watched {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits for a line containing `text`; returns it.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(text);
                    self.seen.push(line.clone());
                    if hit {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "no {text:?} within {} s; last lines: {}",
                    timeout.as_secs(),
                    self.last_lines()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                    "the process ended before {text:?}; last lines: {}",
                    self.last_lines()
                ),
            }
        }
    }

    fn last_lines(&self) -> String {
        let from = self.seen.len().saturating_sub(6);
        self.seen[from..].join(" / ")
    }

    pub fn send(&mut self, text: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes stdin and waits (bounded) for the end; the lines it printed.
    pub fn finish(&mut self, timeout: Duration) -> anyhow::Result<Vec<String>> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            ensure!(
                Instant::now() < deadline,
                "process {} did not end within {} s",
                self.child.id(),
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader threads end with the pipes; collect what is left (a
        // grandchild holding a pipe open must not keep us here).
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        Ok(self.seen.clone())
    }

    /// SIGINT, as Ctrl-C would (bpftrace, tcpdump print their totals then).
    pub fn interrupt(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The myinit shell driven over a pipe, one command at a time.
pub struct MyinitShell {
    pub proc: Watched,
    marks: u32,
}

impl MyinitShell {
    /// Starts `myinit` (its shell reads commands from stdin) in `netns`, or here.
    pub fn start(bench: &Bench, netns: Option<&str>) -> anyhow::Result<Self> {
        Self::start_on(bench, netns, None)
    }

    /// The same, its threads kept on `cpu` (`taskset -c`, which execs in
    /// place like `ip netns exec`: the pid stays myinit's).
    pub fn start_on(bench: &Bench, netns: Option<&str>, cpu: Option<&str>) -> anyhow::Result<Self> {
        let mut words: Vec<std::ffi::OsString> = Vec::new();
        if let Some(cpu) = cpu {
            words.extend(["taskset".into(), "-c".into(), cpu.into()]);
        }
        if let Some(ns) = netns {
            words.extend(["ip".into(), "netns".into(), "exec".into(), ns.into()]);
        }
        words.push(bench.myinit.clone().into());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]);
        Ok(MyinitShell {
            proc: Watched::spawn(cmd)?,
            marks: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Runs one command line; returns the lines it printed (bounded wait),
    /// or an error with them when its status is not 0.
    pub fn run(&mut self, line: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        self.marks += 1;
        let mark = format!("@@bench-done-{} ", self.marks);
        let from = self.proc.seen.len();
        self.proc.send(&format!("{line}\necho {mark}$?\n"))?;
        let done = self
            .proc
            .wait_for(&mark, timeout)
            .with_context(|| format!("myinit: {line}"))?;
        let end = self.proc.seen.len() - 1;
        let printed = self.proc.seen[from..end].to_vec();
        let status = done.rsplit(' ').next().unwrap_or_default();
        ensure!(
            status == "0",
            "myinit: {line}: status {status}: {}",
            printed.join(" / ")
        );
        Ok(printed)
    }

    /// `exit`, then waits for the end.
    pub fn exit(mut self) -> anyhow::Result<()> {
        self.proc.send("exit\n")?;
        self.proc.finish(Duration::from_secs(20))?;
        Ok(())
    }
}

/// The number just before `label` in `line`: ("5 lost", " lost") → 5.
pub fn number_before(line: &str, label: &str) -> Option<u64> {
    let at = line.find(label)?;
    line[..at]
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ':')
        .rfind(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// `path` as a str for a command line.
pub fn arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{}: not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn netstat_pairs_and_numbers_in_lines() {
        let text =
            "IpExt: InNoRoutes InCsumErrors\nIpExt: 0 17\nUdp: InDatagrams NoPorts\nUdp: 1 2\n";
        assert_eq!(netstat_value(text, "IpExt", "InCsumErrors"), Some(17));
        assert_eq!(netstat_value(text, "Udp", "NoPorts"), Some(2));
        assert_eq!(netstat_value(text, "Udp", "Nope"), None);
        let line = "droptrace: stopped (ftrace): 163292 captured, 163292 matched, 36708 lost";
        assert_eq!(number_before(line, " matched"), Some(163292));
        assert_eq!(number_before(line, " lost"), Some(36708));
    }

    #[test]
    fn a_frame_with_a_good_checksum_sums_to_zero() {
        let header = [
            0x45u8, 0, 0, 50, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 99, 0, 1, 10, 99, 0, 2,
        ];
        let sum = myinit_testkit::frames::internet_checksum(&header);
        let mut h = header;
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(myinit_testkit::frames::internet_checksum(&h), 0);
    }
}
