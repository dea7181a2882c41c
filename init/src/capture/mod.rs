//! Packet capture (`capture start|stop|show`): a job (jobs.rs) per capture
//! that owns its backend — TC eBPF programs and their ring buffer
//! (ebpf.rs), or a TPACKET_V3 ring (af_packet.rs) — and its output file
//! (files.rs), and runs the shared drain loop from one into the other. On
//! stop it detaches first and then writes what is still queued, so nothing
//! the kernel captured is lost; a write error (full disk) ends that capture
//! and keeps what was written.
//!
//! What scripts read is the original's: `Started capture on IF -> FILE
//! (format: F) (unlimited|max N packets)[ (ignoring: nd,arp)]`, `Stopped
//! capture on IF (N packets captured)`, `Stopping N capture(s)...`. Ours
//! follows each on a line of its own (`capture IF: …`).

pub mod af_packet;
pub mod ebpf;
pub mod files;
pub mod ignore;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail};
use myinit_common::capture::SNAPLEN_MAX;

use self::af_packet::PacketRing;
use self::ebpf::TcCapture;
use self::files::{CaptureFile, Captured, Format};
use self::ignore::Ignore;
use crate::ebpf::tc::{Hook, TcPath};
use crate::filter::{Link, LiveFilter};
use crate::jobs::{drain_events, Drained, Ended, EventSource, JobId, JobKind};
use crate::kernel::requirements::{needs, Area, Requirements};
use crate::net::netlink::Netlink;
use crate::packet::linktype::{linktype_of_interface, ARPHRD_LOOPBACK, LINKTYPE_ETHERNET};
use crate::packet::pcap::{Direction, MAX_RECORD_DATA};
use crate::state::State;

/// Packets taken per turn before other tasks get theirs.
const BATCH: usize = 4096;

/// The default snap length: the whole frame (as much as a file record takes).
pub const DEFAULT_SNAPLEN: u32 = MAX_RECORD_DATA as u32;

/// `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF, else AF_PACKET (saying why); AF_PACKET when the snap length
    /// is above what the eBPF programs copy.
    Auto,
    Ebpf,
    Packet,
}

/// `--dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dir {
    Rx,
    Tx,
    Both,
}

impl Dir {
    fn keeps(self, d: Direction) -> bool {
        match self {
            Dir::Rx => d == Direction::Inbound,
            Dir::Tx => d == Direction::Outbound,
            Dir::Both => true,
        }
    }

    fn hooks(self) -> &'static [Hook] {
        match self {
            Dir::Rx => &[Hook::Ingress],
            Dir::Tx => &[Hook::Egress],
            Dir::Both => &[Hook::Ingress, Hook::Egress],
        }
    }
}

pub struct StartOptions {
    pub iface: String,
    pub file: String,
    pub format: Format,
    pub count: Option<u64>,
    /// None: the whole frame.
    pub snaplen: Option<u32>,
    pub backend: Backend,
    pub dir: Dir,
    pub ns: bool,
    /// The classes left out (the original's default: ND).
    pub ignore: Ignore,
    /// A pcap-filter expression: only what it selects is captured.
    pub filter: Option<String>,
}

/// What `capture show` shows of a running capture; counters are updated
/// by its job as it writes.
pub struct CaptureInfo {
    pub id: JobId,
    pub backend: String,
    pub linktype: u32,
    pub file: String,
    pub ignore: Ignore,
    pub filter: Option<String>,
    pub started: Instant,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
}

/// The captures started in this process, for `show` (finished ones are
/// removed when their job is stopped or replaced).
static CAPTURES: Mutex<Vec<Arc<CaptureInfo>>> = Mutex::new(Vec::new());

fn captures() -> std::sync::MutexGuard<'static, Vec<Arc<CaptureInfo>>> {
    CAPTURES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The name of a link type in `capture show`.
pub fn linktype_name(linktype: u32) -> String {
    match linktype {
        LINKTYPE_ETHERNET => "EN10MB".into(),
        crate::packet::linktype::LINKTYPE_RAW => "RAW".into(),
        other => other.to_string(),
    }
}

/// Whether job `id` is a capture on `iface` (`IF`, or `IF#N` for a second one).
pub fn is_on(id: &JobId, iface: &str) -> bool {
    id.kind == JobKind::Capture
        && (id.target == iface
            || id
                .target
                .strip_prefix(iface)
                .is_some_and(|rest| rest.starts_with('#')))
}

/// The backend a capture reads from.
enum Source {
    Ebpf {
        tc: Box<TcCapture>,
        /// CLOCK_REALTIME minus CLOCK_MONOTONIC at start, to put the
        /// programs' monotonic times on the wall clock.
        offset_ns: i128,
    },
    Packet(PacketRing),
}

