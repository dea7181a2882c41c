//! Conversions between packet files: pcap/pcapng records to JSONL lines,
//! and JSONL back to pcapng or classic pcap.
//!
//! All stream: one record in memory at a time (pcap.rs and jsonl.rs bound
//! a record and a line), whatever the file's size. A classic pcap holds one
//! link type and one timestamp resolution in its header, chosen from the
//! records: JSONL to pcap reads its input twice (`TwoPass`), first to find
//! them (µs unless a timestamp needs ns), then to write.
//!
//! `tick(done, pass)` is called after each packet; it returns false to
//! stop the conversion (Ctrl-C), which then ends with `Stopped`.

use std::io::{self, BufRead, BufWriter, Read, Write};

use thiserror::Error;

use crate::files::{Format, TwoPass};
use crate::io_error;
use crate::jsonl::{self, Direction as JsonDirection};
use crate::layers::{self, Dialect, EncodeError};
use crate::linktype::LINKTYPE_ETHERNET;
use crate::pcap::{Direction, FileError, PacketReader};
use crate::pcap_writer::{PcapNgWriter, PcapWriter, TsResolution};

/// At most this many distinct interfaces (name, link type) in one pcapng:
/// they are kept in memory for the whole conversion.
pub const MAX_INTERFACES: usize = 4096;
const OUT_BUFFER: usize = 256 * 1024;

/// Why a conversion stopped. Each names the file (and line) at fault.
#[derive(Debug, Error)]
pub enum ConvertError {
    #[error("{name}: {error}")]
    Capture { name: String, error: FileError },
    /// The usual mix-up: JSONL given where a capture was expected.
    #[error("{name}: {error} (JSONL? json2pcap converts that)")]
    JsonlNotCapture { name: String, error: FileError },
    /// And the other way round.
    #[error("{name}: a pcap or pcapng file, not JSONL (pcap2json converts that)")]
    CaptureNotJsonl { name: String },
    #[error("{name}: {error}")]
    Jsonl {
        name: String,
        error: jsonl::ReadError,
    },
    #[error("{name}: line {line}: {error}")]
    Encode {
        name: String,
        line: usize,
        error: EncodeError,
    },
    #[error("{out}: write error: {}; {out} left as it was", io_error(.error))]
    Write { out: String, error: io::Error },
    #[error("{name}: {}", io_error(.error))]
    Read { name: String, error: io::Error },
    #[error(
        "{name}: line {line}: more than {MAX_INTERFACES} interfaces (ifname and linktype pairs)"
    )]
    TooManyInterfaces { name: String, line: usize },
    #[error(
        "{name}: line {line}: link type {linktype} after {first}: a classic pcap has one \
         (write pcapng: --pcapng or OUT.pcapng)"
    )]
    LinkTypes {
        name: String,
        line: usize,
        linktype: u32,
        first: u32,
    },
    #[error(
        "{name}: line {line}: timestamp {timestamp_ns} ns is after 2106, beyond classic pcap \
         (write pcapng: --pcapng or OUT.pcapng)"
    )]
    After2106 {
        name: String,
        line: usize,
        timestamp_ns: u64,
    },
    #[error("{name}: changed while being converted ({what})")]
    Changed { name: String, what: String },
    #[error("{name}: {place}: --filter: {message}")]
    Filter {
        name: String,
        place: String,
        message: String,
    },
    #[error("stopped")]
    Stopped,
}

/// Which packets a conversion keeps: `(link type, bytes)` → keep it, or
/// why the question has no answer (a filter of Ethernet words on raw IP).
pub type Select<'a> = &'a mut dyn FnMut(u32, &[u8]) -> Result<bool, String>;

/// Keeps every packet.
pub fn keep_all(_: u32, _: &[u8]) -> Result<bool, String> {
    Ok(true)
}

fn selected(
    select: &mut Select<'_>,
    name: &str,
    place: impl FnOnce() -> String,
    linktype: u32,
    data: &[u8],
) -> Result<bool, ConvertError> {
    select(linktype, data).map_err(|message| ConvertError::Filter {
        name: name.to_string(),
        place: place(),
        message,
    })
}

/// The names of the two files, for messages.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub input: &'a str,
    pub output: &'a str,
}

impl Names<'_> {
    fn write_error(&self, error: io::Error) -> ConvertError {
        ConvertError::Write {
            out: self.output.to_string(),
            error,
        }
    }
}

/// What a conversion to pcap or pcapng wrote, for its summary line.
pub struct Written {
    pub packets: u64,
    pub what: String,
}

fn tick_or_stop(
    tick: &mut dyn FnMut(u64, &str) -> bool,
    done: u64,
    pass: &str,
) -> Result<(), ConvertError> {
    if tick(done, pass) {
        Ok(())
    } else {
        Err(ConvertError::Stopped)
    }
}

