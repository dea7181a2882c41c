//! `inject FILE IF`: sends the packets of a pcap, pcapng or JSONL file
//! into an interface. Into a TAP made by `tap add` the frames are written to
//! the TAP's fd, so the kernel *receives* them on IF (what a test bench
//! needs); on any other interface they go out through an AF_PACKET socket
//! (sent on IF, received by its peer).
//!
//! The whole file is checked before the first packet leaves, so bad input
//! sends nothing, and memory stays bounded whatever the file's size: the
//! file is read twice, streaming (packet/pcap.rs, packet/jsonl.rs), once to
//! check every packet and once to send. A regular file is simply read
//! again; anything else (a FIFO, a device, stdin) cannot be, so the first
//! pass keeps a copy of what it reads, up to `UNSEEKABLE_LIMIT` bytes;
//! beyond that it is an error before anything is sent. The format comes
//! from the content, never from the name.
//!
//! Pacing: by default the file's own timing. Each packet is due at an
//! absolute time, counted from when the first packet went, so a late packet
//! never delays the ones after it (errors do not add up over a long file,
//! tcpreplay's drift). As the original, a pause of 10 s or more between two
//! packets is not waited (`--max-gap`): fixtures mix timestamps of 0 with
//! real ones.
//!
//! Its last line is the original's, which scripts grep for: `Injection
//! complete: N packets sent`, N the packets sent; ours, with the figures,
//! comes before it. A paced replay runs at real-time priority (see
//! `Pacer`): the wait sleeps while the packet is far off and spins the last
//! `SPIN` for precision (a sleep wakes up tens of µs late, a spin on the
//! vDSO clock does not); it gives part of the CPU back by sleeping in
//! some of the short gaps (a millisecond at a time on a schedule too dense
//! for that), as the kernel would otherwise stop it for 50 ms at a time.
//!
//! Sends the kernel keeps refusing (a full queue, ENOBUFS from a peer whose
//! MTU is smaller than the frame) are retried for `REFUSED_FOR`, then the
//! command stops and says what was sent and why the rest was not.

use clap::{CommandFactory, Parser};
use std::fmt;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{parse_seconds, usage, CommandSpec, Interrupted};
use crate::net::iface;
use crate::net::netlink::Netlink;
use crate::net::packet_socket::PacketSender;
use crate::packet::jsonl;
use crate::packet::linktype::{check_fits, check_packet, protocol_of};
use crate::packet::pcap::PacketReader;
use crate::shell::Ctx;

/// How much of an input that cannot be read twice is kept in memory.
const UNSEEKABLE_LIMIT: usize = 16 << 20;
/// How long one packet is retried while the kernel refuses it.
const REFUSED_FOR: Duration = Duration::from_secs(1);
/// The pause between two tries of a refused packet.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// The last part of a wait that is spun rather than slept. Measured on the
/// loaded 2-core VM of this project (its other builds and qemu runs at a
/// load average of 3-4; 20,000 waits 100 µs apart at real-time priority):
/// sleeping in every gap until 50 µs before the packet gave a p99 lateness
/// of 51-884 µs, as a woken thread often waits for the task it preempts to
/// leave the kernel (no kernel preemption there); spinning through the
/// gaps, with the fair share below slept, gave 2-17 µs in 3 runs out of 4.
/// Past this the wait sleeps: a long gap is not worth a CPU.
const SPIN: Duration = Duration::from_micros(200);
/// The CPU a real-time replay gives back while it spins: it owes this part
/// of the time it was awake, and pays it by sleeping in a gap long enough
/// (`PAY_AHEAD` + `PAY_MIN`), or, when the schedule is too dense for that,
/// `PAY_AT_ONCE` at a time. Never sleeping, it is stopped by the kernel
/// (its real-time limit, `sched_rt_runtime_us`: 95 %) for 50 ms about once
/// a second, packets 50 ms late. Short sleeps count for less than they
/// last (two context switches each), so the share is well above 5 %:
/// measured on the loaded VM (10 s replays, 100 µs apart), 1/11 still got
/// those 50 ms stops in 2 runs of 3 (p99 lateness 24 µs-42 ms), 1/6 in 1
/// of 3 (p99 3 µs in the others).
const FAIR_SHARE: f64 = 1.0 / 6.0;
const PAY_AHEAD: Duration = Duration::from_micros(50);
const PAY_MIN: Duration = Duration::from_micros(20);
const PAY_AT_ONCE: Duration = Duration::from_millis(1);
/// The longest single sleep, so that Ctrl-C is noticed during long gaps.
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// How often a long replay says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How far into the input the format is looked for (blank lines before a
/// JSONL file's first record).
const SNIFF_LIMIT: usize = 64 << 10;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "inject",
    usage: "",
    summary: "send the packets of a pcap, pcapng or JSONL file into an interface",
    help: "Ethernet frames go to Ethernet interfaces (and lo); raw IP packets to\n\
           interfaces without a link header (TUN, WireGuard, IP tunnels).\n\
           The file is checked first: a bad file sends nothing. Ctrl-C stops.\n\
           Pace: the file's own timing by default, each packet due at its time\n\
           after the first packet left (no drift), but a pause of --max-gap (10 s,\n\
           as the original) or more is not waited; --speed, --topspeed, --pps\n\
           and --interval each replace it (one of them at most). --loop repeats\n\
           the file, keeping the pace: the next round starts one average gap\n\
           after the last packet. --count stops after N packets in all.\n\
           Prints progress every 2 s on long replays (stderr), then a summary\n\
           and the original's last line: Injection complete: N packets sent.\n\
           Example: inject /mnt/host/frames.pcap tap0 --count 1000 --interval 0.01",
    run: inject,
    cli: Some(InjectArgs::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "inject",
    disable_help_flag = true,
    override_usage = "inject FILE IF [--speed X | --topspeed | --pps N | --interval SECONDS] \
                      [--max-gap SECONDS] [--loop N] [--count N]"
)]
struct InjectArgs {
    /// classic pcap (µs or ns timestamps, either byte order), pcapng, or
    /// JSONL (one packet per line); link types 1 (Ethernet), 101 (raw IP),
    /// 228 (IPv4) and 229 (IPv6)
    #[arg(value_name = "FILE")]
    file: Option<String>,
    /// a TAP made by `tap add`: the kernel receives the frames on IF; any
    /// other interface: they are sent on IF (AF_PACKET), so its peer
    /// receives them
    #[arg(value_name = "IF")]
    iface: Option<String>,
    /// the file's timing, X times faster (0.5: half as fast)
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    speed: Option<String>,
    /// as fast as the interface takes them, no timing
    #[arg(long)]
    topspeed: bool,
    /// N packets a second, evenly spaced (fractions allowed)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pps: Option<String>,
    /// this long between packets (fractions allowed; 0 is --topspeed)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    interval: Option<String>,
    /// a pause this long or longer between two packets of the file is not
    /// waited, as the original (default 10; 0: every pause is waited)
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    max_gap: Option<String>,
    /// send the whole file N times
    #[arg(long = "loop", value_name = "N", allow_hyphen_values = true)]
    loops: Option<String>,
    /// send N packets in all, going round the file again as needed
    /// (with --loop: whichever ends first; default: each packet once)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    count: Option<String>,
}

