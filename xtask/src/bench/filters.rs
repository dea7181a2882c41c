//! `bench filters`: pcap-filter expressions run in the kernel. A flood in
//! which one frame in 100 matches: captured by myinit (both backends) and
//! `tcpdump -w EXPR`, and dropped (bad IPv4 checksums) under myinit
//! droptrace EXPR and bpftrace with an equivalent predicate; CPU per
//! offered packet or per drop. Then the filter's own cost: ns per packet
//! from `BPF_PROG_TEST_RUN` (`myinit filter cost`) for five expressions.
//!
//! The drops' filter tests the source address, not a port: trafgen's
//! frames (PACKET_TX_RING) reach the receiver with their payload in page
//! fragments, and at the IP_CSUM drop only the IP header has been pulled
//! into the linear bytes, all a tracer can read (bpftrace included).

use super::capture::{self, contender_cpu, shm_scratch};
use super::droptrace;
use myinit_testkit::Frame;

use super::{median, sh, udp_frame, Bench, Cell, Flood, Table, VethPair};

/// One frame in this many matches.
const ONE_IN: usize = 100;
/// The matching frames' UDP destination port (the others': 9).
const PORT: u16 = 53;
const EXPR: &str = "udp dst port 53";
/// The matching drops' source address, and the drops' expression.
const DROP_SOURCE: [u8; 4] = [10, 99, 99, 99];
const DROP_EXPR: &str = "src host 10.99.99.99";
/// bpftrace's equivalent of DROP_EXPR: the source address, read as a
/// little-endian u32.
const BPFTRACE_SOURCE: &str = "*(uint32 *)(((struct sk_buff *)args->skbaddr)->head + ((struct sk_buff *)args->skbaddr)->network_header + 12) == 0x6363630a";

/// The expressions `filter cost` times, everyday ones of rising length.
const COST_EXPRESSIONS: [&str; 5] = [
    "ip",
    "udp port 53",
    "host 10.0.0.1 and tcp port 80",
    "ip6 and udp dst port 53",
    "net 10.0.0.0/8 and not icmp and greater 60",
];

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    super::need("tcpdump", "tcpdump")?;
    super::need("bpftrace", "bpftrace")?;
    let pair = VethPair::new()?;
    Ok(vec![
        capture_table(bench, &pair)?,
        droptrace_table(bench, &pair)?,
        cost_table(bench)?,
    ])
}

/// 99 frames to port 9 and one to port 53, in turn.
fn mixed_ports(pair: &VethPair) -> Vec<Vec<u8>> {
    (0..ONE_IN)
        .map(|i| udp_frame(pair, 64, if i == 0 { PORT } else { 9 }, true))
        .collect()
}

/// 99 frames from the sender's address and one from DROP_SOURCE, in turn,
/// each with a bad IPv4 checksum.
fn mixed_sources(pair: &VethPair) -> Vec<Vec<u8>> {
    (0..ONE_IN)
        .map(|i| {
            if i == 0 {
                Frame::ether(pair.rx_mac, pair.tx_mac)
                    .ipv4(DROP_SOURCE, super::RX_IP)
                    .udp_no_checksum(4000, 9)
                    .payload(&[0; 22])
                    .bad_ip_checksum()
                    .bytes()
            } else {
                udp_frame(pair, 64, 9, false)
            }
        })
        .collect()
}