/// pcap/pcapng records → JSONL lines in `dialect`; the number of packets.
pub fn pcap_to_jsonl(
    input: impl Read,
    out: impl Write,
    names: Names<'_>,
    dialect: Dialect,
    mut select: Select<'_>,
    tick: &mut dyn FnMut(u64, &str) -> bool,
) -> Result<u64, ConvertError> {
    let name = || names.input.to_string();
    let mut out = BufWriter::with_capacity(OUT_BUFFER, out);
    let mut reader = PacketReader::new(input).map_err(|error| match error {
        FileError::NotACapture(ref start) if start.starts_with("7b") => {
            ConvertError::JsonlNotCapture {
                name: name(),
                error,
            }
        }
        error => ConvertError::Capture {
            name: name(),
            error,
        },
    })?;
    let mut packets = 0u64;
    while let Some(r) = reader
        .next_record()
        .map_err(|error| ConvertError::Capture {
            name: name(),
            error,
        })?
    {
        let place = || format!("packet {} (byte {})", r.number, r.offset);
        if !selected(&mut select, names.input, place, r.linktype, r.data)? {
            continue;
        }
        let direction = r.direction.map(|d| match d {
            Direction::Inbound => JsonDirection::Rx,
            Direction::Outbound => JsonDirection::Tx,
        });
        let record = jsonl::Record {
            timestamp_ns: r.timestamp_ns,
            // The original's pcap2json wrote rx for every packet.
            direction: match dialect {
                Dialect::Original => direction.or(Some(JsonDirection::Rx)),
                Dialect::Full => direction,
            },
            ifname: r.ifname.map(str::to_string),
            linktype: r.linktype,
            packet: layers::decode(dialect, r.linktype, r.data),
            comment: r.comment.clone(),
        };
        jsonl::write_record(&mut out, &record, dialect).map_err(|e| names.write_error(e))?;
        packets += 1;
        tick_or_stop(tick, packets, "converted")?;
    }
    out.flush().map_err(|e| names.write_error(e))?;
    Ok(packets)
}

/// Reads the JSONL lines of `input`: each record with its line number, a
/// bad line as an error naming the file and line. `first_bytes`: what the
/// file starts with, to say so when it is a capture.
fn each_record(
    input: impl BufRead,
    name: &str,
    is_capture: bool,
    mut f: impl FnMut(usize, jsonl::Record) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    let mut reader = jsonl::Reader::new(input);
    while let Some(record) = reader.next() {
        let record = record.map_err(|error| match error {
            jsonl::ReadError::Line { line: 1, .. } if is_capture => ConvertError::CaptureNotJsonl {
                name: name.to_string(),
            },
            error => ConvertError::Jsonl {
                name: name.to_string(),
                error,
            },
        })?;
        f(reader.line(), record)?;
    }
    Ok(())
}

/// Whether the regular file `name` starts with a pcap or pcapng magic.
pub fn looks_like_a_capture(name: &str) -> bool {
    let mut head = [0u8; 4];
    let read = std::fs::metadata(name).is_ok_and(|m| m.is_file())
        && std::fs::File::open(name)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok();
    read && matches!(
        crate::files::sniff(&head),
        Some(Format::Pcap { .. } | Format::PcapNg)
    )
}

/// The bytes of a record, `"<auto>"` and `"<random>"` fields filled in.
fn encode(record: &jsonl::Record, name: &str, line: usize) -> Result<Vec<u8>, ConvertError> {
    record
        .packet
        .encode()
        .map_err(|error| ConvertError::Encode {
            name: name.to_string(),
            line,
            error,
        })
}

/// The bytes of a record `select` keeps; None for one it leaves out.
fn encode_selected(
    record: &jsonl::Record,
    name: &str,
    line: usize,
    select: &mut Select<'_>,
) -> Result<Option<Vec<u8>>, ConvertError> {
    let frame = encode(record, name, line)?;
    let keep = selected(
        select,
        name,
        || format!("line {line}"),
        record.linktype,
        &frame,
    )?;
    Ok(keep.then_some(frame))
}

fn pcap_direction(d: JsonDirection) -> Direction {
    match d {
        JsonDirection::Rx => Direction::Inbound,
        JsonDirection::Tx => Direction::Outbound,
    }
}

