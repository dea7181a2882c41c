//! `bench inject`: a pcap of 64-byte UDP frames, numbered, sent over a veth
//! pair by myinit's `inject` and by `tcpreplay`: once at top speed
//! (packets/s, counted by the receiving interface), once at the recorded
//! pace (the receiver's own timestamps from `tcpdump` against the recorded
//! ones: drift over the whole span, p50, p99 and worst per-packet lateness;
//! beside them what each sender says of itself). The paced results suffer
//! most from a loaded machine, so the table notes the load average and the
//! CPU time the host took from this VM (steal) during them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};

use super::{
    arg, median, need, sh, udp_frame, Bench, Cell, Flood, MyinitShell, Scratch, Table, VethPair,
    Watched,
};

/// The recorded gap between packets (10,000 packets/s): 100,000 packets
/// span 10 s, a pace a sender can hold on a small shared machine.
const GAP: Duration = Duration::from_micros(100);

/// Where the packet number sits in each frame (after the UDP header).
const SEQ_AT: usize = 42;

/// The CPUs of the paced runs, on a machine with two or more: the receiver
/// (tcpdump, woken for every packet) on one, the sender on another, so the
/// capture does not take turns on the sender's CPU; the same for both
/// senders.
const RECEIVER_CPU: &str = "0";
const SENDER_CPU: &str = "1";

