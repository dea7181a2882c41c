//! `oside FILE`: the packet editor of the capture → edit → replay loop, on
//! the packet model of `packet/layers.rs`. A JSONL file, or a pcap or
//! pcapng file (saved back in the same format), is read whole; each packet
//! shows as its layers and fields (the timestamp is layer -1) above a hex
//! view of its bytes with the selected field's bytes in reverse video.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{CommandFactory, Parser};
use crossterm::event::{KeyCode, KeyEvent};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{parse_args, CommandSpec};
use crate::packet::jsonl::{self, Direction, Record};
use crate::packet::layers::{self, Dialect, Layer, Packet, LINKTYPE_ETHERNET, LINKTYPE_RAW};
use crate::packet::pcap::{self, PacketReader};
use crate::packet::pcap_writer::{PcapNgWriter, PcapWriter, TsResolution};
use crate::shell::Ctx;
use crate::tui::line_edit::{LineEdit, LineOutcome};
use crate::tui::screen::{Frame, Screen, Style};

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "oside",
    usage: "",
    summary: "packet editor for JSONL, pcap and pcapng files",
    help: "Keys:\n\
           \x20 Up/Down           previous/next layer (the timestamp is layer -1)\n\
           \x20 Left/Right        previous/next field\n\
           \x20 n/p, PgDn/PgUp    next/previous packet\n\
           \x20 e, Enter          edit the field: arrows, Home, End, Delete, Backspace,\n\
           \x20                   Ctrl+A/E/K/U; Enter saves, Esc cancels. Values are\n\
           \x20                   JSON (80, \"<auto>\", {\"reserved\":false,...}) or plain text\n\
           \x20                   (10.0.0.2, 02:00:00:00:00:01, <auto>)\n\
           \x20 a                 add a layer after this one (Ethernet, IPv4, IPv6, TCP,\n\
           \x20                   UDP, ICMP, ICMPv6, ARP, Raw)\n\
           \x20 r                 remove this layer\n\
           \x20 f                 recompute this packet's checksums and lengths\n\
           \x20 d / c             delete / copy this packet\n\
           \x20 s                 save (in the file's own format)\n\
           \x20 q                 quit (asks again when there are unsaved changes)\n\
           A value that does not fit its field is refused with a message. The hex view\n\
           shows the packet as it would be sent, the selected field's bytes highlighted.",
    run: oside_cmd,
    cli: Some(OsideArgs::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "oside",
    override_usage = "oside FILE",
    disable_help_flag = true
)]
struct OsideArgs {
    /// The JSONL, pcap or pcapng file to edit (a new file is JSONL)
    file: String,
}

/// Bounds on what is read into memory.
const MAX_PACKETS: usize = 100_000;
const MAX_BYTES: u64 = 64 << 20;

fn oside_cmd(_ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let args: OsideArgs = parse_args("oside", args)?;
    if args.file.is_empty() {
        return Err(super::usage("FILE is empty"));
    }
    let path = PathBuf::from(&args.file);
    // A bad file is found before the terminal is touched.
    let (format, records) = load(&path).map_err(|e| anyhow!("{}: {e}", args.file))?;
    let mut screen = Screen::open()?;
    let mut oside = Oside {
        name: args.file,
        path,
        format,
        records,
        pkt: 0,
        layer: 0,
        field: 0,
        modified: false,
        message: String::new(),
        mode: Mode::Browse,
    };
    oside.run(&mut screen)?;
    Ok(0)
}

/// The file's format, kept to save it back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Jsonl,
    Pcap { nanos: bool },
    PcapNg,
}

impl FileFormat {
    fn name(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "JSONL",
            FileFormat::Pcap { .. } => "pcap",
            FileFormat::PcapNg => "pcapng",
        }
    }
}

