//! The droptrace job: a tokio task (see jobs.rs) that owns the backend
//! (eBPF programs and ring buffer, or the tracefs instance) and runs the
//! shared drain loop over it, decoding events into the store; on stop it
//! detaches first and then takes what is still queued, so nothing that was
//! captured is lost on stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::ebpf::{DropTracer, TraceOptions, TracerFilter};
use super::event::{Decoder, DropFilter, ReasonNames};
use super::ftrace::{self, FtraceSession};
use super::store::Drops;
use crate::ebpf::ring;
use crate::jobs::{drain_events, Drained, Ended, EventSource, JobId, JobKind};
use crate::kernel::tracefs;
use crate::state::State;
use myinit_common::droptrace::DropEvent;

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

pub use super::ebpf::Hook;

pub struct StartOptions {
    pub backend: Backend,
    pub hook: Hook,
    /// Stop after this many matched drops.
    pub limit: Option<u64>,
    pub keep: usize,
    pub filter: DropFilter,
    /// A pcap-filter expression on the dropped packet, run in the kernel
    /// before anything is reserved (eBPF only).
    pub expr: Option<Arc<TracerFilter>>,
    /// Count in the kernel only (no event per drop).
    pub summary: bool,
    /// `--stack`: kernel stacks into a map of this many entries.
    pub stack_entries: Option<u32>,
    /// `--snaplen`: packet bytes kept per drop (0: none).
    pub snaplen: u32,
}

/// Default size of the stack map (`--stack-entries`): distinct stacks it
/// can hold (~1 KiB of kernel memory each, only with `--stack`).
pub const DEFAULT_STACK_ENTRIES: u32 = 4096;

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
    let started_ns = monotonic_ns();
    let mut lines = Vec::new();
    let trace = TraceOptions {
        filter: opts.expr.clone(),
        summary: opts.summary,
        stack_entries: opts.stack_entries,
        snaplen: opts.snaplen,
        dev: opts.filter.dev.as_deref().map(super::event::dev_bytes),
        netns: opts.filter.netns,
        reason: opts.filter.reason.clone(),
    };
    // What only the eBPF backend can do: no silent fallback to ftrace.
    let ebpf_only = [
        (opts.summary, "--summary"),
        (opts.stack_entries.is_some(), "--stack"),
        (opts.snaplen != 0, "--snaplen"),
        (opts.expr.is_some(), "a filter expression"),
    ]
    .into_iter()
    .find_map(|(on, name)| on.then_some(name));
    // A device named for our own namespace must be there now: a typo would
    // match nothing, silently.
    if let Some(dev) = &opts.filter.dev {
        if opts.filter.netns == super::event::own_netns()
            && nix::net::if_::if_nametoindex(dev.as_str()).is_err()
        {
            bail!("--dev {dev}: no such interface in this namespace (--netns NS or any for a device elsewhere)");
        }
    }
    if opts.summary && opts.limit.is_some() {
        bail!("COUNT stops after that many kept drops; --summary keeps none, only counts (droptrace stop ends it)");
    }
    if let (Some(name), Backend::Ftrace) = (ebpf_only, opts.backend) {
        bail!("{name} needs the eBPF backend (ftrace text has no such field)");
    }
    let use_ebpf = match opts.backend {
        Backend::Ftrace => None,
        Backend::Ebpf => Some(
            super::ebpf::attach(opts.hook, trace).map_err(|e| anyhow!("eBPF backend: {e:#}"))?,
        ),
        Backend::Auto if ebpf_only.is_some() => Some(
            super::ebpf::attach(opts.hook, trace)
                .map_err(|e| anyhow!("{}: eBPF backend: {e:#}", ebpf_only.unwrap_or("")))?,
        ),
        Backend::Auto => match super::ebpf::attach(opts.hook, trace) {
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
    let drops = state.slot::<Drops>();
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
            if opts.summary {
                lines.push(
                    "droptrace: summary mode: counts by reason, location, device and protocol in the kernel; no drop is kept"
                        .into(),
                );
                if opts
                    .filter
                    .proto
                    .as_deref()
                    .is_some_and(|p| !matches!(p, "ipv4" | "ipv6" | "arp"))
                    || (opts.filter.dev.is_some() && opts.filter.netns != super::event::own_netns())
                {
                    bail!("--summary counts by EtherType and by device in our own namespace: --proto tcp|udp|… and --dev with another --netns need full events");
                }
            }
            if let Some(entries) = opts.stack_entries {
                lines.push(format!(
                    "droptrace: kernel stacks into a map of {entries} entries (more distinct stacks are counted as lost)"
                ));
            }
            if opts.snaplen != 0 {
                lines.push(format!(
                    "droptrace: keeping the first {} bytes of each dropped packet (droptrace save FILE.pcapng writes them)",
                    opts.snaplen
                ));
            }
            drops.lock().stacks = tracer.stacks.clone();
            let source = EbpfDrops::new(tracer, drops.clone(), &opts);
            launch(
                state,
                &opts,
                started_ns,
                &backend_name,
                source,
                kernel.reasons,
            )?;
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
            let tracefs = tracefs::dir().map_err(|e| why(e.into()))?;
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
            let source = FtraceDrops::new(session, drops, reasons.clone());
            launch(state, &opts, started_ns, &backend_name, source, reasons)?;
        }
    }
    Ok(lines)
}