impl Source {
    fn lost(&mut self) -> u64 {
        match self {
            Source::Ebpf { tc, .. } => tc.ring.lost(),
            Source::Packet(ring) => ring.read_drops(),
        }
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut t) };
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME) as u64
}

/// Where packets go: the file and what was written to it.
struct Sink {
    file: Option<CaptureFile>,
    limit: Option<u64>,
    packets: u64,
    bytes: u64,
    /// The write error that ended the capture.
    error: Option<String>,
    /// The interface went away (deleted, or its namespace).
    gone: bool,
}

impl Sink {
    fn write(&mut self, p: &Captured<'_>) {
        if self.done() {
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        match file.write(p) {
            Ok(()) => {
                self.packets += 1;
                self.bytes += p.data.len() as u64;
            }
            Err(e) => self.error = Some(crate::util::io_error(&e)),
        }
    }

    fn done(&self) -> bool {
        self.error.is_some() || self.gone || self.limit.is_some_and(|l| self.packets >= l)
    }
}

/// The job's state: backend, file and counters.
struct CaptureJob {
    source: Source,
    sink: Sink,
    info: Arc<CaptureInfo>,
    dir: Dir,
    /// The snap length a frame with its VLAN tag put back is cut to.
    snaplen: u32,
    /// Where such a frame is put together.
    tagged: Vec<u8>,
    ifindex: u32,
}

/// A frame whose 802.1Q/802.1ad tag the device took into the sk_buff
/// (VLAN offload) with the tag back after its MAC addresses, as it was on
/// the wire and as libpcap shows it, cut to `snaplen`; other frames as
/// they are. Gives the bytes and the original length.
#[inline]
fn with_vlan<'a>(
    data: &'a [u8],
    orig_len: u32,
    vlan: Option<(u16, u16)>,
    snaplen: u32,
    buf: &'a mut Vec<u8>,
) -> (&'a [u8], u32) {
    let Some((tpid, tci)) = vlan.filter(|_| data.len() >= 12) else {
        return (data, orig_len);
    };
    buf.clear();
    buf.extend_from_slice(&data[..12]);
    buf.extend_from_slice(&tpid.to_be_bytes());
    buf.extend_from_slice(&tci.to_be_bytes());
    buf.extend_from_slice(&data[12..]);
    buf.truncate(snaplen as usize);
    (buf.as_slice(), orig_len + 4)
}

impl EventSource for CaptureJob {
    async fn ready(&mut self) {
        match &mut self.source {
            Source::Ebpf { tc, .. } => tc.ring.ready().await,
            Source::Packet(ring) => ring.ready().await,
        }
    }

    fn drain(&mut self, max: usize) -> Drained {
        let sink = &mut self.sink;
        if sink.done() {
            return Drained {
                taken: 0,
                done: true,
            };
        }
        // Never take more than COUNT still allows: what is taken is written.
        let max = match sink.limit {
            Some(l) => max.min((l - sink.packets) as usize),
            None => max,
        };
        let (snaplen, tagged) = (self.snaplen, &mut self.tagged);
        let taken = match &mut self.source {
            Source::Ebpf { tc, offset_ns } => {
                let offset = *offset_ns;
                tc.drain(max, |p| {
                    let (data, orig_len) = with_vlan(p.data, p.orig_len, p.vlan, snaplen, tagged);
                    sink.write(&Captured {
                        timestamp_ns: (i128::from(p.monotonic_ns) + offset).max(0) as u64,
                        orig_len,
                        data,
                        direction: p.direction,
                        process: p.process,
                    });
                })
            }
            Source::Packet(ring) => {
                let dir = self.dir;
                ring.drain(max, |p| {
                    if dir.keeps(p.direction) {
                        let (data, orig_len) =
                            with_vlan(p.data, p.orig_len, p.vlan, snaplen, tagged);
                        sink.write(&Captured {
                            timestamp_ns: p.timestamp_ns,
                            orig_len,
                            data,
                            direction: p.direction,
                            process: None,
                        });
                    }
                })
            }
        };
        // Idle: push what is buffered so the file shows it now, and see
        // that the interface is still there (its programs or socket would
        // wait for packets that cannot come).
        if taken < max && sink.error.is_none() {
            if let Some(Err(e)) = sink.file.as_mut().map(|f| f.flush()) {
                sink.error = Some(crate::util::io_error(&e));
            }
            sink.gone = !crate::net::iface::index_exists(self.ifindex);
        }
        self.info.packets.store(sink.packets, Ordering::Relaxed);
        self.info.bytes.store(sink.bytes, Ordering::Relaxed);
        if taken > 0 {
            let lost = self.source.lost();
            self.info.lost.store(lost, Ordering::Relaxed);
        }
        Drained {
            taken,
            done: self.sink.done(),
        }
    }

