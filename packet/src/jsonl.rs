//! JSONL packet files (FORMATS.md, "JSONL packet files"): one packet per
//! line.
//!
//! Written by default in the original tool's capture dialect, byte for
//! byte: the keys `timestamp_us`, `direction`, `layers` (or `data`, the hex
//! of a frame whose first header does not decode) and nothing else, the
//! layers as the original decodes them ([`Dialect::Original`]). Its users
//! compare whole files with `jq 'del(.timestamp_us)' | diff`. Ours, `jsonl+`
//! ([`Dialect::Full`]), adds after those keys `timestamp_ns` (the full
//! resolution), `ifname`, `linktype` (only when not Ethernet) and
//! `comment`, and decodes as deep as the packet model goes.
//!
//! Read: all three dialects of the original (key order free, `direction`
//! optional, no newline after the last line) and ours, blank lines skipped,
//! `layers` or `data` (hex of the whole frame). A bad line is an error
//! naming its number and what is wrong; the reader goes on with the next
//! line.

use std::io::{self, BufRead, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use super::layers::{
    self, err, Dialect, Layer, LayerError, Packet, LINKTYPE_ETHERNET, LINKTYPE_RAW,
};

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

/// The original's capture dialect: these keys, in this order.
#[derive(Serialize)]
struct OriginalLine<'a> {
    timestamp_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<Direction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<&'a [Layer]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
}

/// `jsonl+`: the original's keys first, ours after them.
#[derive(Serialize)]
struct FullLine<'a> {
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

/// Writes one record as one line of `dialect`. In the original's, a packet
/// whose first header did not decode (its first layer is `raw`) is written
/// as `data`, the hex of its bytes, as the original writes it.
pub fn write_record(out: &mut impl Write, record: &Record, dialect: Dialect) -> io::Result<()> {
    let layers = &record.packet.layers;
    let timestamp_us = record.timestamp_ns / 1000;
    match dialect {
        Dialect::Original => {
            let undecoded = matches!(layers.first(), Some(Layer::Raw(_)));
            let data = undecoded
                .then(|| record.packet.encode().ok())
                .flatten()
                .map(|bytes| to_hex(&bytes));
            let line = OriginalLine {
                timestamp_us,
                direction: record.direction,
                layers: data.is_none().then_some(&layers[..]),
                data,
            };
            serde_json::to_writer(&mut *out, &line)?;
        }
        Dialect::Full => {
            let line = FullLine {
                timestamp_us,
                direction: record.direction,
                layers,
                timestamp_ns: record.timestamp_ns,
                ifname: record.ifname.as_deref(),
                linktype: record.linktype,
                comment: record.comment.as_deref(),
            };
            serde_json::to_writer(&mut *out, &line)?;
        }
    }
    out.write_all(b"\n")
}

/// The dialect that keeps all `record` holds: the original's unless it
/// has ns timestamps, an interface name, a comment or layers only ours
/// shows.
pub fn dialect_of(record: &Record) -> Dialect {
    let ours = !record.timestamp_ns.is_multiple_of(1000)
        || record.ifname.is_some()
        || record.comment.is_some()
        || record.packet.dialect() == Dialect::Full;
    if ours {
        Dialect::Full
    } else {
        Dialect::Original
    }
}

/// Lower-case hex, as the original writes `data`.
fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: LayerError },
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

    /// The number of the line read last (1-based; 0 before the first).
    pub fn line(&self) -> usize {
        self.line
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
                        message: err!("longer than {} bytes", self.max_line),
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
pub fn parse_record(line: &[u8]) -> Result<Record, LayerError> {
    let value: Value = serde_json::from_slice(line).map_err(|e| err!("not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let linktype = match obj.get("linktype") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err!("linktype: expected a link type number, found {v}"))?,
        ),
    };
    let packet = match (obj.get("layers"), obj.get("data")) {
        (Some(Value::Array(list)), _) => {
            let mut packet = Packet::default();
            for (i, layer) in list.iter().enumerate() {
                packet
                    .layers
                    .push(Layer::from_json(layer).map_err(|e| err!("layer {}: {e}", i + 1))?);
            }
            packet
        }
        (Some(other), _) => return Err(err!("layers: expected an array, found {other}")),
        (None, Some(Value::String(hex))) => layers::decode(
            Dialect::Original,
            linktype.unwrap_or(LINKTYPE_ETHERNET),
            &from_hex(hex)?,
        ),
        (None, Some(other)) => return Err(err!("data: expected a hex string, found {other}")),
        (None, None) => return Err("neither `layers` nor `data`".into()),
    };
    // Without the key: what the first layer is. Our writers always say
    // when it is not Ethernet, but a hand-written L3 packet may not.
    let linktype = linktype.unwrap_or_else(|| match packet.layers.first() {
        Some(Layer::Ip(_) | Layer::Ipv6(_)) => LINKTYPE_RAW,
        _ => LINKTYPE_ETHERNET,
    });
    Ok(Record {
        timestamp_ns: timestamp_ns(&obj)?,
        direction: match obj.get("direction") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "rx" => Some(Direction::Rx),
            Some(Value::String(s)) if s == "tx" => Some(Direction::Tx),
            Some(other) => return Err(err!("direction: expected \"rx\" or \"tx\", found {other}")),
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
fn timestamp_ns(obj: &Map<String, Value>) -> Result<u64, LayerError> {
    let field = |key: &str| -> Result<Option<u64>, LayerError> {
        obj.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| err!("{key}: expected a non-negative integer, found {v}"))
            })
            .transpose()
    };
    match (field("timestamp_us")?, field("timestamp_ns")?) {
        (Some(us), Some(ns)) if ns / 1000 == us => Ok(ns),
        (Some(us), _) => us
            .checked_mul(1000)
            .ok_or_else(|| err!("timestamp_us: {us} is out of range")),
        (None, Some(ns)) => Ok(ns),
        (None, None) => Err("missing field `timestamp_us`".into()),
    }
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, LayerError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(err!("{key}: expected a string, found {other}")),
    }
}

