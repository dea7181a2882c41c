//! The packet capture's TC programs (the capture job loads this object):
//! each packet's first `SNAPLEN` bytes and a `CaptureHeader` go into a ring
//! buffer. Traffic is never changed and the programs give no verdict
//! (`TC_ACT_UNSPEC`), so the next program on the hook runs as if they were
//! not there: another capture, or whatever else is attached (`TC_ACT_OK`
//! would end a TCX chain and pass the packet past them).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{
        bpf_hdr_start_off::{BPF_HDR_START_MAC, BPF_HDR_START_NET},
        TC_ACT_UNSPEC,
    },
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_skb_load_bytes,
        bpf_skb_load_bytes_relative,
    },
    macros::{classifier, map},
    maps::{PerCpuArray, ProgramArray, RingBuf},
    programs::TcContext,
    Global,
};
use myinit_common::capture::{
    CaptureHeader, CaptureRecord, CAPTURE_EGRESS, CAPTURE_HAS_TASK, CAPTURE_HAS_VLAN,
    CAPTURE_INGRESS, IGNORE_ARP, IGNORE_ND, ND_EXTENSION_HEADERS, RING_BYTES, SIZE_CLASSES,
    SNAPLEN_MAX,
};
use myinit_ebpf::{reserve_header_zeroed, submit_batched};

