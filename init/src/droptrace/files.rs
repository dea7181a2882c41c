//! `droptrace save`: the kept drops written as JSONL (ours: each drop with
//! its packet decoded by the packet model) or pcapng (the packets, each
//! with a comment saying why it was dropped). Streamed record by record
//! through the packet crate's `AtomicFile`: nothing is built whole in
//! memory, and a failed save leaves the file as it was.

use std::io::{BufWriter, Write};

use anyhow::Context as _;

use super::event::{DropFilter, DropRecord};
use super::job::monotonic_to_epoch_ns;
use super::store::DropStore;
use crate::packet::files::{AtomicFile, SaveError};
use crate::packet::layers::{decode, Dialect};
use crate::packet::pcap_writer::PcapNgWriter;

fn cannot_save(path: &str, e: &SaveError) -> anyhow::Error {
    anyhow::anyhow!("{path}: cannot write: {}", e.reason())
}

/// The drops `filter` keeps, one JSON object a line; how many.
pub fn save_jsonl(s: &mut DropStore, filter: &DropFilter, path: &str) -> anyhow::Result<usize> {
    let cannot = || format!("{path}: cannot write");
    let events = s.decoded_kept(filter);
    /// A saved drop: the record, then its wall-clock time (`time_ns` is the
    /// monotonic clock's, since boot), as capture's JSONL has it.
    #[derive(serde::Serialize)]
    struct Saved<'a> {
        #[serde(flatten)]
        record: &'a DropRecord,
        timestamp_ns: u64,
    }
    let to_epoch = monotonic_to_epoch_ns();
    let file = AtomicFile::create(path).map_err(|e| cannot_save(path, &e))?;
    {
        let mut out = BufWriter::new(file.file());
        for (mut r, index) in events.iter().cloned() {
            // With --snaplen: the packet's bytes, decoded with the packet model.
            if let Some(p) = s.events.get(index).and_then(|k| s.packet(k)) {
                let packet = r.packet.get_or_insert_with(Default::default);
                // droptrace's JSONL is ours, not the original's: the full dialect.
                packet.layers = Some(decode(Dialect::Full, p.linktype, p.data).layers);
                packet.linktype = Some(p.linktype);
                packet.caplen = Some(p.data.len() as u32);
                packet.wire_len = Some(p.original_len);
            }
            let saved = Saved {
                record: &r,
                timestamp_ns: r.time_ns + to_epoch,
            };
            serde_json::to_writer(&mut out, &saved).with_context(cannot)?;
            out.write_all(b"\n").with_context(cannot)?;
        }
        out.flush().with_context(cannot)?;
    }
    file.commit().map_err(|e| cannot_save(path, &e))?;
    Ok(events.len())
}

/// The kept packets `filter` keeps as pcapng: one interface per
/// (namespace, device, link type), each packet's comment saying why it was
/// dropped; (packets written, drops without packet bytes).
pub fn save_pcapng(
    s: &mut DropStore,
    filter: &DropFilter,
    path: &str,
) -> anyhow::Result<(usize, usize)> {
    let cannot = || format!("{path}: cannot write");
    let events = s.decoded_kept(filter);
    // The kernel's monotonic clock to the epoch, for the packets' times.
    let to_epoch = monotonic_to_epoch_ns();
    let file = AtomicFile::create(path).map_err(|e| cannot_save(path, &e))?;
    let mut w = PcapNgWriter::new(BufWriter::new(file.file())).with_context(cannot)?;
    let mut interfaces = std::collections::HashMap::new();
    let (mut written, mut without) = (0usize, 0usize);
    for (r, index) in &events {
        let Some(p) = s.events.get(*index).and_then(|k| s.packet(k)) else {
            without += 1;
            continue;
        };
        let key = (r.netns, r.ifindex, p.linktype);
        let interface = match interfaces.get(&key) {
            Some(id) => *id,
            None => {
                let id = w
                    .describe_interface(r.dev.as_deref(), p.linktype)
                    .with_context(cannot)?;
                interfaces.insert(key, id);
                id
            }
        };
        let comment = format!(
            "reason={} location={} dev={} netns={} task={}[{}] cpu={}",
            r.reason,
            r.location,
            r.dev.as_deref().unwrap_or("?"),
            r.netns.map_or("?".into(), |n| n.to_string()),
            r.comm,
            r.pid,
            r.cpu
        );
        w.write(
            interface,
            r.time_ns + to_epoch,
            p.original_len,
            p.data,
            None,
            Some(&comment),
        )
        .with_context(cannot)?;
        written += 1;
    }
    w.finish().with_context(cannot)?;
    file.commit().map_err(|e| cannot_save(path, &e))?;
    Ok((written, without))
}