/// Whether the paced runs pin the receiver and the sender apart.
fn pinned() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// `taskset -c CPU` before a command when the runs are pinned.
fn on_cpu(cpu: &'static str) -> Vec<&'static str> {
    if pinned() {
        vec!["taskset", "-c", cpu]
    } else {
        Vec::new()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Sender {
    Trafgen,
    Tcpreplay,
    Myinit,
}

impl Sender {
    fn label(self, topspeed_flag: bool) -> &'static str {
        match self {
            Sender::Trafgen => "trafgen --cpus 1 (the generator, for scale)",
            Sender::Tcpreplay => "tcpreplay (reference)",
            Sender::Myinit if topspeed_flag => "myinit inject (static musl)",
            Sender::Myinit => "myinit inject, default pace = top speed (static musl)",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Sample {
    elapsed_s: f64,
    received: u64,
    cpu_s: f64,
}

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    need("tcpreplay", "tcpreplay")?;
    need("tcpdump", "tcpdump")?;
    let help = sh(arg(&bench.myinit)?, &["-c", "help inject"])?;
    // The timing options came with --topspeed; without it inject has one
    // pace, as fast as it can.
    let has_timing = help.contains("--topspeed");
    let pair = VethPair::new()?;
    let scratch = Scratch::try_new("bench")?;
    let count = bench.scaled(100_000);
    let file = scratch.path("frames.pcap");
    write_pcap(&pair, count, &file)?;
    let generator = Flood::new(&udp_frame(&pair, 64, 9, true), count)?;

    let senders = [Sender::Trafgen, Sender::Tcpreplay, Sender::Myinit];
    let mut fast: Vec<Vec<Sample>> = vec![Vec::new(); senders.len()];
    for round in 0..bench.rounds as usize {
        for k in 0..senders.len() {
            let i = (k + round) % senders.len();
            let s = top_speed(bench, &pair, &file, &generator, senders[i], has_timing)
                .with_context(|| format!("top speed, {}", senders[i].label(has_timing)))?;
            eprintln!(
                "bench inject: round {} {}: {:.3} s, {} received",
                round + 1,
                senders[i].label(has_timing),
                s.elapsed_s,
                s.received
            );
            fast[i].push(s);
        }
    }
    let mut speed = Table::new(
        format!(
            "{count} 64-byte frames from a pcap at top speed, median of {} round(s)",
            bench.rounds
        ),
        &[
            "sender",
            "elapsed s",
            "packets/s",
            "received",
            "sender CPU s",
        ],
    );
    let mut rates = Vec::new();
    for (sender, v) in senders.iter().zip(&fast) {
        let elapsed = median(&v.iter().map(|s| s.elapsed_s).collect::<Vec<_>>());
        let received = median(&v.iter().map(|s| s.received as f64).collect::<Vec<_>>());
        let cpu = median(&v.iter().map(|s| s.cpu_s).collect::<Vec<_>>());
        rates.push(received / elapsed);
        speed.row(vec![
            Cell::text(sender.label(has_timing)),
            Cell::num(elapsed, 3),
            Cell::num(received / elapsed, 0),
            Cell::num(received, 0),
            Cell::num(cpu, 2),
        ]);
    }
    speed.ratios.push((
        "packets/s, myinit inject vs tcpreplay --topspeed".into(),
        rates[2] / rates[1],
        None,
    ));
    speed.notes.push(format!(
        "received = the receiving veth's rx_packets; elapsed = the sending command's wall time; the tcpreplay and myinit rows use {}",
        if has_timing { "--topspeed" } else { "tcpreplay --topspeed and inject's default (it has no --topspeed yet)" }
    ));

    let paced_senders: Vec<Sender> = if has_timing {
        vec![Sender::Tcpreplay, Sender::Myinit]
    } else {
        vec![Sender::Tcpreplay]
    };
    let mut paced: Vec<Vec<Pace>> = vec![Vec::new(); paced_senders.len()];
    // The host's steal on the pacing CPU (all CPUs when not pinned), per
    // replay: lateness follows it.
    let pacing_cpu = if pinned() {
        format!("cpu{SENDER_CPU} ")
    } else {
        "cpu ".to_string()
    };
    let mut stolen_ms: Vec<Vec<f64>> = vec![Vec::new(); paced_senders.len()];
    let load_before = load_average();
    let steal_before = cpu_times("cpu ")?;
    for round in 0..bench.rounds as usize {
        for k in 0..paced_senders.len() {
            let i = (k + round) % paced_senders.len();
            let before = cpu_times(&pacing_cpu)?;
            let p = recorded_pace(bench, &pair, &scratch, &file, paced_senders[i])
                .with_context(|| format!("recorded pace, {}", paced_senders[i].label(true)))?;
            let stolen = cpu_times(&pacing_cpu)?.stolen_ms(before);
            eprintln!(
                "bench inject: round {} {} at the recorded pace: drift {:.6} %, lateness p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; the host took {stolen:.0} ms of the pacing CPU",
                round + 1,
                paced_senders[i].label(true),
                p.drift_pct,
                p.p50_us,
                p.p99_us,
                p.worst_us
            );
            paced[i].push(p);
            stolen_ms[i].push(stolen);
        }
    }
    let (busy, steal) = cpu_times("cpu ")?.since(steal_before);
    let span = GAP.as_secs_f64() * (count - 1) as f64;
    let mut pace = Table::new(
        format!(
            "the same file at its recorded pace ({:.3} s span, {} µs apart), median of {} round(s)",
            span,
            GAP.as_micros(),
            bench.rounds
        ),
        &[
            "sender",
            "recorded span s",
            "received span s",
            "sender's own span s",
            "drift %",
            "p50 lateness µs",
            "p99 lateness µs",
            "max lateness µs",
            "sender's own worst lateness µs",
            "captured",
            "capture dropped",
            "receiver rx_packets",
            "host steal on the pacing CPU ms",
        ],
    );
    // (|drift| %, p99 µs) per sender.
    let mut figures = Vec::new();
    for ((sender, v), stolen) in paced_senders.iter().zip(&paced).zip(&stolen_ms) {
        let m = |f: &dyn Fn(&Pace) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
        // The median of the absolute drifts: signs may differ between rounds.
        let drift = m(&|p| p.drift_pct.abs());
        let p99 = m(&|p| p.p99_us);
        figures.push((drift, p99));
        pace.row(vec![
            Cell::text(sender.label(true)),
            Cell::num(m(&|p| p.recorded_s), 6),
            Cell::num(m(&|p| p.span_s), 6),
            Cell::num(m(&|p| p.own_span_s), 6),
            Cell::num(m(&|p| p.drift_pct), 6),
            Cell::num(m(&|p| p.p50_us), 1),
            Cell::num(p99, 1),
            Cell::num(m(&|p| p.worst_us), 1),
            Cell::num(m(&|p| p.own_worst_us), 1),
            Cell::num(m(&|p| p.received as f64), 0),
            Cell::num(m(&|p| p.capture_dropped as f64), 0),
            Cell::num(m(&|p| p.rx_packets as f64), 0),
            Cell::num(median(stolen), 0),
        ]);
    }
    if has_timing {
        let ((ours_drift, ours_p99), (their_drift, their_p99)) = (figures[1], figures[0]);
        // The figures go into the text too: the ratios are shown with two
        // decimals, and these are often far below 0.01.
        let ratios = [
            (
                format!("|drift|, myinit inject vs tcpreplay ({ours_drift:.6} % vs {their_drift:.4} %)"),
                ours_drift / their_drift,
                0.1,
            ),
            (
                format!("p99 lateness, myinit inject vs tcpreplay ({ours_p99:.1} µs vs {their_p99:.1} µs)"),
                ours_p99.max(0.0) / their_p99,
                0.1,
            ),
            (
                format!("|drift|, myinit inject vs the issue's 0.01 % ({ours_drift:.6} %)"),
                ours_drift / 0.01,
                1.0,
            ),
            (
                format!("p99 lateness, myinit inject vs the issue's 100 µs ({ours_p99:.1} µs)"),
                ours_p99.max(0.0) / 100.0,
                1.0,
            ),
        ];
        for (what, ratio, target) in ratios {
            if ratio.is_finite() {
                pace.ratios.push((what, ratio, Some(target)));
            } else {
                pace.notes
                    .push(format!("{what}: no ratio (a zero or missing figure)"));
            }
        }
    } else {
        pace.notes.push(
            "myinit inject: skipped, it has no timing yet (no --topspeed in `help inject`); tcpreplay alone, as the reference".into(),
        );
    }
    pace.notes.push(
        "times are the receiver's kernel timestamps (tcpdump, ns) against the recorded ones; lateness = how much later than its recorded offset from the first packet a packet arrived (negative: earlier); drift = (received span - recorded span) / recorded span; the sender's own figures are from its summary (tcpreplay's `Actual: … sent in`, inject's span and worst lateness)".into(),
    );
    if pinned() {
        pace.notes.push(format!(
            "pinned: the receiver (tcpdump) on CPU {RECEIVER_CPU}, the sender (tcpreplay, or myinit's shell thread, which paces) on CPU {SENDER_CPU} (taskset), so the capture, woken for every packet, does not take the sender's CPU"
        ));
    }
    pace.notes.push(format!(
        "machine during the paced runs: load average {load_before} before, {} after; the host took {:.1} % of this VM's CPU time (steal, /proc/stat) out of {busy:.0} CPU s",
        load_average(),
        steal
    ));
    Ok(vec![speed, pace])
}

/// `count` numbered 64-byte UDP frames, GAP apart, as a µs pcap.
fn write_pcap(pair: &VethPair, count: u64, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut w = PcapWriter::with_header(std::io::BufWriter::new(file), PcapHeader::default())?;
    let mut frame = udp_frame(pair, 64, 9, true);
    // Start away from zero: a timestamp of 0 looks like "no time" to some readers.
    let start = Duration::from_secs(1_000_000_000);
    for n in 0..count {
        frame[SEQ_AT..SEQ_AT + 4].copy_from_slice(&(n as u32).to_be_bytes());
        let ts = start + GAP * n as u32;
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))?;
    }
    Ok(())
}

/// CPU seconds of the children waited for so far (user + system).
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn top_speed(
    bench: &Bench,
    pair: &VethPair,
    file: &Path,
    generator: &Flood,
    sender: Sender,
    has_timing: bool,
) -> anyhow::Result<Sample> {
    let before = pair.rx_counter("rx_packets")?;
    let (elapsed_s, cpu_s) = match sender {
        Sender::Trafgen => {
            let cpu0 = children_cpu();
            let secs = generator.run(pair)?;
            (secs, children_cpu() - cpu0)
        }
        Sender::Tcpreplay => {
            let cpu0 = children_cpu();
            let started = Instant::now();
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &pair.ns_tx,
                    "tcpreplay",
                    "-q",
                    "--topspeed",
                    "-i",
                    &pair.tx,
                    arg(file)?,
                ],
            )?;
            (started.elapsed().as_secs_f64(), children_cpu() - cpu0)
        }
        Sender::Myinit => {
            let mut shell = MyinitShell::start(bench, Some(&pair.ns_tx))?;
            let flag = if has_timing { " --topspeed" } else { "" };
            let cpu0 = super::cpu_seconds(shell.pid())?;
            let started = Instant::now();
            let out = shell.run(
                &format!("inject {} {}{flag}", arg(file)?, pair.tx),
                Duration::from_secs(300),
            )?;
            let secs = started.elapsed().as_secs_f64();
            let cpu = super::cpu_seconds(shell.pid())? - cpu0;
            ensure!(
                out.iter().any(|l| l.starts_with("inject: ")),
                "inject: {}",
                out.join(" / ")
            );
            shell.exit()?;
            (secs, cpu)
        }
    };
    // The last frames may still be in flight in the veth's backlog.
    std::thread::sleep(Duration::from_millis(100));
    Ok(Sample {
        elapsed_s,
        received: pair.rx_counter("rx_packets")? - before,
        cpu_s,
    })
}

