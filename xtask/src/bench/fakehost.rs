//! `bench fakehost`: a fake host answered by myinit on a veth whose peer is
//! in the same namespace (the packet backend answers through the peer), for
//! each backend in turn: `--backend ebpf` (TC egress, answers redirected to
//! the interface's ingress) and `--backend packet` (AF_PACKET socket,
//! answers sent on the peer).
//!
//! Two measurements per backend and round:
//! - an echo-request flood: trafgen sends the requests on the interface
//!   itself through the qdisc layer, so they leave through its egress hook
//!   as the kernel's own would. Replies are what the kernel received back:
//!   the namespace's `Icmp InEchoReps` (nothing else sends echo replies
//!   there); `fakehost show` says how many the backend made.
//! - ping RTT: iputils `ping -i 0.01`, every reply's `time=`.
//!
//! A row "none" is the generator alone (no fake host: the requests go to
//! the peer, which drops them).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use myinit_testkit::{Frame, Netns};

use super::{cpu_seconds, median, need, unique, Bench, Cell, Flood, MyinitShell, Table, Watched};

const LOCAL_IP: [u8; 4] = [10, 98, 0, 1];
const FAKE_IP: [u8; 4] = [10, 98, 0, 2];
/// `fakehost add`'s default MAC of FAKE_IP (02:00 and the address).
const FAKE_MAC: [u8; 6] = [0x02, 0x00, 10, 98, 0, 2];
const FRAME_LEN: usize = 64;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Contender {
    /// The generator alone.
    None,
    /// myinit fakehost with this `--backend`.
    Myinit(&'static str),
    /// The packet backend offered the rate the eBPF backend kept up with in
    /// the same round (`trafgen --rate`): its saturation at that load.
    PacketPaced,
}

/// The first three alternate within a round; the paced one ends it.
const CONTENDERS: [Contender; 4] = [
    Contender::None,
    Contender::Myinit("ebpf"),
    Contender::Myinit("packet"),
    Contender::PacketPaced,
];

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::None => "none (generator alone)".into(),
            Contender::Myinit(b) => format!("myinit fakehost --backend {b} (static musl)"),
            Contender::PacketPaced => {
                "myinit fakehost --backend packet, offered the eBPF backend's replies/s (trafgen --rate)"
                    .into()
            }
        }
    }
}

/// A namespace holding a veth pair: `dev` (LOCAL_IP/24, where the fake
/// host lives) and its `peer`; an anchor process in it lets us read its
/// /proc/net files without a process per read. Removed on drop.
struct Link {
    ns: String,
    dev: String,
    peer: String,
    mac: [u8; 6],
    anchor: Option<Watched>,
    /// Deleted last (fields drop in order): the anchor first, then the
    /// namespace with the veth pair.
    _netns: Netns,
}

