//! What `show`, `summary` and `save` read: the last N drops of the current
//! (or last) run, the counts over the whole run and the lost count. The
//! process state (`State::drops`) owns it and the running job shares it, so
//! results stay readable after `stop`.
//!
//! At line rate the per-drop work here is the tracer's cost: eBPF drops are
//! kept as the raw records the kernel wrote (a copy, no allocation), counted
//! under integer keys (reason number, location address) and decoded into
//! names only when `show`, `save`, `summary` or `watch` display them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use myinit_common::droptrace::{DropEvent, DropSummaryKey, DROP_HAS_PACKET, DROP_HAS_STACK};
use tokio::sync::broadcast;

use super::ebpf::Stacks;
use super::event::{Decoder, DropFilter, DropRecord, RawFilter};

/// Default number of drops kept for `show` (`start --keep N` changes it).
pub const DEFAULT_KEEP: usize = 1000;

/// One kept drop: the eBPF record as the kernel wrote it (and the slot of
/// its packet bytes in the store's `PacketSlab`), or what the ftrace
/// backend parsed from text (decoded already: it arrives as text).
#[derive(Clone, Debug)]
pub enum Kept {
    Raw(DropEvent, u32),
    Text(Arc<DropRecord>),
}

/// The packet bytes of the kept drops (`--snaplen`): `keep` slots of
/// `snaplen` bytes in one buffer, reused in the order drops are evicted, so
/// keeping a packet allocates nothing once the buffer has grown.
#[derive(Debug, Default)]
struct PacketSlab {
    snaplen: usize,
    keep: usize,
    bytes: Vec<u8>,
    /// The slot the next kept drop takes.
    next: usize,
}

impl PacketSlab {
    /// Stores `data` (at most `snaplen` bytes) and returns its slot.
    fn put(&mut self, data: &[u8]) -> u32 {
        let slot = self.next;
        self.next = (self.next + 1) % self.keep.max(1);
        let at = slot * self.snaplen;
        let n = data.len().min(self.snaplen);
        if self.bytes.len() < at + self.snaplen {
            self.bytes.resize(at + self.snaplen, 0);
        }
        self.bytes[at..at + n].copy_from_slice(&data[..n]);
        slot as u32
    }

    fn get(&self, slot: u32, len: usize) -> &[u8] {
        let at = slot as usize * self.snaplen;
        self.bytes
            .get(at..at + len.min(self.snaplen))
            .unwrap_or_default()
    }
}

/// The bytes of a dropped packet, as `--snaplen` kept them.
pub struct PacketBytes<'a> {
    /// A pcap link type: Ethernet when they start at an Ethernet header,
    /// raw IP when at the network header.
    pub linktype: u32,
    pub data: &'a [u8],
    /// The packet's length from where `data` starts.
    pub original_len: u32,
}