/// How the packets are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pace {
    /// The file's own gaps, divided by a speed factor.
    Recorded { speed: f64 },
    /// As fast as the interface takes them.
    Top,
    /// The same gap between all packets (--pps, --interval).
    Every(Duration),
}

struct Args {
    file: String,
    iface: String,
    count: Option<u64>,
    loops: Option<u64>,
    pace: Pace,
    /// Pauses this long or longer are not waited (None: all are).
    max_gap: Option<Duration>,
}

/// The original's: it slept between two packets only below 10 s.
const MAX_GAP: Duration = Duration::from_secs(10);

/// A whole number of at least 1, for `option`.
fn at_least_one(option: &str, value: &str) -> anyhow::Result<u64> {
    match value.parse::<u64>() {
        Ok(0) => Err(usage(format!("{option} must be at least 1"))),
        Ok(n) => Ok(n),
        Err(_) => Err(usage(format!("{option}: not a number: {value}"))),
    }
}

/// A positive, finite number up to a billion, for `option`.
fn positive(option: &str, value: &str) -> anyhow::Result<f64> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e9 => Ok(x),
        _ => Err(usage(format!("{option}: not a positive number: {value}"))),
    }
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let parsed: InjectArgs = super::parse_args("inject", args)?;
    let paces: Vec<&str> = [
        ("--speed", parsed.speed.is_some()),
        ("--topspeed", parsed.topspeed),
        ("--pps", parsed.pps.is_some()),
        ("--interval", parsed.interval.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect();
    if let [first, second, ..] = paces[..] {
        return Err(usage(format!(
            "{first} and {second} both set the pace: give one of them"
        )));
    }
    let pace = if let Some(value) = &parsed.speed {
        Pace::Recorded {
            speed: positive("--speed", value)?,
        }
    } else if parsed.topspeed {
        Pace::Top
    } else if let Some(value) = &parsed.pps {
        Pace::Every(Duration::from_secs_f64(1.0 / positive("--pps", value)?))
    } else if let Some(value) = &parsed.interval {
        match parse_seconds(value)? {
            Duration::ZERO => Pace::Top,
            gap => Pace::Every(gap),
        }
    } else {
        Pace::Recorded { speed: 1.0 }
    };
    let count = parsed
        .count
        .map(|v| at_least_one("--count", &v))
        .transpose()?;
    let loops = parsed
        .loops
        .map(|v| at_least_one("--loop", &v))
        .transpose()?;
    let max_gap = match parsed.max_gap.as_deref().map(parse_seconds).transpose()? {
        None => Some(MAX_GAP),
        Some(Duration::ZERO) => None,
        Some(gap) => Some(gap),
    };
    match (parsed.file, parsed.iface) {
        (Some(file), Some(iface)) => Ok(Args {
            file,
            iface,
            count,
            loops,
            pace,
            max_gap,
        }),
        (None, _) => Err(usage("missing FILE and IF")),
        (Some(_), None) => Err(usage("missing IF")),
    }
}

/// Where the file's bytes come from, for each pass.
enum Source {
    /// A regular file: opened again for each pass.
    File(std::path::PathBuf),
    /// What the first pass read of anything else.
    Memory(Vec<u8>),
}

impl Source {
    fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            // The readers buffer: no BufReader.
            Source::File(path) => Box::new(std::fs::File::open(path)?),
            Source::Memory(bytes) => Box::new(&bytes[..]),
        })
    }
}