/// Captured packets for userspace, in records sized to the packet (see
/// `SIZE_CLASSES`).
#[map]
static CAPTURE_RING: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Bytes of records after which the reader is woken (~8,700 small records,
/// ~670 full-size ones; 1/32 of the ring); between two it finds them at its
/// next poll (every 50 ms). Each wake-up costs the reader a few context
/// switches, so a flood should bring few. A power of two.
const WAKEUP_BYTES: u64 = 1 << 20;

/// Packets the ring buffer could not take, per CPU (index 0).
#[map]
static CAPTURE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One word per CPU that `linear_from` passes its partial result through:
/// a value read back from a map is unknown to the verifier, so it checks
/// one path through each step instead of each outcome of the 17 probes
/// (2^34 paths for the two searches). TC programs run with preemption off,
/// so the slot is not shared while a program uses it.
#[map]
static CAPTURE_SCRATCH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The filter (`capture start … FILTER`), translated to eBPF at run time
/// (init's `filter/ebpf.rs`): slot 0 the ingress filter, 1 the ingress
/// program it tail-calls on a match (`capture_ingress_matched`), 2 and 3
/// the same for egress. Empty without a filter.
#[map]
static CAPTURE_FILTER: ProgramArray = ProgramArray::with_max_entries(4, 0);

/// Where the packet starts in the skb's data and its length (`Packet`'s
/// base and len), per CPU, for the filter and the matched program on an
/// interface without a link header, where finding them costs 34 probes.
#[map]
static CAPTURE_PACKET: PerCpuArray<[u32; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Non-zero when a filter is set: every packet goes through it first.
#[unsafe(no_mangle)]
static FILTERED: Global<u8> = Global::new(0);

/// Bytes copied from each packet; userspace sets it (`capture -s`). Values
/// above `SNAPLEN_MAX` are cut to it.
#[unsafe(no_mangle)]
static SNAPLEN: Global<u32> = Global::new(SNAPLEN_MAX as u32);

/// Non-zero when TC programs may call `bpf_get_current_pid_tgid` and
/// `bpf_get_current_comm` on the running kernel (6.1 refuses them to
/// SCHED_CLS); userspace probes and sets it. The global is read-only, so
/// the verifier knows its value and never visits the calls when it is 0.
#[unsafe(no_mangle)]
static TASK_HELPERS: Global<u8> = Global::new(0);

/// `IGNORE_*` bits: the classes of packets left out (userspace sets them).
#[unsafe(no_mangle)]
static IGNORE: Global<u8> = Global::new(0);

/// Where the network header starts in a packet's data: 14 on Ethernet
/// (and lo), 0 on an interface without a link header (TUN, nat46).
#[unsafe(no_mangle)]
static LINK_HEADER: Global<u8> = Global::new(14);

/// The packet as the programs read it: its bytes start `base` bytes into
/// the data the hook hands over, and `len` of them are the packet's.
struct Packet<'a> {
    ctx: &'a TcContext,
    base: u32,
    len: u32,
}

/// The largest offset `bpf_skb_load_bytes_relative` takes.
const RELATIVE_MAX: u32 = 0xffff;

/// The largest n (below 2^17) for which `PROBE` bytes at n - 1 load
/// relative to `start` (a header's position), built bit by bit from the
/// top: the linear bytes after the header, less `PROBE - 1`. The helper's
/// offset limit makes it at most 0x10000, which means "at least". `slot`
/// launders the partial result on each step (see CAPTURE_SCRATCH).
#[inline(always)]
fn probe_linear<const PROBE: usize>(ctx: &TcContext, start: u32, slot: *mut u32) -> u32 {
    let skb = ctx.skb.skb as *const _;
    let mut n = 0u32;
    let mut bytes = [0u8; PROBE];
    for bit in (0..17).rev() {
        // SAFETY: this CPU's slot of CAPTURE_SCRATCH (see Packet::new).
        n = unsafe {
            core::ptr::write_volatile(slot, n);
            core::ptr::read_volatile(slot)
        };
        let candidate = n | (1 << bit);
        // SAFETY: copies PROBE bytes into `bytes`; fails cleanly past the
        // linear data or the helper's offset limit.
        let loaded = unsafe {
            bpf_skb_load_bytes_relative(
                skb,
                candidate - 1,
                bytes.as_mut_ptr().cast(),
                PROBE as u32,
                start,
            )
        };
        if loaded == 0 {
            n = candidate;
        }
    }
    n
}

/// What `linear_from` returns when it cannot tell.
const UNKNOWN: u32 = u32::MAX;

/// Bytes from `start` to the end of the linear data: one-byte probes up to
/// 64 KiB, then 64-byte ones, which reach 64 bytes further (an IPv6 packet
/// of 65,575 bytes, nat46's largest, built linear); past that, UNKNOWN.
#[inline(always)]
fn linear_from(ctx: &TcContext, start: u32, slot: *mut u32) -> u32 {
    let n = probe_linear::<1>(ctx, start, slot);
    if n <= RELATIVE_MAX {
        return n;
    }
    let n = probe_linear::<64>(ctx, start, slot);
    if n == 0 || n > RELATIVE_MAX {
        UNKNOWN
    } else {
        n + 63
    }
}

impl<'a> Packet<'a> {
    /// On Ethernet the data is the frame. On an interface without a link
    /// header the packet is at the network header, and the data may start
    /// elsewhere: at TC ingress the hook pushes `mac_len` (the network
    /// header's offset from the MAC header, as 16 bits), which a driver
    /// that never reset the MAC header, as nat46 on the packets it
    /// translates, leaves stale (20 bytes early, or 64 KiB less 20
    /// early). The data starts at the MAC header on ingress (pushed by
    /// `mac_len`) and egress (`__dev_queue_xmit` resets it there), so the
    /// network header's offset in it is `mac_len`: the difference of the
    /// linear bytes from the two headers, as 16 bits. Copies then go
    /// through `bpf_skb_load_bytes`, which reads past the linear data.
    #[inline(always)]
    fn new(ctx: &'a TcContext) -> Self {
        let len = ctx.len();
        let mut packet = Packet { ctx, base: 0, len };
        if LINK_HEADER.load() != 0 {
            return packet;
        }
        let Some(slot) = CAPTURE_SCRATCH.get_ptr_mut(0) else {
            return packet;
        };
        let from_mac = linear_from(ctx, BPF_HDR_START_MAC, slot);
        let from_net = linear_from(ctx, BPF_HDR_START_NET, slot);
        // A MAC header never set, or headers past the helper's reach: the
        // data is taken as the packet, as before.
        if from_mac == 0 || from_mac == UNKNOWN || from_net == UNKNOWN {
            return packet;
        }
        let base = from_mac.wrapping_sub(from_net) & 0xffff;
        if base < len {
            packet.base = base;
            packet.len = len - base;
        }
        packet
    }

    /// Copies `len` bytes at `offset` of the packet to `to`; 0 when done.
    #[inline(always)]
    fn load_bytes(&self, offset: u32, to: *mut u8, len: u32) -> i64 {
        // SAFETY: the helper copies at most `len` bytes to `to`, which the
        // callers size; it fails cleanly past the packet's end.
        unsafe {
            bpf_skb_load_bytes(
                self.ctx.skb.skb as *const _,
                self.base + offset,
                to.cast(),
                len,
            )
        }
    }

    /// A value at `offset` of the packet.
    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Result<T, ()> {
        let mut value = core::mem::MaybeUninit::<T>::uninit();
        let done = self.load_bytes(
            offset as u32,
            value.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
        );
        if done == 0 {
            // SAFETY: the helper wrote all of it.
            Ok(unsafe { value.assume_init() })
        } else {
            Err(())
        }
    }
}

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// Whether the packet is of a class userspace asked to leave out: tested
/// before anything is reserved or copied, so a left-out packet costs a
/// few loads.
#[inline(always)]
fn ignored(p: &Packet) -> bool {
    let ignore = IGNORE.load();
    if ignore == 0 {
        return false;
    }
    let link = LINK_HEADER.load() as usize;
    let (mut ethertype, mut at) = if link == 0 {
        match p.load::<u8>(0).map(|b| b >> 4) {
            Ok(6) => (ETH_P_IPV6, 0usize),
            _ => return false,
        }
    } else {
        let Ok(t) = p.load::<[u8; 2]>(12) else {
            return false;
        };
        (u16::from_be_bytes(t), 14usize)
    };
    // Tags still in the frame (an offloaded one is not in the data).
    for _ in 0..2 {
        if link != 0 && matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            let Ok(t) = p.load::<[u8; 2]>(at + 2) else {
                return false;
            };
            ethertype = u16::from_be_bytes(t);
            at += 4;
        }
    }
    if ethertype == ETH_P_ARP {
        return ignore & IGNORE_ARP != 0;
    }
    ethertype == ETH_P_IPV6 && ignore & IGNORE_ND != 0 && is_nd(p, at)
}

