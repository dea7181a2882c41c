//! `bench capture`: 64-byte and 1500-byte UDP frames at trafgen's top rate
//! into a veth pair, captured on the receiving end (in its namespace) by
//! myinit's eBPF backend, its TPACKET_V3 backend and `tcpdump -w` (the
//! reference), all with snap length 1514 and incoming packets only; the
//! generator alone gives the floor. Each file is read back with
//! `tcpdump -r`: it must hold what the capture says it captured.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context as _};

use super::{
    arg, median, need, number_before, udp_frame, Bench, Cell, Flood, MyinitShell, Scratch, Table,
    VethPair, Watched,
};

/// The same snap length for every contender: a whole 1500-MTU frame.
const SNAPLEN: u32 = 1514;

/// The CPU every contender is kept on: trafgen `--cpus 1` pins its sender
/// to CPU 0, where the receive path runs in its softirqs. Unpinned, a
/// woken reader was sometimes placed on the sender's CPU and sometimes
/// not, which made the sender's CPU time vary by a third between rounds.
const CONTENDER_CPU: &str = "1";

/// `CONTENDER_CPU` where the machine has a second CPU.
pub(super) fn contender_cpu() -> Option<&'static str> {
    std::thread::available_parallelism()
        .is_ok_and(|n| n.get() >= 2)
        .then_some(CONTENDER_CPU)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Contender {
    None,
    /// myinit `capture --backend NAME`.
    Myinit(&'static str),
    Tcpdump,
}

impl Contender {
    pub(super) fn label(self) -> String {
        match self {
            Contender::None => "none (generator alone)".into(),
            Contender::Myinit(backend) => {
                format!("myinit capture --backend {backend} (static musl)")
            }
            Contender::Tcpdump => format!("tcpdump -w -s {SNAPLEN} (reference)"),
        }
    }
}

const CONTENDERS: [Contender; 4] = [
    Contender::None,
    Contender::Tcpdump,
    Contender::Myinit("ebpf"),
    Contender::Myinit("packet"),
];

impl Sample {
    pub(super) fn describe(&self) -> String {
        format!(
            "{:.3} s, {} received, captured {:?}, lost {:?}, in file {:?}, cpu {:?}",
            self.flood_s, self.received, self.captured, self.lost, self.in_file, self.cpu_s
        )
    }
}

/// One flood with one contender.
#[derive(Default, Clone, Copy)]
pub(super) struct Sample {
    pub flood_s: f64,
    /// trafgen's own CPU time (user + sys) over the flood: the receive path
    /// and TC programs run in its softirqs and are charged to it (this
    /// kernel has no IRQ time accounting), while wall time also counts
    /// the time other processes on this shared machine took its CPU.
    pub sender_cpu_s: f64,
    /// The receiving interface's rx_packets over the flood.
    pub received: u64,
    pub cpu_s: Option<f64>,
    pub captured: Option<u64>,
    pub lost: Option<u64>,
    /// Packets `tcpdump -r` reads from the file.
    pub in_file: Option<u64>,
}

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    need("tcpdump", "tcpdump")?;
    let pair = VethPair::new()?;
    // The files go to tmpfs: a 1500-byte flood writes ~1.5 GB per capture,
    // and a disk's writeback would time the disk, not the capture.
    let scratch = shm_scratch()?;
    let mut tables = Vec::new();
    for (size, full) in [(64usize, 1_000_000u64), (1500, 500_000)] {
        let frames = bench.scaled(full);
        let flood = Flood::new(&udp_frame(&pair, size, 9, true), frames)?;
        let samples = super::rounds(
            bench,
            &format!("capture: {size} B"),
            &CONTENDERS,
            Contender::label,
            |c| measure(bench, &pair, &flood, &scratch, c, None),
            Sample::describe,
        )?;
        tables.push(table(bench, size, frames, &samples));
    }
    Ok(tables)
}