/// A reader that keeps a copy of what it reads, up to a limit.
struct Recording<R> {
    inner: R,
    copy: Vec<u8>,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.copy.len() + n > UNSEEKABLE_LIMIT {
            return Err(std::io::Error::other(format!(
                "not a regular file, and longer than the {} MiB kept of such input \
                 (copy it to a file first)",
                UNSEEKABLE_LIMIT >> 20
            )));
        }
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Where a packet is in its file, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// pcap/pcapng: where its record or block starts.
    Byte(u64),
    /// JSONL: its line.
    Line(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Byte(offset) => write!(f, "byte {offset}"),
            Place::Line(line) => write!(f, "line {line}"),
        }
    }
}

/// One packet, whatever the file's format; reused from packet to packet so
/// that sending does not allocate.
struct Frame {
    /// 1 for the file's first packet.
    number: u64,
    place: Place,
    linktype: u32,
    /// Nanoseconds since the epoch.
    timestamp_ns: u64,
    data: Vec<u8>,
}

impl Frame {
    fn new() -> Self {
        Frame {
            number: 0,
            place: Place::Byte(0),
            linktype: 0,
            timestamp_ns: 0,
            data: Vec::new(),
        }
    }
}

/// What the first bytes were read into while looking for the format.
type Sniffed<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The packets of a file in one of the formats inject reads.
enum Packets<R: Read> {
    Capture(PacketReader<Sniffed<R>>),
    Jsonl {
        reader: jsonl::Reader<BufReader<Sniffed<R>>>,
        number: u64,
    },
}

impl<R: Read> Packets<R> {
    /// Picks the format from the content: JSONL when the first byte that
    /// is not white space opens an object, else pcap or pcapng by their
    /// magic numbers (pcap/pcapng magics are neither; pcapng's starts with
    /// "\n\r\r\n", so it is ruled out first).
    fn open(mut input: R) -> anyhow::Result<Self> {
        const PCAPNG_MAGIC: &[u8] = b"\n\r\r\n";
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        let first = loop {
            if head.starts_with(PCAPNG_MAGIC) {
                break None;
            }
            if let Some(&b) = head.iter().find(|b| !b.is_ascii_whitespace()) {
                break Some(b);
            }
            if head.len() >= SNIFF_LIMIT {
                break None;
            }
            match input.read(&mut chunk) {
                Ok(0) => break None,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(anyhow!(crate::util::io_error(&e))),
            }
        };
        let input = std::io::Cursor::new(head).chain(input);
        Ok(if first == Some(b'{') {
            Packets::Jsonl {
                reader: jsonl::Reader::new(BufReader::with_capacity(64 << 10, input)),
                number: 0,
            }
        } else {
            Packets::Capture(PacketReader::new(input)?)
        })
    }

    /// Reads the next packet into `frame`; false at the end.
    fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
        match self {
            Packets::Capture(reader) => {
                let Some(record) = reader.next_record()? else {
                    return Ok(false);
                };
                frame.number = record.number;
                frame.place = Place::Byte(record.offset);
                frame.linktype = record.linktype;
                frame.timestamp_ns = record.timestamp_ns;
                frame.data.clear();
                frame.data.extend_from_slice(record.data);
            }
            Packets::Jsonl { reader, number } => {
                let Some(record) = reader.next() else {
                    return Ok(false);
                };
                let record = record?;
                let line = reader.line();
                frame.data = record
                    .packet
                    .encode()
                    .map_err(|e| anyhow!("line {line}: {e}"))?;
                *number += 1;
                frame.number = *number;
                frame.place = Place::Line(line);
                frame.linktype = record.linktype;
                frame.timestamp_ns = record.timestamp_ns;
            }
        }
        Ok(true)
    }
}

/// What the first pass found: the number of packets, their link types in
/// the order they first appear, the file's span, and the pauses skipped.
struct Checked {
    packets: u64,
    linktypes: Vec<u32>,
    /// From the first packet's time to the last one's, in ns, but the
    /// pauses not waited.
    span_ns: u64,
    /// Pauses of `--max-gap` or more, not waited.
    skipped_gaps: u64,
}

/// When a packet is due, in ns after the first packet of its round.
/// Timestamps that go back in time are sent at once after their
/// predecessor: the schedule never goes backwards. A pause of `max_gap`
/// or more is not waited.
struct Offsets {
    /// The latest timestamp seen.
    latest_ns: Option<u64>,
    last: u64,
    max_gap_ns: Option<u64>,
    skipped: u64,
}

impl Offsets {
    fn new(max_gap: Option<Duration>) -> Self {
        Offsets {
            latest_ns: None,
            last: 0,
            max_gap_ns: max_gap.map(|g| g.as_nanos().try_into().unwrap_or(u64::MAX)),
            skipped: 0,
        }
    }

    fn next(&mut self, timestamp_ns: u64) -> u64 {
        let latest = *self.latest_ns.get_or_insert(timestamp_ns);
        let gap = timestamp_ns.saturating_sub(latest);
        self.latest_ns = Some(latest.max(timestamp_ns));
        if self.max_gap_ns.is_some_and(|max| gap >= max) {
            self.skipped += 1;
        } else {
            self.last = self.last.saturating_add(gap);
        }
        self.last
    }
}