/// Whether the IPv6 packet at `at` is Neighbor Discovery (see IGNORE_ND).
#[inline(always)]
fn is_nd(p: &Packet, at: usize) -> bool {
    let (Ok(mut next), Ok(hop_limit)) = (p.load::<u8>(at + 6), p.load::<u8>(at + 7)) else {
        return false;
    };
    if hop_limit != 255 {
        return false;
    }
    let mut at = at + 40;
    for _ in 0..ND_EXTENSION_HEADERS {
        let len = match next {
            0 | 43 | 60 => p.load::<u8>(at + 1).map(|l| (usize::from(l) + 1) * 8),
            51 => p.load::<u8>(at + 1).map(|l| (usize::from(l) + 2) * 4),
            _ => break,
        };
        let (Ok(len), Ok(n)) = (len, p.load::<u8>(at)) else {
            return false;
        };
        next = n;
        // Bounded for the verifier: an offset past any packet ends it.
        at = (at + len) & 0xffff;
    }
    if next != 58 {
        return false;
    }
    matches!(
        (p.load::<u8>(at), p.load::<u8>(at + 1)),
        (Ok(133..=137), Ok(0))
    )
}

/// Queues one packet in a record with room for `N` bytes; `want` (the
/// bytes to copy, at most `N`) was chosen by the caller.
#[inline(always)]
fn capture_into<const N: usize>(p: &Packet, direction: u8, want: u32) {
    let Some(mut slot) = reserve_header_zeroed::<CaptureRecord<N>>(
        &CAPTURE_RING,
        &CAPTURE_LOST,
        core::mem::size_of::<CaptureHeader>(),
    ) else {
        return;
    };
    // SAFETY: the entry holds a whole CaptureRecord<N> and its header is zeroed.
    let record = unsafe { &mut *slot.as_mut_ptr() };
    let skb = p.ctx.skb.skb;
    // The length handed to bpf_skb_load_bytes must be proven within
    // [1, N]. Linux 6.1's verifier learns no lower bound from `!= 0` (and
    // LLVM turns `> 0` into that), so the check is `len - 1 < N` on a copy
    // read back through a volatile stack slot, which LLVM cannot fold back
    // into `len`; a 0 wraps and fails it.
    let less_one = u64::from(want).wrapping_sub(1);
    // SAFETY: reading a local through its own reference.
    let less_one = unsafe { core::ptr::read_volatile(&less_one) };
    let mut cap_len = 0;
    if less_one < N as u64 {
        let len = (less_one + 1) as u32;
        // `len` bytes fit in `data` (checked above).
        if p.load_bytes(0, record.data.as_mut_ptr(), len) == 0 {
            cap_len = len;
        }
    }
    let header = &mut record.header;
    header.timestamp_ns = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the context is the kernel's __sk_buff for this packet.
    header.ifindex = unsafe { (*skb).ifindex };
    header.orig_len = p.len;
    header.cap_len = cap_len;
    header.direction = direction;
    // SAFETY: reading fields of the __sk_buff context. The tag the device
    // took out of the frame is not in its bytes: it is kept for the reader.
    unsafe {
        if (*skb).vlan_present != 0 {
            header.flags |= CAPTURE_HAS_VLAN;
            header.vlan_tci = (*skb).vlan_tci as u16;
            header.vlan_tpid = u16::from_be((*skb).vlan_proto as u16);
        }
    }
    // A local socket on an outgoing packet: the hook runs in the sending
    // task's context (see CAPTURE_HAS_TASK). On ingress the current task is
    // whoever the softirq interrupted, so it is not reported.
    // SAFETY: reading a pointer field of the __sk_buff context.
    let has_sock = unsafe { !(*skb).__bindgen_anon_2.sk.is_null() };
    if TASK_HELPERS.load() != 0 && direction == CAPTURE_EGRESS && has_sock {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        if tgid != 0 {
            header.tgid = tgid;
            header.comm = bpf_get_current_comm().unwrap_or_default();
            header.flags |= CAPTURE_HAS_TASK;
        }
    }
    submit_batched(slot, &CAPTURE_RING, WAKEUP_BYTES);
}

