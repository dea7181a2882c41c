//! The eBPF backend: `ebpf-programs/src/bin/droptrace.rs`, loaded through
//! the shared `ebpf/` layer with the running kernel's facts (tracepoint
//! field offsets from tracefs, `sk_buff` member offsets from BTF) handed in
//! as globals, its events read from its own ring buffer.

use std::os::fd::{AsFd as _, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use std::sync::Arc;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap, StackTraceMap};
use aya::programs::{BtfTracePoint, TracePoint};
use myinit_common::droptrace::{DropEvent, DropSummaryKey, MODE_EVENTS, MODE_SUMMARY};

use super::KernelInfo;
use crate::ebpf::ring::{self, RingReader};
use crate::ebpf::{raw, Object};
use crate::filter::{bpf, ebpf as filter_ebpf, Filter, FilterError, Link};
use crate::kernel::btf::KernelBtf;
use crate::kernel::tracefs;

/// The object built from `ebpf-programs/src/bin/droptrace.rs` by init/build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/droptrace"));

/// Which kernel hook the eBPF backend may attach to (`--hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// tp_btf when the kernel's BTF has it, else the classic tracepoint.
    Auto,
    /// `tp_btf/kfree_skb` only.
    TpBtf,
    /// The classic `skb:kfree_skb` tracepoint (format-file offsets).
    Tracepoint,
}

/// Which kernel hook the eBPF drop tracer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropHook {
    /// `tp_btf/kfree_skb`: arguments by position, needs kernel BTF (5.5+).
    BtfTracepoint,
    /// Classic `skb:kfree_skb`: field offsets from the tracefs format file.
    Tracepoint,
}

impl DropHook {
    pub fn describe(self) -> &'static str {
        match self {
            DropHook::BtfTracepoint => "tp_btf/kfree_skb",
            DropHook::Tracepoint => "tracepoint skb:kfree_skb",
        }
    }

    fn program(self) -> &'static str {
        match self {
            DropHook::BtfTracepoint => "kfree_skb_btf",
            DropHook::Tracepoint => "kfree_skb",
        }
    }

    /// The program the filter tail-calls on a match.
    fn matched_program(self) -> &'static str {
        match self {
            DropHook::BtfTracepoint => "kfree_skb_btf_matched",
            DropHook::Tracepoint => "kfree_skb_matched",
        }
    }
}

/// A pcap-filter expression for the tracer, compiled for both kinds of
/// dropped packet: those with an Ethernet header before the network
/// header, and those without (raw IP; None when the expression means
/// nothing there, as `ether host`: such drops never match).
#[derive(Clone, Debug)]
pub struct TracerFilter {
    pub text: String,
    pub ethernet: Vec<bpf::Insn>,
    pub raw: Option<Vec<bpf::Insn>>,
}

impl TracerFilter {
    pub fn compile(text: &str) -> Result<Self, FilterError> {
        let ethernet = Filter::compile(text, Link::Ethernet)?.program;
        let raw = Filter::compile(text, Link::RawIp).ok().map(|f| f.program);
        Ok(TracerFilter {
            text: text.to_string(),
            ethernet,
            raw,
        })
    }
}

/// Member offsets (bytes) of `struct sk_buff` and `struct net_device` in
/// the running kernel, from its BTF; handed to the program as globals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbOffsets {
    pub head: u32,
    pub network_header: u32,
    /// `mac_header`, `tail` and `data`: where `--snaplen` bytes start and
    /// end, when the BTF has them.
    pub packet: Option<(u32, u32, u32)>,
    pub dev: u32,
    pub len: u32,
    pub protocol: u32,
    pub ifindex: u32,
    pub name: u32,
    /// `net_device.nd_net` and `net.ns.inum` (the ns_common inside `net`):
    /// the device's namespace, when the BTF has them.
    pub netns: Option<(u32, u32)>,
}