pub struct DropStore {
    pub events: VecDeque<Kept>,
    pub keep: usize,
    /// Events the backend delivered (before the filter).
    pub captured: u64,
    /// Events that passed the filter (kept, possibly evicted since).
    pub matched: u64,
    /// Events the backend could not deliver (ring full, ftrace overrun,
    /// summary map full).
    pub lost: u64,
    /// e.g. "ebpf (tp_btf/kfree_skb)"; empty before the first start.
    pub backend: String,
    pub filter: DropFilter,
    /// The run's pcap-filter expression, run in the kernel.
    pub expr: Option<String>,
    /// `filter` in the raw records' terms (reason number, device bytes).
    raw_filter: RawFilter,
    pub running: bool,
    /// Stop after this many matched drops (`start COUNT`).
    pub limit: Option<u64>,
    /// eBPF drops by reason number and location address.
    by_reason_code: HashMap<u32, u64>,
    by_location_addr: HashMap<u64, u64>,
    /// The run of drops with the same (reason, location) not yet added to
    /// the two maps: a flood repeats one pair, so most drops cost a compare
    /// instead of two hash-map updates.
    pending: Option<(u32, u64, u64)>,
    /// Indices of a batch's matched drops (reused: no allocation per batch).
    batch: Vec<usize>,
    /// ftrace drops by name (its text has names already).
    by_reason_name: HashMap<String, u64>,
    by_location_name: HashMap<String, u64>,
    /// `start --summary`: only the kernel's counts are kept, no drops.
    pub summary_mode: bool,
    /// The kernel's counts (summary mode), as last read.
    pub kernel_counts: Vec<(DropSummaryKey, u64)>,
    /// Names for the raw records of this run (reasons, kallsyms).
    pub decoder: Option<Decoder>,
    /// CLOCK_MONOTONIC nanoseconds at `start`: TIME is relative to it.
    pub started_ns: u64,
    /// `--stack`: the run's stack map, its lost count, drops per stack id.
    pub stacks: Option<Stacks>,
    pub stack_on: bool,
    pub stacks_lost: u64,
    by_stack: HashMap<u32, u64>,
    /// `--snaplen`: the kept drops' packet bytes.
    packets: PacketSlab,
}

impl DropStore {
    fn new() -> Self {
        DropStore {
            events: VecDeque::new(),
            keep: DEFAULT_KEEP,
            captured: 0,
            matched: 0,
            lost: 0,
            backend: String::new(),
            filter: DropFilter::default(),
            expr: None,
            raw_filter: RawFilter::default(),
            running: false,
            limit: None,
            by_reason_code: HashMap::new(),
            by_location_addr: HashMap::new(),
            pending: None,
            batch: Vec::new(),
            by_reason_name: HashMap::new(),
            by_location_name: HashMap::new(),
            summary_mode: false,
            kernel_counts: Vec::new(),
            decoder: None,
            started_ns: 0,
            stacks: None,
            stack_on: false,
            stacks_lost: 0,
            by_stack: HashMap::new(),
            packets: PacketSlab::default(),
        }
    }

    /// Forgets the drops and counts (not the running state or settings).
    pub fn clear(&mut self) {
        self.events.clear();
        self.captured = 0;
        self.matched = 0;
        self.lost = 0;
        self.by_reason_code.clear();
        self.by_location_addr.clear();
        self.pending = None;
        self.by_reason_name.clear();
        self.by_location_name.clear();
        self.kernel_counts.clear();
        self.stacks_lost = 0;
        self.by_stack.clear();
        self.packets.next = 0;
    }

    /// Sets `--snaplen` for a new run (0: no packet bytes), and how many
    /// packets the slab holds (`keep`, set first).
    pub fn set_snaplen(&mut self, snaplen: usize) {
        self.packets = PacketSlab {
            snaplen,
            keep: self.keep,
            bytes: Vec::new(),
            next: 0,
        };
    }

    /// Packet bytes per kept drop in this run (0: `--snaplen` was not given).
    pub fn snaplen(&self) -> usize {
        self.packets.snaplen
    }

    /// The lost counts as the footer and the stop report print them.
    pub fn lost_text(&self) -> String {
        if self.stack_on {
            format!("{} lost, {} stacks lost", self.lost, self.stacks_lost)
        } else {
            format!("{} lost", self.lost)
        }
    }