/// The entry: classes left out, then the filter (which tail-calls the
/// matched program, or returns), then the copy.
#[inline(always)]
fn capture(ctx: &TcContext, direction: u8, filter_slot: u32) {
    let p = Packet::new(ctx);
    if ignored(&p) {
        return;
    }
    if FILTERED.load() != 0 {
        if LINK_HEADER.load() == 0 {
            if let Some(slot) = CAPTURE_PACKET.get_ptr_mut(0) {
                // SAFETY: this CPU's slot; read by the programs this one
                // tail-calls, on the same CPU, before anything else runs.
                unsafe { *slot = [p.base, p.len] };
            }
        }
        // SAFETY: the filter and the matched program take this context.
        unsafe { CAPTURE_FILTER.tail_call(ctx, filter_slot) };
        // No filter program in the slot: nothing is taken.
        return;
    }
    take(&p, direction);
}

/// A packet the filter matched: the copy alone.
#[inline(always)]
fn matched(ctx: &TcContext, direction: u8) {
    let mut p = Packet {
        ctx,
        base: 0,
        len: ctx.len(),
    };
    if LINK_HEADER.load() == 0 {
        let Some(slot) = CAPTURE_PACKET.get_ptr(0) else {
            return;
        };
        // SAFETY: this CPU's slot, written by the entry program.
        let [base, len] = unsafe { *slot };
        p.base = base;
        p.len = len;
    }
    take(&p, direction);
}

#[inline(always)]
fn take(p: &Packet, direction: u8) {
    let orig_len = p.len;
    // Above the largest record, a packet would not fit any: cut to it.
    let snaplen = core::cmp::min(SNAPLEN.load(), SNAPLEN_MAX as u32);
    let want = if orig_len > snaplen {
        snaplen
    } else {
        orig_len
    };
    // One branch per size class, each with its constant record size.
    let w = want as usize;
    if w <= SIZE_CLASSES[0] {
        capture_into::<{ SIZE_CLASSES[0] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[1] {
        capture_into::<{ SIZE_CLASSES[1] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[2] {
        capture_into::<{ SIZE_CLASSES[2] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[3] {
        capture_into::<{ SIZE_CLASSES[3] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[4] {
        capture_into::<{ SIZE_CLASSES[4] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[5] {
        capture_into::<{ SIZE_CLASSES[5] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[6] {
        capture_into::<{ SIZE_CLASSES[6] }>(p, direction, want);
    } else if w <= SIZE_CLASSES[7] {
        capture_into::<{ SIZE_CLASSES[7] }>(p, direction, want);
    } else {
        capture_into::<{ SIZE_CLASSES[8] }>(p, direction, want);
    }
}

/// Packets arriving on the interface (TC ingress).
#[classifier]
pub fn capture_ingress(ctx: TcContext) -> i32 {
    capture(&ctx, CAPTURE_INGRESS, 0);
    TC_ACT_UNSPEC
}

/// Ingress packets the filter matched (tail-called from slot 1).
#[classifier]
pub fn capture_ingress_matched(ctx: TcContext) -> i32 {
    matched(&ctx, CAPTURE_INGRESS);
    TC_ACT_UNSPEC
}

/// Egress packets the filter matched (tail-called from slot 3).
#[classifier]
pub fn capture_egress_matched(ctx: TcContext) -> i32 {
    matched(&ctx, CAPTURE_EGRESS);
    TC_ACT_UNSPEC
}

/// Packets leaving through the interface (TC egress).
#[classifier]
pub fn capture_egress(ctx: TcContext) -> i32 {
    capture(&ctx, CAPTURE_EGRESS, 2);
    TC_ACT_UNSPEC
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
