//! The eBPF backend: the capture object's TC programs on the interface's
//! ingress and/or egress (ebpf/tc.rs: TCX, or clsact + cls_bpf), queueing
//! each packet's first bytes and a `CaptureHeader` into one ring buffer.

use std::os::fd::{AsFd as _, OwnedFd};

use aya::programs::SchedClassifier;
use myinit_common::capture::{CaptureHeader, CAPTURE_EGRESS, CAPTURE_HAS_TASK, CAPTURE_HAS_VLAN};

use crate::ebpf::ring::{self, RingReader};
use crate::ebpf::tc::{self, Attached, Hook, TcPath};
use crate::ebpf::{raw, Object};
use crate::filter::{bpf, ebpf as filter_ebpf};
use crate::kernel::btf::KernelBtf;
use crate::packet::pcap::Direction;

/// The capture object built from `ebpf-programs/src/bin/capture.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture"));

const HEADER_LEN: usize = std::mem::size_of::<CaptureHeader>();
/// How long the reader waits for the programs' wake-up before it looks
/// anyway (each look is a few context switches, ~12 µs each here).
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Where `CaptureHeader::comm` starts in a record.
const COMM_AT: usize = std::mem::offset_of!(CaptureHeader, comm);

/// A packet from the ring, borrowed for the callback.
pub struct TcPacket<'a> {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub monotonic_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub direction: Direction,
    pub process: Option<(u32, &'a str)>,
    /// An offloaded VLAN tag (TPID, TCI), not in `data`.
    pub vlan: Option<(u16, u16)>,
}

/// The programs attached to an interface and the ring they fill.
pub struct TcCapture {
    attached: Vec<(Attached, &'static str)>,
    pub ring: RingReader,
    pub path: TcPath,
    /// Filters of these programs a killed myinit had left on the hooks,
    /// removed before attaching (clsact only).
    pub removed_orphans: usize,
    /// The translated filter programs (in the object's program array).
    _filters: Vec<OwnedFd>,
    // Declared last: dropped after the ring reader that reads its map.
    object: Object,
}

fn program_for(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => "capture_ingress",
        Hook::Egress => "capture_egress",
    }
}

/// The hook's slot in `CAPTURE_FILTER` (its filter; the next one holds the
/// program the filter tail-calls on a match) and that program.
fn filter_slot(hook: Hook) -> (u32, &'static str) {
    match hook {
        Hook::Ingress => (0, "capture_ingress_matched"),
        Hook::Egress => (2, "capture_egress_matched"),
    }
}

/// `TC_ACT_UNSPEC`: what a filter returns for a packet it rejects.
const TC_ACT_UNSPEC: i32 = -1;

/// Loads the matched programs and the filter translated for each hook
/// into the program array (see `filter/ebpf.rs`).
fn install_filter(
    object: &mut Object,
    hooks: &[Hook],
    program: &[bpf::Insn],
    link_header: bool,
) -> anyhow::Result<Vec<OwnedFd>> {
    let map = object.map_fd("CAPTURE_FILTER")?;
    let base_map = if link_header {
        None
    } else {
        Some(object.map_fd("CAPTURE_PACKET")?)
    };
    let mut fds = Vec::new();
    for &hook in hooks {
        let (slot, matched) = filter_slot(hook);
        let p: &mut SchedClassifier = object.program_mut(matched)?;
        tc::load_program(p, matched)?;
        raw::set_slot(map, slot + 1, p.fd()?.as_fd())?;
        let insns = filter_ebpf::translate(
            program,
            None,
            filter_ebpf::Hook::Tc { base_map },
            filter_ebpf::Verdict::TailCall {
                map,
                index: slot + 1,
                miss: TC_ACT_UNSPEC,
            },
        )?;
        let kind = raw::ProgramKind::SCHED_CLS;
        let fd = raw::load(&format!("filter_{}", hook.name()), kind, &insns)?;
        raw::set_slot(map, slot, fd.as_fd())?;
        fds.push(fd);
    }
    Ok(fds)
}

/// `kconfig bpf`'s proof for capture: both programs pass this kernel's
/// verifier (loaded, not attached), and the TC path they would take.
pub async fn self_test() -> anyhow::Result<String> {
    let path = tc::choose_path()?;
    let btf = KernelBtf::get();
    let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
    let task_helpers = u8::from(tc::task_helpers_allowed());
    let mut object = tc::load_object(OBJECT, aya_btf, "lo", |loader| {
        loader.override_global("TASK_HELPERS", &task_helpers, true);
    })?;
    for hook in [Hook::Ingress, Hook::Egress] {
        let name = program_for(hook);
        tc::load_program(object.program_mut(name)?, name)?;
    }
    Ok(format!(
        "capture: eBPF backend: loaded {} and {} (attach via {})",
        program_for(Hook::Ingress),
        program_for(Hook::Egress),
        path.name()
    ))
}