    /// The packet bytes of a kept eBPF drop, if `--snaplen` kept any.
    pub fn packet(&self, kept: &Kept) -> Option<PacketBytes<'_>> {
        use crate::packet::linktype::{LINKTYPE_ETHERNET, LINKTYPE_RAW};
        let Kept::Raw(e, slot) = kept else {
            return None;
        };
        if e.flags & DROP_HAS_PACKET == 0 || self.packets.snaplen == 0 {
            return None;
        }
        let data = self.packets.get(*slot, usize::from(e.caplen));
        // An Ethernet header (14 bytes: Ethernet devices and lo) or none;
        // any other link header is skipped to the network header.
        let (linktype, skip) = match e.link_len {
            14 => (LINKTYPE_ETHERNET, 0),
            n => (LINKTYPE_RAW, usize::from(n)),
        };
        if skip > data.len() {
            return None;
        }
        Some(PacketBytes {
            linktype,
            data: &data[skip..],
            original_len: e.pkt_len.saturating_sub(skip as u32),
        })
    }

    /// The frames of a kernel stack, innermost first; None when the
    /// drop has no stack (or the map is gone).
    pub fn stack_frames(&self, stack_id: u32) -> Option<Vec<u64>> {
        let stacks = self.stacks.as_ref()?;
        let trace = stacks.get(&stack_id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Matched drops per stack id (`STACK_NONE`: no stack), over the run.
    pub fn stack_counts(&self) -> &HashMap<u32, u64> {
        &self.by_stack
    }

    /// Sets the run's filter (and its raw form, with this run's names).
    pub fn set_filter(&mut self, filter: DropFilter) {
        self.raw_filter = RawFilter::new(&filter, self.decoder.as_ref());
        self.filter = filter;
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|l| self.matched >= l)
    }

    fn push(&mut self, kept: Kept, watchers: &broadcast::Sender<Arc<Kept>>) {
        // An allocation only while someone watches (at screen speed anyway).
        if watchers.receiver_count() > 0 {
            let _ = watchers.send(Arc::new(kept.clone()));
        }
        if self.events.len() >= self.keep {
            self.events.pop_front();
        }
        self.events.push_back(kept);
    }

    /// Adds raw eBPF drops (and with `--snaplen` their packet bytes,
    /// `snaplen` per event); returns true once the run's COUNT is reached.
    fn ingest_raw(
        &mut self,
        events: &[DropEvent],
        packets: &[u8],
        watchers: &broadcast::Sender<Arc<Kept>>,
    ) -> bool {
        let snaplen = self.packets.snaplen;
        // Counted first; then only the drops that stay are copied into the
        // queue: in a flood most of a batch would be evicted by its own end.
        let mut matched = std::mem::take(&mut self.batch);
        matched.clear();
        for (i, e) in events.iter().enumerate() {
            if self.limit_reached() {
                break;
            }
            self.captured += 1;
            if !self.raw_filter.matches(e, self.decoder.as_mut()) {
                continue;
            }
            self.matched += 1;
            match &mut self.pending {
                Some((reason, location, n)) if *reason == e.reason && *location == e.location => {
                    *n += 1
                }
                _ => {
                    self.flush_pending();
                    self.pending = Some((e.reason, e.location, 1));
                }
            }
            if self.stack_on {
                let id = if e.flags & DROP_HAS_STACK != 0 {
                    e.stack_id
                } else {
                    myinit_common::droptrace::STACK_NONE
                };
                *self.by_stack.entry(id).or_default() += 1;
            }
            matched.push(i);
        }
        // Someone watching sees every drop; else only the last `keep` stay.
        let evicted_anyway = if watchers.receiver_count() > 0 {
            0
        } else {
            matched.len().saturating_sub(self.keep)
        };
        for &i in &matched[evicted_anyway..] {
            let slot = if snaplen != 0 {
                let data = packets
                    .get(i * snaplen..(i + 1) * snaplen)
                    .unwrap_or_default();
                self.packets.put(data)
            } else {
                0
            };
            self.push(Kept::Raw(events[i], slot), watchers);
        }
        self.batch = matched;
        self.limit_reached()
    }

    /// Adds decoded (ftrace) drops; true once the run's COUNT is reached.
    fn ingest_text(
        &mut self,
        records: impl IntoIterator<Item = DropRecord>,
        watchers: &broadcast::Sender<Arc<Kept>>,
    ) -> bool {
        for record in records {
            if self.limit_reached() {
                break;
            }
            self.captured += 1;
            if !self.filter.matches(&record) {
                continue;
            }
            self.matched += 1;
            *self
                .by_reason_name
                .entry(record.reason.clone())
                .or_default() += 1;
            *self
                .by_location_name
                .entry(record.location.clone())
                .or_default() += 1;
            self.push(Kept::Text(Arc::new(record)), watchers);
        }
        self.limit_reached()
    }

    /// A kept drop as users see it.
    pub fn decode(&mut self, kept: &Kept) -> DropRecord {
        match kept {
            Kept::Text(r) => r.as_ref().clone(),
            Kept::Raw(e, _) => match self.decoder.as_mut() {
                Some(d) => d.ebpf(e),
                // Raw records only come with a decoder; a store without
                // one holds none.
                None => Decoder::without_names().ebpf(e),
            },
        }
    }

    /// The kept drops, decoded, that pass `filter`, oldest first.
    pub fn decoded(&mut self, filter: &DropFilter) -> Vec<DropRecord> {
        self.decoded_kept(filter)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// `decoded`, each with its index in `events` (for its stack and
    /// packet bytes).
    pub fn decoded_kept(&mut self, filter: &DropFilter) -> Vec<(DropRecord, usize)> {
        let (events, decoder) = (&self.events, &mut self.decoder);
        let mut fallback = None;
        events
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let r = match k {
                    Kept::Text(r) => r.as_ref().clone(),
                    Kept::Raw(e, _) => match decoder.as_mut() {
                        Some(d) => d.ebpf(e),
                        None => fallback.get_or_insert_with(Decoder::without_names).ebpf(e),
                    },
                };
                (r, i)
            })
            .filter(|(r, _)| filter.matches(r))
            .collect()
    }

    /// Adds the pending run of one (reason, location) to the maps.
    fn flush_pending(&mut self) {
        if let Some((reason, location, n)) = self.pending.take() {
            *self.by_reason_code.entry(reason).or_default() += n;
            *self.by_location_addr.entry(location).or_default() += n;
        }
    }

    /// The run's counts by reason name and by location, over every
    /// matched drop (kept or evicted).
    pub fn counts(&mut self) -> (HashMap<String, u64>, HashMap<String, u64>) {
        self.flush_pending();
        let mut reasons = self.by_reason_name.clone();
        let mut locations = self.by_location_name.clone();
        if let Some(d) = self.decoder.as_mut() {
            for (code, n) in &self.by_reason_code {
                *reasons.entry(d.reason(*code)).or_default() += n;
            }
            for (addr, n) in &self.by_location_addr {
                *locations.entry(d.location(*addr)).or_default() += n;
            }
        }
        (reasons, locations)
    }

    /// Sets the kernel's counts (summary mode) and the totals from them.
    pub fn set_kernel_counts(&mut self, counts: Vec<(DropSummaryKey, u64)>) {
        self.captured = counts.iter().map(|(_, n)| n).sum();
        self.matched = counts
            .iter()
            .filter(|(k, _)| self.raw_filter.matches_key(k))
            .map(|(_, n)| n)
            .sum();
        self.kernel_counts = counts;
    }

    /// Whether a raw filter accepts a summary key (for `summary FILTER`).
    pub fn key_matches(&self, filter: &DropFilter, key: &DropSummaryKey) -> bool {
        RawFilter::new(filter, self.decoder.as_ref()).matches_key(key)
            && self.raw_filter.matches_key(key)
    }

    /// The status line under `show` and `summary`.
    pub fn footer(&self, shown: usize) -> String {
        let state = if self.running { "running" } else { "stopped" };
        let backend = if self.backend.is_empty() {
            "none"
        } else {
            self.backend.as_str()
        };
        let mut parts = Vec::new();
        if !self.filter.is_empty() {
            parts.push(self.filter.describe());
        }
        if let Some(expr) = &self.expr {
            parts.push(format!("in the kernel `{expr}`"));
        }
        let filter = if parts.is_empty() {
            String::new()
        } else {
            format!("; filter {}", parts.join(", "))
        };
        format!(
            "{shown} shown; {} captured, {} matched, {}; backend {backend}, {state}{filter}",
            self.captured,
            self.matched,
            self.lost_text()
        )
    }
}