/// The first pass: every packet read and checked. Stops at the next
/// Ctrl-C (`interrupts`), as a large file takes a while.
fn check_all(
    input: impl Read,
    max_gap: Option<Duration>,
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Checked> {
    let mut packets = Packets::open(input)?;
    let mut checked = Checked {
        packets: 0,
        linktypes: Vec::new(),
        span_ns: 0,
        skipped_gaps: 0,
    };
    let mut offsets = Offsets::new(max_gap);
    let mut frame = Frame::new();
    while packets.next_frame(&mut frame)? {
        check_frame(&frame)?;
        if !checked.linktypes.contains(&frame.linktype) {
            checked.linktypes.push(frame.linktype);
        }
        checked.span_ns = offsets.next(frame.timestamp_ns);
        checked.skipped_gaps = offsets.skipped;
        checked.packets += 1;
        if checked.packets.is_multiple_of(1024) && interrupts.has_changed().unwrap_or(false) {
            return Err(Interrupted.into());
        }
    }
    Ok(checked)
}

fn check_frame(frame: &Frame) -> anyhow::Result<()> {
    check_packet(frame.linktype, &frame.data)
        .map_err(|e| anyhow!("packet {} ({}): {e}", frame.number, frame.place))
}

/// Opens FILE and checks all of it, off the shell thread (a FIFO's reads
/// block, and Ctrl-C must still end the wait).
fn open_and_check(
    ctx: &Ctx<'_>,
    file: &str,
    max_gap: Option<Duration>,
) -> anyhow::Result<(Source, Checked)> {
    let path = Path::new(file);
    let opened = crate::util::open_interruptible(
        path,
        std::fs::OpenOptions::new().read(true),
        ctx.interrupts(),
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::Interrupted => Interrupted.into(),
        _ => anyhow!("{file}: {}", crate::util::io_error(&e)),
    })?;
    let regular = opened.metadata().is_ok_and(|m| m.is_file());
    let interrupts = ctx.interrupts();
    let check = move || {
        if regular {
            let checked = check_all(opened, max_gap, &interrupts);
            (checked, None)
        } else {
            let mut recording = Recording {
                inner: opened,
                copy: Vec::new(),
            };
            let checked = check_all(&mut recording, max_gap, &interrupts);
            (checked, Some(recording.copy))
        }
    };
    // The blocking task notices Ctrl-C by itself, except in a blocked read
    // of a FIFO: then it ends when the writer writes or closes.
    let (checked, copy) = ctx
        .block_on(async { tokio::task::spawn_blocking(check).await })?
        .map_err(|e| anyhow!("checking {file}: {e}"))?;
    let checked = checked.map_err(|e| {
        if e.is::<Interrupted>() {
            e
        } else {
            anyhow!("{file}: {e}")
        }
    })?;
    let source = match copy {
        Some(bytes) => Source::Memory(bytes),
        None => Source::File(path.to_path_buf()),
    };
    Ok((source, checked))
}

/// Where the packets go.
enum Sink {
    /// The TAP's own fd: a write is a frame received on the interface.
    Tap(OwnedFd),
    /// An AF_PACKET socket: a frame sent on the interface.
    Packet { sender: PacketSender, ifindex: u32 },
}

impl Sink {
    fn send(&self, frame: &Frame) -> std::io::Result<usize> {
        match self {
            Sink::Tap(fd) => nix::unistd::write(fd, &frame.data).map_err(std::io::Error::from),
            Sink::Packet { sender, ifindex } => {
                let protocol = protocol_of(frame.linktype, &frame.data);
                sender.send(*ifindex, protocol, &frame.data)
            }
        }
    }
}

impl Pace {
    /// When packet `index` (0-based, over all rounds) is due after the
    /// first packet left: `round` and `offset_ns` place it in the file.
    /// None: whenever it can go.
    fn due(self, index: u64, round: u64, offset_ns: u64, checked: &Checked) -> Option<Duration> {
        let nanos = |ns: f64| Duration::try_from_secs_f64(ns / 1e9).unwrap_or(Duration::MAX);
        match self {
            Pace::Top => None,
            Pace::Every(gap) => Some(nanos(gap.as_nanos() as f64 * index as f64)),
            Pace::Recorded { speed } => {
                // A round lasts the file's span plus one average gap, so a
                // looped periodic file stays periodic.
                let gaps = checked.packets.saturating_sub(1).max(1);
                let round_ns = checked.span_ns as f64 * (1.0 + 1.0 / gaps as f64);
                Some(nanos((round as f64 * round_ns + offset_ns as f64) / speed))
            }
        }
    }
}

/// Waits for each packet's due time, holding the calling thread at
/// real-time priority (SCHED_FIFO 1) and a timer slack of 1 ns for the
/// whole paced replay, then restoring both. On a loaded machine an
/// ordinary thread is preempted for milliseconds while it spins and is run
/// late after a sleep; a real-time one is neither, but must give the CPU
/// back itself (`FAIR_SHARE`); it stays on one CPU (`pin`). Without the right to real-time priority (no
/// CAP_SYS_NICE, a cgroup without a real-time budget) the replay runs at
/// its ordinary priority and the scheduler shares the CPU by itself.
struct Pacer {
    realtime: Option<(libc::c_int, libc::sched_param)>,
    slack: Option<libc::c_int>,
    /// The thread's CPUs before it was held on one (see `pin`).
    cpus: Option<libc::cpu_set_t>,
    /// The CPU time owed to other tasks, in s (negative: paid ahead).
    owed: f64,
    /// Until when the time awake has been counted into `owed`.
    counted: Instant,
}