fn capture_table(bench: &Bench, pair: &VethPair) -> anyhow::Result<Table> {
    use capture::Contender;
    let frames = bench.scaled(1_000_000);
    let set = mixed_ports(pair);
    let refs: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
    let flood = Flood::cycle(&refs, frames)?;
    let scratch = shm_scratch()?;
    let contenders = [
        Contender::None,
        Contender::Tcpdump,
        Contender::Myinit("ebpf"),
        Contender::Myinit("packet"),
    ];
    let samples = super::rounds(
        bench,
        &format!("filters: capture `{EXPR}`"),
        &contenders,
        Contender::label,
        |c| {
            let filter = (c != Contender::None).then_some(EXPR);
            capture::measure(bench, pair, &flood, &scratch, c, filter)
        },
        capture::Sample::describe,
    )?;
    let mut table = Table::new(
        format!(
            "capture with the filter `{EXPR}`: {frames} 64-byte UDP frames per flood, one in {ONE_IN} matching, on the receiving veth, median of {} round(s)",
            bench.rounds
        ),
        &[
            "contender",
            "sender CPU s",
            "contender CPU s",
            "CPU ns per offered packet",
            "received",
            "captured",
            "lost",
            "captured = received / 100",
            "in file = captured",
        ],
    );
    let med = |v: &[capture::Sample], f: &dyn Fn(&capture::Sample) -> Option<f64>| {
        median(&v.iter().filter_map(f).collect::<Vec<_>>())
    };
    let base = med(&samples[0], &|s| Some(s.sender_cpu_s));
    let mut costs = Vec::new();
    for (c, v) in contenders.iter().zip(&samples) {
        let cost = med(v, &|s| {
            let cpu = s.cpu_s?;
            Some((cpu + (s.sender_cpu_s - base)) / s.received as f64 * 1e9)
        });
        costs.push(cost);
        let yes_no = |all: bool| Cell::text(if all { "yes" } else { "no" });
        let (exact, file_ok) = match c {
            Contender::None => (Cell::None, Cell::None),
            _ => (
                yes_no(v.iter().all(|s| {
                    s.captured.is_some_and(|n| n == s.received / ONE_IN as u64) && s.lost == Some(0)
                })),
                yes_no(
                    v.iter()
                        .all(|s| s.in_file.is_some() && s.in_file == s.captured),
                ),
            ),
        };
        let label = match c {
            Contender::None => c.label(),
            _ => format!("{} {EXPR}", c.label()),
        };
        table.row(vec![
            Cell::text(label),
            Cell::num(med(v, &|s| Some(s.sender_cpu_s)), 3),
            Cell::num(med(v, &|s| s.cpu_s), 3),
            Cell::num(cost, 1),
            Cell::num(med(v, &|s| Some(s.received as f64)), 0),
            Cell::num(med(v, &|s| s.captured.map(|x| x as f64)), 0),
            Cell::num(med(v, &|s| s.lost.map(|x| x as f64)), 0),
            exact,
            file_ok,
        ]);
    }
    for (i, c) in contenders.iter().enumerate().skip(2) {
        if costs[i].is_finite() && costs[1].is_finite() {
            table.ratios.push((
                format!(
                    "CPU per offered packet, {} vs tcpdump, filter `{EXPR}`",
                    c.label()
                ),
                costs[i] / costs[1],
                Some(1.0),
            ));
        }
    }
    // The generator's own spread says how far the sender's part can be trusted.
    let alone: Vec<f64> = samples[0].iter().map(|s| s.sender_cpu_s).collect();
    table.notes.extend(super::noise_note(
        &alone,
        frames,
        1e9,
        "ns",
        "offered packet",
    ));
    table.notes.push(
        "CPU per offered packet = (contender's user+sys + the sender's extra CPU against the generator alone, which carries the receive path, the TC programs and the socket filters in its softirqs) ÷ frames received; the filter runs in the kernel for every contender (tcpdump: libpcap's socket filter; myinit: the same program as a socket filter, or translated to eBPF at TC)".into(),
    );
    if let Some(cpu) = contender_cpu() {
        table.notes.push(format!(
            "pinned: every contender on CPU {cpu} (taskset), the sender (trafgen) on CPU 0"
        ));
    }
    Ok(table)
}