/// The drops of the current or last run, and the channel `droptrace watch`
/// listens on.
pub struct Drops {
    store: Mutex<DropStore>,
    /// Arcs, not records: the channel's slots are allocated up front.
    watchers: broadcast::Sender<Arc<Kept>>,
}

impl Default for Drops {
    fn default() -> Self {
        Drops {
            store: Mutex::new(DropStore::new()),
            watchers: broadcast::channel(4096).0,
        }
    }
}

impl Drops {
    pub fn lock(&self) -> MutexGuard<'_, DropStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New drops as they arrive (subscribe before starting, to miss none).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Kept>> {
        self.watchers.subscribe()
    }

    /// Adds raw eBPF drops (one lock per batch) and their packet bytes
    /// (`snaplen` per event); true once COUNT is reached.
    pub fn ingest_raw(&self, events: &[DropEvent], packets: &[u8]) -> bool {
        self.lock().ingest_raw(events, packets, &self.watchers)
    }

    /// Adds decoded drops; true once the run's COUNT is reached.
    pub fn ingest(&self, records: impl IntoIterator<Item = DropRecord>) -> bool {
        self.lock().ingest_text(records, &self.watchers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_location_include_the_pending_run() {
        let drops = Drops::default();
        drops.lock().decoder = Some(Decoder::without_names());
        let event = |reason, location| DropEvent {
            reason,
            location,
            ..Default::default()
        };
        // Runs of one pair, a change, and back: every drop counted once.
        let events = [
            event(2, 0x10),
            event(2, 0x10),
            event(3, 0x20),
            event(2, 0x10),
            event(2, 0x30),
            event(2, 0x30),
        ];
        drops.ingest_raw(&events, &[]);
        let (reasons, locations) = drops.lock().counts();
        assert_eq!(reasons.get("reason 2"), Some(&5));
        assert_eq!(reasons.get("reason 3"), Some(&1));
        assert_eq!(locations.get("0x10"), Some(&3));
        assert_eq!(locations.get("0x20"), Some(&1));
        assert_eq!(locations.get("0x30"), Some(&2));
        // Asked twice: nothing counted twice.
        let (again, _) = drops.lock().counts();
        assert_eq!(again, reasons);
        drops.lock().clear();
        assert!(drops.lock().counts().0.is_empty());
    }

    #[test]
    fn a_batch_larger_than_keep_leaves_its_last_drops_kept() {
        let drops = Drops::default();
        drops.lock().keep = 3;
        drops.lock().set_snaplen(4);
        let events: Vec<DropEvent> = (0..10)
            .map(|i| DropEvent {
                reason: i,
                caplen: 4,
                flags: DROP_HAS_PACKET,
                link_len: 0,
                pkt_len: 4,
                ..Default::default()
            })
            .collect();
        // Packet i's bytes are [i; 4].
        let packets: Vec<u8> = (0..10u8).flat_map(|i| [i; 4]).collect();
        drops.ingest_raw(&events[..6], &packets[..24]);
        drops.ingest_raw(&events[6..], &packets[24..]);
        let s = drops.lock();
        assert_eq!((s.captured, s.matched), (10, 10));
        let kept: Vec<(u32, Vec<u8>)> = s
            .events
            .iter()
            .map(|k| match k {
                Kept::Raw(e, _) => (e.reason, s.packet(k).unwrap().data.to_vec()),
                Kept::Text(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            kept,
            [(7, vec![7; 4]), (8, vec![8; 4]), (9, vec![9; 4])],
            "the last three, each with its own bytes"
        );
    }
}