impl SkbOffsets {
    /// Looks up the members the program reads; None if any is missing.
    pub fn from_btf(btf: &crate::kernel::btf::Btf) -> Option<Self> {
        let skb = |m: &str| btf.member_offset("sk_buff", m);
        let dev = |m: &str| btf.member_offset("net_device", m);
        Some(SkbOffsets {
            head: skb("head")?,
            network_header: skb("network_header")?,
            packet: skb("mac_header")
                .zip(skb("tail"))
                .zip(skb("data"))
                .map(|((mac, tail), data)| (mac, tail, data)),
            dev: skb("dev")?,
            len: skb("len")?,
            protocol: skb("protocol")?,
            ifindex: dev("ifindex")?,
            name: dev("name")?,
            netns: dev("nd_net").zip(
                btf.member_offset("net", "ns")
                    .zip(btf.member_offset("ns_common", "inum"))
                    .map(|(ns, inum)| ns + inum),
            ),
        })
    }
}

/// What a run asks of the programs besides the hook.
#[derive(Clone, Debug, Default)]
pub struct TraceOptions {
    /// Only drops whose packet this selects are traced (in the kernel).
    pub filter: Option<Arc<TracerFilter>>,
    /// Count in the kernel only (`--summary`).
    pub summary: bool,
    /// Take each drop's kernel stack into a map of this many entries (`--stack`).
    pub stack_entries: Option<u32>,
    /// Packet bytes per event (`--snaplen`), 0 for none.
    pub snaplen: u32,
    /// `--dev` (as `net_device.name` holds it) and `--netns`, selected in
    /// the kernel before the filter expression and the ring.
    pub dev: Option<[u8; 16]>,
    pub netns: Option<u32>,
    /// `--reason`, selected in the kernel too when the running kernel's
    /// reason names give its number (a subsystem's is matched in userspace).
    pub reason: Option<String>,
}

/// The kernel stacks of a run, by id (the program's `DROP_STACKS` map,
/// kept open after the run so `show --stack` can still read it).
pub type Stacks = Arc<StackTraceMap<MapData>>;

/// The loaded and attached drop tracer.
pub struct DropTracer {
    object: Object,
    pub events: RingReader,
    /// Summary mode's per-CPU counts (empty in event mode).
    summary: PerCpuHashMap<MapData, DropSummaryKey, u64>,
    /// With `--stack`: the stack map, and the per-CPU count of stacks it
    /// could not take.
    pub stacks: Option<Stacks>,
    stack_lost: PerCpuArray<MapData, u64>,
    pub hook: DropHook,
    /// The translated filter (in the object's program array).
    _filter: Option<OwnedFd>,
}

/// Loads the filter translated for `hook` into slot 0 of `map` (the
/// matched program is in slot 1 already).
fn install_filter(
    map: RawFd,
    hook: DropHook,
    filter: &TracerFilter,
    skb: filter_ebpf::SkbSource,
    offsets: Option<SkbOffsets>,
    tp_btf_id: Option<u32>,
) -> anyhow::Result<OwnedFd> {
    let (offsets, (mac, tail, data)) = offsets
        .and_then(|o| Some((o, o.packet?)))
        .ok_or_else(|| {
            anyhow!("a filter reads the dropped packet, which needs sk_buff's head, data, len, tail and header offsets: this kernel's BTF does not give them")
        })?;
    let fields = filter_ebpf::SkbFields {
        head: offsets.head,
        data,
        len: offsets.len,
        tail,
        network_header: offsets.network_header,
        mac_header: mac,
    };
    let insns = filter_ebpf::translate(
        &filter.ethernet,
        filter.raw.as_deref(),
        filter_ebpf::Hook::Tracer {
            skb,
            offsets: fields,
        },
        filter_ebpf::Verdict::TailCall {
            map,
            index: 1,
            miss: 0,
        },
    )?;
    let kind = match hook {
        DropHook::BtfTracepoint => raw::ProgramKind {
            prog_type: raw::PROG_TYPE_TRACING,
            expected_attach_type: raw::ATTACH_TRACE_RAW_TP,
            attach_btf_id: tp_btf_id
                .ok_or_else(|| anyhow!("the kernel's BTF has no btf_trace_kfree_skb"))?,
        },
        DropHook::Tracepoint => raw::ProgramKind {
            prog_type: raw::PROG_TYPE_TRACEPOINT,
            expected_attach_type: 0,
            attach_btf_id: 0,
        },
    };
    let fd = raw::load("drop_filter", kind, &insns)?;
    raw::set_slot(map, 0, fd.as_fd())?;
    Ok(fd)
}

