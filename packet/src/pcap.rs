//! A streaming reader of pcap and pcapng files: one record at a time, with
//! its link type, timestamp in ns, original length, data and file offset.
//!
//! pcap-file parses the headers and blocks; this module feeds it from any
//! `Read` in a buffer of bounded size (pcap-file's own readers allocate
//! 8 MB up front, give no offsets and grow nothing on demand), so a record
//! that announces more than `MAX_RECORD_DATA` bytes is an error naming it,
//! and `/dev/zero` or a huge file never becomes a huge allocation.
//!
//! Timestamps: pcap-file 2.0's enhanced packet block reads the 64-bit
//! timestamp as nanoseconds whatever the interface's `if_tsresol` says, so
//! the ticks are rescaled here with each interface's resolution (default
//! µs, as the pcapng spec says) and `if_tsoffset`.

use std::io::{self, Read};

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, PcapError, TsResolution};

/// The largest packet data a record may hold (tcpdump's largest snaplen).
pub const MAX_RECORD_DATA: usize = 256 * 1024;
/// The largest pcapng block: a packet of `MAX_RECORD_DATA` plus room for
/// its header and options (comments, hashes).
pub const MAX_BLOCK: usize = MAX_RECORD_DATA + 64 * 1024;

const PCAP_HEADER: usize = 24;
const PCAP_RECORD_HEADER: usize = 16;
const PCAPNG_SHB: u32 = 0x0a0d0d0a;
const READ_CHUNK: usize = 64 * 1024;

/// Which way a packet went, as pcapng's `epb_flags` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// The direction bits (0-1) of `epb_flags`.
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 1,
            Direction::Outbound => 2,
        }
    }

    fn from_epb_flags(flags: u32) -> Option<Direction> {
        match flags & 3 {
            1 => Some(Direction::Inbound),
            2 => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// One packet of a file; `data` borrows the reader's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// 1 for the file's first packet.
    pub number: u64,
    /// Where the packet's record (pcap) or block (pcapng) starts.
    pub offset: u64,
    /// LINKTYPE_* of the packet (pcapng: of its interface).
    pub linktype: u32,
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The packet's length on the wire (`data` may be shorter: snaplen).
    pub original_len: u32,
    /// pcapng's `epb_flags` direction, if given.
    pub direction: Option<Direction>,
    /// pcapng interface id (0 in classic pcap).
    pub interface: u32,
    /// pcapng: the interface's `if_name`, if its description has one.
    pub ifname: Option<&'a str>,
    /// pcapng: the packet's `opt_comment`s, joined by newlines.
    pub comment: Option<String>,
    pub data: &'a [u8],
}

/// What is wrong with a file, and where: one line for users.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a pcap or pcapng file (starts with {0})")]
    NotACapture(String),
    #[error("truncated pcap file header ({0} of 24 bytes)")]
    TruncatedPcapHeader(usize),
    #[error("bad pcap file header: {0}")]
    BadPcapHeader(PcapError),
    #[error("record {number} at byte {offset}: {what}")]
    Record {
        number: u64,
        offset: u64,
        what: String,
    },
    #[error("pcapng block at byte {offset}: {what}")]
    Block { offset: u64, what: String },
    #[error("read error at byte {offset}: {}", crate::io_error(.source))]
    Io { offset: u64, source: io::Error },
}

/// Per-interface facts of a pcapng file that its packets need.
#[derive(Clone, Debug)]
struct Interface {
    linktype: u32,
    /// `if_name`.
    name: Option<String>,
    /// `if_tsresol`: 10^-n s, or 2^-n s with the top bit set.
    tsresol: u8,
    /// `if_tsoffset`, in seconds.
    tsoffset: i64,
}

enum Format {
    Pcap {
        linktype: u32,
        nanos: bool,
        endianness: Endianness,
    },
    PcapNg {
        parser: PcapNgParser,
        interfaces: Vec<Interface>,
    },
}

