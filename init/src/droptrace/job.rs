//! The droptrace job: a tokio task (see jobs.rs) that owns the backend
//! (eBPF programs and ring buffer, or the tracefs instance) and runs the
//! shared drain loop over it, decoding events into the store; on stop it
//! detaches first and then takes what is still queued, so nothing that was
//! captured is lost on stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::ebpf::DropTracer;
use super::event::{packet_from_event, DropFilter, DropRecord, ReasonNames};
use super::ftrace::{self, FtraceSession};
use super::store::Drops;
use crate::ebpf::ring;
use crate::jobs::{drain_events, Drained, Ended, EventSource, JobId, JobKind};
use crate::kernel::kallsyms::Kallsyms;
use crate::kernel::tracefs;
use crate::state::State;
use myinit_common::droptrace::{DropEvent, DROP_HAS_DEV, DROP_HAS_SKB_OFFSETS};

/// Events taken per turn before other tasks get theirs.
const BATCH: usize = 4096;
/// trace_pipe bytes read per turn (~20k lines).
const FTRACE_BATCH: usize = 4 << 20;
/// How often the ftrace backend looks at trace_pipe.
const FTRACE_POLL: Duration = Duration::from_millis(20);

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF, else ftrace (saying why).
    Auto,
    Ebpf,
    Ftrace,
}

/// `--hook`: which kernel hook the eBPF backend attaches to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// tp_btf when the kernel's BTF has it, else the classic tracepoint.
    Auto,
    /// `tp_btf/kfree_skb` only.
    TpBtf,
    /// The classic `skb:kfree_skb` tracepoint (format-file offsets).
    Tracepoint,
}

pub struct StartOptions {
    pub backend: Backend,
    pub hook: Hook,
    /// Stop after this many matched drops.
    pub limit: Option<u64>,
    pub keep: usize,
    pub filter: DropFilter,
}

