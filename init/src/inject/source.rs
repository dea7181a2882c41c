//! The input of a replay: a pcap, pcapng or JSONL file read twice,
//! streaming (the packet crate's `TwoPass`), once to check every packet and
//! once (a round) to send. The format comes from the content, never from
//! the name.

use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use crate::filter::FileFilter;
use crate::packet::files::{sniff, Format, TwoPass};
use crate::packet::jsonl;
use crate::packet::linktype::check_packet;
use crate::packet::pcap::PacketReader;
use crate::util::Interrupted;

/// How far into the input the format is looked for (blank lines before a
/// JSONL file's first record).
const SNIFF_LIMIT: usize = 64 << 10;

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
    /// Picks the format from the content (`files::sniff`): JSONL, else
    /// pcap or pcapng by their magic numbers (pcapng's is white space, so
    /// a magic is looked for first).
    pub fn open(mut input: R) -> anyhow::Result<Self> {
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        // Enough to tell: a magic number, or past JSONL's leading blank lines.
        while sniff(&head).is_none()
            && !head.iter().any(|b| !b.is_ascii_whitespace())
            && head.len() < SNIFF_LIMIT
        {
            match input.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(anyhow!(crate::util::io_error(&e))),
            }
        }
        let jsonl = sniff(&head) == Some(Format::Jsonl);
        let input = std::io::Cursor::new(head).chain(input);
        Ok(if jsonl {
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
    mut filter: Option<FileFilter>,
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Checked> {
    let mut packets = Packets::open(input)?;
    let mut read = 0u64;
    let mut checked = Checked {
        packets: 0,
        linktypes: Vec::new(),
        span_ns: 0,
        skipped_gaps: 0,
    };
    let mut offsets = Offsets::new(max_gap);
    let mut frame = Frame::new();
    while packets.next_frame(&mut frame)? {
        read += 1;
        if read.is_multiple_of(1024) && interrupts.has_changed().unwrap_or(false) {
            return Err(Interrupted.into());
        }
        if !selected(&mut filter, &frame)? {
            continue;
        }
        check_frame(&frame)?;
        if !checked.linktypes.contains(&frame.linktype) {
            checked.linktypes.push(frame.linktype);
        }
        checked.span_ns = offsets.next(frame.timestamp_ns);
        checked.skipped_gaps = offsets.skipped;
        checked.packets += 1;
    }
    Ok(checked)
}

/// Whether `filter` (`--filter`) selects the frame; every frame without one.
pub fn selected(filter: &mut Option<FileFilter>, frame: &Frame) -> anyhow::Result<bool> {
    match filter {
        None => Ok(true),
        Some(f) => f
            .matches(frame.linktype, &frame.data)
            .map_err(|e| anyhow!("packet {} ({}): --filter: {e}", frame.number, frame.place)),
    }
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
    filter: Option<FileFilter>,
    interrupts: &tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<(TwoPass, Checked)> {
    let (checked, source) = TwoPass::first_pass(opened, "copy it to a file first", |input| {
        check_all(input, max_gap, filter, interrupts)
    });
    let checked = checked.map_err(|e| {
        if e.is::<Interrupted>() {
            e
        } else {
            anyhow!("{}: {e}", path.display())
        }
    })?;
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