/// JSONL → pcapng: one interface per (ifname, link type), directions and
/// comments kept.
pub fn jsonl_to_pcapng(
    input: impl Read,
    out: impl Write,
    names: Names<'_>,
    mut select: Select<'_>,
    tick: &mut dyn FnMut(u64, &str) -> bool,
) -> Result<Written, ConvertError> {
    let name = names.input;
    let is_capture = looks_like_a_capture(name);
    let out = BufWriter::with_capacity(OUT_BUFFER, out);
    let mut writer = PcapNgWriter::new(out).map_err(|e| names.write_error(e))?;
    // (ifname, link type) of each interface described so far, by id.
    let mut interfaces: Vec<(Option<String>, u32)> = Vec::new();
    let mut packets = 0u64;
    let input = io::BufReader::with_capacity(OUT_BUFFER, input);
    each_record(input, name, is_capture, |line, record| {
        let Some(frame) = encode_selected(&record, name, line, &mut select)? else {
            return Ok(());
        };
        let key = (record.ifname.clone(), record.linktype);
        let id = match interfaces.iter().position(|i| *i == key) {
            Some(id) => id as u32,
            None => {
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(ConvertError::TooManyInterfaces {
                        name: name.to_string(),
                        line,
                    });
                }
                let id = writer
                    .describe_interface(record.ifname.as_deref(), record.linktype)
                    .map_err(|e| names.write_error(e))?;
                interfaces.push(key);
                id
            }
        };
        writer
            .write(
                id,
                record.timestamp_ns,
                frame.len() as u32,
                &frame,
                record.direction.map(pcap_direction),
                record.comment.as_deref(),
            )
            .map_err(|e| names.write_error(e))?;
        packets += 1;
        tick_or_stop(tick, packets, "converted")
    })?;
    writer.finish().map_err(|e| names.write_error(e))?;
    Ok(Written {
        packets,
        what: match interfaces.len() {
            1 => "pcapng, 1 interface".to_string(),
            n => format!("pcapng, {n} interfaces"),
        },
    })
}

/// What the first read of a JSONL file found for a classic pcap's header.
#[derive(Default)]
struct Scan {
    packets: u64,
    linktype: Option<u32>,
    /// A timestamp that is not a whole µs.
    needs_ns: bool,
    /// Lines with what only pcapng keeps.
    metadata: bool,
}

/// JSONL → classic pcap, in two passes over `input` (a file that is not
/// regular is kept in memory, bounded, for the second).
pub fn jsonl_to_pcap(
    input: std::fs::File,
    out: impl Write,
    names: Names<'_>,
    force_ns: bool,
    mut select: Select<'_>,
    tick: &mut dyn FnMut(u64, &str) -> bool,
) -> Result<Written, ConvertError> {
    let name = names.input;
    let is_capture = looks_like_a_capture(name);
    let mut scan = Scan::default();
    let (scanned, input) =
        TwoPass::first_pass(input, "copy it to a file first, or write pcapng", |first| {
            let first = io::BufReader::with_capacity(OUT_BUFFER, first);
            each_record(first, name, is_capture, |line, record| {
                if encode_selected(&record, name, line, &mut select)?.is_none() {
                    return Ok(());
                }
                match scan.linktype {
                    None => scan.linktype = Some(record.linktype),
                    Some(first) if first != record.linktype => {
                        return Err(ConvertError::LinkTypes {
                            name: name.to_string(),
                            line,
                            linktype: record.linktype,
                            first,
                        })
                    }
                    Some(_) => {}
                }
                if record.timestamp_ns / 1_000_000_000 > u64::from(u32::MAX) {
                    return Err(ConvertError::After2106 {
                        name: name.to_string(),
                        line,
                        timestamp_ns: record.timestamp_ns,
                    });
                }
                scan.needs_ns |= !record.timestamp_ns.is_multiple_of(1000);
                scan.metadata |= record.ifname.is_some()
                    || record.direction.is_some()
                    || record.comment.is_some();
                scan.packets += 1;
                tick_or_stop(tick, scan.packets, "checked")
            })
        });
    scanned?;
    let linktype = scan.linktype.unwrap_or(LINKTYPE_ETHERNET);
    let resolution = if scan.needs_ns || force_ns {
        TsResolution::NanoSecond
    } else {
        TsResolution::MicroSecond
    };
    let out = BufWriter::with_capacity(OUT_BUFFER, out);
    let mut writer =
        PcapWriter::new(out, linktype, resolution).map_err(|e| names.write_error(e))?;
    let mut packets = 0u64;
    let changed = |what: String| ConvertError::Changed {
        name: name.to_string(),
        what,
    };
    let again = input.again().map_err(|error| ConvertError::Read {
        name: name.to_string(),
        error,
    })?;
    each_record(again, name, false, |line, record| {
        let Some(frame) = encode_selected(&record, name, line, &mut select)? else {
            return Ok(());
        };
        if packets == scan.packets || record.linktype != linktype {
            return Err(changed(format!("line {line}")));
        }
        writer
            .write(record.timestamp_ns, frame.len() as u32, &frame)
            .map_err(|e| names.write_error(e))?;
        packets += 1;
        tick_or_stop(tick, packets, "converted")
    })?;
    writer.finish().map_err(|e| names.write_error(e))?;
    if packets != scan.packets {
        return Err(changed(format!(
            "{packets} of {} packets left",
            scan.packets
        )));
    }
    let mut what = format!(
        "pcap, link type {linktype}, {} timestamps",
        match resolution {
            TsResolution::MicroSecond => "µs",
            TsResolution::NanoSecond => "ns",
        }
    );
    if scan.metadata {
        what.push_str("; ifname, direction and comment are kept in pcapng only");
    }
    Ok(Written { packets, what })
}
