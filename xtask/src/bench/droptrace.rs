//! `bench droptrace`: a flood of IPv4 frames with a bad header checksum over
//! a veth pair, each dropped by the receiver as IP_CSUM; contenders: no
//! tracer, bpftrace counting by reason (the reference), myinit droptrace's
//! eBPF backend (full events), its summary mode when this build has one,
//! and its ftrace backend. The kernel's own count is `IpExt InCsumErrors` of
//! the receiving namespace.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use super::{
    median, need, number_before, sh, udp_frame, Bench, Cell, Flood, MyinitShell, Table, VethPair,
    Watched,
};

/// The reference: what a user would type to count drops by reason, on one
/// device (the machine is shared: other floods' drops must not count).
fn bpftrace_program(dev: &str, and: Option<&str>) -> String {
    let and = and.map(|p| format!(" && {p}")).unwrap_or_default();
    format!(
        "tracepoint:skb:kfree_skb /((struct sk_buff *)args->skbaddr)->dev->name == \"{dev}\"{and}/ \
         {{ @[args->reason] = count(); }}"
    )
}

const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Contender {
    None,
    Bpftrace,
    /// bpftrace with this predicate besides the device's.
    BpftraceAnd(&'static str),
    /// myinit droptrace with these `start` options.
    Myinit(&'static str),
}

impl Contender {
    pub(super) fn label(self) -> String {
        match self {
            Contender::None => "none (generator alone)".into(),
            Contender::Bpftrace => "bpftrace, counting by reason (reference)".into(),
            Contender::BpftraceAnd(p) => {
                format!("bpftrace, counting by reason, predicate {p} (reference)")
            }
            Contender::Myinit(opts) => format!("myinit droptrace {opts} (static musl)"),
        }
    }
}

impl Sample {
    pub(super) fn describe(&self) -> String {
        format!(
            "{:.3} s, {} produced, seen {:?}, lost {:?}, cpu {:?}",
            self.flood_s, self.produced, self.seen, self.lost, self.cpu_s
        )
    }
}

/// One flood with one contender.
#[derive(Default, Clone, Copy)]
pub(super) struct Sample {
    pub flood_s: f64,
    pub produced: u64,
    pub cpu_s: Option<f64>,
    pub seen: Option<u64>,
    pub lost: Option<u64>,
}

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    need("bpftrace", "bpftrace")?;
    let reason = ip_csum_reason()?;
    let help = sh(super::arg(&bench.myinit)?, &["-c", "help droptrace"])?;
    let has_summary = help.contains("--summary");
    let mut contenders = vec![
        Contender::None,
        Contender::Bpftrace,
        Contender::Myinit("--backend ebpf"),
    ];
    if has_summary {
        contenders.push(Contender::Myinit("--backend ebpf --summary"));
    }
    // What the options cost when on (off, the verifier prunes their code).
    if help.contains("--stack") {
        contenders.push(Contender::Myinit("--backend ebpf --stack"));
    }
    if help.contains("--snaplen") {
        contenders.push(Contender::Myinit("--backend ebpf --snaplen 64"));
    }
    contenders.push(Contender::Myinit("--backend ftrace"));

    let pair = VethPair::new()?;
    let frames = bench.scaled(1_000_000);
    let flood = Flood::new(&udp_frame(&pair, 64, 9, false), frames)?;
    let samples = super::rounds(
        bench,
        "droptrace",
        &contenders,
        Contender::label,
        |c| measure(bench, &pair, &flood, c, reason),
        Sample::describe,
    )?;

    let mut table = Table::new(
        format!("IP_CSUM drops, {frames} 64-byte frames per flood (trafgen --cpus 1), median of {} round(s)", bench.rounds),
        &[
            "contender",
            "flood s",
            "frames/s",
            "slowdown",
            "contender CPU s",
            "CPU µs per drop",
            "produced",
            "seen",
            "lost",
            "seen + lost = produced",
        ],
    );
    let med = |v: &[Sample], f: &dyn Fn(&Sample) -> Option<f64>| {
        median(&v.iter().filter_map(f).collect::<Vec<_>>())
    };
    let base = med(&samples[0], &|s| Some(s.flood_s));
    let mut costs = Vec::new();
    for (c, v) in contenders.iter().zip(&samples) {
        let flood_s = med(v, &|s| Some(s.flood_s));
        let produced = med(v, &|s| Some(s.produced as f64));
        let cpu = med(v, &|s| s.cpu_s);
        let seen = med(v, &|s| s.seen.map(|x| x as f64));
        let lost = med(v, &|s| s.lost.map(|x| x as f64));
        // Per drop: the tracer's own CPU plus what it cost the sender's
        // CPU (the slowdown); only where it saw every drop, else it did
        // less work than the others and the figure would flatter it.
        let complete = v.iter().all(|s| s.lost == Some(0));
        let cost = (cpu + (flood_s - base)) / produced * 1e6;
        let cost = if complete { cost } else { f64::NAN };
        costs.push(cost);
        let balanced = v
            .iter()
            .all(|s| s.seen.zip(s.lost).is_some_and(|(a, b)| a + b == s.produced));
        let check = match (c, balanced) {
            (Contender::None, _) => Cell::None,
            (_, true) => Cell::text("yes"),
            (_, false) => Cell::text("no"),
        };
        table.row(vec![
            Cell::text(c.label()),
            Cell::num(flood_s, 3),
            Cell::num(produced / flood_s, 0),
            Cell::text(format!("{:.2}×", flood_s / base)),
            Cell::num(cpu, 2),
            Cell::num(cost, 2),
            Cell::num(produced, 0),
            Cell::num(seen, 0),
            Cell::num(lost, 0),
            check,
        ]);
    }
    let reference = costs[1];
    for (i, c) in contenders.iter().enumerate().skip(2) {
        let Contender::Myinit(opts) = c else { continue };
        let target = match *opts {
            "--backend ebpf" => Some(1.5),
            "--backend ebpf --summary" => Some(1.0),
            _ => None,
        };
        if costs[i].is_finite() && reference.is_finite() {
            table.ratios.push((
                format!("CPU per drop, {} vs bpftrace", c.label()),
                costs[i] / reference,
                target,
            ));
        }
    }
    table.notes.push(format!(
        "generator alone: {:.0} frames/s; CPU per drop = (contender's user+sys from /proc/PID/stat + flood time − the generator's alone) ÷ drops; – where drops were lost",
        frames as f64 / base
    ));
    table.notes.push(
        "produced = the receiving namespace's IpExt InCsumErrors; seen counts IP_CSUM drops on the receiving veth (bpftrace: a filter on the device name, reason number from the tracepoint's format file; myinit eBPF: --dev; summary mode: --netns of the receiving namespace)".into(),
    );
    table.notes.push(
        "myinit eBPF selects --dev, --netns and --reason in the kernel before the ring: its lost counts only IP_CSUM drops on the receiving veth the ring could not take".into(),
    );
    table.notes.push(
        "the ftrace backend cannot filter on the device: its seen and lost also count IP_CSUM drops of other traffic on this shared machine, and its lost counts ring overruns of every kfree_skb event".into(),
    );
    if !has_summary {
        table.notes.push(
            "summary mode: skipped, this myinit has no `droptrace start --summary` (help droptrace)".into(),
        );
    }
    Ok(vec![table])
}

pub(super) fn measure(
    bench: &Bench,
    pair: &VethPair,
    flood: &Flood,
    contender: Contender,
    reason: u32,
) -> anyhow::Result<Sample> {
    let produced_before = || pair.rx_netstat("IpExt", "InCsumErrors");
    match contender {
        Contender::None => {
            let before = produced_before()?;
            let flood_s = flood.run(pair)?;
            Ok(Sample {
                flood_s,
                produced: produced_before()? - before,
                ..Sample::default()
            })
        }
        Contender::Bpftrace | Contender::BpftraceAnd(_) => {
            let and = match contender {
                Contender::BpftraceAnd(p) => Some(p),
                _ => None,
            };
            let mut cmd = Command::new("bpftrace");
            cmd.args(["-e", &bpftrace_program(&pair.rx, and)]);
            let mut tracer = Watched::spawn(cmd)?;
            tracer.wait_for("Attaching", Duration::from_secs(60))?;
            // bpftrace says "Attaching" before it attaches; it has no
            // "attached" line, so give it a moment (the seen + lost =
            // produced check would show a late attach).
            std::thread::sleep(Duration::from_secs(1));
            let pid = tracer.child.id();
            let cpu0 = super::cpu_seconds(pid)?;
            let before = produced_before()?;
            let flood_s = flood.run(pair)?;
            let produced = produced_before()? - before;
            let cpu = super::cpu_seconds(pid)? - cpu0;
            tracer.interrupt();
            let lines = tracer.finish(Duration::from_secs(30))?;
            let seen = bpftrace_count(&lines, reason).unwrap_or(0);
            Ok(Sample {
                flood_s,
                produced,
                cpu_s: Some(cpu),
                seen: Some(seen),
                // Its map counts in the kernel: nothing to lose, so what it
                // did not count it missed; with a predicate it counts in
                // the kernel only what matched: none lost.
                lost: Some(if and.is_some() {
                    0
                } else {
                    produced.saturating_sub(seen)
                }),
            })
        }
        Contender::Myinit(opts) => {
            let mut shell = MyinitShell::start(bench, None)?;
            // The ftrace backend cannot see the device (it shows `?`), and
            // summary mode resolves --dev only in its own namespace: it
            // counts the receiving namespace's drops (others' floods on
            // this shared machine are in other namespaces).
            let dev = if opts.contains("ftrace") {
                String::new()
            } else if opts.contains("--summary") {
                format!(" --netns {}", pair.ns_rx)
            } else {
                // The device lives in the receiving namespace, not ours.
                format!(" --dev {} --netns {}", pair.rx, pair.ns_rx)
            };
            shell.run(
                &format!("droptrace start {opts} --reason IP_CSUM{dev}"),
                Duration::from_secs(60),
            )?;
            let cpu0 = super::cpu_seconds(shell.pid())?;
            let before = produced_before()?;
            let flood_s = flood.run(pair)?;
            let produced = produced_before()? - before;
            let stopped = shell.run("droptrace stop", Duration::from_secs(120))?;
            let cpu = super::cpu_seconds(shell.pid())? - cpu0;
            let line = stopped
                .iter()
                .find(|l| l.starts_with("droptrace: stopped"))
                .with_context(|| format!("droptrace stop: {}", stopped.join(" / ")))?;
            let mut seen = number_before(line, " matched");
            let lost = number_before(line, " lost");
            if seen.is_none() {
                // A mode that keeps only counts says so in `summary`.
                let summary = shell.run("droptrace summary", Duration::from_secs(30))?;
                seen = summary.iter().find_map(|l| {
                    let mut w = l.split_whitespace();
                    let n = w.next()?.parse().ok()?;
                    (w.next()? == "IP_CSUM").then_some(n)
                });
            }
            shell.exit()?;
            Ok(Sample {
                flood_s,
                produced,
                cpu_s: Some(cpu),
                seen,
                lost,
            })
        }
    }
}

/// bpftrace's printed map: `@[14]: 1000000` (or `@[SKB_DROP_REASON_IP_CSUM]`
/// where it prints enum names).
fn bpftrace_count(lines: &[String], reason: u32) -> Option<u64> {
    let number = reason.to_string();
    lines.iter().find_map(|l| {
        let (key, count) = l.strip_prefix("@[")?.split_once("]:")?;
        (key == number || key.ends_with("IP_CSUM"))
            .then(|| count.trim().parse().ok())
            .flatten()
    })
}

/// IP_CSUM's number in this kernel's `enum skb_drop_reason`, from the
/// tracepoint's format file (`__print_symbolic(…, { 14, "IP_CSUM" }, …)`).
pub(super) fn ip_csum_reason() -> anyhow::Result<u32> {
    let format = format!("{TRACEFS}/events/skb/kfree_skb/format");
    if !std::path::Path::new(&format).exists() {
        let _ = sh("mount", &["-t", "tracefs", "none", TRACEFS]);
    }
    let text = std::fs::read_to_string(&format).with_context(|| format!("reading {format}"))?;
    reason_number(&text, "IP_CSUM").with_context(|| format!("{format}: no IP_CSUM reason"))
}

fn reason_number(format: &str, name: &str) -> Option<u32> {
    let quoted = format!("\"{name}\"");
    let at = format.find(&quoted)?;
    let open = format[..at].rfind('{')?;
    format[open + 1..at]
        .trim()
        .trim_end_matches(',')
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_numbers_come_from_the_print_format() {
        let fmt = r#"print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 14, "IP_CSUM" }, { 15, "IP_INHDR" })"#;
        assert_eq!(reason_number(fmt, "IP_CSUM"), Some(14));
        assert_eq!(reason_number(fmt, "NOT_SPECIFIED"), Some(2));
        assert_eq!(reason_number(fmt, "NOPE"), None);
    }

    #[test]
    fn bpftrace_map_lines_give_the_reason_count() {
        let lines: Vec<String> = ["Attaching 1 probe...", "", "@[2]: 5", "@[14]: 1000000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(bpftrace_count(&lines, 14), Some(1_000_000));
        assert_eq!(bpftrace_count(&lines, 3), None);
    }
}