    fn stop_new(&mut self) {
        match &mut self.source {
            Source::Ebpf { tc, .. } => tc.detach(),
            Source::Packet(ring) => ring.stop_new(),
        }
    }
}

/// What capture needs from the kernel.
pub const REQUIREMENTS: Requirements = Requirements {
    capability: "capture",
    options: &[
        needs(
            Area::Bpf,
            "CONFIG_NET_CLS_BPF",
            "capture, fakehost (eBPF backends)",
        ),
        needs(
            Area::Bpf,
            "CONFIG_NET_SCH_INGRESS",
            "capture, fakehost (clsact qdisc)",
        ),
        needs(
            Area::Net,
            "CONFIG_PACKET",
            "capture, inject, fakehost (AF_PACKET)",
        ),
    ],
    backends: None,
    self_test: Some(|| Box::pin(ebpf::self_test())),
};

/// The job id for a new capture on `iface`: `IF`, or `IF#2`, `IF#3`, … when
/// captures already run there.
fn free_id(state: &State, iface: &str) -> JobId {
    let running = |target: &str| state.jobs.is_running(&JobId::new(JobKind::Capture, target));
    if !running(iface) {
        return JobId::new(JobKind::Capture, iface);
    }
    let n = (2..)
        .find(|n| !running(&format!("{iface}#{n}")))
        .unwrap_or(2);
    JobId::new(JobKind::Capture, format!("{iface}#{n}"))
}

