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

use myinit_common::droptrace::{DropEvent, DropSummaryKey};
use tokio::sync::broadcast;

use super::event::{Decoder, DropFilter, DropRecord, RawFilter};

/// Default number of drops kept for `show` (`start --keep N` changes it).
pub const DEFAULT_KEEP: usize = 1000;

/// One kept drop: the eBPF record as the kernel wrote it, or what the
/// ftrace backend parsed from text (decoded already: it arrives as text).
#[derive(Clone, Debug)]
pub enum Kept {
    Raw(DropEvent),
    Text(Arc<DropRecord>),
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
    /// `filter` in the raw records' terms (reason number, device bytes).
    raw_filter: RawFilter,
    pub running: bool,
    /// Stop after this many matched drops (`start COUNT`).
    pub limit: Option<u64>,
    /// eBPF drops by reason number and location address.
    by_reason_code: HashMap<u32, u64>,
    by_location_addr: HashMap<u64, u64>,
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
            raw_filter: RawFilter::default(),
            running: false,
            limit: None,
            by_reason_code: HashMap::new(),
            by_location_addr: HashMap::new(),
            by_reason_name: HashMap::new(),
            by_location_name: HashMap::new(),
            summary_mode: false,
            kernel_counts: Vec::new(),
            decoder: None,
            started_ns: 0,
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
        self.by_reason_name.clear();
        self.by_location_name.clear();
        self.kernel_counts.clear();
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

    /// Adds raw eBPF drops; returns true once the run's COUNT is reached.
    fn ingest_raw(
        &mut self,
        events: &[DropEvent],
        watchers: &broadcast::Sender<Arc<Kept>>,
    ) -> bool {
        for e in events {
            if self.limit_reached() {
                break;
            }
            self.captured += 1;
            if !self.raw_filter.matches(e, self.decoder.as_mut()) {
                continue;
            }
            self.matched += 1;
            *self.by_reason_code.entry(e.reason).or_default() += 1;
            *self.by_location_addr.entry(e.location).or_default() += 1;
            self.push(Kept::Raw(*e), watchers);
        }
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
            Kept::Raw(e) => match self.decoder.as_mut() {
                Some(d) => d.ebpf(e),
                // Raw records only come with a decoder; a store without
                // one holds none.
                None => Decoder::without_names().ebpf(e),
            },
        }
    }

    /// The kept drops, decoded, that pass `filter`, oldest first.
    pub fn decoded(&mut self, filter: &DropFilter) -> Vec<DropRecord> {
        let (events, decoder) = (&self.events, &mut self.decoder);
        let mut fallback = None;
        events
            .iter()
            .map(|k| match k {
                Kept::Text(r) => r.as_ref().clone(),
                Kept::Raw(e) => match decoder.as_mut() {
                    Some(d) => d.ebpf(e),
                    None => fallback.get_or_insert_with(Decoder::without_names).ebpf(e),
                },
            })
            .filter(|r| filter.matches(r))
            .collect()
    }

    /// The run's counts by reason name and by location, over every
    /// matched drop (kept or evicted).
    pub fn counts(&mut self) -> (HashMap<String, u64>, HashMap<String, u64>) {
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
        let filter = if self.filter.is_empty() {
            String::new()
        } else {
            format!("; filter {}", self.filter.describe())
        };
        format!(
            "{shown} shown; {} captured, {} matched, {} lost; backend {backend}, {state}{filter}",
            self.captured, self.matched, self.lost
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

    /// Adds raw eBPF drops (one lock per batch); true once COUNT is reached.
    pub fn ingest_raw(&self, events: &[DropEvent]) -> bool {
        self.lock().ingest_raw(events, &self.watchers)
    }

    /// Adds decoded drops; true once the run's COUNT is reached.
    pub fn ingest(&self, records: impl IntoIterator<Item = DropRecord>) -> bool {
        self.lock().ingest_text(records, &self.watchers)
    }
}
