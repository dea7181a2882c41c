//! The droptrace job: a tokio task that owns the backend (eBPF programs and
//! ring buffer, or the tracefs instance), reads events in bounded batches,
//! decodes them into the store and, on stop, detaches first and then drains
//! what is still queued, so nothing that was captured is lost on stop.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::event::{packet_from_event, DropFilter, DropRecord, ReasonNames};
use super::ftrace::{self, FtraceSession};
use super::kallsyms::Kallsyms;
use super::store::store;
use crate::ebpf::DropTracer;
use crate::jobs::Job;
use crate::state::State;
use futures::FutureExt;
use myinit_common::{DropEvent, DROP_HAS_DEV, DROP_HAS_SKB_OFFSETS};
use std::panic::AssertUnwindSafe;

/// Events taken from the ring per wake-up before other tasks get a turn.
const EBPF_BATCH: usize = 4096;
/// trace_pipe bytes read per turn (~20k lines).
const FTRACE_BATCH: usize = 4 << 20;
/// How long `stop` waits for the task to drain and report.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The registered job: a handle to stop the task and get its report.
struct DropTraceJob {
    description: String,
    stop_tx: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<String>,
}

impl Job for DropTraceJob {
    fn describe(&self) -> String {
        let running = store().running;
        format!(
            "{}{}",
            self.description,
            if running { "" } else { " (finished)" }
        )
    }

    fn stop(mut self: Box<Self>) -> String {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        self.done
            .recv_timeout(STOP_TIMEOUT)
            .unwrap_or_else(|_| "droptrace: the tracer did not stop in time".into())
    }
}

/// Whether a registered job is the drop tracer.
pub fn is_droptrace(job: &dyn Job) -> bool {
    job.describe().starts_with("droptrace")
}