/// Raw addresses and reason numbers to names, each location resolved once.
pub struct Decoder {
    kallsyms: Arc<Kallsyms>,
    reasons: ReasonNames,
    locations: HashMap<u64, String>,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Decoder {
    pub fn new(reasons: ReasonNames) -> Self {
        Decoder {
            kallsyms: Kallsyms::get(),
            reasons,
            locations: HashMap::new(),
        }
    }

    /// `function+0xoff/0xsize`, symbolized once per address.
    fn location(kallsyms: &Kallsyms, locations: &mut HashMap<u64, String>, addr: u64) -> String {
        locations
            .entry(addr)
            .or_insert_with(|| kallsyms.symbolize(addr))
            .clone()
    }

    pub fn ebpf(&mut self, e: &DropEvent) -> DropRecord {
        let location = Self::location(&self.kallsyms, &mut self.locations, e.location);
        let has_dev = e.flags & DROP_HAS_DEV != 0;
        DropRecord {
            time_ns: e.timestamp_ns,
            cpu: e.cpu,
            pid: e.pid,
            comm: c_string(&e.comm),
            location,
            reason: self.reasons.name(e.reason),
            reason_code: Some(e.reason),
            protocol: e.protocol,
            dev: has_dev.then(|| c_string(&e.dev)),
            ifindex: has_dev.then_some(e.ifindex),
            len: (e.flags & DROP_HAS_SKB_OFFSETS != 0).then_some(e.len),
            packet: packet_from_event(e),
            skb: format!("{:#x}", e.skb),
        }
    }
}

/// The droptrace job's identity: there is one drop tracer.
pub fn job_id() -> JobId {
    JobId::single(JobKind::Droptrace)
}

/// Starts tracing as a job; returns the lines to print (backend chosen,
/// and why on fallback).
pub fn start(state: &State, opts: StartOptions) -> anyhow::Result<Vec<String>> {
    if state.jobs.is_running(&job_id()) {
        bail!("already running (droptrace stop first)");
    }
    // Whatever backend runs now, clear what a killed tracer left behind.
    if let Ok(tracefs) = tracefs::dir() {
        ftrace::remove_stale(&tracefs);
    }
    let _runtime = state.rt.enter();
    let mut lines = Vec::new();
    let use_ebpf = match opts.backend {
        Backend::Ftrace => None,
        Backend::Ebpf => {
            Some(super::ebpf::attach(opts.hook).map_err(|e| anyhow!("eBPF backend: {e:#}"))?)
        }
        Backend::Auto => match super::ebpf::attach(opts.hook) {
            Ok(t) => Some(t),
            Err(e) => {
                lines.push(format!(
                    "droptrace: eBPF unavailable ({e:#}); falling back to ftrace"
                ));
                None
            }
        },
    };
    let filter_needs_packet = opts.filter.needs_packet();
    let drops = state.drops.clone();
    match use_ebpf {
        Some((tracer, kernel)) => {
            let backend_name = format!("ebpf ({})", tracer.hook.describe());
            let packet = if kernel.offsets.is_some() {
                "device and packet from BTF offsets"
            } else {
                "no device or packet summary (no sk_buff offsets in BTF)"
            };
            lines.push(format!("droptrace: backend {backend_name}; {packet}"));
            if filter_needs_packet && kernel.offsets.is_none() {
                bail!("--dev and --proto of L4 protocols need the packet summary, which this kernel's BTF cannot give");
            }
            let source = EbpfDrops {
                name: format!("ebpf {}", tracer.hook.describe()),
                tracer,
                decoder: Decoder::new(kernel.reasons),
                drops: drops.clone(),
                scratch: Vec::new(),
            };
            launch(state, &opts, &backend_name, source)?;
        }
        None => {
            if filter_needs_packet {
                bail!("ftrace events carry no device or L4 protocol: --dev and --proto tcp|udp|… need the eBPF backend");
            }
            // On fallback the error says why eBPF failed too.
            let why = |e: anyhow::Error| match lines.first() {
                Some(fallback) => anyhow!(
                    "{}; ftrace backend: {e:#}",
                    fallback.trim_start_matches("droptrace: ")
                ),
                None => anyhow!("ftrace backend: {e:#}"),
            };
            let tracefs = tracefs::dir().map_err(why)?;
            let session = FtraceSession::open(&tracefs).map_err(why)?;
            let reasons = super::format_reasons(&tracefs);
            let backend_name = match session.event.as_str() {
                "kfree_skb" => "ftrace (trace_pipe)".to_string(),
                probe => format!("ftrace (trace_pipe, event probe {probe})"),
            };
            lines.push(format!(
                "droptrace: backend {backend_name}; {} reason names from the format file; no device or packet summary",
                reasons.len()
            ));
            if let Some(note) = &session.note {
                lines.push(format!("droptrace: {note}"));
            }
            let source = FtraceDrops {
                session,
                decoder: Decoder::new(reasons),
                drops,
                more: false,
                turns: 0,
            };
            launch(state, &opts, &backend_name, source)?;
        }
    }
    Ok(lines)
}

/// What the job needs of a backend besides the drain loop.
trait DropSource: EventSource + Send + 'static {
    /// The backend as the stop report names it.
    fn name(&self) -> String;
    fn lost(&self) -> u64;
    fn drops(&self) -> Arc<Drops>;
}