/// Starts a capture as a job; returns the lines to print (the original's,
/// then ours). It returns once packets are being captured (programs
/// attached, or the socket bound).
pub fn start(state: &State, opts: StartOptions) -> anyhow::Result<String> {
    let iface = opts.iface.clone();
    let ifindex = crate::net::iface::ifindex(&iface)?;
    if opts.snaplen == Some(0) {
        anyhow::bail!("--snaplen must be at least 1");
    }
    let snaplen = opts.snaplen.unwrap_or(DEFAULT_SNAPLEN).min(DEFAULT_SNAPLEN);
    let arphrd = state.rt.block_on(async {
        let nl = Netlink::open()?;
        anyhow::Ok(nl.link(ifindex).await?.link_type)
    })?;
    let linktype = linktype_of_interface(arphrd).ok_or_else(|| {
        anyhow!("{iface}: interfaces of ARPHRD type {arphrd} cannot be captured (Ethernet or no link header)")
    })?;
    // lo hands each packet it sends straight back to its own receive path,
    // so its egress and ingress see the same packet: with both directions
    // every packet would be written twice. tcpdump on lo shows each once
    // (libpcap drops lo's outgoing copies), and so does this: the copy
    // received. `--dir tx` still gives the sent copies.
    // The filter is checked before anything is made or attached.
    let filter = opts
        .filter
        .as_deref()
        .map(|text| {
            let link = if linktype == LINKTYPE_ETHERNET {
                Link::Ethernet
            } else {
                Link::RawIp
            };
            LiveFilter::compile(text, link).map_err(|e| anyhow!("filter: {e}"))
        })
        .transpose()?;
    // The classic program both backends run: the socket filter, or
    // translated to eBPF at TC.
    let filter_program = filter
        .as_ref()
        .map(|f| crate::filter::gen::generate(&f.expr, f.link))
        .transpose()
        .map_err(|e| anyhow!("filter: {e}"))?;
    let once = arphrd == ARPHRD_LOOPBACK && opts.dir == Dir::Both;
    let dir = if once { Dir::Rx } else { opts.dir };
    let id = free_id(state, &iface);
    let second = id.target != iface;
    let want_ebpf = match opts.backend {
        Backend::Packet => false,
        Backend::Ebpf => {
            if opts.snaplen.is_some_and(|s| s as usize > SNAPLEN_MAX) {
                bail!("--snaplen {snaplen}: the eBPF backend copies at most {SNAPLEN_MAX} bytes (--backend packet copies more)");
            }
            true
        }
        // An explicit snap length above what the programs copy is kept.
        Backend::Auto => opts.snaplen.is_none_or(|s| s as usize <= SNAPLEN_MAX),
    };
    // Two captures into one file would write over each other.
    {
        use std::os::unix::fs::MetadataExt as _;
        let same = |a: &str, b: &str| match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => a == b,
        };
        let list = captures();
        if let Some(c) = list
            .iter()
            .find(|c| state.jobs.is_running(&c.id) && same(&c.file, &opts.file))
        {
            bail!("{}: capture {} writes it already", opts.file, c.id.target);
        }
    }
    // The file first: a bad path changes nothing on the interface.
    // The header announces --snaplen as given (tcpdump -s does), else
    // the largest a packet may have.
    let file = CaptureFile::create(&opts.file, opts.format, &iface, linktype, opts.ns, snaplen)
        .map_err(|e| anyhow!("{}: {}", opts.file, crate::util::io_error(&e)))?;
    let remove_file = || {
        let _ = std::fs::remove_file(&opts.file);
    };
    let mut note = String::new();
    if opts.backend == Backend::Auto && !want_ebpf {
        note = format!("; --snaplen {snaplen} is more than the eBPF backend copies ({SNAPLEN_MAX}), so AF_PACKET");
    }
    let tc = if want_ebpf {
        let opened = state.rt.block_on(async {
            // A clsact attach first removes filters of the same program
            // name, which would be the running capture's own.
            if second && crate::ebpf::tc::choose_path()? == TcPath::Clsact {
                bail!("{iface}: a second eBPF capture on one interface needs TCX (Linux 6.6+)");
            }
            // The programs copy at most SNAPLEN_MAX: the default (the
            // whole frame) asks for more, and a longer packet is cut there.
            TcCapture::open(
                &iface,
                dir.hooks(),
                snaplen.min(SNAPLEN_MAX as u32),
                opts.ignore.bits(),
                linktype == LINKTYPE_ETHERNET,
                filter_program.as_deref(),
            )
            .await
        });
        match (opened, opts.backend) {
            (Ok(tc), _) => Some(tc),
            (Err(e), Backend::Auto) => {
                note = format!("; eBPF unavailable ({e:#}), using AF_PACKET");
                None
            }
            (Err(e), _) => {
                remove_file();
                bail!("eBPF backend: {e:#}");
            }
        }
    } else {
        None
    };
    let (source, backend) = match tc {
        Some(tc) => {
            let backend = format!("ebpf ({})", tc.path.name());
            if tc.removed_orphans > 0 {
                note.push_str(&format!(
                    "; removed {} filter(s) a killed myinit left",
                    tc.removed_orphans
                ));
            }
            let offset_ns = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC);
            (
                Source::Ebpf {
                    tc: Box::new(tc),
                    offset_ns,
                },
                backend,
            )
        }
        None => match state.rt.block_on(async {
            let filter =
                opts.ignore
                    .socket_filter(linktype == LINKTYPE_ETHERNET, snaplen, filter.as_ref());
            PacketRing::open(ifindex, &filter)
        }) {
            Ok(ring) => (Source::Packet(ring), "packet (tpacket_v3)".to_string()),
            Err(e) => {
                remove_file();
                bail!(
                    "{iface}: AF_PACKET backend: {}{note}",
                    crate::util::io_error(&e)
                );
            }
        },
    };
    let effective_snaplen = match source {
        Source::Ebpf { .. } => snaplen.min(SNAPLEN_MAX as u32),
        Source::Packet(_) => snaplen,
    };
    let info = Arc::new(CaptureInfo {
        id: id.clone(),
        backend: backend.clone(),
        linktype,
        file: opts.file.clone(),
        ignore: opts.ignore,
        filter: opts.filter.clone(),
        started: Instant::now(),
        packets: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    let job = CaptureJob {
        source,
        sink: Sink {
            file: Some(file),
            limit: opts.count,
            packets: 0,
            bytes: 0,
            error: None,
            gone: false,
        },
        info: info.clone(),
        dir,
        snaplen: effective_snaplen,
        tagged: Vec::new(),
        ifindex,
    };
    let description = format!("capture {iface} to {} ({backend})", opts.file);
    {
        let mut list = captures();
        list.retain(|c| c.id != id);
        list.push(info.clone());
    }
    let target = id.target.clone();
    let job_target = target.clone();
    state
        .jobs
        .spawn(&state.rt, id, description, move |cancel| async move {
            let mut job = job;
            let ended = drain_events(&mut job, &cancel, BATCH).await;
            finish(job, ended, &job_target)
        })?;
    let dir = match opts.dir {
        _ if once => "rx+tx (lo: each packet once, as received)",
        Dir::Rx => "rx",
        Dir::Tx => "tx",
        Dir::Both => "rx+tx",
    };
    let limit = match opts.count {
        Some(n) => format!("(max {n} packets)"),
        None => "(unlimited)".to_string(),
    };
    let ignoring = match opts.ignore.names() {
        names if names.is_empty() => String::new(),
        names => format!(" (ignoring: {names})"),
    };
    Ok(format!(
        "Started capture on {target} -> {} (format: {}) {limit}{ignoring}\n\
         capture {target}: {backend}, {} {dir}, snaplen {effective_snaplen}{note}",
        opts.file,
        opts.format.name(),
        linktype_name(linktype),
    ))
}

/// Detaches, closes the file and says how the capture ended.
fn finish(mut job: CaptureJob, ended: Ended, target: &str) -> String {
    let lost = job.source.lost();
    // Detached (and the ring unmapped) before the report says it stopped.
    drop(job.source);
    let sink = &mut job.sink;
    let received = sink.packets + lost;
    if let Some(file) = sink.file.take() {
        let (kept, kept_bytes, closed) = file.finish(realtime_ns(), received, lost);
        // Only what is wholly in the file counts as written.
        (sink.packets, sink.bytes) = (kept, kept_bytes);
        if let (Err(e), None) = (closed, &sink.error) {
            sink.error = Some(crate::util::io_error(&e));
        }
    }
    job.info.packets.store(sink.packets, Ordering::Relaxed);
    job.info.bytes.store(sink.bytes, Ordering::Relaxed);
    job.info.lost.store(lost, Ordering::Relaxed);
    let how = match (&sink.error, ended) {
        (Some(e), _) => format!("stopped: {}: write error: {e}", job.info.file),
        (None, _) if sink.gone => "stopped: the interface went away".to_string(),
        (None, Ended::ByItself) => "COUNT reached".to_string(),
        (None, Ended::Stopped) => "stopped".to_string(),
    };
    format!(
        "capture {target}: {how}: {} packets ({} bytes) written to {}, {lost} lost",
        sink.packets, sink.bytes, job.info.file
    )
}

/// Stops the captures on `iface` (None: all); for each, the original's
/// line (`Stopped capture on IF (N packets captured)`) and its report. A
/// capture that had ended by itself gives the report it ended with.
pub fn stop(state: &State, iface: Option<&str>) -> anyhow::Result<Vec<String>> {
    let stopped = state.jobs.stop_where_ids(|id| match iface {
        Some(i) => is_on(id, i),
        None => id.kind == JobKind::Capture,
    });
    let infos: Vec<Arc<CaptureInfo>> = {
        let mut list = captures();
        let (gone, kept) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|c| match iface {
                Some(i) => is_on(&c.id, i),
                None => true,
            });
        *list = kept;
        gone
    };
    if stopped.is_empty() {
        // The original's words, which scripts may read.
        match iface {
            Some(i) => bail!("No capture running on interface {i}"),
            None => return Ok(Vec::new()),
        }
    }
    let mut lines = Vec::new();
    for (id, report) in stopped {
        if let Some(info) = infos.iter().find(|c| c.id == id) {
            lines.push(format!(
                "Stopped capture on {} ({} packets captured)",
                id.target,
                info.packets.load(Ordering::Relaxed)
            ));
        }
        lines.push(report);
    }
    Ok(lines)
}