/// Buffered input with the file offset of what is not consumed yet.
struct Input<R: Read> {
    input: R,
    buf: Vec<u8>,
    /// `buf[start..end]` is read but not consumed.
    start: usize,
    end: usize,
    /// The file offset of `buf[start]`.
    offset: u64,
}

impl<R: Read> Input<R> {
    /// Reads until `want` bytes are buffered or the input ends; returns how
    /// many are buffered. Callers bound `want` (at most `MAX_BLOCK`).
    fn fill(&mut self, want: usize) -> Result<usize, FileError> {
        if self.end - self.start >= want {
            return Ok(self.end - self.start);
        }
        // Move what is left to the front, then grow to what is wanted.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let size = want.max(READ_CHUNK);
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
        while self.end < want {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(FileError::Io {
                        offset: self.offset + self.end as u64,
                        source,
                    })
                }
            }
        }
        Ok(self.end)
    }

    /// The next `len` bytes, all read; `short(have)` makes the error when
    /// the input ends first.
    fn whole(
        &mut self,
        len: usize,
        short: impl FnOnce(usize) -> FileError,
    ) -> Result<&[u8], FileError> {
        let have = self.fill(len)?;
        if have < len {
            return Err(short(have));
        }
        Ok(&self.buf[self.start..self.start + len])
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The total length of the pcapng block starting here, checked against
    /// `MAX_BLOCK`. `section` is the byte order of the current section
    /// (None before the first): a section header has that of its magic.
    fn block_length(&mut self, section: Option<Endianness>) -> Result<usize, FileError> {
        let offset = self.offset;
        let have = self.fill(12)?;
        if have < 12 {
            return Err(FileError::Block {
                offset,
                what: format!("truncated ({have} bytes left)"),
            });
        }
        let head = &self.buf[self.start..self.start + 12];
        let endianness = match section {
            Some(e) if read_u32(head, e) != PCAPNG_SHB => e,
            _ => match read_u32(&head[8..], Endianness::Big) {
                0x1a2b3c4d => Endianness::Big,
                0x4d3c2b1a => Endianness::Little,
                _ => {
                    return Err(FileError::Block {
                        offset,
                        what: "section header with a bad byte-order magic".into(),
                    })
                }
            },
        };
        let len = read_u32(&head[4..], endianness) as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(FileError::Block {
                offset,
                what: format!("bad block length {len}"),
            });
        }
        if len > MAX_BLOCK {
            return Err(FileError::Block {
                offset,
                what: format!("a block of {len} bytes, more than the limit of {MAX_BLOCK}"),
            });
        }
        Ok(len)
    }
}

/// A packet found in the buffer: the record without its data, and where
/// the data is (from the buffer's start) and how much to consume.
struct Found {
    meta: Record<'static>,
    data_at: usize,
    data_len: usize,
    consumed: usize,
}

/// Reads the records of a pcap or pcapng file one by one; memory stays
/// below `MAX_BLOCK` plus one read chunk whatever the input.
pub struct PacketReader<R: Read> {
    input: Input<R>,
    format: Format,
    packets: u64,
}