/// What the receiver saw of one paced replay.
#[derive(Default, Clone, Copy)]
struct Pace {
    recorded_s: f64,
    span_s: f64,
    drift_pct: f64,
    p50_us: f64,
    worst_us: f64,
    p99_us: f64,
    /// The sender's own figures, from what it printed (NaN: not given).
    own_span_s: f64,
    own_worst_us: f64,
    received: u64,
    capture_dropped: u64,
    /// The receiving interface's own count, to tell a sender's loss from the capture's.
    rx_packets: u64,
}

fn recorded_pace(
    bench: &Bench,
    pair: &VethPair,
    scratch: &Scratch,
    file: &Path,
    sender: Sender,
) -> anyhow::Result<Pace> {
    let capture = scratch.path("received.pcap");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &pair.ns_rx])
        .args(on_cpu(RECEIVER_CPU))
        .args(["tcpdump", "-n", "-i", &pair.rx])
        .args([
            "-s",
            "96",
            "-B",
            "32768",
            // Else libpcap's TPACKET_V3 block timeout (1 s) holds the last
            // packets back, and SIGINT loses them.
            "--immediate-mode",
            "--time-stamp-precision=nano",
            "-w",
        ])
        .arg(&capture)
        .args(["udp", "dst", "port", "9"]);
    let mut tcpdump = Watched::spawn(cmd)?;
    tcpdump.wait_for("listening on", Duration::from_secs(30))?;
    let rx_before = pair.rx_counter("rx_packets")?;
    let (own_span_s, own_worst_us) = match sender {
        Sender::Tcpreplay => {
            let mut args = vec!["netns", "exec", &pair.ns_tx];
            args.extend(on_cpu(SENDER_CPU));
            args.extend(["tcpreplay", "-q", "-i", &pair.tx, arg(file)?]);
            let out = sh("ip", &args)?;
            // "Actual: 10000 packets (640000 bytes) sent in 1.000123 seconds"
            let span = out
                .lines()
                .find_map(|l| number_before_f64(l.split_once(" sent in ")?.1, " seconds"));
            (span.unwrap_or(f64::NAN), f64::NAN)
        }
        Sender::Myinit => {
            let mut shell = MyinitShell::start(bench, Some(&pair.ns_tx))?;
            if pinned() {
                // Its main thread, the shell's, paces the replay (and holds
                // itself on the CPU it is on); the runtime's threads stay free.
                sh(
                    "taskset",
                    &["-p", "-c", SENDER_CPU, &shell.pid().to_string()],
                )?;
            }
            let out = shell.run(
                &format!("inject {} {}", arg(file)?, pair.tx),
                Duration::from_secs(600),
            )?;
            shell.exit()?;
            // "inject: N packets from F to IF, 0 failed, 0.999900 s, 10000.0
            // packets/s, worst lateness 41 µs, p99 12 µs"
            let summary = out
                .iter()
                .rfind(|l| l.starts_with("inject: ") && l.contains(" failed"))
                .with_context(|| format!("no inject summary in {}", out.join(" / ")))?;
            let after_failed = summary.split_once(" failed").map_or("", |(_, r)| r);
            (
                number_before_f64(after_failed, " s,").unwrap_or(f64::NAN),
                number_before_f64(summary, " µs, p99")
                    .or_else(|| number_before_f64(summary, " µs"))
                    .unwrap_or(f64::NAN),
            )
        }
        Sender::Trafgen => unreachable!("trafgen has no recorded pace"),
    };
    std::thread::sleep(Duration::from_millis(1200));
    let rx_packets = pair.rx_counter("rx_packets")? - rx_before;
    tcpdump.interrupt();
    let lines = tcpdump.finish(Duration::from_secs(30))?;
    let capture_dropped = lines
        .iter()
        .find_map(|l| super::number_before(l, " packets dropped by kernel"))
        .unwrap_or(0);
    let mut arrivals = Vec::new();
    let mut reader = PcapReader::new(std::fs::File::open(&capture)?)?;
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let Some(seq) = packet.data.get(SEQ_AT..SEQ_AT + 4) else {
            continue;
        };
        let seq = u32::from_be_bytes(seq.try_into()?);
        arrivals.push((seq, packet.timestamp.as_secs_f64()));
    }
    let mut pace = lateness(&arrivals).context("tcpdump received nothing")?;
    pace.capture_dropped = capture_dropped;
    pace.rx_packets = rx_packets;
    pace.own_span_s = own_span_s;
    pace.own_worst_us = own_worst_us;
    Ok(pace)
}