impl Pacer {
    fn new() -> Pacer {
        // Hand-written: no maintained crate wraps these; plain calls on the
        // calling thread. The pthread calls, not sched_setscheduler: musl's
        // sched_* functions are stubs that fail with ENOSYS (POSIX means
        // them per process, Linux per thread), so the shipped static build
        // never got real-time priority through them.
        // SAFETY: sched_param is plain old data; the calls only read and
        // write the values passed, which live for the calls.
        let realtime = unsafe {
            let me = libc::pthread_self();
            let mut policy = 0;
            let mut param: libc::sched_param = std::mem::zeroed();
            // Zeroed, then set: musl's sched_param has more fields than glibc's.
            let mut fifo: libc::sched_param = std::mem::zeroed();
            fifo.sched_priority = 1;
            (libc::pthread_getschedparam(me, &mut policy, &mut param) == 0
                && libc::pthread_setschedparam(me, libc::SCHED_FIFO, &fifo) == 0)
                .then_some((policy, param))
        };
        // SAFETY: prctl with integer arguments only.
        let slack = unsafe {
            let old = libc::prctl(libc::PR_GET_TIMERSLACK);
            (old > 0 && libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) == 0)
                .then_some(old)
        };
        Pacer {
            realtime,
            slack,
            cpus: pin(),
            owed: 0.0,
            counted: Instant::now(),
        }
    }

    /// Waits until `deadline`: sleeps until `SPIN` before it, then spins,
    /// paying the fair share on the way.
    fn wait_until(
        &mut self,
        deadline: Instant,
        interrupts: &tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), Interrupted> {
        loop {
            let now = Instant::now();
            if self.realtime.is_some() {
                self.owed += (now - self.counted).as_secs_f64() * FAIR_SHARE;
            }
            self.counted = now;
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Ok(());
            };
            let pause = if left > SPIN {
                (left - SPIN).min(SLEEP_SLICE)
            } else if self.owed > 0.0 && left > PAY_AHEAD + PAY_MIN {
                left - PAY_AHEAD
            } else if self.owed >= PAY_AT_ONCE.as_secs_f64() {
                PAY_AT_ONCE
            } else {
                std::hint::spin_loop();
                continue;
            };
            if interrupts.has_changed().unwrap_or(false) {
                return Err(Interrupted);
            }
            std::thread::sleep(pause);
            let woke = Instant::now();
            // Credit for a long sleep is capped: it must not allow a long
            // stretch of spinning later.
            self.owed = (self.owed - (woke - now).as_secs_f64()).max(-PAY_AT_ONCE.as_secs_f64());
            self.counted = woke;
        }
    }
}

/// Holds the calling thread on the CPU it runs on, for the replay; returns
/// the CPUs it had. A real-time thread free to move follows the scheduler's
/// push and pull between CPUs, and lands beside tasks that cannot leave
/// (a capture pinned to a CPU, per-CPU kernel threads), which it then
/// starves until the kernel stops it: measured on the 2-core VM (10 s
/// replays 100 µs apart, tcpdump held on CPU 0, the receiver's timestamps),
/// p99 lateness 16.8 ms and 141 ms free, 3.6 µs and 7.9 µs held. On one CPU
/// the scheduler moves the tasks that can move away from it. None: left as
/// it was.
fn pin() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain old data; pid 0 is the calling thread;
    // the calls only read and write the sets passed, which outlive them.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let cpu = usize::try_from(libc::sched_getcpu()).ok()?;
        if libc::sched_getaffinity(0, size, &mut old) != 0 {
            return None;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        (libc::sched_setaffinity(0, size, &one) == 0).then_some(old)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // SAFETY: as in new(); the values were read from this thread.
        unsafe {
            if let Some((policy, param)) = &self.realtime {
                libc::pthread_setschedparam(libc::pthread_self(), *policy, param);
            }
            if let Some(slack) = self.slack {
                libc::prctl(libc::PR_SET_TIMERSLACK, slack as libc::c_ulong);
            }
            if let Some(cpus) = &self.cpus {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), cpus);
            }
        }
    }
}

/// What a replay did, for the progress line and the summary.
struct Tally {
    sent: u64,
    /// Packets given up on (the kernel kept refusing them).
    failed: u64,
    /// Sends the kernel refused and that were tried again.
    retried: u64,
    /// When the first and the last packet sent were handed to the kernel.
    first: Option<Instant>,
    last: Option<Instant>,
    /// How late packets went; None without a schedule (--topspeed).
    lateness: Option<Lateness>,
}

/// The lateness histogram's size: one bucket per µs up to 10 ms (80 KiB),
/// later ones counted in a last bucket, so memory is bounded.
const LATE_BUCKETS: usize = 10_000;

/// How late packets went after they were due: the worst, and enough for
/// the 99th percentile.
struct Lateness {
    worst: Duration,
    buckets: Vec<u64>,
    count: u64,
}

impl Lateness {
    fn new() -> Self {
        Lateness {
            worst: Duration::ZERO,
            buckets: vec![0; LATE_BUCKETS + 1],
            count: 0,
        }
    }