impl DropTracer {
    /// Loads and attaches one kfree_skb program with the running kernel's
    /// offsets. Must run inside the tokio runtime (ring and log readers).
    fn attach(
        hook: DropHook,
        btf: Option<&aya::Btf>,
        tracefs: Option<&Path>,
        offsets: Option<SkbOffsets>,
        tp_btf_id: Option<u32>,
        options: &TraceOptions,
        want_reason: Option<u32>,
    ) -> anyhow::Result<Self> {
        let mode = if options.summary {
            MODE_SUMMARY
        } else {
            MODE_EVENTS
        };
        let stack = u32::from(options.stack_entries.is_some());
        if options.snaplen != 0 && offsets.and_then(|o| o.packet).is_none() {
            bail!("packet bytes need sk_buff's mac_header, tail and data offsets, which this kernel's BTF does not give");
        }
        let tp_offsets = match hook {
            DropHook::Tracepoint => {
                let tracefs =
                    tracefs.ok_or_else(|| anyhow!("the classic tracepoint needs tracefs"))?;
                let fields = tracefs::tracepoint_fields(tracefs, "skb", "kfree_skb")?;
                let offset = |name: &str| {
                    fields
                        .iter()
                        .find(|f| f.name == name)
                        .map_or(u32::MAX, |f| f.offset)
                };
                let offsets = [
                    offset("skbaddr"),
                    offset("location"),
                    offset("protocol"),
                    offset("reason"),
                ];
                if offsets[1] == u32::MAX {
                    bail!("skb:kfree_skb has no 'location' field in its format file");
                }
                offsets
            }
            DropHook::BtfTracepoint => [u32::MAX; 4],
        };
        let skb = offsets.map_or([u32::MAX; 12], |o| {
            let (nd_net, inum) = o.netns.unwrap_or((u32::MAX, u32::MAX));
            let (mac, tail, data) = o.packet.unwrap_or((u32::MAX, u32::MAX, u32::MAX));
            [
                o.head,
                o.network_header,
                o.dev,
                o.len,
                o.protocol,
                o.ifindex,
                o.name,
                nd_net,
                inum,
                mac,
                tail,
                data,
            ]
        });
        let filtered = u8::from(options.filter.is_some());
        // Without sk_buff offsets the kernel can match no device: start
        // refuses --dev and --netns then, after attach says why.
        let want_dev = u8::from(options.dev.is_some());
        let name = options.dev.unwrap_or_default();
        let name_lo = u64::from_ne_bytes(name[..8].try_into().unwrap_or_default());
        let name_hi = u64::from_ne_bytes(name[8..].try_into().unwrap_or_default());
        let want_netns = options.netns.unwrap_or(0);
        let want_reason = want_reason.unwrap_or(u32::MAX);
        let mut object = Object::load(OBJECT, btf, |loader| {
            loader.override_global("FILTERED", &filtered, true);
            loader.override_global("WANT_DEV", &want_dev, true);
            loader.override_global("WANT_DEV_NAME_LO", &name_lo, true);
            loader.override_global("WANT_DEV_NAME_HI", &name_hi, true);
            loader.override_global("WANT_NETNS", &want_netns, true);
            loader.override_global("WANT_REASON", &want_reason, true);
            for (name, value) in [
                ("KFREE_SKB_OFF_SKBADDR", &tp_offsets[0]),
                ("KFREE_SKB_OFF_LOCATION", &tp_offsets[1]),
                ("KFREE_SKB_OFF_PROTOCOL", &tp_offsets[2]),
                ("KFREE_SKB_OFF_REASON", &tp_offsets[3]),
                ("SKB_OFF_HEAD", &skb[0]),
                ("SKB_OFF_NETWORK_HEADER", &skb[1]),
                ("SKB_OFF_DEV", &skb[2]),
                ("SKB_OFF_LEN", &skb[3]),
                ("SKB_OFF_PROTOCOL", &skb[4]),
                ("NETDEV_OFF_IFINDEX", &skb[5]),
                ("NETDEV_OFF_NAME", &skb[6]),
                ("NETDEV_OFF_ND_NET", &skb[7]),
                ("NET_OFF_INUM", &skb[8]),
                ("SKB_OFF_MAC_HEADER", &skb[9]),
                ("SKB_OFF_TAIL", &skb[10]),
                ("SKB_OFF_DATA", &skb[11]),
                ("MODE", &mode),
                ("STACK", &stack),
                ("SNAPLEN", &options.snaplen),
            ] {
                loader.override_global(name, value, true);
            }
            // Without --stack the map is never written: one entry, not megabytes.
            loader.map_max_entries("DROP_STACKS", options.stack_entries.unwrap_or(1));
        })?;
        let map = object.map_fd("DROP_FILTER")?;
        let mut filter_fd = None;
        match hook {
            DropHook::Tracepoint => {
                if let Some(filter) = &options.filter {
                    let matched: &mut TracePoint = object.program_mut(hook.matched_program())?;
                    matched.load().context("loading kfree_skb_matched")?;
                    raw::set_slot(map, 1, matched.fd()?.as_fd())?;
                    if tp_offsets[0] == u32::MAX {
                        bail!("skb:kfree_skb has no 'skbaddr' field in its format file: no filter");
                    }
                    let skb = filter_ebpf::SkbSource::Record(tp_offsets[0]);
                    filter_fd = Some(install_filter(map, hook, filter, skb, offsets, None)?);
                }
                let program: &mut TracePoint = object.program_mut(hook.program())?;
                program.load().context("loading kfree_skb")?;
                program
                    .attach("skb", "kfree_skb")
                    .context("attaching to skb:kfree_skb")?;
            }
            DropHook::BtfTracepoint => {
                let btf = btf.ok_or_else(|| anyhow!("tp_btf needs the kernel's BTF"))?;
                if let Some(filter) = &options.filter {
                    let matched: &mut BtfTracePoint = object.program_mut(hook.matched_program())?;
                    matched
                        .load("kfree_skb", btf)
                        .context("loading tp_btf/kfree_skb (matched)")?;
                    raw::set_slot(map, 1, matched.fd()?.as_fd())?;
                    let skb = filter_ebpf::SkbSource::BtfArg;
                    filter_fd = Some(install_filter(map, hook, filter, skb, offsets, tp_btf_id)?);
                }
                let program: &mut BtfTracePoint = object.program_mut(hook.program())?;
                program
                    .load("kfree_skb", btf)
                    .context("loading tp_btf/kfree_skb")?;
                program.attach().context("attaching tp_btf/kfree_skb")?;
            }
        }
        object.forward_log();
        let events = RingReader::take(&mut object, "DROP_EVENTS", "DROP_LOST")?;
        let summary = PerCpuHashMap::try_from(object.take_map("DROP_SUMMARY")?)?;
        let stack_map = StackTraceMap::try_from(object.take_map("DROP_STACKS")?)?;
        let stack_lost = PerCpuArray::try_from(object.take_map("DROP_STACK_LOST")?)?;
        Ok(DropTracer {
            object,
            events,
            summary,
            stacks: options.stack_entries.map(|_| Arc::new(stack_map)),
            stack_lost,
            hook,
            _filter: filter_fd,
        })
    }

