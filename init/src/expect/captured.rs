//! Captured packets as the judging sees them: the JSON line the original
//! tool writes for each (what the harness's jq reads), and the frame's
//! bytes (what checksums are computed over).

use std::path::Path;

use anyhow::{bail, Context as _};
use myinit_packet::edit;
use myinit_packet::files::Format;
use myinit_packet::jsonl::{self, Direction, Record};
use myinit_packet::layers::{self, Dialect};
use serde_json::Value;

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Its line: the file's own for JSONL, the original's dialect for pcap.
    pub json: Value,
    pub direction: Option<Direction>,
    pub linktype: u32,
    /// The whole frame.
    pub bytes: Vec<u8>,
    pub record: Record,
}

impl Captured {
    /// A packet read from an interface now (live `expect`).
    pub fn from_frame(
        timestamp_ns: u64,
        direction: Direction,
        linktype: u32,
        bytes: &[u8],
    ) -> Captured {
        let record = Record {
            timestamp_ns,
            direction: Some(direction),
            ifname: None,
            linktype,
            packet: layers::decode(Dialect::Original, linktype, bytes),
            comment: None,
        };
        Captured {
            json: line_of(&record),
            direction: Some(direction),
            linktype,
            bytes: bytes.to_vec(),
            record,
        }
    }

    /// `rx #3`: its direction and its number (1-based) in the file.
    pub fn label(&self, index: usize) -> String {
        let direction = match self.direction {
            Some(Direction::Rx) => "rx",
            Some(Direction::Tx) => "tx",
            None => "packet",
        };
        format!("{direction} #{}", index + 1)
    }

    /// One line for the packet list: direction, number, layers, addresses.
    pub fn summary(&self, index: usize) -> String {
        let direction = match self.direction {
            Some(Direction::Rx) => "rx",
            Some(Direction::Tx) => "tx",
            None => "  ",
        };
        format!("{direction} {}", edit::summary(index, &self.record))
    }
}

/// The original dialect's line for a record, as a JSON value.
fn line_of(record: &Record) -> Value {
    let mut text = Vec::new();
    // Writing to a Vec cannot fail; an empty object is never reached.
    let _ = jsonl::write_record(&mut text, record, Dialect::Original);
    serde_json::from_slice(&text).unwrap_or(Value::Null)
}

/// Reads a capture file (JSONL in any dialect, pcap or pcapng). A JSONL
/// file is judged on its own lines, as jq reads them.
pub fn load(path: &Path) -> anyhow::Result<Vec<Captured>> {
    let name = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{name}: is a directory"),
        Ok(_) => {}
        Err(e) => bail!("{name}: {}", crate::util::io_error(&e)),
    }
    let (format, records) = edit::load(path).with_context(|| format!("{name}"))?;
    let lines: Option<Vec<Value>> = if format == Format::Jsonl {
        let text = std::fs::read(path).with_context(|| format!("{name}"))?;
        Some(
            text.split(|&b| b == b'\n')
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .map(|line| serde_json::from_slice(line).unwrap_or(Value::Null))
                .collect(),
        )
    } else {
        None
    };
    let mut packets = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let bytes = record
            .packet
            .encode()
            .map_err(|e| anyhow::anyhow!("{name}: packet {}: {e}", i + 1))?;
        let json = match lines.as_ref().and_then(|l| l.get(i)) {
            Some(line) if !line.is_null() => line.clone(),
            _ => line_of(&record),
        };
        packets.push(Captured {
            json,
            direction: record.direction,
            linktype: edit::linktype_of(&record),
            bytes,
            record,
        });
    }
    Ok(packets)
}