fn table(bench: &Bench, size: usize, frames: u64, samples: &[Vec<Sample>]) -> Table {
    let mut table = Table::new(
        format!(
            "{frames} {size}-byte UDP frames per flood (trafgen --cpus 1) captured on the receiving veth, snaplen {SNAPLEN}, median of {} round(s)",
            bench.rounds
        ),
        &[
            "contender",
            "flood s",
            "frames/s",
            "sender CPU s",
            "sender slowdown",
            "contender CPU s",
            "CPU µs per captured packet",
            "received",
            "captured",
            "lost",
            "captured + lost = received",
            "in file (tcpdump -r)",
            "file = captured",
        ],
    );
    let med = |v: &[Sample], f: &dyn Fn(&Sample) -> Option<f64>| {
        median(&v.iter().filter_map(f).collect::<Vec<_>>())
    };
    let base = med(&samples[0], &|s| Some(s.sender_cpu_s));
    let base_flood = med(&samples[0], &|s| Some(s.flood_s));
    let mut costs = Vec::new();
    for (c, v) in CONTENDERS.iter().zip(samples) {
        let flood_s = med(v, &|s| Some(s.flood_s));
        let sender = med(v, &|s| Some(s.sender_cpu_s));
        let received = med(v, &|s| Some(s.received as f64));
        let cpu = med(v, &|s| s.cpu_s);
        let captured = med(v, &|s| s.captured.map(|x| x as f64));
        let lost = med(v, &|s| s.lost.map(|x| x as f64));
        let in_file = med(v, &|s| s.in_file.map(|x| x as f64));
        // Per captured packet: the capture's own CPU plus what it cost the
        // sender's CPU (the slowdown against the generator alone), per
        // round, then the median.
        let cost = med(v, &|s| {
            let (cpu, captured) = (s.cpu_s?, s.captured?);
            (captured > 0).then(|| (cpu + (s.sender_cpu_s - base)) / captured as f64 * 1e6)
        });
        costs.push(cost);
        let yes_no = |all: bool| Cell::text(if all { "yes" } else { "no" });
        let (balanced, file_ok) = match c {
            Contender::None => (Cell::None, Cell::None),
            _ => (
                yes_no(v.iter().all(|s| {
                    s.captured
                        .zip(s.lost)
                        .is_some_and(|(a, b)| a + b == s.received)
                })),
                yes_no(
                    v.iter()
                        .all(|s| s.in_file.is_some() && s.in_file == s.captured),
                ),
            ),
        };
        table.row(vec![
            Cell::text(c.label()),
            Cell::num(flood_s, 3),
            Cell::num(frames as f64 / flood_s, 0),
            Cell::num(sender, 3),
            Cell::text(format!("{:.2}×", sender / base)),
            Cell::num(cpu, 3),
            Cell::num(cost, 3),
            Cell::num(received, 0),
            Cell::num(captured, 0),
            Cell::num(lost, 0),
            balanced,
            Cell::num(in_file, 0),
            file_ok,
        ]);
    }
    let reference = costs[1];
    for (i, c) in CONTENDERS.iter().enumerate() {
        if let Contender::Myinit(_) = c {
            if costs[i].is_finite() && reference.is_finite() {
                table.ratios.push((
                    format!("CPU per captured packet, {} vs tcpdump", c.label()),
                    costs[i] / reference,
                    Some(0.5),
                ));
            }
        }
    }
    // The generator's own spread says how far the sender's part can be trusted.
    let alone: Vec<f64> = samples[0].iter().map(|s| s.sender_cpu_s).collect();
    table
        .notes
        .extend(super::noise_note(&alone, frames, 1e6, "µs", "packet"));
    table.notes.push(format!(
        "generator alone: {:.0} frames/s; CPU per captured packet = (contender's user+sys from /proc/PID/stat + the sender's extra CPU: trafgen's user+sys − the generator's alone) ÷ captured, per round, median; the sender's CPU, not the flood's wall time: the receive path and the TC programs run in trafgen's softirqs and are charged to it, and wall time on this shared machine also counts other processes' turns",
        frames as f64 / base_flood
    ));
    if let Some(cpu) = contender_cpu() {
        table.notes.push(format!(
            "pinned: every contender on CPU {cpu} (taskset), the sender (trafgen) on CPU 0"
        ));
    }
    table.notes.push(
        "received = the receiving veth's rx_packets; captured and lost: myinit's `capture stop` line, tcpdump's \"captured\" and \"dropped by kernel\" lines; incoming packets only (`--dir rx`, `tcpdump -Q in`); files on tmpfs".into(),
    );
    table
}

/// A scratch directory on tmpfs (/dev/shm), removed on drop.
pub(super) fn shm_scratch() -> anyhow::Result<Scratch> {
    Scratch::try_new_in(Path::new("/dev/shm"), "capbench")
        .context("a scratch directory in /dev/shm")
}