impl<R: Read> PacketReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(input: R) -> Result<Self, FileError> {
        let mut input = Input {
            input,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
        };
        let have = input.fill(4)?;
        let head = &input.buf[..have.min(4)];
        let pcap_magic = [0xa1b2c3d4u32, 0xa1b23c4d]
            .iter()
            .any(|m| head == m.to_be_bytes() || head == m.to_le_bytes());
        let format = if head == PCAPNG_SHB.to_be_bytes() {
            let len = input.block_length(None)?;
            let block = input.whole(len, |rest| FileError::Block {
                offset: 0,
                what: format!("truncated ({rest} bytes left)"),
            })?;
            let (_, parser) = PcapNgParser::new(block).map_err(|e| block_error(0, e))?;
            input.consume(len);
            Format::PcapNg {
                parser,
                interfaces: Vec::new(),
            }
        } else if pcap_magic {
            let header = input.whole(PCAP_HEADER, FileError::TruncatedPcapHeader)?;
            let (_, parser) = PcapParser::new(header).map_err(FileError::BadPcapHeader)?;
            let h = parser.header();
            input.consume(PCAP_HEADER);
            Format::Pcap {
                linktype: u32::from(h.datalink),
                nanos: h.ts_resolution == TsResolution::NanoSecond,
                endianness: h.endianness,
            }
        } else {
            let shown: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
            return Err(FileError::NotACapture(if shown.is_empty() {
                "nothing: it is empty".to_string()
            } else {
                shown.join(" ")
            }));
        };
        Ok(PacketReader {
            input,
            format,
            packets: 0,
        })
    }

    /// The next packet, or None at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, FileError> {
        // The loop only finds the packet; the record borrowing the buffer
        // is made after it.
        let found = loop {
            if self.input.fill(1)? == 0 {
                return Ok(None);
            }
            let found = match &mut self.format {
                Format::Pcap {
                    linktype,
                    nanos,
                    endianness,
                    ..
                } => Some(pcap_record(
                    &mut self.input,
                    self.packets + 1,
                    *linktype,
                    *nanos,
                    *endianness,
                )?),
                Format::PcapNg { parser, interfaces } => {
                    pcapng_block(&mut self.input, self.packets + 1, parser, interfaces)?
                }
            };
            if let Some(found) = found {
                break found;
            }
        };
        self.packets += 1;
        let at = self.input.start + found.data_at;
        // Consumed now, but the bytes stay until the next call refills.
        self.input.consume(found.consumed);
        let ifname = match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces
                .get(found.meta.interface as usize)
                .and_then(|i| i.name.as_deref()),
            Format::Pcap { .. } => None,
        };
        Ok(Some(Record {
            data: &self.input.buf[at..at + found.data_len],
            ifname,
            ..found.meta
        }))
    }
}

fn pcap_record<R: Read>(
    input: &mut Input<R>,
    number: u64,
    linktype: u32,
    nanos: bool,
    endianness: Endianness,
) -> Result<Found, FileError> {
    let offset = input.offset;
    let record_error = |what: String| FileError::Record {
        number,
        offset,
        what,
    };
    let have = input.fill(PCAP_RECORD_HEADER)?;
    if have < PCAP_RECORD_HEADER {
        return Err(record_error(format!(
            "truncated header ({have} of 16 bytes)"
        )));
    }
    let header = &input.buf[input.start..input.start + PCAP_RECORD_HEADER];
    let field = |at: usize| read_u32(&header[at..], endianness);
    let (ts_sec, ts_frac, incl_len, orig_len) = (field(0), field(4), field(8), field(12));
    let incl = incl_len as usize;
    if incl > MAX_RECORD_DATA {
        return Err(record_error(format!(
            "{incl} bytes of data announced, more than the limit of {MAX_RECORD_DATA}"
        )));
    }
    let have = input.fill(PCAP_RECORD_HEADER + incl)?;
    if have < PCAP_RECORD_HEADER + incl {
        return Err(record_error(format!(
            "truncated ({incl} bytes of data announced, {} left)",
            have - PCAP_RECORD_HEADER
        )));
    }
    let frac_ns = u64::from(ts_frac) * if nanos { 1 } else { 1000 };
    Ok(Found {
        meta: Record {
            number,
            offset,
            linktype,
            timestamp_ns: u64::from(ts_sec) * 1_000_000_000 + frac_ns,
            original_len: orig_len,
            direction: None,
            interface: 0,
            ifname: None,
            comment: None,
            data: &[],
        },
        data_at: PCAP_RECORD_HEADER,
        data_len: incl,
        consumed: PCAP_RECORD_HEADER + incl,
    })
}