/// Hex of a frame, either case. Hand-written: eight lines, not worth a crate.
fn from_hex(hex: &str) -> Result<Vec<u8>, LayerError> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(err!("data: odd number of hex digits ({})", digits.len()));
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => Ok((h << 4) | l),
            _ => Err(err!("data: not a hex digit at position {}", 2 * i + 1)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{decode, LINKTYPE_RAW};
    use Dialect::{Full, Original};

    /// The UDP frame the samples describe: 02:00:00:00:00:01 / 10.0.0.1:5353
    /// to 02:00:00:00:00:0A / 10.0.0.2:53, "hello".
    fn udp_frame() -> Vec<u8> {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0x0a])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5353, 53)
            .write(&mut f, b"hello")
            .unwrap();
        f
    }

    fn checksums(f: &[u8]) -> (u16, u16) {
        (
            u16::from_be_bytes([f[24], f[25]]),
            u16::from_be_bytes([f[40], f[41]]),
        )
    }

    /// A line as the original capture wrote it: its key order, direction.
    fn capture_dialect_line() -> String {
        let (ip, udp) = checksums(&udp_frame());
        format!(
            concat!(
                r#"{{"timestamp_us":1761596197426295,"direction":"tx","layers":["#,
                r#"{{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":2048}},"#,
                r#"{{"layertype":"Ip","version":4,"ihl":5,"tos":0,"len":33,"id":0,"#,
                r#""flags":{{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0}},"#,
                r#""ttl":64,"proto":17,"chksum":{},"src":"10.0.0.1","dst":"10.0.0.2","options":[]}},"#,
                r#"{{"layertype":"Udp","sport":5353,"dport":53,"len":13,"chksum":{}}},"#,
                r#"{{"layertype":"raw","data":[104,101,108,108,111]}}]}}"#
            ),
            ip, udp
        )
    }

    fn read_all(text: &str) -> Vec<Result<Record, ReadError>> {
        Reader::new(text.as_bytes()).collect()
    }

    #[test]
    fn writes_the_original_capture_dialect_and_nothing_else() {
        let record = Record {
            timestamp_ns: 1_761_596_197_426_295_123,
            direction: Some(Direction::Tx),
            ifname: Some("tap0".into()),
            linktype: 1,
            packet: decode(Original, 1, &udp_frame()),
            comment: Some("ping (pid 42)".into()),
        };
        let mut out = Vec::new();
        write_record(&mut out, &record, Original).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            capture_dialect_line() + "\n"
        );
        // A frame whose first header does not decode: its hex, as `data`.
        let record = Record {
            packet: decode(Original, 1, &udp_frame()[..10]),
            direction: Some(Direction::Rx),
            ..record
        };
        let mut out = Vec::new();
        write_record(&mut out, &record, Original).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"timestamp_us\":1761596197426295,\"direction\":\"rx\",\"data\":\"02000000000a02000000\"}\n"
        );
    }

    #[test]
    fn writes_ours_with_new_keys_after_the_originals() {
        let record = Record {
            timestamp_ns: 1_761_596_197_426_295_123,
            direction: Some(Direction::Tx),
            ifname: Some("tap0".into()),
            linktype: 1,
            packet: decode(Full, 1, &udp_frame()),
            comment: None,
        };
        let mut out = Vec::new();
        write_record(&mut out, &record, Full).unwrap();
        let line = String::from_utf8(out).unwrap();
        let expected = capture_dialect_line();
        let (head, _) = expected.rsplit_once('}').unwrap();
        assert_eq!(
            line,
            format!(r#"{head},"timestamp_ns":1761596197426295123,"ifname":"tap0"}}"#) + "\n"
        );
        // An L3 record says its link type, and a comment goes last.
        let record = Record {
            linktype: LINKTYPE_RAW,
            packet: decode(Full, LINKTYPE_RAW, &udp_frame()[14..]),
            comment: Some("ping from pid 42".into()),
            direction: None,
            ifname: None,
            ..record
        };
        let mut out = Vec::new();
        write_record(&mut out, &record, Full).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with(r#"{"timestamp_us":1761596197426295,"layers":[{"layertype":"Ip","#),
            "{line}"
        );
        assert!(
            line.ends_with("\"timestamp_ns\":1761596197426295123,\"linktype\":101,\"comment\":\"ping from pid 42\"}\n"),
            "{line}"
        );
    }

    #[test]
    fn reads_back_what_it_writes() {
        let frames = [udp_frame(), udp_frame()[..20].to_vec()];
        let mut out = Vec::new();
        let mut written = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let record = Record {
                timestamp_ns: 1_000_000_000 + i as u64 * 1001,
                direction: Some(if i == 0 { Direction::Rx } else { Direction::Tx }),
                ifname: Some("veth0".into()),
                linktype: 1,
                packet: decode(Full, 1, frame),
                comment: Some("c".into()),
            };
            write_record(&mut out, &record, Full).unwrap();
            written.push(record);
        }
        let read: Vec<Record> = Reader::new(&out[..]).map(Result::unwrap).collect();
        assert_eq!(read, written);
        for (record, frame) in read.iter().zip(&frames) {
            assert_eq!(&record.packet.encode().unwrap(), frame);
        }
    }

    #[test]
    fn reads_the_original_capture_dialect() {
        let text = capture_dialect_line() + "\n" + &capture_dialect_line() + "\n";
        let records = read_all(&text);
        assert_eq!(records.len(), 2);
        for record in records {
            let record = record.unwrap();
            assert_eq!(record.timestamp_ns, 1_761_596_197_426_295_000);
            assert_eq!(record.direction, Some(Direction::Tx));
            assert_eq!(record.linktype, 1);
            assert_eq!(record.packet.encode().unwrap(), udp_frame());
        }
    }

    #[test]
    fn reads_the_original_pcap2json_dialect_with_sorted_keys() {
        let (ip, udp) = checksums(&udp_frame());
        let line = format!(
            concat!(
                r#"{{"direction":"rx","layers":["#,
                r#"{{"dst":"02:00:00:00:00:0A","etype":2048,"layertype":"ether","src":"02:00:00:00:00:01"}},"#,
                r#"{{"chksum":{},"dst":"10.0.0.2","#,
                r#""flags":{{"dont_fragment":true,"fragment_offset":0,"more_fragments":false,"reserved":false}},"#,
                r#""id":0,"ihl":5,"layertype":"Ip","len":33,"options":[],"proto":17,"src":"10.0.0.1","tos":0,"ttl":64,"version":4}},"#,
                r#"{{"chksum":{},"dport":53,"layertype":"Udp","len":13,"sport":5353}},"#,
                r#"{{"data":[104,101,108,108,111],"layertype":"raw"}}],"timestamp_us":1761596197426295}}"#
            ),
            ip, udp
        );
        let records = read_all(&(line + "\n"));
        let [Ok(record)] = &records[..] else {
            panic!("{records:?}")
        };
        assert_eq!(record.direction, Some(Direction::Rx));
        assert_eq!(record.timestamp_ns, 1_761_596_197_426_295_000);
        assert_eq!(record.packet.encode().unwrap(), udp_frame());
    }

    #[test]
    fn reads_the_original_editor_dialect_without_direction_or_final_newline() {
        let text = concat!(
            "\n",
            r#"{"timestamp_us":5,"layers":[{"layertype":"ether","dst":"02:00:00:00:00:0a","src":"02:00:00:00:00:01","etype":"<auto>"},"#,
            r#"{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":0,"#,
            r#""flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"#,
            r#""ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]},"#,
            r#"{"layertype":"Udp","sport":5353,"dport":53,"len":"<auto>","chksum":"<auto>"},"#,
            r#"{"layertype":"raw","data":[104,101,108,108,111]}]}"#,
            "\n  \n\n",
            r#"{"timestamp_us":6,"data":"02000000000A02000000000108004500"}"#
        );
        let records: Vec<Record> = read_all(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].direction, None);
        assert_eq!(records[0].timestamp_ns, 5000);
        assert_eq!(records[0].packet.encode().unwrap(), udp_frame());
        // `data`: the hex frame, decoded as far as it goes.
        assert_eq!(records[1].packet.encode().unwrap(), &udp_frame()[..16]);
        assert_eq!(records[1].packet.layers[0].name(), "ether");
    }

    #[test]
    fn a_line_without_linktype_takes_it_from_its_first_layer() {
        let ip = r#"{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":0,"flags":{"reserved":false,"dont_fragment":false,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]}"#;
        let udp = r#"{"layertype":"Udp","sport":1,"dport":2,"len":"<auto>","chksum":"<auto>"}"#;
        let text = format!(
            "{{\"timestamp_us\":1,\"layers\":[{ip},{udp}]}}\n\
             {{\"timestamp_us\":1,\"linktype\":228,\"layers\":[{ip},{udp}]}}\n\
             {{\"timestamp_us\":1,\"data\":\"4500\"}}\n"
        );
        let linktypes: Vec<u32> = read_all(&text)
            .into_iter()
            .map(|r| r.unwrap().linktype)
            .collect();
        assert_eq!(linktypes, [LINKTYPE_RAW, 228, LINKTYPE_ETHERNET]);
    }

    #[test]
    fn timestamp_ns_is_used_unless_timestamp_us_was_edited() {
        let line =
            |us: u64, ns: u64| format!(r#"{{"timestamp_us":{us},"timestamp_ns":{ns},"data":""}}"#);
        let one = |text: String| read_all(&text).remove(0).unwrap().timestamp_ns;
        assert_eq!(one(line(1_000_001, 1_000_001_999)), 1_000_001_999);
        assert_eq!(one(line(2_000_000, 1_000_001_999)), 2_000_000_000);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_reading_goes_on() {
        let good = capture_dialect_line();
        let text = [
            good.as_str(),
            "{not json",
            "",
            r#"{"timestamp_us":1,"layers":[{"layertype":"ether","dst":"02:00:00:00:00:0A","src":"02:00:00:00:00:01","etype":2048},{"layertype":"Foo"}]}"#,
            r#"{"timestamp_us":1,"layers":[{"layertype":"Udp","sport":70000,"dport":53,"len":8,"chksum":0}]}"#,
            r#"{"timestamp_us":1,"direction":"up","data":"00"}"#,
            r#"{"timestamp_us":1,"data":"0g"}"#,
            r#"[1,2]"#,
            r#"{"direction":"rx","data":"00"}"#,
            good.as_str(),
        ]
        .join("\n");
        let results = read_all(&text);
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        assert!(errors[0].starts_with("line 2: not JSON: "), "{errors:?}");
        assert_eq!(
            errors[1..],
            [
                "line 4: layer 2: unknown layertype `Foo`",
                "line 5: layer 1: Udp: sport: invalid value: integer `70000`, expected u16",
                r#"line 6: direction: expected "rx" or "tx", found "up""#,
                "line 7: data: not a hex digit at position 1",
                "line 8: not a JSON object",
                "line 9: missing field `timestamp_us`",
            ]
        );
        assert_eq!(results.len(), 9);
        assert!(results[0].is_ok() && results[8].is_ok());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_error_not_a_buffer() {
        let long = format!(r#"{{"timestamp_us":1,"data":"{}"}}"#, "00".repeat(600));
        let text = format!("{long}\n{}\n", r#"{"timestamp_us":2,"data":"00"}"#);
        let results: Vec<_> = Reader::with_max_line(text.as_bytes(), 1000).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(
            results[0].as_ref().unwrap_err().to_string(),
            "line 1: longer than 1000 bytes"
        );
        assert_eq!(results[1].as_ref().unwrap().timestamp_ns, 2000);
    }

    #[test]
    fn random_and_truncated_json_never_panics() {
        // xorshift64*: deterministic, so a failure reproduces.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let seed = capture_dialect_line();
        let alphabet = br#"{}[]":,0123456789.-eE<>autoandomlyr xtf"#;
        for round in 0..5000 {
            let mut line = seed.clone().into_bytes();
            if round % 3 == 0 {
                line.truncate((next() as usize) % (line.len() + 1));
            } else {
                for _ in 0..1 + next() % 6 {
                    let at = (next() as usize) % line.len();
                    line[at] = alphabet[(next() as usize) % alphabet.len()];
                }
            }
            let mut text = line;
            text.push(b'\n');
            for record in Reader::new(&text[..]).flatten() {
                // Whatever reads must also encode or say why.
                let _ = record.packet.encode();
            }
        }
        let garbage: Vec<u8> = (0..20_000).map(|_| next() as u8).collect();
        for result in Reader::with_max_line(&garbage[..], 512) {
            assert!(result.is_err());
        }
    }
}
