//! JSONL packet files (FORMATS.md, "JSONL packet files"): one packet per
//! line.
//!
//! Written in the original tool's capture dialect, keys in its order —
//! `timestamp_us`, `direction`, `layers` — so the original reads our files;
//! what it did not have comes after, in new keys: `timestamp_ns` (the full
//! resolution), `ifname`, `linktype` (only when not Ethernet) and `comment`.
//!
//! Read: all three dialects of the original (key order free, `direction`
//! optional, no newline after the last line), blank lines skipped, `layers`
//! or `data` (hex of the whole frame). A bad line is an error naming its
//! number and what is wrong; the reader goes on with the next line.

// used by capture/pcap2json/json2pcap (issue #8)
#![allow(dead_code)]

use std::io::{self, BufRead, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use super::layers::{self, Layer, Packet, LINKTYPE_ETHERNET};

/// Which way a packet went through the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Rx,
    Tx,
}

/// One line of a JSONL file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    pub direction: Option<Direction>,
    pub ifname: Option<String>,
    /// PCAP link type of the first layer (1: Ethernet).
    pub linktype: u32,
    pub packet: Packet,
    pub comment: Option<String>,
}

/// The key order of the capture dialect, new keys last.
#[derive(Serialize)]
struct RecordOut<'a> {
    timestamp_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<Direction>,
    layers: &'a [Layer],
    timestamp_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<&'a str>,
    #[serde(skip_serializing_if = "is_ethernet")]
    linktype: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
}

fn is_ethernet(linktype: &u32) -> bool {
    *linktype == LINKTYPE_ETHERNET
}

/// Writes one record as one line.
pub fn write_record(out: &mut impl Write, record: &Record) -> io::Result<()> {
    let line = RecordOut {
        timestamp_us: record.timestamp_ns / 1000,
        direction: record.direction,
        layers: &record.packet.layers,
        timestamp_ns: record.timestamp_ns,
        ifname: record.ifname.as_deref(),
        linktype: record.linktype,
        comment: record.comment.as_deref(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("line {line}: {source}")]
    Io { line: usize, source: io::Error },
}

impl ReadError {
    /// The 1-based number of the line at fault.
    pub fn line(&self) -> usize {
        match self {
            ReadError::Line { line, .. } | ReadError::Io { line, .. } => *line,
        }
    }
}

/// The longest line the reader takes. A 64 KiB frame as `raw` decimal bytes
/// is about 256 KiB of JSON; this leaves room for pretty-printed layers and
/// still bounds memory on a file that is not JSONL at all.
pub const MAX_LINE: usize = 4 << 20;

/// Reads records line by line; an iterator of `Result<Record, ReadError>`.
/// A bad line yields its error and reading goes on; an I/O error ends it.
pub struct Reader<R> {
    input: R,
    line: usize,
    max_line: usize,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Self {
        Self::with_max_line(input, MAX_LINE)
    }

    /// A reader that refuses lines longer than `max_line` bytes.
    pub fn with_max_line(input: R, max_line: usize) -> Self {
        Reader {
            input,
            line: 0,
            max_line,
            done: false,
            buf: Vec::new(),
        }
    }

    /// Reads the next line into `buf` without its newline. `Ok(None)` at the
    /// end; `Ok(Some(false))` when the line was too long (and was skipped).
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut seen = false;
        let mut too_long = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(seen.then_some(!too_long));
            }
            seen = true;
            let (take, found) = match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => (at, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max_line {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(take + usize::from(found));
            if found {
                return Ok(Some(!too_long));
            }
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.line += 1;
            let line = self.line;
            match self.read_line() {
                Err(source) => {
                    self.done = true;
                    return Some(Err(ReadError::Io { line, source }));
                }
                Ok(None) => self.done = true,
                Ok(Some(false)) => {
                    return Some(Err(ReadError::Line {
                        line,
                        message: format!("longer than {} bytes", self.max_line),
                    }));
                }
                Ok(Some(true)) => {
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(
                        parse_record(&self.buf)
                            .map_err(|message| ReadError::Line { line, message }),
                    );
                }
            }
        }
        None
    }
}

/// Parses one line (any of the three dialects).
pub fn parse_record(line: &[u8]) -> Result<Record, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let linktype = match obj.get("linktype") {
        None => LINKTYPE_ETHERNET,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("linktype: expected a link type number, found {v}"))?,
    };
    let packet = match (obj.get("layers"), obj.get("data")) {
        (Some(Value::Array(list)), _) => {
            let mut packet = Packet::default();
            for (i, layer) in list.iter().enumerate() {
                packet
                    .layers
                    .push(Layer::from_json(layer).map_err(|e| format!("layer {}: {e}", i + 1))?);
            }
            packet
        }
        (Some(other), _) => return Err(format!("layers: expected an array, found {other}")),
        (None, Some(Value::String(hex))) => layers::decode(linktype, &from_hex(hex)?),
        (None, Some(other)) => return Err(format!("data: expected a hex string, found {other}")),
        (None, None) => return Err("neither `layers` nor `data`".into()),
    };
    Ok(Record {
        timestamp_ns: timestamp_ns(&obj)?,
        direction: match obj.get("direction") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "rx" => Some(Direction::Rx),
            Some(Value::String(s)) if s == "tx" => Some(Direction::Tx),
            Some(other) => {
                return Err(format!(
                    "direction: expected \"rx\" or \"tx\", found {other}"
                ))
            }
        },
        ifname: optional_string(&obj, "ifname")?,
        linktype,
        packet,
        comment: optional_string(&obj, "comment")?,
    })
}

/// `timestamp_ns` when it agrees with `timestamp_us` (its µs part), else
/// `timestamp_us`: a file edited by hand, or by the original tool, changes
/// only the key it knows, and that edit wins.
fn timestamp_ns(obj: &Map<String, Value>) -> Result<u64, String> {
    let field = |key: &str| -> Result<Option<u64>, String> {
        obj.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| format!("{key}: expected a non-negative integer, found {v}"))
            })
            .transpose()
    };
    match (field("timestamp_us")?, field("timestamp_ns")?) {
        (Some(us), Some(ns)) if ns / 1000 == us => Ok(ns),
        (Some(us), _) => us
            .checked_mul(1000)
            .ok_or_else(|| format!("timestamp_us: {us} is out of range")),
        (None, Some(ns)) => Ok(ns),
        (None, None) => Err("missing field `timestamp_us`".into()),
    }
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key}: expected a string, found {other}")),
    }
}

/// Hex of a frame, either case. Hand-written: eight lines, not worth a crate.
fn from_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits = hex.as_bytes();
    if digits.len() % 2 != 0 {
        return Err(format!("data: odd number of hex digits ({})", digits.len()));
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(format!("data: not a hex digit at position {}", 2 * i + 1)),
        })
        .collect()
}
