//! What `show`, `summary` and `save` read: the last N drops of the current
//! (or last) run, the counts over the whole run and the lost count. The
//! process state (`State::drops`) owns it and the running job shares it, so
//! results stay readable after `stop`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::event::{DropFilter, DropRecord};

/// Default number of drops kept for `show` (`start --keep N` changes it).
pub const DEFAULT_KEEP: usize = 1000;

pub struct DropStore {
    pub events: VecDeque<Arc<DropRecord>>,
    pub keep: usize,
    /// Events the backend delivered (before the filter).
    pub captured: u64,
    /// Events that passed the filter (kept, possibly evicted since).
    pub matched: u64,
    /// Events the backend could not deliver (ring full, ftrace overrun).
    pub lost: u64,
    /// e.g. "ebpf (tp_btf/kfree_skb)"; empty before the first start.
    pub backend: String,
    pub filter: DropFilter,
    pub running: bool,
    /// Stop after this many matched drops (`start COUNT`).
    pub limit: Option<u64>,
    pub by_reason: HashMap<String, u64>,
    pub by_location: HashMap<String, u64>,
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
            running: false,
            limit: None,
            by_reason: HashMap::new(),
            by_location: HashMap::new(),
        }
    }

    /// Forgets the drops and counts (not the running state or settings).
    pub fn clear(&mut self) {
        self.events.clear();
        self.captured = 0;
        self.matched = 0;
        self.lost = 0;
        self.by_reason.clear();
        self.by_location.clear();
    }

    /// Adds decoded drops; returns true once the run's COUNT is reached.
    fn ingest(
        &mut self,
        records: impl IntoIterator<Item = DropRecord>,
        watchers: &broadcast::Sender<Arc<DropRecord>>,
    ) -> bool {
        for record in records {
            if self.limit.is_some_and(|l| self.matched >= l) {
                break;
            }
            self.captured += 1;
            if !self.filter.matches(&record) {
                continue;
            }
            self.matched += 1;
            *self.by_reason.entry(record.reason.clone()).or_default() += 1;
            *self.by_location.entry(record.location.clone()).or_default() += 1;
            let record = Arc::new(record);
            if watchers.receiver_count() > 0 {
                let _ = watchers.send(record.clone());
            }
            self.events.push_back(record);
            while self.events.len() > self.keep {
                self.events.pop_front();
            }
        }
        self.limit.is_some_and(|l| self.matched >= l)
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
    watchers: broadcast::Sender<Arc<DropRecord>>,
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
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DropRecord>> {
        self.watchers.subscribe()
    }

    /// Adds decoded drops; true once the run's COUNT is reached.
    pub fn ingest(&self, records: impl IntoIterator<Item = DropRecord>) -> bool {
        self.lock().ingest(records, &self.watchers)
    }
}