    /// Detaches the program: no new events; queued ones stay readable.
    pub fn detach(&mut self) {
        let hook = self.hook;
        let _ = match hook {
            DropHook::Tracepoint => self
                .object
                .program_mut::<TracePoint>(hook.program())
                .map(|p| p.unload()),
            DropHook::BtfTracepoint => self
                .object
                .program_mut::<BtfTracePoint>(hook.program())
                .map(|p| p.unload()),
        };
    }

    /// Summary mode's counts so far, summed over CPUs. Iterating a hash map
    /// that the kernel updates may skip or repeat a key that is inserted
    /// meanwhile; counts of keys present are exact.
    pub fn summary_counts(&self) -> Vec<(DropSummaryKey, u64)> {
        self.summary
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| (key, per_cpu.iter().sum()))
            .collect()
    }

    /// Stacks the program could not store, summed over CPUs.
    pub fn stacks_lost(&self) -> u64 {
        self.stack_lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Takes every queued event (for the self-test).
    fn drain_all(&mut self) -> Vec<DropEvent> {
        let mut out = Vec::new();
        self.events.drain(usize::MAX, |bytes| {
            if let Some(event) = ring::record::<DropEvent>(bytes) {
                out.push(event);
            }
        });
        out
    }
}

/// Attaches the eBPF drop tracer: `tp_btf/kfree_skb` when the kernel's BTF
/// has it (with the reason argument), else the classic tracepoint; `hook`
/// can insist on one. BTF is read once for both the kernel facts and aya's
/// loader. The returned `KernelInfo` carries the reason names to decode
/// the events.
pub fn attach(hook: Hook, options: TraceOptions) -> anyhow::Result<(DropTracer, KernelInfo)> {
    let btf = KernelBtf::get();
    let mut kernel = KernelInfo::probe(&btf);
    let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
    let mut btf_failure = None;
    let tp_btf_ok = kernel.tp_btf_args.is_some_and(|n| n >= 3);
    let tp_btf_id = btf
        .as_ref()
        .ok()
        .and_then(|b| b.types.tracepoint_id("kfree_skb"));
    if hook == Hook::TpBtf && !tp_btf_ok {
        bail!("--hook tp-btf: {}", kernel.describe());
    }
    if tp_btf_ok && hook != Hook::Tracepoint {
        match DropTracer::attach(
            DropHook::BtfTracepoint,
            aya_btf,
            None,
            kernel.offsets,
            tp_btf_id,
            &options,
            want_reason(&options, &kernel),
        ) {
            Ok(tracer) => return Ok((tracer, kernel)),
            Err(e) if hook == Hook::TpBtf => return Err(e),
            Err(e) => btf_failure = Some(format!("{e:#}")),
        }
    }
    let tracefs = tracefs::dir().map_err(|e| match &btf_failure {
        Some(f) => anyhow!("tp_btf failed ({f}); classic tracepoint: {e:#}"),
        None => anyhow!("{}; classic tracepoint: {e:#}", kernel.describe()),
    })?;
    if kernel.reasons.is_empty() {
        kernel.reasons = super::format_reasons(&tracefs);
    }
    let tracer = DropTracer::attach(
        DropHook::Tracepoint,
        aya_btf,
        Some(&tracefs),
        kernel.offsets,
        None,
        &options,
        want_reason(&options, &kernel),
    )?;
    Ok((tracer, kernel))
}