impl Link {
    fn new() -> anyhow::Result<Self> {
        let tag = unique("");
        let netns = Netns::named(format!("{tag}-fh"))?;
        let mut link = Link {
            ns: netns.name.clone(),
            dev: format!("{tag}a"),
            peer: format!("{tag}b"),
            mac: [0; 6],
            anchor: None,
            _netns: netns,
        };
        let ns = &link._netns;
        ns.try_ip(&[
            "link", "add", &link.dev, "type", "veth", "peer", "name", &link.peer,
        ])?;
        let local = format!("{}/24", dotted(LOCAL_IP));
        ns.try_ip(&["addr", "add", &local, "dev", &link.dev])?;
        // No IPv6: its router solicitations and DAD would only add noise.
        ns.try_no_ipv6()?;
        ns.try_ip(&["link", "set", &link.peer, "up"])?;
        ns.try_ip(&["link", "set", &link.dev, "up"])?;
        link.mac = ns.mac(&link.dev)?;
        let mut anchor = Command::new("ip");
        anchor.args(["netns", "exec", &link.ns, "sleep", "3600"]);
        link.anchor = Some(Watched::spawn(anchor)?);
        // Until `ip netns exec` has entered the namespace, its /proc/net is ours.
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.rx_packets(&link.peer).is_err() {
            ensure!(
                Instant::now() < deadline,
                "the anchor process did not enter {} within 10 s",
                link.ns
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(link)
    }

    fn proc_net(&self, file: &str) -> anyhow::Result<String> {
        let pid = self.anchor.as_ref().context("no anchor")?.child.id();
        let path = format!("/proc/{pid}/net/{file}");
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    /// A counter of the namespace's `/proc/net/snmp`, e.g. ("Icmp", "InEchoReps").
    fn snmp(&self, group: &str, name: &str) -> anyhow::Result<u64> {
        super::netstat_value(&self.proc_net("snmp")?, group, name)
            .with_context(|| format!("no {group} {name} in /proc/net/snmp"))
    }

    /// `rx_packets` of an interface of the namespace, from /proc/net/dev.
    fn rx_packets(&self, dev: &str) -> anyhow::Result<u64> {
        let text = self.proc_net("dev")?;
        text.lines()
            .find_map(|l| {
                let (name, counters) = l.split_once(':')?;
                (name.trim() == dev).then(|| counters.split_whitespace().nth(1)?.parse().ok())?
            })
            .with_context(|| format!("no {dev} in /proc/net/dev"))
    }
}

fn dotted(ip: [u8; 4]) -> String {
    ip.map(|b| b.to_string()).join(".")
}

/// A 64-byte ICMP echo request from `dev` to the fake host, checksums valid
/// (the reply's are derived from them: a bad one would be dropped).
fn echo_request(src_mac: [u8; 6]) -> Vec<u8> {
    let data: Vec<u8> = (0..FRAME_LEN - 14 - 20 - 8).map(|i| i as u8).collect();
    Frame::ether(FAKE_MAC, src_mac)
        .ipv4(LOCAL_IP, FAKE_IP)
        .icmp_echo(0x4d49, 1)
        .payload(&data)
        .bytes()
}

/// One flood with one contender.
#[derive(Default, Clone, Copy)]
struct FloodSample {
    flood_s: f64,
    /// From the flood's start to the last reply seen (at least flood_s).
    span_s: f64,
    /// Echo replies the kernel received (`Icmp InEchoReps`).
    replies: u64,
    /// Requests that reached the peer (not answered at the egress hook).
    to_peer: u64,
    /// Echo answers the backend says it made (`fakehost show`).
    answered: Option<u64>,
    cpu_s: Option<f64>,
    csum_errors: u64,
}

/// One ping run: every reply's round trip in ms, and how many were sent.
#[derive(Default, Clone)]
struct PingSample {
    sent: u64,
    rtts: Vec<f64>,
}

pub fn run(bench: &Bench) -> anyhow::Result<Vec<Table>> {
    need("trafgen", "netsniff-ng")?;
    need("ping", "iputils-ping")?;
    let link = Link::new()?;
    let frames = bench.scaled(1_000_000);
    let pings = if bench.quick { 100 } else { 1000 };
    let flood = Flood::new(&echo_request(link.mac), frames)?;
    let mut floods: Vec<Vec<FloodSample>> = vec![Vec::new(); CONTENDERS.len()];
    let mut rtts: Vec<Vec<PingSample>> = vec![Vec::new(); CONTENDERS.len()];
    for round in 0..bench.rounds as usize {
        // A different order each round, so a drift of the machine's load
        // does not always favour the same contender.
        let n = 3;
        let order = (0..n).map(|k| (k + round) % n).chain([3]);
        for i in order {
            let c = CONTENDERS[i];
            // This round's eBPF rate, for the paced run.
            let rate = floods[1]
                .last()
                .map(|s| (s.replies as f64 / s.span_s).round() as u64);
            let (f, p) = measure(bench, &link, &flood, c, pings, rate)
                .with_context(|| format!("round {}: {}", round + 1, c.label()))?;
            let ping = p.as_ref().map_or(String::new(), |p| {
                format!(
                    "; ping {}/{} replies, median {:.3} ms",
                    p.rtts.len(),
                    p.sent,
                    median(&p.rtts)
                )
            });
            eprintln!(
                "bench fakehost: round {} {}: flood {:.3} s, {} replies in {:.3} s, answered {:?}, \
                 to peer {}, cpu {:?}{ping}",
                round + 1,
                c.label(),
                f.flood_s,
                f.replies,
                f.span_s,
                f.answered,
                f.to_peer,
                f.cpu_s,
            );
            floods[i].push(f);
            if let Some(p) = p {
                rtts[i].push(p);
            }
        }
    }
    Ok(vec![
        flood_table(bench, frames, &floods),
        rtt_table(bench, pings, &rtts),
    ])
}

fn flood_table(bench: &Bench, frames: u64, samples: &[Vec<FloodSample>]) -> Table {
    let mut table = Table::new(
        format!(
            "Echo-request flood to a fake host on a veth, {frames} 64-byte requests per flood \
             (trafgen --cpus 1 --qdisc-path on the fake host's interface), median of {} round(s)",
            bench.rounds
        ),
        &[
            "contender",
            "requests sent",
            "flood s",
            "requests/s",
            "slowdown",
            "answered",
            "replies",
            "replies/s",
            "to peer",
            "myinit CPU s",
            "CPU µs per reply",
            "ICMP csum errors",
        ],
    );
    let med = |v: &[FloodSample], f: &dyn Fn(&FloodSample) -> Option<f64>| {
        median(&v.iter().filter_map(f).collect::<Vec<_>>())
    };
    let base = med(&samples[0], &|s| Some(s.flood_s));
    let mut rates = Vec::new();
    for (c, v) in CONTENDERS.iter().zip(samples) {
        let flood_s = med(v, &|s| Some(s.flood_s));
        let replies = med(v, &|s| Some(s.replies as f64));
        let rate = med(v, &|s| Some(s.replies as f64 / s.span_s));
        let cpu = med(v, &|s| s.cpu_s);
        // Per reply: myinit's own CPU plus what the answers cost the
        // sender's CPU (in-kernel answers run in its context); a paced
        // sender is slow by design: its own CPU only.
        let paced = *c == Contender::PacketPaced;
        let slowdown = if paced { 0.0 } else { flood_s - base };
        let cost = (cpu + slowdown) / replies * 1e6;
        let is_none = *c == Contender::None;
        rates.push(rate);
        table.row(vec![
            Cell::text(c.label()),
            Cell::Int(frames),
            Cell::num(flood_s, 3),
            Cell::num(frames as f64 / flood_s, 0),
            if paced {
                Cell::None
            } else {
                Cell::text(format!("{:.2}×", flood_s / base))
            },
            Cell::num(med(v, &|s| s.answered.map(|a| a as f64)), 0),
            Cell::num(replies, 0),
            if is_none {
                Cell::None
            } else {
                Cell::num(rate, 0)
            },
            Cell::num(med(v, &|s| Some(s.to_peer as f64)), 0),
            Cell::num(cpu, 2),
            if is_none {
                Cell::None
            } else {
                Cell::num(cost, 2)
            },
            Cell::num(med(v, &|s| Some(s.csum_errors as f64)), 0),
        ]);
    }
    for (c, v) in CONTENDERS.iter().zip(samples).skip(1) {
        let share = med(v, &|s| s.answered.map(|a| a as f64 / frames as f64 * 100.0));
        let offered = med(v, &|s| Some(frames as f64 / s.flood_s));
        table.notes.push(format!(
            "{}: answered {share:.1} % of the requests offered at {offered:.0}/s",
            c.label()
        ));
    }
    table.notes.push(
        "the eBPF backend answers inside the generator's own sends: its replies/s is the rate the generator keeps up \
         with that work (below 100 % answered it would be saturated); the packet backend's requests queue in \
         its AF_PACKET socket, which drops what it cannot hold: below 100 % it is saturated"
            .into(),
    );
    if rates[1].is_finite() && rates[3].is_finite() && rates[3] > 0.0 {
        let offered = med(&samples[3], &|s| Some(frames as f64 / s.flood_s));
        table.notes.push(format!(
            "paced: trafgen --rate asked for the eBPF backend's {:.0} requests/s and reached {offered:.0} \
             (with --rate it sends with sendto(2), not its ring); there the packet backend made {:.0} replies/s: \
             eBPF {:.2}× that",
            rates[1],
            rates[3],
            rates[1] / rates[3]
        ));
    }
    if rates[1].is_finite() && rates[2].is_finite() && rates[2] > 0.0 {
        table.speedups.push((
            "echo replies/s, eBPF backend vs packet backend".into(),
            rates[1] / rates[2],
            5.0,
        ));
    }
    table.notes.push(format!(
        "generator alone: {:.0} requests/s; replies = the namespace's Icmp InEchoReps (echo replies the kernel received); \
         replies/s = replies ÷ (flood start → last reply seen, polled every 10 ms)",
        frames as f64 / base
    ));
    table.notes.push(
        "answered = ECHO of `fakehost show`; to peer = the peer veth's rx_packets (requests not taken at the egress hook); \
         CPU µs per reply = (myinit's user+sys from /proc/PID/stat + flood time − the generator's alone) ÷ replies"
            .into(),
    );
    table
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rtt_table(bench: &Bench, pings: u64, samples: &[Vec<PingSample>]) -> Table {
    let mut table = Table::new(
        format!(
            "ping RTT to the fake host (iputils ping -i 0.01 -c {pings}), median of {} round(s)",
            bench.rounds
        ),
        &[
            "backend",
            "sent",
            "received",
            "RTT median ms",
            "RTT p99 ms",
            "RTT max ms",
        ],
    );
    let mut p99s = Vec::new();
    for (c, v) in CONTENDERS.iter().zip(samples).skip(1).take(2) {
        let per_round = |f: &dyn Fn(&[f64]) -> f64| {
            median(
                &v.iter()
                    .map(|s| {
                        let mut r = s.rtts.clone();
                        r.sort_by(f64::total_cmp);
                        f(&r)
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let p99 = per_round(&|r| percentile(r, 99.0));
        p99s.push(p99);
        table.row(vec![
            Cell::text(c.label()),
            Cell::num(
                median(&v.iter().map(|s| s.sent as f64).collect::<Vec<_>>()),
                0,
            ),
            Cell::num(
                median(&v.iter().map(|s| s.rtts.len() as f64).collect::<Vec<_>>()),
                0,
            ),
            Cell::num(per_round(&|r| percentile(r, 50.0)), 3),
            Cell::num(p99, 3),
            Cell::num(per_round(&|r| r.last().copied().unwrap_or(f64::NAN)), 3),
        ]);
    }
    if let [ebpf, packet] = p99s[..] {
        if ebpf.is_finite() && packet.is_finite() && packet > 0.0 {
            table.ratios.push((
                "RTT p99, eBPF backend vs packet backend".into(),
                ebpf / packet,
                None,
            ));
            let verdict = if ebpf < packet {
                "lower (target met)"
            } else {
                "not lower (target missed)"
            };
            table.notes.push(format!(
                "eBPF p99 {ebpf:.3} ms vs packet p99 {packet:.3} ms: {verdict}"
            ));
        }
    }
    table.notes.push(
        "each round's median and p99 (nearest rank) over its replies' `time=`, then the median over rounds".into(),
    );
    table
}

fn measure(
    bench: &Bench,
    link: &Link,
    flood: &Flood,
    contender: Contender,
    pings: u64,
    ebpf_rate: Option<u64>,
) -> anyhow::Result<(FloodSample, Option<PingSample>)> {
    let (backend, rate) = match contender {
        Contender::None => return Ok((flood_once(link, flood, None, None)?, None)),
        Contender::Myinit(backend) => (backend, None),
        Contender::PacketPaced => (
            "packet",
            Some(ebpf_rate.context("no eBPF rate measured in this round")?),
        ),
    };
    let mut shell = MyinitShell::start(bench, Some(&link.ns))?;
    let fake = dotted(FAKE_IP);
    let added = shell.run(
        &format!("fakehost add {} {fake} icmp --backend {backend}", link.dev),
        Duration::from_secs(60),
    )?;
    ensure!(
        added
            .iter()
            .any(|l| l.contains(&format!("(backend {backend}"))),
        "fakehost add: {}",
        added.join(" / ")
    );
    let answered = |shell: &mut MyinitShell| -> anyhow::Result<u64> {
        let show = shell.run("fakehost show", Duration::from_secs(30))?;
        echo_count(&show, &link.dev, &fake).with_context(|| {
            format!(
                "no ECHO count for {fake} in fakehost show: {}",
                show.join(" / ")
            )
        })
    };
    // Ping first, on a quiet link; its ARP request resolves the fake host.
    let ping = if rate.is_none() {
        Some(ping_once(link, &fake, pings)?)
    } else {
        None
    };
    let answered0 = answered(&mut shell)?;
    let mut sample = flood_once(link, flood, Some(shell.pid()), rate)?;
    sample.answered = Some(answered(&mut shell)? - answered0);
    shell.run(
        &format!("fakehost del {} {fake}", link.dev),
        Duration::from_secs(30),
    )?;
    shell.exit()?;
    Ok((sample, ping))
}

/// One flood (at `pps`, or as fast as trafgen goes); `myinit`: the
/// answering process, whose CPU time is taken.
fn flood_once(
    link: &Link,
    flood: &Flood,
    myinit: Option<u32>,
    pps: Option<u64>,
) -> anyhow::Result<FloodSample> {
    let replies0 = link.snmp("Icmp", "InEchoReps")?;
    let csum0 = link.snmp("Icmp", "InCsumErrors")?;
    let peer0 = link.rx_packets(&link.peer)?;
    let cpu0 = myinit.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let flood_s = flood.run_egress(&link.ns, &link.dev, pps)?;
    // A userspace answerer may still be working through what it queued:
    // wait until the count stops moving (bounded).
    let mut last = link.snmp("Icmp", "InEchoReps")?;
    let mut last_change = started.elapsed().as_secs_f64();
    let settle = Instant::now() + Duration::from_secs(10);
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(300) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
        let now = link.snmp("Icmp", "InEchoReps")?;
        if now != last {
            last = now;
            last_change = started.elapsed().as_secs_f64();
            still_since = Instant::now();
        }
    }
    let cpu_s = match (myinit, cpu0) {
        (Some(pid), Some(c0)) => Some(cpu_seconds(pid)? - c0),
        _ => None,
    };
    Ok(FloodSample {
        flood_s,
        span_s: last_change.max(flood_s),
        replies: last - replies0,
        to_peer: link.rx_packets(&link.peer)? - peer0,
        answered: None,
        cpu_s,
        csum_errors: link.snmp("Icmp", "InCsumErrors")? - csum0,
    })
}

/// `ping -i 0.01 -c COUNT` to the fake host: each reply's `time=`.
fn ping_once(link: &Link, ip: &str, count: u64) -> anyhow::Result<PingSample> {
    let count_s = count.to_string();
    let out = Command::new("ip")
        .args([
            "netns", "exec", &link.ns, "ping", "-n", "-i", "0.01", "-W", "1", "-c", &count_s, ip,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text.lines().filter_map(rtt_of).collect();
    if rtts.is_empty() {
        bail!(
            "ping {ip}: no replies: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PingSample { sent: count, rtts })
}

/// `64 bytes from 10.98.0.2: icmp_seq=1 ttl=64 time=0.045 ms` → 0.045.
fn rtt_of(line: &str) -> Option<f64> {
    let rest = line.split_once(" time=")?.1;
    let (value, unit) = rest.split_once(' ')?;
    let v: f64 = value.parse().ok()?;
    match unit.trim() {
        "ms" => Some(v),
        "s" => Some(v * 1000.0),
        "us" | "µs" => Some(v / 1000.0),
        _ => None,
    }
}

/// The ECHO column of `fakehost show` for IP on DEV: the columns after the
/// backend (which ends with `)`) are ARP, NA, DAD, ECHO, RA.
fn echo_count(show: &[String], dev: &str, ip: &str) -> Option<u64> {
    show.iter().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&dev) || words.get(1) != Some(&ip) {
            return None;
        }
        let after = words.iter().position(|w| w.ends_with(')'))? + 1;
        words.get(after + 3)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_request_has_valid_checksums() {
        let f = echo_request([2, 0, 0, 0, 0, 1]);
        assert_eq!(f.len(), FRAME_LEN);
        assert_eq!(myinit_testkit::frames::internet_checksum(&f[14..34]), 0);
        assert_eq!(myinit_testkit::frames::internet_checksum(&f[34..]), 0);
        assert_eq!(&f[0..6], &FAKE_MAC);
    }

    #[test]
    fn ping_times_and_show_counts_parse() {
        assert_eq!(
            rtt_of("64 bytes from 10.98.0.2: icmp_seq=1 ttl=64 time=0.045 ms"),
            Some(0.045)
        );
        assert_eq!(rtt_of("--- 10.98.0.2 ping statistics ---"), None);
        let show: Vec<String> = [
            "IFACE        IP                         MAC                BACKEND           ARP     NA    DAD   ECHO     RA  OPTIONS",
            "xb1a         10.98.0.2                  02:00:0a:62:00:02  ebpf (tcx)          1      0      0 100000      0  icmp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(echo_count(&show, "xb1a", "10.98.0.2"), Some(100_000));
        assert_eq!(echo_count(&show, "xb1a", "10.98.0.3"), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 99.0).is_nan());
    }
}