/// Reads one pcapng block; a packet is Some, other blocks are taken in
/// (interfaces, sections) and give None.
fn pcapng_block<R: Read>(
    input: &mut Input<R>,
    number: u64,
    parser: &mut PcapNgParser,
    interfaces: &mut Vec<Interface>,
) -> Result<Option<Found>, FileError> {
    let offset = input.offset;
    let len = input.block_length(Some(parser.section().endianness))?;
    let bytes = input.whole(len, |rest| FileError::Block {
        offset,
        what: format!("truncated ({rest} bytes left)"),
    })?;
    let (_, block) = parser
        .next_block(bytes)
        .map_err(|e| block_error(offset, e))?;
    let data_at = |data: &[u8]| data.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut comment: Option<String> = None;
    let (interface, ticks, original_len, direction, at, data_len) = match block {
        Block::EnhancedPacket(b) => {
            let mut direction = None;
            for option in &b.options {
                match option {
                    EnhancedPacketOption::Flags(f) => direction = Direction::from_epb_flags(*f),
                    EnhancedPacketOption::Comment(c) => match &mut comment {
                        Some(all) => {
                            all.push('\n');
                            all.push_str(c);
                        }
                        None => comment = Some(c.to_string()),
                    },
                    _ => {}
                }
            }
            // pcap-file made the raw ticks a Duration of that many ns.
            let ticks = b.timestamp.as_nanos() as u64;
            let (at, n) = (data_at(&b.data), b.data.len());
            (b.interface_id, ticks, b.original_len, direction, at, n)
        }
        Block::Packet(b) => {
            let (at, n) = (data_at(&b.data), b.data.len());
            let id = u32::from(b.interface_id);
            (id, b.timestamp, b.original_len, None, at, n)
        }
        // Simple packet blocks belong to the first interface and have no
        // timestamp; their data runs to the padding, the real length is
        // the original length.
        Block::SimplePacket(b) => {
            let n = b.data.len().min(b.original_len as usize);
            (0, 0, b.original_len, None, data_at(&b.data), n)
        }
        other => {
            take_in(other, interfaces);
            input.consume(len);
            return Ok(None);
        }
    };
    let Some(idb) = interfaces.get(interface as usize) else {
        return Err(FileError::Block {
            offset,
            what: format!("a packet of interface {interface}, which has no description block"),
        });
    };
    Ok(Some(Found {
        meta: Record {
            number,
            offset,
            linktype: idb.linktype,
            timestamp_ns: ticks_to_ns(ticks, idb.tsresol, idb.tsoffset),
            original_len,
            direction,
            interface,
            ifname: None,
            comment,
            data: &[],
        },
        data_at: at,
        data_len,
        consumed: len,
    }))
}

/// Keeps what later packets need of a block that is not a packet.
fn take_in(block: Block<'_>, interfaces: &mut Vec<Interface>) {
    match block {
        // A new section: its interfaces start again from 0.
        Block::SectionHeader(_) => interfaces.clear(),
        Block::InterfaceDescription(idb) => {
            let mut interface = Interface {
                linktype: u32::from(idb.linktype),
                name: None,
                tsresol: 6,
                tsoffset: 0,
            };
            for option in &idb.options {
                match option {
                    InterfaceDescriptionOption::IfTsResol(r) => interface.tsresol = *r,
                    InterfaceDescriptionOption::IfTsOffset(s) => interface.tsoffset = *s as i64,
                    InterfaceDescriptionOption::IfName(n) => interface.name = Some(n.to_string()),
                    _ => {}
                }
            }
            interfaces.push(interface);
        }
        _ => {}
    }
}

fn read_u32(bytes: &[u8], endianness: Endianness) -> u32 {
    let b: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    }
}

fn block_error(offset: u64, e: PcapError) -> FileError {
    FileError::Block {
        offset,
        what: match e {
            // The whole block was there: a length inside it is wrong.
            PcapError::IncompleteBuffer => "a length inside the block runs past its end".into(),
            e => e.to_string(),
        },
    }
}

