//! The second pass: packets sent at their due time into a TAP's fd or an
//! AF_PACKET socket, refused sends retried a while, the figures of what
//! was done.

use std::io::{IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::pacer::Pacer;
use super::source::{check_frame, selected, Checked, Frame, Offsets, Packets};
use super::Pace;
use crate::filter::FileFilter;
use crate::net::packet_socket::PacketSender;
use crate::packet::files::TwoPass;
use crate::packet::linktype::protocol_of;
use crate::util::Interrupted;

/// How long one packet is retried while the kernel refuses it.
const REFUSED_FOR: Duration = Duration::from_secs(1);
/// The pause between two tries of a refused packet.
const RETRY_PAUSE: Duration = Duration::from_millis(1);
/// How often a long replay says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Where the packets go.
pub enum Sink {
    /// The TAP's own fd: a write is a frame received on the interface.
    Tap(OwnedFd),
    /// An AF_PACKET socket: a frame sent on the interface.
    Packet { sender: PacketSender, ifindex: u32 },
}

impl Sink {
    pub fn send(&self, frame: &Frame) -> std::io::Result<usize> {
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
    pub fn due(
        self,
        index: u64,
        round: u64,
        offset_ns: u64,
        checked: &Checked,
    ) -> Option<Duration> {
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

/// What a replay did, for the progress line and the summary.
pub struct Tally {
    pub sent: u64,
    /// Packets given up on (the kernel kept refusing them).
    pub failed: u64,
    /// Sends the kernel refused and that were tried again.
    pub retried: u64,
    /// When the first and the last packet sent were handed to the kernel.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// How late packets went; None without a schedule (--topspeed).
    pub lateness: Option<Lateness>,
}

/// The lateness histogram's size: one bucket per µs up to 10 ms (80 KiB),
/// later ones counted in a last bucket, so memory is bounded.
const LATE_BUCKETS: usize = 10_000;

/// How late packets went after they were due: the worst, and enough for
/// the 99th percentile.
pub struct Lateness {
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
    pub fn figures(&self) -> String {
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
    /// Nothing sent yet; lateness is measured when there is a schedule.
    pub fn new(pace: Pace) -> Self {
        Tally {
            sent: 0,
            failed: 0,
            retried: 0,
            first: None,
            last: None,
            lateness: (pace != Pace::Top).then(Lateness::new),
        }
    }

    fn elapsed(&self) -> Duration {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        }
    }

    /// Elapsed, rate, retries, lateness: ", 1.998000 s, 500.0 packets/s, …".
    pub fn figures(&self) -> String {
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
pub struct Replay<'a> {
    /// `--filter`: only the frames it selects are sent.
    pub filter: Option<FileFilter>,
    pub file: &'a str,
    pub name: &'a str,
    pub source: &'a TwoPass,
    pub checked: &'a Checked,
    pub sink: &'a Sink,
    pub pace: Pace,
    pub max_gap: Option<Duration>,
    pub total: u64,
    pub interrupts: tokio::sync::watch::Receiver<u64>,
}

impl Replay<'_> {
    /// The second pass: sends `total` packets, going round the file as
    /// needed; the error says why it stopped early.
    pub fn run(&self, tally: &mut Tally) -> anyhow::Result<()> {
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
                .again()
                .map_err(|e| anyhow!(crate::util::io_error(&e)))
                .and_then(Packets::open);
            let mut packets = match packets {
                Ok(packets) => packets,
                Err(e) => break Err(changed(e)),
            };
            let mut offsets = Offsets::new(self.max_gap);
            let mut filter = self.filter.clone();
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
                match selected(&mut filter, &frame) {
                    Ok(true) => {}
                    Ok(false) => continue,
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