fn droptrace_table(bench: &Bench, pair: &VethPair) -> anyhow::Result<Table> {
    use droptrace::Contender;
    let reason = droptrace::ip_csum_reason()?;
    let frames = bench.scaled(1_000_000);
    let set = mixed_sources(pair);
    let refs: Vec<&[u8]> = set.iter().map(Vec::as_slice).collect();
    let flood = Flood::cycle(&refs, frames)?;
    let contenders = [
        Contender::None,
        Contender::BpftraceAnd(BPFTRACE_SOURCE),
        Contender::Myinit("--backend ebpf src host 10.99.99.99"),
        Contender::Myinit("--backend ebpf --summary src host 10.99.99.99"),
    ];
    let samples = super::rounds(
        bench,
        &format!("filters: droptrace `{DROP_EXPR}`"),
        &contenders,
        Contender::label,
        |c| droptrace::measure(bench, pair, &flood, c, reason),
        droptrace::Sample::describe,
    )?;
    let mut table = Table::new(
        format!(
            "droptrace with the filter `{DROP_EXPR}`: IP_CSUM drops of {frames} 64-byte frames per flood, one in {ONE_IN} matching, median of {} round(s)",
            bench.rounds
        ),
        &[
            "contender",
            "flood s",
            "slowdown",
            "contender CPU s",
            "CPU ns per drop",
            "produced",
            "seen",
            "lost",
            "seen = produced / 100",
        ],
    );
    let med = |v: &[droptrace::Sample], f: &dyn Fn(&droptrace::Sample) -> Option<f64>| {
        median(&v.iter().filter_map(f).collect::<Vec<_>>())
    };
    let base = med(&samples[0], &|s| Some(s.flood_s));
    let mut costs = Vec::new();
    for (c, v) in contenders.iter().zip(&samples) {
        let flood_s = med(v, &|s| Some(s.flood_s));
        let cost = med(v, &|s| {
            Some((s.cpu_s? + (s.flood_s - base)) / s.produced as f64 * 1e9)
        });
        costs.push(cost);
        let exact = match c {
            Contender::None => Cell::None,
            _ => Cell::text(
                if v.iter()
                    .all(|s| s.seen == Some(s.produced / ONE_IN as u64) && s.lost.unwrap_or(0) == 0)
                {
                    "yes"
                } else {
                    "no"
                },
            ),
        };
        table.row(vec![
            Cell::text(c.label()),
            Cell::num(flood_s, 3),
            Cell::text(format!("{:.2}×", flood_s / base)),
            Cell::num(med(v, &|s| s.cpu_s), 3),
            Cell::num(cost, 1),
            Cell::num(med(v, &|s| Some(s.produced as f64)), 0),
            Cell::num(med(v, &|s| s.seen.map(|x| x as f64)), 0),
            Cell::num(med(v, &|s| s.lost.map(|x| x as f64)), 0),
            exact,
        ]);
    }
    for (i, c) in contenders.iter().enumerate().skip(2) {
        if costs[i].is_finite() && costs[1].is_finite() {
            table.ratios.push((
                format!("CPU per drop, {} vs bpftrace with a predicate", c.label()),
                costs[i] / costs[1],
                Some(1.0),
            ));
        }
    }
    table.notes.push(format!(
        "CPU per drop = (contender's user+sys + the flood's extra time against the generator alone) ÷ drops produced (IpExt InCsumErrors); bpftrace's predicate: the device's name and `{BPFTRACE_SOURCE}`; myinit: --reason IP_CSUM, --dev and the expression, all in the kernel"
    ));
    Ok(table)
}

fn cost_table(bench: &Bench) -> anyhow::Result<Table> {
    let runs = if bench.quick { 100_000 } else { 1_000_000 };
    let mut table = Table::new(
        format!(
            "the filter's own cost: its eBPF translation run by the kernel (BPF_PROG_TEST_RUN, {runs} runs per packet, `myinit filter cost`), TC context, direct packet access"
        ),
        &[
            "expression",
            "classic insns",
            "eBPF insns",
            "ns per packet (median of 4 sample packets)",
            "empty program ns",
            "filter's own ns",
        ],
    );
    for expr in COST_EXPRESSIONS {
        let out = sh(
            super::arg(&bench.myinit)?,
            &["-c", &format!("filter cost --runs {runs} {expr}")],
        )?;
        let (mut classic, mut ebpf) = (f64::NAN, f64::NAN);
        let (mut ns, mut floor) = (Vec::new(), Vec::new());
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("filter: ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                classic = words
                    .first()
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(f64::NAN);
                ebpf = words
                    .get(3)
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(f64::NAN);
            } else if let Some((head, tail)) = line.split_once(" ns (empty program ") {
                if let Some(n) = head.split_whitespace().last().and_then(|w| w.parse().ok()) {
                    ns.push(n);
                }
                if let Some(n) = tail.split_whitespace().next().and_then(|w| w.parse().ok()) {
                    floor.push(n);
                }
            }
        }
        let (ns, floor) = (median(&ns), median(&floor));
        table.row(vec![
            Cell::text(expr),
            Cell::num(classic, 0),
            Cell::num(ebpf, 0),
            Cell::num(ns, 0),
            Cell::num(floor, 0),
            Cell::num(ns - floor, 0),
        ]);
    }
    table.notes.push(
        "BPF_PROG_TEST_RUN reports whole ns; the empty program (return 0) is the harness's own cost per run, so the filter's own ns is the difference; sample packets: IPv4 TCP SYN, IPv4 UDP to 8.8.8.8:53, IPv6 UDP to port 53, IPv4 ICMP echo".into(),
    );
    Ok(table)
}
