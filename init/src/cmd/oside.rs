//! `oside FILE`: the packet editor of the capture → edit → replay loop, on
//! the packet model (its files and fields: the packet crate's `edit.rs`). A JSONL file, or a pcap or
//! pcapng file (saved back in the same format), is read whole; each packet
//! shows as its layers and fields (the timestamp is layer -1) above a hex
//! view of its bytes with the selected field's bytes in reverse video.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{CommandFactory, Parser};
use crossterm::event::{KeyCode, KeyEvent};
use serde_json::Value;

use super::{parse_args, CommandSpec};
use crate::packet::edit::{
    auto_protocol, layer_fields, linktype_of, load, save, shown, summary, with_field, NEW_LAYERS,
};
use crate::packet::files::Format;
use crate::packet::jsonl::{Direction, Record};
use crate::packet::layers::{self, Layer, Packet, LINKTYPE_ETHERNET};
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

enum Mode {
    Browse,
    Edit(LineEdit),
    AddLayer,
    ConfirmQuit,
}

struct Oside {
    name: String,
    path: PathBuf,
    format: Format,
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
            Err(_) => timestamp_fields(record),
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
            let e = e.to_string();
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
        let mut layer_rows: Vec<(String, Vec<(String, Value)>)> =
            vec![("timestamp".into(), timestamp_fields(record))];
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

/// The timestamp "layer"'s fields: the time and the direction.
fn timestamp_fields(record: &Record) -> Vec<(String, Value)> {
    let direction = match record.direction {
        Some(Direction::Rx) => "rx".into(),
        Some(Direction::Tx) => "tx".into(),
        None => Value::Null,
    };
    vec![
        ("timestamp_ns".into(), Value::from(record.timestamp_ns)),
        ("direction".into(), direction),
    ]
}