/// Reads the whole file; a file that does not exist is an empty JSONL one.
fn load(path: &Path) -> Result<(FileFormat, Vec<Record>), String> {
    let io = |e: std::io::Error| crate::util::io_error(&e);
    let mut file = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileFormat::Jsonl, Vec::new()))
        }
        other => other.map_err(io)?,
    };
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.len() > MAX_BYTES {
        return Err(format!(
            "{} bytes, more than the {} MiB oside takes",
            meta.len(),
            MAX_BYTES >> 20
        ));
    }
    let mut magic = [0u8; 4];
    let got = file.read(&mut magic).map_err(io)?;
    let format = match u32::from_le_bytes(magic) {
        _ if got < 4 => FileFormat::Jsonl,
        0x0a0d_0d0a => FileFormat::PcapNg,
        0xa1b2_c3d4 | 0xd4c3_b2a1 => FileFormat::Pcap { nanos: false },
        0xa1b2_3c4d | 0x4d3c_b2a1 => FileFormat::Pcap { nanos: true },
        _ => FileFormat::Jsonl,
    };
    let file = File::open(path).map_err(io)?;
    let too_many = || format!("more than {MAX_PACKETS} packets: not opened");
    let mut records = Vec::new();
    if format == FileFormat::Jsonl {
        for record in jsonl::Reader::new(BufReader::new(file)) {
            let record = record.map_err(|e| format!("not a JSONL packet file: {e}"))?;
            if records.len() == MAX_PACKETS {
                return Err(too_many());
            }
            records.push(record);
        }
    } else {
        let mut reader = PacketReader::new(BufReader::new(file)).map_err(|e| e.to_string())?;
        while let Some(r) = reader.next_record().map_err(|e| e.to_string())? {
            if records.len() == MAX_PACKETS {
                return Err(too_many());
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
fn linktype_of(record: &Record) -> u32 {
    match record.packet.layers.first() {
        Some(Layer::Ether(_)) => LINKTYPE_ETHERNET,
        Some(Layer::Ip(_) | Layer::Ipv6(_)) if record.linktype == LINKTYPE_ETHERNET => LINKTYPE_RAW,
        _ => record.linktype,
    }
}

/// Writes every record in `format`. Everything is encoded first, so a
/// packet that cannot be leaves the file as it was.
fn save(path: &Path, format: FileFormat, records: &[Record]) -> Result<usize, String> {
    let mut frames = Vec::with_capacity(records.len());
    if format != FileFormat::Jsonl {
        for (i, r) in records.iter().enumerate() {
            frames.push(
                r.packet
                    .encode()
                    .map_err(|e| format!("packet {}: {e}", i + 1))?,
            );
        }
    }
    let linktypes: Vec<u32> = records.iter().map(linktype_of).collect();
    if let FileFormat::Pcap { .. } = format {
        if let Some(i) = linktypes.iter().position(|l| *l != linktypes[0]) {
            return Err(format!(
                "packet {} has link type {}, packet 1 {}: a pcap file has one",
                i + 1,
                linktypes[i],
                linktypes[0]
            ));
        }
    }
    let io = |e: std::io::Error| crate::util::io_error(&e);
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    match format {
        FileFormat::Jsonl => {
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
                jsonl::write_record(&mut out, &record, dialect).map_err(io)?;
            }
            out.flush().map_err(io)?;
        }
        FileFormat::Pcap { nanos } => {
            let resolution = if nanos {
                TsResolution::NanoSecond
            } else {
                TsResolution::MicroSecond
            };
            let linktype = linktypes.first().copied().unwrap_or(LINKTYPE_ETHERNET);
            let mut writer = PcapWriter::new(out, linktype, resolution).map_err(io)?;
            for (r, data) in records.iter().zip(&frames) {
                writer
                    .write(r.timestamp_ns, data.len() as u32, data)
                    .map_err(io)?;
            }
            writer.finish().map_err(io)?;
        }
        FileFormat::PcapNg => {
            let mut writer = PcapNgWriter::new(out).map_err(io)?;
            let mut interfaces: Vec<(String, u32)> = Vec::new();
            for ((r, data), linktype) in records.iter().zip(&frames).zip(&linktypes) {
                let key = (
                    r.ifname.clone().unwrap_or_else(|| "oside".into()),
                    *linktype,
                );
                let id = match interfaces.iter().position(|k| *k == key) {
                    Some(id) => id as u32,
                    None => {
                        let id = writer.add_interface(&key.0, key.1).map_err(io)?;
                        interfaces.push(key);
                        id
                    }
                };
                let direction = r.direction.map(|d| match d {
                    Direction::Rx => pcap::Direction::Inbound,
                    Direction::Tx => pcap::Direction::Outbound,
                });
                writer
                    .write(
                        id,
                        r.timestamp_ns,
                        data.len() as u32,
                        data,
                        direction,
                        r.comment.as_deref(),
                    )
                    .map_err(io)?;
            }
            writer.finish().map_err(io)?;
        }
    }
    Ok(records.len())
}

/// A JSON object's keys in the order they were written (serde_json's
/// `Map` sorts them; the struct order is the order users know).
struct OrderedObject(Vec<(String, Value)>);

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
fn layer_fields(layer: &Layer) -> Vec<(String, Value)> {
    let text = serde_json::to_string(layer).unwrap_or_default();
    serde_json::from_str::<OrderedObject>(&text)
        .map(|o| o.0)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "layertype")
        .collect()
}

/// A value as the user reads and types it: strings without quotes.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The layers `a` adds, with values that make a valid packet as they are:
/// lengths, checksums and protocol numbers `<auto>`, private addresses.
/// ICMP and ICMPv6 come with an echo request body.
const NEW_LAYERS: &[(&str, &[&str])] = &[
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
fn with_field(layer: &Layer, field: &str, value: Value) -> Result<Layer, String> {
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
fn auto_protocol(packet: &mut Packet, i: usize) {
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

enum Mode {
    Browse,
    Edit(LineEdit),
    AddLayer,
    ConfirmQuit,
}

struct Oside {
    name: String,
    path: PathBuf,
    format: FileFormat,
    records: Vec<Record>,
    /// The selection: packet, layer (-1: the timestamp) and field.
    pkt: usize,
    layer: isize,
    field: usize,
    modified: bool,
    message: String,
    mode: Mode,
}

impl Oside {
    fn run(&mut self, screen: &mut Screen) -> anyhow::Result<()> {
        loop {
            self.clamp();
            let frame = self.render(screen.size());
            screen.draw(&frame)?;
            let Some(key) = screen.next_key()? else {
                continue;
            };
            if self.key(&key) {
                return Ok(());
            }
        }
    }

    fn record(&self) -> Option<&Record> {
        self.records.get(self.pkt)
    }

    /// The selected layer's fields: for the timestamp, its own two.
    fn fields(&self) -> Vec<(String, Value)> {
        let Some(record) = self.record() else {
            return Vec::new();
        };
        match usize::try_from(self.layer) {
            Err(_) => vec![
                ("timestamp_ns".into(), Value::from(record.timestamp_ns)),
                (
                    "direction".into(),
                    match record.direction {
                        Some(Direction::Rx) => "rx".into(),
                        Some(Direction::Tx) => "tx".into(),
                        None => Value::Null,
                    },
                ),
            ],
            Ok(i) => record
                .packet
                .layers
                .get(i)
                .map(layer_fields)
                .unwrap_or_default(),
        }
    }

    /// Keeps the selection inside what exists.
    fn clamp(&mut self) {
        self.pkt = self.pkt.min(self.records.len().saturating_sub(1));
        let layers = self.record().map_or(0, |r| r.packet.layers.len()) as isize;
        self.layer = self.layer.clamp(-1, (layers - 1).max(-1));
        self.field = self.field.min(self.fields().len().saturating_sub(1));
    }

    /// Handles a key; true when oside is done.
    fn key(&mut self, key: &KeyEvent) -> bool {
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Edit(mut line) => {
                match line.key(key) {
                    LineOutcome::Editing => self.mode = Mode::Edit(line),
                    LineOutcome::Cancelled => self.message = "not changed".into(),
                    LineOutcome::Done(text) => match self.set_field(&text) {
                        Ok(()) => {
                            self.modified = true;
                            self.message.clear();
                        }
                        Err(e) => {
                            self.message = format!("not changed: {e}");
                            self.mode = Mode::Edit(line);
                        }
                    },
                }
                return false;
            }
            Mode::AddLayer => {
                match key.code {
                    KeyCode::Char(c @ '1'..='9') => self.add_layer(c as usize - '1' as usize),
                    _ => self.message = "no layer added".into(),
                }
                return false;
            }
            Mode::ConfirmQuit => {
                if key.code == KeyCode::Char('q') {
                    return true;
                }
                self.message = "quit cancelled".into();
                return false;
            }
            Mode::Browse => {}
        }
        self.message.clear();
        let layers = self.record().map_or(0, |r| r.packet.layers.len()) as isize;
        match key.code {
            // A new layer starts at its first field.
            KeyCode::Up => {
                self.layer = (self.layer - 1).max(-1);
                self.field = 0;
            }
            KeyCode::Down => {
                self.layer = (self.layer + 1).min(layers - 1).max(-1);
                self.field = 0;
            }
            KeyCode::Left => self.field = self.field.saturating_sub(1),
            KeyCode::Right => self.field += 1,
            KeyCode::Char('n') | KeyCode::PageDown => self.pkt += 1,
            KeyCode::Char('p') | KeyCode::PageUp => self.pkt = self.pkt.saturating_sub(1),
            KeyCode::Char('e') | KeyCode::Enter => match self.fields().get(self.field) {
                Some((_, value)) => self.mode = Mode::Edit(LineEdit::new(&shown(value))),
                None => self.message = "no field to edit here".into(),
            },
            KeyCode::Char('a') => {
                self.mode = Mode::AddLayer;
            }
            KeyCode::Char('r') => self.remove_layer(),
            KeyCode::Char('f') => self.fix(),
            KeyCode::Char('d') => {
                if self.records.is_empty() {
                    self.message = "no packet to delete".into();
                } else {
                    self.records.remove(self.pkt);
                    self.modified = true;
                    self.message = format!("packet {} deleted", self.pkt + 1);
                }
            }
            KeyCode::Char('c') => match self.record().cloned() {
                Some(copy) => {
                    self.records.insert(self.pkt + 1, copy);
                    self.pkt += 1;
                    self.modified = true;
                    self.message = format!("copied as packet {}", self.pkt + 1);
                }
                None => self.message = "no packet to copy".into(),
            },
            KeyCode::Char('s') => {
                self.message = match save(&self.path, self.format, &self.records) {
                    Ok(n) => {
                        self.modified = false;
                        format!(
                            "saved {n} packets to {} ({})",
                            self.name,
                            self.format.name()
                        )
                    }
                    Err(e) => format!("not saved: {e}"),
                }
            }
            KeyCode::Char('q') => {
                if !self.modified {
                    return true;
                }
                self.mode = Mode::ConfirmQuit;
                self.message =
                    "unsaved changes: q again quits without saving, any other key goes back".into();
            }
            _ => {}
        }
        false
    }

    /// Sets the selected field from what the user typed: JSON, or else
    /// the text as a JSON string.
    fn set_field(&mut self, text: &str) -> Result<(), String> {
        let (name, _) = self
            .fields()
            .get(self.field)
            .cloned()
            .ok_or("no field here")?;
        let text = text.trim();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()));
        let (pkt, layer) = (self.pkt, self.layer);
        let record = self.records.get_mut(pkt).ok_or("no packet")?;
        let Ok(i) = usize::try_from(layer) else {
            match name.as_str() {
                "timestamp_ns" => {
                    record.timestamp_ns = value
                        .as_u64()
                        .ok_or("timestamp_ns: nanoseconds since 1970, a whole number")?
                }
                _ => {
                    record.direction = match value.as_str() {
                        Some("rx") => Some(Direction::Rx),
                        Some("tx") => Some(Direction::Tx),
                        _ if value.is_null() || value.as_str() == Some("") => None,
                        _ => return Err("direction: rx, tx or null".into()),
                    }
                }
            }
            return Ok(());
        };
        let new = with_field(&record.packet.layers[i], &name, value).map_err(|e| {
            // serde's "invalid value: integer `300`, expected u8" is a
            // number too big for its field: say so first.
            match e
                .split_once("invalid value: integer")
                .and(e.rsplit_once("expected "))
            {
                Some((_, width)) => {
                    format!("{text} does not fit {name} (a {width}): {e}")
                }
                None => e,
            }
        })?;
        let mut packet = record.packet.clone();
        packet.layers[i] = new;
        packet.encode().map_err(|e| e.to_string())?;
        record.packet = packet;
        Ok(())
    }

    fn add_layer(&mut self, choice: usize) {
        let Some((label, objects)) = NEW_LAYERS.get(choice) else {
            self.message = "no layer added".into();
            return;
        };
        if self.records.is_empty() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            self.records.push(Record {
                timestamp_ns: now,
                direction: None,
                ifname: None,
                linktype: LINKTYPE_ETHERNET,
                packet: Packet::default(),
                comment: None,
            });
            self.pkt = 0;
            self.layer = -1;
        }
        let at = (self.layer + 1) as usize;
        let record = &mut self.records[self.pkt];
        for (n, object) in objects.iter().enumerate() {
            let layer: Layer =
                serde_json::from_str(object).expect("the new-layer table is valid JSON");
            record.packet.layers.insert(at + n, layer);
        }
        if at > 0 {
            auto_protocol(&mut record.packet, at - 1);
        }
        self.layer = at as isize;
        self.field = 0;
        self.modified = true;
        self.message = format!("{label} added as layer {at}");
    }

    fn remove_layer(&mut self) {
        let Ok(i) = usize::try_from(self.layer) else {
            self.message = "the timestamp is not a layer that can be removed".into();
            return;
        };
        let Some(record) = self.records.get_mut(self.pkt) else {
            return;
        };
        if i < record.packet.layers.len() {
            let removed = record.packet.layers.remove(i);
            if i > 0 {
                auto_protocol(&mut record.packet, i - 1);
            }
            self.modified = true;
            self.message = format!("{} removed", removed.name());
        }
    }

    /// `f`: lengths and checksums set to `<auto>`, encoded, decoded back.
    fn fix(&mut self) {
        let Some(record) = self.records.get_mut(self.pkt) else {
            self.message = "no packet".into();
            return;
        };
        let mut packet = record.packet.clone();
        for layer in &mut packet.layers {
            for field in layer.computed_fields() {
                if let Ok(auto) = with_field(layer, field, Value::from("<auto>")) {
                    *layer = auto;
                }
            }
        }
        match packet.encode() {
            Ok(bytes) => {
                let linktype = linktype_of(record);
                record.packet = layers::decode(record.packet.dialect(), linktype, &bytes);
                self.modified = true;
                self.message = "checksums and lengths recomputed".into();
            }
            Err(e) => self.message = format!("cannot recompute: {e}"),
        }
    }

    fn render(&self, (width, height): (u16, u16)) -> Frame {
        let mut frame = Frame::new((width, height));
        let w = usize::from(width);
        // Rows: title, packet list, separator, fields, separator, hex, message.
        let avail = usize::from(height).saturating_sub(4).max(3);
        let list_rows = self.records.len().clamp(1, (avail / 5).max(1));
        let hex_rows = (avail * 2 / 5).max(1);
        let field_rows = avail.saturating_sub(list_rows + hex_rows).max(1);
        let title = format!(
            " oside {} ({})  packet {}/{}{}",
            self.name,
            self.format.name(),
            if self.records.is_empty() {
                0
            } else {
                self.pkt + 1
            },
            self.records.len(),
            if self.modified { "  [modified]" } else { "" }
        );
        frame.text(0, 0, &title, Style::Reverse);
        frame.style_row(0, Style::Reverse);
        let mut y = 1u16;
        let list_top = (self.pkt + 1).saturating_sub(list_rows);
        if self.records.is_empty() {
            frame.text(
                2,
                y,
                "no packets: a adds a layer to a new packet",
                Style::Normal,
            );
        }
        for (i, record) in self
            .records
            .iter()
            .enumerate()
            .skip(list_top)
            .take(list_rows)
        {
            let style = if i == self.pkt {
                Style::Reverse
            } else {
                Style::Normal
            };
            frame.text(0, y + (i - list_top) as u16, &summary(i, record), style);
        }
        y += list_rows as u16;
        frame.text(0, y, &"-".repeat(w), Style::Normal);
        y += 1;
        let lines = self.field_lines(w);
        let current = lines.iter().position(|l| l.1).unwrap_or(0);
        let first = (current + 1).saturating_sub(field_rows);
        for (n, (spans, _)) in lines.iter().skip(first).take(field_rows).enumerate() {
            let mut x = 0;
            for (text, style) in spans {
                x = frame.text(x, y + n as u16, text, *style);
            }
        }
        y += field_rows as u16;
        frame.text(0, y, &"-".repeat(w), Style::Normal);
        y += 1;
        self.render_hex(&mut frame, y, hex_rows);
        let bottom = height.saturating_sub(1);
        match &self.mode {
            Mode::Edit(line) => {
                let name = self
                    .fields()
                    .get(self.field)
                    .map(|f| f.0.clone())
                    .unwrap_or_default();
                let prompt = format!("{name}: ");
                let x = frame.text(0, bottom, &prompt, Style::Bold);
                line.draw(&mut frame, x, bottom, width.saturating_sub(x + 1));
                if !self.message.is_empty() {
                    // The refusal stays in view above the line being fixed.
                    frame.text(0, bottom.saturating_sub(1), &self.message, Style::Bold);
                }
            }
            Mode::AddLayer => {
                let menu: Vec<String> = NEW_LAYERS
                    .iter()
                    .enumerate()
                    .map(|(i, (label, _))| format!("{} {label}", i + 1))
                    .collect();
                frame.text(
                    0,
                    bottom,
                    &format!("add layer: {}  (Esc: none)", menu.join("  ")),
                    Style::Bold,
                );
            }
            _ => {
                let text = if self.message.is_empty() {
                    "arrows move  e edit  a add  r remove  f fix  n/p packet  d delete  c copy  s save  q quit"
                } else {
                    &self.message
                };
                frame.text(0, bottom, text, Style::Normal);
            }
        }
        frame
    }

    /// The timestamp and each layer as `name: field=value ...`, wrapped to
    /// `width`; the selected field in reverse. Each line says whether it
    /// holds the selection.
    fn field_lines(&self, width: usize) -> Vec<(Vec<(String, Style)>, bool)> {
        let Some(record) = self.record() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let mut layer_rows: Vec<(String, Vec<(String, Value)>)> = vec![(
            "timestamp".into(),
            vec![
                ("timestamp_ns".into(), Value::from(record.timestamp_ns)),
                (
                    "direction".into(),
                    match record.direction {
                        Some(Direction::Rx) => "rx".into(),
                        Some(Direction::Tx) => "tx".into(),
                        None => Value::Null,
                    },
                ),
            ],
        )];
        for layer in &record.packet.layers {
            layer_rows.push((layer.name().to_string(), layer_fields(layer)));
        }
        for (index, (name, fields)) in layer_rows.into_iter().enumerate() {
            let is_layer = index as isize - 1 == self.layer;
            let head = format!("{}{name}:", if is_layer { "> " } else { "  " });
            let mut spans = vec![(head.clone(), Style::Bold)];
            let mut col = head.chars().count();
            let mut selected = false;
            for (f, (key, value)) in fields.iter().enumerate() {
                let token = format!("{key}={}", shown(value));
                let len = token.chars().count() + 1;
                if col + len > width && col > 4 {
                    lines.push((std::mem::take(&mut spans), selected));
                    spans.push(("    ".into(), Style::Normal));
                    col = 4;
                    selected = false;
                }
                spans.push((" ".into(), Style::Normal));
                let is_field = is_layer && f == self.field;
                selected |= is_field;
                spans.push((
                    token,
                    if is_field {
                        Style::Reverse
                    } else {
                        Style::Normal
                    },
                ));
                col += len;
            }
            lines.push((spans, selected || (is_layer && fields.is_empty())));
        }
        lines
    }

    fn render_hex(&self, frame: &mut Frame, y: u16, rows: usize) {
        let Some(record) = self.record() else {
            return;
        };
        let (bytes, starts) = match record.packet.encode_layout() {
            Ok(layout) => layout,
            Err(e) => {
                frame.text(0, y, &format!("cannot encode: {e}"), Style::Bold);
                return;
            }
        };
        let highlight = usize::try_from(self.layer).ok().and_then(|i| {
            let start = *starts.get(i)?;
            let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
            let layer = record.packet.layers.get(i)?;
            let (name, _) = self.fields().get(self.field)?.clone();
            layer
                .field_span(&name, end - start)
                .map(|r| start + r.start..start + r.end)
        });
        let total_rows = bytes.len().div_ceil(16);
        let first = match &highlight {
            Some(r) if r.start / 16 >= rows => (r.start / 16 + 1 - rows).min(total_rows),
            _ => 0,
        };
        for (n, chunk) in bytes.chunks(16).skip(first).take(rows).enumerate() {
            let row = first + n;
            let yy = y + n as u16;
            let mut x = frame.text(0, yy, &format!("{:04x}  ", row * 16), Style::Normal);
            let lit = |i: usize| {
                if highlight
                    .as_ref()
                    .is_some_and(|r| r.contains(&(row * 16 + i)))
                {
                    Style::Reverse
                } else {
                    Style::Normal
                }
            };
            for (i, b) in chunk.iter().enumerate() {
                x = frame.text(x, yy, &format!("{b:02x}"), lit(i));
                x = frame.text(x, yy, " ", Style::Normal);
            }
            x = 6 + 16 * 3 + 1;
            for (i, b) in chunk.iter().enumerate() {
                let c = if b.is_ascii_graphic() {
                    *b as char
                } else {
                    '.'
                };
                x = frame.text(x, yy, &c.to_string(), lit(i));
            }
        }
    }
}

/// One line of the packet list: number, time, layers, addresses.
fn summary(index: usize, record: &Record) -> String {
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