/// One flood with one contender; `filter`: a pcap-filter expression every
/// contender is given.
pub(super) fn measure(
    bench: &Bench,
    pair: &VethPair,
    flood: &Flood,
    scratch: &Scratch,
    contender: Contender,
    filter: Option<&str>,
) -> anyhow::Result<Sample> {
    let file = scratch.path("capture.pcap");
    let _ = std::fs::remove_file(&file);
    let rx_before = pair.rx_counter("rx_packets")?;
    let mut sample = match contender {
        Contender::None => {
            let (flood_s, sender_cpu_s) = timed(flood, pair)?;
            Sample {
                flood_s,
                sender_cpu_s,
                ..Sample::default()
            }
        }
        Contender::Myinit(backend) => {
            let mut shell = MyinitShell::start_on(bench, Some(&pair.ns_rx), contender_cpu())?;
            shell.run(
                &format!(
                    "capture start {} {} pcap --backend {backend} --dir rx --snaplen {SNAPLEN} {}",
                    pair.rx,
                    arg(&file)?,
                    filter.unwrap_or("")
                ),
                Duration::from_secs(60),
            )?;
            // It has run a command: `ip netns exec` is long replaced by it.
            let pid = exec_pid(shell.pid(), "myinit")?;
            let cpu0 = super::cpu_seconds(pid)?;
            let (flood_s, sender_cpu_s) = timed(flood, pair)?;
            let stopped = shell.run(
                &format!("capture stop {}", pair.rx),
                Duration::from_secs(300),
            )?;
            let cpu = super::cpu_seconds(pid)? - cpu0;
            let line = stopped
                .iter()
                .find(|l| l.contains("written to"))
                .with_context(|| format!("capture stop: {}", stopped.join(" / ")))?;
            let sample = Sample {
                flood_s,
                sender_cpu_s,
                cpu_s: Some(cpu),
                captured: number_before(line, " packets ("),
                lost: number_before(line, " lost"),
                ..Sample::default()
            };
            shell.exit()?;
            sample
        }
        Contender::Tcpdump => {
            // taskset and nsenter exec in place: the pid is tcpdump's own.
            let mut cmd = match contender_cpu() {
                Some(cpu) => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", cpu, "nsenter"]);
                    c
                }
                None => Command::new("nsenter"),
            };
            cmd.arg(format!("--net=/run/netns/{}", pair.ns_rx))
                .args(["tcpdump", "-n", "-Q", "in", "-i", &pair.rx])
                .args(["-s", &SNAPLEN.to_string(), "-w"])
                .arg(&file)
                .args(filter.unwrap_or("").split_whitespace());
            let mut tcpdump = Watched::spawn(cmd)?;
            tcpdump.wait_for("listening on", Duration::from_secs(30))?;
            let pid = exec_pid(tcpdump.child.id(), "tcpdump")?;
            let cpu0 = super::cpu_seconds(pid)?;
            let (flood_s, sender_cpu_s) = timed(flood, pair)?;
            // libpcap hands a ring block over after its 1 s timeout at the
            // latest: wait for it, or SIGINT would leave the last one unread.
            std::thread::sleep(Duration::from_millis(1500));
            let cpu = super::cpu_seconds(pid)? - cpu0;
            tcpdump.interrupt();
            let lines = tcpdump.finish(Duration::from_secs(60))?;
            let count = |label: &str| lines.iter().find_map(|l| number_before(l, label));
            Sample {
                flood_s,
                sender_cpu_s,
                cpu_s: Some(cpu),
                captured: count(" packets captured"),
                lost: count(" packets dropped by kernel"),
                ..Sample::default()
            }
        }
    };
    sample.received = pair.rx_counter("rx_packets")? - rx_before;
    if contender != Contender::None {
        sample.in_file = Some(packets_in_file(&file)?);
        let _ = std::fs::remove_file(&file);
    }
    Ok(sample)
}

/// The flood's wall seconds and trafgen's CPU seconds (user + sys).
fn timed(flood: &Flood, pair: &VethPair) -> anyhow::Result<(f64, f64)> {
    let cpu0 = children_cpu();
    let wall = flood.run(pair)?;
    Ok((wall, children_cpu() - cpu0))
}

/// CPU seconds of the children waited for so far (user + system): trafgen
/// is the only one waited for during a flood (`ip netns exec` execs it).
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is handed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `pid` after checking it is `name` itself, not a wrapper that forked it
/// (`ip netns exec` execs in place, but a wrapper's CPU would not count).
fn exec_pid(pid: u32, name: &str) -> anyhow::Result<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    ensure!(
        comm.trim() == name,
        "process {pid} is {:?}, not {name}: its CPU time would not be the capture's",
        comm.trim()
    );
    Ok(pid)
}

/// The packets `tcpdump -r` reads from `file` (one line each).
fn packets_in_file(file: &Path) -> anyhow::Result<u64> {
    let mut child = Command::new("tcpdump")
        .args(["-r", arg(file)?, "-nn", "-q", "-t"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run tcpdump -r")?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let done = child.wait_with_output()?;
    ensure!(
        done.status.success(),
        "tcpdump -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&done.stderr).trim()
    );
    Ok(lines)
}