    fn add(&mut self, late: Duration) {
        self.worst = self.worst.max(late);
        let micros = usize::try_from(late.as_micros()).unwrap_or(usize::MAX);
        self.buckets[micros.min(LATE_BUCKETS)] += 1;
        self.count += 1;
    }

    /// ", worst lateness 120 µs, p99 35 µs".
    fn figures(&self) -> String {
        let mut text = format!(", worst lateness {} µs", self.worst.as_micros());
        // The smallest bucket with at least 99 % of the packets at or below.
        let wanted = self.count - self.count / 100;
        let mut seen = 0;
        if let Some(at) = self.buckets.iter().position(|n| {
            seen += n;
            seen >= wanted
        }) {
            text += &if at == LATE_BUCKETS {
                format!(", p99 over {LATE_BUCKETS} µs")
            } else {
                format!(", p99 {at} µs")
            };
        }
        text
    }
}

impl Tally {
    fn elapsed(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    /// Elapsed, rate, retries, lateness: ", 1.998000 s, 500.0 packets/s, …".
    fn figures(&self) -> String {
        let elapsed = self.elapsed();
        let mut text = format!(", {:.6} s", elapsed.as_secs_f64());
        if self.sent >= 2 && !elapsed.is_zero() {
            let rate = (self.sent - 1) as f64 / elapsed.as_secs_f64();
            text += &format!(", {rate:.1} packets/s");
        }
        if self.retried > 0 {
            text += &format!(", {} retried", self.retried);
        }
        if let Some(lateness) = self.lateness.as_ref().filter(|l| l.count > 0) {
            text += &lateness.figures();
        }
        text
    }
}

/// The progress line of a long replay, on stderr: rewritten in place on a
/// terminal, a line each time otherwise (a log).
struct Progress {
    next: Instant,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            next: Instant::now() + PROGRESS_EVERY,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, tally: &Tally, total: u64) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + PROGRESS_EVERY;
        let line = format!(
            "inject: {} of {total} packets{}",
            tally.sent,
            tally.figures()
        );
        let mut err = std::io::stderr().lock();
        // Progress only: a closed stderr must not stop the replay.
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line on a terminal, so the summary stands alone.
    fn finish(&self) {
        if self.terminal && self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}

/// Everything a replay needs.
struct Replay<'a> {
    file: &'a str,
    name: &'a str,
    source: &'a Source,
    checked: &'a Checked,
    sink: &'a Sink,
    pace: Pace,
    max_gap: Option<Duration>,
    total: u64,
    interrupts: tokio::sync::watch::Receiver<u64>,
}

impl Replay<'_> {
    /// The second pass: sends `total` packets, going round the file as
    /// needed; the error says why it stopped early.
    fn run(&self, tally: &mut Tally) -> anyhow::Result<()> {
        let (file, total) = (self.file, self.total);
        let changed = |e: anyhow::Error| anyhow!("{file} changed while being sent: {e}");
        let mut progress = Progress::new();
        let mut frame = Frame::new();
        let mut round = 0u64;
        // Dropped (priority restored) when the replay ends, however it ends.
        let mut pacer = (self.pace != Pace::Top).then(Pacer::new);
        let result = 'rounds: loop {
            if tally.sent >= total {
                break Ok(());
            }
            let packets = self
                .source
                .open()
                .map_err(|e| anyhow!(crate::util::io_error(&e)))
                .and_then(Packets::open);
            let mut packets = match packets {
                Ok(packets) => packets,
                Err(e) => break Err(changed(e)),
            };
            let mut offsets = Offsets::new(self.max_gap);
            let mut this_round = 0u64;
            while tally.sent < total {
                match packets.next_frame(&mut frame) {
                    Ok(true) => {}
                    // Emptied since the check: going round again would
                    // never end.
                    Ok(false) if this_round == 0 => {
                        break 'rounds Err(changed(anyhow!("no packets left")));
                    }
                    Ok(false) => break,
                    Err(e) => break 'rounds Err(changed(e)),
                }
                if let Err(e) = check_frame(&frame) {
                    break 'rounds Err(changed(e));
                }
                let offset = offsets.next(frame.timestamp_ns);
                let due = self.pace.due(tally.sent, round, offset, self.checked);
                let due = match (tally.first, due) {
                    (Some(first), Some(due)) => Some(first.checked_add(due).unwrap_or(first)),
                    _ => None,
                };
                if let (Some(at), Some(pacer)) = (due, pacer.as_mut()) {
                    if let Err(e) = pacer.wait_until(at, &self.interrupts) {
                        break 'rounds Err(e.into());
                    }
                }
                if self.interrupts.has_changed().unwrap_or(false) {
                    break 'rounds Err(Interrupted.into());
                }
                let now = Instant::now();
                tally.first.get_or_insert(now);
                if let Some(lateness) = &mut tally.lateness {
                    // The first packet sets the clock: never late.
                    lateness
                        .add(due.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)));
                }
                if let Err(e) = self.send(&frame, tally) {
                    break 'rounds Err(e);
                }
                // When it went, as for the first: the span is that of the
                // schedule, not of the send calls.
                tally.last = Some(now);
                tally.sent += 1;
                this_round += 1;
                progress.update(tally, total);
            }
            round += 1;
        };
        progress.finish();
        result
    }

    /// Sends one packet, trying again while the kernel refuses it for a
    /// reason that may pass.
    fn send(&self, frame: &Frame, tally: &mut Tally) -> anyhow::Result<()> {
        let (file, name) = (self.file, self.name);
        let mut refused_since = None;
        loop {
            let e = match self.sink.send(frame) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let errno = e.raw_os_error();
            // A full queue, or a peer that drops the frame (ENOBUFS: e.g. a
            // veth peer with a smaller MTU): try again for a while, then
            // give up.
            let retry = matches!(errno, Some(libc::EAGAIN | libc::ENOBUFS));
            let started = *refused_since.get_or_insert_with(Instant::now);
            if retry && started.elapsed() < REFUSED_FOR {
                if self.interrupts.has_changed().unwrap_or(false) {
                    return Err(Interrupted.into());
                }
                tally.retried += 1;
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            let hint = match errno {
                Some(libc::EIO) if matches!(self.sink, Sink::Tap(_)) => {
                    format!(" (is {name} up?)")
                }
                Some(libc::ENETDOWN) => format!(" (is {name} up?)"),
                Some(libc::EMSGSIZE) => " (larger than the MTU?)".to_string(),
                Some(libc::ENOBUFS) => format!(
                    ", for {} s (larger than the MTU where it is received, \
                     or a queue that stays full?)",
                    REFUSED_FOR.as_secs_f64()
                ),
                Some(libc::EAGAIN) => {
                    format!(
                        ", for {} s (a queue that stays full?)",
                        REFUSED_FOR.as_secs_f64()
                    )
                }
                _ => String::new(),
            };
            tally.failed += 1;
            return Err(anyhow!(
                "stopped after {} of {} packets: packet {} of {file} \
                 ({}, {} bytes): {name}: {}{hint}",
                tally.sent,
                self.total,
                frame.number,
                frame.place,
                frame.data.len(),
                crate::util::io_error(&e)
            ));
        }
    }
}