/// Resets the store for a new run and starts the job on `source`.
fn launch<S: DropSource>(
    state: &State,
    opts: &StartOptions,
    backend_name: &str,
    source: S,
) -> anyhow::Result<()> {
    let drops = source.drops();
    {
        let mut s = drops.lock();
        s.clear();
        s.keep = opts.keep;
        s.limit = opts.limit;
        s.filter = opts.filter.clone();
        s.backend = backend_name.to_string();
        s.running = true;
    }
    let mut description = format!("droptrace {backend_name}");
    if !opts.filter.is_empty() {
        description.push_str(&format!(" [{}]", opts.filter.describe()));
    }
    state
        .jobs
        .spawn(&state.rt, job_id(), description, move |cancel| async move {
            let mut source = source;
            // Marks the run stopped even if the task panics, so `start` works again.
            let _running = Running(drops.clone());
            let ended = drain_events(&mut source, &cancel, BATCH).await;
            let (name, lost) = (source.name(), source.lost());
            // Detached and removed before the report says it stopped.
            drop(source);
            let mut s = drops.lock();
            s.lost = lost;
            s.running = false;
            let how = match ended {
                Ended::Stopped => "stopped",
                Ended::ByItself => "COUNT reached",
            };
            format!(
                "droptrace: {how} ({name}): {} captured, {} matched, {} lost",
                s.captured, s.matched, s.lost
            )
        })?;
    Ok(())
}

/// Clears the store's running flag when the task ends, however it ends.
struct Running(Arc<Drops>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

/// The eBPF ring buffer, decoded into the store.
struct EbpfDrops {
    name: String,
    tracer: DropTracer,
    decoder: Decoder,
    drops: Arc<Drops>,
    scratch: Vec<DropRecord>,
}

impl DropSource for EbpfDrops {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn lost(&self) -> u64 {
        self.tracer.events.lost()
    }

    fn drops(&self) -> Arc<Drops> {
        self.drops.clone()
    }
}

impl EventSource for EbpfDrops {
    async fn ready(&mut self) {
        self.tracer.events.ready().await;
    }

    fn drain(&mut self, max: usize) -> Drained {
        let (decoder, scratch) = (&mut self.decoder, &mut self.scratch);
        let taken = self.tracer.events.drain(max, |bytes| {
            if let Some(event) = ring::record::<DropEvent>(bytes) {
                scratch.push(decoder.ebpf(&event));
            }
        });
        let done = self.drops.ingest(scratch.drain(..));
        if taken > 0 {
            self.drops.lock().lost = self.tracer.events.lost();
        }
        Drained { taken, done }
    }

    fn stop_new(&mut self) {
        self.tracer.detach();
    }
}

/// trace_pipe text, parsed into the store.
struct FtraceDrops {
    session: FtraceSession,
    decoder: Decoder,
    drops: Arc<Drops>,
    /// The last read filled a whole batch: more is queued.
    more: bool,
    turns: u32,
}

impl DropSource for FtraceDrops {
    fn name(&self) -> String {
        "ftrace".into()
    }

    fn lost(&self) -> u64 {
        self.session.lost()
    }

    fn drops(&self) -> Arc<Drops> {
        self.drops.clone()
    }
}

impl EventSource for FtraceDrops {
    async fn ready(&mut self) {
        if !self.more {
            tokio::time::sleep(FTRACE_POLL).await;
        }
    }

    fn drain(&mut self, max: usize) -> Drained {
        if max == 0 {
            return Drained::default();
        }
        let mut records = Vec::new();
        let event = self.session.event.clone();
        let Decoder {
            kallsyms,
            reasons,
            locations,
        } = &mut self.decoder;
        let mut symbolize = |addr| Decoder::location(kallsyms, locations, addr);
        let read = self
            .session
            .read_batch(FTRACE_BATCH, |line| {
                if let Some(r) = ftrace::parse_line(line, &event, reasons, &mut symbolize) {
                    records.push(r);
                }
            })
            .unwrap_or(0);
        self.more = read >= FTRACE_BATCH;
        let taken = if self.more { max } else { records.len() };
        let done = self.drops.ingest(records);
        // The per-CPU stats files are many reads: not every turn.
        self.turns += 1;
        if self.turns.is_multiple_of(10) {
            self.drops.lock().lost = self.session.lost();
        }
        Drained { taken, done }
    }

    fn stop_new(&mut self) {
        self.session.disable();
    }
}