/// The decimal number just before `label` in `text`: ("0.5 s, …", " s,") → 0.5.
fn number_before_f64(text: &str, label: &str) -> Option<f64> {
    let at = text.find(label)?;
    text[..at]
        .split(|c: char| c.is_whitespace() || c == ',')
        .rfind(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// The 1-minute load average, as /proc/loadavg has it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU time from one of /proc/stat's lines (`cpu ` for the machine, `cpuN `
/// for one CPU), in ticks: all of it and the part the host took (steal).
#[derive(Clone, Copy)]
struct CpuTimes {
    total: u64,
    steal: u64,
}

fn cpu_times(line: &str) -> anyhow::Result<CpuTimes> {
    let text = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let fields: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .with_context(|| format!("/proc/stat: no {:?} line", line.trim_end()))?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice:
    // guest time is already in user.
    Ok(CpuTimes {
        total: fields.iter().take(8).sum(),
        steal: fields.get(7).copied().unwrap_or(0),
    })
}

impl CpuTimes {
    /// Milliseconds the host took since `before`.
    fn stolen_ms(self, before: CpuTimes) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.steal.saturating_sub(before.steal) as f64 * 1000.0 / hz
    }

    /// CPU seconds elapsed since `before`, and the % of them stolen.
    fn since(self, before: CpuTimes) -> (f64, f64) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let total = self.total.saturating_sub(before.total);
        let steal = self.steal.saturating_sub(before.steal);
        (
            total as f64 / hz,
            steal as f64 * 100.0 / total.max(1) as f64,
        )
    }
}

