//! What the packet editor (`oside`) knows of packets and files: loading a
//! capture or JSONL file whole (bounded), saving it back in its format,
//! a layer's fields in their JSON order, setting one, the layers it can
//! add, and a packet's one-line summary.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::files::{sniff, AtomicFile, Format, SaveError};
use crate::jsonl::{self, Direction, ReadError, Record};
use crate::layers::{
    self, Dialect, EncodeError, Layer, LayerError, Packet, LINKTYPE_ETHERNET, LINKTYPE_RAW,
};
use crate::pcap::{self, FileError, PacketReader};
use crate::pcap_writer::{PcapNgWriter, PcapWriter, TsResolution};

/// Bounds on what is read into memory.
pub const MAX_PACKETS: usize = 100_000;
pub const MAX_BYTES: u64 = 64 << 20;

/// Why a file could not be loaded or saved (the caller names the file).
#[derive(Debug, Error)]
pub enum EditFileError {
    #[error("is a directory")]
    IsADirectory,
    #[error("{0} bytes, more than the {mib} MiB oside takes", mib = MAX_BYTES >> 20)]
    TooLarge(u64),
    #[error("more than {MAX_PACKETS} packets: not opened")]
    TooMany,
    #[error("not a JSONL packet file: {0}")]
    NotJsonl(ReadError),
    #[error("{0}")]
    Capture(FileError),
    #[error("{}", crate::io_error(.0))]
    Io(std::io::Error),
    #[error("packet {0}: {1}")]
    Encode(usize, EncodeError),
    #[error("packet {packet} has link type {linktype}, packet 1 {first}: a pcap file has one")]
    LinkTypes {
        packet: usize,
        linktype: u32,
        first: u32,
    },
    #[error("{0}")]
    Save(SaveError),
}

// Plain conversions for `?`: the messages above already hold these errors,
// so they are not also sources (an error chain would say them twice).
impl From<std::io::Error> for EditFileError {
    fn from(e: std::io::Error) -> Self {
        EditFileError::Io(e)
    }
}

impl From<FileError> for EditFileError {
    fn from(e: FileError) -> Self {
        EditFileError::Capture(e)
    }
}

impl From<SaveError> for EditFileError {
    fn from(e: SaveError) -> Self {
        EditFileError::Save(e)
    }
}

/// Reads the whole file; a file that does not exist is an empty JSONL one.
pub fn load(path: &Path) -> Result<(Format, Vec<Record>), EditFileError> {
    let mut file = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Format::Jsonl, Vec::new()))
        }
        other => other?,
    };
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(EditFileError::IsADirectory);
    }
    if meta.len() > MAX_BYTES {
        return Err(EditFileError::TooLarge(meta.len()));
    }
    let mut magic = [0u8; 4];
    let got = file.read(&mut magic)?;
    let format = match sniff(&magic[..got]) {
        Some(Format::Pcap { nanos }) => Format::Pcap { nanos },
        Some(Format::PcapNg) => Format::PcapNg,
        _ => Format::Jsonl,
    };
    let file = File::open(path)?;
    let mut records = Vec::new();
    if format == Format::Jsonl {
        for record in jsonl::Reader::new(BufReader::new(file)) {
            let record = record.map_err(EditFileError::NotJsonl)?;
            if records.len() == MAX_PACKETS {
                return Err(EditFileError::TooMany);
            }
            records.push(record);
        }
    } else {
        let mut reader = PacketReader::new(BufReader::new(file))?;
        while let Some(r) = reader.next_record()? {
            if records.len() == MAX_PACKETS {
                return Err(EditFileError::TooMany);
            }
            records.push(Record {
                timestamp_ns: r.timestamp_ns,
                direction: r.direction.map(|d| match d {
                    pcap::Direction::Inbound => Direction::Rx,
                    pcap::Direction::Outbound => Direction::Tx,
                }),
                ifname: None,
                linktype: r.linktype,
                packet: layers::decode(Dialect::Original, r.linktype, r.data),
                comment: None,
            });
        }
    }
    Ok((format, records))
}

/// The link type a packet's first layer asks for.
pub fn linktype_of(record: &Record) -> u32 {
    match record.packet.layers.first() {
        Some(Layer::Ether(_)) => LINKTYPE_ETHERNET,
        Some(Layer::Ip(_) | Layer::Ipv6(_)) if record.linktype == LINKTYPE_ETHERNET => LINKTYPE_RAW,
        _ => record.linktype,
    }
}

