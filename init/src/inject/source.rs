//! The input of a replay: a pcap, pcapng or JSONL file read twice,
//! streaming, once to check every packet and once to send. A regular file
//! is simply read again; anything else (a FIFO, a device, stdin) cannot
//! be, so the first pass keeps a copy of what it reads, up to
//! `UNSEEKABLE_LIMIT` bytes. The format comes from the content, never from
//! the name.

use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use crate::packet::jsonl;
use crate::packet::linktype::check_packet;
use crate::packet::pcap::PacketReader;
use crate::util::Interrupted;

/// How much of an input that cannot be read twice is kept in memory.
const UNSEEKABLE_LIMIT: usize = 16 << 20;
/// How far into the input the format is looked for (blank lines before a
/// JSONL file's first record).
const SNIFF_LIMIT: usize = 64 << 10;

/// Where the file's bytes come from, for each pass.
pub enum Source {
    /// A regular file: opened again for each pass.
    File(std::path::PathBuf),
    /// What the first pass read of anything else.
    Memory(Vec<u8>),
}

impl Source {
    pub fn open(&self) -> std::io::Result<Box<dyn Read + '_>> {
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
pub enum Place {
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
pub struct Frame {
    /// 1 for the file's first packet.
    pub number: u64,
    pub place: Place,
    pub linktype: u32,
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new() -> Self {
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
pub type Sniffed<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The packets of a file in one of the formats inject reads.
pub enum Packets<R: Read> {
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
    pub fn open(mut input: R) -> anyhow::Result<Self> {
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
    pub fn next_frame(&mut self, frame: &mut Frame) -> anyhow::Result<bool> {
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
pub struct Checked {
    pub packets: u64,
    pub linktypes: Vec<u32>,
    /// From the first packet's time to the last one's, in ns, but the
    /// pauses not waited.
    pub span_ns: u64,
    /// Pauses of `--max-gap` or more, not waited.
    pub skipped_gaps: u64,
}

/// When a packet is due, in ns after the first packet of its round.
/// Timestamps that go back in time are sent at once after their
/// predecessor: the schedule never goes backwards. A pause of `max_gap`
/// or more is not waited.
pub struct Offsets {
    /// The latest timestamp seen.
    latest_ns: Option<u64>,
    last: u64,
    max_gap_ns: Option<u64>,
    pub skipped: u64,
}

impl Offsets {
    pub fn new(max_gap: Option<Duration>) -> Self {
        Offsets {
            latest_ns: None,
            last: 0,
            max_gap_ns: max_gap.map(|g| g.as_nanos().try_into().unwrap_or(u64::MAX)),
            skipped: 0,
        }
    }

    pub fn next(&mut self, timestamp_ns: u64) -> u64 {
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

pub fn check_frame(frame: &Frame) -> anyhow::Result<()> {
    check_packet(frame.linktype, &frame.data)
        .map_err(|e| anyhow!("packet {} ({}): {e}", frame.number, frame.place))
}

/// Checks all of an opened input: blocking (a FIFO's reads block), so the
/// caller runs it off the shell thread; it stops at the next Ctrl-C. What
/// cannot be read again (not a regular file) is kept, up to a limit.
pub fn check_input(
    opened: std::fs::File,
    path: &Path,
    max_gap: Option<Duration>,
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<(Source, Checked)> {
    let regular = opened.metadata().is_ok_and(|m| m.is_file());
    let (checked, copy) = if regular {
        (check_all(opened, max_gap, interrupts), None)
    } else {
        let mut recording = Recording {
            inner: opened,
            copy: Vec::new(),
        };
        let checked = check_all(&mut recording, max_gap, interrupts);
        (checked, Some(recording.copy))
    };
    let checked = checked.map_err(|e| {
        if e.is::<Interrupted>() {
            e
        } else {
            anyhow!("{}: {e}", path.display())
        }
    })?;
    let source = match copy {
        Some(bytes) => Source::Memory(bytes),
        None => Source::File(path.to_path_buf()),
    };
    Ok((source, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

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