/// From (packet number, arrival time) pairs: the span from the first to the
/// last arrival, its drift against the recorded span, and how late each
/// packet was against its recorded offset from the first.
fn lateness(arrivals: &[(u32, f64)]) -> Option<Pace> {
    let (first_seq, first_t) = *arrivals.first()?;
    let (last_seq, last_t) = *arrivals.last()?;
    let gap = GAP.as_secs_f64();
    let recorded = (last_seq.saturating_sub(first_seq)) as f64 * gap;
    let mut late: Vec<f64> = arrivals
        .iter()
        .map(|&(seq, t)| ((t - first_t) - (seq.saturating_sub(first_seq)) as f64 * gap) * 1e6)
        .collect();
    late.sort_by(f64::total_cmp);
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    Some(Pace {
        recorded_s: recorded,
        p50_us: at(0.5),
        p99_us: at(0.99),
        span_s: last_t - first_t,
        drift_pct: (last_t - first_t - recorded) / recorded * 100.0,
        worst_us: late[late.len() - 1],
        received: arrivals.len() as u64,
        ..Pace::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_against_the_recorded_offsets() {
        // Packet 2 arrives 30 µs late, the span ends 10 µs long.
        let gap = GAP.as_secs_f64();
        let arrivals = [
            (0, 5.0),
            (1, 5.0 + gap),
            (2, 5.0 + 2.0 * gap + 30e-6),
            (3, 5.0 + 3.0 * gap + 10e-6),
        ];
        let p = lateness(&arrivals).unwrap();
        assert!((p.worst_us - 30.0).abs() < 0.01, "{}", p.worst_us);
        let want = 10e-6 / (3.0 * gap) * 100.0;
        assert!((p.drift_pct - want).abs() < 1e-6, "{}", p.drift_pct);
        assert_eq!(p.received, 4);
        assert!((p.recorded_s - 3.0 * gap).abs() < 1e-9);
        assert!((p.p50_us - 0.0).abs() < 0.01, "{}", p.p50_us);
    }

    #[test]
    fn the_senders_own_figures_are_read_from_their_summaries() {
        let inject = "inject: 10 packets from f to i, 0 failed, 0.000900 s, 10000.0 packets/s, worst lateness 41 µs, p99 12 µs";
        let after = inject.split_once(" failed").unwrap().1;
        assert_eq!(number_before_f64(after, " s,"), Some(0.0009));
        assert_eq!(number_before_f64(inject, " µs, p99"), Some(41.0));
        let tcpreplay = "Actual: 10000 packets (640000 bytes) sent in 1.000123 seconds";
        let rest = tcpreplay.split_once(" sent in ").unwrap().1;
        assert_eq!(number_before_f64(rest, " seconds"), Some(1.000123));
    }
}