/// What the job needs of a backend besides the drain loop.
trait DropSource: EventSource + Send + 'static {
    /// The backend as the stop report names it.
    fn name(&self) -> String;
    fn lost(&self) -> u64;
    /// Stacks the kernel could not store (`--stack`).
    fn stacks_lost(&self) -> u64 {
        0
    }
    fn drops(&self) -> Arc<Drops>;
    /// After the drain loop: take the last of what the kernel kept.
    fn finish(&mut self) {}
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns` and of our
/// tracefs instance (`trace_clock` mono).
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What to add to a CLOCK_MONOTONIC time to get nanoseconds since the
/// epoch: taken once, and used for every time of a listing or file, so
/// that they stay in the order and spacing of the drops (taking "now" per
/// drop moved each later one earlier by the time spent on those before).
pub fn monotonic_to_epoch_ns() -> u64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    real.saturating_sub(monotonic_ns())
}

/// Resets the store for a new run and starts the job on `source`.
fn launch<S: DropSource>(
    state: &State,
    opts: &StartOptions,
    started_ns: u64,
    backend_name: &str,
    source: S,
    reasons: ReasonNames,
) -> anyhow::Result<()> {
    let decoder = Decoder::new(reasons);
    let drops = source.drops();
    {
        let mut s = drops.lock();
        s.clear();
        s.keep = opts.keep;
        s.limit = opts.limit;
        s.decoder = Some(decoder);
        s.set_filter(opts.filter.clone());
        s.expr = opts.expr.as_ref().map(|f| f.text.clone());
        s.summary_mode = opts.summary;
        s.stack_on = opts.stack_entries.is_some();
        if !s.stack_on {
            // A former run's stack map: its kernel memory goes now.
            s.stacks = None;
        }
        s.set_snaplen(opts.snaplen as usize);
        s.backend = backend_name.to_string();
        s.started_ns = started_ns;
        s.running = true;
    }
    let mut description = format!("droptrace {backend_name}");
    if !opts.filter.is_empty() {
        description.push_str(&format!(" [{}]", opts.filter.describe()));
    }
    if let Some(expr) = &opts.expr {
        description.push_str(&format!(" `{}`", expr.text));
    }
    state
        .jobs
        .spawn(&state.rt, job_id(), description, move |cancel| async move {
            let mut source = source;
            // Marks the run stopped even if the task panics, so `start` works again.
            let _running = Running(drops.clone());
            let ended = drain_events(&mut source, &cancel, BATCH).await;
            source.finish();
            let (name, lost, stacks_lost) = (source.name(), source.lost(), source.stacks_lost());
            // Detached and removed before the report says it stopped.
            drop(source);
            let mut s = drops.lock();
            s.lost = lost;
            s.stacks_lost = stacks_lost;
            s.running = false;
            let how = match ended {
                Ended::Stopped => "stopped",
                Ended::ByItself => "COUNT reached",
            };
            format!(
                "droptrace: {how} ({name}): {} captured, {} matched, {}",
                s.captured,
                s.matched,
                s.lost_text()
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

/// The eBPF ring buffer, its records copied into the store as they are
/// (decoding waits until something shows them); in summary mode the
/// kernel's count map, read into the store now and then.
struct EbpfDrops {
    name: String,
    tracer: DropTracer,
    drops: Arc<Drops>,
    /// Reused for every batch: no allocation per event.
    scratch: Vec<DropEvent>,
    /// The batch's packet bytes, `snaplen` per event (`--snaplen`).
    scratch_packets: Vec<u8>,
    snaplen: usize,
    summary: bool,
    turns: u32,
}

impl EbpfDrops {
    fn new(tracer: DropTracer, drops: Arc<Drops>, opts: &StartOptions) -> Self {
        EbpfDrops {
            name: format!("ebpf {}", tracer.hook.describe()),
            tracer,
            drops,
            scratch: Vec::with_capacity(BATCH),
            scratch_packets: Vec::new(),
            snaplen: opts.snaplen as usize,
            summary: opts.summary,
            turns: 0,
        }
    }
}

/// Summary mode reads the kernel's counts every this many turns (~100 ms).
const SUMMARY_TURNS: u32 = 10;

impl EbpfDrops {
    fn read_summary(&mut self) {
        let counts = self.tracer.summary_counts();
        let mut s = self.drops.lock();
        s.set_kernel_counts(counts);
        s.lost = self.tracer.events.lost();
        s.stacks_lost = self.tracer.stacks_lost();
    }
}

impl DropSource for EbpfDrops {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn lost(&self) -> u64 {
        self.tracer.events.lost()
    }

    fn stacks_lost(&self) -> u64 {
        self.tracer.stacks_lost()
    }

    fn drops(&self) -> Arc<Drops> {
        self.drops.clone()
    }

    fn finish(&mut self) {
        if self.summary {
            self.read_summary();
        }
    }
}

impl EventSource for EbpfDrops {
    async fn ready(&mut self) {
        self.tracer.events.ready().await;
    }

    fn drain(&mut self, max: usize) -> Drained {
        if self.summary {
            self.turns += 1;
            if self.turns.is_multiple_of(SUMMARY_TURNS) {
                self.read_summary();
            }
            return Drained::default();
        }
        let (scratch, packets, snaplen) =
            (&mut self.scratch, &mut self.scratch_packets, self.snaplen);
        let taken = self.tracer.events.drain(max, |bytes| {
            if let Some(event) = ring::record::<DropEvent>(bytes) {
                scratch.push(event);
                if snaplen != 0 {
                    // A fixed stride: event i's bytes at i * snaplen.
                    let data = &bytes[std::mem::size_of::<DropEvent>()..];
                    let n = data.len().min(snaplen).min(usize::from(event.caplen));
                    packets.extend_from_slice(&data[..n]);
                    packets.resize(scratch.len() * snaplen, 0);
                }
            }
        });
        let done = self.drops.ingest_raw(scratch, packets);
        scratch.clear();
        packets.clear();
        if taken > 0 {
            let mut s = self.drops.lock();
            s.lost = self.tracer.events.lost();
            if s.stack_on {
                s.stacks_lost = self.tracer.stacks_lost();
            }
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

impl FtraceDrops {
    fn new(session: FtraceSession, drops: Arc<Drops>, reasons: ReasonNames) -> Self {
        FtraceDrops {
            session,
            decoder: Decoder::new(reasons),
            drops,
            more: false,
            turns: 0,
        }
    }
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
        let decoder = &mut self.decoder;
        let reasons = decoder.reasons.clone();
        let mut symbolize = |addr| decoder.location(addr);
        let read = self
            .session
            .read_batch(FTRACE_BATCH, |line| {
                if let Some(r) = ftrace::parse_line(line, &event, &reasons, &mut symbolize) {
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