/// `capture show`: one line per capture.
pub fn show(state: &State) -> String {
    let jobs = state.jobs.list();
    let list = captures();
    let mut rows = Vec::new();
    for c in list.iter() {
        let Some(job) = jobs.iter().find(|j| j.id == c.id) else {
            continue;
        };
        let packets = c.packets.load(Ordering::Relaxed);
        let elapsed = c.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            packets as f64 / elapsed
        } else {
            0.0
        };
        let name = if job.finished {
            format!("{} (ended)", c.id.target)
        } else {
            c.id.target.clone()
        };
        let ignoring = match c.ignore.names() {
            names if names.is_empty() => "-".to_string(),
            names => names,
        };
        rows.push(vec![
            name,
            c.backend.clone(),
            linktype_name(c.linktype).to_string(),
            c.file.clone(),
            ignoring,
            packets.to_string(),
            c.bytes.load(Ordering::Relaxed).to_string(),
            c.lost.load(Ordering::Relaxed).to_string(),
            format!("{rate:.1} pkt/s"),
            format!("{elapsed:.1} s"),
            c.filter.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let shown = rows.len();
    if shown == 0 {
        return "no capture running\n".into();
    }
    crate::util::columns(
        &[
            "IF", "BACKEND", "LINKTYPE", "FILE", "IGNORING", "PACKETS", "BYTES", "LOST", "RATE",
            "ELAPSED", "FILTER",
        ],
        &[
            false, false, false, false, false, true, true, true, true, true, false,
        ],
        &rows,
    )
}