/// Starts tracing as a job; returns the lines to print (backend chosen,
/// and why on fallback).
pub fn start(state: &State, opts: StartOptions) -> anyhow::Result<Vec<String>> {
    if store().running {
        bail!("already running (droptrace stop first)");
    }
    // A run that ended by itself (COUNT reached) still has its job entry.
    state.jobs.stop_matching(is_droptrace);
    // Whatever backend runs now, clear what a killed tracer left behind.
    if let Ok(tracefs) = super::tracefs() {
        ftrace::remove_stale(&tracefs);
    }
    let _runtime = state.rt.enter();
    let mut lines = Vec::new();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let backend_name;
    let use_ebpf = match opts.backend {
        Backend::Ftrace => None,
        Backend::Ebpf => {
            Some(super::attach_ebpf(opts.hook).map_err(|e| anyhow!("eBPF backend: {e:#}"))?)
        }
        Backend::Auto => match super::attach_ebpf(opts.hook) {
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
    match use_ebpf {
        Some((tracer, kernel)) => {
            backend_name = format!("ebpf ({})", tracer.hook.describe());
            let packet = if kernel.offsets.is_some() {
                "device and packet from BTF offsets"
            } else {
                "no device or packet summary (no sk_buff offsets in BTF)"
            };
            lines.push(format!("droptrace: backend {backend_name}; {packet}"));
            if filter_needs_packet && kernel.offsets.is_none() {
                bail!("--dev and --proto of L4 protocols need the packet summary, which this kernel's BTF cannot give");
            }
            reset_store(&opts, &backend_name);
            let decoder = Decoder::new(kernel.reasons);
            // The name the stop report uses, also when the task fails.
            let name = format!("ebpf {}", tracer.hook.describe());
            state.rt.spawn(async move {
                let report = AssertUnwindSafe(run_ebpf(tracer, decoder, stop_rx, name.clone()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| failed(&name));
                let _ = done_tx.send(report);
            });
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
            let tracefs = super::tracefs().map_err(why)?;
            let session = FtraceSession::open(&tracefs).map_err(why)?;
            let reasons = super::format_reasons(&tracefs);
            backend_name = match session.event.as_str() {
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
            reset_store(&opts, &backend_name);
            let decoder = Decoder::new(reasons);
            let name = "ftrace".to_string();
            state.rt.spawn(async move {
                let report = AssertUnwindSafe(run_ftrace(session, decoder, stop_rx, name.clone()))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| failed(&name));
                let _ = done_tx.send(report);
            });
        }
    }
    let mut description = format!("droptrace {backend_name}");
    if !opts.filter.is_empty() {
        description.push_str(&format!(" [{}]", opts.filter.describe()));
    }
    state.jobs.add(Box::new(DropTraceJob {
        description,
        stop_tx: Some(stop_tx),
        done: done_rx,
    }));
    Ok(lines)
}

fn reset_store(opts: &StartOptions, backend: &str) {
    let mut s = store();
    s.clear();
    s.keep = opts.keep;
    s.limit = opts.limit;
    s.filter = opts.filter.clone();
    s.backend = backend.to_string();
    s.running = true;
}

/// The tracer task panicked: mark it stopped so `start` works again.
fn failed(backend: &str) -> String {
    let lost = store().lost;
    format!(
        "{} (the tracer failed with an internal error)",
        finish(backend, lost)
    )
}

fn finish(backend: &str, lost: u64) -> String {
    let mut s = store();
    s.lost = lost;
    s.running = false;
    format!(
        "droptrace: stopped ({backend}): {} captured, {} matched, {} lost",
        s.captured, s.matched, s.lost
    )
}

/// The ring buffer's fd for `AsyncFd`; the tracer keeps owning it.
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Moves what the ring holds into the store, at most `max` events.
fn drain_ebpf(tracer: &mut DropTracer, decoder: &mut Decoder, max: usize) -> (usize, bool) {
    let mut records = Vec::new();
    let taken = tracer.drain_batch(max, |e| records.push(decoder.ebpf(e)));
    let done = store().ingest(records);
    (taken, done)
}

async fn run_ebpf(
    mut tracer: DropTracer,
    mut decoder: Decoder,
    mut stop: oneshot::Receiver<()>,
    backend: String,
) -> String {
    // SAFETY: the tracer owns the fd and outlives `ring`, which is dropped
    // before the tracer.
    let registered = unsafe {
        AsyncFd::register_with_interest(
            RingFd(tracer.events.as_raw_fd()),
            tokio::io::Interest::READABLE,
        )
    };
    let ring = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracer.detach();
            return format!("droptrace: cannot poll the ring buffer: {e}");
        }
    };
    // The program wakes us only for full batches (see WAKEUP_BYTES there).
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ready = ring.readable() => {
                let Ok(mut guard) = ready else { break };
                let (taken, done) = drain_ebpf(&mut tracer, &mut decoder, EBPF_BATCH);
                if taken < EBPF_BATCH {
                    guard.clear_ready();
                }
                if done {
                    break;
                }
            }
            _ = tick.tick() => {
                let (_, done) = drain_ebpf(&mut tracer, &mut decoder, EBPF_BATCH);
                ticks += 1;
                if ticks.is_multiple_of(20) {
                    store().lost = tracer.lost();
                }
                if done {
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
    drop(ring);
    tracer.detach();
    // After detach nothing new arrives: take what is left.
    loop {
        let (taken, done) = drain_ebpf(&mut tracer, &mut decoder, EBPF_BATCH);
        if taken == 0 || done {
            break;
        }
    }
    finish(&backend, tracer.lost())
}

fn drain_ftrace(session: &mut FtraceSession, decoder: &mut Decoder, max: usize) -> (usize, bool) {
    let mut records = Vec::new();
    let event = session.event.clone();
    let event = event.as_str();
    let Decoder {
        kallsyms,
        reasons,
        locations,
    } = decoder;
    let mut symbolize = |addr| Decoder::location(kallsyms, locations, addr);
    let read = session
        .read_batch(max, |line| {
            if let Some(r) = ftrace::parse_line(line, event, reasons, &mut symbolize) {
                records.push(r);
            }
        })
        .unwrap_or(0);
    let done = store().ingest(records);
    (read, done)
}

async fn run_ftrace(
    mut session: FtraceSession,
    mut decoder: Decoder,
    mut stop: oneshot::Receiver<()>,
    backend: String,
) -> String {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut lost_tick = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                let (read, done) = drain_ftrace(&mut session, &mut decoder, FTRACE_BATCH);
                lost_tick += 1;
                if lost_tick.is_multiple_of(10) {
                    store().lost = session.lost();
                }
                if done {
                    break;
                }
                if read >= FTRACE_BATCH {
                    // More is queued: go on without waiting for the tick.
                    tick.reset_immediately();
                }
            }
        }
        // A full batch is a lot of parsing: let other tasks run between.
        tokio::task::yield_now().await;
    }
    session.disable();
    loop {
        let (read, done) = drain_ftrace(&mut session, &mut decoder, FTRACE_BATCH);
        if read == 0 || done {
            break;
        }
    }
    finish(&backend, session.lost())
}