/// Writes every record in `format`, streaming, through a temporary file
/// renamed at the end: a packet that cannot be encoded leaves the file as
/// it was.
pub fn save(path: &Path, format: Format, records: &[Record]) -> Result<usize, EditFileError> {
    let encode = |i: usize, r: &Record| {
        r.packet
            .encode()
            .map_err(|e| EditFileError::Encode(i + 1, e))
    };
    let linktypes: Vec<u32> = records.iter().map(linktype_of).collect();
    if let Format::Pcap { .. } = format {
        if let Some(i) = linktypes.iter().position(|l| *l != linktypes[0]) {
            return Err(EditFileError::LinkTypes {
                packet: i + 1,
                linktype: linktypes[i],
                first: linktypes[0],
            });
        }
    }
    let file = AtomicFile::create(path)?;
    // The writers borrow the file; it is committed once they are done.
    {
        let mut out = BufWriter::new(file.file());
        match format {
            Format::Jsonl => {
                // The original's dialect unless a packet holds more than it shows.
                let dialect = records
                    .iter()
                    .map(jsonl::dialect_of)
                    .max()
                    .unwrap_or_default();
                for (r, linktype) in records.iter().zip(&linktypes) {
                    let record = Record {
                        linktype: *linktype,
                        ..r.clone()
                    };
                    jsonl::write_record(&mut out, &record, dialect)?;
                }
                out.flush()?;
            }
            Format::Pcap { nanos } => {
                let resolution = if nanos {
                    TsResolution::NanoSecond
                } else {
                    TsResolution::MicroSecond
                };
                let linktype = linktypes.first().copied().unwrap_or(LINKTYPE_ETHERNET);
                let mut writer = PcapWriter::new(out, linktype, resolution)?;
                for (i, r) in records.iter().enumerate() {
                    let data = encode(i, r)?;
                    writer.write(r.timestamp_ns, data.len() as u32, &data)?;
                }
                writer.finish()?;
            }
            Format::PcapNg => {
                let mut writer = PcapNgWriter::new(out)?;
                let mut interfaces: Vec<(String, u32)> = Vec::new();
                for (i, (r, linktype)) in records.iter().zip(&linktypes).enumerate() {
                    let data = encode(i, r)?;
                    let key = (
                        r.ifname.clone().unwrap_or_else(|| "oside".into()),
                        *linktype,
                    );
                    let id = match interfaces.iter().position(|k| *k == key) {
                        Some(id) => id as u32,
                        None => {
                            let id = writer.add_interface(&key.0, key.1)?;
                            interfaces.push(key);
                            id
                        }
                    };
                    let direction = r.direction.map(|d| match d {
                        Direction::Rx => pcap::Direction::Inbound,
                        Direction::Tx => pcap::Direction::Outbound,
                    });
                    writer.write(
                        id,
                        r.timestamp_ns,
                        data.len() as u32,
                        &data,
                        direction,
                        r.comment.as_deref(),
                    )?;
                }
                writer.finish()?;
            }
        }
    }
    file.commit()?;
    Ok(records.len())
}