impl TcCapture {
    /// Loads the object with the snap length and the classes to leave out
    /// (`IGNORE_*` bits; `link_header`: the interface's packets start with
    /// an Ethernet header) and attaches its programs to `hooks` of
    /// `iface`, ahead of any other program there, so they see what the
    /// stack sent whatever else is attached. Once it returns, packets are
    /// being captured. Must run inside the tokio runtime.
    pub async fn open(
        iface: &str,
        hooks: &[Hook],
        snaplen: u32,
        ignore: u8,
        link_header: bool,
        filter: Option<&[bpf::Insn]>,
    ) -> anyhow::Result<Self> {
        let path = tc::choose_path()?;
        let btf = KernelBtf::get();
        let aya_btf = btf.as_ref().ok().map(|b| &b.aya);
        let task_helpers = u8::from(tc::task_helpers_allowed());
        let link_bytes: u8 = if link_header { 14 } else { 0 };
        let filtered = u8::from(filter.is_some());
        let mut object = tc::load_object(OBJECT, aya_btf, iface, |loader| {
            loader.override_global("FILTERED", &filtered, true);
            loader.override_global("TASK_HELPERS", &task_helpers, true);
            loader.override_global("SNAPLEN", &snaplen, true);
            loader.override_global("IGNORE", &ignore, true);
            loader.override_global("LINK_HEADER", &link_bytes, true);
        })?;
        // The filter is in place before any packet reaches the programs.
        let filters = match filter {
            Some(program) => install_filter(&mut object, hooks, program, link_header)?,
            None => Vec::new(),
        };
        let mut attached = Vec::new();
        for &hook in hooks {
            let name = program_for(hook);
            let program: &mut SchedClassifier = object.program_mut(name)?;
            tc::load_program(program, name)?;
            match tc::attach(program, name, iface, hook, path, tc::Order::First).await {
                Ok(a) => attached.push((a, name)),
                Err(e) => {
                    for (a, name) in attached {
                        if let Ok(p) = object.program_mut::<SchedClassifier>(name) {
                            let _ = tc::detach(p, a);
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        let mut ring = RingReader::take(&mut object, "CAPTURE_RING", "CAPTURE_LOST")?;
        // The programs wake the reader every 1 MiB of records, so a flood
        // is read in big batches; the poll only bounds how late a trickle
        // (an interactive ping) reaches the file.
        ring.set_poll(POLL);
        let removed_orphans = attached.iter().map(|(a, _)| a.removed_orphans).sum();
        Ok(TcCapture {
            attached,
            ring,
            path,
            removed_orphans,
            _filters: filters,
            object,
        })
    }

    /// Hands at most `max` records to `f`; returns how many were taken.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(TcPacket<'_>)) -> usize {
        self.ring.drain(max, |bytes| {
            let Some(h) = ring::record::<CaptureHeader>(bytes) else {
                return;
            };
            let end = (HEADER_LEN + h.cap_len as usize).min(bytes.len());
            // The command name only where there is one (egress of a local
            // socket): most packets of a flood have none.
            let process = (h.flags & CAPTURE_HAS_TASK != 0).then(|| {
                // Borrowed from the record, not the header's copy.
                let comm = &bytes[COMM_AT..COMM_AT + h.comm.len()];
                let comm_end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                (
                    h.tgid,
                    std::str::from_utf8(&comm[..comm_end]).unwrap_or("?"),
                )
            });
            f(TcPacket {
                monotonic_ns: h.timestamp_ns,
                orig_len: h.orig_len,
                data: &bytes[HEADER_LEN..end],
                direction: if h.direction == CAPTURE_EGRESS {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                process,
                vlan: (h.flags & CAPTURE_HAS_VLAN != 0).then_some((h.vlan_tpid, h.vlan_tci)),
            })
        })
    }

    /// Detaches the programs; what they queued stays readable.
    pub fn detach(&mut self) {
        for (a, name) in std::mem::take(&mut self.attached) {
            if let Ok(p) = self.object.program_mut::<SchedClassifier>(name) {
                let _ = tc::detach(p, a);
            }
        }
    }
}

impl Drop for TcCapture {
    fn drop(&mut self) {
        self.detach();
    }
}