/// Timestamp ticks of resolution `tsresol` (`if_tsresol`) plus `offset_s`
/// seconds, as ns since the epoch (saturating: bad files give odd times,
/// never a panic).
fn ticks_to_ns(ticks: u64, tsresol: u8, offset_s: i64) -> u64 {
    let ticks = u128::from(ticks);
    let ns = if tsresol & 0x80 == 0 {
        let exp = u32::from(tsresol);
        if exp <= 9 {
            ticks * 10u128.pow(9 - exp)
        } else {
            10u128.checked_pow(exp - 9).map_or(0, |d| ticks / d)
        }
    } else {
        (ticks * 1_000_000_000) >> (tsresol & 0x7f)
    };
    let ns = ns as i128 + i128::from(offset_s) * 1_000_000_000;
    ns.clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use pcap_file::pcap::{PcapHeader, PcapPacket};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::DataLink;

    use super::*;
    use crate::linktype::{check_packet, protocol_of};
    use crate::pcap_writer::{PcapNgWriter, PcapWriter};

    /// (link type, data, offset) of every packet, each checked as inject
    /// checks it, or the first error as inject shows it.
    fn parse_capture(file: &[u8]) -> Result<Vec<(u32, Vec<u8>, u64)>, String> {
        let mut reader = PacketReader::new(file).map_err(|e| e.to_string())?;
        let mut packets = Vec::new();
        while let Some(r) = reader.next_record().map_err(|e| e.to_string())? {
            check_packet(r.linktype, r.data)
                .map_err(|e| format!("packet {} (byte {}): {e}", r.number, r.offset))?;
            packets.push((r.linktype, r.data.to_vec(), r.offset));
        }
        Ok(packets)
    }

    /// A classic pcap written by pcap-file itself, in any byte order.
    fn pcap(nanos: bool, big_endian: bool, linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let header = PcapHeader {
            datalink: DataLink::from(linktype),
            ts_resolution: if nanos {
                TsResolution::NanoSecond
            } else {
                TsResolution::MicroSecond
            },
            endianness: if big_endian {
                Endianness::Big
            } else {
                Endianness::Little
            },
            snaplen: MAX_RECORD_DATA as u32,
            ..PcapHeader::default()
        };
        let mut w = pcap_file::pcap::PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::new(1_700_000_000 + i as u64, 5_000);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
        w.into_writer()
    }

    /// A pcapng written by our writer.
    fn pcapng(linktype: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let id = w.add_interface("test0", linktype).unwrap();
        for f in frames {
            w.write(id, 0, f.len() as u32, f, None, None).unwrap();
        }
        w.finish().unwrap()
    }

    const ETH: &[u8] = &[
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, 0, 20,
    ];
    const IP4: &[u8] = &[
        0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];

    #[test]
    fn reads_both_magics_in_both_byte_orders() {
        for nanos in [false, true] {
            for big in [false, true] {
                let file = pcap(nanos, big, 1, &[ETH, &ETH[..14]]);
                let packets = parse_capture(&file).unwrap();
                assert_eq!(packets.len(), 2, "{nanos} {big}");
                assert_eq!(packets[0].1, ETH);
                assert_eq!(packets[0].2, 24);
                assert_eq!(packets[1].2, 24 + 16 + ETH.len() as u64);
                assert_eq!(protocol_of(packets[1].0, &packets[1].1), 0x0800);
                let mut reader = PacketReader::new(&file[..]).unwrap();
                let first = reader.next_record().unwrap().unwrap();
                assert_eq!(
                    first.timestamp_ns, 1_700_000_000_000_005_000,
                    "{nanos} {big}"
                );
            }
        }
    }

    #[test]
    fn reads_pcapng_and_raw_ip() {
        let ng = pcapng(101, &[IP4, IP4]);
        let packets = parse_capture(&ng).unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[1].1, IP4);
        assert_eq!(packets[1].0, 101);
        assert_eq!(protocol_of(packets[1].0, &packets[1].1), 0x0800);
        let file = pcap(false, false, 228, &[IP4]);
        let v4 = parse_capture(&file).unwrap();
        assert_eq!(v4[0].0, 228);
    }

    #[test]
    fn the_original_snaplen_zero_is_accepted() {
        let mut file = pcap(false, false, 1, &[ETH]);
        file[16..20].copy_from_slice(&[0; 4]);
        assert_eq!(parse_capture(&file).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_are_reported_with_the_offset() {
        assert!(parse_capture(b"")
            .unwrap_err()
            .contains("not a pcap or pcapng file"));
        assert!(parse_capture(b"hello world, not a capture")
            .unwrap_err()
            .contains("starts with 68 65 6c 6c"));
        let file = pcap(false, false, 1, &[ETH, ETH]);
        let err = parse_capture(&file[..file.len() - 3]).unwrap_err();
        assert!(err.contains("record 2 at byte 58: truncated"), "{err}");
        let err = parse_capture(&file[..24 + 16 + ETH.len() + 5]).unwrap_err();
        assert!(
            err.contains("record 2 at byte 58: truncated header"),
            "{err}"
        );
        let err = parse_capture(&file[..10]).unwrap_err();
        assert!(err.contains("truncated pcap file header"), "{err}");
        let ng = pcapng(1, &[ETH]);
        let err = parse_capture(&ng[..ng.len() - 4]).unwrap_err();
        assert!(err.contains("pcapng block at byte"), "{err}");
        let err = parse_capture(&pcap(false, false, 105, &[ETH])).unwrap_err();
        assert!(err.contains("packet 1 (byte 24): link type 105"), "{err}");
        let err = parse_capture(&pcap(false, false, 1, &[&ETH[..10]])).unwrap_err();
        assert!(err.contains("Ethernet frame of 10 bytes"), "{err}");
        let err = parse_capture(&pcap(false, false, 229, &[IP4])).unwrap_err();
        assert!(err.contains("not an IP packet of that version"), "{err}");
    }

    #[test]
    fn damaged_files_never_panic() {
        for file in [
            pcap(false, false, 1, &[ETH, ETH]),
            pcap(true, true, 101, &[IP4]),
            pcapng(1, &[ETH, ETH]),
        ] {
            for cut in 0..file.len() {
                let _ = parse_capture(&file[..cut]);
            }
            for at in 0..file.len() {
                for value in [0x00, 0xff, 0x7f, 0x80] {
                    let mut damaged = file.clone();
                    damaged[at] = value;
                    let _ = parse_capture(&damaged);
                }
            }
        }
    }

    /// Gives its bytes at most `step` at a time, as a pipe may.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_read_the_same_whatever_the_read_sizes() {
        let big = vec![0xab; 100_000];
        let frames: Vec<&[u8]> = vec![ETH, &big, &ETH[..14], &big[..70_000]];
        for file in [pcap(false, true, 1, &frames), pcapng(1, &frames)] {
            for step in [1, 7, 4096, 1 << 20] {
                let mut reader = PacketReader::new(Trickle { bytes: &file, step }).unwrap();
                let mut got = Vec::new();
                while let Some(r) = reader.next_record().unwrap() {
                    got.push(r.data.to_vec());
                }
                assert_eq!(got, frames, "step {step}");
            }
        }
    }

    #[test]
    fn an_endless_input_of_zeros_fails_at_once() {
        let err = PacketReader::new(io::repeat(0)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "not a pcap or pcapng file (starts with 00 00 00 00)"
        );
        // A valid header, then zeros for ever: 0-byte records of link type
        // 1 are read one by one (never buffered all), and fail the check.
        let header = pcap(false, false, 1, &[]);
        let mut reader = PacketReader::new(header.chain(io::repeat(0))).unwrap();
        let first = reader.next_record().unwrap().unwrap();
        assert_eq!((first.number, first.offset, first.data.len()), (1, 24, 0));
        assert!(check_packet(first.linktype, first.data).is_err());
    }

    #[test]
    fn a_record_larger_than_the_limit_is_an_error_naming_it() {
        let mut file = pcap(false, false, 1, &[ETH]);
        let second = file.len() as u64;
        file.extend(pcap(false, false, 1, &[ETH])[24..].iter());
        // The second record announces 4 GiB - 1.
        file[second as usize + 8..second as usize + 12].copy_from_slice(&[0xff; 4]);
        let mut reader = PacketReader::new(&file[..]).unwrap();
        assert!(reader.next_record().unwrap().is_some());
        let err = reader.next_record().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "record 2 at byte {second}: 4294967295 bytes of data announced, \
                 more than the limit of 262144"
            )
        );
        // A pcapng block too: the bound is checked before its bytes are read.
        let mut ng = pcapng(1, &[ETH]);
        let epb = ng.len() - (12 + 20 + ETH.len().div_ceil(4) * 4);
        assert_eq!(
            &ng[epb..epb + 4],
            &6u32.to_le_bytes(),
            "an EPB starts there"
        );
        ng[epb + 4..epb + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let mut reader = PacketReader::new(&ng[..]).unwrap();
        let err = reader.next_record().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "pcapng block at byte {epb}: a block of 2147483632 bytes"
            )),
            "{err}"
        );
    }

    #[test]
    fn pcapng_timestamps_follow_each_interface_resolution() {
        // Interface 0 without if_tsresol (µs, as dumpcap writes), interface
        // 1 with ms: pcap-file hands both back as "ns".
        let mut w = pcap_file::pcapng::PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .unwrap();
        let mut ms = InterfaceDescriptionBlock::new(DataLink::RAW, 0);
        ms.options.push(InterfaceDescriptionOption::IfTsResol(3));
        w.write_pcapng_block(ms).unwrap();
        for (interface, ticks, data) in [
            (0, 1_700_000_000_123_456u64, ETH),
            (1, 1_700_000_000_123, IP4),
        ] {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: interface,
                timestamp: Duration::from_nanos(ticks),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .unwrap();
        }
        let file = w.into_inner();
        let mut reader = PacketReader::new(&file[..]).unwrap();
        let a = reader.next_record().unwrap().unwrap();
        assert_eq!((a.interface, a.linktype), (0, 1));
        assert_eq!(a.timestamp_ns, 1_700_000_000_123_456_000);
        let b = reader.next_record().unwrap().unwrap();
        assert_eq!((b.interface, b.linktype), (1, 101));
        assert_eq!(b.timestamp_ns, 1_700_000_000_123_000_000);
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn our_files_read_back_the_same() {
        let ts = [1_761_596_197_426_295_123u64, 1_761_596_198_000_000_999];
        let frames: [&[u8]; 2] = [ETH, &ETH[..14]];
        for resolution in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
            let mut w = PcapWriter::new(Vec::new(), 1, resolution).unwrap();
            for (t, f) in ts.iter().zip(frames) {
                w.write(*t, 1500, f).unwrap();
            }
            let file = w.finish().unwrap();
            let mut reader = PacketReader::new(&file[..]).unwrap();
            for (t, f) in ts.iter().zip(frames) {
                let r = reader.next_record().unwrap().unwrap();
                let want = match resolution {
                    TsResolution::MicroSecond => t / 1000 * 1000,
                    TsResolution::NanoSecond => *t,
                };
                assert_eq!(
                    (r.linktype, r.timestamp_ns, r.original_len, r.data),
                    (1, want, 1500, f)
                );
            }
            assert!(reader.next_record().unwrap().is_none());
        }

        // Beyond the snaplen a packet is cut, its original length kept.
        let huge = vec![7u8; MAX_RECORD_DATA + 1000];
        let mut w = PcapWriter::new(Vec::new(), 1, TsResolution::NanoSecond).unwrap();
        w.write(ts[0], huge.len() as u32 + 5, &huge).unwrap();
        let file = w.finish().unwrap();
        let mut reader = PacketReader::new(&file[..]).unwrap();
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!(r.data, &huge[..MAX_RECORD_DATA]);
        assert_eq!(r.original_len as usize, huge.len() + 5);

        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let eth = w.add_interface("veth0", 1).unwrap();
        let tun = w.add_interface("tun0", 101).unwrap();
        w.write(
            eth,
            ts[0],
            1500,
            ETH,
            Some(Direction::Inbound),
            Some("first"),
        )
        .unwrap();
        w.write(
            tun,
            ts[1],
            IP4.len() as u32,
            IP4,
            Some(Direction::Outbound),
            None,
        )
        .unwrap();
        w.write(eth, ts[1], 14, &ETH[..14], None, None).unwrap();
        let file = w.finish().unwrap();
        let mut reader = PacketReader::new(&file[..]).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| {
            reader.next_record().unwrap().map(|r| {
                (
                    r.number,
                    r.interface,
                    r.linktype,
                    r.timestamp_ns,
                    r.original_len,
                    r.direction,
                    r.data.to_vec(),
                )
            })
        })
        .collect();
        assert_eq!(
            got,
            vec![
                (1, 0, 1, ts[0], 1500, Some(Direction::Inbound), ETH.to_vec()),
                (
                    2,
                    1,
                    101,
                    ts[1],
                    20,
                    Some(Direction::Outbound),
                    IP4.to_vec()
                ),
                (3, 0, 1, ts[1], 14, None, ETH[..14].to_vec()),
            ]
        );
    }

    #[test]
    fn pcapng_records_carry_their_interface_name_and_comments() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let veth = w.add_interface("veth0", 1).unwrap();
        let anonymous = w.describe_interface(None, 101).unwrap();
        w.write(veth, 1, 18, ETH, None, Some("sent by ping"))
            .unwrap();
        w.write(anonymous, 2, 20, IP4, None, None).unwrap();
        let mut file = w.finish().unwrap();
        // A second comment on one packet, as Wireshark may write.
        let mut w = pcap_file::pcapng::PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .unwrap();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(3),
            original_len: ETH.len() as u32,
            data: Cow::Borrowed(ETH),
            options: vec![
                EnhancedPacketOption::Comment(Cow::Borrowed("one")),
                EnhancedPacketOption::Comment(Cow::Borrowed("two")),
            ],
        })
        .unwrap();
        // Only its EPB is appended: interface 0 is veth0 there.
        let blocks = w.into_inner();
        let len_at = |at: usize| u32::from_le_bytes(blocks[at + 4..at + 8].try_into().unwrap());
        let idb = len_at(0) as usize;
        let epb = idb + len_at(idb) as usize;
        file.extend_from_slice(&blocks[epb..]);
        let mut reader = PacketReader::new(&file[..]).unwrap();
        let mut got = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            got.push((r.ifname.map(str::to_string), r.comment.clone()));
        }
        assert_eq!(
            got,
            [
                (Some("veth0".to_string()), Some("sent by ping".to_string())),
                (None, None),
                (Some("veth0".to_string()), Some("one\ntwo".to_string())),
            ]
        );
        // Classic pcap has neither.
        let file = pcap(false, false, 1, &[ETH]);
        let mut reader = PacketReader::new(&file[..]).unwrap();
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!((r.ifname, r.comment), (None, None));
    }

    #[test]
    fn tick_resolutions_rescale_to_ns() {
        assert_eq!(ticks_to_ns(1_500_000, 6, 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(7, 9, 0), 7);
        assert_eq!(ticks_to_ns(12_345, 3, 10), 22_345_000_000);
        assert_eq!(ticks_to_ns(1_000, 12, 0), 1);
        assert_eq!(ticks_to_ns(1 << 20, 0x80 | 20, 0), 1_000_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 0, 0), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0x7f, 0), 0);
        assert_eq!(ticks_to_ns(5, 0xff, -1), 0);
    }
}