/// A JSON object's keys in the order they were written (serde_json's
/// `Map` sorts them; the struct order is the order users know).
pub struct OrderedObject(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(OrderedObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A layer's fields in their JSON order, without `layertype`.
pub fn layer_fields(layer: &Layer) -> Vec<(String, Value)> {
    let text = serde_json::to_string(layer).unwrap_or_default();
    serde_json::from_str::<OrderedObject>(&text)
        .map(|o| o.0)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "layertype")
        .collect()
}

/// A value as the user reads and types it: strings without quotes.
pub fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The layers `a` adds, with values that make a valid packet as they are:
/// lengths, checksums and protocol numbers `<auto>`, private addresses.
/// ICMP and ICMPv6 come with an echo request body.
pub const NEW_LAYERS: &[(&str, &[&str])] = &[
    (
        "Ethernet",
        &[
            r#"{"layertype":"ether","dst":"02:00:00:00:00:02","src":"02:00:00:00:00:01","etype":"<auto>"}"#,
        ],
    ),
    (
        "IPv4",
        &[
            r#"{"layertype":"Ip","version":4,"ihl":"<auto>","tos":0,"len":"<auto>","id":1,"flags":{"reserved":false,"dont_fragment":true,"more_fragments":false,"fragment_offset":0},"ttl":64,"proto":"<auto>","chksum":"<auto>","src":"10.0.0.1","dst":"10.0.0.2","options":[]}"#,
        ],
    ),
    (
        "IPv6",
        &[
            r#"{"layertype":"Ipv6","version_class":1610612736,"payload_length":"<auto>","next_header":"<auto>","hop_limit":64,"src":"fd00::1","dst":"fd00::2"}"#,
        ],
    ),
    (
        "TCP",
        &[
            r#"{"layertype":"Tcp","sport":1024,"dport":80,"seq":0,"ack":0,"dataofs":"<auto>","reserved":0,"flags":2,"window":65535,"chksum":"<auto>","urgptr":0}"#,
        ],
    ),
    (
        "UDP",
        &[r#"{"layertype":"Udp","sport":1024,"dport":1024,"len":"<auto>","chksum":"<auto>"}"#],
    ),
    (
        "ICMP",
        &[
            r#"{"layertype":"Icmp","typ":"<auto>","code":0,"chksum":"<auto>"}"#,
            r#"{"layertype":"echo","identifier":1,"sequence":1}"#,
        ],
    ),
    (
        "ICMPv6",
        &[
            r#"{"layertype":"Icmpv6","type_":"<auto>","code":0,"checksum":"<auto>"}"#,
            r#"{"layertype":"icmpv6EchoRequest","identifier":1,"sequence":1}"#,
        ],
    ),
    (
        "ARP",
        &[
            r#"{"layertype":"Arp","hwtype":1,"ptype":2048,"hwlen":6,"plen":4,"op":1,"hwsrc":"02:00:00:00:00:01","psrc":"10.0.0.1","hwdst":"00:00:00:00:00:00","pdst":"10.0.0.2"}"#,
        ],
    ),
    ("Raw", &[r#"{"layertype":"raw","data":[]}"#]),
];

/// `layer` with `field` set to `value`, or why not (the model's message:
/// the field and what does not fit).
pub fn with_field(layer: &Layer, field: &str, value: Value) -> Result<Layer, LayerError> {
    let mut obj = match serde_json::to_value(layer) {
        Ok(Value::Object(obj)) => obj,
        _ => Map::new(),
    };
    obj.insert(field.to_string(), value);
    Layer::from_json(&Value::Object(obj))
}

/// After a layer was added or removed behind layer `i`: its EtherType,
/// IP protocol or next header follows the new next layer (`<auto>`), if
/// the packet then encodes; else it keeps its value.
pub fn auto_protocol(packet: &mut Packet, i: usize) {
    let Some(field) = packet.layers[i].next_protocol_field() else {
        return;
    };
    let Ok(auto) = with_field(&packet.layers[i], field, Value::from("<auto>")) else {
        return;
    };
    let old = std::mem::replace(&mut packet.layers[i], auto);
    if packet.encode().is_err() {
        packet.layers[i] = old;
    }
}

/// One line of the packet list: number, time, layers, addresses.
pub fn summary(index: usize, record: &Record) -> String {
    let names: Vec<&str> = record.packet.layers.iter().map(Layer::name).collect();
    let mut text = format!(
        "{:>5} {}.{:06} {}",
        index + 1,
        record.timestamp_ns / 1_000_000_000,
        record.timestamp_ns % 1_000_000_000 / 1000,
        names.join("/")
    );
    for layer in &record.packet.layers {
        let Ok(Value::Object(obj)) = serde_json::to_value(layer) else {
            continue;
        };
        for (from, to) in [("src", "dst"), ("sport", "dport")] {
            if let (Some(a), Some(b)) = (obj.get(from), obj.get(to)) {
                if !matches!(layer, Layer::Ether(_)) {
                    text.push_str(&format!("  {} > {}", shown(a), shown(b)));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_new_layer_is_valid_and_a_full_stack_encodes() {
        for (label, objects) in NEW_LAYERS {
            for object in *objects {
                serde_json::from_str::<Layer>(object).unwrap_or_else(|e| panic!("{label}: {e}"));
            }
        }
        let layer = |i: usize| -> Vec<Layer> {
            NEW_LAYERS[i]
                .1
                .iter()
                .map(|o| serde_json::from_str(o).unwrap())
                .collect()
        };
        for stack in [[0, 1, 3], [0, 2, 4], [0, 1, 5], [0, 2, 6]] {
            let packet = Packet {
                layers: stack.iter().flat_map(|&i| layer(i)).collect(),
            };
            packet.encode().unwrap_or_else(|e| panic!("{stack:?}: {e}"));
        }
    }

    #[test]
    fn the_field_spans_point_at_the_encoded_bytes() {
        let packet = Packet {
            layers: [0, 1, 3]
                .iter()
                .flat_map(|&i| NEW_LAYERS[i].1.iter())
                .map(|o| serde_json::from_str(o).unwrap())
                .collect(),
        };
        let (bytes, starts) = packet.encode_layout().unwrap();
        assert_eq!(starts, vec![0, 14, 34]);
        let dst = packet.layers[1].field_span("dst", 20).unwrap();
        assert_eq!(&bytes[14 + dst.start..14 + dst.end], &[10, 0, 0, 2]);
        let dport = packet.layers[2].field_span("dport", 20).unwrap();
        assert_eq!(
            &bytes[34 + dport.start..34 + dport.end],
            &80u16.to_be_bytes()
        );
    }
}