/// `--reason` as this kernel numbers it, for the kernel-side selection.
fn want_reason(options: &TraceOptions, kernel: &KernelInfo) -> Option<u32> {
    options
        .reason
        .as_deref()
        .and_then(|name| kernel.reasons.value(name))
}

/// Loads and attaches the drop tracer the way `droptrace start --backend
/// ebpf` would, makes a drop on purpose (UDP to a closed port on loopback)
/// and reports what the program saw. Used by `kconfig bpf` to show that
/// eBPF really works on this kernel.
pub async fn self_test() -> anyhow::Result<String> {
    let (mut tracer, kernel) = attach(Hook::Auto, TraceOptions::default())?;
    let ours = std::process::id();
    // A closed port on loopback: the kernel frees the skb as a drop.
    if let Ok(netlink) = crate::net::netlink::Netlink::open() {
        let _ = netlink
            // lo is ifindex 1 in every network namespace.
            .set_link(1, &[crate::net::netlink::LinkChange::Up])
            .await;
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let closed = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    for _ in 0..3 {
        let _ = socket.send_to(b"myinit self-test", ("127.0.0.1", closed));
    }
    let mut seen = 0usize;
    let mut ours_seen = Vec::new();
    let mut ours_count = 0usize;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for event in tracer.drain_all() {
            seen += 1;
            if event.pid == ours {
                ours_count += 1;
                ours_seen.push(kernel.reasons.name(event.reason));
            }
        }
        if !ours_seen.is_empty() {
            break;
        }
    }
    ours_seen.dedup();
    let (hook, lost) = (tracer.hook.describe(), tracer.events.lost());
    Ok(format!(
        "{}\neBPF: loaded and attached kfree_skb ({hook}); {seen} drop event(s) seen, {} from the self-test's \
         packets (reason {}), {lost} lost",
        super::capabilities_with(&Ok((tracer, kernel))),
        ours_count,
        if ours_seen.is_empty() { "-".to_string() } else { ours_seen.join(",") },
    ))
}