fn inject(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args = parse(args)?;
    let (file, name) = (&args.file, &args.iface);
    let max_gap = match args.pace {
        Pace::Recorded { .. } => args.max_gap,
        _ => None,
    };
    let (source, checked) = open_and_check(ctx, file, max_gap)?;

    let state = ctx.state();
    let tap = state
        .taps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .map(|fd| fd.try_clone_to_owned())
        .transpose()
        .map_err(|e| anyhow!("{name}: {}", crate::util::io_error(&e)))?;
    let index = iface::ifindex(name).map_err(|_| {
        if tap.is_some() {
            anyhow!("{name}: the TAP was removed (ip link del?); `tap del {name}` forgets it")
        } else {
            anyhow!("{name}: no such interface")
        }
    })?;
    let arphrd = ctx.block_on(async {
        let nl = Netlink::open()?;
        anyhow::Ok(nl.link(index).await?.link_type)
    })??;
    for &linktype in &checked.linktypes {
        check_fits(name, arphrd, linktype, file).map_err(|e| anyhow!(e))?;
    }
    let sink = match tap {
        Some(fd) => Sink::Tap(fd),
        None => Sink::Packet {
            sender: PacketSender::open()
                .map_err(|e| anyhow!("AF_PACKET socket: {}", crate::util::io_error(&e)))?,
            ifindex: index,
        },
    };

    let whole = checked.packets.saturating_mul(args.loops.unwrap_or(1));
    let total = match (args.count, args.loops) {
        _ if checked.packets == 0 => 0,
        (Some(count), Some(_)) => count.min(whole),
        (Some(count), None) => count,
        (None, _) => whole,
    };
    let replay = Replay {
        file,
        name,
        source: &source,
        checked: &checked,
        sink: &sink,
        pace: args.pace,
        max_gap,
        total,
        interrupts: ctx.interrupts(),
    };
    let mut tally = Tally {
        sent: 0,
        failed: 0,
        retried: 0,
        first: None,
        last: None,
        lateness: (args.pace != Pace::Top).then(Lateness::new),
    };
    // On the shell thread, not the runtime: the waits need µs, which
    // tokio's ms timer cannot give.
    let result = replay.run(&mut tally);
    let skipped = match (max_gap, checked.skipped_gaps) {
        (Some(gap), n) if n > 0 => format!(
            ", {n} pause{} of {} s or more not waited",
            if n == 1 { "" } else { "s" },
            gap.as_secs_f64()
        ),
        _ => String::new(),
    };
    writeln!(
        ctx.out,
        "inject: {} packets from {file} to {name}, {} failed{}{skipped}",
        tally.sent,
        tally.failed,
        tally.figures()
    )?;
    // The original's line, alone and last: scripts grep -Fx for it.
    writeln!(ctx.out, "Injection complete: {} packets sent", tally.sent)?;
    result?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn arguments_in_any_order_with_either_option_form() {
        let a = parse(&words("--count=3 f.pcap tap0 --interval 0.5")).unwrap();
        assert_eq!((a.file.as_str(), a.iface.as_str()), ("f.pcap", "tap0"));
        assert_eq!(a.count, Some(3));
        assert_eq!(a.pace, Pace::Every(Duration::from_millis(500)));
        let a = parse(&words("-- --odd-file tap0")).unwrap();
        assert_eq!((a.file.as_str(), a.count), ("--odd-file", None));
        for (line, message) in [
            ("", "missing FILE and IF"),
            ("f", "missing IF"),
            ("f i j", "unexpected argument 'j'"),
            ("f i --count", "--count needs a value"),
            ("f i --count -1", "--count: not a number: -1"),
            ("f i --count 0", "--count must be at least 1"),
            ("f i --interval x", "not a number of seconds: x"),
            ("f i --fast", "unknown option --fast"),
            ("f i --loop 0", "--loop must be at least 1"),
            ("f i --loop x", "--loop: not a number: x"),
            ("f i --speed 0", "--speed: not a positive number: 0"),
            ("f i --speed -2", "--speed: not a positive number: -2"),
            ("f i --pps inf", "--pps: not a positive number: inf"),
            (
                "f i --speed 2 --pps 5",
                "--speed and --pps both set the pace: give one of them",
            ),
            (
                "f i --interval 1 --topspeed",
                "--topspeed and --interval both set the pace: give one of them",
            ),
        ] {
            let e = parse(&words(line)).err().unwrap();
            assert!(e.is::<crate::cmd::UsageError>(), "{line}");
            assert_eq!(e.to_string(), message, "{line}");
        }
    }

    #[test]
    fn the_pace_is_the_files_own_unless_an_option_sets_it() {
        let pace = |line: &str| parse(&words(line)).unwrap().pace;
        assert_eq!(pace("f i"), Pace::Recorded { speed: 1.0 });
        assert_eq!(pace("f i --speed 2.5"), Pace::Recorded { speed: 2.5 });
        assert_eq!(pace("f i --topspeed"), Pace::Top);
        assert_eq!(pace("f i --interval 0"), Pace::Top);
        assert_eq!(pace("f i --pps 4"), Pace::Every(Duration::from_millis(250)));
        let a = parse(&words("f i --loop 3 --count 7")).unwrap();
        assert_eq!((a.loops, a.count), (Some(3), Some(7)));
    }

    #[test]
    fn the_schedule_is_absolute_never_goes_back_and_rounds_keep_the_pace() {
        // 0, 10 ms, 5 ms (back in time: at once after its predecessor), 30 ms.
        let mut offsets = Offsets::new(Some(MAX_GAP));
        let got: Vec<u64> = [1_000, 10_001_000, 5_001_000, 30_001_000]
            .into_iter()
            .map(|ts| offsets.next(ts))
            .collect();
        assert_eq!(got, [0, 10_000_000, 10_000_000, 30_000_000]);
        // A pause of 10 s or more is not waited, as the original did: a
        // fixture that starts at 0 and goes on with real timestamps.
        let mut offsets = Offsets::new(Some(MAX_GAP));
        let s = 1_000_000_000;
        let got: Vec<u64> = [
            0,
            1_761_000_000 * s,
            1_761_000_000 * s + s / 2,
            1_761_000_011 * s,
        ]
        .into_iter()
        .map(|ts| offsets.next(ts))
        .collect();
        assert_eq!(got, [0, 0, s / 2, s / 2]);
        assert_eq!(offsets.skipped, 2);
        let mut offsets = Offsets::new(None);
        assert_eq!((offsets.next(0), offsets.next(20 * s)), (0, 20 * s));
        let checked = Checked {
            packets: 4,
            linktypes: vec![1],
            span_ns: 30_000_000,
            skipped_gaps: 0,
        };
        let ms = |ms: u64| Some(Duration::from_millis(ms));
        let recorded = Pace::Recorded { speed: 1.0 };
        assert_eq!(recorded.due(3, 0, 30_000_000, &checked), ms(30));
        // A round lasts the span plus one average gap (10 ms).
        assert_eq!(recorded.due(4, 1, 0, &checked), ms(40));
        assert_eq!(recorded.due(11, 2, 30_000_000, &checked), ms(110));
        let twice = Pace::Recorded { speed: 2.0 };
        assert_eq!(twice.due(3, 0, 30_000_000, &checked), ms(15));
        // A fixed gap counts packets over all rounds.
        assert_eq!(
            Pace::Every(Duration::from_millis(2)).due(7, 1, 0, &checked),
            ms(14)
        );
        assert_eq!(Pace::Top.due(7, 1, 0, &checked), None);
    }

    #[test]
    fn the_format_comes_from_the_content() {
        let jsonl = b"\n\n{\"timestamp_us\":7,\"data\":\"ffffffffffff020000000002 88b5 00\"}\n";
        let jsonl: Vec<u8> = jsonl.iter().copied().filter(|b| *b != b' ').collect();
        let mut packets = Packets::open(&jsonl[..]).unwrap();
        assert!(matches!(packets, Packets::Jsonl { .. }));
        let mut frame = Frame::new();
        assert!(packets.next_frame(&mut frame).unwrap());
        assert_eq!((frame.number, frame.place), (1, Place::Line(3)));
        assert_eq!(frame.timestamp_ns, 7000);
        assert_eq!(frame.data.len(), 15);
        assert!(!packets.next_frame(&mut frame).unwrap());
        // Not JSON, and no magic: the pcap reader's own error.
        let e = Packets::open(&b"  hello"[..]).err().unwrap();
        assert!(e.to_string().contains("not a pcap or pcapng file"), "{e}");
    }
}
